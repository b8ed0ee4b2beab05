"""Presence: why a person's Zoom status is what it is, what a rules change would do, and keeping it in line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zoomcal.app import users
from zoomcal.app.availability import index
from zoomcal.app.context import AppContext
from zoomcal.app.errors import InvalidError
from zoomcal.errors import ConfigError
from zoomcal.presence.rules import parse_presence_rules
from zoomcal.presence.service import Outcome, PresenceService


def driver(ctx: AppContext) -> PresenceService:
    """The tenant's presence driver: the busy index, a due-time queue, at most one write per change."""
    return PresenceService(ctx, index(ctx))


async def explain(ctx: AppContext, email: str, at: datetime | None = None) -> Outcome:
    """Which rule fires for a person (now or at a moment), and why every earlier rule did not. Writes nothing."""
    ctx.require_manage(email)
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
    return await driver(ctx).evaluate(user, at or ctx.now(), write=False)


@dataclass
class Preview:
    user: str
    state: str
    zoom_status: str | None
    now: dict[str, Any]
    proposed: dict[str, Any]
    changes: bool


async def dry_run(ctx: AppContext, rules: dict[str, Any]) -> list[Preview]:
    """What a rules change would do to everyone right now, against the rules in force. Writes nothing."""
    ctx.require_admin()
    try:
        proposed = parse_presence_rules(rules)
    except ConfigError as exc:
        raise InvalidError(str(exc), field="rules") from exc
    service = driver(ctx)
    out = []
    at = ctx.now()
    for user in service.users():
        now = await service.evaluate(user, at, write=False)
        new = await service.evaluate(user, at, write=False, rules=proposed)
        out.append(Preview(user.email, now.situation.kind, now.current,
                           {"rule": now.decision.rule, "write": now.decision.status},
                           {"rule": new.decision.rule, "write": new.decision.status, "reason": new.decision.reason},
                           (now.decision.rule, now.decision.status) != (new.decision.rule, new.decision.status)))
    return out


async def run_once(ctx: AppContext) -> list[Outcome]:
    """Evaluate everyone now and write where the rules say so (only on change)."""
    ctx.require_admin()
    return await driver(ctx).start(ctx.now())


def set_by_hand(ctx: AppContext, email: str, status: str, at: datetime) -> bool:
    """The person set their Zoom status themselves (Zoom's notification says so): it is respected from now until
    their calendar state changes -> whether it was recorded (not for Zoom's live states or zoomcal's own write)."""
    ctx.require_manage(email)
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        s.expunge(user)
    return driver(ctx).set_by_hand(user, status, at)


@dataclass
class Span:
    start: datetime
    end: datetime
    state: str                  # the calendar's state: busy, tentative, ooo, focus, free
    status: str | None          # what Zoom would show (None: whatever the person set; zoomcal writes nothing)
    rule: str | None
    title: str | None


MAX_PREVIEW_HOURS = 24 * 7


async def preview(ctx: AppContext, email: str, hours: int = 72, step_minutes: int = 30,
                  rules: dict[str, Any] | None = None) -> list[Span]:
    """What Zoom would show for a person over the next `hours`, by the rules in force (or proposed `rules`): the
    calendar's state at each change and at least every `step_minutes`, decided as the presence driver decides,
    each decision remembered for the next. Reads no Zoom status and writes nothing."""
    ctx.require_manage(email)
    if not 0 < hours <= MAX_PREVIEW_HOURS or not 5 <= step_minutes <= 240:
        raise InvalidError(f"a preview covers 1 to {MAX_PREVIEW_HOURS} hours in steps of 5 to 240 minutes",
                           field="hours")
    try:
        proposed = parse_presence_rules(rules) if rules is not None else None
    except ConfigError as exc:
        raise InvalidError(str(exc), field="rules") from exc
    from datetime import timedelta

    from zoomcal.presence.engine import decide

    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        s.expunge(user)
    service = driver(ctx)
    busy = service.busy(user)
    chosen = proposed or service.rules_for(user)
    memory = service.memory(user.id)
    shown = memory.last_written
    at = ctx.now()
    end = at + timedelta(hours=hours)
    step = timedelta(minutes=step_minutes)
    spans: list[Span] = []
    while at < end:
        situation = service.situation(user, at, busy)
        decision = decide(situation, shown, memory, chosen, at)
        memory = decision.memory
        shown = decision.status or shown
        following = min(end, at + step, situation.interval_end or end)
        if following <= at:
            following = at + step
        last = spans[-1] if spans else None
        if last is not None and (last.state, last.status, last.title) == (situation.kind, shown, situation.title):
            last.end = following
        else:
            spans.append(Span(at, following, situation.kind, shown, decision.rule, situation.title))
        at = following
    return spans


def rules_text(ctx: AppContext, email: str | None = None) -> str:
    """The presence rules in force (the shipped defaults, the rules file, the tenant's own, and with `email` that
    person's own), as the TOML a rules file holds — what an editor starts from."""
    from zoomcal.presence.rules import load_presence_rules
    from zoomcal.store.models import PresenceState, Tenant
    from zoomcal.tomlfile import dumps

    if email is None:
        ctx.require_admin()
    else:
        ctx.require_manage(email)
    with ctx.store.session() as s:
        tenant = s.get(Tenant, ctx.tenant_id).presence_rules
        person = None
        if email is not None:
            state = s.get(PresenceState, users.find(s, ctx, email).id)
            person = state.rules if state else None
    rules = load_presence_rules(ctx.settings.presence_rules, tenant, person)
    return dumps(rules.model_dump(mode="json", exclude_none=True))


def rules_of_text(text: str) -> dict[str, Any]:
    """Presence rules typed as TOML, checked: the dict `dry_run`, `preview` and `settings.set_presence_rules` take."""
    import tomllib

    try:
        data = tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as exc:
        raise InvalidError(f"the rules are not valid TOML: {exc}", field="rules") from exc
    try:
        parse_presence_rules(data)
    except ConfigError as exc:
        raise InvalidError(str(exc), field="rules") from exc
    return data
