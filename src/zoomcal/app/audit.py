"""The audit trail: who changed what, when, in a hash chain per tenant that shows any entry altered, removed or
moved (zoomcal.domain.audit). Entries past the retention period move to the archive, unchanged; the chain runs on
through them, so `verify` checks the archive and the live trail as one."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from zoomcal.app.context import AppContext, Services
from zoomcal.app.errors import InvalidError
from zoomcal.availability.intervals import as_utc
from zoomcal.domain import audit as chain
from zoomcal.store import repo
from zoomcal.store.models import AuditArchived, AuditEntry

FORMATS = ("json", "csv")
COLUMNS = ("seq", "at", "actor", "action", "target", "detail", "prev_hash", "hash", "archived")


@dataclass
class Verified:
    entries: int
    archived: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Archived:
    moved: int
    first_seq: int | None
    last_seq: int | None
    before: datetime


def _rows(s, start: datetime | None = None, end: datetime | None = None) -> Iterator[tuple[Any, bool]]:
    """The tenant's entries in chain order, the archived ones first: (row, archived)."""
    for table, archived in ((AuditArchived, True), (AuditEntry, False)):
        query = select(table).order_by(table.seq)
        if start is not None:
            query = query.where(table.created_at >= start)
        if end is not None:
            query = query.where(table.created_at < end)
        for row in s.scalars(query.execution_options(yield_per=1000)):
            yield row, archived


def _entry(row) -> chain.Entry:
    return chain.Entry(row.tenant_id, row.seq, row.created_at, row.actor, row.action, row.target or "",
                       row.detail or {}, row.prev_hash, row.hash)


def verify(ctx: AppContext, head: tuple[int, str] | None = None) -> Verified:
    """Check the tenant's whole chain (archive and live trail); `head`: a (number, hash) kept from earlier, which
    also catches entries cut off the end."""
    ctx.require_admin()
    counts = {True: 0, False: 0}

    def walk(s) -> Iterator[chain.Entry]:
        for row, archived in _rows(s):
            counts[archived] += 1
            yield _entry(row)

    with ctx.store.session() as s:
        problems, last_seq, last_hash = chain.verify(walk(s), head)
    return Verified(counts[False], counts[True], last_seq, last_hash, [str(p) for p in problems])


def head(ctx: AppContext) -> tuple[int, str]:
    """The chain's last (number, hash): keep it elsewhere to catch a trail cut short later."""
    ctx.require_admin()
    with ctx.store.session() as s:
        return repo.audit_head(s, ctx.tenant_id)


def export(ctx: AppContext, start: datetime | None = None, end: datetime | None = None,
           fmt: str = "json") -> str:
    """Entries written in [start, end), archived ones included, as JSON (a list) or CSV (a header line)."""
    ctx.require_admin()
    if fmt not in FORMATS:
        raise InvalidError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", field="format")
    if start is not None and end is not None and end <= start:
        raise InvalidError("the end of the range must come after its start", field="to")
    with ctx.store.session() as s:
        records = [{"seq": row.seq, "at": chain.stamp(row.created_at), "actor": row.actor, "action": row.action,
                    "target": row.target, "detail": row.detail or {}, "prev_hash": row.prev_hash, "hash": row.hash,
                    "archived": archived} for row, archived in _rows(s, start, end)]
    if fmt == "json":
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "detail": json.dumps(record["detail"], ensure_ascii=False, sort_keys=True)})
    return out.getvalue()


@dataclass
class Line:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    archived: bool


MAX_PAGE = 500


def entries(ctx: AppContext, *, start: datetime | None = None, end: datetime | None = None, actor: str = "",
            action: str = "", before: int | None = None, limit: int = 100) -> list[Line]:
    """The newest entries first (archived ones included), `limit` at most, below number `before` when given:
    written in [start, end), by an actor whose name contains `actor`, with an action starting with `action`."""
    ctx.require_admin()
    if not 0 < limit <= MAX_PAGE:
        raise InvalidError(f"a page holds 1 to {MAX_PAGE} entries", field="limit")
    if start is not None and end is not None and end <= start:
        raise InvalidError("the end of the range must come after its start", field="to")
    out: list[Line] = []
    with ctx.store.session() as s:
        for table, archived in ((AuditEntry, False), (AuditArchived, True)):
            query = select(table).order_by(table.seq.desc()).limit(limit - len(out))
            if start is not None:
                query = query.where(table.created_at >= start)
            if end is not None:
                query = query.where(table.created_at < end)
            if before is not None:
                query = query.where(table.seq < before)
            if actor:
                query = query.where(table.actor.contains(actor, autoescape=True))
            if action:
                query = query.where(table.action.startswith(action, autoescape=True))
            out.extend(Line(r.seq, as_utc(r.created_at),
                            r.actor, r.action, r.target or "", r.detail or {}, archived) for r in s.scalars(query))
            if len(out) >= limit:
                break
    return out


def archive(ctx: AppContext, before: datetime) -> Archived:
    """Move the entries written before `before` to the archive, unchanged, and say so in the trail."""
    ctx.require_admin()
    with ctx.store.transaction() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.created_at < before).order_by(AuditEntry.seq)))
        now = datetime.now(UTC)
        for row in rows:
            s.add(AuditArchived(tenant_id=row.tenant_id, seq=row.seq, actor=row.actor, action=row.action,
                                target=row.target, detail=row.detail, created_at=row.created_at,
                                prev_hash=row.prev_hash, hash=row.hash, archived_at=now))
        if rows:
            s.execute(delete(AuditEntry).where(AuditEntry.id.in_([r.id for r in rows])))
            ctx.audit(s, "audit.archive", "", {"entries": len(rows), "first": rows[0].seq, "last": rows[-1].seq,
                                                "before": chain.stamp(before)})
    return Archived(len(rows), rows[0].seq if rows else None, rows[-1].seq if rows else None, before)


def apply_retention(services: Services, *, tenant: str | None = None) -> int:
    """Archive every tenant's entries older than the retention setting (`audit_retention_days`; 0 keeps all in
    the live trail). Nothing is ever deleted."""
    from zoomcal.app.context import SYSTEM

    days = int(getattr(services.settings, "audit_retention_days", 0) or 0)
    if days <= 0:
        return 0
    moved = 0
    for _tid, name in services.tenants():
        if tenant in (None, name):
            moved += archive(services.context(name, SYSTEM), datetime.now(UTC) - timedelta(days=days)).moved
    return moved
