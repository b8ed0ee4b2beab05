"""Ground-truth comparison of the sandboxes: do Zoom and the calendars agree, with no duplicates?

Reads the emulators' own state (not zoomcal's store), so it checks what a person would see.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zoomcal.mapping.google import PRIVATE_MEETING, private_props, series_to_content, wants_zoom
from zoomcal.mapping.rules import DEFAULT_RULES, MappingRules
from zoomcal.mapping.zoom import meeting_marker, meeting_to_content
from zoomcal.sandbox.world import SandboxWorld

COMPARED = ("title", "description", "start", "end", "rrule", "exdates")


@dataclass
class Agreement:
    zoom_meetings: int = 0
    calendar_events: int = 0
    mismatches: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def _series(events: dict[str, dict[str, Any]]) -> dict[str, tuple[dict, list[dict]]]:
    out: dict[str, tuple[dict, list[dict]]] = {}
    for event in events.values():
        if event.get("recurringEventId") or event.get("status") == "cancelled":
            continue
        exceptions = [e for e in events.values() if e.get("recurringEventId") == event["id"]]
        out[event["id"]] = (event, exceptions)
    return out


def compare_user(world: SandboxWorld, zoom_user_id: str, calendar_id: str,
                 rules: MappingRules = DEFAULT_RULES) -> Agreement:
    result = Agreement()
    meetings = {str(m["id"]): world.zoom.full_meeting(m["id"]) for m in world.zoom.user_meetings(zoom_user_id)}
    series = _series(world.google.calendars[calendar_id].events)
    result.zoom_meetings = len(meetings)
    result.calendar_events = len(series)
    by_meeting: dict[str, list[str]] = {}
    for event_id, (master, _exc) in series.items():
        ref = private_props(master).get(PRIVATE_MEETING)
        if ref:
            by_meeting.setdefault(ref, []).append(event_id)
        elif wants_zoom(master, rules):
            result.mismatches.append(f"calendar event {master.get('summary')!r} is marked for Zoom but has no meeting")
    markers = Counter(meeting_marker(m) for m in meetings.values() if meeting_marker(m))
    result.duplicates += [f"{n} Zoom meetings carry marker {k}" for k, n in markers.items() if n > 1]
    for meeting_id, events in by_meeting.items():
        if len(events) > 1:
            result.duplicates.append(f"{len(events)} calendar events for meeting {meeting_id}")
        if meeting_id not in meetings:
            result.mismatches.append(f"calendar event(s) {events} point at missing meeting {meeting_id}")
    for meeting_id, meeting in meetings.items():
        zoom = meeting_to_content(meeting)
        if zoom["start"] is None and not meeting_marker(meeting):
            continue   # a meeting with no fixed time has nothing to put in a calendar
        events = by_meeting.get(meeting_id, [])
        if not events:
            result.mismatches.append(f"meeting {meeting_id} {meeting.get('topic')!r} has no calendar event")
            continue
        master, exceptions = series[events[0]]
        cal = series_to_content(master, exceptions, rules)
        if zoom["start"] is None:
            continue   # the calendar keeps a rule Zoom cannot hold; the meeting has no fixed time
        for name in COMPARED:
            if name == "title" and len(cal[name]) > rules.zoom.topic_max:
                continue
            if zoom[name] != cal[name] and not (name == "end" and cal.get("all_day")):
                if cal.get("all_day") and name in ("start", "end"):
                    continue
                result.mismatches.append(f"meeting {meeting_id}: {name} {zoom[name]!r} != {cal[name]!r}")
        zoom_times = {k: (v["start"], v["end"]) for k, v in zoom["overrides"].items()}
        cal_times = {k: (v["start"], v["end"]) for k, v in cal["overrides"].items()}
        if zoom_times != cal_times and zoom["rrule"]:
            result.mismatches.append(f"meeting {meeting_id}: moved occurrences differ {zoom_times} != {cal_times}")
    return result
