"""Zoom's own calendar as the calendar that receives a user's Zoom meetings."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from conftest import SANDBOX, add_account, add_user, link_sandbox_zoom, make_context, sync_first_pair
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import SyncLogEntry
from zoomcal.sync.engine import SyncEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _link(ctx, world, email):
    info = world.add_user(email, "Ola", "Europe/Oslo")
    add_user(ctx, email)
    link_sandbox_zoom(ctx, world, email, info)
    add_account(ctx, email, "zoom-calendar", {"api_base": f"{SANDBOX}/zoom/v2",
                                              "token_url": f"{SANDBOX}/zoom/oauth/token"},
                {"client_id": world.zoom.client_id, "client_secret": world.zoom.client_secret,
                 "account_id": world.zoom.account_id}, email, "Zoom Calendar")
    return info


@pytest.fixture
def linked(world, tmp_path):
    """Ola, with Zoom meetings and Zoom's calendar linked: (context, sandbox user, scripted person, engine)."""
    ctx = make_context(world, tmp_path)
    info = _link(ctx, world, "ola@example.com")
    return ctx, info, SandboxActor(world, transport=world.transport()), SyncEngine(ctx.store)


def _zoom_calendar_client(world, email):
    token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
    return httpx.AsyncClient(base_url=f"http://sandbox/zoom/v2/calendars/{email}", transport=world.transport(),
                             headers={"Authorization": f"Bearer {token}"})


async def test_two_way_with_zoom_meetings(world, linked):
    ctx, info, actor, engine = linked
    start = (now_utc() + timedelta(days=2)).replace(hour=7, minute=0, second=0, microsecond=0)
    meeting = await actor.zoom_create(info["zoom_user_id"], topic="Standup", type=8, start_time=fmt_instant(start),
                                      duration=15, timezone="Europe/Oslo",
                                      recurrence={"type": 1, "repeat_interval": 1, "end_times": 5})
    report = await sync_first_pair(ctx, engine)
    assert report.status == "ok" and report.writes == 1, report.errors
    cal = _zoom_calendar_client(world, "ola@example.com")
    (event,) = (await cal.get("/events")).json()["items"]
    assert event["summary"] == "Standup" and event["location"] == meeting["join_url"]
    assert event["recurrence"] == ["RRULE:FREQ=DAILY;COUNT=5"]
    assert "extendedProperties" not in event and "etag" not in event       # as calendar-api.json lists events

    # in Zoom Calendar: rename the series; in Zoom: cancel the 2nd occurrence and move the 3rd
    assert (await cal.patch(f"/events/{event['id']}", json={"summary": "Daily standup"})).status_code == 200
    full = await actor.zoom_get(meeting["id"])
    await actor.zoom_delete(meeting["id"], full["occurrences"][1]["occurrence_id"])
    await actor.zoom_patch(meeting["id"], full["occurrences"][2]["occurrence_id"],
                           start_time=fmt_instant(start + timedelta(days=2, hours=3)))
    report = await sync_first_pair(ctx, engine)
    assert report.status == "ok", report.errors
    assert (await actor.zoom_get(meeting["id"]))["topic"] == "Daily standup"
    (event,) = (await cal.get("/events")).json()["items"]
    cancelled = fmt_instant(start + timedelta(days=1)).replace("-", "").replace(":", "")
    assert any(line.startswith("EXDATE") and cancelled[:8] in line for line in event["recurrence"]), event
    with ctx.store.session() as s:   # the moved occurrence could not be written there, and the log says why
        notes = list(s.scalars(select(SyncLogEntry.message).where(SyncLogEntry.action == "note")))
    assert any("does not say which occurrence" in n for n in notes), notes
    assert (await sync_first_pair(ctx, engine)).writes == 0          # converged: nothing echoes back


async def test_a_create_whose_answer_was_lost_is_found_not_repeated(world, linked):
    ctx, info, actor, engine = linked
    start = (now_utc() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    await actor.zoom_create(info["zoom_user_id"], topic="Review", type=2, start_time=fmt_instant(start),
                            duration=30, timezone="UTC")
    world.zoom_calendar_faults.add("lost_response", method="POST", path="/events")
    report = await sync_first_pair(ctx, engine)
    assert report.status in ("ok", "partial"), report.errors
    for _ in range(2):
        await sync_first_pair(ctx, engine)
    items = (await _zoom_calendar_client(world, "ola@example.com").get("/events")).json()["items"]
    assert [i["summary"] for i in items] == ["Review"]
    with ctx.store.session() as s:
        notes = list(s.scalars(select(SyncLogEntry.message).where(SyncLogEntry.action == "note")))
    assert any("found the event created earlier" in n for n in notes), notes


async def test_free_busy_of_zoom_calendars(world, linked):
    from conftest import build_pairs, close_pairs
    from zoomcal.connectors.zoom_calendar.connector import ZoomCalendarConnector
    from zoomcal.errors import NotFound

    ctx, info, actor, engine = linked
    world.add_user("pia@example.com")
    start = (now_utc() + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    pia = _zoom_calendar_client(world, "pia@example.com")
    await pia.post("/events", json={"summary": "Busy", "start": {"dateTime": fmt_instant(start)},
                                    "end": {"dateTime": fmt_instant(start + timedelta(hours=1))}})
    await pia.post("/events", json={"summary": "Free", "transparency": "transparent",
                                    "start": {"dateTime": fmt_instant(start + timedelta(hours=2))},
                                    "end": {"dateTime": fmt_instant(start + timedelta(hours=3))}})
    pairs = build_pairs(ctx)
    try:
        conn = next(p.b.connector for p in pairs if isinstance(p.b.connector, ZoomCalendarConnector))
        busy = await conn.free_busy(["pia@example.com", "ola@example.com"], start - timedelta(hours=1),
                                    start + timedelta(hours=5))
        assert busy == {"pia@example.com": [(start, start + timedelta(hours=1))], "ola@example.com": []}
        with pytest.raises(NotFound, match="nobody@example.com"):
            await conn.free_busy(["nobody@example.com"], start, start + timedelta(hours=1))
    finally:
        await close_pairs(ctx)
