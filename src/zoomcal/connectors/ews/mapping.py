"""exchangelib calendar items ⇄ the Graph-shaped JSON the Microsoft mapping already reads. Pure, no I/O.

Exchange Web Services and Microsoft Graph describe events with the same model (a pattern plus a range for the
rule, Windows zone names, a free/busy status, exceptions on the master), so an EWS item is turned into the
JSON a Graph event would have and mapped by `zoomcal.mapping.graph`: one mapping, one conformance suite.
What EWS cannot hold beyond Graph (several weekdays picked by position other than all days, weekdays or
weekend days) is reported as a degradation.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from exchangelib import EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.fields import WEEK_NUMBERS, WEEKDAY_NAMES, WEEKDAYS
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from zoomcal.domain.recurrence import join_rrule_parts, normalize_rrule, parse_rrule_parts
from zoomcal.domain.timeutil import UTC, fmt_instant, iana_name

FREE_BUSY_IN = {"Free": "free", "Tentative": "tentative", "Busy": "busy", "OOF": "oof",
                "WorkingElsewhere": "workingElsewhere", "NoData": "unknown"}
FREE_BUSY_OUT = {v: k for k, v in FREE_BUSY_IN.items()}
INDEX_NAMES = ("first", "second", "third", "fourth", "last")   # EWS DayOfWeekIndex, in order
# EWS names three day sets with one word; Graph lists their days
DAY_SETS = {"Day": [d.lower() for d in WEEKDAY_NAMES], "Weekday": [d.lower() for d in WEEKDAY_NAMES[:5]],
            "WeekendDay": [d.lower() for d in WEEKDAY_NAMES[5:]]}


def _day_names(value: int) -> list[str]:
    name = WEEKDAYS[value - 1]
    return DAY_SETS.get(name, [name.lower()])


def _day_value(days: list[str]) -> int | None:
    if len(days) == 1:
        return WEEKDAYS.index(days[0].capitalize()) + 1
    for name, members in DAY_SETS.items():
        if sorted(days) == sorted(members):
            return WEEKDAYS.index(name) + 1
    return None


def recurrence_to_graph(rec: Recurrence) -> dict[str, Any]:
    p, b = rec.pattern, rec.boundary
    pattern: dict[str, Any] = {"interval": getattr(p, "interval", 1) or 1}
    if isinstance(p, DailyPattern):
        pattern["type"] = "daily"
    elif isinstance(p, WeeklyPattern):
        pattern.update(type="weekly", daysOfWeek=[WEEKDAY_NAMES[d - 1].lower() for d in p.weekdays],
                       firstDayOfWeek=WEEKDAY_NAMES[(p.first_day_of_week or 1) - 1].lower())
    elif isinstance(p, AbsoluteMonthlyPattern | AbsoluteYearlyPattern):
        pattern.update(type="absoluteMonthly" if isinstance(p, AbsoluteMonthlyPattern) else "absoluteYearly",
                       dayOfMonth=p.day_of_month)
    elif isinstance(p, RelativeMonthlyPattern | RelativeYearlyPattern):
        pattern.update(type="relativeMonthly" if isinstance(p, RelativeMonthlyPattern) else "relativeYearly",
                       daysOfWeek=_day_names(p.weekday), index=INDEX_NAMES[p.week_number - 1])
    else:
        pattern["type"] = type(p).__name__   # regeneration patterns: refused by the rule mapping with the name
    if isinstance(p, AbsoluteYearlyPattern | RelativeYearlyPattern):
        pattern["month"] = p.month
    rng: dict[str, Any] = {"startDate": _day(b.start).isoformat()}
    if isinstance(b, NumberedPattern):
        rng.update(type="numbered", numberOfOccurrences=b.number)
    elif isinstance(b, EndDatePattern):
        rng.update(type="endDate", endDate=_day(b.end).isoformat())
    else:
        rng["type"] = "noEnd"
    return {"pattern": pattern, "range": rng}


def graph_to_recurrence(rec: dict[str, Any]) -> tuple[Recurrence | None, str]:
    """exchangelib's Recurrence for a patternedRecurrence, or (None, why)."""
    p, r = rec["pattern"], rec["range"]
    kind, interval = p["type"], int(p.get("interval") or 1)
    days = p.get("daysOfWeek") or []
    index = WEEK_NUMBERS.index(p["index"].capitalize()) + 1 if p.get("index") else 1
    if kind == "daily":
        pattern: Any = DailyPattern(interval=interval)
    elif kind == "weekly":
        pattern = WeeklyPattern(interval=interval, weekdays=[WEEKDAY_NAMES.index(d.capitalize()) + 1 for d in days],
                                first_day_of_week=WEEKDAY_NAMES.index((p.get("firstDayOfWeek") or "sunday")
                                                                      .capitalize()) + 1)
    elif kind == "absoluteMonthly":
        pattern = AbsoluteMonthlyPattern(interval=interval, day_of_month=int(p["dayOfMonth"]))
    elif kind == "absoluteYearly":
        pattern = AbsoluteYearlyPattern(day_of_month=int(p["dayOfMonth"]), month=int(p["month"]))
    else:
        day = _day_value(days)
        if day is None:
            return None, f"Exchange picks by position only one weekday, every day, weekdays or weekend days, " \
                         f"not {', '.join(days)}"
        if kind == "relativeMonthly":
            pattern = RelativeMonthlyPattern(interval=interval, weekday=day, week_number=index)
        else:
            pattern = RelativeYearlyPattern(weekday=day, week_number=index, month=int(p["month"]))
    if kind.endswith("Yearly") and interval != 1:
        return None, "Exchange repeats yearly rules every year only"
    start = EWSDate.fromisoformat(r["startDate"])
    if r["type"] == "numbered":
        boundary: Any = NumberedPattern(start=start, number=int(r["numberOfOccurrences"]))
    elif r["type"] == "endDate":
        boundary = EndDatePattern(start=start, end=EWSDate.fromisoformat(r["endDate"]))
    else:
        boundary = NoEndPattern(start=start)
    return Recurrence(pattern=pattern, boundary=boundary), ""


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def utc_stamp(value: datetime) -> str:
    """An aware (EWS) date-time as a canonical UTC instant."""
    return fmt_instant(datetime.fromtimestamp(value.timestamp(), UTC))


def graph_time(value: date | datetime) -> dict[str, str]:
    """An EWS start or end (a date for all-day items, else an aware date-time) as a Graph dateTimeTimeZone."""
    if isinstance(value, datetime):
        return {"dateTime": utc_stamp(value)[:-1], "timeZone": "UTC"}
    return {"dateTime": f"{value.isoformat()}T00:00:00", "timeZone": "UTC"}


def ews_time(value: dict[str, str], all_day: bool) -> EWSDate | EWSDateTime:
    """A Graph dateTimeTimeZone (local time in a zone that may be a Windows name) as what exchangelib sends."""
    local = datetime.fromisoformat(value["dateTime"])
    if all_day:
        return EWSDate(local.year, local.month, local.day)
    tz = EWSTimeZone(iana_name(value["timeZone"]))
    return EWSDateTime.from_datetime(local.replace(tzinfo=tz))


def zone_of(item: Any) -> str:
    tz = getattr(item, "_start_timezone", None)
    return getattr(tz, "key", None) or "UTC"


# Exchange lays a day of the month past a month's end (29, 30, 31) on that month's last day; RFC 5545 skips the
# month. As a rule: the last of days 28..N that the month has.
def month_end_rule(rrule: str, pattern: dict[str, Any]) -> str:
    """The rule read from an absolute monthly or yearly pattern, with Exchange's month-end placement spelled out
    (BYMONTHDAY=28,...,N;BYSETPOS=-1) when its day is past the 28th."""
    day = int(pattern.get("dayOfMonth") or 0)
    if pattern.get("type") not in ("absoluteMonthly", "absoluteYearly") or day <= 28:
        return rrule
    parts = parse_rrule_parts(rrule)
    parts.update(BYMONTHDAY=",".join(str(d) for d in range(28, day + 1)), BYSETPOS="-1")
    return normalize_rrule(join_rrule_parts(parts)) or rrule


def exchange_month_days(content: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Content as Exchange can hold it: a month-end rule (as month_end_rule writes it) becomes the pattern's
    single day again; a plain day past the 28th is kept, with a note that Exchange also places it on the last day
    of shorter months."""
    rule = content.get("rrule") or ""
    parts = parse_rrule_parts(rule) if rule else {}
    days = parts.get("BYMONTHDAY", "").split(",")
    if parts.get("FREQ") not in ("MONTHLY", "YEARLY") or not all(d.isdigit() for d in days) or \
            max((int(d) for d in days if d), default=0) <= 28:
        return content, []
    last = max(int(d) for d in days)
    if parts.get("BYSETPOS") == "-1" and [int(d) for d in days] == list(range(28, last + 1)):
        parts.pop("BYSETPOS")
        return {**content, "rrule": normalize_rrule(join_rrule_parts({**parts, "BYMONTHDAY": str(last)}))}, []
    if len(days) == 1 and "BYSETPOS" not in parts:
        return content, [f"Exchange also places day {last} of the month on the last day of shorter months"]
    return content, []
