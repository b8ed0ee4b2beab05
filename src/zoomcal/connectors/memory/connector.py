"""The reference connector: one calendar held in memory, lossless, with a version-number change feed.

Tests lean on it; it is also the smallest complete example of the contract.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zoomcal.connectors.base import Capabilities, ChangeSet, Item, WriteResult, typed_items
from zoomcal.domain.content import make_content
from zoomcal.errors import Conflict, CursorInvalid, NotFound, PreconditionFailed


@dataclass
class MemoryCalendar:
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)
    version: int = 0
    oldest_cursor: int = 0
    ids: Any = field(default_factory=lambda: itertools.count(1))
    calls: int = 0

    def put(self, content: dict[str, Any], item_id: str | None = None, **flags: Any) -> dict[str, Any]:
        self.version += 1
        item_id = item_id or f"m{next(self.ids)}"
        raw = {"id": item_id, "etag": f"v{self.version}", "version": self.version,
               "content": make_content(**content), "marker": flags.get("marker"),
               "peer_ref": flags.get("peer_ref"), "wants_peer": flags.get("wants_peer", True)}
        self.items[item_id] = raw
        self.tombstones.pop(item_id, None)
        return raw

    def remove(self, item_id: str) -> None:
        self.version += 1
        del self.items[item_id]
        self.tombstones[item_id] = self.version


class MemoryConnector:
    name = "memory"
    capabilities = Capabilities(incremental=True, max_page_size=10**9)

    def __init__(self, calendar: MemoryCalendar | None = None, wants_peer: bool = True):
        self.calendar = calendar or MemoryCalendar()
        self.default_wants_peer = wants_peer

    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet:
        cal = self.calendar
        cal.calls += 1
        if cursor is None:
            return ChangeSet([copy.deepcopy(r) for r in cal.items.values()], [], str(cal.version),
                             present=set(cal.items), api_calls=1)
        since = int(cursor)
        if since < cal.oldest_cursor:
            raise CursorInvalid("cursor too old")
        changed = [copy.deepcopy(r) for r in cal.items.values() if r["version"] > since]
        removed = [i for i, v in cal.tombstones.items() if v > since]
        return ChangeSet(changed, removed, str(cal.version), api_calls=1)

    def raw_id(self, raw: dict[str, Any]) -> str:
        return raw["id"]

    def series_key(self, raw: dict[str, Any]) -> str:
        return raw["id"]

    def planned_id(self, key: str) -> str | None:
        return "k-" + key

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        if not raws:
            return None
        raw = raws[0]
        return Item(raw["id"], raw["content"], etag=raw["etag"], marker=raw.get("marker"),
                    peer_ref=raw.get("peer_ref"), wants_peer=raw.get("wants_peer", True))

    async def get(self, item_id: str) -> list[dict[str, Any]]:
        self.calendar.calls += 1
        if item_id not in self.calendar.items:
            raise NotFound(item_id)
        return [copy.deepcopy(self.calendar.items[item_id])]

    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        cal = self.calendar
        cal.calls += 1
        item_id = "k-" + key
        if item_id in cal.items:
            if not maybe_exists:
                raise Conflict(item_id)
            return await self.update(item_id, content, None, key, [])
        raw = cal.put(content, item_id, marker=key, wants_peer=self.default_wants_peer)
        return self._result(raw)

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        cal = self.calendar
        cal.calls += 1
        raw = cal.items.get(item_id)
        if raw is None:
            raise NotFound(item_id)
        if etag is not None and raw["etag"] != etag:
            raise PreconditionFailed(item_id)
        if raw["content"] == make_content(**content):
            return self._result(raw)
        raw = cal.put(content, item_id, marker=raw.get("marker") or key, peer_ref=raw.get("peer_ref"),
                      wants_peer=raw.get("wants_peer", True))
        return self._result(raw)

    def _result(self, raw: dict[str, Any]) -> WriteResult:
        raw = copy.deepcopy(raw)
        item = self.normalize([raw])
        assert item is not None
        return WriteResult(item.id, item.etag, [raw], item, [], 1)

    async def delete(self, item_id: str, etag: str | None) -> int:
        cal = self.calendar
        cal.calls += 1
        raw = cal.items.get(item_id)
        if raw is None:
            return 1
        if etag is not None and raw["etag"] != etag:
            raise PreconditionFailed(item_id)
        cal.remove(item_id)
        return 1

    async def aclose(self) -> None:
        return None
