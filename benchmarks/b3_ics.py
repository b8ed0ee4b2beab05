"""B3 — an ICS calendar of 10,000 events parsed and written through zoomcal's iCalendar mapping, against the
icalendar library alone doing the same parse / serialize in the same run. Target <= 1.2x."""

from __future__ import annotations

import icalendar

from benchmarks.common import Result, best_of, check
from zoomcal.domain.content import make_content
from zoomcal.mapping.ical import content_to_calendar, series_to_content, split_events
from zoomcal.mapping.rules import DEFAULT_RULES

EVENTS = 10_000


def _corpus() -> dict[str, dict]:
    out = {}
    for i in range(EVENTS):
        day = 1 + i % 28
        content = make_content(title=f"Event {i}", description="notes", start=f"2026-03-{day:02d}T09:00:00Z",
                               end=f"2026-03-{day:02d}T10:00:00Z", timezone="Europe/Berlin",
                               rrule="FREQ=WEEKLY;COUNT=10" if i % 10 == 0 else None)
        out[f"e{i}@bench"] = content
    return out


def run() -> list[Result]:
    items = _corpus()
    data = content_to_calendar(items, marker=False)
    text = data.decode()

    def ours_parse():
        blocks, tz = split_events(text)
        by_uid: dict[str, list] = {}
        for block in blocks:
            by_uid.setdefault(block["uid"], []).append(block)
        return [series_to_content(b, DEFAULT_RULES, tz) for b in by_uid.values()]

    def raw_parse():
        cal = icalendar.Calendar.from_ical(data)
        return [(e.decoded("DTSTART"), e.decoded("DTEND"), str(e.get("SUMMARY")), e.get("RRULE"))
                for e in cal.walk("VEVENT")]

    parsed = ours_parse()
    assert len(parsed) == EVENTS and parsed[0] == items["e0@bench"]
    ours = best_of(ours_parse, 1) + best_of(lambda: content_to_calendar(items, marker=False), 1)
    raw_cal = icalendar.Calendar.from_ical(data)
    raw = best_of(raw_parse, 1) + best_of(raw_cal.to_ical, 1)
    return [Result("B3 ICS parse + serialize, 10k events, vs icalendar alone", ours, raw, ours / raw, "<= 1.2",
                   check(ours / raw, "<= 1.2"), "s")]
