"""A Zoom account's users as a contact source: `/users` (active members, paged), the contact groups they are
in (`/contacts/groups`, `/contacts/groups/{groupId}/members`), and each one's presence status
(`/users/{userId}/presence_status`). Zoom has no change feed for users: every listing is complete, and the
`user.presence_status_updated` webhook keeps presence live between listings, so a listing reads everyone's
presence only every PRESENCE_EVERY (its cursor says when it last did); other listings leave presence unsaid.

Everyone linked to one Zoom account lists the same users: the directory key is that account's id — given with a
server-to-server app, learnt once from `/users/me` for a person's own authorization."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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
PRESENCE_AT_ONCE = 1          # one at a time: the account's per-second budget is the sync's too
PRESENCE_EVERY = timedelta(hours=6)
SWEPT = "presence-read:"       # the cursor: when everyone's presence was last read


class ZoomDirectory:
    name = "zoom"

    def __init__(self, api: ApiClient, features: tuple[str, ...] = tuple(FEATURES), directory: str = "",
                 clock=lambda: datetime.now(UTC)):
        self.api = api
        self.features = {k: v for k, v in FEATURES.items() if k in features or k == "users"}
        self.directory = directory      # sources with one directory key list the same users: one is read
        self.clock = clock

    async def directory_key(self) -> str:
        """The Zoom account the users are of; for a person's own authorization that takes one call."""
        if not self.directory.startswith(USER_KEY):
            return self.directory
        me = await self.api.json("GET", "users/me")
        account = me.get("account_id") if isinstance(me, dict) else None
        return f"zoom:{account}" if account else self.directory

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

    async def _presence(self, user_ids: list[str]) -> tuple[dict[str, str], bool]:
        """Each user's status, a few at a time; at the first refusal for rate no further one is asked (the
        account's per-second budget is shared with the sync). -> (found, whether every user was asked)."""
        found: dict[str, str] = {}
        gate = asyncio.Semaphore(PRESENCE_AT_ONCE)
        limited = False

        async def one(uid: str) -> None:
            nonlocal limited
            async with gate:
                if limited:
                    return
                try:
                    answer = await self.api.json("GET", f"users/{quote(uid, safe='')}/presence_status")
                except RateLimited:
                    limited = True
                    return
                except ConnectorError:
                    return          # no status for this one (not signed in, no licence): shown as unknown
            if isinstance(answer, dict) and answer.get("status"):
                found[uid] = str(answer["status"])

        await asyncio.gather(*(one(uid) for uid in user_ids))
        return found, not limited

    async def changes(self, cursor: str | None) -> ContactChanges:
        start = self.api.calls
        users = await self._pages("users", "users", 300, status="active")
        groups = await self._groups() if "groups" in self.features else {}
        ids = [str(u["id"]) for u in users if isinstance(u, dict) and u.get("id")]
        now = self.clock()
        presence: dict[str, str] = {}
        swept = _swept(cursor)
        if "presence" in self.features and (swept is None or now - swept >= PRESENCE_EVERY):
            presence, whole = await self._presence(ids)
            swept = now if whole else swept
        records, rejected = [], []
        for raw in users:
            try:
                uid = str(raw.get("id")) if isinstance(raw, dict) else ""
                records.append(user_record(raw, presence.get(uid), tuple(groups.get(uid, ()))))
            except InvalidItem as exc:
                rejected.append(("", str(exc)))
        return ContactChanges(records, [], f"{SWEPT}{swept.isoformat()}" if swept else "listed", True, rejected,
                              self.api.calls - start)

    async def aclose(self) -> None:
        await self.api.aclose()


USER_KEY = "zoom:user:"


def _swept(cursor: str | None) -> datetime | None:
    if cursor and cursor.startswith(SWEPT):
        try:
            return datetime.fromisoformat(cursor[len(SWEPT):])
        except ValueError:
            return None
    return None
