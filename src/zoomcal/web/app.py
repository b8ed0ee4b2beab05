"""The one web app a zoomcal process serves (`zoomcal serve`): the portal (`zoomcal.web.portal`), the webhook
receiver, metrics, health, and the live feed.

* `POST /webhooks/{channel}` — provider notifications (unauthenticated: each channel verifies its signatures);
* `GET /metrics` — Prometheus text: this process's counters, the store's due queue read at scrape time;
* `GET /healthz` — the process runs (no database);
* `GET /readyz` — the database answers and its schema is the one this zoomcal reads (503 with the reason if not);
* `GET /events` — a server-sent event stream of one tenant's feed (`zoomcal.app.feed`): finished runs, sync-log
  lines, presence, account health; resumable with `Last-Event-ID`. It takes the bearer token of the `api_token`
  setting; without one configured it is served only on a loopback address.

Routes translate and render: what they show comes from `zoomcal.app`.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from zoomcal.app import feed, observe
from zoomcal.app.context import Actor, Services
from zoomcal.app.errors import AppError
from zoomcal.app.push import PushAnswer
from zoomcal.web import portal, webhooks

Hook = Callable[[], Awaitable[None] | None]
READER = Actor("api", "admin")
HEARTBEAT = 15.0


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _call(hooks: Iterable[Hook]) -> None:
    for hook in hooks:
        result = hook()
        if inspect.isawaitable(result):
            await result


def make_app(services: Services, *, clock: Callable[[], float] = time.time,
             on_answer: Callable[[str, PushAnswer], None] | None = None,
             on_startup: Iterable[Hook] = (), on_shutdown: Iterable[Hook] = (),
             heartbeat: float = HEARTBEAT, poll: float = 0.5) -> FastAPI:
    """The app. `on_startup` hooks run when the server starts (in order), `on_shutdown` hooks when it stops (in
    reverse order); both lists stay on `app.state` so a caller may add to them before serving."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await _call(app.state.on_startup)
        try:
            yield
        finally:
            await _call(reversed(app.state.on_shutdown))

    app = FastAPI(title="zoomcal", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.on_startup = list(on_startup)
    app.state.on_shutdown = list(on_shutdown)
    app.include_router(webhooks.router(services, on_answer, clock))
    portal.mount(app, services, clock)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        ready = observe.readiness(services)
        return JSONResponse(ready.as_dict(), status_code=200 if ready.ready else 503)

    @app.get("/metrics")
    def metrics():
        return Response(observe.metrics_text(services), media_type=CONTENT_TYPE_LATEST)

    def refused(request: Request) -> JSONResponse | None:
        token = services.settings.api_token
        if token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return JSONResponse({"error": "a bearer token is required"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            return None
        server = request.scope.get("server")
        if not is_loopback(server[0] if server else None):
            return JSONResponse({"error": "the event stream is served on a loopback address only unless an API "
                                          "token is configured"}, status_code=403)
        return None

    @app.get("/events")
    async def events(request: Request, tenant: str | None = None, after: int | None = None):
        if (answer := refused(request)) is not None:
            return answer
        try:
            ctx = await asyncio.to_thread(services.context, tenant or services.settings.tenant, READER)
        except AppError as exc:
            return JSONResponse({"error": exc.message, "field": exc.field}, status_code=404)
        resume = request.headers.get("last-event-id", "").strip()
        if resume.isdigit():
            start = int(resume)
        elif after is not None:
            start = max(0, after)
        else:
            start = await asyncio.to_thread(feed.latest_id, ctx)    # only what comes next
        return StreamingResponse(_stream(ctx, start, heartbeat, poll), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


async def _stream(ctx, start: int, heartbeat: float, poll: float) -> AsyncIterator[str]:
    yield f"retry: 2000\n: from {start}\n\n"
    async for item in feed.follow(ctx, start, heartbeat=heartbeat, poll=poll):
        if item is None:
            yield ": keep-alive\n\n"
            continue
        yield f"id: {item.id}\nevent: {item.kind}\ndata: {json.dumps(item.as_dict(), default=_json)}\n\n"


def _json(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
