"""B4 (expansion part) — 1000 recurring rules expanded over a one-week window through zoomcal (zone-aware,
overrides and cancellations applied) against raw dateutil `rrule.between` on the same rules in the same run.
Target <= 2x. Week queries themselves are answered from the busy intervals expanded ahead of time (the
"B4 busy query" result, target <= 10 ms); expanding 1000 rules on the fly is reported here in milliseconds.

The second result is the choice of engine: recurring-ical-events on the same 1000 events (one parsed
calendar) against zoomcal's dateutil-based expansion, checked to give the same occurrences first (the corpus
test in tests/conformance/test_expansion_engines.py checks the same on every conformance case). zoomcal keeps
whichever is faster; a ratio above 1 means dateutil is."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from benchmarks.common import Result, best_of, check
from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import occurrences
from zoomcal.domain.timeutil import UTC, fmt_instant, to_datetime

RULES = 1000
RRULES = ["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,WE,FR", "FREQ=MONTHLY;BYDAY=2TU", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH",
          "FREQ=DAILY;INTERVAL=3;COUNT=200"]


def run() -> list[Result]:
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
    contents, raw_rules = [], []
    for i in range(RULES):
        tz = zones[i % 4]
        start = datetime(2026, 1, 5 + i % 20, 8 + i % 9, tzinfo=ZoneInfo(tz))
        rule = RRULES[i % len(RRULES)]
        contents.append(make_content(title=str(i), start=start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     end=(start + timedelta(minutes=30)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     timezone=None if tz == "UTC" else tz, rrule=rule))
        raw_rules.append((du.rrulestr("RRULE:" + rule, dtstart=start.replace(tzinfo=None)), ZoneInfo(tz)))
    lo, hi = datetime(2026, 6, 8, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC)

    def ours():
        return sum(len(occurrences(c, lo, hi)) for c in contents)

    def raw():
        total = 0
        for rule, tz in raw_rules:
            local_lo = lo.astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
            local_hi = hi.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
            total += len(rule.between(local_lo, local_hi, inc=True))
        return total

    assert ours() == raw()
    t_ours, t_raw = best_of(ours, 3), best_of(raw, 3)
    results = [Result("B4 expansion: 1000 rules over one week vs raw dateutil", t_ours, t_raw, t_ours / t_raw,
                      "<= 2.0", check(t_ours / t_raw, "<= 2.0"), "s", f"{t_ours * 1000:.1f} ms for 1000 rules")]
    try:
        import icalendar
        import recurring_ical_events
    except ImportError:   # installed with the test extras
        return results
    from zoomcal.mapping.ical import content_to_calendar

    calendar = icalendar.Calendar.from_ical(content_to_calendar({f"r{i}@b4": c for i, c in enumerate(contents)}))

    def theirs():
        return recurring_ical_events.of(calendar).between(lo, hi)

    def starts_ours():
        return sorted(s for c in contents for _rid, s, _e in occurrences(c, lo, hi) if lo <= to_datetime(s) < hi)

    def starts_theirs():
        return sorted(fmt_instant(e["DTSTART"].dt.astimezone(UTC)) for e in theirs()
                      if lo <= e["DTSTART"].dt < hi)

    assert starts_ours() == starts_theirs()
    t_theirs = best_of(theirs, 3)
    results.append(Result("B4 engine: recurring-ical-events vs zoomcal's dateutil expansion (same occurrences)",
                          t_theirs, t_ours, t_theirs / t_ours, ">= 1.0", check(t_theirs / t_ours, ">= 1.0"), "s",
                          f"recurring-ical-events {t_theirs * 1000:.1f} ms; zoomcal keeps the faster dateutil path"
                          if t_theirs >= t_ours else "recurring-ical-events is faster here"))
    return results
