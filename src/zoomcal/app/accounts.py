"""Linked accounts: link (checked against the provider first), sign in, re-link, unlink (revoking the grant where the
provider offers it), list, health. Secrets are sealed before they are stored and never returned."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from zoomcal.app import channels, feed, users
from zoomcal.app.context import AppContext
from zoomcal.app.errors import ConflictError, InvalidError, NeedsReauthError, NotFoundError
from zoomcal.auth.authorize import Provider, authorize, redeem
from zoomcal.auth.authorize import Request as OAuthRequest
from zoomcal.auth.authorize import request as oauth_request
from zoomcal.availability import intervals
from zoomcal.availability.intervals import as_utc
from zoomcal.connectors.spec import MEETINGS, LinkRequest, Option, ProviderSpec, judge_scopes
from zoomcal.errors import AuthExpired, ConfigError, ConnectorError
from zoomcal.net import check_url
from zoomcal.store.models import Account, Calendar, Event, Link, PendingSignIn, User


@dataclass
class AccountInfo:
    id: int
    user: str
    provider: str
    label: str
    calendar: str
    calendar_id: int | None
    name: str
    role: str
    receives_meetings: bool
    status: str
    status_reason: str | None
    checked_at: datetime | None
    endpoint: str
    push: str = ""                # after a link: whether a push channel was created, and if not why
    auth: str = ""                # how it authenticates: user OAuth, server-to-server OAuth, password, none
    granted: list[str] | None = None    # the scopes the provider last said it granted (None: it did not say)
    profile: dict[str, Any] | None = None   # what the last check learnt: e-mail, zone, role, licence
    # each feature's scopes judged against `granted`: {"feature", "met", "by", "lacking"} (empty: not judged)
    needs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProviderInfo:
    key: str
    label: str
    roles: list[str]
    linking: str
    options: list[dict[str, Any]]
    signs_in: bool
    revocable: bool
    sign_in_secrets: list[dict[str, Any]] = field(default_factory=list)   # what signing in takes beside options


@dataclass
class Unlinked:
    account_id: int
    provider: str
    revoked: str
    push: list[str] = field(default_factory=list)       # what happened to its push channels


def providers(ctx: AppContext) -> list[ProviderInfo]:
    from zoomcal.connectors import registry

    def shown(options) -> list[dict[str, Any]]:
        return [{"name": o.name, "help": o.help, "required": o.required, "default": o.default} for o in options]

    return [ProviderInfo(s.key, s.label, sorted(s.roles), s.linking, shown(s.options), s.sign_in is not None,
                         s.revoke is not None,
                         shown(o for o in s.secrets({}) if o.name != "refresh_token") if s.sign_in else [])
            for s in registry.all_specs()]


def needed_secrets(ctx: AppContext, provider: str, options: dict[str, str]) -> list[Option]:
    """The secrets a link with these options takes (a door asks for them: a prompt, a password field), once the
    options themselves are known to be right."""
    spec = ctx.spec(provider)
    _check_options(spec, options)
    return list(spec.secrets(options))


def _check_options(spec: ProviderSpec, options: dict[str, str]) -> None:
    known = spec.option_names()
    for name in options:
        if name not in known:
            raise InvalidError(f"{spec.label} does not take {name}", field=name)
    for option in spec.options:
        if option.required and not options.get(option.name):
            raise InvalidError(f"{spec.label} needs {option.name} ({option.help})", field=option.name)


def _check_inputs(spec: ProviderSpec, options: dict[str, str], secrets: dict[str, str]) -> None:
    _check_options(spec, options)
    wanted = {o.name: o for o in spec.secrets(options)}
    for name in secrets:
        if name not in wanted:
            raise InvalidError(f"{spec.label} does not take the secret {name}", field=name)
    for name, option in wanted.items():
        if option.required and not secrets.get(name):
            raise InvalidError(f"{spec.label} needs {name} ({option.help})", field=name)


def _one_meetings_account(s, user: User, spec: ProviderSpec) -> None:
    """A person's meetings live in one account: a second one would split them."""
    if spec.calendar_role == MEETINGS and s.scalar(select(Calendar.id).where(Calendar.user_id == user.id,
                                                                     Calendar.role == MEETINGS)) is not None:
        raise ConflictError(f"{user.email} already has a meetings account linked; unlink it first",
                            field="provider")


def _provider_error(spec: ProviderSpec, exc: Exception) -> Exception:
    """A provider's refusal, as an application error that names the provider and the reason."""
    if isinstance(exc, AuthExpired):
        return NeedsReauthError(f"{spec.label} refused the credentials: {exc}")
    if isinstance(exc, ConfigError):
        return InvalidError(f"{spec.label}: {exc}")
    return InvalidError(f"{spec.label} could not be read with these settings: {type(exc).__name__}: {exc}")


ENDPOINTS = ("api_base", "token_url", "auth_url", "login_base")     # options that name where zoomcal connects


def _check_endpoints(ctx: AppContext, options: dict[str, str]) -> None:
    """A person over the web may point a link at another endpoint only where zoomcal may connect: not at a
    loopback or private address (unless ZOOMCAL_ALLOW_PRIVATE_URLS), never with credentials in the URL. The
    operator on the command line may name any."""
    if not ctx.actor.remote:
        return
    for name in ENDPOINTS:
        if options.get(name):
            try:
                check_url(options[name], ctx.settings.allow_private_urls, ctx.services.resolver)
            except ConfigError as exc:
                raise InvalidError(f"{name}: {exc}", field=name) from exc


WATCHED = ("email", "role", "licence")      # what of an account's profile must not change under a link


def _changed(before: dict[str, Any] | None, now: dict[str, Any] | None, scopes: list[str] | None) -> str:
    """What changed of an account since the last check that found it as linked ("" for nothing): its e-mail,
    role or licence, or scopes it was granted then and is not now."""
    if not before:
        return ""
    out = [f"its {name} changed from {before[name]!r} to {(now or {}).get(name)!r}" for name in WATCHED
           if before.get(name) and now is not None and (now or {}).get(name) != before[name]]
    lost = sorted(set(before.get("scopes") or []) - set(scopes or [])) if scopes is not None else []
    if lost:
        out.append(f"the scopes {', '.join(lost)} were taken back")
    return "; ".join(out)


def _env(ctx: AppContext, spec: ProviderSpec):
    """The environment a link is checked in: a person over the web names no file of this machine."""
    env = ctx.services.env(ctx.rules(), provider=spec.key)
    env.allow_files = not ctx.actor.remote
    return env


def _info(acc: Account, cal: Calendar | None, email: str, spec: ProviderSpec | None, vault=None) -> AccountInfo:
    cfg = acc.config or {}
    return AccountInfo(acc.id, email, acc.provider, spec.label if spec else acc.provider,
                       cal.remote_id if cal else acc.external_id,
                       cal.id if cal else None, cal.name if cal else "", cal.role if cal else "",
                       bool(cal and cal.receives_meetings), acc.status, acc.status_reason, acc.checked_at,
                       str(cfg.get("api_base") or cfg.get("url") or ""),
                       auth=_auth_kind(acc, cfg, vault) if vault is not None else "",
                       granted=list(acc.granted_scopes) if acc.granted_scopes is not None else None,
                       profile={k: v for k, v in (acc.profile or {}).items() if k != "scopes"} or None,
                       needs=[n.as_dict() for n in judge_scopes(spec.scopes if spec else {}, acc.granted_scopes)])


def _auth_kind(acc: Account, cfg: dict[str, Any], vault) -> str:
    """How a stored account proves itself, from the names of its sealed secrets (their values stay sealed)."""
    held = set(vault.open(acc.secret)) if acc.secret else set()
    if "account_id" in held:
        return "server-to-server OAuth"
    if "refresh_token" in held:
        return "user OAuth"
    if "password" in held:
        return f"password ({cfg['auth']})" if cfg.get("auth") else "password"
    return "none (a URL)"


def _unmet(provider: str, label: str, granted: list[str] | None,
           profile: dict[str, Any] | None) -> tuple[str, str] | None:
    """(status, why) when the account cannot do what zoomcal does with it: a feature its grant lacks the scopes
    for (linking again, granting them, mends it), or a calendar the account may only read (its owner must share
    it for writing)."""
    spec = _known(provider)
    for need in judge_scopes(spec.scopes if spec else {}, granted):
        if not need.met:
            wanted = "; ".join(" or ".join(one_of) for one_of in need.lacking)
            return "reauth", f"{label}: the grant does not allow {FEATURE_WORDS.get(need.feature, need.feature)} " \
                             f"(it needs {wanted}): link it again, granting it"
    if (profile or {}).get("writable") is False:
        return "degraded", f"{label}: this account may only read the calendar ({profile.get('access')}), and " \
                           "zoomcal writes to it"
    return None


FEATURE_WORDS = {"read": "reading the calendar", "write": "writing to the calendar", "profile": "reading the profile",
                 "presence": "reading and setting the Zoom status"}


def _known(provider: str) -> ProviderSpec | None:
    """The provider's spec, or None for one this code does not know (an account stored by another version)."""
    from zoomcal.connectors import registry

    try:
        return registry.get(provider)
    except registry.UnknownProvider:
        return None


def set_meetings_calendar(s, user: User, calendar_id: int) -> None:
    """Make one of the user's calendars the one that receives Zoom meetings (the others are then only read)."""
    calendars = list(s.scalars(select(Calendar).where(Calendar.user_id == user.id).order_by(Calendar.id)))
    chosen = next((c for c in calendars if c.id == calendar_id), None)
    if chosen is None or chosen.role != "calendar":
        choices = ", ".join(str(c.id) for c in calendars if c.role == "calendar") or "none"
        raise InvalidError(f"calendar {calendar_id} is not one of {user.email}'s calendars that can receive "
                           f"meetings (those are: {choices})", field="meetings_calendar")
    for cal in calendars:
        cal.receives_meetings = cal.id == calendar_id


async def link(ctx: AppContext, email: str, provider: str, options: dict[str, str], secrets: dict[str, str],
               *, receives_meetings: bool | None = None) -> AccountInfo:
    """Link an account to a user: the provider is asked first (a token and one real read), then the account is
    stored with its secret sealed."""
    ctx.require_manage(email)
    spec = ctx.spec(provider)
    options = {k: v for k, v in options.items() if v not in (None, "")}
    secrets = {k: v for k, v in secrets.items() if v not in (None, "")}
    _check_inputs(spec, options, secrets)
    _check_endpoints(ctx, options)
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        _one_meetings_account(s, user, spec)
    try:
        linked = await spec.link(LinkRequest(user.email, options, secrets),
                                 _env(ctx, spec))
    except (ConfigError, ConnectorError) as exc:
        raise _provider_error(spec, exc) from exc
    role = spec.calendar_role
    with ctx.store.transaction() as s:
        user = users.find(s, ctx, email)
        mine = list(s.execute(select(Calendar, Account).join(Account, Calendar.account_id == Account.id)
                              .where(Calendar.user_id == user.id)))
        if any(a.provider == spec.key and c.remote_id == linked.remote_id for c, a in mine) or \
                (role is None and s.scalar(select(Account.id).where(
                    Account.user_id == user.id, Account.provider == spec.key,
                    Account.external_id == linked.remote_id)) is not None):
            raise ConflictError(f"{user.email} already has this {spec.label} {'calendar' if role else 'source'} "
                                "linked", field="provider")
        _one_meetings_account(s, user, spec)
        account = Account(tenant_id=ctx.tenant_id, user_id=user.id, provider=spec.key, external_id=linked.remote_id,
                          config=linked.config, secret=ctx.vault.seal(linked.secret) if linked.secret else None,
                          status="ok", checked_at=ctx.now())
        s.add(account)
        s.flush()
        if role is None:       # a contact source: no calendar to keep
            if receives_meetings:
                raise InvalidError(f"a {spec.label} account cannot receive meetings", field="receives_meetings")
            ctx.audit(s, "account.link", f"{user.email}:{spec.key}", {"source": linked.remote_id})
            return _info(account, None, user.email, spec)
        calendar = Calendar(tenant_id=ctx.tenant_id, user_id=user.id, account_id=account.id,
                            remote_id=linked.remote_id, name=linked.name or spec.default_label, role=role,
                            receives_meetings=False)
        s.add(calendar)
        s.flush()
        if receives_meetings is None:
            receives_meetings = role == "calendar" and not any(c.receives_meetings for c, _a in mine)
        if receives_meetings and role == "calendar":
            set_meetings_calendar(s, user, calendar.id)
        elif receives_meetings:
            raise InvalidError(f"a {spec.label} account cannot receive meetings", field="receives_meetings")
        ctx.audit(s, "account.link", f"{user.email}:{spec.key}", {"calendar": linked.remote_id})
        info = _info(account, calendar, user.email, spec)
    if spec.push is not None and spec.push.subscribable:
        info.push = await channels.subscribe(ctx, info.id)
    return info


def _sign_in_endpoints(ctx: AppContext, provider: str, options: dict[str, str]) -> tuple[ProviderSpec, Provider]:
    spec = ctx.spec(provider)
    if spec.sign_in is None:
        raise InvalidError(f"{spec.label} is not linked by signing in", field="provider")
    return spec, Provider.of(spec.sign_in(options))


async def _link_signed_in(ctx: AppContext, spec: ProviderSpec, email: str, options: dict[str, str],
                          secrets: dict[str, str], token: dict[str, Any], token_url: str,
                          receives_meetings: bool | None) -> AccountInfo:
    """Link with the refresh token a sign-in brought back (only it is kept, sealed)."""
    options = {**options, "token_url": token_url}
    options = {k: v for k, v in options.items() if k in spec.option_names() and k not in SIGN_IN_ONLY}
    return await link(ctx, email, spec.key, options, {**secrets, "refresh_token": token["refresh_token"]},
                      receives_meetings=receives_meetings)


async def sign_in(ctx: AppContext, email: str, provider: str, options: dict[str, str], secrets: dict[str, str],
                  show: Callable[[str], Awaitable[None] | None], *, timeout: float = 300.0,
                  receives_meetings: bool | None = None) -> AccountInfo:
    """Link by signing in: OAuth authorization code with PKCE over a loopback redirect; `show` gets the sign-in
    address to open. Only the refresh token that comes back is kept (sealed)."""
    ctx.require_manage(email)
    spec, endpoints = _sign_in_endpoints(ctx, provider, options)
    try:
        token = await authorize(endpoints, options.get("client_id", ""), secrets.get("client_secret"), email, show,
                                timeout=timeout, transport=ctx.services.transport)
    except AuthExpired as exc:
        raise NeedsReauthError(f"{spec.label} sign-in failed: {exc}") from exc
    except ConfigError as exc:
        raise InvalidError(f"{spec.label} sign-in failed: {exc}") from exc
    return await _link_signed_in(ctx, spec, email, options, secrets, token, endpoints.token_url, receives_meetings)


PENDING_TTL = timedelta(minutes=10)
SIGN_IN_ONLY = ("tenant", "login_base", "auth_url")     # options that serve signing in only: not stored


def begin_sign_in(ctx: AppContext, email: str, provider: str, options: dict[str, str], secrets: dict[str, str],
                  redirect_uri: str) -> str:
    """The first half of linking by signing in through a web redirect: the provider's sign-in address to send the
    person to. What the second half needs (for whom, the options and secrets, the PKCE verifier) waits sealed
    in the store, for `PENDING_TTL`, under the request's `state` and bound to whoever asked."""
    ctx.require_manage(email)
    spec, endpoints = _sign_in_endpoints(ctx, provider, options)
    options = {k: v for k, v in options.items() if v not in (None, "")}
    secrets = {k: v for k, v in secrets.items() if v not in (None, "")}
    _check_options(spec, options)
    _check_endpoints(ctx, options)
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
    asked = oauth_request(endpoints, options.get("client_id", ""), redirect_uri, user.email)
    sealed = ctx.vault.seal({"email": user.email, "provider": spec.key, "options": options, "secrets": secrets,
                             "verifier": asked.verifier, "redirect_uri": redirect_uri})
    with ctx.store.transaction() as s:
        s.execute(delete(PendingSignIn).where(PendingSignIn.expires_at < ctx.now()))
        s.add(PendingSignIn(id=_digest(asked.state), tenant_id=ctx.tenant_id, actor=ctx.actor.name, sealed=sealed,
                            expires_at=ctx.now() + PENDING_TTL))
    return asked.url


async def finish_sign_in(ctx: AppContext, answer: dict[str, str]) -> AccountInfo:
    """The second half: the provider sent the browser back with `answer` (its query). The waiting request its
    `state` names — asked by the same actor, not expired — is used once: the code is redeemed and the account
    linked."""
    state = str(answer.get("state") or "")
    with ctx.store.transaction() as s:
        row = s.get(PendingSignIn, _digest(state)) if state else None
        if row is None or row.actor != ctx.actor.name:
            raise NeedsReauthError("this sign-in was not started here, or was finished already: start it again")
        s.delete(row)
        expired = as_utc(row.expires_at) <= ctx.now()
        sealed = row.sealed
    if expired:
        raise NeedsReauthError("the sign-in took too long: start it again")
    pending = ctx.vault.open(sealed)
    spec, endpoints = _sign_in_endpoints(ctx, pending["provider"], pending["options"])
    asked = OAuthRequest("", state, pending["verifier"], pending["redirect_uri"])
    try:
        token = await redeem(endpoints, pending["options"].get("client_id", ""),
                             pending["secrets"].get("client_secret"), asked, answer,
                             transport=ctx.services.transport)
    except AuthExpired as exc:
        raise NeedsReauthError(f"{spec.label} sign-in failed: {exc}") from exc
    except ConfigError as exc:
        raise InvalidError(f"{spec.label} sign-in failed: {exc}") from exc
    return await _link_signed_in(ctx, spec, pending["email"], pending["options"], pending["secrets"], token,
                                 endpoints.token_url, None)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _owned(s, ctx: AppContext, account_id: int) -> tuple[Account, Calendar | None, User]:
    account = s.get(Account, account_id)
    if account is None:
        raise NotFoundError(f"no account {account_id}", field="account")
    user = s.get(User, account.user_id)
    ctx.require_manage(user.email)
    calendar = s.scalar(select(Calendar).where(Calendar.account_id == account.id).order_by(Calendar.id).limit(1))
    return account, calendar, user


async def relink(ctx: AppContext, account_id: int, options: dict[str, str], secrets: dict[str, str]
                 ) -> AccountInfo:
    """New credentials (or endpoints) for the same calendar: checked with the provider, then stored; connectors
    built from the old ones are rebuilt and the account is healthy again."""
    with ctx.store.session() as s:
        account, calendar, user = _owned(s, ctx, account_id)
        spec = ctx.spec(account.provider)
        view = ctx.services.account_view(account, calendar)
    for name in options:
        if name not in spec.option_names():
            raise InvalidError(f"{spec.label} does not take {name}", field=name)
    _check_endpoints(ctx, options)
    view.config.update({k: v for k, v in options.items() if v})
    view.secret.update({k: v for k, v in secrets.items() if v})
    rotated: dict[str, str] = {}
    view.on_rotate = lambda token: rotated.__setitem__("refresh_token", token)
    try:
        await spec.check(view, _env(ctx, spec))
    except (ConfigError, ConnectorError) as exc:
        raise _provider_error(spec, exc) from exc
    view.secret.update(rotated)
    with ctx.store.transaction() as s:
        account, calendar, user = _owned(s, ctx, account_id)
        account.config = view.config
        account.secret = ctx.vault.seal(view.secret) if view.secret else None
        account.access_token, account.access_expires_at = None, None
        account.revision = (account.revision or 1) + 1
        if account.status != "ok":
            feed.account_health(s, ctx.tenant_id, account.user_id, account.id, spec.label, "ok", None)
        account.status, account.status_reason, account.checked_at = "ok", None, ctx.now()
        account.profile = None          # what the next check finds is the account as linked now
        ctx.audit(s, "account.relink", f"{user.email}:{account.provider}",
                  {"options": sorted(options), "secrets": sorted(secrets)})
        return _info(account, calendar, user.email, spec)


async def unlink(ctx: AppContext, account_id: int) -> Unlinked:
    """Revoke the grant where the provider offers it, then forget the account, its calendar and what was only
    known through it."""
    with ctx.store.session() as s:
        account, calendar, user = _owned(s, ctx, account_id)
        spec = ctx.spec(account.provider)
        view, env = ctx.services.provider_env(ctx, account, calendar, ctx.rules())
    push = await channels.stop(ctx, account_id)
    revoked = "nothing to revoke"
    if spec.revoke is not None and view.secret:
        try:
            revoked = await spec.revoke(view, env)
        except ConnectorError as exc:
            revoked = f"could not revoke the grant ({exc}); revoke it at {spec.label}"
    with ctx.store.transaction() as s:
        account, calendar, user = _owned(s, ctx, account_id)
        cal_ids = list(s.scalars(select(Calendar.id).where(Calendar.account_id == account.id)))
        touched = list(s.scalars(select(Link.event_id).where(Link.calendar_id.in_(cal_ids))))
        s.execute(delete(Link).where(Link.calendar_id.in_(cal_ids)))
        s.delete(account)   # calendars, cursors, mirrors, leases and quotas go with it
        s.flush()
        orphans = [ev for ev in set(touched) if s.scalar(select(Link.id).where(Link.event_id == ev).limit(1)) is None]
        if orphans:
            s.execute(delete(Event).where(Event.id.in_(orphans)))   # their busy intervals go with them
            intervals.bump_revision(s, user.id)
        ctx.audit(s, "account.unlink", f"{user.email}:{account.provider}", {"revoked": revoked,
                                                                           "events_forgotten": len(orphans)})
    return Unlinked(account_id, spec.key, revoked, push)


def list_accounts(ctx: AppContext, email: str | None = None, ids: list[int] | None = None) -> list[AccountInfo]:
    """The accounts the actor may see (a person's, or these `ids` only); how each signs in is read from the names
    of its sealed secrets, so only the accounts listed are opened."""
    with ctx.store.session() as s:
        query = (select(Account, Calendar, User).join(User, Account.user_id == User.id)
                 .outerjoin(Calendar, Calendar.account_id == Account.id).order_by(Account.id))
        if email:
            query = query.where(User.id == users.find(s, ctx, email).id)
        if ids is not None:
            query = query.where(Account.id.in_(ids))
        rows = [(a, c, u) for a, c, u in s.execute(query) if ctx.actor.may_manage(u.email)]
        return [_info(a, c, u.email, _known(a.provider), ctx.vault) for a, c, u in rows]


async def health(ctx: AppContext, account_id: int | None = None) -> list[AccountInfo]:
    """Ask every account's provider for the same read a link makes; a refused grant marks the account as needing
    to be linked again, an unreachable provider as degraded, with the reason."""
    with ctx.store.session() as s:
        query = select(Account.id).order_by(Account.id)
        if account_id is not None:
            query = query.where(Account.id == account_id)
        ids = list(s.scalars(query))
        if account_id is not None and not ids:
            raise NotFoundError(f"no account {account_id}", field="account")

    async def one(aid: int) -> None:
        with ctx.store.session() as s:
            account, calendar, _user = _owned(s, ctx, aid)
            spec = ctx.spec(account.provider)
            view, env = ctx.services.provider_env(ctx, account, calendar, ctx.rules())
        status, reason, profile = "ok", None, None
        try:
            profile = await spec.check(view, env)
        except AuthExpired as exc:
            status, reason = "reauth", f"{spec.label} refused the credentials: {exc}"
        except (ConfigError, ConnectorError) as exc:
            status, reason = "degraded", f"{spec.label}: {type(exc).__name__}: {exc}"
        # in a worker thread: another account's token refresh may hold the store's write lock across its
        # request, which runs on this loop (waiting for the lock here would stop that request)
        await asyncio.to_thread(record, aid, spec.label, status, reason, profile)

    def record(aid: int, label: str, status: str, reason: str | None, profile: dict[str, Any] | None) -> None:
        with ctx.store.transaction() as s:
            account = s.get(Account, aid)
            if account is None:
                return
            if status == "ok":
                changed = _changed(account.profile, profile, account.granted_scopes)
                unmet = _unmet(account.provider, label, account.granted_scopes, profile)
                if unmet:           # what the account cannot do says most: it comes first
                    status, reason = unmet
                elif changed:
                    status, reason = "reauth", f"{label}: {changed} since it was linked: link it again"
                else:
                    account.profile = {**(profile or {}), "scopes": account.granted_scopes}
            if account.status != status:
                feed.account_health(s, ctx.tenant_id, account.user_id, aid, label, status, reason)
            account.status, account.status_reason, account.checked_at = status, reason, ctx.now()

    await asyncio.gather(*(one(aid) for aid in ids))
    return list_accounts(ctx, ids=ids)
