"""Recurrence and time-zone corpus through the iCalendar mapping: exact round trip, case by case."""

from __future__ import annotations

import pytest

from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import occurrence_starts
from zoomcal.mapping.ical import content_to_calendar, series_to_content, split_events
from zoomcal.mapping.rules import DEFAULT_RULES

CASES = {
    "weekly BYDAY, COUNT, Berlin across DST": make_content(
        title="Standup", start="2026-03-23T08:00:00Z", end="2026-03-23T08:15:00Z", timezone="Europe/Berlin",
        rrule="FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=9"),
    "monthly ordinal BYDAY, UNTIL date-time": make_content(
        title="Review", start="2026-01-06T15:00:00Z", end="2026-01-06T16:00:00Z", timezone="America/New_York",
        rrule="FREQ=MONTHLY;BYDAY=1TU;UNTIL=20261231T235959Z"),
    "BYSETPOS last weekday": make_content(
        title="Close", start="2026-01-30T09:00:00Z", end="2026-01-30T10:00:00Z", timezone="UTC",
        rrule="FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=6"),
    "negative BYMONTHDAY": make_content(
        title="Payroll", start="2026-01-31T10:00:00Z", end="2026-01-31T10:30:00Z", timezone="UTC",
        rrule="FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=4"),
    "UNTIL as a date, all-day": make_content(
        title="Sprint", start="2026-02-02", end="2026-02-03", all_day=True, rrule="FREQ=WEEKLY;UNTIL=20260302"),
    "EXDATE, RDATE, moved and cancelled instances": make_content(
        title="1:1", description="notes", start="2026-03-02T09:00:00Z", end="2026-03-02T09:30:00Z",
        timezone="Europe/London", rrule="FREQ=WEEKLY;COUNT=6", exdates=["2026-03-09T09:00:00Z"],
        rdates=["2026-03-12T14:00:00Z"],
        overrides={"2026-03-30T08:00:00Z": {"start": "2026-03-30T12:00:00Z", "end": "2026-03-30T12:45:00Z",
                                            "title": "1:1 (moved across DST)", "description": "other notes"}}),
    "all-day in Pacific/Kiritimati (UTC+14)": make_content(title="Holiday", start="2026-12-31", end="2027-01-01",
                                                           all_day=True),
    "Etc/GMT+12": make_content(title="Edge", start="2026-06-01T12:00:00Z", end="2026-06-01T13:00:00Z",
                               timezone="Etc/GMT+12"),
    "Lord Howe 30-minute DST": make_content(
        title="Call", start="2026-04-03T23:00:00Z", end="2026-04-03T23:30:00Z", timezone="Australia/Lord_Howe",
        rrule="FREQ=DAILY;COUNT=4"),
    "longer than a day": make_content(title="Trip", start="2026-05-01T06:00:00Z", end="2026-05-03T20:00:00Z",
                                      timezone="Asia/Tokyo"),
    "zero-length": make_content(title="Deadline", start="2026-05-01T12:00:00Z", end="2026-05-01T12:00:00Z",
                                timezone="UTC"),
    "a Zoom meeting's join info": make_content(
        title="Board", description="Agenda: numbers", start="2026-05-04T13:00:00Z", end="2026-05-04T14:00:00Z",
        timezone="Europe/Paris", join={"meeting_id": "81234567890", "join_url": "https://zoom.us/j/81234567890",
                                       "passcode": "s3cr"}),
    "transparent and attendees": make_content(title="Lunch", start="2026-05-01T11:00:00Z",
                                              end="2026-05-01T12:00:00Z", timezone="UTC", show_as="free",
                                              attendees=["a@example.com", "b@example.com"]),
}


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
