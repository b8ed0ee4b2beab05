"""`zoomcal user ...`: people."""

from __future__ import annotations

import typer
from rich.table import Table

from zoomcal.cli.common import as_dict, console, context, handled, print_json, run_async
from zoomcal.lazy import lazy

users = lazy("zoomcal.app.users")

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
