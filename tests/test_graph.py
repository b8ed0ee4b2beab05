"""Microsoft 365 through the Graph sandbox: two-way with Zoom, series rebuilt from delta instances."""

from __future__ import annotations

from datetime import UTC, timedelta

import httpx
import pytest

from conftest import SANDBOX, link_sandbox_zoom, make_context, sync_first_pair
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.graph import expand
from zoomcal.service import add_account, add_user
from zoomcal.sync.engine import SyncEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_two_way_with_zoom(world, tmp_path):
    ctx = make_context(world, tmp_path)
    info = world.add_user("mia@example.com", "Mia", "Europe/Paris")
    add_user(ctx, "mia@example.com")
    link_sandbox_zoom(ctx, world, "mia@example.com", info)
    add_account(ctx, "mia@example.com", "graph", {"api_base": f"{SANDBOX}/graph/v1.0",
                                                  "token_url": f"{SANDBOX}/graph/oauth2/v2.0/token"},
                {"client_id": world.graph.client_id, "client_secret": world.graph.client_secret,
                 "refresh_token": info["graph_refresh_token"]}, info["graph_calendar_id"], "Outlook")
    actor = SandboxActor(world, transport=world.transport())
    engine = SyncEngine(ctx.db)

    async def sync(**kw):
        return await sync_first_pair(ctx, engine, **kw)

    start = (now_utc() + timedelta(days=3)).replace(hour=8, minute=0, second=0)
    meeting = await actor.zoom_create(info["zoom_user_id"], topic="Weekly", type=8, start_time=fmt_instant(start),
                                      duration=30, timezone="Europe/Paris",
                                      recurrence={"type": 1, "repeat_interval": 7, "end_times": 4})
    report = await sync()
    assert report.status == "ok" and report.writes == 1, report.errors
    events = world.graph.events["mia@example.com/calendar"]
    (series,) = events.values()
    assert series["subject"] == "Weekly" and series["location"]["displayName"] == meeting["join_url"]
    assert series["originalStartTimeZone"] == "Romance Standard Time"      # written with the Windows name
    # another Outlook client: rename the series, move the 2nd occurrence, cancel the 3rd
    token = world.graph.tokens.issue("mia@example.com")["access_token"]
    graph = httpx.AsyncClient(base_url="http://sandbox/graph/v1.0/users/mia@example.com/calendars/calendar",
                              transport=world.transport(), headers={"Authorization": f"Bearer {token}"})
    await graph.patch(f"/events/{series['id']}", json={"subject": "Weekly sync"})
    far = (now_utc() - timedelta(days=1), now_utc() + timedelta(days=60))
    second, third = expand(series, *far)[1:3]
    moved = fmt_instant(start + timedelta(days=7, hours=2))
    response = await graph.patch(f"/events/{second['id']}", json={
        "start": {"dateTime": moved[:-1], "timeZone": "UTC"},
        "end": {"dateTime": fmt_instant(start + timedelta(days=7, hours=2, minutes=30))[:-1], "timeZone": "UTC"}})
    assert response.status_code == 200
    assert (await graph.delete(f"/events/{third['id']}")).status_code == 204
    # and a new Outlook event marked for Zoom
    planning_start = start + timedelta(days=1, hours=5)
    await graph.post("/events", json={
        "subject": "Planning", "body": {"contentType": "text", "content": "numbers #zoom"},
        "start": {"dateTime": fmt_instant(planning_start)[:-1], "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": fmt_instant(planning_start + timedelta(hours=1))[:-1],
                "timeZone": "W. Europe Standard Time"}})
    report = await sync()
    assert report.status == "ok", report.errors
    full = await actor.zoom_get(meeting["id"])
    assert full["topic"] == "Weekly sync"
    assert [o["status"] for o in full["occurrences"]] == ["available", "available", "deleted", "available"]
    assert full["occurrences"][1]["start_time"] == moved
    planning = next(m for m in world.zoom.meetings.values() if m["topic"] == "Planning")
    outlook = next(e for e in events.values() if e["subject"] == "Planning")
    assert planning["join_url"] in outlook["body"]["content"] and outlook["location"]["displayName"]
    assert (await sync()).writes == 0
    world.graph.expire_delta_tokens()
    report = await sync()
    assert report.status == "ok" and report.writes == 0 and any("full resync" in n for n in report.notes)
    # deleting the series in Outlook cancels the Zoom meeting
    await graph.delete(f"/events/{series['id']}")
    report = await sync()
    assert report.status == "ok" and meeting["id"] not in world.zoom.meetings
    await graph.aclose()
    ctx.db.dispose()


async def test_instance_writes_go_in_one_batch(world):
    from datetime import datetime

    from zoomcal.auth.oauth import RefreshTokenSource
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.connectors.http import ApiClient
    from zoomcal.domain.content import make_content
    from zoomcal.mapping.rules import DEFAULT_RULES

    user = world.add_user("b@example.com")
    tokens = RefreshTokenSource("http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id,
                                world.graph.client_secret, user["graph_refresh_token"], basic_auth=False)
    conn = GraphConnector(ApiClient("http://sandbox/graph/v1.0", tokens, world.transport()), "b@example.com",
                          "calendar", DEFAULT_RULES,
                          (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)))
    moved = {f"2026-05-{d:02d}T07:00:00Z": {"start": f"2026-05-{d:02d}T09:00:00Z", "end": f"2026-05-{d:02d}T09:30:00Z"}
             for d in (5, 6, 7, 8)}
    content = make_content(title="Daily", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                           timezone="Europe/Paris", rrule="FREQ=DAILY;COUNT=10", overrides=moved,
                           exdates=["2026-05-10T07:00:00Z", "2026-05-11T07:00:00Z"])
    result = await conn.create(content, "ev-batch")
    assert result.item.content["overrides"] == moved and result.item.content["exdates"] == content["exdates"]
    # POST, instances, one $batch for the six instance writes, then the master and its instances read back
    assert result.api_calls == 5 and world.graph_calls["writes"] == 2
    await conn.aclose()
