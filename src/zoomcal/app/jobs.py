"""The jobs a process carries out: syncing a person whose sync is due, and the periodic work.

Every job is a plain async function over the process's `Services`; the runners (`zoomcal.app.runner`: in-process
for the embedded default, procrastinate workers on PostgreSQL) only decide when and where they run. A job never
trusts that it runs once: a sync job clears its person's due mark only when its run started after the latest mark
and every pair ran, so a repeated, late or interrupted job costs a listing, never a lost change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from zoomcal.app import due, propagation, push, sync
from zoomcal.app.context import SYSTEM, AppContext, Services
from zoomcal.auth.tokens import stored_tokens
from zoomcal.connectors import registry
from zoomcal.domain.timeutil import now_utc
from zoomcal.errors import AuthExpired, ConnectorError
from zoomcal.logging import get_logger
from zoomcal.metrics import TOKEN_REFRESH_FAILURES
from zoomcal.net import tls
from zoomcal.store.models import Account, BusyInterval, User

log = get_logger("zoomcal.jobs")


class RetryLater(Exception):
    """The job could not finish now (a pair failed, or another run held the calendars): run it again later, after
    `delay` seconds doubling with each attempt up to `cap`."""

    def __init__(self, message: str, delay: float = 5.0, cap: float = 300.0):
        super().__init__(message)
        self.delay = delay
        self.cap = cap


def first_retry(exc: BaseException) -> float:
    """Seconds a person's next run waits at least after a failure, news or not (a new mark cuts a back-off down to
    this, never below: a failing person is not run again on every notification)."""
    return exc.delay if isinstance(exc, RetryLater) else 5.0


def retry_after(exc: BaseException, attempts: int) -> float:
    """Seconds until a job that raised `exc` after `attempts` earlier attempts runs again: doubling from the
    delay the job asked for, never past its cap (five minutes for a failure, less for a wait on another run's
    lease, which lapses within its own time when its holder died)."""
    delay, cap = (exc.delay, exc.cap) if isinstance(exc, RetryLater) else (5.0, 300.0)
    return min(cap, delay * 2 ** min(max(attempts, 0), 16))


@dataclass
class SyncOutcome:
    tenant: str
    user: str
    results: list[sync.PairResult] = field(default_factory=list)
    cleared: bool = False
    changed: bool = False


def _changed_event(results: list[sync.PairResult]) -> bool:
    return any(r.writes or any(v for k, v in r.counts.items() if k not in ("unchanged",)) for r in results)


async def sync_person(services: Services, tenant: str, email: str, *,
                      on_pair: Callable[[sync.PairResult], None] | None = None,
                      on_change: Callable[[dict[str, Any]], None] | None = None,
                      presence: bool = True) -> SyncOutcome:
    """Sync one person's pairs because their sync is due; then keep their Zoom presence in line."""
    ctx = services.context(tenant, SYSTEM)
    outcome = SyncOutcome(tenant, email)
    with ctx.store.session() as s:
        user_id = s.scalar(select(User.id).where(User.tenant_id == ctx.tenant_id, User.email == email))
    if user_id is None:
        return outcome      # removed meanwhile: nothing is due any more
    mark = due.get(ctx, user_id)
    due.started(ctx, user_id)
    trigger = (mark.reason if mark else "job")[:40]
    # a mark from notifications names the calendars that changed: only those are listed
    outcome.results = await sync.run(ctx, email, trigger=trigger, on_pair=on_pair, on_change=on_change,
                                     changed=mark.calendars if mark is not None else None)
    unfinished = [r for r in outcome.results if r.status in ("failed", "skipped")]
    outcome.changed = _changed_event(outcome.results)
    if mark is not None and mark.changed_at is not None:
        _record_propagation(ctx, outcome.results, mark.changed_at)
    if presence:
        await _presence_after_sync(ctx, user_id, mark)
    if unfinished:
        skipped = all(r.status == "skipped" for r in unfinished)
        raise RetryLater(f"{email}: " + "; ".join(f"{'+'.join(r.calendars)} {r.status}" for r in unfinished),
                         delay=2.0 if skipped else 30.0, cap=30.0 if skipped else 300.0)
    outcome.cleared = mark is not None and due.clear(ctx, mark)
    return outcome


def _record_propagation(ctx: AppContext, results: list[sync.PairResult], changed_at: datetime) -> None:
    written = now_utc()
    for result in results:
        if result.writes and result.status in ("ok", "partial"):
            propagation.record(ctx, "sync", "+".join(result.providers), changed_at, written)


async def _presence_after_sync(ctx: AppContext, user_id: int, mark: due.Due | None) -> None:
    """A person's events moved: their presence is decided again now (a write only when it changes)."""
    from zoomcal.app.presence import driver

    service = driver(ctx)
    with ctx.store.session() as s:
        user = s.get(User, user_id)
    if user is None:
        return
    outcome = await service.keep_in_line(user, ctx.now())
    if outcome is not None and outcome.written and mark is not None and mark.changed_at is not None:
        propagation.record(ctx, "presence", _source(mark.reason), mark.changed_at, now_utc())


def _source(reason: str) -> str:
    """The channel that reported the change a mark stands for ("zoom:meeting.updated" -> "zoom"), or ""."""
    channel = reason.partition(":")[0]
    return channel if channel in push.channels() else ""


# --- periodic work --------------------------------------------------------------------------------------------

def _tenants(services: Services, only: str | None) -> list[tuple[int, str]]:
    return [(tid, name) for tid, name in services.tenants() if only in (None, name)]


def overdue(services: Services, older_than: timedelta, tenant: str | None = None) -> list[due.Due]:
    """Due marks nobody served for `older_than` (a job lost with its worker, a defer lost with its process), of
    every tenant or of one."""
    found: list[due.Due] = []
    for _tid, name in services.tenants():
        if tenant in (None, name):
            found += due.pending(services.context(name, SYSTEM), older_than)
    return found


async def refresh_tokens(services: Services, ahead: timedelta = timedelta(minutes=10), *,
                         tenant: str | None = None) -> dict[str, int]:
    """Refresh the shared access tokens that expire within `ahead`, before a sync needs them (one refresh at a
    time per account, under its row lock, whichever process does it)."""
    counts = {"refreshed": 0, "failed": 0}
    limit = now_utc() + ahead
    for _tid, name in _tenants(services, tenant):
        ctx = services.context(name, SYSTEM)
        with ctx.store.session() as s:
            accounts = list(s.scalars(select(Account).where(Account.status == "ok",
                                                            Account.access_expires_at.is_not(None),
                                                            Account.access_expires_at <= limit)))
        for account in accounts:
            spec = registry.get(account.provider) if account.provider in registry.keys() else None
            if spec is None or spec.grant is None:
                continue
            view, env = services.provider_env(ctx, account, None, ctx.rules())
            grant = spec.grant
            source = stored_tokens(ctx.store, services.vault, account.id,
                                   lambda secret, v=view, e=env, g=grant: g(replace(v, secret=secret, on_rotate=None),
                                                                            e),
                                   margin=ahead.total_seconds())
            try:
                async with httpx.AsyncClient(verify=tls(), transport=services.transport,
                                             timeout=services.settings.http_timeout) as c:
                    await source.token(c)
                counts["refreshed"] += 1
            except AuthExpired as exc:
                counts["failed"] += 1
                TOKEN_REFRESH_FAILURES.labels(provider=account.provider, reason="refused").inc()
                with ctx.store.transaction() as s:
                    row = s.get(Account, account.id)
                    if row is not None:
                        row.status, row.status_reason = "reauth", f"token refresh refused: {exc}"[:500]
            except (ConnectorError, httpx.HTTPError) as exc:
                counts["failed"] += 1
                TOKEN_REFRESH_FAILURES.labels(provider=account.provider, reason="unreachable").inc()
                log.warning("token_refresh_failed", account=account.id, error=type(exc).__name__)
    return counts


async def check_accounts(services: Services, *, tenant: str | None = None) -> int:
    """Ask every account's provider whether the link still holds, as it was made (credentials, e-mail, role,
    licence, scopes): what changed marks the account as needing to be linked again, with the reason."""
    from zoomcal.app import accounts

    checked = 0
    for _tid, name in _tenants(services, tenant):
        checked += len(await accounts.health(services.context(name, SYSTEM)))
    return checked


async def renew_channels(services: Services, ahead: timedelta | None = None, *,
                         tenant: str | None = None) -> dict[str, int]:
    """Renew push channels that expire soon (each channel's own margin unless `ahead`), or that their provider
    asked to renew or dropped, and create the ones a calendar lacks."""
    from zoomcal.app import channels

    totals: dict[str, int] = {"created": 0, "renewed": 0, "failed": 0}
    for _tid, name in _tenants(services, tenant):
        done = await channels.renew_due(services.context(name, SYSTEM), ahead)
        for key in totals:
            totals[key] += int(getattr(done, key, 0))
    return totals


async def presence_tick(services: Services, since: datetime, until: datetime, *, tenant: str | None = None) -> int:
    """People whose busy time starts or ends in (since, until]: their presence is decided again now (the due
    times come from the store, so any worker can serve them and none is lost with a process)."""
    from zoomcal.app.presence import driver

    evaluated = 0
    for _tid, name in _tenants(services, tenant):
        ctx = services.context(name, SYSTEM)
        with ctx.store.session() as s:
            ids = set(s.scalars(select(BusyInterval.user_id).where(
                ((BusyInterval.start_at > since) & (BusyInterval.start_at <= until))
                | ((BusyInterval.end_at > since) & (BusyInterval.end_at <= until))).distinct()))
            users = list(s.scalars(select(User).where(User.id.in_(ids)))) if ids else []
        if not users:
            continue
        service = driver(ctx)
        for user in users:
            if await service.keep_in_line(user, until) is not None:
                evaluated += 1
    return evaluated
