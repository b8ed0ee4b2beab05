"""The Google Calendar sandbox driven by Google's own client (google-api-python-client, built from the discovery
document in ../shared/specs), every answer checked against that document's schemas."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import anyio
import httplib2
import httpx
import pytest
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from specs import SPECS, google_schema, require_specs, validate
from zoomcal.sandbox import google as google_sandbox
from zoomcal.sandbox import zoom_calendar
from zoomcal.sandbox.world import SandboxWorld

ROOT = "http://sandbox/google/"


class SandboxHttp:
    """An httplib2.Http stand-in that hands each request to the in-process sandbox, with a bearer token."""

    def __init__(self, world: SandboxWorld, token: str):
        self.world = world
        self.token = token

    def request(self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None):
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "accept-encoding"}
        sent["authorization"] = f"Bearer {self.token}"

        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.world.transport()) as client:
                return await client.request(method, uri, content=body, headers=sent)

        answer = anyio.run(send)
        info = {k.lower(): v for k, v in answer.headers.items()}
        info["status"] = str(answer.status_code)
        return httplib2.Response(info), answer.content


@pytest.fixture
def google():
    require_specs()
    world = SandboxWorld()
    user = world.add_user("g@example.com", "G", "Europe/Rome")
    doc = json.loads((SPECS / "google" / "calendar.v3.json").read_text())
    doc["rootUrl"] = ROOT
    http = SandboxHttp(world, world.google.tokens.issue(user["google_calendar_id"])["access_token"])
    service = build_from_document(doc, http=http)
    return world, service, user["google_calendar_id"]


def timed(start: str, end: str, zone: str = "Europe/Rome", **extra) -> dict:
    return {"start": {"dateTime": start, "timeZone": zone}, "end": {"dateTime": end, "timeZone": zone}, **extra}


def insert(service, cal: str, body: dict, **params) -> dict:
    created = service.events().insert(calendarId=cal, body=body, **params).execute()
    validate(created, google_schema("Event"))
    return created


def listing(service, cal: str, **params) -> dict:
    page = service.events().list(calendarId=cal, **params).execute()
    validate(page, google_schema("Events"))
    return page


def ids(page: dict) -> list[str]:
    return [item["id"] for item in page["items"]]


def status(call) -> int:
    with pytest.raises(HttpError) as refused:
        call.execute()
    return refused.value.resp.status


def test_instance_ids_as_google_forms_them_across_a_change_of_offset(google):
    world, service, cal = google
    weekly = insert(service, cal, timed("2026-03-23T10:00:00", "2026-03-23T11:00:00", id="rome000001",
                                        recurrence=["RRULE:FREQ=WEEKLY;UNTIL=20260413T080000Z",
                                                    "EXDATE;TZID=Europe/Rome:20260406T100000"]))
    page = service.events().instances(calendarId=cal, eventId=weekly["id"]).execute()
    validate(page, google_schema("Events"))
    # 10:00 in Rome is 09:00 UTC before the clocks go forward on 29 March and 08:00 after; 6 April is excluded
    assert ids(page) == ["rome000001_20260323T090000Z", "rome000001_20260330T080000Z",
                         "rome000001_20260413T080000Z"]
    assert [i["start"]["dateTime"] for i in page["items"]] == ["2026-03-23T10:00:00+01:00",
                                                              "2026-03-30T10:00:00+02:00",
                                                              "2026-04-13T10:00:00+02:00"]
    days = insert(service, cal, {"id": "dates00001", "start": {"date": "2026-05-01"}, "end": {"date": "2026-05-02"},
                                 "recurrence": ["RRULE:FREQ=DAILY;COUNT=2", "RDATE;VALUE=DATE:20260510"]})
    page = service.events().instances(calendarId=cal, eventId=days["id"]).execute()
    assert ids(page) == ["dates00001_20260501", "dates00001_20260502", "dates00001_20260510"]
    assert page["items"][2]["originalStartTime"] == {"date": "2026-05-10"}
    got = service.events().get(calendarId=cal, eventId="rome000001_20260330T080000Z").execute()
    validate(got, google_schema("Event"))
    assert got["recurringEventId"] == "rome000001"
    assert status(service.events().get(calendarId=cal, eventId="rome000001_20260406T080000Z")) == 404
    assert status(service.events().insert(calendarId=cal, body=timed(
        "2026-03-23T10:00:00", "2026-03-23T11:00:00", recurrence=["RRULE:FREQ=SOMETIMES"]))) == 400


def test_times_need_an_offset_or_a_zone(google):
    world, service, cal = google
    assert status(service.events().insert(calendarId=cal, body={
        "start": {"dateTime": "2026-06-01T10:00:00"}, "end": {"dateTime": "2026-06-01T11:00:00"}})) == 400
    local = insert(service, cal, timed("2026-06-01T10:00:00", "2026-06-01T11:00:00", zone="America/New_York"))
    assert local["start"] == {"dateTime": "2026-06-01T10:00:00-04:00", "timeZone": "America/New_York"}
    assert status(service.events().insert(calendarId=cal, body={
        "start": {"date": "2026-06-01"}, "end": {"dateTime": "2026-06-01T11:00:00Z"}})) == 400
    assert status(service.events().insert(calendarId=cal, body=timed(
        "2026-06-01T10:00:00", "2026-06-01T09:00:00"))) == 400
    assert status(service.events().insert(calendarId=cal, body={
        "start": {"date": "2026-06-01"}, "end": {"date": "2026-06-01"}})) == 400
    assert insert(service, cal, timed("2026-06-01T10:00:00", "2026-06-01T10:00:00"))["end"]["dateTime"] == \
        "2026-06-01T10:00:00+02:00"      # a timed event may last no time at all
    assert status(service.events().insert(calendarId=cal, body={   # a series is expanded in a named zone
        "start": {"dateTime": "2026-06-01T10:00:00Z"}, "end": {"dateTime": "2026-06-01T11:00:00Z"},
        "recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]})) == 400


def test_list_parameters(google):
    world, service, cal = google
    insert(service, cal, timed("2026-06-01T09:00:00", "2026-06-01T10:00:00", id="first00001", summary="Budget review",
                               extendedProperties={"private": {"k": "1"}, "shared": {"s": "a"}}))
    insert(service, cal, timed("2026-06-03T09:00:00", "2026-06-03T10:00:00", id="later00001", summary="Standup",
                               location="Room Budget", extendedProperties={"private": {"k": "2"}}))
    insert(service, cal, timed("2026-06-02T09:00:00", "2026-06-02T10:00:00", id="repeat0001", summary="Daily",
                               recurrence=["RRULE:FREQ=DAILY;COUNT=3"], iCalUID="daily@example.com"))
    assert sorted(ids(listing(service, cal, timeMin="2026-06-02T00:00:00Z", timeMax="2026-06-02T23:00:00Z"))) == \
        ["repeat0001"]
    assert ids(listing(service, cal, timeMin="2026-06-03T12:00:00+02:00")) == ["repeat0001"]   # its last instance
    assert sorted(ids(listing(service, cal, q="budget"))) == ["first00001", "later00001"]
    assert ids(listing(service, cal, q="budget review")) == ["first00001"]
    assert ids(listing(service, cal, privateExtendedProperty="k=2")) == ["later00001"]
    assert ids(listing(service, cal, privateExtendedProperty=["k=1"], sharedExtendedProperty="s=a")) == ["first00001"]
    assert ids(listing(service, cal, sharedExtendedProperty="s=b")) == []
    assert ids(listing(service, cal, iCalUID="daily@example.com")) == ["repeat0001"]
    single = listing(service, cal, singleEvents=True, orderBy="startTime")
    assert ids(single) == ["first00001", "repeat0001_20260602T070000Z", "later00001", "repeat0001_20260603T070000Z",
                           "repeat0001_20260604T070000Z"]
    assert status(service.events().list(calendarId=cal, orderBy="startTime")) == 400
    assert status(service.events().list(calendarId=cal, timeMin="2026-06-03T00:00:00Z",
                                        timeMax="2026-06-02T00:00:00Z")) == 400
    assert status(service.events().list(calendarId=cal, timeMin="2026-06-03T00:00:00")) == 400
    by_update = listing(service, cal, orderBy="updated")
    assert ids(by_update) == ["first00001", "later00001", "repeat0001"]
    last = by_update["items"][-1]["updated"]
    patched = service.events().patch(calendarId=cal, eventId="first00001", body={"summary": "Budget"}).execute()
    validate(patched, google_schema("Event"))
    assert ids(listing(service, cal, updatedMin=last)) == ["repeat0001", "first00001"]


@pytest.mark.parametrize("param, value", [("timeMin", "2026-06-01T00:00:00Z"), ("timeMax", "2026-06-01T00:00:00Z"),
                                          ("q", "x"), ("orderBy", "updated"), ("privateExtendedProperty", "k=1"),
                                          ("sharedExtendedProperty", "k=1"), ("updatedMin", "2026-06-01T00:00:00Z"),
                                          ("iCalUID", "x@example.com")])
def test_a_sync_token_is_not_combined_with_filters(google, param, value):
    world, service, cal = google
    token = listing(service, cal)["nextSyncToken"]
    assert status(service.events().list(calendarId=cal, syncToken=token, **{param: value})) == 400
    assert listing(service, cal, syncToken=token)["items"] == []


def test_paging_with_max_results_misses_nothing_changed_meanwhile(google):
    world, service, cal = google
    for n in range(5):
        insert(service, cal, timed(f"2026-06-0{n + 1}T09:00:00", f"2026-06-0{n + 1}T10:00:00", id=f"page0000{n}"))
    request = service.events().list(calendarId=cal, maxResults=2)
    first = request.execute()
    assert ids(first) == ["page00000", "page00001"] and "nextSyncToken" not in first
    service.events().patch(calendarId=cal, eventId="page00000", body={"summary": "moved on"}).execute()
    seen = ids(first)
    while (request := service.events().list_next(request, first)) is not None:
        first = request.execute()
        validate(first, google_schema("Events"))
        seen += ids(first)
    assert seen == [f"page0000{n}" for n in range(5)]
    assert ids(listing(service, cal, syncToken=first["nextSyncToken"])) == ["page00000"]
    assert status(service.events().list(calendarId=cal, syncToken=first["nextSyncToken"], showDeleted=False)) == 400
    assert status(service.events().list(calendarId=cal, maxResults=0)) == 400


def test_cancelled_instances_are_listed_unless_expanded(google):
    world, service, cal = google
    insert(service, cal, timed("2026-06-01T09:00:00", "2026-06-01T10:00:00", id="series0001",
                               recurrence=["RRULE:FREQ=DAILY;COUNT=3"]))
    insert(service, cal, timed("2026-06-05T09:00:00", "2026-06-05T10:00:00", id="single0001"))
    service.events().delete(calendarId=cal, eventId="series0001_20260602T070000Z").execute()
    service.events().delete(calendarId=cal, eventId="single0001").execute()
    plain = listing(service, cal)
    assert ids(plain) == ["series0001", "series0001_20260602T070000Z"]
    assert plain["items"][1]["status"] == "cancelled"
    assert ids(listing(service, cal, singleEvents=True)) == ["series0001_20260601T070000Z",
                                                            "series0001_20260603T070000Z"]
    assert "single0001" in ids(listing(service, cal, showDeleted=True))
    assert sorted(ids(listing(service, cal, singleEvents=True, showDeleted=True))) == [
        "series0001_20260601T070000Z", "series0001_20260602T070000Z", "series0001_20260603T070000Z", "single0001"]


def test_conference_data_needs_its_version(google):
    world, service, cal = google
    body = timed("2026-06-01T09:00:00", "2026-06-01T10:00:00", conferenceData={
        "createRequest": {"requestId": "req-1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}})
    assert "conferenceData" not in insert(service, cal, {**body, "id": "noconf0001"})
    kept = insert(service, cal, {**body, "id": "meet000001"}, conferenceDataVersion=1)
    assert kept["conferenceData"]["createRequest"]["status"]["statusCode"] == "success"
    assert kept["hangoutLink"] == kept["conferenceData"]["entryPoints"][0]["uri"]
    # an update that does not speak the version leaves the conference as it was
    put = service.events().update(calendarId=cal, eventId="meet000001", body=timed(
        "2026-06-01T09:00:00", "2026-06-01T10:00:00", summary="Renamed")).execute()
    validate(put, google_schema("Event"))
    assert put["conferenceData"] == kept["conferenceData"] and put["summary"] == "Renamed"
    assert status(service.events().insert(calendarId=cal, body=body, conferenceDataVersion=2)) == 400


def test_update_without_status_is_confirmed(google):
    world, service, cal = google
    insert(service, cal, timed("2026-06-01T09:00:00", "2026-06-01T10:00:00", id="series0002",
                               recurrence=["RRULE:FREQ=DAILY;COUNT=3"]))
    service.events().delete(calendarId=cal, eventId="series0002_20260602T070000Z").execute()
    back = service.events().update(calendarId=cal, eventId="series0002_20260602T070000Z", body=timed(
        "2026-06-02T12:00:00", "2026-06-02T13:00:00", summary="Back")).execute()
    validate(back, google_schema("Event"))
    assert back["status"] == "confirmed" and back["recurringEventId"] == "series0002"
    assert back["originalStartTime"]["dateTime"] == "2026-06-02T09:00:00+02:00"


def test_free_busy_periods_are_merged(google):
    world, service, cal = google
    insert(service, cal, timed("2026-06-01T09:00:00", "2026-06-01T10:00:00"))
    insert(service, cal, timed("2026-06-01T09:30:00", "2026-06-01T11:00:00"))
    insert(service, cal, timed("2026-06-01T11:00:00", "2026-06-01T11:30:00"))     # touches the one before
    insert(service, cal, timed("2026-06-01T14:00:00", "2026-06-01T15:00:00", transparency="transparent"))
    insert(service, cal, timed("2026-06-01T16:00:00", "2026-06-01T17:00:00", recurrence=["RRULE:FREQ=DAILY"]))
    answer = service.freebusy().query(body={"timeMin": "2026-06-01T00:00:00Z", "timeMax": "2026-06-02T14:30:00Z",
                                            "items": [{"id": cal}, {"id": "nobody@example.com"}]}).execute()
    validate(answer, google_schema("FreeBusyResponse"))
    assert answer["calendars"][cal]["busy"] == [
        {"start": "2026-06-01T07:00:00Z", "end": "2026-06-01T09:30:00Z"},
        {"start": "2026-06-01T14:00:00Z", "end": "2026-06-01T15:00:00Z"},
        {"start": "2026-06-02T14:00:00Z", "end": "2026-06-02T14:30:00Z"}]      # cut at timeMax
    assert answer["calendars"]["nobody@example.com"]["errors"][0]["reason"] == "notFound"


def test_calendars_channels_and_batches(google):
    world, service, cal = google
    entries = service.calendarList().list().execute()
    validate(entries, google_schema("CalendarList"))
    assert [(e["id"], e.get("primary")) for e in entries["items"]] == [(cal, True)]
    entry = service.calendarList().get(calendarId="primary").execute()
    validate(entry, google_schema("CalendarListEntry"))
    calendar = service.calendars().get(calendarId=cal).execute()
    validate(calendar, google_schema("Calendar"))
    assert calendar["timeZone"] == "Europe/Rome"
    channel = service.events().watch(calendarId=cal, body={"id": "chan-1", "type": "web_hook",
                                                           "address": "https://hooks.example.com/g"}).execute()
    validate(channel, google_schema("Channel"))
    service.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}).execute()
    assert world.google.channels == {}
    answers = {}

    def collect(request_id, response, exception):
        answers[request_id] = response if exception is None else exception.resp.status

    batch = service.new_batch_http_request(callback=collect)
    assert isinstance(batch, BatchHttpRequest)
    batch.add(service.events().insert(calendarId=cal, body=timed("2026-06-01T09:00:00", "2026-06-01T10:00:00",
                                                                 id="batched001", summary="One")), request_id="a")
    batch.add(service.events().insert(calendarId=cal, body=timed("2026-06-02T09:00:00", "2026-06-02T10:00:00",
                                                                 id="batched002", summary="Two")), request_id="b")
    batch.add(service.events().get(calendarId=cal, eventId="missing0001"), request_id="c")
    batch.execute()
    assert answers["a"]["summary"] == "One" and answers["b"]["summary"] == "Two" and answers["c"] == 404
    validate(answers["a"], google_schema("Event"))
    assert set(world.google.calendars[cal].events) == {"batched001", "batched002"}


@pytest.mark.parametrize("module", [google_sandbox, zoom_calendar])
def test_written_independently_of_the_code_it_checks(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported and not {m for m in imported if m.startswith(("zoomcal.mapping", "zoomcal.connectors",
                                                                  "zoomcal.domain", "zoomcal.errors"))}


def test_attendees_etags_and_notification_choices(google):
    world, service, cal = google
    body = timed("2026-06-01T09:00:00", "2026-06-01T10:00:00", attendees=[{"email": "ann@example.com"}])
    created = insert(service, cal, {**body, "id": "guests0001"})
    assert created["attendees"] == [{"email": "ann@example.com", "responseStatus": "needsAction"}]
    assert status(service.events().insert(calendarId=cal, body={**body, "attendees": [{"displayName": "Ann"}]})) \
        == 400
    assert status(service.events().insert(calendarId=cal, body={**body, "attendees": [{"email": "ann"}]})) == 400
    unchanged = service.events().get(calendarId=cal, eventId="guests0001")
    unchanged.headers["If-None-Match"] = created["etag"]
    assert status(unchanged) == 304
    service.events().patch(calendarId=cal, eventId="guests0001", body={"summary": "Now"}).execute()
    again = service.events().get(calendarId=cal, eventId="guests0001")
    again.headers["If-None-Match"] = created["etag"]
    assert again.execute()["summary"] == "Now"
    http = service._http
    answer, _ = http.request(f"{ROOT}calendar/v3/calendars/{cal}/events/guests0001?sendUpdates=everyone",
                             method="DELETE")
    assert answer.status == 400
    answer, _ = http.request(f"{ROOT}calendar/v3/calendars/{cal}/events/guests0001?sendUpdates=none",
                             method="DELETE")
    assert answer.status == 204


def test_the_scopes_each_method_takes_are_the_discovery_documents():
    from zoomcal.sandbox.google import METHOD_SCOPES

    require_specs()
    doc = json.loads((SPECS / "google" / "calendar.v3.json").read_text())
    for name, scopes in METHOD_SCOPES.items():
        resource, method = name.split(".")
        listed = doc["resources"][resource]["methods"][method]["scopes"]
        assert sorted(f"https://www.googleapis.com/auth/{s}" for s in scopes) == sorted(listed), name


@pytest.mark.anyio
async def test_a_token_without_a_scope_the_method_takes_is_refused(world):
    import httpx

    cal_id = world.google.add_calendar("ada@example.com").id
    token = world.google.tokens.issue("ada@example.com", app=True,
                                      scope="https://www.googleapis.com/auth/calendar.readonly")["access_token"]
    base = f"http://sandbox/google/calendar/v3/calendars/{cal_id}"
    async with httpx.AsyncClient(transport=world.transport(), headers={"Authorization": f"Bearer {token}"}) as c:
        assert (await c.get(f"{base}/events")).status_code == 200
        refused = await c.post(f"{base}/events", json={"summary": "x", "start": {"date": "2026-12-04"},
                                                       "end": {"date": "2026-12-05"}})
        assert refused.status_code == 403
        assert refused.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"
