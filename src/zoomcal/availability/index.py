"""The in-memory busy-interval index: per user, sorted numpy arrays; no database round trip per query.

Built from the store on start, then kept current from the same change stream the engine emits (one event at a
time: the event's intervals are reread and that user's arrays rebuilt).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import select

from zoomcal.availability.intervals import STRENGTH, as_utc
from zoomcal.store.db import Database
from zoomcal.store.models import BusyInterval

KIND_CODES = {kind: code for code, kind in enumerate(("free", "tentative", "busy", "focus", "ooo"))}
CODE_KINDS = {code: kind for kind, code in KIND_CODES.items()}


def epoch(value: datetime) -> int:
    return int(as_utc(value).timestamp())


@dataclass
class UserIntervals:
    by_event: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    starts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ends: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    kinds: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    events: list[str] = field(default_factory=list)
    max_length: int = 0

    def compile(self) -> None:
        rows = sorted((s, e, k, ev) for ev, spans in self.by_event.items() for s, e, k in spans)
        self.starts = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        self.ends = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        self.kinds = np.fromiter((r[2] for r in rows), np.int8, len(rows))
        self.events = [r[3] for r in rows]
        self.max_length = int((self.ends - self.starts).max()) if rows else 0

    def overlapping(self, lo: int, hi: int) -> np.ndarray:
        """Indexes of intervals that overlap [lo, hi): binary search on starts, bounded by the longest span."""
        first = int(np.searchsorted(self.starts, lo - self.max_length, side="left"))
        last = int(np.searchsorted(self.starts, hi, side="left"))
        window = np.arange(first, last)
        return window[self.ends[first:last] > lo]


class BusyIndex:
    def __init__(self) -> None:
        self.users: dict[int, UserIntervals] = {}
        self.lock = threading.RLock()

    @classmethod
    def load(cls, db: Database) -> BusyIndex:
        index = cls()
        with db.session() as s:
            rows = s.execute(select(BusyInterval.user_id, BusyInterval.event_id, BusyInterval.start_at,
                                    BusyInterval.end_at, BusyInterval.kind))
            for user_id, event_id, start, end, kind in rows:
                user = index.users.setdefault(user_id, UserIntervals())
                user.by_event.setdefault(event_id, []).append((epoch(start), epoch(end), KIND_CODES[kind]))
        for user in index.users.values():
            user.compile()
        return index

    def refresh_event(self, db: Database, user_id: int, event_id: str) -> None:
        """Take one event's intervals from the store (after the engine changed it)."""
        with db.session() as s:
            spans = [(epoch(a), epoch(b), KIND_CODES[k]) for a, b, k in s.execute(
                select(BusyInterval.start_at, BusyInterval.end_at, BusyInterval.kind)
                .where(BusyInterval.event_id == event_id))]
        self.set_event(user_id, event_id, spans)

    def set_event(self, user_id: int, event_id: str, spans: list[tuple[int, int, int]]) -> None:
        with self.lock:
            user = self.users.setdefault(user_id, UserIntervals())
            if spans:
                user.by_event[event_id] = spans
            else:
                user.by_event.pop(event_id, None)
            user.compile()

    def busy(self, user_id: int, lo: int, hi: int) -> list[tuple[int, int, str, str]]:
        """(start, end, kind, event id) of every blocking interval overlapping [lo, hi), by start."""
        user = self.users.get(user_id)
        if user is None or not len(user.starts):
            return []
        idx = user.overlapping(lo, hi)
        return [(int(user.starts[i]), int(user.ends[i]), CODE_KINDS[int(user.kinds[i])], user.events[i]) for i in idx]

    def arrays(self, user_id: int, lo: int, hi: int, before: int = 0, after: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Blocking intervals overlapping the window as (starts, ends), widened by buffers and clipped."""
        user = self.users.get(user_id)
        if user is None or not len(user.starts):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        first = int(user.starts.searchsorted(lo - after - user.max_length))
        last = int(user.starts.searchsorted(hi + before))
        starts, ends = user.starts[first:last], user.ends[first:last]
        keep = ends > lo - after
        return np.maximum(starts[keep] - before, lo), np.minimum(ends[keep] + after, hi)

    def state_at(self, user_id: int, at: int) -> tuple[str, str | None]:
        """The user's strongest kind at one instant and the event behind it ("free", None when nothing)."""
        best, source = "free", None
        for _s, _e, kind, event_id in self.busy(user_id, at, at + 1):
            if STRENGTH[kind] > STRENGTH[best]:
                best, source = kind, event_id
        return best, source

    def next_boundary(self, user_id: int, after: int) -> int | None:
        """The next instant at which some interval of the user starts or ends."""
        user = self.users.get(user_id)
        if user is None or not len(user.starts):
            return None
        later = np.concatenate([user.starts[user.starts > after], user.ends[user.ends > after]])
        return int(later.min()) if len(later) else None


def merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of intervals: sort by start, then a new block begins where a start passes every earlier end."""
    if not len(starts):
        return starts, ends
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    new_block = np.empty(len(s), bool)
    new_block[0] = True
    new_block[1:] = s[1:] > reach[:-1]
    block = np.cumsum(new_block) - 1
    merged_starts = s[new_block]
    merged_ends = np.zeros(len(merged_starts), e.dtype)
    np.maximum.at(merged_ends, block, e)
    return merged_starts, merged_ends

