"""iTIP (RFC 5546) messages for e-mail invitations: a REQUEST (new or changed event), a CANCEL (the event, or one
attendee's place in it), and the REPLY an attendee's client sends back. Pure: canonical content in, iCalendar
bytes out, and back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import icalendar

from zoomcal.domain.timeutil import fmt_instant
from zoomcal.errors import InvalidItem
from zoomcal.mapping.ical import MARKER, content_to_calendar
from zoomcal.mapping.rules import MappingRules

PARTSTATS = {"NEEDS-ACTION": "needs_action", "ACCEPTED": "accepted", "TENTATIVE": "tentative",
             "DECLINED": "declined", "DELEGATED": "needs_action"}
MAX_REPLY = 256 * 1024


def _address(email: str, name: str = "", **params: str) -> icalendar.vCalAddress:
    address = icalendar.vCalAddress(f"mailto:{email}")
    if name:
        address.params["CN"] = name
    for key, value in params.items():
        address.params[key] = value
    return address


def message(method: str, uid: str, content: dict, organizer: str, attendees: list[str], sequence: int,
            stamp: datetime, rules: MappingRules, organizer_name: str = "") -> bytes:
    """A METHOD:REQUEST or METHOD:CANCEL calendar for `attendees` (a CANCEL of the whole event names them all,
    an attendee taken off gets one naming only them), at `sequence`."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(method)
    cal = icalendar.Calendar.from_ical(content_to_calendar({uid: {**content, "attendees": {}}}, marker=False,
                                                           rules=rules))
    cal["METHOD"] = method
    answers = content.get("attendees") or {}
    for comp in cal.walk("VEVENT"):
        for name in [k for k in comp if k.upper().startswith(MARKER.rsplit("-", 1)[0])]:
            comp.pop(name)      # zoomcal's own bookkeeping properties stay out of what others receive
        comp["DTSTAMP"] = icalendar.vDDDTypes(stamp)
        comp["SEQUENCE"] = sequence
        comp["ORGANIZER"] = _address(organizer, organizer_name)
        for email in attendees:
            name = (answers.get(email) or {}).get("name") or ""
            comp.add("ATTENDEE", _address(email, name, ROLE="REQ-PARTICIPANT", PARTSTAT="NEEDS-ACTION",
                                          RSVP="TRUE" if method == "REQUEST" else "FALSE"))
        if method == "CANCEL":
            comp["STATUS"] = "CANCELLED"
    return cal.to_ical()


@dataclass(frozen=True)
class Reply:
    uid: str
    attendee: str
    status: str              # needs_action | accepted | tentative | declined
    sequence: int
    recurrence_id: str | None = None


def parse_reply(data: bytes | str) -> Reply:
    """The answer in an attendee's METHOD:REPLY; InvalidItem when it is not one (or names no single attendee)."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_REPLY:
        raise InvalidItem(f"a reply larger than {MAX_REPLY // 1024} KiB")
    try:
        cal = icalendar.Calendar.from_ical(data)
    except (ValueError, KeyError, IndexError) as exc:
        raise InvalidItem(f"not an iCalendar object: {exc}") from exc
    if str(cal.get("METHOD", "")).upper() != "REPLY":
        raise InvalidItem(f"not an iTIP REPLY (METHOD is {str(cal.get('METHOD', '')) or 'missing'})")
    events = list(cal.walk("VEVENT"))
    if not events:
        raise InvalidItem("the reply holds no VEVENT")
    comp = events[0]
    uid = str(comp.get("UID", "")).strip()
    attendees = comp.get("ATTENDEE")
    attendees = attendees if isinstance(attendees, list) else [attendees] if attendees is not None else []
    if not uid or len(attendees) != 1:
        raise InvalidItem("a reply names its UID and exactly one ATTENDEE")
    attendee = attendees[0]
    email = str(attendee).split(":", 1)[-1].strip().lower()
    if "@" not in email:
        raise InvalidItem(f"the attendee {str(attendee)[:80]!r} is not an e-mail address")
    partstat = str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
    if partstat not in PARTSTATS:
        raise InvalidItem(f"unknown PARTSTAT {partstat[:40]!r}")
    try:
        sequence = int(comp.get("SEQUENCE", 0))
    except (TypeError, ValueError) as exc:
        raise InvalidItem("SEQUENCE is not a number") from exc
    return Reply(uid, email, PARTSTATS[partstat], sequence, _occurrence(comp.get("RECURRENCE-ID")))


def _occurrence(rid: Any) -> str | None:
    """RECURRENCE-ID as zoomcal names occurrences: a date, or the instant in UTC (its TZID applied); a floating
    time is kept as written."""
    if rid is None:
        return None
    value = getattr(rid, "dt", None)
    if isinstance(value, datetime):
        return fmt_instant(value) if value.tzinfo is not None else value.replace(microsecond=0).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise InvalidItem("RECURRENCE-ID is not a date or a time")
