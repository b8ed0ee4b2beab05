"""Google Calendar push: an `events.watch` channel per linked calendar, verified by what Google sends back.

A channel is created with our own random id and token (`POST calendars/{id}/events/watch`); Google answers with
the `resourceId` of the watched collection and when the channel ends (`expiration`, milliseconds). Each
notification is an empty POST whose headers name the channel (`X-Goog-Channel-ID`), carry our token back
(`X-Goog-Channel-Token`), name the resource (`X-Goog-Resource-ID`) and say what happened
(`X-Goog-Resource-State`: `sync` when the channel starts, `exists` or `not_exists` on a change). Channels are not
renewed in place: a new one is created and the old one stopped (`POST channels/stop` with id and resourceId).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from zoomcal.connectors import rest
from zoomcal.connectors.spec import (
    CHANGED,
    NOTHING,
    AccountView,
    Env,
    Notice,
    PushChannel,
    PushRefused,
    Subscription,
    tokens_match,
)

API = "https://www.googleapis.com/calendar/v3"
TTL = timedelta(days=7)          # asked for; Google may end a channel sooner (its answer says when)
STATES = {"sync": NOTHING, "exists": CHANGED, "not_exists": CHANGED}


def _api(view: AccountView, env: Env):
    from zoomcal.connectors.google.spec import grant

    return rest.api_client(view, env, API, env.share_tokens(grant(view, env)))


def _expiry(answer: dict, asked: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(answer["expiration"]) / 1000, UTC)
    except (KeyError, TypeError, ValueError):
        return asked


async def subscribe(view: AccountView, env: Env, callback_url: str) -> Subscription:
    channel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    asked = datetime.now(UTC) + TTL
    api = _api(view, env)
    try:
        answer = await api.json("POST", f"calendars/{quote(view.calendar, safe='@')}/events/watch", json={
            "id": channel_id, "type": "web_hook", "address": callback_url, "token": token,
            "params": {"ttl": str(int(TTL.total_seconds()))}}) or {}
    finally:
        await api.aclose()
    return Subscription(channel_id, str(answer.get("resourceId") or ""), token, _expiry(answer, asked))


async def stop(view: AccountView, env: Env, current: Subscription) -> None:
    api = _api(view, env)
    try:
        await api.request("POST", "channels/stop", json={"id": current.channel_id,
                                                         "resourceId": current.resource_id})
    finally:
        await api.aclose()


async def renew(view: AccountView, env: Env, current: Subscription, callback_url: str) -> Subscription:
    """A new channel first (no gap), then the old one stopped."""
    fresh = await subscribe(view, env, callback_url)
    await stop(view, env, current)
    return fresh


def notices(headers: Mapping[str, str], _query: Mapping[str, str], _body: bytes) -> list[Notice]:
    channel = headers.get("x-goog-channel-id") or ""
    state = headers.get("x-goog-resource-state") or ""
    if not channel or state not in STATES:
        raise PushRefused("not a Google Calendar notification (no channel id or resource state)")
    return [Notice(channel, STATES[state], headers.get("x-goog-channel-token") or "",
                   headers.get("x-goog-resource-id") or "")]


def check(notice: Notice, stored: Subscription) -> None:
    if not tokens_match(notice.proof, stored.token):
        raise PushRefused("the channel token does not match")
    if stored.resource_id and notice.resource_id != stored.resource_id:
        raise PushRefused("the resource id does not match the channel's")


CHANNEL = PushChannel(name="google", subscribe=subscribe, renew=renew, stop=stop, notices=notices, check=check,
                      renew_ahead=timedelta(days=1))
