"""Busy intervals: what an event blocks, expanded in a window (pure) and kept in the store (per event)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from zoomcal.domain.recurrence import occurrences
from zoomcal.domain.timeutil import UTC, now_utc, to_datetime
from zoomcal.errors import InvalidItem
from zoomcal.store.models import AvailabilitySettings, BusyInterval, Event, Link, User

KINDS = ("busy", "tentative", "ooo", "focus", "free")
BLOCKING = ("busy", "tentative", "ooo", "focus")
# when several intervals cover the same moment, the strongest kind is the user's state
STRENGTH = {"ooo": 4, "focus": 3, "busy": 2, "tentative": 1, "free": 0}


def window(past_days: int, future_days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or now_utc()
    return now - timedelta(days=past_days), now + timedelta(days=future_days)


def event_intervals(content: dict[str, Any], lo: datetime, hi: datetime,
                    day_tz: str | None = None) -> list[tuple[datetime, datetime, str]]:
    """Blocking spans of one event inside [lo, hi): every occurrence, overrides applied, cancellations gone.

    All-day events block whole days in `day_tz` (the user's own zone); timed events are instants.
    """
    kind = content.get("show_as") or "busy"
    if kind not in BLOCKING or content.get("start") is None or content.get("end") is None:
        return []
    out = []
    if content.get("rrule") or content.get("rdates"):
        spans = [(start, end) for _rid, start, end in occurrences(content, lo, hi)]
    else:   # a single event: no expansion needed
        spans = [] if content["start"] in (content.get("exdates") or ()) else [(content["start"], content["end"])]
    for start, end in spans:
        s = to_datetime(start, day_tz if content.get("all_day") else None)
        e = to_datetime(end, day_tz if content.get("all_day") else None)
        if e <= s or s >= hi or e <= lo:
            continue   # outside the window, or zero-length (a marker blocks no time)
        out.append((max(s, lo), min(e, hi), kind))
    return out


def user_timezone(session: Session, user_id: int) -> str:
    found = session.get(AvailabilitySettings, user_id)
    return found.timezone if found else "UTC"


def excluded_calendars(session: Session, user_id: int) -> list[int]:
    found = session.get(AvailabilitySettings, user_id)
    return list(found.excluded_calendars or []) if found else []


def counted(session: Session, user_id: int, contents: dict[str, dict[str, Any] | None]
            ) -> dict[str, dict[str, Any] | None]:
    """The events as they count for availability: one whose links are all on calendars the person excluded
    counts as gone (None); one with no link yet, or a link on a counted calendar, counts."""
    excluded = set(excluded_calendars(session, user_id))
    if not excluded:
        return contents
    calendars: dict[str, set[int]] = {}
    ids = list(contents)
    for start in range(0, len(ids), 500):
        for event_id, cal_id in session.execute(select(Link.event_id, Link.calendar_id)
                                                .where(Link.event_id.in_(ids[start:start + 500]))):
            calendars.setdefault(event_id, set()).add(cal_id)
    return {ev: (None if calendars.get(ev) and calendars[ev] <= excluded else c) for ev, c in contents.items()}


def expanded(session: Session, user_id: int, lo: datetime, hi: datetime, tz: str | None
             ) -> dict[str, list[tuple[datetime, datetime, str]]]:
    """The person's blocking spans inside [lo, hi), computed now from their events (for times no stored interval
    covers: past the window): the events that count, as for the stored intervals; an unexpandable rule blocks
    nothing, as there."""
    events = {event_id: content for event_id, content in
              session.execute(select(Event.id, Event.content).where(Event.user_id == user_id))}
    out = {}
    for event_id, content in sorted(counted(session, user_id, events).items()):
        if content is None:
            continue                 # only on calendars the person does not count
        try:
            spans = event_intervals(content, lo, hi, tz)
        except InvalidItem:
            continue
        if spans:
            out[event_id] = spans
    return out


def refresh_events(session: Session, tenant_id: int, user_id: int, contents: dict[str, dict[str, Any] | None],
                   lo: datetime, hi: datetime, day_tz: str | None = None, new: set[str] | frozenset = frozenset()
                   ) -> int:
    """Replace the stored intervals of these events (None: the event is gone). Returns rows written.

    `new` names events stored for the first time in this transaction: they have no intervals to remove. When
    any interval was removed or added, the person's `busy_revision` moves in the same transaction.
    """
    ids = [event_id for event_id in contents if event_id not in new]
    contents = counted(session, user_id, contents)
    removed = 0
    for start in range(0, len(ids), 500):
        removed += session.execute(
            delete(BusyInterval).where(BusyInterval.event_id.in_(ids[start:start + 500]))).rowcount or 0
    rows = []
    for event_id, content in contents.items():
        if content is None:
            continue
        try:
            spans = event_intervals(content, lo, hi, day_tz)
        except InvalidItem:
            continue   # the event was accepted earlier; an unexpandable rule blocks nothing rather than failing
        rows.extend({"tenant_id": tenant_id, "user_id": user_id, "event_id": event_id, "start_at": s,
                     "end_at": e, "kind": k} for s, e, k in spans)
    if rows:
        session.execute(insert(BusyInterval.__table__), rows)
    if removed or rows:
        bump_revision(session, user_id)
    return len(rows)


def bump_revision(session: Session, user_id: int) -> None:
    """The person's busy intervals changed in this transaction: every process holding them in memory rereads
    them before its next answer about this person (see availability/index.py). Atomic, so concurrent writers
    never lose a bump."""
    session.execute(update(User).where(User.id == user_id).values(busy_revision=User.busy_revision + 1)
                    .execution_options(synchronize_session=False))


def rebuild_user(session: Session, tenant_id: int, user_id: int, lo: datetime, hi: datetime) -> int:
    """Recompute every event of one user (a new window, changed settings); normal changes go per event."""
    contents = {ev_id: content for ev_id, content in session.execute(
        select(Event.id, Event.content).where(Event.user_id == user_id))}
    return refresh_events(session, tenant_id, user_id, contents, lo, hi, user_timezone(session, user_id))


def roll_window(session: Session, tenant_id: int, user_id: int, lo: datetime, hi: datetime,
                now: datetime | None = None, every: timedelta = timedelta(days=1)) -> bool:
    """Move the window forward, once a day: recurring events get the occurrences that entered it, and single
    events that lay beyond the window's end when their intervals were last computed get theirs."""
    now = now or now_utc()
    settings = session.get(AvailabilitySettings, user_id)
    if settings is None:
        from zoomcal.availability.query import DEFAULT_HOURS

        settings = AvailabilitySettings(user_id=user_id, timezone="UTC", working_hours=dict(DEFAULT_HOURS),
                                        buffer_before_min=0, buffer_after_min=0, excluded_calendars=[])
        session.add(settings)
    rolled = settings.rolled_at
    if rolled is not None and now - as_utc(rolled) < every:
        return False
    # the last window ended `now - rolled` earlier than this one (a day's margin); never rolled: every event
    previous_end = hi - (now - as_utc(rolled)) - timedelta(days=1) if rolled is not None else None
    rows = session.execute(select(Event.id, Event.content).where(Event.user_id == user_id))
    due = {ev_id: content for ev_id, content in rows
           if content.get("rrule") or content.get("rdates") or _ends_after(content, previous_end)}
    refresh_events(session, tenant_id, user_id, due, lo, hi, settings.timezone)
    settings.rolled_at = now
    return True


def _ends_after(content: dict[str, Any], moment: datetime | None) -> bool:
    end = content.get("end")
    if not end:
        return False
    if moment is None:
        return True
    try:
        return to_datetime(end, "UTC") > moment
    except InvalidItem:
        return False


def as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
