"""One CardDAV address book (Nextcloud, iCloud, Fastmail, Radicale, ...) as a contact source.

Changes come from RFC 6578 `sync-collection` like a CalDAV calendar's (an expired token lists everything again;
a server without it gets an etag listing); changed cards are fetched with `addressbook-multiget`. vCard 3 and 4
are read; a card that cannot be read is rejected alone, with its reason."""

from __future__ import annotations

from collections.abc import Mapping

from zoomcal.connectors.caldav.connector import CARDDAV, DavCollection
from zoomcal.connectors.contacts import ContactChanges
from zoomcal.errors import CursorInvalid, InvalidItem
from zoomcal.mapping.vcard import card_to_record

MULTIGET = ('<?xml version="1.0" encoding="utf-8"?><r:addressbook-multiget xmlns:d="DAV:" '
            f'xmlns:r="{CARDDAV}"><d:prop><d:getetag/><r:address-data/></d:prop>{{hrefs}}</r:addressbook-multiget>')


class CardDavSource(DavCollection):
    name = "carddav"
    features: Mapping[str, tuple[str, ...]] = {"contacts": ()}     # a password: no scopes to ask for
    MULTIGET = MULTIGET
    DATA = f".//{{{CARDDAV}}}address-data"

    def member(self, href: str) -> bool:
        return not href.endswith("/")

    async def changes(self, cursor: str | None) -> ContactChanges:
        start_calls = self.calls
        try:
            found, new_cursor, complete = await self._listing(cursor)
        except CursorInvalid:
            found, new_cursor, complete = await self._listing(None)
            complete = True
        removed = [href for href, etag in found.items() if etag is None]
        wanted = [href for href, etag in found.items() if etag is not None]
        records, rejected = [], []
        for raw in await self._multiget(wanted) if wanted else []:
            try:
                records.append(card_to_record(raw["href"], raw["ics"], raw.get("etag")))
            except InvalidItem as exc:
                rejected.append((raw["href"], str(exc)))
        return ContactChanges(records, removed, new_cursor, complete, rejected, self.calls - start_calls)
