"""A person's settings: availability (zone, working hours, buffers, calendars that count), which calendar receives
the meetings, and presence rules (the tenant's, or one person's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from zoomcal.app import users
from zoomcal.app.accounts import set_meetings_calendar
from zoomcal.app.context import AppContext
from zoomcal.app.errors import InvalidError
from zoomcal.availability import intervals, query
from zoomcal.domain.timeutil import check_zone
from zoomcal.errors import ConfigError, InvalidItem
from zoomcal.presence.rules import parse_presence_rules
from zoomcal.store.models import AvailabilitySettings, Calendar, PresenceState, Tenant


@dataclass
class Settings:
    user: str
    timezone: str
    working_hours: dict[str, list[list[str]]]
    buffer_before_min: int
    buffer_after_min: int
    excluded_calendars: list[int]
    meetings_calendar: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(s, user_id: int) -> AvailabilitySettings:
    row = s.get(AvailabilitySettings, user_id)
    if row is None:
        row = AvailabilitySettings(user_id=user_id, timezone="UTC", working_hours=dict(query.DEFAULT_HOURS),
                                   buffer_before_min=0, buffer_after_min=0, excluded_calendars=[])
        s.add(row)
    return row


def _shown(s, email: str, user_id: int, row: AvailabilitySettings | None) -> Settings:
    meetings = s.scalar(select(Calendar.id).where(Calendar.user_id == user_id, Calendar.receives_meetings))
    if row is None:
        return Settings(email, "UTC", dict(query.DEFAULT_HOURS), 0, 0, [], meetings)
    return Settings(email, row.timezone, row.working_hours or {}, row.buffer_before_min, row.buffer_after_min,
                    list(row.excluded_calendars or []), meetings)


def get(ctx: AppContext, email: str) -> Settings:
    ctx.require_manage(email)
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        return _shown(s, user.email, user.id, s.get(AvailabilitySettings, user.id))


def update(ctx: AppContext, email: str, *, timezone: str | None = None,
           working_hours: str | dict[str, list[list[str]]] | None = None, buffer_before_min: int | None = None,
           buffer_after_min: int | None = None, excluded_calendars: list[int] | None = None,
           meetings_calendar: int | None = None) -> Settings:
    """Change what is given; busy intervals are recomputed in the same transaction when availability changed."""
    ctx.require_manage(email)
    try:
        hours = query.parse_hours(working_hours) if isinstance(working_hours, str) else working_hours
        if timezone is not None:
            check_zone(timezone)
    except ConfigError as exc:
        raise InvalidError(str(exc), field="working_hours") from exc
    except InvalidItem as exc:
        raise InvalidError(str(exc), field="timezone") from exc
    for name, value in (("buffer_before_min", buffer_before_min), ("buffer_after_min", buffer_after_min)):
        if value is not None and not 0 <= value <= 24 * 60:
            raise InvalidError(f"{name.replace('_min', '').replace('_', ' ')} must be 0 to 1440 minutes", field=name)
    with ctx.store.transaction() as s:
        user = users.find(s, ctx, email)
        mine = set(s.scalars(select(Calendar.id).where(Calendar.user_id == user.id)))
        if excluded_calendars is not None and not set(excluded_calendars) <= mine:
            raise InvalidError(f"calendars {sorted(set(excluded_calendars) - mine)} are not {user.email}'s",
                               field="excluded_calendars")
        if meetings_calendar is not None:
            set_meetings_calendar(s, user, meetings_calendar)
            ctx.audit(s, "calendar.receives_meetings", user.email, {"calendar": meetings_calendar})
        row = _row(s, user.id)
        changed: dict[str, Any] = {}
        for name, value in (("timezone", timezone), ("working_hours", hours),
                            ("buffer_before_min", buffer_before_min), ("buffer_after_min", buffer_after_min),
                            ("excluded_calendars", excluded_calendars)):
            if value is not None and getattr(row, name) != value:
                setattr(row, name, value)
                changed[name] = value
        if changed:
            s.flush()
            avail = ctx.rules().availability
            lo, hi = intervals.window(avail.window_past_days, avail.window_future_days, ctx.now())
            intervals.rebuild_user(s, ctx.tenant_id, user.id, lo, hi)
            ctx.audit(s, "availability.settings", user.email, changed)
        return _shown(s, user.email, user.id, row)


def set_presence_rules(ctx: AppContext, rules: dict[str, Any], email: str | None = None) -> int:
    """Install presence rules (validated first) for the tenant, or for one person. Returns how many rules."""
    if email is None:
        ctx.require_admin()
    else:
        ctx.require_manage(email)
    try:
        parse_presence_rules(rules)
    except ConfigError as exc:
        raise InvalidError(str(exc), field="rules") from exc
    count = len(rules.get("rule", []))
    with ctx.store.transaction() as s:
        if email is not None:
            user = users.find(s, ctx, email)
            state = s.get(PresenceState, user.id) or PresenceState(user_id=user.id)
            state.rules = rules
            s.add(state)
            ctx.audit(s, "presence.rules", user.email, {"rules": count})
        else:
            s.get(Tenant, ctx.tenant_id).presence_rules = rules
            ctx.audit(s, "presence.rules", "tenant", {"rules": count})
    return count


def set_mapping_rules(ctx: AppContext, overrides: dict[str, Any]) -> None:
    """The tenant's mapping-rules overrides (validated against the shipped defaults first)."""
    from zoomcal.mapping.rules import parse_rules

    ctx.require_admin()
    try:
        parse_rules(overrides)
    except ConfigError as exc:
        raise InvalidError(str(exc), field="rules") from exc
    with ctx.store.transaction() as s:
        s.get(Tenant, ctx.tenant_id).mapping_rules = overrides or None
        ctx.audit(s, "mapping.rules", "tenant", {"keys": sorted(overrides)})
