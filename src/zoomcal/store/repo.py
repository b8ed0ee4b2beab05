"""Small repository helpers over the models (no business decisions here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zoomcal.domain.content import content_hash
from zoomcal.domain.timeutil import now_utc
from zoomcal.store.models import (
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


def take_leases(session: Session, calendar_ids: Iterable[int], holder: str, ttl: timedelta,
                gone: Callable[[str], bool] = lambda _holder: False) -> None:
    """Hold every one of these calendars for `ttl`, or raise LeaseHeld: another holder's unexpired lease wins,
    unless `gone(holder)` says that holder no longer exists (a crashed process)."""
    now = now_utc()
    for calendar_id in sorted(set(calendar_ids)):
        renewed = session.execute(update(SyncLease).where(
            SyncLease.calendar_id == calendar_id, (SyncLease.expires_at < now) | (SyncLease.holder == holder))
            .values(holder=holder, expires_at=now + ttl))
        if renewed.rowcount == 1:   # free again (expired) or ours
            continue
        lease = session.get(SyncLease, calendar_id, populate_existing=True)
        if lease is not None:
            if not gone(lease.holder) or session.execute(update(SyncLease).where(
                    SyncLease.calendar_id == calendar_id, SyncLease.holder == lease.holder)
                    .values(holder=holder, expires_at=now + ttl)).rowcount != 1:
                raise LeaseHeld(calendar_id)
            continue
        try:
            with session.begin_nested():
                session.add(SyncLease(calendar_id=calendar_id, holder=holder, expires_at=now + ttl))
        except IntegrityError as exc:   # taken between our look and our insert
            raise LeaseHeld(calendar_id) from exc


def drop_leases(session: Session, calendar_ids: Iterable[int], holder: str) -> None:
    session.execute(delete(SyncLease).where(SyncLease.calendar_id.in_(list(calendar_ids)),
                                            SyncLease.holder == holder))


def log(session: Session, tenant_id: int, action: str, message: str, *, run_id: int | None = None,
        user_id: int | None = None, event_id: str | None = None, level: str = "info") -> None:
    session.add(SyncLogEntry(run_id=run_id, tenant_id=tenant_id, user_id=user_id, event_id=event_id, level=level,
                             action=action, message=message[:4000]))


def audit(session: Session, tenant_id: int, actor: str, action: str, target: str = "",
          detail: dict[str, Any] | None = None) -> None:
    session.add(AuditEntry(tenant_id=tenant_id, actor=actor, action=action, target=target, detail=detail or {}))


def user_calendars(session: Session, user_id: int) -> list[Calendar]:
    return list(session.scalars(select(Calendar).where(Calendar.user_id == user_id).order_by(Calendar.id)))
