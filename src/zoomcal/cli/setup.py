"""Setting up and operating: init, database migrations, tenants, the vault key."""

from __future__ import annotations

import typer

from zoomcal.cli.common import console, context, handled, print_json, services, settings
from zoomcal.lazy import lazy

admin = lazy("zoomcal.app.admin")

db_app = typer.Typer(help="Database maintenance (migrations run only here and in init).", no_args_is_help=True)
vault_app = typer.Typer(help="Token vault.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants (organisations); pick one for any command with --tenant.",
                         no_args_is_help=True)


@handled
def init() -> None:
    """Create the data directory, the token-vault key and the database (SQLite unless ZOOMCAL_DATABASE_URL); migrate
    a database that is behind. Safe to run again."""
    done = admin.init(settings())
    console.print(f"data directory: {done.data_dir}")
    console.print(f"database: {done.database} (schema {done.revision}"
                  + (f", was {done.revision_before})" if done.revision_before not in (None, done.revision) else ")"))
    console.print(f"token vault: {done.vault}")
    console.print(f"tenant: {done.tenant}")


@db_app.command("upgrade")
@handled
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Apply database migrations."""
    before, after = admin.upgrade(settings(), revision)
    console.print(f"database at {after}" + (f" (was {before})" if before != after else " (already there)"))


@db_app.command("status")
@handled
def db_status(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """The database's schema revision against the one this zoomcal needs."""
    state, current, head = admin.schema(settings())
    if as_json:
        return print_json({"state": state, "current": current, "head": head})
    console.print(f"schema {current or 'none'}, this zoomcal needs {head}: {state}")


@vault_app.command("rotate")
@handled
def vault_rotate() -> None:
    """Re-seal every stored secret with the first (newest) vault key."""
    svc = services()
    moved = admin.vault_rotate(svc)
    console.print(f"{moved} account(s) re-sealed with key {svc.vault.current}")


@tenant_app.command("add")
@handled
def tenant_add(name: str) -> None:
    """Add a tenant (an organisation whose people, accounts and events no other tenant sees)."""
    console.print(f"added tenant {admin.add_tenant(services(), name)}")


@tenant_app.command("list")
@handled
def tenant_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """List tenants."""
    names = [name for _id, name in context().services.tenants()]
    if as_json:
        return print_json(names)
    for name in names:
        console.print(name)
