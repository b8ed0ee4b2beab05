"""zoomcal's expansion (dateutil, zone-aware) and recurring-ical-events agree on every corpus case: the same
occurrences, moved and cancelled ones applied. B4 then decides on speed alone (see benchmarks/b4_expansion.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import icalendar
import pytest
import recurring_ical_events

from conformance.corpus import CASES
from zoomcal.domain.recurrence import occurrences
from zoomcal.domain.timeutil import UTC, fmt_instant, is_date, to_datetime, zone
from zoomcal.mapping.ical import content_to_calendar


def _stamp(value, tz: str | None) -> str:
    if not isinstance(value, datetime):
        return value.isoformat()
    if value.tzinfo is None:   # floating: read in the event's zone, as zoomcal does
        value = value.replace(tzinfo=zone(tz))
    return fmt_instant(value.astimezone(UTC))


@pytest.mark.parametrize("name", list(CASES))
def test_same_occurrences_as_recurring_ical_events(name):
    content = CASES[name]
    calendar = icalendar.Calendar.from_ical(content_to_calendar({f"{name}@zoomcal": content}))
    first = to_datetime(content["start"], content.get("timezone"))
    lo, hi = first - timedelta(days=2), first + timedelta(days=800)
    theirs = sorted((_stamp(e["DTSTART"].dt, content.get("timezone")), _stamp(e["DTEND"].dt if "DTEND" in e
                     else e["DTSTART"].dt, content.get("timezone")))
                    for e in recurring_ical_events.of(calendar).between(
                        lo.date() if is_date(content["start"]) else lo,
                        hi.date() if is_date(content["start"]) else hi))
    ours = sorted((start, end) for _rid, start, end in occurrences(content, lo, hi))
    if is_date(content["start"]):
        ours = sorted((date.fromisoformat(s).isoformat(), date.fromisoformat(e).isoformat()) for s, e in ours)
    assert ours and ours == theirs
