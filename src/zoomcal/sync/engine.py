"""The sync engine: list both sides, plan (pure), execute with a write-ahead status, advance cursors.

Order of durability, which is what makes a crash at any point repairable by the next run:
1. before a remote write, the event's new base and a `pending` mark on the target link are committed;
2. after the write, the link's new state (what the side now holds) is committed and the mark cleared;
3. only when every planned event was handled are the stored raw listing and the cursors advanced.
A retried create carries the same idempotency key (Google: client-chosen id; Zoom: our marker), so a
create whose answer was lost is found, not repeated.

The engine is a shell around the pure planner: what it remembers goes through a `StatusStore`
(`zoomcal.sync.status`; each call one durable step, run in a worker thread so the event loop never waits on
the database), and what changed goes out on its change stream (`zoomcal.sync.changes`) to subscribers such as
overlap detection, the in-memory busy index and presence. It obeys what a side declares: a read-only side is
never written, and a side with a daily write cap has each create/update counted in the store before the call;
when the cap is reached the write is deferred (its `pending` mark stays) to the first run of the next UTC day.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from zoomcal.connectors.base import Connector, Item, WriteResult
from zoomcal.domain.content import MISSING, apply_paths, diff_paths
from zoomcal.domain.timeutil import now_utc
from zoomcal.errors import (
    AuthExpired,
    ConnectorError,
    CursorInvalid,
    DailyLimitReached,
    InvalidItem,
    NotFound,
    RateLimited,
    Transient,
)
from zoomcal.logging import get_logger
from zoomcal.mapping.rules import FIELD_GROUPS, MappingRules
from zoomcal.metrics import SYNC_ERRORS, SYNC_RUNS, SYNC_WRITES
from zoomcal.sync.changes import Change, ChangeStream, EventChanged, RunFinished, Subscriber, legacy
from zoomcal.sync.planner import SIDES, EventPlan, Plan, PlanRules, Write, other, plan_sync
from zoomcal.sync.retry import Retrier
from zoomcal.sync.status import (
    Confirmation,
    Confirmed,
    Lease,
    LeaseHeld,
    LeaseLost,
    LogLine,
    PairScope,
    RunSummary,
    StatusStore,
)
from zoomcal.sync.wiring import standard

log = get_logger("zoomcal.sync")
RECORD_BATCH = 2000
DOWN_AFTER = 3          # writes to one side failing in a row (after their retries) before the run stops writing there
# a run holds its calendars this long past its last heartbeat (every third of it): a process that died, on any
# machine, frees them within this time; one that was paused past it finds its writes refused (the fencing token)
LEASE = timedelta(seconds=45)
T = TypeVar("T")


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

    @property
    def scope(self) -> PairScope:
        return PairScope(self.tenant_id, self.user_id, {s: self.side(s).calendar_id for s in self.sides},
                         {s: self.side(s).label for s in self.sides}, self.rules)

    @property
    def read_only(self) -> frozenset[str]:
        """Sides never written: a read-only source, or no side at all."""
        return frozenset(s for s in SIDES if s not in self.sides or not writable(self.side(s)))


def writable(spec: SideSpec) -> bool:
    return getattr(spec.connector, "capabilities", None) is None or spec.connector.capabilities.writable


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
    deferred: int = 0          # creates/updates left owed for a later run (a daily write cap was reached)
    duration_ms: int = 0


def describe(reason: str, pair: SyncPair) -> str:
    """A planner reason with the sides' names ("new on A -> create on B" -> "new on Zoom -> create on Google")."""
    return pair.scope.describe(reason)


class SimulatedCrash(Exception):
    """Raised by a test hook between a remote write and its local commit."""


def plan_rules(rules: MappingRules, confirm_deletes: bool = False, read_only: Iterable[str] = ()) -> PlanRules:
    blocked: dict[str, set[str]] = {"a": set(), "b": set()}
    for fields in FIELD_GROUPS.values():
        for field_name in fields:
            for side in SIDES:
                if not rules.flows(field_name, side):
                    blocked[side].add(field_name)
    return PlanRules(winner=rules.wins(), adopt_winner="a",
                     flows={s: frozenset(v) for s, v in blocked.items()},
                     max_delete_share=rules.deletes.max_share, min_delete_items=rules.deletes.min_items,
                     confirm_deletes=confirm_deletes, read_only=frozenset(read_only))


@dataclass
class _Run:
    """One run's working state."""

    pair: SyncPair
    scope: PairScope
    report: RunReport
    mirrors: dict[str, _Mirror] = field(default_factory=dict)
    cursors: dict[str, str | None] = field(default_factory=dict)
    limited: dict[str, tuple[datetime, str]] = field(default_factory=dict)   # side -> (lifts at, why)
    deferred: dict[str, int] = field(default_factory=dict)                   # side -> writes deferred
    quiet: frozenset[str] = frozenset()                       # sides not listed this run (nothing says they changed)
    failing: dict[str, int] = field(default_factory=dict)     # side -> writes failed in a row (transport, 429)
    left: dict[str, int] = field(default_factory=dict)        # side -> writes not tried once it stopped answering


class SyncEngine:
    def __init__(self, store: StatusStore | Any, retrier: Retrier | None = None,
                 after_write: Callable[[str, Write], None] | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None, *,
                 clock: Callable[[], datetime] = now_utc,
                 offload: Callable[..., Awaitable[Any]] = asyncio.to_thread, lease_ttl: timedelta = LEASE):
        """`store`: a StatusStore, or a `Database` (the SQL store with availability wired in). `on_event` gets
        each change as a dict (use `subscribe` for typed changes); `clock` says which UTC day write caps count
        in; `offload` runs each blocking store call (a worker thread)."""
        self.changes = ChangeStream()
        if isinstance(store, StatusStore):
            self.db, self.store = None, store
        else:
            self.db = store
            self.store, subscribers = standard(store)
            for subscriber, only in subscribers:
                self.changes.subscribe(subscriber, only=only)
        self.retrier = retrier or Retrier()
        self.after_write = after_write     # test hook: may raise SimulatedCrash
        self.on_event = on_event
        if on_event is not None:
            self.changes.subscribe(legacy(on_event))
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.offload = offload

    def subscribe(self, subscriber: Subscriber, only: type[Change] | tuple[type[Change], ...] | None = None):
        """Receive the engine's changes (EventChanged, RunFinished); returns a function that unsubscribes."""
        return self.changes.subscribe(subscriber, only=only)

    async def _do(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.offload(fn, *args)

    async def _heartbeat(self, lease: Lease) -> None:
        """Renew the run's lease every third of its time; a lost lease is found by the next fenced write."""
        while True:
            await asyncio.sleep(self.lease_ttl.total_seconds() / 3)
            try:
                if not await self._do(self.store.renew_lease, lease, self.lease_ttl):
                    return
            except Exception:   # noqa: BLE001 — a missed beat is retried; the fencing token keeps writes safe
                continue

    # --- one run -------------------------------------------------------------------------------------
    async def run(self, pair: SyncPair, *, trigger: str = "manual", dry_run: bool = False,
                  confirm_deletes: bool = False, quiet: frozenset[str] = frozenset()) -> RunReport:
        """One run of the pair. Sides in `quiet` are not listed: nothing says they changed (a notification named
        only the other side), so they count as unchanged since their last listing; the writes they need are made."""
        started = time.monotonic()
        report = RunReport(run_id=None)
        run = _Run(pair, pair.scope, report, quiet=quiet)
        calendars = list(run.scope.calendars.values())
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        heartbeat: asyncio.Task | None = None
        if not dry_run:
            try:
                report.run_id, notes, lease = await self._do(self.store.begin_run, run.scope, trigger, holder,
                                                             self.lease_ttl)
            except LeaseHeld:   # another process is syncing these calendars right now: never two at once
                report.status = "skipped"
                report.notes.append("another run is syncing these calendars; skipped")
                return report
            report.notes.extend(notes)
            run.scope = replace(run.scope, lease=lease)
            heartbeat = asyncio.create_task(self._heartbeat(lease))
        try:
            await self._run(run, dry_run, confirm_deletes)
        except LeaseLost:
            report.status = "failed"
            report.errors.append("stopped: another run took these calendars over (this run's lease lapsed); "
                                 "what it had not confirmed is finished by the next run")
        except AuthExpired as exc:
            report.status = "failed"
            report.errors.append(f"account needs to be linked again: {exc}")
            accounts = [pair.side(s).account_id for s in pair.sides if pair.side(s).account_id is not None]
            await self._do(self.store.mark_reauth, accounts)
        except SimulatedCrash:
            raise
        except ConnectorError as exc:
            report.status = "failed"
            report.errors.append(f"{type(exc).__name__}: {exc} ({self._where(run)})")
        except Exception as exc:   # noqa: BLE001 — one pair's surprise fails that pair; the others still run
            report.status = "failed"
            report.errors.append(f"unexpected {type(exc).__name__}: {str(exc)[:300]} ({self._where(run)})")
            log.exception("run_failed_unexpectedly", calendars=self._where(run))
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            if not dry_run:
                await self._do(self.store.end_run, calendars, holder)
        report.duration_ms = int((time.monotonic() - started) * 1000)
        SYNC_RUNS.labels(status=report.status).inc()
        if not dry_run:
            counts = {**report.counts, "writes": report.writes, "rejected": report.rejected,
                      "deferred": report.deferred}
            await self._do(self.store.finish_run, report.run_id, run.scope,
                           RunSummary(report.status, counts, report.api_calls, report.errors, report.duration_ms))
            await self.changes.publish([RunFinished(run.scope, report)])
        return report

    async def _list(self, run: _Run, side: str) -> dict[str, Item | None]:
        spec = run.pair.side(side)
        conn = spec.connector
        label = spec.label or side
        state = await self._do(self.store.load_side, spec.calendar_id)
        mirror = _Mirror(conn, state.raws)
        if side in run.quiet:             # as an incremental listing that found nothing new: no call at all
            run.mirrors[side], run.cursors[side] = mirror, state.cursor
            return {}
        try:
            changes = await self.retrier.call(lambda _attempt: conn.changes(state.cursor, mirror.raws))
        except CursorInvalid:
            run.report.notes.append(f"{label}: change cursor expired -> full resync")
            await self._log(run, [LogLine("resync", f"{label}: change cursor expired, listing everything")])
            changes = await self.retrier.call(lambda _attempt: conn.changes(None, mirror.raws))
        run.report.api_calls += changes.api_calls
        if changes.notes:
            run.report.notes.extend(f"{label}: {note}" for note in changes.notes)
            await self._log(run, [LogLine("listing", f"{label}: {note}", level="warning") for note in changes.notes])
        affected: set[str] = set()
        rejected = []
        for raw in changes.changed:
            try:
                affected.add(mirror.put(raw))
            except Exception as exc:   # noqa: BLE001 — an item without the fields every item has: this item only
                run.report.rejected += 1
                rejected.append(LogLine("rejected", f"{label}: an item that cannot be read: {type(exc).__name__}: "
                                        f"{str(exc)[:200]}", level="error"))
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
                run.report.rejected += 1
                rejected.append(LogLine("rejected", f"{label} item {series}: {exc}", level="error"))
            except Exception as exc:   # noqa: BLE001 — whatever one item trips on rejects that item alone
                run.report.rejected += 1
                rejected.append(LogLine("rejected", f"{label} item {series}: unexpected {type(exc).__name__}: "
                                        f"{str(exc)[:200]}", level="error"))
                log.exception("normalize_failed", calendar=label, item=series)
        await self._log(run, rejected)
        if changes.present is not None:
            # links name series; a complete listing names raw items: compare series with series
            present_series = {conn.series_key(raw) for rid, raw in mirror.raws.items() if rid in changes.present}
            for rid in state.linked - present_series:
                listing.setdefault(rid, None)
        run.mirrors[side] = mirror
        run.cursors[side] = changes.cursor
        return listing

    async def _run(self, run: _Run, dry_run: bool, confirm_deletes: bool) -> None:
        pair, report = run.pair, run.report
        listing_a = await self._list(run, "a") if pair.a is not None else {}
        listing_b = await self._list(run, "b")
        records = await self._do(self.store.load_records, run.scope)
        plan = plan_sync(listing_a, listing_b, records, plan_rules(pair.rules, confirm_deletes, pair.read_only),
                         pair.key)
        unlisted = {w.side for p in plan.events for w in p.writes if w.side in run.quiet and w.op != "create"}
        if unlisted:
            # an update or a delete on a side that was not listed: it may have changed too (and Zoom takes no
            # precondition), so it is listed and the plan made again from both sides as they are
            run.quiet = run.quiet - unlisted
            listing_a = await self._list(run, "a") if "a" in unlisted else listing_a
            listing_b = await self._list(run, "b") if "b" in unlisted else listing_b
            plan = plan_sync(listing_a, listing_b, records, plan_rules(pair.rules, confirm_deletes, pair.read_only),
                             pair.key)
        report.plan = plan
        report.counts = plan.counts()
        if dry_run:
            return
        if plan.held_deletes:
            message = (f"{plan.held_deletes} deletions held: more than {int(pair.rules.deletes.max_share * 100)}% "
                       "of the calendar; they wait in the review queue until confirmed")
            report.notes.append(message)
            await self._do(self.store.hold_deletes, run.scope, message, report.run_id)
        # plans that only record what was seen (new plain events, etag moves) need no write-ahead: batch them
        quiet = [p for p in plan.events if not p.held and not p.writes and not p.reviews and p.base is not None]
        for start in range(0, len(quiet), RECORD_BATCH):
            batch = quiet[start:start + RECORD_BATCH]
            new = await self._do(self.store.record_quiet, run.scope, batch, report.run_id)
            await self.changes.publish([self._change(run, p.event_id, p.base, p.reason, p.event_id in new)
                                        for p in batch])
        quiet_ids = {id(p) for p in quiet}
        for event_plan in plan.events:
            if event_plan.held or id(event_plan) in quiet_ids:
                continue
            await self._execute(run, event_plan)
        await self._do(self.store.save_listings, [
            (pair.side(side).calendar_id, run.mirrors[side].upserts, run.mirrors[side].deletes, run.cursors[side])
            for side in pair.sides], run.scope.lease)
        for side, count in run.deferred.items():
            lifts, why = run.limited.get(side) or self._deferral(run, side)
            report.notes.append(f"{count} write(s) on {run.scope.label(side)} deferred to the first run after "
                                f"{lifts:%Y-%m-%d %H:%M} UTC: {why}")
        for side, count in run.left.items():
            report.errors.append(f"{run.scope.label(side)} stopped answering ({DOWN_AFTER} writes failed in a row "
                                 f"after their retries): {count} more write(s) left for the next run")
        # a provider that stopped answering marks its account degraded (still synced: the next run tries again);
        # one that answered throughout is healthy again
        for down, sides in ((True, [s for s in pair.sides if s in run.left]),
                            (False, [s for s in pair.sides if s not in run.left and s not in run.quiet])):
            accounts = [pair.side(s).account_id for s in sides if pair.side(s).account_id is not None]
            if accounts:
                await self._do(self.store.set_health, accounts, "degraded" if down else "ok",
                               f"stopped answering after {DOWN_AFTER} failed writes in a row" if down else None)
        if report.errors and report.status == "ok":
            report.status = "partial"

    # --- many quiet events at once --------------------------------------------------------------------
    def record_many(self, pair: SyncPair, plans: list[EventPlan], run_id: int | None = None) -> set[str]:
        """Store plans that write nothing remote, in one transaction (a blocking call: not for the event loop)."""
        return self.store.record_quiet(pair.scope, plans, run_id)

    def _change(self, run: _Run, event_id: str, content: dict[str, Any] | None, reason: str,
                new: bool) -> EventChanged:
        kind = "forgotten" if content is None else "recorded" if new else "changed"
        return EventChanged(kind, run.scope.tenant_id, run.scope.user_id, event_id, content,
                            run.scope.describe(reason), run.report.run_id)

    # --- one event -----------------------------------------------------------------------------------
    async def _execute(self, run: _Run, plan: EventPlan) -> None:
        pair, report = run.pair, run.report
        plan = await self._refuse_read_only(run, plan)
        planned = {w.side: pair.side(w.side).connector.planned_id(plan.event_id)
                   for w in plan.writes if w.op == "create"}
        new = await self._do(self.store.record_plan, run.scope, plan, planned, report.run_id)
        base = plan.base
        forgotten = base is None
        queue = list(plan.writes)
        while queue and base is not None:
            write = queue.pop(0)
            spec = pair.side(write.side)
            if write.op != "delete" and not await self._within_cap(run, plan, write):
                continue
            if run.failing.get(write.side, 0) >= DOWN_AFTER:
                run.left[write.side] = run.left.get(write.side, 0) + 1     # still owed: its pending mark stays
                continue
            target = await self._do(self.store.link_target, plan.event_id, spec.calendar_id)
            remote_id = (target[0] if target else None) or write.remote_id
            etag = target[1] if target and target[0] else write.etag
            try:
                result = await self._write(spec.connector, write, plan.event_id, base, remote_id, etag,
                                           run.mirrors[write.side])
            except DailyLimitReached as exc:   # the provider counts too (and counts more than we can see)
                await self._defer(run, plan, write, exc)
                continue
            except ConnectorError as exc:
                if isinstance(exc, AuthExpired):
                    raise
                transport = isinstance(exc, Transient | RateLimited)
                run.failing[write.side] = run.failing.get(write.side, 0) + 1 if transport else 0
                await self._write_failed(run, plan, write, exc)
                continue
            run.failing[write.side] = 0
            if self.after_write is not None:
                self.after_write(write.side, write)
            report.writes += 1
            SYNC_WRITES.labels(op=write.op, side=spec.label or write.side).inc()
            base, done = await self._confirm(run, plan, write, result, base, queue)
            forgotten = forgotten or done.forgotten
        await self.changes.publish([self._change(run, plan.event_id, None if forgotten else base, plan.reason, new)])

    async def _refuse_read_only(self, run: _Run, plan: EventPlan) -> EventPlan:
        """The planner leaves read-only sides alone; should a write to one reach us anyway, it is not made."""
        refused = [w for w in plan.writes if w.side in run.pair.read_only]
        if not refused:
            return plan
        await self._log(run, [LogLine("refused", f"{w.op} on {run.scope.label(w.side)} refused: that side is "
                                                 "read-only; nothing is written there", plan.event_id, "warning")
                              for w in refused])
        return replace(plan, writes=[w for w in plan.writes if w not in refused])

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

    async def _confirm(self, run: _Run, plan: EventPlan, write: Write, result: WriteResult | None,
                       base: dict[str, Any], queue: list[Write]) -> tuple[dict[str, Any], Confirmed]:
        label = run.scope.label(write.side)
        mirror = run.mirrors[write.side]
        if result is None:   # delete done
            done = await self._do(self.store.confirm, run.scope, Confirmation(
                plan.event_id, write.side, "delete", log=[LogLine("delete", f"deleted on {label}", plan.event_id,
                                                                  detail={"side": label, "op": "delete"})]),
                run.report.run_id)
            mirror.remove_series(done.removed or "")
            return base, done
        run.report.api_calls += result.api_calls
        mirror.replace_series(result.id, result.raws)
        lines = [LogLine("note", f"{label}: {note}", plan.event_id, "warning") for note in result.notes]
        # fields only this side originates (the meeting's join info) flow into the base, then to the peer
        owned = {p: v for p, v in diff_paths(base, result.item.content).items()
                 if p.split("/", 1)[0] in run.pair.side(write.side).owns and v != MISSING}
        detail = {"side": label, "op": write.op, "remote_id": result.id}
        if owned:
            detail["brought"] = sorted({p.split("/", 1)[0] for p in owned})
        lines.append(LogLine(write.op, f"{write.op}d on {label} ({result.id})", plan.event_id, detail=detail))
        new_base = apply_paths(base, owned) if owned else None
        peer = other(write.side)
        mark_peer = bool(owned) and peer not in run.pair.read_only and not any(w.side == peer for w in queue)
        done = await self._do(self.store.confirm, run.scope, Confirmation(
            plan.event_id, write.side, write.op, result.id, result.etag, result.item.content, result.item.hash,
            base=new_base, mark_peer=mark_peer, log=lines), run.report.run_id)
        if done.peer is not None:
            queue.append(Write(peer, "update", *done.peer))
        return new_base or base, done

    @staticmethod
    def _where(run: _Run) -> str:
        """The pair's sides as an operator looks them up (`zoomcal account list`)."""
        return "; ".join(f"{run.scope.label(side)}: account {run.pair.side(side).account_id}, calendar "
                         f"{run.pair.side(side).calendar_id}" for side in run.pair.sides)

    async def _write_failed(self, run: _Run, plan: EventPlan, write: Write, exc: ConnectorError) -> None:
        SYNC_ERRORS.labels(kind=type(exc).__name__).inc()
        message = f"{write.op} on {run.scope.label(write.side)} failed: {type(exc).__name__}: {exc}"
        outcome = None
        if isinstance(exc, InvalidItem):
            # the provider refuses this item: tell the user, stop retrying until it changes again
            outcome = "rejected"
            run.report.rejected += 1
            message += " (rejected; it will be tried again when the item changes)"
        elif isinstance(exc, NotFound) and write.op == "update":
            outcome = "gone"
        detail = {"side": run.scope.label(write.side), "op": write.op, "error": type(exc).__name__,
                  "outcome": outcome or "retried later"}
        await self._do(self.store.write_failed, run.scope, plan.event_id, write.side, outcome,
                       LogLine("error", message, plan.event_id, "error", detail), run.report.run_id)
        run.report.errors.append(message)
        log.warning("write_failed", event_id=plan.event_id, op=write.op, side=write.side, error=type(exc).__name__)

    # --- daily write caps ------------------------------------------------------------------------------
    def _today(self) -> tuple[str, datetime]:
        """The UTC day writes count in, and the midnight that ends it."""
        now = self.clock().astimezone(UTC)
        return now.date().isoformat(), datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)

    def _deferral(self, run: _Run, side: str) -> tuple[datetime, str]:
        day, midnight = self._today()
        cap = run.pair.side(side).connector.capabilities.writes_per_day
        return midnight, (f"the provider's daily limit of {cap} creates/updates for this account is used up for "
                          f"{day} (UTC)")

    async def _within_cap(self, run: _Run, plan: EventPlan, write: Write) -> bool:
        """Count a create/update against its side's daily cap before making it (in the store: every process
        shares the count); at the cap, defer it."""
        spec = run.pair.side(write.side)
        cap = spec.connector.capabilities.writes_per_day
        if write.side not in run.limited:
            if cap is None or spec.account_id is None:
                return True
            day, _ = self._today()
            if await self._do(self.store.reserve_write, run.scope.tenant_id, spec.account_id, day, cap):
                return True
        await self._defer(run, plan, write)
        return False

    async def _defer(self, run: _Run, plan: EventPlan, write: Write, exc: DailyLimitReached | None = None) -> None:
        """Leave the write owed (its `pending` mark stays): a run after the limit lifts carries it out."""
        side = write.side
        if exc is not None and side not in run.limited:
            day, midnight = self._today()
            lifts = exc.resets_at if exc.resets_at and exc.resets_at > self.clock() else midnight
            run.limited[side] = (lifts, f"{run.scope.label(side)} answered that its daily limit is reached ({exc})")
            spec = run.pair.side(side)
            cap = spec.connector.capabilities.writes_per_day
            if cap is not None and spec.account_id is not None:
                await self._do(self.store.exhaust_quota, run.scope.tenant_id, spec.account_id, day, cap)
        lifts, why = run.limited.get(side) or self._deferral(run, side)
        run.deferred[side] = run.deferred.get(side, 0) + 1
        run.report.deferred += 1
        await self._log(run, [LogLine("deferred", f"{write.op} on {run.scope.label(side)} deferred: {why}; it stays "
                                                  f"owed and the first run after {lifts:%Y-%m-%d %H:%M} UTC makes it",
                                      plan.event_id, "warning")])
        log.info("write_deferred", event_id=plan.event_id, op=write.op, side=side, until=lifts.isoformat())

    # --- bookkeeping ---------------------------------------------------------------------------------
    async def _log(self, run: _Run, lines: list[LogLine]) -> None:
        if lines:
            await self._do(self.store.log, run.scope, lines, run.report.run_id)
