"""B2 — ingest of 100,000 events into the store (the engine's batched record path, SQLite) vs a raw
sqlite3 `executemany` of the same rows in the same run: the event, its link, its sync-log line and its busy
interval (JSON encoded and hashed the same way). Reported as a throughput ratio, zoomcal / raw. Target >= 0.5."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from benchmarks.common import Result, check
from zoomcal.connectors.base import Item
from zoomcal.domain.content import content_hash, make_content
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.store import repo
from zoomcal.store.db import Database
from zoomcal.store.models import Account, BusyInterval, Calendar, User
from zoomcal.sync.planner import EventPlan

EVENTS = 100_000


def _contents():
    """Events spread over the next 150 days, so each one has a busy interval inside the window."""
    base = make_content(title="", timezone="Europe/Paris")
    first = now_utc().replace(hour=0, minute=0, second=0) + timedelta(days=1)
    out = []
    for i in range(EVENTS):
        start = first + timedelta(days=i % 150, hours=i % 24)
        out.append({**base, "title": f"event {i}", "start": fmt_instant(start),
                    "end": fmt_instant(start + timedelta(minutes=45))})
    return out


def _ours(contents, path: Path) -> float:
    from zoomcal.sync.engine import RECORD_BATCH, SideSpec, SyncEngine, SyncPair

    db = Database(f"sqlite:///{path}", migrate=True)
    with db.transaction() as s:
        tenant = repo.get_or_create_tenant(s)
        user = User(tenant_id=tenant.id, email="b@example.com")
        s.add(user)
        s.flush()
        acc = Account(tenant_id=tenant.id, user_id=user.id, provider="google")
        s.add(acc)
        s.flush()
        cals = [Calendar(tenant_id=tenant.id, user_id=user.id, account_id=acc.id, remote_id=r) for r in ("z", "g")]
        s.add_all(cals)
        s.flush()
        ids = (tenant.id, user.id, cals[0].id, cals[1].id)
    from zoomcal.mapping.rules import DEFAULT_RULES

    pair = SyncPair(ids[0], ids[1], SideSpec(ids[2], None), SideSpec(ids[3], None), DEFAULT_RULES)
    plans = [EventPlan(f"ev{i}", "new on B -> track", base=c, seen={"b": Item(f"g{i}", c, etag="e")})
             for i, c in enumerate(contents)]
    engine = SyncEngine(db)
    start = time.perf_counter()
    for i in range(0, len(plans), RECORD_BATCH):
        engine.record_many(pair, plans[i:i + RECORD_BATCH])
    elapsed = time.perf_counter() - start
    with db.session() as s:
        stored = s.scalar(select(func.count()).select_from(BusyInterval))
    assert stored == len(contents), f"{stored} busy intervals for {len(contents)} events"
    db.dispose()
    return elapsed


def _raw(contents, path: Path) -> float:
    conn = sqlite3.connect(path)
    conn.execute("create table events (id text primary key, content text, content_hash text, start_at text, "
                 "end_at text, title text)")
    conn.execute("create table links (id integer primary key, event_id text, calendar_id int, remote_id text, "
                 "etag text, state text, state_hash text)")
    conn.execute("create unique index links_cal_remote on links (calendar_id, remote_id)")
    conn.execute("create table sync_log (id integer primary key, event_id text, message text)")
    conn.execute("create table busy (id integer primary key, user_id int, event_id text, start_at text, "
                 "end_at text, kind text)")
    conn.execute("create index busy_user_start on busy (user_id, start_at)")
    start = time.perf_counter()
    for i in range(0, len(contents), 2000):
        chunk = list(enumerate(contents[i:i + 2000], start=i))
        conn.executemany("insert into events values (?,?,?,?,?,?)",
                         [(f"ev{n}", json.dumps(c), content_hash(c), c["start"], c["end"], c["title"])
                          for n, c in chunk])
        conn.executemany("insert into links (event_id, calendar_id, remote_id, etag, state, state_hash) "
                         "values (?,?,?,?,?,?)",
                         [(f"ev{n}", 2, f"g{n}", "e", json.dumps(c), content_hash(c)) for n, c in chunk])
        conn.executemany("insert into sync_log (event_id, message) values (?,?)",
                         [(f"ev{n}", "new on B -> track") for n, _ in chunk])
        conn.executemany("insert into busy (user_id, event_id, start_at, end_at, kind) values (?,?,?,?,?)",
                         [(1, f"ev{n}", c["start"], c["end"], "busy") for n, c in chunk])
        conn.commit()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def run() -> list[Result]:
    contents = _contents()
    with tempfile.TemporaryDirectory() as tmp:
        ours = _ours(contents, Path(tmp) / "ours.db")
        raw = _raw(contents, Path(tmp) / "raw.db")
    ratio = (EVENTS / ours) / (EVENTS / raw)
    return [Result("B2 ingest 100k events: throughput vs raw executemany", EVENTS / ours, EVENTS / raw, ratio,
                   ">= 0.5", check(ratio, ">= 0.5"), "events/s")]
