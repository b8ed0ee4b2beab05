"""`zoomcal demo` and `zoomcal sandbox`: offline sandboxes of the vendors, demo users, no accounts."""

from __future__ import annotations

import asyncio
import json
import sys

import typer

from zoomcal.cli.common import console, err, handled, print_json, settings


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
            console.print({k: v for k, v in result.items() if not k.endswith("_details")})
            for line in result["mismatch_details"] + result["duplicate_details"]:
                err.print(f"[red]{line}[/]")
        ok = result["mismatches"] == 0 and result["duplicates"] == 0
        raise typer.Exit(0 if ok else 1)
    try:
        asyncio.run(run_live(settings(), console, interval, rounds))
    except KeyboardInterrupt:
        console.print("stopped")


def sandbox(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    users: int = typer.Option(4, "--users", help="How many demo users to create."),
) -> None:
    """Serve the Zoom (meetings and calendar), Google Calendar, Microsoft Graph and Exchange (EWS) sandboxes; the
    first output line is JSON with URLs, users and credentials."""
    import uvicorn

    from zoomcal.sandbox.world import DEMO_USERS, SandboxWorld

    world = SandboxWorld()
    people = []
    for i in range(users):
        email, name, tz, _calendar = DEMO_USERS[i] if i < len(DEMO_USERS) else (f"user{i}@example.com", f"User {i}",
                                                                                 "UTC", "")
        people.append(world.add_user(email, name, tz))
    sys.stdout.write(json.dumps(world.describe(f"http://{host}:{port}", people)) + "\n")
    sys.stdout.flush()
    uvicorn.run(world.app(over_network=True), host=host, port=port, log_level="warning")
