"""One CalDAV calendar collection (iCloud, Fastmail, Nextcloud, Radicale, ...) as a sync side.

Changes come from RFC 6578 `sync-collection` (a server without it gets an explicit etag listing instead,
noted in the cursor, skipped while the collection's ctag stays the same); changed resources are fetched with
`calendar-multiget`. Creates go to a href named after our key with `If-None-Match: *` (idempotent); updates and
deletes carry `If-Match`. Responses are parsed with defusedxml: hostile XML is refused, not expanded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from zoomcal.connectors.base import Capabilities, ChangeSet, Item, WriteResult, typed_items
from zoomcal.connectors.http import error_for, metered
from zoomcal.errors import Conflict, CursorInvalid, InvalidItem, NotFound, PreconditionFailed, Transient
from zoomcal.mapping.ical import content_to_calendar, held_master, master_meta, series_to_content, split_events
from zoomcal.mapping.joininfo import referenced_meeting, wants_meeting
from zoomcal.mapping.rules import MappingRules
from zoomcal.net import Resolver, check_url, system_resolver, tls

NS = {"d": "DAV:", "c": "urn:ietf:params:xml:ns:caldav", "cs": "http://calendarserver.org/ns/"}
ETAG_LISTING = "etag-listing"              # cursor of a server without sync-collection (":" + the collection's ctag)
UNSUPPORTED = (400, 403, 405, 415, 501)     # how servers without RFC 6578 answer a sync-collection REPORT
SYNC_BODY = ('<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}'
             '</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>')
CTAG_BODY = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/">'
             '<d:prop><cs:getctag/></d:prop></d:propfind>')
ETAG_BODY = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop>'
             '</d:propfind>')
MULTIGET = ('<?xml version="1.0" encoding="utf-8"?><c:calendar-multiget xmlns:d="DAV:" '
            'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>{hrefs}'
            '</c:calendar-multiget>')


CARDDAV = "urn:ietf:params:xml:ns:carddav"
# what discovery looks for: the namespace, the home-set property, the collection's resource type
DISCOVERY = {"caldav": (NS["c"], "calendar-home-set", "calendar"),
             "carddav": (CARDDAV, "addressbook-home-set", "addressbook")}


def parse_xml(data: bytes) -> Element:
    try:
        return ElementTree.fromstring(data, forbid_dtd=True)
    except (DefusedXmlException, ElementTree.ParseError) as exc:
        raise InvalidItem(f"refused XML from the server: {type(exc).__name__}") from exc


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# resources asked for in one multiget: a thousand events are about a megabyte of answer, and servers (Radicale,
# Nextcloud, Fastmail, iCloud) answer that many in one REPORT; fewer round trips on a first sync
MULTIGET_BATCH = 1000


class DavCollection:
    """One WebDAV collection (a CalDAV calendar, a CardDAV address book): requests through the URL guard, RFC 6578
    change listings with an etag-listing fallback, and a multiget of the members that changed."""

    MULTIGET = MULTIGET
    DATA = ".//c:calendar-data"          # where a multiget answer carries a member's data

    def __init__(self, collection_url: str, *, username: str | None = None,
                 password: str | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 allow_private: bool = False, resolve: Resolver = system_resolver, timeout: float = 20.0,
                 provider: str = ""):
        self.url = collection_url if collection_url.endswith("/") else collection_url + "/"
        self.path = urlsplit(self.url).path
        self.allow_private = allow_private
        self.resolve = resolve
        auth = httpx.BasicAuth(username, password or "") if username else None
        self.client = httpx.AsyncClient(verify=tls(), auth=auth, transport=transport, timeout=timeout,
                                        event_hooks=metered(provider))
        self.calls = 0

    async def _request(self, method: str, url: str, ok: tuple[int, ...] = (200, 201, 204, 207),
                       **kwargs: Any) -> httpx.Response:
        check_url(url, self.allow_private, self.resolve)
        self.calls += 1
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise Transient(f"{method} timed out") from exc
        except httpx.TransportError as exc:
            raise Transient(f"{method} failed: {type(exc).__name__}") from exc
        if response.status_code in ok:
            return response
        if b"valid-sync-token" in response.content:   # RFC 6578: the token expired; list everything again
            raise CursorInvalid(f"{method} {urlsplit(url).path}: sync token no longer valid")
        raise error_for(response, f"{method} {urlsplit(url).path}")

    def _abs(self, href: str) -> str:
        return urljoin(self.url, href)

    def member(self, href: str) -> bool:
        """Whether a listed href is a member this collection syncs (a calendar: `.ics` resources)."""
        return href.endswith(".ics")

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- reading -------------------------------------------------------------------------------------
    async def _listing(self, cursor: str | None) -> tuple[dict[str, str | None], str, bool]:
        """({href: etag or None when deleted}, new cursor, complete?)."""
        if not (cursor or "").startswith(ETAG_LISTING):
            token = _xml_escape(cursor or "")
            response = await self._request("REPORT", self.url, ok=(207,) + UNSUPPORTED,
                                           headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
                                           content=SYNC_BODY.format(token=token))
            if response.status_code in UNSUPPORTED and cursor:
                raise CursorInvalid("the server stopped answering sync-collection")
            if response.status_code == 207:   # otherwise: no sync-collection here, fall back to an etag listing
                root = parse_xml(response.content)
                found = {}
                for resp in root.findall("d:response", NS):
                    href = resp.findtext("d:href", default="", namespaces=NS)
                    if not self.member(href):
                        continue
                    status = resp.findtext("d:status", default="", namespaces=NS)
                    found[href] = None if " 404 " in status else resp.findtext(".//d:getetag", namespaces=NS)
                return found, root.findtext("d:sync-token", default="", namespaces=NS), not cursor
        # no sync-collection: the collection's ctag says whether anything changed at all, else list every etag
        response = await self._request("PROPFIND", self.url, headers={"Depth": "0", "Content-Type": "application/xml"},
                                       content=CTAG_BODY)
        ctag = parse_xml(response.content).findtext(".//cs:getctag", namespaces=NS)
        listing_cursor = f"{ETAG_LISTING}:{ctag}" if ctag else ETAG_LISTING
        if ctag and cursor == listing_cursor:
            return {}, listing_cursor, False
        response = await self._request("PROPFIND", self.url, headers={"Depth": "1", "Content-Type": "application/xml"},
                                       content=ETAG_BODY)
        root = parse_xml(response.content)
        found = {resp.findtext("d:href", default="", namespaces=NS): resp.findtext(".//d:getetag", namespaces=NS)
                 for resp in root.findall("d:response", NS)}
        return {h: e for h, e in found.items() if self.member(h)}, listing_cursor, True

    async def _multiget(self, hrefs: list[str]) -> list[dict[str, Any]]:
        raws = []
        for start in range(0, len(hrefs), MULTIGET_BATCH):
            chunk = "".join(f"<d:href>{_xml_escape(h)}</d:href>" for h in hrefs[start:start + MULTIGET_BATCH])
            response = await self._request("REPORT", self.url, headers={"Depth": "1",
                                           "Content-Type": "application/xml; charset=utf-8"},
                                           content=self.MULTIGET.format(hrefs=chunk))
            for resp in parse_xml(response.content).findall("d:response", NS):
                data = resp.findtext(self.DATA, namespaces=NS)
                if data is not None:
                    raws.append({"href": resp.findtext("d:href", default="", namespaces=NS),
                                 "etag": resp.findtext(".//d:getetag", namespaces=NS), "ics": data})
        return raws



class CalDavConnector(DavCollection):
    name = "caldav"
    capabilities = Capabilities(recurrence=True, occurrence_edits=True, incremental=True, max_page_size=100)

    def __init__(self, collection_url: str, rules: MappingRules, **kwargs: Any):
        super().__init__(collection_url, **kwargs)
        self.rules = rules

    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet:
        start_calls = self.calls
        found, new_cursor, complete = await self._listing(cursor)
        removed = [href for href, etag in found.items() if etag is None]
        wanted = [href for href, etag in found.items() if etag is not None and (mirror.get(href) or {}).get("etag")
                  != etag]
        changed = await self._multiget(wanted) if wanted else []
        present = {h for h, e in found.items() if e is not None} if complete else None
        return ChangeSet(changed, removed, new_cursor, present, self.calls - start_calls)

    def raw_id(self, raw: dict[str, Any]) -> str:
        return raw["href"]

    def series_key(self, raw: dict[str, Any]) -> str:
        return raw["href"]

    def planned_id(self, key: str) -> str | None:
        return self.path + quote(key) + ".ics"

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        if not raws:
            return None
        raw = raws[0]
        blocks, calendar_tz = split_events(raw["ics"])
        if not blocks:
            return None   # a resource with no VEVENT (a task, a journal): not ours to sync
        if len({b["uid"] for b in blocks}) > 1:
            raise InvalidItem("one calendar resource holds several UIDs")
        content = series_to_content(blocks, self.rules, calendar_tz)
        if not content:
            return None
        meta = master_meta(blocks)
        return Item(raw["href"], content, etag=raw.get("etag"), marker=meta["marker"],
                    peer_ref=referenced_meeting(meta["meeting_id"], meta["location"], meta["description"]),
                    wants_peer=wants_meeting(meta["location"], meta["description"], self.rules))

    async def get(self, item_id: str) -> list[dict[str, Any]]:
        response = await self._request("GET", self._abs(item_id))
        return [{"href": item_id, "etag": response.headers.get("etag"), "ics": response.text}]

    # --- writing -------------------------------------------------------------------------------------
    async def _put(self, href: str, uid: str, content: dict[str, Any], headers: dict[str, str],
                   held: str | None = None) -> WriteResult:
        start_calls = self.calls
        master = held_master(held) if held else None   # the resource is rewritten: keep its organizer and
        body = content_to_calendar({uid: content}, rules=self.rules,   # what we do not know of its attendees
                                   held={uid: master} if master is not None else None)
        response = await self._request("PUT", self._abs(href), ok=(200, 201, 204),
                                       headers={**headers, "Content-Type": "text/calendar; charset=utf-8"},
                                       content=body)
        etag = response.headers.get("etag")
        raw = {"href": href, "etag": etag, "ics": body.decode()}
        if etag is None:   # the server did not say: read it back (the stored text may differ, too)
            raw = (await self.get(href))[0]
        item = self.normalize([raw])
        if item is None:
            raise InvalidItem("the server did not keep the event we wrote")
        return WriteResult(href, raw["etag"], [raw], item, [], self.calls - start_calls)

    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        href = self.planned_id(key)
        try:
            return await self._put(href, key, content, {"If-None-Match": "*"})
        except PreconditionFailed:
            if not maybe_exists:
                raise Conflict(f"{href} exists") from None
            current = await self.get(href)    # our earlier create went through: bring it up to date
            return await self.update(href, content, current[0]["etag"], key, current)

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        raws = current or await self.get(item_id)
        blocks, _ = split_events(raws[0]["ics"])
        uid = blocks[0]["uid"] if blocks else key          # the resource keeps its own UID
        return await self._put(item_id, uid, content, {"If-Match": etag} if etag else {}, raws[0]["ics"])

    async def delete(self, item_id: str, etag: str | None) -> int:
        start_calls = self.calls
        try:
            await self._request("DELETE", self._abs(item_id), headers={"If-Match": etag} if etag else {})
        except NotFound:
            pass   # already gone
        return self.calls - start_calls



async def discover(base_url: str, username: str | None, password: str | None, *, allow_private: bool = False,
                   resolve: Resolver = system_resolver, transport: httpx.AsyncBaseTransport | None = None,
                   kind: str = "caldav") -> list[tuple[str, str]]:
    """Collections under a base URL: .well-known -> principal -> home set -> collections: calendars (`kind`
    caldav) or address books (carddav)."""
    ns, home_set, resourcetype = DISCOVERY[kind]
    probe = DavCollection(base_url, username=username, password=password, transport=transport,
                          allow_private=allow_private, resolve=resolve)
    try:
        async def propfind(url: str, prop: str, depth: str = "0") -> Element:
            headers = {"Depth": depth, "Content-Type": "application/xml"}
            response = await probe._request("PROPFIND", url, headers=headers,
                                            content=f'<d:propfind xmlns:d="DAV:" xmlns:x="{ns}"><d:prop>{prop}'
                                                    f'</d:prop></d:propfind>')
            return parse_xml(response.content)

        root_url = urljoin(probe.url, f"/.well-known/{kind}")
        try:
            await probe._request("PROPFIND", root_url, ok=(207, 301, 302, 307, 308), headers={"Depth": "0"})
        except (NotFound, InvalidItem):
            root_url = probe.url
        principal = (await propfind(probe.url, "<d:current-user-principal/>")).findtext(
            ".//d:current-user-principal/d:href", namespaces=NS)
        home_root = await propfind(probe._abs(principal or probe.path), f"<x:{home_set}/>")
        home = home_root.findtext(f".//{{{ns}}}{home_set}/d:href", namespaces=NS) or principal or probe.path
        listing = await propfind(probe._abs(home), "<d:resourcetype/><d:displayname/>", depth="1")
        found = []
        for resp in listing.findall("d:response", NS):
            if resp.find(f".//d:resourcetype/{{{ns}}}{resourcetype}", NS) is not None:
                href = resp.findtext("d:href", default="", namespaces=NS)
                found.append((probe._abs(href), resp.findtext(".//d:displayname", default="", namespaces=NS)
                              or href.rstrip("/").rsplit("/", 1)[-1]))
        return found
    finally:
        await probe.aclose()
