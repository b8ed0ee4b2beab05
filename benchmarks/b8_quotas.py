"""B8 — a day of changes replayed against the vendors' published rate limits.

The sandboxes keep the published limits (Zoom on the Pro plan: 30 Light / 20 Medium / 10 Heavy requests a second for
the whole account, and 100 meeting creates/updates per host user and UTC day; Google: 600 requests per user and
10,000 per project a minute; Graph: 10,000 requests per mailbox in 10 minutes) and count, per user, every request
zoomcal makes, every refusal and every echo write (a PATCH or PUT that left the item as it was, judged by the
sandbox from what it stores, not by zoomcal).

The day: USERS people (200; ZOOMCAL_B8_USERS=1000 runs the full thousand in several minutes), half on Google, half
on Microsoft 365, everyone with Zoom, start with empty calendars and follow a seeded random script of changes made
between 06:00 and 20:00 UTC: Zoom meetings created, renamed, moved, deleted, weekly series created and single
occurrences moved in Zoom; Zoom-marked and plain events created, renamed, moved and deleted in the calendar. Most
people make 0 to 5 changes; HEAVY of them are assistants who reschedule meetings all day from the calendar, past
Zoom's 100 writes a day. zoomcal runs as in production with SQLite: the sandboxes push (Zoom webhooks, Google
channels, Graph subscriptions) to its webhook receiver, which marks people due; the embedded runner serves the marks
one person at a time and runs its periodic jobs, the reconciliation round every RECONCILE_HOURS (not the default 15
minutes: 96 rounds of everyone do not fit the run time; the note gives what they would cost).

Time is simulated. A driven clock stands for the day (today's date: zoomcal counts its Zoom writes per UTC day of
the machine's clock); the sandboxes judge rate windows and UTC days by it, every call zoomcal makes takes LATENCY
of it, zoomcal's waits (Retry-After, back-off) pass on it instead of sleeping, and the runner times its periods and
back-off by it. The people's own edits take none. So the day runs as fast as the machine allows and counts the same
on every machine.

The minimum, computed from the script alone: each change needs one read of the side it was made on to be seen,
plus one write on every side where it must land — a meeting created, edited or deleted on one side: one write on
the other; an event marked for Zoom: the meeting created, and its join information written back into the event
(two); a plain event: none. Writes to Zoom past the host's 100 of the day cannot land today and are left out.
Token requests are not calls (they go to the identity endpoints, not the metered APIs).

Results: (a) refusals zoomcal could have avoided (a refusal that came while the advice of the previous refusal by
the same limit still ran: its Retry-After, or with none, the vendor's exponential back-off), target 0; (b) echo
writes, target 0; (c) calls made in the day / the minimum, target <= 1.1. One person at a time at 50 ms a call
never reaches Zoom's per-second limits, so (a) also counts a shorter rush day of RUSH people at 2 ms a call, whose
reconciliation rounds do.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import Result

USERS = int(os.environ.get("ZOOMCAL_B8_USERS", "200"))    # 1000 runs too, in several minutes
HEAVY = 2                    # assistants rescheduling meetings all day from the calendar
HEAVY_MOVES = 110            # each: past Zoom's 100 meeting writes a day
SEED = 8
LATENCY = 0.05               # simulated seconds per call zoomcal makes
RUSH = (80, 0.002)           # a second day on a fast network (people, seconds a call): Zoom's per-second limits bite
RECONCILE_HOURS = 12.0       # the runner's reconciliation period in the simulated day
TICK = 300.0                 # the clock moves at most this far while nothing is due
GAP = 600.0                  # a person touches an item again only this long after their last change to it
ZOOM_DAILY_WRITES = 100
PUBLIC = "https://zoomcal.bench"

# how many changes an ordinary person makes in the day, and how likely each count is
CHANGES_PER_PERSON = ((0, 35), (1, 30), (2, 18), (3, 10), (5, 7))
# (kind, weight) once the person has something to change; a create when they have nothing yet
KINDS = (("zoom_create", 12), ("calendar_create_zoom", 12), ("calendar_create_plain", 8), ("zoom_series", 4),
         ("rename", 18), ("move", 18), ("delete", 10), ("occurrence", 8), ("plain_edit", 10))
FIRST = (("zoom_create", 40), ("calendar_create_zoom", 35), ("calendar_create_plain", 15), ("zoom_series", 10))


# --- the simulated clock ----------------------------------------------------------------------------------------

class SimClock:
    """Seconds of the simulated day, driven by the benchmark."""

    def __init__(self, day: datetime, at: float = 0.0):
        self.day, self.t = day, at

    def seconds(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.day + timedelta(seconds=self.t)

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def advance_to(self, at: float) -> None:
        self.t = max(self.t, at)

    async def sleep(self, seconds: float) -> None:
        """A wait of zoomcal's: the time passes on the simulated clock, none on the machine's."""
        self.advance(seconds)
        await asyncio.sleep(0)


CALL_KINDS = (   # what a call is, by its path (ids left out)
    (r"/oauth2?/(v2\.0/)?token$|/google/token$", "token"),
    (r"/zoom/v2/users/[^/]+/meetings$", "zoom meetings"),
    (r"/zoom/v2/meetings/[^/]+$", "zoom meeting"),
    (r"/calendar/v3/calendars/[^/]+/events$", "google events"),
    (r"/calendar/v3/calendars/[^/]+/events/watch$", "google watch"),
    (r"/calendar/v3/calendars/[^/]+/events/[^/]+_[^/]+$", "google instance"),
    (r"/calendar/v3/calendars/[^/]+/events/[^/]+$", "google event"),
    (r"/calendarView/delta$", "graph delta"),
    (r"/v1\.0/users/[^/]+/calendars?/[^/]+/events/[^/]+/instances$", "graph instances"),
    (r"/v1\.0/users/[^/]+/calendars?/[^/]+/events/[^/]+$", "graph event"),
    (r"/v1\.0/users/[^/]+/calendars?/[^/]+/events$", "graph events"),
    (r"/v1\.0/\$batch$", "graph batch"),
    (r"/v1\.0/subscriptions", "graph subscriptions"),
)


def call_kind(request: httpx.Request) -> str:
    path = request.url.path
    for pattern, name in CALL_KINDS:
        if re.search(pattern, path):
            occurrence = " occurrence" if "occurrence_id" in request.url.params else ""
            return f"{request.method} {name}{occurrence}"
    return f"{request.method} {path}"


class Latency(httpx.AsyncBaseTransport):
    """zoomcal's way to the sandboxes: every call takes `seconds` of the simulated clock (and is tallied by kind)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: SimClock, seconds: float):
        self.inner, self.clock, self.seconds = inner, clock, seconds
        self.kinds: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.clock.advance(self.seconds)
        self.kinds[call_kind(request)] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- the script ---------------------------------------------------------------------------------------------------

@dataclass
class Item:
    """One of a person's things, as the script knows it."""

    title: str
    meeting: bool                 # on both sides (a Zoom meeting and its calendar event)
    series: bool
    start: datetime
    minutes: int
    origin: str                   # zoom | calendar: where it was created
    last: float                   # when the script last changed it
    alive: bool = True
    renames: int = 0


@dataclass
class Change:
    at: float
    person: int
    side: str                     # zoom | calendar: where the person makes it
    kind: str
    title: str                    # the item's title when the change is made
    new_title: str = ""
    start: datetime | None = None
    minutes: int = 30
    occurrence: int = 0           # which occurrence of a series moves
    writes: int = 0               # the minimum: writes on the other side(s)
    zoom_writes: int = 0          # of which creates/updates of Zoom meetings (the daily limit counts them)


def _pick(rng: random.Random, weights: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([k for k, _ in weights], [w for _, w in weights])[0]


def _start(rng: random.Random, day: datetime) -> datetime:
    return day + timedelta(days=rng.randint(1, 12), hours=rng.randint(7, 17))


def script(users: int = USERS, seed: int = SEED, heavy: int = HEAVY, day: datetime | None = None) -> list[Change]:
    """The day's changes, in order: the same for the same seed."""
    rng = random.Random(seed)
    day = day or datetime(2026, 1, 1, tzinfo=UTC)
    out: list[Change] = []
    for person in range(users):
        assistant = person < heavy
        count = 20 + HEAVY_MOVES if assistant else _pick(rng, CHANGES_PER_PERSON)
        times = sorted(rng.uniform(6 * 3600, 20 * 3600) for _ in range(count))
        items: list[Item] = []
        for n, at in enumerate(times):
            ready = [i for i in items if i.alive and at - i.last >= GAP]
            if assistant:
                kind = "zoom_create" if n < 20 or not ready else "move"
            else:
                kind = _pick(rng, KINDS) if ready else _pick(rng, FIRST)
            change = _change(rng, day, person, n, at, kind, ready, items, assistant)
            if change is not None:
                out.append(change)
    out.sort(key=lambda c: (c.at, c.person))
    return out


def _change(rng: random.Random, day: datetime, person: int, n: int, at: float, kind: str, ready: list[Item],
            items: list[Item], assistant: bool) -> Change | None:
    title = f"p{person:04d} item {n}"
    if kind in ("zoom_create", "zoom_series", "calendar_create_zoom", "calendar_create_plain"):
        zoom_side = kind.startswith("zoom")
        meeting = kind != "calendar_create_plain"
        item = Item(title, meeting, kind == "zoom_series", _start(rng, day), rng.choice((30, 45, 60)),
                    "zoom" if zoom_side else "calendar", at)
        items.append(item)
        writes = 2 if kind == "calendar_create_zoom" else (1 if meeting else 0)
        return Change(at, person, "zoom" if zoom_side else "calendar", kind, title, start=item.start,
                      minutes=item.minutes, writes=writes, zoom_writes=int(kind == "calendar_create_zoom"))
    meetings = [i for i in ready if i.meeting]
    plain = [i for i in ready if not i.meeting]
    if kind == "occurrence":
        pool = [i for i in meetings if i.series]
    elif kind == "plain_edit":
        pool = plain
    elif kind == "move":
        pool = [i for i in meetings if not i.series] + ([] if assistant else plain)
    else:
        pool = meetings + plain
    if not pool:
        return None
    item = rng.choice(pool)
    item.last = at
    side = "calendar" if not item.meeting or assistant else rng.choice(("zoom", "calendar"))
    writes = 1 if item.meeting else 0
    zoom_writes = int(item.meeting and side == "calendar" and kind in ("rename", "move"))
    change = Change(at, person, side, kind, item.title, writes=writes, zoom_writes=zoom_writes)
    if kind == "occurrence":
        change.side, change.zoom_writes, change.occurrence = "zoom", 0, rng.randint(1, 4)
    elif kind in ("rename", "plain_edit"):
        item.renames += 1
        item.title = change.new_title = f"{item.title.split(' r')[0]} r{item.renames}"
        change.kind = "rename"
    elif kind == "move":
        item.start += timedelta(hours=rng.choice((-2, -1, 1, 2, 24)))
        change.start, change.minutes = item.start, item.minutes
    elif kind == "delete":
        item.alive = False
        change.zoom_writes = 0
    return change


# --- the person's hands ---------------------------------------------------------------------------------------------

def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def apply(change: Change, actor: Any, person: dict[str, Any]) -> bool:
    """Make the change through the sandboxes' public APIs, as the person's apps would -> False when its item is
    not where the script expects it."""
    from zoomcal.sandbox.person import CalendarOps

    uid = person["zoom_user_id"]
    ops = CalendarOps(actor, person)
    end = _iso(change.start + timedelta(minutes=change.minutes)) if change.start else ""
    try:
        if change.kind == "zoom_create":
            await actor.zoom_create(uid, topic=change.title, type=2, start_time=_iso(change.start),
                                    duration=change.minutes, timezone="UTC")
        elif change.kind == "zoom_series":
            await actor.zoom_create(uid, topic=change.title, type=8, start_time=_iso(change.start),
                                    duration=change.minutes, timezone="UTC",
                                    recurrence={"type": 2, "weekly_days": str(change.start.isoweekday() % 7 + 1),
                                                "end_times": 6})
        elif change.kind in ("calendar_create_zoom", "calendar_create_plain"):
            await ops.insert(change.title, _iso(change.start), end,
                             location="zoom" if change.kind == "calendar_create_zoom" else "")
        elif change.kind == "occurrence":
            meeting = actor.zoom_find(uid, change.title)
            occurrence = (await actor.zoom_get(meeting["id"]))["occurrences"][change.occurrence]
            moved = datetime.fromisoformat(occurrence["start_time"].replace("Z", "+00:00")) + timedelta(hours=1)
            await actor.zoom_patch(meeting["id"], occurrence_id=occurrence["occurrence_id"], start_time=_iso(moved),
                                   duration=occurrence["duration"])
        elif change.side == "zoom":
            meeting = actor.zoom_find(uid, change.title)
            if change.kind == "rename":
                await actor.zoom_patch(meeting["id"], topic=change.new_title)
            elif change.kind == "move":
                await actor.zoom_patch(meeting["id"], start_time=_iso(change.start))
            else:
                await actor.zoom_delete(meeting["id"])
        elif change.kind == "rename":
            await ops.rename(change.title, change.new_title)
        elif change.kind == "move":
            await ops.move(change.title, _iso(change.start), end)
        else:
            await ops.delete(change.title)
    except (KeyError, IndexError, httpx.HTTPStatusError):
        return False
    return True


def minimum(changes: list[Change]) -> int:
    """The fewest calls the applied changes need: one read each, plus their writes (Zoom's past the host's daily
    limit left out: they cannot land today)."""
    zoom_writes: Counter[int] = Counter()
    total = 0
    for change in changes:
        allowed = min(change.zoom_writes, max(0, ZOOM_DAILY_WRITES - zoom_writes[change.person]))
        zoom_writes[change.person] += change.zoom_writes
        total += 1 + change.writes - (change.zoom_writes - allowed)
    return total


# --- the day ---------------------------------------------------------------------------------------------------------

@dataclass
class Day:
    people: int = 0
    changes: int = 0
    skipped: int = 0
    minimum: int = 0
    calls: dict[str, int] = field(default_factory=dict)         # per vendor
    reconcile_calls: int = 0
    rounds: int = 0
    writing_calls: int = 0                                      # in steps whose syncs wrote something
    reading_calls: int = 0                                      # in steps whose syncs wrote nothing
    refused: int = 0
    avoidable: int = 0
    refusals: Counter[str] = field(default_factory=Counter)    # by limit kind
    echo_writes: int = 0
    echo_where: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)         # sync runs by what they did
    kinds: Counter[str] = field(default_factory=Counter)        # the day's calls by kind
    owed: int = 0                                               # writes still owed at the end (deferred)
    most_zoom_writes: int = 0                                   # meeting creates/updates of one host in the day
    disagreeing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    setup_seconds: float = 0.0
    unfinished: bool = False                                    # stopped by the run budget (an echo loop)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def _requests(world: Any) -> int:
    return sum(m.totals()["requests"] for m in world.meters().values())


def _limit_kind(limit: str) -> str:
    """The kind of a limit, without whose it is ("zoom:meeting-writes:<host>" -> "zoom:meeting-writes")."""
    parts = limit.split(":")
    return ":".join(parts[:2]) if parts[1] in ("meeting-writes", "presence", "mailbox", "user") else limit


async def run_day(users: int = USERS, heavy: int = HEAVY, seed: int = SEED, latency: float = LATENCY,
                  reconcile_hours: float = RECONCILE_HOURS) -> Day:
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from sqlalchemy import func, select

    from conftest import link_sandbox_user, make_context
    from zoomcal.agreement import agreement
    from zoomcal.app import jobs
    from zoomcal.app.runner import EmbeddedRunner, Intervals
    from zoomcal.logging import configure
    from zoomcal.sandbox.actor import SandboxActor
    from zoomcal.sandbox.world import SandboxWorld
    from zoomcal.store.models import Link, SyncRun
    from zoomcal.sync.retry import Retrier
    from zoomcal.web.webhooks import make_app

    configure("ERROR")
    started = time.perf_counter()
    result = Day(people=users)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)   # zoomcal counts writes per UTC day
    clock = SimClock(day, at=-3600.0)          # set up the evening before
    world = SandboxWorld()
    world.enforce_published_limits("pro")
    world.use_clock(clock.seconds, clock.now)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context(world, Path(tmp))
        services = ctx.services
        services.transport = Latency(world.transport(), clock, latency)
        services.retrier = lambda: Retrier(max_retries=services.settings.max_retries, sleep=clock.sleep, seed=seed)
        services.settings.public_url = PUBLIC
        services.settings.zoom_webhook_secret = world.zoom.webhook_secret
        receiver = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(services)), base_url=PUBLIC)

        async def deliver(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
            return await receiver.post(url, headers=headers, content=body)

        for state in (world.zoom, world.google, world.graph):
            state.outbox.deliver = deliver
        world.zoom.webhook_url = f"{PUBLIC}/webhooks/zoom"
        runner = EmbeddedRunner(services, presence=False, clock=clock.seconds,
                                intervals=Intervals(reconcile=reconcile_hours * 3600))
        await runner.step()                    # zoomcal starts (its first reconciliation round finds nobody yet)
        next_round = clock.seconds() + reconcile_hours * 3600
        people = [link_sandbox_user(ctx, world, f"p{i:04d}@example.com", f"Person {i}",
                                    calendar="google" if i % 2 == 0 else "graph") for i in range(users)]
        await jobs.renew_channels(services)    # push channels for every calendar, as linking makes them
        actor = SandboxActor(world, transport=world.transport())
        changes = script(users, seed, heavy, day)
        for meter in world.meters().values():
            meter.reset()
        services.transport.kinds.clear()
        result.setup_seconds = time.perf_counter() - started
        clock.advance_to(0.0)
        applied: list[Change] = []
        queue = list(reversed(changes))
        end = 24 * 3600.0
        budget = 50 * (len(changes) + users)      # sync runs; an echo loop would never end on its own
        while budget > 0:
            started_at = clock.seconds()
            reconciling = started_at >= next_round
            before = _requests(world)
            served = await runner.step()
            budget -= len(served)
            spent = _requests(world) - before
            if reconciling:                    # the runner's own period, mirrored to tell its calls apart
                next_round = started_at + reconcile_hours * 3600
                result.rounds += 1
                result.reconcile_calls += spent
            elif any(r.writes for outcome in served for r in outcome.results):
                result.writing_calls += spent
            else:
                result.reading_calls += spent
            if served:
                continue
            if not queue and started_at >= end:
                break
            clock.advance_to(min(queue[-1].at if queue else end, started_at + TICK, end))
            while queue and queue[-1].at <= clock.seconds():
                change = queue.pop()
                if await apply(change, actor, people[change.person]):
                    applied.append(change)
                else:
                    result.skipped += 1
        result.unfinished = budget <= 0
        result.changes = len(applied)
        result.kinds = Counter({k: v for k, v in services.transport.kinds.items() if not k.endswith(" token")})
        result.minimum = minimum(applied)
        result.most_zoom_writes = max(world.zoom.meeting_writes.values(), default=0)
        for vendor, meter in world.meters().items():
            totals = meter.totals()
            result.calls[vendor] = totals["requests"]
            result.refused += totals["refused"]
            result.avoidable += totals["avoidable"]
            result.echo_writes += totals["echo_writes"]
            result.refusals.update(_limit_kind(r.limit) for r in meter.refusals)
            result.echo_where.update(f"{vendor} {method}" for _at, _user, method, _path in meter.echo_writes)
        with ctx.store.session() as s:
            for run in s.scalars(select(SyncRun)):
                what = "reconciliation" if run.trigger == "reconcile" else "pushed"
                result.runs[f"{what}, {'wrote' if (run.counts or {}).get('writes') else 'read only'}"] += 1
            result.owed = s.scalar(select(func.count()).select_from(Link).where(Link.pending.is_not(None)))
        for person in people:
            found = agreement(actor, person)
            if found.mismatches or found.duplicates:
                result.disagreeing.append(person["email"])
        await actor.aclose()
        await receiver.aclose()
        await services.aclose()
        services.close()
    result.seconds = time.perf_counter() - started
    return result


LISTINGS = ("GET zoom meetings", "GET google events", "GET graph delta")


def run() -> list[Result]:
    day = asyncio.run(run_day())
    rush = asyncio.run(run_day(users=RUSH[0], heavy=0, latency=RUSH[1]))
    ratio = day.total_calls / max(day.minimum, 1)
    avoidable = day.avoidable + rush.avoidable
    scale = (f"{day.people} people ({HEAVY} of them assistants moving meetings past Zoom's 100 writes a day), "
             f"{day.changes} changes ({day.skipped} not applicable), {LATENCY * 1000:.0f} ms a call, reconciliation "
             f"every {RECONCILE_HOURS:g} h; {day.seconds:.0f} s ({day.setup_seconds:.0f} s setting up)")
    writes = sum(n for kind, n in day.kinds.items() if kind.split()[0] in ("POST", "PATCH", "PUT", "DELETE"))
    listings = sum(day.kinds[k] for k in LISTINGS)
    per_round = day.reconcile_calls / max(day.rounds, 1)
    at_default = day.total_calls - day.reconcile_calls + per_round * 96
    calls = (f"minimum {day.changes} reads + {day.minimum - day.changes} writes; zoomcal wrote {writes} times but "
             f"listed {listings} times: each write's own notification brings a re-sync of the calendar written "
             f"(syncs that wrote nothing: {day.reading_calls} calls), Zoom meetings "
             f"are fetched after a listing ({day.kinds['GET zoom meeting']} GETs, recurring ones at every listing); "
             f"syncs that wrote {day.writing_calls} calls, {day.rounds} reconciliation rounds {day.reconcile_calls} "
             f"(at the default 15 min: {at_default:.0f} calls, {at_default / max(day.minimum, 1):.0f}x); "
             f"by vendor {dict(day.calls)}; sync runs {dict(day.runs)}; {day.owed} writes owed to the next day "
             f"(Zoom's daily limit); people not in agreement {len(day.disagreeing)} {day.disagreeing[:5]}"
             f"{'; STOPPED by the run budget' if day.unfinished else ''}")
    return [
        Result("B8 quota refusals zoomcal could have avoided", avoidable, 0, float(avoidable), "<= 0",
               avoidable == 0, "refusals", f"{day.refused} refused in all {dict(day.refusals)}; Zoom meeting "
               f"writes of one host at most {day.most_zoom_writes} (its limit {ZOOM_DAILY_WRITES}); {scale}; "
               f"rush day, {rush.people} people at {RUSH[1] * 1000:g} ms a call: {rush.refused} refused "
               f"{dict(rush.refusals)}, {rush.avoidable} avoidable, {rush.echo_writes} echo writes, people not in "
               f"agreement {len(rush.disagreeing)}, {rush.seconds:.0f} s"),
        Result("B8 echo writes", day.echo_writes, 0, float(day.echo_writes), "<= 0", day.echo_writes == 0, "writes",
               f"{dict(day.echo_where)}" if day.echo_writes else ""),
        Result("B8 calls vs minimum", day.total_calls, day.minimum, ratio, "<= 1.1", ratio <= 1.1, "calls", calls),
    ]
