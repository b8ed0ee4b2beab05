"""Microsoft 365 as a contact source, through Microsoft Graph: the organisation's users (`/users/delta`), the mailbox
owner's Outlook contacts (`/users/{id}/contacts/delta`) and the people Graph ranks as relevant to them
(`/users/{id}/people`). Which of them are read is the account's choice (its features).

The users and the contacts are followed with their delta links, kept together in the cursor (JSON). A later users
round names a changed user by its id and the properties that changed only, so every changed user is read again
whole (`$filter=id in (…)`, 15 at a time) before it is reported. `/people` has no change tracking: it is listed in
full every round, and the ids it listed last time (kept in the cursor) tell what left it. A delta link Graph no
longer takes (410 SyncStateNotFound or resyncRequired; 400 syncStateNotFound once a users link is older than 7
days) makes the source list everything again and say so (`complete`). Record ids are the collection's name and the
item's id (`directory:…`, `contacts:…`, `people:…`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx

from zoomcal.connectors.contacts import ContactChanges, ContactRecord, Listing
from zoomcal.connectors.graph.paging import pages
from zoomcal.connectors.http import ApiClient
from zoomcal.errors import ConfigError, CursorInvalid, InvalidItem, Transient
from zoomcal.mapping.graph_directory import contact_record, is_removed, item_id, person_record, user_record

# the narrowest permission that reads each collection
FEATURES: dict[str, tuple[str, ...]] = {
    # User.ReadBasic.All would list users with mail and userPrincipalName, but neither proxyAddresses nor otherMails
    # (they come back null) nor /users/delta at all: following the directory's changes takes User.Read.All
    "directory": ("User.Read.All",),
    "contacts": ("Contacts.Read",),        # the signed-in user's own contacts and their delta
    "people": ("People.Read",),            # /people of the signed-in user
}
DEFAULT_FEATURES = ("contacts", "directory")
USER_FIELDS = "id,displayName,givenName,surname,mail,proxyAddresses,otherMails,businessPhones,mobilePhone"
CONTACT_FIELDS = "id,displayName,givenName,surname,emailAddresses,businessPhones,homePhones,mobilePhone"
PEOPLE_FIELDS = "id,displayName,givenName,surname,scoredEmailAddresses,phones"
IN_FILTER = 15          # the most values a directory `$filter` with `in` takes
ToRecord = Callable[[Any, str], ContactRecord]


def parse_features(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """The features an account reads, from its option (comma-separated); the default when none is named."""
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value or ()) if n.strip()]
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature {', '.join(unknown)}; one of {', '.join(FEATURES)}")
    return tuple(n for n in FEATURES if n in names) or DEFAULT_FEATURES


def mailbox_path(mailbox: str) -> str:
    return f"users/{quote(mailbox, safe='@')}"


def probe(feature: str, mailbox: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The smallest read of a collection (path, query, headers): what a link is checked with. The directory is
    probed through its delta, the read that needs the permission the feature asks for."""
    if feature == "directory":
        return "users/delta", {"$select": "id"}, {"Prefer": "odata.maxpagesize=1"}
    if feature == "contacts":
        return f"{mailbox_path(mailbox)}/contacts", {"$top": 1, "$select": "id"}, {}
    return f"{mailbox_path(mailbox)}/people", {"$top": 1, "$select": "id"}, {}


def delta_expired(response: httpx.Response) -> bool:
    """Graph's answers to a delta link it no longer takes: 410 (SyncStateNotFound, resyncRequired) or, for the
    directory's links past their 7 days, 400 syncStateNotFound."""
    if response.status_code == 410:
        return True
    if response.status_code != 400:
        return False
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and str(error.get("code", "")).lower() in ("syncstatenotfound", "resyncrequired")


def read_cursor(cursor: str | None) -> dict[str, Any] | None:
    """What a cursor holds per collection (a delta link, or the ids /people listed); None: nothing to go on."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    state = data.get("state") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        return None
    for feature, value in state.items():
        good = isinstance(value, list) and all(isinstance(v, str) for v in value) if feature == "people" else \
            isinstance(value, str) and bool(value)
        if not good:
            return None
    return state


class GraphContactSource:
    name = "graph-contacts"

    def __init__(self, api: ApiClient, mailbox: str, features: Iterable[str] = DEFAULT_FEATURES,
                 page_size: int = 100):
        self.api = api
        self.mailbox = mailbox
        self.enabled = parse_features(tuple(features))
        self.features = {f: FEATURES[f] for f in self.enabled}
        self.page_size = page_size

    async def changes(self, cursor: str | None) -> ContactChanges:
        start = self.api.calls
        held = read_cursor(cursor)
        if held is not None and set(held) == set(self.enabled):
            listing = Listing()
            try:
                state = {f: await self._read(f, held[f], listing) for f in self.enabled}
            except CursorInvalid:
                pass                # a delta link Graph no longer takes: everything again, below
            else:
                return listing.changes(_cursor(state), False, self.api.calls - start)
        listing = Listing()
        state = {f: await self._read(f, None, listing) for f in self.enabled}
        return listing.changes(_cursor(state), True, self.api.calls - start)

    async def _read(self, feature: str, held: Any, listing: Listing) -> Any:
        if feature == "people":
            return await self._people(held, listing)
        if feature == "directory":
            return await self._delta(feature, held or "users/delta", {"$select": USER_FIELDS}, user_record,
                                     listing, incremental=held is not None)
        return await self._delta(feature, held or f"{mailbox_path(self.mailbox)}/contacts/delta",
                                 {"$select": CONTACT_FIELDS}, contact_record, listing, incremental=held is not None)

    async def _pages(self, url: str, params: dict[str, Any] | None, headers: dict[str, str],
                     expired: bool) -> AsyncIterator[dict[str, Any]]:
        """Every page from `url` on (`expired`: a delta round, whose refused link is CursorInvalid)."""
        checks: dict[str, Any] = {"gone_is": CursorInvalid, "expired": delta_expired} if expired else {}
        async for page in pages(self.api, url, params, headers=headers, **checks):
            if not isinstance(page, dict):
                raise Transient(f"{url} answered something other than a page")
            yield page

    async def _delta(self, feature: str, url: str, params: dict[str, Any], to_record: ToRecord, listing: Listing,
                     incremental: bool) -> str:
        """One delta round of a collection -> its next delta link."""
        changed: list[str] = []
        link = ""
        async for page in self._pages(url, None if incremental else params,
                                      {"Prefer": f"odata.maxpagesize={self.page_size}"}, incremental):
            for raw in page.get("value") or []:
                try:
                    record_id = f"{feature}:{item_id(raw)}"
                except InvalidItem as exc:
                    listing.rejected.append(("", f"{feature}: {exc}"))
                    continue
                if is_removed(raw):
                    listing.put(record_id, None)
                elif incremental and feature == "directory":
                    changed.append(raw["id"])        # only what changed came: read the user whole below
                else:
                    self._take(listing, feature, record_id, raw, to_record)
            link = page.get("@odata.deltaLink") or link
        if changed:
            await self._users(changed, listing)
        if not link:
            raise Transient(f"{feature}: the delta round ended without a delta link")
        return link

    async def _users(self, ids: list[str], listing: Listing) -> None:
        """Changed users read whole, 15 at a time; one no longer listed was deleted meanwhile."""
        wanted = list(dict.fromkeys(ids))
        found: set[str] = set()
        for i in range(0, len(wanted), IN_FILTER):
            chunk = wanted[i:i + IN_FILTER]
            quoted = ",".join("'" + v.replace("'", "''") + "'" for v in chunk)
            async for page in self._pages("users", {"$filter": f"id in ({quoted})", "$select": USER_FIELDS,
                                                    "$top": IN_FILTER}, {}, False):
                for raw in page.get("value") or []:
                    if isinstance(raw, dict) and raw.get("id") in chunk:
                        found.add(raw["id"])
                        self._take(listing, "directory", f"directory:{raw['id']}", raw, user_record)
        for user_id in wanted:
            if user_id not in found:
                listing.put(f"directory:{user_id}", None)

    async def _people(self, held: list[str] | None, listing: Listing) -> list[str]:
        """/people in full -> the ids listed (those listed last time and not now have left it)."""
        now: list[str] = []
        async for page in self._pages(f"{mailbox_path(self.mailbox)}/people",
                                      {"$top": self.page_size, "$select": PEOPLE_FIELDS}, {}, False):
            for raw in page.get("value") or []:
                try:
                    person = item_id(raw)
                except InvalidItem as exc:
                    listing.rejected.append(("", f"people: {exc}"))
                    continue
                now.append(person)
                self._take(listing, "people", f"people:{person}", raw, person_record)
        for person in held or []:
            if person not in now:
                listing.put(f"people:{person}", None)
        return sorted(set(now))

    @staticmethod
    def _take(listing: Listing, feature: str, record_id: str, raw: Any, to_record: ToRecord) -> None:
        try:
            listing.put(record_id, to_record(raw, record_id))
        except (InvalidItem, TypeError, ValueError, AttributeError) as exc:
            listing.rejected.append((record_id, f"{feature}: {exc}"))

    async def aclose(self) -> None:
        await self.api.aclose()


def _cursor(state: dict[str, Any]) -> str:
    return json.dumps({"v": 1, "state": state}, sort_keys=True)
