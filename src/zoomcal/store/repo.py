"""Small repository helpers over the models (no business decisions here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zoomcal.domain import audit as chain
from zoomcal.domain.content import content_hash
from zoomcal.domain.timeutil import now_utc
from zoomcal.store.models import (
    AuditArchived,
    AuditEntry,
    Calendar,
    Cursor,
    Event,
    Link,
    RemoteItem,
    SyncLease,
    SyncLogEntry,
    Tenant,
    User,
)
from zoomcal.sync.status import LeaseHeld  # raised inside the transaction, so nothing of it is kept


def get_or_create_tenant(session: Session, name: str = "default") -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def find_user(session: Session, tenant_id: int, email: str) -> User | None:
    return session.scalar(select(User).where(User.tenant_id == tenant_id, User.email == email.lower()))


def load_mirror(session: Session, calendar_id: int) -> dict[str, dict[str, Any]]:
    rows = session.execute(select(RemoteItem.remote_id, RemoteItem.raw).where(RemoteItem.calendar_id == calendar_id))
    return {rid: raw for rid, raw in rows}


def save_mirror(session: Session, calendar_id: int, upserts: dict[str, tuple[str, dict[str, Any]]],
                deletes: Iterable[str]) -> None:
    gone = [rid for rid in deletes if rid not in upserts]
    for chunk in _chunks(gone, 500):
        session.execute(delete(RemoteItem).where(RemoteItem.calendar_id == calendar_id,
                                                 RemoteItem.remote_id.in_(chunk)))
    if upserts:
        existing = {r for (r,) in session.execute(
            select(RemoteItem.remote_id).where(RemoteItem.calendar_id == calendar_id))}
        for rid, (series, raw) in upserts.items():
            if rid in existing:
                session.execute(RemoteItem.__table__.update().where(
                    RemoteItem.calendar_id == calendar_id, RemoteItem.remote_id == rid).values(series_id=series,
                                                                                              raw=raw))
            else:
                session.add(RemoteItem(calendar_id=calendar_id, remote_id=rid, series_id=series, raw=raw))


def _chunks(items: list[str], size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def load_cursor(session: Session, calendar_id: int) -> str | None:
    row = session.get(Cursor, calendar_id)
    return row.value if row else None


def save_cursor(session: Session, calendar_id: int, value: str | None) -> None:
    row = session.get(Cursor, calendar_id)
    if row is None:
        session.add(Cursor(calendar_id=calendar_id, value=value))
    else:
        row.value = value
        row.updated_at = now_utc()


def get_link(session: Session, event_id: str, calendar_id: int) -> Link | None:
    return session.scalar(select(Link).where(Link.event_id == event_id, Link.calendar_id == calendar_id))


def event_row(tenant_id: int, user_id: int, event_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """Column values of an event row (the denormalised columns are derived from the content)."""
    return {"id": event_id, "tenant_id": tenant_id, "user_id": user_id, "content": content,
            "content_hash": content_hash(content), "start_at": content.get("start"), "end_at": content.get("end"),
            "title": content.get("title") or "", "is_meeting": bool(content.get("join"))}


def upsert_event(session: Session, tenant_id: int, user_id: int, event_id: str, content: dict[str, Any]) -> Event:
    values = event_row(tenant_id, user_id, event_id, content)
    row = session.get(Event, event_id)
    if row is None:
        row = Event(**values)
        session.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
    return row


def _lease_clock() -> datetime:
    """Now, to the microsecond: a lease renewed every third of its time must not lose the fraction of a second
    `now_utc` drops (a lease shorter than a second would be expired the moment it is renewed)."""
    return datetime.now(UTC)


def take_leases(session: Session, calendar_ids: Iterable[int], holder: str, ttl: timedelta,
                gone: Callable[[str], bool] = lambda _holder: False) -> dict[int, int]:
    """Hold every one of these calendars for `ttl` -> each calendar's fencing token; or raise LeaseHeld: another
    holder's unexpired lease wins, unless `gone(holder)` says that holder no longer exists. Taking a calendar over
    from another holder raises its token, so the former holder's writes are refused from then on."""
    now = now_utc()
    fences: dict[int, int] = {}
    for calendar_id in sorted(set(calendar_ids)):
        renewed = session.execute(update(SyncLease).where(
            SyncLease.calendar_id == calendar_id, (SyncLease.expires_at < now) | (SyncLease.holder == holder))
            .values(holder=holder, expires_at=now + ttl,
                    fence=case((SyncLease.holder == holder, SyncLease.fence), else_=SyncLease.fence + 1)))
        if renewed.rowcount != 1:   # not free (expired) nor ours
            lease = session.get(SyncLease, calendar_id, populate_existing=True)
            if lease is not None:
                if not gone(lease.holder) or session.execute(update(SyncLease).where(
                        SyncLease.calendar_id == calendar_id, SyncLease.holder == lease.holder)
                        .values(holder=holder, expires_at=now + ttl, fence=SyncLease.fence + 1)).rowcount != 1:
                    raise LeaseHeld(calendar_id)
            else:
                try:
                    with session.begin_nested():
                        session.add(SyncLease(calendar_id=calendar_id, holder=holder, expires_at=now + ttl, fence=1))
                except IntegrityError as exc:   # taken between our look and our insert
                    raise LeaseHeld(calendar_id) from exc
        fences[calendar_id] = session.scalar(select(SyncLease.fence).where(SyncLease.calendar_id == calendar_id)
                                             .execution_options(populate_existing=True))
    return fences


def renew_leases(session: Session, holder: str, fences: dict[int, int] | Any, ttl: timedelta) -> bool:
    """Extend a holder's leases (a heartbeat) -> False when any of them was taken over."""
    now = _lease_clock()
    held = 0
    for calendar_id, fence in fences.items():
        held += session.execute(update(SyncLease).where(
            SyncLease.calendar_id == calendar_id, SyncLease.holder == holder, SyncLease.fence == fence)
            .values(expires_at=now + ttl)).rowcount
    return held == len(fences)


def check_leases(session: Session, holder: str, fences: dict[int, int] | Any) -> bool:
    """Whether the holder still holds these leases with these tokens; the rows stay locked (PostgreSQL) until the
    caller's transaction ends, so no take-over can slip between this check and the caller's writes."""
    if not fences:
        return True
    rows = session.execute(select(SyncLease.calendar_id, SyncLease.holder, SyncLease.fence)
                           .where(SyncLease.calendar_id.in_(list(fences))).with_for_update()
                           .execution_options(populate_existing=True)).all()
    found = {cal: (h, f) for cal, h, f in rows}
    return all(found.get(cal) == (holder, fence) for cal, fence in fences.items())


def drop_leases(session: Session, calendar_ids: Iterable[int], holder: str) -> None:
    """Give leases back. The row stays (expired), so the calendar's fencing token only ever grows."""
    session.execute(update(SyncLease).where(SyncLease.calendar_id.in_(list(calendar_ids)), SyncLease.holder == holder)
                    .values(expires_at=now_utc() - timedelta(seconds=1)))


def log(session: Session, tenant_id: int, action: str, message: str, *, run_id: int | None = None,
        user_id: int | None = None, event_id: str | None = None, level: str = "info",
        detail: dict[str, Any] | None = None) -> None:
    session.add(SyncLogEntry(run_id=run_id, tenant_id=tenant_id, user_id=user_id, event_id=event_id, level=level,
                             action=action, message=message[:4000], detail=detail))


HEALTH_LEVELS = {"ok": "info", "degraded": "warning", "reauth": "error"}
HEALTH_WORDS = {"ok": "healthy again", "degraded": "degraded", "reauth": "needs to be linked again"}


def log_health(session: Session, tenant_id: int, user_id: int, account_id: int, label: str, status: str,
               reason: str | None) -> None:
    """The sync-log line that says an account's health changed (status: ok | degraded | reauth); the live feed
    shows it as an `account` event."""
    words = HEALTH_WORDS.get(status, status)
    log(session, tenant_id, "account", f"{label} account {account_id}: {words}" + (f" ({reason})" if reason else ""),
        user_id=user_id, event_id=f"account:{account_id}", level=HEALTH_LEVELS.get(status, "warning"))


AUDIT_LOCK = 0x7a63_6175   # the advisory lock class of a tenant's audit chain on PostgreSQL


def audit(session: Session, tenant_id: int, actor: str, action: str, target: str = "",
          detail: dict[str, Any] | None = None) -> AuditEntry:
    """Append an entry to the tenant's hash chain, in the caller's transaction. Appends queue per tenant until
    the transaction ends (PostgreSQL: an advisory lock; SQLite: its write transactions are one at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:kind, :tenant)"), {"kind": AUDIT_LOCK, "tenant": tenant_id})
    seq, prev = audit_head(session, tenant_id)
    entry = chain.Entry(tenant_id, seq + 1, datetime.now(UTC), actor[:320], action[:80], (target or "")[:500],
                        chain.canonical_detail(detail), prev)
    row = AuditEntry(tenant_id=tenant_id, seq=entry.seq, actor=entry.actor, action=entry.action, target=entry.target,
                     detail=entry.detail, created_at=entry.at, prev_hash=prev, hash=chain.entry_hash(entry))
    session.add(row)
    session.flush()
    return row


def audit_head(session: Session, tenant_id: int) -> tuple[int, str]:
    """The last (number, hash) of the tenant's chain, live or archived; (0, GENESIS) when it is empty."""
    for table in (AuditEntry, AuditArchived):
        row = session.execute(select(table.seq, table.hash).where(table.tenant_id == tenant_id)
                              .order_by(table.seq.desc()).limit(1)
                              .execution_options(all_tenants=True)).first()
        if row is not None:
            return row.seq, row.hash
    return 0, chain.GENESIS


def user_calendars(session: Session, user_id: int) -> list[Calendar]:
    return list(session.scalars(select(Calendar).where(Calendar.user_id == user_id).order_by(Calendar.id)))
