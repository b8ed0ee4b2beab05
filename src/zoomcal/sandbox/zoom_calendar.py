"""Offline emulator of Zoom's own calendar API (calendar-api.json): `/zoom/v2/calendars/{calId}/events`.

Zoom's calendar events follow the Google Calendar v3 model, so the store is the Google sandbox's, reached with
Zoom's OAuth tokens (an account token may read any user's calendar, a user token only its own) and trimmed to
what calendar-api.json describes: the server chooses event ids, unknown request fields (`id`,
`extendedProperties`, ...) are ignored, a listing carries no etags and no exception instances (no
`recurringEventId` / `originalStartTime`), and `recurrence` holds the RRULE / EXDATE / RDATE lines.
`POST /calendars/freeBusy` answers with a list of calendars. Every change of an event is notified to the Zoom
app's webhook URL (signed as all Zoom webhooks: `calendar.event_create` / `_update` / `_delete`, naming the
calendar as `resource_id` and the event), as calendar-webhooks.json describes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response

from zoomcal.sandbox.google import GoogleState, make_google_app
from zoomcal.sandbox.zoom import ZoomState

WRITABLE = {"start", "end", "attendees", "colorId", "description", "guestsCanInviteOthers", "guestsCanModify",
            "guestsCanSeeOtherGuests", "location", "recurrence", "reminders", "status", "summary", "transparency",
            "visibility"}
LISTED = WRITABLE | {"id", "created", "creator", "organizer", "kind", "updated"}
FETCHED = LISTED | {"etag", "eventType", "iCalUID", "sequence"}
ADMIN = "admin:zoom"
NOTIFIED = {"POST": "calendar.event_create", "PATCH": "calendar.event_update", "DELETE": "calendar.event_delete"}


@dataclass
class ZoomCalendarState:
    store: GoogleState = field(default_factory=GoogleState)

    def add_calendar(self, email: str, time_zone: str) -> str:
        self.store.add_calendar(email, time_zone, summary=email)
        return email


def make_zoom_calendar_app(zoom: ZoomState, state: ZoomCalendarState) -> FastAPI:
    app = FastAPI(title="Zoom calendar sandbox")

    @app.middleware("http")
    async def send_webhooks(request: Request, call_next):
        response = await call_next(request)
        await zoom.outbox.flush()       # the app's calendar.event_* notifications go out once a change is answered
        return response
    inner = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_google_app(state.store)),
                              base_url="http://inner/calendar/v3")

    def error(status: int, code: int, message: str) -> Response:
        return Response(json.dumps({"code": code, "message": message}), status_code=status,
                        media_type="application/json")

    def as_admin() -> dict[str, str]:   # the store is reached on the account's behalf once Zoom's token checks out
        return {"Authorization": f"Bearer {state.store.tokens.issue(ADMIN)['access_token']}"}

    async def free_busy(request: Request) -> Response:
        """Google's answer keyed by calendar becomes Zoom's list of calendars."""
        answer = await inner.post("/freeBusy", content=await request.body(),
                                  headers={**as_admin(), "Content-Type": "application/json"})
        data = answer.json()
        if answer.status_code == 200:
            data["calendars"] = [{"id": k, **v} for k, v in (data.get("calendars") or {}).items()]
        return Response(json.dumps(data), status_code=answer.status_code, media_type="application/json")

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
    async def calendars(path: str, request: Request):
        subject = zoom.tokens.subject(request)
        if subject is None:
            return error(401, 124, "Invalid access token.")
        parts = path.split("/")
        if path == "freeBusy" and request.method == "POST":   # busy times of any calendar in the account
            return await free_busy(request)
        if len(parts) < 2 or parts[1] != "events":
            return error(404, 404, "Not found")
        if not subject.startswith("account:"):   # a user token reaches only the user's own calendars
            user = zoom.users.get(subject) or {}
            if parts[0] != user.get("email"):
                return error(403, 403, "No permission.")
        body = None
        if request.method in ("POST", "PATCH"):
            try:
                sent = json.loads(await request.body() or b"{}")
            except ValueError:
                return error(400, 300, "Invalid request body.")
            body = {k: v for k, v in sent.items() if k in WRITABLE} if isinstance(sent, dict) else sent
        answer = await inner.request(request.method, "/calendars/" + path, params=dict(request.query_params), json=body,
                                     headers=as_admin())
        if answer.status_code >= 400:
            return Response(answer.content, status_code=answer.status_code,
                            media_type=answer.headers.get("content-type"))
        if request.method in NOTIFIED and len(parts) in (2, 3):
            event_id = parts[2] if len(parts) == 3 else str(answer.json().get("id", ""))
            zoom.notify(NOTIFIED[request.method], {"resource_id": parts[0], "event_id": event_id})
        if not answer.content:
            return Response(status_code=answer.status_code)
        data = answer.json()
        if isinstance(data.get("items"), list):
            listing = len(parts) == 2   # the events listing shows series and single events, never instances
            data["items"] = [_trim(i, LISTED) for i in data["items"] if not (listing and i.get("recurringEventId"))]
            data.pop("etag", None)
        elif data.get("kind") == "calendar#event":   # a GET shows a few more fields than a write's answer
            data = _trim(data, FETCHED if request.method == "GET" else LISTED)
        return Response(json.dumps(data), status_code=answer.status_code, media_type="application/json")

    return app


def _trim(event: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k in keep}
