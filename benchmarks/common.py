"""The result shape every benchmark reports, and a timer that takes the best of a few runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Result:
    name: str
    value: float          # zoomcal's measurement
    baseline: float       # the reference measured in the same run
    ratio: float          # value / baseline (or as documented per benchmark)
    target: str           # e.g. "<= 3.0"
    passed: bool
    unit: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        out = asdict(self)
        out["pass"] = out.pop("passed")
        return out


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def check(ratio: float, target: str) -> bool:
    """Targets on the ratio ("<= 3.0", ">= 0.5"); absolute targets read "value <= X" and are checked by caller."""
    op, _, bound = target.partition(" ")
    return ratio <= float(bound) if op == "<=" else ratio >= float(bound)


def p50(fn: Callable[[], object], runs: int = 200) -> float:
    """Median wall time of single calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]
