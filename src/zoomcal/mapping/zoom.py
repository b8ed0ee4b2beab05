"""Zoom meeting JSON (meetings-api.json shapes) ⇄ canonical content. Pure functions, no I/O."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import (
    WEEKDAYS,
    join_rrule_parts,
    normalize_rrule,
    occurrence_starts,
    parse_rrule_parts,
    split_byday,
)
from zoomcal.domain.timeutil import (
    UTC,
    check_zone,
    duration_minutes,
    fmt_instant,
    is_date,
    parse_instant,
    to_datetime,
    zone,
)
from zoomcal.errors import InvalidItem
from zoomcal.mapping.rules import MappingRules

MARKER_KEY = "zoomcal_event"
MAX_OCCURRENCES = 60
# Zoom's weekly_days / monthly_week_day: 1 = Sunday ... 7 = Saturday.
ZOOM_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")
# repeat_interval at most 99 days, 50 weeks or 10 months (meetings-api.json)
INTERVAL_LIMITS = {1: 99, 2: 50, 3: 10}
JOIN_URL_ID = re.compile(r"https?://[\w.-]*zoom\.us/[jw]/(\d{9,11})")


def occurrence_id(start: str) -> str:
    """Zoom addresses an occurrence by its original start in epoch milliseconds."""
    return str(int(to_datetime(start).timestamp() * 1000))


def occurrence_start(occ_id: str) -> str:
    try:
        return fmt_instant(datetime.fromtimestamp(int(occ_id) / 1000, tz=UTC))
    except (ValueError, OverflowError) as exc:
        raise InvalidItem(f"malformed occurrence_id {occ_id!r}") from exc


# --- recurrence --------------------------------------------------------------------------------------------

def recurrence_to_rrule(rec: dict[str, Any]) -> str:
    kind = rec.get("type")
    freq = {1: "DAILY", 2: "WEEKLY", 3: "MONTHLY"}.get(kind)
    if freq is None:
        raise InvalidItem(f"unknown Zoom recurrence type {kind!r}")
    parts = {"FREQ": freq}
    interval = int(rec.get("repeat_interval") or 1)
    if interval != 1:
        parts["INTERVAL"] = str(interval)
    if kind == 2:
        days = str(rec.get("weekly_days") or "")
        try:
            parts["BYDAY"] = ",".join(ZOOM_DAYS[int(d) - 1] for d in days.split(",") if d.strip())
        except (ValueError, IndexError) as exc:
            raise InvalidItem(f"malformed weekly_days {days!r}") from exc
    if kind == 3:
        if rec.get("monthly_week"):
            week_day = int(rec.get("monthly_week_day") or 0)
            if not 1 <= week_day <= 7:
                raise InvalidItem(f"malformed monthly_week_day {week_day!r}")
            parts["BYDAY"] = f"{int(rec['monthly_week'])}{ZOOM_DAYS[week_day - 1]}"
        elif rec.get("monthly_day"):
            parts["BYMONTHDAY"] = str(int(rec["monthly_day"]))
    if rec.get("end_date_time"):
        parts["UNTIL"] = parse_instant(rec["end_date_time"]).strftime("%Y%m%dT%H%M%SZ")
    elif rec.get("end_times"):
        parts["COUNT"] = str(int(rec["end_times"]))
    return normalize_rrule(join_rrule_parts(parts))


def rrule_to_recurrence(rrule: str, start: str, tz: str | None) -> tuple[dict[str, Any] | None, str]:
    """Zoom recurrence object for an RRULE, or (None, why) when Zoom cannot express it."""
    parts = parse_rrule_parts(rrule)
    freq = parts.pop("FREQ")
    kind = {"DAILY": 1, "WEEKLY": 2, "MONTHLY": 3}.get(freq)
    if kind is None:
        return None, f"Zoom has no {freq.lower()} recurrence"
    rec: dict[str, Any] = {"type": kind}
    interval = int(parts.pop("INTERVAL", "1"))
    if interval > INTERVAL_LIMITS[kind]:
        return None, f"Zoom repeats {freq.lower()} at most every {INTERVAL_LIMITS[kind]}"
    rec["repeat_interval"] = interval
    parts.pop("WKST", None)
    local = to_datetime(start).astimezone(zone(tz))
    byday = parts.pop("BYDAY", None)
    if kind == 1 and byday:
        return None, "Zoom daily recurrence cannot be limited to weekdays"
    if kind == 2:
        days = [split_byday(d) for d in byday.split(",")] if byday else [(None, WEEKDAYS[local.weekday()])]
        if any(ordinal is not None for ordinal, _ in days):
            return None, "weekly rule with ordinal weekdays"
        rec["weekly_days"] = ",".join(str(ZOOM_DAYS.index(d) + 1) for _, d in days)
    if kind == 3:
        monthday = parts.pop("BYMONTHDAY", None)
        if byday and monthday:
            return None, "monthly rule with both BYDAY and BYMONTHDAY"
        if byday:
            items = byday.split(",")
            ordinal, day = split_byday(items[0])
            if len(items) != 1 or ordinal not in (-1, 1, 2, 3, 4):
                return None, f"Zoom monthly recurrence cannot express BYDAY={byday}"
            rec["monthly_week"] = ordinal
            rec["monthly_week_day"] = ZOOM_DAYS.index(day) + 1
        else:
            day_of_month = int(monthday) if monthday else local.day
            if "," in (monthday or "") or not 1 <= day_of_month <= 31:
                return None, f"Zoom monthly recurrence cannot express BYMONTHDAY={monthday}"
            rec["monthly_day"] = day_of_month
    if "COUNT" in parts:
        count = int(parts.pop("COUNT"))
        if count > MAX_OCCURRENCES:
            return None, f"Zoom allows at most {MAX_OCCURRENCES} occurrences (rule has {count})"
        rec["end_times"] = count
    elif "UNTIL" in parts:
        until = parts.pop("UNTIL")
        if len(until) == 8:
            end_day = datetime.strptime(until, "%Y%m%d").replace(hour=23, minute=59, second=59)
            until_at = end_day.replace(tzinfo=zone(tz)).astimezone(UTC)
        else:
            until_at = datetime.strptime(until, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        rec["end_date_time"] = fmt_instant(until_at)
    else:
        return None, "Zoom recurring meetings need an end (COUNT or UNTIL)"
    if parts:
        return None, f"Zoom cannot express {', '.join(sorted(parts))}"
    probe = make_content(start=start, end=start, timezone=tz, rrule=rrule)
    if len(occurrence_starts(probe, limit=MAX_OCCURRENCES + 1)) > MAX_OCCURRENCES:
        return None, f"Zoom allows at most {MAX_OCCURRENCES} occurrences"
    return rec, ""


def expand_occurrences(meeting: dict[str, Any], edits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The occurrence list Zoom reports for a fixed-time recurring meeting (its own expansion).

    `edits` maps occurrence_id to {"start_time", "duration"} or {"status": "deleted"}.
    """
    rrule = recurrence_to_rrule(meeting["recurrence"])
    start = fmt_instant(parse_instant(meeting["start_time"]))
    probe = make_content(start=start, end=start, timezone=meeting.get("timezone"), rrule=rrule)
    out = []
    for rid in occurrence_starts(probe, limit=MAX_OCCURRENCES):
        occ_id = occurrence_id(rid)
        edit = edits.get(occ_id, {})
        out.append({
            "occurrence_id": occ_id,
            "start_time": edit.get("start_time", rid),
            "duration": edit.get("duration", meeting.get("duration", 60)),
            "status": edit.get("status", "available"),
        })
    return out


# --- meeting -> content -----------------------------------------------------------------------------------

def meeting_marker(meeting: dict[str, Any]) -> str | None:
    for entry in (meeting.get("settings") or {}).get("custom_keys") or []:
        if entry.get("key") == MARKER_KEY:
            return entry.get("value")
    return None


def meeting_to_content(meeting: dict[str, Any]) -> dict[str, Any]:
    if "id" not in meeting:
        raise InvalidItem("Zoom meeting without id")
    tz = check_zone(meeting.get("timezone") or None)
    kind = meeting.get("type", 2)
    join = {
        "meeting_id": str(meeting["id"]),
        "join_url": meeting.get("join_url") or "",
        "passcode": meeting.get("password") or "",
    }
    fields: dict[str, Any] = {
        "title": (meeting.get("topic") or "").strip(),
        "description": _clean_text(meeting.get("agenda")),
        "timezone": tz,
        "attendees": invitee_emails(meeting),   # e-mails only: Zoom has no names, answers or optional invitees
        "organizer": meeting.get("host_email") or None,   # GET /meetings/{id} names the host; the list does not
        "join": join,
    }
    if kind == 3 or not meeting.get("start_time"):
        return make_content(**fields)
    start = fmt_instant(parse_instant(meeting["start_time"]))
    duration = _duration(meeting.get("duration"))
    fields["start"] = start
    fields["end"] = fmt_instant(parse_instant(start) + timedelta(minutes=duration))
    if kind == 8 and meeting.get("recurrence"):
        fields["rrule"] = recurrence_to_rrule(meeting["recurrence"])
        exdates, overrides = [], {}
        for occ in meeting.get("occurrences") or []:
            rid = occurrence_start(str(occ.get("occurrence_id")))
            if occ.get("status") == "deleted":
                exdates.append(rid)
                continue
            occ_start = fmt_instant(parse_instant(occ.get("start_time") or rid))
            occ_duration = _duration(occ.get("duration", duration))
            if occ_start != rid or occ_duration != duration:
                occ_end = fmt_instant(parse_instant(occ_start) + timedelta(minutes=occ_duration))
                overrides[rid] = {"start": occ_start, "end": occ_end}
        fields["exdates"], fields["overrides"] = exdates, overrides
    return make_content(**fields)


def invitee_emails(meeting: dict[str, Any]) -> list[str]:
    invitees = (meeting.get("settings") or {}).get("meeting_invitees") or []
    return sorted({(i.get("email") or "").strip().lower() for i in invitees if isinstance(i, dict)} - {""})


def _duration(value: Any) -> int:
    try:
        minutes = int(value if value is not None else 60)
    except (TypeError, ValueError) as exc:
        raise InvalidItem(f"malformed duration {value!r}") from exc
    if minutes < 0:
        raise InvalidItem(f"negative duration {minutes}")
    return minutes


def _clean_text(value: Any) -> str:
    return str(value or "").replace("\r\n", "\n").rstrip()


# --- content -> meeting -----------------------------------------------------------------------------------

def content_to_meeting(
    content: dict[str, Any], rules: MappingRules, marker: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Request body for POST /users/{userId}/meetings or PATCH /meetings/{id}, plus degradation notes."""
    notes: list[str] = []
    body: dict[str, Any] = {
        "topic": (content["title"] or "(no title)")[: rules.zoom.topic_max],
        "agenda": (content["description"] or "")[: rules.zoom.agenda_max],
        "timezone": content.get("timezone") or "UTC",
        "settings": {"meeting_invitees": [{"email": e} for e in content.get("attendees") or {}]},
    }
    if len(content["title"] or "") > rules.zoom.topic_max:
        notes.append(f"title cut to Zoom's {rules.zoom.topic_max} characters")
    if marker:
        body["settings"]["custom_keys"] = [{"key": MARKER_KEY, "value": marker}]
    start, end, tz = content["start"], content["end"], content.get("timezone")
    if start is None:
        body["type"] = 3
        return body, notes
    if content.get("all_day"):
        notes.append("all-day event: the Zoom meeting runs from local midnight for the whole day(s)")
    start_at = to_datetime(start, tz)
    body["start_time"] = fmt_instant(start_at)
    body["duration"] = max(1, duration_minutes(start, end, tz)) if end else 60
    if end and duration_minutes(start, end, tz) < 1:
        notes.append("a zero-length event: Zoom meetings last at least a minute")
    rrule = content.get("rrule")
    if not rrule and not content.get("rdates"):
        body["type"] = 2
        return body, notes
    rec, why = (None, "extra dates (RDATE) cannot be expressed on Zoom")
    if rrule and not content.get("rdates"):
        rec, why = rrule_to_recurrence(rrule, fmt_instant(start_at), tz)
    if rec is not None:
        body["type"] = 8
        body["recurrence"] = rec
        return body, notes
    if rules.zoom.unsupported_recurrence == "first_only":
        body["type"] = 2
        notes.append(f"recurrence kept in the calendar only ({why}); Zoom meeting covers the first occurrence")
    else:
        body["type"] = 3
        body.pop("start_time")
        body.pop("duration")
        notes.append(f"recurrence kept in the calendar only ({why}); Zoom meeting has no fixed time")
    return body, notes


def occurrence_edits(content: dict[str, Any], meeting: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-occurrence PATCH/DELETE requests that bring Zoom's occurrences in line with the content."""
    if meeting.get("type") != 8:
        return {}
    tz = content.get("timezone")
    edits: dict[str, dict[str, Any]] = {}
    for rid in content.get("exdates") or []:
        if not is_date(rid):
            edits[occurrence_id(rid)] = {"status": "deleted"}
    for rid, ov in (content.get("overrides") or {}).items():
        if is_date(rid) or occurrence_id(rid) in edits:
            continue
        edits[occurrence_id(rid)] = {
            "start_time": fmt_instant(to_datetime(ov["start"], tz)),
            "duration": max(1, duration_minutes(ov["start"], ov["end"], tz)),
        }
    return edits


def predicted_meeting(
    body: dict[str, Any], meeting_id: int | str, join_url: str, password: str,
    edits: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What GET /meetings/{id} will return after writing `body` and `edits` (Zoom's own expansion)."""
    meeting = {k: v for k, v in body.items() if k != "settings"}
    meeting.update({"id": int(meeting_id), "join_url": join_url, "password": password,
                    "settings": dict(body.get("settings") or {})})
    if meeting.get("type") == 8:
        meeting["occurrences"] = expand_occurrences(meeting, edits)
    return meeting


def join_url_meeting_id(text: str | None) -> str | None:
    match = JOIN_URL_ID.search(text or "")
    return match.group(1) if match else None
