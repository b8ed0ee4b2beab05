"""Offline emulator of the Google Calendar API v3 (events, instances, freeBusy, token endpoint), with the People API
(`sandbox/google_people.py`) on the same app.

Shapes follow ../shared/specs/google/calendar.v3.json; behaviour follows the documented one: `syncToken`
incremental listing (deleted items reported as `status: cancelled`), HTTP 410 when a sync token expired,
etags with `If-Match` -> 412, client-chosen ids with 409 on duplicates, exceptions of recurring events
addressed as `{masterId}_{originalStart}`. Base path `/google/calendar/v3`, token endpoint `/google/token`, sign-in
page `/google/o/oauth2/v2/auth` (authorization code with S256 PKCE; a refresh token only with `access_type=offline`;
with `openid`, a signed ID token carrying the `nonce`, `email` and `email_verified`, `hd` for a Workspace domain; the
discovery document `/google/.well-known/openid-configuration` and its keys `/google/oauth2/v3/certs`).

The sandbox is the oracle zoomcal's Google code is checked against, so it reads events with its own code: series are
expanded with python-dateutil over the RRULE / EXRULE / RDATE / EXDATE lines in the event's `timeZone`, instance ids
formed as Google forms them (`{id}_{YYYYMMDD}` all-day, `{id}_{YYYYMMDDTHHMMSSZ}` in UTC for timed series). What a
client may send is answered as Google answers it: the list filters (`timeMin`, `timeMax`, `q`, `private`/
`sharedExtendedProperty`, `iCalUID`, `updatedMin`, `eventTypes`), `singleEvents` expansion, `orderBy`
(`startTime` only with `singleEvents`), paging, `showDeleted` (cancelled instances of a series are listed unless
expanded), a sync token refused beside a filter; a `dateTime` needs an offset or a `timeZone`;
`conferenceData` is kept only with `conferenceDataVersion=1`; a PUT without `status` leaves it `confirmed`;
free/busy periods are merged. `calendarList`, `calendars.get` and batch requests (`POST /batch/calendar/v3`,
multipart/mixed) are served too.

The token endpoint answers with the `scope` the grant was given (a refresh token made without naming scopes was
given `DEFAULT_SCOPE`: Calendar and every People scope).

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
from datetime import date, datetime, timedelta
from email import message_from_bytes
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httpx
from dateutil.rrule import rruleset, rrulestr
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from zoomcal.sandbox.clock import UTC, parse_stamp, stamp, tz
from zoomcal.sandbox.common import (
    ApiError,
    Consents,
    IdTokens,
    Meter,
    RateWindows,
    TokenBook,
    api_error_response,
    mounted_at,
    subject_id,
)
from zoomcal.sandbox.google_people import PEOPLE_SCOPES, PeopleState, build_people_router
from zoomcal.sandbox.push import Outbox

ID_PATTERN = re.compile(r"^[a-v0-9]{5,1024}$")
WRITABLE = ("summary", "description", "location", "start", "end", "recurrence", "attendees", "status",
            "extendedProperties", "transparency", "visibility", "colorId", "reminders", "eventType",
            "originalStartTime", "iCalUID", "sequence", "conferenceData", "guestsCanModify",
            "guestsCanInviteOthers", "guestsCanSeeOtherGuests", "anyoneCanAddSelf", "source", "attachments",
            "workingLocationProperties", "outOfOfficeProperties", "focusTimeProperties")
USER_PER_MINUTE = 600          # Google's published Calendar API quota per user per project
PROJECT_PER_MINUTE = 10_000    # and per project
MAX_EXPANSION = 5000           # instances of one series the sandbox expands at most (an endless rule stops there)
MAX_BATCH = 1000               # calls in one batch request
# what a grant made without naming its scopes was given: every API the sandbox serves (Calendar, People)
DEFAULT_SCOPE = " ".join(["https://www.googleapis.com/auth/calendar", *PEOPLE_SCOPES])
AUTH = "https://www.googleapis.com/auth/"
# the scopes each method served takes, any one of them (calendar.v3.json, each method's `scopes`; the free/busy and
# public-only ones allow a listing too, as the description says, though they read less)
_EVENTS_READ = ("calendar", "calendar.app.created", "calendar.events", "calendar.events.freebusy",
                "calendar.events.owned", "calendar.events.owned.readonly", "calendar.events.public.readonly",
                "calendar.events.readonly", "calendar.readonly")
_EVENTS_WRITE = ("calendar", "calendar.app.created", "calendar.events", "calendar.events.owned")
METHOD_SCOPES = {
    **{f"events.{m}": _EVENTS_READ for m in ("list", "get", "instances", "watch")},
    **{f"events.{m}": _EVENTS_WRITE for m in ("insert", "patch", "update", "delete")},
    "calendars.get": ("calendar", "calendar.app.created", "calendar.calendars", "calendar.calendars.readonly",
                      "calendar.readonly"),
    "calendarList.get": ("calendar", "calendar.app.created", "calendar.calendarlist",
                         "calendar.calendarlist.readonly", "calendar.readonly"),
    "calendarList.list": ("calendar", "calendar.calendarlist", "calendar.calendarlist.readonly", "calendar.readonly"),
    "freebusy.query": ("calendar", "calendar.events.freebusy", "calendar.freebusy", "calendar.readonly"),
    "channels.stop": ("calendar", "calendar.acls", "calendar.acls.readonly", "calendar.app.created",
                      "calendar.calendarlist", "calendar.calendarlist.readonly", *_EVENTS_READ[2:],
                      "calendar.settings", "calendar.settings.readonly"),
}

# list parameters a sync token cannot be combined with (the discovery document's syncToken description)
NOT_WITH_SYNC_TOKEN = ("iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty", "timeMin",
                       "timeMax", "updatedMin")


@dataclass
class GoogleCalendar:
    id: str
    summary: str
    time_zone: str
    owner: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    epoch: int = 0            # bumped when sync tokens are invalidated
    resource_id: str = field(default_factory=lambda: secrets.token_urlsafe(20))   # of the events collection
    access_role: str = "owner"    # what the calendar's owner lets the account do (owner, writer, reader...)


@dataclass
class GoogleState:
    client_id: str = "418926305714-5kq0d7hv3pnm2c8tgaf1wyx6bze4lu9r.apps.googleusercontent.com"
    client_secret: str = "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"
    calendars: dict[str, GoogleCalendar] = field(default_factory=dict)
    tokens: TokenBook = field(default_factory=TokenBook)
    consents: Consents = field(default_factory=Consents)    # the sign-in page's codes
    id_tokens: IdTokens = field(default_factory=IdTokens)   # OpenID Connect: the keys ID tokens are signed with
    unverified: set[str] = field(default_factory=set)       # accounts whose address Google has not verified
    seq: int = 0
    last_ms: int = 0      # the last `updated` stamp given, in milliseconds (each write gets a later one)
    lock: threading.RLock = field(default_factory=threading.RLock)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)    # channel id -> channel
    outbox: Outbox = field(default_factory=Outbox)
    # the e-mail Google sends guests when a write asks for it (sendUpdates=all or externalOnly): one entry per
    # recipient, {"calendar", "event", "to", "kind": invitation | update | cancellation, "summary"}
    guest_mail: list[dict[str, Any]] = field(default_factory=list)
    max_ttl: int = 30 * 24 * 3600
    clock: Any = field(default=time.monotonic)     # seconds, for the quota windows
    per_user_per_minute: int | None = None         # requests per user per minute (None: no limit)
    per_project_per_minute: int | None = None      # requests per minute over all users (None: no limit)
    rate_limit_status: int = 403                   # how a quota refusal is answered: 403 or 429
    windows: RateWindows = field(default_factory=RateWindows)
    meter: Meter = field(init=False)
    people: PeopleState = field(default_factory=PeopleState)     # the People API's contacts and directories

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

    def next_updated(self) -> str:
        """The `updated` stamp of a write: the wall clock to the millisecond, later than every earlier one."""
        self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
        return _millis(self.last_ms)

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
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _millis(ms: int) -> str:
    """An instant in milliseconds as Google stamps `updated` / `created`: `2026-03-02T09:00:00.123Z`."""
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# --- times and recurrence, as Google reads them ---------------------------------------------------------------

@dataclass
class Times:
    """An event's start and end: dates (all-day) or UTC instants, and the zone its recurrence is expanded in."""

    all_day: bool
    start: Any            # date, or aware datetime in UTC
    end: Any
    zone: str             # the start's timeZone, else the calendar's


def _read_when(when: Any, what: str) -> Any:
    """One `start` / `end` (EventDateTime) -> a date or an aware UTC datetime; 400 as Google answers.

    A `dateTime` needs an offset unless `timeZone` names the zone it is local to."""
    if not isinstance(when, dict) or not (when.get("date") or when.get("dateTime")):
        raise _error(400, "required", f"Missing {what} time.")
    zone = when.get("timeZone")
    if zone:
        try:
            tz(zone)
        except ValueError as exc:
            raise _error(400, "invalid", f"Invalid time zone definition for {what} time.") from exc
    if when.get("date"):
        try:
            return date.fromisoformat(str(when["date"])) if len(str(when["date"])) == 10 else _bad()
        except ValueError as exc:
            raise _error(400, "invalid", f"Invalid {what} time.") from exc
    value = when["dateTime"]
    try:
        return parse_stamp(value)
    except ValueError:
        pass
    try:
        local = datetime.fromisoformat(value) if isinstance(value, str) and len(value) >= 19 and \
            value[10] in "Tt" else _bad()
    except ValueError as exc:
        raise _error(400, "invalid", f"Invalid {what} time.") from exc
    if local.tzinfo is not None:
        raise _error(400, "invalid", f"Invalid {what} time.")
    if not zone:
        raise _error(400, "required", f"Missing time zone definition for {what} time.")
    return local.replace(tzinfo=tz(zone)).astimezone(UTC)


def _bad() -> Any:
    raise ValueError("malformed")


def _times(event: dict[str, Any], cal_zone: str) -> Times:
    start, end = _read_when(event.get("start"), "start"), _read_when(event.get("end"), "end")
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise _error(400, "invalid", "Start and end times must either both be date or both be dateTime.")
    if end < start or (end == start and not isinstance(start, datetime)):    # an all-day event ends a day later
        raise _error(400, "timeRangeEmpty", "The specified time range is empty.")
    zone = (event.get("start") or {}).get("timeZone") or cal_zone or "UTC"
    return Times(not isinstance(start, datetime), start, end, zone)


def _local(value: str, zone: Any, all_day: bool, params: dict[str, str]) -> datetime:
    """One RDATE / EXDATE / UNTIL value -> a naive wall-clock datetime in the series' zone."""
    value = value.strip()
    if re.fullmatch(r"\d{8}", value):
        return datetime.strptime(value, "%Y%m%d")
    if not re.fullmatch(r"\d{8}T\d{6}Z?", value):
        raise ValueError(f"malformed recurrence date {value!r}")
    moment = datetime.strptime(value[:15], "%Y%m%dT%H%M%S")
    if value.endswith("Z"):
        moment = moment.replace(tzinfo=UTC)
    elif params.get("TZID"):
        moment = moment.replace(tzinfo=tz(params["TZID"]))
    else:
        return moment
    local = moment.astimezone(zone).replace(tzinfo=None)
    return datetime(local.year, local.month, local.day) if all_day else local


def _rule(value: str, start: datetime, zone: Any, all_day: bool):
    """An RRULE / EXRULE value read with dateutil over a wall-clock start (UNTIL turned to wall-clock too)."""
    parts = []
    for part in value.split(";"):
        key, _, val = part.partition("=")
        if key.upper() == "UNTIL":
            until = _local(val, zone, all_day, {})
            if re.fullmatch(r"\d{8}", val.strip()) and not all_day:
                until = until.replace(hour=23, minute=59, second=59)      # a date: the whole day is included
            val = until.strftime("%Y%m%dT%H%M%S")
        parts.append(f"{key}={val}")
    rule = rrulestr(";".join(parts), dtstart=start, forceset=False, cache=False)
    if isinstance(rule, rruleset):
        raise ValueError("one rule per line")
    return rule


def _series(event: dict[str, Any], times: Times) -> rruleset:
    """The event's RRULE / EXRULE / RDATE / EXDATE lines over its start, in wall-clock time of its zone."""
    zone = tz(times.zone)
    if times.all_day:
        start = datetime(times.start.year, times.start.month, times.start.day)
    else:
        start = times.start.astimezone(zone).replace(tzinfo=None)
    rules = rruleset(cache=False)
    lines = event.get("recurrence")
    if not isinstance(lines, list):
        raise ValueError("recurrence is a list of lines")
    for line in lines:
        name, sep, value = str(line).partition(":")
        if not sep or not value:
            raise ValueError(f"malformed recurrence line {line!r}")
        head, *rest = name.split(";")
        params = {k.upper(): v for k, _, v in (p.partition("=") for p in rest)}
        head = head.strip().upper()
        if head in ("RRULE", "EXRULE"):
            (rules.rrule if head == "RRULE" else rules.exrule)(_rule(value, start, zone, times.all_day))
        elif head in ("RDATE", "EXDATE"):
            for item in value.split(","):
                moment = _local(item, zone, times.all_day, params)
                if len(item.strip()) == 8 and not times.all_day:      # VALUE=DATE over a timed series
                    moment = moment.replace(hour=start.hour, minute=start.minute, second=start.second)
                (rules.rdate if head == "RDATE" else rules.exdate)(moment)
        else:
            raise ValueError(f"unknown recurrence line {head}")
    return rules


def check_event(event: dict[str, Any], cal_zone: str) -> Times:
    """What Google checks of an event written to it -> its times; 400 otherwise."""
    times = _times(event, cal_zone)
    attendees = event.get("attendees") or []
    if not isinstance(attendees, list):
        raise _error(400, "invalid", "Invalid value for: attendees")
    for attendee in attendees:
        email = attendee.get("email") if isinstance(attendee, dict) else None
        if not email:
            raise _error(400, "required", "Missing attendee email.")
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", str(email)):
            raise _error(400, "invalid", "Invalid attendee email.")
    if event.get("recurrence"):
        if not times.all_day:
            for key in ("start", "end"):
                if not (event.get(key) or {}).get("timeZone"):
                    raise _error(400, "invalid", f"Missing time zone definition for {key} time.")
        try:
            rules = _series(event, times)
            next(iter(rules), None)
        except (ValueError, TypeError, OverflowError) as exc:
            raise _error(400, "invalid", "Invalid recurrence rule.") from exc
    return times


def _instance_suffix(start: Any) -> str:
    return start.strftime("%Y%m%d") if not isinstance(start, datetime) else start.strftime("%Y%m%dT%H%M%SZ")


def occurrences(event: dict[str, Any], cal_zone: str, lo: datetime | None = None,
                hi: datetime | None = None) -> list[tuple[Any, Any]]:
    """(start, end) of each occurrence of an event (one for a single event), as dates or UTC instants, overlapping
    [lo, hi) when given; an event whose times or rules cannot be read has none."""
    try:
        times = _times(event, cal_zone)
        if not event.get("recurrence"):
            found = [(times.start, times.end)]
        else:
            zone = tz(times.zone)
            found = []
            if times.all_day:
                length = times.end - times.start
            else:
                length = times.end.astimezone(zone).replace(tzinfo=None) - \
                    times.start.astimezone(zone).replace(tzinfo=None)
            for local in _series(event, times):
                if len(found) >= MAX_EXPANSION:
                    break
                if times.all_day:
                    found.append((local.date(), local.date() + length))
                else:
                    found.append((local.replace(tzinfo=zone).astimezone(UTC),
                                  (local + length).replace(tzinfo=zone).astimezone(UTC)))
                if hi is not None and _instant(found[-1][0], cal_zone) >= hi:
                    found.pop()
                    break
    except (ApiError, ValueError, TypeError, OverflowError):
        return []
    return [(s, e) for s, e in found if _overlaps(s, e, cal_zone, lo, hi)]


def _instant(value: Any, zone: str) -> datetime:
    """A date (midnight in the calendar's zone) or instant as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=tz(zone)).astimezone(UTC)


def _overlaps(start: Any, end: Any, zone: str, lo: datetime | None, hi: datetime | None) -> bool:
    s, e = _instant(start, zone), _instant(end, zone)
    if s == e:      # an event of no length is in a range that holds its start
        return (lo is None or s >= lo) and (hi is None or s < hi)
    return (lo is None or e > lo) and (hi is None or s < hi)


def _render(value: Any, zone: str) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}
    return {"dateTime": value.astimezone(tz(zone)).isoformat(), "timeZone": zone}


def _expand(master: dict[str, Any], cal_zone: str, lo: datetime | None = None,
            hi: datetime | None = None) -> list[dict[str, Any]]:
    """The instances of a recurring master, as Google forms them: `{id}_{YYYYMMDD}` for an all-day series,
    `{id}_{YYYYMMDDTHHMMSSZ}` (UTC) for a timed one."""
    zone = (master.get("start") or {}).get("timeZone") or cal_zone or "UTC"
    out = []
    for start, end in occurrences(master, cal_zone, lo, hi):
        inst = {k: v for k, v in master.items() if k not in ("recurrence", "id")}
        inst.update(id=f"{master['id']}_{_instance_suffix(start)}", recurringEventId=master["id"],
                    originalStartTime=_render(start, zone), start=_render(start, zone), end=_render(end, zone))
        out.append(inst)
    return out


def instance_of(master: dict[str, Any], cal_zone: str, inst_id: str) -> dict[str, Any] | None:
    """The instance `{id}_{suffix}` of a recurring master, expanded only around the time its id names."""
    suffix = inst_id[len(master["id"]) + 1:] if inst_id.startswith(master["id"] + "_") else ""
    try:
        if re.fullmatch(r"\d{8}", suffix):
            lo = _instant(datetime.strptime(suffix, "%Y%m%d").date(), cal_zone)
            hi = lo + timedelta(days=1)
        elif re.fullmatch(r"\d{8}T\d{6}Z", suffix):
            lo = datetime.strptime(suffix, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            hi = lo + timedelta(seconds=1)
        else:
            return None
    except ValueError:
        return None
    return next((i for i in _expand(master, cal_zone, lo, hi) if i["id"] == inst_id), None)


def _normalize_times(event: dict[str, Any], cal_zone: str) -> None:
    """Google answers a `dateTime` with the offset of the event's zone (else the calendar's)."""
    for key in ("start", "end", "originalStartTime"):
        when = event.get(key)
        if isinstance(when, dict) and when.get("dateTime"):
            try:
                moment = _read_when(when, key)
            except ApiError:
                continue
            zone = when.get("timeZone") or cal_zone or "UTC"
            event[key] = {**when, "dateTime": moment.astimezone(tz(zone)).isoformat()}


def _event_span(event: dict[str, Any], cal_zone: str) -> tuple[Any, Any] | None:
    """Where an event (or exception; a cancelled one at its original start) sits, for range filters."""
    if event.get("status") == "cancelled" and event.get("originalStartTime"):
        try:
            start = _read_when(event["originalStartTime"], "originalStart")
        except ApiError:
            return None
        return start, start
    try:
        times = _times(event, cal_zone)
    except ApiError:
        return None
    return times.start, times.end


def _text(event: dict[str, Any]) -> str:
    """What a `q` search looks in: summary, description, location, attendees' and organizer's names and emails."""
    parts = [event.get("summary"), event.get("description"), event.get("location")]
    for person in [*(event.get("attendees") or []), event.get("organizer") or {}]:
        if isinstance(person, dict):
            parts += [person.get("displayName"), person.get("email")]
    return " ".join(str(p) for p in parts if p).casefold()


def _has_properties(event: dict[str, Any], scope: str, wanted: list[str]) -> bool:
    held = ((event.get("extendedProperties") or {}).get(scope)) or {}
    for constraint in wanted:
        name, _, value = constraint.partition("=")
        if held.get(name) != value:
            return False
    return True


def _flag(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise _error(400, "invalidParameter", f"Invalid value for: {name}")
    return value.lower() == "true"


def _number(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise _error(400, "invalidParameter", f"Invalid value for: {name}") from exc
    if number < low:
        raise _error(400, "invalid", f"Invalid value '{value}'. Values must be >= {low}")
    return min(number, high) if high is not None else number


def _bound(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return parse_stamp(value)
    except ValueError as exc:
        raise _error(400, "badRequest", f"Bad Request: {name} must be an RFC 3339 time with an offset") from exc


def _merge(periods: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Busy periods as Google gives them: overlapping or touching blocks are one period."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(periods):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _conference(body: dict[str, Any], event_id: str) -> dict[str, Any]:
    """conferenceData as kept (conferenceDataVersion=1): a `createRequest` is answered with a Meet conference."""
    data = dict(body)
    create = data.get("createRequest")
    if isinstance(create, dict) and not data.get("conferenceId"):
        code = "-".join(event_id[i:i + n] for i, n in ((0, 3), (3, 4), (7, 3)))
        data.update(createRequest={**create, "status": {"statusCode": "success"}}, conferenceId=code,
                    conferenceSolution={"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
                    entryPoints=[{"entryPointType": "video", "uri": f"https://meet.google.com/{code}",
                                  "label": f"meet.google.com/{code}"}])
    return data


def build_app(state: GoogleState) -> APIRouter:
    router = APIRouter()

    def auth(request: Request, method: str | None = None) -> str:
        """Who the request's token is; with the API method it calls, a token whose grant names none of the
        scopes the method takes is refused (403 insufficient scopes)."""
        subject = state.tokens.subject(request)
        if subject is None:
            raise ApiError(401, {"error": {"code": 401, "message": "Request had invalid authentication "
                                           "credentials.", "status": "UNAUTHENTICATED"}})
        granted = state.tokens.granted(request)
        if method is not None and granted is not None and not granted & {AUTH + s for s in METHOD_SCOPES[method]}:
            raise ApiError(403, {"error": {"code": 403, "message": "Request had insufficient authentication scopes.",
                                           "errors": [{"domain": "global", "reason": "insufficientPermissions",
                                                       "message": "Insufficient Permission"}],
                                           "status": "PERMISSION_DENIED"}})
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
        event["updated"] = state.next_updated()
        event["_stored_at"] = time.time()     # when this version was stored (wall clock; never served)
        event["sequence"] = event.get("sequence", 0)
        cal.events[event["id"]] = event
        state.notify(cal.id, "exists")
        return event

    def check_etag(request: Request, event: dict[str, Any]) -> None:
        wanted = request.headers.get("if-match")
        if wanted and wanted != "*" and wanted != event["etag"]:
            raise _error(412, "conditionNotMet", "Precondition Failed")

    @router.get("/o/oauth2/v2/auth")
    def authorize(request: Request):
        """The sign-in page (accounts.google.com/o/oauth2/v2/auth), already signed in as `login_hint`. A refresh
        token comes with the code's tokens only when `access_type=offline` was asked."""
        with state.lock:
            owners = {c.owner for c in state.calendars.values()}
            return state.consents.answer(
                request, client_id=state.client_id, remember=("access_type", "nonce"),
                subject_of=lambda hint: hint if hint in owners else None,
                refuse=lambda _why: JSONResponse({"error": "redirect_uri_mismatch", "error_description":
                                                  "The redirect URI in the request does not match the ones "
                                                  "authorized for the OAuth client."}, 400))

    @router.post("/token")
    async def token(request: Request):
        form = await request.form()
        if form.get("client_id") != state.client_id or form.get("client_secret") != state.client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "The OAuth client was not "
                                 "found."}, 401)
        if form.get("grant_type") == "authorization_code":
            with state.lock:
                redeemed = state.consents.redeem(str(form.get("code", "")), str(form.get("code_verifier", "")),
                                                 str(form.get("redirect_uri", "")))
                if redeemed is None:
                    return JSONResponse({"error": "invalid_grant", "error_description": "Bad Request"}, 400)
                subject, scope, asked = redeemed
                answer = state.tokens.issue(subject, app=True, scope=scope or DEFAULT_SCOPE,
                                            with_refresh=asked.get("access_type") == "offline")
                if "openid" in scope.split():
                    answer["id_token"] = id_token(request, subject, scope, asked.get("nonce"))
                return answer
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        with state.lock:
            refresh = str(form.get("refresh_token", ""))
            subject = state.tokens.refresh.get(refresh)
            if subject is None:
                return JSONResponse({"error": "invalid_grant", "error_description": "Token has been expired "
                                     "or revoked."}, 400)
            # the answer names the scopes the grant was given (a grant made without naming them: every scope
            # the sandbox serves)
            return state.tokens.issue(subject, app=True, scope=state.tokens.scope_of(refresh) or DEFAULT_SCOPE)

    def issuer(request: Request) -> str:
        return mounted_at(request)

    def id_token(request: Request, subject: str, scope: str, nonce: str | None) -> str:
        """Google's ID token: who signed in (`sub`, stable per account), for which client; the address and
        whether Google verified it with the `email` scope, the Workspace domain (`hd`) for a Workspace account."""
        claims: dict[str, Any] = {"iss": issuer(request), "azp": state.client_id, "aud": state.client_id,
                                  "sub": subject_id("google", subject)}
        if "email" in scope.split():
            claims.update(email=subject, email_verified=subject not in state.unverified)
            domain = subject.rpartition("@")[2]
            if domain not in ("gmail.com", "googlemail.com"):
                claims["hd"] = domain
        if "profile" in scope.split():
            claims["name"] = subject.split("@")[0].replace(".", " ").title()
        if nonce:
            claims["nonce"] = nonce
        return state.id_tokens.sign(claims)

    @router.get("/.well-known/openid-configuration")
    def discovery(request: Request):
        base = issuer(request)
        return IdTokens.discovery(base, f"{base}/o/oauth2/v2/auth", f"{base}/token", f"{base}/oauth2/v3/certs",
                                  revocation_endpoint=f"{base}/revoke")

    @router.get("/oauth2/v3/certs")
    def certs():
        return state.id_tokens.jwks()

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

    def list_key(item: dict[str, Any], order: str | None, zone: str) -> list:
        if order == "startTime":
            span = _event_span(item, zone)
            return [stamp(_instant(span[0], zone)) if span else "", item["id"]]
        return [item.get("_seq", 0), item["id"]]

    def chosen(cal: GoogleCalendar, since: int, upto: int, single: bool, incremental: bool,
               lo: datetime | None, hi: datetime | None) -> list[dict[str, Any]]:
        """The events a listing looks at: changed since `since` (all, for a full one), series expanded when
        `singleEvents` (an instance stored as an exception is listed as stored)."""
        out = []
        for event in cal.events.values():
            if not since < event.get("_seq", 0) <= upto:
                continue
            if single and event.get("recurrence") and not event.get("recurringEventId"):
                if event.get("status") == "cancelled" and not incremental:
                    continue
                out += [i for i in _expand(event, cal.time_zone, lo, hi) if i["id"] not in cal.events]
                continue
            out.append(event)
        return out

    @router.get("/calendar/v3/calendars/{cal_id}/events")
    def list_events(cal_id: str, request: Request):
        subject = auth(request, "events.list")
        query = request.query_params
        sync_token, page_token = query.get("syncToken", ""), query.get("pageToken", "")
        if sync_token:
            for name in NOT_WITH_SYNC_TOKEN:
                if name in query:
                    raise _error(400, "invalid", f"The {name} parameter cannot be used together with syncToken.")
            if _flag(request, "showDeleted") is False:     # deletions are always part of an incremental listing
                raise _error(400, "invalid", "showDeleted cannot be false together with syncToken.")
        single, show_deleted = bool(_flag(request, "singleEvents")), bool(_flag(request, "showDeleted"))
        order = query.get("orderBy")
        if order not in (None, "startTime", "updated"):
            raise _error(400, "invalidParameter", f"Invalid value for: orderBy '{order}'")
        if order == "startTime" and not single:
            raise _error(400, "badRequest", "The requested ordering is not available for the particular query.")
        size = _number(request, "maxResults", 250, 1, 2500)
        lo, hi, updated_min = _bound(request, "timeMin"), _bound(request, "timeMax"), _bound(request, "updatedMin")
        if lo is not None and hi is not None and lo >= hi:
            raise _error(400, "timeRangeEmpty", "The specified time range is empty.")
        zone = query.get("timeZone")
        if zone:
            try:
                tz(zone)
            except ValueError as exc:
                raise _error(400, "invalid", "Invalid time zone.") from exc
        terms = query.get("q", "").casefold().split()
        private, shared = query.getlist("privateExtendedProperty"), query.getlist("sharedExtendedProperty")
        uid, types = query.get("iCalUID"), [t for v in query.getlist("eventTypes") for t in v.split(",") if t]
        with state.lock:
            cal = calendar(cal_id, subject)
            after = None
            if page_token:
                page = _decode(page_token)
                if page.get("cal") != cal.id:
                    raise _error(400, "invalid", "Invalid page token value.")
                since, upto, incremental, after = page.get("since", 0), page.get("upto", 0), page.get("inc"), \
                    page.get("after")
            else:
                since, upto, incremental = 0, state.seq, bool(sync_token)
                if sync_token:
                    token = _decode(sync_token)
                    if token.get("cal") != cal.id or token.get("epoch") != cal.epoch:
                        raise _error(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is "
                                     "required.")
                    since = token.get("seq", 0)

            def listed(event: dict[str, Any]) -> bool:
                if event.get("status") == "cancelled" and not (incremental or updated_min or show_deleted):
                    master = cal.events.get(event.get("recurringEventId") or "")
                    # cancelled instances of a series stay listed when neither showDeleted nor singleEvents
                    if single or master is None or master.get("status") == "cancelled":
                        return False
                if updated_min is not None and not (event.get("updated") and
                                                    parse_stamp(event["updated"]) >= updated_min):
                    return False
                if (lo is not None or hi is not None) and not event.get("recurringEventId") \
                        and event.get("recurrence"):
                    if not occurrences(event, cal.time_zone, lo, hi):
                        return False
                elif lo is not None or hi is not None:
                    span = _event_span(event, cal.time_zone)
                    if span is None or not _overlaps(*span, cal.time_zone, lo, hi):
                        return False
                if terms and not all(t in _text(event) for t in terms):
                    return False
                if not (_has_properties(event, "private", private) and _has_properties(event, "shared", shared)):
                    return False
                if uid is not None and event.get("iCalUID") != uid:
                    return False
                return not types or event.get("eventType", "default") in types

            selected = sorted(((list_key(e, order, cal.time_zone), e)
                               for e in chosen(cal, since, upto, single, incremental, lo, hi) if listed(e)),
                              key=lambda pair: pair[0])
            if after is not None:
                selected = [pair for pair in selected if pair[0] > after]
            chunk = selected[:size]
            body: dict[str, Any] = {"kind": "calendar#events", "etag": f'"{upto}"', "summary": cal.summary,
                                    "updated": _millis(state.last_ms),
                                    "timeZone": zone or cal.time_zone, "accessRole": cal.access_role,
                                    "defaultReminders": [], "items": [_public(e) for _, e in chunk]}
            if len(selected) > size:
                body["nextPageToken"] = _encode({"cal": cal.id, "since": since, "upto": upto, "inc": incremental,
                                                 "after": chunk[-1][0]})
            else:
                body["nextSyncToken"] = _encode({"cal": cal.id, "seq": upto, "epoch": cal.epoch})
            return body

    def check_updates(request: Request) -> str:
        wanted = request.query_params.get("sendUpdates")
        if wanted is not None and wanted not in ("all", "externalOnly", "none"):
            raise _error(400, "invalidParameter", f"Invalid value for: sendUpdates '{wanted}'")
        return wanted or "none"

    def guests(cal: GoogleCalendar, event: dict[str, Any] | None, wanted: str) -> set[str]:
        """Whom a write's notifications go to: the event's guests but its organizer (with externalOnly, only
        guests who have no Google calendar here)."""
        if wanted == "none" or not event or event.get("status") == "cancelled":
            return set()
        found = {str(a.get("email", "")).lower() for a in event.get("attendees") or [] if isinstance(a, dict)}
        found.discard(cal.owner.lower())
        if wanted == "externalOnly":
            found -= {c.owner.lower() for c in state.calendars.values()}
        return {g for g in found if g}

    def mail_guests(request: Request, cal: GoogleCalendar, before: dict[str, Any] | None,
                    after: dict[str, Any] | None) -> None:
        """Record what Google would e-mail: new guests are invited, dropped ones get a cancellation, the others an
        update when what they see changed."""
        wanted = check_updates(request)
        old, new = guests(cal, before, wanted), guests(cal, after, wanted)
        changed = before is not None and after is not None and _effective(before) != _effective(after)
        shown = after if after and after.get("status") != "cancelled" else before or {}
        for kind, who in (("invitation", new - old), ("cancellation", old - new),
                          ("update", (old & new) if changed else set())):
            for to in sorted(who):
                state.guest_mail.append({"calendar": cal.id, "event": shown.get("id"), "to": to, "kind": kind,
                                         "summary": shown.get("summary", "")})

    def conference_version(request: Request) -> int:
        check_updates(request)
        version = _number(request, "conferenceDataVersion", 0, 0)
        if version > 1:
            raise _error(400, "invalid", f"Invalid conference data version: {version}.")
        return version

    def accepted(request: Request, key: str, version: int) -> bool:
        """Whether a field of the request body is taken: conferenceData only with conferenceDataVersion=1,
        attachments only with supportsAttachments=true (both ignored otherwise, as Google does)."""
        if key == "conferenceData":
            return version >= 1
        if key == "attachments":
            return bool(_flag(request, "supportsAttachments"))
        return key in WRITABLE and key != "originalStartTime"

    def finish(cal: GoogleCalendar, event: dict[str, Any]) -> None:
        """What Google fills in of an event it stores."""
        _normalize_times(event, cal.time_zone)
        if isinstance(event.get("attendees"), list):
            event["attendees"] = [{**a, "responseStatus": a.get("responseStatus") or "needsAction"}
                                  if isinstance(a, dict) else a for a in event["attendees"]]
        if isinstance(event.get("conferenceData"), dict):
            event["conferenceData"] = _conference(event["conferenceData"], event["id"])
            video = [p for p in event["conferenceData"].get("entryPoints") or []
                     if p.get("entryPointType") == "video" and "meet.google.com" in str(p.get("uri"))]
            if video:
                event["hangoutLink"] = video[0]["uri"]
        elif "conferenceData" not in event:
            event.pop("hangoutLink", None)

    @router.post("/calendar/v3/calendars/{cal_id}/events")
    async def insert_event(cal_id: str, request: Request):
        subject = auth(request, "events.insert")
        body = await _json(request)
        version = conference_version(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            event_id = body.get("id") or secrets.token_hex(13)
            if not isinstance(event_id, str) or not ID_PATTERN.match(event_id):
                raise _error(400, "invalid", "Invalid resource id value.")
            if event_id in cal.events:
                raise _error(409, "duplicate", "The requested identifier already exists.")
            check_event(body, cal.time_zone)
            event = {k: v for k, v in body.items() if accepted(request, k, version) and v is not None}
            event.update(kind="calendar#event", id=event_id, status=body.get("status") or "confirmed",
                         created=_millis(state.last_ms + 1),
                         iCalUID=body.get("iCalUID") or f"{event_id}@google.com",
                         htmlLink=f"https://www.google.com/calendar/event?eid={event_id}",
                         organizer={"email": cal.owner, "self": True}, creator={"email": cal.owner, "self": True},
                         eventType=body.get("eventType") or "default")
            finish(cal, event)
            mail_guests(request, cal, None, event)
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
        return instance_of(master, cal.time_zone, event_id)

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
        subject = auth(request, "events.get")
        with state.lock:
            cal = calendar(cal_id, subject)
            event = stored_or_instance(cal, event_id)[0]
            if request.headers.get("if-none-match") == event.get("etag"):
                return Response(status_code=304, headers={"ETag": event["etag"]})
            return JSONResponse(_public(event), headers={"ETag": event.get("etag", "")})

    async def write(cal_id: str, event_id: str, request: Request, replace: bool):
        subject = auth(request, "events.update" if replace else "events.patch")
        body = await _json(request)
        version = conference_version(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            event, virtual = stored_or_instance(cal, event_id)
            if not virtual:
                check_etag(request, event)
            if replace:   # a PUT replaces what it may write; what it may not (or was told to ignore) stays
                updated = {k: v for k, v in event.items() if k not in WRITABLE or k == "originalStartTime"
                           or not accepted(request, k, version)}
            else:
                updated = dict(event)
            for key, value in body.items():
                if accepted(request, key, version):
                    if value is None:
                        updated.pop(key, None)
                    else:
                        updated[key] = value
            if replace and not updated.get("status"):
                updated["status"] = "confirmed"      # a PUT without a status leaves the default
            if updated.get("status") == "cancelled" and not updated.get("recurringEventId"):
                raise _error(400, "invalid", "Use delete to cancel an event.")
            if updated.get("status") != "cancelled":
                check_event(updated, cal.time_zone)
            finish(cal, updated)
            updated["sequence"] = event.get("sequence", 0) + 1
            if state.tokens.by_app(request) and _effective(updated) == _effective(event):
                state.meter.echo(subject, request.method, request.url.path)
            mail_guests(request, cal, event if event.get("status") != "cancelled" else None, updated)
            return _public(touch(cal, updated))

    @router.patch("/calendar/v3/calendars/{cal_id}/events/{event_id}")
    async def patch_event(cal_id: str, event_id: str, request: Request):
        return await write(cal_id, event_id, request, replace=False)

    @router.put("/calendar/v3/calendars/{cal_id}/events/{event_id}")
    async def update_event(cal_id: str, event_id: str, request: Request):
        return await write(cal_id, event_id, request, replace=True)

    @router.delete("/calendar/v3/calendars/{cal_id}/events/{event_id}", status_code=204)
    def delete_event(cal_id: str, event_id: str, request: Request):
        subject = auth(request, "events.delete")
        check_updates(request)
        with state.lock:
            cal = calendar(cal_id, subject)
            event, virtual = stored_or_instance(cal, event_id)
            if not virtual and event.get("status") == "cancelled":
                raise _error(410, "deleted", "Resource has been deleted")
            if not virtual:
                check_etag(request, event)
            mail_guests(request, cal, dict(event), None)
            event["status"] = "cancelled"
            touch(cal, event)
            if not event.get("recurringEventId"):
                for other in list(cal.events.values()):
                    if other.get("recurringEventId") == event_id and other.get("status") != "cancelled":
                        other["status"] = "cancelled"
                        touch(cal, other)
            return Response(status_code=204)

    @router.get("/calendar/v3/calendars/{cal_id}/events/{event_id}/instances")
    def instances(cal_id: str, event_id: str, request: Request):
        subject = auth(request, "events.instances")
        show_deleted = bool(_flag(request, "showDeleted"))
        size = _number(request, "maxResults", 250, 1, 2500)
        lo, hi = _bound(request, "timeMin"), _bound(request, "timeMax")
        original = request.query_params.get("originalStart")
        with state.lock:
            cal = calendar(cal_id, subject)
            master = find(cal, event_id)
            if master.get("status") == "cancelled":
                raise _error(410, "deleted", "Resource has been deleted")
            items = []
            for inst in _expand(master, cal.time_zone, lo, hi) if master.get("recurrence") else [master]:
                item = cal.events.get(inst["id"], inst)
                if item.get("status") == "cancelled" and not show_deleted:
                    continue
                if original is not None and not _same_start(item.get("originalStartTime"), original):
                    continue
                items.append(_public(item))
            offset = int(_decode(request.query_params.get("pageToken", "")).get("offset", 0))
            body = {"kind": "calendar#events", "summary": cal.summary, "timeZone": cal.time_zone,
                    "accessRole": cal.access_role, "defaultReminders": [], "items": items[offset:offset + size],
                    "etag": master["etag"], "updated": master.get("updated") or _millis(state.last_ms)}
            if offset + size < len(items):
                body["nextPageToken"] = _encode({"offset": offset + size})
            return body

    @router.post("/calendar/v3/calendars/{cal_id}/events/watch")
    async def watch(cal_id: str, request: Request):
        subject = auth(request, "events.watch")
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
        auth(request, "channels.stop")
        body = await _json(request)
        with state.lock:
            channel = state.channels.get(str(body.get("id") or ""))
            if channel is None or channel["resourceId"] != body.get("resourceId"):
                raise _error(404, "notFound", f"Channel '{body.get('id')}' not found for project")
            del state.channels[channel["id"]]
            return Response(status_code=204)

    def list_entry(cal: GoogleCalendar, subject: str) -> dict[str, Any]:
        return {"kind": "calendar#calendarListEntry", "etag": f'"{cal.epoch}"', "id": cal.id,
                "summary": cal.summary, "timeZone": cal.time_zone, "accessRole": cal.access_role,
                "defaultReminders": [], "selected": True, "primary": cal.id == cal.owner == subject,
                "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}}

    @router.get("/calendar/v3/users/me/calendarList")
    def calendar_list(request: Request):
        subject = auth(request, "calendarList.list")
        with state.lock:
            mine = [c for c in state.calendars.values() if c.owner == subject or subject.startswith("admin:")]
            return {"kind": "calendar#calendarList", "etag": f'"{len(mine)}"',
                    "items": [list_entry(c, subject) for c in mine],
                    "nextSyncToken": _encode({"calendars": len(mine)})}

    @router.get("/calendar/v3/users/me/calendarList/{cal_id}")
    def calendar_list_entry(cal_id: str, request: Request):
        subject = auth(request, "calendarList.get")
        with state.lock:
            return list_entry(calendar(cal_id, subject), subject)

    @router.get("/calendar/v3/calendars/{cal_id}")
    def calendar_get(cal_id: str, request: Request):
        subject = auth(request, "calendars.get")
        with state.lock:
            cal = calendar(cal_id, subject)
            return {"kind": "calendar#calendar", "etag": f'"{cal.epoch}"', "id": cal.id, "summary": cal.summary,
                    "timeZone": cal.time_zone,
                    "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}}

    @router.post("/calendar/v3/freeBusy")
    async def free_busy(request: Request):
        subject = auth(request, "freebusy.query")
        body = await _json(request)
        try:
            lo, hi = parse_stamp(body["timeMin"]), parse_stamp(body["timeMax"])
        except (KeyError, ValueError) as exc:
            raise _error(400, "badRequest", "timeMin and timeMax are required RFC 3339 times.") from exc
        if lo >= hi:
            raise _error(400, "timeRangeEmpty", "The specified time range is empty.")
        items = body.get("items") or []
        if len(items) > int(body.get("calendarExpansionMax") or 50) or len(items) > 50:
            raise _error(400, "tooManyCalendarsRequested", "Too many calendars requested.")
        out = {}
        with state.lock:
            for entry in items:
                wanted = str((entry or {}).get("id", ""))
                try:
                    cal = calendar(wanted, subject)
                except ApiError:
                    out[wanted] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                    continue
                out[wanted] = {"busy": [{"start": stamp(s), "end": stamp(e)} for s, e in _busy(cal, lo, hi)]}
        return {"kind": "calendar#freeBusy", "timeMin": body["timeMin"], "timeMax": body["timeMax"],
                "calendars": out}

    return router


def _same_start(when: Any, value: str) -> bool:
    try:
        return _read_when(when, "originalStart") == _read_when(
            {"date": value} if len(value) == 10 else {"dateTime": value}, "originalStart")
    except ApiError:
        return False


def _busy(cal: GoogleCalendar, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
    """The calendar's busy periods in [lo, hi): opaque events and occurrences (exceptions where they moved to,
    cancelled ones left out), clipped to the range and merged."""
    zone = cal.time_zone
    periods = []

    def busy(event: dict[str, Any]) -> bool:
        return event.get("status") != "cancelled" and event.get("transparency") != "transparent"

    for event in cal.events.values():
        if event.get("recurringEventId") or not busy(event):
            continue
        if not event.get("recurrence"):
            periods += occurrences(event, zone, lo, hi)
            continue
        exceptions = {e["id"]: e for e in cal.events.values() if e.get("recurringEventId") == event["id"]}
        periods += [(i["start"].get("dateTime") or i["start"]["date"], i["end"].get("dateTime") or i["end"]["date"])
                    for i in _expand(event, zone, lo, hi) if i["id"] not in exceptions]
        for exc_id, exc in exceptions.items():
            if busy(exc) and instance_of(event, zone, exc_id) is not None:
                periods += occurrences({**exc, "recurrence": None}, zone, lo, hi)
    spans = []
    for start, end in periods:
        s = _instant(start, zone) if not isinstance(start, str) else \
            _instant(date.fromisoformat(start) if len(start) == 10 else parse_stamp(start), zone)
        e = _instant(end, zone) if not isinstance(end, str) else \
            _instant(date.fromisoformat(end) if len(end) == 10 else parse_stamp(end), zone)
        if s < hi and e > lo:
            spans.append((max(s, lo), min(e, hi)))
    return _merge(spans)


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


def make_google_app(state: GoogleState) -> FastAPI:
    app = FastAPI(title="Google Calendar API sandbox")
    app.add_exception_handler(ApiError, api_error_response)
    app.include_router(build_app(state))
    app.include_router(build_people_router(state), prefix="/people")

    @app.post("/batch/calendar/v3")
    @app.post("/batch")
    async def batch(request: Request):
        """A batch request (multipart/mixed, one `application/http` part per call) answered part by part, each
        call made as if sent alone (its own authorization, else the batch's)."""
        kind = request.headers.get("content-type", "")
        if not kind.lower().startswith("multipart/mixed") or "boundary=" not in kind:
            raise _error(400, "badRequest", "Batch requests must be multipart/mixed.")
        message = message_from_bytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + await request.body())
        parts = message.get_payload() if message.is_multipart() else []
        if not parts:
            raise _error(400, "badRequest", "A batch request holds at least one call.")
        if len(parts) > MAX_BATCH:
            raise _error(400, "badRequest", f"A batch request holds at most {MAX_BATCH} calls.")
        boundary = "batch_" + secrets.token_hex(12)
        answer = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://google") as inner:
            for part in parts:
                status, headers, content = await _batch_call(inner, part, request.headers.get("authorization"))
                content_id = str(part.get("Content-ID", "")).strip().strip("<>")
                lines = [f"--{boundary}", "Content-Type: application/http", f"Content-ID: <response-{content_id}>",
                         "", f"HTTP/1.1 {status} {_reason(status)}"]
                lines += [f"{name}: {value}" for name, value in headers.items()]
                answer.append("\r\n".join(lines) + "\r\n\r\n" + content + "\r\n")
        return Response("".join(answer) + f"--{boundary}--\r\n", media_type=f"multipart/mixed; boundary={boundary}")

    @app.middleware("http")
    async def meter(request: Request, call_next):
        # apps' requests are counted per user and judged against the quotas before anything else (the calls of a
        # batch each count, the batch itself does not)
        if not state.tokens.by_app(request) or request.url.path.endswith(("/batch", "/batch/calendar/v3")):
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


async def _batch_call(inner: httpx.AsyncClient, part: Any, authorization: str | None) -> tuple[int, dict, str]:
    """One call of a batch -> (status, headers, body) of its answer."""
    payload = part.get_payload(decode=True) or b""
    found = re.search(rb"\r?\n\r?\n", payload)
    head, content = (payload[:found.start()], payload[found.end():]) if found else (payload, b"")
    lines = head.decode("utf-8", "replace").splitlines()
    request_line = (lines[0] if lines else "").split(" ")
    if len(request_line) < 2:
        return 400, {"Content-Type": "application/json"}, json.dumps(_error(400, "badRequest", "Bad Request").body)
    method, target = request_line[0].upper(), request_line[1]
    headers = {name.strip(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
               if name.strip()}
    if authorization and not any(name.lower() == "authorization" for name in headers):
        headers["Authorization"] = authorization
    path = target[target.find("/calendar/v3/"):] if "/calendar/v3/" in target else target
    answer = await inner.request(method, path, headers=headers, content=content)
    kept = {"Content-Type": answer.headers.get("content-type", "application/json; charset=UTF-8")}
    if answer.headers.get("etag"):
        kept["ETag"] = answer.headers["etag"]
    return answer.status_code, kept, answer.text


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
