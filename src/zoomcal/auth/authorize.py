"""Linking a user's account with the OAuth authorization-code flow and PKCE (RFC 7636): as a native app does
(`authorize`), or through the portal's own redirect (`request`, then `redeem` when the browser comes back).

From the command line, zoomcal listens once on a loopback redirect (`http://127.0.0.1:{port}/callback`, RFC 8252),
sends the person to the provider's sign-in page with an S256 code challenge and a random `state`, and trades the
returned code and the code verifier for tokens. The refresh token is what gets stored (sealed); the access token
is never kept.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from zoomcal.errors import AuthExpired, ConfigError
from zoomcal.net import tls

PAGE = "<!doctype html><title>zoomcal</title><p>{}</p>"


@dataclass(frozen=True)
class Provider:
    authorize_url: str
    token_url: str
    scope: str                                      # "" when the app's configuration decides (Zoom)
    extra: tuple[tuple[str, str], ...] = ()         # more sign-in parameters (Google: access_type=offline)
    client_auth: str = "post"                       # the client at the token endpoint: in the form, or "basic"

    @classmethod
    def of(cls, endpoints: Any) -> Provider:
        """The same endpoints as a provider's spec names them for signing in (`connectors.spec.SignIn`)."""
        return cls(endpoints.authorize_url, endpoints.token_url, endpoints.scope, endpoints.extra,
                   endpoints.client_auth)


def microsoft(tenant: str = "common", base: str = "https://login.microsoftonline.com") -> Provider:
    return Provider(f"{base}/{tenant}/oauth2/v2.0/authorize", f"{base}/{tenant}/oauth2/v2.0/token",
                    "offline_access Calendars.ReadWrite User.Read")


class _Callback:
    """A one-shot loopback HTTP listener for the redirect."""

    def __init__(self) -> None:
        self.result: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        self.server = await asyncio.start_server(self._handle, host, 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://{host}:{port}/callback"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1")
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            _method, target, *_ = request_line.split(" ")
            parts = urlsplit(target)
            if parts.path != "/callback":
                status, text = "404 Not Found", "Not here."
            else:
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if not self.result.done():
                    self.result.set_result(query)
                status, text = "200 OK", ("Signed in; you can close this window." if "code" in query
                                          else "Sign-in was not completed.")
            body = PAGE.format(text).encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass(frozen=True)
class Request:
    """A sign-in under way: the address to send the person to, and what checks and redeems the answer."""

    url: str
    state: str
    verifier: str
    redirect_uri: str


def request(provider: Provider, client_id: str, redirect_uri: str, login_hint: str | None) -> Request:
    """The sign-in address with an S256 code challenge and a random `state`."""
    verifier = generate_token(64)
    state = generate_token(24)
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri,
             "state": state, "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}
    if provider.scope:
        query["scope"] = provider.scope
    if login_hint:
        query["login_hint"] = login_hint
    query.update(provider.extra)
    return Request(f"{provider.authorize_url}?{urlencode(query)}", state, verifier, redirect_uri)


async def redeem(provider: Provider, client_id: str, client_secret: str | None, asked: Request,
                 answer: dict[str, str], *, transport: httpx.AsyncBaseTransport | None = None,
                 need_refresh: bool = True) -> dict[str, Any]:
    """Check the answer the redirect brought (its `state`, a `code`) and trade the code and the verifier for
    tokens; return the token response (with `refresh_token` unless a sign-in only, `need_refresh=False`)."""
    if not hmac.compare_digest(str(answer.get("state") or ""), asked.state):
        raise AuthExpired("the sign-in answer does not belong to this request (state mismatch)")
    if "code" not in answer:
        raise AuthExpired(f"sign-in refused: {answer.get('error_description') or answer.get('error')}")
    form = {"grant_type": "authorization_code", "code": answer["code"], "code_verifier": asked.verifier,
            "redirect_uri": asked.redirect_uri}
    auth = None
    if provider.client_auth == "basic":
        auth = httpx.BasicAuth(client_id, client_secret or "")
    else:
        form["client_id"] = client_id
        if client_secret:
            form["client_secret"] = client_secret
    async with httpx.AsyncClient(verify=tls(), transport=transport, timeout=30) as client:
        try:
            response = await client.post(provider.token_url, data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise ConfigError(f"token endpoint unreachable: {type(exc).__name__}") from exc
    token = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200:
        why = token.get("error_description") or token.get("error") or response.status_code
        raise AuthExpired(f"the token endpoint refused the code: {why}")
    if need_refresh and not token.get("refresh_token"):
        raise AuthExpired("no refresh token was issued (is offline_access in the scope?)")
    return token


async def authorize(provider: Provider, client_id: str, client_secret: str | None, login_hint: str | None,
                    open_browser: Callable[[str], Awaitable[None] | None], *, timeout: float = 300.0,
                    transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """Run the flow over a loopback redirect; return the token response (with `refresh_token`). `open_browser`
    gets the sign-in URL."""
    callback = _Callback()
    asked = request(provider, client_id, await callback.start(), login_hint)
    try:
        opened = open_browser(asked.url)
        if asyncio.iscoroutine(opened):
            await opened
        try:
            answer = await asyncio.wait_for(callback.result, timeout)
        except TimeoutError as exc:
            raise ConfigError(f"no answer from the sign-in page within {int(timeout)} s") from exc
    finally:
        await callback.close()
    return await redeem(provider, client_id, client_secret, asked, answer, transport=transport)
