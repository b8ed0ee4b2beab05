"""`zoomcal demo`: sandboxes + demo users + two-way sync, live or as one scripted, self-checking pass."""

from __future__ import annotations

import asyncio
import random
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from zoomcal.auth.vault import new_key_spec
from zoomcal.availability.index import BusyIndex
from zoomcal.config import Settings
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.presence.service import PresenceService
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.server import BackgroundServer
from zoomcal.sandbox.verify import compare_user
from zoomcal.sandbox.world import DEMO_USERS, SandboxWorld
from zoomcal.service import Context, add_account, add_user, build_pairs, close_pairs
from zoomcal.store.models import ReviewItem, SyncLogEntry
from zoomcal.sync.engine import RunReport, SyncEngine
from zoomcal.sync.retry import Retrier


@dataclass
class DemoSetup:
    world: SandboxWorld
    server: BackgroundServer
    ctx: Context
    users: list[dict[str, Any]]
    actor: SandboxActor
    engine: SyncEngine
    presence: PresenceService
    reports: list[RunReport] = field(default_factory=list)
    sync_api_calls: int = 0          # calls zoomcal made (the scripted person's own edits not counted)
    last_status: dict[str, str] = field(default_factory=dict)


PROVIDER_NAMES = {"google": "Google", "graph": "Microsoft 365", "ews": "Exchange"}


def calendar_key(user: dict[str, Any]) -> str:
    """The id of the user's calendar in its sandbox (what the verifier and the scripted person address)."""
    return {"graph": user["graph_calendar_id"], "ews": user["email"]}.get(user.get("provider") or "google",
                                                                         user["google_calendar_id"])


def setup(settings: Settings, user_count: int = len(DEMO_USERS)) -> DemoSetup:
    demo_dir = settings.data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    world = SandboxWorld()
    server = BackgroundServer(world).start()
    demo_settings = settings.model_copy(update={
        "data_dir": demo_dir, "database_url": f"sqlite:///{demo_dir / 'demo.db'}", "vault_keys": new_key_spec("demo"),
        "allow_private_urls": True})   # the Exchange sandbox is on loopback
    ctx = Context.from_settings(demo_settings)
    users = []
    for email, name, tz, provider in DEMO_USERS[:user_count]:
        info = {**world.add_user(email, name, tz), "provider": provider}
        users.append(info)
        add_user(ctx, email, name, actor="demo")
        add_account(ctx, email, "zoom",
                    {"api_base": f"{server.url}/zoom/v2", "token_url": f"{server.url}/zoom/oauth/token"},
                    {"client_id": world.zoom.client_id, "client_secret": world.zoom.client_secret,
                     "account_id": world.zoom.account_id}, info["zoom_user_id"], "Zoom meetings")
        if provider == "ews":
            add_account(ctx, email, "ews", {"url": f"{server.url}/ews/EWS/Exchange.asmx", "auth": "basic"},
                        {"username": email, "password": info["ews_password"]}, email, "Exchange")
        elif provider == "graph":
            add_account(ctx, email, "graph", {"api_base": f"{server.url}/graph/v1.0",
                                              "token_url": f"{server.url}/graph/oauth2/v2.0/token"},
                        {"client_id": world.graph.client_id, "client_secret": world.graph.client_secret,
                         "refresh_token": info["graph_refresh_token"]}, info["graph_calendar_id"], "Outlook")
        else:
            add_account(ctx, email, "google",
                        {"api_base": f"{server.url}/google/calendar/v3", "token_url": f"{server.url}/google/token"},
                        {"client_id": world.google.client_id, "client_secret": world.google.client_secret,
                         "refresh_token": info["google_refresh_token"]}, info["google_calendar_id"],
                        "Work calendar")
    actor = SandboxActor(world, base_url=server.url)
    index = BusyIndex.load(ctx.db)
    presence = PresenceService(ctx, index)

    def follow(change: dict[str, Any]) -> None:
        # the engine's change stream keeps the busy index current, one event at a time
        if change.get("event_id"):
            index.refresh_event(ctx.db, change["user_id"], change["event_id"])

    engine = SyncEngine(ctx.db, retrier=Retrier(max_retries=4, base_delay=0.05, max_delay=2.0), on_event=follow)
    return DemoSetup(world, server, ctx, users, actor, engine, presence)


class CalendarOps:
    """What a person does in their own calendar app, for whichever calendar they use (Google, Outlook on
    Microsoft 365, or Outlook on Exchange)."""

    def __init__(self, demo: DemoSetup, user: dict[str, Any]):
        self.actor, self.user, self.provider = demo.actor, user, user.get("provider") or "google"
        self.key = calendar_key(user)

    async def insert(self, title: str, start: str, end: str, *, tz: str | None = None, location: str = "",
                     description: str = "", show_as: str | None = None, google_type: str | None = None) -> None:
        all_day = len(start) == 10
        if self.provider == "ews":
            await self.actor.ews_insert(self.key, title, start, end, tz=tz, location=location, body=description,
                                        free_busy={"oof": "OOF", "free": "Free"}.get(show_as or "", "Busy"))
            return
        if self.provider == "graph":
            def when(value: str) -> dict[str, str]:
                return {"dateTime": f"{value}T00:00:00" if all_day else value.rstrip("Z"),
                        "timeZone": (tz or "UTC") if all_day else "UTC"}
            body: dict[str, Any] = {"subject": title, "body": {"contentType": "text", "content": description},
                                    "start": when(start), "end": when(end), "isAllDay": all_day}
            if location:
                body["location"] = {"displayName": location}
            if show_as:
                body["showAs"] = show_as
            await self.actor.graph_insert(self.user["email"], **body)
            return
        def when_g(value: str) -> dict[str, str]:
            return {"date": value} if all_day else ({"dateTime": value, "timeZone": tz} if tz else {"dateTime": value})
        extra = {k: v for k, v in (("location", location), ("description", description),
                                   ("eventType", google_type)) if v}
        await self.actor.google_insert(self.key, summary=title, start=when_g(start), end=when_g(end), **extra)

    def find(self, title: str) -> dict[str, Any]:
        return {"ews": self.actor.ews_find, "graph": self.actor.graph_find,
                "google": self.actor.google_find}[self.provider](self.key if self.provider != "graph"
                                                                 else self.user["email"], title)

    async def rename(self, title: str, new_title: str) -> None:
        event = self.find(title)
        if self.provider == "ews":
            await self.actor.ews_update(self.key, event["id"], subject=new_title)
        elif self.provider == "graph":
            await self.actor.graph_patch(self.user["email"], event["id"], subject=new_title)
        else:
            await self.actor.google_patch(self.key, event["id"], summary=new_title)

    def titles(self) -> list[str]:
        if self.provider == "ews":
            return [i["subject"] for i in self.actor.world.ews.items[self.key].values() if not i["all_day"]]
        if self.provider == "graph":
            return [e["subject"] for e in self.actor.world.graph.events[self.key].values()
                    if not e.get("isAllDay")]
        events = self.actor.world.google.calendars[self.key].events.values()
        return [e["summary"] for e in events if e.get("status") != "cancelled" and not e.get("recurringEventId")
                and "dateTime" in e.get("start", {})]


async def seed_now(demo: DemoSetup) -> None:
    """Something happening right now, so presence has work: Ada is in a meeting, Grace is out of office,
    Alan has focus time."""
    now = now_utc()
    start, end = fmt_instant(now - timedelta(minutes=10)), fmt_instant(now + timedelta(minutes=50))
    ada, grace, alan = (demo.users + demo.users[:3])[:3]
    await demo.actor.zoom_create(ada["zoom_user_id"], topic="Quarterly planning", type=2, start_time=start,
                                 duration=60, timezone=ada["timezone"])
    await CalendarOps(demo, grace).insert("Out of office", fmt_instant(now - timedelta(hours=1)),
                                          fmt_instant(now + timedelta(hours=8)), show_as="oof",
                                          google_type="outOfOffice")
    await CalendarOps(demo, alan).insert("Focus: proofs", start, end, show_as="busy", google_type="focusTime")


async def seed(demo: DemoSetup) -> None:
    """Each user starts with meetings on Zoom, plain and Zoom-marked events in the calendar, and one pair
    that already exists on both sides (the calendar event carries the join URL)."""
    await seed_now(demo)
    for i, user in enumerate(demo.users):
        uid, cal = user["zoom_user_id"], CalendarOps(demo, user)
        tz = user["timezone"]
        day = 7 + i
        await demo.actor.zoom_create(uid, topic="Weekly team sync", type=8, start_time=f"2026-12-{day:02d}T09:00:00Z",
                                     duration=30, timezone=tz, agenda="Status round",
                                     recurrence={"type": 2, "weekly_days": "2", "end_times": 8})
        await demo.actor.zoom_create(uid, topic="Customer call", type=2, start_time=f"2026-12-{day + 1:02d}T15:00:00Z",
                                     duration=45, timezone=tz, agenda="Renewal")
        existing = await demo.actor.zoom_create(uid, topic="Board review", type=2,
                                                start_time=f"2026-12-{day + 2:02d}T13:00:00Z", duration=60, timezone=tz)
        await cal.insert("Board review", f"2026-12-{day + 2:02d}T13:00:00Z", f"2026-12-{day + 2:02d}T14:00:00Z",
                         tz=tz, location=existing["join_url"], description=f"Join Zoom Meeting\n{existing['join_url']}")
        await cal.insert("Dentist", f"2026-12-{day:02d}T07:00:00Z", f"2026-12-{day:02d}T08:00:00Z")
        await cal.insert("Offsite", f"2026-12-{day + 3:02d}", f"2026-12-{day + 4:02d}", tz=tz)
        await cal.insert("Design review", f"2026-12-{day + 1:02d}T10:00:00Z", f"2026-12-{day + 1:02d}T11:00:00Z",
                         tz=tz, location="zoom", description="Agenda: v2")


async def scenario(demo: DemoSetup) -> list[str]:
    """Edits on both sides, a recurring-occurrence edit, a cancellation, a conflict, and injected faults."""
    steps = []
    a = demo.actor
    u0, u1 = demo.users[0], demo.users[1 % len(demo.users)]
    weekly = a.zoom_find(u0["zoom_user_id"], "Weekly team sync")
    full = await a.zoom_get(weekly["id"])
    second = full["occurrences"][1]
    moved = second["start_time"].replace("T09:00", "T11:00")
    await a.zoom_patch(weekly["id"], occurrence_id=second["occurrence_id"], start_time=moved, duration=30)
    steps.append("Zoom: moved one occurrence of 'Weekly team sync' by two hours")
    await a.zoom_patch(a.zoom_find(u0["zoom_user_id"], "Customer call")["id"], topic="Customer call (renewal)")
    steps.append("Zoom: renamed 'Customer call'")
    design = a.google_find(u0["google_calendar_id"], "Design review")
    await a.google_patch(u0["google_calendar_id"], design["id"],
                         start={"dateTime": "2026-12-08T14:00:00Z", "timeZone": u0["timezone"]},
                         end={"dateTime": "2026-12-08T15:00:00Z", "timeZone": u0["timezone"]})
    steps.append("Calendar: rescheduled 'Design review'")
    weekly_cal = a.google_find(u0["google_calendar_id"], "Weekly team sync")
    instances = await a.google_instances(u0["google_calendar_id"], weekly_cal["id"])
    await a.google_delete(u0["google_calendar_id"], instances[3]["id"])
    steps.append("Calendar: cancelled the fourth occurrence of 'Weekly team sync'")
    board = a.zoom_find(u1["zoom_user_id"], "Board review")
    await a.zoom_delete(board["id"])
    steps.append("Zoom: cancelled 'Board review'")
    call = a.zoom_find(u1["zoom_user_id"], "Customer call")
    await a.zoom_patch(call["id"], topic="Customer call - Zoom title")
    await CalendarOps(demo, u1).rename("Customer call", "Customer call - calendar title")
    steps.append("Both sides: renamed 'Customer call' differently (conflict)")
    await a.zoom_create(u1["zoom_user_id"], topic="Hiring panel", type=2, start_time="2026-12-15T10:00:00Z",
                        duration=60, timezone=u1["timezone"])
    await a.zoom_create(u0["zoom_user_id"], topic="Interview loop", type=2, start_time="2026-12-16T13:00:00Z",
                        duration=90, timezone=u0["timezone"])
    steps.append("Zoom: new meetings 'Hiring panel' (Outlook user) and 'Interview loop' (Google user)")
    exchange = next((u for u in demo.users if u.get("provider") == "ews"), None)
    if exchange is not None:
        series = a.ews_find(exchange["email"], "Weekly team sync")
        await a.ews_cancel_occurrence(exchange["email"], series["id"], 3)
        await CalendarOps(demo, exchange).rename("Dentist", "Dentist (moved to lunch)")
        steps.append("Outlook on Exchange: cancelled the third occurrence of 'Weekly team sync', renamed 'Dentist'")
    w = demo.world
    w.google_faults.add("429", method="PATCH", retry_after=1)
    w.zoom_faults.add("500", method="GET", path=r"/v2/users/.*/meetings")
    w.google_faults.add("lost_response", method="POST", path=r"/events$")
    w.zoom_faults.add("503", method="PATCH")
    w.graph_faults.add("lost_response", method="POST", path=r"/events$")
    steps.append("Faults armed: Google 429 on PATCH, Zoom 500 on list, lost Google and Outlook insert responses, "
                 "Zoom 503")
    return steps


async def sync_all(demo: DemoSetup, trigger: str) -> list[RunReport]:
    pairs = build_pairs(demo.ctx)
    calls_before = demo.world.api_calls()
    try:
        reports = []
        for pair in pairs:
            report = await demo.engine.run(pair, trigger=trigger)
            demo.last_status[pair.user_email] = f"{report.status}, {report.writes} writes"
            reports.append(report)
    finally:
        await close_pairs(pairs)
        demo.sync_api_calls += demo.world.api_calls() - calls_before
    demo.reports.extend(reports)
    return reports


def agree(demo: DemoSetup, user: dict[str, Any]):
    return compare_user(demo.world, user["zoom_user_id"], calendar_key(user), provider=user.get("provider") or "google")


def presence_of(demo: DemoSetup) -> dict[str, str]:
    return {u["email"]: demo.world.zoom.users[u["zoom_user_id"]]["_presence"] for u in demo.users}


def summary(demo: DemoSetup, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    meetings = events = 0
    mismatches: list[str] = []
    duplicates: list[str] = []
    for user in demo.users:
        agreement = agree(demo, user)
        meetings += agreement.zoom_meetings
        events += agreement.calendar_events
        mismatches += [f"{user['email']}: {m}" for m in agreement.mismatches]
        duplicates += [f"{user['email']}: {d}" for d in agreement.duplicates]
    with demo.ctx.db.session() as s:
        reviews = s.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.status == "open"))
        log_entries = s.scalar(select(func.count()).select_from(SyncLogEntry))
    out = {
        "users": len(demo.users),
        "zoom_meetings": meetings,
        "calendar_events": events,
        "mismatches": len(mismatches),
        "duplicates": len(duplicates),
        "api_calls": demo.sync_api_calls,
        "review_queue": reviews,
        "sync_runs": len(demo.reports),
        "sync_log_entries": log_entries,
        "faults_fired": {**demo.world.zoom_faults.fired,
                         **{f"google_{k}": v for k, v in demo.world.google_faults.fired.items()},
                         **{f"graph_{k}": v for k, v in demo.world.graph_faults.fired.items()}},
        "calendars": {u["email"]: u.get("provider", "google") for u in demo.users},
        "mismatch_details": mismatches,
        "duplicate_details": duplicates,
    }
    out.update(extra or {})
    return out


async def run_once(settings: Settings, console: Console, quiet: bool = False) -> dict[str, Any]:
    demo = setup(settings)
    try:
        def say(text: str) -> None:
            if not quiet:
                console.print(text)

        say(f"[bold]zoomcal demo[/] — sandboxes at {demo.server.url}, {len(demo.users)} demo users")
        await seed(demo)
        reports = await sync_all(demo, "demo:round-1")
        say(f"round 1: {sum(r.writes for r in reports)} writes, status {[r.status for r in reports]}")
        for step in await scenario(demo):
            say(f"  • {step}")
        reports = await sync_all(demo, "demo:round-2")
        say(f"round 2: {sum(r.writes for r in reports)} writes, status {[r.status for r in reports]}")
        demo.world.clear_faults()
        calls_before = demo.sync_api_calls
        reports = await sync_all(demo, "demo:verify")
        resync_writes = sum(r.writes for r in reports)
        say(f"verification round: {resync_writes} writes, {demo.sync_api_calls - calls_before} API calls")
        outcomes = await demo.presence.start()
        for outcome in outcomes:
            say(f"presence {outcome.user}: {outcome.decision.reason}")
        return summary(demo, {"resync_writes": resync_writes, "presence": presence_of(demo),
                              "presence_writes": demo.presence.writes})
    finally:
        await demo.actor.aclose()
        demo.server.stop()
        demo.ctx.db.dispose()


def _table(demo: DemoSetup, round_no: int, last_edit: str) -> Table:
    table = Table(title=f"zoomcal demo — round {round_no} — sandboxes at {demo.server.url}")
    for column in ("user", "calendar", "Zoom meetings", "calendar events", "in sync", "duplicates", "presence",
                   "last run"):
        table.add_column(column)
    presence = presence_of(demo)
    for user in demo.users:
        agreement = agree(demo, user)
        table.add_row(user["email"], PROVIDER_NAMES[user.get("provider") or "google"],
                      str(agreement.zoom_meetings), str(agreement.calendar_events),
                      "yes" if not agreement.mismatches else f"no ({len(agreement.mismatches)})",
                      str(len(agreement.duplicates)), presence[user["email"]],
                      demo.last_status.get(user["email"], "-"))
    table.caption = f"last edit: {last_edit} · zoomcal API calls so far: {demo.sync_api_calls} · Ctrl-C stops"
    return table


async def random_edit(demo: DemoSetup, rng: random.Random) -> str:
    user = rng.choice(demo.users)
    uid = user["zoom_user_id"]
    meetings = demo.world.zoom.user_meetings(uid)
    choice = rng.randrange(4)
    if choice == 0 and meetings:
        meeting = rng.choice(meetings)
        await demo.actor.zoom_patch(meeting["id"], topic=f"{meeting['topic'].split(' #')[0]} #{rng.randrange(100)}")
        return f"{user['email']}: renamed a Zoom meeting"
    if choice == 1:
        hour = rng.randrange(8, 17)
        await demo.actor.zoom_create(uid, topic=f"Ad-hoc {rng.randrange(1000)}", type=2,
                                     start_time=f"2026-12-20T{hour:02d}:00:00Z", duration=30, timezone=user["timezone"])
        return f"{user['email']}: new Zoom meeting"
    titles = CalendarOps(demo, user).titles()
    if choice == 2 and titles:
        title = rng.choice(titles)
        await CalendarOps(demo, user).rename(title, f"{title.split(' *')[0]} *{rng.randrange(100)}")
        return f"{user['email']}: renamed a calendar event"
    if meetings and rng.random() < 0.5:
        meeting = rng.choice([m for m in meetings if m.get("type") == 8] or meetings)
        if meeting.get("type") == 8:
            occ = (await demo.actor.zoom_get(meeting["id"]))["occurrences"][-1]
            if occ["status"] != "deleted":
                await demo.actor.zoom_patch(meeting["id"], occurrence_id=occ["occurrence_id"], duration=45)
                return f"{user['email']}: lengthened the last occurrence of a recurring meeting"
    await CalendarOps(demo, user).insert(f"Focus {rng.randrange(100)}", "2026-12-21T09:00:00Z",
                                         "2026-12-21T10:00:00Z", location="zoom")
    return f"{user['email']}: new calendar event marked for Zoom"


async def run_live(settings: Settings, console: Console, interval: float = 3.0, rounds: int | None = None) -> None:
    demo = setup(settings)
    rng = random.Random(42)
    try:
        await seed(demo)
        last_edit = "seeded demo data"
        with Live(console=console, refresh_per_second=4) as live:
            round_no = 0
            while rounds is None or round_no < rounds:
                round_no += 1
                await sync_all(demo, f"demo:live-{round_no}")
                if round_no == 1:
                    await demo.presence.start()
                else:
                    await demo.presence.run_due()
                live.update(_table(demo, round_no, last_edit))
                await asyncio.sleep(interval)
                last_edit = await random_edit(demo, rng)
    finally:
        await demo.actor.aclose()
        demo.server.stop()
        demo.ctx.db.dispose()

