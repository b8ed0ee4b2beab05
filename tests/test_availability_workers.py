"""Availability across processes: each process holds busy intervals in memory, yet answers as of the last commit
of any process, and holds only the tenants and people it was asked about."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import link_sandbox_user, make_context
from zoomcal.app import accounts, availability, users
from zoomcal.app import sync as app_sync
from zoomcal.app.context import open_services
from zoomcal.app.errors import ConflictError
from zoomcal.availability import intervals
from zoomcal.availability.index import BusyIndex
from zoomcal.domain.content import make_content
from zoomcal.domain.timeutil import UTC, now_utc
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store import repo
from zoomcal.store.db import Database
from zoomcal.store.models import Account, Tenant, User

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def processes(request, world, tmp_path):
    """Two processes on one database: A (say, the web process answering bookings) and B (a worker syncing)."""
    database_url = None
    if request.param == "postgresql":
        from conftest import _fresh_pg

        database_url = request.getfixturevalue("pg_schema_url")
        _fresh_pg(database_url).dispose()
    a = make_context(world, tmp_path, database_url)
    info = link_sandbox_user(a, world, "ada@example.com", "Ada", "UTC")
    b = open_services(a.settings, transport=world.transport()).context("default")
    assert a.services.db is not b.services.db and a.services.db.engine is not b.services.db.engine
    yield a, b, info
    b.services.close()
    a.services.close()


def _weekday_at(hour: int) -> datetime:
    """A working day (Mon-Fri, default working hours 09-17 UTC) a few days ahead, at `hour`:00 UTC."""
    day = (now_utc() + timedelta(days=3)).replace(hour=hour, minute=0, second=0, microsecond=0)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _revision(ctx, email: str) -> int:
    with ctx.store.session() as s:
        return s.scalar(select(User.busy_revision).where(User.email == email))


async def test_an_answer_in_one_process_sees_what_another_process_synced(processes, world):
    a, b, info = processes
    start = _weekday_at(10)
    day_lo, day_hi = start.replace(hour=0), start.replace(hour=23)
    assert availability.busy(a, "ada@example.com", day_lo, day_hi).busy == []
    free_before = availability.slots(a, ["ada@example.com"], 3600, start, start + timedelta(hours=1)).slots
    assert len(free_before) == 1

    # process B syncs a new calendar event of Ada's
    await SandboxActor(world, transport=world.transport()).google_insert(
        info["google_calendar_id"], summary="Dentist", start={"dateTime": start.isoformat()},
        end={"dateTime": (start + timedelta(hours=1)).isoformat()})
    (result,) = await app_sync.run(b, "ada@example.com")
    await b.services.aclose()
    assert result.status == "ok", result.errors

    # A answers from memory, yet its next answers already hold B's commit
    shown = availability.busy(a, "ada@example.com", day_lo, day_hi).busy
    assert [(x["title"], x["kind"]) for x in shown] == [("Dentist", "busy")]
    assert availability.slots(a, ["ada@example.com"], 3600, start, start + timedelta(hours=1)).slots == []
    with pytest.raises(ConflictError) as refused:
        availability.book(a, "ada@example.com", start + timedelta(minutes=30), start + timedelta(hours=2), "Call")
    assert refused.value.details["conflict"]["title"] == "Dentist"

    # B unlinks the calendar: the events only it knew go, their intervals with them, and A sees that too
    with b.store.session() as s:
        google = s.scalar(select(Account.id).where(Account.provider == "google"))
    await accounts.unlink(b, google)
    await b.services.aclose()
    assert availability.busy(a, "ada@example.com", day_lo, day_hi).busy == []


async def test_a_booking_in_one_process_makes_the_same_slot_a_conflict_in_another(processes):
    a, b, _info = processes
    start = _weekday_at(14)
    day_lo, day_hi = start.replace(hour=0), start.replace(hour=23)
    assert availability.busy(a, "ada@example.com", day_lo, day_hi).busy == []     # A holds Ada, with nothing
    assert availability.busy(b, "ada@example.com", day_lo, day_hi).busy == []

    booked = availability.book(b, "ada@example.com", start, start + timedelta(minutes=30), "Intro")
    with pytest.raises(ConflictError) as refused:
        availability.book(a, "ada@example.com", start, start + timedelta(minutes=30), "Intro too")
    assert refused.value.details["conflict"]["event_id"] == booked.event_id
    assert [x["event_id"] for x in availability.busy(a, "ada@example.com", day_lo, day_hi).busy] == [booked.event_id]
    free = availability.slots(a, ["ada@example.com"], 1800, start, start + timedelta(hours=1)).slots
    assert [f["start"] for f in free] == [(start + timedelta(minutes=30)).isoformat()]


async def test_a_process_loads_only_the_tenants_and_people_it_is_asked_about(processes):
    a, b, _info = processes
    with b.services.db.transaction() as s:
        s.add(Tenant(name="other"))
    other_b = b.services.context("other")
    users.add(other_b, "grace@example.com", "Grace")
    start = _weekday_at(11)
    availability.book(other_b, "grace@example.com", start, start + timedelta(hours=1), "Elsewhere")
    assert [x["title"] for x in availability.busy(other_b, "grace@example.com", start, start + timedelta(hours=1)
                                                  ).busy] == ["Elsewhere"]

    assert a.services.busy_index.loaded_tenants() == set()         # nothing loaded at start
    availability.busy(a, "ada@example.com", start, start + timedelta(hours=1))
    availability.slots(a, ["ada@example.com"], 1800, start, start + timedelta(hours=2))
    ada_id = _user_id(a, "ada@example.com")
    assert a.services.busy_index.loaded_tenants() == {a.tenant_id}
    assert set(a.services.busy_index.users) == {ada_id}
    assert b.services.busy_index.loaded_tenants() == {other_b.tenant_id}

    # asked through one tenant's store, another tenant's person is not found: nothing of theirs is loaded or shown
    grace_id = _user_id(other_b, "grace@example.com")
    seen = a.services.busy_index.current(a.store, [grace_id])
    assert seen.users == {} and grace_id not in a.services.busy_index.users


def _user_id(ctx, email: str) -> int:
    with ctx.store.session() as s:
        return s.scalar(select(User.id).where(User.email == email))


async def test_the_revision_moves_only_for_the_person_whose_intervals_changed(processes, world):
    a, b, info = processes
    link_sandbox_user(a, world, "bob@example.com", "Bob", "UTC")
    await app_sync.run(b, "ada@example.com")
    await app_sync.run(b, "bob@example.com")
    await b.services.aclose()
    ada, bob = _revision(a, "ada@example.com"), _revision(a, "bob@example.com")

    start = _weekday_at(15)
    await SandboxActor(world, transport=world.transport()).google_insert(
        info["google_calendar_id"], summary="Gym", start={"dateTime": start.isoformat()},
        end={"dateTime": (start + timedelta(hours=1)).isoformat()})
    await app_sync.run(b, "ada@example.com")
    await b.services.aclose()
    assert (_revision(a, "ada@example.com"), _revision(a, "bob@example.com")) == (ada + 1, bob)

    availability.book(a, "bob@example.com", start, start + timedelta(hours=1), "Standup")
    assert (_revision(a, "ada@example.com"), _revision(a, "bob@example.com")) == (ada + 1, bob + 1)

    await app_sync.run(b, "ada@example.com")           # nothing changed at Google: nothing to reread
    await b.services.aclose()
    assert _revision(a, "ada@example.com") == ada + 1


def test_the_index_rereads_only_people_whose_revision_moved(any_db):
    """Two engines on one database; the index of the first follows writes made through the second."""
    other = Database(any_db.url)
    try:
        with other.transaction() as s:
            tenant = Tenant(name="t")
            s.add(tenant)
            s.flush()
            people = [User(tenant_id=tenant.id, email=f"p{i}@example.com") for i in range(2)]
            s.add_all(people)
            s.flush()
            first, second = (p.id for p in people)
        lo, hi = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)

        def write(user_id: int, event_id: str, start: str, end: str) -> None:
            with other.transaction() as s:
                content = make_content(title=event_id, start=start, end=end)
                repo.upsert_event(s, tenant.id, user_id, event_id, content)
                s.flush()
                intervals.refresh_events(s, tenant.id, user_id, {event_id: content}, lo, hi, "UTC")

        write(first, "a1", "2026-06-02T10:00:00Z", "2026-06-02T11:00:00Z")
        write(second, "b1", "2026-06-02T12:00:00Z", "2026-06-02T13:00:00Z")
        index = BusyIndex()
        view = index.current(any_db, [first, second])
        assert [e for *_x, e in view.busy(first, 0, 2**40)] == ["a1"]
        kept_second = index.users[second]
        revisions = dict(index.revisions)

        write(first, "a2", "2026-06-03T10:00:00Z", "2026-06-03T11:00:00Z")
        view = index.current(any_db, [first, second])
        assert [e for *_x, e in view.busy(first, 0, 2**40)] == ["a1", "a2"]
        assert index.revisions[first] == revisions[first] + 1 and index.revisions[second] == revisions[second]
        assert index.users[second] is kept_second          # not reread: its revision did not move

        with other.transaction() as s:                     # the event is gone: its intervals with it
            intervals.refresh_events(s, tenant.id, first, {"a1": None}, lo, hi, "UTC")
        assert [e for *_x, e in index.current(any_db, [first]).busy(first, 0, 2**40)] == ["a2"]
        assert index.loaded_tenants() == {tenant.id}
    finally:
        other.dispose()
