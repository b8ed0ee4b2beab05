"""The content version: what the previous release stored (version 1: attendees as a list of e-mails, no organizer)
keeps its meaning after an upgrade. Its hashes still say "unchanged", an upgrade writes nothing remote, and the
attendee details and organizer the new mappings read go into the events."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from conftest import link_sandbox_user, make_context, sync_first_pair
from zoomcal.connectors.base import Item
from zoomcal.domain.content import (
    CONTENT_VERSION,
    as_version,
    content_hash,
    content_version,
    make_content,
    upgraded,
)
from zoomcal.mapping.google import series_to_content as google_content
from zoomcal.mapping.graph import event_to_content as graph_content
from zoomcal.mapping.ical import series_to_content as ical_content
from zoomcal.mapping.ical import split_events
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.mapping.zoom import meeting_to_content
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import Cursor, Event, Link, RemoteItem
from zoomcal.sync.engine import SyncEngine
from zoomcal.sync.planner import EventRecord, SideLink, plan_sync

# --- the previous release, as it stored content ------------------------------------------------------------------

# content exactly as the previous release's mappings produced it for the raw items below (JSON in the store)
PREVIOUS = {"title": "Review", "description": "", "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z",
            "timezone": None, "all_day": False, "rrule": None, "exdates": [], "rdates": [], "overrides": {},
            "attendees": ["ann@example.com", "bob@example.com"], "show_as": "busy", "join": None}
JOIN = {"meeting_id": "81234567890", "join_url": "https://zoom.us/j/81234567890", "passcode": "pw"}
PREVIOUS_ZOOM = {**PREVIOUS, "join": JOIN}

GOOGLE = {"id": "abcdef", "summary": "Review", "start": {"dateTime": "2026-03-02T10:00:00Z"},
          "end": {"dateTime": "2026-03-02T11:00:00Z"},
          "organizer": {"email": "owner@example.com", "displayName": "Owner", "self": True},
          "attendees": [{"email": "Ann@example.com", "displayName": "Ann", "responseStatus": "accepted"},
                        {"email": "bob@example.com", "optional": True, "responseStatus": "needsAction"}]}
ZOOM = {"id": 81234567890, "topic": "Review", "type": 2, "start_time": "2026-03-02T10:00:00Z", "duration": 60,
        "timezone": "UTC", "join_url": JOIN["join_url"], "password": "pw", "host_email": "host@example.com",
        "settings": {"meeting_invitees": [{"email": "ann@example.com"}, {"email": "bob@example.com"}]}}
GRAPH = {"subject": "Review", "start": {"dateTime": "2026-03-02T10:00:00.0000000", "timeZone": "UTC"},
         "end": {"dateTime": "2026-03-02T11:00:00.0000000", "timeZone": "UTC"},
         "organizer": {"emailAddress": {"address": "owner@example.com", "name": "Owner"}},
         "attendees": [{"emailAddress": {"address": "ann@example.com", "name": "Ann"}, "type": "required",
                        "status": {"response": "accepted"}},
                       {"emailAddress": {"address": "bob@example.com"}, "type": "optional",
                        "status": {"response": "none"}}]}
ICS = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "BEGIN:VEVENT", "UID:u1", "SUMMARY:Review",
                   "DTSTART:20260302T100000Z", "DTEND:20260302T110000Z", "ORGANIZER;CN=Owner:mailto:owner@example.com",
                   "ATTENDEE;CN=Ann;PARTSTAT=ACCEPTED:mailto:ann@example.com",
                   "ATTENDEE;ROLE=OPT-PARTICIPANT:MAILTO:Bob@example.com", "ATTENDEE:urn:uuid:1234", "END:VEVENT",
                   "END:VCALENDAR", ""])

NOW = {
    "google": (google_content(GOOGLE, [], DEFAULT_RULES), PREVIOUS),
    "zoom": (meeting_to_content(ZOOM), PREVIOUS_ZOOM),
    "graph": (graph_content(GRAPH), PREVIOUS),
    "ical": (ical_content(split_events(ICS)[0], DEFAULT_RULES), PREVIOUS),
}


@pytest.mark.parametrize("provider", list(NOW))
def test_a_stored_hash_still_says_unchanged(provider):
    now, stored = NOW[provider]
    assert content_version(now) == CONTENT_VERSION and content_version(stored) == 1
    assert content_hash(now) != content_hash(stored)                    # the new shape hashes differently...
    assert content_hash(as_version(now, 1)) == content_hash(stored)     # ...seen as version 1 it is what was stored
    assert as_version(now, 1) == stored


def test_upgrading_fills_the_new_fields_with_nothing():
    up = upgraded(PREVIOUS)
    assert up["attendees"] == {"ann@example.com": {}, "bob@example.com": {}} and up["organizer"] is None
    assert up["version"] == CONTENT_VERSION and upgraded(up) == up and as_version(up, 1) == PREVIOUS


# --- the planner over old links ------------------------------------------------------------------------------------

def old_record(a=PREVIOUS_ZOOM, b=PREVIOUS, base=PREVIOUS_ZOOM):
    return EventRecord("ev1", base, SideLink("z1", None, content_hash(a), a),
                       SideLink("g1", "e1", content_hash(b), b))


def test_an_upgrade_writes_nothing_and_takes_the_details_into_the_event():
    zoom_now, _ = NOW["zoom"]
    google_now, _ = NOW["google"]
    plan = plan_sync({"z1": Item("z1", zoom_now)}, {"g1": Item("g1", google_now, etag="e2")}, [old_record()])
    assert plan.writes == [] and all(not p.reviews for p in plan.events)
    base = plan.events[0].base
    assert base["attendees"] == google_now["attendees"] and base["join"] == JOIN
    assert base["organizer"] == {"email": "owner@example.com", "name": "Owner"}   # the calendar's, the policy winner
    assert base["version"] == CONTENT_VERSION
    # the links now hold the new shape: the next run compares like with like and finds nothing
    again = EventRecord("ev1", base, SideLink("z1", None, content_hash(zoom_now), zoom_now),
                        SideLink("g1", "e2", content_hash(google_now), google_now))
    assert plan_sync({"z1": Item("z1", zoom_now)}, {"g1": Item("g1", google_now, etag="e3")}, [again]).writes == []


def test_only_one_side_listed_after_the_upgrade():
    zoom_now, _ = NOW["zoom"]
    plan = plan_sync({"z1": Item("z1", zoom_now)}, {}, [old_record()])
    assert plan.writes == [] and plan.events[0].base["organizer"] == {"email": "host@example.com", "name": ""}
    assert plan.events[0].base["attendees"] == {"ann@example.com": {}, "bob@example.com": {}}


def test_a_real_change_during_the_upgrade_still_travels():
    google_now, _ = NOW["google"]
    # a new title and a new attendee in the calendar while the links are still version 1
    cy = {"email": "cy@example.com", "displayName": "Cy", "responseStatus": "needsAction"}
    edited = google_content({**GOOGLE, "summary": "Review (moved)", "attendees": [*GOOGLE["attendees"], cy]}, [],
                            DEFAULT_RULES)
    plan = plan_sync({}, {"g1": Item("g1", edited, etag="e2")}, [old_record()])
    p = plan.events[0]
    assert [(w.side, w.op) for w in p.writes] == [("a", "update")]
    assert p.base["title"] == "Review (moved)"
    assert p.base["attendees"] == edited["attendees"]      # Cy with the details, the others' details absorbed
    # removed in the calendar during the upgrade: removed everywhere
    gone = google_content({**GOOGLE, "attendees": GOOGLE["attendees"][:1]}, [], DEFAULT_RULES)
    p = plan_sync({}, {"g1": Item("g1", gone, etag="e2")}, [old_record()]).events[0]
    assert [(w.side, w.op) for w in p.writes] == [("a", "update")] and list(p.base["attendees"]) == ["ann@example.com"]


def test_an_answer_later_with_zoom_still_on_its_old_link_writes_nothing():
    # Google's link was upgraded in an earlier run, Zoom's was not (Zoom did not list the meeting since)
    google_now, _ = NOW["google"]
    base = {**upgraded(PREVIOUS_ZOOM), "attendees": google_now["attendees"], "organizer": google_now["organizer"]}
    record = EventRecord("ev1", base, SideLink("z1", None, content_hash(PREVIOUS_ZOOM), PREVIOUS_ZOOM),
                         SideLink("g1", "e1", content_hash(google_now), google_now))
    answered = make_content(**{**google_now, "attendees": {**google_now["attendees"],
                                                           "bob@example.com": {"status": "declined"}}})
    plan = plan_sync({}, {"g1": Item("g1", answered, etag="e2")}, [record])
    assert plan.writes == [] and plan.events[0].base["attendees"]["bob@example.com"]["status"] == "declined"


# --- end to end: a store written by the previous release, the sandboxes, the engine ---------------------------------

@pytest.fixture
def anyio_backend():
    return "asyncio"


def as_previous_release(content: dict) -> dict:
    """How the previous release stored content (written out here, not with the code under test)."""
    old = {k: v for k, v in content.items() if k not in ("organizer", "version")}
    old["attendees"] = sorted(content["attendees"])
    return old


def store_as_previous_release(db) -> None:
    with db.transaction() as s:
        for event in s.scalars(select(Event)):
            event.content = as_previous_release(event.content)
            event.content_hash = content_hash(event.content)
        for link in s.scalars(select(Link)):
            link.state = as_previous_release(link.state)
            link.state_hash = content_hash(link.state)


def events_by_title(db) -> dict[str, dict]:
    with db.session() as s:
        return {content["title"]: content for content in s.scalars(select(Event.content))}


@pytest.mark.anyio
async def test_upgrade_end_to_end_writes_nothing_and_the_events_learn_the_details(world, tmp_path):
    ctx = make_context(world, tmp_path)
    user = link_sandbox_user(ctx, world, "ada@example.com", "Ada", "Europe/London")
    zid, cal = user["zoom_user_id"], user["google_calendar_id"]
    actor = SandboxActor(world, transport=world.transport())
    engine = SyncEngine(ctx.store)
    try:
        await actor.zoom_create(zid, topic="From Zoom", type=2, start_time="2026-03-02T14:00:00Z", duration=30,
                                settings={"meeting_invitees": [{"email": "ann@example.com"}]})
        inserted = await actor.google_insert(
            cal, summary="From calendar", description="#zoom", start={"dateTime": "2026-03-03T15:00:00Z"},
            end={"dateTime": "2026-03-03T16:00:00Z"},
            attendees=[{"email": "bob@example.com", "displayName": "Bob", "responseStatus": "accepted"},
                       {"email": "cy@example.com", "optional": True}])
        assert (await sync_first_pair(ctx, engine)).status == "ok"
        assert (await sync_first_pair(ctx, engine)).writes == 0

        async def sync_writing_nothing():
            before = (world.zoom_calls.get("writes", 0), world.google_calls.get("writes", 0))
            report = await sync_first_pair(ctx, engine)
            assert report.status == "ok" and report.writes == 0
            assert (world.zoom_calls.get("writes", 0), world.google_calls.get("writes", 0)) == before

        # the store as the previous release left it; the providers unchanged
        store_as_previous_release(ctx.store)

        # an incremental run after the upgrade: nothing listed, nothing written, nothing rewritten
        await sync_writing_nothing()
        assert all(content_version(c) == 1 for c in events_by_title(ctx.store).values())

        # Bob declines in the calendar: Zoom holds no answers, so nothing is written; the event learns it all
        attendees = [{**a, "responseStatus": "declined"} if a["email"] == "bob@example.com" else a
                     for a in actor.google_find(cal, "From calendar")["attendees"]]
        await actor.google_patch(cal, inserted["id"], attendees=attendees)
        await sync_writing_nothing()
        from_calendar = events_by_title(ctx.store)["From calendar"]
        assert from_calendar["version"] == CONTENT_VERSION
        assert from_calendar["attendees"] == {
            "bob@example.com": {"name": "Bob", "status": "declined", "optional": False},
            "cy@example.com": {"name": "", "status": "needs_action", "optional": True}}
        assert from_calendar["organizer"]["email"] == cal

        # a full listing (an expired cursor, a new mirror): every event is seen, still nothing is written
        with ctx.store.transaction() as s:
            s.execute(delete(Cursor))
            s.execute(delete(RemoteItem))
        await sync_writing_nothing()
        from_zoom = events_by_title(ctx.store)["From Zoom"]
        assert from_zoom["version"] == CONTENT_VERSION
        assert from_zoom["attendees"] == {"ann@example.com": {"name": "", "status": "needs_action",
                                                              "optional": False}}
        assert from_zoom["organizer"]["email"] == cal      # the calendar's organizer (the policy winner's side)

        # and the links hold the new shape: Ann leaving in the calendar leaves Zoom, entirely, with one write
        event = actor.google_find(cal, "From Zoom")
        await actor.google_patch(cal, event["id"], attendees=[])
        report = await sync_first_pair(ctx, engine)
        assert report.status == "ok" and report.writes == 1 and report.counts.get("update_a") == 1
        assert events_by_title(ctx.store)["From Zoom"]["attendees"] == {}
        assert not actor.zoom_find(zid, "From Zoom")["settings"]["meeting_invitees"]
        await sync_writing_nothing()
    finally:
        await actor.aclose()
        ctx.store.dispose()
