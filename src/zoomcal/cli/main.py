"""The `zoomcal` command line: one module per command group; each command parses its flags, calls one
application operation (`zoomcal.app`) and renders the result. No database access lives here."""

from __future__ import annotations

import typer

from zoomcal import __version__
from zoomcal.cli import availability, common, demo, serve, setup, sync, worker
from zoomcal.cli.accounts import account_app
from zoomcal.cli.audit import audit_app
from zoomcal.cli.contacts import contacts_app
from zoomcal.cli.invitations import invitations_app, mail_app
from zoomcal.cli.mapping import mapping_app
from zoomcal.cli.polls import polls_app
from zoomcal.cli.presence import presence_app
from zoomcal.cli.users import user_app

app = typer.Typer(help="zoomcal: keep Zoom meetings and calendars in two-way sync around one central store.",
                  no_args_is_help=True, add_completion=False)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"zoomcal {__version__}")
        raise typer.Exit()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log structured events to stderr."),
          tenant: str | None = typer.Option(None, "--tenant", envvar="ZOOMCAL_TENANT",
                                            help="The tenant (organisation) to act in (default: default)."),
          _version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                        help="Print zoomcal's version and exit.")) -> None:
    from zoomcal.logging import configure

    configure("INFO" if verbose else "ERROR")
    common.state["tenant"] = tenant


app.command()(setup.init)
app.add_typer(setup.db_app, name="db")
app.add_typer(setup.tenant_app, name="tenant")
app.add_typer(setup.vault_app, name="vault")
app.add_typer(user_app, name="user")
app.add_typer(account_app, name="account")
app.command()(sync.sync)
app.command()(worker.worker)
app.command()(sync.status)
app.command("log")(sync.show_log)
app.add_typer(sync.events_app, name="events")
app.add_typer(sync.review_app, name="review")
app.command()(availability.availability)
app.command()(availability.slots)
app.command("settings")(availability.settings)
app.command()(availability.book)
app.command()(availability.conflicts)
app.add_typer(presence_app, name="presence")
app.add_typer(mapping_app, name="mapping")
app.add_typer(audit_app, name="audit")
app.add_typer(mail_app, name="mail")
app.add_typer(invitations_app, name="invitations")
app.add_typer(polls_app, name="polls")
app.add_typer(contacts_app, name="contacts")
app.command()(demo.demo)
app.command()(demo.sandbox)
app.command()(serve.serve)


def run() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
