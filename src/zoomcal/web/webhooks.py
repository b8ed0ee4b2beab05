"""`POST /webhooks/{channel}`: provider notifications, verified on their channel and turned into due syncs.

The receiver only translates: it reads the raw body (signatures cover the exact bytes), has
`zoomcal.app.push.verify` check it with the query parameters, has what checked out recorded by `push.record`
(batched, see `Recorder`), and answers with what those say (JSON, or plain text where a provider's validation
wants its token echoed). Bodies larger than a notification can be are refused
before anything is parsed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from zoomcal.app import push
from zoomcal.app.context import Services
from zoomcal.app.push import PushAnswer, Verified

MAX_BODY = 256 * 1024
BATCH = 200          # notifications recorded in one transaction at most


class Recorder:
    """Records verified notifications in batches: while one batch is written (off the event loop, one transaction),
    those that arrive meanwhile wait for the next. A request is answered once its own batch committed, so nothing
    is acknowledged before it is durable, and a burst costs a few commits instead of one each. A batch that fails
    is retried one notification at a time: only the one that fails is answered with an error."""

    def __init__(self, services: Services, limit: int = BATCH):
        self.services, self.limit = services, limit
        self.waiting: list[tuple[Verified, asyncio.Future[PushAnswer]]] = []
        self.task: asyncio.Task | None = None

    async def record(self, verified: Verified) -> PushAnswer:
        answer: asyncio.Future[PushAnswer] = asyncio.get_running_loop().create_future()
        self.waiting.append((verified, answer))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting[:self.limit], self.waiting[self.limit:]
            if not await self._write(batch):
                for item in batch:                  # one of them is bad: find it, record the others
                    await self._write([item])

    async def _write(self, batch: list[tuple[Verified, asyncio.Future[PushAnswer]]]) -> bool:
        """Record a batch -> whether every request in it has its answer (False: a batch of several failed on
        something one of them may hold, so they are to be tried one by one)."""
        try:
            answers = await asyncio.to_thread(push.record, self.services, [verified for verified, _ in batch])
        except Exception as exc:
            # one notification alone, or the store itself failing (unreachable, locked past its timeout), which
            # fails every one alike: the error is the answer
            if len(batch) == 1 or isinstance(exc, OperationalError | InterfaceError):
                for _verified, future in batch:
                    _settle(future, exc=exc)
                return True
            return False
        for (_verified, future), answer in zip(batch, answers, strict=True):
            _settle(future, answer)
        return True


def _settle(future: asyncio.Future, answer: PushAnswer | None = None, exc: BaseException | None = None) -> None:
    if future.done():               # the caller went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(answer)


def make_app(services: Services, on_answer: Callable[[str, PushAnswer], None] | None = None,
             clock: Callable[[], float] = time.time) -> FastAPI:
    app = FastAPI(title="zoomcal webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router(services, on_answer, clock))
    return app


def router(services: Services, on_answer: Callable[[str, PushAnswer], None] | None = None,
           clock: Callable[[], float] = time.time) -> APIRouter:
    """The receiver's routes, for an app that serves more than webhooks (`zoomcal.web.app`)."""
    routes = APIRouter()
    recorder = Recorder(services)

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
        args = (services, channel, dict(request.headers), body, clock(), dict(request.query_params))
        # whatever touches the store runs off the event loop, so a slow disk never holds other requests
        checked = push.verify(*args) if push.verifies_offline(channel) else await asyncio.to_thread(push.verify, *args)
        answer = checked if isinstance(checked, PushAnswer) else await recorder.record(checked)
        if on_answer is not None:
            on_answer(channel, answer)
        if answer.text is not None:
            return PlainTextResponse(answer.text, status_code=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    return routes
