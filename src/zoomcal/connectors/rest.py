"""What the OAuth + REST providers' specs share: building an API client and a token grant from a stored account,
checking a link with one real read, and revoking a grant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from zoomcal.auth.oauth import RefreshTokenSource, TokenSource
from zoomcal.connectors.http import ApiClient
from zoomcal.connectors.spec import AccountView, Env, LinkRequest, Option
from zoomcal.errors import ConfigError, Transient
from zoomcal.net import tls

CLIENT_ID = Option("client_id", "the OAuth app's client id", required=True)
CLIENT_SECRET = Option("client_secret", "the OAuth app's client secret", required=True, secret=True)
REFRESH_TOKEN = Option("refresh_token", "a user OAuth refresh token", required=True, secret=True)


def endpoint_options(api: str, token: str) -> tuple[Option, ...]:
    return (Option("api_base", "API base URL", default=api), Option("token_url", "OAuth token URL", default=token))


def refresh_grant(view: AccountView, default_token_url: str, *, basic_auth: bool) -> RefreshTokenSource:
    return RefreshTokenSource(view.option("token_url", default_token_url), view.secret["client_id"],
                              view.secret.get("client_secret", ""), view.secret["refresh_token"],
                              basic_auth=basic_auth, on_rotate=view.on_rotate)


def api_client(view: AccountView, env: Env, default_base: str, tokens: TokenSource) -> ApiClient:
    return ApiClient(view.option("api_base", default_base), tokens, env.transport, env.timeout, provider=env.provider)


def request_view(request: LinkRequest, calendar: str, config_keys: tuple[str, ...],
                 secret_keys: tuple[str, ...]) -> AccountView:
    """The account a link request would store (before it is checked)."""
    config = {k: request.options[k] for k in config_keys if request.options.get(k)}
    secret = {k: request.get(k) for k in secret_keys if request.get(k)}
    view = AccountView(0, config, secret, calendar, request.user_email)
    # a refresh token rotated while the link is checked replaces the one given: the new one is what gets stored
    view.on_rotate = lambda token: secret.__setitem__("refresh_token", token)
    return view


@asynccontextmanager
async def reading(view: AccountView, env: Env, default_base: str, tokens: TokenSource) -> AsyncIterator[ApiClient]:
    """A client for a few reads in a row (a link's or a check's), closed after them."""
    api = api_client(view, env, default_base, env.share_tokens(tokens))
    try:
        yield api
    finally:
        await api.aclose()


async def first_read(view: AccountView, env: Env, default_base: str, tokens: TokenSource, path: str,
                     params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Get a token and make one real read: the link's credentials, URL and calendar are proven before storing."""
    async with reading(view, env, default_base, tokens) as api:
        return await api.json("GET", path, params=params, **kwargs)


def revoke_url(token_url: str) -> str:
    """The revocation endpoint beside a token endpoint (Google `/token` -> `/revoke`, Zoom `/oauth/token` ->
    `/oauth/revoke`)."""
    return token_url.rsplit("/", 1)[0] + "/revoke"


async def revoke(url: str, token: str, env: Env, client: tuple[str, str] | None = None) -> str:
    """Revoke a grant (RFC 7009 style: the token in a form). Returns what happened, in words."""
    async with httpx.AsyncClient(verify=tls(), transport=env.transport, timeout=env.timeout) as http:
        try:
            response = await http.post(url, data={"token": token}, auth=client)
        except httpx.TransportError as exc:
            raise Transient(f"revocation endpoint unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise Transient(f"revocation endpoint answered {response.status_code}")
    if response.status_code >= 400:
        # already invalid (revoked or expired) is as good as revoked
        return f"the provider no longer accepts the grant ({response.status_code})"
    return "grant revoked"


def require(view: AccountView, *names: str) -> None:
    missing = [n for n in names if not view.secret.get(n) and not view.config.get(n)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}")
