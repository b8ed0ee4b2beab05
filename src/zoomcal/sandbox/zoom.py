"""Offline emulator of the Zoom API (meetings, users, presence, OAuth token endpoint).

Shapes follow ../shared/specs/zoom (meetings-api.json, users-api.json); tests validate responses against
those schemas. Base path `/zoom/v2`, token endpoint `/zoom/oauth/token`.

Like Zoom, it allows 100 meeting creates/updates (POST /users/{userId}/meetings, PATCH /meetings/{meetingId},
occurrences included) per host user and UTC day through the API; the next one is refused with 429, Zoom's
message and `X-RateLimit-Type: Daily-limit` / `Retry-After: <next 00:00 UTC>`; deletes do not count. Only apps
count (tokens from the token endpoint): the sandbox actor stands for a person in Zoom's own apps.

With `rate_plan` set ("free", "pro", "business"; None, the default, turns them off) it also keeps Zoom's account
rate limits: per second by API category (Light, Medium, Heavy, as the spec labels each endpoint: listing meetings
is Medium, a meeting's own endpoints Light), shared by every app of the account, and the daily ones some plans
have. Past one: 429 with Zoom's message and `X-RateLimit-Category`, `X-RateLimit-Type` (`QPS` or `Daily-limit`),
`X-RateLimit-Limit`, `X-RateLimit-Remaining: 0` and `Retry-After` (seconds, or the next 00:00 UTC). Every app
request is counted per user in `meter`, with every refusal and every echo write (a PATCH that changed nothing).

Webhooks: with `webhook_url` and `webhook_secret` set, meeting changes (`meeting.created`, `meeting.updated`,
`meeting.deleted`) and presence changes (`user.presence_status_updated`, also when an app set the status) are
POSTed there once the request that made them is answered, signed as Zoom signs them: `x-zm-request-timestamp`
(seconds) and `x-zm-signature` = `v0=` + hex HMAC-SHA256(secret token, `v0:{timestamp}:{body}`).
`POST /zoom/sandbox/users/{userId}/presence` stands for the person choosing a status in the Zoom client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from zoomcal.domain.timeutil import UTC, fmt_instant, now_utc, parse_instant
from zoomcal.errors import InvalidItem
from zoomcal.mapping.zoom import expand_occurrences
from zoomcal.sandbox.common import (
    ApiError,
    Meter,
    RateWindows,
    TokenBook,
    api_error_response,
    basic_credentials,
    retry_seconds,
)
from zoomcal.sandbox.push import Outbox

PRESENCE_VALUES = ("Away", "Available", "In_Calendar_Event", "Presenting", "In_A_Zoom_Meeting", "On_A_Call",
                   "Out_of_Office", "Busy", "Do_No_Disturb", "Do_Not_Disturb")
LIST_FIELDS = ("uuid", "id", "host_id", "topic", "type", "start_time", "duration", "timezone", "agenda",
               "created_at", "join_url", "pmi")
MEETING_WRITES_PER_DAY = 100
# Zoom's published account rate limits by plan and API category: (requests per second, requests per UTC day or
# None); on Pro and Business the daily limit of Heavy is shared with Resource-intensive APIs
RATE_PLANS: dict[str, dict[str, tuple[int, int | None]]] = {
    "free": {"Light": (4, 6000), "Medium": (2, 2000), "Heavy": (1, 1000)},
    "pro": {"Light": (30, None), "Medium": (20, None), "Heavy": (10, 30000)},
    "business": {"Light": (80, None), "Medium": (60, None), "Heavy": (40, 60000)},
}
QPS_MESSAGE = "You have reached the maximum per-second rate limit for this API. Try again later."
DAILY_MESSAGE = ("You have reached the maximum daily rate limit for this API. Refer to the response header for "
                 "details on when you can make another request.")
SETTINGS_KEPT = ("meeting_invitees", "custom_keys", "join_before_host", "waiting_room", "mute_upon_entry")


@dataclass
class ZoomState:
    account_id: str = "sandbox-account"
    client_id: str = "zoom-sandbox-client"
    client_secret: str = "zoom-sandbox-secret"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    meetings: dict[int, dict[str, Any]] = field(default_factory=dict)
    edits: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tokens: TokenBook = field(default_factory=TokenBook)
    page_tokens: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(81234567890))
    presence_min_interval: float = 60.0          # Zoom allows about one presence update per user per minute
    clock: Any = field(default=time.monotonic)
    lock: threading.RLock = field(default_factory=threading.RLock)
    meeting_writes_per_day: int | None = MEETING_WRITES_PER_DAY   # per host user and UTC day (None: no limit)
    wall_clock: Any = field(default=now_utc)                       # which UTC day it is
    meeting_writes: dict[tuple[str, str], int] = field(default_factory=dict)   # (host id, day) -> writes
    rate_plan: str | None = None            # the account's plan for its rate limits (see RATE_PLANS); None: off
    windows: RateWindows = field(default_factory=RateWindows)
    daily_requests: dict[tuple[str, str], int] = field(default_factory=dict)   # (category, day) -> requests
    meter: Meter = field(init=False)
    webhook_url: str | None = None                 # the app's event notification endpoint
    webhook_secret: str = "zoom-sandbox-webhook-secret"    # the app's secret token
    outbox: Outbox = field(default_factory=Outbox)

    def __post_init__(self) -> None:
        self.meter = Meter(clock=lambda: self.clock())    # the state's clock, even one set later

    def notify(self, event: str, obj: dict[str, Any]) -> None:
        """Queue a signed webhook for the app's endpoint (sent once the current request is answered)."""
        if not self.webhook_url:
            return
        now = time.time()
        body = json.dumps({"event": event, "event_ts": int(now * 1000),
                           "payload": {"account_id": self.account_id, "object": obj}}).encode()
        stamp = str(int(now))
        mac = hmac.new(self.webhook_secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        self.outbox.queue(self.webhook_url, {"content-type": "application/json", "x-zm-request-timestamp": stamp,
                                             "x-zm-signature": "v0=" + mac.hexdigest()}, body)

    def notify_meeting(self, event: str, meeting: dict[str, Any]) -> None:
        self.notify(event, {k: meeting[k] for k in ("id", "uuid", "host_id", "topic", "type", "start_time",
                                                    "duration", "timezone") if k in meeting})

    def notify_presence(self, user: dict[str, Any]) -> None:
        self.notify("user.presence_status_updated", {
            "date_time": fmt_instant(now_utc()), "email": user["email"], "id": user["id"],
            "presence_status": user["_presence"]})

    def count_meeting_write(self, request: Request, host_id: str) -> None:
        """Count an app's meeting create/update against the host's day, or refuse it as Zoom does (429)."""
        if self.meeting_writes_per_day is None or not self.tokens.by_app(request):
            return
        now = self.wall_clock().astimezone(UTC)
        key = (host_id, now.date().isoformat())
        limit = f"zoom:meeting-writes:{host_id}"
        if self.meeting_writes.get(key, 0) >= self.meeting_writes_per_day:
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
            self.meter.refuse(host_id, request.method, request.url.path, limit, (midnight - now).total_seconds())
            raise _error(429, 429, f"You have exceeded the daily rate limit ({self.meeting_writes_per_day}) of "
                         "Meeting Create/Update API requests permitted for this particular user. You may resume "
                         "these requests at GMT 00:00:00.",
                         {"X-RateLimit-Category": "Light", "X-RateLimit-Type": "Daily-limit",
                          "X-RateLimit-Limit": str(self.meeting_writes_per_day), "X-RateLimit-Remaining": "0",
                          "Retry-After": fmt_instant(midnight)})
        self.meter.admitted(limit)
        self.meeting_writes[key] = self.meeting_writes.get(key, 0) + 1

    def metered_user(self, path: str, subject: str | None) -> str:
        """Whose request this is: the user the path names, or the host of the meeting it names."""
        found = re.search(r"/v2/meetings/(\d+)", path)
        if found:
            meeting = self.meetings.get(int(found.group(1)))
            return meeting["host_id"] if meeting else "-"
        found = re.search(r"/v2/users/([^/]+)", path)
        if found:
            user = self.find_user(found.group(1), subject if subject in self.users else None)
            return user["id"] if user else found.group(1)
        return "-"

    def take_rate(self, request: Request, user: str) -> ApiError | None:
        """Count a request against the account's limits for its API category -> the refusal past one, or None."""
        limits = RATE_PLANS.get(self.rate_plan or "")
        if limits is None:
            return None
        category = _category(request.method, request.url.path)
        per_second, per_day = limits[category]
        method, path = request.method, request.url.path
        today = self.wall_clock().astimezone(UTC)
        day_key = (category, today.date().isoformat())
        if per_day is not None and self.daily_requests.get(day_key, 0) >= per_day:
            midnight = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), UTC)
            self.meter.refuse(user, method, path, f"zoom:{category}:Daily-limit",
                              (midnight - today).total_seconds())
            return _error(429, 429, DAILY_MESSAGE, {
                "X-RateLimit-Category": category, "X-RateLimit-Type": "Daily-limit",
                "X-RateLimit-Limit": str(per_day), "X-RateLimit-Remaining": "0", "Retry-After": fmt_instant(midnight)})
        wait = self.windows.take(("qps", category), per_second, 1.0, self.clock())
        if wait is not None:
            seconds = retry_seconds(wait)
            self.meter.refuse(user, method, path, f"zoom:{category}:QPS", seconds)
            return _error(429, 429, QPS_MESSAGE, {
                "X-RateLimit-Category": category, "X-RateLimit-Type": "QPS", "X-RateLimit-Limit": str(per_second),
                "X-RateLimit-Remaining": "0", "Retry-After": str(seconds)})
        self.meter.admitted(f"zoom:{category}:QPS")
        if per_day is not None:
            self.meter.admitted(f"zoom:{category}:Daily-limit")
            self.daily_requests[day_key] = self.daily_requests.get(day_key, 0) + 1
        return None

    def add_user(self, email: str, first_name: str = "", last_name: str = "", timezone: str = "UTC") -> dict:
        user_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")[:22]
        user = {"id": user_id, "email": email, "first_name": first_name, "last_name": last_name,
                "display_name": f"{first_name} {last_name}".strip() or email, "type": 2, "status": "active",
                "timezone": timezone, "account_id": self.account_id, "pmi": 0,
                "_presence": "Available", "_presence_at": 0.0, "_presence_writes": 0, "_signed_in": True}
        self.users[user_id] = user
        return user

    def find_user(self, key: str, subject: str | None = None) -> dict | None:
        if key == "me":
            key = subject or ""
        for user in self.users.values():
            if user["id"] == key or user["email"].lower() == key.lower():
                return user
        return None

    def user_meetings(self, user_id: str) -> list[dict]:
        return sorted((m for m in self.meetings.values() if m["host_id"] == user_id), key=lambda m: m["id"])

    def full_meeting(self, meeting_id: int) -> dict:
        meeting = json.loads(json.dumps(self.meetings[meeting_id]))
        if meeting.get("type") == 8 and meeting.get("recurrence"):
            meeting["occurrences"] = expand_occurrences(meeting, self.edits.get(meeting_id, {}))
        return meeting


def _error(status: int, code: int, message: str, headers: dict | None = None) -> ApiError:
    return ApiError(status, {"code": code, "message": message}, headers)


def _category(method: str, path: str) -> str:
    """The Rate Limit Label meetings-api.json and users-api.json give the endpoint."""
    if re.search(r"/v2/users/[^/]+/(meetings|presence_status)$", path):
        return "Light" if method == "POST" else "Medium"
    if re.search(r"/v2/users$", path):
        return "Medium" if method == "GET" else "Light"
    return "Light"


def _snapshot(state: ZoomState, key: int) -> str:
    """What a meeting holds, its occurrences as they now fall included (an echo write leaves it the same)."""
    return json.dumps(state.full_meeting(key), sort_keys=True, default=str)


def _validate_body(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _error(400, 300, "Request Body should be a valid JSON object.")
    out: dict[str, Any] = {}
    if "topic" in body:
        if not isinstance(body["topic"], str) or len(body["topic"]) > 200:
            raise _error(400, 300, "Invalid field: topic (at most 200 characters).")
        out["topic"] = body["topic"]
    if "agenda" in body:
        if not isinstance(body["agenda"], str) or len(body["agenda"]) > 2000:
            raise _error(400, 300, "Invalid field: agenda (at most 2000 characters).")
        out["agenda"] = body["agenda"]
    if "type" in body:
        if body["type"] not in (1, 2, 3, 8):
            raise _error(400, 300, "Invalid field: type.")
        out["type"] = body["type"]
    if "timezone" in body:
        try:
            ZoneInfo(body["timezone"])
        except Exception as exc:
            raise _error(400, 300, f"Invalid field: timezone {body['timezone']!r}.") from exc
        out["timezone"] = body["timezone"]
    if "start_time" in body:
        try:
            out["start_time"] = fmt_instant(parse_instant(body["start_time"]))
        except InvalidItem as exc:
            raise _error(400, 300, "Invalid field: start_time.") from exc
    if "duration" in body:
        if not isinstance(body["duration"], int) or body["duration"] < 0:
            raise _error(400, 300, "Invalid field: duration.")
        out["duration"] = body["duration"]
    if "recurrence" in body:
        rec = body["recurrence"]
        if rec is not None and (not isinstance(rec, dict) or rec.get("type") not in (1, 2, 3)):
            raise _error(400, 300, "Invalid field: recurrence.")
        if rec is not None and (rec.get("end_times") or 0) > 60:
            raise _error(400, 300, "Invalid field: recurrence.end_times (at most 60).")
        out["recurrence"] = rec
    if "settings" in body:
        settings = body["settings"] or {}
        keys = settings.get("custom_keys") or []
        if len(keys) > 10 or any(len(k.get("key", "")) > 64 or len(k.get("value", "")) > 256 for k in keys):
            raise _error(400, 300, "Invalid field: settings.custom_keys.")
        out["settings"] = {k: v for k, v in settings.items() if k in SETTINGS_KEPT}
    if creating:
        out.setdefault("type", 2)
        out.setdefault("topic", "Zoom meeting")
        if out["type"] in (2, 8) and "start_time" not in out:
            out["start_time"] = fmt_instant(now_utc())
        if out["type"] == 8 and not out.get("recurrence"):
            raise _error(400, 300, "Recurring meeting requires recurrence.")
    return out


def build_app(state: ZoomState) -> APIRouter:
    router = APIRouter()

    def auth(request: Request) -> str:
        subject = state.tokens.subject(request)
        if subject is None:
            raise _error(401, 124, "Invalid access token.")
        return subject

    def user_or_404(user_key: str, subject: str) -> dict:
        user = state.find_user(user_key, subject if subject in state.users else None)
        if user is None:
            raise _error(404, 1001, "User does not exist: " + user_key)
        return user

    @router.post("/oauth/token")
    async def token(request: Request):
        creds = basic_credentials(request)
        if creds != (state.client_id, state.client_secret):
            return JSONResponse({"reason": "Invalid client_id or client_secret", "error": "invalid_client"}, 401)
        form = await request.form()
        grant = form.get("grant_type")
        with state.lock:
            if grant == "account_credentials":
                if form.get("account_id") != state.account_id:
                    return JSONResponse({"reason": "Invalid account_id", "error": "invalid_request"}, 400)
                issued = state.tokens.issue("account:" + state.account_id, app=True)
                issued["scope"] = "meeting:read:admin meeting:write:admin user:read:admin"
                issued["api_url"] = str(request.base_url).rstrip("/")
                return issued
            if grant == "refresh_token":
                subject = state.tokens.use_refresh(str(form.get("refresh_token", "")))
                if subject is None:
                    return JSONResponse({"reason": "Invalid Token!", "error": "invalid_grant"}, 401)
                issued = state.tokens.issue(subject, with_refresh=True, app=True)
                issued["scope"] = "meeting:read meeting:write user:read"
                return issued
        return JSONResponse({"reason": "Unsupported grant type", "error": "unsupported_grant_type"}, 400)

    @router.post("/oauth/revoke")
    async def revoke(request: Request):
        """Revoke a user's authorization of the app by its access token (client in HTTP Basic auth)."""
        if basic_credentials(request) != (state.client_id, state.client_secret):
            return JSONResponse({"reason": "Invalid client_id or client_secret", "error": "invalid_client"}, 401)
        form = await request.form()
        token = str(form.get("token") or request.query_params.get("token") or "")
        with state.lock:
            if not state.tokens.revoke(token):
                return JSONResponse({"reason": "Invalid Token!", "error": "invalid_request"}, 400)
        return {"status": "success"}

    @router.get("/v2/users")
    def list_users(request: Request, page_size: int = 30):
        auth(request)
        users = [{k: v for k, v in u.items() if not k.startswith("_")} for u in state.users.values()]
        return {"page_count": 1, "page_number": 1, "page_size": page_size, "total_records": len(users),
                "next_page_token": "", "users": users}

    @router.get("/v2/users/{user_id}")
    def get_user(user_id: str, request: Request):
        subject = auth(request)
        user = user_or_404(user_id, subject)
        return {k: v for k, v in user.items() if not k.startswith("_")}

    @router.get("/v2/users/{user_id}/meetings")
    def list_meetings(user_id: str, request: Request, type: str = "scheduled", page_size: int = 30,
                      next_page_token: str = ""):
        subject = auth(request)
        if page_size > 300 or page_size < 1:
            raise _error(400, 300, "Invalid field: page_size (1-300).")
        with state.lock:
            user = user_or_404(user_id, subject)
            offset = 0
            if next_page_token:
                found = state.page_tokens.get(next_page_token)
                if found is None or found[0] != user["id"] or found[2] < time.time():
                    raise _error(400, 300, "Invalid next_page_token or it has expired.")
                offset = found[1]
            meetings = state.user_meetings(user["id"])
            page = meetings[offset:offset + page_size]
            token = ""
            if offset + page_size < len(meetings):
                token = secrets.token_urlsafe(24)
                state.page_tokens[token] = (user["id"], offset + page_size, time.time() + 900)
            items = []
            for m in page:
                item = {k: m[k] for k in LIST_FIELDS if k in m}
                item["agenda"] = (m.get("agenda") or "")[:250]
                items.append(item)
            return {"page_size": page_size, "total_records": len(meetings), "next_page_token": token,
                    "meetings": items}

    @router.post("/v2/users/{user_id}/meetings", status_code=201)
    async def create_meeting(user_id: str, request: Request):
        subject = auth(request)
        try:
            body = await request.json()
        except ValueError as exc:
            raise _error(400, 300, "Request Body should be a valid JSON object.") from exc
        with state.lock:
            user = user_or_404(user_id, subject)
            fields = _validate_body(body, creating=True)
            state.count_meeting_write(request, user["id"])
            meeting_id = next(state.ids)
            password = secrets.token_urlsafe(6)[:8]
            meeting = {
                "uuid": base64.b64encode(secrets.token_bytes(16)).decode(),
                "id": meeting_id,
                "host_id": user["id"],
                "host_email": user["email"],
                "topic": fields["topic"],
                "type": fields["type"],
                "status": "waiting",
                "timezone": fields.get("timezone") or user["timezone"],
                "agenda": fields.get("agenda", ""),
                "created_at": fmt_instant(now_utc()),
                "join_url": f"https://sandbox.zoom.us/j/{meeting_id}?pwd={password}",
                "start_url": f"https://sandbox.zoom.us/s/{meeting_id}",
                "password": password,
                "settings": fields.get("settings", {}),
                "pre_schedule": False,
            }
            if fields["type"] in (2, 8):
                meeting["start_time"] = fields["start_time"]
                meeting["duration"] = fields.get("duration", 60)
            if fields["type"] == 8:
                meeting["recurrence"] = fields["recurrence"]
            state.meetings[meeting_id] = meeting
            state.notify_meeting("meeting.created", meeting)
            return JSONResponse(state.full_meeting(meeting_id), status_code=201)

    def meeting_or_404(meeting_id: str) -> int:
        try:
            key = int(meeting_id)
        except ValueError as exc:
            raise _error(404, 3001, f"Meeting does not exist: {meeting_id}.") from exc
        if key not in state.meetings:
            raise _error(404, 3001, f"Meeting does not exist: {meeting_id}.")
        return key

    def occurrence_or_404(key: int, occurrence_id: str) -> dict:
        for occ in state.full_meeting(key).get("occurrences") or []:
            if occ["occurrence_id"] == occurrence_id:
                return occ
        raise _error(404, 3001, f"Occurrence does not exist: {occurrence_id}.")

    @router.get("/v2/meetings/{meeting_id}")
    def get_meeting(meeting_id: str, request: Request, occurrence_id: str = ""):
        auth(request)
        with state.lock:
            key = meeting_or_404(meeting_id)
            meeting = state.full_meeting(key)
            if occurrence_id:
                occ = occurrence_or_404(key, occurrence_id)
                meeting.update(start_time=occ["start_time"], duration=occ["duration"])
            return meeting

    @router.patch("/v2/meetings/{meeting_id}", status_code=204)
    async def patch_meeting(meeting_id: str, request: Request, occurrence_id: str = ""):
        auth(request)
        try:
            body = await request.json()
        except ValueError as exc:
            raise _error(400, 300, "Request Body should be a valid JSON object.") from exc
        with state.lock:
            key = meeting_or_404(meeting_id)
            fields = _validate_body(body, creating=False)
            state.count_meeting_write(request, state.meetings[key]["host_id"])
            before = _snapshot(state, key)
            answer = _patch(key, fields, occurrence_id)
            if state.tokens.by_app(request) and _snapshot(state, key) == before:
                state.meter.echo(state.meetings[key]["host_id"], request.method, request.url.path)
            return answer

    def _patch(key: int, fields: dict[str, Any], occurrence_id: str) -> Response:
        """Apply a PATCH to a meeting, or to one occurrence of it."""
        if occurrence_id:
            occ = occurrence_or_404(key, occurrence_id)
            if occ["status"] == "deleted":
                raise _error(400, 3000, "Occurrence has been deleted.")
            edit = state.edits.setdefault(key, {}).setdefault(occurrence_id, {})
            if "start_time" in fields:
                edit["start_time"] = fields["start_time"]
            if "duration" in fields:
                edit["duration"] = fields["duration"]
            state.notify_meeting("meeting.updated", state.meetings[key])
            return Response(status_code=204)
        meeting = state.meetings[key]
        old_rule = (meeting.get("recurrence"), meeting.get("start_time"), meeting.get("timezone"))
        for name, value in fields.items():
            if name == "settings":
                meeting.setdefault("settings", {}).update(value)
            else:
                meeting[name] = value
        if meeting.get("type") == 3:
            meeting.pop("start_time", None)
            meeting.pop("recurrence", None)
        if meeting.get("type") == 2:
            meeting.pop("recurrence", None)
        if meeting.get("type") == 8 and not meeting.get("recurrence"):
            raise _error(400, 300, "Recurring meeting requires recurrence.")
        if meeting.get("type") in (2, 8) and "start_time" not in meeting:
            meeting["start_time"] = fmt_instant(now_utc())
            meeting.setdefault("duration", 60)
        if (meeting.get("recurrence"), meeting.get("start_time"), meeting.get("timezone")) != old_rule:
            state.edits.pop(key, None)   # a new series: occurrence edits no longer apply
        state.notify_meeting("meeting.updated", meeting)
        return Response(status_code=204)

    @router.delete("/v2/meetings/{meeting_id}", status_code=204)
    def delete_meeting(meeting_id: str, request: Request, occurrence_id: str = ""):
        auth(request)
        with state.lock:
            key = meeting_or_404(meeting_id)
            if occurrence_id:
                occ = occurrence_or_404(key, occurrence_id)
                if occ["status"] == "deleted":
                    raise _error(400, 3000, "Occurrence has been deleted.")
                state.edits.setdefault(key, {})[occurrence_id] = {"status": "deleted"}
                state.notify_meeting("meeting.updated", state.meetings[key])
                return Response(status_code=204)
            state.notify_meeting("meeting.deleted", state.meetings[key])
            del state.meetings[key]
            state.edits.pop(key, None)
            return Response(status_code=204)

    @router.get("/v2/users/{user_id}/presence_status")
    def get_presence(user_id: str, request: Request):
        subject = auth(request)
        user = user_or_404(user_id, subject)
        return {"status": user["_presence"]}

    @router.put("/v2/users/{user_id}/presence_status", status_code=204)
    async def put_presence(user_id: str, request: Request):
        subject = auth(request)
        body = await request.json()
        with state.lock:
            user = user_or_404(user_id, subject)
            status = body.get("status") if isinstance(body, dict) else None
            if status not in PRESENCE_VALUES:
                raise _error(400, 300, f"Invalid presence status {status!r}.")
            duration = body.get("duration")
            if status in ("Do_No_Disturb", "Do_Not_Disturb"):
                if duration is not None and (not isinstance(duration, int) or not 1 <= duration <= 1440):
                    raise _error(400, 300, "Invalid field: duration (1-1440 minutes).")
                status = "Do_Not_Disturb"
            if not user["_signed_in"]:
                raise _error(400, 5301, "Request failed because this user is not signed in to Zoom.")
            now = state.clock()
            waited = now - user["_presence_at"]
            if state.presence_min_interval and user["_presence_writes"] and waited < state.presence_min_interval:
                retry = int(state.presence_min_interval - waited) + 1
                if state.tokens.by_app(request):
                    state.meter.refuse(user["id"], request.method, request.url.path, f"zoom:presence:{user['id']}",
                                       retry)
                raise _error(429, 429, "You have reached the maximum per-user rate limit for this API.",
                             {"Retry-After": str(retry)})
            if status == user["_presence"] and state.tokens.by_app(request):
                state.meter.echo(user["id"], request.method, request.url.path)
            user["_presence"], user["_presence_at"] = status, now
            user["_presence_writes"] += 1
            state.notify_presence(user)
            return Response(status_code=204)

    @router.post("/sandbox/users/{user_id}/presence", status_code=204)
    async def set_by_hand(user_id: str, request: Request):
        """The person picks a status in the Zoom client (no app, no rate limit): Zoom tells the app."""
        body = await request.json()
        with state.lock:
            user = state.find_user(user_id)
            if user is None:
                raise _error(404, 1001, f"User does not exist: {user_id}.")
            status = body.get("status") if isinstance(body, dict) else None
            if status not in PRESENCE_VALUES:
                raise _error(400, 300, f"Invalid presence status {status!r}.")
            user["_presence"] = "Do_Not_Disturb" if status == "Do_No_Disturb" else status
            state.notify_presence(user)
            return Response(status_code=204)

    return router


def make_zoom_app(state: ZoomState) -> FastAPI:
    app = FastAPI(title="Zoom API sandbox")
    app.add_exception_handler(ApiError, api_error_response)
    app.include_router(build_app(state))

    @app.middleware("http")
    async def meter(request: Request, call_next):
        # apps' requests are counted per user and judged against the account's rate limits before anything else
        if not state.tokens.by_app(request):
            return await call_next(request)
        with state.lock:
            user = state.metered_user(request.url.path, state.tokens.subject(request))
            state.meter.request(user)
            refused = state.take_rate(request, user)
        if refused is not None:
            return api_error_response(request, refused)
        return await call_next(request)

    @app.middleware("http")
    async def send_webhooks(request: Request, call_next):
        response = await call_next(request)
        await state.outbox.flush()      # what the request changed is notified once it is answered
        return response

    return app
