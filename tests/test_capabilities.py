"""Capabilities are obeyed: read-only sides are never written; a daily write cap (Zoom: 100 meeting
creates/updates per user and UTC day) is counted in the store, and writes past it wait for the next day."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from conftest import build_pairs, close_pairs, link_sandbox_user, make_context
from memory_pair import CappedMemory, Clock, ReadOnlyMemory, meeting, memory_pair
from zoomcal.agreement import compare_user
from zoomcal.connectors.base import Item
from zoomcal.connectors.ics.connector import IcsConnector
from zoomcal.connectors.memory.connector import MemoryConnector
from zoomcal.domain.content import make_content
from zoomcal.errors import Transient
from zoomcal.mapping.ical import content_to_calendar
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import Account, SyncLogEntry, WriteQuota
from zoomcal.store.status import SqlStatusStore
from zoomcal.sync import engine as engine_module
from zoomcal.sync.engine import SyncEngine
from zoomcal.sync.planner import PlanRules, plan_sync
from zoomcal.sync.retry import Retrier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def log_lines(db, action=None) -> list[str]:
    with db.session() as s:
        query = select(SyncLogEntry.message).order_by(SyncLogEntry.id)
        if action:
            query = query.where(SyncLogEntry.action == action)
        return list(s.scalars(query))


def titles(conn: MemoryConnector) -> list[str]:
    return sorted(i["content"]["title"] for i in conn.calendar.items.values())


def find(conn: MemoryConnector, title: str) -> dict:
    return next(i for i in conn.calendar.items.values() if i["content"]["title"] == title)


def edit(conn: MemoryConnector, which: str, **changes) -> None:
    item = find(conn, which)
    conn.calendar.put({**item["content"], **changes}, item["id"], marker=item.get("marker"),
                      wants_peer=item.get("wants_peer", True))


# --- read-only sides -----------------------------------------------------------------------------------------

def test_the_planner_plans_no_write_for_a_read_only_side():
    new = Item("z1", make_content(**meeting("New")))
    plan = plan_sync({"z1": new}, {}, [], PlanRules(read_only=frozenset({"b"})))
    assert plan.writes == [] and plan.events[0].reason == "new on A -> create on B; B read-only -> not written"
    assert plan.events[0].seen == {"a": new}                  # recorded all the same
    assert len(plan_sync({"z1": new}, {}, [], PlanRules()).writes) == 1


async def test_a_read_only_side_is_recorded_never_written(sqlite_db):
    a, b = MemoryConnector(), ReadOnlyMemory()
    pair = memory_pair(sqlite_db, a, b, b_label="Feed")
    engine = SyncEngine(sqlite_db)
    a.calendar.put(meeting("From Zoom"))                # wants a counterpart on the read-only side
    b.calendar.put(meeting("From feed", day=11))        # wants a counterpart on the writable side
    report = await engine.run(pair)
    assert report.status == "ok" and not report.errors and report.writes == 1
    assert titles(b) == ["From feed"]                    # untouched (ReadOnlyMemory fails on any write)
    assert titles(a) == ["From Zoom", "From feed"]
    assert "new on Zoom -> create on Feed; Feed read-only -> not written" in log_lines(sqlite_db, "plan")

    edit(a, "From feed", title="Renamed in Zoom")        # would update the feed's item
    a.calendar.remove(find(a, "From Zoom")["id"])
    report = await engine.run(pair)
    assert report.status == "ok" and report.writes == 0 and titles(b) == ["From feed"]
    edit(b, "From feed", title="Renamed in the feed")    # flows the other way as usual
    report = await engine.run(pair)
    assert report.writes == 1 and titles(a) == ["Renamed in the feed"]
    a.calendar.remove(find(a, "Renamed in the feed")["id"])   # a deletion on A is not carried to the feed
    report = await engine.run(pair)
    assert report.status == "ok" and report.writes == 0 and titles(b) == ["Renamed in the feed"]
    assert (await engine.run(pair)).writes == 0


async def test_a_calendar_that_only_feeds_availability_never_writes_to_a_side_it_lacks(sqlite_db):
    b = MemoryConnector()
    pair = memory_pair(sqlite_db, None, b)          # a calendar that does not receive meetings: no side A
    b.calendar.put(meeting("Marked for Zoom"))       # asks for a counterpart all the same
    report = await SyncEngine(sqlite_db).run(pair)
    assert report.status == "ok" and not report.errors and report.writes == 0
    assert titles(b) == ["Marked for Zoom"]


async def test_the_engine_refuses_a_write_to_a_read_only_side_the_planner_let_through(sqlite_db, monkeypatch):
    real = engine_module.plan_rules
    monkeypatch.setattr(engine_module, "plan_rules", lambda rules, confirm, read_only: real(rules, confirm))
    a, b = MemoryConnector(), ReadOnlyMemory()
    pair = memory_pair(sqlite_db, a, b, b_label="Feed")
    a.calendar.put(meeting("From Zoom"))
    report = await SyncEngine(sqlite_db).run(pair)
    assert report.status == "ok" and not report.errors and report.writes == 0
    assert log_lines(sqlite_db, "refused") == ["create on Feed refused: that side is read-only; nothing is "
                                               "written there"]
    assert (await SyncEngine(sqlite_db).run(pair)).writes == 0   # no write is left owed to the feed


@pytest.mark.parametrize("planner_knows", [True, False])
async def test_an_ics_feed_is_never_written(sqlite_db, tmp_path, monkeypatch, planner_knows):
    if not planner_knows:   # the engine's own check alone keeps the feed unwritten
        real = engine_module.plan_rules
        monkeypatch.setattr(engine_module, "plan_rules", lambda rules, confirm, read_only: real(rules, confirm))
    feed = tmp_path / "team.ics"
    feed.write_bytes(content_to_calendar({"offsite@feed": make_content(**meeting("Offsite", day=12))},
                                         marker=False))
    a = MemoryConnector()
    pair = memory_pair(sqlite_db, a, IcsConnector(str(feed), DEFAULT_RULES), b_label="ICS feed")
    a.calendar.put(meeting("Zoom meeting"))
    report = await SyncEngine(sqlite_db).run(pair)
    # the feed connector would refuse a write as an invalid item: none reached it
    assert report.status == "ok" and not report.errors and report.rejected == 0 and report.writes == 0
    assert "Zoom meeting" not in feed.read_text()
    assert titles(a) == ["Zoom meeting"]
    with sqlite_db.session() as s:
        assert not list(s.scalars(select(SyncLogEntry.message).where(SyncLogEntry.level == "error")))
    assert (await SyncEngine(sqlite_db).run(pair)).writes == 0


# --- daily write caps ----------------------------------------------------------------------------------------

def quota(db, account_id: int) -> dict[str, int]:
    with db.session() as s:
        return {q.day: q.used for q in s.scalars(select(WriteQuota).where(WriteQuota.account_id == account_id))}


async def test_writes_past_the_daily_cap_are_deferred_to_the_next_day(sqlite_db):
    clock = Clock(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    a, b = CappedMemory(cap=2), MemoryConnector()
    pair = memory_pair(sqlite_db, a, b)
    engine = SyncEngine(sqlite_db, clock=clock)
    b.calendar.put(meeting("Gone tomorrow", day=20))
    a.calendar.put(meeting("Edited tomorrow", day=21))
    assert (await engine.run(pair)).writes == 2 and quota(sqlite_db, pair.a.account_id) == {"2026-03-01": 1}

    clock.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for i in range(4):
        b.calendar.put(meeting(f"New {i}", day=10 + i))
    b.calendar.remove(find(b, "Gone tomorrow")["id"])        # a delete on the capped side: not counted
    edit(a, "Edited tomorrow", title="Edited today")          # an update on the other side: no cap there
    report = await engine.run(pair)
    assert report.status == "ok" and not report.errors and report.deferred == 2
    assert a.writes == ["create", "create", "create"]        # one yesterday, two today
    assert len(titles(a)) == 3 and "Edited today" in titles(a)   # two new ones made, and the delete happened
    assert "Edited today" in titles(b)
    assert quota(sqlite_db, pair.a.account_id)["2026-03-02"] == 2
    deferred = log_lines(sqlite_db, "deferred")
    assert len(deferred) == 2 and all(
        line == "create on Zoom deferred: the provider's daily limit of 2 creates/updates for this account is "
                "used up for 2026-03-02 (UTC); it stays owed and the first run after 2026-03-03 00:00 UTC makes it"
        for line in deferred)
    assert any("2 write(s) on Zoom deferred" in note for note in report.notes)

    clock.now = datetime(2026, 3, 2, 23, 59, tzinfo=UTC)      # still the same day: still owed, nothing written
    report = await engine.run(pair)
    assert report.deferred == 2 and report.writes == 0 and len(a.writes) == 3

    clock.now = datetime(2026, 3, 3, 0, 1, tzinfo=UTC)        # a new UTC day: the owed creates are made
    report = await engine.run(pair)
    assert report.status == "ok" and report.deferred == 0 and report.writes == 2
    assert titles(a) == ["Edited today", "New 0", "New 1", "New 2", "New 3"]
    assert quota(sqlite_db, pair.a.account_id)["2026-03-03"] == 2
    assert (await engine.run(pair)).writes == 0


async def test_the_count_is_taken_before_the_call_so_a_failed_write_still_counts(sqlite_db):
    class Failing(CappedMemory):
        async def create(self, content, key, maybe_exists=False):
            raise Transient("the answer was lost")

    a, b = Failing(cap=5), MemoryConnector()
    pair = memory_pair(sqlite_db, a, b)
    b.calendar.put(meeting("Call"))
    clock = Clock()
    report = await SyncEngine(sqlite_db, retrier=Retrier(max_retries=0), clock=clock).run(pair)
    assert report.status == "partial"
    assert quota(sqlite_db, pair.a.account_id) == {clock.now.date().isoformat(): 1}   # over-counted, never under


def test_reservations_from_many_workers_never_pass_the_cap(any_db):
    pair = memory_pair(any_db, MemoryConnector(), MemoryConnector())
    ids = pair.tenant_id, pair.a.account_id
    store = SqlStatusStore(any_db)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker():
        for _ in range(6):
            ok = store.reserve_write(ids[0], ids[1], "2026-03-02", 10)
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 10 and len(granted) == 24
    with any_db.session() as s:
        assert s.get(WriteQuota, (ids[1], "2026-03-02")).used == 10
    assert store.reserve_write(ids[0], ids[1], "2026-03-03", 10)     # a new day starts from zero
    store.exhaust_quota(ids[0], ids[1], "2026-03-03", 10)
    assert not store.reserve_write(ids[0], ids[1], "2026-03-03", 10)


# --- the Zoom sandbox and its 100 a day ----------------------------------------------------------------------

async def _app_token(client: httpx.AsyncClient, world) -> dict[str, str]:
    issued = await client.post("/zoom/oauth/token", auth=(world.zoom.client_id, world.zoom.client_secret),
                               data={"grant_type": "account_credentials", "account_id": world.zoom.account_id})
    return {"Authorization": f"Bearer {issued.json()['access_token']}"}


async def test_the_zoom_sandbox_refuses_the_101st_meeting_write_of_a_day_like_zoom(world):
    clock = Clock()
    world.zoom.wall_clock = clock
    user = world.add_user("z@example.com", "Z", "UTC")
    async with httpx.AsyncClient(base_url="http://sandbox", transport=world.transport()) as client:
        headers = await _app_token(client, world)
        path = f"/zoom/v2/users/{user['zoom_user_id']}/meetings"
        body = {"topic": "T", "type": 2, "start_time": "2026-03-10T09:00:00Z", "duration": 30}
        first = await client.post(path, json=body, headers=headers)
        for _ in range(98):
            assert (await client.post(path, json=body, headers=headers)).status_code == 201
        meeting_id = first.json()["id"]
        assert (await client.patch(f"/zoom/v2/meetings/{meeting_id}", json={"topic": "U"},
                                   headers=headers)).status_code == 204       # the 100th: an update counts too
        refused = await client.post(path, json=body, headers=headers)
        assert refused.status_code == 429
        assert refused.json() == {"code": 429, "message": (
            "You have exceeded the daily rate limit (100) of Meeting Create/Update API requests permitted for this "
            "particular user. You may resume these requests at GMT 00:00:00.")}
        assert refused.headers["x-ratelimit-type"] == "Daily-limit" and refused.headers["x-ratelimit-remaining"] == "0"
        assert refused.headers["retry-after"] == "2026-03-03T00:00:00Z"
        assert (await client.patch(f"/zoom/v2/meetings/{meeting_id}", json={"topic": "V"},
                                   headers=headers)).status_code == 429
        assert (await client.delete(f"/zoom/v2/meetings/{meeting_id}", headers=headers)).status_code == 204
        other = world.add_user("y@example.com", "Y", "UTC")           # the limit is per host user
        assert (await client.post(f"/zoom/v2/users/{other['zoom_user_id']}/meetings", json=body,
                                  headers=headers)).status_code == 201
        clock.now += timedelta(days=1)                                 # 00:00 UTC resets it
        assert (await client.post(path, json=body, headers=headers)).status_code == 201
    assert len(world.zoom.meetings) == 100


async def test_a_daily_limit_answer_is_its_own_error_and_is_not_waited_for():
    from zoomcal.connectors.http import error_for
    from zoomcal.errors import DailyLimitReached, RateLimited

    message = ("You have exceeded the daily rate limit (100) of Meeting Create/Update API requests permitted for "
               "this particular user. You may resume these requests at GMT 00:00:00.")
    refused = httpx.Response(429, headers={"X-RateLimit-Type": "Daily-limit", "Retry-After": "2026-03-03T00:00:00Z"},
                             json={"code": 429, "message": message})
    error = error_for(refused, "POST users/u/meetings")
    assert isinstance(error, DailyLimitReached) and error.resets_at == datetime(2026, 3, 3, tzinfo=UTC)
    assert type(error_for(httpx.Response(429, headers={"Retry-After": "2"}), "GET x")) is RateLimited
    calls, slept = [], []

    async def sleep(seconds):
        slept.append(seconds)

    async def write(attempt):
        calls.append(attempt)
        raise error

    with pytest.raises(DailyLimitReached):
        await Retrier(max_retries=4, sleep=sleep).call(write)
    assert calls == [0] and slept == []


class ZoomHarness:
    def __init__(self, world, tmp_path, clock: Clock):
        self.world, self.clock = world, clock
        world.zoom.wall_clock = clock
        self.ctx = make_context(world, tmp_path)
        self.user = link_sandbox_user(self.ctx, world, "cap@example.com", "Cap", "UTC")
        self.actor = SandboxActor(world, transport=world.transport())
        self.slept: list[float] = []

        async def sleep(seconds):
            self.slept.append(seconds)

        self.engine = SyncEngine(self.ctx.store, retrier=Retrier(max_retries=3, sleep=sleep, seed=1), clock=clock)

    async def sync(self, declare_cap: bool = True):
        pairs = build_pairs(self.ctx)
        if not declare_cap:   # an engine that ignored Zoom's limit would meet the sandbox's 429
            zoom = pairs[0].a.connector
            zoom.capabilities = replace(zoom.capabilities, writes_per_day=None)
        try:
            return await self.engine.run(pairs[0])
        finally:
            await close_pairs(self.ctx)

    async def add_calendar_meetings(self, count: int) -> None:
        cal = self.user["google_calendar_id"]
        for i in range(count):
            start = datetime(2026, 4, 1, 8, tzinfo=UTC) + timedelta(hours=i)
            await self.actor.google_insert(cal, summary=f"Meeting {i}", description="#zoom",
                                           start={"dateTime": start.isoformat()},
                                           end={"dateTime": (start + timedelta(minutes=30)).isoformat()})

    def zoom_account(self) -> int:
        with self.ctx.store.session() as s:
            return s.scalars(select(Account.id).where(Account.provider == "zoom")).one()

    def agree(self):
        return compare_user(self.world, self.user["zoom_user_id"], self.user["google_calendar_id"])


@pytest.fixture
def zh(world, tmp_path):
    harness = ZoomHarness(world, tmp_path, Clock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC)))
    yield harness
    harness.ctx.store.dispose()


async def test_zoom_meetings_past_100_a_day_wait_for_the_next_utc_day(zh):
    await zh.add_calendar_meetings(105)
    report = await zh.sync()
    assert report.status == "ok" and not report.errors and report.deferred == 5
    assert len(zh.world.zoom.meetings) == 100 and quota(zh.ctx.store, zh.zoom_account()) == {"2026-03-02": 100}
    assert zh.world.zoom.meeting_writes == {(zh.user["zoom_user_id"], "2026-03-02"): 100}   # never refused
    deferred = log_lines(zh.ctx.store, "deferred")
    assert len(deferred) == 5 and "daily limit of 100 creates/updates" in deferred[0]
    assert "first run after 2026-03-03 00:00 UTC" in deferred[0]
    again = await zh.sync()
    assert again.deferred == 5 and again.writes == 0 and len(zh.world.zoom.meetings) == 100
    zh.clock.now = datetime(2026, 3, 3, 0, 0, 30, tzinfo=UTC)
    report = await zh.sync()
    assert report.status == "ok" and report.deferred == 0
    agreement = zh.agree()
    assert agreement.zoom_meetings == 105 and not agreement.mismatches and not agreement.duplicates
    assert zh.slept == []
    assert (await zh.sync()).writes == 0


@pytest.mark.parametrize("declare_cap", [True, False])
async def test_zooms_own_daily_limit_answer_defers_instead_of_failing_or_sleeping(zh, declare_cap):
    """Zoom counts what we cannot see (other apps, occurrence edits): its 429 defers the rest of the day's writes
    without waiting, whether or not the count in the store knew."""
    zh.world.zoom.meeting_writes[(zh.user["zoom_user_id"], "2026-03-02")] = 98
    await zh.add_calendar_meetings(5)
    report = await zh.sync(declare_cap=declare_cap)
    assert report.status == "ok" and not report.errors and report.deferred == 3
    assert len(zh.world.zoom.meetings) == 2 and zh.slept == []
    deferred = log_lines(zh.ctx.store, "deferred")
    assert len(deferred) == 3 and all("Zoom answered that its daily limit is reached" in line for line in deferred)
    assert "first run after 2026-03-03 00:00 UTC" in deferred[0]
    if declare_cap:   # the store now knows the day is used up, for every process
        assert quota(zh.ctx.store, zh.zoom_account()) == {"2026-03-02": 100}
    zh.clock.now = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
    report = await zh.sync(declare_cap=declare_cap)
    assert report.deferred == 0 and not report.errors
    agreement = zh.agree()
    assert agreement.zoom_meetings == 5 and not agreement.mismatches and not agreement.duplicates
