"""RRULE handling shared by every mapping: parse, validate, expand in the event's own zone (DST-safe)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from dateutil import rrule as du

from zoomcal.domain.timeutil import UTC, fmt_instant, is_date, parse_date, to_datetime, zone
from zoomcal.errors import InvalidItem

MAX_EXPANSION = 5000
MAX_STEPS = 200_000        # occurrences a rule may walk (before and in a window) before it is refused as too dense


def parse_rrule_parts(value: str) -> dict[str, str]:
    if not value or "=" not in value:
        raise InvalidItem(f"malformed RRULE {value!r}")
    parts: dict[str, str] = {}
    for chunk in value.split(";"):
        if not chunk:
            continue
        key, sep, val = chunk.partition("=")
        if not sep or not val:
            raise InvalidItem(f"malformed RRULE part {chunk!r}")
        parts[key.upper()] = val.upper() if key.upper() != "UNTIL" else val
    if "FREQ" not in parts:
        raise InvalidItem(f"RRULE without FREQ: {value!r}")
    return parts


def join_rrule_parts(parts: dict[str, str]) -> str:
    order = ["FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST", "COUNT", "UNTIL"]
    keys = [k for k in order if k in parts] + sorted(k for k in parts if k not in order)
    return ";".join(f"{k}={parts[k]}" for k in keys)


WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def split_byday(item: str) -> tuple[int | None, str]:
    """"-1FR" -> (-1, "FR"); "MO" -> (None, "MO")."""
    day = item[-2:]
    if day not in WEEKDAYS:
        raise InvalidItem(f"unknown weekday in BYDAY {item!r}")
    ordinal = item[:-2]
    try:
        return (int(ordinal) if ordinal else None), day
    except ValueError as exc:
        raise InvalidItem(f"malformed BYDAY {item!r}") from exc


def _byday_key(item: str) -> tuple[int, int]:
    ordinal, day = split_byday(item)
    return WEEKDAYS.index(day), ordinal or 0


def normalize_rrule(value: str | None) -> str | None:
    """Canonical spelling: known keys in a fixed order, INTERVAL=1 dropped, UNTIL in UTC."""
    if not value:
        return None
    text = value.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts = parse_rrule_parts(text)
    for key in ("INTERVAL", "COUNT"):
        if key in parts and not (parts[key].isdigit() and 0 < int(parts[key]) <= 1_000_000_000):
            raise InvalidItem(f"invalid RRULE {value[:200]!r}: {key} must be a positive whole number")
    if parts.get("FREQ", "").upper() in ("SECONDLY", "MINUTELY"):
        # no calendar zoomcal writes to can hold one, and as busy time it would be a wall of occurrences
        raise InvalidItem(f"a rule repeating every {'second' if parts['FREQ'].upper() == 'SECONDLY' else 'minute'} "
                          f"is not a calendar series: {value[:120]!r}")
    if parts.get("INTERVAL") == "1":
        del parts["INTERVAL"]
    if "BYDAY" in parts:
        parts["BYDAY"] = ",".join(sorted(parts["BYDAY"].split(","), key=_byday_key))
    if "UNTIL" in parts:
        until = parts["UNTIL"]
        if len(until) == 8:
            parts["UNTIL"] = until
        else:
            try:
                dt = datetime.strptime(until.rstrip("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            except ValueError as exc:
                raise InvalidItem(f"malformed UNTIL {until!r}") from exc
            parts["UNTIL"] = dt.strftime("%Y%m%dT%H%M%SZ")
    try:
        # UNTIL was checked above; dateutil only has to accept the rest of the rule
        du.rrulestr("RRULE:" + join_rrule_parts({k: v for k, v in parts.items() if k != "UNTIL"}),
                    dtstart=datetime(2000, 1, 1))
    except (ValueError, TypeError) as exc:
        raise InvalidItem(f"invalid RRULE {value!r}: {exc}") from exc
    return join_rrule_parts(parts)


@lru_cache(maxsize=4096)
def _compiled(rrule: str, dtstart: datetime) -> du.rrule:
    return du.rrulestr("RRULE:" + rrule, dtstart=dtstart, cache=False)


FAST_FORWARD_KEYS = {"FREQ", "INTERVAL", "BYDAY", "WKST", "UNTIL"}
FIXED_PERIODS = {"SECONDLY": timedelta(seconds=1), "MINUTELY": timedelta(minutes=1), "HOURLY": timedelta(hours=1),
                 "DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1)}


def _fast_forward(parts: dict[str, str], local_start: datetime, lo: datetime | None) -> datetime:
    """A later series start on the same phase, so a window far from the first occurrence is reached without
    walking every occurrence before it. For rules whose phase is a fixed length (seconds to weeks, local wall
    time), with BYDAY for daily and weekly ones. A rule that counts its occurrences moves forward only when each
    period holds exactly one (no BYDAY), and its COUNT is lowered by the occurrences skipped (`parts` changes)."""
    freq = parts["FREQ"]
    if lo is None or freq not in FIXED_PERIODS:
        return local_start
    simple = set(parts) <= {"FREQ", "INTERVAL", "WKST", "UNTIL", "COUNT"}
    if not (simple or (freq in ("DAILY", "WEEKLY") and set(parts) <= FAST_FORWARD_KEYS)):
        return local_start
    period = FIXED_PERIODS[freq] * int(parts.get("INTERVAL", "1"))
    gap = lo - local_start
    if gap <= 2 * period:
        return local_start
    steps = gap // period - 1
    if "COUNT" in parts:
        parts["COUNT"] = str(max(0, int(parts["COUNT"]) - steps))
    return local_start + steps * period


def occurrence_starts(
    content: dict[str, Any], window_start: datetime | None = None, window_end: datetime | None = None,
    limit: int = MAX_EXPANSION, fast: bool = True,
) -> list[str]:
    """Original starts (canonical strings) of a recurring event, before overrides and exdates.

    The rule is evaluated on local wall time in the event's zone, then each local time is turned into an
    instant, so a 09:00 meeting stays at 09:00 across DST changes.
    """
    start = content["start"]
    if start is None:
        return []
    rdates = list(content.get("rdates") or ())
    if not content.get("rrule"):
        return sorted({start, *rdates})
    tz = zone(content.get("timezone"))
    all_day = is_date(start)
    if all_day:
        d = parse_date(start)
        local_start = datetime(d.year, d.month, d.day)
    else:
        local_start = to_datetime(start).astimezone(tz).replace(tzinfo=None)
    parts = parse_rrule_parts(content["rrule"])
    if "UNTIL" in parts and not all_day and len(parts["UNTIL"]) > 8:
        until = datetime.strptime(parts["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        parts["UNTIL"] = until.astimezone(tz).strftime("%Y%m%dT%H%M%S")
    elif "UNTIL" in parts and len(parts["UNTIL"]) == 8 and not all_day:
        parts["UNTIL"] = parts["UNTIL"] + "T235959"
    elif "UNTIL" in parts and all_day and len(parts["UNTIL"]) > 8:
        parts["UNTIL"] = parts["UNTIL"][:8]
    out: list[str] = []
    lo = window_start.astimezone(tz).replace(tzinfo=None) - timedelta(days=1) if window_start else None
    hi = window_end.astimezone(tz).replace(tzinfo=None) + timedelta(days=1) if window_end else None
    first = _fast_forward(parts, local_start, lo) if fast else local_start
    if parts.get("COUNT") == "0":
        return sorted(r for r in rdates if _in_window(r, window_start, window_end))
    try:
        for steps, local in enumerate(_compiled(join_rrule_parts(parts), first)):
            if hi is not None and local > hi:
                break
            if steps >= MAX_STEPS:
                raise InvalidItem(f"recurrence {content['rrule'][:120]!r} needs more than {MAX_STEPS} occurrences "
                                  "to reach the time asked about; not expanded")
            if lo is not None and local < lo:
                continue
            if all_day:
                out.append(local.date().isoformat())
            else:
                out.append(fmt_instant(local.replace(tzinfo=tz).astimezone(UTC)))
            if len(out) >= limit:
                break
    except (ValueError, TypeError, OverflowError) as exc:       # what dateutil raises on a rule it cannot walk
        raise InvalidItem(f"recurrence {content['rrule'][:120]!r} cannot be expanded: {exc}") from exc
    if rdates:
        out = sorted(set(out) | {r for r in rdates if _in_window(r, window_start, window_end)})
    return out


def _in_window(value: str, lo: datetime | None, hi: datetime | None) -> bool:
    at = to_datetime(value)
    return (lo is None or at >= lo - timedelta(days=1)) and (hi is None or at <= hi + timedelta(days=1))


def occurrences(content: dict[str, Any], window_start=None, window_end=None) -> list[tuple[str, str, str]]:
    """(original start, start, end) for every occurrence that is not cancelled, overrides applied."""
    if content["start"] is None or content["end"] is None:
        return []
    tz = content.get("timezone")
    length = to_datetime(content["end"], tz) - to_datetime(content["start"], tz)
    exdates = set(content.get("exdates") or ())
    overrides = content.get("overrides") or {}
    result = []
    for rid in occurrence_starts(content, window_start, window_end):
        if rid in exdates:
            continue
        if rid in overrides:
            result.append((rid, overrides[rid]["start"], overrides[rid]["end"]))
        elif is_date(rid):
            result.append((rid, rid, _add_days(rid, length)))
        else:
            result.append((rid, rid, fmt_instant(to_datetime(rid) + length)))
    return result


def _add_days(day: str, length: timedelta) -> str:
    return (parse_date(day) + timedelta(days=max(1, length.days))).isoformat()


def plain_end(rid: str, start: str, end: str, tz: str | None) -> str:
    """Where the occurrence starting at `rid` ends when it keeps the series' own length."""
    length = to_datetime(end, tz) - to_datetime(start, tz)
    return _add_days(rid, length) if is_date(rid) else fmt_instant(to_datetime(rid) + length)
