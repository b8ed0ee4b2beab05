"""The corpus through every provider mapping: exact round trip, or a documented degradation that says why."""

from __future__ import annotations

import pytest

from conformance.corpus import CASES
from zoomcal.domain.recurrence import occurrence_starts
from zoomcal.mapping.google import content_to_event, instance_id, override_to_instance, series_to_content
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.mapping.zoom import (
    content_to_meeting,
    expand_occurrences,
    meeting_to_content,
    occurrence_edits,
    predicted_meeting,
)

# Zoom keeps less than a calendar: what it cannot hold, and what zoomcal does about it (docs/mapping.md)
ZOOM_DEGRADES = {
    "BYSETPOS last weekday": "no fixed time",
    "negative BYMONTHDAY": "no fixed time",
    "UNTIL as a date, all-day": "all-day",
    "EXDATE, RDATE, moved and cancelled instances": "no fixed time",
    "all-day in Pacific/Kiritimati (UTC+14)": "all-day",
    "zero-length": "at least a minute",
}
ZOOM_KEEPS = ("title", "description", "start", "end", "rrule", "exdates")


def google_round_trip(content):
    master = {**content_to_event(content, DEFAULT_RULES, "ev"), "id": "abcdef"}
    exceptions = [{**override_to_instance(content, rid, ov, DEFAULT_RULES), "id": instance_id("abcdef", rid),
                   "recurringEventId": "abcdef"} for rid, ov in content["overrides"].items()]
    return series_to_content(master, exceptions, DEFAULT_RULES)


@pytest.mark.parametrize("name", list(CASES))
def test_google(name):
    content = CASES[name]
    assert google_round_trip(content) == content


@pytest.mark.parametrize("name", list(CASES))
def test_zoom(name):
    content = CASES[name]
    body, notes = content_to_meeting(content, DEFAULT_RULES, marker="ev")
    meeting = predicted_meeting(body, 81234567890, "https://zoom.us/j/81234567890", "pw", {})
    if meeting.get("type") == 8:
        meeting["occurrences"] = expand_occurrences(meeting, occurrence_edits(content, meeting))
    back = meeting_to_content(meeting)
    if name in ZOOM_DEGRADES:
        assert notes and ZOOM_DEGRADES[name] in " ".join(notes)
        return
    assert not notes
    assert {k: back[k] for k in ZOOM_KEEPS} == {k: content[k] for k in ZOOM_KEEPS}
    assert back["attendees"] == {e: {} for e in content["attendees"]}   # invitees: e-mails, nothing more
    assert {k: (v["start"], v["end"]) for k, v in back["overrides"].items()} == \
        {k: (v["start"], v["end"]) for k, v in content["overrides"].items()}
    assert occurrence_starts(back) == occurrence_starts(content)


# Graph keeps the rule in patternedRecurrence; cancelled and moved occurrences are instances (written by the
# connector), so the corpus is checked on the series itself here.
GRAPH_DEGRADES = {
    "monthly ordinal BYDAY, UNTIL date-time": "UNTIL with a time",
    "negative BYMONTHDAY": "BYMONTHDAY=-1",
    "EXDATE, RDATE, moved and cancelled instances": "RDATE",
}
GRAPH_KEEPS = ("title", "description", "start", "end", "timezone", "all_day", "rrule", "attendees", "show_as")


@pytest.mark.parametrize("name", list(CASES))
def test_graph(name):
    from zoomcal.mapping.graph import content_to_event as to_graph
    from zoomcal.mapping.graph import event_to_content

    content = CASES[name]
    event, notes = to_graph(content)
    back = event_to_content(event)
    if name in GRAPH_DEGRADES:
        assert notes and GRAPH_DEGRADES[name] in " ".join(notes)
        return
    assert not notes
    keep = [k for k in GRAPH_KEEPS if k != "rrule"]
    assert {k: back[k] for k in keep} == {k: content[k] for k in keep}
    # a weekly rule comes back with its weekday spelled out (Graph requires daysOfWeek): the same dates
    assert back["rrule"] == content["rrule"] or occurrence_starts(back) == occurrence_starts(content)


def test_graph_reads_windows_zones_and_patterns():
    from zoomcal.mapping.graph import event_to_content

    event = {"subject": "Planning", "start": {"dateTime": "2026-03-30T09:00:00.0000000",
                                              "timeZone": "W. Europe Standard Time"},
             "end": {"dateTime": "2026-03-30T10:00:00.0000000", "timeZone": "W. Europe Standard Time"},
             "showAs": "oof", "recurrence": {
                 "pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["monday"], "index": "last",
                             "firstDayOfWeek": "sunday"},
                 "range": {"type": "endDate", "startDate": "2026-03-30", "endDate": "2026-12-31"}}}
    content = event_to_content(event)
    assert (content["timezone"], content["start"], content["show_as"]) == ("Europe/Berlin", "2026-03-30T07:00:00Z",
                                                                          "ooo")
    assert content["rrule"] == "FREQ=MONTHLY;BYDAY=-1MO;UNTIL=20261231"


# Exchange (EWS) holds the same model as Graph; the rule goes through exchangelib's own Recurrence objects and
# their XML, so what EWS keeps is checked on the wire form.
EWS_DEGRADES = {**GRAPH_DEGRADES}


def ews_round_trip(content):
    from exchangelib.recurrence import Recurrence
    from exchangelib.version import EXCHANGE_2013_SP1, Version

    from zoomcal.connectors.ews.mapping import graph_to_recurrence, recurrence_to_graph
    from zoomcal.mapping.graph import content_to_event as to_graph
    from zoomcal.mapping.graph import event_to_content

    event, notes = to_graph(content)
    if event.get("recurrence"):
        rec, why = graph_to_recurrence(event["recurrence"])
        if rec is None:
            return None, [*notes, why]
        wire = rec.to_xml(version=Version(build=EXCHANGE_2013_SP1))
        event["recurrence"] = recurrence_to_graph(Recurrence.from_xml(elem=wire, account=None))
    return event_to_content(event), notes


@pytest.mark.parametrize("name", list(CASES))
def test_ews(name):
    content = CASES[name]
    back, notes = ews_round_trip(content)
    if name in EWS_DEGRADES:
        assert notes and EWS_DEGRADES[name] in " ".join(notes)
        return
    assert not notes
    keep = [k for k in GRAPH_KEEPS if k != "rrule"]
    assert {k: back[k] for k in keep} == {k: content[k] for k in keep}
    assert back["rrule"] == content["rrule"] or occurrence_starts(back) == occurrence_starts(content)


def test_ews_names_day_sets_and_refuses_other_positional_sets():
    from zoomcal.connectors.ews.mapping import graph_to_recurrence, recurrence_to_graph

    weekday = {"pattern": {"type": "relativeMonthly", "interval": 1, "index": "last",
                           "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"]},
               "range": {"type": "noEnd", "startDate": "2026-01-30"}}
    rec, _ = graph_to_recurrence(weekday)
    assert type(rec.pattern).__name__ == "RelativeMonthlyPattern" and rec.pattern.weekday == 9   # "Weekday"
    assert recurrence_to_graph(rec)["pattern"]["daysOfWeek"] == weekday["pattern"]["daysOfWeek"]
    odd = {**weekday, "pattern": {**weekday["pattern"], "daysOfWeek": ["monday", "friday"]}}
    rec, why = graph_to_recurrence(odd)
    assert rec is None and "monday, friday" in why


@pytest.mark.parametrize("name", list(CASES))
def test_zoom_calendar(name):
    """Zoom's calendar holds what Google holds except moved or changed occurrences, which it is told about."""
    from zoomcal.connectors.zoom_calendar.connector import ZoomCalendarConnector

    conn = ZoomCalendarConnector(None, "c@example.com", DEFAULT_RULES)
    content = CASES[name]
    body, notes = conn._body(content)
    back = conn.normalize([{**body, "id": "zc1"}]).content
    assert back == {**content, "overrides": {}}
    assert bool(notes) == bool(content["overrides"])
    assert all(rid in " ".join(notes) for rid in content["overrides"])
