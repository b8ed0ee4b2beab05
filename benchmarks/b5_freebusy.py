"""B5 — merged free/busy for 1000 users x 50 intervals over a week, and presence writes per change.

* Merged busy of all 1000 users (each user's intervals from the index, buffers applied, then one union):
  median latency (target <= 20 ms), as a ratio to a raw numpy merge of the same, already gathered arrays.
* The same through the store, as a process answers it: one query reads the 1000 people's busy revisions (nothing
  moved, so nothing is reread) before the merge. Ratio against the merge alone (target <= 2.0); the note also gives
  reading every interval from the store per answer, for comparison.
* Presence: one calendar change reaches the presence driver five times (duplicate notifications, a resync);
  Zoom sees at most one write (target: 1).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np

from benchmarks.b4_availability import BASE, WEEK, build_index
from benchmarks.common import Result, p50
from zoomcal.availability.query import UserAvailability, merged_busy


def raw_merge(starts: np.ndarray, ends: np.ndarray) -> int:
    order = np.argsort(starts)
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    return int(np.count_nonzero(s[1:] > reach[:-1]) + 1)


async def _presence_writes() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from sqlalchemy import select

    from conftest import link_sandbox_user, make_context
    from zoomcal.availability import intervals
    from zoomcal.availability.index import BusyIndex
    from zoomcal.domain.content import make_content
    from zoomcal.domain.timeutil import fmt_instant, now_utc
    from zoomcal.presence.service import PresenceService
    from zoomcal.sandbox.world import SandboxWorld
    from zoomcal.store import repo
    from zoomcal.store.models import User

    world = SandboxWorld()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context(world, Path(tmp))
        link_sandbox_user(ctx, world, "p@example.com")
        now = now_utc()
        with ctx.store.transaction() as s:
            user = s.scalars(select(User)).one()
            content = make_content(title="change", start=fmt_instant(now - timedelta(minutes=5)),
                                   end=fmt_instant(now + timedelta(minutes=25)))
            repo.upsert_event(s, user.tenant_id, user.id, "ev", content)
            s.flush()
            intervals.refresh_events(s, user.tenant_id, user.id, {"ev": content}, now - timedelta(days=1),
                                     now + timedelta(days=1))
        service = PresenceService(ctx, BusyIndex.load(ctx.store))
        for i in range(5):
            await service.evaluate(user, now + timedelta(seconds=i))
        ctx.store.dispose()
        return world.zoom_calls.get("writes", 0)


def _through_the_store(index, users: list, lo: int, hi: int) -> tuple[float, float, float]:
    """(merge after the revision check, merge alone, merge after reading everything from the store) in seconds."""
    from datetime import datetime

    from sqlalchemy import insert

    from zoomcal.availability.index import CODE_KINDS, BusyIndex
    from zoomcal.domain.timeutil import UTC
    from zoomcal.store.db import Database
    from zoomcal.store.models import BusyInterval, Event, Tenant, User

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'b5.db'}")
        db.upgrade()
        with db.transaction() as s:
            tenant = Tenant(name="b5")
            s.add(tenant)
            s.flush()
            s.execute(insert(User.__table__), [{"id": u.user_id + 1, "tenant_id": tenant.id,
                                                "email": f"u{u.user_id}@example.com", "name": ""} for u in users])
            events, spans = [], []
            for u in users:
                mine = index.users[u.user_id]
                for start, end, kind, ev in zip(mine.starts.tolist(), mine.ends.tolist(), mine.kinds.tolist(),
                                                mine.events, strict=True):
                    events.append({"id": ev, "tenant_id": tenant.id, "user_id": u.user_id + 1, "content": {},
                                   "content_hash": "", "title": ev, "is_meeting": False})
                    spans.append({"tenant_id": tenant.id, "user_id": u.user_id + 1, "event_id": ev,
                                  "start_at": datetime.fromtimestamp(start, UTC),
                                  "end_at": datetime.fromtimestamp(end, UTC), "kind": CODE_KINDS[kind]})
            s.execute(insert(Event.__table__), events)
            s.execute(insert(BusyInterval.__table__), spans)
        store = db.for_tenant(tenant.id)
        stored = [UserAvailability(u.user_id + 1, buffer_before=300, buffer_after=300) for u in users]
        ids = [u.user_id for u in stored]
        process = BusyIndex()
        warm = process.current(store, ids)
        assert len(merged_busy(warm, stored, lo, hi)[0]) == len(merged_busy(index, users, lo, hi)[0])
        checked = p50(lambda: merged_busy(process.current(store, ids), stored, lo, hi), 50)
        alone = p50(lambda: merged_busy(warm, stored, lo, hi), 50)
        reread = p50(lambda: merged_busy(BusyIndex.load(store), stored, lo, hi), 5)
        db.dispose()
    return checked, alone, reread


def run() -> list[Result]:
    index = build_index()
    users = [UserAvailability(u, buffer_before=300, buffer_after=300) for u in range(1000)]
    lo, hi = BASE + 14 * 86400, BASE + 14 * 86400 + WEEK
    gathered = [index.arrays(u.user_id, lo, hi, 300, 300) for u in users]
    starts = np.concatenate([g[0] for g in gathered])
    ends = np.concatenate([g[1] for g in gathered])
    merged_starts, _ = merged_busy(index, users, lo, hi)
    assert len(merged_starts) == raw_merge(starts, ends)
    ours = p50(lambda: merged_busy(index, users, lo, hi), 50)
    raw = p50(lambda: raw_merge(starts, ends), 50)
    checked, alone, reread = _through_the_store(index, users, lo, hi)
    writes = asyncio.run(_presence_writes())
    return [
        Result("B5 merged free/busy, 1000 users x 50 intervals, one week", ours, raw, ours / raw,
               "value <= 0.020", ours <= 0.020, "s", f"p50; {len(starts)} intervals -> {len(merged_starts)} blocks"),
        Result("B5 merged free/busy through the store: revision check (one query, 1000 people) + merge", checked,
               alone, checked / alone, "<= 2.0", checked / alone <= 2.0, "s",
               f"p50; merge alone {alone * 1e3:.2f} ms; rereading every interval per answer "
               f"{reread * 1e3:.1f} ms ({reread / alone:.0f}x)"),
        Result("B5 presence: Zoom writes for one change seen five times", writes, 1, writes / 1, "<= 1",
               writes <= 1, "writes"),
    ]
