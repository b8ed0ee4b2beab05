"""The connector contract: everything the sync engine needs from one calendar, and nothing more.

A connector speaks its provider's protocol and maps raw items to canonical content; it knows nothing of
links, events or the other side. Quirks stay in its own folder.

* `changes(cursor, mirror)` lists what changed since `cursor` (None = everything) as raw provider items.
  `mirror` is what the engine stored from earlier listings, so a connector whose API has no change feed
  can skip fetching what it already has.
* `normalize(raws)` turns the raw items of one series (a master and its exceptions) into an `Item`.
* `planned_id(key)` names the id a create will get when the provider accepts client-chosen ids.
* `create` / `update` / `delete` write; each returns what the provider now holds so our own writes are
  recognised when they come back in the next listing (no echo loops).
* Every failure is one of the typed errors in `zoomcal.errors`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from zoomcal.domain.content import content_hash
from zoomcal.errors import InvalidItem


@dataclass(frozen=True)
class Capabilities:
    recurrence: bool = True
    occurrence_edits: bool = True  # can hold moved / changed occurrences (else they are left out, with a note)
    markers: bool = True           # keeps our event id on the item
    incremental: bool = True       # has a change cursor (otherwise every listing is complete)
    push: bool = False
    max_page_size: int = 250
    writes_per_day: int | None = None   # provider cap on creates + updates per account and UTC day
    writable: bool = True               # False: a read-only source (an ICS feed); never written
    sends_invitations: bool = False     # the provider invites an event's attendees itself when the organizer's
                                        # event is written (Outlook does), so zoomcal sends no e-mail of its own


@dataclass(frozen=True)
class Item:
    """One normalized item (a whole series) as a side currently holds it."""

    id: str
    content: dict[str, Any]
    etag: str | None = None
    marker: str | None = None       # our event id, found on the item (idempotency marker)
    peer_ref: str | None = None     # id of the counterpart on the other side this item points at
    wants_peer: bool = True         # should a counterpart be created on the other side?
    hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", content_hash(self.content))


@dataclass
class ChangeSet:
    changed: list[dict[str, Any]]             # raw items, new or modified
    removed: list[str]                        # raw ids that are gone
    cursor: str | None                        # the cursor to store once the run's outcome is recorded
    present: set[str] | None = None           # complete listing: every raw id that exists now
    api_calls: int = 0
    notes: list[str] = field(default_factory=list)   # what the listing could not finish (said in the sync log)


@dataclass
class WriteResult:
    id: str
    etag: str | None
    raws: list[dict[str, Any]]                # what the provider now holds for the series (for the mirror)
    item: Item
    notes: list[str] = field(default_factory=list)
    api_calls: int = 0


class Connector(Protocol):
    name: str
    capabilities: Capabilities

    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet: ...

    def raw_id(self, raw: dict[str, Any]) -> str: ...

    def series_key(self, raw: dict[str, Any]) -> str: ...

    def normalize(self, raws: list[dict[str, Any]]) -> Item | None: ...

    def planned_id(self, key: str) -> str | None:
        """The id a create with this key will get, when the provider lets us choose it (else None)."""
        ...

    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult: ...

    async def update(
        self, item_id: str, content: dict[str, Any], etag: str | None, key: str, current: list[dict[str, Any]]
    ) -> WriteResult: ...

    async def delete(self, item_id: str, etag: str | None) -> int: ...

    async def get(self, item_id: str) -> list[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


# what a parser or a lookup raises on an item that is not shaped as its vendor documents it
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, UnicodeError,
              RecursionError, OSError, ArithmeticError)


def typed_items(normalize: Callable[[Any, list[dict[str, Any]]], Item | None]):
    """For a connector's `normalize`: an item that trips the mapping (a field of the wrong type, a value no
    parser takes) is an InvalidItem naming what went wrong, rejected alone like any other bad item."""
    @functools.wraps(normalize)
    def wrapper(self: Any, raws: list[dict[str, Any]]) -> Item | None:
        try:
            return normalize(self, raws)
        except UNREADABLE as exc:
            raise InvalidItem(f"unreadable item ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return wrapper
