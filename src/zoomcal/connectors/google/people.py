"""Google contacts as a contact source, through the People API: the user's contacts (`people/me/connections`),
their "other contacts" (people they wrote to, kept by Google) and their Workspace domain's directory
(`people:listDirectoryPeople`, domain profiles and shared domain contacts). Which of them are read is the account's
choice (its features).

Each collection is listed with its own sync token; the cursor holds them together (JSON). A sync token Google no
longer takes (400 FAILED_PRECONDITION with reason EXPIRED_SYNC_TOKEN: they last 7 days from the full listing they
descend from; or 410) makes the source list every collection again and say so (`complete`). Record ids are the
collection's name and the person's resource name (`contacts:people/c…`, `other:otherContacts/c…`,
`directory:people/…`): a contact and a directory profile never share one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from zoomcal.connectors.contacts import CONTACT, OTHER, USER, ContactChanges, Listing
from zoomcal.connectors.http import ApiClient
from zoomcal.errors import ConfigError, CursorInvalid, InvalidItem, Transient
from zoomcal.mapping.people import is_deleted, person_record, resource_name

API = "https://people.googleapis.com"
AUTH = "https://www.googleapis.com/auth/"
# the narrowest scope that reads each collection (the discovery document's scopes per method)
FEATURES: dict[str, tuple[str, ...]] = {
    "contacts": (AUTH + "contacts.readonly",),            # people.connections.list
    "other": (AUTH + "contacts.other.readonly",),         # otherContacts.list (`contacts` does not cover it)
    "directory": (AUTH + "directory.readonly",),          # people.listDirectoryPeople
}
DEFAULT_FEATURES = ("contacts", "directory")
FIELDS = "emailAddresses,metadata,names,phoneNumbers"


@dataclass(frozen=True)
class Collection:
    path: str
    items: str                         # the key of the listed people in a page
    kind: str                          # what its records are
    params: dict[str, Any] = field(default_factory=dict)


COLLECTIONS = {
    "contacts": Collection("v1/people/me/connections", "connections", CONTACT, {"personFields": FIELDS}),
    "other": Collection("v1/otherContacts", "otherContacts", OTHER, {"readMask": FIELDS}),
    "directory": Collection("v1/people:listDirectoryPeople", "people", USER, {
        "readMask": FIELDS,
        "sources": ["DIRECTORY_SOURCE_TYPE_DOMAIN_PROFILE", "DIRECTORY_SOURCE_TYPE_DOMAIN_CONTACT"]}),
}


def parse_features(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """The features an account reads, from its option (comma-separated); the default when none is named."""
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value or ()) if n.strip()]
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature {', '.join(unknown)}; one of {', '.join(FEATURES)}")
    return tuple(n for n in FEATURES if n in names) or DEFAULT_FEATURES


def probe(feature: str) -> tuple[str, dict[str, Any]]:
    """The smallest read of a collection (one person): what a link is checked with."""
    collection = COLLECTIONS[feature]
    return collection.path, {**collection.params, "pageSize": 1}


def sync_token_expired(response: httpx.Response) -> bool:
    """Google's answer to a sync token it no longer takes: 400 FAILED_PRECONDITION with an ErrorInfo of reason
    EXPIRED_SYNC_TOKEN (the People API), or 410 (as the Calendar API answers)."""
    if response.status_code == 410:
        return True
    if response.status_code != 400:
        return False
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return False
    details = error.get("details") if isinstance(error, dict) else None
    reasons = {d.get("reason") for d in details or [] if isinstance(d, dict)}
    return "EXPIRED_SYNC_TOKEN" in reasons or (error.get("status") == "FAILED_PRECONDITION" and
                                               "sync token" in str(error.get("message", "")).lower())


def read_cursor(cursor: str | None) -> dict[str, str] | None:
    """The sync token of each collection a cursor holds; None when there is none to go on (a full listing)."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict) or not all(isinstance(v, str) and v for v in tokens.values()):
        return None
    return tokens


def take(listing: Listing, feature: str, raw: Any, kind: str) -> None:
    """One raw person into the round's listing: a record, a removal, or a rejection with its reason."""
    try:
        name = resource_name(raw)
    except InvalidItem as exc:
        listing.rejected.append(("", f"{feature}: {exc}"))
        return
    record_id = f"{feature}:{name}"
    if is_deleted(raw):
        listing.put(record_id, None)
        return
    try:
        listing.put(record_id, person_record(raw, record_id, kind))
    except (InvalidItem, TypeError, ValueError, AttributeError) as exc:
        listing.rejected.append((record_id, f"{feature}: {exc}"))


class GooglePeopleSource:
    name = "google-contacts"

    def __init__(self, api: ApiClient, features: Iterable[str] = DEFAULT_FEATURES, page_size: int = 1000):
        self.api = api
        self.enabled = parse_features(tuple(features))
        self.features = {f: FEATURES[f] for f in self.enabled}
        self.page_size = page_size

    async def changes(self, cursor: str | None) -> ContactChanges:
        start = self.api.calls
        tokens = read_cursor(cursor)
        if tokens is not None and set(tokens) == set(self.enabled):
            listing, new = Listing(), {}
            try:
                for feature in self.enabled:
                    new[feature] = await self._list(feature, tokens[feature], listing)
            except CursorInvalid:
                pass                # a token Google no longer takes: everything again, below
            else:
                return listing.changes(self._cursor(new), False, self.api.calls - start)
        # no cursor, one for other collections, or an expired token: every collection in full
        listing = Listing()
        new = {feature: await self._list(feature, None, listing) for feature in self.enabled}
        return listing.changes(self._cursor(new), True, self.api.calls - start)

    async def _list(self, feature: str, sync_token: str | None, listing: Listing) -> str | None:
        """Every page of one collection (what changed since `sync_token`, or everything) -> its next sync token."""
        collection = COLLECTIONS[feature]
        params: dict[str, Any] = {**collection.params, "pageSize": self.page_size, "requestSyncToken": "true"}
        if sync_token:
            params["syncToken"] = sync_token
        page_token = ""
        while True:
            page = await self.api.json("GET", collection.path, params={**params, **(
                {"pageToken": page_token} if page_token else {})},
                expired=sync_token_expired if sync_token else None)
            if not isinstance(page, dict):
                raise Transient(f"{collection.path} answered something other than a page of people")
            people = page.get(collection.items) or []
            for raw in people if isinstance(people, list) else []:
                take(listing, feature, raw, collection.kind)
            page_token = page.get("nextPageToken") or ""
            if not page_token:
                token = page.get("nextSyncToken")
                return token if isinstance(token, str) and token else None

    @staticmethod
    def _cursor(tokens: dict[str, str | None]) -> str | None:
        """The cursor of a round: every collection's sync token (a collection without one is listed in full next
        time: the cursor is left out then)."""
        if not all(tokens.values()):
            return None
        return json.dumps({"v": 1, "tokens": tokens}, sort_keys=True)

    async def aclose(self) -> None:
        await self.api.aclose()
