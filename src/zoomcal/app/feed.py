"""The live feed of one tenant: sync runs as they finish, sync-log lines, presence changes, account health.

The feed is read from the store, so it shows what every process did — workers on other machines write to the same
database. Its one source is the `sync_log` table, whose ids increase: every line is an item, and the item's id is
the line's id (what a reader passes back to resume). Kinds, by the line's action:

* `run` — a run finished (written by `app.sync.run` for each pair): user, status, writes, API calls, duration;
* `presence` — the presence driver's decision or its failure;
* `account` — an account's health changed: it needs to be linked again, is degraded, or is healthy again;
* `log` — every other line: decisions (create, update, delete, held, ...), warnings and errors.

Reading follows ids: `recent` returns the lines after an id, `follow` polls every half second. On PostgreSQL a
transaction that took an id may commit after one that took a later id, so an id skipped over is looked for again
for a few seconds (a rolled-back insert, or another tenant's line, leaves a gap for good), and is delivered when it
appears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from zoomcal.app import users
from zoomcal.app.context import AppContext
from zoomcal.store import repo
from zoomcal.store.models import SyncLogEntry, SyncRun, User

RUN, ACCOUNT, PRESENCE, LOG = "run", "account", "presence", "log"
HEALTH = repo.HEALTH_LEVELS
STATUS_OF_LEVEL = {"info": "ok", "warning": "degraded", "error": "needs_reauth"}
GAP_GRACE = 5.0          # seconds an id skipped over is looked for again
PAGE = 500
MAX_GAPS = 1000          # at most this many skipped ids are looked for again


@dataclass(frozen=True)
class FeedItem:
    id: int
    kind: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "at": self.at.isoformat(), "data": self.data}


def _kind(action: str) -> str:
    return action if action in (RUN, ACCOUNT, PRESENCE) else LOG


def _item(line: SyncLogEntry, emails: dict[int, str], run: SyncRun | None) -> FeedItem:
    at = line.created_at if line.created_at.tzinfo else line.created_at.replace(tzinfo=UTC)
    data: dict[str, Any] = {"user": emails.get(line.user_id) if line.user_id else None, "level": line.level,
                            "action": line.action, "event": line.event_id, "message": line.message}
    kind = _kind(line.action)
    if kind == RUN and run is not None:
        data.update(run_id=run.id, status=run.status, trigger=run.trigger,
                    writes=(run.counts or {}).get("writes", 0), api_calls=run.api_calls, errors=run.errors,
                    duration_ms=run.duration_ms)
    elif kind == ACCOUNT:
        data.update(account_id=int(line.event_id.split(":", 1)[1]) if line.event_id else None,
                    status=STATUS_OF_LEVEL.get(line.level, line.level))
        data["event"] = None
    return FeedItem(line.id, kind, at, data)


def _read(s: Session, ctx: AppContext, query) -> list[FeedItem]:
    lines = list(s.scalars(query))
    user_ids = {ln.user_id for ln in lines if ln.user_id}
    emails = {u.id: u.email for u in s.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    run_ids = {ln.run_id for ln in lines if ln.run_id and ln.action == RUN}
    runs = {r.id: r for r in s.scalars(select(SyncRun).where(SyncRun.id.in_(run_ids)))} if run_ids else {}
    return [_item(ln, emails, runs.get(ln.run_id)) for ln in lines]


def _user_filter(s: Session, ctx: AppContext, email: str | None):
    if email:
        ctx.require_manage(email)
        return SyncLogEntry.user_id == users.find(s, ctx, email).id
    ctx.require_admin()
    return None


def latest_id(ctx: AppContext) -> int:
    """The id of the tenant's newest line (0: none yet): where a reader that wants only what comes next starts."""
    with ctx.store.session() as s:
        return s.scalar(select(func.max(SyncLogEntry.id)).where(SyncLogEntry.tenant_id == ctx.tenant_id)) or 0


def recent(ctx: AppContext, after: int = 0, limit: int = PAGE, *, user: str | None = None) -> list[FeedItem]:
    """Items with an id above `after`, oldest first, at most `limit` (of one person's, with `user`)."""
    return _page(ctx, after, limit, user, ())[0]


def _page(ctx: AppContext, after: int, limit: int, user: str | None, gaps: tuple[int, ...]
          ) -> tuple[list[FeedItem], list[int]]:
    """(items above `after` or among `gaps`, every id looked at: the person's lines and everyone else's)."""
    with ctx.store.session() as s:
        only = _user_filter(s, ctx, user)
        wanted = SyncLogEntry.id > after
        if gaps:
            wanted = or_(wanted, SyncLogEntry.id.in_(gaps))
        ids = list(s.scalars(select(SyncLogEntry.id).where(SyncLogEntry.tenant_id == ctx.tenant_id, wanted)
                             .order_by(SyncLogEntry.id).limit(max(1, limit))))
        if not ids:
            return [], []
        query = select(SyncLogEntry).where(SyncLogEntry.id.in_(ids)).order_by(SyncLogEntry.id)
        if only is not None:
            query = query.where(only)
        return _read(s, ctx, query), ids


async def follow(ctx: AppContext, after: int = 0, *, user: str | None = None, poll: float = 0.5,
                 heartbeat: float | None = None, grace: float = GAP_GRACE) -> AsyncIterator[FeedItem | None]:
    """Every item above `after` as it appears, forever. With `heartbeat`, yields None after that many seconds
    without an item (a door keeps its connection alive with it)."""
    last = after
    gaps: dict[int, float] = {}            # ids skipped over -> until when they are looked for
    quiet_since = time.monotonic()
    while True:
        now = time.monotonic()
        gaps = {i: until for i, until in gaps.items() if until > now}
        items, ids = await asyncio.to_thread(_page, ctx, last, PAGE, user, tuple(sorted(gaps)))
        seen = [i for i in ids if i > last]
        if seen:
            # an id below the highest one read that did not come may belong to a transaction still open
            for missing in sorted(set(range(max(last + 1, seen[-1] - MAX_GAPS), seen[-1])) - set(seen)):
                gaps[missing] = now + grace
            last = seen[-1]
        for found in ids:
            gaps.pop(found, None)
        if len(gaps) > MAX_GAPS:           # other tenants' lines look like gaps too: keep the newest
            gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
        for item in items:
            yield item
        if items:
            quiet_since = time.monotonic()
        elif heartbeat is not None and time.monotonic() - quiet_since >= heartbeat:
            quiet_since = time.monotonic()
            yield None
        if len(seen) < PAGE:
            await asyncio.sleep(poll)


# --- writing the lines only the application layer knows about ------------------------------------------------

def run_finished(s: Session, tenant_id: int, user_id: int, run_id: int, status: str, writes: int, api_calls: int,
                 duration_ms: int) -> None:
    """The line that says a run finished (its numbers are read from the run when the feed shows it)."""
    repo.log(s, tenant_id, RUN, f"run {status}: {writes} write(s), {api_calls} API call(s), {duration_ms} ms",
             run_id=run_id, user_id=user_id, level="error" if status == "failed" else "info")


def account_health(s: Session, tenant_id: int, user_id: int, account_id: int, label: str, status: str,
                   reason: str | None) -> None:
    """The line that says an account's health changed (status: ok | degraded | reauth)."""
    repo.log_health(s, tenant_id, user_id, account_id, label, status, reason)
