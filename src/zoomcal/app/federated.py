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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from zoomcal.app.context import Services
from zoomcal.app.errors import InvalidError, NotSignedInError
from zoomcal.app.signin import Started, _now, _start
from zoomcal.logging import get_logger
from zoomcal.store import repo
from zoomcal.store.models import SignInIdentity, User

log = get_logger("zoomcal.signin")

PROVIDERS = ("zoom", "google", "microsoft")
LABELS = {"zoom": "Zoom", "google": "Google", "microsoft": "Microsoft"}
ZOOM_ADMIN_ROLES = ("Owner", "Admin")       # Zoom roles whose people are the portal's admins
PENDING = timedelta(minutes=10)
EVERY_DIRECTORY = ("common", "organizations", "consumers")
OIDC_SCOPE = "openid email profile"


def why_not(services: Services, provider: str) -> str | None:
    """Why signing in with `provider` is not offered here (None: it is)."""
    s = services.settings
    if provider not in PROVIDERS:
        return "there is no such way to sign in"
    label = LABELS[provider]
    client = {"zoom": (s.portal_zoom_client_id, s.portal_zoom_client_secret),
              "google": (s.portal_google_client_id, s.portal_google_client_secret),
              "microsoft": (s.portal_microsoft_client_id, s.portal_microsoft_client_secret)}[provider]
    if not all(client):
        return f"signing in with {label} is not set up here"
    if provider == "microsoft" and (not s.portal_microsoft_tenant or
                                    s.portal_microsoft_tenant.lower() in EVERY_DIRECTORY):
        return ("signing in with Microsoft is not set up here: ZOOMCAL_PORTAL_MICROSOFT_TENANT must name your "
                "directory (its tenant id or a verified domain)")
    return None


def ready(services: Services) -> list[str]:
    """The providers people can sign in with here, in the order the sign-in page shows them."""
    return [p for p in PROVIDERS if why_not(services, p) is None]


def _client(services: Services, provider: str) -> tuple[str, str]:
    s = services.settings
    return {"zoom": (s.portal_zoom_client_id, s.portal_zoom_client_secret),
            "google": (s.portal_google_client_id, s.portal_google_client_secret),
            "microsoft": (s.portal_microsoft_client_id, s.portal_microsoft_client_secret)}[provider]  # type: ignore


def _discovery_url(services: Services, provider: str) -> str:
    s = services.settings
    if provider == "google":
        return f"{s.portal_google_issuer.rstrip('/')}/.well-known/openid-configuration"
    authority = s.portal_microsoft_authority.rstrip("/")
    return f"{authority}/{s.portal_microsoft_tenant}/v2.0/.well-known/openid-configuration"


async def _endpoints(services: Services, provider: str):
    """(the OAuth provider, the OpenID issuer or None for Zoom)."""
    from zoomcal.auth import oidc
    from zoomcal.auth.authorize import Provider

    if provider == "zoom":
        token_url = services.settings.portal_zoom_token_url
        base, _, _last = token_url.rstrip("/").rpartition("/")
        return Provider(f"{base}/authorize", token_url, "", client_auth="basic"), None
    try:
        issuer = await oidc.discover(_discovery_url(services, provider), transport=services.transport,
                                     timeout=services.settings.http_timeout)
    except oidc.TokenRefused as exc:
        raise InvalidError(f"{LABELS[provider]} cannot be reached for signing in: {exc}", field="provider") from exc
    if provider == "google" and issuer.issuer.rstrip("/") != services.settings.portal_google_issuer.rstrip("/"):
        raise InvalidError(f"Google's discovery document names another issuer ({issuer.issuer})", field="provider")
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
    oauth, issuer = await _endpoints(services, provider)
    nonce = secrets.token_urlsafe(24) if issuer is not None else ""
    if issuer is not None:
        extra = [("nonce", nonce), ("prompt", "select_account")]
        if provider == "google" and services.settings.portal_google_domain:
            extra.append(("hd", services.settings.portal_google_domain))
        oauth = replace(oauth, extra=tuple(extra))
    asked = request(oauth, _client(services, provider)[0], redirect_uri, (login_hint or "").strip()[:320] or None)
    sealed = services.vault.seal({"provider": provider, "state": asked.state, "verifier": asked.verifier,
                                  "nonce": nonce, "redirect": redirect_uri,
                                  "until": (_now(now) + PENDING).timestamp()})
    return asked.url, sealed


def _refused(provider: str, client: str, why: str) -> NotSignedInError:
    log.warning("federated_sign_in_refused", provider=provider, client=client, why=why)     # security
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
    if not kept or kept.get("until", 0) < now.timestamp() or kept.get("provider", "zoom") != provider:
        raise NotSignedInError("this sign-in was not started here, or took too long: start it again")
    if why_not(services, provider) is not None:
        raise NotSignedInError(why_not(services, provider) or "")
    label = LABELS[provider]
    client_id, secret = _client(services, provider)
    try:
        oauth, issuer = await _endpoints(services, provider)
        token = await redeem(oauth, client_id, secret, Asked("", kept["state"], kept["verifier"], kept["redirect"]),
                             answer, transport=services.transport, need_refresh=False)
        if issuer is None:
            return await _finish_zoom(services, token, client, now)
        claims = await oidc.verify(str(token.get("id_token") or ""), issuer, client_id, kept.get("nonce") or "",
                                   transport=services.transport, timeout=services.settings.http_timeout,
                                   now=now.timestamp())
    except (AuthExpired, ConfigError, InvalidError, httpx.HTTPError, oidc.TokenRefused) as exc:
        raise _refused(provider, client, f"{label} did not sign you in: {exc}") from exc
    address = _address(services, provider, claims)
    if isinstance(address, NotSignedInError):
        raise _refused(provider, client, address.message)
    return _bind(services, provider, str(claims["iss"]), str(claims["sub"]), address, client, now)


def _address(services: Services, provider: str, claims: dict[str, Any]) -> str | NotSignedInError:
    """The address the ID token vouches for, or why it vouches for none."""
    if provider == "google":
        if claims.get("email_verified") is not True:
            return NotSignedInError("Google has not verified this account's e-mail address")
        domain = services.settings.portal_google_domain
        if domain and str(claims.get("hd") or "").lower() != domain.lower():
            return NotSignedInError(f"only accounts of {domain} sign in here")
        address = claims.get("email")
    else:
        if claims.get("idp") and claims.get("idp") != claims.get("iss"):
            return NotSignedInError("guests of the directory do not sign in here")
        address = claims.get("email") or claims.get("preferred_username")
    address = str(address or "").strip().lower()
    if "@" not in address:
        return NotSignedInError(f"{LABELS[provider]} did not say which address signed in")
    return address


def _bind(services: Services, provider: str, issuer: str, subject: str, address: str, client: str,
          now: datetime) -> Started:
    label = LABELS[provider]
    with services.db.locked_transaction() as s:
        bound = s.get(SignInIdentity, (issuer, subject))
        if bound is not None:
            user = s.get(User, bound.user_id)
            bound.used_at = now
            return _start(s, user, now, client, provider)
        found = list(s.scalars(select(User).where(User.email == address)))
        if len(found) != 1:
            raise _refused(provider, client, f"no zoomcal user has the address {address}" if not found else
                           f"{address} is in several organisations here: sign in with its password")
        user = found[0]
        other = s.scalars(select(SignInIdentity).where(SignInIdentity.user_id == user.id,
                                                       SignInIdentity.issuer == issuer)).first()
        if other is not None:
            raise _refused(provider, client, f"{address} signs in with another {label} account")
        s.add(SignInIdentity(issuer=issuer, subject=subject, tenant_id=user.tenant_id, user_id=user.id,
                             provider=provider, address=address, created_at=now, used_at=now))
        repo.audit(s, user.tenant_id, f"{provider}:{address}", "user.identity", user.email,
                   {"provider": provider, "issuer": issuer})
        return _start(s, user, now, client, provider)


async def _finish_zoom(services: Services, token: dict[str, Any], client: str, now: datetime) -> Started:
    import httpx

    settings = services.settings
    async with httpx.AsyncClient(transport=services.transport, timeout=settings.http_timeout) as http:
        me = await http.get(f"{settings.portal_zoom_api_base.rstrip('/')}/users/me",
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    profile = me.json() if me.status_code == 200 and me.headers.get("content-type", "").startswith(
        "application/json") else {}
    address = str(profile.get("email") or "").strip().lower()
    if not address:
        raise _refused("zoom", client, "Zoom did not say who signed in")
    role = "admin" if profile.get("role_name") in ZOOM_ADMIN_ROLES else "member"
    with services.db.locked_transaction() as s:
        found = list(s.scalars(select(User).where(User.email == address)))
        if len(found) != 1:
            raise _refused("zoom", client, f"no zoomcal user has the address {address}" if not found else
                           f"{address} is in several organisations here: sign in with its password")
        user = found[0]
        if user.role != role:
            repo.audit(s, user.tenant_id, f"zoom:{address}", "user.role", user.email,
                       {"from": user.role, "to": role, "zoom_role": str(profile.get("role_name") or "")})
            user.role = role
        return _start(s, user, now, client, "zoom")
