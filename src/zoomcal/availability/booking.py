"""The conflict guard: check the user's busy intervals and insert the booking in one transaction.

PostgreSQL: the user's row is locked (SELECT ... FOR UPDATE) before the check, so concurrent bookings for
one person run one after another and the second sees the first. SQLite: BEGIN IMMEDIATE takes the write lock
before the check. Either way two overlapping bookings cannot both succeed. The booking is a canonical event
with pending creates on the user's Zoom and calendar links: the sync engine's executor fans it out, the
same path every other write takes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from zoomcal.availability import intervals
from zoomcal.domain.content import make_content
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.errors import ConfigError
from zoomcal.invitations import outbox
from zoomcal.mapping.rules import MappingRules
from zoomcal.store import repo
from zoomcal.store.db import Database
from zoomcal.store.models import Account, AvailabilitySettings, BusyInterval, Calendar, Event, Link, MeetingPoll, User

HORIZON = timedelta(days=5 * 366)      # how far ahead a booking may be made


@dataclass
class Booking:
    booked: bool
    event_id: str | None = None
    conflict: dict | None = None


def book(db: Database, user_id: int, start: datetime, end: datetime, title: str, rules: MappingRules, *,
         attendees: list[str] | None = None, zoom: bool = False, description: str = "", actor: str = "cli",
         timezone: str | None = None, poll: dict | None = None) -> Booking:
    if end <= start:
        raise ConfigError("a booking must end after it starts")
    lo, hi = intervals.window(rules.availability.window_past_days, rules.availability.window_future_days)
    horizon = now_utc() + HORIZON
    if start < now_utc() - timedelta(minutes=5) or end > horizon:
        raise ConfigError(f"bookings must lie between now and {fmt_instant(horizon)}")
    with db.locked_transaction() as s:
        user = s.execute(select(User).where(User.id == user_id).with_for_update()).scalar_one_or_none()
        if user is None:
            raise ConfigError(f"no user {user_id}")
        # the person's buffers keep time free around what they have, as `slots` keeps it: one rule for both
        settings = s.get(AvailabilitySettings, user_id)
        before = timedelta(minutes=settings.buffer_before_min if settings else 0)
        after = timedelta(minutes=settings.buffer_after_min if settings else 0)
        clash = s.execute(
            select(BusyInterval.start_at, BusyInterval.end_at, BusyInterval.kind, Event.id, Event.title)
            .join(Event, Event.id == BusyInterval.event_id)
            .where(BusyInterval.user_id == user_id, BusyInterval.start_at < end + before,
                   BusyInterval.end_at > start - after)
            .order_by(BusyInterval.start_at).limit(1)).first()
        if clash is not None:
            return Booking(False, conflict={"event_id": clash.id, "title": clash.title, "kind": clash.kind,
                                            "start": fmt_instant(intervals.as_utc(clash.start_at)),
                                            "end": fmt_instant(intervals.as_utc(clash.end_at))})
        tz = timezone or intervals.user_timezone(s, user_id)
        # the stored intervals reach the window's end as of its last daily roll: from two days before it, expand
        cut = hi - timedelta(days=2)
        if end + before > cut and (beyond := _beyond_the_window(s, user_id, max(start - after, cut), end + before,
                                                                tz)) is not None:
            return Booking(False, conflict=beyond)
        content = make_content(title=title, description=description, start=fmt_instant(start),
                               end=fmt_instant(end), timezone=tz, attendees=attendees or [])
        event_id = "bk" + uuid.uuid4().hex[:22]
        repo.upsert_event(s, user.tenant_id, user_id, event_id, content)
        s.flush()
        targets = _targets(s, user_id, zoom)
        for cal in targets:
            s.add(Link(tenant_id=user.tenant_id, event_id=event_id, calendar_id=cal.id, pending="create"))
        intervals.refresh_events(s, user.tenant_id, user_id, {event_id: content}, lo, hi, tz, new={event_id})
        repo.audit(s, user.tenant_id, actor, "booking.create", event_id,
                   {"title": title, "start": content["start"], "end": content["end"], "zoom": zoom})
        # guests are invited by the calendar that receives the booking where it does so itself (Outlook), else by
        # e-mail, decided in this same transaction (a Zoom meeting's once it has its link)
        if not _provider_invites(s, targets):
            outbox.track(s, user.tenant_id, user, event_id, content, rules, wait_for_join=zoom)
        if poll is not None:       # created on the Zoom meeting once it exists
            s.add(MeetingPoll(tenant_id=user.tenant_id, user_id=user_id, event_id=event_id, poll=poll))
        return Booking(True, event_id=event_id)


def _beyond_the_window(s: Session, user_id: int, start: datetime, end: datetime, tz: str) -> dict | None:
    """Past the precomputed window nothing is stored: expand the person's events over the asked span now (a day
    either side, so the event's own start and end are named, not the asked span's)."""
    for event_id, spans in intervals.expanded(s, user_id, start - timedelta(days=1), end + timedelta(days=1),
                                              tz).items():
        for first, last, kind in spans:
            if first < end and last > start:
                return {"event_id": event_id, "title": s.scalar(select(Event.title).where(Event.id == event_id)),
                        "kind": kind, "start": fmt_instant(first), "end": fmt_instant(last)}
    return None


def _provider_invites(s: Session, calendars: list[Calendar]) -> bool:
    """Does a calendar that receives the booking invite its attendees itself?"""
    from zoomcal.connectors import registry

    for cal in calendars:
        account = s.get(Account, cal.account_id)
        if account is not None and account.provider in registry.keys() and \
                registry.get(account.provider).capabilities.sends_invitations:
            return True
    return False


def _targets(s: Session, user_id: int, zoom: bool) -> list[Calendar]:
    calendars = repo.user_calendars(s, user_id)
    targets = [c for c in calendars if c.receives_meetings]
    if zoom:
        meetings = [c for c in calendars if c.role == "meetings"]
        if not meetings:
            raise ConfigError("a Zoom meeting needs a linked Zoom account")
        targets = meetings[:1] + targets
    return targets


def inbound_conflicts(db: Database, user_id: int, lo: datetime, hi: datetime) -> list[dict]:
    """Overlaps between the user's own blocking events (they cannot be prevented, only shown)."""
    with db.session() as s:
        rows = s.execute(_spans(user_id).where(BusyInterval.end_at > lo, BusyInterval.start_at < hi)).all()
    return [_overlap(first, second) for first, second in _sweep(rows)]


BOOKED = "bk"      # the id prefix of an event booked through zoomcal
WIDE = 64          # more separate spans than this are read as one range


def actionable_overlaps(db: Database, user_id: int, lo: datetime, hi: datetime, touched: set[str]) -> list[dict]:
    """Overlaps someone can act on that involve one of `touched` (the events a run recorded or changed): a Zoom
    meeting or a booking colliding with other busy time. Only the time those events take is read."""
    with db.session() as s:
        spans: list[tuple[datetime, datetime]] = []
        ids = sorted(touched)
        for start in range(0, len(ids), 500):
            spans.extend(s.execute(select(BusyInterval.start_at, BusyInterval.end_at).where(
                BusyInterval.user_id == user_id, BusyInterval.event_id.in_(ids[start:start + 500]),
                BusyInterval.end_at > lo, BusyInterval.start_at < hi)).all())
        if not spans:
            return []
        spans.sort()
        merged: list[list[datetime]] = []
        for first, last in spans:
            if merged and first <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        if len(merged) > WIDE:
            merged = [[merged[0][0], max(last for _first, last in merged)]]
        rows = s.execute(_spans(user_id).where(or_(*(and_(BusyInterval.end_at > first, BusyInterval.start_at < last)
                                                     for first, last in merged)))).all()
    return [_overlap(first, second) for first, second in _sweep(rows)
            if (first.id in touched or second.id in touched) and (_acts(first) or _acts(second))]


def _acts(row) -> bool:
    return bool(row.is_meeting) or row.id.startswith(BOOKED)


def _spans(user_id: int):
    return (select(BusyInterval.start_at, BusyInterval.end_at, BusyInterval.kind, Event.id, Event.title,
                   Event.is_meeting)
            .join(Event, Event.id == BusyInterval.event_id)
            .where(BusyInterval.user_id == user_id)
            .order_by(BusyInterval.start_at))


def _sweep(rows):
    """Each pair of intervals of different events that overlap, as (earlier row, later row), in start order."""
    open_rows: list = []
    for row in rows:
        start = intervals.as_utc(row.start_at)
        open_rows = [(end, r) for end, r in open_rows if end > start]
        for _end, other in open_rows:
            if other.id != row.id:
                yield other, row
        open_rows.append((intervals.as_utc(row.end_at), row))


def _overlap(first, second) -> dict:
    a_start, a_end = intervals.as_utc(first.start_at), intervals.as_utc(first.end_at)
    b_start, b_end = intervals.as_utc(second.start_at), intervals.as_utc(second.end_at)
    return {"first": {"event_id": first.id, "title": first.title, "start": fmt_instant(a_start),
                      "end": fmt_instant(a_end)},
            "second": {"event_id": second.id, "title": second.title, "start": fmt_instant(b_start),
                       "end": fmt_instant(b_end)},
            "overlap_minutes": int((min(a_end, b_end) - b_start).total_seconds() // 60)}
