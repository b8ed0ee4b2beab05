"""One Google calendar as a sync side: `syncToken` change feed, client-chosen ids, etags.

A recurring series is a master plus exception instances; the engine keeps every raw item it listed, so
an incremental page that carries only one changed exception still rebuilds the whole series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from zoomcal.connectors.base import Capabilities, ChangeSet, Item, WriteResult, typed_items
from zoomcal.connectors.http import ApiClient
from zoomcal.domain.recurrence import occurrence_starts, plain_end
from zoomcal.domain.timeutil import fmt_instant, to_datetime
from zoomcal.errors import Conflict, CursorInvalid, InvalidItem, NotFound
from zoomcal.mapping.google import (
    PRIVATE_EVENT,
    attendees_key,
    content_to_event,
    event_id_for,
    instance_id,
    override_to_instance,
    private_props,
    referenced_meeting,
    series_to_content,
    wants_zoom,
    write_attendees,
)
from zoomcal.mapping.rules import MappingRules

MASTER_COMPARED = ("summary", "description", "location", "start", "end", "recurrence", "transparency")


def _same_when(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    a, b = a or {}, b or {}
    if a.get("date") or b.get("date"):
        return a.get("date") == b.get("date")
    try:
        return to_datetime(a.get("dateTime", "")) == to_datetime(b.get("dateTime", "")) and \
            (a.get("timeZone") or "UTC") == (b.get("timeZone") or "UTC")
    except InvalidItem:
        return False


def master_patch(master: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The fields of `body` that differ from what the master holds (what a PATCH must send)."""
    patch: dict[str, Any] = {}
    for name in MASTER_COMPARED:
        if name not in body:
            continue
        if name in ("start", "end"):
            if not _same_when(master.get(name), body[name]):
                patch[name] = body[name]
        elif name == "transparency":
            if (master.get(name) or "opaque") != body[name]:
                patch[name] = body[name]
        elif (master.get(name) or ([] if name == "recurrence" else "")) != body[name]:
            patch[name] = body[name]
    if attendees_key(master.get("attendees")) != attendees_key(body["attendees"]):
        patch["attendees"] = body["attendees"]
    return patch


# a write asks Google to e-mail the event's guests (an invitation to a new guest, an update, a cancellation)
# whenever it changes what they see; a write that changes nothing is never made, and a write retried after a lost
# answer finds the event already written (the same client id, If-Match), so nobody is told twice
NOTIFY = {"sendUpdates": "all"}


def _has_guests(event: dict[str, Any] | None) -> bool:
    return any(isinstance(a, dict) and not a.get("organizer") and not a.get("self")
               for a in (event or {}).get("attendees") or ())


PAGE = 2500    # events.list's largest page (maxResults): a first sync of 10,000 events is four requests


class GoogleConnector:
    name = "google"
    # Google invites the guests of an event its organizer writes (sendUpdates), and collects their answers
    capabilities = Capabilities(incremental=True, max_page_size=PAGE, sends_invitations=True)

    def __init__(self, api: ApiClient, calendar_id: str, rules: MappingRules, page_size: int = PAGE):
        self.api = api
        self.calendar_id = calendar_id
        self.rules = rules
        self.page_size = page_size
        self._base = f"calendars/{quote(calendar_id, safe='')}/events"

    # --- reading ---------------------------------------------------------------------------------------
    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet:
        start_calls = self.api.calls
        changed, removed = [], []
        present: set[str] | None = None if cursor else set()
        page_token = ""
        while True:
            params: dict[str, Any] = {"maxResults": self.page_size, "singleEvents": "false"}
            if cursor:
                params["syncToken"] = cursor
            else:
                params["showDeleted"] = "true"
            if page_token:
                params["pageToken"] = page_token
            page = await self.api.json("GET", self._base, params=params, gone_is=CursorInvalid)
            for item in page.get("items") or []:
                if item.get("status") == "cancelled" and not item.get("recurringEventId"):
                    removed.append(item["id"])
                    continue
                changed.append(item)
                if present is not None:
                    present.add(item["id"])
            page_token = page.get("nextPageToken") or ""
            if not page_token:
                return ChangeSet(changed, removed, page.get("nextSyncToken"), present,
                                 self.api.calls - start_calls)

    def raw_id(self, raw: dict[str, Any]) -> str:
        return raw["id"]

    def series_key(self, raw: dict[str, Any]) -> str:
        return raw.get("recurringEventId") or raw["id"]

    def planned_id(self, key: str) -> str | None:
        return event_id_for(key)

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        masters = [r for r in raws if not r.get("recurringEventId")]
        if not masters or masters[0].get("status") == "cancelled":
            return None
        master = masters[0]
        exceptions = [r for r in raws if r.get("recurringEventId")]
        content = series_to_content(master, exceptions, self.rules)
        return Item(master["id"], content, etag=master.get("etag"), marker=private_props(master).get(PRIVATE_EVENT),
                    peer_ref=referenced_meeting(master), wants_peer=wants_zoom(master, self.rules))

    async def get(self, item_id: str) -> list[dict[str, Any]]:
        event = await self.api.json("GET", f"{self._base}/{item_id}")
        if event.get("status") == "cancelled":
            raise NotFound(f"event {item_id} was deleted")
        return [event]

    # --- writing ---------------------------------------------------------------------------------------
    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        start_calls = self.api.calls
        event_id = event_id_for(key)
        body = {**content_to_event(content, self.rules, key), "id": event_id}
        try:
            master = await self.api.json("POST", self._base, json=body,
                                         params=NOTIFY if _has_guests(body) else None)
        except Conflict:
            # the id is ours: an earlier create went through (its answer was lost) or it was deleted since
            existing = await self.api.json("GET", f"{self._base}/{event_id}")
            if existing.get("status") == "cancelled":
                body["status"] = "confirmed"
            result = await self.update(event_id, content, existing.get("etag"), key, [existing])
            result.notes = ["found the event created earlier (same client id)", *result.notes]
            result.api_calls = self.api.calls - start_calls
            return result
        raws = [master, *await self._write_exceptions(master, content, [])]
        return self._result(raws, start_calls)

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        start_calls = self.api.calls
        master = await self._master(item_id, current)
        marker = private_props(master).get(PRIVATE_EVENT) or key
        body = content_to_event(content, self.rules, marker, held=master)
        patch = master_patch(master, body)
        private = dict(private_props(master))
        wanted_private = {**private, **body["extendedProperties"]["private"]}
        if not content.get("join"):
            for k in [k for k in wanted_private if k.startswith("zoomcal_") and k != PRIVATE_EVENT]:
                wanted_private.pop(k)
        if wanted_private != private:
            patch["extendedProperties"] = {"private": wanted_private}
        if master.get("status") == "cancelled":
            patch["status"] = "confirmed"
        if patch:
            headers = {"If-Match": etag or master.get("etag")} if (etag or master.get("etag")) else {}
            seen = set(patch) - {"extendedProperties"}
            notify = seen and (_has_guests(master) or _has_guests(patch))
            master = await self.api.json("PATCH", f"{self._base}/{item_id}", json=patch, headers=headers,
                                         params=NOTIFY if notify else None)
        exceptions = [r for r in current if r.get("recurringEventId")]
        raws = [master, *await self._write_exceptions(master, content, exceptions)]
        return self._result(raws, start_calls)

    async def _master(self, item_id: str, current: list[dict[str, Any]]) -> dict[str, Any]:
        """The series master among the raws we hold, else as the calendar has it now."""
        masters = [r for r in current if not r.get("recurringEventId")]
        return masters[0] if masters else (await self.get(item_id))[0]

    async def _write_exceptions(self, master: dict[str, Any], content: dict[str, Any],
                                existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bring exception instances in line with content["overrides"]; returns every exception now held."""
        if not content.get("rrule") and not content.get("rdates"):
            return existing
        by_id = {e["id"]: e for e in existing}
        result = dict(by_id)
        valid = set(occurrence_starts(content))
        overrides = content.get("overrides") or {}
        exdates = set(content.get("exdates") or ())
        for rid, override in overrides.items():
            if rid not in valid or rid in exdates:
                continue
            inst_id = instance_id(master["id"], rid)
            have = by_id.get(inst_id)
            body = self._instance(content, rid, override, master, have)
            if have is not None and have.get("status") != "cancelled" and _instance_equal(have, body):
                continue
            result[inst_id] = await self.api.json("PUT", f"{self._base}/{inst_id}", json=body,
                                                  params=NOTIFY if _has_guests(body) else None)
        for inst_id, have in by_id.items():
            rid = _rid_of(have)
            if have.get("status") == "cancelled" or rid is None or rid in overrides or rid in exdates \
                    or rid not in valid:
                continue
            # an exception no longer wanted: put the occurrence back on the series' own time and text
            plain = {"start": rid, "end": plain_end(rid, content["start"], content["end"], content.get("timezone"))}
            body = self._instance(content, rid, plain, master, have)
            result[inst_id] = await self.api.json("PUT", f"{self._base}/{inst_id}", json=body,
                                                  params=NOTIFY if _has_guests(body) else None)
        return list(result.values())

    def _instance(self, content: dict[str, Any], rid: str, override: dict[str, Any], master: dict[str, Any],
                  have: dict[str, Any] | None) -> dict[str, Any]:
        """An exception instance to PUT: a PUT replaces the instance, so it carries the series' guests (with the
        answers the instance holds, else the series') or the occurrence would lose them."""
        body = override_to_instance(content, rid, override, self.rules)
        held = (have or {}).get("attendees") or master.get("attendees")
        if content.get("attendees") or held:
            body["attendees"] = write_attendees(content, held)
        return body

    def _result(self, raws: list[dict[str, Any]], start_calls: int) -> WriteResult:
        item = self.normalize(raws)
        if item is None:
            raise InvalidItem("the calendar did not keep the event we wrote")
        return WriteResult(item.id, item.etag, raws, item, [], self.api.calls - start_calls)

    async def delete(self, item_id: str, etag: str | None) -> int:
        start_calls = self.api.calls
        headers = {"If-Match": etag} if etag else {}
        try:   # the guests, if any, are told the event is cancelled
            await self.api.request("DELETE", f"{self._base}/{item_id}", headers=headers, gone_is=NotFound,
                                   params=NOTIFY)
        except NotFound:
            pass   # already deleted: the delete's goal holds
        return self.api.calls - start_calls

    async def aclose(self) -> None:
        await self.api.aclose()


def _rid_of(raw: dict[str, Any]) -> str | None:
    original = raw.get("originalStartTime") or {}
    if original.get("date"):
        return original["date"]
    if original.get("dateTime"):
        return fmt_instant(to_datetime(original["dateTime"]))
    return None


def _instance_equal(have: dict[str, Any], body: dict[str, Any]) -> bool:
    return (have.get("summary") or "") == body["summary"] and (have.get("description") or "") == \
        body["description"] and _same_when(have.get("start"), body["start"]) and \
        _same_when(have.get("end"), body["end"]) and \
        attendees_key(have.get("attendees")) == attendees_key(body.get("attendees"))
