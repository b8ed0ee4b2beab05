"""Zoom webhooks: the signed notification channel shared by Zoom meetings and Zoom's calendar.

Zoom signs each notification: `x-zm-signature` is `v0=` + HMAC-SHA256(secret token, `v0:{x-zm-request-timestamp}:
{raw body}`) in hex. During a rotation of the secret token the setting holds several, comma-separated: any of
them verifies a notification, the first one answers the URL challenge. Anything unsigned, wrongly signed, older
than five minutes (a replay) or not JSON is refused with its reason. The `endpoint.url_validation` challenge is
answered with the plain token and its HMAC. A notification only says *whose* data changed: the sync itself reads
the provider as always, so a forged or repeated notification can cost a listing, never a wrong write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from zoomcal.connectors.spec import PushChannel, PushRefused, PushTarget

TOLERANCE_S = 300


def zoom_signature(secret: str, timestamp: str, body: bytes) -> str:
    message = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def secrets_of(setting: str) -> list[str]:
    """The secret tokens a setting holds (several during a rotation, comma-separated), the current one first."""
    return [part.strip() for part in setting.split(",") if part.strip()]


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> dict[str, Any]:
    """The notification, once its signature and age check out; PushRefused says why not."""
    timestamp = headers.get("x-zm-request-timestamp") or ""
    signature = headers.get("x-zm-signature") or ""
    if not timestamp or not signature:
        raise PushRefused("unsigned (no x-zm-signature / x-zm-request-timestamp)")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_S:
        raise PushRefused(f"timestamp {timestamp[:20]!r} is not within {TOLERANCE_S} s of now (replay?)")
    if not any(hmac.compare_digest(signature, zoom_signature(token, timestamp, body)) for token in secrets_of(secret)):
        raise PushRefused("signature does not match the secret token")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise PushRefused("body is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise PushRefused("no event name")
    return event


def handshake(secret: str, event: dict[str, Any]) -> dict[str, Any] | None:
    """Zoom's `endpoint.url_validation`: the plain token and its HMAC."""
    if event.get("event") != "endpoint.url_validation":
        return None
    plain = str((event.get("payload") or {}).get("plainToken") or "")
    if not plain:
        raise PushRefused("url_validation without plainToken")
    current = (secrets_of(secret) or [""])[0]
    return {"plainToken": plain,
            "encryptedToken": hmac.new(current.encode(), plain.encode(), hashlib.sha256).hexdigest()}


def payload_object(event: Mapping[str, Any]) -> dict[str, Any]:
    obj = (event.get("payload") or {}).get("object")
    return obj if isinstance(obj, dict) else {}


def event_time(event: Mapping[str, Any]) -> datetime | None:
    """When Zoom says the event happened (`event_ts`, milliseconds since the epoch)."""
    stamp = event.get("event_ts")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or stamp <= 0:
        return None
    try:
        return datetime.fromtimestamp(stamp / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def meeting_targets(provider: str):
    """`meeting.*` names the host (the meetings calendar is the Zoom user) and the meeting (an item);
    `user.presence_status_updated` names the Zoom user and the status they now show."""
    def targets(event: dict[str, Any]) -> list[PushTarget]:
        name = str(event.get("event") or "")
        obj = payload_object(event)
        at = event_time(event)
        if name == "user.presence_status_updated":
            status = obj.get("presence_status")
            if obj.get("id") and isinstance(status, str) and status:
                return [PushTarget(provider, calendar=str(obj["id"]), changed_at=at, presence=status)]
            return []
        if not name.startswith("meeting."):
            return []
        found = []
        if obj.get("host_id"):
            found.append(PushTarget(provider, calendar=str(obj["host_id"]), changed_at=at))
        if obj.get("id"):
            found.append(PushTarget(provider, item=str(obj["id"]), changed_at=at))
        return found
    return targets


CHANNEL = PushChannel(name="zoom", secret_setting="zoom_webhook_secret", verify=verify, handshake=handshake)
