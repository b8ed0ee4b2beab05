"""The sync engine: list both sides, plan (pure), execute with a write-ahead status, advance cursors.

Order of durability, which is what makes a crash at any point repairable by the next run:
1. before a remote write, the event's new base and a `pending` mark on the target link are committed;
2. after the write, the link's new state (what the side now holds) is committed and the mark cleared;
3. only when every planned event was handled are the stored raw listing and the cursors advanced.
A retried create carries the same idempotency key (Google: client-chosen id; Zoom: our marker), so a
create whose answer was lost is found, not repeated.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from zoomcal.availability import intervals
from zoomcal.connectors.base import Connector, Item, WriteResult
from zoomcal.domain.content import MISSING, apply_paths, diff_paths
from zoomcal.domain.timeutil import now_utc
from zoomcal.errors import (
    AuthExpired,
    ConnectorError,
    CursorInvalid,
    InvalidItem,
    NotFound,
    PreconditionFailed,
)
from zoomcal.logging import get_logger
from zoomcal.mapping.rules import FIELD_GROUPS, MappingRules
from zoomcal.metrics import SYNC_ERRORS, SYNC_RUNS, SYNC_WRITES
from zoomcal.store import repo
from zoomcal.store.db import Database
from zoomcal.store.models import Account, Event, Link, ReviewItem, SyncLogEntry, SyncRun
from zoomcal.sync.planner import SIDES, EventPlan, EventRecord, Plan, PlanRules, SideLink, Write, other, plan_sync
from zoomcal.sync.retry import Retrier

log = get_logger("zoomcal.sync")
RECORD_BATCH = 2000
LEASE = timedelta(minutes=30)   # a run holds its calendars at most this long (runs take seconds)


@dataclass
class SideSpec:
    calendar_id: int
    connector: Connector
    account_id: int | None = None
    owns: frozenset[str] = frozenset()     # content fields only this side originates (Zoom: join info)
    label: str = ""


@dataclass
class SyncPair:
    """Side a is the meetings side (Zoom); None for a calendar that only feeds availability (an ICS feed)."""

    tenant_id: int
    user_id: int
    a: SideSpec | None
    b: SideSpec
    rules: MappingRules
    user_email: str = ""

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.user_id}:{self.a.calendar_id if self.a else '-'}:{self.b.calendar_id}"

    def side(self, name: str) -> SideSpec:
        spec = self.a if name == "a" else self.b
        if spec is None:
            raise ValueError(f"this pair has no side {name}")
        return spec

    @property
    def sides(self) -> tuple[str, ...]:
        return ("a", "b") if self.a is not None else ("b",)


class _Mirror:
    """The raw items of one calendar as last listed, indexed by series; changes are kept until saved."""

    def __init__(self, connector: Connector, raws: dict[str, dict[str, Any]]):
        self.connector = connector
        self.raws = raws
        self.series: dict[str, set[str]] = defaultdict(set)
        for rid, raw in raws.items():
            self.series[connector.series_key(raw)].add(rid)
        self.upserts: dict[str, tuple[str, dict[str, Any]]] = {}
        self.deletes: set[str] = set()

    def put(self, raw: dict[str, Any]) -> str:
        rid, series = self.connector.raw_id(raw), self.connector.series_key(raw)
        self.raws[rid] = raw
        self.series[series].add(rid)
        self.upserts[rid] = (series, raw)
        self.deletes.discard(rid)
        return series

    def remove(self, rid: str) -> str | None:
        raw = self.raws.pop(rid, None)
        self.upserts.pop(rid, None)
        self.deletes.add(rid)
        if raw is None:
            return None
        series = self.connector.series_key(raw)
        self.series[series].discard(rid)
        return series

    def replace_series(self, series: str, raws: list[dict[str, Any]]) -> None:
        for rid in list(self.series.get(series, ())):
            self.remove(rid)
        for raw in raws:
            self.put(raw)

    def remove_series(self, series: str) -> None:
        for rid in list(self.series.get(series, ())):
            self.remove(rid)

    def of(self, series: str) -> list[dict[str, Any]]:
        return [self.raws[r] for r in sorted(self.series.get(series, ())) if r in self.raws]


@dataclass
class RunReport:
    run_id: int | None
    status: str = "ok"
    plan: Plan | None = None
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    api_calls: int = 0
    writes: int = 0
    rejected: int = 0
    duration_ms: int = 0


def describe(reason: str, pair: SyncPair) -> str:
    """A planner reason with the sides' names ("new on A -> create on B" -> "new on Zoom -> create on Google")."""
    labels = {"A": (pair.a.label if pair.a else "") or "A", "B": pair.b.label or "B"}
    return re.sub(r"\b[AB]\b", lambda m: labels[m.group(0)], reason)


class SimulatedCrash(Exception):
    """Raised by a test hook between a remote write and its local commit."""


def plan_rules(rules: MappingRules, confirm_deletes: bool = False) -> PlanRules:
    blocked: dict[str, set[str]] = {"a": set(), "b": set()}
    for fields in FIELD_GROUPS.values():
        for field_name in fields:
            for side in SIDES:
                if not rules.flows(field_name, side):
                    blocked[side].add(field_name)
    return PlanRules(winner=rules.wins(), adopt_winner="a",
                     flows={s: frozenset(v) for s, v in blocked.items()},
                     max_delete_share=rules.deletes.max_share, min_delete_items=rules.deletes.min_items,
                     confirm_deletes=confirm_deletes)


def holder_gone(holder: str) -> bool:
    """A lease holder ("host:pid:run") that was a process on this machine which no longer exists."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:   # alive, owned by someone else
        return False
    return False


class SyncEngine:
    def __init__(self, db: Database, retrier: Retrier | None = None,
                 after_write: Callable[[str, Write], None] | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None):
        self.db = db
        self.retrier = retrier or Retrier()
        self.after_write = after_write     # test hook: may raise SimulatedCrash
        self.on_event = on_event           # live view / SSE hook

    # --- one run -------------------------------------------------------------------------------------
    async def run(self, pair: SyncPair, *, trigger: str = "manual", dry_run: bool = False,
                  confirm_deletes: bool = False) -> RunReport:
        started = time.monotonic()
        report = RunReport(run_id=None)
        calendars = [side.calendar_id for side in (pair.a, pair.b) if side is not None]
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if not dry_run:
            try:
                with self.db.transaction() as s:
                    repo.take_leases(s, calendars, holder, LEASE, gone=holder_gone)
                    run = SyncRun(tenant_id=pair.tenant_id, user_id=pair.user_id, trigger=trigger)
                    s.add(run)
                    s.flush()
                    report.run_id = run.id
            except repo.LeaseHeld:   # another process is syncing these calendars right now: never two at once
                report.status = "skipped"
                report.notes.append("another run is syncing these calendars; skipped")
                return report
        try:
            await self._run(pair, report, dry_run, confirm_deletes)
        except AuthExpired as exc:
            report.status = "failed"
            report.errors.append(f"account needs to be linked again: {exc}")
            self._mark_reauth(pair, exc)
        except SimulatedCrash:
            raise
        except ConnectorError as exc:
            report.status = "failed"
            report.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if not dry_run:
                with self.db.transaction() as s:
                    repo.drop_leases(s, calendars, holder)
        report.duration_ms = int((time.monotonic() - started) * 1000)
        SYNC_RUNS.labels(status=report.status).inc()
        if not dry_run:
            self._finish(pair, report)
        return report

    async def _list(self, pair: SyncPair, side: str, report: RunReport, mirrors: dict[str, _Mirror],
                    cursors: dict[str, str | None]) -> dict[str, Item | None]:
        spec = pair.side(side)
        conn = spec.connector
        with self.db.session() as s:
            cursor = repo.load_cursor(s, spec.calendar_id)
            mirror = _Mirror(conn, repo.load_mirror(s, spec.calendar_id))
            linked = {rid for rid, pending in s.execute(select(Link.remote_id, Link.pending).where(
                Link.calendar_id == spec.calendar_id, Link.remote_id.is_not(None))) if pending != "create"}
        try:
            changes = await self.retrier.call(lambda _attempt: conn.changes(cursor, mirror.raws))
        except CursorInvalid:
            report.notes.append(f"{spec.label or side}: change cursor expired -> full resync")
            self._log(pair, report, "resync", f"{spec.label or side}: change cursor expired, listing everything")
            changes = await self.retrier.call(lambda _attempt: conn.changes(None, mirror.raws))
        report.api_calls += changes.api_calls
        affected: set[str] = set()
        for raw in changes.changed:
            affected.add(mirror.put(raw))
        removed = set(changes.removed)
        if changes.present is not None:
            removed |= set(mirror.raws) - changes.present
        for rid in removed:
            affected.add(mirror.remove(rid) or rid)
        listing: dict[str, Item | None] = {}
        for series in affected:
            try:
                listing[series] = conn.normalize(mirror.of(series))
            except InvalidItem as exc:
                report.rejected += 1
                self._log(pair, report, "rejected", f"{spec.label or side} item {series}: {exc}", level="error")
        if changes.present is not None:
            # links name series; a complete listing names raw items: compare series with series
            present_series = {conn.series_key(raw) for rid, raw in mirror.raws.items() if rid in changes.present}
            for rid in linked - present_series:
                listing.setdefault(rid, None)
        mirrors[side] = mirror
        cursors[side] = changes.cursor
        return listing

    def _records(self, pair: SyncPair) -> list[EventRecord]:
        cal = {pair.side(side).calendar_id: side for side in pair.sides}
        with self.db.session() as s:
            links: dict[str, dict[str, SideLink]] = defaultdict(dict)
            for link in s.scalars(select(Link).where(Link.calendar_id.in_(list(cal)))):
                links[link.event_id][cal[link.calendar_id]] = SideLink(
                    link.remote_id, link.etag, link.state_hash, link.state, link.pending)
            out = []
            for ev_id, content in s.execute(select(Event.id, Event.content).where(Event.user_id == pair.user_id)):
                sides = links.get(ev_id)
                if sides:
                    out.append(EventRecord(ev_id, content, sides.get("a"), sides.get("b")))
            return out

    async def _run(self, pair: SyncPair, report: RunReport, dry_run: bool, confirm_deletes: bool) -> None:
        if not dry_run:
            with self.db.transaction() as s:
                avail = pair.rules.availability
                lo, hi = intervals.window(avail.window_past_days, avail.window_future_days)
                if intervals.roll_window(s, pair.tenant_id, pair.user_id, lo, hi):
                    report.notes.append("availability window moved forward for recurring events")
        mirrors: dict[str, _Mirror] = {}
        cursors: dict[str, str | None] = {}
        listing_a = await self._list(pair, "a", report, mirrors, cursors) if pair.a is not None else {}
        listing_b = await self._list(pair, "b", report, mirrors, cursors)
        plan = plan_sync(listing_a, listing_b, self._records(pair), plan_rules(pair.rules, confirm_deletes), pair.key)
        report.plan = plan
        report.counts = plan.counts()
        if dry_run:
            return
        if plan.held_deletes:
            self._hold(pair, report, plan)
        # plans that only record what was seen (new plain events, etag moves) need no write-ahead: batch them
        quiet = [p for p in plan.events if not p.held and not p.writes and not p.reviews and p.base is not None]
        for start in range(0, len(quiet), RECORD_BATCH):
            self.record_many(pair, quiet[start:start + RECORD_BATCH], report.run_id)
        for quiet_plan in quiet:
            self._emit({"event_id": quiet_plan.event_id, "reason": quiet_plan.reason, "user_id": pair.user_id})
        quiet_ids = {id(p) for p in quiet}
        for event_plan in plan.events:
            if event_plan.held or id(event_plan) in quiet_ids:
                continue
            await self._execute(pair, report, event_plan, mirrors)
        with self.db.transaction() as s:
            for side in pair.sides:
                spec = pair.side(side)
                repo.save_mirror(s, spec.calendar_id, mirrors[side].upserts, mirrors[side].deletes)
                repo.save_cursor(s, spec.calendar_id, cursors[side])
        if plan.events:
            self._record_overlaps(pair)
        if report.errors and report.status == "ok":
            report.status = "partial"

    # --- many quiet events at once --------------------------------------------------------------------
    def record_many(self, pair: SyncPair, plans: list[EventPlan], run_id: int | None = None) -> None:
        """Store plans that write nothing remote, in one transaction with executemany-sized statements."""
        if not plans:
            return
        ids = [p.event_id for p in plans]
        cal_of = {side: pair.side(side).calendar_id for side in pair.sides}
        with self.db.transaction() as s:
            existing = set(s.scalars(select(Event.id).where(Event.id.in_(ids))))
            links = {(ev, cal): (lid, rid) for lid, ev, cal, rid in s.execute(
                select(Link.id, Link.event_id, Link.calendar_id, Link.remote_id).where(Link.event_id.in_(ids)))}
            new_events, changed_events = [], []
            new_links, changed_links, dropped_links = [], [], []
            now = now_utc()
            for p in plans:
                row = repo.event_row(pair.tenant_id, pair.user_id, p.event_id, p.base)
                (changed_events if p.event_id in existing else new_events).append(row)
                for side, item in p.seen.items():
                    key = (p.event_id, cal_of[side])
                    if item is None:
                        if key in links:
                            dropped_links.append(links[key][0])
                        continue
                    values = {"remote_id": item.id, "etag": item.etag, "state": item.content,
                              "state_hash": item.hash, "pending": None, "last_seen": now}
                    if key in links:
                        changed_links.append({"id": links[key][0], **values})
                    else:
                        new_links.append({"tenant_id": pair.tenant_id, "event_id": p.event_id,
                                          "calendar_id": cal_of[side], **values})
            # Core statements (plain executemany); the ORM's bulk path costs more than the database here
            if new_events:
                s.execute(insert(Event.__table__), new_events)
            if changed_events:
                s.execute(update(Event), changed_events)
            if dropped_links:
                s.execute(delete(Link).where(Link.id.in_(dropped_links)))
            if changed_links:
                s.execute(update(Link), changed_links)
            if new_links:
                s.execute(insert(Link.__table__), new_links)
            self._refresh_intervals(s, pair, {p.event_id: p.base for p in plans}, new=set(ids) - existing)
            entries = [{"run_id": run_id, "tenant_id": pair.tenant_id, "user_id": pair.user_id, "event_id": p.event_id,
                        "level": "info", "action": "plan", "message": describe(p.reason, pair)}
                       for p in plans if p.reason != "unchanged"]
            if entries:
                s.execute(insert(SyncLogEntry.__table__), entries)

    @staticmethod
    def _refresh_intervals(s, pair: SyncPair, contents: dict[str, dict[str, Any] | None],
                           new: set[str] | frozenset = frozenset()) -> None:
        """Busy intervals follow the event in the same transaction: availability is never behind the store."""
        avail = pair.rules.availability
        lo, hi = intervals.window(avail.window_past_days, avail.window_future_days)
        intervals.refresh_events(s, pair.tenant_id, pair.user_id, contents, lo, hi,
                                 intervals.user_timezone(s, pair.user_id), new)

    # --- one event -----------------------------------------------------------------------------------
    def _record(self, pair: SyncPair, report: RunReport, plan: EventPlan) -> None:
        with self.db.transaction() as s:
            if plan.base is None:
                s.execute(delete(Link).where(Link.event_id == plan.event_id))
                s.execute(delete(Event).where(Event.id == plan.event_id))
                repo.log(s, pair.tenant_id, "forget", describe(plan.reason, pair), run_id=report.run_id,
                         user_id=pair.user_id, event_id=plan.event_id)
                return
            repo.upsert_event(s, pair.tenant_id, pair.user_id, plan.event_id, plan.base)
            s.flush()
            self._refresh_intervals(s, pair, {plan.event_id: plan.base})
            for side, item in plan.seen.items():
                cal_id = pair.side(side).calendar_id
                link = repo.get_link(s, plan.event_id, cal_id)
                if item is None:
                    if link is not None:
                        s.delete(link)
                        s.flush()
                    continue
                if link is None:
                    link = Link(tenant_id=pair.tenant_id, event_id=plan.event_id, calendar_id=cal_id)
                    s.add(link)
                link.remote_id, link.etag, link.state, link.state_hash = item.id, item.etag, item.content, item.hash
                if link.pending == "create":
                    link.pending = None   # the twin of our create turned up: adopted
            s.flush()
            # after this, `pending` says exactly which writes are still owed: the ones this plan makes
            for side in pair.sides:
                cal_id = pair.side(side).calendar_id
                link = repo.get_link(s, plan.event_id, cal_id)
                write = next((w for w in plan.writes if w.side == side), None)
                if write is None:
                    if link is not None and link.remote_id is not None:
                        link.pending = None
                    continue
                if link is None:
                    link = Link(tenant_id=pair.tenant_id, event_id=plan.event_id, calendar_id=cal_id)
                    s.add(link)
                link.pending = write.op
                if write.op == "create" and link.remote_id is None:
                    # where the provider takes our id, record it before the write: a later listing then tells
                    # whether the create happened (and whether somebody deleted it since)
                    link.remote_id = pair.side(side).connector.planned_id(plan.event_id)
            for review in plan.reviews:
                exists = s.scalar(select(ReviewItem.id).where(
                    ReviewItem.event_id == plan.event_id, ReviewItem.field == review.path,
                    ReviewItem.status == "open"))
                if exists is None:
                    s.add(ReviewItem(tenant_id=pair.tenant_id, user_id=pair.user_id, event_id=plan.event_id,
                                     kind="conflict", field=review.path, zoom_value=review.a_value,
                                     calendar_value=review.b_value,
                                     chosen="calendar" if review.chosen == "b" else "zoom"))
            if plan.reason != "unchanged" or plan.writes:
                repo.log(s, pair.tenant_id, "plan", describe(plan.reason, pair), run_id=report.run_id,
                         user_id=pair.user_id, event_id=plan.event_id)

    async def _execute(self, pair: SyncPair, report: RunReport, plan: EventPlan, mirrors: dict[str, _Mirror]):
        self._record(pair, report, plan)
        base = plan.base
        queue = list(plan.writes)
        while queue and base is not None:
            write = queue.pop(0)
            spec = pair.side(write.side)
            conn = spec.connector
            with self.db.session() as s:
                link = repo.get_link(s, plan.event_id, spec.calendar_id)
                remote_id = (link.remote_id if link else None) or write.remote_id
                etag = link.etag if link and link.remote_id else write.etag
            try:
                result = await self._write(conn, write, plan.event_id, base, remote_id, etag, mirrors[write.side])
            except (InvalidItem, PreconditionFailed, NotFound, ConnectorError) as exc:
                if isinstance(exc, AuthExpired):
                    raise
                self._write_failed(pair, report, plan, write, exc)
                continue
            if self.after_write is not None:
                self.after_write(write.side, write)
            report.writes += 1
            SYNC_WRITES.labels(op=write.op, side=spec.label or write.side).inc()
            base = self._confirm(pair, report, plan, write, result, base, queue, mirrors)
        self._emit({"event_id": plan.event_id, "reason": plan.reason, "user_id": pair.user_id})

    async def _write(self, conn: Connector, write: Write, event_id: str, base: dict[str, Any],
                     remote_id: str | None, etag: str | None, mirror: _Mirror) -> WriteResult | None:
        if write.op == "create":
            return await self.retrier.call(
                lambda attempt: conn.create(base, event_id, maybe_exists=write.maybe_exists or attempt > 0))
        if write.op == "update":
            current = mirror.of(remote_id or "")
            return await self.retrier.call(lambda _a: conn.update(remote_id, base, etag, event_id, current))
        await self.retrier.call(lambda _a: conn.delete(remote_id, etag))
        return None

    def _confirm(self, pair: SyncPair, report: RunReport, plan: EventPlan, write: Write,
                 result: WriteResult | None, base: dict[str, Any], queue: list[Write],
                 mirrors: dict[str, _Mirror]) -> dict[str, Any]:
        spec = pair.side(write.side)
        mirror = mirrors[write.side]
        with self.db.transaction() as s:
            link = repo.get_link(s, plan.event_id, spec.calendar_id)
            if result is None:   # delete done
                if link is not None:
                    mirror.remove_series(link.remote_id or "")
                    s.delete(link)
                    s.flush()
                if s.scalar(select(Link.id).where(Link.event_id == plan.event_id)) is None:
                    row = s.get(Event, plan.event_id)
                    if row is not None:
                        s.delete(row)
                repo.log(s, pair.tenant_id, "delete", f"deleted on {spec.label or write.side}", run_id=report.run_id,
                         user_id=pair.user_id, event_id=plan.event_id)
                return base
            report.api_calls += result.api_calls
            if link is None:
                link = Link(tenant_id=pair.tenant_id, event_id=plan.event_id, calendar_id=spec.calendar_id)
                s.add(link)
            link.remote_id, link.etag = result.id, result.etag
            link.state, link.state_hash, link.pending = result.item.content, result.item.hash, None
            mirror.replace_series(result.id, result.raws)
            for note in result.notes:
                repo.log(s, pair.tenant_id, "note", f"{spec.label or write.side}: {note}", run_id=report.run_id,
                         user_id=pair.user_id, event_id=plan.event_id, level="warning")
            repo.log(s, pair.tenant_id, write.op, f"{write.op}d on {spec.label or write.side} ({result.id})",
                     run_id=report.run_id, user_id=pair.user_id, event_id=plan.event_id)
            # fields only this side originates (the meeting's join info) flow into the base, then to the peer
            owned = {p: v for p, v in diff_paths(base, result.item.content).items()
                     if p.split("/", 1)[0] in spec.owns and v != MISSING}
            if owned:
                base = apply_paths(base, owned)
                repo.upsert_event(s, pair.tenant_id, pair.user_id, plan.event_id, base)
                peer = other(write.side)
                peer_link = repo.get_link(s, plan.event_id, pair.side(peer).calendar_id)
                if peer_link is not None and peer_link.remote_id and not any(w.side == peer for w in queue):
                    peer_link.pending = "update"
                    queue.append(Write(peer, "update", peer_link.remote_id, peer_link.etag))
        return base

    def _write_failed(self, pair: SyncPair, report: RunReport, plan: EventPlan, write: Write,
                      exc: ConnectorError) -> None:
        spec = pair.side(write.side)
        SYNC_ERRORS.labels(kind=type(exc).__name__).inc()
        message = f"{write.op} on {spec.label or write.side} failed: {type(exc).__name__}: {exc}"
        with self.db.transaction() as s:
            link = repo.get_link(s, plan.event_id, spec.calendar_id)
            if isinstance(exc, InvalidItem) and link is not None:
                # the provider refuses this item: tell the user, stop retrying until it changes again
                if link.pending == "create":
                    s.delete(link)
                else:
                    link.pending = None
                report.rejected += 1
                message += " (rejected; it will be tried again when the item changes)"
            elif isinstance(exc, NotFound) and write.op == "update" and link is not None:
                link.pending = None   # gone meanwhile: the next listing reports the deletion
            repo.log(s, pair.tenant_id, "error", message, run_id=report.run_id, user_id=pair.user_id,
                     event_id=plan.event_id, level="error")
        report.errors.append(message)
        log.warning("write_failed", event_id=plan.event_id, op=write.op, side=write.side, error=type(exc).__name__)

    def _record_overlaps(self, pair: SyncPair) -> None:
        """Events that overlap (an invitation on top of a meeting) cannot be prevented: record them once."""
        from zoomcal.availability.booking import inbound_conflicts

        lo, hi = intervals.window(0, pair.rules.availability.window_future_days)
        found = inbound_conflicts(self.db, pair.user_id, lo, hi)
        if not found:
            return
        with self.db.transaction() as s:
            known = set(s.scalars(select(ReviewItem.field).where(ReviewItem.user_id == pair.user_id,
                                                                  ReviewItem.kind == "overlap")))
            for c in found:
                key = f"{c['first']['event_id']}|{c['second']['event_id']}"
                if key not in known:
                    known.add(key)
                    s.add(ReviewItem(tenant_id=pair.tenant_id, user_id=pair.user_id, event_id=c["second"]["event_id"],
                                     kind="overlap", field=key, zoom_value=c["first"], calendar_value=c["second"],
                                     chosen="both kept"))

    # --- bookkeeping ---------------------------------------------------------------------------------
    def _hold(self, pair: SyncPair, report: RunReport, plan: Plan) -> None:
        message = (f"{plan.held_deletes} deletions held: more than {int(pair.rules.deletes.max_share * 100)}% "
                   "of the calendar; confirm with `zoomcal sync --confirm-deletes`")
        report.notes.append(message)
        with self.db.transaction() as s:
            exists = s.scalar(select(ReviewItem.id).where(ReviewItem.user_id == pair.user_id,
                                                          ReviewItem.kind == "mass_delete",
                                                          ReviewItem.status == "open"))
            if exists is None:
                s.add(ReviewItem(tenant_id=pair.tenant_id, user_id=pair.user_id, kind="mass_delete",
                                 field="", calendar_value=message, chosen="hold"))
            repo.log(s, pair.tenant_id, "held", message, run_id=report.run_id, user_id=pair.user_id,
                     level="warning")

    def _log(self, pair: SyncPair, report: RunReport, action: str, message: str, level: str = "info") -> None:
        with self.db.transaction() as s:
            repo.log(s, pair.tenant_id, action, message, run_id=report.run_id, user_id=pair.user_id, level=level)

    def _mark_reauth(self, pair: SyncPair, exc: Exception) -> None:
        with self.db.transaction() as s:
            for side in pair.sides:
                account_id = pair.side(side).account_id
                if account_id is not None:
                    account = s.get(Account, account_id)
                    if account is not None:
                        account.status = "reauth"

    def _finish(self, pair: SyncPair, report: RunReport) -> None:
        with self.db.transaction() as s:
            run = s.get(SyncRun, report.run_id)
            if run is None:
                return
            run.status = report.status
            run.counts = {**report.counts, "writes": report.writes, "rejected": report.rejected}
            run.api_calls = report.api_calls
            run.errors = len(report.errors)
            run.duration_ms = report.duration_ms
            run.finished_at = now_utc()
            for err in report.errors:
                if not err.startswith(("create", "update", "delete")):
                    repo.log(s, pair.tenant_id, "error", err, run_id=report.run_id, user_id=pair.user_id,
                             level="error")
        self._emit({"run_id": report.run_id, "status": report.status, "user_id": pair.user_id})

    def _emit(self, payload: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(payload)
