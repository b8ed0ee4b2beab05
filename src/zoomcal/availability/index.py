"""The in-memory busy-interval index: per user, sorted numpy arrays; no database round trip per interval query.

One index per process (`Services.busy_index`), filled lazily: a user's intervals are read the first time somebody
asks about them, so a process holds only the tenants and people it serves. Every process writes intervals through
the store, and the transaction that changes a person's intervals also bumps `users.busy_revision`. Before an
answer, `current()` reads the revisions of the people asked about in one query and rereads only those whose
revision moved since this process loaded them: an answer is never older than the last commit of any process.

`load()` (every user at once) and `set_event()` / `refresh_event()` (one event from the change stream) remain for
an index that lives outside a process's services.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from zoomcal.availability.intervals import STRENGTH, as_utc
from zoomcal.lazy import lazy
from zoomcal.store.db import Database
from zoomcal.store.models import BusyInterval, User

np = lazy("numpy")    # loaded when availability is first computed, not when a command starts

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


CHUNK = 900   # ids per IN (...) list: under every backend's bound-parameter limit


class BusyIndex:
    def __init__(self) -> None:
        self.users: dict[int, UserIntervals] = {}
        self.revisions: dict[int, int] = {}     # user -> the busy_revision their intervals were read at
        self.tenant_of: dict[int, int] = {}     # user -> tenant, for the users read through `current()`
        self.lock = threading.RLock()

    def loaded_tenants(self) -> set[int]:
        """The tenants some of whose people this index holds (read through `current()`)."""
        with self.lock:
            return set(self.tenant_of.values())

    def current(self, db: Database, user_ids: Iterable[int]) -> BusyIndex:
        """These people's intervals as of the last commit of any process, as an index holding only them.

        One query reads their revisions; one more rereads the intervals of those whose revision moved since this
        process read them (or who were never read). The revisions are read first, so what is kept is at least as
        new as the revision recorded with it. Asked through a tenant's store, people of other tenants are not
        found and answer as having nothing.
        """
        ids = sorted(set(user_ids))
        view = BusyIndex()
        if not ids:
            return view
        with db.session() as s:
            found: dict[int, tuple[int, int]] = {}
            for part in range(0, len(ids), CHUNK):
                found.update((uid, (tenant, rev)) for uid, tenant, rev in s.execute(
                    select(User.id, User.tenant_id, User.busy_revision).where(User.id.in_(ids[part:part + CHUNK]))))
            with self.lock:
                stale = [uid for uid, (_t, rev) in found.items() if self.revisions.get(uid) != rev]
            fresh = _read_users(s, stale) if stale else {}
        with self.lock:
            for uid in stale:
                tenant, rev = found[uid]
                known = self.revisions.get(uid)
                if known is None or known <= rev:    # another thread may have read a newer one meanwhile
                    self.users[uid] = fresh[uid]
                    self.revisions[uid] = rev
                    self.tenant_of[uid] = tenant
            view.users = {uid: self.users[uid] for uid in found if uid in self.users}
        return view

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
            # a new object rather than a change in place: an index handed out by `current()` may be reading the old
            user = UserIntervals(dict(self.users[user_id].by_event) if user_id in self.users else {})
            if spans:
                user.by_event[event_id] = spans
            else:
                user.by_event.pop(event_id, None)
            user.compile()
            self.users[user_id] = user

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


def _read_users(s, user_ids: list[int]) -> dict[int, UserIntervals]:
    out = {uid: UserIntervals() for uid in user_ids}
    for part in range(0, len(user_ids), CHUNK):
        rows = s.execute(select(BusyInterval.user_id, BusyInterval.event_id, BusyInterval.start_at,
                                BusyInterval.end_at, BusyInterval.kind)
                         .where(BusyInterval.user_id.in_(user_ids[part:part + CHUNK])))
        for user_id, event_id, start, end, kind in rows:
            out[user_id].by_event.setdefault(event_id, []).append((epoch(start), epoch(end), KIND_CODES[kind]))
    for user in out.values():
        user.compile()
    return out


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

