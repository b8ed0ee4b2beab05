"""Notifications from providers: verify them on their channel, find whose calendars they name (in every tenant),
and mark those people's sync as due. A notification never carries data that is trusted: the sync re-reads the
provider, so a forged or repeated one can cost a listing, never a wrong write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from zoomcal.app.context import Actor, AppContext, Services
from zoomcal.connectors import registry
from zoomcal.connectors.spec import PushChannel, PushRefused, PushTarget
from zoomcal.logging import get_logger
from zoomcal.store.models import Account, Calendar, Link, User

log = get_logger("zoomcal.push")
WEBHOOK = Actor("webhook", "system")


@dataclass
class PushAnswer:
    status: int
    body: dict[str, Any]
    refused: str | None = None
    marked: list[tuple[str, str]] = field(default_factory=list)    # (tenant, user) whose sync is now due


def channels() -> dict[str, PushChannel]:
    return {spec.push.name: spec.push for spec in registry.all_specs() if spec.push is not None}


def owners(ctx: AppContext, target: PushTarget) -> list[str]:
    """E-mails of the tenant's users a target belongs to: the owner of the calendar, or of the item."""
    with ctx.store.session() as s:
        query = (select(User.email).join(Calendar, Calendar.user_id == User.id)
                 .join(Account, Account.id == Calendar.account_id).where(Account.provider == target.provider))
        if target.item is not None:
            query = query.join(Link, Link.calendar_id == Calendar.id).where(Link.remote_id == target.item)
        else:
            query = query.where(Calendar.remote_id == target.calendar)
        return sorted(set(s.scalars(query)))


def receive(services: Services, channel_name: str, headers: Mapping[str, str], body: bytes, now: float
            ) -> PushAnswer:
    channel = channels().get(channel_name)
    if channel is None:
        return PushAnswer(404, {"error": f"no notification channel {channel_name!r}"})
    secret = getattr(services.settings, channel.secret_setting, None)
    if not secret:
        return PushAnswer(503, {"error": f"the {channel_name} channel has no secret configured"})
    try:
        event = channel.verify(secret, headers, body, now)
        answer = channel.handshake(secret, event)
    except PushRefused as exc:
        log.warning("push_refused", channel=channel_name, reason=str(exc))
        return PushAnswer(401, {"error": str(exc)}, refused=str(exc))
    if answer is not None:
        return PushAnswer(200, answer)
    targets = [t for spec in registry.all_specs() if spec.push is channel and spec.push_targets
               for t in spec.push_targets(event)]
    marked: list[tuple[str, str]] = []
    for _tenant_id, tenant in services.tenants():
        ctx = services.context(tenant, WEBHOOK)
        for email in sorted({e for t in targets for e in owners(ctx, t)}):
            ctx.jobs.defer("sync", tenant=tenant, user=email, reason=f"{channel_name}:{event.get('event', '')}")
            marked.append((tenant, email))
    return PushAnswer(200, {"received": event.get("event"), "acted": bool(marked)}, marked=marked)
