"""iCalendar (RFC 5545) ⇄ canonical content. Pure functions, no I/O; used by ICS feeds (and CalDAV).

A feed is split into VEVENT blocks before parsing, so one broken event is rejected alone. A series is the
master VEVENT plus the VEVENTs that carry its UID and a RECURRENCE-ID.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import icalendar

from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import join_rrule_parts, normalize_rrule, parse_rrule_parts
from zoomcal.domain.timeutil import (
    UTC,
    check_zone,
    fmt_instant,
    iana_equivalent,
    is_date,
    parse_ical_stamp,
    to_datetime,
    zone,
)
from zoomcal.errors import InvalidItem
from zoomcal.mapping.joininfo import append_description, split_description
from zoomcal.mapping.rules import DEFAULT_RULES, MappingRules

MAX_TEXT = 8192
MARKER = "X-ZOOMCAL-EVENT"
JOIN_PROPS = {"meeting_id": "X-ZOOMCAL-MEETING-ID", "join_url": "X-ZOOMCAL-JOIN-URL", "passcode": "X-ZOOMCAL-PASSCODE"}
UID_LINE = re.compile(r"^UID[;:](.*)$", re.M | re.I)
RID_LINE = re.compile(r"^RECURRENCE-ID[;:].*$", re.M | re.I)
PARTSTAT = {"NEEDS-ACTION": "needs_action", "ACCEPTED": "accepted", "TENTATIVE": "tentative", "DECLINED": "declined",
            "DELEGATED": "declined"}   # delegated: this attendee passed the invitation on and will not come
PARTSTAT_OUT = {"needs_action": "NEEDS-ACTION", "accepted": "ACCEPTED", "tentative": "TENTATIVE",
                "declined": "DECLINED"}
OPTIONAL_ROLES = ("OPT-PARTICIPANT", "NON-PARTICIPANT")


def unfold(text: str) -> str:
    return re.sub(r"\r?\n[ \t]", "", text)


def split_events(data: str) -> tuple[list[dict[str, str]], str | None]:
    """Raw VEVENT blocks: [{"uid", "rid", "ics"}], and the calendar's X-WR-TIMEZONE if any. A TZID that names a
    zone only the file defines (a VTIMEZONE under an exporter's own name) is replaced in the blocks by the IANA
    zone that keeps the same clock, since each block is read without the file's definitions."""
    text = unfold(data)
    if "BEGIN:VCALENDAR" not in text.upper():
        raise InvalidItem("not an iCalendar file (no BEGIN:VCALENDAR)")
    for custom, iana in _custom_zones(text).items():
        text = re.sub(rf"(;TZID=)\"?{re.escape(custom)}\"?([;:])", lambda m, iana=iana: m.group(1) + iana + m.group(2),
                      text, flags=re.I)
    found = re.search(r"^X-WR-TIMEZONE:(.+?)\r?$", text, re.M | re.I)
    blocks = []
    for n, found_block in enumerate(_blocks(text, "VEVENT")):
        block = found_block.replace("\r\n", "\n")
        uid = UID_LINE.search(block)
        rid = RID_LINE.search(block)
        blocks.append({"uid": uid.group(1).split(":", 1)[-1].strip() if uid else f"(no UID #{n})",
                       "rid": rid.group(0).strip() if rid else "", "ics": block})
    return blocks, found.group(1).strip() if found else None


MAX_CUSTOM_ZONES = 20          # zones a file may define under its own names that are looked for an IANA twin


def _blocks(text: str, name: str) -> list[str]:
    """The `BEGIN:name` ... `END:name` blocks, in one pass over the lines (a block never ended costs nothing)."""
    begin, end = f"BEGIN:{name}", f"END:{name}"
    blocks, start, pos = [], None, 0
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n").upper()
        if bare == begin and start is None:
            start = pos
        elif bare == end and start is not None:
            blocks.append(text[start:pos + len(line.rstrip("\n"))])
            start = None
        pos += len(line)
    return blocks


TZID_LINE = re.compile(r"^TZID(?:;[^:\r\n]*)?:(.*?)\r?$", re.M | re.I)


def _custom_zones(text: str) -> dict[str, str]:
    """TZIDs the file defines that are neither IANA nor Windows names -> the IANA zone with the same clock."""
    found, tried = {}, 0
    for definition in _blocks(text, "VTIMEZONE"):
        tzid_line = TZID_LINE.search(definition)
        tzid = tzid_line.group(1).strip().replace("\\,", ",").replace("\\;", ";") if tzid_line else ""
        if not tzid or len(tzid) > 200:
            continue
        try:
            check_zone(tzid)
            continue                                    # a name zoomcal knows already
        except InvalidItem:
            pass
        tried += 1
        if tried > MAX_CUSTOM_ZONES:
            break                                       # the rest stay unknown zones (their events are rejected)
        equivalent = _equivalent(definition, tzid)
        if equivalent:
            found[tzid] = equivalent
    return found


@lru_cache(maxsize=256)
def _equivalent(definition: str, tzid: str) -> str | None:
    try:
        vtz = icalendar.Timezone.from_ical(definition.replace("\r\n", "\n").replace("\n", "\r\n")).to_tz()
    except Exception:   # noqa: BLE001 — a definition that does not parse defines nothing
        return None
    return iana_equivalent(lambda at: at.astimezone(vtz).utcoffset(), tzid.replace("\\,", ","))


def _component(block: str) -> icalendar.Event:
    try:
        event = icalendar.Event.from_ical(block.replace("\n", "\r\n"))
    except Exception as exc:   # noqa: BLE001 — whatever the parser trips on (a zone lookup's OSError...) is this item's
        reason = "a TZID that names no time zone" if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        raise InvalidItem(f"malformed VEVENT: {reason[:200]}") from exc
    if not isinstance(event, icalendar.Event) or event.name != "VEVENT":
        raise InvalidItem("malformed VEVENT")
    return event


def parsed(block: dict[str, Any]) -> icalendar.Event:
    """The block's VEVENT, parsed once while one item is read (its content, then what decides pairing). For
    reading only: a writer takes its own copy (`held_master`)."""
    return _parsed(block["ics"])


@lru_cache(maxsize=16)
def _parsed(text: str) -> icalendar.Event:
    return _component(text)


def _when(comp: icalendar.Event, name: str, default_tz: str | None) -> tuple[str, str | None] | None:
    prop = comp.get(name)
    if prop is None:
        return None
    raw = prop.to_ical().decode() if hasattr(prop, "to_ical") else str(prop)
    params = getattr(prop, "params", {})
    tzid = params.get("TZID")
    value_type = str(params.get("VALUE", "")).upper()
    raw = raw.split(",")[0].strip()
    if value_type == "DATE" or len(raw) == 8:
        return parse_ical_stamp(raw, None, True, name), None
    tz = check_zone(str(tzid)) if tzid else (None if raw.endswith("Z") else default_tz)   # floating: calendar's
    return parse_ical_stamp(raw, tz, what=name), tz


def _dates(comp: icalendar.Event, name: str, tz: str | None) -> list[str]:
    out = []
    props = comp.get(name)
    if props is None:
        return out
    for prop in props if isinstance(props, list) else [props]:
        params = getattr(prop, "params", {})
        line_tz = check_zone(str(params["TZID"])) if params.get("TZID") else tz
        for stamp in prop.to_ical().decode().split(","):
            out.append(parse_ical_stamp(stamp.strip(), line_tz, what=f"{name} value"))
    return out


def _text(comp: icalendar.Event, name: str) -> str:
    value = str(comp.get(name, "") or "")
    if len(value) > MAX_TEXT:
        raise InvalidItem(f"{name} longer than {MAX_TEXT} characters")
    return value.replace("\r\n", "\n").strip()


def _show_as(comp: icalendar.Event, rules: MappingRules) -> str:
    table = rules.availability.ical
    busy = str(comp.get("X-MICROSOFT-CDO-BUSYSTATUS", "")).upper()
    if busy == "OOF":
        return table.oof
    if busy in ("FREE", "WORKINGELSEWHERE"):
        return table.free if busy == "FREE" else table.working_elsewhere
    if str(comp.get("TRANSP", "")).upper() == "TRANSPARENT":
        return table.transparent
    if str(comp.get("STATUS", "")).upper() == "TENTATIVE":
        return table.tentative
    return "busy"


def _span(comp: icalendar.Event, default_tz: str | None) -> tuple[str, str, str | None]:
    start = _when(comp, "DTSTART", default_tz)
    if start is None:
        raise InvalidItem("VEVENT without DTSTART")
    begin, tz = start
    end = _when(comp, "DTEND", tz or default_tz)
    if end is not None:
        finish = end[0]
    elif comp.get("DURATION") is not None:
        try:
            length = comp.decoded("DURATION")
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidItem("malformed DURATION") from exc
        if not isinstance(length, timedelta) or length < timedelta(0):
            raise InvalidItem(f"malformed DURATION {str(comp.get('DURATION'))[:60]!r}")
        if is_date(begin):
            finish = (date.fromisoformat(begin) + timedelta(days=max(1, length.days))).isoformat()
        else:
            finish = fmt_instant(to_datetime(begin) + length)
    else:
        finish = (date.fromisoformat(begin) + timedelta(days=1)).isoformat() if is_date(begin) else begin
    if is_date(begin) != is_date(finish):
        raise InvalidItem("DTSTART and DTEND mix a date with a date-time")
    if to_datetime(finish, tz) < to_datetime(begin, tz):
        raise InvalidItem("event ends before it starts")
    return begin, finish, tz


def _rrule(comp: icalendar.Event, tz: str | None) -> str | None:
    prop = comp.get("RRULE")
    if prop is None:
        return None
    if isinstance(prop, list):
        raise InvalidItem("more than one RRULE")
    parts = parse_rrule_parts(prop.to_ical().decode())
    until = parts.get("UNTIL")
    if until and len(until) == 15:   # a local UNTIL (common in exports): read it in the event's zone
        local = datetime.strptime(until, "%Y%m%dT%H%M%S").replace(tzinfo=zone(tz))
        parts["UNTIL"] = local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return normalize_rrule(join_rrule_parts(parts))


def series_to_content(blocks: list[dict[str, str]], rules: MappingRules, default_tz: str | None = None) -> dict:
    """Canonical content of one UID (a master and its RECURRENCE-ID instances)."""
    masters = [b for b in blocks if not b["rid"]]
    if not masters:
        raise InvalidItem("recurrence instances without their series (no master VEVENT)")
    master = parsed(masters[0])
    if str(master.get("STATUS", "")).upper() == "CANCELLED":
        return {}
    start, end, tz = _span(master, default_tz)
    title, description = _text(master, "SUMMARY"), split_description(_text(master, "DESCRIPTION"), rules)
    join = None
    if master.get(JOIN_PROPS["meeting_id"]) is not None:
        join = {key: str(master.get(prop, "") or "") for key, prop in JOIN_PROPS.items()}
    rrule = _rrule(master, tz)
    exdates, rdates = _dates(master, "EXDATE", tz), _dates(master, "RDATE", tz)
    overrides: dict[str, dict[str, Any]] = {}
    for block in blocks:
        if not block["rid"]:
            continue
        comp = parsed(block)
        rid, _ = _when(comp, "RECURRENCE-ID", tz) or (None, None)
        if rid is None:
            raise InvalidItem("malformed RECURRENCE-ID")
        if str(comp.get("STATUS", "")).upper() == "CANCELLED":
            exdates.append(rid)
            continue
        o_start, o_end, _ = _span(comp, tz)
        override: dict[str, Any] = {"start": o_start, "end": o_end}
        if comp.get("SUMMARY") is not None and _text(comp, "SUMMARY") != title:
            override["title"] = _text(comp, "SUMMARY")
        o_description = split_description(_text(comp, "DESCRIPTION"), rules)
        if comp.get("DESCRIPTION") is not None and o_description != description:
            override["description"] = o_description
        overrides[rid] = override
    return make_content(
        title=title, description=description, start=start, end=end, timezone=None if is_date(start) else tz,
        all_day=is_date(start), rrule=rrule, exdates=exdates, rdates=rdates,
        overrides={k: v for k, v in overrides.items() if k not in set(exdates)},
        attendees=[a for a in map(_address, _attendee_props(master)) if a],
        organizer=_address(master.get("ORGANIZER")),
        show_as=_show_as(master, rules),
        join=join,
    )


def _attendee_props(comp: icalendar.Event) -> list[Any]:
    props = comp.get("ATTENDEE") or []
    return props if isinstance(props, list) else [props]


def _email(prop: Any) -> str:
    value = str(prop)
    return value.split(":", 1)[-1].strip().lower() if value.lower().startswith("mailto:") else ""


def _address(prop: Any) -> dict[str, Any] | None:
    """An ATTENDEE (e-mail, CN, PARTSTAT, ROLE) or ORGANIZER (e-mail, CN) with a mailto: address, else None."""
    email = _email(prop) if prop is not None else ""
    if not email:
        return None
    params = getattr(prop, "params", {})
    return {"email": email, "name": str(params.get("CN") or ""),
            "status": PARTSTAT.get(str(params.get("PARTSTAT") or "NEEDS-ACTION").upper(), "needs_action"),
            "optional": str(params.get("ROLE") or "").upper() in OPTIONAL_ROLES}


def _write_attendee(email: str, details: dict[str, Any], held: Any) -> icalendar.vCalAddress:
    """ATTENDEE for one attendee: the parameters the event already has for it (CUTYPE, RSVP, a DELEGATED answer...)
    are kept; a name, answer or role the content knows replaces what means something else."""
    prop = icalendar.vCalAddress(f"mailto:{email}")
    if held is not None:
        prop.params.update(held.params)
    was = _address(held) or {}
    if details.get("name") and details["name"] != was.get("name"):
        prop.params["CN"] = details["name"]
    if "status" in details and details["status"] != was.get("status", "needs_action"):
        prop.params["PARTSTAT"] = PARTSTAT_OUT[details["status"]]
    if "optional" in details and details["optional"] != was.get("optional", False):
        prop.params["ROLE"] = "OPT-PARTICIPANT" if details["optional"] else "REQ-PARTICIPANT"
    return prop


def held_master(ics: str) -> icalendar.Event | None:
    """The master VEVENT of a resource as the server has it now (what a rewrite keeps of it)."""
    masters = [b for b in split_events(ics)[0] if not b["rid"]]
    return _component(masters[0]["ics"]) if masters else None


def master_meta(blocks: list[dict[str, str]]) -> dict[str, str | None]:
    """What decides pairing: location and description as written, our marker, a referenced meeting id."""
    masters = [b for b in blocks if not b["rid"]]
    if not masters:
        return {"location": None, "description": None, "marker": None, "meeting_id": None}
    comp = parsed(masters[0])
    meeting = comp.get(JOIN_PROPS["meeting_id"])
    return {"location": str(comp.get("LOCATION", "") or ""), "description": str(comp.get("DESCRIPTION", "") or ""),
            "marker": str(comp.get(MARKER)) if comp.get(MARKER) is not None else None,
            "meeting_id": str(meeting) if meeting is not None else None}


def marker_of(blocks: list[dict[str, str]]) -> str | None:
    for block in blocks:
        found = re.search(rf"^{MARKER}:(.+?)$", block["ics"], re.M | re.I)
        if found:
            return found.group(1).strip()
    return None


# --- content -> iCalendar ------------------------------------------------------------------------------------

def _set_when(comp: icalendar.Event, name: str, value: str, tz: str | None) -> None:
    if is_date(value):
        comp.add(name, date.fromisoformat(value))
    elif tz:
        comp.add(name, to_datetime(value).astimezone(zone(tz)))
    else:
        comp.add(name, to_datetime(value))


def content_to_calendar(items: dict[str, dict[str, Any]], marker: bool = True,
                        rules: MappingRules = DEFAULT_RULES, held: dict[str, icalendar.Event] | None = None) -> bytes:
    """A VCALENDAR with every item (uid -> content), its overrides as RECURRENCE-ID instances, and a
    VTIMEZONE for each zone used. `held` (uid -> the master VEVENT the server has now) keeps what the content
    does not say of attendees, and the ORGANIZER: zoomcal never writes one of its own."""
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//zoomcal//EN")
    cal.add("VERSION", "2.0")
    zones: set[str] = set()
    for uid, content in items.items():
        tz = content.get("timezone") if not content.get("all_day") else None
        if tz:
            zones.add(tz)
        for comp in _components(uid, content, tz, marker, rules, (held or {}).get(uid)):
            cal.add_component(comp)
    for tz in sorted(zones):
        try:
            cal.add_component(icalendar.Timezone.from_tzid(tz))
        except (AttributeError, ValueError):
            pass   # older icalendar: readers resolve the TZID by name
    return cal.to_ical()


def _components(uid: str, content: dict[str, Any], tz: str | None, marker: bool,
                rules: MappingRules, held: icalendar.Event | None = None) -> list[icalendar.Event]:
    join = content.get("join")
    master = icalendar.Event()
    master.add("UID", uid)
    master.add("DTSTAMP", datetime(2026, 1, 1, tzinfo=UTC))
    master.add("SUMMARY", content.get("title") or "")
    description = append_description(content.get("description") or "", join, rules)
    if description:
        master.add("DESCRIPTION", description)
    if join:
        master.add("LOCATION", join.get("join_url", ""))
        for key, prop in JOIN_PROPS.items():
            master.add(prop, str(join.get(key) or ""))
    _set_when(master, "DTSTART", content["start"], tz)
    _set_when(master, "DTEND", content["end"], tz)
    if content.get("show_as") == "free":
        master.add("TRANSP", "TRANSPARENT")
    if content.get("rrule"):
        master.add("RRULE", icalendar.vRecur.from_ical(content["rrule"]))
    for name, values in (("EXDATE", content.get("exdates")), ("RDATE", content.get("rdates"))):
        for value in values or []:
            prop = date.fromisoformat(value) if is_date(value) else (
                to_datetime(value).astimezone(zone(tz)) if tz else to_datetime(value))
            master.add(name, prop)
    if held is not None and held.get("ORGANIZER") is not None:
        master.add("ORGANIZER", held["ORGANIZER"])
    have = {_email(a): a for a in _attendee_props(held)} if held is not None else {}
    for email, details in (content.get("attendees") or {}).items():
        master.add("ATTENDEE", _write_attendee(email, details, have.get(email)))
    if marker:
        master.add(MARKER, uid)
    out = [master]
    for rid, override in (content.get("overrides") or {}).items():
        inst = icalendar.Event()
        inst.add("UID", uid)
        inst.add("DTSTAMP", datetime(2026, 1, 1, tzinfo=UTC))
        _set_when(inst, "RECURRENCE-ID", rid, tz)
        _set_when(inst, "DTSTART", override["start"], tz)
        _set_when(inst, "DTEND", override["end"], tz)
        inst.add("SUMMARY", override.get("title", content.get("title") or ""))
        description = append_description(override.get("description", content.get("description") or ""), join, rules)
        if description:
            inst.add("DESCRIPTION", description)
        out.append(inst)
    return out
