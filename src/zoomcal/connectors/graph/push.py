"""Microsoft Graph push: a change-notification subscription per linked calendar.

`POST /subscriptions` asks for `created,updated,deleted` on the calendar's events, with our notification URL, a
lifecycle notification URL (the same endpoint) and a random `clientState` that every notification carries back.
Graph first checks the URL: it POSTs to it with a `validationToken` query parameter and wants the token echoed as
text/plain within 10 seconds. Event subscriptions last at most 10080 minutes; they are renewed in place
(`PATCH /subscriptions/{id}` with a new `expirationDateTime`) and deleted on unlink.

A notification body holds a batch (`value`), each item naming its subscription and carrying its `clientState`.
Lifecycle notifications carry a `lifecycleEvent` instead of a change: `reauthorizationRequired` (renew now),
`subscriptionRemoved` (create it again; changes may have been lost, so sync), `missed` (sync).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from zoomcal.connectors import rest
from zoomcal.connectors.spec import (
    CHANGED,
    RECREATE,
    RENEW,
    RESYNC,
    AccountView,
    Env,
    Notice,
    PushChannel,
    PushRefused,
    Subscription,
    tokens_match,
)

API = "https://graph.microsoft.com/v1.0"
MAX_LIFETIME = timedelta(minutes=10080)            # Graph's limit for Outlook events
LIFETIME = MAX_LIFETIME - timedelta(hours=1)       # asked for, with room for clock skew
LIFECYCLE = {"reauthorizationRequired": RENEW, "subscriptionRemoved": RECREATE, "missed": RESYNC}


def _api(view: AccountView, env: Env):
    from zoomcal.connectors.graph.spec import grant

    return rest.api_client(view, env, API, env.share_tokens(grant(view, env)))


def resource(remote: str) -> str:
    mailbox, _, calendar = remote.partition("/")
    base = f"users/{quote(mailbox, safe='@')}"
    return f"{base}/calendars/{quote(calendar, safe='')}/events" if calendar else f"{base}/events"


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _expiry(answer: dict, asked: datetime) -> datetime:
    """Graph's `expirationDateTime` (UTC, with up to seven decimals), or what was asked for."""
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", str(answer.get("expirationDateTime") or ""))
    return datetime.fromisoformat(found.group(1)).replace(tzinfo=UTC) if found else asked


async def subscribe(view: AccountView, env: Env, callback_url: str) -> Subscription:
    state = secrets.token_urlsafe(48)[:64]
    asked = datetime.now(UTC) + LIFETIME
    api = _api(view, env)
    try:
        answer = await api.json("POST", "subscriptions", json={
            "changeType": "created,updated,deleted", "notificationUrl": callback_url,
            "lifecycleNotificationUrl": callback_url, "resource": resource(view.calendar),
            "expirationDateTime": _stamp(asked), "clientState": state}) or {}
    finally:
        await api.aclose()
    return Subscription(str(answer.get("id") or ""), str(answer.get("resource") or resource(view.calendar)), state,
                        _expiry(answer, asked))


async def renew(view: AccountView, env: Env, current: Subscription, _callback_url: str) -> Subscription:
    asked = datetime.now(UTC) + LIFETIME
    api = _api(view, env)
    try:
        answer = await api.json("PATCH", f"subscriptions/{quote(current.channel_id, safe='')}",
                                json={"expirationDateTime": _stamp(asked)}) or {}
    finally:
        await api.aclose()
    return Subscription(current.channel_id, current.resource_id, current.token, _expiry(answer, asked))


async def stop(view: AccountView, env: Env, current: Subscription) -> None:
    api = _api(view, env)
    try:
        await api.request("DELETE", f"subscriptions/{quote(current.channel_id, safe='')}")
    finally:
        await api.aclose()


def challenge(query: Mapping[str, str]) -> str | None:
    return query.get("validationToken") or None


def notices(_headers: Mapping[str, str], _query: Mapping[str, str], body: bytes) -> list[Notice]:
    try:
        batch = json.loads(body)
    except ValueError as exc:
        raise PushRefused("body is not JSON") from exc
    items = batch.get("value") if isinstance(batch, dict) else None
    if not isinstance(items, list) or not items:
        raise PushRefused("no notifications in the body")
    found = []
    for item in items:
        if not isinstance(item, dict) or not item.get("subscriptionId"):
            raise PushRefused("a notification names no subscription")
        event = item.get("lifecycleEvent")
        if event is not None and event not in LIFECYCLE:
            continue           # a lifecycle event zoomcal does not know asks nothing of it
        data = item.get("resourceData") if isinstance(item.get("resourceData"), dict) else {}
        named = item.get("changeType") in ("created", "updated") and isinstance(data.get("id"), str) \
            and isinstance(data.get("@odata.etag"), str)
        found.append(Notice(str(item["subscriptionId"]), LIFECYCLE[event] if event else CHANGED,
                            str(item.get("clientState") or ""),
                            item=data["id"] if named else None, version=data["@odata.etag"] if named else None))
    return found


def check(notice: Notice, stored: Subscription) -> None:
    if not tokens_match(notice.proof, stored.token):
        raise PushRefused("clientState does not match the subscription's")


CHANNEL = PushChannel(name="graph", subscribe=subscribe, renew=renew, stop=stop, challenge=challenge,
                      notices=notices, check=check, renew_ahead=timedelta(days=1), answer_status=202)
