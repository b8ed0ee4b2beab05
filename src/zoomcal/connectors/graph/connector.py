"""One Microsoft 365 calendar through Microsoft Graph.

Change tracking is `calendarView/delta` over the availability window: it reports single events, occurrences and
exceptions, never the series master, and a deleted occurrence just disappears. So for every series that moved,
the master is read (`GET /events/{id}`) and the series is rebuilt from the master and the instances held in the
window: an expected occurrence with no instance is a cancelled one. Creates carry `transactionId` (our event id:
a retried create returns the first event); updates send `If-Match` with the event's etag, and an update that
leaves the master as it is reads it to check that etag instead. Instances are written only where they differ from
what the series wants (a plain occurrence shows the series' own subject); a series that changed while they were
written is refused as a stale etag is, never read back as zoomcal's own write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from zoomcal.connectors.base import Capabilities, ChangeSet, Item, WriteResult, typed_items
from zoomcal.connectors.graph.paging import pages
from zoomcal.connectors.http import ApiClient, error_for
from zoomcal.domain.recurrence import occurrence_starts, plain_end
from zoomcal.domain.timeutil import fmt_instant, parse_instant, to_datetime
from zoomcal.errors import CursorInvalid, NotFound, PreconditionFailed
from zoomcal.mapping.graph import event_item_parts, event_write_body, exception_override, when_instant
from zoomcal.mapping.rules import MappingRules

BATCH = 20   # Graph's JSON batching limit


def _attendees(value: Any) -> list[tuple[str, str, str]]:
    return sorted((((a.get("emailAddress") or {}).get("address") or "").lower(),
                   (a.get("emailAddress") or {}).get("name") or "", a.get("type") or "required")
                  for a in value or [] if isinstance(a, dict))


def original_start(inst: dict[str, Any], all_day: bool) -> str:
    """An instance's `originalStart` as the occurrence id the content uses: the instant (Graph may write it with
    a fraction of a second or `+00:00`), or the date of an all-day occurrence."""
    value = str(inst["originalStart"])
    return value[:10] if all_day else fmt_instant(parse_instant(value))


def master_patch(held: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The fields of `body` the event Graph holds (`held`) differs in: what a PATCH must send (nothing: no PATCH).
    Times compare as instants in the zone the event was written in (Graph answers in UTC and keeps that zone)."""
    patch: dict[str, Any] = {}
    for name, value in body.items():
        have = held.get(name)
        if name in ("start", "end"):
            zone = held.get("originalStartTimeZone" if name == "start" else "originalEndTimeZone")
            same = bool(have) and when_instant(have) == when_instant(value) and \
                (zone or have.get("timeZone")) == value.get("timeZone")
        elif name == "body":
            same = (have or {}).get("content", "") == value.get("content", "") and \
                ((have or {}).get("contentType") or "text").lower() == (value.get("contentType") or "text").lower()
        elif name == "location":
            same = ((have or {}).get("displayName") or "") == (value.get("displayName") or "")
        elif name == "attendees":
            same = _attendees(have) == _attendees(value)
        elif name == "isAllDay":
            same = bool(have) == bool(value)
        elif name == "showAs":
            same = (have or "busy") == value
        else:
            same = have == value
        if not same:
            patch[name] = value
    return patch


def _series_fields(event: dict[str, Any]) -> tuple[Any, ...]:
    """What a series master holds of its own, as zoomcal writes it (writing its instances changes only its change
    key, never these)."""
    return (event.get("subject") or "", (event.get("body") or {}).get("content") or "",
            event.get("start"), event.get("end"), bool(event.get("isAllDay")), event.get("showAs") or "busy",
            (event.get("location") or {}).get("displayName") or "", _attendees(event.get("attendees")),
            event.get("recurrence"))


class GraphConnector:
    name = "graph"
    capabilities = Capabilities(recurrence=True, occurrence_edits=True, incremental=True, max_page_size=50,
                                sends_invitations=True)

    def __init__(self, api: ApiClient, user: str, calendar_id: str, rules: MappingRules,
                 window: tuple[datetime, datetime]):
        self.api = api
        self.rules = rules
        # the user's default calendar, or a named one
        self.base = f"users/{user}/calendars/{calendar_id}" if calendar_id else f"users/{user}/calendar"
        self.lo, self.hi = window

    def _range(self) -> dict[str, str]:
        return {"startDateTime": fmt_instant(self.lo)[:-1], "endDateTime": fmt_instant(self.hi)[:-1]}

    # --- reading -------------------------------------------------------------------------------------
    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet:
        start_calls = self.api.calls
        url, params = (cursor, None) if cursor else (f"{self.base}/calendarView/delta", self._range())
        changed: list[dict[str, Any]] = []
        removed: list[str] = []
        new_cursor = None
        async for page in pages(self.api, url, params, gone_is=CursorInvalid):
            for item in page.get("value") or []:
                (removed.append(item["id"]) if "@removed" in item else changed.append(item))
            if not page.get("@odata.nextLink"):
                new_cursor = page.get("@odata.deltaLink")
        # the series masters behind every touched occurrence (delta never sends them)
        masters = {i["seriesMasterId"] for i in changed if i.get("seriesMasterId")}
        masters |= {mirror[r]["seriesMasterId"] for r in removed if (mirror.get(r) or {}).get("seriesMasterId")}
        found, gone = await self._masters(sorted(masters))
        changed.extend(found)
        removed.extend(gone)
        present = None if cursor else {self.raw_id(r) for r in changed}
        return ChangeSet(changed, removed, new_cursor, present, self.api.calls - start_calls)

    def raw_id(self, raw: dict[str, Any]) -> str:
        return raw["id"]

    def series_key(self, raw: dict[str, Any]) -> str:
        return raw.get("seriesMasterId") or raw["id"]

    def planned_id(self, key: str) -> str | None:
        return None   # Graph assigns ids; transactionId makes the create idempotent instead

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        masters = [r for r in raws if r.get("type") in ("seriesMaster", "singleInstance") or
                   (not r.get("seriesMasterId") and not r.get("type"))]
        if not masters:
            return None   # instances whose series is gone
        master = masters[0]
        content, peer_ref, wants_peer = event_item_parts(master, self.rules)
        if content.get("rrule"):
            instances = {original_start(r, content["all_day"]): r for r in raws if r.get("seriesMasterId")}
            expected = [rid for rid in occurrence_starts(content, self.lo, self.hi) if self.lo <= to_datetime(rid)
                        < self.hi]
            content["exdates"] = sorted(rid for rid in expected if rid not in instances)
            overrides = {}
            for rid, inst in instances.items():
                if inst.get("type") != "exception":
                    continue
                override = exception_override(content, rid, inst["start"], inst["end"], inst.get("subject") or "")
                if override is not None:
                    overrides[rid] = override
            content["overrides"] = dict(sorted(overrides.items()))
        return Item(master["id"], content, etag=master.get("@odata.etag"), marker=master.get("transactionId"),
                    peer_ref=peer_ref, wants_peer=wants_peer)

    async def get(self, item_id: str) -> list[dict[str, Any]]:
        return [await self.api.json("GET", f"{self.base}/events/{item_id}")]

    # --- writing -------------------------------------------------------------------------------------
    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        start_calls = self.api.calls
        body, notes = event_write_body(content, self.rules)
        event = await self.api.json("POST", f"{self.base}/events", json={**body, "transactionId": key})
        return await self._finish(event, content, notes, start_calls)

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        start_calls = self.api.calls
        headers = {"If-Match": etag} if etag else {}
        masters = [r for r in current if not r.get("seriesMasterId")]
        held = masters[0] if masters else None
        body, notes = event_write_body(content, self.rules, held)
        if held is not None:
            body = master_patch(held, body)   # only what differs: a master already as wanted is not written again
        if body or held is None:
            event = await self.api.json("PATCH", f"{self.base}/events/{item_id}", json=body, headers=headers)
        else:
            # no PATCH, so no If-Match: the series is read to see it is still the one planned against (what we
            # hold may be older than a rename made since), else its instances would be written to a stale view
            event = (await self.get(item_id))[0]
            planned = etag or held.get("@odata.etag")
            if planned and event.get("@odata.etag") != planned:
                raise PreconditionFailed(f"event {item_id} changed since it was read (etag {planned})")
        return await self._finish(event, content, notes, start_calls)

    async def _finish(self, event: dict[str, Any], content: dict[str, Any], notes: list[str],
                      start_calls: int) -> WriteResult:
        """Bring the instances in line (cancel, move, put back), then read the series as it now stands."""
        raws = [event]
        if event.get("type") == "seriesMaster":
            instances = await self._instances(event["id"])
            overrides = content.get("overrides") or {}
            exdates = set(content.get("exdates") or ())
            all_day = bool(content.get("all_day"))
            ops: list[tuple[str, str, dict[str, Any] | None]] = []
            for inst in instances:
                rid = original_start(inst, all_day)
                if rid in exdates:
                    ops.append(("DELETE", f"{self.base}/events/{inst['id']}", None))
                    continue
                want = overrides.get(rid)
                target = (want["start"], want["end"], want.get("title", content["title"])) if want else \
                    (rid, plain_end(rid, content["start"], content["end"], content.get("timezone")), content["title"])
                if all_day:    # days, written at midnight in the zone the series was written in
                    zone = event.get("originalStartTimeZone") or "UTC"
                    have = (inst["start"]["dateTime"][:10], inst["end"]["dateTime"][:10], inst.get("subject") or "")
                    times = [{"dateTime": f"{day}T00:00:00", "timeZone": zone} for day in target[:2]]
                else:
                    have = (when_instant(inst["start"]), when_instant(inst["end"]), inst.get("subject") or "")
                    times = [{"dateTime": when[:-1], "timeZone": "UTC"} for when in target[:2]]
                if want is None and inst.get("type") != "exception" and have[:2] == target[:2]:
                    continue    # a plain occurrence shows its series' own subject: a write would make it an exception
                if have != target:
                    ops.append(("PATCH", f"{self.base}/events/{inst['id']}",
                                {"subject": target[2], "start": times[0], "end": times[1]}))
            if ops:       # the instances moved, and the master's change key with them: read the series again
                await self._run(ops)
                master = (await self.get(event["id"]))[0]
                if _series_fields(master) != _series_fields(event):
                    # somebody changed the series while its instances were written: what is read back now is not
                    # what zoomcal wrote, and must not be taken for it (the next listing brings the change)
                    raise PreconditionFailed(f"event {event['id']} changed while its instances were written")
                raws = [master, *await self._instances(event["id"])]
            else:
                raws = [event, *instances]
        item = self.normalize(raws)
        assert item is not None
        return WriteResult(item.id, item.etag, raws, item, notes, self.api.calls - start_calls)

    async def _run(self, ops: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        """Instance writes: one by one when there is one, else `$batch` in groups of 20 (fewer calls, same
        outcome; each answer is checked like a direct one)."""
        if len(ops) == 1:
            method, url, body = ops[0]
            await self.api.request(method, url, json=body)
            return
        for start in range(0, len(ops), BATCH):
            chunk = ops[start:start + BATCH]
            requests = []
            for n, (method, url, body) in enumerate(chunk):
                request: dict[str, Any] = {"id": str(n), "method": method, "url": "/" + url}
                if body is not None:
                    request.update(body=body, headers={"Content-Type": "application/json"})
                requests.append(request)
            answer = await self.api.json("POST", "$batch", json={"requests": requests})
            for reply in answer.get("responses") or []:
                method = chunk[int(reply["id"])][0]
                status = int(reply.get("status", 500))
                if status >= 400 and not (status == 404 and method == "DELETE"):   # gone already is fine
                    raise error_for(httpx.Response(status, json=reply.get("body"), headers=reply.get("headers") or {}),
                                    f"$batch {method}")   # its Retry-After, where it was throttled

    async def _masters(self, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """Series masters by id: one GET for one, else `$batch` in groups of 20 (a first sync of a calendar with
        a thousand series makes 50 calls for them, not a thousand). -> (found, the ids that are gone)."""
        found: list[dict[str, Any]] = []
        gone: list[str] = []
        if len(ids) == 1:
            try:
                found.append(await self.api.json("GET", f"{self.base}/events/{ids[0]}"))
            except NotFound:
                gone.append(ids[0])
            return found, gone
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            answer = await self.api.json("POST", "$batch", json={"requests": [
                {"id": str(n), "method": "GET", "url": f"/{self.base}/events/{master_id}"}
                for n, master_id in enumerate(chunk)]})
            for reply in sorted(answer.get("responses") or [], key=lambda r: int(r["id"])):
                status, master_id = int(reply.get("status", 500)), chunk[int(reply["id"])]
                if status == 404:
                    gone.append(master_id)
                elif status >= 400 or not isinstance(reply.get("body"), dict):
                    raise error_for(httpx.Response(status, json=reply.get("body"), headers=reply.get("headers") or {}),
                                    "$batch GET")
                else:
                    found.append(reply["body"])
        return found, gone

    async def _instances(self, master_id: str) -> list[dict[str, Any]]:
        """The series' instances in the window, every page of them (Graph answers ten at a time)."""
        return [instance async for page in pages(self.api, f"{self.base}/events/{master_id}/instances", self._range())
                for instance in page.get("value") or []]

    async def delete(self, item_id: str, etag: str | None) -> int:
        start_calls = self.api.calls
        try:
            await self.api.request("DELETE", f"{self.base}/events/{item_id}",
                                   headers={"If-Match": etag} if etag else {})
        except NotFound:
            pass
        return self.api.calls - start_calls

    async def aclose(self) -> None:
        await self.api.aclose()
