"""Hostile and broken input at the connector boundary: real items the sandboxes served, and real iCalendar text,
mutated at random. Whatever the mutation, a connector answers with an item or a typed error (InvalidItem for a
bad item), never with whatever a parser or a dictionary lookup happened to raise.

The examples are derandomized, so CI runs a fixed sample; ZOOMCAL_FUZZ_EXAMPLES=5000 explores more locally."""

from __future__ import annotations

import asyncio
import copy
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from conftest import build_pairs, close_pairs, link_sandbox_user, make_context
from zoomcal.app import sync as app_sync
from zoomcal.errors import ZoomcalError
from zoomcal.mapping.ical import content_to_calendar
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.world import SandboxWorld
from zoomcal.store.models import Account, Calendar, RemoteItem

EXAMPLES = int(os.environ.get("ZOOMCAL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HOSTILE = [None, 0, -1, 2**63, 1e308, float("nan"), True, "", "x" * 5000, "2026-13-45T99:99:99Z", "not a date",
           "\x00\ud800", [], {}, [None], {"": None}, "FREQ=SECONDLY;INTERVAL=-1", "Mars/Olympus_Mons",
           "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"]


@pytest.fixture(scope="module")
def served():
    """Real items as the Zoom and Google sandboxes serve them (a plain, a recurring and an edited one), and the
    connectors that read them."""
    import tempfile
    from pathlib import Path

    world = SandboxWorld()
    tmp = tempfile.TemporaryDirectory()
    ctx = make_context(world, Path(tmp.name))
    info = link_sandbox_user(ctx, world, "ada@example.com", "Ada", "Europe/Berlin")

    async def prepare():
        actor = SandboxActor(world, transport=world.transport())
        await actor.zoom_create(info["zoom_user_id"], topic="Plain", type=2, start_time="2026-12-10T09:00:00Z",
                                duration=30, agenda="Notes")
        await actor.zoom_create(info["zoom_user_id"], topic="Weekly", type=8, start_time="2026-12-07T09:00:00Z",
                                duration=45, timezone="Europe/Berlin",
                                recurrence={"type": 2, "repeat_interval": 1, "weekly_days": "2", "end_times": 6})
        await app_sync.run(ctx)
        await close_pairs(ctx)

    asyncio.run(prepare())
    with ctx.store.session() as s:
        raws: dict[str, list[dict]] = {}
        for provider, raw in s.execute(select(Account.provider, RemoteItem.raw)
                                       .join(Calendar, Calendar.id == RemoteItem.calendar_id)
                                       .join(Account, Account.id == Calendar.account_id)):
            raws.setdefault(provider, []).append(raw)
    (pair,) = build_pairs(ctx)
    connectors = {pair.side(side).connector.name: pair.side(side).connector for side in pair.sides}
    yield raws, connectors
    ctx.services.close()
    tmp.cleanup()


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


def _mutate(raw: dict, rng: random.Random, times: int) -> dict:
    raw = copy.deepcopy(raw)
    for _ in range(times):
        paths = [p for p in _paths(raw) if p]
        if not paths:
            break
        *parent_path, last = rng.choice(paths)
        parent = raw
        for step in parent_path:
            parent = parent[step]
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[last]
        else:
            parent[last] = copy.deepcopy(rng.choice(HOSTILE))
    return raw


def _only_typed_errors(connector, raws: list[dict]) -> None:
    try:
        connector.normalize(raws)
    except ZoomcalError:
        pass          # typed: the engine rejects the item with this reason


@pytest.mark.parametrize("provider", ["zoom", "google"])
@FUZZ
@given(seed=st.integers(0, 2**32 - 1), times=st.integers(1, 4))
def test_a_mutated_vendor_item_is_an_item_or_a_typed_rejection(served, provider, seed, times):
    raws, connectors = served
    rng = random.Random(seed)
    original = rng.choice(raws[provider])
    connector = connectors["zoom" if provider == "zoom" else "google"]
    _only_typed_errors(connector, [_mutate(original, rng, times)])


ICS = content_to_calendar({
    "plain@x": {"title": "Plain", "description": "d", "start": "2026-12-10T09:00:00Z", "end": "2026-12-10T10:00:00Z",
                "timezone": "Europe/Berlin", "all_day": False, "rrule": None, "exdates": [], "rdates": [],
                "overrides": {}, "attendees": [], "organizer": None, "show_as": "busy", "join": None},
    "weekly@x": {"title": "Weekly", "description": "", "start": "2026-12-07T09:00:00Z",
                 "end": "2026-12-07T09:45:00Z", "timezone": "Europe/Berlin", "all_day": False,
                 "rrule": "FREQ=WEEKLY;COUNT=6", "exdates": ["2026-12-14T09:00:00Z"], "rdates": [],
                 "overrides": {}, "attendees": [], "organizer": None, "show_as": "busy", "join": None},
}, marker=False).decode()
LINE_EDITS = ["", "DTSTART:", "DTSTART;TZID=/../../etc/passwd:20261201T100000", "DURATION:P1X", "RRULE:FREQ=",
              "RRULE:FREQ=HOURLY;BYSECOND=99", "RRULE:FREQ=DAILY;UNTIL=garbage", "EXDATE:notadate",
              "RECURRENCE-ID:20261214T090000Z", "DTEND:19000101T000000Z", "BEGIN:VEVENT", "END:VEVENT",
              "TZID=" + "A" * 400, "X-\x00:\x00", "ATTENDEE;PARTSTAT=:mailto:", "ORGANIZER:mailto:@@",
              "DTSTART;VALUE=DATE:20261301", "RDATE;VALUE=PERIOD:20261201T100000Z/PT1H", "SUMMARY:" + "é" * 9000]


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), times=st.integers(1, 5))
def test_a_mutated_feed_is_events_or_typed_rejections(seed, times):
    """Lines of a real feed replaced, dropped, duplicated or cut: splitting fails only as a whole file that is not
    iCalendar, and the ICS connector answers each series with an item or a typed error."""
    from zoomcal.connectors.ics.connector import IcsConnector
    from zoomcal.mapping.ical import split_events
    from zoomcal.mapping.rules import DEFAULT_RULES

    feed = IcsConnector("/nonexistent.ics", DEFAULT_RULES)

    rng = random.Random(seed)
    lines = ICS.split("\r\n")
    for _ in range(times):
        index = rng.randrange(1, len(lines) - 1)
        choice = rng.random()
        if choice < 0.4:
            lines[index] = rng.choice(LINE_EDITS)
        elif choice < 0.6:
            del lines[index]
        elif choice < 0.8:
            lines.insert(index, lines[index])
        else:
            lines[index] = lines[index][: rng.randrange(0, max(1, len(lines[index])))]
    try:
        blocks, tz = split_events("\r\n".join(lines))
    except ZoomcalError:
        return
    by_uid: dict[str, list] = {}
    for block in blocks:
        by_uid.setdefault(block["uid"], []).append({**block, "tz": tz})
    for series in by_uid.values():
        _only_typed_errors(feed, series)
