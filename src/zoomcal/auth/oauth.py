"""OAuth token sources: Zoom server-to-server (account credentials) and refresh-token grants.

Refresh tokens may rotate (Zoom issues a new one on every refresh and the old one stops working), so the
new token is handed to `on_rotate` - which persists it, sealed - before the access token is used.

These sources keep the access token in this process only; `tokens.StoredTokens` shares it through the store
and refreshes under a row lock, using the same grants (`fetch`) for the token request itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from zoomcal.errors import AuthExpired, RateLimited, Transient


def retry_after_seconds(response: httpx.Response, default: float = 1.0) -> float:
    """Retry-After in seconds (the delta-seconds form; anything else falls back to `default`)."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class TokenSource:
    def __init__(self) -> None:
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self, client: httpx.AsyncClient) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() > self._expires - 60:
                data = await self.fetch(client)
                self._token = data["access_token"]
                self._expires = time.monotonic() + float(data.get("expires_in", 3600))
            return self._token

    def invalidate(self, failed: str | None = None) -> None:
        """Forget the access token a request was refused with. Given the refused token, a token that has
        replaced it meanwhile (another request already refreshed) is kept: one expiry, one refresh."""
        if failed is None or failed == self._token:
            self._token = None

    async def fetch(self, client: httpx.AsyncClient) -> dict:
        """One token request, nothing cached: the provider's answer (access_token, expires_in, and a
        refresh_token when it rotates)."""
        raise NotImplementedError

    @staticmethod
    async def _post(client: httpx.AsyncClient, url: str, data: dict, auth=None) -> dict:
        try:
            response = await client.post(url, data=data, auth=auth)
        except httpx.TransportError as exc:
            raise Transient(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code == 429:
            raise RateLimited("token endpoint rate limited", retry_after_seconds(response))
        if response.status_code >= 500:
            raise Transient(f"token endpoint answered {response.status_code}")
        if response.status_code != 200:
            try:
                body = response.json()
                reason = body.get("error", "") if isinstance(body, dict) else ""
            except ValueError:
                reason = ""
            raise AuthExpired(f"token endpoint refused the grant ({response.status_code} {reason})")
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            raise Transient("token endpoint answered 200 with a body that is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise Transient("token endpoint answered 200 without an access token") from None
        return body


class ZoomAccountCredentials(TokenSource):
    """Server-to-server OAuth: grant_type=account_credentials with HTTP Basic client auth."""

    def __init__(self, token_url: str, account_id: str, client_id: str, client_secret: str):
        super().__init__()
        self.token_url, self.account_id = token_url, account_id
        self._auth = (client_id, client_secret)

    async def fetch(self, client: httpx.AsyncClient) -> dict:
        return await self._post(client, self.token_url,
                                {"grant_type": "account_credentials", "account_id": self.account_id},
                                auth=self._auth)


class RefreshTokenSource(TokenSource):
    """User OAuth: grant_type=refresh_token. `basic_auth` sends the client in a header (Zoom) instead of
    the form (Google)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, refresh_token: str,
                 basic_auth: bool, on_rotate: Callable[[str], Awaitable[None] | None] | None = None):
        super().__init__()
        self.token_url = token_url
        self._client = (client_id, client_secret)
        self._refresh = refresh_token
        self._basic = basic_auth
        self._on_rotate = on_rotate

    async def fetch(self, client: httpx.AsyncClient) -> dict:
        data = {"grant_type": "refresh_token", "refresh_token": self._refresh}
        auth = None
        if self._basic:
            auth = self._client
        else:
            data["client_id"] = self._client[0]
            if self._client[1]:   # a public client (PKCE sign-in) has no secret
                data["client_secret"] = self._client[1]
        issued = await self._post(client, self.token_url, data, auth=auth)
        new_refresh = issued.get("refresh_token")
        if new_refresh and new_refresh != self._refresh:
            self._refresh = new_refresh
            if self._on_rotate is not None:
                result = self._on_rotate(new_refresh)
                if asyncio.iscoroutine(result):
                    await result
        return issued
