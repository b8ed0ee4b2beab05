"""Signing in to the portal with another's account: Zoom (its user OAuth: `/users/me` says who), Google and
Microsoft (OpenID Connect: a verified ID token says who).

Each is an authorization-code sign-in with S256 PKCE and a random `state`; OpenID Connect adds a `nonce` the ID
token must carry. What checks the answer (state, verifier, nonce, redirect URI, which provider, until when) is kept
sealed in a cookie of the browser that started, for `PENDING`: an answer brought by another browser, or late,
signs nobody in.

Who it is:
- Zoom: the zoomcal user with the address Zoom names; their role follows Zoom's (Owner or Admin: admin).
- Google: the account's address, only when Google says it verified it (`email_verified`), and only accounts of the
  Workspace domain when one is set (`hd`).
- Microsoft: members of the one directory set (`tid` through the issuer; multi-organisation endpoints are
  refused), not its guests (`idp`); the address is `email`, else the sign-in name.
A Google or Microsoft account is bound to the zoomcal user at its first sign-in (the token's issuer and `sub`); from
then on the binding decides, and another account showing the same address later is refused. Roles stay as set in
zoomcal for these two. Refusals are security log lines that never name the address."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from zoomcal.app.context import AppContext, Services
from zoomcal.app.errors import InvalidError, NotSignedInError
from zoomcal.app.signin import Started, _now, _start
from zoomcal.config import Settings
from zoomcal.logging import get_logger
from zoomcal.net import tls
from zoomcal.store import repo
from zoomcal.store.models import SignInIdentity, User

log = get_logger("zoomcal.signin")

ZOOM_ADMIN_ROLES = ("Owner", "Admin")       # Zoom roles whose people are the portal's admins
PENDING = timedelta(minutes=10)
# the multi-organisation endpoints, and the directory of personal Microsoft accounts by its id
EVERY_DIRECTORY = ("common", "organizations", "consumers", "9188040d-6c67-4c5b-b112-36a304b66dad")
GMAIL = ("@gmail.com", "@googlemail.com")
OIDC_SCOPE = "openid email profile"


def _google_vouches(settings: Settings, claims: dict[str, Any]) -> str:
    """Google holds an address it verified when it is a Gmail address or the account is a Workspace account of
    the address's domain (`hd`); an account made elsewhere with a work address keeps it after losing the mailbox."""
    if claims.get("email_verified") is not True:
        raise NotSignedInError("Google has not verified this account's e-mail address")
    domain = settings.portal_google_domain
    hosted = str(claims.get("hd") or "").lower()
    if domain and hosted != domain.lower():
        raise NotSignedInError(f"only accounts of {domain} sign in here")
    address = str(claims.get("email") or "")
    if not address.lower().endswith(GMAIL) and (not hosted or not address.lower().endswith("@" + hosted)):
        raise NotSignedInError("Google does not hold this address: only Gmail and Google Workspace accounts sign in")
    return address


def _microsoft_vouches(_settings: Settings, claims: dict[str, Any]) -> str:
    """A directory's `email` claim is its `mail` attribute, which nobody verified; it counts only when Microsoft
    says the address's domain is one the directory owns (the optional claim `xms_edov`)."""
    if claims.get("idp") and claims.get("idp") != claims.get("iss"):
        raise NotSignedInError("guests of the directory do not sign in here")
    if claims.get("xms_edov") is not True:
        raise NotSignedInError("Microsoft did not say this address belongs to your directory: the app registration "
                               "must add the optional ID token claims email and xms_edov")
    return str(claims.get("email") or "")


def _microsoft_unready(settings: Settings) -> str | None:
    tenant = settings.portal_microsoft_tenant
    if not tenant or tenant.lower() in EVERY_DIRECTORY:
        return ("signing in with Microsoft is not set up here: ZOOMCAL_PORTAL_MICROSOFT_TENANT must name your "
                "directory (its tenant id or a verified domain)")
    return None


@dataclass(frozen=True)
class Way:
    """A way to sign in with another's account. With `discovery`, OpenID Connect: the discovery document's URL,
    and `vouches` turns a verified ID token's claims into the address it vouches for (NotSignedInError when it
    vouches for none). Without, Zoom: its user OAuth and `/users/me`."""

    key: str
    label: str
    client: Callable[[Settings], tuple[str | None, str | None]]
    discovery: Callable[[Settings], str] | None = None
    issuer: Callable[[Settings], str | None] = lambda _s: None      # the issuer the document must name, if known
    aliases: Callable[[Settings], tuple[str, ...]] = lambda _s: ()  # other spellings of it ID tokens may carry
    vouches: Callable[[Settings, dict[str, Any]], str] | None = None
    extra: Callable[[Settings], tuple[tuple[str, str], ...]] = lambda _s: ()
    unready: Callable[[Settings], str | None] = lambda _s: None


WAYS = {w.key: w for w in (
    Way("zoom", "Zoom", lambda s: (s.portal_zoom_client_id, s.portal_zoom_client_secret)),
    Way("google", "Google", lambda s: (s.portal_google_client_id, s.portal_google_client_secret),
        discovery=lambda s: f"{s.portal_google_issuer.rstrip('/')}/.well-known/openid-configuration",
        issuer=lambda s: s.portal_google_issuer.rstrip("/"), vouches=_google_vouches,
        aliases=lambda s: (s.portal_google_issuer.rstrip("/").removeprefix("https://"),),
        extra=lambda s: (("hd", s.portal_google_domain),) if s.portal_google_domain else ()),
    Way("microsoft", "Microsoft", lambda s: (s.portal_microsoft_client_id, s.portal_microsoft_client_secret),
        discovery=lambda s: f"{s.portal_microsoft_authority.rstrip('/')}/{s.portal_microsoft_tenant}/v2.0/"
                            ".well-known/openid-configuration",
        vouches=_microsoft_vouches, unready=_microsoft_unready),
)}
PROVIDERS = tuple(WAYS)
LABELS = {key: way.label for key, way in WAYS.items()}


def why_not(services: Services, provider: str) -> str | None:
    """Why signing in with `provider` is not offered here (None: it is)."""
    way = WAYS.get(provider)
    if way is None:
        return "there is no such way to sign in"
    if not all(way.client(services.settings)):
        return f"signing in with {way.label} is not set up here"
    return way.unready(services.settings)


def ready(services: Services) -> list[str]:
    """The ways people can sign in with here, in the order the sign-in page shows them."""
    return [p for p in PROVIDERS if why_not(services, p) is None]


async def _endpoints(services: Services, way: Way):
    """(the OAuth provider, the OpenID issuer or None without OpenID Connect)."""
    from zoomcal.auth import oidc
    from zoomcal.auth.authorize import Provider

    settings = services.settings
    if way.discovery is None:     # Zoom's user OAuth: the sign-in its provider spec links accounts with
        from zoomcal.connectors import registry

        return Provider.of(registry.get(way.key).sign_in({"token_url": settings.portal_zoom_token_url})), None
    try:
        issuer = await oidc.discover(way.discovery(settings), transport=services.transport,
                                     timeout=settings.http_timeout)
    except oidc.TokenRefused as exc:
        raise InvalidError(f"{way.label} cannot be reached for signing in: {exc}", field="provider") from exc
    expected = way.issuer(settings)
    if expected is not None and issuer.issuer.rstrip("/") != expected:
        raise InvalidError(f"{way.label}'s discovery document names another issuer ({issuer.issuer})",
                           field="provider")
    return Provider(issuer.authorize_url, issuer.token_url, OIDC_SCOPE), issuer


async def begin(services: Services, provider: str, redirect_uri: str, login_hint: str = "", *,
                now: datetime | None = None) -> tuple[str, bytes]:
    """The provider's sign-in address, and what the browser keeps meanwhile (sealed): the second half,
    `finish`, takes it back from the browser that started."""
    from dataclasses import replace

    from zoomcal.auth.authorize import request

    why = why_not(services, provider)
    if why is not None:
        raise InvalidError(why, field="provider")
    way = WAYS[provider]
    oauth, issuer = await _endpoints(services, way)
    nonce = secrets.token_urlsafe(24) if issuer is not None else ""
    if issuer is not None:
        oauth = replace(oauth, extra=(("nonce", nonce), ("prompt", "select_account"), *way.extra(services.settings)))
    asked = request(oauth, way.client(services.settings)[0] or "", redirect_uri,
                    (login_hint or "").strip()[:320] or None)
    sealed = services.vault.seal({"provider": provider, "state": asked.state, "verifier": asked.verifier,
                                  "nonce": nonce, "redirect": redirect_uri,
                                  "until": (_now(now) + PENDING).timestamp()})
    return asked.url, sealed


def _refused(provider: str, client: str, why: str, address: str = "") -> NotSignedInError:
    """The refusal to show; the security log line never names the address."""
    log.warning("federated_sign_in_refused", provider=provider, client=client,              # security
                why=why.replace(address, "<address>") if address else why)
    return NotSignedInError(why)


async def finish(services: Services, provider: str, answer: dict[str, str], sealed: bytes | None, *, client: str,
                 now: datetime | None = None) -> Started:
    """The provider sent the browser back: check the answer against what the browser kept, redeem the code,
    learn who signed in, and start their session."""
    import httpx

    from zoomcal.auth import oidc
    from zoomcal.auth.authorize import Request as Asked
    from zoomcal.auth.authorize import redeem
    from zoomcal.errors import AuthExpired, ConfigError

    now = _now(now)
    try:
        kept = services.vault.open(sealed) if sealed else None
    except ConfigError:
        kept = None
    if not kept or kept.get("until", 0) < now.timestamp() or kept.get("provider") != provider:
        raise NotSignedInError("this sign-in was not started here, or took too long: start it again")
    why = why_not(services, provider)
    if why is not None:
        raise NotSignedInError(why)
    way = WAYS[provider]
    label = way.label
    client_id, secret = (c or "" for c in way.client(services.settings))
    try:
        oauth, issuer = await _endpoints(services, way)
        token = await redeem(oauth, client_id, secret, Asked("", kept["state"], kept["verifier"], kept["redirect"]),
                             answer, transport=services.transport, need_refresh=False)
        if issuer is None:
            return await _finish_zoom(services, token, client, now)
        claims = await oidc.verify(str(token.get("id_token") or ""), issuer, client_id, kept.get("nonce") or "",
                                   transport=services.transport, timeout=services.settings.http_timeout,
                                   now=now.timestamp(), also=way.aliases(services.settings))
    except (AuthExpired, ConfigError, InvalidError, httpx.HTTPError, oidc.TokenRefused) as exc:
        raise _refused(provider, client, f"{label} did not sign you in: {exc}") from exc
    try:
        address = way.vouches(services.settings, claims).strip().lower()      # type: ignore[misc]
    except NotSignedInError as exc:
        raise _refused(provider, client, exc.message) from exc
    if "@" not in address:
        raise _refused(provider, client, f"{label} did not say which address signed in")
    return _bind(services, provider, str(claims["iss"]), str(claims["sub"]), address, client, now)


def _the_one(found: list[User], provider: str, client: str, address: str) -> User:
    """The one zoomcal user with the address a provider vouched for (refused when none, or one per organisation)."""
    if len(found) != 1:
        raise _refused(provider, client, f"no zoomcal user has the address {address}" if not found else
                       f"{address} is in several organisations here: sign in with its password", address)
    return found[0]


def _bind(services: Services, provider: str, issuer: str, subject: str, address: str, client: str,
          now: datetime) -> Started:
    label = LABELS[provider]
    with services.db.locked_transaction() as s:
        # the people with the address are locked first (PostgreSQL: FOR UPDATE; SQLite holds its write lock), so
        # two first sign-ins at once bind one account, and the second sees it
        found = list(s.scalars(select(User).where(User.email == address).with_for_update()))
        bound = s.get(SignInIdentity, (issuer, subject))
        if bound is not None:
            user = s.get(User, bound.user_id)
            bound.used_at = now
            return _start(s, user, now, client, provider)
        user = _the_one(found, provider, client, address)
        other = s.scalars(select(SignInIdentity).where(SignInIdentity.user_id == user.id,
                                                       SignInIdentity.issuer == issuer)).first()
        if other is not None:
            raise _refused(provider, client, f"{address} signs in with another {label} account", address)
        s.add(SignInIdentity(issuer=issuer, subject=subject, tenant_id=user.tenant_id, user_id=user.id,
                             provider=provider, address=address, created_at=now, used_at=now))
        repo.audit(s, user.tenant_id, f"{provider}:{address}", "user.identity", user.email,
                   {"provider": provider, "issuer": issuer})
        return _start(s, user, now, client, provider)


async def _finish_zoom(services: Services, token: dict[str, Any], client: str, now: datetime) -> Started:
    import httpx

    settings = services.settings
    async with httpx.AsyncClient(verify=tls(), transport=services.transport, timeout=settings.http_timeout) as http:
        me = await http.get(f"{settings.portal_zoom_api_base.rstrip('/')}/users/me",
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    profile = me.json() if me.status_code == 200 and me.headers.get("content-type", "").startswith(
        "application/json") else {}
    address = str(profile.get("email") or "").strip().lower()
    if not address:
        raise _refused("zoom", client, "Zoom did not say who signed in")
    role = "admin" if profile.get("role_name") in ZOOM_ADMIN_ROLES else "member"
    with services.db.locked_transaction() as s:
        user = _the_one(list(s.scalars(select(User).where(User.email == address))), "zoom", client, address)
        if user.role != role:
            repo.audit(s, user.tenant_id, f"zoom:{address}", "user.role", user.email,
                       {"from": user.role, "to": role, "zoom_role": str(profile.get("role_name") or "")})
            user.role = role
        return _start(s, user, now, client, "zoom")


# --- the bindings, for an admin ---------------------------------------------------------------------------------

def identities(ctx: AppContext, email: str) -> list[dict[str, Any]]:
    """The Google and Microsoft accounts bound to a person: provider, issuer, the address it had when bound,
    when bound and last used (the subject stays in the store)."""
    from zoomcal.app.users import find

    ctx.require_manage(email)
    with ctx.store.session() as s:
        user = find(s, ctx, email)
        rows = s.scalars(select(SignInIdentity).where(SignInIdentity.user_id == user.id)
                         .order_by(SignInIdentity.created_at))
        return [{"provider": r.provider, "issuer": r.issuer, "address": r.address, "bound_at": r.created_at,
                 "used_at": r.used_at} for r in rows]


def forget(ctx: AppContext, email: str, provider: str) -> int:
    """Unbind a person's account of `provider` (an admin's act: their account there was replaced); the next
    sign-in with it binds anew. Returns how many were forgotten."""
    from sqlalchemy import delete

    from zoomcal.app.users import find

    ctx.require_admin()
    if provider not in PROVIDERS:
        raise InvalidError(f"a provider is one of {', '.join(PROVIDERS)}", field="provider")
    with ctx.store.transaction() as s:
        user = find(s, ctx, email)
        gone = s.execute(delete(SignInIdentity).where(SignInIdentity.user_id == user.id,
                                                      SignInIdentity.provider == provider)).rowcount or 0
        if gone:
            ctx.audit(s, "user.identity_forgotten", user.email, {"provider": provider, "count": gone})
    return gone
