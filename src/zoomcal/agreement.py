"""Ground-truth comparison of the sandboxes: do Zoom and the calendars agree, with no duplicates?

Reads the emulators' own state (not zoomcal's store), so it checks what a person would see. It lives outside
`zoomcal.sandbox`, which must not use zoomcal's own mapping: the vendors' emulators are the oracle.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zoomcal.mapping.google import PRIVATE_MEETING, private_props, series_to_content, wants_zoom
from zoomcal.mapping.rules import DEFAULT_RULES, MappingRules
from zoomcal.mapping.zoom import meeting_marker, meeting_to_content
from zoomcal.sandbox.person import calendar_key
from zoomcal.sandbox.world import SandboxWorld

COMPARED = ("title", "description", "start", "end", "rrule", "exdates")


@dataclass
class CalendarItem:
    content: dict[str, Any]
    meeting_ref: str | None        # the meeting zoomcal tied this event to
    wants_zoom: bool
    title: str


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


def google_items(world: SandboxWorld, calendar_id: str, rules: MappingRules) -> dict[str, CalendarItem]:
    out = {}
    for event_id, (master, exceptions) in _series(world.google.calendars[calendar_id].events).items():
        out[event_id] = CalendarItem(series_to_content(master, exceptions, rules),
                                     private_props(master).get(PRIVATE_MEETING), wants_zoom(master, rules),
                                     master.get("summary") or "")
    return out


def graph_items(world: SandboxWorld, calendar_key: str, rules: MappingRules) -> dict[str, CalendarItem]:
    from zoomcal.availability.intervals import window
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.sandbox.graph import _public, expand

    lo, hi = window(rules.availability.window_past_days, rules.availability.window_future_days)
    reader = GraphConnector(None, "", "", rules, (lo, hi))   # only its pure normalize is used
    out = {}
    for event in world.graph.events[calendar_key].values():
        raws = [_public(event)] + (expand(event, lo, hi) if event.get("type") == "seriesMaster" else [])
        item = reader.normalize(raws)
        if item is not None:
            out[event["id"]] = CalendarItem(item.content, (item.content.get("join") or {}).get("meeting_id"),
                                            item.wants_peer, item.content["title"])
    return out


def compare_user(world: SandboxWorld, zoom_user_id: str, calendar_id: str,
                 rules: MappingRules = DEFAULT_RULES, provider: str = "google") -> Agreement:
    items = {"google": google_items, "graph": graph_items, "ews": ews_items}[provider](world, calendar_id, rules)
    return compare(world, zoom_user_id, items, rules)


def compare(world: SandboxWorld, zoom_user_id: str, items: dict[str, CalendarItem], rules: MappingRules) -> Agreement:
    result = Agreement()
    meetings = {str(m["id"]): world.zoom.full_meeting(m["id"]) for m in world.zoom.user_meetings(zoom_user_id)}
    result.zoom_meetings = len(meetings)
    result.calendar_events = len(items)
    by_meeting: dict[str, list[str]] = {}
    for event_id, item in items.items():
        if item.meeting_ref:
            by_meeting.setdefault(item.meeting_ref, []).append(event_id)
        elif item.wants_zoom:
            result.mismatches.append(f"calendar event {item.title!r} is marked for Zoom but has no meeting")
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
        cal = items[events[0]].content
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


def ews_items(world: SandboxWorld, email: str, rules: MappingRules) -> dict[str, CalendarItem]:
    """The mailbox as exchangelib reads it from the sandbox's own SOAP answers (no network needed)."""
    from exchangelib import CalendarItem as EwsItem
    from lxml import etree

    from zoomcal.connectors.ews.connector import EwsConnector
    from zoomcal.sandbox.ews import T, render_item

    reader = EwsConnector("http://127.0.0.1/EWS/Exchange.asmx", email, rules, username="-", secret="-",
                          auth="basic", allow_private=True)   # only its item reading is used

    def parse(xml: str) -> EwsItem:
        return EwsItem.from_xml(elem=etree.fromstring(f'<r xmlns:t="{T}">{xml}</r>')[0], account=reader.account)

    out = {}
    for stored in list(world.ews.items[email].values()):
        exceptions = {e.id: e for e in (parse(render_item(stored, n)) for n in stored["exceptions"])}
        item = reader.normalize([reader.raw_item(parse(render_item(stored)), exceptions)])
        if item is not None:
            out[stored["id"]] = CalendarItem(item.content, (item.content.get("join") or {}).get("meeting_id"),
                                             item.wants_peer, item.content["title"])
    return out


def agreement(actor, user: dict[str, Any]) -> Agreement:
    """Do the user's Zoom and calendar agree (read from the sandboxes' own state)?"""
    return compare_user(actor.world, user["zoom_user_id"], calendar_key(user),
                        provider=user.get("provider") or "google")
