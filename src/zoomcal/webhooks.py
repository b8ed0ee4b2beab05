"""Zoom webhooks: a change in Zoom (a meeting, or an event in Zoom's calendar) makes its owner's sync run now
instead of at the next polling round.

Zoom signs each notification: `x-zm-signature` is `v0=` + HMAC-SHA256(secret token, `v0:{x-zm-request-timestamp}:
{raw body}`) in hex. Anything unsigned, wrongly signed, older than five minutes (a replay) or not JSON is refused
with a clear reason, which also goes to the sync log; nothing in it is acted on. The `endpoint.url_validation`
challenge is answered with the plain token and its HMAC. A notification only says *who* to sync: the sync itself
reads the provider as always, so a forged or repeated notification can cost a listing, never a wrong write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from zoomcal.errors import ZoomcalError

TOLERANCE_S = 300


class WebhookRejected(ZoomcalError):
    pass


def zoom_signature(secret: str, timestamp: str, body: bytes) -> str:
    message = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_zoom(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> dict[str, Any]:
    """The notification, once its signature and age check out; WebhookRejected says why not."""
    timestamp = headers.get("x-zm-request-timestamp") or ""
    signature = headers.get("x-zm-signature") or ""
    if not timestamp or not signature:
        raise WebhookRejected("unsigned (no x-zm-signature / x-zm-request-timestamp)")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_S:
        raise WebhookRejected(f"timestamp {timestamp[:20]!r} is not within {TOLERANCE_S} s of now (replay?)")
    if not hmac.compare_digest(signature, zoom_signature(secret, timestamp, body)):
        raise WebhookRejected("signature does not match the secret token")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("body is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise WebhookRejected("no event name")
    return event


def url_validation(secret: str, event: Mapping[str, Any]) -> dict[str, str]:
    plain = str((event.get("payload") or {}).get("plainToken") or "")
    if not plain:
        raise WebhookRejected("url_validation without plainToken")
    return {"plainToken": plain,
            "encryptedToken": hmac.new(secret.encode(), plain.encode(), hashlib.sha256).hexdigest()}


def zoom_targets(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Whose data changed: ("calendar", Zoom calendar id) for calendar.event_*; ("zoom_user", host id) and
    ("zoom_meeting", meeting id) for meeting.*; nothing for other events (acknowledged, not acted on)."""
    name = str(event.get("event") or "")
    obj = (event.get("payload") or {}).get("object") or {}
    if name.startswith("calendar.event_") and obj.get("resource_id"):
        return [("calendar", str(obj["resource_id"]))]
    if name.startswith("meeting."):
        return [(kind, str(obj[key])) for kind, key in (("zoom_user", "host_id"), ("zoom_meeting", "id"))
                if obj.get(key)]
    return []


def users_for(ctx: Any, target: tuple[str, str]) -> list[str]:
    """E-mails of the users a target belongs to: the owner of a Zoom calendar, the Zoom account linked with that
    user id, or the user whose Zoom meetings include that meeting (for accounts linked by e-mail)."""
    from zoomcal.store.models import Account, Calendar, Link, User

    kind, key = target
    with ctx.db.session() as s:
        query = select(User.email).join(Calendar, Calendar.user_id == User.id)
        if kind == "zoom_meeting":
            query = query.join(Link, Link.calendar_id == Calendar.id).where(Calendar.role == "meetings",
                                                                             Link.remote_id == key)
        else:
            provider = "zoom-calendar" if kind == "calendar" else "zoom"
            query = query.join(Account, Account.id == Calendar.account_id).where(Account.provider == provider,
                                                                                 Calendar.remote_id == key)
        return sorted(set(s.scalars(query)))


def make_app(secret: str, on_change: Callable[[tuple[str, str]], None], on_reject: Callable[[str], None],
             clock: Callable[[], float] = time.time) -> FastAPI:
    app = FastAPI(title="zoomcal webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/webhooks/zoom")
    async def zoom(request: Request):
        body = await request.body()
        try:
            event = verify_zoom(secret, request.headers, body, clock())
            if event["event"] == "endpoint.url_validation":
                return url_validation(secret, event)
        except WebhookRejected as exc:
            on_reject(f"Zoom webhook refused: {exc}")
            return JSONResponse({"error": str(exc)}, status_code=401)
        targets = zoom_targets(event)
        for target in targets:
            on_change(target)
        return {"received": event["event"], "acted": bool(targets)}

    return app


class WebhookInbox:
    """Targets named by webhooks, handed from the web server's thread to the sync loop."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, str]] = queue.Queue()

    def put(self, target: tuple[str, str]) -> None:
        self.queue.put(target)

    def wait(self, timeout: float) -> set[tuple[str, str]]:
        """Targets that arrived within `timeout` seconds (empty when none did), gathered for a moment so a burst
        of notifications becomes one run."""
        try:
            first = self.queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return set()
        got = {first}
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                got.add(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return got
