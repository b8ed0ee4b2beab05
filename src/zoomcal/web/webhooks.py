"""`POST /webhooks/{channel}`: provider notifications, verified on their channel and turned into due syncs.

The receiver only translates: it reads the raw body (signatures cover the exact bytes), hands it to
`zoomcal.app.push.receive` with the query parameters, and answers with what that says (JSON, or plain text where a
provider's validation wants its token echoed). Bodies larger than a notification can be are refused
before anything is parsed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from zoomcal.app.context import Services
from zoomcal.app.push import PushAnswer, receive

MAX_BODY = 256 * 1024


def make_app(services: Services, on_answer: Callable[[str, PushAnswer], None] | None = None,
             clock: Callable[[], float] = time.time) -> FastAPI:
    app = FastAPI(title="zoomcal webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router(services, on_answer, clock))
    return app


def router(services: Services, on_answer: Callable[[str, PushAnswer], None] | None = None,
           clock: Callable[[], float] = time.time) -> APIRouter:
    """The receiver's routes, for an app that serves more than webhooks (`zoomcal.web.app`)."""
    routes = APIRouter()

    @routes.post("/webhooks/{channel}")
    async def webhook(channel: str, request: Request):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
        # verifying and marking touch the store: off the event loop, so a slow disk never holds other requests
        answer = await asyncio.to_thread(receive, services, channel, dict(request.headers), body, clock(),
                                         dict(request.query_params))
        if on_answer is not None:
            on_answer(channel, answer)
        if answer.text is not None:
            return PlainTextResponse(answer.text, status_code=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    return routes
