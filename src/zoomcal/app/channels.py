"""Push channels zoomcal creates per calendar (Google `events.watch`, Graph subscriptions): created when a
calendar is linked, renewed before the provider ends them (or when it asks), stopped when the account is unlinked.

Each is stored in `push_subscriptions` with its token sealed, so a notification on it can be verified. A channel
is an optimisation: failing to create or renew one never fails a link, it is written to the sync log, and the
polling round still finds every change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from zoomcal.app.context import AppContext
from zoomcal.availability.intervals import as_utc
from zoomcal.connectors import registry
from zoomcal.connectors.spec import PushChannel, Subscription
from zoomcal.errors import ConfigError, ConnectorError
from zoomcal.logging import get_logger
from zoomcal.store import repo
from zoomcal.store.models import Account, Calendar, PushSubscription

log = get_logger("zoomcal.channels")
ACTIVE = "active"
RENEW_NOW = "renew"          # the provider asked for a renewal (Graph: reauthorizationRequired)
REMOVED = "removed"          # the provider dropped it (Graph: subscriptionRemoved): create a new one


@dataclass
class Renewed:
    created: int = 0
    renewed: int = 0
    failed: int = 0
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def channel_of(provider: str) -> PushChannel | None:
    try:
        push = registry.get(provider).push
    except registry.UnknownProvider:
        return None
    return push if push is not None and push.subscribable else None


def callback_url(ctx: AppContext, channel: PushChannel) -> str | None:
    base = (ctx.settings.public_url or "").strip().rstrip("/")
    return f"{base}/webhooks/{channel.name}" if base else None


def stored(ctx: AppContext, row: PushSubscription) -> Subscription:
    token = ctx.vault.open(row.token).get("token", "") if row.token else ""
    return Subscription(row.channel_id, row.resource_id, token, as_utc(row.expires_at))


def _note(ctx: AppContext, user_id: int | None, message: str, level: str = "info") -> None:
    with ctx.store.transaction() as s:
        repo.log(s, ctx.tenant_id, "push", message, user_id=user_id, level=level)


def _load(ctx: AppContext, account_id: int) -> tuple[Account, Calendar | None] | None:
    with ctx.store.session() as s:
        account = s.get(Account, account_id)
        if account is None:
            return None
        calendar = s.scalar(select(Calendar).where(Calendar.account_id == account.id).order_by(Calendar.id).limit(1))
        s.expunge_all()
        return account, calendar


async def subscribe(ctx: AppContext, account_id: int) -> str:
    """Create the push channel of an account's calendar, when its provider has one -> what happened, in words."""
    loaded = _load(ctx, account_id)
    if loaded is None or loaded[1] is None:
        return "no calendar to watch"
    account, calendar = loaded
    channel = channel_of(account.provider)
    if channel is None:
        return "the provider has no push channel: changes are found by polling"
    url = callback_url(ctx, channel)
    if url is None:
        message = "no public_url is set: no push channel was created, changes are found by polling"
        log.info("push_channel_skipped", account=account_id, reason="no public_url")
        return message
    view, env = ctx.services.provider_env(ctx, account, calendar, ctx.rules())
    try:
        sub = await channel.subscribe(view, env, url)
    except (ConnectorError, ConfigError) as exc:
        message = f"could not create the push channel ({type(exc).__name__}: {exc}); changes are found by polling"
        _note(ctx, account.user_id, message, level="warning")
        return message
    with ctx.store.transaction() as s:
        s.add(PushSubscription(tenant_id=ctx.tenant_id, account_id=account.id, calendar_id=calendar.id,
                               provider=account.provider, channel_id=sub.channel_id, resource_id=sub.resource_id,
                               token=ctx.vault.seal({"token": sub.token}), expires_at=sub.expires_at,
                               status=ACTIVE))
    _note(ctx, account.user_id, f"push channel created; it ends {sub.expires_at:%Y-%m-%d %H:%M} UTC")
    return "push channel created"


async def stop(ctx: AppContext, account_id: int) -> list[str]:
    """Stop the account's push channels at the provider and forget them -> what happened to each."""
    loaded = _load(ctx, account_id)
    if loaded is None:
        return []
    account, calendar = loaded
    with ctx.store.session() as s:
        rows = list(s.scalars(select(PushSubscription).where(PushSubscription.account_id == account_id)))
        s.expunge_all()
    channel = channel_of(account.provider)
    out = []
    for row in rows:
        if channel is not None and channel.stop is not None:
            view, env = ctx.services.provider_env(ctx, account, calendar, ctx.rules())
            try:
                await channel.stop(view, env, stored(ctx, row))
                out.append("push channel stopped")
            except (ConnectorError, ConfigError) as exc:
                out.append(f"could not stop the push channel ({exc}); it ends by itself")
                _note(ctx, account.user_id, out[-1], level="warning")
        with ctx.store.transaction() as s:
            found = s.get(PushSubscription, row.id)
            if found is not None:
                s.delete(found)
    return out


async def renew_due(ctx: AppContext, ahead: timedelta | None = None) -> Renewed:
    """Renew the channels that end within `ahead` (default: each channel's own margin) or that their provider asked
    to renew or dropped, and create the missing ones (calendars linked before a public_url was set, or whose
    creation failed)."""
    counts = Renewed()
    now = datetime.now(UTC)
    with ctx.store.session() as s:
        rows = list(s.scalars(select(PushSubscription).order_by(PushSubscription.id)))
        accounts = list(s.execute(select(Account, Calendar).join(Calendar, Calendar.account_id == Account.id)
                                  .order_by(Account.id)))
        s.expunge_all()
    of: dict[str, PushChannel | None] = {}     # each provider's channel, looked up once per round

    def channel_for(provider: str) -> PushChannel | None:
        if provider not in of:
            of[provider] = channel_of(provider)
        return of[provider]

    subscribable = [(a, c) for a, c in accounts if channel_for(a.provider) is not None]
    if not subscribable:
        return counts
    if not (ctx.settings.public_url or "").strip():
        counts.skipped = "no public_url is set"
        return counts
    watched = {row.calendar_id for row in rows}
    by_account = {a.id: (a, c) for a, c in subscribable}
    for row in rows:
        pair = by_account.get(row.account_id)
        channel = channel_for(row.provider)
        if pair is None or channel is None:
            continue
        margin = ahead if ahead is not None else channel.renew_ahead
        if row.status == ACTIVE and as_utc(row.expires_at) > now + margin:
            continue
        account, calendar = pair
        url = callback_url(ctx, channel)
        view, env = ctx.services.provider_env(ctx, account, calendar, ctx.rules())
        try:
            if row.status == REMOVED or channel.renew is None:
                fresh = await channel.subscribe(view, env, url)
                counts.created += 1
            else:
                fresh = await channel.renew(view, env, stored(ctx, row), url)
                counts.renewed += 1
        except (ConnectorError, ConfigError) as exc:
            counts.failed += 1
            _note(ctx, account.user_id, f"could not renew the push channel ({type(exc).__name__}: {exc})",
                  level="warning")
            continue
        with ctx.store.transaction() as s:
            found = s.get(PushSubscription, row.id)
            if found is not None:
                found.channel_id, found.resource_id = fresh.channel_id, fresh.resource_id
                found.token = ctx.vault.seal({"token": fresh.token})
                found.expires_at, found.status, found.renewed_at = fresh.expires_at, ACTIVE, now
    for account, calendar in subscribable:
        if calendar.id in watched:
            continue
        outcome = await subscribe(ctx, account.id)
        if outcome == "push channel created":
            counts.created += 1
        else:
            counts.failed += 1
    return counts


def flag(ctx: AppContext, channel_id: str, status: str) -> None:
    """The provider asked for a renewal, or dropped the channel: the next renewal round takes care of it."""
    with ctx.store.transaction() as s:
        row = s.scalar(select(PushSubscription).where(PushSubscription.channel_id == channel_id))
        if row is not None:
            row.status = status
