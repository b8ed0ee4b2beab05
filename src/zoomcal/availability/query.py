"""Free/busy and slot search over the in-memory index, in each user's working hours and zone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from zoomcal.availability.index import BusyIndex, merge
from zoomcal.domain.timeutil import UTC, zone
from zoomcal.errors import ConfigError
from zoomcal.lazy import lazy
from zoomcal.store.models import AvailabilitySettings

np = lazy("numpy")    # loaded when availability is first computed, not when a command starts

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS = {d: [["09:00", "17:00"]] for d in DAYS[:5]}


@dataclass
class UserAvailability:
    user_id: int
    timezone: str = "UTC"
    working_hours: dict[str, list[list[str]]] = field(default_factory=lambda: dict(DEFAULT_HOURS))
    buffer_before: int = 0     # seconds
    buffer_after: int = 0


def load(session: Session, user_id: int) -> UserAvailability:
    row = session.get(AvailabilitySettings, user_id)
    if row is None:
        return UserAvailability(user_id)
    return UserAvailability(user_id, row.timezone, row.working_hours or {}, row.buffer_before_min * 60,
                            row.buffer_after_min * 60)


def parse_hours(spec: str) -> dict[str, list[list[str]]]:
    """"mon-fri 09:00-17:00; sat 10:00-12:00" -> {"mon": [["09:00", "17:00"]], ...}."""
    hours: dict[str, list[list[str]]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        try:
            days, span = part.split()
            start, end = span.split("-")
            time.fromisoformat(start), time.fromisoformat(end)
        except ValueError as exc:
            raise ConfigError(f"working hours {part!r}: expected like 'mon-fri 09:00-17:00'") from exc
        if start >= end:
            raise ConfigError(f"working hours {part!r}: the end must come after the start")
        first, _, last = days.lower().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ConfigError(f"working hours {part!r}: days are mon..sun")
        span_days = DAYS[DAYS.index(first):DAYS.index(last or first) + 1]
        for day in span_days:
            hours.setdefault(day, []).append([start, end])
    return hours


def working_windows(user: UserAvailability, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The user's working hours between lo and hi (epoch seconds), as instants: DST-correct per day."""
    tz = zone(user.timezone)
    first = datetime.fromtimestamp(lo, UTC).astimezone(tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(hi, UTC).astimezone(tz).date() + timedelta(days=1)
    starts, ends = [], []
    day: date = first
    while day <= last:
        for start, end in user.working_hours.get(DAYS[day.weekday()], []):
            s = int(datetime.combine(day, time.fromisoformat(start), tz).timestamp())
            e = int(datetime.combine(day, time.fromisoformat(end), tz).timestamp())
            if e > lo and s < hi:
                starts.append(max(s, lo))
                ends.append(min(e, hi))
        day += timedelta(days=1)
    return np.array(starts, np.int64), np.array(ends, np.int64)


def subtract(ws: np.ndarray, we: np.ndarray, bs: np.ndarray, be: np.ndarray) -> list[tuple[int, int]]:
    """Windows minus merged busy blocks (both sorted)."""
    out, j = [], 0
    for s, e in zip(ws.tolist(), we.tolist(), strict=True):
        cursor = s
        while j < len(bs) and be[j] <= cursor:
            j += 1
        k = j
        while k < len(bs) and bs[k] < e:
            if bs[k] > cursor:
                out.append((cursor, int(bs[k])))
            cursor = max(cursor, int(be[k]))
            k += 1
        if cursor < e:
            out.append((cursor, e))
    return out


def intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def merged_busy(index: BusyIndex, users: list[UserAvailability], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Everyone's blocking intervals (with each person's buffers) merged into one sorted set of blocks."""
    parts = [index.arrays(u.user_id, lo, hi, u.buffer_before, u.buffer_after) for u in users]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return merge(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def common_free(index: BusyIndex, users: list[UserAvailability], lo: int, hi: int,
                min_duration: int = 0) -> list[tuple[int, int]]:
    """Time inside everyone's working hours when nobody is blocked, in ranges of at least `min_duration`."""
    if not users:
        return []
    windows = None
    for user in users:
        ws, we = working_windows(user, lo, hi)
        mine = list(zip(ws.tolist(), we.tolist(), strict=True))
        windows = mine if windows is None else intersect(windows, mine)
    if not windows:
        return []
    bs, be = merged_busy(index, users, lo, hi)
    ws = np.array([w[0] for w in windows], np.int64)
    we = np.array([w[1] for w in windows], np.int64)
    return [(s, e) for s, e in subtract(ws, we, bs, be) if e - s >= max(min_duration, 1)]


def slots(ranges: list[tuple[int, int]], duration: int, step: int = 900) -> list[tuple[int, int]]:
    """Candidate meeting times of `duration` seconds inside free ranges, starting on `step` boundaries."""
    out = []
    for s, e in ranges:
        start = -(-s // step) * step
        while start + duration <= e:
            out.append((start, start + duration))
            start += step
    return out


def parse_duration(text: str) -> int:
    """"30m", "1h", "1h30m", "45" (minutes) -> seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text) * 60
    total, number = 0, ""
    for ch in text:
        if ch.isdigit():
            number += ch
        elif ch in "hm" and number:
            total += int(number) * (3600 if ch == "h" else 60)
            number = ""
        else:
            raise ConfigError(f"duration {text!r}: expected like 30m, 1h, 1h30m")
    if number:
        raise ConfigError(f"duration {text!r}: expected like 30m, 1h, 1h30m")
    return total


def fmt_local(epoch_seconds: int, tz: str) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).astimezone(zone(tz)).isoformat()


def describe_busy(index: BusyIndex, user: UserAvailability, lo: int, hi: int,
                  titles: dict[str, str]) -> list[dict[str, Any]]:
    return [{"start": fmt_local(s, user.timezone), "end": fmt_local(e, user.timezone), "kind": kind,
             "event_id": ev, "title": titles.get(ev, "")} for s, e, kind, ev in index.busy(user.user_id, lo, hi)]
