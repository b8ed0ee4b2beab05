"""Fault injection for the sandboxes: 429 with Retry-After, 5xx, timeouts, lost responses.

Rules are matched per request (method + path regex) and fire a set number of times. Status faults are
answered by the sandbox itself. A timeout (the request is never handled) and a lost response (the write
is applied, the answer never comes back) end in `SimulatedTimeout`, which the in-process transport turns
into `httpx.ReadTimeout`; over a real socket the server hangs up mid-response instead.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from dataclasses import dataclass, field

import httpx

KINDS = ("429", "500", "503", "timeout", "lost_response")


class SimulatedTimeout(Exception):
    pass


@dataclass
class FaultRule:
    kind: str
    method: str = ".*"
    path: str = ".*"
    times: int = 1
    retry_after: int = 1

    def matches(self, method: str, path: str) -> bool:
        return bool(re.fullmatch(self.method, method, re.I)) and bool(re.search(self.path, path))


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    random_rate: float = 0.0
    random_kinds: tuple[str, ...] = KINDS
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    fired: dict[str, int] = field(default_factory=dict)
    latency: float = 0.0            # seconds every request waits before it is answered (a provider's round trip)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, method: str = ".*", path: str = ".*", times: int = 1, retry_after: int = 1) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {KINDS}")
        with self._lock:
            self.rules.append(FaultRule(kind, method, path, times, retry_after))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.random_rate = 0.0

    def take(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.matches(method, path):
                    rule.times -= 1
                    self.fired[rule.kind] = self.fired.get(rule.kind, 0) + 1
                    return rule
            self.rules = [r for r in self.rules if r.times > 0]
            if self.random_rate and self.rng.random() < self.random_rate:
                kind = self.rng.choice(self.random_kinds)
                self.fired[kind] = self.fired.get(kind, 0) + 1
                return FaultRule(kind)
        return None


class FaultMiddleware:
    """Pure ASGI middleware: counts calls and applies the fault plan before/after the real handler."""

    def __init__(self, app, plan: FaultPlan, counter: dict[str, int], drop_connections: bool = False):
        self.app = app
        self.plan = plan
        self.counter = counter
        self.drop_connections = drop_connections

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        kind = "token" if path.rstrip("/").endswith("/token") else ("reads" if method == "GET" else "writes")
        self.counter[kind] = self.counter.get(kind, 0) + 1
        self.counter["total"] = self.counter.get("total", 0) + 1
        if self.plan.latency > 0:
            await asyncio.sleep(self.plan.latency)
        rule = self.plan.take(method, path)
        if rule is None:
            return await self.app(scope, receive, send)
        if rule.kind in ("429", "500", "503"):
            status = int(rule.kind)
            headers = [(b"content-type", b"application/json")]
            if status == 429:
                headers.append((b"retry-after", str(rule.retry_after).encode()))
            body = json.dumps({"code": status, "message": f"injected fault {status}"}).encode()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return None
        if rule.kind == "lost_response":
            async def swallow(_message):
                return None

            await self.app(scope, receive, swallow)
        if self.drop_connections:
            # over a real socket: promise a body, send part of it, hang up -> the client sees a broken response
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
            await send({"type": "http.response.body", "body": b"{", "more_body": True})
            return None
        raise SimulatedTimeout(rule.kind)


class SandboxTransport(httpx.AsyncBaseTransport):
    """In-process transport to a sandbox app; simulated timeouts surface as httpx.ReadTimeout."""

    def __init__(self, app):
        self.inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except SimulatedTimeout as exc:
            raise httpx.ReadTimeout(f"simulated {exc}", request=request) from None

    async def aclose(self) -> None:
        await self.inner.aclose()
