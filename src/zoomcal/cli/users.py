"""`zoomcal user ...`: people."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from zoomcal.cli.common import as_dict, console, context, env_secret, fail, handled, print_json, run_async
from zoomcal.lazy import lazy

users = lazy("zoomcal.app.users")
signin = lazy("zoomcal.app.signin")
federated = lazy("zoomcal.app.federated")

user_app = typer.Typer(help="People.", no_args_is_help=True)


@user_app.command("add")
@handled
def user_add(email: str, name: str = typer.Option("", "--name", help="Display name.")) -> None:
    """Add a person."""
    added = users.add(context(), email, name)
    console.print(f"added user {added.email}")


@user_app.command("list")
@handled
def user_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List people with their linked calendars."""
    rows = users.list_users(context())
    if as_json:
        return print_json(as_dict(rows))
    table = Table("email", "name", "linked")
    for row in rows:
        table.add_row(row.email, row.name, ", ".join(f"{c.provider}:{c.calendar} (#{c.id})" for c in row.calendars))
    console.print(table)


@user_app.command("rename")
@handled
def user_rename(email: str, new_email: str | None = typer.Option(None, "--email", help="A new e-mail address."),
                name: str | None = typer.Option(None, "--name", help="A new display name.")) -> None:
    """Change a person's e-mail address or name."""
    changed = users.rename(context(), email, new_email=new_email, name=name)
    console.print(f"{changed.email} ({changed.name or 'no name'})")


@user_app.command("remove")
@handled
def user_remove(email: str, yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Remove a person: their accounts are unlinked (grants revoked where the provider allows), their events and
    settings forgotten. Nothing is deleted from their calendars."""
    if not yes:
        typer.confirm(f"remove {email} and unlink their accounts?", abort=True)
    ctx = context()
    outcomes = run_async(ctx, lambda: users.remove(ctx, email))
    console.print(f"removed {email}" + (f"; accounts: {'; '.join(outcomes)}" if outcomes else ""))


@user_app.command("password")
@handled
def user_password(email: str,
                  password_env: str | None = typer.Option(None, "--password-env",
                                                          help="Env var with the new password (else a prompt)."),
                  remove: bool = typer.Option(False, "--remove", help="Remove the password: no portal sign-in.")
                  ) -> None:
    """Set the password a person signs in to the portal with (at least 10 characters). Their portal sessions
    end."""
    if remove and password_env:
        fail("--remove and --password-env do not go together")
    password: str | None = None
    if password_env:
        password = env_secret(password_env, "password")
    elif not remove:
        if not sys.stdin.isatty():
            fail("the password is needed", hint="pass --password-env VAR (no terminal to prompt on)")
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    signin.set_password(context(), email, password)
    console.print(f"{'removed the' if remove else 'set a'} portal password for {email}")


@user_app.command("role")
@handled(flags={"role": "ROLE: admin or member"})
def user_role(email: str, role: str | None = typer.Argument(None, help="admin or member; omitted: show it.")
              ) -> None:
    """Show or set a person's portal role: an admin sees and manages everyone in the organisation, a member only
    themselves."""
    ctx = context()
    if role is None:
        current, has_password = signin.role_of(ctx, email)
        console.print(f"{email}: {current}" + ("" if has_password else " (no portal password)"))
        return
    console.print(f"{email}: {signin.set_role(ctx, email, role)}")


@user_app.command("identities")
@handled
def user_identities(email: str,
                    forget: str | None = typer.Option(None, "--forget", help="Unbind the account of this provider "
                                                      "(google or microsoft): its next sign-in binds anew."),
                    as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The Google and Microsoft accounts a person signs in to the portal with (bound at the first sign-in)."""
    ctx = context()
    if forget:
        console.print(f"{email}: {federated.forget(ctx, email, forget)} {forget} account(s) forgotten")
        return
    rows = federated.identities(ctx, email)
    if as_json:
        return print_json(as_dict(rows))
    table = Table("provider", "issuer", "address when bound", "bound", "last used")
    for r in rows:
        table.add_row(r["provider"], r["issuer"], r["address"], str(r["bound_at"]), str(r["used_at"]))
    console.print(table)


@user_app.command("link")
@handled
def user_link(email: str, minutes: int = typer.Option(15, "--minutes", help="How long the link works (1 to 1440).")
              ) -> None:
    """Print a link that signs a person in to the portal once (for a first sign-in before any password is set).
    It starts with ZOOMCAL_PUBLIC_URL, else with `zoomcal serve`'s default address."""
    from datetime import timedelta

    ctx = context()
    token = signin.link(ctx, email, timedelta(minutes=minutes))
    base = (ctx.settings.public_url or "http://127.0.0.1:8080").rstrip("/")
    console.print(f"{base}/login/link?t={token}", markup=False, highlight=False, soft_wrap=True)
