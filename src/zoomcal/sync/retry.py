"""Bounded retries: 429 waits for Retry-After, transient faults back off exponentially with jitter.

A rate limit answer without a wait (Google's 403/429) backs off exponentially from its first guess, as the vendors
ask; one whose wait is longer than a retry may wait is not retried sooner (it would only be refused again): it goes
back to the caller, as a daily limit does (that lifts at midnight, not in seconds: the engine defers the write to a
later run)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from zoomcal.errors import DailyLimitReached, RateLimited, Transient
from zoomcal.logging import get_logger

log = get_logger("zoomcal.retry")

T = TypeVar("T")


class Retrier:
    def __init__(self, max_retries: int = 4, base_delay: float = 0.25, max_delay: float = 60.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, seed: int | None = None):
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.waited: list[float] = []
        self.retries = 0

    async def call(self, fn: Callable[[int], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await fn(attempt)
            except DailyLimitReached:
                raise
            except RateLimited as exc:
                error: Exception = exc
                wait = max(exc.retry_after, 0.0)
                if not exc.advised:
                    wait *= 2 ** attempt
                if attempt >= self.max_retries or (exc.advised and wait > self.max_delay):
                    raise
                delay = min(wait, self.max_delay)
            except Transient as exc:
                error = exc
                if attempt >= self.max_retries:
                    raise
                delay = min(self.base_delay * (2 ** attempt), self.max_delay) * (0.5 + self.rng.random() / 2)
            attempt += 1
            self.retries += 1
            self.waited.append(delay)
            log.info("retrying", attempt=attempt, of=self.max_retries, wait_s=round(delay, 3),
                     error=f"{type(error).__name__}: {str(error)[:200]}")
            await self.sleep(delay)
