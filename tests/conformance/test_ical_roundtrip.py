"""Recurrence and time-zone corpus through the iCalendar mapping: exact round trip, case by case."""

from __future__ import annotations

import pytest

from conformance.corpus import CASES
from zoomcal.domain.recurrence import occurrence_starts
from zoomcal.mapping.ical import content_to_calendar, series_to_content, split_events
from zoomcal.mapping.rules import DEFAULT_RULES


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip(name):
    content = CASES[name]
    data = content_to_calendar({f"{name}@zoomcal": content}).decode()
    blocks, _ = split_events(data)
    back = series_to_content(blocks, DEFAULT_RULES)
    assert back == content
    assert occurrence_starts(back) == occurrence_starts(content)


def test_real_world_export_quirks():
    text = "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "X-WR-TIMEZONE:Europe/Paris",
        "BEGIN:VEVENT", "UID:a1", "SUMMARY:Weekly", "DTSTART;TZID=Europe/Paris:20260302T100000",
        "DURATION:PT45M", "RRULE:FREQ=WEEKLY;UNTIL=20260323T100000", "X-MICROSOFT-CDO-BUSYSTATUS:OOF",
        "END:VEVENT",
        "BEGIN:VEVENT", "UID:a1", "RECURRENCE-ID;TZID=Europe/Paris:20260309T100000", "STATUS:CANCELLED",
        "DTSTART;TZID=Europe/Paris:20260309T100000", "END:VEVENT",
        "BEGIN:VEVENT", "UID:b2", "SUMMARY:Floating lunch", "DTSTART:20260302T120000", "DTEND:20260302T130000",
        "STATUS:TENTATIVE", "DESCRIPTION:long line that is", " folded", "END:VEVENT",
        "END:VCALENDAR", ""])
    blocks, tz = split_events(text)
    assert tz == "Europe/Paris"
    weekly = series_to_content([b for b in blocks if b["uid"] == "a1"], DEFAULT_RULES, tz)
    assert weekly["rrule"] == "FREQ=WEEKLY;UNTIL=20260323T090000Z"     # local UNTIL read in the event's zone
    assert weekly["end"] == "2026-03-02T09:45:00Z" and weekly["show_as"] == "ooo"
    assert weekly["exdates"] == ["2026-03-09T09:00:00Z"]
    lunch = series_to_content([b for b in blocks if b["uid"] == "b2"], DEFAULT_RULES, tz)
    assert lunch["start"] == "2026-03-02T11:00:00Z"                    # floating: the calendar's zone
    assert lunch["show_as"] == "tentative" and lunch["description"] == "long line that isfolded"


def test_windows_zone_names_from_outlook_exports():
    from zoomcal.errors import InvalidItem

    text = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "BEGIN:VEVENT", "UID:w1", "SUMMARY:Outlook",
                        "DTSTART;TZID=W. Europe Standard Time:20260330T090000",
                        "DTEND;TZID=W. Europe Standard Time:20260330T100000", "END:VEVENT",
                        "BEGIN:VEVENT", "UID:w2", "SUMMARY:Nowhere", "DTSTART;TZID=Mars Standard Time:20260330T090000",
                        "END:VEVENT", "END:VCALENDAR", ""])
    blocks, _ = split_events(text)
    outlook = series_to_content([b for b in blocks if b["uid"] == "w1"], DEFAULT_RULES)
    assert (outlook["timezone"], outlook["start"]) == ("Europe/Berlin", "2026-03-30T07:00:00Z")   # CEST
    with pytest.raises(InvalidItem, match="unknown time zone 'Mars Standard Time'"):
        series_to_content([b for b in blocks if b["uid"] == "w2"], DEFAULT_RULES)
