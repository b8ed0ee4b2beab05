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
    assert {k: (v["start"], v["end"]) for k, v in back["overrides"].items()} == \
        {k: (v["start"], v["end"]) for k, v in content["overrides"].items()}
    assert occurrence_starts(back) == occurrence_starts(content)
