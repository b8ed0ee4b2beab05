"""Zoom's users (users-api.json `/users`) as contact records: the account's members, with their zone and, where
read, their presence status."""

from __future__ import annotations

from typing import Any

from zoomcal.connectors.contacts import USER, ContactRecord
from zoomcal.errors import InvalidItem


def user_record(user: Any, presence: str | None = None, groups: tuple[str, ...] = ()) -> ContactRecord:
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise InvalidItem("a user entry without an id")
    first, last = str(user.get("first_name") or "").strip(), str(user.get("last_name") or "").strip()
    name = str(user.get("display_name") or "").strip() or " ".join(p for p in (first, last) if p)
    email = user.get("email")
    return ContactRecord(
        record_id=user["id"], kind=USER, emails=(str(email),) if email else (), display_name=name,
        given_name=first, family_name=last, zoom_user_id=user["id"],
        timezone=str(user["timezone"]) if user.get("timezone") else None, presence=presence, groups=groups,
        etag=str(user.get("user_created_at") or user.get("created_at") or "") or None)
