"""Time helpers: zoneinfo everywhere, UTC instants in canonical content, unknown zones rejected."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from zoomcal.errors import InvalidItem

UTC = UTC


def iana_name(name: str) -> str:
    """An IANA zone name for `name`, which may be a Windows zone name (CLDR's windowsZones mapping, as Outlook,
    Exchange and Graph write them), or a globally unique TZID (RFC 5545: a leading "/", as in "/Europe/Stockholm",
    or a publisher's prefix before the IANA name, as in "/mozilla.org/20050126_1/Europe/Berlin")."""
    from tzlocal.windows_tz import win_tz

    if name in win_tz:
        return win_tz[name]
    if name.startswith("/"):
        parts = name.strip("/").split("/")
        for start in range(len(parts)):
            candidate = "/".join(parts[start:])
            if candidate in _iana_names():
                return candidate
        return name.lstrip("/")
    return name


@cache
def _iana_names() -> frozenset[str]:
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


def windows_name(iana: str) -> str | None:
    from tzlocal.windows_tz import tz_win

    return tz_win.get(iana)


def zone(name: str | None) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    if not isinstance(name, str) or len(name) > 200:
        raise InvalidItem(f"unknown time zone {str(name)[:60]!r}...")
    try:
        return ZoneInfo(iana_name(name))
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise InvalidItem(f"unknown time zone {name[:80]!r}") from exc


def check_zone(name: str | None) -> str | None:
    """The zone's IANA name (Windows names are translated); an unknown zone is an InvalidItem, never UTC."""
    if name:
        zone(name)
        return iana_name(name)
    return name


def parse_instant(value: str) -> datetime:
    """Parse an RFC 3339 date-time (offset or Z) into an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise InvalidItem(f"missing or malformed date-time {value!r}")
    if len(value) == 20 and value[-1] == "Z" and value[10] == "T":
        try:   # the canonical spelling, on every hot path
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidItem(f"malformed date-time {value!r}") from exc
    if parsed.tzinfo is None:
        raise InvalidItem(f"date-time without offset {value!r}")
    return parsed.astimezone(UTC).replace(microsecond=0)


def parse_local(value: str, tz: str | None) -> datetime:
    """A date-time that may lack an offset (then it is local time in tz)."""
    text = value.strip()
    if text.endswith(("Z", "z")) or "+" in text[10:] or "-" in text[10:]:
        return parse_instant(text)
    try:
        naive = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidItem(f"malformed date-time {value!r}") from exc
    return naive.replace(tzinfo=zone(tz)).astimezone(UTC)


def fmt_instant(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except (ValueError, TypeError) as exc:
        raise InvalidItem(f"malformed date {value!r}") from exc


def is_date(value: str | None) -> bool:
    return isinstance(value, str) and len(value) == 10


def to_datetime(value: str, tz: str | None = None) -> datetime:
    """Canonical start/end (instant or date) as an aware datetime (dates at local midnight)."""
    if is_date(value):
        d = parse_date(value)
        return datetime(d.year, d.month, d.day, tzinfo=zone(tz)).astimezone(UTC)
    return parse_instant(value)


def duration_minutes(start: str, end: str, tz: str | None = None) -> int:
    delta = to_datetime(end, tz) - to_datetime(start, tz)
    return max(0, int(delta / timedelta(minutes=1)))


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_ical_stamp(stamp: str, tz: str | None, is_day: bool = False, what: str = "date") -> str:
    """An iCalendar DATE / DATE-TIME value ("20260302", "20260302T090000Z", local "20260302T090000" read in
    `tz`) as canonical content: a date, or a UTC instant."""
    try:
        if is_day or len(stamp) == 8:
            return datetime.strptime(stamp, "%Y%m%d").date().isoformat()
        if stamp.endswith("Z"):
            return fmt_instant(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
        local = datetime.strptime(stamp, "%Y%m%dT%H%M%S")
    except ValueError as exc:
        raise InvalidItem(f"malformed {what} {stamp!r}") from exc
    return fmt_instant(local.replace(tzinfo=zone(tz)).astimezone(UTC))


def iana_equivalent(offset_at: Callable[[datetime], timedelta | None], hint: str = "") -> str | None:
    """The IANA zone whose UTC offsets equal a custom zone's (a VTIMEZONE an exporter defined under its own name)
    at every day of the current and next year: those whose place names appear in `hint` first, then any, in name
    order; an Etc/GMT zone for a fixed offset; None when no zone keeps the same clock. Zones are first narrowed by
    their offsets twice a month (an index built once per process), so one lookup costs a few milliseconds."""
    days, coarse, index = _fingerprints(now_utc().year)
    try:
        sampled = tuple(offset_at(days[i]) for i in coarse)
        candidates = index.get(sampled, ())
        wanted = [offset_at(d) for d in days] if candidates or len(set(sampled)) == 1 else []
    except Exception:   # noqa: BLE001 — a definition that cannot answer is no zone at all
        return None
    words = {w.lower() for w in re.findall(r"[A-Za-z_]{3,}", hint)}

    def rank(name: str) -> tuple[int, str]:
        parts = {p.lower() for p in re.split(r"[/_]", name)} | {name.lower().replace("_", " ")}
        return (0 if parts & words or name.lower() in hint.lower() else 1, name)

    for name in sorted(candidates, key=rank):
        tz = ZoneInfo(name)
        if [d.astimezone(tz).utcoffset() for d in days] == wanted:
            return name
    if wanted and len(set(wanted)) == 1 and wanted[0] is not None and wanted[0] % timedelta(hours=1) == timedelta(0):
        hours = int(wanted[0] / timedelta(hours=1))
        return "UTC" if hours == 0 else f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"   # POSIX sign
    return None


@cache
def _fingerprints(year: int) -> tuple[list[datetime], list[int], dict[tuple, list[str]]]:
    """Every day of `year` and the next, the positions sampled twice a month, and the IANA zones by their offsets
    at those samples."""
    start = datetime(year, 1, 1, 12, tzinfo=UTC)
    days = [start + timedelta(days=n) for n in range(0, 731)]
    coarse = list(range(0, 731, 15))
    index: dict[tuple, list[str]] = {}
    for name in sorted(_iana_names()):
        if name.startswith(("Etc/", "posix/", "right/")) or "/" not in name:
            continue
        tz = ZoneInfo(name)
        index.setdefault(tuple(days[i].astimezone(tz).utcoffset() for i in coarse), []).append(name)
    return days, coarse, index
