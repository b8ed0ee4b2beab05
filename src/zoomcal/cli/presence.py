"""`zoomcal presence ...`: Zoom presence from availability, by rules."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import typer
from rich.table import Table

from zoomcal.cli.common import as_dict, console, context, err, fail, handled, print_json, run_async, when
from zoomcal.lazy import lazy

presence = lazy("zoomcal.app.presence")
settings = lazy("zoomcal.app.settings")

presence_app = typer.Typer(help="Zoom presence from availability, by rules.", no_args_is_help=True)


def print_outcome(outcome, verbose: bool) -> None:
    d = outcome.as_dict()
    action = f"write {d['write']}" + (f" for {d['dnd_minutes']} min" if d["dnd_minutes"] else "") if d["write"] \
        else "no write"
    console.print(f"[bold]{d['user']}[/]: state {d['state']}" + (f" ({d['event']!r})" if d["event"] else "") +
                  f", Zoom shows {d['zoom_status']} -> {action}: {d['reason']}", highlight=False)
    if d["error"]:
        err.print(f"  [yellow]{d['error']}[/]", highlight=False)
    if verbose:
        for check in d["checked"]:
            console.print(f"    rule '{check['rule']}': {check['why']}", markup=False, highlight=False)


def _rules_file(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path} is not valid TOML: {exc}")


@presence_app.command("explain")
@handled
def presence_explain(
    user: str = typer.Option(..., "--user", help="The person's e-mail address."),
    at: str | None = typer.Option(None, "--at", help="A moment to explain (default: now)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Which rule fires for a user (now or --at), and why every earlier rule did not. Writes nothing."""
    ctx = context()
    moment = when(at) if at else None
    outcome = run_async(ctx, lambda: presence.explain(ctx, user, moment))
    if as_json:
        return print_json(outcome.as_dict())
    print_outcome(outcome, verbose=True)


@presence_app.command("dry-run")
@handled
def presence_dry_run(
    rules: Path = typer.Option(..., "--rules", help="A presence rules file to try."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """What a rules change would do to everyone right now (compared with the rules in force). Writes nothing."""
    ctx = context()
    data = _rules_file(rules)
    rows = run_async(ctx, lambda: presence.dry_run(ctx, data))
    if as_json:
        return print_json(as_dict(rows))
    table = Table("user", "state", "Zoom shows", "rules in force", "proposed rules", "differs")
    for r in rows:
        table.add_row(r.user, r.state, str(r.zoom_status), f"{r.now['rule']} -> {r.now['write']}",
                      f"{r.proposed['rule']} -> {r.proposed['write']}", "yes" if r.changes else "")
    console.print(table)


@presence_app.command("rules")
@handled
def presence_rules(
    file: Path = typer.Argument(..., help="A presence rules file (TOML, version = 1)."),
    user: str | None = typer.Option(None, "--user", help="Only for this user (default: the whole tenant)."),
) -> None:
    """Install presence rules for the tenant, or for one user (validated first; see `presence dry-run`)."""
    settings.set_presence_rules(context(), _rules_file(file), user)
    console.print(f"presence rules installed for {user or 'the tenant'}")


@presence_app.command("run")
@handled
def presence_run(
    once: bool = typer.Option(False, "--once", help="Evaluate everyone once, then exit."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Keep every user's Zoom presence in line with their calendars (writes only on change)."""
    ctx = context()

    async def loop():
        driver = presence.driver(ctx)
        outcomes = await driver.start(ctx.now())
        while not once:
            for outcome in outcomes:
                print_outcome(outcome, verbose=False)
            await asyncio.sleep(5)
            outcomes = await driver.run_due(ctx.now())
        return outcomes

    outcomes = run_async(ctx, loop)
    if as_json:
        return print_json([o.as_dict() for o in outcomes])
    for outcome in outcomes:
        print_outcome(outcome, verbose=False)
