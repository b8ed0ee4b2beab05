"""CalDAV against a real Radicale server: two-way with Zoom, discovery, sync tokens, hostile XML."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from conftest import add_account, add_user, link_sandbox_zoom, make_context, new_collection, sync_first_pair
from zoomcal.connectors.caldav.connector import discover, parse_xml
from zoomcal.errors import InvalidItem
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import Cursor
from zoomcal.sync.engine import SyncEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_hostile_xml_is_refused():
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>'
    with pytest.raises(InvalidItem, match="refused XML"):
        parse_xml(bomb)
    with pytest.raises(InvalidItem, match="refused XML"):
        parse_xml(b"<multistatus><unclosed>")


async def test_discovery_finds_the_calendars(radicale):
    url = new_collection(radicale, "dora")
    found = await discover(radicale, "dora", "x", allow_private=True)
    assert url in [c[0] for c in found]


async def test_linking_a_calendars_own_url_takes_that_calendar(radicale):
    """Given a calendar's own URL, the link takes that calendar, not the first one discovery lists."""
    from zoomcal.connectors.caldav.spec import link
    from zoomcal.connectors.spec import Env, LinkRequest
    from zoomcal.mapping.rules import load_rules

    first, second = new_collection(radicale, "erin"), new_collection(radicale, "erin")
    env = Env(rules=load_rules(None), allow_private=True)
    for url in (first, second):
        linked = await link(LinkRequest("erin@example.com", {"url": url, "username": "erin"}, {"password": "x"}), env)
        assert linked.remote_id == url


def _resources(collection: str) -> dict[str, str]:
    report = httpx.request("PROPFIND", collection, auth=("ada", "x"), headers={"Depth": "1"})
    hrefs = [h.split("</href>")[0] for h in report.text.split("<href>")[1:] if h.split("</href>")[0].endswith(".ics")]
    base = collection.split("/ada/")[0]
    return {h: httpx.get(base + h, auth=("ada", "x")).text for h in hrefs}


def _ada_on_caldav(world, tmp_path, radicale):
    """Ada with her Zoom account and a fresh calendar on the test Radicale that receives her meetings."""
    ctx = make_context(world, tmp_path)
    ctx.settings.allow_private_urls = True
    collection = new_collection(radicale)
    info = world.add_user("ada@example.com", "Ada", "Europe/Paris")
    add_user(ctx, "ada@example.com")
    link_sandbox_zoom(ctx, world, "ada@example.com", info)
    add_account(ctx, "ada@example.com", "caldav", {}, {"username": "ada", "password": "x"}, collection, "Work")
    return ctx, collection, info


async def test_two_way_with_zoom(world, tmp_path, radicale):
    ctx, collection, info = _ada_on_caldav(world, tmp_path, radicale)
    actor = SandboxActor(world, transport=world.transport())
    engine = SyncEngine(ctx.store)

    async def sync(**kw):
        return await sync_first_pair(ctx, engine, **kw)

    meeting = await actor.zoom_create(info["zoom_user_id"], topic="Weekly", type=8, start_time="2026-12-07T09:00:00Z",
                                      duration=30, timezone="Europe/Paris",
                                      recurrence={"type": 2, "weekly_days": "2", "end_times": 4})
    report = await sync()
    assert report.status == "ok" and report.writes == 1
    (href, ics), = _resources(collection).items()
    assert "SUMMARY:Weekly" in ics and meeting["join_url"] in ics and "BEGIN:VTIMEZONE" in ics
    # another CalDAV client renames the series and moves one occurrence
    base = collection.split("/ada/")[0]
    current = httpx.get(base + href, auth=("ada", "x"))
    edited = current.text.replace("SUMMARY:Weekly", "SUMMARY:Weekly sync")
    put = httpx.put(base + href, content=edited, auth=("ada", "x"),
                    headers={"If-Match": current.headers["etag"], "Content-Type": "text/calendar"})
    assert put.status_code in (201, 204)
    # and a new event marked for Zoom appears in the calendar
    marked = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\nUID:plan-1@other\r\n"
              "DTSTAMP:20261101T000000Z\r\nSUMMARY:Planning\r\nLOCATION:zoom\r\n"
              "DTSTART;TZID=Europe/Paris:20261208T150000\r\nDTEND;TZID=Europe/Paris:20261208T160000\r\n"
              "END:VEVENT\r\nEND:VCALENDAR\r\n")
    assert httpx.put(collection + "plan.ics", content=marked, auth=("ada", "x"),
                     headers={"Content-Type": "text/calendar"}).status_code == 201
    report = await sync()
    assert report.status == "ok", report.errors
    assert world.zoom.meetings[meeting["id"]]["topic"] == "Weekly sync"
    planning = next(m for m in world.zoom.meetings.values() if m["topic"] == "Planning")
    assert planning["start_time"] == "2026-12-08T14:00:00Z" and planning["duration"] == 60
    plan_ics = httpx.get(collection + "plan.ics", auth=("ada", "x")).text
    assert planning["join_url"] in plan_ics and "UID:plan-1@other" in plan_ics    # join written back, UID kept
    assert (await sync()).writes == 0
    # an expired sync token: full listing, nothing duplicated
    with ctx.store.transaction() as s:
        for cursor in s.scalars(select(Cursor)):
            if cursor.value and cursor.value.startswith("http"):
                cursor.value = "http://radicale.org/ns/sync/0000"
    report = await sync()
    assert report.status == "ok" and any("full resync" in n for n in report.notes) and report.writes == 0
    # deleting in the calendar cancels the Zoom meeting
    assert httpx.delete(collection + "plan.ics", auth=("ada", "x")).status_code in (200, 204)
    await sync()
    assert "Planning" not in [m["topic"] for m in world.zoom.meetings.values()]
    assert len(_resources(collection)) == 1
    ctx.store.dispose()


async def test_server_without_sync_collection_gets_an_explicit_etag_listing():
    from zoomcal.connectors.caldav.connector import ETAG_LISTING, CalDavConnector
    from zoomcal.mapping.rules import DEFAULT_RULES

    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:e1\r\nSUMMARY:Old server\r\n"
           "DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")

    ctag = {"value": "c1"}
    listings = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        if request.method == "REPORT" and "sync-collection" in body:
            return httpx.Response(403, text="<error xmlns='DAV:'><supported-report/></error>")
        if request.method == "PROPFIND" and "getctag" in body:
            return httpx.Response(207, text="<multistatus xmlns='DAV:' xmlns:cs='http://calendarserver.org/ns/'>"
                                            "<response><href>/cal/</href><propstat><prop><cs:getctag>"
                                            f"{ctag['value']}</cs:getctag></prop></propstat></response></multistatus>")
        if request.method == "PROPFIND":
            listings.append(1)
            return httpx.Response(207, text="<multistatus xmlns='DAV:'><response><href>/cal/e1.ics</href><propstat>"
                                            "<prop><getetag>\"1\"</getetag></prop></propstat></response></multistatus>")
        if request.method == "REPORT" and "calendar-multiget" in body:
            return httpx.Response(207, text="<multistatus xmlns='DAV:' xmlns:c='urn:ietf:params:xml:ns:caldav'>"
                                            "<response><href>/cal/e1.ics</href><propstat><prop><getetag>\"1\"</getetag>"
                                            f"<c:calendar-data>{ics}</c:calendar-data></prop></propstat></response>"
                                            "</multistatus>")
        return httpx.Response(500)

    conn = CalDavConnector("https://old.example.com/cal/", DEFAULT_RULES, username="u", password="p",
                           transport=httpx.MockTransport(handler), resolve=lambda _h: ["93.184.216.34"])
    changes = await conn.changes(None, {})
    assert changes.cursor == f"{ETAG_LISTING}:c1" and changes.present == {"/cal/e1.ics"}
    assert conn.normalize(changes.changed).content["title"] == "Old server"
    mirror = {"/cal/e1.ics": changes.changed[0]}
    same = await conn.changes(changes.cursor, mirror)
    assert same.changed == [] and same.removed == [] and same.present is None and len(listings) == 1  # ctag kept
    ctag["value"] = "c2"
    again = await conn.changes(same.cursor, mirror)
    assert again.changed == [] and again.present == {"/cal/e1.ics"} and len(listings) == 2   # listed, not fetched
    assert again.cursor == f"{ETAG_LISTING}:c2"
    await conn.aclose()


def test_a_resource_is_parsed_once_per_event_when_read(monkeypatch):
    """Reading a resource parses each VEVENT once: its content and what decides pairing share the parse."""
    import icalendar

    from zoomcal.connectors.caldav.connector import CalDavConnector
    from zoomcal.mapping.rules import DEFAULT_RULES

    parses = []
    original = icalendar.Event.from_ical.__func__

    def counting(cls, text, *args, **kwargs):
        parses.append(text[:40])
        return original(cls, text, *args, **kwargs)

    monkeypatch.setattr(icalendar.Event, "from_ical", classmethod(counting))
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\nBEGIN:VEVENT\r\nUID:once-1\r\nDTSTAMP:20270101T000000Z\r\n"
           "DTSTART;TZID=Europe/Berlin:20270104T100000\r\nDTEND;TZID=Europe/Berlin:20270104T110000\r\n"
           "RRULE:FREQ=WEEKLY;COUNT=4\r\nSUMMARY:Weekly\r\nLOCATION:Room 1\r\nEND:VEVENT\r\n"
           "BEGIN:VEVENT\r\nUID:once-1\r\nDTSTAMP:20270101T000000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:20270111T100000\r\n"
           "DTSTART;TZID=Europe/Berlin:20270111T120000\r\nDTEND;TZID=Europe/Berlin:20270111T130000\r\n"
           "SUMMARY:Weekly (moved)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    conn = CalDavConnector("https://dav.example.com/cal/", DEFAULT_RULES, username="u", password="p")
    item = conn.normalize([{"href": "/cal/once-1.ics", "etag": '"1"', "ics": ics}])
    assert item.content["title"] == "Weekly" and len(item.content["overrides"]) == 1
    assert len(parses) == 2          # the master and its moved occurrence, each once
