"""Zoom meetings of one user as a sync side.

Zoom has no change feed for meetings, so every listing is complete: the list endpoint (page_size 300) is
compared with what we stored, and a meeting is fetched in full only when its listed fields moved, when
its agenda may be cut off in the list (250 characters), or when it is recurring (occurrence edits do not
show in the list). Zoom has no idempotency key either: our event id travels in `settings.custom_keys`,
and a create that may already have happened looks for that marker first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from zoomcal.connectors.base import Capabilities, ChangeSet, Item, WriteResult, typed_items
from zoomcal.connectors.http import ApiClient
from zoomcal.errors import InvalidItem, NotFound, RateLimited, Transient
from zoomcal.mapping.rules import MappingRules
from zoomcal.mapping.zoom import (
    content_to_meeting,
    expand_occurrences,
    invitee_emails,
    meeting_marker,
    meeting_to_content,
    occurrence_edits,
    recurrence_to_rrule,
)
from zoomcal.sync.retry import Retrier

T = TypeVar("T")
GET_ATTEMPTS = 3
MAX_WAIT_S = 10.0
LIST_COMPARED = ("topic", "type", "start_time", "duration", "timezone")
SERIES_FIELDS = ("topic", "agenda", "type", "start_time", "duration", "timezone", "recurrence")


# what Zoom answers that zoomcal never uses and must not keep: the host's start link is a credential that starts the
# meeting as its host; the other passwords are the dial-in and room-system forms of the passcode
HOST_SECRETS = ("start_url", "h323_password", "pstn_password", "encrypted_password")


def _kept(meeting: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meeting.items() if k not in HOST_SECRETS}


def _same_rule(have: dict[str, Any] | None, want: dict[str, Any] | None) -> bool:
    """Two recurrences that repeat alike, though spelled apart (Zoom fills in defaults such as repeat_interval 1)."""
    if not have or not want:
        return have == want
    try:
        return recurrence_to_rrule(have) == recurrence_to_rrule(want)
    except InvalidItem:
        return False


def _needs_fetch(listed: dict[str, Any], known: dict[str, Any] | None) -> bool:
    if known is None or listed.get("type") == 8:
        return True
    if any(listed.get(k) != known.get(k) for k in LIST_COMPARED):
        return True
    agenda = listed.get("agenda") or ""
    return len(agenda) >= 250 or agenda != (known.get("agenda") or "")[:250]


class ZoomConnector:
    name = "zoom"
    capabilities = Capabilities(incremental=False, max_page_size=300, writes_per_day=100)

    backoff = 0.2      # seconds before a failed GET inside a listing is tried again (doubling)

    def __init__(self, api: ApiClient, user_id: str, rules: MappingRules):
        self.api = api
        self.user_id = user_id
        self.rules = rules

    # --- reading ---------------------------------------------------------------------------------------
    async def _list(self) -> list[dict[str, Any]]:
        meetings, token = [], ""
        while True:
            params = {"type": "scheduled", "page_size": 300}
            if token:
                params["next_page_token"] = token
            page = await self.api.json("GET", f"users/{self.user_id}/meetings", params=params)
            meetings.extend(page.get("meetings") or [])
            token = page.get("next_page_token") or ""
            if not token:
                return meetings

    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet:
        start_calls = self.api.calls
        present: set[str] = set()
        changed: list[dict[str, Any]] = []
        unread: list[str] = []
        for listed in await self._list():
            rid = str(listed["id"])
            present.add(rid)
            if _needs_fetch(listed, mirror.get(rid)):
                try:
                    changed.extend(await self._patiently(lambda rid=rid: self.get(rid)))
                except NotFound:
                    present.discard(rid)   # deleted between the list and the fetch
                except (Transient, RateLimited) as exc:
                    # one meeting that will not answer keeps its stored copy; the rest of the listing goes on
                    unread.append(f"{rid} ({type(exc).__name__})")
        removed = [rid for rid in mirror if rid not in present]
        notes = [f"{len(unread)} meeting(s) could not be read this time and keep what was stored: "
                 f"{', '.join(unread[:10])}{' …' if len(unread) > 10 else ''}"] if unread else []
        return ChangeSet(changed, removed, cursor=None, present=present, api_calls=self.api.calls - start_calls,
                         notes=notes)

    async def _patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """One request inside a listing, retried on its own (a listing of hundreds of meetings would otherwise
        fail as a whole on any one failure): short back-off for a failure, the asked wait for a rate limit, as
        every request is retried, only with fewer tries and shorter waits."""
        return await Retrier(max_retries=GET_ATTEMPTS - 1, base_delay=self.backoff, max_delay=MAX_WAIT_S).call(
            lambda _attempt: call())

    def raw_id(self, raw: dict[str, Any]) -> str:
        return str(raw["id"])

    def series_key(self, raw: dict[str, Any]) -> str:
        return str(raw["id"])

    def planned_id(self, key: str) -> str | None:
        return None   # Zoom assigns meeting ids; our marker in custom_keys finds a create's twin instead

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        if not raws:
            return None
        meeting = raws[0]
        content = meeting_to_content(meeting)
        marker = meeting_marker(meeting)
        return Item(str(meeting["id"]), content, etag=None, marker=marker,
                    wants_peer=content["start"] is not None or marker is not None)

    async def get(self, item_id: str) -> list[dict[str, Any]]:
        return [_kept(await self.api.json("GET", f"meetings/{item_id}"))]

    # --- writing ---------------------------------------------------------------------------------------
    async def _find_marker(self, key: str, body: dict[str, Any]) -> dict[str, Any] | None:
        for listed in await self._list():
            if listed.get("topic") != body.get("topic") or listed.get("start_time") != body.get("start_time"):
                continue
            full = (await self.get(str(listed["id"])))[0]
            if meeting_marker(full) == key:
                return full
        return None

    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        start_calls = self.api.calls
        body, notes = content_to_meeting(content, self.rules, marker=key)
        existing = await self._find_marker(key, body) if maybe_exists else None
        if existing is not None:
            result = await self.update(str(existing["id"]), content, None, key, [existing])
            result.notes = ["adopted a meeting created earlier (found by marker)", *result.notes]
            result.api_calls = self.api.calls - start_calls
            return result
        created = _kept(await self.api.json("POST", f"users/{self.user_id}/meetings", json=body))
        final = await self._apply_occurrences(created, content, dict(created))
        return self._result(final, notes, start_calls)

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        start_calls = self.api.calls
        meeting = current[0] if current else (await self.get(item_id))[0]
        body, notes = content_to_meeting(content, self.rules, marker=meeting_marker(meeting) or key)
        patch = {k: v for k, v in body.items() if k != "settings" and meeting.get(k) != v}
        if "recurrence" in patch and _same_rule(meeting.get("recurrence"), body["recurrence"]):
            del patch["recurrence"]   # the same rule sent again would be a new series: Zoom drops its moved occurrences
        if body["type"] == 3:
            patch.pop("start_time", None)
        settings = meeting.get("settings") or {}
        wanted_settings = {k: v for k, v in body["settings"].items() if settings.get(k) != v}
        if invitee_emails(meeting) == invitee_emails(body):
            # the same people (Zoom answers with more per invitee, e.g. internal_user): no write for them
            wanted_settings.pop("meeting_invitees", None)
        if wanted_settings:
            patch["settings"] = wanted_settings
        if patch:
            await self.api.request("PATCH", f"meetings/{item_id}", json=patch)
        after = {**meeting, **{k: v for k, v in patch.items() if k != "settings"},
                 "settings": {**settings, **body["settings"]}}
        if after.get("type") != 8:
            after.pop("recurrence", None)
            after.pop("occurrences", None)
        if after.get("type") == 3:
            after.pop("start_time", None)
        series_changed = any(meeting.get(k) != after.get(k) for k in ("recurrence", "start_time", "timezone"))
        if series_changed and after.get("type") == 8:
            after["occurrences"] = expand_occurrences(after, {})   # Zoom drops occurrence edits on a new rule
        final = await self._apply_occurrences(after, content, meeting)
        return self._result(final, notes, start_calls)

    async def _apply_occurrences(self, after: dict[str, Any], content: dict[str, Any],
                                 before: dict[str, Any]) -> dict[str, Any]:
        if after.get("type") != 8 or not after.get("recurrence"):
            return after
        current = {o["occurrence_id"]: o for o in after.get("occurrences") or expand_occurrences(after, {})}
        wanted = {o["occurrence_id"]: o for o in expand_occurrences(after, occurrence_edits(content, after))}
        for occ_id, want in wanted.items():
            have = current.get(occ_id)
            if have is None or have == want:
                continue
            if want["status"] == "deleted":
                await self._occurrence("DELETE", after["id"], occ_id)
            elif have["status"] == "deleted":
                continue   # Zoom cannot bring a deleted occurrence back
            else:
                await self._occurrence("PATCH", after["id"], occ_id,
                                       {"start_time": want["start_time"], "duration": want["duration"]})
            current[occ_id] = want if have["status"] != "deleted" else have
        after["occurrences"] = list(current.values())
        return after

    async def _occurrence(self, method: str, meeting_id: Any, occ_id: str, body: dict | None = None) -> None:
        try:
            await self.api.request(method, f"meetings/{meeting_id}", params={"occurrence_id": occ_id},
                                   json=body)
        except NotFound:
            pass   # the occurrence is gone already: nothing left to change

    def _result(self, meeting: dict[str, Any], notes: list[str], start_calls: int) -> WriteResult:
        item = self.normalize([meeting])
        assert item is not None
        return WriteResult(item.id, None, [meeting], item, notes, self.api.calls - start_calls)

    async def delete(self, item_id: str, etag: str | None) -> int:
        start_calls = self.api.calls
        try:
            await self.api.request("DELETE", f"meetings/{item_id}")
        except NotFound:
            pass   # already gone: the delete's goal holds
        return self.api.calls - start_calls

    # --- presence (not part of the calendar contract: the presence driver uses it) ----------------------
    async def get_presence(self) -> str | None:
        body = await self.api.json("GET", f"users/{self.user_id}/presence_status")
        return (body or {}).get("status")

    async def set_presence(self, status: str, dnd_minutes: int | None = None) -> None:
        """PUT the status; Do-Not-Disturb goes as the schema spells it (`Do_No_Disturb`) with a duration."""
        body: dict[str, Any] = {"status": status}
        if status == "Do_Not_Disturb":
            body = {"status": "Do_No_Disturb", "duration": dnd_minutes or 20}
        await self.api.request("PUT", f"users/{self.user_id}/presence_status", json=body)

    # --- polls (meetings-api.json) -----------------------------------------------------------------------
    async def list_polls(self, meeting_id: str) -> list[dict[str, Any]]:
        return (await self.api.json("GET", f"meetings/{meeting_id}/polls") or {}).get("polls") or []

    async def create_poll(self, meeting_id: str, poll: dict[str, Any]) -> dict[str, Any]:
        return await self.api.json("POST", f"meetings/{meeting_id}/polls", json=poll)

    async def update_poll(self, meeting_id: str, poll_id: str, poll: dict[str, Any]) -> None:
        await self.api.request("PUT", f"meetings/{meeting_id}/polls/{poll_id}", json=poll)

    async def delete_poll(self, meeting_id: str, poll_id: str) -> None:
        await self.api.request("DELETE", f"meetings/{meeting_id}/polls/{poll_id}")

    async def poll_results(self, meeting_id: str) -> list[dict[str, Any]]:
        """Who answered what, after the meeting (`/past_meetings/{id}/polls`)."""
        return (await self.api.json("GET", f"past_meetings/{meeting_id}/polls") or {}).get("questions") or []

    async def aclose(self) -> None:
        await self.api.aclose()
