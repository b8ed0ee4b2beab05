"""The recurrence and time-zone corpus every provider mapping is checked against."""

from zoomcal.domain.content import make_content

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
    # every calendar holds an attendee's name and role; the answer is the attendee's (see test_attendees.py)
    "transparent and attendees": make_content(title="Lunch", start="2026-05-01T11:00:00Z",
                                              end="2026-05-01T12:00:00Z", timezone="UTC", show_as="free",
                                              attendees={"a@example.com": {"name": "Ann Example", "optional": False,
                                                                           "status": "needs_action"},
                                                         "b@example.com": {"name": "", "optional": True,
                                                                           "status": "needs_action"}}),
}
