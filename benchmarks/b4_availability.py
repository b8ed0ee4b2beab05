"""B4 (availability part) — busy query for one user over one week, 1000 users x 50 events in the index.

Value: median latency of `BusyIndex.busy` (target: <= 10 ms). Ratio: against a raw numpy overlap mask over
the same user's arrays in the same run (reported, not a target).
"""

from __future__ import annotations

import random

import numpy as np

from benchmarks.common import Result, p50
from zoomcal.availability.index import BusyIndex

USERS = 1000
EVENTS = 50
WEEK = 7 * 86400
BASE = 1_800_000_000   # a fixed instant; the index only sees epoch seconds


def build_index(users: int = USERS, events: int = EVENTS, seed: int = 5) -> BusyIndex:
    rng = random.Random(seed)
    index = BusyIndex()
    for user in range(users):
        for n in range(events):
            start = BASE + rng.randrange(0, 60 * 86400 // 900) * 900
            index.set_event(user, f"u{user}e{n}", [(start, start + rng.choice([1800, 3600, 5400]), 2)])
    return index


def run() -> list[Result]:
    index = build_index()
    lo, hi = BASE + 14 * 86400, BASE + 14 * 86400 + WEEK
    user = index.users[USERS // 2]
    ours = p50(lambda: index.busy(USERS // 2, lo, hi))
    raw = p50(lambda: np.nonzero((user.starts < hi) & (user.ends > lo))[0])
    expected = int(((user.starts < hi) & (user.ends > lo)).sum())
    assert len(index.busy(USERS // 2, lo, hi)) == expected
    return [Result("B4 busy query, one user, one week (1000 users x 50 events)", ours, raw, ours / raw,
                   "value <= 0.010", ours <= 0.010, "s", f"p50; {expected} intervals in the week")]
