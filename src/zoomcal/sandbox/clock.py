"""Time helpers the sandboxes share, written for them alone.

The sandboxes are the oracle the sync code is checked against, so they read and write times with their own
code (the standard library and python-dateutil), never with the helpers the code under test uses.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["UTC", "now", "stamp", "parse_stamp", "is_day", "day_or_instant", "tz"]


def now() -> datetime:
    """The current instant in UTC, to the second (vendors stamp to the second)."""
    return datetime.now(UTC).replace(microsecond=0)


def stamp(value: datetime) -> str:
    """An instant as the vendors write it in UTC: `2026-03-02T09:00:00Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(value: object) -> datetime:
    """An RFC 3339 date-time with `Z` or an offset, as an aware UTC datetime; ValueError otherwise (a date-time
    without an offset is refused: the sandboxes say where such a value is allowed and read it there)."""
    if not isinstance(value, str) or len(value) < 19 or value[10] not in "Tt":
        raise ValueError(f"malformed date-time {value!r}")
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"date-time {value!r} has no offset")
    return parsed.astimezone(UTC)


def is_day(value: object) -> bool:
    """True for an all-day value `YYYY-MM-DD`."""
    return isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"


def tz(name: str | None) -> ZoneInfo:
    """The IANA zone `name` (UTC when empty); ValueError for a name the zone database does not know."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def day_or_instant(value: str, zone: str | None = None) -> datetime:
    """An all-day value at midnight in `zone`, or an RFC 3339 instant, as an aware UTC datetime."""
    if is_day(value):
        d = date.fromisoformat(value)
        return datetime(d.year, d.month, d.day, tzinfo=tz(zone)).astimezone(UTC)
    return parse_stamp(value)
