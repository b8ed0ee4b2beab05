"""Attendees and the organizer on every provider: what is read, what is written, what is never written (someone
else's answer, the organizer), and what a rewrite keeps of what the provider holds."""

from __future__ import annotations

import httpx
import pytest

from conftest import new_collection
from zoomcal.connectors.caldav.connector import CalDavConnector
from zoomcal.connectors.ews.connector import EwsConnector, Invitee
from zoomcal.connectors.google.connector import master_patch
from zoomcal.connectors.zoom.connector import ZoomConnector
from zoomcal.connectors.zoom_calendar.connector import ZoomCalendarConnector
from zoomcal.domain.content import make_content
from zoomcal.mapping import google, graph, ical
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.mapping.zoom import content_to_meeting, meeting_to_content
from zoomcal.sandbox.actor import SandboxActor

TIMES = {"title": "Review", "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z", "timezone": "UTC"}
ANN = {"name": "Ann", "status": "accepted", "optional": False}


def content(attendees, **fields):
    return make_content(**{**TIMES, **fields}, attendees=attendees)


# --- Google (and Zoom Calendar, which has Google's shape) -----------------------------------------------------------

GOOGLE = {"id": "abcdef", "summary": "Review", "start": {"dateTime": "2026-03-02T10:00:00Z"},
          "end": {"dateTime": "2026-03-02T11:00:00Z"},
          "organizer": {"email": "Owner@example.com", "displayName": "Owner", "self": True},
          "attendees": [{"email": "ann@example.com", "displayName": "Ann", "responseStatus": "accepted",
                         "comment": "see you"},
                        {"email": "bob@example.com", "optional": True, "responseStatus": "tentative"},
                        {"email": "cy@example.com", "responseStatus": "declined"},
                        {"email": "dee@example.com"}]}


def test_google_reads_every_detail_and_the_organizer():
    c = google.series_to_content(GOOGLE, [], DEFAULT_RULES)
    assert c["attendees"] == {"ann@example.com": ANN,
                              "bob@example.com": {"name": "", "status": "tentative", "optional": True},
                              "cy@example.com": {"name": "", "status": "declined", "optional": False},
                              "dee@example.com": {"name": "", "status": "needs_action", "optional": False}}
    assert c["organizer"] == {"email": "owner@example.com", "name": "Owner"}


def test_google_never_sets_an_answer_and_never_writes_the_organizer():
    wanted = content({"ann@example.com": {**ANN, "status": "declined"}, "eve@example.com": {"name": "Eve"},
                      "zed@example.com": {}}, organizer="someone@example.com")
    # a new event: e-mails, the names and roles the content knows; no answer, no organizer
    body = google.content_to_event(wanted, DEFAULT_RULES, "ev")
    assert "organizer" not in body and all("responseStatus" not in a for a in body["attendees"])
    assert body["attendees"] == [{"email": "ann@example.com", "displayName": "Ann", "optional": False},
                                 {"email": "eve@example.com", "displayName": "Eve"}, {"email": "zed@example.com"}]
    # an existing one: Ann is sent back as Google holds her (her own answer and comment), not as "declined"
    held = {**GOOGLE, "attendees": [{**GOOGLE["attendees"][0], "self": True, "id": "p1"}, *GOOGLE["attendees"][1:]]}
    body = google.content_to_event(wanted, DEFAULT_RULES, "ev", held=held)
    assert body["attendees"][0] == {"email": "ann@example.com", "displayName": "Ann", "optional": False,
                                    "responseStatus": "accepted", "comment": "see you"}   # read-only fields left out


def test_google_patches_attendees_only_when_who_or_what_we_write_differs():
    held = google.series_to_content(GOOGLE, [], DEFAULT_RULES)
    body = google.content_to_event(held, DEFAULT_RULES, "ev", held=GOOGLE)
    assert "attendees" not in master_patch(GOOGLE, body)
    for changed in ({**held["attendees"], "bob@example.com": {"name": "Bob", "optional": True}},   # a name
                    {**held["attendees"], "bob@example.com": {"optional": False}},                 # a role
                    {k: v for k, v in held["attendees"].items() if k != "dee@example.com"}):       # who
        body = google.content_to_event({**held, "attendees": changed}, DEFAULT_RULES, "ev", held=GOOGLE)
        assert "attendees" in master_patch(GOOGLE, body)
    # an answer alone is nothing to write
    answered = {**held["attendees"], "dee@example.com": {**held["attendees"]["dee@example.com"], "status": "accepted"}}
    body = google.content_to_event({**held, "attendees": answered}, DEFAULT_RULES, "ev", held=GOOGLE)
    assert "attendees" not in master_patch(GOOGLE, body)


def test_zoom_calendar_organizer_is_an_e_mail():
    conn = ZoomCalendarConnector(None, "c@example.com", DEFAULT_RULES)
    raw = {**GOOGLE, "organizer": {"email": "owner@example.com"}}
    item = conn.normalize([raw])
    assert item.content["organizer"] == {"email": "owner@example.com", "name": ""}
    assert item.content["attendees"]["bob@example.com"]["optional"] is True
    body, _ = conn._body(item.content, raw)
    assert "organizer" not in body and body["attendees"][1]["responseStatus"] == "tentative"   # Bob's, kept


# --- Zoom ----------------------------------------------------------------------------------------------------------

MEETING = {"id": 81234567890, "topic": "Review", "type": 2, "start_time": "2026-03-02T10:00:00Z", "duration": 60,
           "timezone": "UTC", "join_url": "https://zoom.us/j/81234567890", "password": "pw", "agenda": "",
           "host_email": "Host@example.com",
           "settings": {"meeting_invitees": [{"email": "Ann@example.com", "internal_user": False},
                                             {"email": "bob@example.com", "internal_user": True}],
                        "custom_keys": [{"key": "zoomcal_event", "value": "ev"}]}}


def test_zoom_reads_invitee_e_mails_and_the_host():
    c = meeting_to_content(MEETING)
    assert c["attendees"] == {"ann@example.com": {}, "bob@example.com": {}}
    assert c["organizer"] == {"email": "host@example.com", "name": ""}
    body, _ = content_to_meeting({**c, "attendees": {"ann@example.com": ANN}}, DEFAULT_RULES)
    assert body["settings"]["meeting_invitees"] == [{"email": "ann@example.com"}] and "host_email" not in body


class RecordingApi:
    calls = 0

    def __init__(self):
        self.sent = []

    async def request(self, method, url, **kwargs):
        self.sent.append((method, url, kwargs.get("json")))


@pytest.mark.anyio
async def test_zoom_is_not_patched_for_the_same_people():
    api = RecordingApi()
    conn = ZoomConnector(api, "u1", DEFAULT_RULES)
    held = meeting_to_content(MEETING)
    # the calendar knows names and answers Zoom cannot hold: the same invitees, nothing to send
    richer = {**held, "attendees": {"ann@example.com": ANN, "bob@example.com": {"name": "Bob", "optional": True}}}
    await conn.update(str(MEETING["id"]), richer, None, "ev", [MEETING])
    assert api.sent == []
    await conn.update(str(MEETING["id"]), {**held, "attendees": {"ann@example.com": ANN}}, None, "ev", [MEETING])
    assert api.sent == [("PATCH", "meetings/81234567890",
                         {"settings": {"meeting_invitees": [{"email": "ann@example.com"}]}})]


@pytest.fixture
def anyio_backend():
    return "asyncio"


# --- Microsoft Graph -----------------------------------------------------------------------------------------------

GRAPH = {"subject": "Review", "start": {"dateTime": "2026-03-02T10:00:00.0000000", "timeZone": "UTC"},
         "end": {"dateTime": "2026-03-02T11:00:00.0000000", "timeZone": "UTC"},
         "organizer": {"emailAddress": {"address": "owner@example.com", "name": "Owner"}},
         "attendees": [{"emailAddress": {"address": "ann@example.com", "name": "Ann"}, "type": "required",
                        "status": {"response": "accepted", "time": "2026-02-01T10:00:00Z"}},
                       {"emailAddress": {"address": "bob@example.com"}, "type": "optional",
                        "status": {"response": "tentativelyAccepted"}},
                       {"emailAddress": {"address": "room@example.com", "name": "Room 1"}, "type": "resource",
                        "status": {"response": "notResponded"}},
                       {"emailAddress": {"address": "me@example.com"}, "type": "required",
                        "status": {"response": "organizer"}}]}


def test_graph_reads_every_detail_and_the_organizer():
    c = graph.event_to_content(GRAPH)
    assert c["attendees"] == {"ann@example.com": ANN,
                              "bob@example.com": {"name": "", "status": "tentative", "optional": True},
                              "me@example.com": {"name": "", "status": "accepted", "optional": False},
                              "room@example.com": {"name": "Room 1", "status": "needs_action", "optional": False}}
    assert c["organizer"] == {"email": "owner@example.com", "name": "Owner"}


def test_graph_writes_names_and_types_never_an_answer_nor_the_organizer():
    wanted = content({"ann@example.com": {**ANN, "status": "declined"}, "bob@example.com": {"optional": False},
                      "room@example.com": {"optional": False}, "new@example.com": {}}, organizer="x@example.com")
    event, _ = graph.content_to_event(wanted, GRAPH)
    assert "organizer" not in event and all("status" not in a for a in event["attendees"])
    assert event["attendees"] == [
        {"emailAddress": {"address": "ann@example.com", "name": "Ann"}, "type": "required"},
        {"emailAddress": {"address": "bob@example.com"}, "type": "required"},                 # made required
        {"emailAddress": {"address": "new@example.com"}, "type": "required"},
        {"emailAddress": {"address": "room@example.com", "name": "Room 1"}, "type": "resource"}]   # still a room


# --- Exchange (EWS), against the EWS sandbox through exchangelib ---------------------------------------------------

def test_ews_writes_no_response_type():
    from xml.etree.ElementTree import tostring

    from exchangelib.properties import Mailbox
    from exchangelib.version import EXCHANGE_2013_SP1, Version

    xml = tostring(Invitee(mailbox=Mailbox(email_address="a@example.com")).to_xml(Version(build=EXCHANGE_2013_SP1)))
    assert b"a@example.com" in xml and b"ResponseType" not in xml


@pytest.mark.anyio
async def test_ews_required_optional_answers_and_organizer(served_world):
    from exchangelib.properties import Attendee, Mailbox

    world, base = served_world
    info = world.add_user("eva@example.com", "Eva")
    conn = EwsConnector(f"{base}/ews/EWS/Exchange.asmx", "eva@example.com", DEFAULT_RULES, username="eva@example.com",
                        secret=info["ews_password"], auth="basic", allow_private=True)
    try:
        wanted = content({"ann@example.com": {"name": "Ann", "optional": False}, "bob@example.com": {"optional": True},
                          "cy@example.com": {}})
        created = await conn.create(wanted, "ev1")
        assert created.item.content["attendees"] == {
            "ann@example.com": {"name": "Ann", "status": "needs_action", "optional": False},
            "bob@example.com": {"name": "", "status": "needs_action", "optional": True},
            "cy@example.com": {"name": "", "status": "needs_action", "optional": False}}
        # Exchange names the organizer with the mailbox's display name
        assert created.item.content["organizer"] == {"email": "eva@example.com", "name": "Eva"}
        # Ann accepts (her answer reaches the organizer's item), then zoomcal rewrites the item for a new title
        await SandboxActor(world, base_url=base).ews_update(
            "eva@example.com", created.id, required_attendees=[
                Attendee(mailbox=Mailbox(email_address="ann@example.com", name="Ann"), response_type="Accept"),
                Attendee(mailbox=Mailbox(email_address="cy@example.com"), response_type="Decline")])
        current = await conn.get(created.id)
        seen = conn.normalize(current).content
        assert seen["attendees"]["ann@example.com"]["status"] == "accepted"
        assert seen["attendees"]["cy@example.com"]["status"] == "declined"
        updated = await conn.update(created.id, {**seen, "title": "Review (moved)"}, None, "ev1", current)
        assert updated.item.content["title"] == "Review (moved)"
        assert updated.item.content["attendees"] == seen["attendees"]   # answers and roles as they were
    finally:
        await conn.aclose()


# --- iCalendar (ICS feeds, CalDAV) ---------------------------------------------------------------------------------

ICS = "\r\n".join([
    "BEGIN:VCALENDAR", "VERSION:2.0", "BEGIN:VEVENT", "UID:u1", "SUMMARY:Review", "DTSTART:20260302T100000Z",
    "DTEND:20260302T110000Z", "ORGANIZER;CN=Owner:mailto:owner@example.com",
    "ATTENDEE;CN=Ann;PARTSTAT=ACCEPTED;ROLE=CHAIR:mailto:ann@example.com",
    "ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=TENTATIVE;RSVP=TRUE:mailto:bob@example.com",
    "ATTENDEE;CUTYPE=ROOM;ROLE=NON-PARTICIPANT;PARTSTAT=DELEGATED:MAILTO:Room@example.com",
    "ATTENDEE;PARTSTAT=DECLINED:mailto:cy@example.com", "ATTENDEE:urn:uuid:no-mail", "END:VEVENT",
    "END:VCALENDAR", ""])


def read_ics(text):
    return ical.series_to_content(ical.split_events(text)[0], DEFAULT_RULES)


def test_ical_reads_cn_partstat_role_and_the_organizer():
    c = read_ics(ICS)
    assert c["attendees"] == {"ann@example.com": ANN,
                              "bob@example.com": {"name": "", "status": "tentative", "optional": True},
                              "cy@example.com": {"name": "", "status": "declined", "optional": False},
                              "room@example.com": {"name": "", "status": "declined", "optional": True}}
    assert c["organizer"] == {"email": "owner@example.com", "name": "Owner"}


def test_ical_rewrite_keeps_the_organizer_and_what_the_content_does_not_say():
    held = ical.held_master(ICS)
    c = read_ics(ICS)
    c["attendees"]["bob@example.com"]["status"] = "accepted"     # Bob answered (the organizer's copy)
    c["attendees"]["new@example.com"] = {}                       # someone Zoom invited
    del c["attendees"]["cy@example.com"]                         # someone removed
    text = ical.content_to_calendar({"u1": {**c, "organizer": {"email": "not-written@example.com"}}}, held={"u1": held})
    text = text.decode()
    back = read_ics(text)
    assert back["organizer"] == {"email": "owner@example.com", "name": "Owner"}
    assert back["attendees"] == {**c["attendees"],
                                 "new@example.com": {"name": "", "status": "needs_action", "optional": False}}
    unfolded = ical.unfold(text)
    assert "CUTYPE=ROOM" in unfolded and "PARTSTAT=DELEGATED" in unfolded and "ROLE=CHAIR" in unfolded
    assert "RSVP=TRUE" in unfolded and "cy@example.com" not in unfolded
    # a new resource: no organizer of ours, an answer only where one is known
    fresh = ical.content_to_calendar({"u2": c}).decode()
    assert "ORGANIZER" not in fresh and "PARTSTAT=ACCEPTED" in fresh and "PARTSTAT=NEEDS-ACTION" not in fresh


@pytest.mark.anyio
async def test_caldav_update_keeps_the_servers_organizer(radicale):
    collection = new_collection(radicale)
    href = collection.split(radicale)[-1] + "review.ics"
    put = httpx.put(radicale + href, content=ICS.replace("UID:u1", "UID:review"), auth=("ada", "x"),
                    headers={"Content-Type": "text/calendar"})
    assert put.status_code in (200, 201, 204)
    conn = CalDavConnector(collection, DEFAULT_RULES, username="ada", password="x", allow_private=True)
    try:
        listed = await conn.changes(None, {})
        item = conn.normalize(listed.changed)
        assert item.content["organizer"]["email"] == "owner@example.com"
        moved = {**item.content, "title": "Review (moved)"}
        result = await conn.update(item.id, moved, item.etag, "ev", listed.changed)
        stored = ical.unfold(httpx.get(radicale + href, auth=("ada", "x")).text)
        assert "ORGANIZER;CN=Owner:mailto:owner@example.com" in stored and "Review (moved)" in stored
        assert result.item.content["attendees"] == item.content["attendees"]
    finally:
        await conn.aclose()
