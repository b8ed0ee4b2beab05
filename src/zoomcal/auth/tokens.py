"""Access tokens shared by every process through the store, refreshed by one process at a time.

An account's access token is kept sealed in `accounts.access_token` (until `access_expires_at`): every
process reuses it until `margin` seconds before it expires, and keeps it in memory until then. A refresh
locks the account's row - PostgreSQL `SELECT ... FOR UPDATE`; SQLite has no row locks, so `BEGIN IMMEDIATE`
takes its write lock up front - and, inside the lock, reads the sealed secret and the cached token again:
when another process refreshed while this one waited, its token is used and no request is made. Otherwise
the grant runs with the current refresh token, and the rotated refresh token (sealed) and the new access
token are written in the same transaction, before the lock is released. So two processes never send the
same rotating refresh token (Zoom answers the second with `invalid_grant`), and N processes refused with
one expired token make one refresh, not N.

A refresh the provider refuses marks the account `reauth`, with the provider's error code as the reason
(never a secret), and raises AuthExpired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from zoomcal.auth.oauth import TokenSource
from zoomcal.auth.vault import Vault
from zoomcal.errors import AuthExpired, ConfigError, RateLimited, Transient
from zoomcal.logging import get_logger
from zoomcal.metrics import TOKEN_REFRESH_FAILURES
from zoomcal.store.db import Database
from zoomcal.store.models import Account

log = get_logger("zoomcal.auth")

GrantFactory = Callable[[dict[str, Any]], TokenSource]
"""An account's opened secret -> the grant whose `fetch` asks the provider for a token."""


@dataclass(frozen=True)
class _Access:
    token: str
    expires: float   # seconds since the epoch: every process compares it with its own clock


def _epoch(value: datetime) -> float:
    # SQLite hands back naive datetimes; they were written in UTC
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class StoredTokens(TokenSource):
    """The access token of one account, shared through the store (see the module docstring). The database
    is used from worker threads, so it must be one every thread reaches: a SQLite file or PostgreSQL (an
    in-memory SQLite database is a different one in each thread)."""

    def __init__(self, db: Database, vault: Vault, account_id: int, grant: GrantFactory, *,
                 margin: float = 60.0, clock: Callable[[], float] = time.time, wait: float = 120.0):
        super().__init__()
        self.db, self.vault, self.account_id = db, vault, account_id
        self.margin = margin
        self._grant = grant
        self._clock = clock
        self._wait = wait            # the longest a held lock waits for the token request's answer
        self._failed: str | None = None   # the last token a request was refused with

    async def token(self, client: httpx.AsyncClient) -> str:
        async with self._lock:   # this process's callers of this source share one answer
            if self._token is not None and self._fresh(self._expires):
                return self._token
            failed = self._failed
            access = await asyncio.to_thread(self._read, failed)
            if access is None:
                access = await asyncio.to_thread(self._refresh_locked, asyncio.get_running_loop(), client, failed)
            self._token, self._expires = access.token, access.expires
            return access.token

    def invalidate(self, failed: str | None = None) -> None:
        """A request was refused with `failed` (default: the token in memory). The next `token()` refreshes
        only if the store still holds that very token; one that replaced it is simply used."""
        failed = failed if failed is not None else self._token
        if failed is None:
            return
        self._failed = failed
        if failed == self._token:
            self._token = None

    def _fresh(self, expires: float) -> bool:
        return self._clock() < expires - self.margin

    def _usable(self, sealed: bytes | None, expires_at: datetime | None, failed: str | None) -> _Access | None:
        if sealed is None or expires_at is None or not self._fresh(_epoch(expires_at)):
            return None
        try:
            token = self.vault.open(sealed)["access_token"]
        except (ConfigError, KeyError):   # sealed under a retired key: the cache is disposable, refresh
            return None
        return None if token == failed else _Access(token, _epoch(expires_at))

    def _read(self, failed: str | None) -> _Access | None:
        """The shared token, read without a lock (a worker thread; never on the event loop)."""
        with Session(self.db.engine) as s:
            row = s.execute(select(Account.access_token, Account.access_expires_at)
                            .where(Account.id == self.account_id)).first()
        return None if row is None else self._usable(row.access_token, row.access_expires_at, failed)

    def _refresh_locked(self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient,
                        failed: str | None) -> _Access:
        """Refresh under the account's row lock.

        This whole function runs in one worker thread (asyncio.to_thread), which owns the connection and its
        open transaction from the lock to the commit: waiting for the lock and every database call block
        that thread, never the event loop. The token request itself is async httpx on the caller's loop:
        the thread hands the coroutine to the loop (run_coroutine_threadsafe) and waits for its answer, the
        loop stays free meanwhile (other coroutines and the request itself run on it). The lock is released
        when the `with` blocks end - committed after a refresh or a refusal, rolled back on any other error
        (timeout, 5xx, 429, cancelled loop), so a failure leaves the stored secret as it was. A caller
        cancelled meanwhile does not abort the thread: the refresh finishes and is stored for the next call.
        """
        with self.db.engine.connect() as raw:
            conn = raw.execution_options(sqlite_begin="IMMEDIATE")
            with Session(bind=conn) as s, s.begin():
                account = s.execute(select(Account).where(Account.id == self.account_id)
                                    .with_for_update()).scalar_one_or_none()
                if account is None or account.secret is None:
                    raise AuthExpired(f"account {self.account_id} has no stored credentials")
                access = self._usable(account.access_token, account.access_expires_at, failed)
                if access is not None:   # another process refreshed while this one waited for the lock
                    return access
                secret = self.vault.open(account.secret)
                provider = account.provider
                try:
                    issued = self._on_loop(loop, self._grant(secret).fetch(client))
                except (Transient, RateLimited) as exc:   # rolled back; the next call tries again
                    TOKEN_REFRESH_FAILURES.labels(provider=provider, reason=_reason(exc)).inc()
                    raise
                except AuthExpired as exc:
                    account.status, account.status_reason = "reauth", f"token refresh refused: {exc}"[:500]
                    account.checked_at = datetime.now(UTC)
                    refused = exc
                else:
                    refused, access = None, self._store(account, secret, issued)
        if refused is not None:   # committed: the account now waits for a person to link it again
            TOKEN_REFRESH_FAILURES.labels(provider=provider, reason="refused").inc()
            log.warning("token.refused", account_id=self.account_id, reason=str(refused))
            raise refused
        log.info("token.refreshed", account_id=self.account_id)
        return access

    def _on_loop(self, loop: asyncio.AbstractEventLoop, request: Coroutine[Any, Any, dict]) -> dict:
        future = asyncio.run_coroutine_threadsafe(request, loop)
        try:
            return future.result(timeout=self._wait)
        except TimeoutError as exc:
            future.cancel()
            raise Transient("the token request did not finish in time") from exc

    def _store(self, account: Account, secret: dict[str, Any], issued: dict) -> _Access:
        rotated = issued.get("refresh_token")
        if rotated and rotated != secret.get("refresh_token"):
            secret["refresh_token"] = rotated
            account.secret = self.vault.seal(secret)
        expires = self._clock() + float(issued.get("expires_in", 3600))
        account.access_token = self.vault.seal({"access_token": issued["access_token"]})
        account.access_expires_at = datetime.fromtimestamp(expires, UTC)
        account.checked_at = datetime.now(UTC)
        if isinstance(issued.get("scope"), str):     # what the provider granted (space-separated; some use commas)
            account.granted_scopes = sorted(set(issued["scope"].replace(",", " ").split()))
        return _Access(issued["access_token"], expires)


def _reason(exc: Exception) -> str:
    return "rate_limited" if isinstance(exc, RateLimited) else "unavailable"


def stored_tokens(db: Database, vault: Vault, account_id: int, grant_factory: GrantFactory, *,
                  margin: float = 60.0) -> TokenSource:
    """The token source for an account's ApiClient, shared through the store; `grant_factory` makes the provider's
    grant from the account's opened secret (the application layer passes the provider spec's `grant`)."""
    return StoredTokens(db, vault, account_id, grant_factory, margin=margin)
