"""The sync engine's status store over SQLAlchemy (SQLite or PostgreSQL): one transaction per method.

Hooks run inside those transactions. A hook sees every event the engine records, changes or forgets, in the
transaction that does it, so what it derives (busy intervals) is never behind the events; and it may do
run-start maintenance in the transaction that opens a run (moving the availability window forward).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zoomcal.domain.timeutil import now_utc
from zoomcal.store import repo
from zoomcal.store.db import Database
from zoomcal.store.models import Account, Event, Link, ReviewItem, SyncLogEntry, SyncRun, WriteQuota
from zoomcal.sync.planner import EventPlan, EventRecord, SideLink, other
from zoomcal.sync.status import (
    Confirmation,
    Confirmed,
    Lease,
    LeaseLost,
    LogLine,
    PairScope,
    RunSummary,
    SideState,
)

QUOTA_DAYS_KEPT = 7


class StoreHook(Protocol):
    def run_started(self, session: Session, scope: PairScope) -> list[str]:
        """Maintenance when a run opens -> notes for the run's report."""
        ...

    def events_changed(self, session: Session, scope: PairScope, contents: Mapping[str, dict[str, Any] | None],
                       new: set[str]) -> None:
        """These events now hold these contents (None: forgotten); `new` were stored for the first time."""
        ...


def plan_detail(scope: PairScope, plan: EventPlan) -> dict[str, Any]:
    """What an event's history keeps of a plan: per calendar, the item seen (its id; None: gone) and the fields
    it changed; the rules that shaped the decision; the writes and conflicts it called for."""
    label = scope.label
    detail: dict[str, Any] = {"seen": {label(side): (item.id if item is not None else None)
                                       for side, item in plan.seen.items()}}
    if plan.changed:
        detail["changed"] = {label(side): fields for side, fields in plan.changed.items()}
    if plan.rules:
        detail["rules"] = [scope.describe(rule) for rule in plan.rules]
    if plan.writes:
        detail["writes"] = [f"{w.op} on {label(w.side)}" for w in plan.writes]
    if plan.reviews:
        detail["conflicts"] = [r.path for r in plan.reviews]
    if plan.held:
        detail["held"] = True
    return detail


class SqlStatusStore:
    def __init__(self, db: Database, hooks: Iterable[StoreHook] = ()):
        self.db = db
        self.hooks: list[StoreHook] = list(hooks)

    def add_hook(self, hook: StoreHook) -> None:
        self.hooks.append(hook)

    def _changed(self, s: Session, scope: PairScope, contents: Mapping[str, dict[str, Any] | None],
                 new: set[str] | None = None) -> None:
        for hook in self.hooks:
            hook.events_changed(s, scope, contents, new or set())

    @staticmethod
    def _log(s: Session, scope: PairScope, lines: Iterable[LogLine], run_id: int | None) -> None:
        for line in lines:
            repo.log(s, scope.tenant_id, line.action, line.message, run_id=run_id, user_id=scope.user_id,
                     event_id=line.event_id, level=line.level, detail=line.detail)

    # --- runs ----------------------------------------------------------------------------------------
    def begin_run(self, scope: PairScope, trigger: str, holder: str, ttl: timedelta
                  ) -> tuple[int, list[str], Lease]:
        with self.db.transaction() as s:
            fences = repo.take_leases(s, scope.calendars.values(), holder, ttl)
            run = SyncRun(tenant_id=scope.tenant_id, user_id=scope.user_id, trigger=trigger)
            s.add(run)
            s.flush()
            notes = [note for hook in self.hooks for note in hook.run_started(s, scope)]
            return run.id, notes, Lease(holder, fences)

    def renew_lease(self, lease: Lease, ttl: timedelta) -> bool:
        with self.db.transaction() as s:
            return repo.renew_leases(s, lease.holder, dict(lease.fences), ttl)

    @contextmanager
    def _fenced(self, lease: Lease | None):
        """A write transaction that first checks the run still holds its calendars (LeaseLost when not); the
        checked lease rows stay locked until the writes commit."""
        with self.db.transaction() as s:
            if lease is not None and not repo.check_leases(s, lease.holder, dict(lease.fences)):
                raise LeaseLost(f"the lease of {lease.holder} was taken over")
            yield s

    def end_run(self, calendar_ids: Sequence[int], holder: str) -> None:
        with self.db.transaction() as s:
            repo.drop_leases(s, calendar_ids, holder)

    def finish_run(self, run_id: int, scope: PairScope, summary: RunSummary) -> None:
        with self.db.transaction() as s:
            run = s.get(SyncRun, run_id)
            if run is None:
                return
            run.status = summary.status
            run.counts = dict(summary.counts)
            run.api_calls = summary.api_calls
            run.errors = len(summary.errors)
            run.duration_ms = summary.duration_ms
            run.finished_at = now_utc()
            self._log(s, scope, [LogLine("error", err, level="error") for err in summary.errors
                                 if not err.startswith(("create", "update", "delete"))], run_id)

    # --- reading -------------------------------------------------------------------------------------
    def load_side(self, calendar_id: int) -> SideState:
        with self.db.session() as s:
            linked = {rid for rid, pending in s.execute(select(Link.remote_id, Link.pending).where(
                Link.calendar_id == calendar_id, Link.remote_id.is_not(None))) if pending != "create"}
            return SideState(repo.load_cursor(s, calendar_id), repo.load_mirror(s, calendar_id), linked)

    def load_records(self, scope: PairScope) -> list[EventRecord]:
        side_of = {cal: side for side, cal in scope.calendars.items()}
        with self.db.session() as s:
            links: dict[str, dict[str, SideLink]] = {}
            for link in s.scalars(select(Link).where(Link.calendar_id.in_(list(side_of)))):
                links.setdefault(link.event_id, {})[side_of[link.calendar_id]] = SideLink(
                    link.remote_id, link.etag, link.state_hash, link.state, link.pending)
            out = []
            for ev_id, content in s.execute(select(Event.id, Event.content).where(Event.user_id == scope.user_id)):
                sides = links.get(ev_id)
                if sides:
                    out.append(EventRecord(ev_id, content, sides.get("a"), sides.get("b")))
            return out

    def link_target(self, event_id: str, calendar_id: int) -> tuple[str | None, str | None] | None:
        with self.db.session() as s:
            link = repo.get_link(s, event_id, calendar_id)
            return None if link is None else (link.remote_id, link.etag)

    # --- plans ---------------------------------------------------------------------------------------
    def record_quiet(self, scope: PairScope, plans: Sequence[EventPlan], run_id: int | None) -> set[str]:
        """Plans that write nothing remote, in one transaction with executemany-sized statements."""
        if not plans:
            return set()
        ids = [p.event_id for p in plans]
        with self._fenced(scope.lease) as s:
            existing = set(s.scalars(select(Event.id).where(Event.id.in_(ids))))
            links = {(ev, cal): lid for lid, ev, cal in s.execute(
                select(Link.id, Link.event_id, Link.calendar_id).where(Link.event_id.in_(ids)))}
            new_events, changed_events = [], []
            new_links, changed_links, dropped_links = [], [], []
            now = now_utc()
            for p in plans:
                row = repo.event_row(scope.tenant_id, scope.user_id, p.event_id, p.base)
                (changed_events if p.event_id in existing else new_events).append(row)
                for side, item in p.seen.items():
                    key = (p.event_id, scope.calendars[side])
                    if item is None:
                        if key in links:
                            dropped_links.append(links[key])
                        continue
                    values = {"remote_id": item.id, "etag": item.etag, "state": item.content,
                              "state_hash": item.hash, "pending": None, "last_seen": now}
                    if key in links:
                        changed_links.append({"id": links[key], **values})
                    else:
                        new_links.append({"tenant_id": scope.tenant_id, "event_id": p.event_id,
                                          "calendar_id": key[1], **values})
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
            new = set(ids) - existing
            self._changed(s, scope, {p.event_id: p.base for p in plans}, new)
            entries = [{"run_id": run_id, "tenant_id": scope.tenant_id, "user_id": scope.user_id,
                        "event_id": p.event_id, "level": "info", "action": "plan",
                        "message": scope.describe(p.reason), "detail": plan_detail(scope, p)}
                       for p in plans if p.reason != "unchanged"]
            if entries:
                s.execute(insert(SyncLogEntry.__table__), entries)
            return new

    def record_plan(self, scope: PairScope, plan: EventPlan, planned_ids: Mapping[str, str | None],
                    run_id: int | None) -> bool:
        with self._fenced(scope.lease) as s:
            if plan.base is None:
                s.execute(delete(Link).where(Link.event_id == plan.event_id))
                self._changed(s, scope, {plan.event_id: None})
                s.execute(delete(Event).where(Event.id == plan.event_id))
                self._log(s, scope, [LogLine("forget", scope.describe(plan.reason), plan.event_id,
                                             detail=plan_detail(scope, plan))], run_id)
                return False
            new = s.get(Event, plan.event_id) is None
            repo.upsert_event(s, scope.tenant_id, scope.user_id, plan.event_id, plan.base)
            s.flush()
            self._changed(s, scope, {plan.event_id: plan.base}, {plan.event_id} if new else set())
            for side, item in plan.seen.items():
                link = repo.get_link(s, plan.event_id, scope.calendars[side])
                if item is None:
                    if link is not None:
                        s.delete(link)
                        s.flush()
                    continue
                if link is None:
                    link = Link(tenant_id=scope.tenant_id, event_id=plan.event_id, calendar_id=scope.calendars[side])
                    s.add(link)
                link.remote_id, link.etag, link.state, link.state_hash = item.id, item.etag, item.content, item.hash
                if link.pending == "create":
                    link.pending = None   # the twin of our create turned up: adopted
            s.flush()
            # after this, `pending` says exactly which writes are still owed: the ones this plan makes
            for side, cal_id in scope.calendars.items():
                link = repo.get_link(s, plan.event_id, cal_id)
                write = next((w for w in plan.writes if w.side == side), None)
                if write is None:
                    if link is not None and link.remote_id is not None:
                        link.pending = None
                    continue
                if link is None:
                    link = Link(tenant_id=scope.tenant_id, event_id=plan.event_id, calendar_id=cal_id)
                    s.add(link)
                link.pending = write.op
                if write.op == "create" and link.remote_id is None:
                    # where the provider takes our id, record it before the write: a later listing then tells
                    # whether the create happened (and whether somebody deleted it since)
                    link.remote_id = planned_ids.get(side)
            for review in plan.reviews:
                exists = s.scalar(select(ReviewItem.id).where(
                    ReviewItem.event_id == plan.event_id, ReviewItem.field == review.path,
                    ReviewItem.status == "open"))
                if exists is None:
                    s.add(ReviewItem(tenant_id=scope.tenant_id, user_id=scope.user_id, event_id=plan.event_id,
                                     kind="conflict", field=review.path, zoom_value=review.a_value,
                                     calendar_value=review.b_value,
                                     chosen="calendar" if review.chosen == "b" else "zoom"))
            if plan.reason != "unchanged" or plan.writes:
                self._log(s, scope, [LogLine("plan", scope.describe(plan.reason), plan.event_id,
                                             detail=plan_detail(scope, plan))], run_id)
            return new

    # --- after a remote write ------------------------------------------------------------------------
    def confirm(self, scope: PairScope, c: Confirmation, run_id: int | None) -> Confirmed:
        with self._fenced(scope.lease) as s:
            link = repo.get_link(s, c.event_id, scope.calendars[c.side])
            self._log(s, scope, c.log, run_id)
            if c.op == "delete":
                removed = None
                if link is not None:
                    removed = link.remote_id
                    s.delete(link)
                    s.flush()
                forgotten = False
                if s.scalar(select(Link.id).where(Link.event_id == c.event_id)) is None:
                    row = s.get(Event, c.event_id)
                    if row is not None:
                        self._changed(s, scope, {c.event_id: None})
                        s.delete(row)
                        forgotten = True
                return Confirmed(removed=removed, forgotten=forgotten)
            if link is None:
                link = Link(tenant_id=scope.tenant_id, event_id=c.event_id, calendar_id=scope.calendars[c.side])
                s.add(link)
            link.remote_id, link.etag = c.remote_id, c.etag
            link.state, link.state_hash, link.pending = c.state, c.state_hash, None
            peer = None
            if c.base is not None:
                repo.upsert_event(s, scope.tenant_id, scope.user_id, c.event_id, c.base)
                self._changed(s, scope, {c.event_id: c.base})
                peer_cal = scope.calendars.get(other(c.side))
                peer_link = repo.get_link(s, c.event_id, peer_cal) if c.mark_peer and peer_cal else None
                if peer_link is not None and peer_link.remote_id:
                    peer_link.pending = "update"
                    peer = (peer_link.remote_id, peer_link.etag)
            return Confirmed(peer=peer)

    def write_failed(self, scope: PairScope, event_id: str, side: str, outcome: str | None, log: LogLine,
                     run_id: int | None) -> None:
        with self._fenced(scope.lease) as s:
            link = repo.get_link(s, event_id, scope.calendars[side])
            if outcome == "rejected" and link is not None:
                # the provider refuses this item: stop retrying until it changes again
                if link.pending == "create":
                    s.delete(link)
                else:
                    link.pending = None
            elif outcome == "gone" and link is not None:
                link.pending = None   # gone meanwhile: the next listing reports the deletion
            self._log(s, scope, [log], run_id)

    # --- the end of a run ----------------------------------------------------------------------------
    def save_listings(self, listings: Sequence[tuple[int, Mapping[str, tuple[str, dict[str, Any]]],
                                                     set[str], str | None]], lease: Lease | None = None) -> None:
        with self._fenced(lease) as s:
            for calendar_id, upserts, deletes, cursor in listings:
                repo.save_mirror(s, calendar_id, dict(upserts), deletes)
                repo.save_cursor(s, calendar_id, cursor)

    def log(self, scope: PairScope, lines: Sequence[LogLine], run_id: int | None) -> None:
        with self.db.transaction() as s:
            self._log(s, scope, lines, run_id)

    def hold_deletes(self, scope: PairScope, message: str, run_id: int | None) -> None:
        with self.db.transaction() as s:
            exists = s.scalar(select(ReviewItem.id).where(ReviewItem.user_id == scope.user_id,
                                                          ReviewItem.kind == "mass_delete",
                                                          ReviewItem.status == "open"))
            if exists is None:
                s.add(ReviewItem(tenant_id=scope.tenant_id, user_id=scope.user_id, kind="mass_delete",
                                 field="", calendar_value=message, chosen="hold"))
            self._log(s, scope, [LogLine("held", message, level="warning")], run_id)

    def set_health(self, account_ids: Sequence[int], status: str, reason: str | None) -> None:
        with self.db.transaction() as s:
            for account_id in account_ids:
                account = s.get(Account, account_id)
                if account is None or account.status == "reauth" or account.status == status:
                    continue
                if status == "ok" and account.status != "degraded":
                    continue
                account.status, account.status_reason = status, reason     # the run's caller says it in the log

    def mark_reauth(self, account_ids: Sequence[int]) -> None:
        with self.db.transaction() as s:
            for account_id in account_ids:
                account = s.get(Account, account_id)
                if account is not None:
                    account.status = "reauth"

    # --- per-day write caps --------------------------------------------------------------------------
    def reserve_write(self, tenant_id: int, account_id: int, day: str, cap: int) -> bool:
        """One conditional UPDATE counts the write (PostgreSQL re-checks `used < cap` on the row it locked, SQLite
        writes one transaction at a time), so processes sharing the store never count past the cap together.
        Committed before the remote call: a crash after it over-counts, never under-counts."""
        if cap <= 0:
            return False
        for _ in range(3):
            with self.db.transaction() as s:
                counted = s.execute(update(WriteQuota).where(
                    WriteQuota.account_id == account_id, WriteQuota.day == day, WriteQuota.used < cap)
                    .values(used=WriteQuota.used + 1)).rowcount
                if counted == 1:
                    return True
                if s.get(WriteQuota, (account_id, day)) is not None:
                    return False   # the day's writes are used up
                try:
                    with s.begin_nested():
                        s.add(WriteQuota(account_id=account_id, day=day, tenant_id=tenant_id, used=1))
                except IntegrityError:
                    continue   # another process opened the day first: count against its row
                s.execute(delete(WriteQuota).where(WriteQuota.account_id == account_id,
                                                   WriteQuota.day < _days_before(day, QUOTA_DAYS_KEPT)))
                return True
        return False

    def exhaust_quota(self, tenant_id: int, account_id: int, day: str, cap: int) -> None:
        with self.db.transaction() as s:
            row = s.get(WriteQuota, (account_id, day), with_for_update=True)
            if row is None:
                try:
                    with s.begin_nested():
                        s.add(WriteQuota(account_id=account_id, day=day, tenant_id=tenant_id, used=cap))
                    return
                except IntegrityError:
                    row = s.get(WriteQuota, (account_id, day), with_for_update=True, populate_existing=True)
            if row is not None and row.used < cap:
                row.used = cap


def _days_before(day: str, days: int) -> str:
    return (date.fromisoformat(day) - timedelta(days=days)).isoformat()
