"""Offline emulator of the Microsoft Graph calendar API (v1.0 slice): calendars, events, instances, calendarView and
its delta, `$batch`, subscriptions.

Shapes follow ../shared/specs/microsoft; behaviour follows the documented one, with the sandbox's own code (it is
the oracle the connector is checked against, so it reads neither zoomcal's mapping nor its recurrence code):

- Paths: `/users/{id}/…` and `/me/…`; `/calendars/{id}/…` with opaque calendar ids, `/calendar/…` the default
  calendar, `/events`, `/calendarView` straight under the user also the default calendar's; `delta` may be
  spelled `delta()` or `microsoft.graph.delta()` (what the SDKs send), `/users/delta()` too. `calendar` is also
  taken as the default calendar's id in `/calendars/{id}`.
- Times: `start`/`end` are `dateTimeTimeZone` with Windows or IANA zone names. Answers are in UTC unless the
  request says `Prefer: outlook.timezone="…"` (answered with `Preference-Applied`); the zone the client wrote
  stays in `originalStartTimeZone` / `originalEndTimeZone`. An all-day event starts and ends at midnight.
- Recurrence: `patternedRecurrence` (daily, weekly, absolute/relative monthly and yearly; interval, daysOfWeek,
  firstDayOfWeek, index, dayOfMonth, month; range endDate, numbered or noEnd from `startDate`) is expanded in the
  event's start zone with python-dateutil's rrule: occurrences are the dates matching the pattern from startDate
  on. Occurrence and exception ids are opaque; `originalStart` is the occurrence's start as scheduled, in UTC. A
  PATCH of an occurrence makes it an exception (times, subject, body, location, showAs…); a deleted one is gone.
- Reading: lists and calendarView page 10 at a time (`$top`, `Prefer: odata.maxpagesize=N`), `$select` keeps
  `id` and the named properties, `$filter` (comparisons joined by `and`) and `$orderby` apply, `Prefer:
  outlook.body-content-type` answers the body as text or HTML. A user principal name matches whatever its case;
  an unknown user is 404 ErrorInvalidUser. calendarView/delta returns single events, occurrences and exceptions
  (never the series master), removed ones as `{"id", "@removed"}`, pages of at most `odata.maxpagesize` (default
  50).
- Writes: `transactionId` makes a retried create return the first one; `If-Match` on a stale etag → 412.
- `$batch`: at most 20 requests with unique ids (else 400), `dependsOn` honoured (a request whose dependency
  failed is answered 424), each answered with status, headers and body.

Base path `/graph/v1.0`, sign-in `/graph/oauth2/v2.0/authorize` (authorization code with S256 PKCE), token
endpoint `/graph/oauth2/v2.0/token` (a refresh token only with `offline_access`; with `openid`, a signed v2.0 ID
token: `tid`, `oid`, a pairwise `sub`, `preferred_username`, `email` with that scope, `idp` for a guest; discovery
at `/graph/{tenant}/v2.0/.well-known/openid-configuration`, keys at `/graph/{tenant}/discovery/v2.0/keys`).
A token answer's `scope` names the permissions granted: those the sign-in asked
for, or those of the refresh token (one made without naming them has `DEFAULT_SCOPE`), narrowed by a `scope` in the
request. The directory (users and their delta), Outlook contacts and people are served beside the calendar by
`sandbox/graph_directory.py`.

Throttling, as Outlook throttles each app per mailbox (off unless `per_mailbox` is set; the published limit is
`MAILBOX_LIMIT`, 10,000 requests in 10 minutes): past it, 429 `TooManyRequests` with `Retry-After` in seconds. The
requests of a `$batch` are judged one by one (the batch itself is not). Every app request is counted per mailbox in
`meter`, with every refusal and every echo write (a PATCH that left the event as it was).

Change notifications: `POST /subscriptions` (resource `users/{id}/calendars/{id}/events`, `users/{id}/calendar/events`
or `users/{id}/events`; changeType among created, updated, deleted; https notificationUrl; expirationDateTime at most
10080 minutes ahead for events; clientState up to 128 characters) first validates each URL: a POST with a
`validationToken` query parameter that must be answered 200 with the token as text/plain within 10 seconds, else
400. Event changes then post `{"value": [...]}` batches carrying the clientState; `lifecycle()` posts
`reauthorizationRequired`, `subscriptionRemoved` (the subscription is gone) or `missed` to the lifecycle URL.
`PATCH /subscriptions/{id}` extends one, `DELETE` ends it.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Any
from urllib.parse import unquote, urlencode
from zoneinfo import ZoneInfo

from dateutil import rrule
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP
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
    retry_seconds,
    subject_id,
)
from zoomcal.sandbox.graph_directory import DirectoryState, build_directory_router
from zoomcal.sandbox.push import Delivery, Outbox

WRITABLE = ("subject", "body", "start", "end", "isAllDay", "showAs", "attendees", "location", "recurrence",
            "transactionId", "categories", "sensitivity", "importance", "isReminderOn", "reminderMinutesBeforeStart",
            "locations", "responseRequested", "allowNewTimeProposals", "hideAttendees", "isOnlineMeeting")
OCCURRENCE_WRITABLE = tuple(k for k in WRITABLE if k not in ("recurrence", "transactionId"))
MAILBOX_LIMIT = (10_000, 600.0)     # Outlook's published limit per app and mailbox: requests, in seconds
BATCHED = "x-sandbox-batched"       # marks the requests a $batch is carried out with
BOOKKEEPING = ("changeKey", "@odata.etag", "lastModifiedDateTime")
DEFAULT = "~default"                # the routes' name for the default calendar (/calendar, /events, ...)
PAGE = 10                           # Graph's default page of events, calendarView and instances
DELTA_PAGE = 50
DAYS = {"sunday": rrule.SU, "monday": rrule.MO, "tuesday": rrule.TU, "wednesday": rrule.WE, "thursday": rrule.TH,
        "friday": rrule.FR, "saturday": rrule.SA}
INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
PATTERNS = {"daily": rrule.DAILY, "weekly": rrule.WEEKLY, "absoluteMonthly": rrule.MONTHLY,
            "relativeMonthly": rrule.MONTHLY, "absoluteYearly": rrule.YEARLY, "relativeYearly": rrule.YEARLY}
SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
NOT_FOUND = ("ErrorItemNotFound", "The specified object was not found in the store.")
# what a grant made without naming its permissions was given: every one the sandbox serves
DEFAULT_SCOPE = "Calendars.ReadWrite Contacts.Read People.Read User.Read User.Read.All offline_access"


@dataclass
class GraphState:
    client_id: str = "7c1f4e2a-93b5-4d08-a6e1-2f5b8c0d9e34"
    client_secret: str = "Qx38Q~m2VbZr7TnW0yLk4sHdJ9pCfA1eGu6XoRiN"
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)     # calendar -> id -> event
    owners: dict[str, str] = field(default_factory=dict)                           # calendar -> user
    defaults: dict[str, str] = field(default_factory=dict)                         # user -> default calendar
    calendars: dict[str, dict[str, Any]] = field(default_factory=dict)             # calendar -> resource
    removed: list[tuple[int, str, str]] = field(default_factory=list)              # (seq, calendar, instance id)
    tokens: TokenBook = field(default_factory=TokenBook)
    consents: Consents = field(default_factory=Consents)    # the sign-in page's codes
    id_tokens: IdTokens = field(default_factory=IdTokens)   # OpenID Connect: the keys ID tokens are signed with
    seq: int = 0
    epoch: int = 0                  # bumped to invalidate every delta token (-> 410 SyncStateNotFound)
    lock: threading.RLock = field(default_factory=threading.RLock)
    tenant_id: str = "00000000-0000-0000-0000-00000000sand"
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)    # id -> subscription
    outbox: Outbox = field(default_factory=Outbox)
    max_minutes: int = 10080            # the longest an event subscription may last
    clock: Any = field(default=time.monotonic)     # seconds, for the throttling windows
    per_mailbox: tuple[int, float] | None = None   # (requests, seconds) an app may make per mailbox; None: no limit
    windows: RateWindows = field(default_factory=RateWindows)
    meter: Meter = field(init=False)
    directory: DirectoryState = field(default_factory=DirectoryState)    # users, contacts (graph_directory.py)

    def __post_init__(self) -> None:
        self.meter = Meter(clock=lambda: self.clock())

    def take_rate(self, request: Request, mailbox: str) -> ApiError | None:
        """Count an app's request against its mailbox's limit -> the refusal past it, or None."""
        if self.per_mailbox is None:
            return None
        limit, seconds = self.per_mailbox
        name = f"graph:mailbox:{mailbox}"
        wait = self.windows.take(("mailbox", mailbox), limit, seconds, self.clock())
        if wait is None:
            self.meter.admitted(name)
            return None
        retry = retry_seconds(wait)
        self.meter.refuse(mailbox, request.method, request.url.path, name, retry)
        return ApiError(429, {"error": {"code": "TooManyRequests", "message": "Please retry again later.",
                                        "innerError": {"code": "429", "message": "Please retry after",
                                                       "status": "429"}}}, {"Retry-After": str(retry)})

    def notify_change(self, key: str, event: dict[str, Any], change: str) -> None:
        """Queue a change notification on every live subscription to this calendar's events that wants it."""
        user = self.owners.get(key, "")
        now = datetime.now(UTC)
        for sub in self.subscriptions.values():
            if sub["_calendar"] != key or change not in sub["changeType"].split(",") or sub["_expires"] < now:
                continue
            path = f"Users/{user}/Events/{event['id']}"
            item = {"subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
                    "changeType": change, "resource": path, "tenantId": self.tenant_id,
                    "clientState": sub.get("clientState"),
                    "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": path,
                                     "@odata.etag": event.get("@odata.etag", ""), "id": event["id"]}}
            self.outbox.queue(sub["notificationUrl"], {"content-type": "application/json"},
                              json.dumps({"value": [item]}).encode())

    async def lifecycle(self, subscription_id: str, event: str) -> Delivery:
        """Post a lifecycle notification (reauthorizationRequired, subscriptionRemoved, missed) for a subscription;
        a removed subscription is gone afterwards."""
        with self.lock:
            sub = self.subscriptions[subscription_id]
            if event == "subscriptionRemoved":
                del self.subscriptions[subscription_id]
        item = {"subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "tenantId": self.tenant_id, "clientState": sub.get("clientState"), "lifecycleEvent": event}
        return await self.outbox.send(Delivery(sub.get("lifecycleNotificationUrl") or sub["notificationUrl"],
                                               {"content-type": "application/json"},
                                               json.dumps({"value": [item]}).encode()))

    def expire_delta_tokens(self) -> None:
        self.epoch += 1

    def add_calendar(self, user: str, name: str = "Calendar") -> str:
        """A new calendar of `user` (the first one is the default) -> its opaque id."""
        calendar_id = "AAMkAD" + secrets.token_urlsafe(33).replace("_", "x") + "AAA="
        key = f"{user}/{calendar_id}"
        self.events[key] = {}
        self.owners[key] = user
        self.defaults.setdefault(user, key)
        self.calendars[key] = {"id": calendar_id, "name": name, "color": "auto", "hexColor": "",
                               "isDefaultCalendar": self.defaults[user] == key, "changeKey": "AAAA",
                               "canShare": True, "canViewPrivateItems": True, "canEdit": True,
                               "isRemovable": self.defaults[user] != key, "isTallyingResponses": True,
                               "allowedOnlineMeetingProviders": ["teamsForBusiness"],
                               "defaultOnlineMeetingProvider": "teamsForBusiness",
                               "owner": {"name": user.split("@")[0], "address": user}}
        return calendar_id

    def default_key(self, user: str) -> str:
        """The store key of the user's default calendar."""
        return self.key(user, DEFAULT)

    def key(self, user: str, calendar_id: str) -> str:
        """The store key of a user's calendar (DEFAULT: their default one)."""
        if calendar_id == DEFAULT:
            return self.defaults.get(user, f"{user}/{DEFAULT}")
        return f"{user}/{calendar_id}"


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error": {"code": code, "message": message}})


def _opaque(prefix: str, raw: str) -> str:
    """A Graph-looking id that carries `raw` (base64 without padding, `-`/`_` as Exchange ids spell them)."""
    return prefix + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _unopaque(prefix: str, value: str) -> str | None:
    if not value.startswith(prefix):
        return None
    text = value[len(prefix):]
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except ValueError:
        return None


def zone(name: str | None) -> ZoneInfo:
    """A Windows or IANA zone name as a zone; 400 TimeZoneNotSupportedException for one Graph does not know."""
    try:
        return tz(MS_TIMEZONE_TO_IANA_MAP.get(name or "UTC", name or "UTC"))
    except ValueError as exc:
        raise _error(400, "TimeZoneNotSupportedException", "A valid TimeZone value must be specified. The following "
                     f"TimeZone value is not supported: '{name}'.") from exc


def _wall(value: Any, what: str) -> tuple[datetime, str]:
    """A dateTimeTimeZone as (naive local date-time, zone name)."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise _error(400, "ErrorInvalidRequest", f"The event must have a {what} date-time.")
    name = value.get("timeZone") or "UTC"
    zone(name)
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d)?)(?:\.\d{1,7})?(Z|[+-]\d\d:\d\d)?", value["dateTime"])
    try:
        if found is None:
            raise ValueError(value["dateTime"])
        local = datetime.fromisoformat(found.group(1))
        if found.group(2):      # an offset in the value wins over the zone: the same instant, read in the zone
            local = parse_stamp(found.group(1) + found.group(2)).astimezone(zone(name)).replace(tzinfo=None)
    except ValueError as exc:
        raise _error(400, "ErrorInvalidRequest", f"Cannot convert the literal '{value['dateTime']}' to the "
                     "expected type 'Edm.DateTimeOffset'.") from exc
    return local, name


def _instant(local: datetime, name: str) -> datetime:
    return local.replace(tzinfo=zone(name)).astimezone(UTC)


def _served(when: datetime, name: str) -> dict[str, str]:
    """An instant as Graph writes a dateTimeTimeZone in zone `name`: seven fraction digits, no offset."""
    return {"dateTime": when.astimezone(zone(name)).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": name}


def _address(attendee: dict[str, Any]) -> str:
    return ((attendee.get("emailAddress") or {}).get("address") or "").lower()


def _public(event: dict[str, Any]) -> dict[str, Any]:
    """The event as served (in UTC), without the sandbox's own bookkeeping."""
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _span(event: dict[str, Any]) -> tuple[datetime, datetime]:
    return event["_start"], event["_end"]


def _bounds(value: dict[str, Any], what: str) -> datetime:
    try:
        return datetime.fromisoformat(str(value[what]))
    except (KeyError, ValueError) as exc:
        raise _error(400, "ErrorInvalidRequest", f"The recurrence range needs a valid {what}.") from exc


def _rule(event: dict[str, Any]) -> rrule.rrule:
    """The event's patternedRecurrence as an rrule over naive local times in its start zone."""
    rec = event.get("recurrence") or {}
    pattern, rng = rec.get("pattern") or {}, rec.get("range") or {}
    kind = pattern.get("type")
    if kind not in PATTERNS:
        raise _error(400, "ErrorInvalidRequest", f"Recurrence pattern type '{kind}' is not valid.")
    interval = pattern.get("interval", 1)
    if not isinstance(interval, int) or interval < 1 or (interval > 99 and kind != "daily") or interval > 999:
        raise _error(400, "ErrorInvalidRequest", "The recurrence pattern interval is out of range.")
    local_start = event["_start"].astimezone(zone(event["originalStartTimeZone"])).replace(tzinfo=None)
    start_date = _bounds(rng, "startDate").date()
    args: dict[str, Any] = {"interval": interval,
                            "dtstart": datetime.combine(start_date, local_start.time()),
                            "cache": False}
    days = pattern.get("daysOfWeek") or []
    if any(d not in DAYS for d in days):
        raise _error(400, "ErrorInvalidRequest", "daysOfWeek holds an unknown day.")
    weekdays = [DAYS[d] for d in days]
    if kind in ("weekly", "relativeMonthly", "relativeYearly"):
        if not weekdays:
            raise _error(400, "ErrorInvalidRequest", f"A {kind} pattern needs daysOfWeek.")
        args["byweekday"] = weekdays
    if kind == "weekly":
        args["wkst"] = DAYS.get(pattern.get("firstDayOfWeek") or "sunday", rrule.SU)
    if kind in ("relativeMonthly", "relativeYearly"):
        args["bysetpos"] = INDEX.get(pattern.get("index") or "first")
        if args["bysetpos"] is None:
            raise _error(400, "ErrorInvalidRequest", "index must be first, second, third, fourth or last.")
    if kind in ("absoluteMonthly", "absoluteYearly"):
        day = pattern.get("dayOfMonth")
        if not isinstance(day, int) or not 1 <= day <= 31:
            raise _error(400, "ErrorInvalidRequest", f"A {kind} pattern needs dayOfMonth 1 to 31.")
        args["bymonthday"] = day
    if kind in ("absoluteYearly", "relativeYearly"):
        month = pattern.get("month")
        if not isinstance(month, int) or not 1 <= month <= 12:
            raise _error(400, "ErrorInvalidRequest", f"A {kind} pattern needs month 1 to 12.")
        args["bymonth"] = month
    if rng.get("type") == "numbered":
        count = rng.get("numberOfOccurrences")
        if not isinstance(count, int) or count < 1:
            raise _error(400, "ErrorInvalidRequest", "numberOfOccurrences must be a positive number.")
        args["count"] = count
    elif rng.get("type") == "endDate":
        end_date = _bounds(rng, "endDate").date()
        if end_date < start_date:
            raise _error(400, "ErrorInvalidRequest", "The recurrence range ends before it starts.")
        args["until"] = datetime.combine(end_date, clock_time.max)
    elif rng.get("type") != "noEnd":
        raise _error(400, "ErrorInvalidRequest", f"Recurrence range type '{rng.get('type')}' is not valid.")
    return rrule.rrule(PATTERNS[kind], **args)


def original_starts(event: dict[str, Any], lo: datetime, hi: datetime) -> list[datetime]:
    """The scheduled starts (UTC) of a series' occurrences that start before `hi` and end after `lo`."""
    name = event["originalStartTimeZone"]
    length = event["_end"] - event["_start"]
    rule = _rule(event)
    out = []
    local_lo = (lo - length).astimezone(zone(name)).replace(tzinfo=None) - timedelta(days=1)
    local_hi = hi.astimezone(zone(name)).replace(tzinfo=None) + timedelta(days=1)
    for local in rule.between(local_lo, local_hi, inc=True):
        start = _instant(local, name)
        if start < hi and start + length > lo:
            out.append(start)
    return out


def _is_occurrence(event: dict[str, Any], start: datetime) -> bool:
    local = start.astimezone(zone(event["originalStartTimeZone"])).replace(tzinfo=None)
    return local in _rule(event).between(local - timedelta(seconds=1), local + timedelta(seconds=1), inc=True)


def occurrence_id(master_id: str, original: datetime) -> str:
    return _opaque("AAMkOcc", f"{master_id}\n{stamp(original)}")


def _occurrence_ref(value: str) -> tuple[str, datetime] | None:
    raw = _unopaque("AAMkOcc", value)
    if raw is None or "\n" not in raw:
        return None
    master_id, _, when = raw.partition("\n")
    try:
        return master_id, parse_stamp(when)
    except ValueError:
        return None


def instance(event: dict[str, Any], original: datetime) -> dict[str, Any]:
    """One occurrence of a series as served (UTC): the master's fields, then its exception's, if any."""
    key = stamp(original)
    override = event["_exceptions"].get(key) or {}
    length = event["_end"] - event["_start"]
    start, end = override.get("_start", original), override.get("_end", original + length)
    inst = {k: v for k, v in event.items() if not k.startswith("_") and k not in ("recurrence", "id")}
    inst.update({k: v for k, v in override.items() if not k.startswith("_")})
    inst.update(id=occurrence_id(event["id"], original), type="exception" if override else "occurrence",
                seriesMasterId=event["id"], originalStart=key,
                _start=start, _end=end)
    inst["start"], inst["end"] = _served_times(event, start, end)
    if event.get("isAllDay"):
        inst["originalStart"] = f"{original.astimezone(zone(event['originalStartTimeZone'])).date()}T00:00:00Z"
    return inst


def expand(event: dict[str, Any], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    """The instances of one stored event that fall in [lo, hi), as served: the event itself, or the occurrences
    and exceptions of a series master (deleted ones left out)."""
    return [_public(i) for i in _expand(event, lo, hi)]


def _expand(event: dict[str, Any], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    if event.get("type") != "seriesMaster":
        return [event] if event["_start"] < hi and event["_end"] > lo else []
    out = []
    for original in original_starts(event, lo - timedelta(days=1), hi + timedelta(days=1)):
        if stamp(original) in event["_cancelled"]:
            continue
        inst = instance(event, original)
        if inst["_start"] < hi and inst["_end"] > lo:
            out.append(inst)
    out.sort(key=lambda i: i["_start"])
    return out


def read_times(body: dict[str, Any], into: dict[str, Any]) -> None:
    """Check the start and end a write leaves an event (or occurrence) with and keep them as instants, with the
    zones they were written in."""
    all_day = bool(into.get("isAllDay"))
    (start, start_zone), (end, end_zone) = (_wall(into.get("_wall_start"), "start"),
                                            _wall(into.get("_wall_end"), "end"))
    if all_day and (start.time() != clock_time() or end.time() != clock_time() or start_zone != end_zone):
        raise _error(400, "ErrorInvalidRequest", "Your request can't be completed. If an event is marked as "
                     "all-day, its start and end times must be set to midnight, and in the same time zone.")
    first, last = _instant(start, start_zone), _instant(end, end_zone)
    if last < first or (all_day and last == first):
        raise _error(400, "ErrorInvalidRequest", "The end of the event must not be before its start.")
    into["_start"], into["_end"] = first, last
    if "start" in body or "originalStartTimeZone" not in into:
        into["originalStartTimeZone"] = start_zone
    if "end" in body or "originalEndTimeZone" not in into:
        into["originalEndTimeZone"] = end_zone
    into["start"], into["end"] = _served_times(into, first, last)


def _served_times(event: dict[str, Any], start: datetime, end: datetime) -> tuple[dict[str, str], dict[str, str]]:
    """start and end as served in UTC; an all-day event's are its days at midnight, whatever the zone."""
    if not event.get("isAllDay"):
        return _served(start, "UTC"), _served(end, "UTC")
    name = event.get("originalStartTimeZone") or "UTC"
    return tuple({"dateTime": f"{when.astimezone(zone(name)).date()}T00:00:00.0000000", "timeZone": "UTC"}
                 for when in (start, end))   # type: ignore[return-value]


def _preferences(request: Request) -> dict[str, str]:
    """The Prefer header's preferences (several headers or comma separated), quotes taken off values."""
    out = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                out[name.strip().lower()] = value.strip().strip('"')
    return out


def _answer_zone(request: Request) -> str | None:
    name = _preferences(request).get("outlook.timezone")
    if name:
        zone(name)
    return name


def present(item: dict[str, Any], request: Request) -> dict[str, Any]:
    """An event or instance as this request asked for it: times in its `outlook.timezone`, `$select`."""
    if "@removed" in item:
        return item
    out = _public(item)
    name = _answer_zone(request)
    if name and "_start" in item:
        if item.get("isAllDay"):     # an all-day event is midnight to midnight wherever it is read
            out["start"] = {"dateTime": item["start"]["dateTime"], "timeZone": name}
            out["end"] = {"dateTime": item["end"]["dateTime"], "timeZone": name}
        else:
            out["start"], out["end"] = _served(item["_start"], name), _served(item["_end"], name)
    kind = _preferences(request).get("outlook.body-content-type", "").lower()
    body = out.get("body") or {}
    if kind in ("text", "html") and body and body.get("contentType") != kind:
        content = str(body.get("content") or "")
        out["body"] = {"contentType": kind, "content": _html_text(content) if kind == "text" else
                       "<html><body>" + html.escape(content).replace("\n", "<br>") + "</body></html>"}
    select = request.query_params.get("$select") or request.query_params.get("select")
    if select:
        wanted = {s.strip().lower() for s in select.split(",")} | {"id", "@odata.etag"}
        out = {k: v for k, v in out.items() if k.lower() in wanted}
    return out


def _property(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.strip().split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


FILTER_OPS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a is not None and a > b,
              "ge": lambda a, b: a is not None and a >= b, "lt": lambda a, b: a is not None and a < b,
              "le": lambda a, b: a is not None and a <= b}


def _literal(text: str) -> Any:
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    if text in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text]
    try:
        return int(text)
    except ValueError:
        return text     # a date-time written without quotes


def _queried(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`$filter` (comparisons of properties joined by `and`) and `$orderby` (`path [asc|desc]`, comma separated)
    over what is served; a clause the sandbox cannot read is refused as Graph refuses an invalid one."""
    q = request.query_params
    wanted = q.get("$filter") or q.get("filter")
    if wanted:
        clauses = []
        for clause in re.split(r"\s+and\s+", wanted.strip()):
            found = re.fullmatch(r"([A-Za-z/]+)\s+(eq|ne|gt|ge|lt|le)\s+('(?:[^']|'')*'|\S+)", clause.strip())
            if found is None:
                raise _error(400, "BadRequest", f"Invalid filter clause: {clause}")
            clauses.append((found.group(1), FILTER_OPS[found.group(2)], _literal(found.group(3))))
        try:
            items = [i for i in items if all(op(_property(i, path), value) for path, op, value in clauses)]
        except TypeError as exc:
            raise _error(400, "BadRequest", "Invalid filter clause: incompatible types.") from exc
    order = q.get("$orderby") or q.get("orderby")
    for part in reversed([p.split() for p in (order or "").split(",") if p.strip()]):
        if len(part) > 2 or (len(part) == 2 and part[1].lower() not in ("asc", "desc")):
            raise _error(400, "BadRequest", f"Invalid $orderby: {order}")
        items = sorted(items, key=lambda i, path=part[0]: (_property(i, path) is not None, _property(i, path) or ""),
                       reverse=len(part) == 2 and part[1].lower() == "desc")
    return items


def _asked(request: Request) -> str:
    """The URL the client asked for (before the path was brought to the routes' spelling), without its query."""
    return str(request.url.replace(path=request.scope.get("graph.asked") or request.url.path)).split("?")[0]


def _page_size(request: Request, default: int) -> int:
    top = request.query_params.get("$top") or request.query_params.get("top")
    wanted = _preferences(request).get("odata.maxpagesize")
    try:
        size = int(top) if top else int(wanted) if wanted else default
    except ValueError as exc:
        raise _error(400, "BadRequest", "Invalid page size.") from exc
    if size < 1:
        raise _error(400, "BadRequest", "Invalid page size.")
    return size


def _applied(request: Request, response: JSONResponse) -> JSONResponse:
    prefs = _preferences(request)
    applied = [f'outlook.timezone="{prefs["outlook.timezone"]}"'] if prefs.get("outlook.timezone") else []
    if prefs.get("outlook.body-content-type", "").lower() in ("text", "html"):
        applied.append(f'outlook.body-content-type="{prefs["outlook.body-content-type"].lower()}"')
    if prefs.get("odata.maxpagesize"):
        applied.append(f"odata.maxpagesize={prefs['odata.maxpagesize']}")
    if applied:
        response.headers["Preference-Applied"] = ", ".join(applied)
    return response


def _html_text(content: str) -> str:
    """An HTML body as the text Outlook makes of it: line breaks kept, tags dropped, entities read."""
    content = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", content)
    return html.unescape(re.sub(r"<[^>]*>", "", content)).strip()


def _body_preview(body: Any) -> str:
    text = str((body or {}).get("content") or "")
    if str((body or {}).get("contentType") or "text").lower() == "html":
        text = _html_text(text)
    return " ".join(text.split())[:255]




def build_router(state: GraphState) -> APIRouter:
    router = APIRouter()

    def auth(request: Request) -> str:
        subject = state.tokens.subject(request)
        if subject is None:
            raise _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        return subject

    def calendar(user: str, cal: str, subject: str) -> tuple[str, dict[str, dict[str, Any]]]:
        """(store key, events) of a user's calendar the signed-in user may use."""
        if user != "me":    # a user principal name is matched whatever its case
            known = {u.lower(): u for u in state.owners.values()}
            if user.lower() not in known:
                raise _error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
            user = known[user.lower()]
        key = state.key(subject if user == "me" else user, cal)
        if key not in state.events:
            raise _error(404, *NOT_FOUND)
        if state.owners[key] != subject:
            raise _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return key, state.events[key]

    def touch(event: dict[str, Any]) -> dict[str, Any]:
        state.seq += 1
        event["_seq"] = state.seq
        event["changeKey"] = base64.b64encode(f"DwAAABYAAAA{state.seq:08d}".encode()).decode()
        event["@odata.etag"] = f'W/"{event["changeKey"]}"'
        event["lastModifiedDateTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "0000Z"
        return event

    def fields(body: dict[str, Any], into: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
        """Copy what a write may set into an event (or an exception), as Graph keeps it."""
        answers = {_address(a): a.get("status") for a in into.get("attendees") or []}
        for key, value in body.items():
            if key in ("start", "end") and key in allowed:
                into[f"_wall_{key}"] = value
            elif key in allowed:
                into[key] = value
        if "showAs" in body and body["showAs"] not in SHOW_AS:
            raise _error(400, "ErrorInvalidRequest", f"showAs '{body['showAs']}' is not valid.")
        if "body" in body:
            content = body["body"] or {}
            kind = str(content.get("contentType") or "text").lower()
            if kind not in ("text", "html"):
                raise _error(400, "ErrorInvalidRequest", f"contentType '{kind}' is not valid.")
            into["body"] = {"contentType": kind, "content": str(content.get("content") or "")}
            into["bodyPreview"] = _body_preview(into["body"])
        if "location" in body:
            place = body["location"] or {}
            into["location"] = {"displayName": "", "locationType": "default", "uniqueIdType": "unknown",
                                "address": {}, "coordinates": {}, **place}
            if place.get("displayName") and "locations" not in body:
                into["locations"] = [{**into["location"], "locationUri": "", "uniqueId": place["displayName"],
                                      "uniqueIdType": "private"}]
            elif "locations" not in body:
                into["locations"] = []
        if "attendees" in body:
            # an answer is the attendee's: Graph keeps it for whoever stays invited and ignores one sent in
            into["attendees"] = [{"type": "required", **a, "status": answers.get(_address(a)) or
                                  {"response": "none", "time": "0001-01-01T00:00:00Z"}}
                                 for a in body["attendees"] or [] if isinstance(a, dict)]
        return into

    def stored(body: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
        fields(body, into, WRITABLE)
        read_times(body, into)
        into["type"] = "seriesMaster" if into.get("recurrence") else "singleInstance"
        if not into.get("recurrence"):     # no series: left out, as the description has no null for it
            into.pop("recurrence", None)
        else:
            _rule(into)    # a pattern Graph refuses is refused on the write
        return into

    def new_event(user: str) -> dict[str, Any]:
        event_id = "AAMkAD" + secrets.token_urlsafe(60).replace("_", "x") + "AAA="
        uid = "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(28).upper()
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "0000Z"
        return {"id": event_id, "createdDateTime": created, "categories": [], "transactionId": None,
                "reminderMinutesBeforeStart": 15, "isReminderOn": True, "hasAttachments": False, "subject": "",
                "bodyPreview": "", "importance": "normal", "sensitivity": "normal", "isAllDay": False,
                "isCancelled": False, "isOrganizer": True, "responseRequested": True, "seriesMasterId": None,
                "showAs": "busy", "type": "singleInstance",
                "webLink": "https://outlook.office365.com/owa/?itemid=" + event_id.replace("=", "%3D")
                + "&exvsurl=1&path=/calendar/item",
                "onlineMeetingUrl": None, "isOnlineMeeting": False, "onlineMeetingProvider": "unknown",
                "allowNewTimeProposals": True, "isDraft": False, "hideAttendees": False, "iCalUId": uid,
                "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
                "body": {"contentType": "text", "content": ""}, "start": None, "end": None,
                "location": {"displayName": "", "locationType": "default", "uniqueIdType": "unknown",
                             "address": {}, "coordinates": {}},
                "locations": [], "attendees": [],
                "organizer": {"emailAddress": {"name": user.split("@")[0], "address": user}},
                "_exceptions": {}, "_cancelled": set()}

    def find(events: dict[str, dict[str, Any]], event_id: str) -> tuple[dict[str, Any], datetime | None]:
        """(master or single event, original start when the id names an occurrence)."""
        if event_id in events:
            return events[event_id], None
        ref = _occurrence_ref(event_id)
        master = events.get(ref[0]) if ref else None
        if ref is None or master is None or master.get("type") != "seriesMaster" or \
                stamp(ref[1]) in master["_cancelled"] or not _is_occurrence(master, ref[1]):
            raise _error(404, *NOT_FOUND)
        return master, ref[1]

    def check_etag(request: Request, event: dict[str, Any]) -> None:
        wanted = request.headers.get("if-match")
        if wanted and wanted != "*" and wanted != event["@odata.etag"]:
            raise _error(412, "ErrorIrresolvableConflict", "The change key passed in the request does not match "
                                                          "the current change key for the item.")

    def paged(request: Request, items: list[dict[str, Any]], default: int = PAGE) -> JSONResponse:
        size = _page_size(request, default)
        try:
            skip = int(request.query_params.get("$skip") or request.query_params.get("skip") or 0)
        except ValueError as exc:
            raise _error(400, "BadRequest", "Invalid $skip.") from exc
        items = _queried(request, items)
        out: dict[str, Any] = {"value": [present(i, request) for i in items[skip:skip + size]]}
        if skip + size < len(items):
            query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("$skip", "skip")]
            out["@odata.nextLink"] = f"{_asked(request)}?" + urlencode([*query, ("$skip", skip + size)])
        return _applied(request, JSONResponse(out))

    def one(request: Request, item: dict[str, Any], status: int = 200) -> JSONResponse:
        return _applied(request, JSONResponse(present(item, request), status_code=status))

    @router.get("/oauth2/v2.0/authorize")
    @router.get("/{tenant}/oauth2/v2.0/authorize")
    def authorize(request: Request):
        """The sign-in page, already signed in as `login_hint` (a user of this directory)."""
        with state.lock:
            return state.consents.answer(
                request, client_id=state.client_id, needs=("offline_access", "openid"), remember=("nonce", "scope"),
                stranger="AADSTS50020: user not in this directory",
                subject_of=lambda hint: hint if hint in state.owners.values() or any(
                    str(u.get("userPrincipalName", "")).lower() == hint.lower() for u in state.directory.users.values())
                    else None,
                keep=lambda scope: " ".join(s for s in scope.split() if s not in ("openid", "profile", "email")),
                refuse=lambda _why: JSONResponse({"error": "invalid_request",
                                                  "error_description": "AADSTS50011: redirect URI"}, 400))

    @router.post("/oauth2/v2.0/token")
    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(request: Request):
        form = await request.form()
        secret = form.get("client_secret")   # a public client proves itself with PKCE instead
        if form.get("client_id") != state.client_id or (secret is not None and secret != state.client_secret):
            return JSONResponse({"error": "invalid_client"}, 401)
        invalid = JSONResponse({"error": "invalid_grant", "error_description": "AADSTS70000: The provided grant "
                                "has expired or is invalid."}, 400)
        with state.lock:
            if form.get("grant_type") == "authorization_code":
                redeemed = state.consents.redeem(str(form.get("code", "")), str(form.get("code_verifier", "")),
                                                 str(form.get("redirect_uri", "")))
                if redeemed is None:
                    return invalid
                subject, granted, signed = redeemed
            else:
                signed = {}
                refresh = str(form.get("refresh_token", ""))
                granted = state.tokens.scope_of(refresh)
                subject = state.tokens.use_refresh(refresh)
                if form.get("grant_type") != "refresh_token" or subject is None:
                    return invalid
            # the answer names what the grant was given: what the sign-in asked for, or what the refresh token
            # carries; a `scope` in the request narrows it (asking for more than was granted is refused)
            granted = (granted or DEFAULT_SCOPE).split()
            offline = "offline_access" in {g.lower() for g in granted}   # the grant's, whatever a refresh asks
            asked = str(form.get("scope") or "").split()
            if asked:
                held = {g.lower() for g in granted}
                if any(a.lower() not in held and a.lower() not in ("openid", "profile", "email") for a in asked):
                    return JSONResponse({"error": "invalid_scope", "error_description": "AADSTS65001: The user or "
                                         "administrator has not consented to use the application."}, 400)
                granted = [g for g in granted if g.lower() in {a.lower() for a in asked}]
            answer = state.tokens.issue(subject, with_refresh=offline, app=True, scope=" ".join(granted))
            if "openid" in str(signed.get("scope") or "").split():
                answer["id_token"] = id_token(request, subject, signed)
            return answer

    def authority(request: Request) -> str:
        return mounted_at(request)

    def id_token(request: Request, subject: str, signed: dict[str, str]) -> str:
        """Microsoft's v2.0 ID token: the directory (`tid`), the user's object id (`oid`), a `sub` pairwise to the
        app, the sign-in name; `email` with that scope; `idp` names the home directory of a guest."""
        asked = signed.get("scope", "").split()
        user = next((u for u in state.directory.users.values()
                     if str(u.get("userPrincipalName", "")).lower() == subject.lower()), None)
        issuer = f"{authority(request)}/{state.tenant_id}/v2.0"
        claims: dict[str, Any] = {
            "ver": "2.0", "iss": issuer, "aud": state.client_id, "tid": state.tenant_id,
            "sub": subject_id("graph", state.client_id, subject), "preferred_username": subject,
            "oid": user["id"] if user else str(uuid.uuid5(uuid.NAMESPACE_URL, f"graph:{subject}")),
            "nbf": int(time.time())}
        if "profile" in asked:
            claims["name"] = (user or {}).get("displayName") or subject.split("@")[0]
        if "email" in asked and (user is None or user.get("mail")):
            claims["email"] = (user or {}).get("mail") or subject
            # the optional claim an app registration adds: the address's domain is one the directory verified (here:
            # the domain of its people's sign-in names)
            claims["xms_edov"] = claims["email"].rpartition("@")[2].lower() == subject.rpartition("@")[2].lower()
        if user is not None and user.get("userType") == "Guest":
            claims["idp"] = f"https://sts.windows.net/{uuid.uuid5(uuid.NAMESPACE_DNS, subject.rpartition('@')[2])}/"
        if signed.get("nonce"):
            claims["nonce"] = signed["nonce"]
        return state.id_tokens.sign(claims)

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    def discovery(tenant: str, request: Request):
        base = authority(request)
        every = tenant in ("common", "organizations", "consumers")
        return IdTokens.discovery(f"{base}/{'{tenantid}' if every else state.tenant_id}/v2.0",
                                  f"{base}/{tenant}/oauth2/v2.0/authorize", f"{base}/{tenant}/oauth2/v2.0/token",
                                  f"{base}/{tenant}/discovery/v2.0/keys")

    @router.get("/{tenant}/discovery/v2.0/keys")
    def keys(tenant: str):
        return state.id_tokens.jwks()


    @router.get("/v1.0/users/{user}/calendars")
    def list_calendars(user: str, request: Request):
        subject = auth(request)
        user = subject if user == "me" else user
        if user != subject:
            raise _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        with state.lock:
            return {"value": [c for k, c in state.calendars.items() if state.owners[k] == user]}

    @router.get("/v1.0/users/{user}/calendars/{cal}")
    def get_calendar(user: str, cal: str, request: Request):
        with state.lock:
            key, _ = calendar(user, cal, auth(request))
            return state.calendars[key]

    @router.post("/v1.0/users/{user}/calendars/{cal}/events", status_code=201)
    async def create(user: str, cal: str, request: Request):
        subject = auth(request)
        body = await request.json()
        with state.lock:
            key, events = calendar(user, cal, subject)
            if body.get("transactionId"):
                for event in events.values():
                    if event.get("transactionId") == body["transactionId"]:
                        return one(request, event, 201)    # a retried create: the first one
            event = stored(body, new_event(state.owners[key]))
            touch(event)
            events[event["id"]] = event
            state.notify_change(key, event, "created")
            return one(request, event, 201)

    @router.get("/v1.0/users/{user}/calendars/{cal}/events")
    def list_events(user: str, cal: str, request: Request):
        with state.lock:
            _, events = calendar(user, cal, auth(request))
            return paged(request, sorted(events.values(), key=lambda e: e["createdDateTime"]))

    @router.get("/v1.0/users/{user}/calendars/{cal}/events/{event_id}")
    def get(user: str, cal: str, event_id: str, request: Request):
        with state.lock:
            master, original = find(calendar(user, cal, auth(request))[1], event_id)
            return one(request, master if original is None else instance(master, original))

    @router.patch("/v1.0/users/{user}/calendars/{cal}/events/{event_id}")
    async def patch(user: str, cal: str, event_id: str, request: Request):
        subject = auth(request)
        body = await request.json()
        with state.lock:
            key, events = calendar(user, cal, subject)
            master, original = find(events, event_id)
            echo = state.tokens.by_app(request)
            if original is None:
                check_etag(request, master)
                before = _effective(master)
                old_rule = (master.get("recurrence"), master["_start"], master.get("originalStartTimeZone"))
                updated = stored(body, {**json.loads(json.dumps(_public(master))),
                                        **{k: v for k, v in master.items() if k.startswith("_")}})
                if (updated.get("recurrence"), updated["_start"], updated.get("originalStartTimeZone")) != old_rule:
                    updated["_exceptions"], updated["_cancelled"] = {}, set()   # a new rule drops its exceptions
                master.clear()
                master.update(updated)
                if echo and _effective(master) == before:
                    state.meter.echo(subject, request.method, request.url.path)
                touch(master)
                state.notify_change(key, master, "updated")
                return one(request, master)
            before = _instance_view(instance(master, original))
            override = dict(master["_exceptions"].get(stamp(original)) or {})
            current = instance(master, original)
            fields(body, override, OCCURRENCE_WRITABLE)
            # as served, an occurrence's times are UTC; an all-day one's days are in the series' zone
            name = master["originalStartTimeZone"] if master.get("isAllDay") else "UTC"
            times = {"isAllDay": master.get("isAllDay"), "originalStartTimeZone": name, "originalEndTimeZone": name,
                     "_wall_start": override.pop("_wall_start", {**current["start"], "timeZone": name}),
                     "_wall_end": override.pop("_wall_end", {**current["end"], "timeZone": name})}
            read_times(body, times)
            override["_start"], override["_end"] = times["_start"], times["_end"]
            master["_exceptions"][stamp(original)] = override
            touch(master)
            answer = instance(master, original)
            state.notify_change(key, answer, "updated")
            if echo and _instance_view(answer) == before:
                state.meter.echo(subject, request.method, request.url.path)
            return one(request, answer)

    @router.delete("/v1.0/users/{user}/calendars/{cal}/events/{event_id}", status_code=204)
    def delete(user: str, cal: str, event_id: str, request: Request):
        subject = auth(request)
        with state.lock:
            key, events = calendar(user, cal, subject)
            master, original = find(events, event_id)
            if original is None:
                check_etag(request, master)
                state.seq += 1
                far = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
                gone = [master["id"]] if master.get("type") != "seriesMaster" else \
                    [occurrence_id(master["id"], o) for o in original_starts(master, *far)
                     if stamp(o) not in master["_cancelled"]]
                state.removed.extend((state.seq, key, inst_id) for inst_id in gone)
                del events[event_id]
                state.notify_change(key, master, "deleted")
            else:
                master["_cancelled"].add(stamp(original))
                master["_exceptions"].pop(stamp(original), None)
                touch(master)
                state.removed.append((state.seq, key, event_id))
                state.notify_change(key, {**master, "id": event_id}, "deleted")
            return Response(status_code=204)

    @router.get("/v1.0/users/{user}/calendars/{cal}/events/{event_id}/instances")
    def instances(user: str, cal: str, event_id: str, request: Request, startDateTime: str = "",
                  endDateTime: str = ""):
        with state.lock:
            master, _original = find(calendar(user, cal, auth(request))[1], event_id)
            lo, hi = _window(startDateTime, endDateTime)
            return paged(request, _expand(master, lo, hi) if master.get("type") == "seriesMaster" else [])

    @router.get("/v1.0/users/{user}/calendars/{cal}/calendarView")
    def calendar_view(user: str, cal: str, request: Request, startDateTime: str = "", endDateTime: str = ""):
        with state.lock:
            _, events = calendar(user, cal, auth(request))
            lo, hi = _window(startDateTime, endDateTime)
            items = [i for e in events.values() for i in _expand(e, lo, hi)]
            return paged(request, sorted(items, key=lambda i: (i["_start"], i["id"])))

    @router.get("/v1.0/users/{user}/calendars/{cal}/calendarView/delta")
    def delta(user: str, cal: str, request: Request, startDateTime: str = "", endDateTime: str = "",
              deltatoken: str = "", skiptoken: str = ""):
        subject = auth(request)
        with state.lock:
            key, events = calendar(user, cal, subject)
            token = deltatoken or skiptoken
            if token:
                try:
                    data = json.loads(base64.urlsafe_b64decode(token.encode()))
                except ValueError as exc:
                    raise _error(410, "SyncStateNotFound", "The sync state generation is not found.") from exc
                if data.get("epoch") != state.epoch or data.get("calendar") != key:
                    raise _error(410, "SyncStateNotFound", "The sync state generation is not found.")
                since, lo_s, hi_s, offset = data["since"], data["lo"], data["hi"], data.get("offset", 0)
            else:
                since, offset = 0, 0
                lo_s, hi_s = startDateTime, endDateTime
            lo, hi = _window(lo_s, hi_s)
            upto = data.get("upto", state.seq) if token and skiptoken else state.seq
            items: list[dict[str, Any]] = []
            for event in sorted(events.values(), key=lambda e: e["_seq"]):
                if since < event["_seq"] <= upto:
                    items.extend(_expand(event, lo, hi))
            if token:   # an incremental round also reports what was removed since
                items.extend({"@odata.type": "#microsoft.graph.event", "id": inst_id,
                              "@removed": {"reason": "deleted"}} for seq, where, inst_id in state.removed
                             if where == key and since < seq <= upto)
            size = _page_size(request, DELTA_PAGE)
            page, rest = items[offset:offset + size], items[offset + size:]
            base = _asked(request)
            out: dict[str, Any] = {"value": [present(i, request) for i in page]}
            link = {"since": since, "lo": lo_s, "hi": hi_s, "upto": upto, "epoch": state.epoch, "calendar": key}
            if rest:
                out["@odata.nextLink"] = f"{base}?$skiptoken=" + _encode({**link, "offset": offset + size})
            else:
                out["@odata.deltaLink"] = f"{base}?$deltatoken=" + _encode({**link, "since": upto, "offset": 0})
            return _applied(request, JSONResponse(out))
    def expiry(body: dict[str, Any]) -> datetime:
        try:
            at = parse_stamp(str(body.get("expirationDateTime") or "")[:19] + "Z")
        except ValueError as exc:
            raise _error(400, "InvalidRequest", "expirationDateTime is required.") from exc
        now = datetime.now(UTC)
        if at <= now:
            raise _error(400, "InvalidRequest", "Subscription expiration must be in the future.")
        if at > now + timedelta(minutes=state.max_minutes):
            raise _error(400, "InvalidRequest", f"Subscription expiration can only be {state.max_minutes} minutes "
                         "in the future.")
        return at

    def subscription(sub_id: str, subject: str) -> dict[str, Any]:
        sub = state.subscriptions.get(sub_id)
        if sub is None or sub["_owner"] != subject:
            raise _error(404, "ResourceNotFound", f"The object was not found. Subscription '{sub_id}'")
        return sub

    @router.post("/v1.0/subscriptions", status_code=201)
    async def create_subscription(request: Request):
        subject = auth(request)
        body = await request.json()
        found = re.fullmatch(r"/?(?:users/([^/]+)|me)/(?:calendars/([^/]+)/|calendar/)?events",
                             str(body.get("resource") or ""), re.I)
        if found is None:
            raise _error(400, "InvalidRequest", "The resource is not supported for change notifications.")
        key = state.key(unquote(found.group(1) or subject), unquote(found.group(2) or DEFAULT))
        with state.lock:
            if key not in state.events:
                raise _error(404, "ResourceNotFound", "The specified object was not found in the store.")
            if state.owners[key] != subject:
                raise _error(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden]")
        changes = str(body.get("changeType") or "").split(",")
        if not changes or any(c not in ("created", "updated", "deleted") for c in changes):
            raise _error(400, "InvalidRequest", "changeType must be created, updated and/or deleted.")
        urls = [u for u in (body.get("notificationUrl"), body.get("lifecycleNotificationUrl")) if u]
        if not body.get("notificationUrl") or any(not str(u).startswith("https://") for u in urls):
            raise _error(400, "InvalidRequest", "The notification URL must use HTTPS.")
        if len(str(body.get("clientState") or "")) > 128:
            raise _error(400, "InvalidRequest", "clientState is longer than 128 characters.")
        at = expiry(body)
        for url in urls:          # Graph validates the endpoints before the subscription exists
            token = secrets.token_urlsafe(24)
            sep = "&" if "?" in url else "?"
            answer = await state.outbox.send(Delivery(f"{url}{sep}{urlencode({'validationToken': token})}",
                                                      {"content-type": "text/plain; charset=utf-8"}, b""))
            if answer.status != 200 or answer.answer != token or \
                    not answer.content_type.startswith("text/plain"):
                raise _error(400, "InvalidRequest", "Subscription validation request failed. Notification "
                             "endpoint must respond with 200 OK to validation request.")
        sub = {"id": str(uuid.uuid4()), "resource": str(body["resource"]), "applicationId": state.client_id,
               "changeType": ",".join(changes), "clientState": body.get("clientState"),
               "notificationUrl": body["notificationUrl"],
               "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl"),
               "expirationDateTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "creatorId": subject,
               "latestSupportedTlsVersion": "v1_2", "includeResourceData": False}
        with state.lock:
            state.subscriptions[sub["id"]] = {**sub, "_calendar": key, "_owner": subject, "_expires": at}
        return JSONResponse({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
                             **sub}, status_code=201)

    @router.get("/v1.0/subscriptions/{sub_id}")
    def get_subscription(sub_id: str, request: Request):
        subject = auth(request)
        with state.lock:
            return _public(subscription(sub_id, subject))

    @router.patch("/v1.0/subscriptions/{sub_id}")
    async def renew_subscription(sub_id: str, request: Request):
        subject = auth(request)
        body = await request.json()
        at = expiry(body)
        with state.lock:
            sub = subscription(sub_id, subject)
            sub["_expires"], sub["expirationDateTime"] = at, at.strftime("%Y-%m-%dT%H:%M:%SZ")
            return _public(sub)

    @router.delete("/v1.0/subscriptions/{sub_id}", status_code=204)
    def delete_subscription(sub_id: str, request: Request):
        subject = auth(request)
        with state.lock:
            subscription(sub_id, subject)
            del state.subscriptions[sub_id]
            return Response(status_code=204)

    return router



def _effective(event: dict[str, Any]) -> str:
    """What a stored event holds for its owner, its exceptions and cancellations included (the bookkeeping a write
    bumps left out)."""
    public = {k: v for k, v in event.items() if not k.startswith("_") and k not in BOOKKEEPING}
    return json.dumps([public, event.get("_exceptions"), sorted(event.get("_cancelled") or ())], sort_keys=True,
                      default=str)


def _instance_view(instance: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in _public(instance).items() if k not in BOOKKEEPING and k != "type"},
                      sort_keys=True, default=str)


def _encode(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _window(start: str, end: str) -> tuple[datetime, datetime]:
    """startDateTime / endDateTime: with an offset, or without one (then UTC)."""
    if not start or not end:
        raise _error(400, "ErrorInvalidParameter", "This request requires a time window specified by the query "
                     "string parameters StartDateTime and EndDateTime.")
    try:
        lo, hi = (parse_stamp(v) if re.search(r"(Z|[+-]\d\d:\d\d)$", v) else
                  datetime.fromisoformat(v).replace(tzinfo=UTC) for v in (start, end))
    except ValueError as exc:
        raise _error(400, "ErrorInvalidParameter", "startDateTime and endDateTime must be ISO 8601.") from exc
    return lo, hi


async def _run_batch(app: FastAPI, request: Request, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Carry out a batch's requests, each after those it depends on; one whose dependency failed is not run."""
    import httpx

    auth = {"Authorization": request.headers.get("authorization", "")}
    pending = list(requests)
    status: dict[str, int] = {}
    responses = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://graph/v1.0") as inner:
        while pending:
            ready = [r for r in pending if all(d in status for d in r.get("dependsOn") or [])]
            sub = ready[0]
            pending.remove(sub)
            failed = [d for d in sub.get("dependsOn") or [] if status[d] >= 400]
            if failed:
                status[sub["id"]] = 424
                responses.append({"id": sub["id"], "status": 424, "headers": {"Content-Type": "application/json"},
                                  "body": {"error": {"code": "FailedDependency", "message": "The request "
                                                     f"depends on {', '.join(failed)}, which failed."}}})
                continue
            answer = await inner.request(sub["method"].upper(), "/" + sub["url"].lstrip("/"),
                                         json=sub.get("body"),
                                         headers={**auth, **(sub.get("headers") or {}), BATCHED: "1"})
            status[sub["id"]] = answer.status_code
            reply: dict[str, Any] = {"id": sub["id"], "status": answer.status_code, "headers": {
                name.title() if name != "odata-version" else "OData-Version": value
                for name, value in answer.headers.items()
                if name in ("content-type", "retry-after", "location", "preference-applied", "odata-version")}}
            if answer.content:
                reply["body"] = answer.json()
            responses.append(reply)
    return responses


def _batch_problem(requests: Any) -> str | None:
    """Why Graph refuses a `$batch` body as a whole, or None."""
    if not isinstance(requests, list) or not 1 <= len(requests) <= 20:
        return "A batch holds 1 to 20 requests."
    ids = [r.get("id") if isinstance(r, dict) else None for r in requests]
    for sub in requests:
        if not isinstance(sub, dict) or not isinstance(sub.get("id"), str) or not sub["id"] or \
                not sub.get("method") or not isinstance(sub.get("url"), str):
            return "Each request needs an id, a method and a url."
        if ids.count(sub["id"]) > 1:
            return f"Batch request contains duplicate id '{sub['id']}'."
        depends = sub.get("dependsOn") or []
        if not isinstance(depends, list) or any(d not in ids or d == sub["id"] for d in depends):
            return f"Request '{sub['id']}' depends on a request not in the batch."
        if sub.get("body") is not None and not any(k.lower() == "content-type" for k in sub.get("headers") or {}):
            return f"Write request id : {sub['id']} does not contain Content-Type header or body."
    order, done = list(requests), set()
    while order:     # every dependency must come to an end
        ready = [r for r in order if set(r.get("dependsOn") or []) <= done]
        if not ready:
            return "The dependsOn of the batch's requests form a cycle."
        for r in ready:
            done.add(r["id"])
            order.remove(r)
    return None


def make_graph_app(state: GraphState) -> FastAPI:
    app = FastAPI(title="Microsoft Graph sandbox")
    app.add_exception_handler(ApiError, api_error_response)
    app.include_router(build_router(state))
    app.include_router(build_directory_router(state))

    @app.post("/v1.0/$batch")
    async def batch(request: Request):
        """JSON batching: up to 20 requests with unique ids in one call, each answered on its own (status, headers,
        body), `dependsOn` putting one after others."""
        body = await request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        problem = _batch_problem(requests)
        if problem:
            return JSONResponse({"error": {"code": "BadRequest", "message": problem}}, 400)
        return {"responses": await _run_batch(app, request, requests)}

    @app.middleware("http")
    async def meter(request: Request, call_next):
        # apps' requests are counted per mailbox and judged against its limit before anything else (a $batch is
        # one request; the requests it holds are judged, not counted again)
        if not state.tokens.by_app(request):
            return await call_next(request)
        found = re.search(r"/v1\.0/users/([^/]+)", request.url.path)
        with state.lock:
            mailbox = unquote(found.group(1)) if found else "me"
            if mailbox in ("me", "delta"):     # the directory as a whole counts against the caller
                mailbox = state.tokens.subject(request) or "-"
            batched = request.headers.get(BATCHED) == "1"
            if not batched:
                state.meter.request(mailbox)
            refused = None if request.url.path.endswith("/$batch") else state.take_rate(request, mailbox)
        if refused is not None:
            return api_error_response(request, refused)
        return await call_next(request)

    @app.middleware("http")
    async def send_notifications(request: Request, call_next):
        response = await call_next(request)
        await state.outbox.flush()      # notifications about what the request changed go out once it is answered
        return response

    @app.middleware("http")
    async def odata_params(request: Request, call_next):
        # Graph spells its paging parameters $skiptoken / $deltatoken
        query = request.scope.get("query_string", b"").replace(b"%24", b"$").replace(b"$skiptoken", b"skiptoken") \
            .replace(b"$deltatoken", b"deltatoken")
        request.scope["query_string"] = query
        request.scope["graph.asked"] = request.scope.get("path", "")
        request.scope["path"] = _route_path(request.scope["graph.asked"])
        return await call_next(request)

    return app


def _route_path(path: str) -> str:
    """The one spelling the routes know for the path families Graph serves: `/me` is `/users/me`; the default
    calendar (`/calendar`, or `/events` and `/calendarView` straight under the user) is `/calendars/{DEFAULT}`;
    `delta()` and `microsoft.graph.delta()` are `delta`."""
    path = re.sub(r"/users/(?:microsoft\.graph\.)?delta\(\)$", "/users/delta", path)
    found = re.fullmatch(r"(.*?/v1\.0)/(me|users/[^/]+)(/.*)?", path)
    if found is None:
        return path
    prefix, who, rest = found.group(1), found.group(2), found.group(3) or ""
    rest = re.sub(r"/(?:microsoft\.graph\.)?delta\(\)$", "/delta", rest)
    if rest == "/calendar" or rest.startswith("/calendar/"):
        rest = f"/calendars/{DEFAULT}" + rest[len("/calendar"):]
    elif re.match(r"/(events|calendarView)(/|$)", rest):
        rest = f"/calendars/{DEFAULT}" + rest
    return f"{prefix}/{'users/me' if who == 'me' else who}{rest}"
