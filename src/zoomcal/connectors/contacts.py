"""The contact-source contract: everything the contacts service needs from one directory or address book.

A contact source speaks its provider's protocol (Zoom's users, Google People, Microsoft Graph's directory,
contacts and people, a CardDAV address book) and turns raw records into `ContactRecord`s; it knows nothing of
persons, merging or zoomcal users. Which records are one human is decided by the contacts service
(zoomcal.contacts), from the addresses a record carries: a source reports every address it holds, as given,
and leaves validating and normalising them to the service (a record without a usable address is still
reported, so the service can say why it was left out).

* `changes(cursor)` lists what changed since `cursor` (None = everything). The cursor is the source's own
  opaque text (several sync tokens in one, if it reads several collections). When a provider says the cursor
  has expired, the source lists everything again itself and says so with `complete=True`.
* With `complete=True` the listing holds every record the source has now: a record the store holds from
  this source that is not listed is gone.
* `rejected` names records the source could not read at all (not an object, no id), each with its reason.
* `features` says which provider scopes each feature of the source needs, so linking asks for only those
  and the contacts service can compare them with what was granted.
* Every failure is one of the typed errors in `zoomcal.errors` (an expired cursor is handled, not raised).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# the kinds of record a source reports (what a record is, to the person who sees it)
USER = "user"              # a member of the organisation's account (Zoom users, the Graph / Workspace directory)
CONTACT = "contact"        # a contact the person saved (Google contacts, Outlook contacts, a vCard)
OTHER = "other"            # someone the person wrote to, saved by the provider (Google "other contacts")
RELEVANT = "relevant"      # someone the provider ranks as relevant to the person (Graph /people)
KINDS = (USER, CONTACT, OTHER, RELEVANT)


@dataclass(frozen=True)
class ContactRecord:
    """One record as a source holds it. `record_id` is stable within the source (and unique across its
    collections: a source reading several prefixes them)."""

    record_id: str
    kind: str
    emails: tuple[str, ...]                 # every address the record holds, as given, the primary one first
    display_name: str = ""
    given_name: str = ""
    family_name: str = ""
    zoom_user_id: str | None = None         # a Zoom user's id (Zoom's users only)
    timezone: str | None = None             # an IANA zone where the source knows it
    presence: str | None = None             # the live status where the source has one (Zoom: Available, Busy...)
    phones: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()            # the source's groups the record belongs to (Zoom contact groups...)
    etag: str | None = None                 # the source's version of the record, where it has one


@dataclass
class ContactChanges:
    records: list[ContactRecord]                                    # new or changed
    removed: list[str] = field(default_factory=list)                # record ids deleted at the source
    cursor: str | None = None                                       # where the next listing starts
    complete: bool = False                                          # a full listing (see the module text)
    rejected: list[tuple[str, str]] = field(default_factory=list)   # (record id or "", reason)
    api_calls: int = 0


class ContactSource(Protocol):
    """A source may also have `directory` (a key: sources with one key list the same records, so one is read) and
    `async directory_key()` when the key takes a call to learn (the caller keeps the answer)."""

    name: str
    features: Mapping[str, tuple[str, ...]]     # feature -> the provider scopes it needs

    async def changes(self, cursor: str | None) -> ContactChanges: ...

    async def aclose(self) -> None: ...


class Listing:
    """What one round of a source read, across its collections: the last word on each record (a later change
    replaces an earlier one; None: removed) and the records it could not read."""

    def __init__(self) -> None:
        self.latest: dict[str, ContactRecord | None] = {}
        self.rejected: list[tuple[str, str]] = []

    def put(self, record_id: str, record: ContactRecord | None) -> None:
        self.latest.pop(record_id, None)
        self.latest[record_id] = record

    def changes(self, cursor: str | None, complete: bool, calls: int) -> ContactChanges:
        return ContactChanges([r for r in self.latest.values() if r is not None],
                              [] if complete else [i for i, r in self.latest.items() if r is None],
                              cursor, complete, self.rejected, calls)
