"""How the sandboxes deliver notifications: an outbox per vendor.

Notifications made while a request is handled (an event changed, a presence status set) are queued and sent
when that request is done; a validation request (Graph's handshake) is sent at once and its answer awaited.
Delivery is a pluggable callable `(url, headers, body) -> httpx.Response`: by default an HTTP POST to the URL;
a test may hand in one that calls an in-process ASGI app, or hold deliveries and release them later (so a
notification never reaches a receiver that is itself waiting on the sandbox). Every delivery is recorded.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

Deliver = Callable[[str, dict[str, str], bytes], Awaitable[httpx.Response]]


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every delivery: building one per client costs more than a loopback delivery."""
    return ssl.create_default_context()


async def http_post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10.0, verify=_tls()) as client:
        return await client.post(url, headers=headers, content=body)


@dataclass
class Delivery:
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    answer: str = ""
    content_type: str = ""
    error: str = ""


@dataclass
class Outbox:
    deliver: Deliver | None = None         # None: an HTTP POST to the URL
    hold: bool = False                     # queue only; `release()` sends
    pending: list[Delivery] = field(default_factory=list)
    sent: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, url: str, headers: dict[str, str], body: bytes) -> None:
        with self.lock:
            self.pending.append(Delivery(url, dict(headers), body))

    async def send(self, delivery: Delivery, timeout: float = 10.0) -> Delivery:
        try:
            answer = await asyncio.wait_for((self.deliver or http_post)(delivery.url, delivery.headers,
                                                                       delivery.body), timeout)
            delivery.status, delivery.answer = answer.status_code, answer.text
            delivery.content_type = answer.headers.get("content-type", "")
        except (TimeoutError, httpx.HTTPError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.sent.append(delivery)
        return delivery

    async def flush(self) -> list[Delivery]:
        """Send what is queued (unless held)."""
        if self.hold:
            return []
        with self.lock:
            batch, self.pending = self.pending, []
        return [await self.send(d) for d in batch]

    async def release(self) -> list[Delivery]:
        held, self.hold = self.hold, False
        try:
            return await self.flush()
        finally:
            self.hold = held
