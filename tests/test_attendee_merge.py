"""Attendees and the organizer through the planner: a detail one side cannot hold never calls for a write there,
a removed attendee goes entirely, a new one reaches the other side, the organizer is never written."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zoomcal.connectors.base import Item
from zoomcal.domain.content import content_hash, make_content
from zoomcal.sync.planner import EventRecord, PlanRules, SideLink, plan_sync

TIMES = {"title": "Review", "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z", "timezone": "UTC"}
ANN = {"name": "Ann", "status": "needs_action", "optional": False}
BOB = {"name": "Bob", "status": "accepted", "optional": True}
HOST = {"email": "host@example.com", "name": ""}
OWNER = {"email": "owner@example.com", "name": "Owner"}


def calendar(attendees, organizer=OWNER, **fields):
    """What a calendar (Google, Graph, CalDAV...) reports: every detail of every attendee."""
    return make_content(**{**TIMES, **fields}, attendees=attendees, organizer=organizer)


def zoom(attendees, organizer=HOST, **fields):
    """What Zoom reports: the invitees' e-mails, the host."""
    return make_content(**{**TIMES, **fields}, attendees={e: {} for e in attendees}, organizer=organizer)


def linked(base, a, b):
    return EventRecord("ev1", base, SideLink("z1", None, content_hash(a), a), SideLink("g1", "e1", content_hash(b), b))


def sync(record, a=None, b=None, rules=PlanRules()):
    listing_a = {"z1": Item("z1", a)} if a is not None else {}
    listing_b = {"g1": Item("g1", b, etag="e2")} if b is not None else {}
    plan = plan_sync(listing_a, listing_b, [record], rules)
    assert len(plan.events) <= 1
    return plan.events[0] if plan.events else None


def ops(event_plan):
    return sorted((w.side, w.op) for w in event_plan.writes)


CAL = calendar({"ann@example.com": ANN, "bob@example.com": BOB})
ZOOM = zoom(["ann@example.com", "bob@example.com"])
RECORD = linked(CAL, ZOOM, CAL)


def test_an_answer_in_the_calendar_is_kept_and_writes_nowhere():
    accepted = calendar({"ann@example.com": {**ANN, "status": "accepted"}, "bob@example.com": BOB})
    p = sync(RECORD, b=accepted)
    assert ops(p) == [] and not p.reviews
    assert p.base["attendees"]["ann@example.com"]["status"] == "accepted"   # the event knows it


def test_a_new_name_or_role_in_the_calendar_does_not_write_zoom():
    renamed = calendar({"ann@example.com": {**ANN, "name": "Ann Example", "optional": True}, "bob@example.com": BOB})
    p = sync(RECORD, b=renamed)
    assert ops(p) == []
    assert p.base["attendees"]["ann@example.com"] == {**ANN, "name": "Ann Example", "optional": True}


def test_an_attendee_added_on_zoom_reaches_the_calendar():
    p = sync(RECORD, a=zoom(["ann@example.com", "bob@example.com", "cy@example.com"]))
    assert ops(p) == [("b", "update")]
    assert p.base["attendees"]["cy@example.com"] == {}           # Zoom knows nothing more of Cy
    assert p.base["attendees"]["bob@example.com"] == BOB         # ...and takes nothing from the others


def test_an_attendee_added_in_the_calendar_reaches_zoom():
    cy = {"name": "Cy", "status": "needs_action", "optional": True}
    p = sync(RECORD, b=calendar({"ann@example.com": ANN, "bob@example.com": BOB, "cy@example.com": cy}))
    assert ops(p) == [("a", "update")] and p.base["attendees"]["cy@example.com"] == cy


def test_an_attendee_removed_on_zoom_is_removed_entirely():
    p = sync(RECORD, a=zoom(["ann@example.com"]))
    assert ops(p) == [("b", "update")]
    assert p.base["attendees"] == {"ann@example.com": ANN}


def test_removal_on_one_side_wins_over_an_answer_on_the_other():
    # Zoom drops Bob while Bob declines in the calendar: Bob is gone (no half-present entry with only an answer),
    # the calendar is told, and Zoom is not written for an answer of someone it no longer has
    declined = calendar({"ann@example.com": ANN, "bob@example.com": {**BOB, "status": "declined"}})
    p = sync(RECORD, a=zoom(["ann@example.com"]), b=declined)
    assert p.base["attendees"] == {"ann@example.com": ANN}
    assert ops(p) == [("b", "update")] and not p.reviews


def test_an_attendee_removed_in_the_calendar_leaves_zoom():
    p = sync(RECORD, b=calendar({"bob@example.com": BOB}))
    assert ops(p) == [("a", "update")] and p.base["attendees"] == {"bob@example.com": BOB}


def test_the_organizer_is_read_never_written_and_never_reviewed():
    moved = calendar({"ann@example.com": ANN, "bob@example.com": BOB}, organizer={"email": "new@example.com"})
    p = sync(RECORD, b=moved)
    assert ops(p) == [] and p.base["organizer"] == {"email": "new@example.com", "name": ""}
    # both sides name a different new organizer: the policy picks one, nobody is asked, nothing is written
    p = sync(RECORD, a=zoom(["ann@example.com", "bob@example.com"], organizer="other@example.com"), b=moved)
    assert ops(p) == [] and not p.reviews and p.base["organizer"]["email"] == "new@example.com"


def test_an_answer_still_travels_with_a_change_zoom_holds():
    # a title edit in the calendar writes Zoom; the answer given at the same time stays in the base
    both = calendar({"ann@example.com": {**ANN, "status": "tentative"}, "bob@example.com": BOB}, title="Moved")
    p = sync(RECORD, b=both)
    assert ops(p) == [("a", "update")]
    assert p.base["title"] == "Moved" and p.base["attendees"]["ann@example.com"]["status"] == "tentative"


def test_a_side_missing_the_attendee_is_brought_up_to_date_by_a_detail():
    # side A holds answers here too; side B never got Cy (say its write was refused). Cy answering on A is a
    # detail B could hold, and B lacks Cy altogether: B is written, and gets Cy
    cy = {"name": "Cy", "status": "needs_action", "optional": False}
    both = calendar({"ann@example.com": ANN, "cy@example.com": cy})
    record = linked(both, both, calendar({"ann@example.com": ANN}))
    p = sync(record, a=calendar({"ann@example.com": ANN, "cy@example.com": {**cy, "status": "accepted"}}))
    assert ops(p) == [("b", "update")] and p.base["attendees"]["cy@example.com"]["status"] == "accepted"


def test_first_sync_keeps_the_calendar_attendees_and_adds_zoom_invitees():
    meeting = zoom(["ann@example.com", "cy@example.com"], join={"meeting_id": "8123", "join_url": "u", "passcode": ""})
    event = calendar({"ann@example.com": ANN, "bob@example.com": BOB})
    plan = plan_sync({"8123": Item("8123", meeting)}, {"g1": Item("g1", event, peer_ref="8123", wants_peer=False)},
                     [])
    p = plan.events[0]
    assert set(p.base["attendees"]) == {"ann@example.com", "bob@example.com", "cy@example.com"}
    assert p.base["attendees"]["bob@example.com"] == BOB and ops(p) == [("b", "update")]
    # the same people on both sides and only the organizers differ: the calendar is not rewritten
    same = zoom(["ann@example.com", "bob@example.com"], join={"meeting_id": "8123", "join_url": "u", "passcode": ""})
    plan = plan_sync({"8123": Item("8123", same)},
                     {"g1": Item("g1", {**event, "join": same["join"]}, peer_ref="8123", wants_peer=False)}, [])
    assert ops(plan.events[0]) == []


# --- the same rules over random edits ------------------------------------------------------------------------------

PEOPLE = [f"p{n}@example.com" for n in range(5)]
details = st.fixed_dictionaries({"name": st.sampled_from(["", "P", "Q"]),
                                 "status": st.sampled_from(["needs_action", "accepted", "tentative", "declined"]),
                                 "optional": st.booleans()})
rosters = st.dictionaries(st.sampled_from(PEOPLE), details, max_size=5)


@given(rosters, st.sets(st.sampled_from(PEOPLE)), rosters)
def test_random_attendee_edits_on_both_sides(start, zoom_now, calendar_now):
    record = linked(calendar(start), zoom(start), calendar(start))
    p = sync(record, a=zoom(zoom_now), b=calendar(calendar_now))
    zoom_added, zoom_removed = zoom_now - set(start), set(start) - zoom_now
    cal_added, cal_removed = set(calendar_now) - set(start), set(start) - set(calendar_now)
    expected = (set(start) | zoom_added | cal_added) - zoom_removed - cal_removed
    base = p.base if p is not None else record.base
    assert set(base["attendees"]) == expected
    writes = ops(p) if p is not None else []
    # Zoom is written only when the calendar changed who comes, never for names, answers or roles
    assert (("a", "update") in writes) == bool(cal_added - zoom_added or cal_removed - zoom_removed)
    assert (("b", "update") in writes) == bool(zoom_added - cal_added or zoom_removed - cal_removed)
    for email in expected & set(calendar_now):
        assert base["attendees"][email] == calendar_now[email]   # the calendar's details, whole
