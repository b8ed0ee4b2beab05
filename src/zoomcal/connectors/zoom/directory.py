"""A Zoom account's users as a contact source: `/users` (active members, paged), the contact groups they are
in (`/contacts/groups`, `/contacts/groups/{groupId}/members`), and each one's presence status
(`/users/{userId}/presence_status`). Zoom has no change feed for users: every listing is complete, and the
`user.presence_status_updated` webhook keeps presence live between listings."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from urllib.parse import quote

from zoomcal.connectors.contacts import ContactChanges
from zoomcal.connectors.http import ApiClient
from zoomcal.errors import ConnectorError, InvalidItem, RateLimited
from zoomcal.mapping.zoom_users import user_record

# the narrowest granular scopes each part needs (users-api.json's security entries)
FEATURES: Mapping[str, tuple[str, ...]] = {
    "users": ("user:read:list_users:admin",),
    "presence": ("user:read:presence_status:admin",),
    "groups": ("contact_group:read:admin",),
}
PRESENCE_AT_ONCE = 8


class ZoomDirectory:
    name = "zoom"

    def __init__(self, api: ApiClient, features: tuple[str, ...] = tuple(FEATURES), directory: str = ""):
        self.api = api
        self.features = {k: v for k, v in FEATURES.items() if k in features or k == "users"}
        self.directory = directory      # sources with one directory key list the same users: one is read

    async def _pages(self, path: str, key: str, size: int, **params: str) -> list:
        out, token = [], ""
        while True:
            page = await self.api.json("GET", path, params={**params, "page_size": size,
                                                            **({"next_page_token": token} if token else {})})
            out.extend(page.get(key) or [])
            token = page.get("next_page_token") or ""
            if not token:
                return out

    async def _groups(self) -> dict[str, list[str]]:
        member_of: dict[str, list[str]] = defaultdict(list)
        for group in await self._pages("contacts/groups", "groups", 50):
            if not isinstance(group, dict) or not group.get("group_id"):
                continue
            for member in await self._pages(f"contacts/groups/{quote(str(group['group_id']), safe='')}/members",
                                            "group_members", 50):
                if isinstance(member, dict) and member.get("type") == 1 and member.get("id"):
                    member_of[str(member["id"])].append(str(group.get("group_name") or group["group_id"]))
        return member_of

    async def _presence(self, user_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        gate = asyncio.Semaphore(PRESENCE_AT_ONCE)

        async def one(uid: str) -> None:
            async with gate:
                try:
                    answer = await self.api.json("GET", f"users/{quote(uid, safe='')}/presence_status")
                except RateLimited:
                    raise
                except ConnectorError:
                    return          # no status for this one (not signed in, no licence): shown as unknown
            if isinstance(answer, dict) and answer.get("status"):
                found[uid] = str(answer["status"])

        await asyncio.gather(*(one(uid) for uid in user_ids))
        return found

    async def changes(self, cursor: str | None) -> ContactChanges:
        start = self.api.calls
        users = await self._pages("users", "users", 300, status="active")
        groups = await self._groups() if "groups" in self.features else {}
        ids = [str(u["id"]) for u in users if isinstance(u, dict) and u.get("id")]
        presence = await self._presence(ids) if "presence" in self.features else {}
        records, rejected = [], []
        for raw in users:
            try:
                uid = str(raw.get("id")) if isinstance(raw, dict) else ""
                records.append(user_record(raw, presence.get(uid), tuple(groups.get(uid, ()))))
            except InvalidItem as exc:
                rejected.append(("", str(exc)))
        return ContactChanges(records, [], "listed", True, rejected, self.api.calls - start)

    async def aclose(self) -> None:
        await self.api.aclose()
