"""Capabilities are obeyed: read-only sides are never written; the Zoom sandbox refuses meeting writes past 100
a day the way Zoom does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from memory_pair import Clock, ReadOnlyMemory, meeting, memory_pair
from zoomcal.connectors.base import Item
from zoomcal.connectors.ics.connector import IcsConnector
from zoomcal.connectors.memory.connector import MemoryConnector
from zoomcal.domain.content import make_content
from zoomcal.mapping.ical import content_to_calendar
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.store.models import SyncLogEntry
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
