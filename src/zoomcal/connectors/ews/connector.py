"""One Exchange calendar (on-premises or hosted) through Exchange Web Services, at a URL the admin gives.

exchangelib speaks SOAP; its calls are blocking, so each runs in a worker thread. Changes come from
`SyncFolderItems` (the sync state is the cursor; an invalid one means a full resync); changed items are read
with one batched `GetItem`, and the modified occurrences of a series with one more. Creates carry our event id in
an extended property, and a retried create first looks for it (`FindItem` on that property), so a create whose
answer was lost is found, not repeated. Updates send the item's ChangeKey with `NeverOverwrite`: a stale one is a
typed conflict. Occurrences are cancelled and moved through `OccurrenceItemId` (the master and the position of
the occurrence in the series).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import requests
from defusedxml.common import DefusedXmlException, DTDForbidden
from exchangelib import (
    BASIC,
    DELEGATE,
    NTLM,
    OAUTH2,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    EWSTimeZone,
    ExtendedProperty,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar, Root
from exchangelib.items import AUTO_RESOLVE, NEVER_OVERWRITE, SEND_TO_NONE
from exchangelib.properties import Attendee, DistinguishedFolderId, Fields, Mailbox, OccurrenceItemId
from exchangelib.protocol import BaseProtocol, FailFast
from exchangelib.util import ParseError
from exchangelib.version import EXCHANGE_2013_SP1

from zoomcal.connectors.base import ChangeSet, Item, WriteResult, typed_items
from zoomcal.connectors.ews.mapping import (
    FREE_BUSY_IN,
    FREE_BUSY_OUT,
    ews_time,
    exchange_month_days,
    graph_time,
    graph_to_recurrence,
    month_end_rule,
    recurrence_to_graph,
    utc_stamp,
    zone_of,
)
from zoomcal.connectors.ews.spec import AUTH_TYPES as AUTH_NAMES
from zoomcal.connectors.ews.spec import CAPABILITIES
from zoomcal.domain.recurrence import occurrence_starts
from zoomcal.domain.timeutil import fmt_instant, to_datetime
from zoomcal.errors import (
    AuthExpired,
    ConfigError,
    ConnectorError,
    CursorInvalid,
    InvalidItem,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Transient,
)
from zoomcal.mapping.graph import event_item_parts, event_write_body, exception_override
from zoomcal.mapping.rules import MappingRules
from zoomcal.net import Resolver, check_url, system_resolver

T = TypeVar("T")
AUTH_TYPES = dict(zip(AUTH_NAMES, (None, BASIC, NTLM, OAUTH2), strict=True))   # the spec names them
PAGE = 512   # SyncFolderItems' largest page
READ_FIELDS = ["subject", "text_body", "start", "end", "is_all_day", "legacy_free_busy_status", "location", "type",
               "recurrence", "modified_occurrences", "deleted_occurrences", "required_attendees", "optional_attendees",
               "organizer", "_start_timezone", "zoomcal_id"]
# EWS ResponseType as Graph's responseStatus.response (the Graph mapping reads the rest)
RESPONSE_TYPES = {"Unknown": "none", "NoResponseReceived": "notResponded", "Organizer": "organizer",
                  "Accept": "accepted", "Tentative": "tentativelyAccepted", "Decline": "declined"}


class ZoomcalId(ExtendedProperty):
    """Our event id on the item (a named property in zoomcal's own property set)."""

    property_set_id = "6f1c2b9e-4a3d-4f8e-9b7a-5d2c1e0f3a84"
    property_name = "zoomcal-event-id"
    property_type = "String"


if "zoomcal_id" not in {f.name for f in CalendarItem.FIELDS}:
    CalendarItem.register("zoomcal_id", ZoomcalId)


class NoDtdAdapter(requests.adapters.HTTPAdapter):
    """A SOAP message never carries a document type declaration (SOAP 1.1, section 3), so an answer that does is
    refused here, before exchangelib's forgiving parser sees it: entity tricks never reach the mapping."""

    def build_response(self, req, resp):
        response = super().build_response(req, resp)
        if b"<!DOCTYPE" in response.content.upper():
            raise DTDForbidden("SOAP", None, None)
        return response


BaseProtocol.HTTP_ADAPTER_CLS = NoDtdAdapter


def mailbox_calendar(account: Account, email: str) -> Calendar:
    """The mailbox's calendar folder, addressed by its distinguished id (no folder walk, no request)."""
    mailbox = Mailbox(email_address=email)
    root = Root(account=account, _distinguished_id=DistinguishedFolderId(id="root", mailbox=mailbox))
    return Calendar(root=root, _distinguished_id=DistinguishedFolderId(id="calendar", mailbox=mailbox))


def _credentials(auth: str, username: str | None, secret: str | None):
    if auth == "oauth":
        from exchangelib import OAuth2AuthorizationCodeCredentials
        from oauthlib.oauth2 import OAuth2Token

        return OAuth2AuthorizationCodeCredentials(access_token=OAuth2Token({"access_token": secret or "",
                                                                            "token_type": "Bearer"}))
    return Credentials(username or "", secret or "")


def _translate(exc: Exception) -> Exception:
    """exchangelib's errors as the typed family the engine acts on."""
    if isinstance(exc, ews_errors.ErrorItemNotFound):
        return NotFound("item not found")
    if isinstance(exc, ews_errors.ErrorIrresolvableConflict | ews_errors.ErrorChangeKeyRequiredForWriteOperations):
        return PreconditionFailed("the item changed since it was read (ChangeKey)")
    if isinstance(exc, ews_errors.ErrorInvalidSyncStateData | ews_errors.ErrorSyncFolderNotFound):
        return CursorInvalid("sync state no longer valid")
    if isinstance(exc, ews_errors.ErrorServerBusy):
        return RateLimited("Exchange is throttling (ErrorServerBusy)", exc.back_off or 1.0)   # seconds
    if isinstance(exc, ews_errors.UnauthorizedError):
        return AuthExpired("Exchange refused the credentials")
    if isinstance(exc, ews_errors.ErrorTimeoutExpired | ews_errors.RateLimitError):
        return Transient(f"Exchange: {type(exc).__name__}")
    if isinstance(exc, ews_errors.ResponseMessageError):
        return InvalidItem(f"Exchange refused the request: {type(exc).__name__}: {exc}")
    if isinstance(exc, ews_errors.TransportError | OSError):
        return Transient(f"Exchange unreachable: {type(exc).__name__}")
    if isinstance(exc, ParseError | DefusedXmlException | SyntaxError):
        return InvalidItem(f"Exchange answered with XML zoomcal refuses ({type(exc).__name__})")
    if isinstance(exc, ConnectorError):
        return exc
    return ConnectorError(f"Exchange: {type(exc).__name__}: {exc}")


def _recipient(mailbox: Mailbox | None) -> dict[str, Any] | None:
    if mailbox is None or not mailbox.email_address:
        return None
    return {"emailAddress": {"address": mailbox.email_address, "name": mailbox.name or ""}}


def _attendees(attendees: list[Attendee] | None, kind: str) -> list[dict[str, Any]]:
    """Required or optional attendees as Graph's attendees[] (address, name, type, answer)."""
    return [{**recipient, "type": kind, "status": {"response": RESPONSE_TYPES.get(a.response_type or "", "none")}}
            for a in attendees or [] if (recipient := _recipient(a.mailbox))]


class Invitee(Attendee):
    """An attendee as zoomcal writes it: without ResponseType (exchangelib would send "Unknown"); only the
    attendee answers, and Exchange keeps the answer."""

    FIELDS = Fields(*(f for f in Attendee.FIELDS if f.name != "response_type"))


def _write_attendees(attendees: Iterable[dict[str, Any]]) -> list[Attendee] | None:
    return [Invitee(mailbox=Mailbox(email_address=a["emailAddress"]["address"],
                                    name=a["emailAddress"].get("name") or None)) for a in attendees] or None


def _in_exchange_order(ops: list[tuple[int, dict[str, Any] | None]],
                       now: Mapping[int, str]) -> list[tuple[int, dict[str, Any] | None]]:
    """Occurrence changes in an order Exchange accepts: a moved occurrence may not cross its neighbours as they
    stand (ErrorOccurrenceCrossingBoundary), so cancellations come first, then the occurrences moved later from
    the last one back, then those moved earlier from the first one on. `now`: position -> current start."""
    def start(op: tuple[int, dict[str, Any] | None]) -> datetime:
        return to_datetime(now[op[0]])

    moves = [op for op in ops if op[1] is not None]
    later = sorted((op for op in moves if to_datetime(op[1]["start"]) > start(op)), key=start, reverse=True)
    earlier = sorted((op for op in moves if op not in later), key=start)
    return [op for op in ops if op[1] is None] + later + earlier


class EwsConnector:
    name = "ews"
    capabilities = CAPABILITIES

    def __init__(self, url: str, email: str, rules: MappingRules, *, username: str | None = None,
                 secret: str | None = None, auth: str = "auto", allow_private: bool = False,
                 resolve: Resolver = system_resolver, version: Version | None = None):
        if auth not in AUTH_TYPES:
            raise ConfigError(f"unknown EWS authentication {auth!r}; one of {sorted(AUTH_TYPES)}")
        self.url = check_url(url, allow_private, resolve)
        self.rules = rules
        self.calls = 0
        config = Configuration(service_endpoint=url, credentials=_credentials(auth, username, secret),
                               auth_type=AUTH_TYPES[auth], version=version or Version(build=EXCHANGE_2013_SP1),
                               retry_policy=FailFast(), max_connections=2)
        self.account = Account(email, config=config, autodiscover=False, access_type=DELEGATE,
                               default_timezone=EWSTimeZone("UTC"))
        self.folder = mailbox_calendar(self.account, email)

    async def _run(self, fn: Callable[[], T], requests: int = 1) -> T:
        self.calls += requests
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:   # noqa: BLE001 — every exchangelib error becomes one of ours
            raise _translate(exc) from exc

    # --- reading -------------------------------------------------------------------------------------
    def raw_item(self, item: CalendarItem, exceptions: Mapping[str, CalendarItem]) -> dict[str, Any]:
        """The item as Graph-shaped JSON (for the shared mapping and the mirror)."""
        master = item.type == "RecurringMaster"
        modified = []
        for occ in item.modified_occurrences or []:
            exc = exceptions.get(occ.id)
            modified.append({"originalStart": utc_stamp(occ.original_start),
                             "start": graph_time(occ.start), "end": graph_time(occ.end),
                             "subject": exc.subject if exc is not None else None})
        return {
            "id": item.id, "changeKey": item.changekey, "type": "seriesMaster" if master else "singleInstance",
            "subject": item.subject or "", "body": {"contentType": "text", "content": str(item.text_body or "")},
            "isAllDay": bool(item.is_all_day), "start": graph_time(item.start), "end": graph_time(item.end),
            "originalStartTimeZone": zone_of(item),
            "showAs": FREE_BUSY_IN.get(item.legacy_free_busy_status or "Busy", "busy"),
            "location": {"displayName": item.location or ""},
            "attendees": [*_attendees(item.required_attendees, "required"),
                          *_attendees(item.optional_attendees, "optional")],
            "organizer": _recipient(item.organizer),
            "recurrence": recurrence_to_graph(item.recurrence) if master and item.recurrence else None,
            "transactionId": item.zoomcal_id,
            "modified": modified,
            "deleted": [utc_stamp(d.start) for d in item.deleted_occurrences or []],
        }

    def _fetch(self, ids: list[tuple[str, str | None]], fields: list[str]) -> list[Any]:
        """Items (or per-item errors) for ids, in order. When one item cannot be read (an unknown zone, a value
        exchangelib refuses), the batch is read again one by one so only that item fails."""
        try:
            return list(self.account.fetch(ids=ids, folder=self.folder, only_fields=fields))
        except (ews_errors.TransportError, ews_errors.UnauthorizedError):
            raise
        except Exception as exc:   # noqa: BLE001 — a value in one item; find which
            if len(ids) == 1:
                return [InvalidItem(f"Exchange item cannot be read: {type(exc).__name__}: {exc}")]
            self.calls += len(ids)
            return [one for pair in ids for one in self._fetch([pair], fields)]

    def _read(self, ids: list[tuple[str, str | None]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Full items for ids (blocking): (raws, ids that are gone). An item that cannot be read comes back as a
        raw that normalize() rejects with the reason."""
        found, gone, bad = [], [], []
        for (item_id, changekey), item in zip(ids, self._fetch(ids, READ_FIELDS), strict=True):
            if isinstance(item, ews_errors.ErrorItemNotFound):
                gone.append(item_id)
            elif isinstance(item, InvalidItem):
                bad.append({"id": item_id, "changeKey": changekey, "invalid": str(item)})
            elif isinstance(item, Exception):
                raise item
            elif getattr(item, "_start_timezone", None) is None:   # exchangelib leaves a zone it cannot map unset
                bad.append({"id": item_id, "changeKey": changekey, "invalid": "the item's time zone (StartTimeZone) "
                            "is missing or unknown; it is not read as UTC"})
            else:
                found.append(item)
        occurrence_ids = [(o.id, o.changekey) for i in found for o in i.modified_occurrences or []]
        exceptions = {}
        if occurrence_ids:
            self.calls += 1
            exceptions = {e.id: e for e in self.account.fetch(ids=occurrence_ids, folder=self.folder,
                                                              only_fields=["subject"]) if isinstance(e, CalendarItem)}
        return [self.raw_item(i, exceptions) for i in found] + bad, gone

    def _sync(self, cursor: str | None) -> tuple[dict[str, str | None], list[str], str]:
        self.folder.item_sync_state = None
        touched: dict[str, str | None] = {}
        removed: list[str] = []
        for change, item in self.folder.sync_items(sync_state=cursor or None, only_fields=["changekey"],
                                                   max_changes_returned=PAGE):
            if change == "delete":
                removed.append(item.id)
                touched.pop(item.id, None)
            elif change in ("create", "update"):
                touched[item.id] = item.changekey
        return touched, removed, self.folder.item_sync_state

    async def changes(self, cursor: str | None, mirror: Mapping[str, dict[str, Any]]) -> ChangeSet:
        start_calls = self.calls
        touched, removed, new_cursor = await self._run(lambda: self._sync(cursor))
        wanted = [(i, ck) for i, ck in touched.items() if (mirror.get(i) or {}).get("changeKey") != ck]
        changed: list[dict[str, Any]] = []
        if wanted:
            changed, gone = await self._run(lambda: self._read(wanted))
            removed += gone
        present = None if cursor else set(touched) - set(removed)
        return ChangeSet(changed, removed, new_cursor, present, self.calls - start_calls)

    def raw_id(self, raw: dict[str, Any]) -> str:
        return raw["id"]

    def series_key(self, raw: dict[str, Any]) -> str:
        return raw["id"]

    def planned_id(self, key: str) -> str | None:
        return None   # Exchange assigns ids; our extended property makes a retried create find the first one

    @typed_items
    def normalize(self, raws: list[dict[str, Any]]) -> Item | None:
        if not raws:
            return None
        raw = raws[0]
        if raw.get("invalid"):
            raise InvalidItem(raw["invalid"])
        content, peer_ref, wants_peer = event_item_parts(raw, self.rules)
        if content.get("rrule") and raw.get("recurrence"):
            content["rrule"] = month_end_rule(content["rrule"], raw["recurrence"]["pattern"])
        if content.get("rrule"):
            content["exdates"] = sorted(raw["deleted"])
            overrides = {}
            for occ in raw["modified"]:
                override = exception_override(content, occ["originalStart"], occ["start"], occ["end"],
                                              occ.get("subject"))
                if override is not None:
                    overrides[occ["originalStart"]] = override
            content["overrides"] = dict(sorted(overrides.items()))
        return Item(raw["id"], content, etag=raw["changeKey"], marker=raw.get("transactionId"), peer_ref=peer_ref,
                    wants_peer=wants_peer)

    async def get(self, item_id: str) -> list[dict[str, Any]]:
        raws, _gone = await self._run(lambda: self._read([(item_id, None)]))
        if not raws:
            raise NotFound(f"no item {item_id}")
        return raws

    # --- writing -------------------------------------------------------------------------------------
    def _fill(self, item: CalendarItem, content: dict[str, Any],
              held: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
        """Set the item's fields from content: (fields set, what Exchange could not keep); `held` is the item as
        it is now (Graph-shaped), for what the content does not know of an attendee."""
        content, notes = exchange_month_days(content)
        event, more = event_write_body(content, self.rules, held)
        notes += more
        all_day = bool(event["isAllDay"])
        item.subject = event["subject"]
        item.body = event["body"]["content"]
        item.is_all_day = all_day
        item.start = ews_time(event["start"], all_day)
        item.end = ews_time(event["end"], all_day)
        item.legacy_free_busy_status = FREE_BUSY_OUT.get(event["showAs"], "Busy")
        item.location = (event.get("location") or {}).get("displayName") or None
        item.required_attendees = _write_attendees(a for a in event["attendees"] if a["type"] != "optional")
        item.optional_attendees = _write_attendees(a for a in event["attendees"] if a["type"] == "optional")
        item.recurrence = None
        if event.get("recurrence"):
            item.recurrence, why = graph_to_recurrence(event["recurrence"])
            if item.recurrence is None:
                notes.append(f"recurrence not kept in Exchange ({why}): only the first occurrence is written")
        fields = ["subject", "body", "is_all_day", "start", "end", "legacy_free_busy_status", "location",
                  "required_attendees", "optional_attendees", "recurrence"]
        return fields, notes

    async def create(self, content: dict[str, Any], key: str, maybe_exists: bool = False) -> WriteResult:
        start_calls = self.calls
        if maybe_exists:
            earlier = await self._run(lambda: list(self.folder.filter(zoomcal_id=key).values_list("id", "changekey")))
            if earlier:   # the first attempt got through: bring it to what we want instead of creating twice
                current = await self.get(earlier[0][0])
                result = await self.update(earlier[0][0], content, None, key, current)
                result.notes = ["found the item created earlier (our id in its extended property)", *result.notes]
                result.api_calls = self.calls - start_calls
                return result
        item = CalendarItem(account=self.account, folder=self.folder, zoomcal_id=key)
        _fields, notes = self._fill(item, content)
        await self._run(lambda: item.save(send_meeting_invitations=SEND_TO_NONE))
        return await self._finish(item.id, content, notes, start_calls)

    async def update(self, item_id: str, content: dict[str, Any], etag: str | None, key: str,
                     current: list[dict[str, Any]]) -> WriteResult:
        start_calls = self.calls
        changekey = etag or (current[0]["changeKey"] if current else (await self.get(item_id))[0]["changeKey"])
        item = CalendarItem(account=self.account, folder=self.folder, id=item_id, changekey=changekey)
        fields, notes = self._fill(item, content, current[0] if current else None)
        if current and current[0].get("recurrence") == (recurrence_to_graph(item.recurrence) if item.recurrence
                                                        else None):
            fields.remove("recurrence")   # a rewritten rule drops the series' exceptions in Exchange
        await self._run(lambda: item.save(update_fields=fields, conflict_resolution=NEVER_OVERWRITE,
                                          send_meeting_invitations=SEND_TO_NONE))
        return await self._finish(item_id, content, notes, start_calls)

    async def _finish(self, item_id: str, content: dict[str, Any], notes: list[str],
                      start_calls: int) -> WriteResult:
        """Bring the occurrences in line (cancel, move, put back), then read the series as it now stands."""
        raws = await self.get(item_id)
        raw = raws[0]
        if raw.get("recurrence"):
            have = self.normalize(raws)
            assert have is not None
            bare = {**have.content, "exdates": [], "rdates": [], "overrides": {}}
            position = {rid: n for n, rid in enumerate(occurrence_starts(bare), start=1)}
            ops: list[tuple[int, dict[str, Any] | None]] = []
            for rid in sorted(set(content.get("exdates") or ()) - set(raw["deleted"])):
                if rid in position:
                    ops.append((position[rid], None))
            restored = set(raw["deleted"]) - set(content.get("exdates") or ())
            if restored:
                notes.append(f"Exchange cannot bring back a cancelled occurrence ({', '.join(sorted(restored))})")
            wanted = content.get("overrides") or {}
            for rid in sorted(set(wanted) | set(have.content["overrides"])):
                if rid in raw["deleted"] or rid not in position:
                    continue
                target = wanted.get(rid) or {"start": rid, "end": fmt_instant(to_datetime(rid) + (
                    to_datetime(content["end"]) - to_datetime(content["start"])))}
                title = target.get("title", content["title"])
                now = have.content["overrides"].get(rid)
                if now is None or (now["start"], now["end"], now.get("title", content["title"])) != \
                        (target["start"], target["end"], title):
                    ops.append((position[rid], {**target, "title": title}))
            if ops:
                ops = _in_exchange_order(ops, {n: (have.content["overrides"].get(rid) or {}).get("start", rid)
                                               for rid, n in position.items()})
                await self._run(lambda: self._occurrences(item_id, raw["changeKey"], ops), requests=len(ops))
                raws = await self.get(item_id)
        item = self.normalize(raws)
        assert item is not None
        return WriteResult(item.id, item.etag, raws, item, notes, self.calls - start_calls)

    def _occurrences(self, master_id: str, changekey: str, ops: list[tuple[int, dict[str, Any] | None]]) -> None:
        for index, target in ops:
            occ = CalendarItem(account=self.account, folder=self.folder,
                               _id=OccurrenceItemId(id=master_id, changekey=changekey, instance_index=index))
            if target is None:
                try:
                    occ.delete(send_meeting_cancellations=SEND_TO_NONE)
                except ews_errors.ErrorCalendarOccurrenceIsDeletedFromRecurrence:
                    pass
                continue
            occ.subject = target["title"]
            occ.start = to_datetime(target["start"]).astimezone(EWSTimeZone("UTC"))
            occ.end = to_datetime(target["end"]).astimezone(EWSTimeZone("UTC"))
            occ.save(update_fields=["subject", "start", "end"], conflict_resolution=AUTO_RESOLVE,
                     send_meeting_invitations=SEND_TO_NONE)

    async def delete(self, item_id: str, etag: str | None) -> int:
        start_calls = self.calls
        item = CalendarItem(account=self.account, folder=self.folder, id=item_id, changekey=etag or None)
        try:
            await self._run(lambda: item.delete(send_meeting_cancellations=SEND_TO_NONE))
        except NotFound:
            pass
        return self.calls - start_calls

    async def free_busy(self, emails: list[str], start: datetime, end: datetime) -> dict[str, list[tuple]]:
        """Busy blocks of mailboxes (GetUserAvailability): {email: [(start, end, status)]}, UTC."""
        def ask():
            accounts = [(e, "Required", False) for e in emails]
            tz = EWSTimeZone("UTC")
            views = self.account.protocol.get_free_busy_info(
                accounts=accounts, start=start.astimezone(tz), end=end.astimezone(tz), requested_view="Detailed")
            out = {}
            for email, view in zip(emails, views, strict=True):
                if isinstance(view, Exception):
                    raise view
                out[email] = [(to_datetime(utc_stamp(e.start)), to_datetime(utc_stamp(e.end)),
                               FREE_BUSY_IN.get(e.busy_type, "busy")) for e in view.calendar_events or []]
            return out
        return await self._run(ask, requests=2)

    async def probe(self) -> None:
        """One cheap request that proves the URL, the credentials and the mailbox (raises a typed error)."""
        await self._run(lambda: list(self.folder.filter(zoomcal_id="-").values_list("id")))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.account.protocol.close)
