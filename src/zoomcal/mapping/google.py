"""Google Calendar event JSON (calendar.v3.json shapes) ⇄ canonical content. Pure functions, no I/O.

A recurring series is one master event plus exception instances (`recurringEventId`,
`originalStartTime`); cancelled occurrences are cancelled exceptions or EXDATE lines.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import normalize_rrule, occurrence_starts, plain_end
from zoomcal.domain.timeutil import (
    check_zone,
    fmt_instant,
    is_date,
    parse_date,
    parse_ical_stamp,
    parse_local,
    to_datetime,
    zone,
)
from zoomcal.errors import InvalidItem
from zoomcal.mapping.joininfo import append_description, split_description, wants_meeting
from zoomcal.mapping.joininfo import referenced_meeting as joininfo_reference
from zoomcal.mapping.rules import MappingRules

PRIVATE_EVENT = "zoomcal_event"
PRIVATE_MEETING = "zoomcal_meeting_id"
PRIVATE_JOIN_URL = "zoomcal_join_url"
PRIVATE_PASSCODE = "zoomcal_passcode"
MAX_TEXT = 8192
RESPONSES = {"needsAction": "needs_action", "accepted": "accepted", "tentative": "tentative", "declined": "declined"}
# what an attendee entry may carry in a write (`self`, `organizer` and the profile `id` are the calendar's to say)
ATTENDEE_WRITABLE = ("email", "displayName", "optional", "responseStatus", "comment", "additionalGuests", "resource")
B32HEX = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "abcdefghijklmnopqrstuv0123456789")


def event_id_for(key: str) -> str:
    """A client-chosen Google event id (base32hex, 5–1024 chars) derived from our idempotency key."""
    digest = hashlib.blake2b(key.encode(), digest_size=20).digest()
    return base64.b32encode(digest).decode().translate(B32HEX).rstrip("=")


def instance_id(master_id: str, rid: str) -> str:
    if is_date(rid):
        return f"{master_id}_{rid.replace('-', '')}"
    return f"{master_id}_{to_datetime(rid).strftime('%Y%m%dT%H%M%SZ')}"


def _when(value: dict[str, Any] | None, what: str, default_tz: str | None) -> tuple[str, str | None]:
    if not isinstance(value, dict):
        raise InvalidItem(f"event without {what}")
    if value.get("date"):
        parse_date(value["date"])
        return value["date"], None
    if value.get("dateTime"):
        tz = check_zone(value.get("timeZone") or default_tz)
        return fmt_instant(parse_local(value["dateTime"], tz)), tz
    raise InvalidItem(f"event {what} has neither date nor dateTime")


def _recurrence_lines(lines: list[str], tz: str | None) -> tuple[str | None, list[str], list[str]]:
    rrule, exdates, rdates = None, [], []
    for line in lines or []:
        name, _, value = line.partition(":")
        head, *params = name.split(";")
        head = head.upper()
        line_tz = tz
        is_day = False
        for param in params:
            key, _, val = param.partition("=")
            if key.upper() == "TZID":
                line_tz = check_zone(val)
            if key.upper() == "VALUE" and val.upper() == "DATE":
                is_day = True
        if head == "RRULE":
            if rrule is not None:
                raise InvalidItem("more than one RRULE")
            rrule = normalize_rrule(value)
        elif head in ("EXDATE", "RDATE"):
            target = exdates if head == "EXDATE" else rdates
            for stamp in value.split(","):
                target.append(parse_ical_stamp(stamp.strip(), line_tz, is_day, "date in recurrence"))
        elif head == "EXRULE":
            raise InvalidItem("EXRULE is not supported")
    return rrule, exdates, rdates


def private_props(event: dict[str, Any]) -> dict[str, str]:
    return ((event.get("extendedProperties") or {}).get("private")) or {}


def series_to_content(master: dict[str, Any], exceptions: list[dict[str, Any]], rules: MappingRules) -> dict:
    """Canonical content of one event or recurring series."""
    for key in ("summary", "description", "location"):
        if len(str(master.get(key) or "")) > MAX_TEXT:
            raise InvalidItem(f"{key} longer than {MAX_TEXT} characters")
    start, tz = _when(master.get("start"), "start", None)
    end, end_tz = _when(master.get("end"), "end", tz)
    if is_date(start) != is_date(end):
        raise InvalidItem("start and end mix a date with a date-time")
    if to_datetime(end, tz) < to_datetime(start, tz):
        raise InvalidItem("event ends before it starts")
    rrule, exdates, rdates = _recurrence_lines(master.get("recurrence") or [], tz)
    props = private_props(master)
    join = None
    if props.get(PRIVATE_MEETING):
        join = {"meeting_id": props[PRIVATE_MEETING], "join_url": props.get(PRIVATE_JOIN_URL, ""),
                "passcode": props.get(PRIVATE_PASSCODE, "")}
    title = (master.get("summary") or "").strip()
    description = split_description(master.get("description"), rules)
    overrides: dict[str, dict[str, Any]] = {}
    valid_rids = _series_rids(start, end, tz, rrule, rdates) if exceptions else set()
    for exc in exceptions:
        original = exc.get("originalStartTime")
        rid, _ = _when(original, "originalStartTime", tz)
        if rid not in valid_rids:
            continue   # an exception of an older rule (the rule changed since): not part of this series
        if exc.get("status") == "cancelled":
            exdates.append(rid)
            continue
        o_start, _ = _when(exc.get("start"), "start", tz)
        o_end, _ = _when(exc.get("end"), "end", tz)
        override: dict[str, Any] = {"start": o_start, "end": o_end}
        # an exception carries the whole event; only what differs from the series is an override
        o_title = (exc.get("summary") or "").strip()
        if "summary" in exc and o_title != title:
            override["title"] = o_title
        o_description = split_description(exc.get("description"), rules)
        if "description" in exc and o_description != description:
            override["description"] = o_description
        if set(override) == {"start", "end"} and o_start == rid and o_end == plain_end(rid, start, end, tz):
            continue   # an exception identical to the plain occurrence (e.g. one that was put back)
        overrides[rid] = override
    return make_content(
        title=title,
        description=description,
        start=start,
        end=end,
        timezone=None if is_date(start) else tz,
        all_day=is_date(start),
        rrule=rrule,
        exdates=exdates,
        rdates=rdates,
        overrides={rid: ov for rid, ov in overrides.items() if rid not in set(exdates)},
        attendees=read_attendees(master),
        organizer=read_organizer(master),
        show_as=show_as(master, rules),
        join=join,
    )


def read_attendees(event: dict[str, Any]) -> list[dict[str, Any]]:
    """attendees[] (Google's and Zoom Calendar's shape) with every detail the calendar holds."""
    return [{"email": a.get("email", ""), "name": a.get("displayName") or "", "optional": bool(a.get("optional")),
             "status": RESPONSES.get(a.get("responseStatus") or "", "needs_action")}
            for a in event.get("attendees") or [] if isinstance(a, dict)]


def read_organizer(event: dict[str, Any]) -> dict[str, str] | None:
    organizer = event.get("organizer") or {}
    return {"email": organizer.get("email") or "", "name": organizer.get("displayName") or ""} if organizer else None


def write_attendees(content: dict[str, Any], held: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """attendees[] to write. An attendee the event already has is sent back as the calendar holds it (its answer
    included: zoomcal never sets someone else's responseStatus) with the name and optional flag the content
    knows; a new one gets its e-mail and what the content knows, and Google's default answer (needsAction)."""
    have = {(a.get("email") or "").lower(): a for a in held or [] if isinstance(a, dict)}
    out = []
    for email, details in (content.get("attendees") or {}).items():
        entry = {k: v for k, v in (have.get(email) or {"email": email}).items() if k in ATTENDEE_WRITABLE}
        if details.get("name"):
            entry["displayName"] = details["name"]
        if "optional" in details:
            entry["optional"] = bool(details["optional"])
        out.append(entry)
    return out


def attendees_key(attendees: list[dict[str, Any]] | None) -> list[tuple[str, str, bool]]:
    """What zoomcal writes of attendees[], to tell whether a PATCH must send them."""
    return sorted(((a.get("email") or "").lower(), a.get("displayName") or "", bool(a.get("optional")))
                  for a in attendees or [] if isinstance(a, dict))


def show_as(event: dict[str, Any], rules: MappingRules) -> str:
    """How the event counts for availability, per the rules' [availability.google] table."""
    table = rules.availability.google
    kind = event.get("eventType") or "default"
    if kind in ("outOfOffice", "focusTime", "workingLocation", "birthday"):
        return getattr(table, kind)
    me = next((a for a in event.get("attendees") or [] if isinstance(a, dict) and a.get("self")), None)
    if me is not None and me.get("responseStatus") == "declined":
        return table.declined
    if event.get("transparency") == "transparent":
        return table.transparent
    if me is not None and me.get("responseStatus") == "tentative":
        return table.tentative
    return "busy"


def _series_rids(start: str, end: str, tz: str | None, rrule: str | None, rdates: list[str]) -> set[str]:
    probe = make_content(start=start, end=end, timezone=tz, rrule=rrule, rdates=rdates)
    return set(occurrence_starts(probe))


def wants_zoom(master: dict[str, Any], rules: MappingRules) -> bool:
    return wants_meeting(master.get("location"), master.get("description"), rules)


def referenced_meeting(master: dict[str, Any]) -> str | None:
    return joininfo_reference(private_props(master).get(PRIVATE_MEETING), master.get("location"),
                              master.get("description"))


def _when_out(value: str, tz: str | None) -> dict[str, Any]:
    if is_date(value):
        return {"date": value}
    local = to_datetime(value).astimezone(zone(tz))
    return {"dateTime": local.isoformat(), "timeZone": tz or "UTC"}


def _stamp(value: str, tz: str | None) -> str:
    if is_date(value):
        return value.replace("-", "")
    return to_datetime(value).strftime("%Y%m%dT%H%M%SZ")


def content_to_event(content: dict[str, Any], rules: MappingRules, event_key: str | None,
                     held: dict[str, Any] | None = None) -> dict[str, Any]:
    """Body for events.insert / events.patch of the master (exceptions are written separately); `held` is the
    master as the calendar has it now. The organizer is never written (Google: read-only except on import)."""
    tz = content.get("timezone")
    join = content.get("join")
    description = append_description(content.get("description") or "", join, rules)
    body: dict[str, Any] = {
        "summary": content.get("title") or "",
        "description": description,
        "start": _when_out(content["start"], tz),
        "end": _when_out(content["end"], tz),
        "attendees": write_attendees(content, (held or {}).get("attendees")),
        "transparency": "transparent" if content.get("show_as") == "free" else "opaque",
    }
    private: dict[str, str] = {}
    if event_key:
        private[PRIVATE_EVENT] = event_key
    if join:
        body["location"] = join.get("join_url", "")
        private.update({PRIVATE_MEETING: str(join.get("meeting_id")), PRIVATE_JOIN_URL: join.get("join_url", ""),
                        PRIVATE_PASSCODE: join.get("passcode", "")})
    body["extendedProperties"] = {"private": private}
    lines = []
    if content.get("rrule"):
        lines.append("RRULE:" + content["rrule"])
    if content.get("rrule") or content.get("rdates"):
        if content.get("exdates"):
            lines.append(_date_line("EXDATE", content["exdates"], tz))
        if content.get("rdates"):
            lines.append(_date_line("RDATE", content["rdates"], tz))
    body["recurrence"] = lines
    return body


def _date_line(name: str, values: list[str], tz: str | None) -> str:
    if all(is_date(v) for v in values):
        return f"{name};VALUE=DATE:" + ",".join(_stamp(v, tz) for v in values)
    return f"{name}:" + ",".join(_stamp(v, tz) for v in values)


def override_to_instance(
    content: dict[str, Any], rid: str, override: dict[str, Any], rules: MappingRules
) -> dict[str, Any]:
    tz = content.get("timezone")
    description = append_description(override.get("description", content.get("description") or ""),
                                     content.get("join"), rules)
    return {
        "summary": override.get("title", content.get("title") or ""),
        "description": description,
        "start": _when_out(override["start"], tz),
        "end": _when_out(override["end"], tz),
        "originalStartTime": _when_out(rid, tz),
        "status": "confirmed",
    }
