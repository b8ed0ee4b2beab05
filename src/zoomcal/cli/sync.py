"""`zoomcal sync`, `status`, `log`, `events`, `review`: running the sync and reading what it did."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Column, Table

from zoomcal.cli.common import as_dict, console, context, err, fail, handled, listen, print_json, run_async
from zoomcal.cli.presence import print_outcome
from zoomcal.lazy import lazy

app_feed = lazy("zoomcal.app.feed")
app_history = lazy("zoomcal.app.history")
app_presence = lazy("zoomcal.app.presence")
app_sync = lazy("zoomcal.app.sync")
app_runner = lazy("zoomcal.app.runner")

if TYPE_CHECKING:
    from zoomcal.app.context import AppContext

review_app = typer.Typer(help="The review queue: conflicting edits, held mass deletions, overlaps.",
                         invoke_without_command=True)


def _counts(result: app_sync.PairResult) -> str:
    """The plan's counts in words: `create_b: 2` reads "2 to create on Google"."""
    names = dict(zip(("a", "b"), result.calendars if len(result.calendars) == 2 else ["", *result.calendars],
                     strict=False))
    words = []
    for key, count in sorted(result.counts.items()):
        if not count:
            continue
        op, _, side = key.rpartition("_")
        words.append(f"{count} to {op.replace('_', ' ')} on {names[side]}" if side in names and op
                     else f"{count} {key.replace('_', ' ')}")
    return ", ".join(words) or "nothing to do"


def show_result(result: app_sync.PairResult, dry_run: bool) -> None:
    if dry_run:
        console.print(f"[bold]{result.user}[/] ({' + '.join(result.calendars)}) — planned: {_counts(result)}",
                      highlight=False)
        for line in result.planned:
            console.print(f"  {line}", markup=False, highlight=False)
    else:
        console.print(f"{result.user}: {result.status}, {result.writes} writes, {result.api_calls} API calls, "
                      f"{result.duration_ms} ms ({' + '.join(result.calendars)})"
                      + (f", {result.rejected} item(s) rejected (see `zoomcal log`)" if result.rejected else ""),
                      highlight=False, markup=False)
    for line in result.notes:
        console.print(f"  note: {line}", highlight=False, markup=False)
        if "deletions held" in line:
            console.print("    hint: `zoomcal review` shows them; `zoomcal review resolve ID confirm` or "
                          "`zoomcal sync --confirm-deletes` carries them out", highlight=False, markup=False)
    for line in result.errors:
        err.print(f"  [red]{line}[/]", highlight=False)


def _start_webhooks(ctx: AppContext, host: str, port: int) -> None:
    """The notification receiver in a background thread: verified notifications mark syncs as due."""
    import uvicorn

    from zoomcal.web.webhooks import make_app

    sock = listen(host, port)          # bound (and listening) now: a busy port is one line, before the first round
    server = uvicorn.Server(uvicorn.Config(make_app(ctx.services), log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    err.print(f"receiving webhooks at http://{host}:{port}/webhooks/{{channel}} (Zoom: /webhooks/zoom)")


@handled
def sync(
    once: bool = typer.Option(False, "--once", help="One round, then exit."),
    user: str | None = typer.Option(None, "--user", help="Only this user."),
    calendar: int | None = typer.Option(None, "--calendar", help="Only the pair that holds this calendar id "
                                                                 "(with --once or --dry-run)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned actions; write nothing."),
    confirm_deletes: bool = typer.Option(False, "--confirm-deletes", help="Carry out deletions held by the guard."),
    interval: float = typer.Option(900.0, "--interval", min=5.0,
                                   help="Seconds between reconciliation rounds (everyone synced whatever "
                                        "notifications said) when not --once."),
    presence: bool = typer.Option(False, "--presence", help="Also keep Zoom presence in line (after each person's "
                                                            "sync and at the start and end of busy times)."),
    webhooks_port: int = typer.Option(0, "--webhooks-port",
                                      help="Also receive webhooks on this port (POST /webhooks/{channel}): the owner "
                                           "of a change syncs at once."),
    as_json: bool = typer.Option(False, "--json", help="With --once or --dry-run: print each pair's result as "
                                                        "JSON (a list)."),
    webhooks_host: str = typer.Option("127.0.0.1", "--webhooks-host", help="Address the webhook receiver binds."),
) -> None:
    """Sync every user's Zoom meetings with the calendar that receives them, and read their other calendars and
    ICS feeds for availability. Without --once it keeps running: people whose sync is due (a notification, a
    booking, a command in another process) sync at once, everyone at each reconciliation round."""
    ctx = context()
    if webhooks_port and not ctx.settings.zoom_webhook_secret:
        fail("receiving webhooks needs the Zoom app's secret token", hint="set ZOOMCAL_ZOOM_WEBHOOK_SECRET")
    if once or dry_run:
        driver = app_presence.driver(ctx) if presence and not dry_run else None

        async def one_round() -> bool:
            results = await app_sync.run(ctx, user, calendar_id=calendar, dry_run=dry_run,
                                         confirm_deletes=confirm_deletes, trigger="cli")
            if not results:
                err.print("nothing to sync: no user has a calendar linked")
            if driver is not None:
                for outcome in await driver.start(ctx.now()):
                    if not as_json:
                        print_outcome(outcome, verbose=False)
            if as_json:
                print_json([r.as_dict() for r in results])
            for result in [] if as_json else results:
                show_result(result, dry_run)
            troubled = [r for r in results if r.status == "failed" or r.rejected]
            if troubled and not dry_run:
                err.print("needs attention: " + "; ".join(
                    f"{r.user} ({' + '.join(r.calendars)}): {r.status}"
                    + (f", {r.rejected} item(s) rejected" if r.rejected else "") for r in troubled)
                    + " — `zoomcal log` says why", highlight=False, markup=False)
            return bool(troubled)

        raise typer.Exit(1 if run_async(ctx, one_round) else 0)
    if calendar is not None:
        fail("--calendar picks one pair for a single round", hint="add --once (or --dry-run)")
    if confirm_deletes:
        fail("--confirm-deletes carries out held deletions in a single round", hint="add --once")
    if as_json:
        fail("--json prints the results of one round", hint="add --once (or --dry-run)")
    only = user.strip().lower() if user else None
    if only:
        app_sync.pairs(ctx, only)    # an unknown person is refused now, not silently never synced

    async def forever() -> None:
        if webhooks_port:
            _start_webhooks(ctx, webhooks_host, webhooks_port)
        loop = app_runner.EmbeddedRunner(
            ctx.services, intervals=app_runner.Intervals(reconcile=interval), tenant=ctx.tenant_name, only=only,
            presence=presence, on_pair=lambda r: show_result(r, False),
            on_error=lambda who, exc: err.print(f"  [red]{who}: {type(exc).__name__}: {exc}[/]", highlight=False))
        await loop.run()

    try:
        run_async(ctx, forever)
    except KeyboardInterrupt:
        console.print("stopped")


@handled
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Last sync run per user, open review items, accounts needing attention; how long changes took to reach the
    other side over the last day (propagation percentiles)."""
    overview = app_sync.overview(context())
    if as_json:
        return print_json(overview.as_dict())
    table = Table("user", "last run", "status", "writes", "errors", "review", "re-auth", "degraded")
    for r in overview.users:
        table.add_row(r.user, str(r.last_run or "-"), r.status, str(r.writes), str(r.errors), str(r.review_queue),
                      str(r.accounts_needing_reauth), str(r.accounts_degraded))
    console.print(table)
    if overview.propagation:
        spread = Table("propagation", "provider", "changes", "p50", "p95", "p99", title="last 24 hours")
        for kind, providers in overview.propagation.items():
            for provider, p in providers.items():
                spread.add_row(kind, provider, str(p["count"]), _ms(p["p50"]), _ms(p["p95"]), _ms(p["p99"]))
        console.print(spread)


def _ms(value: int) -> str:
    return f"{value} ms" if value < 1000 else f"{value / 1000:.1f} s"


@handled
def show_log(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new entries."),
    limit: int = typer.Option(50, "--limit", help="How many recent entries to start with."),
    user: str | None = typer.Option(None, "--user", help="The person's e-mail address."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """The sync log: every decision and every error, newest last."""
    import json
    import sys

    ctx = context()
    start = app_feed.latest_id(ctx) if follow else 0
    entries = app_sync.log(ctx, user, limit=limit)

    def show(id_: int, at, level: str, action: str, event: str | None, who: str | None, message: str,
             title: str | None = None) -> None:
        if as_json:
            sys.stdout.write(json.dumps({"id": id_, "at": str(at), "level": level, "action": action,
                                         "event": event, "title": title, "user": who, "message": message}) + "\n")
        else:
            color = {"error": "red", "warning": "yellow"}.get(level, "white")
            named = repr(title[:26]) if title else (event or "-")     # titles and messages are text, not markup
            console.print(f"{at:%Y-%m-%d %H:%M:%S} [{color}]{level:7}[/] {action:9} {escape(f'{named:28}')} "
                          f"{escape(message)}", highlight=False)
        sys.stdout.flush()

    for e in entries:
        show(e.id, e.at, e.level, e.action, e.event, e.user, e.message, e.title)
    if not follow:
        return

    async def tail() -> None:
        # the same feed the web's /events serves: new lines from every process sharing the store
        async for item in app_feed.follow(ctx, max([start] + [e.id for e in entries]), user=user):
            if item is not None:
                d = item.data
                show(item.id, item.at, d["level"], d["action"], d["event"], d["user"], d["message"])

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        pass


events_app = typer.Typer(help="Events in the central store, and why each one changed.")


@events_app.callback(invoke_without_command=True)
@handled
def events(typer_ctx: typer.Context,
           user: str | None = typer.Option(None, "--user", help="The person's e-mail address."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Events in the central store (the canonical, merged view); `events history ID` tells why one changed."""
    if typer_ctx.invoked_subcommand is not None:
        return
    rows = app_sync.events(context(), user)
    if as_json:
        return print_json(as_dict(rows))
    table = Table(Column("id", no_wrap=True, min_width=26), "user", "start", "end", "title", "zoom", "recurs")
    for r in rows:
        table.add_row(r.id, r.user, r.start or "-", r.end or "-", r.title, "yes" if r.is_meeting else "",
                      r.content.get("rrule") or "")
    console.print(table)


@events_app.command("history")
@handled
def event_history(event: str = typer.Argument(..., help="The event's id (or its first characters)."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Why an event changed: each change, what brought it (the run and its notification or timer, the item and
    the fields it changed), the decision and the rules behind it, the writes on each side, bookings and
    review decisions."""
    found = app_history.history(context(), event)
    if as_json:
        return print_json(found.as_dict())
    state = "" if found.exists else " (forgotten: deleted everywhere)"
    console.print(f"[bold]{found.title or found.event_id}[/bold] {found.event_id} of {found.user or '-'}{state}")
    for step in found.steps:
        source = f" [run {step.run_id}, {step.trigger}]" if step.run_id else ""
        console.print(f"{step.at}  {step.step:<9} {step.message}{source}", highlight=False, markup=False)
        for label, fields in (step.detail.get("changed") or {}).items():
            console.print(f"{'':31}changed on {label}: {', '.join(fields)}", highlight=False, markup=False)
        for rule in step.detail.get("rules") or []:
            console.print(f"{'':31}rule: {rule}", highlight=False, markup=False)
    if not found.steps:
        console.print("no history recorded")


@review_app.callback()
@handled
def review(typer_ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Open review items: conflicting edits, held mass deletions, overlaps (`review resolve ID CHOICE` closes one)."""
    if typer_ctx.invoked_subcommand is not None:
        return
    rows = app_sync.reviews(context())
    if as_json:
        return print_json(as_dict(rows))
    table = Table("id", "kind", "user", "event", "field", "zoom", "calendar", "applied", "choices")
    for r in rows:
        table.add_row(str(r.id), r.kind, r.user or "-", r.event or "-", r.field, str(r.zoom), str(r.calendar),
                      r.applied, " | ".join(r.choices))
    console.print(table)


@review_app.command("resolve")
@handled
def review_resolve(item: int = typer.Argument(..., help="The review item's id."),
                   choice: str = typer.Argument(..., help="conflict: zoom | calendar (whose value stays); held "
                                                          "deletions: confirm | dismiss; overlap: dismiss.")) -> None:
    """Close a review item with a choice."""
    ctx = context()
    done = run_async(ctx, lambda: app_sync.resolve(ctx, item, choice))
    console.print(f"review item {done.id} ({done.kind}) resolved: {choice}")
