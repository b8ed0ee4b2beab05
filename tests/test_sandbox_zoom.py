"""The Zoom sandbox behaves as Zoom documents its API for what any client may send: recurrence expanded on the
meeting's wall clock with occurrence ids in epoch milliseconds, the whole settings object, occurrence edits,
listings by type and page, the token endpoint's query-string grants and rotating refresh tokens; every answer to
an operation zoomcal's connector uses is checked against meetings-api.json / users-api.json; and Zoom's own Python
client (zoomus) drives it over loopback."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from specs import validate, zoom_response_schema
from zoomcal.sandbox import zoom as zoom_sandbox
from zoomcal.sandbox.world import SandboxWorld

pytestmark = pytest.mark.anyio

MEETINGS, USERS = "meetings-api.json", "users-api.json"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def zoom():
    world = SandboxWorld()
    user = world.add_user("z@example.com", "Z", "Europe/Rome")
    headers = {"Authorization": f"Bearer {world.zoom.tokens.issue(user['zoom_user_id'])['access_token']}"}
    return world, user, headers


def client(world: SandboxWorld) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://sandbox/zoom", transport=world.transport())


def schema(doc: str, path: str, method: str, status: str = "200") -> dict:
    return zoom_response_schema(doc, path, method, status)


def statuses(doc: str, path: str, method: str) -> set[str]:
    """The answers the spec lists for an operation."""
    from specs import _zoom_doc

    return set(_zoom_doc(doc)["paths"][path][method]["responses"])


async def create(c: httpx.AsyncClient, user: dict, headers: dict, **body) -> dict:
    made = await c.post(f"/v2/users/{user['zoom_user_id']}/meetings", headers=headers, json=body)
    assert made.status_code == 201, made.text
    validate(made.json(), schema(MEETINGS, "/users/{userId}/meetings", "post", "201"))
    return made.json()


async def fetch(c: httpx.AsyncClient, headers: dict, meeting_id: int, **params) -> dict:
    got = await c.get(f"/v2/meetings/{meeting_id}", headers=headers, params=params)
    assert got.status_code == 200, got.text
    validate(got.json(), schema(MEETINGS, "/meetings/{meetingId}", "get"))
    return got.json()


def ms(text: str) -> str:
    return str(int(datetime.fromisoformat(text).timestamp() * 1000))


# --- independence ------------------------------------------------------------------------------------------

def test_the_zoom_sandbox_imports_nothing_of_the_code_it_checks():
    tree = ast.parse(Path(zoom_sandbox.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    checked = ("zoomcal.mapping", "zoomcal.connectors", "zoomcal.domain", "zoomcal.errors")
    assert not [name for name in imported if name.startswith(checked)]


# --- recurrence --------------------------------------------------------------------------------------------

async def test_weekly_occurrences_keep_the_wall_clock_and_are_named_by_their_start_in_milliseconds(zoom):
    world, user, headers = zoom
    async with client(world) as c:
        # Tuesdays and Thursdays at 09:00 in Rome from Tuesday 24 March 2026, across the change to summer time
        made = await create(c, user, headers, topic="weekly", type=8, start_time="2026-03-24T08:00:00Z",
                            duration=30, timezone="Europe/Rome",
                            recurrence={"type": 2, "weekly_days": "3,5", "end_times": 4})
        got = await fetch(c, headers, made["id"])
    starts = ["2026-03-24T08:00:00Z", "2026-03-26T08:00:00Z", "2026-03-31T07:00:00Z", "2026-04-02T07:00:00Z"]
    assert [o["start_time"] for o in got["occurrences"]] == starts
    assert [o["occurrence_id"] for o in got["occurrences"]] == [ms(s.replace("Z", "+00:00")) for s in starts]
    assert {(o["duration"], o["status"]) for o in got["occurrences"]} == {(30, "available")}
    assert made["occurrences"] == got["occurrences"]
    assert got["recurrence"] == {"type": 2, "weekly_days": "3,5", "end_times": 4}


async def test_weekly_series_starts_on_its_first_listed_day(zoom):
    world, user, headers = zoom
    async with client(world) as c:
        # asked for Fridays from a Monday: the first occurrence is that Friday
        made = await create(c, user, headers, type=8, start_time="2026-06-01T10:00:00Z", timezone="UTC",
                            recurrence={"type": 2, "weekly_days": "6", "repeat_interval": 2, "end_times": 3})
    assert [o["start_time"][:10] for o in made["occurrences"]] == ["2026-06-05", "2026-06-19", "2026-07-03"]


async def test_daily_and_monthly_series_and_their_ends(zoom):
    world, user, headers = zoom
    async with client(world) as c:
        daily = await create(c, user, headers, type=8, start_time="2026-06-01T10:00:00Z", timezone="UTC",
                             recurrence={"type": 1, "repeat_interval": 3,
                                         "end_date_time": "2026-06-10T10:00:00Z"})
        last_friday = await create(c, user, headers, type=8, start_time="2026-01-01T16:00:00Z", timezone="UTC",
                                   recurrence={"type": 3, "monthly_week": -1, "monthly_week_day": 6,
                                               "end_times": 3})
        fifteenth = await create(c, user, headers, type=8, start_time="2026-01-15T16:00:00Z", timezone="UTC",
                                 recurrence={"type": 3, "monthly_day": 15, "repeat_interval": 2, "end_times": 3})
        one = await create(c, user, headers, type=8, start_time="2026-01-15T16:00:00Z", timezone="UTC",
                           recurrence={"type": 1})
    assert [o["start_time"][:10] for o in daily["occurrences"]] == [
        "2026-06-01", "2026-06-04", "2026-06-07", "2026-06-10"]
    assert [o["start_time"][:10] for o in last_friday["occurrences"]] == ["2026-01-30", "2026-02-27", "2026-03-27"]
    assert [o["start_time"][:10] for o in fifteenth["occurrences"]] == ["2026-01-15", "2026-03-15", "2026-05-15"]
    assert len(one["occurrences"]) == 1 and one["recurrence"] == {"type": 1}     # end_times defaults to 1


@pytest.mark.parametrize("rrule,zone", [
    ("FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=9", "Europe/Rome"),
    ("FREQ=WEEKLY;INTERVAL=50;BYDAY=SA;COUNT=2", "America/New_York"),
    ("FREQ=DAILY;INTERVAL=99;COUNT=3", "UTC"),
    ("FREQ=DAILY;UNTIL=20260405T000000Z", "Europe/London"),
    ("FREQ=MONTHLY;INTERVAL=10;BYMONTHDAY=2;COUNT=2", "Asia/Tokyo"),
    ("FREQ=MONTHLY;BYDAY=-1FR;COUNT=5", "Australia/Sydney"),
    ("FREQ=MONTHLY;BYDAY=2TU;COUNT=4", "America/Los_Angeles"),
])
async def test_zoomcal_predicts_the_occurrences_zoom_lists(zoom, rrule, zone):
    """What zoomcal writes for a rule, and the occurrences it expects Zoom to list, against the sandbox's own
    expansion (across changes of summer time)."""
    from zoomcal.domain.content import make_content
    from zoomcal.domain.recurrence import normalize_rrule
    from zoomcal.mapping.rules import DEFAULT_RULES
    from zoomcal.mapping.zoom import content_to_meeting, expand_occurrences

    world, user, headers = zoom
    content = make_content(title="t", start="2026-03-20T09:30:00Z", end="2026-03-20T10:00:00Z", timezone=zone,
                           rrule=normalize_rrule(rrule))
    body, notes = content_to_meeting(content, DEFAULT_RULES)
    assert body["type"] == 8 and not notes
    async with client(world) as c:
        made = await create(c, user, headers, **body)
    assert made["occurrences"] == expand_occurrences(made, {})


@pytest.mark.parametrize("recurrence", [
    {"type": 1, "end_times": 61},
    {"type": 1, "repeat_interval": 100, "end_times": 2},
    {"type": 2, "repeat_interval": 51, "weekly_days": "2", "end_times": 2},
    {"type": 3, "repeat_interval": 11, "monthly_day": 1, "end_times": 2},
    {"type": 2, "end_times": 2},
    {"type": 2, "weekly_days": "0,8", "end_times": 2},
    {"type": 3, "monthly_day": 32, "end_times": 2},
    {"type": 3, "monthly_week": 5, "monthly_week_day": 2, "end_times": 2},
    {"type": 1, "end_times": 2, "end_date_time": "2026-07-01T00:00:00Z"},
    {"type": 4, "end_times": 2},
])
async def test_a_recurrence_past_zoom_limits_is_refused(zoom, recurrence):
    world, user, headers = zoom
    async with client(world) as c:
        refused = await c.post(f"/v2/users/{user['zoom_user_id']}/meetings", headers=headers,
                               json={"type": 8, "start_time": "2026-06-01T10:00:00Z", "recurrence": recurrence})
    assert refused.status_code == 400 and refused.json()["code"] == 300
    assert world.zoom.meetings == {}


async def test_a_start_time_without_offset_is_read_on_the_meetings_timezone(zoom):
    world, user, headers = zoom
    async with client(world) as c:
        named = await create(c, user, headers, type=2, start_time="2026-07-01T09:00:00", timezone="America/New_York")
        hosts = await create(c, user, headers, type=2, start_time="2026-07-01T09:00:00")     # the host's: Rome
        await c.patch(f"/v2/meetings/{named['id']}", headers=headers, json={"start_time": "2026-07-02T10:30:00"})
        moved = await fetch(c, headers, named["id"])
    assert named["start_time"] == "2026-07-01T13:00:00Z"
    assert hosts["start_time"] == "2026-07-01T07:00:00Z" and hosts["timezone"] == "Europe/Rome"
    assert moved["start_time"] == "2026-07-02T14:30:00Z"


async def test_a_client_sets_the_passcode_as_zoom_takes_it(zoom):
    world, user, headers = zoom
    async with client(world) as c:
        made = await create(c, user, headers, type=2, start_time="2026-07-01T09:00:00Z", password="ab@_*-12")
        drawn = await create(c, user, headers, type=2, start_time="2026-07-01T09:00:00Z")
        too_long = await c.patch(f"/v2/meetings/{made['id']}", headers=headers, json={"password": "12345678901"})
        spaced = await c.patch(f"/v2/meetings/{made['id']}", headers=headers, json={"password": "a b"})
        await c.patch(f"/v2/meetings/{made['id']}", headers=headers, json={"password": "new1"})
        got = await fetch(c, headers, made["id"])
    assert made["password"] == "ab@_*-12" and made["join_url"].endswith("?pwd=ab@_*-12")
    assert zoom_sandbox.PASSCODE.fullmatch(drawn["password"])
    assert too_long.status_code == spaced.status_code == 400
    assert got["password"] == "new1" and got["join_url"].endswith("?pwd=new1")


async def test_a_refused_patch_changes_nothing(zoom):
    world, user, headers = zoom
    async with client(world) as c:
        made = await create(c, user, headers, topic="kept", type=8, start_time="2026-06-01T10:00:00Z",
                            timezone="UTC", recurrence={"type": 1, "end_times": 2})
        refused = await c.patch(f"/v2/meetings/{made['id']}", headers=headers,
                                json={"topic": "lost", "recurrence": None})
        got = await fetch(c, headers, made["id"])
    assert refused.status_code == 400 and refused.json()["code"] == 300
    assert got == made


# --- settings and occurrences ------------------------------------------------------------------------------

async def test_every_setting_a_client_sets_comes_back_and_the_rest_are_zooms_defaults(zoom):
    world, user, headers = zoom
    settings = {"host_video": True, "participant_video": False, "auto_recording": "cloud", "waiting_room": True,
                "alternative_hosts": "a@example.com", "jbh_time": 5, "audio": "voip",
                "meeting_invitees": [{"email": "x@example.com"}], "custom_keys": [{"key": "k", "value": "v"}]}
    async with client(world) as c:
        made = await create(c, user, headers, type=2, start_time="2026-07-01T09:00:00Z", settings=settings)
        got = await fetch(c, headers, made["id"])
        await c.patch(f"/v2/meetings/{made['id']}", headers=headers, json={"settings": {"mute_upon_entry": True}})
        patched = await fetch(c, headers, made["id"])
        wrong = await c.patch(f"/v2/meetings/{made['id']}", headers=headers, json={"settings": {"host_video": "y"}})
    for answer in (made, got):
        assert answer["settings"] == {**zoom_sandbox.SETTINGS_DEFAULTS, **settings}
    assert patched["settings"] == {**got["settings"], "mute_upon_entry": True}    # a PATCH merges the settings
    assert wrong.status_code == 400 and wrong.json()["code"] == 300


async def test_an_occurrence_patch_applies_agenda_and_settings_to_that_occurrence_only(zoom):
    world, user, headers = zoom
    async with client(world) as c:
        made = await create(c, user, headers, type=8, start_time="2026-06-01T10:00:00Z", timezone="UTC",
                            agenda="series", recurrence={"type": 1, "end_times": 3})
        second = made["occurrences"][1]["occurrence_id"]
        patched = await c.patch(f"/v2/meetings/{made['id']}", headers=headers, params={"occurrence_id": second},
                                json={"agenda": "only this one", "duration": 45, "topic": "not per occurrence",
                                      "settings": {"waiting_room": True, "auto_recording": "local"}})
        one = await fetch(c, headers, made["id"], occurrence_id=second)
        series = await fetch(c, headers, made["id"])
        missing = await c.patch(f"/v2/meetings/{made['id']}", headers=headers, params={"occurrence_id": "123"},
                                json={"agenda": "x"})
    assert patched.status_code == 204
    assert (one["agenda"], one["duration"], one["start_time"]) == ("only this one", 45, "2026-06-02T10:00:00Z")
    assert one["settings"]["waiting_room"] is True and one["settings"]["auto_recording"] == "local"
    assert (series["agenda"], series["topic"], series["settings"]["waiting_room"]) == ("series", "Zoom meeting",
                                                                                      False)
    assert [o["duration"] for o in series["occurrences"]] == [60, 45, 60]
    assert missing.status_code == 404 and missing.json()["code"] == 3001


# --- listings ----------------------------------------------------------------------------------------------

async def test_the_meetings_list_by_type_at_the_sandbox_day(zoom):
    world, user, headers = zoom
    today = datetime(2026, 6, 15, 12, tzinfo=UTC)
    world.zoom.wall_clock = lambda: today
    url = f"/v2/users/{user['zoom_user_id']}/meetings"
    async with client(world) as c:
        past = await create(c, user, headers, topic="past", type=2, start_time="2026-06-10T09:00:00Z")
        future = await create(c, user, headers, topic="future", type=2, start_time="2026-06-20T09:00:00Z")
        series = await create(c, user, headers, topic="series", type=8, start_time="2026-06-14T09:00:00Z",
                              timezone="UTC", recurrence={"type": 1, "end_times": 3})
        floating = await create(c, user, headers, topic="floating", type=3)
        await create(c, user, headers, topic="instant", type=1)
        listed = {}
        for kind in zoom_sandbox.MEETING_LISTS:
            answer = await c.get(url, headers=headers, params={"type": kind})
            assert answer.status_code == 200
            validate(answer.json(), schema(MEETINGS, "/users/{userId}/meetings", "get"))
            listed[kind] = [m["id"] for m in answer.json()["meetings"]]
        bad = await c.get(url, headers=headers, params={"type": "all"})
    assert listed["scheduled"] == [past["id"], future["id"], series["id"], floating["id"]]
    assert listed["upcoming"] == listed["upcoming_meetings"] == [future["id"], series["id"]]
    assert listed["previous_meetings"] == [past["id"], series["id"]]
    assert listed["live"] == []
    assert bad.status_code == 400 and bad.json()["code"] == 300


async def test_the_meetings_list_pages_by_next_page_token_and_page_number(zoom):
    world, user, headers = zoom
    url = f"/v2/users/{user['zoom_user_id']}/meetings"
    async with client(world) as c:
        made = [(await create(c, user, headers, topic=f"m{i}", type=3))["id"] for i in range(7)]
        seen, token, pages = [], "", []
        while True:
            answer = (await c.get(url, headers=headers, params={"page_size": 3, "next_page_token": token})).json()
            validate(answer, schema(MEETINGS, "/users/{userId}/meetings", "get"))
            pages.append((answer["page_number"], answer["page_count"], answer["total_records"]))
            seen += [m["id"] for m in answer["meetings"]]
            token = answer["next_page_token"]
            if not token:
                break
        third = (await c.get(url, headers=headers, params={"page_size": 3, "page_number": 3})).json()
        other = await c.get("/v2/users", headers=headers, params={"next_page_token": "nope"})
    assert seen == made and pages == [(1, 3, 7), (2, 3, 7), (3, 3, 7)]
    assert [m["id"] for m in third["meetings"]] == made[6:]
    assert other.status_code == 400


async def test_the_users_list_pages_and_filters_by_status(zoom):
    world, user, headers = zoom
    for i in range(4):
        world.add_user(f"u{i}@example.com", f"U{i}", "UTC")
    gone = world.add_user("gone@example.com", "Gone", "UTC")
    world.zoom.users[gone["zoom_user_id"]]["status"] = "inactive"
    async with client(world) as c:
        emails, token, counts = [], "", []
        while True:
            answer = (await c.get("/v2/users", headers=headers, params={"page_size": 2,
                                                                          "next_page_token": token})).json()
            validate(answer, schema(USERS, "/users", "get"))
            emails += [u["email"] for u in answer["users"]]
            counts.append((answer["page_count"], answer["total_records"], len(answer["users"])))
            token = answer["next_page_token"]
            if not token:
                break
        inactive = (await c.get("/v2/users", headers=headers, params={"status": "inactive"})).json()
        too_big = await c.get("/v2/users", headers=headers, params={"page_size": 2001})
    assert emails == ["z@example.com"] + [f"u{i}@example.com" for i in range(4)]
    assert counts == [(3, 5, 2), (3, 5, 2), (3, 5, 1)]
    assert [u["email"] for u in inactive["users"]] == ["gone@example.com"]
    assert too_big.status_code == 400


# --- token endpoint ----------------------------------------------------------------------------------------

async def test_the_token_endpoint_takes_the_grant_in_the_query_string(zoom):
    world, user, _ = zoom
    creds = (world.zoom.client_id, world.zoom.client_secret)
    async with client(world) as c:
        account = await c.post("/oauth/token", auth=creds, params={"grant_type": "account_credentials",
                                                                   "account_id": world.zoom.account_id})
        wrong = await c.post("/oauth/token", auth=creds, params={"grant_type": "account_credentials",
                                                                 "account_id": "other"})
        first = await c.post("/oauth/token", auth=creds, params={"grant_type": "refresh_token",
                                                                 "refresh_token": user["zoom_refresh_token"]})
        again = await c.post("/oauth/token", auth=creds, data={"grant_type": "refresh_token",
                                                               "refresh_token": user["zoom_refresh_token"]})
        newest = await c.post("/oauth/token", auth=creds, data={"grant_type": "refresh_token",
                                                                "refresh_token": first.json()["refresh_token"]})
        me = await c.get(f"/v2/users/{user['zoom_user_id']}",
                         headers={"Authorization": f"Bearer {account.json()['access_token']}"})
    assert account.status_code == 200 and me.status_code == 200
    validate(me.json(), schema(USERS, "/users/{userId}", "get"))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_request"
    assert first.status_code == 200 and first.json()["refresh_token"] != user["zoom_refresh_token"]
    # refresh tokens rotate: the spent one is an invalid grant, answered 400 as Zoom does
    assert again.status_code == 400 and again.json() == {"reason": "Invalid Token!", "error": "invalid_grant"}
    assert newest.status_code == 200


# --- every operation the connector uses, against the spec ---------------------------------------------------

async def test_each_operation_zoomcal_uses_answers_as_the_spec_says(zoom):
    world, user, headers = zoom
    uid = user["zoom_user_id"]
    async with client(world) as c:
        made = await create(c, user, headers, topic="ops", type=8, start_time="2026-06-01T10:00:00Z",
                            timezone="UTC", recurrence={"type": 1, "end_times": 3},
                            settings={"custom_keys": [{"key": "zoomcal_event", "value": "e1"}]})
        occ = made["occurrences"][0]["occurrence_id"]
        answers = {
            ("/users/{userId}", "get"): await c.get(f"/v2/users/{uid}", headers=headers),
            ("/users/{userId}/meetings", "get"): await c.get(f"/v2/users/{uid}/meetings", headers=headers,
                                                             params={"type": "scheduled", "page_size": 300}),
            ("/meetings/{meetingId}", "get"): await c.get(f"/v2/meetings/{made['id']}", headers=headers),
            ("/users/{userId}/presence_status", "get"): await c.get(f"/v2/users/{uid}/presence_status",
                                                                    headers=headers),
        }
        for (path, method), answer in answers.items():
            assert answer.status_code == 200
            doc = USERS if "presence" in path or path == "/users/{userId}" else MEETINGS
            validate(answer.json(), schema(doc, path, method))
        empty = [
            ("/meetings/{meetingId}", "patch", await c.patch(f"/v2/meetings/{made['id']}", headers=headers,
                                                             params={"occurrence_id": occ}, json={"duration": 5})),
            ("/meetings/{meetingId}", "patch", await c.patch(f"/v2/meetings/{made['id']}", headers=headers,
                                                             json={"topic": "ops 2"})),
            ("/meetings/{meetingId}", "delete", await c.delete(f"/v2/meetings/{made['id']}", headers=headers,
                                                               params={"occurrence_id": occ})),
            ("/users/{userId}/presence_status", "put", await c.put(f"/v2/users/{uid}/presence_status",
                                                                   headers=headers, json={"status": "Away"})),
            ("/meetings/{meetingId}", "delete", await c.delete(f"/v2/meetings/{made['id']}", headers=headers)),
        ]
        gone = await c.get(f"/v2/meetings/{made['id']}", headers=headers)
    for path, method, answer in empty:
        doc = USERS if "presence" in path else MEETINGS
        assert answer.status_code == 204 and answer.content == b""
        assert "204" in statuses(doc, path, method)
    assert gone.status_code == 404 and "404" in statuses(MEETINGS, "/meetings/{meetingId}", "get")


def webhook_schema(doc: str, event: str) -> dict:
    """An event's body schema from a webhook file; the file's unresolvable `#/paths/meeting.updated/...` references
    (a known quirk) stand for that event's own `object`."""
    import json

    from specs import SPECS, require_specs

    require_specs()
    hooks = json.loads((SPECS / "zoom" / doc).read_text())["webhooks"]

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/paths/"):
                name = ref.split("/")[2]
                target = hooks[name]["post"]["requestBody"]["content"]["application/json"]["schema"]
                return resolve(target["properties"]["payload"]["properties"]["object"])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(hooks[event]["post"]["requestBody"]["content"]["application/json"]["schema"])


async def test_meeting_webhooks_carry_what_the_webhook_file_describes(zoom):
    import json

    world, user, headers = zoom
    world.zoom.webhook_url = "https://app.example.com/zoom"

    async def deliver(url, _headers, _body):
        return httpx.Response(200, text="ok")

    world.zoom.outbox.deliver = deliver
    async with client(world) as c:
        made = await create(c, user, headers, topic="hooks", type=8, start_time="2026-06-01T10:00:00Z",
                            timezone="UTC", recurrence={"type": 1, "end_times": 3}, settings={"host_video": True})
        first, second = (o["occurrence_id"] for o in made["occurrences"][:2])
        await c.patch(f"/v2/meetings/{made['id']}", headers=headers, json={"topic": "hooks 2",
                                                                           "settings": {"host_video": False}})
        await c.patch(f"/v2/meetings/{made['id']}", headers=headers, params={"occurrence_id": first},
                      json={"start_time": "2026-06-01T12:00:00Z"})
        await c.delete(f"/v2/meetings/{made['id']}", headers=headers, params={"occurrence_id": second})
        await c.delete(f"/v2/meetings/{made['id']}", headers=headers)
        await c.put(f"/v2/users/{user['zoom_user_id']}/presence_status", headers=headers, json={"status": "Away"})
    *events, presence = [json.loads(d.body) for d in world.zoom.outbox.sent]
    assert [e["event"] for e in events] == ["meeting.created", "meeting.updated", "meeting.updated",
                                            "meeting.deleted", "meeting.deleted"]
    for event in events:
        validate(event, webhook_schema("meetings-webhooks.json", event["event"]))
        assert event["payload"]["operator_id"] == user["zoom_user_id"]
    validate(presence, webhook_schema("users-webhooks.json", "user.presence_status_updated"))
    assert presence["payload"]["object"]["presence_status"] == "Away"
    created, series, single, one_gone, gone = (e["payload"] for e in events)
    assert created["object"]["settings"]["host_video"] is True and len(created["object"]["occurrences"]) == 3
    assert (series["object"]["topic"], series["old_object"]["topic"]) == ("hooks 2", "hooks")
    assert (series["object"]["settings"], series["old_object"]["settings"]) == ({"host_video": False},
                                                                                {"host_video": True})
    assert "start_time" not in series["object"] and "scope" not in series
    assert single["scope"] == "single" and single["object"]["occurrences"] == [
        {"occurrence_id": first, "start_time": "2026-06-01T12:00:00Z", "duration": 60}]
    assert single["old_object"]["occurrences"][0]["start_time"] == "2026-06-01T10:00:00Z"
    assert one_gone["object"]["occurrences"] == [{"occurrence_id": second, "start_time": "2026-06-02T10:00:00Z"}]
    assert "occurrences" not in gone["object"] and gone["object"]["id"] == made["id"]


# --- Zoom's own Python client --------------------------------------------------------------------------------

def test_zoomus_drives_the_served_sandbox(served_world):
    """zoomus signs in with the account's credentials (form body), then creates, reads, updates, lists and deletes
    meetings and lists users, as against Zoom."""
    from zoomus import ZoomClient

    world, base = served_world
    user = world.add_user("zz@example.com", "ZZ", "UTC")
    zoomus = ZoomClient(world.zoom.client_id, world.zoom.client_secret, world.zoom.account_id,
                        base_uri=f"{base}/zoom/v2", oauth_uri=f"{base}/zoom/oauth/token")
    uid = user["zoom_user_id"]
    made = zoomus.meeting.create(user_id=uid, topic="from zoomus", type=8, duration=25, timezone="UTC",
                                 start_time=datetime(2026, 6, 1, 10), agenda="a",
                                 recurrence={"type": 2, "weekly_days": "2,4", "end_times": 4},
                                 settings={"host_video": True, "join_before_host": True})
    assert made.status_code == 201, made.text
    meeting = made.json()
    validate(meeting, schema(MEETINGS, "/users/{userId}/meetings", "post", "201"))
    assert [o["start_time"] for o in meeting["occurrences"]] == [
        "2026-06-01T10:00:00Z", "2026-06-03T10:00:00Z", "2026-06-08T10:00:00Z", "2026-06-10T10:00:00Z"]
    assert meeting["settings"]["host_video"] is True and meeting["settings"]["join_before_host"] is True
    updated = zoomus.meeting.update(id=meeting["id"], topic="renamed", start_time=datetime(2026, 6, 2, 11))
    assert updated.status_code == 204
    got = zoomus.meeting.get(id=meeting["id"])
    validate(got.json(), schema(MEETINGS, "/meetings/{meetingId}", "get"))
    assert (got.json()["topic"], got.json()["start_time"]) == ("renamed", "2026-06-02T11:00:00Z")
    listed = zoomus.meeting.list(user_id=uid, page_size=10)
    validate(listed.json(), schema(MEETINGS, "/users/{userId}/meetings", "get"))
    assert [m["id"] for m in listed.json()["meetings"]] == [meeting["id"]]
    users = zoomus.user.list(page_size=1)
    validate(users.json(), schema(USERS, "/users", "get"))
    assert users.json()["total_records"] == 1 and users.json()["next_page_token"] == ""
    assert zoomus.meeting.delete(id=meeting["id"]).status_code == 204
    assert zoomus.meeting.get(id=meeting["id"]).status_code == 404
    assert world.zoom.meetings == {}
