"""Due syncs, marked durably.

A notification, a timer or an operation never syncs by itself: it marks a person's sync as due (a row in the
store, written before anything is acknowledged) and wakes the job queue. The job that syncs the person clears the
mark only when its run started after the latest mark, so a mark that arrives during a run, or a run that dies, keeps
it; the queue's sweep finds marks nobody took and queues them again. Marks coalesce: a burst of notifications about
one person is one row and one run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from sqlalchemy import bindparam, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from zoomcal.app.context import AppContext
from zoomcal.availability.intervals import as_utc
from zoomcal.store.models import Calendar, SyncDue, User


@dataclass(frozen=True)
class Due:
    tenant_id: int
    user_id: int
    email: str
    reason: str
    marks: int
    first_marked_at: datetime
    marked_at: datetime
    changed_at: datetime | None
    attempts: int
    raw_marked_at: datetime | None = None     # as the store holds it (what `clear` compares against)
    calendars: frozenset[int] | None = None   # the calendars the notifications named; None: all


@cache
def _upsert(dialect: str):
    """INSERT ... ON CONFLICT for one dialect, built once (a webhook marks on every call): a new mark, or one more
    mark on the person's row keeping the earliest change time and the union of the calendars named (any mark
    that names none stands for all of them)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(SyncDue).values(tenant_id=bindparam("tenant_id"), user_id=bindparam("user_id"),
                                  reason=bindparam("reason"), marks=1, first_marked_at=bindparam("at"),
                                  marked_at=bindparam("at"), changed_at=bindparam("changed_at"), attempts=0,
                                  calendars=bindparam("calendars"))
    earliest = func.coalesce(func.min(SyncDue.changed_at, stmt.excluded.changed_at) if dialect == "sqlite"
                             else func.least(SyncDue.changed_at, stmt.excluded.changed_at),
                             SyncDue.changed_at, stmt.excluded.changed_at)
    found = (func.instr(SyncDue.calendars, stmt.excluded.calendars) if dialect == "sqlite"
             else func.strpos(SyncDue.calendars, stmt.excluded.calendars))
    named = case((SyncDue.calendars.is_(None) | stmt.excluded.calendars.is_(None), None),
                 (found > 0, SyncDue.calendars),
                 (func.length(SyncDue.calendars) > 1000, None),       # so many: list them all
                 else_=SyncDue.calendars + stmt.excluded.calendars)
    return stmt.on_conflict_do_update(index_elements=[SyncDue.user_id], set_={
        "reason": stmt.excluded.reason, "marks": SyncDue.marks + 1, "marked_at": stmt.excluded.marked_at,
        "changed_at": earliest, "calendars": named})


def _spelled(calendars: Iterable[int] | None) -> str | None:
    return None if calendars is None else "," + ",".join(str(c) for c in sorted(set(calendars))) + ","


def _read(text: str | None) -> frozenset[int] | None:
    return None if text is None else frozenset(int(c) for c in text.split(",") if c.strip().isdigit())


def mark_ids(s: Session, tenant_id: int, user_ids: list[int], reason: str, changed_at: datetime | None = None,
             at: datetime | None = None, calendars: Mapping[int, Iterable[int]] | None = None) -> None:
    """Mark these people (ids of the tenant's users) due, in the caller's transaction; `calendars` names, per
    person, the calendars a notification was about (only they need listing), else all of theirs are."""
    at = at or datetime.now(UTC)      # to the microsecond: marks in one second stay apart
    rows = [{"tenant_id": tenant_id, "user_id": user_id, "reason": reason[:200], "at": at, "changed_at": changed_at,
             "calendars": _spelled(calendars[user_id]) if calendars is not None and user_id in calendars else None}
            for user_id in sorted(set(user_ids))]
    if rows:
        s.connection().execute(_upsert(s.get_bind().dialect.name), rows)     # Core: no ORM bookkeeping


def mark(ctx: AppContext, emails: list[str] | str, reason: str, changed_at: datetime | None = None,
         calendars: Iterable[int] | None = None) -> list[str]:
    """Mark these people's sync due and wake the queue -> the e-mails that were marked (unknown ones are skipped).
    `calendars`: the calendar ids a notification named (only they need listing); None: all of them."""
    wanted = [emails] if isinstance(emails, str) else list(emails)
    wanted = sorted({e.strip().lower() for e in wanted if e})
    if not wanted:
        return []
    with ctx.store.transaction() as s:
        users = list(s.execute(select(User.id, User.email).where(User.tenant_id == ctx.tenant_id,
                                                                 User.email.in_(wanted))))
        named = None if calendars is None else {u.id: list(calendars) for u in users}
        mark_ids(s, ctx.tenant_id, [u.id for u in users], reason, changed_at, calendars=named)
    for user in users:
        ctx.jobs.defer("sync", tenant=ctx.tenant_name, user=user.email, reason=reason)
    return sorted(u.email for u in users)


def mark_all(ctx: AppContext, reason: str) -> list[str]:
    """Everyone with a linked calendar (the reconciliation round)."""
    with ctx.store.session() as s:
        emails = list(s.scalars(select(User.email).join(Calendar, Calendar.user_id == User.id)
                                .where(User.tenant_id == ctx.tenant_id).distinct()))
    return mark(ctx, emails, reason)


def pending(ctx: AppContext, older_than: timedelta | None = None) -> list[Due]:
    """The tenant's due marks, oldest first (only those marked before `older_than` ago, when given)."""
    query = (select(SyncDue, User.email).join(User, User.id == SyncDue.user_id)
             .where(SyncDue.tenant_id == ctx.tenant_id).order_by(SyncDue.marked_at))
    if older_than is not None:
        query = query.where(SyncDue.marked_at <= datetime.now(UTC) - older_than)
    with ctx.store.session() as s:
        return [_due(row, email) for row, email in s.execute(query)]


def get(ctx: AppContext, user_id: int) -> Due | None:
    with ctx.store.session() as s:
        row = s.execute(select(SyncDue, User.email).join(User, User.id == SyncDue.user_id)
                        .where(SyncDue.user_id == user_id, SyncDue.tenant_id == ctx.tenant_id)).first()
    return _due(*row) if row else None


def started(ctx: AppContext, user_id: int) -> None:
    """A run for this person begins: count the attempt (a mark that keeps failing shows it)."""
    with ctx.store.transaction() as s:
        row = s.get(SyncDue, user_id)
        if row is not None:
            row.attempts += 1


def clear(ctx: AppContext, served: Due) -> bool:
    """A run that started after `served` was read has served it -> whether the mark is gone (False: a newer mark
    arrived meanwhile and stays due). Compare-and-delete on the mark's count and time as read, so no clock (and
    no clock skew between machines) decides."""
    with ctx.store.transaction() as s:
        done = s.execute(delete(SyncDue).where(
            SyncDue.user_id == served.user_id, SyncDue.tenant_id == ctx.tenant_id, SyncDue.marks == served.marks,
            SyncDue.marked_at == served.raw_marked_at))
        return done.rowcount == 1


def _due(row: SyncDue, email: str) -> Due:
    changed = as_utc(row.changed_at) if row.changed_at is not None else None
    return Due(row.tenant_id, row.user_id, email, row.reason, row.marks, as_utc(row.first_marked_at),
               as_utc(row.marked_at), changed, row.attempts, row.marked_at, _read(row.calendars))
