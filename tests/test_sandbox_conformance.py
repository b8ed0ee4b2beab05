"""The sandboxes answer in the vendors' own shapes: responses validated against ../shared/specs."""

from __future__ import annotations

import httpx
import pytest

from specs import google_schema, graph_schema, validate, without_annotations, zoom_response_schema
from zoomcal.sandbox.world import SandboxWorld


@pytest.fixture
def sandbox():
    world = SandboxWorld()
    user = world.add_user("s@example.com", "S", "Europe/Rome")
    return world, user


async def _client(world):
    return httpx.AsyncClient(base_url="http://sandbox", transport=world.transport())


@pytest.mark.anyio
async def test_zoom_meeting_shapes(sandbox):
    world, user = sandbox
    token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with await _client(world) as client:
        body = {"topic": "Spec check", "type": 8, "start_time": "2026-06-01T08:00:00Z", "duration": 30,
                "timezone": "Europe/Rome", "agenda": "a",
                "recurrence": {"type": 2, "weekly_days": "2,4", "end_times": 4},
                "settings": {"meeting_invitees": [{"email": "x@example.com"}]}}
        created = await client.post(f"/zoom/v2/users/{user['zoom_user_id']}/meetings", json=body, headers=headers)
        assert created.status_code == 201
        validate(created.json(), zoom_response_schema("meetings-api.json", "/users/{userId}/meetings", "post", "201"))
        meeting_id = created.json()["id"]
        got = await client.get(f"/zoom/v2/meetings/{meeting_id}", headers=headers)
        validate(got.json(), zoom_response_schema("meetings-api.json", "/meetings/{meetingId}", "get", "200"))
        assert len(got.json()["occurrences"]) == 4
        listed = await client.get(f"/zoom/v2/users/{user['zoom_user_id']}/meetings", headers=headers,
                                  params={"page_size": 300})
        validate(listed.json(), zoom_response_schema("meetings-api.json", "/users/{userId}/meetings", "get", "200"))
        too_big = await client.get(f"/zoom/v2/users/{user['zoom_user_id']}/meetings", headers=headers,
                                   params={"page_size": 301})
        assert too_big.status_code == 400
        patched = await client.patch(f"/zoom/v2/meetings/{meeting_id}", json={"topic": "x"}, headers=headers)
        assert patched.status_code == 204 and patched.content == b""
        presence = await client.get(f"/zoom/v2/users/{user['zoom_user_id']}/presence_status", headers=headers)
        validate(presence.json(), zoom_response_schema("users-api.json", "/users/{userId}/presence_status", "get",
                                                       "200"))
        unauth = await client.get(f"/zoom/v2/meetings/{meeting_id}")
        assert unauth.status_code == 401 and unauth.json()["code"] == 124


@pytest.mark.anyio
async def test_zoom_token_endpoint_like_the_real_one(sandbox):
    world, user = sandbox
    async with await _client(world) as client:
        ok = await client.post("/zoom/oauth/token", auth=(world.zoom.client_id, world.zoom.client_secret),
                               data={"grant_type": "account_credentials", "account_id": world.zoom.account_id})
        assert ok.status_code == 200 and ok.json()["token_type"] == "bearer" and ok.json()["expires_in"] > 0
        bad = await client.post("/zoom/oauth/token", auth=(world.zoom.client_id, "wrong"),
                                data={"grant_type": "account_credentials", "account_id": world.zoom.account_id})
        assert bad.status_code == 401
        first = await client.post("/zoom/oauth/token", auth=(world.zoom.client_id, world.zoom.client_secret),
                                  data={"grant_type": "refresh_token", "refresh_token": user["zoom_refresh_token"]})
        assert first.status_code == 200 and first.json()["refresh_token"] != user["zoom_refresh_token"]
        reused = await client.post("/zoom/oauth/token", auth=(world.zoom.client_id, world.zoom.client_secret),
                                   data={"grant_type": "refresh_token", "refresh_token": user["zoom_refresh_token"]})
        assert reused.status_code == 400   # rotated: the old refresh token is spent (invalid_grant)


@pytest.mark.anyio
async def test_google_event_shapes_sync_tokens_and_etags(sandbox):
    world, user = sandbox
    cal = user["google_calendar_id"]
    token = world.google.tokens.issue(cal)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"/google/calendar/v3/calendars/{cal}/events"
    async with await _client(world) as client:
        created = await client.post(base, headers=headers, json={
            "id": "abcdef12345", "summary": "Spec", "start": {"dateTime": "2026-06-01T10:00:00+02:00",
                                                              "timeZone": "Europe/Rome"},
            "end": {"dateTime": "2026-06-01T11:00:00+02:00", "timeZone": "Europe/Rome"},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=3"]})
        assert created.status_code == 200
        validate(created.json(), google_schema("Event"))
        dup = await client.post(base, headers=headers, json={"id": "abcdef12345", "start": {"date": "2026-06-01"},
                                                            "end": {"date": "2026-06-02"}})
        assert dup.status_code == 409
        first = await client.get(base, headers=headers)
        validate(first.json(), google_schema("Events"))
        sync_token = first.json()["nextSyncToken"]
        stale = await client.patch(f"{base}/abcdef12345", headers={**headers, "If-Match": '"0"'}, json={"summary": "x"})
        assert stale.status_code == 412
        inst = await client.get(f"{base}/abcdef12345/instances", headers=headers)
        validate(inst.json(), google_schema("Events"))
        assert [i["id"] for i in inst.json()["items"]][0] == "abcdef12345_20260601T080000Z"
        moved = await client.put(f"{base}/abcdef12345_20260602T080000Z", headers=headers, json={
            "summary": "Spec", "start": {"dateTime": "2026-06-02T12:00:00Z"},
            "end": {"dateTime": "2026-06-02T13:00:00Z"}})
        assert moved.json()["recurringEventId"] == "abcdef12345"
        delta = await client.get(base, headers=headers, params={"syncToken": sync_token})
        assert [i["id"] for i in delta.json()["items"]] == ["abcdef12345_20260602T080000Z"]
        world.google.expire_sync_tokens()
        gone = await client.get(base, headers=headers, params={"syncToken": sync_token})
        assert gone.status_code == 410 and gone.json()["error"]["errors"][0]["reason"] == "fullSyncRequired"
        busy = await client.post("/google/calendar/v3/freeBusy", headers=headers, json={
            "timeMin": "2026-06-01T00:00:00Z", "timeMax": "2026-06-04T00:00:00Z", "items": [{"id": cal}]})
        validate(busy.json(), google_schema("FreeBusyResponse"))
        assert len(busy.json()["calendars"][cal]["busy"]) == 3


@pytest.mark.anyio
async def test_injected_faults(sandbox):
    world, user = sandbox
    token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/zoom/v2/users/{user['zoom_user_id']}/meetings"
    async with await _client(world) as client:
        world.zoom_faults.add("429", method="GET", retry_after=7)
        limited = await client.get(url, headers=headers)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
        world.zoom_faults.add("503")
        assert (await client.get(url, headers=headers)).status_code == 503
        world.zoom_faults.add("timeout", method="POST")
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, headers=headers, json={"topic": "never", "type": 2})
        assert world.zoom.meetings == {}
        world.zoom_faults.add("lost_response", method="POST")
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, headers=headers, json={"topic": "applied", "type": 2})
        assert [m["topic"] for m in world.zoom.meetings.values()] == ["applied"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_graph_event_shapes(sandbox):
    world, user = sandbox
    token = world.graph.tokens.issue(user["email"])["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"/graph/v1.0/users/{user['email']}/calendar"
    schema = graph_schema("microsoft.graph.event")
    async with await _client(world) as client:
        created = await client.post(f"{base}/events", headers=headers, json={
            "subject": "Spec", "body": {"contentType": "text", "content": "x"},
            "start": {"dateTime": "2026-06-01T10:00:00", "timeZone": "W. Europe Standard Time"},
            "end": {"dateTime": "2026-06-01T11:00:00", "timeZone": "W. Europe Standard Time"},
            "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"],
                                       "firstDayOfWeek": "sunday"},
                           "range": {"type": "numbered", "numberOfOccurrences": 3, "startDate": "2026-06-01"}},
            "transactionId": "t-1"})
        assert created.status_code == 201
        validate(without_annotations(created.json()), schema)
        delta = await client.get(f"{base}/calendarView/delta", headers=headers,
                                 params={"startDateTime": "2026-05-01T00:00:00", "endDateTime": "2026-07-01T00:00:00"})
        page = delta.json()
        assert "@odata.deltaLink" in page and len(page["value"]) == 3
        for instance in page["value"]:
            validate(without_annotations(instance), schema)
            assert instance["type"] == "occurrence" and instance["seriesMasterId"] == created.json()["id"]
        again = await client.post(f"{base}/events", headers=headers, json={
            "subject": "Spec", "start": {"dateTime": "2026-06-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-06-01T11:00:00", "timeZone": "UTC"}, "transactionId": "t-1"})
        assert again.json()["id"] == created.json()["id"]          # transactionId: a retried create
        stale = await client.patch(f"{base}/events/{created.json()['id']}", headers={**headers, "If-Match": 'W/"x"'},
                                   json={"subject": "y"})
        assert stale.status_code == 412


@pytest.mark.anyio
async def test_zoom_calendar_event_shapes(sandbox):
    """Zoom's calendar answers as calendar-api.json says, and with no field the file does not list."""
    world, user = sandbox
    token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = "/zoom/v2/calendars/s@example.com/events"

    def check(response, path, method):
        assert response.status_code == 200, response.text
        schema = zoom_response_schema("calendar-api.json", path, method, "200")
        validate(response.json(), schema)
        return response.json(), schema

    async with await _client(world) as client:
        body = {"summary": "Spec check", "start": {"dateTime": "2026-06-01T08:00:00Z", "timeZone": "Europe/Rome"},
                "end": {"dateTime": "2026-06-01T08:30:00Z", "timeZone": "Europe/Rome"},
                "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"], "id": "mine", "extendedProperties": {"private": {}}}
        created, schema = check(await client.post(base, json=body, headers=headers), "/calendars/{calId}/events",
                                "post")
        assert created["id"] != "mine" and "extendedProperties" not in created      # the server picks ids
        assert set(created) <= set(schema["properties"])
        listed, schema = check(await client.get(base, headers=headers), "/calendars/{calId}/events", "get")
        assert set(listed["items"][0]) <= set(schema["properties"]["items"]["items"]["properties"])
        assert listed["nextSyncToken"]
        got, schema = check(await client.get(f"{base}/{created['id']}", headers=headers),
                            "/calendars/{calId}/events/{eventId}", "get")
        assert set(got) <= set(schema["properties"])
        patched, _ = check(await client.patch(f"{base}/{created['id']}", json={"summary": "x"}, headers=headers),
                           "/calendars/{calId}/events/{eventId}", "patch")
        assert patched["summary"] == "x"
        busy = await client.post("/zoom/v2/calendars/freeBusy", headers=headers, json={
            "timeMin": "2026-06-01T00:00:00Z", "timeMax": "2026-06-30T00:00:00Z", "items": [{"id": "s@example.com"}]})
        assert busy.status_code == 200
        validate(busy.json(), zoom_response_schema("calendar-api.json", "/calendars/freeBusy", "post", "200"))
        assert len(busy.json()["calendars"][0]["busy"]) == 3          # the weekly series, three times
        other = world.zoom.tokens.issue(world.add_user("t@example.com")["zoom_user_id"])["access_token"]
        denied = await client.get(base, headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403          # a user token reaches only its own calendar
