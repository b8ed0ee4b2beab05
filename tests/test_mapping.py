"""Mapping both ways: Zoom and Google JSON ⇄ canonical content, recurrence, DST, all-day, exceptions."""

from __future__ import annotations

import pytest

from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import normalize_rrule, occurrence_starts, occurrences
from zoomcal.errors import InvalidItem
from zoomcal.mapping.google import (
    content_to_event,
    event_id_for,
    instance_id,
    override_to_instance,
    referenced_meeting,
    series_to_content,
    wants_zoom,
)
from zoomcal.mapping.rules import DEFAULT_RULES, parse_rules
from zoomcal.mapping.zoom import (
    content_to_meeting,
    expand_occurrences,
    meeting_to_content,
    occurrence_id,
    predicted_meeting,
    recurrence_to_rrule,
    rrule_to_recurrence,
)

R = DEFAULT_RULES


def zoom_roundtrip(content):
    body, notes = content_to_meeting(content, R, marker="ev1")
    from zoomcal.mapping.zoom import occurrence_edits

    meeting = predicted_meeting(body, 123456789, "https://sandbox.zoom.us/j/123456789", "pw", {})
    if meeting.get("type") == 8:
        meeting["occurrences"] = expand_occurrences(meeting, occurrence_edits(content, meeting))
    return meeting_to_content(meeting), notes


def google_roundtrip(content):
    master = {**content_to_event(content, R, "ev1"), "id": "abcdef"}
    exceptions = []
    for rid, ov in content["overrides"].items():
        inst = override_to_instance(content, rid, ov, R)
        exceptions.append({**inst, "id": instance_id("abcdef", rid), "recurringEventId": "abcdef"})
    return series_to_content(master, exceptions, R)


def strip_join(content):
    return {**content, "join": None}


# --- DST ---------------------------------------------------------------------------------------------------

def test_weekly_meeting_keeps_wall_time_across_dst_in_berlin():
    # 09:00 Berlin: 08:00Z in winter (CET), 07:00Z after the change on 2026-03-29 (CEST)
    content = make_content(title="Standup", start="2026-03-23T08:00:00Z", end="2026-03-23T08:30:00Z",
                           timezone="Europe/Berlin", rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3")
    assert occurrence_starts(content) == ["2026-03-23T08:00:00Z", "2026-03-30T07:00:00Z", "2026-04-06T07:00:00Z"]
    zoom, _ = zoom_roundtrip(content)
    assert zoom["rrule"] == content["rrule"]
    assert occurrence_starts(zoom) == occurrence_starts(content)
    assert strip_join(google_roundtrip(content)) == content


def test_new_york_fall_back_overlap_and_lord_howe_half_hour_dst():
    ny = make_content(title="x", start="2026-10-31T05:30:00Z", end="2026-10-31T06:00:00Z",
                      timezone="America/New_York", rrule="FREQ=DAILY;COUNT=3")
    # 01:30 local each day; on 2026-11-01 01:30 exists twice: the first (EDT) is taken
    assert occurrence_starts(ny) == ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    lh = make_content(title="x", start="2026-04-03T23:00:00Z", end="2026-04-03T23:30:00Z",
                      timezone="Australia/Lord_Howe", rrule="FREQ=DAILY;COUNT=3")
    starts = occurrence_starts(lh)
    # 10:00 local; Lord Howe leaves its +11 summer time for +10:30 at 02:00 on 2026-04-05
    assert starts == ["2026-04-03T23:00:00Z", "2026-04-04T23:30:00Z", "2026-04-05T23:30:00Z"]
    assert strip_join(google_roundtrip(lh)) == lh


# --- Zoom recurrence ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rrule,expect_type", [
    ("FREQ=DAILY;INTERVAL=2;COUNT=5", 1),
    ("FREQ=WEEKLY;BYDAY=MO,WE,FR;UNTIL=20260430T235959Z", 2),
    ("FREQ=MONTHLY;BYMONTHDAY=15;COUNT=6", 3),
    ("FREQ=MONTHLY;BYDAY=-1FR;COUNT=4", 3),
    ("FREQ=MONTHLY;INTERVAL=3;BYDAY=2TU;COUNT=4", 3),
    ("FREQ=DAILY;INTERVAL=99;COUNT=3", 1),
    ("FREQ=WEEKLY;INTERVAL=50;BYDAY=MO;COUNT=2", 2),
    ("FREQ=MONTHLY;INTERVAL=10;BYMONTHDAY=2;COUNT=2", 3),
])
def test_zoom_expressible_rules_round_trip(rrule, expect_type):
    content = make_content(title="t", start="2026-03-02T10:00:00Z", end="2026-03-02T11:00:00Z",
                           timezone="Europe/London", rrule=normalize_rrule(rrule))
    body, notes = content_to_meeting(content, R)
    assert body["type"] == 8 and body["recurrence"]["type"] == expect_type and not notes
    zoom, _ = zoom_roundtrip(content)
    assert zoom["rrule"] == content["rrule"]


def test_zoom_weekly_days_are_sunday_based():
    assert recurrence_to_rrule({"type": 2, "weekly_days": "1,7", "end_times": 2}) == "FREQ=WEEKLY;BYDAY=SA,SU;COUNT=2"
    rec, _ = rrule_to_recurrence("FREQ=WEEKLY;BYDAY=SU,MO;COUNT=2", "2026-03-01T10:00:00Z", "UTC")
    assert rec["weekly_days"] == "2,1" or sorted(rec["weekly_days"].split(",")) == ["1", "2"]


@pytest.mark.parametrize("rrule,why", [
    ("FREQ=YEARLY;COUNT=3", "yearly"),
    ("FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=1;COUNT=3", "BYDAY"),
    ("FREQ=WEEKLY;BYDAY=MO", "need an end"),
    ("FREQ=DAILY;COUNT=61", "at most 60"),
    ("FREQ=DAILY;INTERVAL=100;COUNT=2", "at most every 99"),
    ("FREQ=WEEKLY;INTERVAL=51;COUNT=2", "at most every 50"),
    ("FREQ=MONTHLY;INTERVAL=11;COUNT=2", "at most every 10"),
])
def test_unsupported_recurrence_degrades_explicitly(rrule, why):
    content = make_content(title="t", start="2026-03-02T10:00:00Z", end="2026-03-02T11:00:00Z",
                           timezone="UTC", rrule=normalize_rrule(rrule))
    body, notes = content_to_meeting(content, R)
    assert body["type"] == 3 and "start_time" not in body
    assert notes and why in notes[0]
    first_only = parse_rules({"zoom": {"unsupported_recurrence": "first_only"}})
    body, notes = content_to_meeting(content, first_only)
    assert body["type"] == 2 and body["start_time"] == "2026-03-02T10:00:00Z" and "first occurrence" in notes[0]


def test_zoom_occurrence_edits_map_to_overrides_and_exdates():
    content = make_content(title="t", start="2026-03-02T10:00:00Z", end="2026-03-02T10:30:00Z", timezone="UTC",
                           rrule="FREQ=DAILY;COUNT=4", exdates=["2026-03-04T10:00:00Z"],
                           overrides={"2026-03-03T10:00:00Z": {"start": "2026-03-03T12:00:00Z",
                                                               "end": "2026-03-03T13:00:00Z"}})
    zoom, _ = zoom_roundtrip(content)
    assert zoom["exdates"] == ["2026-03-04T10:00:00Z"]
    assert zoom["overrides"] == content["overrides"]
    assert occurrence_id("2026-03-03T10:00:00Z") == "1772532000000"


def test_zoom_meeting_to_content_basics_and_bad_zone():
    meeting = {"id": 99, "topic": " Plan ", "agenda": "a\r\nb  ", "start_time": "2026-03-02T10:00:00Z",
               "duration": 45, "timezone": "Asia/Kolkata", "type": 2, "join_url": "https://zoom.us/j/99",
               "password": "x", "settings": {"meeting_invitees": [{"email": "B@x.org"}]}}
    c = meeting_to_content(meeting)
    assert c["title"] == "Plan" and c["description"] == "a\nb" and c["end"] == "2026-03-02T10:45:00Z"
    assert c["attendees"] == {"b@x.org": {}} and c["join"]["meeting_id"] == "99"
    with pytest.raises(InvalidItem, match="unknown time zone"):
        meeting_to_content({**meeting, "timezone": "Mars/Olympus"})
    with pytest.raises(InvalidItem):
        meeting_to_content({**meeting, "start_time": "yesterday"})


# --- Google ------------------------------------------------------------------------------------------------

def test_google_all_day_multi_day_and_kiritimati():
    content = make_content(title="Offsite", start="2026-03-02", end="2026-03-05", all_day=True)
    assert google_roundtrip(content) == content
    event = {"id": "abcde", "summary": "x", "start": {"date": "2026-12-31", "timeZone": "Pacific/Kiritimati"},
             "end": {"date": "2027-01-01", "timeZone": "Pacific/Kiritimati"}}
    c = series_to_content(event, [], R)
    assert c["all_day"] and c["start"] == "2026-12-31" and c["timezone"] is None


def test_google_exceptions_cancellations_and_exdate_lines():
    master = {"id": "abcdef", "summary": "Sync", "description": "d",
              "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
              "end": {"dateTime": "2026-03-02T09:30:00+01:00", "timeZone": "Europe/Berlin"},
              "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE;TZID=Europe/Berlin:20260309T090000"]}
    moved = {"id": "abcdef_20260316T080000Z", "recurringEventId": "abcdef", "summary": "Sync (moved)",
             "originalStartTime": {"dateTime": "2026-03-16T09:00:00+01:00", "timeZone": "Europe/Berlin"},
             "start": {"dateTime": "2026-03-16T10:00:00+01:00"}, "end": {"dateTime": "2026-03-16T10:30:00+01:00"}}
    cancelled = {"id": "abcdef_20260323T080000Z", "recurringEventId": "abcdef", "status": "cancelled",
                 "originalStartTime": {"dateTime": "2026-03-23T08:00:00Z"}}
    stale = {"id": "abcdef_20260101T080000Z", "recurringEventId": "abcdef", "summary": "old rule",
             "originalStartTime": {"dateTime": "2026-01-01T08:00:00Z"}, "start": {"dateTime": "2026-01-01T08:00:00Z"},
             "end": {"dateTime": "2026-01-01T09:00:00Z"}}
    c = series_to_content(master, [moved, cancelled, stale], R)
    assert c["exdates"] == ["2026-03-09T08:00:00Z", "2026-03-23T08:00:00Z"]
    assert c["overrides"] == {"2026-03-16T08:00:00Z": {"start": "2026-03-16T09:00:00Z", "end": "2026-03-16T09:30:00Z",
                                                       "title": "Sync (moved)"}}
    assert [o[0] for o in occurrences(c)] == ["2026-03-02T08:00:00Z", "2026-03-16T08:00:00Z", "2026-03-30T07:00:00Z"]
    assert strip_join(google_roundtrip(c)) == c


def test_google_join_block_is_ours_and_stripped():
    content = make_content(title="Call", description="Bring numbers", start="2026-03-02T10:00:00Z",
                           end="2026-03-02T11:00:00Z", timezone="UTC",
                           join={"meeting_id": "81234567890", "join_url": "https://zoom.us/j/81234567890",
                                 "passcode": "p"})
    event = content_to_event(content, R, "ev1")
    assert event["location"] == "https://zoom.us/j/81234567890"
    assert "Bring numbers\n\n── Zoom meeting ──\nJoin: https://zoom.us/j/81234567890" in event["description"]
    assert event["extendedProperties"]["private"]["zoomcal_event"] == "ev1"
    assert google_roundtrip(content) == content


def test_google_marker_and_meeting_reference():
    assert wants_zoom({"location": " Zoom "}, R)
    assert wants_zoom({"description": "Let's meet #zoom"}, R)
    assert not wants_zoom({"location": "Room 4"}, R)
    assert referenced_meeting({"description": "Join https://us02web.zoom.us/j/81234567890?pwd=x"}) == "81234567890"
    custom = parse_rules({"marker": {"location_equals": ["video"], "description_contains": ["[vc]"]}})
    assert wants_zoom({"location": "Video"}, custom) and not wants_zoom({"location": "zoom"}, custom)


@pytest.mark.parametrize("event,reason", [
    ({"start": {"dateTime": "2026-03-02T10:00:00", "timeZone": "Nowhere/City"},
      "end": {"dateTime": "2026-03-02T11:00:00"}}, "unknown time zone"),
    ({"start": {"dateTime": "not a time"}, "end": {"dateTime": "2026-03-02T11:00:00Z"}}, "malformed"),
    ({"start": {"date": "2026-03-02"}, "end": {"dateTime": "2026-03-02T11:00:00Z"}}, "mix"),
    ({"start": {"dateTime": "2026-03-02T12:00:00Z"}, "end": {"dateTime": "2026-03-02T11:00:00Z"}}, "ends before"),
    ({"summary": "x" * 9000, "start": {"date": "2026-03-02"}, "end": {"date": "2026-03-03"}}, "longer than"),
    ({"start": {"dateTime": "2026-03-02T10:00:00Z"}, "end": {"dateTime": "2026-03-02T11:00:00Z"},
      "recurrence": ["RRULE:FREQ=SOMETIMES"]}, "RRULE"),
    ({"end": {"dateTime": "2026-03-02T11:00:00Z"}}, "without start"),
])
def test_google_bad_input_is_rejected_with_a_reason(event, reason):
    with pytest.raises(InvalidItem, match=reason):
        series_to_content({"id": "abcde", **event}, [], R)


def test_zero_length_and_long_events_round_trip():
    zero = make_content(title="marker", start="2026-03-02T10:00:00Z", end="2026-03-02T10:00:00Z", timezone="UTC")
    assert strip_join(google_roundtrip(zero)) == zero
    long = make_content(title="trip", start="2026-03-02T10:00:00Z", end="2026-03-04T18:00:00Z", timezone="UTC")
    zoom, _ = zoom_roundtrip(long)
    assert (zoom["start"], zoom["end"]) == (long["start"], long["end"])


def test_google_event_ids_are_valid_and_stable():
    first = event_id_for("ev123")
    assert first == event_id_for("ev123") != event_id_for("ev124")
    assert all(ch in "0123456789abcdefghijklmnopqrstuv" for ch in first) and 5 <= len(first) <= 1024


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=int(__import__("os").environ.get("ZOOMCAL_FF_EXAMPLES", "150")), deadline=None)
@given(freq=st.sampled_from(["DAILY", "WEEKLY"]), interval=st.integers(1, 4),
       days=st.lists(st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), max_size=3, unique=True),
       until=st.booleans(), start_day=st.integers(0, 60), hour=st.integers(0, 23), offset=st.integers(0, 900),
       zone_name=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]))
def test_fast_forward_expansion_matches_the_full_walk(freq, interval, days, until, start_day, hour, offset,
                                                      zone_name):
    from datetime import datetime, timedelta

    from zoomcal.domain.timeutil import UTC, fmt_instant

    rule = f"FREQ={freq}" + (f";INTERVAL={interval}" if interval > 1 else "") + \
        (f";BYDAY={','.join(days)}" if days else "") + (";UNTIL=20290101T000000Z" if until else "")
    start = datetime(2026, 1, 1, hour, tzinfo=UTC) + timedelta(days=start_day)
    content = make_content(title="x", start=fmt_instant(start), end=fmt_instant(start + timedelta(minutes=30)),
                           timezone=zone_name, rrule=normalize_rrule(rule))
    lo = start + timedelta(days=offset)
    hi = lo + timedelta(days=9)
    fast = occurrence_starts(content, lo, hi)
    full = occurrence_starts(content, lo, hi, fast=False)
    assert fast == full
