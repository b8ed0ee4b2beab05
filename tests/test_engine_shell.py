"""The engine as a shell: its persistence behind the status store, its change stream, and no blocking
database call on the event loop."""

from __future__ import annotations

import ast
import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from memory_pair import meeting, memory_pair
from zoomcal.availability.index import BusyIndex, epoch
from zoomcal.availability.subscribers import BusyIntervals, IndexFollower
from zoomcal.connectors.memory.connector import MemoryConnector
from zoomcal.domain.timeutil import fmt_instant
from zoomcal.store.models import Event, Link
from zoomcal.store.status import SqlStatusStore
from zoomcal.sync.changes import EventChanged, RunFinished
from zoomcal.sync.engine import SyncEngine
from zoomcal.sync.status import StatusStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_the_engine_module_knows_no_database_and_no_availability():
    tree = ast.parse(Path(__import__("zoomcal.sync.engine").sync.engine.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {m for m in imported if m.startswith(("sqlalchemy", "zoomcal.store", "zoomcal.availability"))}


def test_the_sql_store_is_a_status_store(sqlite_db):
    assert isinstance(SqlStatusStore(sqlite_db), StatusStore)


async def test_changes_reach_typed_subscribers_and_on_event_callbacks(sqlite_db):
    a, b = MemoryConnector(), MemoryConnector()
    pair = memory_pair(sqlite_db, a, b)
    legacy_calls: list[dict] = []
    engine = SyncEngine(sqlite_db, on_event=legacy_calls.append)
    typed: list[object] = []
    threads: set[int] = set()

    def follow(change):
        threads.add(threading.get_ident())
        typed.append(change)

    seen_async: list[str] = []

    async def follow_async(change):
        seen_async.append(change.event_id)

    engine.subscribe(follow)
    engine.subscribe(follow_async, only=EventChanged)
    b.calendar.put(meeting("Plain"), wants_peer=False)
    b.calendar.put(meeting("Call", day=11))
    first = await engine.run(pair)
    assert first.status == "ok" and first.writes == 1

    events = [c for c in typed if isinstance(c, EventChanged)]
    assert sorted(c.kind for c in events) == ["recorded", "recorded"]
    assert {c.content["title"] for c in events} == {"Plain", "Call"}
    assert all(c.user_id == pair.user_id and c.tenant_id == pair.tenant_id and c.run_id == first.run_id
               for c in events)
    assert isinstance(typed[-1], RunFinished) and typed[-1].report is first
    assert threading.get_ident() not in threads          # plain subscribers run off the event loop
    assert sorted(seen_async) == sorted(c.event_id for c in events)
    # on_event keeps its dict shapes: one per event, one per run
    assert {c["event_id"] for c in legacy_calls if "event_id" in c} == {c.event_id for c in events}
    assert legacy_calls[-1] == {"run_id": first.run_id, "status": "ok", "user_id": pair.user_id}

    typed.clear()
    call = next(i for i in b.calendar.items.values() if i["content"]["title"] == "Call")
    b.calendar.put({**call["content"], "title": "Call (moved)"}, call["id"])
    plain = next(i for i in b.calendar.items.values() if i["content"]["title"] == "Plain")
    b.calendar.remove(plain["id"])
    await engine.run(pair)
    kinds = {c.content["title"] if c.content else None: c.kind for c in typed if isinstance(c, EventChanged)}
    assert kinds == {"Call (moved)": "changed", None: "forgotten"}


async def test_the_in_memory_busy_index_follows_the_change_stream(sqlite_db):
    b = MemoryConnector()
    pair = memory_pair(sqlite_db, None, b)
    index = BusyIndex.load(sqlite_db)
    engine = SyncEngine(sqlite_db)
    engine.subscribe(IndexFollower(index, sqlite_db), only=EventChanged)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    item = b.calendar.put({"title": "Focus", "start": fmt_instant(start),
                           "end": fmt_instant(start + timedelta(hours=1))}, wants_peer=False)
    await engine.run(pair)
    assert index.state_at(pair.user_id, epoch(start + timedelta(minutes=5)))[0] == "busy"
    b.calendar.remove(item["id"])
    await engine.run(pair)
    assert index.state_at(pair.user_id, epoch(start + timedelta(minutes=5))) == ("free", None)


async def test_busy_intervals_are_written_in_the_same_transaction_as_the_event(sqlite_db):
    """A store hook that fails takes the event down with it: availability is never behind the events. The run
    fails (named, its row closed) rather than the process."""
    class Broken:
        def run_started(self, session, scope):
            return []

        def events_changed(self, session, scope, contents, new):
            raise RuntimeError("availability could not be updated")

    a, b = MemoryConnector(), MemoryConnector()
    pair = memory_pair(sqlite_db, a, b)
    b.calendar.put(meeting("Plain", day=20), wants_peer=False)
    failed = await SyncEngine(SqlStatusStore(sqlite_db, hooks=[BusyIntervals(), Broken()])).run(pair)
    assert failed.status == "failed" and "availability could not be updated" in failed.errors[0]
    with sqlite_db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 0
        assert s.scalar(select(func.count()).select_from(Link)) == 0
    report = await SyncEngine(SqlStatusStore(sqlite_db, hooks=[BusyIntervals()])).run(pair)
    assert report.status == "ok"      # the failed run's lease went with it
    with sqlite_db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 1


class SlowStore(SqlStatusStore):
    """The SQL store with one slow call: it holds its thread until the loop's heartbeat has ticked `ticks`
    times while the call was in progress, or until `patience` seconds passed (then the loop was blocked)."""

    def __init__(self, db, patience: float, ticks: int = 3):
        super().__init__(db, hooks=[BusyIntervals()])
        self.patience = patience
        self.ticks = ticks
        self.in_call = threading.Event()
        self.ticked = threading.Event()
        self.loop_ran_meanwhile: bool | None = None

    def load_records(self, scope):
        self.in_call.set()
        self.loop_ran_meanwhile = self.ticked.wait(self.patience)
        self.in_call.clear()
        return super().load_records(scope)


async def _run_with_heartbeat(engine: SyncEngine, store: SlowStore, pair) -> None:
    done = asyncio.Event()

    async def heartbeat():
        during = 0
        while not done.is_set():
            await asyncio.sleep(0.002)
            if store.in_call.is_set():
                during += 1
                if during >= store.ticks:
                    store.ticked.set()

    beat = asyncio.create_task(heartbeat())
    try:
        report = await engine.run(pair)
    finally:
        done.set()
        await beat
    assert report.status == "ok"


async def test_a_slow_store_call_does_not_stop_the_event_loop(sqlite_db):
    a, b = MemoryConnector(), MemoryConnector()
    pair = memory_pair(sqlite_db, a, b)
    b.calendar.put(meeting("Call"))
    # the store's calls run in worker threads: the heartbeat keeps ticking while one of them is slow
    threaded = SlowStore(sqlite_db, patience=60)
    await _run_with_heartbeat(SyncEngine(threaded), threaded, pair)
    assert threaded.loop_ran_meanwhile is True

    # the control: the same store called on the loop itself blocks the heartbeat until the call gives up
    async def on_the_loop(fn, *args):
        return fn(*args)

    blocking = SlowStore(sqlite_db, patience=0.3)
    await _run_with_heartbeat(SyncEngine(blocking, offload=on_the_loop), blocking, pair)
    assert blocking.loop_ran_meanwhile is False


@pytest.mark.parametrize("what", ["delete", "edit"])
async def test_a_side_not_listed_is_listed_before_anything_there_is_updated_or_deleted(sqlite_db, what):
    """A notification named only the calendar; the meeting side changed too (its notice not in yet). The run
    plans a write there, so it lists that side first and plans as a full run would: the edit is kept."""
    from zoomcal.connectors.memory.connector import MemoryCalendar

    class NoEtags(MemoryConnector):          # as Zoom: updates and deletes take no precondition
        async def update(self, item_id, content, etag, key, current):
            return await super().update(item_id, content, None, key, current)

        async def delete(self, item_id, etag):
            return await super().delete(item_id, None)

    zoom, cal = MemoryCalendar(), MemoryCalendar()
    pair = memory_pair(sqlite_db, NoEtags(zoom), MemoryConnector(cal))
    engine = SyncEngine(SqlStatusStore(sqlite_db, hooks=[BusyIntervals()]))
    raw = zoom.put({"title": "Planning", "start": "2026-03-03T10:00:00Z", "end": "2026-03-03T11:00:00Z"})
    await engine.run(pair)
    twin = next(iter(cal.items))
    zoom.put({**raw["content"], "title": "Z title"}, raw["id"])
    if what == "delete":
        cal.remove(twin)
    else:
        cal.put({**cal.items[twin]["content"], "title": "G title"}, twin)
    report = await engine.run(pair, quiet=frozenset({"a"}))
    reasons = " ".join(p.reason for p in report.plan.events)
    assert ("recreate on B" in reasons) if what == "delete" else ("review queue" in reasons), reasons
    assert [i["content"]["title"] for i in zoom.items.values()] == ["Z title" if what == "delete" else "G title"]
