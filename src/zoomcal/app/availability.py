"""Availability: a person's busy time, common free slots, booking through the conflict guard, overlaps."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from zoomcal.app import due, users
from zoomcal.app.context import AppContext
from zoomcal.app.errors import ConflictError, InvalidError
from zoomcal.availability import booking, intervals, query
from zoomcal.availability.index import KIND_CODES, BusyIndex, UserIntervals, epoch
from zoomcal.availability.intervals import user_timezone
from zoomcal.domain.timeutil import zone
from zoomcal.errors import ConfigError
from zoomcal.store.models import Event


def index(ctx: AppContext) -> BusyIndex:
    """The process's busy index (every tenant it serves; people are read the first time they are asked about)."""
    return ctx.services.busy_index


def current(ctx: AppContext, user_ids: list[int], until: int | None = None) -> BusyIndex:
    """These people's busy intervals as of the last commit of any process: one query for their revisions, and a
    reread of those another process (or this one) changed since. Only the tenant's people can be found. Asked
    past the end of the precomputed window (`until`, epoch seconds), their events are expanded up to it now."""
    view = index(ctx).current(ctx.store, user_ids)
    avail = ctx.rules().availability
    _lo, window_end = intervals.window(avail.window_past_days, avail.window_future_days)
    # the stored intervals end where the window ended at its last daily roll: expand from a little before that
    cut = window_end - timedelta(days=2)
    if until is None or until <= epoch(cut):
        return view
    return _beyond(ctx, view, user_ids, cut, datetime.fromtimestamp(until, window_end.tzinfo))


def _beyond(ctx: AppContext, view: BusyIndex, user_ids: list[int], start: datetime, end: datetime) -> BusyIndex:
    """A copy of `view` with what lies between the window's end and `end` added, expanded from the events."""
    out = BusyIndex()
    with ctx.store.session() as s:
        for user_id in user_ids:
            tz = user_timezone(s, user_id)
            known = view.users.get(user_id)
            cut = epoch(start)
            spans = {ev: [(a, min(b, cut), k) for a, b, k in found if a < cut]
                     for ev, found in (known.by_event if known else {}).items()}
            for event_id, later in intervals.expanded(s, user_id, start, end, tz).items():
                spans.setdefault(event_id, []).extend((epoch(a), epoch(b), KIND_CODES[k]) for a, b, k in later)
            user = UserIntervals({ev: found for ev, found in spans.items() if found})
            user.compile()
            out.users[user_id] = user
    return out


def user_zone(ctx: AppContext, email: str) -> str:
    with ctx.store.session() as s:
        return user_timezone(s, users.find(s, ctx, email).id)


def localize(value: datetime, tz: str) -> datetime:
    """A time without an offset is local time in `tz` (the person's own zone)."""
    return value if value.tzinfo else value.replace(tzinfo=zone(tz))


def _span(start: datetime, end: datetime, tz: str) -> tuple[int, int]:
    lo, hi = epoch(localize(start, tz)), epoch(localize(end, tz))
    if hi <= lo:
        raise InvalidError("the end must come after the start", field="end")
    if hi - lo > 400 * 86400:
        raise InvalidError("ask for at most 400 days at a time", field="end")
    return lo, hi


@dataclass
class Busy:
    user: str
    timezone: str
    busy: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def busy(ctx: AppContext, email: str, start: datetime, end: datetime) -> Busy:
    """Busy intervals of every linked calendar (recurrences expanded), in the person's zone."""
    ctx.require_manage(email)
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        settings = query.load(s, user.id)
        titles = dict(s.execute(select(Event.id, Event.title).where(Event.user_id == user.id)).all())
    lo, hi = _span(start, end, settings.timezone)
    return Busy(user.email, settings.timezone,
                query.describe_busy(current(ctx, [user.id], until=hi), settings, lo, hi, titles))


@dataclass
class Slots:
    timezone: str
    duration_minutes: int
    free: list[dict[str, str]]
    slots: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def slots(ctx: AppContext, emails: list[str], duration_s: int, start: datetime, end: datetime,
          step_s: int = 900) -> Slots:
    """Common free time of several people inside everyone's working hours and buffers; times in the first
    person's zone."""
    if not emails:
        raise InvalidError("name at least one person", field="users")
    if duration_s <= 0 or step_s <= 0:
        raise InvalidError("duration and step must be positive", field="duration")
    with ctx.store.session() as s:
        people = [query.load(s, users.find(s, ctx, e).id) for e in emails]
    tz = people[0].timezone
    lo, hi = _span(start, end, tz)
    free = query.common_free(current(ctx, [p.user_id for p in people], until=hi), people, lo, hi, duration_s)
    found = query.slots(free, duration_s, step_s)
    return Slots(tz, duration_s // 60,
                 [{"start": query.fmt_local(a, tz), "end": query.fmt_local(b, tz)} for a, b in free],
                 [{"start": query.fmt_local(a, tz), "end": query.fmt_local(b, tz)} for a, b in found])


@dataclass
class Booked:
    event_id: str
    user: str
    start: str
    end: str
    zoom: bool


def book(ctx: AppContext, email: str, start: datetime, end: datetime, title: str, *,
         attendees: list[str] | None = None, zoom: bool = False, description: str = "",
         poll: dict[str, Any] | None = None) -> Booked:
    """Book a time unless it collides with anything the person has (ConflictError names what): the check and the
    insert are one transaction. The booking reaches Zoom and the calendar through the next sync of that person,
    which is asked for at once. Guests are invited by e-mail; `poll` (see polls.poll_body) is put on the Zoom
    meeting once it exists."""
    ctx.require_manage(email)
    if poll is not None and not zoom:
        raise InvalidError("a poll needs a Zoom meeting: book it as one", field="poll")
    if not (title or "").strip():
        raise InvalidError("a booking needs a title", field="title")
    guests = [users.normal_email(a) for a in attendees or []]
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        tz = user_timezone(s, user.id)
    try:
        result = booking.book(ctx.store, user.id, localize(start, tz), localize(end, tz), title.strip(),
                              ctx.rules(), attendees=guests, zoom=zoom, description=description,
                              actor=ctx.actor.name, poll=poll)
    except ConfigError as exc:
        raise InvalidError(str(exc), field="start") from exc
    if not result.booked:
        c = result.conflict or {}
        raise ConflictError(f"{user.email} is not free then: {c.get('title')!r} ({c.get('kind')}, {c.get('start')} - "
                            f"{c.get('end')})", details={"conflict": c})
    due.mark(ctx, user.email, "booking")     # the booked event goes out to the person's calendars
    row = localize(start, tz), localize(end, tz)
    return Booked(result.event_id or "", user.email, row[0].isoformat(), row[1].isoformat(), zoom)


def conflicts(ctx: AppContext, email: str, start: datetime | None = None, end: datetime | None = None
              ) -> list[dict[str, Any]]:
    """Overlapping events in a person's calendars: they came from outside and could not be prevented."""
    ctx.require_manage(email)
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        tz = user_timezone(s, user.id)
    now = ctx.now()
    lo = localize(start, tz) if start else now - timedelta(days=7)
    hi = localize(end, tz) if end else now + timedelta(days=180)
    return booking.inbound_conflicts(ctx.store, user.id, lo, hi)
