"""Access tokens shared by every process through the store, refreshed by one process at a time.

An account's access token is kept sealed in `accounts.access_token` (until `access_expires_at`): every
process reuses it until `margin` seconds before it expires, and keeps it in memory until then. A refresh is
claimed first, in a short transaction that locks the account's row (PostgreSQL `SELECT ... FOR UPDATE`;
SQLite has no row locks, so `BEGIN IMMEDIATE` takes its write lock up front): it reads the cached token again
- when another process refreshed meanwhile, that token is used and no request is made - and, unless another
process's claim is still running, writes its own claim (`refresh_holder`, `refresh_until`) with the sealed
secret it read. The token request then runs with no database lock held, so nothing else waits on the store
while the provider answers (a process serving several people at once keeps writing), and the rotated refresh
token (sealed) and the new access token are written with the claim's end. A process that finds a claim
running waits for it and uses its token. So two processes never send the same rotating refresh token (Zoom
answers the second with `invalid_grant`), and N processes refused with one expired token make one refresh,
not N. A claim outlives the longest request by a margin; one left by a process that died lapses and is taken
over. A refresh runs to its end even when its caller is cancelled, so a rotated refresh token is never lost.

A refresh the provider refuses marks the account `reauth`, with the provider's error code as the reason
(never a secret), and raises AuthExpired.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
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


# a claim outlives its request's time limit by this much: storing the answer may wait for the store, and two
# machines' clocks differ
_CLAIM_MARGIN = 60.0
RELINKED = "the account was linked again while its token was refreshed"


class StoredTokens(TokenSource):
    """The access token of one account, shared through the store (see the module docstring). The database
    is used from worker threads, so it must be one every thread reaches: a SQLite file or PostgreSQL (an
    in-memory SQLite database is a different one in each thread)."""

    def __init__(self, db: Database, vault: Vault, account_id: int, grant: GrantFactory, *,
                 margin: float = 60.0, clock: Callable[[], float] = time.time, wait: float = 60.0):
        super().__init__()
        self.db, self.vault, self.account_id = db, vault, account_id
        self.margin = margin
        self._grant = grant
        self._clock = clock
        self._wait = wait            # the longest a token request may take, and a wait for another's refresh
        self._failed: str | None = None   # the last token a request was refused with
        self._holder = f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._claims = itertools.count(1)

    async def token(self, client: httpx.AsyncClient) -> str:
        async with self._lock:   # this process's callers of this source share one answer
            if self._token is not None and self._fresh(self._expires):
                return self._token
            failed = self._failed
            access = await asyncio.to_thread(self._read, failed)
            if access is None:      # the refresh finishes even if this caller is cancelled meanwhile
                access = await asyncio.shield(_in_flight(self._refresh(client, failed), self.account_id))
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

    async def _refresh(self, client: httpx.AsyncClient, failed: str | None) -> _Access:
        holder = f"{self._holder}:{next(self._claims)}"
        loop = asyncio.get_running_loop()
        give_up, pause = loop.time() + self._wait + _CLAIM_MARGIN, 0.02
        while True:
            claimed = await asyncio.to_thread(self._claim, holder, failed)
            if isinstance(claimed, _Access):     # another process refreshed: its token
                return claimed
            if claimed is not None:
                secret, provider, sealed = claimed
                break
            if loop.time() > give_up:
                raise Transient("another process's token refresh did not finish in time")
            await asyncio.sleep(pause)           # another process's refresh is under way
            pause = min(0.5, pause * 2)
        try:
            issued = _checked(await asyncio.wait_for(self._grant(secret).fetch(client), self._wait))
        except AuthExpired as exc:
            if await asyncio.to_thread(self._end_claim, holder, sealed, refused=exc):
                TOKEN_REFRESH_FAILURES.labels(provider=provider, reason="refused").inc()
                log.warning("token.refused", account_id=self.account_id, reason=str(exc))
                raise
            raise Transient(RELINKED) from None
        except BaseException as exc:             # the store stays as it was; the next call tries again
            await asyncio.to_thread(self._release, holder)
            if isinstance(exc, TimeoutError):
                TOKEN_REFRESH_FAILURES.labels(provider=provider, reason="unavailable").inc()
                raise Transient("the token request did not finish in time") from exc
            if isinstance(exc, Transient | RateLimited):
                TOKEN_REFRESH_FAILURES.labels(provider=provider, reason=_reason(exc)).inc()
            raise
        for attempt in range(3):    # what the provider issued is written before anything else is tried
            try:
                stored = await asyncio.to_thread(self._end_claim, holder, sealed, secret=secret, issued=issued)
                break
            except OperationalError as exc:
                if attempt == 2:
                    await asyncio.to_thread(self._release, holder)
                    log.error("token.not_stored", account_id=self.account_id, error=type(exc).__name__)
                    raise Transient("the refreshed token could not be stored") from exc
                await asyncio.sleep(0.5 * (attempt + 1))
        if not stored:
            raise Transient(RELINKED)
        log.info("token.refreshed", account_id=self.account_id)
        return _Access(issued["access_token"], _epoch(stored))

    @contextmanager
    def _locked(self) -> Iterator[Account | None]:
        """The account's row (None when it is gone) in a short transaction that holds it: PostgreSQL locks the
        row, SQLite takes its write lock up front. Committed at the end, rolled back on an error."""
        with self.db.locked_transaction() as s:
            yield s.execute(select(Account).where(Account.id == self.account_id).with_for_update()).scalar_one_or_none()

    def _claim(self, holder: str, failed: str | None) -> _Access | tuple[dict[str, Any], str, bytes] | None:
        """-> the token another process stored meanwhile, or (the opened secret, the provider, the sealed secret)
        when this holder now has the claim, or None while another process's claim runs."""
        with self._locked() as account:
            if account is None or account.secret is None:
                raise AuthExpired(f"account {self.account_id} has no stored credentials")
            access = self._usable(account.access_token, account.access_expires_at, failed)
            if access is not None:
                return access
            now = time.time()
            if account.refresh_holder and account.refresh_until is not None and _epoch(account.refresh_until) > now:
                return None
            account.refresh_holder = holder
            account.refresh_until = datetime.fromtimestamp(now + self._wait + _CLAIM_MARGIN, UTC)
            return self.vault.open(account.secret), account.provider, account.secret

    def _end_claim(self, holder: str, sealed: bytes, *, secret: dict[str, Any] | None = None,
                   issued: dict | None = None, refused: AuthExpired | None = None) -> datetime | bool:
        """Store what the refresh got (or that it was refused) and end this holder's claim -> the new token's end
        (True for a refusal recorded), or False when the account's secret changed since the claim (linked again
        meanwhile): then nothing of this refresh is kept."""
        with self._locked() as account:
            if account is None:
                raise AuthExpired(f"account {self.account_id} was removed")
            _unclaim(account, holder)
            if account.secret != sealed:
                return False
            if refused is not None:
                account.status, account.status_reason = "reauth", f"token refresh refused: {refused}"[:500]
                account.checked_at = datetime.now(UTC)
                return True
            assert secret is not None and issued is not None
            return self._store(account, secret, issued)

    def _release(self, holder: str) -> None:
        """End this holder's claim, storing nothing (best effort: an unreleased claim lapses)."""
        try:
            with self._locked() as account:
                if account is not None:
                    _unclaim(account, holder)
        except Exception as exc:    # noqa: BLE001 — the claim lapses by itself
            log.warning("token.claim_not_released", account_id=self.account_id, error=type(exc).__name__)

    def _store(self, account: Account, secret: dict[str, Any], issued: dict) -> datetime:
        rotated = issued.get("refresh_token")
        if rotated and rotated != secret.get("refresh_token"):
            secret["refresh_token"] = rotated
            account.secret = self.vault.seal(secret)
        expires = datetime.fromtimestamp(self._clock() + issued["expires_in"], UTC)
        account.access_token = self.vault.seal({"access_token": issued["access_token"]})
        account.access_expires_at = expires
        account.checked_at = datetime.now(UTC)
        if isinstance(issued.get("scope"), str):     # what the provider granted (space-separated; some use commas)
            account.granted_scopes = sorted(set(issued["scope"].replace(",", " ").split()))
        return expires


def _unclaim(account: Account, holder: str) -> None:
    """End the holder's claim on the account (another holder's, which took over a lapsed one, stays)."""
    if account.refresh_holder == holder:
        account.refresh_holder = account.refresh_until = None


def _checked(issued: Any) -> dict:
    """A token answer with an access token and its lifetime in seconds (an hour when it names none)."""
    if not isinstance(issued, dict) or not isinstance(issued.get("access_token"), str) or not issued["access_token"]:
        raise Transient("the token answer holds no access token")
    lifetime = issued.get("expires_in")
    try:
        seconds = 3600.0 if lifetime is None else float(lifetime)
    except (TypeError, ValueError):
        raise Transient("the token answer's lifetime is not a number") from None
    if not 0 < seconds < 10 * 365 * 86400:
        raise Transient("the token answer's lifetime is out of range")
    return {**issued, "expires_in": seconds}


_REFRESHING: set[asyncio.Task] = set()


def _in_flight(refresh: Coroutine[Any, Any, _Access], account_id: int) -> asyncio.Task:
    """Run a refresh as a task of its own, kept until it ends (`settle` waits for those of a closing loop); a
    failure nobody awaited any more is logged."""
    task = asyncio.ensure_future(refresh)
    _REFRESHING.add(task)

    def done(task: asyncio.Task) -> None:
        _REFRESHING.discard(task)
        if not task.cancelled() and task.exception() is not None and \
                not isinstance(task.exception(), AuthExpired | Transient | RateLimited):
            log.warning("token.refresh_failed", account_id=account_id, error=type(task.exception()).__name__)

    task.add_done_callback(done)
    return task


async def settle(timeout: float = 65.0) -> None:
    """Wait (up to `timeout` seconds) for this loop's token refreshes under way: a process that stops keeps the
    rotated refresh tokens it was sent."""
    loop = asyncio.get_running_loop()
    running = [t for t in _REFRESHING if t.get_loop() is loop and not t.done()]
    if running:
        await asyncio.wait(running, timeout=timeout)


def _reason(exc: Exception) -> str:
    return "rate_limited" if isinstance(exc, RateLimited) else "unavailable"


def stored_tokens(db: Database, vault: Vault, account_id: int, grant_factory: GrantFactory, *,
                  margin: float = 60.0) -> TokenSource:
    """The token source for an account's ApiClient, shared through the store; `grant_factory` makes the provider's
    grant from the account's opened secret (the application layer passes the provider spec's `grant`)."""
    return StoredTokens(db, vault, account_id, grant_factory, margin=margin)
