"""A user's Zoom Workplace calendar (Zoom's calendar API, calendar-api.json) as one more calendar to link.

The API mirrors Google Calendar v3 (`/calendars/{calId}/events`, `syncToken`, RRULE / EXDATE / RDATE lines in
`recurrence`), so reading and the series mapping are the Google connector's. What differs is kept here:

* The server chooses event ids and keeps no private properties, so a create cannot carry our id. The events
  zoomcal writes here are Zoom meetings, and their join block (in the description, the join URL as location)
  names the meeting: a retried create looks for an event naming the same meeting (one without a meeting: the
  same title, time and rule) before it creates one.
* A listing has no etags and PATCH takes no `If-Match`: the last writer wins, as with Zoom meetings.
* Instances carry no `originalStartTime`, so nothing says which occurrence an exception replaces. Cancelled
  occurrences are EXDATE lines on the series and sync both ways; moved or retitled occurrences are not written
  here, and the sync log says so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from zoomcal.connectors.base import Capabilities, Item, WriteResult, typed_items
from zoomcal.connectors.google.connector import GoogleConnector, master_patch
from zoomcal.domain.timeutil import fmt_instant, to_datetime
from zoomcal.errors import InvalidItem, NotFound
from zoomcal.mapping.google import content_to_event, series_to_content
from zoomcal.mapping.joininfo import join_in_body

NO_OCCURRENCE_EDITS = ("Zoom Calendar's API does not say which occurrence an instance replaces, so moved or changed "
                       "occurrences are not written there: {}")


class ZoomCalendarConnector(GoogleConnector):
    name = "zoom-calendar"
    capabilities = Capabilities(recurrence=True, occurrence_edits=False, markers=False, incremental=True,
                                max_page_size=250)

    def planned_id(self, key: str) -> str | None:
        return None   # Zoom chooses event ids

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        masters = [r for r in raws if not r.get("recurringEventId")]
        if not masters or masters[0].get("status") == "cancelled":
            return None
        master = masters[0]
        content = series_to_content(master, [], self.rules)
        content["join"], peer_ref, wants_peer = join_in_body(master.get("description") or "",
                                                             master.get("location") or "", self.rules)
        return Item(master["id"], content, etag=None, marker=None, peer_ref=peer_ref, wants_peer=wants_peer)

    def _body(self, content: dict[str, Any], held: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
        body = content_to_event(content, self.rules, None, held)
        body.pop("extendedProperties")
        notes = [NO_OCCURRENCE_EDITS.format(", ".join(content["overrides"]))] if content.get("overrides") else []
        return body, notes

    async def _twin(self, content: dict[str, Any]) -> dict[str, Any] | None:
        """The event an earlier create of `content` made, if its answer was lost: the one naming the same Zoom
        meeting, or for an event without a meeting the one with the same title, time and rule."""
        meeting = str((content.get("join") or {}).get("meeting_id") or "")
        same = ("title", "start", "end", "rrule")
        for raw in (await self.changes(None, {})).changed:
            item = self.normalize([raw])
            if item is None:
                continue
            if meeting and item.peer_ref == meeting or not meeting and not item.peer_ref and \
                    all(item.content[k] == content[k] for k in same):
                return raw
        return None

    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        start_calls = self.api.calls
        twin = await self._twin(content) if maybe_exists else None
        if twin is not None:
            result = await self.update(twin["id"], content, None, key, [twin])
            result.notes = ["found the event created earlier (it names the same meeting)", *result.notes]
            result.api_calls = self.api.calls - start_calls
            return result
        body, notes = self._body(content)
        master = await self.api.json("POST", self._base, json=body)
        return self._finish(master, notes, start_calls)

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        start_calls = self.api.calls
        master = await self._master(item_id, current)
        body, notes = self._body(content, master)
        patch = master_patch(master, body)
        if master.get("status") == "cancelled":
            patch["status"] = "confirmed"
        if patch:
            master = await self.api.json("PATCH", f"{self._base}/{item_id}", json=patch)
        return self._finish(master, notes, start_calls)

    def _finish(self, master: dict[str, Any], notes: list[str], start_calls: int) -> WriteResult:
        item = self.normalize([master])
        if item is None:
            raise InvalidItem("Zoom Calendar did not keep the event we wrote")
        return WriteResult(item.id, None, [master], item, notes, self.api.calls - start_calls)

    async def delete(self, item_id: str, etag: str | None) -> int:
        return await super().delete(item_id, None)

    async def free_busy(self, calendars: list[str], start: datetime, end: datetime) -> dict[str, list[tuple]]:
        """Busy blocks of Zoom calendars (`POST /calendars/freeBusy`): {calendar id: [(start, end)]}, UTC; a
        calendar Zoom cannot show is a NotFound naming it."""
        answer = await self.api.json("POST", "calendars/freeBusy", json={
            "timeMin": fmt_instant(start), "timeMax": fmt_instant(end), "items": [{"id": c} for c in calendars]})
        out = {}
        for cal in answer.get("calendars") or []:
            if cal.get("errors"):
                raise NotFound(f"Zoom calendar {cal.get('id')!r}: {cal['errors'][0].get('reason')}")
            out[cal["id"]] = [(to_datetime(b["start"]), to_datetime(b["end"])) for b in cal.get("busy") or []]
        return out
