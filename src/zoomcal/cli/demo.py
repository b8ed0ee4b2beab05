"""`zoomcal demo` and `zoomcal sandbox`: offline sandboxes of the vendors, demo users, no accounts."""

from __future__ import annotations

import asyncio
import json
import sys

import typer
from rich.table import Table

from zoomcal.cli.common import console, err, handled, listen, print_json, settings


@handled
def demo(
    once: bool = typer.Option(False, "--once",
                              help="Scripted scenario with faults, then exit 0 only if both sides agree."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print a JSON summary."),
    interval: float = typer.Option(3.0, "--interval", help="Live mode: seconds between rounds."),
    rounds: int | None = typer.Option(None, "--rounds", help="Live mode: stop after this many rounds."),
) -> None:
    """Run zoomcal against built-in Zoom, Google, Microsoft 365 and Exchange sandboxes with demo users (no accounts,
    no network)."""
    from zoomcal.demo import run_live, run_once

    if once:
        result = asyncio.run(run_once(settings(), err if as_json else console, quiet=as_json))
        if as_json:
            print_json(result)
        else:
            console.print(_summary(result))
            for line in result["mismatch_details"] + result["duplicate_details"]:
                err.print(f"[red]{line}[/]")
        ok = result["mismatches"] == 0 and result["duplicates"] == 0
        raise typer.Exit(0 if ok else 1)
    try:
        asyncio.run(run_live(settings(), console, interval, rounds))
    except KeyboardInterrupt:
        console.print("stopped")


def _summary(result: dict) -> Table:
    """The scenario's outcome as a table (the same facts as --json)."""
    table = Table(title="zoomcal demo — outcome", show_header=False)
    agreed = result["mismatches"] == 0 and result["duplicates"] == 0
    table.add_row("Zoom and calendars agree", "yes" if agreed else
                  f"no: {result['mismatches']} mismatch(es), {result['duplicates']} duplicate(s)")
    table.add_row("Zoom meetings / calendar events", f"{result['zoom_meetings']} / {result['calendar_events']}")
    table.add_row("writes on a final resync", str(result.get("resync_writes", "-")))
    table.add_row("provider API calls", str(result["api_calls"]))
    table.add_row("faults injected", ", ".join(f"{k} x{v}" for k, v in result.get("faults_fired", {}).items()) or "-")
    kinds = {"conflict": "the same field changed on both sides", "contact": "contacts that could not be mapped",
             "contact_match": "contacts with one name", "overlap": "overlapping events",
             "mass_delete": "deletions held"}
    table.add_row("review queue", f"{result['review_queue']} item(s): " + ", ".join(
        f"{n} {kinds.get(k, k)}" for k, n in sorted(result.get("review_kinds", {}).items())))
    table.add_row("calendars", ", ".join(f"{u}: {c}" for u, c in result.get("calendars", {}).items()))
    table.add_row("presence", ", ".join(f"{u}: {p}" for u, p in result.get("presence", {}).items()))
    push = result.get("push") or {}
    if push:
        table.add_row("push", f"{push.get('notifications', 0)} notifications, {push.get('people_synced', 0)} "
                              f"people synced by them")
        for pair, figures in (push.get("propagation_ms") or {}).items():
            table.add_row(f"edit -> other side ({pair})", f"p50 {figures['p50']} ms, p99 {figures['p99']} ms")
    return table


def sandbox(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8765, "--port", help="Port to bind."),
    users: int = typer.Option(4, "--users", help="How many demo users to create."),
) -> None:
    """Serve the Zoom (meetings and calendar), Google Calendar, Microsoft Graph and Exchange (EWS) sandboxes; the
    first output line is JSON with URLs, users and credentials."""
    import uvicorn

    from zoomcal.sandbox.world import DEMO_USERS, SandboxWorld

    # the port first: a busy one is one line, before any JSON a caller might take for the sandbox's
    sock = listen(host, port, "serve the sandboxes on", hint="pick another --port")
    world = SandboxWorld()
    people = []
    for i in range(users):
        email, name, tz, _calendar = DEMO_USERS[i] if i < len(DEMO_USERS) else (f"user{i}@example.com", f"User {i}",
                                                                                 "UTC", "")
        people.append(world.add_user(email, name, tz))
    sys.stdout.write(json.dumps(world.describe(f"http://{host}:{port}", people)) + "\n")
    sys.stdout.flush()
    try:
        uvicorn.Server(uvicorn.Config(world.app(over_network=True), log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
