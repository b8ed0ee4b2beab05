"""The Graph sandbox driven as other clients drive Microsoft Graph: Microsoft's own SDK (msgraph-sdk) and plain
HTTP, answers checked against graph-v1.0-*.yml and against Graph's documented behaviour."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import httpx
import pytest
from kiota_abstractions.authentication import AnonymousAuthenticationProvider
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.location import Location
from msgraph.generated.users.item.calendar.calendar_view.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.graph_request_adapter import options as sdk_options
from msgraph_core import GraphClientFactory

from specs import SPECS, graph_schema, require_specs, validate, without_annotations
from zoomcal.sandbox.world import SandboxWorld

pytestmark = pytest.mark.anyio
BASE = "http://sandbox/graph/v1.0"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def graph():
    world = SandboxWorld()
    info = world.add_user("kai@example.com", "Kai", "Europe/Berlin")
    token = world.graph.tokens.issue("kai@example.com")["access_token"]
    http = httpx.AsyncClient(base_url=BASE, transport=world.transport(),
                             headers={"Authorization": f"Bearer {token}"})
    return world, info, http


def sdk(world: SandboxWorld, http: httpx.AsyncClient) -> GraphServiceClient:
    """Microsoft's client over the sandbox's transport, with its default middleware (`/me` is spelled by it)."""
    client = GraphClientFactory.create_with_default_middleware(options=sdk_options, client=httpx.AsyncClient(
        transport=world.transport(), headers={"Authorization": http.headers["authorization"]}))
    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider(), client)
    adapter.base_url = BASE
    return GraphServiceClient(request_adapter=adapter)


def when(value: str, zone: str) -> dict[str, str]:
    return {"dateTime": value, "timeZone": zone}


def event_body(subject: str, start: str, end: str, zone: str = "UTC", **more: Any) -> dict[str, Any]:
    return {"subject": subject, "start": when(start, zone), "end": when(end, zone), **more}


def check_event(item: dict[str, Any]) -> None:
    validate(without_annotations(item), graph_schema("microsoft.graph.event"))


# --- the resource and its paths -----------------------------------------------------------------------------------

async def test_sdk_creates_an_event_graph_answers_in_full_on_every_path_family(graph):
    world, info, http = graph
    client = sdk(world, http)
    made = await client.users.by_user_id("kai@example.com").calendar.events.post(Event(
        subject="Planning", body=ItemBody(content_type=BodyType.Html, content="<p>Agenda <b>first</b></p>"),
        start=DateTimeTimeZone(date_time="2026-06-01T10:00:00", time_zone="W. Europe Standard Time"),
        end=DateTimeTimeZone(date_time="2026-06-01T11:00:00", time_zone="W. Europe Standard Time"),
        location=Location(display_name="Room 4")))
    # answered in UTC, the zone it was written in kept
    assert (made.start.date_time, made.start.time_zone) == ("2026-06-01T08:00:00.0000000", "UTC")
    assert made.original_start_time_zone == "W. Europe Standard Time" and made.type.value == "singleInstance"
    assert made.body_preview == "Agenda first" and made.organizer.email_address.address == "kai@example.com"
    assert made.i_cal_u_id and made.change_key and made.web_link and made.is_organizer and not made.is_cancelled
    assert made.created_date_time and made.last_modified_date_time and made.show_as.value == "busy"
    calendar_id = info["graph_calendar_id"].partition("/")[2]
    calendars = (await http.get("/me/calendars")).json()["value"]
    assert [(c["id"], c["isDefaultCalendar"]) for c in calendars] == [(calendar_id, True)]
    assert calendar_id != "calendar" and (await http.get("/users/kai@example.com/calendar")).json()["id"] == calendar_id
    paths = ["/me/events", "/me/calendar/events", "/users/kai@example.com/events",
             f"/users/kai@example.com/calendars/{calendar_id}/events", f"/me/calendars/{calendar_id}/events"]
    for path in paths:
        listed = await http.get(path)
        assert listed.status_code == 200, path
        (item,) = listed.json()["value"]
        assert item["id"] == made.id
        check_event(item)
        one = (await http.get(f"{path}/{made.id}")).json()
        check_event(one)
        assert one["location"]["displayName"] == "Room 4" and one["body"]["contentType"] == "html"
    assert (await http.get(f"/users/kai@example.com/calendars/AAMkADnope/events/{made.id}")).status_code == 404
    assert (await http.get(f"/users/Kai@Example.COM/events/{made.id}")).status_code == 200   # any case
    text = await http.get(f"/me/events/{made.id}", headers={"Prefer": 'outlook.body-content-type="text"'})
    assert text.json()["body"] == {"contentType": "text", "content": "Agenda first"}
    assert text.headers["Preference-Applied"] == 'outlook.body-content-type="text"'
    nobody = await http.get("/users/nobody@example.com/events")
    assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "ErrorInvalidUser"
    stranger = world.add_user("eve@example.com")
    assert (await http.get(f"/users/{stranger['email']}/calendar/events")).status_code == 403


async def test_times_are_answered_in_the_zone_the_client_prefers(graph):
    world, _info, http = graph
    made = (await http.post("/me/events", json=event_body("Call", "2026-01-15T09:00:00", "2026-01-15T09:30:00",
                                                            "Pacific Standard Time"),
                            headers={"Prefer": 'outlook.timezone="Tokyo Standard Time"'}))
    assert made.status_code == 201
    assert made.headers["Preference-Applied"] == 'outlook.timezone="Tokyo Standard Time"'
    assert made.json()["start"] == when("2026-01-16T02:00:00.0000000", "Tokyo Standard Time")
    plain = (await http.get(f"/me/events/{made.json()['id']}")).json()
    assert plain["start"] == when("2026-01-15T17:00:00.0000000", "UTC")
    iana = (await http.get(f"/me/events/{made.json()['id']}", headers={"Prefer": 'outlook.timezone="Europe/Paris"'}))
    assert iana.json()["end"] == when("2026-01-15T18:30:00.0000000", "Europe/Paris")
    day = (await http.post("/me/events", json=event_body("Off", "2026-01-20T00:00:00", "2026-01-21T00:00:00",
                                                          "Pacific Standard Time", isAllDay=True))).json()
    seen = (await http.get(f"/me/events/{day['id']}", headers={"Prefer": 'outlook.timezone="Tokyo Standard Time"'}))
    assert seen.json()["start"] == when("2026-01-20T00:00:00.0000000", "Tokyo Standard Time")   # midnight anywhere
    bad = await http.get("/me/events", headers={"Prefer": 'outlook.timezone="Mars Standard Time"'})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "TimeZoneNotSupportedException"
    assert (await http.post("/me/events", json=event_body("Nope", "2026-01-20T09:00:00", "2026-01-20T10:00:00",
                                                          "Nowhere/Else"))).status_code == 400
    noon = await http.post("/me/events", json=event_body("Half", "2026-01-20T12:00:00", "2026-01-21T00:00:00",
                                                         isAllDay=True))
    assert noon.status_code == 400      # an all-day event runs midnight to midnight


async def test_pages_top_maxpagesize_and_select(graph):
    _world, _info, http = graph
    for n in range(12):
        r = await http.post("/me/events", json=event_body(f"E{n:02d}", f"2026-02-{n + 1:02d}T09:00:00",
                                                          f"2026-02-{n + 1:02d}T10:00:00"))
        assert r.status_code == 201
    first = (await http.get("/me/events")).json()
    assert len(first["value"]) == 10 and first["@odata.nextLink"]             # Graph's page of 10
    rest = (await http.get(first["@odata.nextLink"])).json()
    assert len(rest["value"]) == 2 and "@odata.nextLink" not in rest
    assert len({e["id"] for e in first["value"] + rest["value"]}) == 12
    assert len((await http.get("/me/events", params={"$top": "5"})).json()["value"]) == 5
    small = await http.get("/me/calendarView", params={"startDateTime": "2026-02-01T00:00:00Z",
                                                       "endDateTime": "2026-02-04T00:00:00Z"},
                           headers={"Prefer": "odata.maxpagesize=2"})
    assert [e["subject"] for e in small.json()["value"]] == ["E00", "E01"]
    assert "odata.maxpagesize=2" in small.headers["Preference-Applied"]
    picked = (await http.get("/me/events", params={"$select": "subject,start", "$top": "1"})).json()["value"][0]
    assert set(picked) == {"id", "@odata.etag", "subject", "start"}
    assert (await http.get("/me/calendarView")).status_code == 400            # a window is required
    late = (await http.get("/me/events", params={"$filter": "start/dateTime ge '2026-02-10T00:00:00'",
                                                 "$orderby": "subject desc"})).json()["value"]
    assert [e["subject"] for e in late] == ["E11", "E10", "E09"]
    named = (await http.get("/me/events", params={"$filter": "subject eq 'E03' and isAllDay eq false"})).json()
    assert [e["subject"] for e in named["value"]] == ["E03"]
    assert (await http.get("/me/events", params={"$filter": "subject eq"})).status_code == 400


# --- recurrence ---------------------------------------------------------------------------------------------------

SERIES = [
    # last Friday monthly across the European DST change: 09:00 Berlin is 08:00Z, then 07:00Z
    ({"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
     {"type": "numbered", "numberOfOccurrences": 4, "startDate": "2026-01-30"},
     "2026-01-30T09:00:00", "W. Europe Standard Time",
     ["2026-01-30T08:00", "2026-02-27T08:00", "2026-03-27T08:00", "2026-04-24T07:00"]),
    # every other week on Sunday and Tuesday: the week starts on Sunday, so Sunday 7 June is in an off week
    ({"type": "weekly", "interval": 2, "daysOfWeek": ["sunday", "tuesday"], "firstDayOfWeek": "sunday"},
     {"type": "numbered", "numberOfOccurrences": 4, "startDate": "2026-06-02"},
     "2026-06-02T09:00:00", "UTC", ["2026-06-02T09:00", "2026-06-14T09:00", "2026-06-16T09:00", "2026-06-28T09:00"]),
    # the same with weeks starting on Monday
    ({"type": "weekly", "interval": 2, "daysOfWeek": ["sunday", "tuesday"], "firstDayOfWeek": "monday"},
     {"type": "numbered", "numberOfOccurrences": 4, "startDate": "2026-06-02"},
     "2026-06-02T09:00:00", "UTC", ["2026-06-02T09:00", "2026-06-07T09:00", "2026-06-16T09:00", "2026-06-21T09:00"]),
    # an end date is the last day that may hold one, in the event's zone
    ({"type": "daily", "interval": 1}, {"type": "endDate", "startDate": "2026-06-01", "endDate": "2026-06-03"},
     "2026-06-01T20:00:00", "Pacific Standard Time", ["2026-06-02T03:00", "2026-06-03T03:00", "2026-06-04T03:00"]),
    # 29 February: only leap years
    ({"type": "absoluteYearly", "interval": 1, "month": 2, "dayOfMonth": 29},
     {"type": "noEnd", "startDate": "2024-02-29"}, "2024-02-29T12:00:00", "UTC",
     ["2024-02-29T12:00", "2028-02-29T12:00"]),
    # a start that does not match the pattern is not an occurrence
    ({"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
     {"type": "numbered", "numberOfOccurrences": 2, "startDate": "2026-05-31"}, "2026-05-31T10:00:00", "UTC",
     ["2026-06-01T10:00", "2026-06-08T10:00"]),
    # the second Tuesday of every third month
    ({"type": "relativeMonthly", "interval": 3, "daysOfWeek": ["tuesday"], "index": "second"},
     {"type": "numbered", "numberOfOccurrences": 3, "startDate": "2026-01-13"}, "2026-01-13T15:00:00", "UTC",
     ["2026-01-13T15:00", "2026-04-14T15:00", "2026-07-14T15:00"]),
]


@pytest.mark.parametrize(("pattern", "range_", "start", "zone", "expected"), SERIES)
async def test_patterned_recurrence_expands_in_the_start_zone(graph, pattern, range_, start, zone, expected):
    _world, _info, http = graph
    end = start[:11] + f"{int(start[11:13]) + 1:02d}" + start[13:]
    made = await http.post("/me/events", json=event_body("S", start, end, zone,
                                                         recurrence={"pattern": pattern, "range": range_}))
    assert made.status_code == 201, made.text
    window = {"startDateTime": "2024-01-01T00:00:00Z", "endDateTime": "2029-01-01T00:00:00Z"}
    view = (await http.get("/me/calendarView", params=window, headers={"Prefer": "odata.maxpagesize=50"})).json()
    assert [i["start"]["dateTime"][:16] for i in view["value"]] == expected
    listed = (await http.get(f"/me/events/{made.json()['id']}/instances", params={**window, "$top": "50"})).json()
    assert [i["originalStart"][:16] for i in listed["value"]] == expected
    for item in listed["value"]:
        check_event(item)
        assert item["seriesMasterId"] == made.json()["id"] and made.json()["id"] not in item["id"]   # opaque


async def test_a_pattern_graph_refuses_is_refused(graph):
    _world, _info, http = graph
    for pattern, range_ in (({"type": "weekly", "interval": 1}, {"type": "noEnd", "startDate": "2026-06-01"}),
                            ({"type": "absoluteMonthly", "interval": 1}, {"type": "noEnd", "startDate": "2026-06-01"}),
                            ({"type": "hourly", "interval": 1}, {"type": "noEnd", "startDate": "2026-06-01"}),
                            ({"type": "daily", "interval": 1}, {"type": "numbered", "startDate": "2026-06-01"}),
                            ({"type": "daily", "interval": 1}, {"type": "noEnd"})):
        answer = await http.post("/me/events", json=event_body("S", "2026-06-01T09:00:00", "2026-06-01T10:00:00",
                                                               recurrence={"pattern": pattern, "range": range_}))
        assert answer.status_code == 400, (pattern, range_)


async def test_an_occurrence_patched_through_the_sdk_keeps_body_and_location(graph):
    world, _info, http = graph
    client = sdk(world, http)
    series = (await http.post("/me/events", json=event_body(
        "Sync", "2026-06-01T09:00:00", "2026-06-01T09:30:00", "W. Europe Standard Time",
        body={"contentType": "text", "content": "series notes"}, location={"displayName": "Room 1"},
        recurrence={"pattern": {"type": "daily", "interval": 1},
                    "range": {"type": "numbered", "numberOfOccurrences": 3, "startDate": "2026-06-01"}}))).json()
    window = {"startDateTime": "2026-05-31T00:00:00Z", "endDateTime": "2026-06-05T00:00:00Z"}
    first, second, third = (await http.get(f"/me/events/{series['id']}/instances", params=window)).json()["value"]
    events = client.users.by_user_id("kai@example.com").events
    patched = await events.by_event_id(second["id"]).patch(Event(
        body=ItemBody(content_type=BodyType.Text, content="only this one"), location=Location(display_name="Room 9")))
    assert patched.type.value == "exception" and patched.location.display_name == "Room 9"
    assert patched.body.content == "only this one" and patched.subject == "Sync"
    again = (await http.get(f"/me/events/{second['id']}")).json()
    check_event(again)
    assert again["bodyPreview"] == "only this one" and again["start"] == second["start"]
    untouched = (await http.get(f"/me/events/{third['id']}")).json()
    assert untouched["type"] == "occurrence" and untouched["location"]["displayName"] == "Room 1"
    master = (await http.get(f"/me/events/{series['id']}")).json()
    assert master["body"]["content"] == "series notes" and master["type"] == "seriesMaster"
    q = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(start_date_time=window["startDateTime"],
                                                                   end_date_time=window["endDateTime"])
    delta = await client.me.calendar.calendar_view.delta.get(RequestConfiguration(query_parameters=q))
    assert {(e.id, e.type.value) for e in delta.value} == {(first["id"], "occurrence"), (second["id"], "exception"),
                                                          (third["id"], "occurrence")}
    await events.by_event_id(first["id"]).delete()
    assert (await http.get(f"/me/events/{first['id']}")).status_code == 404
    later = (await http.get(delta.odata_delta_link)).json()["value"]
    assert {"id": first["id"], "@removed": {"reason": "deleted"}}.items() <= \
        {k: v for item in later if item["id"] == first["id"] for k, v in item.items()}.items()
    not_one = second["id"][:-4] + "AAAA"
    assert (await http.get(f"/me/events/{not_one}")).status_code == 404


# --- $batch -------------------------------------------------------------------------------------------------------

async def test_batch_answers_each_request_with_headers_and_follows_depends_on(graph):
    _world, _info, http = graph
    json_type = {"Content-Type": "application/json"}
    good = event_body("B", "2026-07-01T09:00:00", "2026-07-01T10:00:00")
    answer = await http.post("/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": "/me/events", "body": good, "headers": json_type},
        {"id": "2", "method": "POST", "url": "/me/events", "body": {"subject": "no times"}, "headers": json_type},
        {"id": "3", "method": "GET", "url": "/me/events?$select=subject", "dependsOn": ["1"]},
        {"id": "4", "method": "GET", "url": "/me/events", "dependsOn": ["2"]}]})
    replies = {r["id"]: r for r in answer.json()["responses"]}
    assert answer.status_code == 200 and {k: r["status"] for k, r in replies.items()} == \
        {"1": 201, "2": 400, "3": 200, "4": 424}
    assert replies["1"]["headers"]["Content-Type"].startswith("application/json")
    check_event(replies["1"]["body"])
    assert [e["subject"] for e in replies["3"]["body"]["value"]] == ["B"]
    for requests in ([{"id": "1", "method": "GET", "url": "/me/events"}] * 2,
                     [{"id": "1", "method": "POST", "url": "/me/events", "body": good}],
                     [{"id": "1", "method": "GET", "url": "/me/events", "dependsOn": ["9"]}],
                     [{"id": str(n), "method": "GET", "url": "/me/events"} for n in range(21)]):
        refused = await http.post("/$batch", json={"requests": requests})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest"


# --- what zoomcal's connector reads, checked against the vendor's files ----------------------------------------------

def _openapi_node(node: dict) -> dict:
    kept = {k: v for k, v in node.items() if k not in ("additionalProperties", "nullable", "description", "example")}
    return {"anyOf": [kept, {"type": "null"}]} if node.get("nullable") else kept


@lru_cache
def subscription_schema() -> dict:
    """microsoft.graph.subscription from the change notifications slice, `nullable` read as the calendar's is."""
    import yaml

    require_specs()
    doc = yaml.safe_load((SPECS / "microsoft" / "graph-v1.0-changenotifications.yml").read_text())
    components = json.loads(json.dumps(doc["components"]), object_hook=_openapi_node)
    return {"$ref": "#/components/schemas/microsoft.graph.subscription", "components": components}


BATCH_REPLY = {"type": "object", "required": ["id", "status", "headers"],
               "properties": {"id": {"type": "string"}, "status": {"type": "integer"},
                              "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                              "body": {"type": "object"}}}


class Recorder(httpx.AsyncBaseTransport):
    """The sandbox's transport, keeping every answer (method, path, status, JSON body)."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.seen: list[tuple[str, str, int, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        body = httpx.Response(response.status_code, content=content, headers=response.headers).json() \
            if content and response.headers.get("content-type", "").startswith("application/json") else None
        self.seen.append((request.method, request.url.path, response.status_code, body))
        return httpx.Response(response.status_code, content=content, headers=response.headers)


def check_answer(method: str, path: str, body: Any) -> str:
    """Validate one answer the connector read against the description of its operation -> the operation."""
    if path.endswith("/$batch"):
        for reply in body["responses"]:
            validate(reply, BATCH_REPLY)
            if reply.get("body") and reply["status"] < 300:
                check_event(reply["body"])
        return "$batch"
    if "/subscriptions" in path:
        validate(without_annotations(body), subscription_schema())
        return f"{method} subscription"
    if "value" in body:      # instances, calendarView/delta
        for item in body["value"]:
            if "@removed" in item:
                assert set(item) <= {"@odata.type", "id", "@removed"} and item["@removed"]["reason"] == "deleted"
            else:
                check_event(item)
        return f"{method} {path.rsplit('/', 1)[-1]}"
    check_event(body)
    return f"{method} event"


async def test_every_answer_the_connector_reads_matches_the_description(graph):
    from zoomcal.auth.oauth import RefreshTokenSource
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.connectors.http import ApiClient
    from zoomcal.domain.content import make_content
    from zoomcal.mapping.rules import DEFAULT_RULES

    world, info, _http = graph
    recorder = Recorder(world.transport())
    tokens = RefreshTokenSource("http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id,
                                world.graph.client_secret, info["graph_refresh_token"], basic_auth=False)
    conn = GraphConnector(ApiClient(BASE, tokens, recorder), "kai@example.com", "", DEFAULT_RULES,
                          (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)))
    content = make_content(title="Daily", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                           timezone="Europe/Berlin", rrule="FREQ=DAILY;COUNT=5",
                           exdates=["2026-05-06T07:00:00Z", "2026-05-07T07:00:00Z"])
    created = await conn.create(content, "ev-1")
    assert created.item.content["exdates"] == ["2026-05-06T07:00:00Z", "2026-05-07T07:00:00Z"]
    changes = await conn.changes(None, {})
    moved = {**content, "overrides": {"2026-05-05T07:00:00Z": {"start": "2026-05-05T09:00:00Z",
                                                                "end": "2026-05-05T09:30:00Z"}}}
    updated = await conn.update(created.item.id, moved, created.etag, "ev-1", await conn.get(created.item.id))
    assert updated.item.content["overrides"]["2026-05-05T07:00:00Z"]["start"] == "2026-05-05T09:00:00Z"
    await conn.changes(changes.cursor, {})
    single = await conn.create(make_content(title="One", start="2026-05-10T07:00:00Z", end="2026-05-10T08:00:00Z"),
                               "ev-2")
    await conn.delete(single.item.id, single.etag)
    again = await conn.changes(changes.cursor, {})
    assert single.item.id in again.removed
    await conn.aclose()

    async def endpoint(url: str, _headers: dict[str, str], _body: bytes) -> httpx.Response:
        token = httpx.URL(url).params.get("validationToken", "")
        return httpx.Response(200, text=token, headers={"content-type": "text/plain"})

    world.graph.outbox.deliver = endpoint     # what zoomcal's push module asks of Graph, as it asks it
    expires = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    async with httpx.AsyncClient(base_url=BASE, transport=recorder, headers=_http.headers) as http:
        sub = (await http.post("/subscriptions", json={
            "changeType": "created,updated,deleted", "notificationUrl": "https://hooks.example.com/graph",
            "lifecycleNotificationUrl": "https://hooks.example.com/graph", "resource": "users/kai@example.com/events",
            "expirationDateTime": expires, "clientState": "s3cret"})).json()
        await http.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expires})
        assert (await http.delete(f"/subscriptions/{sub['id']}")).status_code == 204
    checked = {check_answer(m, p, b) for m, p, status, b in recorder.seen if b is not None and status < 300
               and "/oauth2/" not in p}
    assert checked >= {"POST event", "GET event", "PATCH event", "GET instances", "GET delta", "$batch",
                       "POST subscription", "PATCH subscription"}


async def test_occurrences_are_matched_by_instant_however_original_start_is_written():
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.mapping.rules import DEFAULT_RULES

    reader = GraphConnector(None, "", "", DEFAULT_RULES,
                            (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)))
    master = {"id": "M", "type": "seriesMaster", "subject": "S", "originalStartTimeZone": "UTC",
              "start": when("2026-05-04T07:00:00.0000000", "UTC"), "end": when("2026-05-04T07:30:00.0000000", "UTC"),
              "recurrence": {"pattern": {"type": "daily", "interval": 1},
                             "range": {"type": "numbered", "numberOfOccurrences": 3, "startDate": "2026-05-04"}}}

    def inst(original: str, start: str, kind: str = "occurrence") -> dict[str, Any]:
        return {"id": original, "seriesMasterId": "M", "type": kind, "originalStart": original, "subject": "S",
                "start": when(start, "UTC"), "end": when(start[:14] + "30:00.0000000", "UTC")}

    item = reader.normalize([master, inst("2026-05-04T07:00:00.0000000Z", "2026-05-04T07:00:00.0000000"),
                             inst("2026-05-05T07:00:00+00:00", "2026-05-05T09:00:00.0000000", "exception"),
                             inst("2026-05-06T09:00:00+02:00", "2026-05-06T07:00:00.0000000")])
    assert item.content["exdates"] == []
    assert item.content["overrides"] == {"2026-05-05T07:00:00Z": {"start": "2026-05-05T09:00:00Z",
                                                                  "end": "2026-05-05T09:30:00Z"}}


def test_the_graph_sandbox_reads_nothing_of_the_code_it_checks():
    import ast
    from pathlib import Path

    import zoomcal.sandbox.graph as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    zoomcal = {name for name in imported if name.startswith("zoomcal")}
    assert zoomcal and all(name.startswith("zoomcal.sandbox.") for name in zoomcal), zoomcal


async def test_an_all_day_series_keeps_its_cancelled_and_moved_days(graph):
    from zoomcal.auth.oauth import RefreshTokenSource
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.connectors.http import ApiClient
    from zoomcal.domain.content import make_content
    from zoomcal.mapping.rules import DEFAULT_RULES

    world, info, http = graph
    tokens = RefreshTokenSource("http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id,
                                world.graph.client_secret, info["graph_refresh_token"], basic_auth=False)
    conn = GraphConnector(ApiClient(BASE, tokens, world.transport()), "kai@example.com", "", DEFAULT_RULES,
                          (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)))
    content = make_content(title="Off", start="2026-05-04", end="2026-05-05", all_day=True,
                           rrule="FREQ=DAILY;COUNT=4", exdates=["2026-05-06"],
                           overrides={"2026-05-05": {"start": "2026-05-09", "end": "2026-05-10"}})
    written = await conn.create(content, "days")
    assert written.item.content["exdates"] == ["2026-05-06"]
    assert written.item.content["overrides"] == {"2026-05-05": {"start": "2026-05-09", "end": "2026-05-10"}}
    view = (await http.get("/me/calendarView", params={"startDateTime": "2026-05-01T00:00:00Z",
                                                       "endDateTime": "2026-05-31T00:00:00Z"})).json()["value"]
    assert [(i["start"]["dateTime"][:10], i["type"]) for i in view] == \
        [("2026-05-04", "occurrence"), ("2026-05-07", "occurrence"), ("2026-05-09", "exception")]
    again = await conn.update(written.item.id, content, written.etag, "days", await conn.get(written.item.id))
    assert again.item.content == written.item.content and again.api_calls <= 3     # nothing to write again
    await conn.aclose()
