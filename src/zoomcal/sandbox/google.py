"""Offline emulator of the Google Calendar API v3 (events, instances, freeBusy, token endpoint).

Shapes follow ../shared/specs/google/calendar.v3.json; behaviour follows the documented one: `syncToken`
incremental listing (deleted items reported as `status: cancelled`), HTTP 410 when a sync token expired,
etags with `If-Match` -> 412, client-chosen ids with 409 on duplicates, exceptions of recurring events
addressed as `{masterId}_{originalStart}`. Base path `/google/calendar/v3`, token endpoint `/google/token`.

Quotas, as Google enforces them per project and per user with a sliding minute (off unless set; the published
defaults are `USER_PER_MINUTE` and `PROJECT_PER_MINUTE`): past one, `rate_limit_status` 403 (or 429) with reason
`userRateLimitExceeded` or `rateLimitExceeded` in the `usageLimits` domain and no Retry-After (Google asks for
exponential back-off). Every app request is counted per user in `meter`, with every refusal and every echo write
(a PATCH or PUT that left the event as it was).

Push: `events.watch` opens a channel (client-chosen id and token, an https `address`, `params.ttl` in seconds;
the answer adds the `resourceId` of the watched collection and `expiration` in milliseconds). Right after, a
`sync` message is posted; each change of the calendar's events posts an `exists` message. Messages have an empty
body and X-Goog-Channel-ID, X-Goog-Channel-Token, X-Goog-Channel-Expiration, X-Goog-Resource-ID,
X-Goog-Resource-URI, X-Goog-Resource-State and X-Goog-Message-Number headers. `channels.stop` ends a channel.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formatdate
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from zoomcal.domain.recurrence import occurrences
from zoomcal.domain.timeutil import UTC, fmt_instant, is_date, parse_instant, to_datetime
from zoomcal.errors import InvalidItem
from zoomcal.mapping.google import instance_id, series_to_content
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.sandbox.common import ApiError, Meter, RateWindows, TokenBook, api_error_response
from zoomcal.sandbox.push import Outbox

ID_PATTERN = re.compile(r"^[a-v0-9]{5,1024}$")
WRITABLE = ("summary", "description", "location", "start", "end", "recurrence", "attendees", "status",
            "extendedProperties", "transparency", "visibility", "colorId", "reminders", "eventType",
            "originalStartTime", "iCalUID", "sequence")
USER_PER_MINUTE = 600          # Google's published Calendar API quota per user per project
PROJECT_PER_MINUTE = 10_000    # and per project


@dataclass
class GoogleCalendar:
    id: str
    summary: str
    time_zone: str
    owner: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    epoch: int = 0            # bumped when sync tokens are invalidated
    resource_id: str = field(default_factory=lambda: secrets.token_urlsafe(20))   # of the events collection


@dataclass
class GoogleState:
    client_id: str = "google-sandbox-client.apps.googleusercontent.com"
    client_secret: str = "google-sandbox-secret"
    calendars: dict[str, GoogleCalendar] = field(default_factory=dict)
    tokens: TokenBook = field(default_factory=TokenBook)
    seq: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)    # channel id -> channel
    outbox: Outbox = field(default_factory=Outbox)
    max_ttl: int = 30 * 24 * 3600
    clock: Any = field(default=time.monotonic)     # seconds, for the quota windows
    per_user_per_minute: int | None = None         # requests per user per minute (None: no limit)
    per_project_per_minute: int | None = None      # requests per minute over all users (None: no limit)
    rate_limit_status: int = 403                   # how a quota refusal is answered: 403 or 429
    windows: RateWindows = field(default_factory=RateWindows)
    meter: Meter = field(init=False)

    def __post_init__(self) -> None:
        self.meter = Meter(clock=lambda: self.clock())

    def take_rate(self, request: Request, user: str) -> ApiError | None:
        """Count an app's request against the per-user and per-project minutes -> the refusal past one, or None."""
        now = self.clock()
        for key, limit, reason, message in (
                (("user", user), self.per_user_per_minute, "userRateLimitExceeded", "User Rate Limit Exceeded"),
                (("project",), self.per_project_per_minute, "rateLimitExceeded", "Rate Limit Exceeded")):
            if limit is None:
                continue
            name = "google:" + ":".join(key)
            if self.windows.take(key, limit, 60.0, now) is not None:
                self.meter.refuse(user, request.method, request.url.path, name, None)
                status = self.rate_limit_status
                return ApiError(status, {"error": {"code": status, "message": message, "errors": [
                    {"domain": "usageLimits", "reason": reason, "message": message}]}})
            self.meter.admitted(name)
        return None

    def notify(self, cal_id: str, resource_state: str, only: str | None = None) -> None:
        """Queue a message on every live channel watching this calendar (or on one channel)."""
        now_ms = int(time.time() * 1000)
        for channel in self.channels.values():
            if channel["_calendar"] != cal_id or (only and channel["id"] != only) \
                    or int(channel["expiration"]) < now_ms:
                continue
            channel["_messages"] += 1
            headers = {"X-Goog-Channel-ID": channel["id"], "X-Goog-Resource-ID": channel["resourceId"],
                       "X-Goog-Resource-URI": channel["resourceUri"], "X-Goog-Resource-State": resource_state,
                       "X-Goog-Message-Number": str(channel["_messages"]),
                       "X-Goog-Channel-Expiration": formatdate(int(channel["expiration"]) / 1000, usegmt=True)}
            if channel.get("token"):
                headers["X-Goog-Channel-Token"] = channel["token"]
            self.outbox.queue(channel["address"], headers, b"")

    def add_calendar(self, owner: str, time_zone: str = "UTC", summary: str | None = None,
                     cal_id: str | None = None) -> GoogleCalendar:
        cal = GoogleCalendar(cal_id or owner, summary or owner, time_zone, owner)
        self.calendars[cal.id] = cal
        return cal

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def expire_sync_tokens(self, cal_id: str | None = None) -> None:
        for cal in self.calendars.values():
            if cal_id is None or cal.id == cal_id:
                cal.epoch += 1


def _error(status: int, reason: str, message: str) -> ApiError:
    return ApiError(status, {"error": {"code": status, "message": message,
                                       "errors": [{"domain": "global", "reason": reason, "message": message}]}})


def _encode(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _decode(token: str) -> dict:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        return {}


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _stamp(seq: int) -> str:
    return fmt_instant(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seq))[:-1] + ".000Z"


def _check_event(body: dict[str, Any]) -> None:
    for key in ("start", "end"):
        when = body.get(key)
        if not isinstance(when, dict) or not (when.get("date") or when.get("dateTime")):
            raise _error(400, "required", f"Missing {key} time.")
        if when.get("dateTime"):
            try:
                parse_instant(when["dateTime"]) if re.search(r"(Z|[+-]\d\d:\d\d)$", when["dateTime"]) else None
            except InvalidItem as exc:
                raise _error(400, "invalid", f"Invalid {key} time.") from exc
    try:
        series_to_content(body, [], DEFAULT_RULES)
    except InvalidItem as exc:
        raise _error(400, "invalid", str(exc)) from exc


def build_app(state: GoogleState) -> APIRouter:
    router = APIRouter()

    def auth(request: Request) -> str:
        subject = state.tokens.subject(request)
        if subject is None:
            raise ApiError(401, {"error": {"code": 401, "message": "Request had invalid authentication "
                                           "credentials.", "status": "UNAUTHENTICATED"}})
        return subject

    def calendar(cal_id: str, subject: str) -> GoogleCalendar:
        cal = state.calendars.get(cal_id) or (
            state.calendars.get(subject) if cal_id == "primary" else None)
        if cal is None:
            raise _error(404, "notFound", "Not Found")
        if subject != cal.owner and not subject.startswith("admin:"):
            raise _error(403, "forbidden", "Forbidden")
        return cal

    def touch(cal: GoogleCalendar, event: dict[str, Any]) -> dict[str, Any]:
        seq = state.next_seq()
        event["_seq"] = seq
        event["etag"] = f'"{seq}"'
        event["updated"] = _stamp(seq)
        event["_stored_at"] = time.time()     # when this version was stored (wall clock; never served)
        event["sequence"] = event.get("sequence", 0)
        cal.events[event["id"]] = event
        state.notify(cal.id, "exists")
        return event

    def check_etag(request: Request, event: dict[str, Any]) -> None:
        wanted = request.headers.get("if-match")
        if wanted and wanted != "*" and wanted != event["etag"]:
            raise _error(412, "conditionNotMet", "Precondition Failed")

    @router.post("/token")
    async def token(request: Request):
        form = await request.form()
        if form.get("client_id") != state.client_id or form.get("client_secret") != state.client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "The OAuth client was not "
                                 "found."}, 401)
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        with state.lock:
            subject = state.tokens.refresh.get(str(form.get("refresh_token", "")))
            if subject is None:
                return JSONResponse({"error": "invalid_grant", "error_description": "Token has been expired "
                                     "or revoked."}, 400)
            issued = state.tokens.issue(subject, app=True)
            issued["scope"] = "https://www.googleapis.com/auth/calendar"
            return issued

    @router.post("/revoke")
    async def revoke(request: Request):
        """Revoke the grant behind a token (oauth2.googleapis.com/revoke): 200, or 400 invalid_token."""
        form = await request.form()
        token = str(form.get("token") or request.query_params.get("token") or "")
        with state.lock:
            if not state.tokens.revoke(token):
                return JSONResponse({"error": "invalid_token", "error_description": "Token expired or revoked"},
                                    400)
        return JSONResponse({})

    @router.get("/calendar/v3/calendars/{cal_id}/events")
    def list_events(cal_id: str, request: Request, syncToken: str = "", pageToken: str = "",
                    maxResults: int = 250, showDeleted: bool = False, singleEvents: bool = False):
        subject = auth(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            since = 0
            if pageToken:
                page = _decode(pageToken)
                since, offset, upto = page.get("since", 0), page.get("offset", 0), page.get("upto", 0)
                if page.get("cal") != cal.id:
                    raise _error(400, "invalidPageToken", "Invalid page token.")
            else:
                offset, upto = 0, state.seq
                if syncToken:
                    token = _decode(syncToken)
                    if token.get("cal") != cal.id or token.get("epoch") != cal.epoch:
                        raise _error(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is "
                                     "required.")
                    since = token.get("seq", 0)
            incremental = bool(syncToken) or since > 0
            selected = [e for e in cal.events.values() if since < e["_seq"] <= upto]
            if not (incremental or showDeleted):
                selected = [e for e in selected if e.get("status") != "cancelled"]
            selected.sort(key=lambda e: (e["_seq"], e["id"]))
            size = max(1, min(maxResults, 2500))
            chunk = selected[offset:offset + size]
            body: dict[str, Any] = {"kind": "calendar#events", "etag": f'"{upto}"', "summary": cal.summary,
                                    "updated": _stamp(upto), "timeZone": cal.time_zone, "accessRole": "owner",
                                    "defaultReminders": [], "items": [_public(e) for e in chunk]}
            if offset + size < len(selected):
                body["nextPageToken"] = _encode({"cal": cal.id, "since": since, "offset": offset + size,
                                                 "upto": upto})
            else:
                body["nextSyncToken"] = _encode({"cal": cal.id, "seq": upto, "epoch": cal.epoch})
            return body

    @router.post("/calendar/v3/calendars/{cal_id}/events")
    async def insert_event(cal_id: str, request: Request):
        subject = auth(request)
        body = await _json(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            event_id = body.get("id") or secrets.token_hex(13)
            if not ID_PATTERN.match(event_id):
                raise _error(400, "invalid", "Invalid resource id value.")
            if event_id in cal.events:
                raise _error(409, "duplicate", "The requested identifier already exists.")
            _check_event(body)
            event = {k: v for k, v in body.items() if k in WRITABLE}
            event.update(kind="calendar#event", id=event_id, status=body.get("status", "confirmed"),
                         created=_stamp(state.seq + 1), iCalUID=body.get("iCalUID") or f"{event_id}@google.com",
                         htmlLink=f"https://calendar.google.com/calendar/event?eid={event_id}",
                         organizer={"email": cal.owner, "self": True}, creator={"email": cal.owner, "self": True},
                         eventType=body.get("eventType", "default"))
            return _public(touch(cal, event))

    def find(cal: GoogleCalendar, event_id: str) -> dict[str, Any]:
        event = cal.events.get(event_id)
        if event is None:
            raise _error(404, "notFound", "Not Found")
        return event

    def virtual_instance(cal: GoogleCalendar, event_id: str) -> dict[str, Any] | None:
        """An instance id of a recurring master with no stored exception yet."""
        master_id, sep, _ = event_id.rpartition("_")
        master = cal.events.get(master_id) if sep else None
        if master is None or not master.get("recurrence") or master.get("status") == "cancelled":
            return None
        for inst in _expand(master):
            if inst["id"] == event_id:
                return inst
        return None

    def stored_or_instance(cal: GoogleCalendar, event_id: str) -> tuple[dict[str, Any], bool]:
        """The stored event, or a fresh copy of a not-yet-stored instance (True); 404 when neither exists."""
        event = cal.events.get(event_id)
        if event is not None:
            return event, False
        inst = virtual_instance(cal, event_id)
        if inst is None:
            raise _error(404, "notFound", "Not Found")
        return inst, True

    @router.get("/calendar/v3/calendars/{cal_id}/events/{event_id}")
    def get_event(cal_id: str, event_id: str, request: Request):
        subject = auth(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            return _public(stored_or_instance(cal, event_id)[0])

    async def write(cal_id: str, event_id: str, request: Request, replace: bool):
        subject = auth(request)
        body = await _json(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            event, virtual = stored_or_instance(cal, event_id)
            if not virtual:
                check_etag(request, event)
            updated = {k: v for k, v in event.items() if k not in WRITABLE or not replace}
            if replace:
                updated.update({k: v for k, v in event.items() if k in ("originalStartTime", "recurringEventId")})
            for key, value in body.items():
                if key in WRITABLE and key not in ("originalStartTime",):
                    updated[key] = value
            if updated.get("status") == "cancelled" and not updated.get("recurringEventId"):
                raise _error(400, "invalid", "Use delete to cancel an event.")
            if updated.get("status") != "cancelled":
                _check_event(updated)
            updated["sequence"] = event.get("sequence", 0) + 1
            if state.tokens.by_app(request) and _effective(updated) == _effective(event):
                state.meter.echo(subject, request.method, request.url.path)
            return _public(touch(cal, updated))

    @router.patch("/calendar/v3/calendars/{cal_id}/events/{event_id}")
    async def patch_event(cal_id: str, event_id: str, request: Request):
        return await write(cal_id, event_id, request, replace=False)

    @router.put("/calendar/v3/calendars/{cal_id}/events/{event_id}")
    async def update_event(cal_id: str, event_id: str, request: Request):
        return await write(cal_id, event_id, request, replace=True)

    @router.delete("/calendar/v3/calendars/{cal_id}/events/{event_id}", status_code=204)
    def delete_event(cal_id: str, event_id: str, request: Request):
        subject = auth(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            event, virtual = stored_or_instance(cal, event_id)
            if not virtual and event.get("status") == "cancelled":
                raise _error(410, "deleted", "Resource has been deleted")
            if not virtual:
                check_etag(request, event)
            event["status"] = "cancelled"
            touch(cal, event)
            if not event.get("recurringEventId"):
                for other in list(cal.events.values()):
                    if other.get("recurringEventId") == event_id and other.get("status") != "cancelled":
                        other["status"] = "cancelled"
                        touch(cal, other)
            return Response(status_code=204)

    @router.get("/calendar/v3/calendars/{cal_id}/events/{event_id}/instances")
    def instances(cal_id: str, event_id: str, request: Request, showDeleted: bool = False,
                  maxResults: int = 250):
        subject = auth(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            master = find(cal, event_id)
            items = []
            for inst in _expand(master):
                stored = cal.events.get(inst["id"])
                item = stored if stored is not None else inst
                if item.get("status") == "cancelled" and not showDeleted:
                    continue
                items.append(_public(item))
            return {"kind": "calendar#events", "summary": cal.summary, "timeZone": cal.time_zone,
                    "accessRole": "owner", "defaultReminders": [], "items": items[:maxResults],
                    "etag": master["etag"], "updated": master["updated"]}

    @router.post("/calendar/v3/calendars/{cal_id}/events/watch")
    async def watch(cal_id: str, request: Request):
        subject = auth(request)
        body = await _json(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            channel_id, address = str(body.get("id") or ""), str(body.get("address") or "")
            if not channel_id or body.get("type") not in ("web_hook", "webhook"):
                raise _error(400, "required", "Channel id and type web_hook are required.")
            if not address.startswith("https://"):
                raise _error(400, "push.webhookUrlNotHttps", "WebHook callback must be HTTPS: " + address)
            if channel_id in state.channels:
                raise _error(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
            try:
                ttl = int((body.get("params") or {}).get("ttl") or 604800)
            except ValueError as exc:
                raise _error(400, "invalid", "Invalid ttl.") from exc
            expiration = int(time.time() * 1000) + min(max(ttl, 1), state.max_ttl) * 1000
            channel = {"kind": "api#channel", "id": channel_id, "resourceId": cal.resource_id,
                       "resourceUri": f"https://www.googleapis.com/calendar/v3/calendars/{cal.id}/events"
                                      "?alt=json", "expiration": str(expiration)}
            if body.get("token"):
                channel["token"] = str(body["token"])
            state.channels[channel_id] = {**channel, "address": address, "_calendar": cal.id, "_messages": 0}
            state.notify(cal.id, "sync", only=channel_id)
            return channel

    @router.post("/calendar/v3/channels/stop", status_code=204)
    async def stop_channel(request: Request):
        auth(request)
        body = await _json(request)
        with state.lock:
            channel = state.channels.get(str(body.get("id") or ""))
            if channel is None or channel["resourceId"] != body.get("resourceId"):
                raise _error(404, "notFound", f"Channel '{body.get('id')}' not found for project")
            del state.channels[channel["id"]]
            return Response(status_code=204)

    @router.post("/calendar/v3/freeBusy")
    async def free_busy(request: Request):
        subject = auth(request)
        body = await _json(request)
        try:
            lo, hi = parse_instant(body["timeMin"]), parse_instant(body["timeMax"])
        except (KeyError, InvalidItem) as exc:
            raise _error(400, "badRequest", "timeMin and timeMax are required RFC 3339 times.") from exc
        items = body.get("items") or []
        if len(items) > int(body.get("calendarExpansionMax") or 50) or len(items) > 50:
            raise _error(400, "tooManyCalendarsRequested", "Too many calendars requested.")
        out = {}
        with state.lock:
            for entry in items:
                try:
                    cal = calendar(entry.get("id", ""), subject)
                except ApiError:
                    out[entry.get("id", "")] = {"errors": [{"domain": "global", "reason": "notFound"}]}
                    continue
                out[cal.id] = {"busy": _busy(cal, lo, hi)}
        return {"kind": "calendar#freeBusy", "timeMin": body["timeMin"], "timeMax": body["timeMax"],
                "calendars": out}

    return router


def _effective(event: dict[str, Any]) -> dict[str, Any]:
    """What an event holds for its owner (the bookkeeping fields a write bumps left out)."""
    return {k: event.get(k) for k in WRITABLE if k != "sequence"}


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _error(400, "parseError", "Parse Error") from exc
    if not isinstance(body, dict):
        raise _error(400, "parseError", "Parse Error")
    return body


def _expand(master: dict[str, Any]) -> list[dict[str, Any]]:
    content = series_to_content(master, [], DEFAULT_RULES)
    tz = content.get("timezone")
    out = []
    for rid, start, end in occurrences(content):
        def when(value: str) -> dict[str, Any]:
            if is_date(value):
                return {"date": value}
            return {"dateTime": fmt_instant(to_datetime(value)), "timeZone": tz or "UTC"}
        inst = {k: v for k, v in master.items() if k not in ("recurrence", "id", "etag", "_seq")}
        inst.update(id=instance_id(master["id"], rid), recurringEventId=master["id"],
                    originalStartTime=when(rid), start=when(start), end=when(end), etag=master["etag"])
        out.append(inst)
    return out


def _busy(cal: GoogleCalendar, lo: datetime, hi: datetime) -> list[dict[str, str]]:
    busy = []
    for event in cal.events.values():
        if event.get("status") == "cancelled" or event.get("recurringEventId") or \
                event.get("transparency") == "transparent":
            continue
        exceptions = [e for e in cal.events.values() if e.get("recurringEventId") == event["id"]]
        content = series_to_content(event, exceptions, DEFAULT_RULES)
        for _rid, start, end in occurrences(content, lo, hi):
            s, e = to_datetime(start), to_datetime(end)
            if s < hi and e > lo:
                busy.append((s, e))
    busy.sort()
    return [{"start": fmt_instant(s), "end": fmt_instant(e)} for s, e in busy]


def make_google_app(state: GoogleState) -> FastAPI:
    app = FastAPI(title="Google Calendar API sandbox")
    app.add_exception_handler(ApiError, api_error_response)
    app.include_router(build_app(state))

    @app.middleware("http")
    async def meter(request: Request, call_next):
        # apps' requests are counted per user and judged against the quotas before anything else
        if not state.tokens.by_app(request):
            return await call_next(request)
        with state.lock:
            user = state.tokens.subject(request) or "-"
            state.meter.request(user)
            refused = state.take_rate(request, user)
        if refused is not None:
            return api_error_response(request, refused)
        return await call_next(request)

    @app.middleware("http")
    async def send_notifications(request: Request, call_next):
        response = await call_next(request)
        await state.outbox.flush()      # messages about what the request changed go out once it is answered
        return response

    return app
