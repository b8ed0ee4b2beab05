"""Join info and the "make this a Zoom meeting" marker, as every calendar format writes and reads them.

The join block zoomcal writes under a calendar event's description starts with the rules' join_header line;
everything from that line on is ours and is stripped when reading the user's description back.
"""

from __future__ import annotations

from typing import Any

from zoomcal.mapping.rules import MappingRules
from zoomcal.mapping.zoom import join_url_meeting_id


def append_description(description: str, join: dict[str, Any] | None, rules: MappingRules) -> str:
    block = join_block(join, rules)
    if not block:
        return description
    return f"{description}\n\n{block}" if description else block


def split_description(text: str | None, rules: MappingRules) -> str:
    body = str(text or "").replace("\r\n", "\n")
    at = body.find(rules.calendar.join_header)
    if at >= 0:
        body = body[:at]
    return body.rstrip()


def join_block(join: dict[str, Any] | None, rules: MappingRules) -> str:
    if not join:
        return ""
    lines = [rules.calendar.join_header, f"Join: {join.get('join_url', '')}", f"Meeting ID: {join.get('meeting_id')}"]
    if join.get("passcode"):
        lines.append(f"Passcode: {join['passcode']}")
    return "\n".join(lines)


def wants_meeting(location: str | None, description: str | None, rules: MappingRules) -> bool:
    """Did the user mark this event for Zoom (location word or description tag, per the rules)?"""
    where = (location or "").strip().lower()
    if where and where in {w.lower() for w in rules.marker.location_equals}:
        return True
    text = (description or "").lower()
    return any(tag.lower() in text for tag in rules.marker.description_contains)


def referenced_meeting(ours: str | None, location: str | None, description: str | None) -> str | None:
    """The Zoom meeting an event points at: our own property, or a join URL in location/description."""
    return ours or join_url_meeting_id(location) or join_url_meeting_id(description)


def parse_join_block(text: str | None, rules: MappingRules) -> dict[str, str] | None:
    """Read back the join block zoomcal wrote (for calendars with no place for private properties)."""
    body = str(text or "").replace("\r\n", "\n")
    at = body.find(rules.calendar.join_header)
    if at < 0:
        return None
    fields = {}
    for line in body[at:].splitlines()[1:]:
        name, sep, value = line.partition(": ")
        if sep:
            fields[name.strip()] = value.strip()
    if "Meeting ID" not in fields:
        return None
    return {"meeting_id": fields["Meeting ID"], "join_url": fields.get("Join", ""),
            "passcode": fields.get("Passcode", "")}


def join_in_body(body: str, location: str, rules: MappingRules) -> tuple[dict[str, str] | None, str | None, bool]:
    """For a calendar that keeps join info only in the text: (join info from the join block, the Zoom meeting
    the event points at, whether it asks for a meeting)."""
    join = parse_join_block(body, rules)
    return join, referenced_meeting((join or {}).get("meeting_id"), location, body), \
        wants_meeting(location, body, rules)
