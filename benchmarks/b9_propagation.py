"""B9 — propagation, push vs polling: a Zoom edit until the Google event changed, on the sandboxes.

Four people with Google calendars, ten Zoom meetings each, synced (the demo's setup: sandboxes and zoomcal's web
app on loopback). Every meeting is renamed on Zoom, one edit every 0.15 s, in a shuffled order; an edit's latency
ends when the Google sandbox stored the renamed event (its own store time, not zoomcal's metrics).

* Push: the Zoom sandbox sends signed webhooks to zoomcal's web app, which marks the host due; the embedded runner
  (the demo's PushServer) syncs them. Latency = Google's store time - the moment the edit was sent.
* Polling: no notifications at all; the same renames, then one reconciliation round of the embedded runner. Its
  measured part s = Google's store time - the round's start. An edit lands uniformly within the poll interval
  (POLL = 60 s; the configured default is 15 min), so its latency is U(0, POLL) + s: the percentiles of that
  mixture over the measured s are computed exactly.

Value: push p99; baseline: polling p99; ratio = push p99 / polling p99 (target <= 0.1).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.common import Result, check
from zoomcal import demo
from zoomcal.app.propagation import percentile
from zoomcal.app.runner import EmbeddedRunner, Intervals
from zoomcal.config import Settings
from zoomcal.domain.timeutil import fmt_instant, now_utc

PEOPLE = 4
MEETINGS = 10          # per person: 40 edits
GAP = 0.15             # seconds between two edits
POLL = 60.0            # the polling interval modelled


def _google_versions(setup: demo.DemoSetup, topics: dict[int, str]) -> dict[int, float]:
    """Meeting id -> when the Google sandbox stored its event with the wanted title (those that have it)."""
    found = {}
    google = setup.world.google
    with google.lock:
        for user in setup.users:
            for event in google.calendars[user["google_calendar_id"]].events.values():
                meeting = event.get("extendedProperties", {}).get("private", {}).get("zoomcal_meeting_id", "")
                if meeting.isdigit() and topics.get(int(meeting)) == event.get("summary"):
                    found[int(meeting)] = event["_stored_at"]
    return found


async def _rename(setup: demo.DemoSetup, meetings: list[int], label: str, gap: float
                  ) -> tuple[dict[int, str], dict[int, float]]:
    """Rename every meeting on Zoom -> (the new titles, when each edit was sent)."""
    topics, sent = {}, {}
    for meeting in meetings:
        topics[meeting] = f"Meeting {meeting} {label}"
        sent[meeting] = time.time()
        await setup.actor.zoom_patch(meeting, topic=topics[meeting])
        await asyncio.sleep(gap)
    return topics, sent


async def _arrived(setup: demo.DemoSetup, topics: dict[int, str], wait: float = 30.0) -> dict[int, float]:
    deadline = time.monotonic() + wait
    while len(stored := _google_versions(setup, topics)) < len(topics) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return stored


def poll_quantile(q: float, synced: list[float], interval: float) -> float:
    """The q-quantile of U(0, interval) + s, s drawn from the measured sync times (bisection on the exact CDF)."""
    def cdf(x: float) -> float:
        return sum(min(1.0, max(0.0, (x - s) / interval)) for s in synced) / len(synced)

    lo, hi = min(synced), max(synced) + interval
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return hi


async def measure(count: int = PEOPLE, per_person: int = MEETINGS) -> dict[str, list[float] | int]:
    people = [(f"b9-{i}@example.com", f"Person {i}", "UTC", "google") for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        setup = await demo.setup(Settings(data_dir=Path(tmp)), people)
        try:
            day = now_utc().replace(hour=9, minute=0, second=0, microsecond=0)
            meetings = [(await setup.actor.zoom_create(
                u["zoom_user_id"], topic=f"Meeting {i}", type=2, duration=30,
                start_time=fmt_instant(day + timedelta(days=1 + i, hours=n))))["id"]
                for n, u in enumerate(setup.users) for i in range(per_person)]
            await demo.sync_all(setup, "b9:seed")
            random.Random(9).shuffle(meetings)
            async with demo.PushServer(setup) as push:
                await push.settle()          # the seed's own notifications
                topics, sent = await _rename(setup, meetings, "pushed", GAP)
                stored = await _arrived(setup, topics)
                await push.settle()
            pushed = [stored[m] - sent[m] for m in stored]
            lost = len(topics) - len(stored)

            setup.world.zoom.webhook_url = None      # polling: no notification reaches zoomcal
            setup.world.google.outbox.hold = True
            topics, _sent = await _rename(setup, meetings, "polled", 0.0)
            runner = EmbeddedRunner(setup.services, presence=False,
                                    intervals=Intervals(reconcile=POLL, tokens=1e9, channels=1e9, presence=1e9))
            start = time.time()
            await runner.step()                     # its first step is a reconciliation round
            stored = await _arrived(setup, topics)
            synced = [stored[m] - start for m in stored]
            return {"push": pushed, "synced": synced, "lost": lost + len(topics) - len(stored)}
        finally:
            await demo.close(setup)


def run() -> list[Result]:
    got = asyncio.run(measure())
    pushed, synced = sorted(got["push"]), sorted(got["synced"])
    push50, push99 = percentile(pushed, 50), percentile(pushed, 99)
    poll50, poll99 = poll_quantile(0.5, synced, POLL), poll_quantile(0.99, synced, POLL)
    ratio = push99 / poll99
    return [Result(
        f"B9 propagation Zoom edit -> Google event changed: push (p99) vs polling every {POLL:.0f} s",
        push99, poll99, ratio, "<= 0.1", check(ratio, "<= 0.1") and got["lost"] == 0, "s",
        f"{len(pushed)} edits, {PEOPLE} people; push p50 {push50:.3f} s, p99 {push99:.3f} s; polling p50 "
        f"{poll50:.1f} s, p99 {poll99:.1f} s = U(0, {POLL:.0f} s) + the measured sync of a reconciliation round "
        f"(p50 {percentile(synced, 50):.3f} s, p99 {percentile(synced, 99):.3f} s after its start); "
        f"{got['lost']} edits never reached Google")]
