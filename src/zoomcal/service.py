"""Wiring: store rows (users, accounts, calendars) -> connectors -> sync pairs.

Everything here is configuration: the same code talks to the real Zoom and Google APIs or to the
sandboxes, depending only on the base URLs (and, in tests, an in-process transport).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from zoomcal.auth.oauth import RefreshTokenSource, TokenSource, ZoomAccountCredentials
from zoomcal.auth.vault import Vault
from zoomcal.config import Settings
from zoomcal.connectors.caldav.connector import CalDavConnector
from zoomcal.connectors.google.connector import GoogleConnector
from zoomcal.connectors.graph.connector import GraphConnector
from zoomcal.connectors.http import ApiClient
from zoomcal.connectors.ics.connector import IcsConnector
from zoomcal.connectors.zoom.connector import ZoomConnector
from zoomcal.errors import ConfigError
from zoomcal.mapping.rules import MappingRules, load_rules
from zoomcal.net import Resolver, check_url, system_resolver
from zoomcal.store import repo
from zoomcal.store.db import Database
from zoomcal.store.models import Account, Calendar, Tenant, User
from zoomcal.sync.engine import SideSpec, SyncPair

PROVIDERS = ("zoom", "google", "graph", "ews", "ics", "caldav", "zoom-calendar")
LABELS = {"ews": "Exchange", "caldav": "CalDAV", "ics": "ICS feed", "zoom-calendar": "Zoom Calendar"}


@dataclass
class Context:
    settings: Settings
    db: Database
    vault: Vault
    transport: httpx.AsyncBaseTransport | None = None
    resolver: Resolver = system_resolver

    @classmethod
    def from_settings(cls, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> Context:
        db = Database(settings.resolved_database_url())
        if settings.vault_keys:
            vault = Vault.from_spec(settings.vault_keys)
        else:
            vault = Vault.from_file(settings.data_dir / "vault.keys")
        return cls(settings, db, vault, transport)


def tenant_rules(ctx: Context, tenant: Tenant) -> MappingRules:
    return load_rules(ctx.settings.mapping_rules, overrides=tenant.mapping_rules or None)


def add_user(ctx: Context, email: str, name: str = "", tenant: str = "default", actor: str = "cli") -> User:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise ConfigError(f"not an e-mail address: {email!r}")
    with ctx.db.transaction() as s:
        t = repo.get_or_create_tenant(s, tenant)
        if repo.find_user(s, t.id, email) is not None:
            raise ConfigError(f"user {email} already exists")
        user = User(tenant_id=t.id, email=email, name=name)
        s.add(user)
        s.flush()
        repo.audit(s, t.id, actor, "user.add", email)
        return user


def add_account(ctx: Context, email: str, provider: str, config: dict[str, Any], secret: dict[str, Any],
                calendar_id: str, calendar_name: str = "", receives_meetings: bool | None = None,
                tenant: str = "default", actor: str = "cli") -> Account:
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r}; one of {PROVIDERS}")
    with ctx.db.transaction() as s:
        t = repo.get_or_create_tenant(s, tenant)
        user = repo.find_user(s, t.id, email)
        if user is None:
            raise ConfigError(f"no user {email}; add it first with `zoomcal user add`")
        if provider in ("ics", "caldav") and "://" in calendar_id:
            check_url(calendar_id, ctx.settings.allow_private_urls, ctx.resolver)
        if config.get("url"):
            check_url(config["url"], ctx.settings.allow_private_urls, ctx.resolver)
        account = Account(tenant_id=t.id, user_id=user.id, provider=provider, external_id=calendar_id,
                          config=config, secret=ctx.vault.seal(secret) if secret else None)
        s.add(account)
        s.flush()
        role = {"zoom": "meetings", "ics": "feed"}.get(provider, "calendar")
        if receives_meetings is None:
            receives_meetings = role == "calendar" and not any(
                c.receives_meetings for c in repo.user_calendars(s, user.id))
        calendar = Calendar(tenant_id=t.id, user_id=user.id, account_id=account.id, remote_id=calendar_id,
                            name=calendar_name or calendar_id, role=role, receives_meetings=False)
        s.add(calendar)
        s.flush()
        if receives_meetings and role == "calendar":
            set_meetings_calendar(s, user, calendar.id)
        repo.audit(s, t.id, actor, "account.add", f"{email}:{provider}", {"calendar": calendar_id})
        return account


def set_meetings_calendar(s, user: User, calendar_id: int) -> None:
    """Make one of the user's calendars the one that receives Zoom meetings (the others are then only read)."""
    calendars = repo.user_calendars(s, user.id)
    chosen = next((c for c in calendars if c.id == calendar_id), None)
    if chosen is None or chosen.role != "calendar":
        raise ConfigError(f"calendar {calendar_id} is not one of {user.email}'s calendars; one of "
                          f"{[c.id for c in calendars if c.role == 'calendar']}")
    for cal in calendars:
        cal.receives_meetings = cal.id == calendar_id


def _rotate_callback(ctx: Context, account_id: int):
    def persist(new_refresh: str) -> None:
        with ctx.db.transaction() as s:
            account = s.get(Account, account_id)
            secret = ctx.vault.open(account.secret)
            secret["refresh_token"] = new_refresh
            account.secret = ctx.vault.seal(secret)
    return persist


def token_source(ctx: Context, account: Account) -> TokenSource:
    secret = ctx.vault.open(account.secret)
    cfg = account.config or {}
    if account.provider in ("zoom", "zoom-calendar"):
        token_url = cfg.get("token_url") or ctx.settings.zoom_token_url
        if secret.get("account_id"):
            return ZoomAccountCredentials(token_url, secret["account_id"], secret["client_id"],
                                          secret["client_secret"])
        return RefreshTokenSource(token_url, secret["client_id"], secret["client_secret"], secret["refresh_token"],
                                  basic_auth=True, on_rotate=_rotate_callback(ctx, account.id))
    default_url = ctx.settings.graph_token_url if account.provider == "graph" else ctx.settings.google_token_url
    token_url = cfg.get("token_url") or default_url
    return RefreshTokenSource(token_url, secret["client_id"], secret["client_secret"], secret["refresh_token"],
                              basic_auth=False, on_rotate=_rotate_callback(ctx, account.id))


def make_connector(ctx: Context, account: Account, calendar: Calendar, rules: MappingRules):
    cfg = account.config or {}
    if account.provider == "ics":
        return IcsConnector(calendar.remote_id, rules, allow_private=ctx.settings.allow_private_urls,
                            transport=ctx.transport, resolve=ctx.resolver, timeout=ctx.settings.http_timeout,
                            default_tz=cfg.get("timezone"))
    if account.provider == "caldav":
        secret = ctx.vault.open(account.secret) if account.secret else {}
        return CalDavConnector(calendar.remote_id, rules, username=secret.get("username"),
                               password=secret.get("password"), allow_private=ctx.settings.allow_private_urls,
                               resolve=ctx.resolver, timeout=ctx.settings.http_timeout)
    if account.provider == "ews":
        from zoomcal.connectors.ews.connector import EwsConnector

        secret = ctx.vault.open(account.secret) if account.secret else {}
        return EwsConnector(cfg["url"], calendar.remote_id, rules, username=secret.get("username"),
                            secret=secret.get("password"), auth=cfg.get("auth") or "auto",
                            allow_private=ctx.settings.allow_private_urls, resolve=ctx.resolver)
    tokens = token_source(ctx, account)
    if account.provider in ("zoom", "zoom-calendar"):
        api = ApiClient(cfg.get("api_base") or ctx.settings.zoom_api_base, tokens, ctx.transport,
                        ctx.settings.http_timeout)
        if account.provider == "zoom-calendar":
            from zoomcal.connectors.zoom_calendar.connector import ZoomCalendarConnector

            return ZoomCalendarConnector(api, calendar.remote_id, rules)
        return ZoomConnector(api, calendar.remote_id, rules)
    if account.provider == "graph":
        api = ApiClient(cfg.get("api_base") or ctx.settings.graph_api_base, tokens, ctx.transport,
                        ctx.settings.http_timeout)
        user, _, calendar_id = calendar.remote_id.partition("/")
        window = window_of(rules)
        return GraphConnector(api, user, calendar_id, rules, window)
    api = ApiClient(cfg.get("api_base") or ctx.settings.google_api_base, tokens, ctx.transport,
                    ctx.settings.http_timeout)
    return GoogleConnector(api, calendar.remote_id, rules)


def window_of(rules: MappingRules):
    from zoomcal.availability.intervals import window

    return window(rules.availability.window_past_days, rules.availability.window_future_days)


def build_pairs(ctx: Context, email: str | None = None) -> list[SyncPair]:
    pairs = []
    with ctx.db.session() as s:
        query = select(User).order_by(User.id)
        if email:
            query = query.where(User.email == email.lower())
        users = list(s.scalars(query))
        if email and not users:
            raise ConfigError(f"no user {email}")
        for user in users:
            tenant = s.get(Tenant, user.tenant_id)
            rules = tenant_rules(ctx, tenant)
            calendars = repo.user_calendars(s, user.id)
            meetings = next((c for c in calendars if c.role == "meetings"), None)
            target = next((c for c in calendars if c.receives_meetings), None)
            if meetings is None:
                target = None
            accounts = {c.id: s.get(Account, c.account_id) for c in calendars}
            for cal in calendars:
                acc = accounts[cal.id]
                if cal.role == "meetings" or cal is target or acc.status != "ok":
                    continue
                # feeds and calendars that do not take Zoom meetings are read: they count for availability
                pairs.append(SyncPair(tenant_id=user.tenant_id, user_id=user.id, rules=rules, user_email=user.email,
                                      a=None, b=SideSpec(cal.id, make_connector(ctx, acc, cal, rules), acc.id,
                                                         label=LABELS.get(acc.provider, acc.provider.capitalize()))))
            if target is None:
                continue
            a_acc, b_acc = accounts[meetings.id], accounts[target.id]
            if a_acc.status != "ok" or b_acc.status != "ok":
                continue
            pairs.append(SyncPair(
                tenant_id=user.tenant_id, user_id=user.id, rules=rules, user_email=user.email,
                a=SideSpec(meetings.id, make_connector(ctx, a_acc, meetings, rules), a_acc.id,
                           owns=frozenset({"join"}), label="Zoom"),
                b=SideSpec(target.id, make_connector(ctx, b_acc, target, rules), b_acc.id,
                           label=LABELS.get(b_acc.provider, b_acc.provider.capitalize())),
            ))
    return pairs


async def close_pairs(pairs: list[SyncPair]) -> None:
    for pair in pairs:
        for side in pair.sides:
            await pair.side(side).connector.aclose()
