"""Availability: busy intervals from every event kind, the index, slots, and the booking race."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import build_pairs, close_pairs, link_sandbox_user, make_context
from zoomcal.availability import intervals
from zoomcal.availability.booking import book, inbound_conflicts
from zoomcal.availability.index import BusyIndex, epoch, merge
from zoomcal.availability.query import UserAvailability, common_free, parse_hours, slots, working_windows
from zoomcal.domain.content import make_content
from zoomcal.domain.timeutil import UTC, now_utc
from zoomcal.mapping.google import show_as
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.store import repo
from zoomcal.store.models import AvailabilitySettings, BusyInterval, User
from zoomcal.sync.engine import SyncEngine

LO = datetime(2026, 3, 1, tzinfo=UTC)
HI = datetime(2026, 4, 30, tzinfo=UTC)


def test_recurring_events_block_like_single_ones_with_exceptions():
    weekly = make_content(title="1:1", start="2026-03-02T09:00:00Z", end="2026-03-02T09:30:00Z", timezone="UTC",
                          rrule="FREQ=WEEKLY;COUNT=4", exdates=["2026-03-09T09:00:00Z"],
                          overrides={"2026-03-16T09:00:00Z": {"start": "2026-03-16T13:00:00Z",
                                                              "end": "2026-03-16T14:00:00Z"}})
    spans = intervals.event_intervals(weekly, LO, HI)
    assert [(s.isoformat(), e.isoformat()) for s, e, _ in spans] == [
        ("2026-03-02T09:00:00+00:00", "2026-03-02T09:30:00+00:00"),
        ("2026-03-16T13:00:00+00:00", "2026-03-16T14:00:00+00:00"),
        ("2026-03-23T09:00:00+00:00", "2026-03-23T09:30:00+00:00")]


def test_all_day_blocks_the_users_own_day_and_non_blocking_kinds_do_not():
    offsite = make_content(title="Offsite", start="2026-03-05", end="2026-03-06", all_day=True, show_as="ooo")
    (s, e, kind), = intervals.event_intervals(offsite, LO, HI, "Pacific/Kiritimati")
    assert (s.isoformat(), e.isoformat(), kind) == ("2026-03-04T10:00:00+00:00", "2026-03-05T10:00:00+00:00", "ooo")
    free = make_content(title="x", start="2026-03-05T10:00:00Z", end="2026-03-05T11:00:00Z", show_as="free")
    assert intervals.event_intervals(free, LO, HI) == []


@pytest.mark.parametrize("event,kind", [
    ({"transparency": "transparent"}, "free"),
    ({"eventType": "outOfOffice"}, "ooo"),
    ({"eventType": "focusTime"}, "focus"),
    ({"eventType": "workingLocation"}, "free"),
    ({"attendees": [{"email": "me@x", "self": True, "responseStatus": "declined"}]}, "free"),
    ({"attendees": [{"email": "me@x", "self": True, "responseStatus": "tentative"}]}, "tentative"),
    ({}, "busy"),
])
def test_google_event_kinds_follow_the_mapping_rules(event, kind):
    assert show_as(event, DEFAULT_RULES) == kind


def test_index_queries_and_merge():
    index = BusyIndex()
    base = epoch(datetime(2026, 3, 2, 9, tzinfo=UTC))
    index.set_event(1, "a", [(base, base + 3600, 2)])
    index.set_event(1, "b", [(base + 1800, base + 7200, 4)])
    index.set_event(1, "long", [(base - 86400 * 3, base + 86400, 1)])
    assert [b[3] for b in index.busy(1, base + 3000, base + 3100)] == ["long", "a", "b"]
    assert index.state_at(1, base + 2000) == ("ooo", "b")
    assert index.state_at(1, base + 100_000) == ("free", None)
    assert index.next_boundary(1, base) == base + 1800
    index.set_event(1, "b", [])
    assert index.state_at(1, base + 2000) == ("busy", "a")
    s, e = merge(__import__("numpy").array([5, 1, 2, 20]), __import__("numpy").array([6, 3, 4, 30]))
    assert s.tolist() == [1, 5, 20] and e.tolist() == [4, 6, 30]


def test_working_hours_follow_dst_and_slots_avoid_everyone_busy_plus_buffers():
    berlin = UserAvailability(1, "Europe/Berlin", parse_hours("mon-fri 09:00-17:00"), 600, 600)
    ny = UserAvailability(2, "America/New_York", parse_hours("mon-fri 09:00-17:00"))
    lo, hi = epoch(datetime(2026, 3, 27, tzinfo=UTC)), epoch(datetime(2026, 3, 31, tzinfo=UTC))
    ws, _ = working_windows(berlin, lo, hi)
    hours = [datetime.fromtimestamp(int(x), UTC).hour for x in ws]
    assert hours == [8, 7]               # 09:00 Berlin: Fri 27th in CET (08:00Z), Mon 30th in CEST (07:00Z)
    index = BusyIndex()
    monday_14 = epoch(datetime(2026, 3, 30, 14, tzinfo=UTC))   # 16:00 Berlin, 10:00 New York
    index.set_event(2, "ny-call", [(monday_14, monday_14 + 1800, 2)])
    free = common_free(index, [berlin, ny], epoch(datetime(2026, 3, 30, tzinfo=UTC)),
                       epoch(datetime(2026, 3, 31, tzinfo=UTC)), 1800)
    # overlap of both working days on Mon 30th: 13:00-15:00 UTC; minus the NY call 14:00-14:30
    assert free == [(epoch(datetime(2026, 3, 30, 13, tzinfo=UTC)), monday_14),
                    (monday_14 + 1800, epoch(datetime(2026, 3, 30, 15, tzinfo=UTC)))]
    index.set_event(1, "berlin-1on1", [(monday_14 + 1800, monday_14 + 2400, 2)])   # + 10 min buffers
    free = common_free(index, [berlin, ny], epoch(datetime(2026, 3, 30, tzinfo=UTC)),
                       epoch(datetime(2026, 3, 31, tzinfo=UTC)), 1)
    assert free[-1] == (monday_14 + 3000, epoch(datetime(2026, 3, 30, 15, tzinfo=UTC)))
    assert slots([(0, 3600)], 1800, 900) == [(0, 1800), (900, 2700), (1800, 3600)]


@pytest.fixture
def synced(world, tmp_path, request):
    database_url = None
    if request.param == "postgresql":
        from conftest import _fresh_pg

        database_url = request.getfixturevalue("pg_schema_url")
        _fresh_pg(database_url).dispose()
    ctx = make_context(world, tmp_path, database_url)
    user = link_sandbox_user(ctx, world, "b@example.com", "B", "UTC")
    yield ctx, user
    ctx.store.dispose()


def _future(hours: int) -> datetime:
    return (now_utc() + timedelta(days=2)).replace(hour=0, minute=0, second=0) + timedelta(hours=hours)


@pytest.mark.parametrize("synced", ["sqlite", "postgresql"], indirect=True)
def test_fifty_concurrent_overlapping_bookings_one_wins(synced):
    ctx, _user = synced
    with ctx.store.session() as s:
        user_id = s.scalar(select(User.id))
    results: list = []
    barrier = threading.Barrier(50)

    def attempt(i: int) -> None:
        barrier.wait()
        start = _future(10) + timedelta(minutes=i % 5)      # every attempt overlaps every other one
        results.append(book(ctx.store, user_id, start, start + timedelta(minutes=30), f"race {i}", DEFAULT_RULES))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.booked]
    assert len(results) == 50 and len(winners) == 1
    assert all(r.conflict and r.conflict["event_id"] == winners[0].event_id for r in results if not r.booked)
    with ctx.store.session() as s:
        assert s.scalar(select(__import__("sqlalchemy").func.count()).select_from(BusyInterval)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("synced", ["sqlite"], indirect=True)
async def test_booking_fans_out_through_the_engine_and_blocks(synced, world):
    ctx, user = synced
    with ctx.store.session() as s:
        user_id = s.scalar(select(User.id))
    start = _future(9)
    first = book(ctx.store, user_id, start, start + timedelta(hours=1), "Review", DEFAULT_RULES, zoom=True,
                 attendees=["x@example.com"])
    assert first.booked
    clash = book(ctx.store, user_id, start + timedelta(minutes=30), start + timedelta(hours=2), "Other", DEFAULT_RULES)
    assert not clash.booked and clash.conflict["title"] == "Review"
    pairs = build_pairs(ctx)
    report = await SyncEngine(ctx.store).run(pairs[0])
    await close_pairs(ctx)
    assert report.status == "ok" and report.writes == 2
    meeting = next(iter(world.zoom.meetings.values()))
    event = next(iter(world.google.calendars[user["google_calendar_id"]].events.values()))
    assert meeting["topic"] == "Review" and event["location"] == meeting["join_url"]
    assert meeting["settings"]["meeting_invitees"] == [{"email": "x@example.com"}]     # the booked attendee, both
    assert [a["email"] for a in event["attendees"]] == ["x@example.com"]
    index = BusyIndex.load(ctx.store)
    assert index.state_at(user_id, epoch(start) + 60) == ("busy", first.event_id)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.parametrize("synced", ["sqlite"], indirect=True)
def test_inbound_conflicts_are_listed(synced):
    ctx, _ = synced
    with ctx.store.transaction() as s:
        user = s.scalars(select(User)).one()
        s.add(AvailabilitySettings(user_id=user.id, timezone="UTC"))
        for ev_id, start, end in [("e1", "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"),
                                  ("e2", "2026-12-01T10:30:00Z", "2026-12-01T12:00:00Z"),
                                  ("e3", "2026-12-01T13:00:00Z", "2026-12-01T14:00:00Z")]:
            content = make_content(title=ev_id, start=start, end=end)
            repo.upsert_event(s, user.tenant_id, user.id, ev_id, content)
            s.flush()
            intervals.refresh_events(s, user.tenant_id, user.id, {ev_id: content}, LO.replace(month=11),
                                     HI.replace(year=2027), "UTC")
        user_id = user.id
    found = inbound_conflicts(ctx.store, user_id, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))
    pairs = [(c["first"]["event_id"], c["second"]["event_id"], c["overlap_minutes"]) for c in found]
    assert pairs == [("e1", "e2", 30)]


@pytest.mark.parametrize("synced", ["sqlite"], indirect=True)
def test_the_window_rolls_forward_for_recurring_events(synced):
    ctx, _ = synced
    now = now_utc()
    with ctx.store.transaction() as s:
        user = s.scalars(select(User)).one()
        daily = make_content(title="daily", start="2026-01-05T08:00:00Z", end="2026-01-05T08:15:00Z",
                             rrule="FREQ=DAILY")
        repo.upsert_event(s, user.tenant_id, user.id, "daily", daily)
        s.flush()
        lo, hi = intervals.window(7, 30, now)
        assert intervals.roll_window(s, user.tenant_id, user.id, lo, hi, now)
        first = s.scalar(select(__import__("sqlalchemy").func.max(BusyInterval.end_at)))
        assert not intervals.roll_window(s, user.tenant_id, user.id, lo, hi, now + timedelta(hours=3))
        later = now + timedelta(days=2)
        lo, hi = intervals.window(7, 30, later)
        assert intervals.roll_window(s, user.tenant_id, user.id, lo, hi, later)
        last = s.scalar(select(__import__("sqlalchemy").func.max(BusyInterval.end_at)))
    assert intervals.as_utc(last) - intervals.as_utc(first) == timedelta(days=2)
