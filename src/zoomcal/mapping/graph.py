"""Microsoft Graph event JSON (graph-v1.0-calendar.yml shapes) ⇄ canonical content. Pure functions, no I/O.

Graph writes local date-times with a zone that may be a Windows name; `patternedRecurrence` holds the rule.
What it cannot hold (EXDATE/RDATE lines, negative month days, BYSETPOS other than the first-matching-day
form) is reported as a degradation, never dropped silently.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import (
    WEEKDAYS,
    join_rrule_parts,
    normalize_rrule,
    parse_rrule_parts,
    plain_end,
    split_byday,
)
from zoomcal.domain.timeutil import UTC, check_zone, fmt_instant, is_date, to_datetime, windows_name, zone
from zoomcal.errors import InvalidItem
from zoomcal.mapping.joininfo import append_description, join_in_body, split_description
from zoomcal.mapping.rules import MappingRules

DAYS = {"monday": "MO", "tuesday": "TU", "wednesday": "WE", "thursday": "TH", "friday": "FR", "saturday": "SA",
        "sunday": "SU"}
NAMES = {v: k for k, v in DAYS.items()}
INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
INDEX_NAMES = {v: k for k, v in INDEX.items()}
SHOW_AS = {"free": "free", "tentative": "tentative", "busy": "busy", "oof": "ooo", "workingElsewhere": "free",
           "unknown": "busy"}
SHOW_AS_OUT = {"free": "free", "tentative": "tentative", "busy": "busy", "ooo": "oof", "focus": "busy"}
# responseStatus.response; "organizer" is the organizer's own entry, "none" / "notResponded" no answer yet
RESPONSES = {"none": "needs_action", "notResponded": "needs_action", "organizer": "accepted", "accepted": "accepted",
             "tentativelyAccepted": "tentative", "declined": "declined"}


def recurrence_to_rrule(rec: dict[str, Any]) -> str:
    pattern, rng = rec.get("pattern") or {}, rec.get("range") or {}
    kind = pattern.get("type")
    parts: dict[str, str] = {}
    interval = int(pattern.get("interval") or 1)
    if interval != 1:
        parts["INTERVAL"] = str(interval)
    days = [DAYS[d] for d in pattern.get("daysOfWeek") or [] if d in DAYS]
    index = INDEX.get(pattern.get("index") or "first", 1)
    if kind == "daily":
        parts["FREQ"] = "DAILY"
    elif kind == "weekly":
        parts.update(FREQ="WEEKLY", BYDAY=",".join(days))
        if (pattern.get("firstDayOfWeek") or "sunday") != "monday":
            parts["WKST"] = DAYS.get(pattern.get("firstDayOfWeek") or "sunday", "SU")
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        parts.update(FREQ="MONTHLY" if kind == "absoluteMonthly" else "YEARLY",
                     BYMONTHDAY=str(int(pattern.get("dayOfMonth") or 1)))
    elif kind in ("relativeMonthly", "relativeYearly"):
        parts["FREQ"] = "MONTHLY" if kind == "relativeMonthly" else "YEARLY"
        if len(days) == 1:
            parts["BYDAY"] = f"{index}{days[0]}"
        else:   # several days: the index-th day that matches
            parts.update(BYDAY=",".join(days), BYSETPOS=str(index))
    else:
        raise InvalidItem(f"unknown Graph recurrence type {kind!r}")
    if kind in ("absoluteYearly", "relativeYearly"):
        parts["BYMONTH"] = str(int(pattern.get("month") or 1))
    if rng.get("type") == "numbered":
        parts["COUNT"] = str(int(rng.get("numberOfOccurrences") or 1))
    elif rng.get("type") == "endDate" and rng.get("endDate"):
        parts["UNTIL"] = rng["endDate"].replace("-", "")
    return normalize_rrule(join_rrule_parts(parts))


def rrule_to_recurrence(rrule: str, start_local: date, tz: str | None) -> tuple[dict[str, Any] | None, str]:
    """patternedRecurrence for an RRULE, or (None, why) when Graph cannot hold it."""
    parts = parse_rrule_parts(rrule)
    freq = parts.pop("FREQ")
    pattern: dict[str, Any] = {"interval": int(parts.pop("INTERVAL", "1")),
                               "firstDayOfWeek": NAMES[parts.pop("WKST", "MO")]}
    byday = [split_byday(d) for d in parts.pop("BYDAY").split(",")] if "BYDAY" in parts else []
    setpos = parts.pop("BYSETPOS", None)
    monthday = parts.pop("BYMONTHDAY", None)
    month = parts.pop("BYMONTH", None)
    if freq == "DAILY" and not byday:
        pattern["type"] = "daily"
    elif freq == "WEEKLY":
        days = byday or [(None, WEEKDAYS[start_local.weekday()])]
        if any(o is not None for o, _ in days):
            return None, "weekly rule with ordinal weekdays"
        pattern.update(type="weekly", daysOfWeek=[NAMES[d] for _, d in days])
    elif freq in ("MONTHLY", "YEARLY") and (monthday or not byday) and not setpos:
        day = int(monthday) if monthday else start_local.day
        if monthday and ("," in monthday or day < 1):
            return None, f"Graph cannot express BYMONTHDAY={monthday}"
        pattern.update(type="absoluteMonthly" if freq == "MONTHLY" else "absoluteYearly", dayOfMonth=day)
    elif freq in ("MONTHLY", "YEARLY") and byday:
        ordinals = {o for o, _ in byday}
        if len(byday) == 1 and not setpos and byday[0][0] in INDEX_NAMES:
            index = byday[0][0]
        elif ordinals == {None} and setpos and int(setpos) in INDEX_NAMES:
            index = int(setpos)
        else:
            spelled = ",".join(f"{o or ''}{d}" for o, d in byday)
            return None, f"Graph cannot express BYDAY={spelled}" + (f" with BYSETPOS={setpos}" if setpos else "")
        pattern.update(type="relativeMonthly" if freq == "MONTHLY" else "relativeYearly",
                       daysOfWeek=[NAMES[d] for _, d in byday], index=INDEX_NAMES[index])
    else:
        return None, f"Graph has no {freq.lower()} rule like this"
    if freq == "YEARLY":
        pattern["month"] = int(month) if month else start_local.month
    elif month:
        return None, "BYMONTH outside a yearly rule"
    rng: dict[str, Any] = {"startDate": start_local.isoformat(), "recurrenceTimeZone": windows_name(tz or "UTC")
                           or tz or "UTC"}
    if "COUNT" in parts:
        rng.update(type="numbered", numberOfOccurrences=int(parts.pop("COUNT")))
    elif "UNTIL" in parts:
        until = parts.pop("UNTIL")
        if len(until) != 8:
            return None, "Graph keeps only the last date of a series (UNTIL with a time)"
        rng.update(type="endDate", endDate=f"{until[:4]}-{until[4:6]}-{until[6:]}")
    else:
        rng["type"] = "noEnd"
    if parts:
        return None, f"Graph cannot express {', '.join(sorted(parts))}"
    return {"pattern": pattern, "range": rng}, ""


def _when(value: dict[str, Any] | None, what: str, all_day: bool) -> str:
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise InvalidItem(f"event without {what}")
    tz = check_zone(value.get("timeZone") or "UTC")
    try:
        local = datetime.fromisoformat(value["dateTime"].split(".")[0])
    except ValueError as exc:
        raise InvalidItem(f"malformed {what} {value['dateTime']!r}") from exc
    if all_day:
        return local.date().isoformat()
    return fmt_instant(local.replace(tzinfo=zone(tz)).astimezone(UTC))


def when_instant(value: dict[str, Any]) -> str:
    """A Graph dateTimeTimeZone as a canonical UTC instant."""
    return _when(value, "time", False)


def event_to_content(event: dict[str, Any]) -> dict[str, Any]:
    """Graph answers in UTC by default; the zone the event was made in is `originalStartTimeZone`."""
    all_day = bool(event.get("isAllDay"))
    start = _when(event.get("start"), "start", all_day)
    end = _when(event.get("end"), "end", all_day)
    tz = check_zone(event.get("originalStartTimeZone") or (event.get("start") or {}).get("timeZone") or "UTC")
    if to_datetime(end, tz) < to_datetime(start, tz):
        raise InvalidItem("event ends before it starts")
    body = event.get("body") or {}
    rrule = recurrence_to_rrule(event["recurrence"]) if event.get("recurrence") else None
    return make_content(
        title=(event.get("subject") or "").strip(),
        description=str(body.get("content") or "").replace("\r\n", "\n").rstrip()
        if (body.get("contentType") or "text") == "text" else "",
        start=start, end=end, timezone=None if all_day else tz, all_day=all_day, rrule=rrule,
        attendees=read_attendees(event),
        organizer=read_organizer(event),
        show_as=SHOW_AS.get(event.get("showAs") or "busy", "busy"),
    )


def read_attendees(event: dict[str, Any]) -> list[dict[str, Any]]:
    """attendees[]: required, optional and resource entries (a resource is not optional), with their answers."""
    return [{"email": (a.get("emailAddress") or {}).get("address") or "",
             "name": (a.get("emailAddress") or {}).get("name") or "",
             "status": RESPONSES.get((a.get("status") or {}).get("response") or "none", "needs_action"),
             "optional": a.get("type") == "optional"}
            for a in event.get("attendees") or [] if isinstance(a, dict)]


def read_organizer(event: dict[str, Any]) -> dict[str, str] | None:
    address = (event.get("organizer") or {}).get("emailAddress") or {}
    return {"email": address.get("address") or "", "name": address.get("name") or ""} if address else None


def write_attendees(content: dict[str, Any], held: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """attendees[] to write: address, name and type. The answer (`status`) is never sent: only the attendee
    sets it. What the content does not know of an attendee the event already has (`held`: the event as Graph
    has it now) is kept as it is there, a resource stays a resource."""
    have = {((a.get("emailAddress") or {}).get("address") or "").lower(): a
            for a in (held or {}).get("attendees") or [] if isinstance(a, dict)}
    out = []
    for email, details in (content.get("attendees") or {}).items():
        known = have.get(email) or {}
        name = details.get("name") or (known.get("emailAddress") or {}).get("name") or ""
        kind = known.get("type") or "required"
        if "optional" in details:
            kind = "optional" if details["optional"] else ("resource" if kind == "resource" else "required")
        address = {"address": email, "name": name} if name else {"address": email}
        out.append({"emailAddress": address, "type": kind})
    return out


def content_to_event(content: dict[str, Any], held: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Body for POST/PATCH /events, and what Graph could not keep; `held` is the event as Graph has it now. The
    organizer is never written (Graph sets it)."""
    notes: list[str] = []
    tz = content.get("timezone") or "UTC"
    graph_tz = windows_name(tz) or tz

    def when(value: str) -> dict[str, str]:
        if is_date(value):
            return {"dateTime": f"{value}T00:00:00", "timeZone": graph_tz}
        return {"dateTime": to_datetime(value).astimezone(zone(tz)).strftime("%Y-%m-%dT%H:%M:%S"),
                "timeZone": graph_tz}

    event: dict[str, Any] = {
        "subject": content.get("title") or "",
        "body": {"contentType": "text", "content": content.get("description") or ""},
        "start": when(content["start"]), "end": when(content["end"]), "isAllDay": bool(content.get("all_day")),
        "showAs": SHOW_AS_OUT.get(content.get("show_as") or "busy", "busy"),
        "attendees": write_attendees(content, held),
    }
    if content.get("show_as") == "focus":
        notes.append("focus time is shown as busy in Microsoft 365")
    if content.get("rrule"):
        start_local = date.fromisoformat(content["start"]) if is_date(content["start"]) else \
            to_datetime(content["start"]).astimezone(zone(tz)).date()
        rec, why = rrule_to_recurrence(content["rrule"], start_local, tz)
        if rec is None:
            notes.append(f"recurrence not kept in Microsoft 365 ({why}): only the first occurrence is written")
        else:
            event["recurrence"] = rec
    if content.get("rdates"):
        notes.append("extra dates (RDATE) have no place in Microsoft 365")
    return event, notes


def event_item_parts(event: dict[str, Any], rules: MappingRules) -> tuple[dict[str, Any], str | None, bool]:
    """Content of a Graph-shaped event with the join block taken out of its body, the Zoom meeting it points
    at, and whether it asks for one: (content, peer_ref, wants_peer)."""
    content = event_to_content(event)
    body = str((event.get("body") or {}).get("content") or "")
    content["description"] = split_description(body, rules)
    location = ((event.get("location") or {}).get("displayName")) or ""
    content["join"], peer_ref, wants_peer = join_in_body(body, location, rules)
    return content, peer_ref, wants_peer


def event_write_body(content: dict[str, Any], rules: MappingRules,
                     held: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The Graph-shaped event to write for content, join block in the body and join URL as the location."""
    event, notes = content_to_event(content, held)
    event["body"]["content"] = append_description(content.get("description") or "", content.get("join"), rules)
    if content.get("join"):
        event["location"] = {"displayName": content["join"].get("join_url", "")}
    return event, notes


def exception_override(content: dict[str, Any], rid: str, start: dict[str, Any], end: dict[str, Any],
                       subject: str | None) -> dict[str, Any] | None:
    """The override of a modified occurrence, or None when it is back on the series' own time and title."""
    if is_date(rid):     # an all-day occurrence moves by days
        override = {"start": str(start.get("dateTime") or "")[:10], "end": str(end.get("dateTime") or "")[:10]}
    else:
        override = {"start": when_instant(start), "end": when_instant(end)}
    if subject is not None and subject != content["title"]:
        override["title"] = subject
    if set(override) == {"start", "end"} and override["start"] == rid and \
            override["end"] == plain_end(rid, content["start"], content["end"], content.get("timezone")):
        return None
    return override
