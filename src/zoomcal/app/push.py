"""Notifications from providers: verify them on their channel, find whose calendars they name (in every tenant),
and mark those people's sync as due. A notification never carries data that is trusted: the sync re-reads the
provider, so a forged or repeated one can cost a listing, never a wrong write.

Two kinds of channel: signed with a configured secret (Zoom), or backed by a subscription zoomcal created for one
calendar (Google, Graph), where each notice names its subscription and is checked against the stored token."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from zoomcal.app import due
from zoomcal.app.context import Actor, AppContext, Services
from zoomcal.connectors import registry
from zoomcal.connectors.spec import (
    CHANGED,
    NOTHING,
    PRESENCE,
    RECREATE,
    RENEW,
    RESYNC,
    Notice,
    PushChannel,
    PushRefused,
    PushTarget,
)
from zoomcal.logging import get_logger
from zoomcal.metrics import WEBHOOKS
from zoomcal.store.models import Account, Calendar, Link, PushSubscription, Tenant, User

log = get_logger("zoomcal.push")
WEBHOOK = Actor("webhook", "system")


@dataclass
class PushAnswer:
    status: int
    body: dict[str, Any]
    refused: str | None = None
    marked: list[tuple[str, str]] = field(default_factory=list)    # (tenant, user) whose sync is now due
    text: str | None = None                                         # answered as text/plain instead of the body
    presence: list[tuple[str, str]] = field(default_factory=list)  # (tenant, user) whose status was set by hand


def channels() -> dict[str, PushChannel]:
    return {spec.push.name: spec.push for spec in registry.all_specs() if spec.push is not None}


def verifies_offline(channel_name: str) -> bool:
    """Whether `verify` reads no store for this channel (signed with a configured secret), so it may run on an
    event loop; a subscription-backed channel looks its subscriptions up."""
    channel = channels().get(channel_name)
    return channel is None or channel.notices is None


def owners(ctx: AppContext, target: PushTarget) -> list[str]:
    """E-mails of the tenant's users a target belongs to: the owner of the calendar, or of the item."""
    return sorted({email for tenant_id, _tenant, _user_id, email, _cal in _owners_everywhere(ctx.services, [target])
                   if tenant_id == ctx.tenant_id})


@cache
def _owner_query():
    """The people, in every tenant, whose calendar at a provider is one of some calendar ids or holds one of some
    items: one statement, built once (every signed notification asks it)."""
    in_items = select(Link.calendar_id).where(Link.remote_id.in_(bindparam("items", expanding=True)))
    return (select(User.tenant_id, Tenant.name, User.id, User.email, Calendar.id)
            .join(Tenant, Tenant.id == User.tenant_id).join(Calendar, Calendar.user_id == User.id)
            .join(Account, Account.id == Calendar.account_id)
            .where(Account.provider == bindparam("provider"),
                   or_(Calendar.remote_id.in_(bindparam("calendars", expanding=True)), Calendar.id.in_(in_items)))
            .distinct())


def _owners_everywhere(services: Services, targets: list[PushTarget], s: Session | None = None) -> list[tuple]:
    """(tenant id, tenant name, user id, e-mail, calendar id) of every calendar the targets name, across tenants."""
    found: set[tuple] = set()
    with nullcontext(s) if s is not None else services.db.session() as session:
        for provider in sorted({t.provider for t in targets}):
            params = {"provider": provider,
                      "calendars": [t.calendar for t in targets if t.provider == provider and t.item is None],
                      "items": [t.item for t in targets if t.provider == provider and t.item is not None]}
            found.update(tuple(row) for row in session.connection().execute(_owner_query(), params))
    return sorted(found)


def _mark_owners(services: Services, batch: list[tuple[list[PushTarget], str]]) -> list[list[tuple[str, str]]]:
    """Mark the sync of everyone each notification's targets name due, with the calendars named (only they need
    listing) — the whole batch in one transaction, in every tenant — then wake the queue -> per notification, the
    (tenant, e-mail) marked."""
    found: list[list[tuple]] = []
    with services.db.transaction() as s:
        at = datetime.now(UTC)
        for targets, reason in batch:
            rows = _owners_everywhere(services, targets, s) if targets else []
            changed_at = min((t.changed_at for t in targets if t.changed_at is not None), default=None)
            named: dict[int, dict[int, set[int]]] = {}        # tenant -> person -> the calendars named
            for tenant_id, _tenant, user_id, _email, calendar_id in rows:
                named.setdefault(tenant_id, {}).setdefault(user_id, set()).add(calendar_id)
            for tenant_id, calendars in sorted(named.items()):
                due.mark_ids(s, tenant_id, list(calendars), reason, changed_at, at, calendars=calendars)
            found.append(sorted({r[:4] for r in rows}))
    for people, (_targets, reason) in zip(found, batch, strict=True):
        for _tenant_id, tenant, _user_id, email in people:
            services.jobs.defer("sync", tenant=tenant, user=email, reason=reason)
    return [[(tenant, email) for _tenant_id, tenant, _user_id, email in people] for people in found]


QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


class _SecurityLog:
    """Refused notifications write nothing to the store (a flood of forged requests must cost no writes): a
    metric counts each, and a log line names the first of each channel and reason, then at most one line per
    `every` seconds saying how many more were refused."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self.lock = threading.Lock()
        self.last: dict[tuple[str, str], float] = {}
        self.quiet: dict[tuple[str, str], int] = {}

    def refused(self, channel: str, reason: str, count: int = 1) -> None:
        WEBHOOKS.labels(channel, "rejected").inc(count)
        # the kind of refusal, without the values a sender chose (a timestamp, a channel id), so a flood of
        # varied forgeries is still one kind; kinds not seen for a while are forgotten
        key, now = (channel, QUOTED.sub("…", reason)[:120]), time.monotonic()
        with self.lock:
            if len(self.last) > 1000:
                self.last = {k: t for k, t in self.last.items() if now - t < self.every}
                self.quiet = {k: n for k, n in self.quiet.items() if k in self.last}
            if now - self.last.get(key, -self.every) < self.every:
                self.quiet[key] = self.quiet.get(key, 0) + count
                return
            self.last[key], more = now, self.quiet.pop(key, 0)
        log.error("push_refused", channel=channel, reason=reason, refused_since_last_line=more)   # security


SECURITY = _SecurityLog()


class _Recorded:
    """Signed notifications this process recorded lately, by a digest of their exact bytes: one sent again within
    the signature's time window (a replay, or a retry of one already answered) is answered without acting. Kept
    twice the window; a notification is remembered only once its marks are committed, so a retry of one that
    failed is still acted on."""

    def __init__(self, keep: float = 600.0, most: int = 100_000):
        self.keep, self.most = keep, most
        self.lock = threading.Lock()
        self.until: dict[str, float] = {}

    def __contains__(self, key: str) -> bool:
        with self.lock:
            return self.until.get(key, 0.0) > time.monotonic()

    def add(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self.lock:
            if len(self.until) + len(keys) > self.most:
                self.until = {k: t for k, t in self.until.items() if t > now}
                while len(self.until) + len(keys) > self.most:      # still full of live ones: forget the oldest
                    self.until.pop(next(iter(self.until)))
            for key in keys:
                self.until[key] = now + self.keep


RECORDED = _Recorded()


def _refused(channel_name: str, reason: str) -> PushAnswer:
    SECURITY.refused(channel_name, reason)
    return PushAnswer(401, {"error": reason}, refused=reason)


@dataclass
class Verified:
    """A signed notification that checked out, waiting to be recorded (`record`)."""
    channel: str
    event: dict[str, Any]
    targets: list[PushTarget]
    digest: str = ""

    @property
    def reason(self) -> str:
        return f"{self.channel}:{self.event.get('event', '')}"


def receive(services: Services, channel_name: str, headers: Mapping[str, str], body: bytes, now: float,
            query: Mapping[str, str] | None = None) -> PushAnswer:
    """Verify a notification and record what it says (due marks, a status set by hand) -> the answer to give."""
    checked = verify(services, channel_name, headers, body, now, query)
    return checked if isinstance(checked, PushAnswer) else record(services, [checked])[0]


def verify(services: Services, channel_name: str, headers: Mapping[str, str], body: bytes, now: float,
           query: Mapping[str, str] | None = None) -> PushAnswer | Verified:
    """The first half of `receive`. For a signed channel it reads no store: the answer when there is nothing to
    record (refused, a handshake), else what to record. A subscription-backed channel is answered whole here (its
    notices name stored subscriptions)."""
    channel = channels().get(channel_name)
    if channel is None:
        return PushAnswer(404, {"error": f"no notification channel {channel_name!r}"})
    WEBHOOKS.labels(channel_name, "received").inc()
    if channel.notices is not None:
        return _subscribed(services, channel, headers, query or {}, body)
    setting = getattr(services.settings, channel.secret_setting, None) if channel.secret_setting else None
    if not setting or channel.verify is None:
        return PushAnswer(503, {"error": f"the {channel_name} channel has no secret configured"})
    try:
        event = channel.verify(setting, headers, body, now)
        answer = channel.handshake(setting, event) if channel.handshake is not None else None
    except PushRefused as exc:
        return _refused(channel_name, str(exc))
    WEBHOOKS.labels(channel_name, "verified").inc()
    if answer is not None:
        WEBHOOKS.labels(channel_name, "handshake").inc()
        return PushAnswer(200, answer)
    digest = hashlib.sha256(channel_name.encode() + b"\0" + body).hexdigest()
    if digest in RECORDED:
        WEBHOOKS.labels(channel_name, "repeated").inc()
        return PushAnswer(200, {"received": event.get("event"), "acted": False, "repeated": True})
    targets = [t for spec in registry.all_specs() if spec.push is channel and spec.push_targets
               for t in spec.push_targets(event)]
    return Verified(channel_name, event, targets, digest)


def record(services: Services, batch: list[Verified]) -> list[PushAnswer]:
    """The second half of `receive`, for any number of verified notifications at once: their due marks in one
    transaction (a burst costs one commit), then statuses set by hand -> an answer per notification."""
    marks = _mark_owners(services, [([t for t in v.targets if t.presence is None], v.reason) for v in batch])
    presence_providers = {spec.key for spec in registry.all_specs() if PRESENCE in spec.roles}
    answers = []
    for verified, marked in zip(batch, marks, strict=True):
        by_hand: list[tuple[str, str]] = []
        for target in verified.targets:
            if target.presence is None or target.provider not in presence_providers:
                continue
            if target.calendar:
                _directory_presence(services, target.calendar, target.presence)
            for _tenant_id, tenant, _user_id, email in sorted({r[:4] for r in _owners_everywhere(services, [target])}):
                if _set_by_hand(services.context(tenant, WEBHOOK), email, target.presence, target.changed_at):
                    by_hand.append((tenant, email))
        if marked or by_hand:
            WEBHOOKS.labels(verified.channel, "acted").inc()
        answers.append(PushAnswer(200, {"received": verified.event.get("event"), "acted": bool(marked or by_hand)},
                                  marked=marked, presence=by_hand))
    RECORDED.add([v.digest for v in batch if v.digest])
    return answers


def _directory_presence(services: Services, zoom_user_id: str, status: str) -> None:
    """A Zoom user's new status shows in every tenant's directory that lists them, whether or not they use
    zoomcal themselves."""
    from zoomcal.app import contacts

    for _tid, tenant in services.tenants():
        contacts.presence_changed(services.context(tenant, WEBHOOK), zoom_user_id, status)


def _set_by_hand(ctx: AppContext, email: str, status: str, at: datetime | None) -> bool:
    from zoomcal.app import presence

    return presence.set_by_hand(ctx, email, status, at or ctx.now())


def _subscribed(services: Services, channel: PushChannel, headers: Mapping[str, str], query: Mapping[str, str],
                body: bytes) -> PushAnswer:
    """A notification on a subscription-backed channel: a validation request is echoed; every notice must name a
    stored subscription and carry its token. Those that do act; the others are refused."""
    name = channel.name
    if channel.challenge is not None and (token := channel.challenge(query)) is not None:
        WEBHOOKS.labels(name, "handshake").inc()
        return PushAnswer(200, {}, text=token)
    try:
        notices = channel.notices(headers, query, body)
    except PushRefused as exc:
        return _refused(name, str(exc))
    acted, passed, refused, marked = 0, 0, [], []
    for notice in notices:
        found = _find(services, notice.channel_id)
        if found is None:
            if notice.action == NOTHING:
                passed += 1          # Google's `sync` may come before the channel is stored: nothing to do anyway
                continue
            refused.append(f"unknown channel {notice.channel_id[:60]!r}")
            continue
        tenant, row = found
        ctx = services.context(tenant, WEBHOOK)
        from zoomcal.app import channels as app_channels

        try:
            channel.check(notice, app_channels.stored(ctx, row))
        except PushRefused as exc:
            refused.append(str(exc))
            continue
        WEBHOOKS.labels(name, "verified").inc()
        passed += 1
        marked += [(tenant, e) for e in _act(ctx, channel, notice, row)]
        acted += notice.action != NOTHING
    if refused and not passed:
        return _refused(name, "; ".join(sorted(set(refused))))
    if refused:
        SECURITY.refused(name, "; ".join(sorted(set(refused))), len(refused))
    if acted:
        WEBHOOKS.labels(name, "acted").inc()
    return PushAnswer(channel.answer_status, {"received": len(notices), "acted": bool(acted),
                                              "refused": len(refused)}, marked=marked)


def _find(services: Services, channel_id: str) -> tuple[str, PushSubscription] | None:
    """The stored subscription a notice names (channel ids are unique across tenants) and its tenant."""
    with services.db.session() as s:
        row = s.execute(select(PushSubscription, Tenant.name).join(Tenant, Tenant.id == PushSubscription.tenant_id)
                        .where(PushSubscription.channel_id == channel_id)).first()
        if row is None:
            return None
        s.expunge(row[0])
        return row[1], row[0]


def _act(ctx: AppContext, channel: PushChannel, notice: Notice, row: PushSubscription) -> list[str]:
    from zoomcal.app import channels as app_channels

    if notice.action == NOTHING:
        return []
    if notice.action == RENEW:
        app_channels.flag(ctx, row.channel_id, app_channels.RENEW_NOW)
        ctx.jobs.defer("channels", tenant=ctx.tenant_name, reason=f"{channel.name}:{notice.action}")
        return []
    if notice.action == RECREATE:
        app_channels.flag(ctx, row.channel_id, app_channels.REMOVED)
        ctx.jobs.defer("channels", tenant=ctx.tenant_name, reason=f"{channel.name}:{notice.action}")
    if notice.action in (CHANGED, RECREATE, RESYNC):
        with ctx.store.session() as s:
            if notice.action == CHANGED and notice.item and notice.version and _held(s, row.calendar_id, notice):
                WEBHOOKS.labels(channel.name, "held").inc()
                return []           # the item is as zoomcal last wrote or read it (the echo of its own write)
            email = s.scalar(select(User.email).join(Calendar, Calendar.user_id == User.id)
                             .where(Calendar.id == row.calendar_id))
        # without a change time in the notification, its arrival is the earliest moment zoomcal knows of the change
        return due.mark(ctx, [email] if email else [], f"{channel.name}:{notice.action}",
                        changed_at=notice.changed_at or datetime.now(UTC),
                        calendars=[row.calendar_id] if notice.action == CHANGED else None)
    return []


def _held(s: Session, calendar_id: int, notice: Notice) -> bool:
    """Whether the item the notice names is, in the version it names, what the store already holds of it."""
    link = s.execute(select(Link.etag, Link.pending).where(Link.calendar_id == calendar_id,
                                                          Link.remote_id == notice.item)).first()
    return link is not None and link.pending is None and link.etag == notice.version
