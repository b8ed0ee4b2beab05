"""Leases that hold across machines: renewed by a heartbeat while a run works, fenced so that a run which lost
its lease (paused past it, cut off from the database) can no longer write, and free again when a holder dies
without any look at host names or process ids."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from memory_pair import meeting, memory_pair
from zoomcal.connectors.memory.connector import MemoryCalendar, MemoryConnector
from zoomcal.domain.timeutil import now_utc
from zoomcal.store import repo
from zoomcal.store.models import Link, SyncLease
from zoomcal.sync.engine import SyncEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _expire(db, calendar_ids):
    with db.transaction() as s:
        s.execute(update(SyncLease).where(SyncLease.calendar_id.in_(list(calendar_ids)))
                  .values(expires_at=now_utc() - timedelta(seconds=1)))


def test_a_take_over_raises_the_fencing_token_and_the_old_holder_is_refused(any_db):
    pair = memory_pair(any_db, MemoryConnector(), MemoryConnector())
    cals = list(pair.scope.calendars.values())
    with any_db.transaction() as s:
        first = repo.take_leases(s, cals, "m1:run-a", timedelta(seconds=30))
    with any_db.transaction() as s:
        assert repo.check_leases(s, "m1:run-a", first)
        assert repo.renew_leases(s, "m1:run-a", first, timedelta(seconds=30))
    with pytest.raises(repo.LeaseHeld), any_db.transaction() as s:   # held and renewed: nobody else gets it
        repo.take_leases(s, cals, "m2:run-b", timedelta(seconds=30))
    _expire(any_db, cals)   # run-a stopped beating (paused, cut off, killed)
    with any_db.transaction() as s:
        second = repo.take_leases(s, cals, "m2:run-b", timedelta(seconds=30))
    assert all(second[c] > first[c] for c in cals)
    with any_db.transaction() as s:
        assert not repo.check_leases(s, "m1:run-a", first)
        assert not repo.renew_leases(s, "m1:run-a", first, timedelta(seconds=30))
        assert repo.check_leases(s, "m2:run-b", second)
    with any_db.transaction() as s:     # given back: the row stays, so the next token is higher still
        repo.drop_leases(s, cals, "m2:run-b")
    with any_db.transaction() as s:
        third = repo.take_leases(s, cals, "m3:run-c", timedelta(seconds=30))
    assert all(third[c] > second[c] for c in cals)


async def test_a_run_that_lost_its_lease_stops_writing_and_the_next_run_finishes_its_work(any_db):
    """The lease lapses between a remote write and its confirmation (another run took over): the old run's
    confirmation is refused, nothing of it lands in the store, and the next run adopts the item it wrote — one
    item on the other side, not two."""
    zoom, cal = MemoryCalendar(), MemoryCalendar()
    zoom.put(meeting("Standup"))
    pair = memory_pair(any_db, MemoryConnector(zoom), MemoryConnector(cal))
    cals = list(pair.scope.calendars.values())
    taken = []

    def after_write(_side, _write):
        _expire(any_db, cals)
        with any_db.transaction() as s:
            taken.append(repo.take_leases(s, cals, "elsewhere:run", timedelta(seconds=30)))

    report = await SyncEngine(any_db, after_write=after_write).run(pair)
    assert taken and report.status == "failed"
    assert any("took these calendars over" in e for e in report.errors)
    assert len(cal.items) == 1                      # the write happened; its confirmation did not
    with any_db.session() as s:
        pending = s.scalars(select(Link.pending).where(Link.calendar_id == pair.side("b").calendar_id)).all()
    assert pending == ["create"]
    with any_db.transaction() as s:
        repo.drop_leases(s, cals, "elsewhere:run")
    again = await SyncEngine(any_db).run(pair)
    assert again.status == "ok" and len(cal.items) == 1
    with any_db.session() as s:
        assert s.scalars(select(Link.pending).where(Link.calendar_id == pair.side("b").calendar_id)).all() == [None]


async def test_a_long_run_keeps_its_lease_by_heartbeat(sqlite_db):
    """A run slower than its lease's time renews it while it works: nobody can take its calendars meanwhile."""
    zoom = MemoryCalendar()
    zoom.put(meeting("Planning"))
    pair = memory_pair(sqlite_db, MemoryConnector(zoom), MemoryConnector())
    cals = list(pair.scope.calendars.values())
    refused = []

    async def slow_changes(original, cursor, mirror):
        await asyncio.sleep(0.5)          # > the 0.3 s lease: only the heartbeat keeps it
        with pytest.raises(repo.LeaseHeld), sqlite_db.transaction() as s:
            repo.take_leases(s, cals, "intruder:run", timedelta(seconds=30))
        refused.append(True)
        return await original(cursor, mirror)

    connector = pair.side("a").connector
    original = connector.changes
    connector.changes = lambda cursor, mirror: slow_changes(original, cursor, mirror)
    report = await SyncEngine(sqlite_db, lease_ttl=timedelta(seconds=0.3)).run(pair)
    assert refused and report.status == "ok"
