"""A thin async HTTP client shared by the REST connectors: bearer auth, typed errors, call counting; and the
metering every provider's HTTP answers go through (`count_call`, or `metered` for a connector's own client)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from zoomcal.auth.oauth import TokenSource
from zoomcal.errors import (
    AuthExpired,
    Conflict,
    ConnectorError,
    CursorInvalid,
    DailyLimitReached,
    InvalidItem,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Transient,
)
from zoomcal.metrics import API_CALLS, RATE_LIMITED
from zoomcal.net import tls


def answer_json(response: httpx.Response, what: str) -> Any:
    """The JSON of a successful answer. One that is not JSON (a proxy's HTML error page, a body cut short) is a
    Transient failure naming what came instead: tried again, and never mistaken for data."""
    if not response.content:
        return None
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise Transient(f"{what} answered {response.status_code} with a body that is not JSON ({kind}, "
                        f"{len(response.content)} bytes)") from None


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


def error_for(response: httpx.Response, what: str, gone_is: type[ConnectorError] = NotFound) -> ConnectorError:
    """The typed error for an HTTP failure: the executor decides retry / resync / skip from its type alone."""
    status = response.status_code
    message = f"{what} -> {status} {_message(response)}".strip()
    if status == 403 and "ratelimit" in message.lower().replace(" ", ""):
        return _rate_limited(message, response, 5.0)   # Google: 403 (or 429) and no Retry-After
    if status in (401, 403):
        return AuthExpired(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 410:
        return gone_is(message)
    if status == 412:
        return PreconditionFailed(message)
    if status == 429 and (response.headers.get("x-ratelimit-type", "").lower() == "daily-limit"
                          or "daily rate limit" in message.lower()):
        return _daily_limit(message, response.headers.get("retry-after", ""))   # Zoom: 100 meeting writes/day
    if status == 429 or (status == 503 and "retry-after" in response.headers):
        return _rate_limited(message, response, 1.0)   # Graph throttles with 503 + Retry-After too
    if status >= 500:
        return Transient(message)
    return InvalidItem(message)


def _rate_limited(message: str, response: httpx.Response, default: float) -> RateLimited:
    """A rate limit answer: the wait it gives (Retry-After in seconds), or `default` as a first guess."""
    try:
        return RateLimited(message, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return RateLimited(message, default, advised=False)


def _daily_limit(message: str, retry_after: str) -> DailyLimitReached:
    """Retry-After of a daily limit: an instant (Zoom documents `2020-05-31T00:00:00Z`), an HTTP date, seconds."""
    now = datetime.now(UTC)
    resets_at = None
    try:
        resets_at = datetime.fromisoformat(retry_after.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            resets_at = parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            try:
                resets_at = now + timedelta(seconds=float(retry_after))
            except ValueError:
                resets_at = None
    if resets_at is not None and resets_at.tzinfo is None:
        resets_at = resets_at.replace(tzinfo=UTC)
    wait = max(0.0, (resets_at - now).total_seconds()) if resets_at else 0.0
    return DailyLimitReached(message, resets_at=resets_at, retry_after=wait)


def count_call(provider: str, status: int | str, rate_limited: bool | None = None) -> None:
    """Count one provider API call: its HTTP status (or "error" when no answer came), and a throttling answer.
    `provider` is the registry key the caller was built for (never a name chosen here)."""
    label = provider or "unknown"
    API_CALLS.labels(provider=label, status=str(status)).inc()
    if rate_limited is None:
        rate_limited = status == 429
    if rate_limited:
        RATE_LIMITED.labels(provider=label).inc()


def metered(provider: str) -> dict[str, list]:
    """httpx event hooks counting every answer of a connector's own client (CalDAV, ICS) under `provider`."""
    async def on_response(response: httpx.Response) -> None:
        status = response.status_code
        count_call(provider, status, status == 429 or (status == 503 and "retry-after" in response.headers))
    return {"response": [on_response]}


class ApiClient:
    def __init__(self, base_url: str, tokens: TokenSource, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 20.0, provider: str = ""):
        self.client = httpx.AsyncClient(verify=tls(), base_url=base_url.rstrip("/") + "/", transport=transport,
                                        timeout=httpx.Timeout(timeout))
        self.tokens = tokens
        self.provider = provider
        self.calls = 0

    async def request(self, method: str, path: str, *, gone_is: type[ConnectorError] = NotFound,
                      expired: Callable[[httpx.Response], bool] | None = None, **kwargs: Any) -> httpx.Response:
        """One call, its failure as a typed error; `expired` tells a refused change cursor by the answer (for the
        providers that refuse one with something else than 410): it is raised as CursorInvalid."""
        for attempt in (0, 1):
            token = await self.tokens.token(self.client)
            headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
            self.calls += 1
            try:
                response = await self.client.request(method, path.lstrip("/"), headers=headers, **kwargs)
            except httpx.TimeoutException as exc:
                count_call(self.provider, "error")
                raise Transient(f"{method} timed out") from exc
            except httpx.TransportError as exc:
                count_call(self.provider, "error")
                raise Transient(f"{method} failed: {type(exc).__name__}") from exc
            if response.status_code == 401 and attempt == 0:
                count_call(self.provider, 401, False)
                self.tokens.invalidate(token)   # expired early: refresh once (unless already done)
                kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
                continue
            break
        if response.status_code < 400:
            count_call(self.provider, response.status_code, False)
            return response
        error = error_for(response, f"{method} {path}", gone_is)
        if expired is not None and expired(response):
            error = CursorInvalid(f"{method} {path} -> {response.status_code} {_message(response)}".strip())
        count_call(self.provider, response.status_code, isinstance(error, RateLimited))
        raise error

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return answer_json(response, f"{method} {path}")

    async def aclose(self) -> None:
        await self.client.aclose()

