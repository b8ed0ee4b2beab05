"""Availability follows the sync: busy intervals inside the store's transactions, overlaps after each run.

* `BusyIntervals` is a status-store hook: the intervals of an event are replaced in the transaction that
  records, changes or forgets the event, so the booking conflict guard never reads availability that is
  behind the events. When a run opens it also moves the window forward for recurring events (once a day).
* `OverlapRecorder` subscribes to the engine's change stream: when a run that handled events finishes, the
  user's overlapping events (an invitation on top of a meeting) are put on the review queue, once each.
* `IndexFollower` keeps an in-memory `BusyIndex` current from the change stream, one event at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zoomcal.availability import intervals
from zoomcal.availability.booking import inbound_conflicts
from zoomcal.availability.index import BusyIndex
from zoomcal.store.db import Database
from zoomcal.store.models import ReviewItem
from zoomcal.sync.changes import Change, EventChanged, RunFinished
from zoomcal.sync.status import PairScope


def _window(scope: PairScope, past_days: int | None = None):
    avail = scope.rules.availability
    return intervals.window(avail.window_past_days if past_days is None else past_days, avail.window_future_days)


class BusyIntervals:
    """The store hook that keeps busy intervals in step with events."""

    def run_started(self, session: Session, scope: PairScope) -> list[str]:
        lo, hi = _window(scope)
        if intervals.roll_window(session, scope.tenant_id, scope.user_id, lo, hi):
            return ["availability window moved forward for recurring events"]
        return []

    def events_changed(self, session: Session, scope: PairScope, contents: Mapping[str, dict[str, Any] | None],
                       new: set[str]) -> None:
        lo, hi = _window(scope)
        intervals.refresh_events(session, scope.tenant_id, scope.user_id, dict(contents), lo, hi,
                                 intervals.user_timezone(session, scope.user_id), new)


class OverlapRecorder:
    """Events that overlap cannot be prevented: record each pair once, after a run that handled events."""

    def __init__(self, db: Database):
        self.db = db

    def __call__(self, change: Change) -> None:
        if not isinstance(change, RunFinished):
            return
        report = change.report
        if report.run_id is None or report.status == "failed" or report.plan is None or not report.plan.events:
            return
        self.record(change.scope)

    def record(self, scope: PairScope) -> int:
        lo, hi = _window(scope, past_days=0)
        found = inbound_conflicts(self.db, scope.user_id, lo, hi)
        if not found:
            return 0
        added = 0
        with self.db.transaction() as s:
            known = set(s.scalars(select(ReviewItem.field).where(ReviewItem.user_id == scope.user_id,
                                                                  ReviewItem.kind == "overlap")))
            for c in found:
                key = f"{c['first']['event_id']}|{c['second']['event_id']}"
                if key not in known:
                    known.add(key)
                    added += 1
                    s.add(ReviewItem(tenant_id=scope.tenant_id, user_id=scope.user_id, event_id=c["second"]["event_id"],
                                     kind="overlap", field=key, zoom_value=c["first"], calendar_value=c["second"],
                                     chosen="both kept"))
        return added


class IndexFollower:
    """Subscribe with `engine.subscribe(IndexFollower(index, db), only=EventChanged)`."""

    def __init__(self, index: BusyIndex, db: Database):
        self.index = index
        self.db = db

    def __call__(self, change: Change) -> None:
        if not isinstance(change, EventChanged):
            return
        if change.content is None:
            self.index.set_event(change.user_id, change.event_id, [])
        else:
            self.index.refresh_event(self.db, change.user_id, change.event_id)
