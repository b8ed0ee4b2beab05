"""Availability follows the sync: busy intervals inside the store's transactions, overlaps after each run.

* `BusyIntervals` is a status-store hook: the intervals of an event are replaced in the transaction that
  records, changes or forgets the event, so the booking conflict guard never reads availability that is
  behind the events. When a run opens it also moves the window forward for recurring events (once a day).
* `OverlapRecorder` subscribes to the engine's change stream: when a run finishes, the overlaps of the events it
  recorded or changed that someone can act on (an invitation on top of a Zoom meeting or a booking) are put on
  the review queue, once each.
* `IndexFollower` keeps an in-memory `BusyIndex` current from the change stream, one event at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zoomcal.availability import intervals
from zoomcal.availability.booking import actionable_overlaps
from zoomcal.availability.index import BusyIndex
from zoomcal.logging import get_logger
from zoomcal.store.db import Database
from zoomcal.store.models import ReviewItem
from zoomcal.sync.changes import Change, EventChanged, RunFinished
from zoomcal.sync.status import PairScope

log = get_logger("zoomcal.availability")
OVERLAP_CAP = 50       # open overlap items per person: more is a calendar to look at, not a queue to work through


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
    """Overlaps someone can act on go to the review queue: a Zoom meeting or a booking colliding with other busy
    time, once per pair, at most `cap` open per person (beyond it a log line counts what was left out). Only the
    events a run recorded or changed are checked, over the time they take; an open overlap that one of them no
    longer has is closed. Two outside events that overlap are a normal calendar: `conflicts` lists them on
    demand. Subscribe to EventChanged and RunFinished."""

    def __init__(self, db: Database, cap: int = OVERLAP_CAP):
        self.db = db
        self.cap = cap
        self.touched: dict[int, set[str]] = {}      # run id -> the events it recorded or changed
        self.lock = threading.Lock()                # changes arrive on worker threads

    def __call__(self, change: Change) -> None:
        if isinstance(change, EventChanged):
            if change.content is not None and change.run_id is not None:
                with self.lock:
                    self.touched.setdefault(change.run_id, set()).add(change.event_id)
            return
        if not isinstance(change, RunFinished) or change.report.run_id is None:
            return
        with self.lock:
            touched = self.touched.pop(change.report.run_id, None)
        if touched:
            self.record(change.scope, touched)

    def record(self, scope: PairScope, touched: set[str]) -> int:
        lo, hi = _window(scope, past_days=0)
        found = {pair_key(c): c for c in actionable_overlaps(self.db, scope.user_id, lo, hi, touched)}
        added = skipped = 0
        with self.db.transaction() as s:
            items = list(s.scalars(select(ReviewItem).where(ReviewItem.user_id == scope.user_id,
                                                            ReviewItem.kind == "overlap")))
            known = {item.field for item in items}
            for item in items:
                if item.status == "open" and item.field not in found \
                        and any(e in touched for e in item.field.split("|")):
                    item.status, item.chosen = "resolved", "gone"
            room = self.cap - sum(1 for item in items if item.status == "open")
            for key, c in sorted(found.items()):
                if key in known:
                    continue
                if added >= room:
                    skipped += 1
                    continue
                known.add(key)
                added += 1
                s.add(ReviewItem(tenant_id=scope.tenant_id, user_id=scope.user_id, event_id=c["second"]["event_id"],
                                 kind="overlap", field=key, zoom_value=c["first"], calendar_value=c["second"],
                                 chosen="both kept"))
        if skipped:
            log.warning("overlaps_capped", user_id=scope.user_id, cap=self.cap, left_out=skipped)
        return added


def pair_key(overlap: dict) -> str:
    """One key per pair of events, whichever starts first."""
    return "|".join(sorted((overlap["first"]["event_id"], overlap["second"]["event_id"])))


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
