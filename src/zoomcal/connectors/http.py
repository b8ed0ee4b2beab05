"""A thin async HTTP client shared by the REST connectors: bearer auth, typed errors, call counting."""

from __future__ import annotations

from typing import Any

import httpx

from zoomcal.auth.oauth import TokenSource, retry_after_seconds
from zoomcal.errors import (
    AuthExpired,
    Conflict,
    ConnectorError,
    CursorInvalid,
    InvalidItem,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Transient,
)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message", ""))[:300]
        return str(body.get("message") or err or "")[:300]
    return ""


class ApiClient:
    def __init__(self, base_url: str, tokens: TokenSource, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 20.0):
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", transport=transport,
                                        timeout=httpx.Timeout(timeout))
        self.tokens = tokens
        self.calls = 0

    async def request(self, method: str, path: str, *, gone_is: type[ConnectorError] = NotFound,
                      **kwargs: Any) -> httpx.Response:
        for attempt in (0, 1):
            token = await self.tokens.token(self.client)
            headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
            self.calls += 1
            try:
                response = await self.client.request(method, path.lstrip("/"), headers=headers, **kwargs)
            except httpx.TimeoutException as exc:
                raise Transient(f"{method} timed out") from exc
            except httpx.TransportError as exc:
                raise Transient(f"{method} failed: {type(exc).__name__}") from exc
            if response.status_code == 401 and attempt == 0:
                self.tokens.invalidate()   # the access token expired early: refresh once
                kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
                continue
            break
        status = response.status_code
        if status < 400:
            return response
        message = f"{method} {path} -> {status} {_message(response)}".strip()
        if status == 403 and "ratelimit" in message.lower().replace(" ", ""):
            raise RateLimited(message, retry_after_seconds(response, 5.0))
        if status == 401 or status == 403:
            raise AuthExpired(message)
        if status == 404:
            raise NotFound(message)
        if status == 409:
            raise Conflict(message)
        if status == 410:
            raise gone_is(message)
        if status == 412:
            raise PreconditionFailed(message)
        if status == 429:
            raise RateLimited(message, retry_after_seconds(response))
        if status >= 500:
            raise Transient(message)
        raise InvalidItem(message)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return response.json() if response.content else None

    async def aclose(self) -> None:
        await self.client.aclose()


__all__ = ["ApiClient", "CursorInvalid", "retry_after_seconds"]
