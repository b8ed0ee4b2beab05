"""An event's history: why did it change? Each change with what brought it (the run and the notification or
timer behind it, the item seen in which calendar, the fields it changed), the planner's decision and the rules
that shaped it, the writes it caused on each side, and the bookings and review decisions made by people."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select

from zoomcal.app.context import AppContext
from zoomcal.app.errors import InvalidError, NotFoundError
from zoomcal.store.models import AuditEntry, Event, ReviewItem, SyncLogEntry, SyncRun, User

MIN_PREFIX = 6
STEPS = {"plan": "decided", "forget": "forgotten", "create": "wrote", "update": "wrote", "delete": "wrote",
         "error": "failed", "deferred": "deferred", "note": "note", "refused": "refused"}


@dataclass
class Step:
    at: str
    step: str                     # decided | wrote | failed | deferred | forgotten | booked | conflict | resolved
    message: str
    run_id: int | None = None
    trigger: str | None = None    # what started the run: a notification ("zoom:meeting.updated"), a timer, a person
    actor: str | None = None      # for what a person did
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class EventHistory:
    event_id: str
    user: str
    title: str
    exists: bool                  # False: the event was forgotten (deleted everywhere); its history remains
    steps: list[Step]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _utc(value: datetime | None) -> datetime:
    """A stored time as aware UTC (SQLite gives it back naive)."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _at(value: datetime | None) -> str:
    return "" if value is None else _utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")


def _resolve(s, ref: str, may_see: Callable[[int | None], bool]) -> tuple[str, int | None]:
    """The event id `ref` names (the whole id, or a prefix of at least MIN_PREFIX characters that only one
    event's id starts with, among the events there are and those whose history remains), of the events whose
    owner `may_see` allows: the others are not there for the asker, not even as a name in a refusal."""
    ref = (ref or "").strip()
    if not ref:
        raise InvalidError("name an event (its id, or the start of it)", field="event")
    row = s.execute(select(Event.id, Event.user_id).where(Event.id == ref)).first()
    if row is None:
        row = s.execute(select(SyncLogEntry.event_id, SyncLogEntry.user_id).where(SyncLogEntry.event_id == ref)
                        .limit(1)).first()
    if row is not None and may_see(row[1]):
        return row[0], row[1]
    if len(ref) < MIN_PREFIX:
        raise NotFoundError(f"no event {ref!r} (give at least {MIN_PREFIX} characters of its id)", field="event")
    like = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found = {r[0]: r[1] for r in s.execute(select(Event.id, Event.user_id).where(Event.id.like(like, escape="\\"))
                                           .limit(500)) if may_see(r[1])}
    if not found:
        found = {r[0]: r[1] for r in s.execute(
            select(SyncLogEntry.event_id, func.max(SyncLogEntry.user_id))
            .where(SyncLogEntry.event_id.like(like, escape="\\")).group_by(SyncLogEntry.event_id).limit(500))
            if may_see(r[1])}
    if len(found) > 1:
        shown = sorted(found)[:5]
        raise InvalidError(f"{ref!r} is the start of several events' ids: {', '.join(shown)}"
                           + (" ..." if len(found) > 5 else ""), field="event")
    if not found:
        raise NotFoundError(f"no event {ref!r}", field="event")
    return next(iter(found.items()))


def history(ctx: AppContext, ref: str) -> EventHistory:
    """The event's history, oldest first (a person sees their own events' histories; an admin everyone's)."""
    with ctx.store.session() as s:
        def may_see(user_id: int | None) -> bool:
            if ctx.actor.role in ("admin", "system"):
                return True
            owner = s.get(User, user_id) if user_id is not None else None
            return owner is not None and ctx.actor.may_manage(owner.email)

        event_id, user_id = _resolve(s, ref, may_see)
        user = s.get(User, user_id) if user_id is not None else None
        event = s.get(Event, event_id)
        steps: list[tuple[datetime, int, Step]] = []
        lines = s.execute(select(SyncLogEntry, SyncRun.trigger).outerjoin(SyncRun, SyncRun.id == SyncLogEntry.run_id)
                          .where(SyncLogEntry.event_id == event_id).order_by(SyncLogEntry.id))
        for line, trigger in lines:
            steps.append((line.created_at, line.id, Step(_at(line.created_at), STEPS.get(line.action, line.action),
                                                         line.message, line.run_id, trigger,
                                                         detail=dict(line.detail or {}))))
        reviews = list(s.scalars(select(ReviewItem).where(ReviewItem.event_id == event_id)))
        for review in reviews:
            steps.append((review.created_at, 0, Step(
                _at(review.created_at), "conflict",
                f"{review.field or review.kind}: Zoom had {review.zoom_value!r}, the calendar "
                f"{review.calendar_value!r}; {review.chosen} applied ({review.status})", detail={"review": review.id})))
        targets = [event_id] + [str(r.id) for r in reviews]
        for entry in s.scalars(select(AuditEntry).where(or_(
                AuditEntry.target == event_id,
                (AuditEntry.action == "review.resolve") & AuditEntry.target.in_(targets[1:])))):
            step = "booked" if entry.action.startswith("booking.") else "resolved"
            what = (f"booked by {entry.actor}" if step == "booked"
                    else f"review {entry.target} resolved by {entry.actor}: {(entry.detail or {}).get('choice')}")
            steps.append((entry.created_at, 0, Step(_at(entry.created_at), step, what, actor=entry.actor,
                                                    detail=dict(entry.detail or {}))))
    steps.sort(key=lambda item: (_utc(item[0]), item[1]))
    return EventHistory(event_id, user.email if user else "", event.title if event else "", event is not None,
                        [step for _at_, _id, step in steps])
