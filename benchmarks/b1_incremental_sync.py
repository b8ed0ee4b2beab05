"""B1 — incremental sync.

* API calls per change: a calendar of 200 meetings, 10 edits on Zoom and 10 in the calendar, one sync.
  The minimum a correct sync needs: one list page per side, plus for each Zoom edit one GET (the list omits
  what changed) and one calendar PATCH, plus for each calendar edit one Zoom PATCH. Target <= 1.1x.
* A no-op resync performs zero writes (target: 0).
* Planner CPU for 10,000 linked events with 1% changed vs a raw dict diff of the same hashes. Target <= 3x.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from benchmarks.common import Result, best_of, check
from zoomcal.connectors.base import Item
from zoomcal.domain.content import content_hash, make_content
from zoomcal.sync.planner import EventRecord, PlanRules, SideLink, StatusIndex, plan_sync

MEETINGS = 200
EDITS = 10
PLANNER_EVENTS = 10_000


async def _api_calls() -> tuple[int, int, int]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_pairs, close_pairs, link_sandbox_user, make_context
    from zoomcal.sandbox.actor import SandboxActor
    from zoomcal.sandbox.world import SandboxWorld
    from zoomcal.sync.engine import SyncEngine

    world = SandboxWorld()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context(world, Path(tmp))
        user = link_sandbox_user(ctx, world, "bench@example.com")
        actor = SandboxActor(world, transport=world.transport())
        for i in range(MEETINGS):
            await actor.zoom_create(user["zoom_user_id"], topic=f"M{i}", type=2,
                                    start_time=f"2026-05-{1 + i % 28:02d}T{8 + i % 9:02d}:00:00Z", duration=30)
        engine = SyncEngine(ctx.store)

        async def sync():
            pairs = build_pairs(ctx)
            try:
                return await engine.run(pairs[0])
            finally:
                await close_pairs(ctx)

        await sync()
        meetings = sorted(world.zoom.meetings)
        for meeting_id in meetings[:EDITS]:
            await actor.zoom_patch(meeting_id, topic=f"edited {meeting_id}")
        cal = user["google_calendar_id"]
        edited_ids = {str(m) for m in meetings[:EDITS]}
        # calendar edits on other meetings than the Zoom edits (a same-meeting pair would be one conflict)
        events = [e for e in world.google.calendars[cal].events.values()
                  if e["extendedProperties"]["private"].get("zoomcal_meeting_id") not in edited_ids][:EDITS]
        for event in events:
            await actor.google_patch(cal, event["id"], summary=f"edited {event['id']}")
        before = world.api_calls()
        await sync()
        calls = world.api_calls() - before
        noop = await sync()
        ctx.store.dispose()
        await actor.aclose()
        return calls, noop.writes, 2 + EDITS * 2 + EDITS


def _planner_inputs():
    base = make_content(title="x", start="2026-05-01T10:00:00Z", end="2026-05-01T11:00:00Z", timezone="UTC")
    records, listing_a = [], {}
    old_hashes, new_hashes = {}, {}
    for i in range(PLANNER_EVENTS):
        content = {**base, "title": f"event {i}"}
        h = content_hash(content)
        records.append(EventRecord(f"ev{i}", content, SideLink(f"z{i}", None, h, content), SideLink(f"g{i}", "e", h,
                                                                                                      content)))
        old_hashes[f"z{i}"] = h
        new_hashes[f"z{i}"] = h
        if i % 100 == 0:
            # half the edits rename, half move the event (the merge then works on start + duration)
            moved = {"start": "2026-05-02T10:00:00Z", "end": "2026-05-02T11:30:00Z"}
            changed = {**content, "title": f"changed {i}"} if i % 200 == 0 else {**content, **moved}
            listing_a[f"z{i}"] = Item(f"z{i}", changed)
            new_hashes[f"z{i}"] = listing_a[f"z{i}"].hash
    return records, listing_a, old_hashes, new_hashes


def run() -> list[Result]:
    calls, noop_writes, minimum = asyncio.run(_api_calls())
    records, listing_a, old_hashes, new_hashes = _planner_inputs()
    rules = PlanRules()
    # the status index is built once per run as the store loads the links, like the baseline's dict of hashes
    status = StatusIndex.build(records)
    plan = plan_sync(listing_a, {}, status, rules)
    assert len(plan.writes) == PLANNER_EVENTS // 100
    ours = best_of(lambda: plan_sync(listing_a, {}, status, rules), 25)
    raw = best_of(lambda: {k: v for k, v in new_hashes.items() if old_hashes.get(k) != v}, 25)
    return [
        Result("B1 API calls per change vs minimum", calls, minimum, calls / minimum, "<= 1.1",
               check(calls / minimum, "<= 1.1"), "calls", f"{2 * EDITS} edits over {MEETINGS} meetings"),
        Result("B1 writes on a no-op resync", noop_writes, 0, float(noop_writes), "<= 0",
               noop_writes == 0, "writes"),
        Result("B1 planner CPU vs raw dict diff", ours, raw, ours / raw, "<= 3.0", check(ours / raw, "<= 3.0"), "s",
               f"{PLANNER_EVENTS} linked events, 1% changed (renames and moves)"),
    ]
