"""P2 — the first sync of a very full Google or Microsoft 365 calendar, through the sandboxes.

A person's calendar holds EVENTS events over the next five months (ZOOMCAL_P2_EVENTS, default 10,000), 10 % of
them weekly series of four, the rest single events; zoomcal's first sync of that person (Zoom has nothing yet)
reads it all. Measured, per provider, in one process:

* requests to the calendar's API against the fewest the listing needs at the largest page the vendor serves
  (Google: 2,500 events a page; Microsoft 365: the delta pages the sandbox serves zoomcal — it names no larger
  page — plus the series masters the delta never sends, twenty to a `$batch`). Target <= 1.1x.
* events per second of the whole first sync (listing, mapping, the store, availability), in zoomcal's own time
  (the sandbox's time to answer taken out: it emulates the vendor, and its delta is no model of speed) and in all;
* the peak of Python's own allocations during the sync (tracemalloc), at EVENTS and at a fifth of it: a
  listing held whole grows with the calendar, a streamed one does not (reported, no target yet).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import Result

EVENTS = int(os.environ.get("ZOOMCAL_P2_EVENTS", "10000"))
SERIES_SHARE = 10            # one event in ten is a weekly series of four
GOOGLE_PAGE = 2500           # Calendar API: maxResults at most 2,500
GRAPH_BATCH = 20             # JSON batching: at most 20 requests


class Counting(httpx.AsyncBaseTransport):
    """zoomcal's way to the sandboxes, counting the requests to the calendar APIs (not tokens, not Zoom)."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.calls: dict[str, int] = {}
        self.serving = 0.0          # seconds the sandboxes took to answer (theirs, not zoomcal's)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        for api in ("/google/calendar/", "/graph/v1.0/"):
            if path.startswith(api):
                self.calls[api] = self.calls.get(api, 0) + 1
        started = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.serving += time.perf_counter() - started


def _when(start: datetime) -> str:
    return start.strftime("%Y-%m-%dT%H:%M:%S")


async def _seed(actor: Any, provider: str, email: str, events: int, seed: int = 2) -> int:
    """-> how many series."""
    rnd = random.Random(seed)
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    series = 0
    for n in range(events):
        start = first + timedelta(days=rnd.randrange(140), hours=rnd.randrange(8, 18))
        end = start + timedelta(minutes=30 * rnd.randint(1, 3))
        weekly = n % SERIES_SHARE == 0
        series += weekly
        if provider == "google":
            body: dict[str, Any] = {"summary": f"Event {n}", "start": {"dateTime": _when(start), "timeZone": "UTC"},
                                    "end": {"dateTime": _when(end), "timeZone": "UTC"}}
            if weekly:
                body["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=4"]
            await actor.google_insert(email, **body)
        else:
            body = {"subject": f"Event {n}", "start": {"dateTime": _when(start), "timeZone": "UTC"},
                    "end": {"dateTime": _when(end), "timeZone": "UTC"}}
            if weekly:
                body["recurrence"] = {"pattern": {"type": "weekly", "interval": 1,
                                                  "daysOfWeek": [start.strftime("%A").lower()]},
                                      "range": {"type": "numbered", "startDate": start.date().isoformat(),
                                                "numberOfOccurrences": 4}}
            await actor.graph_insert(email, **body)
    return series


async def first_sync(provider: str, events: int, trace: bool = False) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_pairs, close_pairs, link_sandbox_user, make_context
    from zoomcal.sandbox.actor import SandboxActor
    from zoomcal.sandbox.world import SandboxWorld
    from zoomcal.sync.engine import SyncEngine

    world = SandboxWorld()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context(world, Path(tmp))
        email = "full@example.com"
        link_sandbox_user(ctx, world, email, calendar=provider)
        series = await _seed(SandboxActor(world, transport=world.transport()), provider, email, events)
        counting = Counting(world.transport())
        ctx.services.transport = counting
        engine = SyncEngine(ctx.store)
        pair = build_pairs(ctx, email)[0]
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        report = await engine.run(pair, trigger="benchmark")
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        if trace:
            tracemalloc.stop()
        await close_pairs(ctx)
        ctx.store.dispose()
    if report.status != "ok":
        raise RuntimeError(f"the first sync of {provider} ended {report.status}: {report.errors[:3]}")
    api = "/google/calendar/" if provider == "google" else "/graph/v1.0/"
    if provider == "google":
        minimum = math.ceil(events / GOOGLE_PAGE)
    else:
        from zoomcal.sandbox.graph import DELTA_PAGE

        listed = events - series + 4 * series          # the delta names occurrences, not series
        minimum = math.ceil(listed / DELTA_PAGE) + math.ceil(series / GRAPH_BATCH)
    return {"requests": counting.calls.get(api, 0), "minimum": minimum, "seconds": seconds, "peak": peak,
            "own": seconds - counting.serving}


def measure(events: int = EVENTS) -> dict[str, dict[str, float]]:
    out = {}
    for provider in ("google", "graph"):
        got = asyncio.run(first_sync(provider, events))
        got["peak"] = asyncio.run(first_sync(provider, events, trace=True))["peak"]
        got["peak_small"] = asyncio.run(first_sync(provider, max(1, events // 5), trace=True))["peak"]
        out[provider] = got
    return out


def run() -> list[Result]:
    results = []
    for provider, got in measure().items():
        label = "Google Calendar" if provider == "google" else "Microsoft 365"
        ratio = got["requests"] / got["minimum"]
        growth = got["peak"] / got["peak_small"] if got["peak_small"] else float("inf")
        results.append(Result(
            f"P2 first sync of {EVENTS:,} events from {label}: requests vs the page minimum", got["requests"],
            got["minimum"], ratio, "<= 1.1", ratio <= 1.1, "requests",
            f"{EVENTS / got['own']:.0f} events/s of zoomcal's own time ({EVENTS / got['seconds']:.0f} with the "
            f"sandbox's answers); peak Python allocations {got['peak'] / 2**20:.0f} MB "
            f"({growth:.1f}x those at a fifth of the events)"))
    return results
