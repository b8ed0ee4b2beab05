"""`zoomcal mail ...` (the SMTP server invitations leave from) and `zoomcal invitations ...` (what was sent,
sending now, attendees' answers)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from zoomcal.cli.common import as_dict, console, context, env_secret, fail, handled, print_json
from zoomcal.lazy import lazy

invitations = lazy("zoomcal.app.invitations")

mail_app = typer.Typer(help="The SMTP server e-mail invitations are sent through.", no_args_is_help=True)
invitations_app = typer.Typer(help="E-mail invitations (iTIP): what was sent, sending, attendees' answers.",
                              no_args_is_help=True)


@mail_app.command("set")
@handled
def set_mail(
    host: str = typer.Option(..., "--host", help="The SMTP server."),
    port: int = typer.Option(587, "--port", help="Its port (587 with STARTTLS, 465 with TLS)."),
    security: str = typer.Option("starttls", "--security", help="starttls | tls | none (none: only without a "
                                                                "password, or on this machine)."),
    sender: str = typer.Option(..., "--from", help="The address invitations are sent from."),
    username: str = typer.Option("", "--username", help="The account name, if the server wants one."),
    password_env: str | None = typer.Option(None, "--password-env", help="Env var with the password."),
    check: bool = typer.Option(True, "--check/--no-check", help="Ask the server first (default)."),
) -> None:
    """Set the server; it is asked first (TLS as set, the credentials taken), the password sealed."""
    password = env_secret(password_env, "password") if password_env else None
    view = invitations.set_mail(context(), host=host, port=port, security=security.lower(), sender=sender,
                                username=username, password=password, check=check)
    console.print(f"invitations leave through {view.host}:{view.port} ({view.security}) from {view.sender}")


@mail_app.command("show")
@handled
def show_mail(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """The SMTP settings (never the password)."""
    view = invitations.show_mail(context())
    if as_json:
        return print_json(as_dict(view))
    if view is None:
        console.print("no SMTP server set: `zoomcal mail set --host H --from ADDRESS`")
        return
    console.print(f"{view.host}:{view.port} {view.security}, from {view.sender}"
                  + (f", as {view.username}" if view.username else "") + (" (password set)" if view.has_password
                                                                           else ""))


@invitations_app.command("list")
@handled
def list_invitations(user: str | None = typer.Option(None, "--user", help="Only this organizer's."),
                     as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Events whose guests are invited by e-mail: each guest's answer and the messages sent or waiting."""
    rows = invitations.list_invitations(context(), user)
    if as_json:
        return print_json(as_dict(rows))
    table = Table("event", "organizer", "title", "seq", "status", "guests", "messages")
    for r in rows:
        table.add_row(r.event_id, r.organizer, r.title, str(r.sequence), r.status,
                      ", ".join([f"{e}: {a}" for e, a in r.attendees.items()]
                                + [f"{e}: {a} on {rid}" for rid, answers in sorted(r.occurrences.items())
                                   for e, a in answers.items()]),
                      ", ".join(f"{n} {k}" for k, n in sorted(r.messages.items())))
    console.print(table)


@invitations_app.command("send")
@handled
def send() -> None:
    """Send what is waiting now (serve and the workers do it every minute)."""
    done = invitations.deliver(context())
    console.print(f"{done.sent} sent, {done.waiting} waiting, {done.failed} failed")
    for error in done.errors:
        console.print(f"[yellow]{error}[/yellow]", markup=True)
    if done.failed or done.waiting:
        raise typer.Exit(1)


@invitations_app.command("inbound")
@handled
def inbound(source: str = typer.Argument(..., help="An .ics file or an e-mail (.eml) carrying a REPLY; - reads "
                                                   "standard input.")) -> None:
    """Record an attendee's answer (iTIP REPLY) sent back by their calendar."""
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if not path.is_file():
            fail(f"no such file: {source}")
        data = path.read_bytes()
    answer = invitations.inbound(context(), data)
    console.print(f"{answer.attendee}: {answer.status} for event {answer.event_id}"
                  + (f" ({answer.note})" if answer.note else ""))
