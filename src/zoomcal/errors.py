"""The small typed family of errors every connector raises.

The executor decides retry / resync / skip from the type alone, never from a provider's message.
"""

from __future__ import annotations

from datetime import datetime


class ZoomcalError(Exception):
    """Base class for every error zoomcal raises on purpose."""


class ConnectorError(ZoomcalError):
    retryable = False


class NotFound(ConnectorError):
    pass


class Conflict(ConnectorError):
    """The item already exists (a create whose key is taken)."""


class PreconditionFailed(ConnectorError):
    """The etag we sent is stale: somebody changed the item since we read it."""


class RateLimited(ConnectorError):
    """Refused for a rate limit. `advised`: the provider said how long to wait (Retry-After); otherwise
    `retry_after` is only a first guess, to grow with each refusal in a row."""

    retryable = True

    def __init__(self, message: str = "rate limited", retry_after: float = 1.0, advised: bool = True):
        super().__init__(message)
        self.retry_after = retry_after
        self.advised = advised


class DailyLimitReached(RateLimited):
    """A per-day write limit is used up (Zoom: 100 meeting creates/updates per user and UTC day). Not worth a
    wait inside a run: the write is deferred until `resets_at` (None: the next 00:00 UTC)."""

    retryable = False

    def __init__(self, message: str = "daily limit reached", resets_at: datetime | None = None,
                 retry_after: float = 0.0):
        super().__init__(message, retry_after)
        self.resets_at = resets_at


class AuthExpired(ConnectorError):
    """The credentials no longer work; a person has to re-link the account."""


class Transient(ConnectorError):
    """5xx, timeouts, dropped connections: safe to retry (writes carry idempotency keys)."""

    retryable = True


class InvalidItem(ConnectorError):
    """This one item cannot be mapped or written; the rest of the run goes on."""


class CursorInvalid(ConnectorError):
    """The change cursor expired (Google 410): list everything again."""


class ConfigError(ZoomcalError):
    pass
