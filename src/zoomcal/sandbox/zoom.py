"""Offline emulator of the Zoom API (meetings, users, presence, OAuth sign-in page and token endpoint).

Shapes follow ../shared/specs/zoom (meetings-api.json, users-api.json); tests validate responses against
those schemas. Base path `/zoom/v2`, token endpoint `/zoom/oauth/token`. Written independently of the code it
checks: recurrence is expanded here (python-dateutil's rrule on the meeting's wall clock), never with zoomcal's.

As Zoom documents it:
- the user OAuth sign-in page `/zoom/oauth/authorize` (authorization code with S256 PKCE, redirect URIs on
  http://127.0.0.1) answers at once as the `login_hint`; the token endpoint redeems the code with its verifier;
- the token endpoint takes its grant (`grant_type`, `account_id`, `refresh_token`) in the query string or a form
  body; refresh tokens rotate, and a spent one is refused 400 `{"reason": "Invalid Token!", "error":
  "invalid_grant"}`;
- a recurring meeting (type 8) lists its occurrences: daily / weekly on `weekly_days` (1 = Sunday) / monthly on
  `monthly_day` or `monthly_week` + `monthly_week_day`, every `repeat_interval` (at most 99 days, 50 weeks, 10
  months), until `end_date_time` or for `end_times` (default 1, at most 60); an occurrence is named by its start in
  epoch milliseconds;
- a `start_time` without an offset is wall-clock time in the meeting's `timezone`;
- `settings` round-trip: every setting a client sets comes back, the rest with the spec's defaults; a PATCH merges;
- an occurrence PATCH (`?occurrence_id=`) moves it (start_time, duration) and gives it its own agenda and
  settings (host_video, participant_video, join_before_host, mute_upon_entry, waiting_room, watermark,
  auto_recording); GET with `occurrence_id` answers that occurrence;
- `GET /users/{userId}/meetings` lists by `type` (scheduled, live, upcoming, upcoming_meetings,
  previous_meetings; never instant meetings) and pages (page_size 1-300, `next_page_token` for 15 minutes,
  `page_number`); `GET /users` filters by `status` and pages the same way (page_size up to 2000).

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

from dateutil import rrule
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from zoomcal.sandbox.clock import UTC, now, parse_stamp, stamp, tz
from zoomcal.sandbox.common import (
    ApiError,
    Consents,
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
# what a user OAuth grant of the sandbox's app carries (its meetings, its user, and setting its presence)
USER_SCOPES = "meeting:read meeting:write user:read user:write"
ROLE_IDS = {"Owner": "0", "Admin": "1", "Member": "2"}     # the account's built-in roles
MEETING_LISTS = ("scheduled", "live", "upcoming", "upcoming_meetings", "previous_meetings")
LISTED_SPAN = timedelta(days=183)    # upcoming and previous meetings are listed for about six months
USER_STATUSES = ("active", "inactive", "pending")
# what the meeting webhooks carry (meetings-webhooks.json)
CREATED_FIELDS = ("uuid", "id", "host_id", "topic", "type", "start_time", "duration", "timezone", "join_url",
                  "password", "pmi", "occurrences", "settings", "recurrence")
UPDATED_FIELDS = ("topic", "type", "start_time", "duration", "timezone", "join_url", "password", "agenda",
                  "occurrences", "settings", "recurrence")
DELETED_FIELDS = ("uuid", "id", "host_id", "topic", "type", "start_time", "duration", "timezone")
PASSCODE = re.compile(r"[A-Za-z0-9@_*-]{1,10}")      # a meeting passcode as Zoom takes it by default
PASSCODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
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
# a meeting's settings (meetings-api.json): every one a client may set, and what Zoom answers for one left unset
SETTINGS_DEFAULTS: dict[str, Any] = {
    "alternative_hosts_email_notification": True, "approval_type": 2, "audio": "both", "auto_recording": "none",
    "close_registration": False, "cn_meeting": False, "email_notification": True, "in_meeting": False,
    "join_before_host": False, "mute_upon_entry": False, "registration_type": 1, "waiting_room": False,
    "watermark": False, "internal_meeting": False, "participant_focused_meeting": False,
    "push_change_to_calendar": False, "auto_start_meeting_summary": False, "auto_start_ai_companion_questions": False,
    "device_testing": False, "disable_participant_video": False,
    "use_pmi": False, "alternative_hosts": ""}      # (these two every answer and webhook carries)
SETTINGS_FIELDS = frozenset(SETTINGS_DEFAULTS) | {
    "additional_data_center_regions", "allow_host_control_participant_mute_state", "allow_multiple_devices",
    "alternative_host_manage_cloud_recording", "alternative_host_manage_meeting_summary",
    "alternative_host_update_polls", "approved_or_denied_countries_or_regions",
    "audio_conference_info", "authentication_domains", "authentication_exception", "authentication_name",
    "authentication_option", "auto_add_recording_to_video_management", "breakout_room", "calendar_type",
    "contact_email", "contact_name", "continuous_meeting_chat", "custom_keys", "email_in_attendee_report",
    "encryption_type", "enforce_login", "enforce_login_domains", "focus_mode", "global_dial_in_countries",
    "host_save_video_order", "host_video", "jbh_time", "language_interpretation", "meeting_authentication",
    "meeting_invitees", "participant_video", "private_meeting", "question_and_answer",
    "registrants_confirmation_email", "registrants_email_notification", "request_permission_to_unmute_participants",
    "resources", "show_join_info", "show_share_button", "sign_language_interpretation", "summary_template_id",
    "waiting_room_options", "who_can_ask_questions", "who_will_receive_summary"}
SETTINGS_TYPES: dict[str, type | tuple[type, ...]] = {
    **{k: type(v) for k, v in SETTINGS_DEFAULTS.items()}, "host_video": bool, "participant_video": bool,
    "contact_email": str, "contact_name": str, "jbh_time": int}
# what an occurrence of a recurring meeting takes of a PATCH (the rest of the body stays with the series)
OCCURRENCE_SETTINGS = ("host_video", "participant_video", "join_before_host", "mute_upon_entry", "waiting_room",
                       "watermark", "auto_recording")


@dataclass
class ZoomState:
    account_id: str = "Fq2nR7vXTc-8wLk3ZpY0sA"
    client_id: str = "h4TgW9xQRaK2mVn7bLcEyg"
    client_secret: str = "p8Xk2RwT5nVb0LqZ7sHc3JdF9mYa6GeU"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    meetings: dict[int, dict[str, Any]] = field(default_factory=dict)
    edits: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tokens: TokenBook = field(default_factory=TokenBook)
    consents: Consents = field(default_factory=Consents)    # user OAuth sign-in codes
    page_tokens: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    # what the server-to-server app was granted (its token answers name them)
    app_scopes: list[str] = field(default_factory=lambda: [
        "meeting:read:admin", "meeting:write:admin", "user:read:admin", "user:read:list_users:admin",
        "user:read:presence_status:admin", "user:update:presence_status:admin", "contact_group:read:admin"])
    # contact groups: id -> {"group_id", "group_name", "group_privacy", "description", "_members": [user ids]}
    contact_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(81234567890))
    presence_min_interval: float = 60.0          # Zoom allows about one presence update per user per minute
    clock: Any = field(default=time.monotonic)
    lock: threading.RLock = field(default_factory=threading.RLock)
    meeting_writes_per_day: int | None = MEETING_WRITES_PER_DAY   # per host user and UTC day (None: no limit)
    wall_clock: Any = field(default=now)                       # which UTC day it is
    meeting_writes: dict[tuple[str, str], int] = field(default_factory=dict)   # (host id, day) -> writes
    rate_plan: str | None = None            # the account's plan for its rate limits (see RATE_PLANS); None: off
    windows: RateWindows = field(default_factory=RateWindows)
    daily_requests: dict[tuple[str, str], int] = field(default_factory=dict)   # (category, day) -> requests
    meter: Meter = field(init=False)
    webhook_url: str | None = None                 # the app's event notification endpoint
    webhook_secret: str = "Lr5tK0pV8xWq2nBz6cMj3A"    # the app's secret token
    outbox: Outbox = field(default_factory=Outbox)
    polls: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)    # meeting -> poll id -> poll
    poll_answers: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # meeting -> who answered what

    def __post_init__(self) -> None:
        self.meter = Meter(clock=lambda: self.clock())    # the state's clock, even one set later

    def notify(self, event: str, obj: dict[str, Any], **payload: Any) -> None:
        """Queue a signed webhook for the app's endpoint (sent once the current request is answered)."""
        if not self.webhook_url:
            return
        now = time.time()
        body = json.dumps({"event": event, "event_ts": int(now * 1000),
                           "payload": {"account_id": self.account_id, **payload, "object": obj}}).encode()
        stamp = str(int(now))
        mac = hmac.new(self.webhook_secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        self.outbox.queue(self.webhook_url, {"content-type": "application/json", "x-zm-request-timestamp": stamp,
                                             "x-zm-signature": "v0=" + mac.hexdigest()}, body)

    def operator(self, meeting: dict[str, Any]) -> dict[str, str]:
        """Who made a change, as a meeting webhook names them (the host: apps act on their behalf)."""
        return {"operator": meeting.get("host_email", ""), "operator_id": meeting["host_id"]}

    def notify_created(self, meeting_id: int) -> None:
        meeting = self.full_meeting(meeting_id)
        self.notify("meeting.created", {k: meeting[k] for k in CREATED_FIELDS if k in meeting},
                    **self.operator(meeting))

    def notify_updated(self, before: dict[str, Any], after: dict[str, Any], occurrence_id: str = "") -> None:
        """`meeting.updated` with what changed: the new values in `object`, the old ones in `old_object` (both
        with the meeting's id, uuid and host); for one occurrence, that occurrence (scope `single`)."""
        if not self.webhook_url:
            return
        obj, old = ({k: view[k] for k in ("id", "uuid", "host_id")} for view in (after, before))
        for name in UPDATED_FIELDS:
            if name == "settings":
                changed = {k for k in set(before["settings"]) | set(after["settings"])
                           if before["settings"].get(k) != after["settings"].get(k)}
                if changed:
                    obj["settings"] = {k: after["settings"][k] for k in changed if k in after["settings"]}
                    old["settings"] = {k: before["settings"][k] for k in changed if k in before["settings"]}
            elif before.get(name) != after.get(name):
                for view, side in ((after, obj), (before, old)):
                    if name in view:
                        side[name] = view[name]
        extra: dict[str, Any] = {}
        if occurrence_id:
            for view, side in ((after, obj), (before, old)):
                side["occurrences"] = [{"occurrence_id": occurrence_id, "start_time": view["start_time"],
                                        "duration": view["duration"]}]
            extra["scope"] = "single"
        self.notify("meeting.updated", obj, **self.operator(after), **extra, old_object=old,
                    time_stamp=int(time.time() * 1000))

    def notify_deleted(self, meeting: dict[str, Any], occurrence: dict[str, Any] | None = None) -> None:
        """`meeting.deleted` for a meeting, or for one occurrence of it (named in `occurrences`)."""
        obj = {k: meeting[k] for k in DELETED_FIELDS if k in meeting}
        if occurrence is not None:
            obj["occurrences"] = [{"occurrence_id": occurrence["occurrence_id"],
                                   "start_time": occurrence["start_time"]}]
        self.notify("meeting.deleted", obj, **self.operator(meeting))

    def notify_presence(self, user: dict[str, Any]) -> None:
        self.notify("user.presence_status_updated", {
            "date_time": stamp(now()), "email": user["email"], "id": user["id"],
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
                          "Retry-After": stamp(midnight)})
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
                "X-RateLimit-Limit": str(per_day), "X-RateLimit-Remaining": "0", "Retry-After": stamp(midnight)})
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

    def add_user(self, email: str, first_name: str = "", last_name: str = "", timezone: str = "UTC",
                 role: str = "Member") -> dict:
        user_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")[:22]
        user = {"id": user_id, "email": email, "first_name": first_name, "last_name": last_name,
                "display_name": f"{first_name} {last_name}".strip() or email, "type": 2, "status": "active",
                "timezone": timezone, "account_id": self.account_id, "pmi": 0,
                "role_name": role, "role_id": ROLE_IDS.get(role, "2"),
                "_presence": "Available", "_presence_at": 0.0, "_presence_writes": 0, "_signed_in": True}
        self.users[user_id] = user
        return user

    def add_contact_group(self, name: str, members: list[str], privacy: int = 1, description: str = "") -> dict:
        """An admin's contact group of users (by id or e-mail), as Zoom's web portal makes them."""
        group_id = "dir." + base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")[:22]
        with self.lock:
            ids = [u["id"] for u in (self.find_user(m) for m in members) if u is not None]
            group = {"group_id": group_id, "group_name": name, "group_privacy": privacy, "description": description,
                     "_members": ids}
            self.contact_groups[group_id] = group
        return group

    def find_user(self, key: str, subject: str | None = None) -> dict | None:
        if key == "me":
            key = subject or ""
        for user in self.users.values():
            if user["id"] == key or user["email"].lower() == key.lower():
                return user
        return None

    def answer_poll(self, meeting_id: int, poll_id: str, email: str, name: str, answers: dict[str, str],
                    at: datetime | None = None) -> None:
        """A participant answers a poll during the meeting (what Zoom's client does): the answers show in
        /past_meetings/{id}/polls; an anonymous poll keeps no name or address."""
        with self.lock:
            poll = self.polls[meeting_id][poll_id]
            asked = {q["name"] for q in poll["questions"]}
            unknown = set(answers) - asked
            if unknown:
                raise ValueError(f"no such question: {sorted(unknown)}")
            if poll["anonymous"]:
                email, name = "", "Anonymous Attendee"
            when = stamp(at or self.wall_clock())
            entries = self.poll_answers.setdefault(meeting_id, [])
            mine = next((e for e in entries if e["email"] == email and e["name"] == name), None)
            if mine is None:
                mine = {"email": email, "name": name, "question_details": []}
                entries.append(mine)
            mine["question_details"] += [{"answer": answer, "date_time": when, "polling_id": poll_id,
                                          "question": question} for question, answer in answers.items()]
            poll["status"] = "ended"

    def user_meetings(self, user_id: str) -> list[dict]:
        return sorted((m for m in self.meetings.values() if m["host_id"] == user_id), key=lambda m: m["id"])

    def full_meeting(self, meeting_id: int) -> dict:
        """A meeting as GET /meetings/{meetingId} answers it: every setting (the client's, defaults for the rest)
        and, for a recurring meeting with a fixed time, its occurrences."""
        meeting = json.loads(json.dumps(self.meetings[meeting_id]))
        meeting["settings"] = {**SETTINGS_DEFAULTS, **meeting.get("settings", {})}
        if meeting.get("type") == 8 and meeting.get("recurrence"):
            meeting["occurrences"] = occurrences(meeting, self.edits.get(meeting_id, {}))
        return meeting


def _error(status: int, code: int, message: str, headers: dict | None = None) -> ApiError:
    return ApiError(status, {"code": code, "message": message}, headers)


# --- recurrence, as Zoom expands it -------------------------------------------------------------------------

# Zoom numbers the days of the week from Sunday: 1 = Sunday ... 7 = Saturday
WEEKDAYS = (rrule.SU, rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA)
FREQUENCIES = {1: rrule.DAILY, 2: rrule.WEEKLY, 3: rrule.MONTHLY}
MAX_REPEAT_INTERVAL = {1: 99, 2: 50, 3: 10}     # days, weeks, months (meetings-api.json, repeat_interval)
MAX_OCCURRENCES = 60                             # end_times at most 60; an open series lists its first 60


def check_recurrence(rec: Any) -> dict[str, Any]:
    """The recurrence object as Zoom keeps it (the fields the client sent; the expansion reads the documented
    defaults for the rest: repeat_interval 1, monthly_day 1, end_times 1), or a 300 error naming the field it
    refuses."""
    if not isinstance(rec, dict) or rec.get("type") not in FREQUENCIES:
        raise _error(400, 300, "Invalid field: recurrence.type (1 daily, 2 weekly, 3 monthly).")
    kind = rec["type"]
    out: dict[str, Any] = {"type": kind}
    interval = rec.get("repeat_interval", 1)
    if not _is_int(interval) or not 1 <= interval <= MAX_REPEAT_INTERVAL[kind]:
        raise _error(400, 300, f"Invalid field: recurrence.repeat_interval (1-{MAX_REPEAT_INTERVAL[kind]}).")
    if "repeat_interval" in rec:
        out["repeat_interval"] = interval
    if kind == 2:
        days = rec.get("weekly_days")
        parts = str(days).split(",") if isinstance(days, (str, int)) and not isinstance(days, bool) else []
        if not parts or any(p.strip() not in "1234567" or not p.strip() for p in parts):
            raise _error(400, 300, "Invalid field: recurrence.weekly_days (days 1-7, comma separated).")
        out["weekly_days"] = ",".join(p.strip() for p in parts)
    if kind == 3:
        if rec.get("monthly_week") is not None or rec.get("monthly_week_day") is not None:
            if rec.get("monthly_week") not in (-1, 1, 2, 3, 4) or rec.get("monthly_week_day") not in range(1, 8):
                raise _error(400, 300, "Invalid field: recurrence.monthly_week (-1, 1-4) with monthly_week_day "
                             "(1-7).")
            out["monthly_week"], out["monthly_week_day"] = rec["monthly_week"], rec["monthly_week_day"]
        else:
            day = rec.get("monthly_day", 1)
            if not _is_int(day) or not 1 <= day <= 31:
                raise _error(400, 300, "Invalid field: recurrence.monthly_day (1-31).")
            if "monthly_day" in rec:
                out["monthly_day"] = day
    if rec.get("end_times") is not None and rec.get("end_date_time") is not None:
        raise _error(400, 300, "Invalid field: recurrence: end_times and end_date_time cannot be used together.")
    if rec.get("end_date_time") is not None:
        try:
            out["end_date_time"] = stamp(parse_stamp(rec["end_date_time"]))
        except ValueError as exc:
            raise _error(400, 300, "Invalid field: recurrence.end_date_time.") from exc
    else:
        times = rec.get("end_times", 1)
        if not _is_int(times) or not 0 <= times <= MAX_OCCURRENCES:
            raise _error(400, 300, f"Invalid field: recurrence.end_times (at most {MAX_OCCURRENCES}).")
        if "end_times" in rec:
            out["end_times"] = times
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def occurrence_starts(meeting: dict[str, Any]) -> list[datetime]:
    """The UTC starts of a recurring meeting's occurrences: the rule runs on the wall clock of the meeting's time
    zone from its start (a weekly or monthly rule begins with the first matching day on or after it)."""
    rec = meeting["recurrence"]
    zone = tz(meeting.get("timezone"))
    local = parse_stamp(meeting["start_time"]).astimezone(zone).replace(tzinfo=None)
    rule: dict[str, Any] = {"freq": FREQUENCIES[rec["type"]], "interval": rec.get("repeat_interval") or 1,
                            "dtstart": local, "wkst": rrule.SU}
    if rec["type"] == 2:
        rule["byweekday"] = [WEEKDAYS[int(d) - 1] for d in str(rec["weekly_days"]).split(",")]
    if rec["type"] == 3 and rec.get("monthly_week"):
        rule["byweekday"] = WEEKDAYS[rec["monthly_week_day"] - 1](rec["monthly_week"])
    elif rec["type"] == 3:
        rule["bymonthday"] = rec.get("monthly_day") or 1
    until = parse_stamp(rec["end_date_time"]) if rec.get("end_date_time") else None
    count = MAX_OCCURRENCES if until is not None else (rec.get("end_times", 1) or MAX_OCCURRENCES)
    out: list[datetime] = []
    for wall in rrule.rrule(**rule):
        at = wall.replace(tzinfo=zone).astimezone(UTC)
        if (until is not None and at > until) or len(out) >= count:
            break
        out.append(at)
    return out


def occurrence_id(start: datetime) -> str:
    """Zoom names an occurrence by its start in epoch milliseconds."""
    return str(int(start.timestamp()) * 1000)


def occurrences(meeting: dict[str, Any], edits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The `occurrences` array of a recurring meeting, with its occurrences' own edits (moved, deleted)."""
    out = []
    for at in occurrence_starts(meeting):
        key = occurrence_id(at)
        edit = edits.get(key, {})
        out.append({"occurrence_id": key, "start_time": edit.get("start_time", stamp(at)),
                    "duration": edit.get("duration", meeting.get("duration", 60)),
                    "status": edit.get("status", "available")})
    return out


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise _error(400, 300, "Request Body should be a valid JSON object.") from exc


POLL_TYPES = ("single", "multiple", "matching", "rank_order", "short_answer", "long_answer", "fill_in_the_blank",
              "rating_scale")
MAX_POLLS = 50           # per meeting
MAX_BATCH = 25


def _check_poll(body: Any) -> dict[str, Any]:
    """A poll as meetings-api.json describes it (defaults filled in); 400 / 4400 for what Zoom refuses."""
    if not isinstance(body, dict):
        raise _error(400, 300, "Request body must be a JSON object.")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 64:
        raise _error(400, 300, "Poll title is required, at most 64 characters.")
    poll_type = body.get("poll_type", 1)
    if poll_type not in (1, 2, 3):
        raise _error(400, 300, f"Invalid field: poll_type {poll_type!r}.")
    questions = body.get("questions")
    if not isinstance(questions, list) or not questions:
        raise _error(400, 300, "A poll needs at least one question.")
    out = []
    for q in questions:
        if not isinstance(q, dict) or not isinstance(q.get("name"), str) or not q["name"].strip() \
                or len(q["name"]) > 1024:
            raise _error(400, 300, "Each question needs a name of at most 1024 characters.")
        kind = q.get("type", "single")
        if kind not in POLL_TYPES:
            raise _error(400, 300, f"Invalid field: type {kind!r}.")
        if poll_type == 1 and kind not in ("single", "multiple"):
            raise _error(400, 4400, f"A {kind} question needs an advanced poll (poll_type 2) or a quiz (3).")
        answers = q.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise _error(400, 300, "Invalid field: answers.")
        if kind in ("single", "multiple", "matching", "rank_order") and len(answers) < 2:
            raise _error(400, 300, "A choice question needs at least two answers.")
        if kind in ("single", "multiple") and len(answers) > 10:
            raise _error(400, 300, "A choice question takes at most 10 answers.")
        out.append({"name": q["name"], "type": kind, "answer_required": bool(q.get("answer_required",
                                                                                    poll_type == 1)),
                    "answers": answers,
                    **{k: q[k] for k in ("right_answers", "prompts", "case_sensitive", "show_as_dropdown",
                                         "answer_min_character", "answer_max_character", "rating_min_value",
                                         "rating_max_value", "rating_min_label", "rating_max_label") if k in q}})
    return {"title": title, "anonymous": bool(body.get("anonymous", False)), "poll_type": poll_type,
            "questions": out}


def _category(method: str, path: str) -> str:
    """The Rate Limit Label meetings-api.json and users-api.json give the endpoint."""
    if re.search(r"/v2/users/[^/]+/(meetings|presence_status)$", path):
        return "Light" if method == "POST" else "Medium"
    if re.search(r"/v2/users$", path):
        return "Medium" if method == "GET" else "Light"
    return "Light"


def _snapshot(state: ZoomState, key: int) -> str:
    """What a meeting holds, its occurrences as they now fall included (an echo write leaves it the same)."""
    meeting = state.full_meeting(key)
    series = (meeting.get("agenda"), meeting["settings"])
    own = {occ: view for occ, edit in state.edits.get(key, {}).items()
           if (view := (edit.get("agenda", series[0]), {**series[1], **edit.get("settings", {})})) != series}
    return json.dumps([meeting, own], sort_keys=True, default=str)


def _validate_body(body: dict[str, Any], creating: bool, zone: str) -> dict[str, Any]:
    """The fields of a meeting create/update Zoom takes, checked; `zone` reads a start_time without an offset
    when the body names no timezone (the meeting's, or on a create the host's)."""
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
            tz(body["timezone"])
        except ValueError as exc:
            raise _error(400, 300, f"Invalid field: timezone {body['timezone']!r}.") from exc
        out["timezone"] = body["timezone"] or zone
    if "start_time" in body:
        out["start_time"] = _start_time(body["start_time"], out.get("timezone") or zone)
    if "password" in body:
        if not isinstance(body["password"], str) or not PASSCODE.fullmatch(body["password"]):
            raise _error(400, 300, "Invalid field: password (at most 10 characters: letters, digits, @ - _ *).")
        out["password"] = body["password"]
    if "duration" in body:
        if not _is_int(body["duration"]) or body["duration"] < 0:
            raise _error(400, 300, "Invalid field: duration.")
        out["duration"] = body["duration"]
    if "recurrence" in body:
        out["recurrence"] = None if body["recurrence"] is None else check_recurrence(body["recurrence"])
    if "settings" in body:
        out["settings"] = _check_settings(body["settings"])
    if creating:
        out.setdefault("type", 2)
        out.setdefault("topic", "Zoom meeting")
        if out["type"] in (2, 8) and "start_time" not in out:
            out["start_time"] = stamp(now())
        if out["type"] == 8 and not out.get("recurrence"):
            raise _error(400, 300, "Recurring meeting requires recurrence.")
    return out


def _start_time(value: Any, zone: str) -> str:
    """A start_time as Zoom reads it: `yyyy-MM-ddTHH:mm:ssZ` in UTC, or `yyyy-MM-ddTHH:mm:ss` on the wall clock
    of the meeting's timezone (an offset is taken too)."""
    try:
        if isinstance(value, str) and len(value) == 19 and value[10] in "Tt":
            local = datetime.fromisoformat(value)
            return stamp(local.replace(tzinfo=tz(zone)))
        return stamp(parse_stamp(value))
    except ValueError as exc:
        raise _error(400, 300, "Invalid field: start_time.") from exc


def _check_settings(settings: Any) -> dict[str, Any]:
    """The settings a client sets, kept as sent (Zoom answers every setting: these, and defaults for the rest)."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise _error(400, 300, "Invalid field: settings.")
    keys = settings.get("custom_keys") or []
    if not isinstance(keys, list) or len(keys) > 10 or any(
            not isinstance(k, dict) or len(str(k.get("key", ""))) > 64 or len(str(k.get("value", ""))) > 256
            for k in keys):
        raise _error(400, 300, "Invalid field: settings.custom_keys.")
    invitees = settings.get("meeting_invitees") or []
    if not isinstance(invitees, list) or any(not isinstance(i, dict) or not i.get("email") for i in invitees):
        raise _error(400, 300, "Invalid field: settings.meeting_invitees.")
    for name, kind in SETTINGS_TYPES.items():
        if name in settings and not isinstance(settings[name], kind):
            raise _error(400, 300, f"Invalid field: settings.{name}.")
    return {k: v for k, v in settings.items() if k in SETTINGS_FIELDS}


def _listed(state: ZoomState, meeting: dict[str, Any], kind: str, at: datetime) -> bool:
    """Whether GET /users/{userId}/meetings?type=`kind` lists the meeting at `at`: only scheduled meetings (no
    instant ones); `live` those started and not ended, `upcoming(_meetings)` those not over within the next six
    months, `previous_meetings` those over within the last six months. A meeting with no fixed time (type 3) has
    no time to be upcoming or over: it is only among the scheduled."""
    if meeting.get("type") == 1:
        return False
    if kind == "scheduled":
        return True
    if kind == "live":
        return meeting.get("status") == "started"
    spans = _spans(state, meeting)
    if kind == "previous_meetings":
        return any(at - LISTED_SPAN <= end <= at for _, end in spans)
    return meeting.get("status") == "started" or any(end > at and start <= at + LISTED_SPAN for start, end in spans)


def _spans(state: ZoomState, meeting: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    """(start, end) of a meeting with a fixed time, of each available occurrence for a recurring one."""
    if meeting.get("type") == 2 and meeting.get("start_time"):
        start = parse_stamp(meeting["start_time"])
        return [(start, start + timedelta(minutes=meeting.get("duration") or 0))]
    if meeting.get("type") == 8 and meeting.get("recurrence"):
        spans = []
        for occ in occurrences(meeting, state.edits.get(meeting["id"], {})):
            if occ["status"] == "available":
                start = parse_stamp(occ["start_time"])
                spans.append((start, start + timedelta(minutes=occ["duration"] or 0)))
        return spans
    return []


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

    @router.get("/oauth/authorize")
    def authorize(request: Request):
        """The user OAuth sign-in page (zoom.us/oauth/authorize), already signed in as `login_hint`; the app's
        scopes are those it was configured with, not asked for here."""
        with state.lock:
            return state.consents.answer(
                request, client_id=state.client_id,
                subject_of=lambda hint: (state.find_user(hint) or {}).get("id") if hint else None,
                keep=lambda _scope: USER_SCOPES,
                refuse=lambda _why: JSONResponse({"reason": "Invalid redirect url", "error": "invalid_request"},
                                                 400))

    @router.post("/oauth/token")
    async def token(request: Request):
        """Zoom's token endpoint: the client in HTTP Basic auth; the grant's parameters in the query string (as
        Zoom documents them) or in a form body."""
        creds = basic_credentials(request)
        if creds != (state.client_id, state.client_secret):
            return JSONResponse({"reason": "Invalid client_id or client_secret", "error": "invalid_client"}, 401)
        form = {**request.query_params, **(await request.form())}
        grant = form.get("grant_type")
        with state.lock:
            if grant == "account_credentials":
                if form.get("account_id") != state.account_id:
                    return JSONResponse({"reason": "Invalid account_id", "error": "invalid_request"}, 400)
                issued = state.tokens.issue("account:" + state.account_id, app=True)
                issued["scope"] = " ".join(state.app_scopes)
                issued["api_url"] = str(request.base_url).rstrip("/")
                return issued
            if grant == "authorization_code":
                redeemed = state.consents.redeem(str(form.get("code", "")), str(form.get("code_verifier", "")),
                                                 str(form.get("redirect_uri", "")))
                if redeemed is None:
                    return JSONResponse({"reason": "Invalid authorization code", "error": "invalid_grant"}, 400)
                issued = state.tokens.issue(redeemed[0], with_refresh=True, app=True)
                issued["scope"] = redeemed[1]
                return issued
            if grant == "refresh_token":
                # refresh tokens rotate: a spent (or unknown) one is refused as an invalid grant
                subject = state.tokens.use_refresh(str(form.get("refresh_token", "")))
                if subject is None:
                    return JSONResponse({"reason": "Invalid Token!", "error": "invalid_grant"}, 400)
                issued = state.tokens.issue(subject, with_refresh=True, app=True)
                issued["scope"] = USER_SCOPES
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

    def page(kind: str, owner: str, items: list, page_size: int, next_page_token: str,
             page_number: int | None) -> tuple[list, str, int]:
        """One page of a listing -> (items, the token for the next page or "", page number). A token lasts 15
        minutes and belongs to the listing that gave it."""
        offset = 0
        if next_page_token:
            found = state.page_tokens.get(next_page_token)
            if found is None or found[0] != f"{kind}:{owner}" or found[2] < time.time():
                raise _error(400, 300, "Invalid next_page_token or it has expired.")
            offset = found[1]
        elif page_number is not None:
            if page_number < 1:
                raise _error(400, 300, "Invalid field: page_number.")
            offset = (page_number - 1) * page_size
        token = ""
        if offset + page_size < len(items):
            token = secrets.token_urlsafe(24)
            state.page_tokens[token] = (f"{kind}:{owner}", offset + page_size, time.time() + 900)
        return items[offset:offset + page_size], token, offset // page_size + 1

    @router.get("/v2/users")
    def list_users(request: Request, status: str = "active", page_size: int = 30, next_page_token: str = "",
                   page_number: int | None = None):
        auth(request)
        if status not in USER_STATUSES:
            raise _error(400, 300, f"Invalid field: status ({', '.join(USER_STATUSES)}).")
        if not 1 <= page_size <= 2000:
            raise _error(400, 300, "Invalid field: page_size (1-2000).")
        with state.lock:
            users = [{k: v for k, v in u.items() if not k.startswith("_")} for u in state.users.values()
                     if u["status"] == status]
            items, token, number = page("users", status, users, page_size, next_page_token, page_number)
            return {"page_count": -(-len(users) // page_size), "page_number": number, "page_size": page_size,
                    "total_records": len(users), "next_page_token": token, "users": items}

    def page_size_of(value: int, most: int = 50) -> int:
        if not 1 <= value <= most:
            raise _error(400, 300, f"Invalid field: page_size (1-{most}).")
        return value

    @router.get("/v2/contacts/groups")
    def list_contact_groups(request: Request, page_size: int = 10, next_page_token: str = ""):
        auth(request)
        page_size = page_size_of(page_size)
        with state.lock:
            groups = [{k: v for k, v in g.items() if not k.startswith("_")} for g in state.contact_groups.values()]
            items, token, _number = page("contact_groups", "", groups, page_size, next_page_token, None)
            return {"groups": items, "next_page_token": token, "page_size": page_size}

    @router.get("/v2/contacts/groups/{group_id}/members")
    def list_contact_group_members(group_id: str, request: Request, page_size: int = 10, next_page_token: str = ""):
        auth(request)
        page_size = page_size_of(page_size)
        with state.lock:
            group = state.contact_groups.get(group_id)
            if group is None:
                raise _error(400, 300, f"A group with this groupId: {group_id} does not exist.")
            members = [{"type": 1, "id": uid, "name": state.users[uid]["display_name"]}
                       for uid in group["_members"] if uid in state.users]
            items, token, _number = page("contact_group_members", group_id, members, page_size, next_page_token,
                                         None)
            return {"group_members": items, "next_page_token": token, "page_size": page_size}

    @router.get("/v2/users/{user_id}")
    def get_user(user_id: str, request: Request):
        subject = auth(request)
        user = user_or_404(user_id, subject)
        return {k: v for k, v in user.items() if not k.startswith("_")}

    @router.get("/v2/users/{user_id}/meetings")
    def list_meetings(user_id: str, request: Request, type: str = "scheduled", page_size: int = 30,
                      next_page_token: str = "", page_number: int | None = None):
        subject = auth(request)
        if type not in MEETING_LISTS:
            raise _error(400, 300, f"Invalid field: type ({', '.join(MEETING_LISTS)}).")
        if page_size > 300 or page_size < 1:
            raise _error(400, 300, "Invalid field: page_size (1-300).")
        with state.lock:
            user = user_or_404(user_id, subject)
            meetings = [m for m in state.user_meetings(user["id"]) if _listed(state, m, type, state.wall_clock())]
            chosen, token, number = page("meetings:" + type, user["id"], meetings, page_size, next_page_token,
                                         page_number)
            items = []
            for m in chosen:
                item = {k: m[k] for k in LIST_FIELDS if k in m}
                item["agenda"] = (m.get("agenda") or "")[:250]
                items.append(item)
            return {"page_size": page_size, "page_number": number, "page_count": -(-len(meetings) // page_size),
                    "total_records": len(meetings), "next_page_token": token, "meetings": items}

    @router.post("/v2/users/{user_id}/meetings", status_code=201)
    async def create_meeting(user_id: str, request: Request):
        subject = auth(request)
        body = await _json_body(request)
        with state.lock:
            user = user_or_404(user_id, subject)
            fields = _validate_body(body, creating=True, zone=user["timezone"])
            state.count_meeting_write(request, user["id"])
            meeting_id = next(state.ids)
            password = fields.get("password") or "".join(secrets.choice(PASSCODE_CHARS) for _ in range(8))
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
                "created_at": stamp(now()),
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
            state.notify_created(meeting_id)
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

    def view(key: int, occurrence_id: str = "") -> dict:
        """The meeting as GET answers it, or with `occurrence_id` that occurrence of it."""
        meeting = state.full_meeting(key)
        if occurrence_id:
            occ = occurrence_or_404(key, occurrence_id)
            edit = state.edits.get(key, {}).get(occurrence_id, {})
            meeting.update(start_time=occ["start_time"], duration=occ["duration"])
            if "agenda" in edit:
                meeting["agenda"] = edit["agenda"]
            meeting["settings"].update(edit.get("settings", {}))
        return meeting

    @router.get("/v2/meetings/{meeting_id}")
    def get_meeting(meeting_id: str, request: Request, occurrence_id: str = ""):
        auth(request)
        with state.lock:
            return view(meeting_or_404(meeting_id), occurrence_id)

    @router.patch("/v2/meetings/{meeting_id}", status_code=204)
    async def patch_meeting(meeting_id: str, request: Request, occurrence_id: str = ""):
        auth(request)
        body = await _json_body(request)
        with state.lock:
            key = meeting_or_404(meeting_id)
            fields = _validate_body(body, creating=False, zone=state.meetings[key].get("timezone") or "UTC")
            state.count_meeting_write(request, state.meetings[key]["host_id"])
            before, seen = _snapshot(state, key), view(key, occurrence_id)
            answer = _patch(key, fields, occurrence_id)
            if state.tokens.by_app(request) and _snapshot(state, key) == before:
                state.meter.echo(state.meetings[key]["host_id"], request.method, request.url.path)
            state.notify_updated(seen, view(key, occurrence_id), occurrence_id)
            return answer

    def _patch(key: int, fields: dict[str, Any], occurrence_id: str) -> Response:
        """Apply a PATCH to a meeting, or to one occurrence of it."""
        if occurrence_id:
            occ = occurrence_or_404(key, occurrence_id)
            if occ["status"] == "deleted":
                raise _error(400, 3000, "Occurrence has been deleted.")
            edit = state.edits.setdefault(key, {}).setdefault(occurrence_id, {})
            for name in ("start_time", "duration", "agenda"):
                if name in fields:
                    edit[name] = fields[name]
            settings = {k: v for k, v in (fields.get("settings") or {}).items() if k in OCCURRENCE_SETTINGS}
            if settings:
                edit.setdefault("settings", {}).update(settings)
            return Response(status_code=204)
        meeting = json.loads(json.dumps(state.meetings[key]))     # kept only if the whole PATCH is taken
        old_rule = (meeting.get("recurrence"), meeting.get("start_time"), meeting.get("timezone"))
        for name, value in fields.items():
            if name == "settings":
                meeting.setdefault("settings", {}).update(value)
            else:
                meeting[name] = value
        if "password" in fields:     # the join link carries the passcode
            meeting["join_url"] = f"https://sandbox.zoom.us/j/{key}?pwd={fields['password']}"
        if meeting.get("type") == 3:
            meeting.pop("start_time", None)
            meeting.pop("recurrence", None)
        if meeting.get("type") == 2:
            meeting.pop("recurrence", None)
        if meeting.get("type") == 8 and not meeting.get("recurrence"):
            raise _error(400, 300, "Recurring meeting requires recurrence.")
        if meeting.get("type") in (2, 8) and "start_time" not in meeting:
            meeting["start_time"] = stamp(now())
            meeting.setdefault("duration", 60)
        state.meetings[key] = meeting
        if (meeting.get("recurrence"), meeting.get("start_time"), meeting.get("timezone")) != old_rule:
            state.edits.pop(key, None)   # a new series: occurrence edits no longer apply
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
                state.notify_deleted(state.meetings[key], occ)
                return Response(status_code=204)
            state.notify_deleted(state.meetings[key])
            del state.meetings[key]
            state.edits.pop(key, None)
            return Response(status_code=204)

    # --- polls (meetings-api.json: /meetings/{meetingId}/polls, batch_polls, /past_meetings/{meetingId}/polls)
    def poll_or_404(key: int, poll_id: str) -> dict[str, Any]:
        poll = state.polls.get(key, {}).get(poll_id)
        if poll is None:
            raise _error(404, 3161, f"Poll does not exist: {poll_id}.")
        return poll

    def add_polls(key: int, bodies: list[Any]) -> list[dict[str, Any]]:
        checked = [_check_poll(b) for b in bodies]
        polls = state.polls.setdefault(key, {})
        if len(polls) + len(checked) > MAX_POLLS:
            raise _error(400, 4400, f"You can only add a maximum of {MAX_POLLS} polls.")
        made = []
        for poll in checked:
            poll_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
            polls[poll_id] = {"id": poll_id, "status": "notstart", **poll}
            made.append(dict(polls[poll_id]))
        return made

    @router.get("/v2/meetings/{meeting_id}/polls")
    def list_polls(meeting_id: str, request: Request):
        auth(request)
        with state.lock:
            polls = [dict(p) for p in state.polls.get(meeting_or_404(meeting_id), {}).values()]
            return {"polls": polls, "total_records": len(polls)}

    @router.post("/v2/meetings/{meeting_id}/polls", status_code=201)
    async def create_poll(meeting_id: str, request: Request):
        auth(request)
        body = await _json_body(request)
        with state.lock:
            return add_polls(meeting_or_404(meeting_id), [body])[0]

    @router.post("/v2/meetings/{meeting_id}/batch_polls", status_code=201)
    async def create_polls(meeting_id: str, request: Request):
        auth(request)
        body = await _json_body(request)
        bodies = body.get("polls") if isinstance(body, dict) else None
        if not isinstance(bodies, list) or not 1 <= len(bodies) <= MAX_BATCH:
            raise _error(400, 300, f"polls: between 1 and {MAX_BATCH} polls.")
        with state.lock:
            return {"polls": add_polls(meeting_or_404(meeting_id), bodies)}

    @router.get("/v2/meetings/{meeting_id}/polls/{poll_id}")
    def get_poll(meeting_id: str, poll_id: str, request: Request):
        auth(request)
        with state.lock:
            return dict(poll_or_404(meeting_or_404(meeting_id), poll_id))

    @router.put("/v2/meetings/{meeting_id}/polls/{poll_id}", status_code=204)
    async def update_poll(meeting_id: str, poll_id: str, request: Request):
        auth(request)
        body = await _json_body(request)
        with state.lock:
            key = meeting_or_404(meeting_id)
            poll = poll_or_404(key, poll_id)
            if poll["status"] != "notstart":
                raise _error(400, 4400, "A poll that has started cannot be changed.")
            poll.update(_check_poll(body))
            return Response(status_code=204)

    @router.delete("/v2/meetings/{meeting_id}/polls/{poll_id}", status_code=204)
    def delete_poll(meeting_id: str, poll_id: str, request: Request):
        auth(request)
        with state.lock:
            key = meeting_or_404(meeting_id)
            poll_or_404(key, poll_id)
            del state.polls[key][poll_id]
            return Response(status_code=204)

    @router.get("/v2/past_meetings/{meeting_id}/polls")
    def past_polls(meeting_id: str, request: Request):
        auth(request)
        with state.lock:
            key = meeting_or_404(meeting_id)
            meeting = state.meetings[key]
            return {"id": key, "uuid": meeting.get("uuid", ""), "start_time": meeting.get("start_time", ""),
                    "questions": [dict(e, question_details=list(e["question_details"]))
                                  for e in state.poll_answers.get(key, [])]}

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
