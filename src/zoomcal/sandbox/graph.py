"""Offline emulator of the Microsoft Graph calendar API (v1.0 slice): events, instances, calendarView/delta.

Shapes follow ../shared/specs/microsoft; behaviour follows the documented one: times come back in UTC with the
zone the client used in `originalStartTimeZone` (Windows names as Outlook writes them); change tracking is
`calendarView/delta` over a window and returns single events, occurrences and exceptions (never the series
master), removed ones as `{"id", "@removed"}`; a deleted occurrence simply vanishes from `/instances`;
`transactionId` makes a retried create return the first one; `If-Match` on a stale etag → 412. Base path
`/graph/v1.0`, sign-in `/graph/oauth2/v2.0/authorize` (authorization code with S256 PKCE), token endpoint
`/graph/oauth2/v2.0/token`.

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
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from zoomcal.domain.recurrence import occurrences
from zoomcal.domain.timeutil import UTC, fmt_instant, parse_instant
from zoomcal.errors import InvalidItem
from zoomcal.mapping.graph import event_to_content
from zoomcal.sandbox.common import ApiError, Meter, RateWindows, TokenBook, api_error_response, retry_seconds
from zoomcal.sandbox.push import Delivery, Outbox

WRITABLE = ("subject", "body", "start", "end", "isAllDay", "showAs", "attendees", "location", "recurrence",
            "transactionId", "categories", "sensitivity")
MAILBOX_LIMIT = (10_000, 600.0)     # Outlook's published limit per app and mailbox: requests, in seconds
BATCHED = "x-sandbox-batched"       # marks the requests a $batch is carried out with
BOOKKEEPING = ("changeKey", "@odata.etag", "lastModifiedDateTime")


@dataclass
class GraphState:
    client_id: str = "graph-sandbox-client"
    client_secret: str = "graph-sandbox-secret"
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)     # calendar -> id -> event
    owners: dict[str, str] = field(default_factory=dict)                           # calendar -> user
    removed: list[tuple[int, str, str]] = field(default_factory=list)              # (seq, calendar, instance id)
    tokens: TokenBook = field(default_factory=TokenBook)
    codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)   # code -> (user, challenge, redirect)
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

    def add_calendar(self, user: str, calendar_id: str = "calendar") -> str:
        key = f"{user}/{calendar_id}"
        self.events[key] = {}
        self.owners[key] = user
        return calendar_id


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error": {"code": code, "message": message}})


def _stamp(when: str) -> str:
    return parse_instant(when).strftime("%Y%m%dT%H%M%SZ")


def _utc(value: str) -> dict[str, str]:
    return {"dateTime": parse_instant(value).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def _address(attendee: dict[str, Any]) -> str:
    return ((attendee.get("emailAddress") or {}).get("address") or "").lower()


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def expand(event: dict[str, Any], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    """The instances of one stored event that fall in [lo, hi): the event itself, or its occurrences and
    exceptions (cancelled ones left out)."""
    content = event_to_content(event)
    if event.get("type") != "seriesMaster":
        start, end = _span(content)
        return [_public(event)] if start < hi and end > lo else []
    out = []
    for rid, start, end in occurrences(content, lo - timedelta(days=1), hi + timedelta(days=1)):
        if rid in event["_cancelled"]:
            continue
        inst_id = f"{event['id']}_{_stamp(rid)}"
        override = event["_exceptions"].get(rid)
        inst = {k: v for k, v in event.items() if not k.startswith("_") and k not in ("recurrence", "id")}
        inst.update(id=inst_id, type="exception" if override else "occurrence", seriesMasterId=event["id"],
                    originalStart=rid, start=_utc(start), end=_utc(end))
        if override:
            inst.update(start=_utc(override["start"]), end=_utc(override["end"]))
            if "subject" in override:
                inst["subject"] = override["subject"]
        s, e = parse_instant(inst["start"]["dateTime"][:19] + "Z"), parse_instant(inst["end"]["dateTime"][:19] + "Z")
        if s < hi and e > lo:
            out.append(inst)
    return out


def _span(content: dict[str, Any]) -> tuple[datetime, datetime]:
    from zoomcal.domain.timeutil import to_datetime

    return to_datetime(content["start"]), to_datetime(content["end"])


def build_router(state: GraphState) -> APIRouter:
    router = APIRouter()

    def auth(request: Request) -> str:
        subject = state.tokens.subject(request)
        if subject is None:
            raise _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        return subject

    def calendar(user: str, cal: str, subject: str) -> dict[str, dict[str, Any]]:
        key = f"{user}/{cal}"
        if key not in state.events:
            raise _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if state.owners[key] != subject:
            raise _error(403, "ErrorAccessDenied", "Access is denied.")
        return state.events[key]

    def touch(event: dict[str, Any]) -> dict[str, Any]:
        state.seq += 1
        event["_seq"] = state.seq
        event["changeKey"] = base64.b64encode(str(state.seq).encode()).decode()
        event["@odata.etag"] = f'W/"{event["changeKey"]}"'
        event["lastModifiedDateTime"] = fmt_instant(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=state.seq))
        return event

    def stored(body: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
        answers = {_address(a): a.get("status") for a in into.get("attendees") or []}
        for key, value in body.items():
            if key in WRITABLE:
                into[key] = value
        if "attendees" in body:
            # an answer is the attendee's: Graph keeps it for whoever stays invited and ignores one sent in
            into["attendees"] = [{**a, "status": answers.get(_address(a)) or {"response": "none"}}
                                 for a in body["attendees"] or []]
        for key, original in (("start", "originalStartTimeZone"), ("end", "originalEndTimeZone")):
            when = body.get(key)
            if isinstance(when, dict) and when.get("timeZone"):
                into[original] = when["timeZone"]
        try:
            content = event_to_content(into)
        except InvalidItem as exc:
            raise _error(400, "ErrorInvalidRequest", str(exc)) from exc
        # keep times in UTC, as Graph answers by default; the zone stays in originalStartTimeZone
        into["start"], into["end"] = (_utc(content["start"]), _utc(content["end"])) if not content["all_day"] \
            else (into["start"], into["end"])
        into["type"] = "seriesMaster" if into.get("recurrence") else "singleInstance"
        return into

    def find(events: dict[str, dict[str, Any]], event_id: str) -> tuple[dict[str, Any], str | None]:
        """(master or single event, original start when the id names an instance)."""
        if event_id in events:
            return events[event_id], None
        master_id, sep, stamp = event_id.rpartition("_")
        master = events.get(master_id) if sep else None
        if master is None or master.get("type") != "seriesMaster":
            raise _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        rid = fmt_instant(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
        if rid in master["_cancelled"] or rid not in {o[0] for o in occurrences(event_to_content(master))}:
            raise _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return master, rid

    def check_etag(request: Request, event: dict[str, Any]) -> None:
        wanted = request.headers.get("if-match")
        if wanted and wanted != "*" and wanted != event["@odata.etag"]:
            raise _error(412, "ErrorIrresolvableConflict", "The change key passed in the request does not match "
                                                          "the current change key for the item.")

    @router.get("/oauth2/v2.0/authorize")
    @router.get("/{tenant}/oauth2/v2.0/authorize")
    def authorize(request: Request):
        """The sign-in page, already signed in as `login_hint`: consent is given and the browser is sent back
        with a one-time code bound to the PKCE challenge and the redirect URI."""
        q = request.query_params
        redirect = q.get("redirect_uri") or ""
        if q.get("client_id") != state.client_id or not redirect.startswith("http://127.0.0.1:"):
            return JSONResponse({"error": "invalid_request", "error_description": "AADSTS50011: redirect URI"}, 400)
        user = q.get("login_hint") or ""
        answer = {"state": q.get("state") or ""}
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or \
                not q.get("code_challenge") or "offline_access" not in (q.get("scope") or "").split():
            answer.update(error="invalid_request", error_description="code flow with S256 PKCE and offline_access")
        elif user not in state.owners.values():
            answer.update(error="access_denied", error_description="AADSTS50020: user not in this directory")
        else:
            code = "code_" + secrets.token_urlsafe(24)
            state.codes[code] = (user, q["code_challenge"], redirect)
            answer["code"] = code
        return Response(status_code=302, headers={"Location": f"{redirect}?{urlencode(answer)}"})

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
                user, challenge, redirect = state.codes.pop(str(form.get("code", "")), ("", "", ""))
                verifier = str(form.get("code_verifier", ""))
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if not user or digest != challenge or form.get("redirect_uri") != redirect:
                    return invalid
                subject = user
            else:
                subject = state.tokens.use_refresh(str(form.get("refresh_token", "")))
                if form.get("grant_type") != "refresh_token" or subject is None:
                    return invalid
            issued = state.tokens.issue(subject, with_refresh=True, app=True)
            issued["scope"] = "Calendars.ReadWrite offline_access"
            return issued

    @router.post("/v1.0/users/{user}/calendars/{cal}/events", status_code=201)
    async def create(user: str, cal: str, request: Request):
        subject = auth(request)
        body = await request.json()
        with state.lock:
            events = calendar(user, cal, subject)
            if body.get("transactionId"):
                for event in events.values():
                    if event.get("transactionId") == body["transactionId"]:
                        return JSONResponse(_public(event), status_code=201)   # a retried create: the first one
            event = {"id": "AAMk" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y"),
                     "_exceptions": {}, "_cancelled": set()}
            touch(stored(body, event))
            events[event["id"]] = event
            state.notify_change(f"{user}/{cal}", event, "created")
            return JSONResponse(_public(event), status_code=201)

    @router.get("/v1.0/users/{user}/calendars/{cal}/events/{event_id}")
    def get(user: str, cal: str, event_id: str, request: Request):
        subject = auth(request)
        with state.lock:
            master, rid = find(calendar(user, cal, subject), event_id)
            if rid is None:
                return _public(master)
            far = parse_instant(rid)
            return next(i for i in expand(master, far - timedelta(days=400), far + timedelta(days=400))
                        if i["id"] == event_id)

    @router.patch("/v1.0/users/{user}/calendars/{cal}/events/{event_id}")
    async def patch(user: str, cal: str, event_id: str, request: Request):
        subject = auth(request)
        body = await request.json()
        with state.lock:
            master, rid = find(calendar(user, cal, subject), event_id)
            echo = state.tokens.by_app(request)
            if rid is None:
                check_etag(request, master)
                before = _effective(master)
                old_rule = (master.get("recurrence"), master.get("start"))
                updated = stored(body, json.loads(json.dumps(_public(master))) | {
                    "_exceptions": master["_exceptions"], "_cancelled": master["_cancelled"]})
                if (updated.get("recurrence"), updated.get("start")) != old_rule:
                    updated["_exceptions"], updated["_cancelled"] = {}, set()   # a new rule drops its exceptions
                master.clear()
                master.update(updated)
                if echo and _effective(master) == before:
                    state.meter.echo(user, request.method, request.url.path)
                touch(master)
                state.notify_change(f"{user}/{cal}", master, "updated")
                return _public(master)
            before = _instance_view(get(user, cal, event_id, request))
            series = event_to_content(master)
            length = parse_instant(series["end"]) - parse_instant(series["start"])
            override = master["_exceptions"].setdefault(rid, {"start": rid,
                                                              "end": fmt_instant(parse_instant(rid) + length)})
            content = event_to_content({**_public(master), "recurrence": None, "start": body.get("start", _utc(
                override["start"])), "end": body.get("end", _utc(override["end"]))})
            override["start"], override["end"] = content["start"], content["end"]
            if "subject" in body:
                override["subject"] = body["subject"]
            touch(master)
            state.notify_change(f"{user}/{cal}", {**master, "id": event_id}, "updated")
            answer = get(user, cal, event_id, request)
            if echo and _instance_view(answer) == before:
                state.meter.echo(user, request.method, request.url.path)
            return answer

    @router.delete("/v1.0/users/{user}/calendars/{cal}/events/{event_id}", status_code=204)
    def delete(user: str, cal: str, event_id: str, request: Request):
        subject = auth(request)
        with state.lock:
            events = calendar(user, cal, subject)
            master, rid = find(events, event_id)
            if rid is None:
                check_etag(request, master)
                state.seq += 1
                far = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
                for inst in expand(master, *far):
                    state.removed.append((state.seq, f"{user}/{cal}", inst["id"]))
                del events[event_id]
                state.notify_change(f"{user}/{cal}", master, "deleted")
            else:
                master["_cancelled"].add(rid)
                master["_exceptions"].pop(rid, None)
                touch(master)
                state.removed.append((state.seq, f"{user}/{cal}", event_id))
                state.notify_change(f"{user}/{cal}", {**master, "id": event_id}, "deleted")
            return Response(status_code=204)

    @router.get("/v1.0/users/{user}/calendars/{cal}/events/{event_id}/instances")
    def instances(user: str, cal: str, event_id: str, request: Request, startDateTime: str = "",
                  endDateTime: str = ""):
        subject = auth(request)
        with state.lock:
            master, rid = find(calendar(user, cal, subject), event_id)
            lo, hi = _window(startDateTime, endDateTime)
            return {"value": expand(master, lo, hi) if master.get("type") == "seriesMaster" else []}

    @router.get("/v1.0/users/{user}/calendars/{cal}/calendarView/delta")
    def delta(user: str, cal: str, request: Request, startDateTime: str = "", endDateTime: str = "",
              deltatoken: str = "", skiptoken: str = ""):
        subject = auth(request)
        with state.lock:
            events = calendar(user, cal, subject)
            token = deltatoken or skiptoken
            if token:
                try:
                    data = json.loads(base64.urlsafe_b64decode(token.encode()))
                except ValueError as exc:
                    raise _error(410, "SyncStateNotFound", "The sync state generation is not found.") from exc
                if data.get("epoch") != state.epoch:
                    raise _error(410, "SyncStateNotFound", "The sync state generation is not found.")
                since, lo_s, hi_s, offset = data["since"], data["lo"], data["hi"], data.get("offset", 0)
            else:
                if not startDateTime or not endDateTime:
                    raise _error(400, "ErrorInvalidParameter", "startDateTime and endDateTime are required.")
                since, offset = 0, 0
                lo_s, hi_s = startDateTime, endDateTime
            lo, hi = _window(lo_s, hi_s)
            upto = data.get("upto", state.seq) if token and skiptoken else state.seq
            items: list[dict[str, Any]] = []
            for event in sorted(events.values(), key=lambda e: e["_seq"]):
                if since < event["_seq"] <= upto:
                    items.extend(expand(event, lo, hi))
            if token:   # an incremental round also reports what was removed since
                items.extend({"id": inst_id, "@removed": {"reason": "deleted"}} for seq, key, inst_id in state.removed
                             if key == f"{user}/{cal}" and since < seq <= upto)
            page, rest = items[offset:offset + 50], items[offset + 50:]
            base = str(request.url).split("?")[0]
            out: dict[str, Any] = {"value": page}
            link = {"since": since, "lo": lo_s, "hi": hi_s, "upto": upto, "epoch": state.epoch}
            if rest:
                out["@odata.nextLink"] = f"{base}?$skiptoken=" + _encode({**link, "offset": offset + 50})
            else:
                out["@odata.deltaLink"] = f"{base}?$deltatoken=" + _encode({**link, "since": upto, "offset": 0})
            return out

    def expiry(body: dict[str, Any]) -> datetime:
        try:
            at = parse_instant(str(body.get("expirationDateTime") or "")[:19] + "Z")
        except InvalidItem as exc:
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
        found = re.fullmatch(r"/?users/([^/]+)/(?:calendars/([^/]+)/|calendar/)?events", str(body.get("resource")
                                                                                         or ""), re.I)
        if found is None:
            raise _error(400, "InvalidRequest", "The resource is not supported for change notifications.")
        key = f"{unquote(found.group(1))}/{unquote(found.group(2) or 'calendar')}"
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
    return json.dumps([public, event.get("_exceptions"), sorted(event.get("_cancelled") or ())], sort_keys=True)


def _instance_view(instance: dict[str, Any]) -> tuple:
    return instance.get("start"), instance.get("end"), instance.get("subject")


def _encode(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _window(start: str, end: str) -> tuple[datetime, datetime]:
    try:
        return parse_instant(start if start.endswith("Z") else start + "Z"), \
            parse_instant(end if end.endswith("Z") else end + "Z")
    except InvalidItem as exc:
        raise _error(400, "ErrorInvalidParameter", "startDateTime and endDateTime must be ISO 8601.") from exc


def make_graph_app(state: GraphState) -> FastAPI:
    app = FastAPI(title="Microsoft Graph sandbox")
    app.add_exception_handler(ApiError, api_error_response)
    app.include_router(build_router(state))

    @app.post("/v1.0/$batch")
    async def batch(request: Request):
        """JSON batching: up to 20 requests in one call, each answered on its own."""
        import httpx

        body = await request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not 1 <= len(requests) <= 20:
            return JSONResponse({"error": {"code": "BadRequest", "message": "A batch holds 1 to 20 requests."}}, 400)
        auth = {"Authorization": request.headers.get("authorization", "")}
        responses = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://graph/v1.0") as inner:
            for sub in requests:
                answer = await inner.request(sub.get("method", "GET"), "/" + sub["url"].lstrip("/"),
                                             json=sub.get("body"),
                                             headers={**auth, **(sub.get("headers") or {}), BATCHED: "1"})
                reply = {"id": sub.get("id"), "status": answer.status_code,
                         "body": answer.json() if answer.content else None}
                if "retry-after" in answer.headers:
                    reply["headers"] = {"Retry-After": answer.headers["retry-after"]}
                responses.append(reply)
        return {"responses": responses}

    @app.middleware("http")
    async def meter(request: Request, call_next):
        # apps' requests are counted per mailbox and judged against its limit before anything else (a $batch is
        # one request; the requests it holds are judged, not counted again)
        if not state.tokens.by_app(request):
            return await call_next(request)
        found = re.search(r"/v1\.0/users/([^/]+)", request.url.path)
        with state.lock:
            mailbox = unquote(found.group(1)) if found else (state.tokens.subject(request) or "-")
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
        # /users/{id}/calendar is the mailbox's default calendar (the first one, id "calendar" here)
        request.scope["path"] = re.sub(r"(/v1\.0/users/[^/]+)/calendar(/|$)", r"\1/calendars/calendar\2",
                                       request.scope.get("path", ""))
        return await call_next(request)

    return app
