"""Offline emulator of the Exchange Web Services operations zoomcal uses, on one calendar folder per mailbox.

POST `/ews/EWS/Exchange.asmx` with a SOAP envelope: CreateItem, GetItem, UpdateItem, DeleteItem, FindItem
(restricted to one extended property), SyncFolderItems, GetUserAvailability and GetServerTimeZones (UTC).
Behaviour follows the documented one: ids and ChangeKeys are the server's; `NeverOverwrite` with a stale
ChangeKey is ErrorIrresolvableConflict; a recurring master lists its ModifiedOccurrences and DeletedOccurrences;
an occurrence is addressed by its master and its 1-based position in the series (OccurrenceItemId), a deleted
one answers ErrorCalendarOccurrenceIsDeletedFromRecurrence; setting a new Recurrence drops the series'
exceptions; changes to an occurrence are an Update of the master in SyncFolderItems; an unknown sync state is
ErrorInvalidSyncStateData. Requests are parsed with defusedxml. Basic and Bearer authentication.
"""

from __future__ import annotations

import base64
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from xml.etree.ElementTree import Element, tostring
from xml.sax.saxutils import escape, quoteattr

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from fastapi import FastAPI, Request, Response

from zoomcal.domain.content import make_content
from zoomcal.domain.recurrence import occurrence_starts
from zoomcal.domain.timeutil import UTC, fmt_instant, iana_name, to_datetime
from zoomcal.mapping.graph import recurrence_to_rrule

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
PATTERNS = {"DailyRecurrence": "daily", "WeeklyRecurrence": "weekly", "AbsoluteMonthlyRecurrence": "absoluteMonthly",
            "RelativeMonthlyRecurrence": "relativeMonthly", "AbsoluteYearlyRecurrence": "absoluteYearly",
            "RelativeYearlyRecurrence": "relativeYearly"}
DAY_WORDS = {"Day": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
             "Weekday": ["monday", "tuesday", "wednesday", "thursday", "friday"], "WeekendDay": ["saturday", "sunday"]}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


# what GetServerTimeZones answers for UTC (free/busy questions are asked in UTC)
UTC_DEFINITION = ('<t:TimeZoneDefinition Id="UTC" Name="(UTC) Coordinated Universal Time"><t:Periods>'
                  '<t:Period Bias="PT0M" Name="Standard" Id="trule:Microsoft/Registry/UTC/1-Standard"/></t:Periods>'
                  '<t:TransitionsGroups><t:TransitionsGroup Id="0"><t:Transition><t:To Kind="Period">'
                  'trule:Microsoft/Registry/UTC/1-Standard</t:To></t:Transition></t:TransitionsGroup>'
                  '</t:TransitionsGroups><t:Transitions><t:Transition><t:To Kind="Group">0</t:To></t:Transition>'
                  '</t:Transitions></t:TimeZoneDefinition>')


# what a hostile server might send: entities that expand to gigabytes if a parser resolves them
BOMB = ('<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;'
        '&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        f'<s:Envelope xmlns:s="{S}"><s:Body><m:SyncFolderItemsResponse xmlns:m="{M}">&d;&d;&d;'
        '</m:SyncFolderItemsResponse></s:Body></s:Envelope>')


class EwsFault(Exception):
    def __init__(self, code: str, text: str = ""):
        super().__init__(code)
        self.code, self.text = code, text or code


@dataclass
class EwsState:
    passwords: dict[str, str] = field(default_factory=dict)        # mailbox -> password (Basic)
    bearer: dict[str, str] = field(default_factory=dict)           # access token -> mailbox
    items: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)   # mailbox -> id -> item
    changes: dict[str, list[tuple[int, str]]] = field(default_factory=dict)     # mailbox -> [(seq, id)]
    seq: int = 0
    epoch: str = field(default_factory=lambda: secrets.token_hex(3))   # new epoch: every sync state is unknown
    requests: dict[str, int] = field(default_factory=dict)             # operation -> count
    hostile: int = 0                   # answer the next N requests with an entity-expansion bomb (a test hook)
    busy: int = 0                      # answer the next N requests with ErrorServerBusy (throttling)
    lose: dict[str, int] = field(default_factory=dict)   # operation -> N: carry it out, then lose the answer
    back_off_ms: int = 1500
    lock: threading.RLock = field(default_factory=threading.RLock)

    def add_mailbox(self, email: str, password: str | None = None) -> str:
        password = password or secrets.token_urlsafe(12)
        self.passwords[email] = password
        self.items.setdefault(email, {})
        self.changes.setdefault(email, [])
        return password

    def forget_sync_states(self) -> None:
        self.epoch = secrets.token_hex(3)

    def touch(self, mailbox: str, item: dict[str, Any]) -> None:
        self.seq += 1
        item["ck"] = f"DwAAAB{self.seq:08d}"
        self.changes[mailbox].append((self.seq, item["id"]))


# --- parsing -----------------------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: Element, name: str) -> Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _text(elem: Element, name: str, default: str = "") -> str:
    found = _child(elem, name)
    return (found.text or "") if found is not None else default


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _apply_fields(item: dict[str, Any], elem: Element) -> None:
    """Copy the CalendarItem fields present in `elem` onto the stored item."""
    for c in elem:
        name = _local(c.tag)
        if name == "Subject":
            item["subject"] = c.text or ""
        elif name in ("Body", "TextBody"):
            item["body"] = c.text or ""
        elif name in ("Start", "End"):
            item[name.lower()] = _when(c.text or "")
        elif name == "IsAllDayEvent":
            item["all_day"] = (c.text or "").strip().lower() in ("true", "1")
        elif name == "LegacyFreeBusyStatus":
            item["fb"] = c.text or "Busy"
        elif name == "Location":
            item["location"] = c.text or ""
        elif name == "StartTimeZone":
            item["tz"] = c.get("Id") or "UTC"
        elif name == "Recurrence":
            item["recurrence"] = c
            item["deleted"], item["exceptions"] = set(), {}
        elif name == "RequiredAttendees":
            item["attendees"] = c
        elif name == "OptionalAttendees":
            item["optional_attendees"] = c
        elif name == "ExtendedProperty":
            uri = _child(c, "ExtendedFieldURI")
            if uri is not None:
                item["ext"][_prop_key(uri)] = _text(c, "Value")


def _keep_answers(item: dict[str, Any], target: dict[str, Any]) -> None:
    """An answer is the attendee's: rewritten attendee lists without a ResponseType keep the answer each attendee
    who stays invited gave (as Exchange does)."""
    answers: dict[str, Element] = {}
    for key in ("attendees", "optional_attendees"):
        for attendee in item.get(key) if item.get(key) is not None else []:
            mailbox, answer = _child(attendee, "Mailbox"), _child(attendee, "ResponseType")
            if mailbox is not None and answer is not None:
                answers[_text(mailbox, "EmailAddress").lower()] = answer
    for key in ("attendees", "optional_attendees"):
        for attendee in target.get(key) if target.get(key) is not None else []:
            mailbox = _child(attendee, "Mailbox")
            known = answers.get(_text(mailbox, "EmailAddress").lower()) if mailbox is not None else None
            if known is not None and _child(attendee, "ResponseType") is None:
                attendee.append(known)


def _prop_key(uri: Element) -> str:
    return f"{uri.get('PropertySetId')}|{uri.get('PropertyName')}|{uri.get('PropertyType')}"


def _pattern(rec: Element) -> dict[str, Any]:
    """The Recurrence element as a Graph patternedRecurrence (the shape the rule mapping reads)."""
    pattern: dict[str, Any] = {}
    rng: dict[str, Any] = {}
    for c in rec:
        name = _local(c.tag)
        if name in PATTERNS:
            days: list[str] = []
            for word in _text(c, "DaysOfWeek").split():
                days += DAY_WORDS.get(word, [word.lower()])
            month = _text(c, "Month")
            pattern = {"type": PATTERNS[name], "interval": int(_text(c, "Interval", "1")), "daysOfWeek": days,
                       "firstDayOfWeek": _text(c, "FirstDayOfWeek", "Sunday").lower(),
                       "dayOfMonth": int(_text(c, "DayOfMonth", "1")),
                       "index": _text(c, "DayOfWeekIndex", "First").lower(),
                       "month": MONTHS.index(month) + 1 if month in MONTHS else 1}
        elif name.endswith("Recurrence"):
            kind = {"NoEndRecurrence": "noEnd", "EndDateRecurrence": "endDate", "NumberedRecurrence": "numbered"}
            rng = {"type": kind.get(name, "noEnd"), "endDate": _text(c, "EndDate")[:10],
                   "numberOfOccurrences": int(_text(c, "NumberOfOccurrences", "0") or 0)}
    return {"pattern": pattern, "range": rng}


def _series(item: dict[str, Any]) -> list[datetime]:
    """Every original start of a recurring item, in order (position n is InstanceIndex n + 1)."""
    key = (item["ck"], "series")
    if item.get("_cache", (None,))[0] != key:
        tz = iana_name(item.get("tz") or "UTC")
        content = make_content(start=fmt_instant(item["start"]), end=fmt_instant(item["end"]), timezone=tz,
                               rrule=recurrence_to_rrule(_pattern(item["recurrence"])))
        item["_cache"] = (key, [to_datetime(s) for s in occurrence_starts(content)])
    return item["_cache"][1]


def _occurrence(item: dict[str, Any], index: int) -> dict[str, Any]:
    """Occurrence `index` of a series as it stands: its exception, or the series' own time and subject."""
    original = _series(item)[index - 1]
    plain = {"id": f"{item['id']}.x{index}", "subject": item["subject"], "start": original,
             "end": original + (item["end"] - item["start"])}
    return {**plain, **item["exceptions"].get(index, {}), "original": original}


# --- rendering ---------------------------------------------------------------------------------------------
def _stamp(value: datetime) -> str:
    return fmt_instant(value.astimezone(UTC))


def render_item(item: dict[str, Any], occurrence: int | None = None) -> str:
    if occurrence is not None:   # one occurrence of a series
        exc = _occurrence(item, occurrence)
        kind = "Exception" if occurrence in item["exceptions"] else "Occurrence"
        return (f'<t:CalendarItem><t:ItemId Id={quoteattr(exc["id"])} ChangeKey={quoteattr(item["ck"])}/>'
                f'<t:Subject>{escape(exc["subject"])}</t:Subject><t:Start>{_stamp(exc["start"])}</t:Start>'
                f'<t:End>{_stamp(exc["end"])}</t:End><t:OriginalStart>{_stamp(exc["original"])}</t:OriginalStart>'
                f'<t:CalendarItemType>{kind}</t:CalendarItemType></t:CalendarItem>')
    parts = [f'<t:ItemId Id={quoteattr(item["id"])} ChangeKey={quoteattr(item["ck"])}/>',
             f'<t:Subject>{escape(item["subject"])}</t:Subject>',
             f'<t:TextBody BodyType="Text">{escape(item["body"])}</t:TextBody>']
    for key, value in item["ext"].items():
        set_id, name, kind = key.split("|")
        parts.append(f'<t:ExtendedProperty><t:ExtendedFieldURI PropertySetId={quoteattr(set_id)} '
                     f'PropertyName={quoteattr(name)} PropertyType={quoteattr(kind)}/><t:Value>{escape(value)}'
                     f'</t:Value></t:ExtendedProperty>')
    parts += [f'<t:Start>{_stamp(item["start"])}</t:Start>', f'<t:End>{_stamp(item["end"])}</t:End>',
              f'<t:IsAllDayEvent>{str(item["all_day"]).lower()}</t:IsAllDayEvent>',
              f'<t:LegacyFreeBusyStatus>{escape(item["fb"])}</t:LegacyFreeBusyStatus>']
    if item.get("location"):
        parts.append(f'<t:Location>{escape(item["location"])}</t:Location>')
    kind = "RecurringMaster" if item.get("recurrence") is not None else "Single"
    parts.append(f"<t:CalendarItemType>{kind}</t:CalendarItemType>")
    if item.get("organizer"):   # the mailbox that made the item (read-only in EWS)
        parts.append(f"<t:Organizer><t:Mailbox><t:EmailAddress>{escape(item['organizer'])}</t:EmailAddress>"
                     "</t:Mailbox></t:Organizer>")
    for key in ("attendees", "optional_attendees"):   # RequiredAttendees before OptionalAttendees (schema order)
        if item.get(key) is not None:
            parts.append(tostring(item[key], encoding="unicode"))
    if kind == "RecurringMaster":
        parts.append(tostring(item["recurrence"], encoding="unicode"))
        series = _series(item)
        if item["exceptions"]:
            parts.append("<t:ModifiedOccurrences>" + "".join(
                f'<t:Occurrence><t:ItemId Id={quoteattr(e["id"])} ChangeKey={quoteattr(item["ck"])}/>'
                f'<t:Start>{_stamp(e["start"])}</t:Start><t:End>{_stamp(e["end"])}</t:End>'
                f'<t:OriginalStart>{_stamp(series[n - 1])}</t:OriginalStart></t:Occurrence>'
                for n, e in sorted(item["exceptions"].items())) + "</t:ModifiedOccurrences>")
        if item["deleted"]:
            parts.append("<t:DeletedOccurrences>" + "".join(
                f"<t:DeletedOccurrence><t:Start>{_stamp(series[n - 1])}</t:Start></t:DeletedOccurrence>"
                for n in sorted(item["deleted"])) + "</t:DeletedOccurrences>")
    parts.append(f'<t:StartTimeZone Id={quoteattr(item.get("tz") or "UTC")}/>')
    return "<t:CalendarItem>" + "".join(parts) + "</t:CalendarItem>"


def _message(op: str, body: str = "", code: str = "NoError", text: str = "") -> str:
    if code != "NoError":   # a failed sync still carries an (empty) state, as Exchange sends it
        tail = "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>" \
            if op == "SyncFolderItems" else ""
        return (f'<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text or code)}</m:MessageText>'
                f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{tail}"
                f"</m:{op}ResponseMessage>")
    return f'<m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{body}' \
           f"</m:{op}ResponseMessage>"


def _envelope(op: str, messages: list[str]) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}"><s:Header>'
            f'<h:ServerVersionInfo xmlns:h="{T}" MajorVersion="15" MinorVersion="0" MajorBuildNumber="847" '
            f'MinorBuildNumber="31" Version="Exchange2013_SP1"/></s:Header><s:Body>'
            f'<m:{op}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>{"".join(messages)}'
            f"</m:ResponseMessages></m:{op}Response></s:Body></s:Envelope>")


def _fault(code: str, text: str, extra: str = "") -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}"><s:Body><s:Fault>'
            f'<faultcode xmlns:a="{T}">a:{code}</faultcode><faultstring>{escape(text)}</faultstring><detail>'
            f'<e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode><e:Message xmlns:e="{E}">{escape(text)}'
            f"</e:Message>{extra}</detail></s:Fault></s:Body></s:Envelope>")


# --- the mailbox -----------------------------------------------------------------------------------------
class Mailbox:
    def __init__(self, state: EwsState, email: str):
        self.state, self.email = state, email
        if email not in state.items:
            raise EwsFault("ErrorNonExistentMailbox", f"no mailbox {email}")
        self.items = state.items[email]

    def find(self, ref: Element) -> tuple[dict[str, Any], int | None]:
        """(master item, occurrence position or None) for an ItemId or OccurrenceItemId element."""
        if _local(ref.tag) == "OccurrenceItemId":
            item = self.items.get(ref.get("RecurringMasterId") or "")
            if item is None:
                raise EwsFault("ErrorItemNotFound", "The specified object was not found in the store.")
            index = int(ref.get("InstanceIndex") or 0)
            if item.get("recurrence") is None or not 1 <= index <= len(_series(item)):
                raise EwsFault("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange")
            if index in item["deleted"]:
                raise EwsFault("ErrorCalendarOccurrenceIsDeletedFromRecurrence")
            return item, index
        item_id = ref.get("Id") or ""
        master_id, _, occ = item_id.partition(".x")
        item = self.items.get(master_id)
        if item is None or (occ and (not occ.isdigit() or item.get("recurrence") is None or int(occ) in item["deleted"]
                                     or not 1 <= int(occ) <= len(_series(item)))):
            raise EwsFault("ErrorItemNotFound", "The specified object was not found in the store.")
        return item, int(occ) if occ else None

    def create(self, elem: Element) -> dict[str, Any]:
        item: dict[str, Any] = {"id": "AAMkAD" + secrets.token_hex(12), "subject": "", "body": "", "all_day": False,
                                "fb": "Busy", "location": "", "tz": "UTC", "recurrence": None, "attendees": None,
                                "organizer": self.email, "ext": {}, "deleted": set(), "exceptions": {}}
        _apply_fields(item, elem)
        if "start" not in item or "end" not in item:
            raise EwsFault("ErrorMissingInformation", "Start and End are required")
        if item["end"] < item["start"]:
            raise EwsFault("ErrorCalendarEndDateIsEarlierThanStartDate")
        self.items[item["id"]] = item
        self.state.touch(self.email, item)
        return item

    def update(self, change: Element, resolution: str) -> str:
        ref = next(c for c in change if _local(c.tag) in ("ItemId", "OccurrenceItemId"))
        item, index = self.find(ref)
        if resolution == "NeverOverwrite" and _local(ref.tag) == "ItemId":
            if not ref.get("ChangeKey"):
                raise EwsFault("ErrorChangeKeyRequiredForWriteOperations")
            if ref.get("ChangeKey") != item["ck"]:
                raise EwsFault("ErrorIrresolvableConflict", "The send or update operation could not be performed "
                               "because the change key passed in the request does not match the current change key")
        updates = _child(change, "Updates")
        target: dict[str, Any] = {}
        for op in updates if updates is not None else []:
            uri = _child(op, "FieldURI")
            field_name = uri.get("FieldURI") if uri is not None else ""
            if _local(op.tag) == "DeleteItemField":
                target[{"calendar:Recurrence": "recurrence", "calendar:Location": "location", "item:Body": "body",
                        "calendar:RequiredAttendees": "attendees",
                        "calendar:OptionalAttendees": "optional_attendees"}.get(field_name or "", "_ignored")] = None
            else:
                value = next((c for c in op if _local(c.tag) == "CalendarItem"), None)
                if value is not None:
                    scratch: dict[str, Any] = {"ext": {}}
                    _apply_fields(scratch, value)
                    target.update(scratch if scratch["ext"] else {k: v for k, v in scratch.items() if k != "ext"})
        if index is not None:   # an occurrence becomes (or stays) an exception
            exc = {k: v for k, v in _occurrence(item, index).items() if k != "original"}
            exc.update({k: target[k] for k in ("subject", "start", "end") if k in target})
            item["exceptions"][index] = exc
            self.state.touch(self.email, item)
            return render_item(item, index)
        if target.get("ext"):
            item["ext"].update(target.pop("ext"))
        target.pop("_ignored", None)
        if "recurrence" in target:
            item["deleted"], item["exceptions"] = set(), {}
        _keep_answers(item, target)
        item.update({k: ("" if v is None and k in ("location", "body") else v) for k, v in target.items()})
        if item["end"] < item["start"]:
            raise EwsFault("ErrorCalendarEndDateIsEarlierThanStartDate")
        self.state.touch(self.email, item)
        return render_item(item)

    def delete(self, ref: Element) -> None:
        item, index = self.find(ref)
        if index is None:
            del self.items[item["id"]]
            self.state.seq += 1
            self.state.changes[self.email].append((self.state.seq, item["id"]))
            return
        item["deleted"].add(index)
        item["exceptions"].pop(index, None)
        self.state.touch(self.email, item)

    def sync(self, token: str, limit: int) -> tuple[str, bool, str]:
        since = 0
        if token:
            epoch, _, number = token.partition(":")
            if epoch != self.state.epoch or not number.isdigit():
                raise EwsFault("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise "
                               "invalid.")
            since = int(number)
        last: dict[str, int] = {}
        created: dict[str, int] = {}
        for seq, item_id in self.state.changes[self.email]:
            created.setdefault(item_id, seq)
            if seq > since:
                last[item_id] = seq
        ordered = sorted(last, key=last.get)
        page, more = ordered[:limit], len(ordered) > limit
        out = []
        for item_id in page:
            item = self.items.get(item_id)
            if item is None:
                if created[item_id] <= since:
                    out.append(f'<t:Delete><t:ItemId Id={quoteattr(item_id)}/></t:Delete>')
                continue
            kind = "Create" if created[item_id] > since else "Update"
            out.append(f'<t:{kind}><t:CalendarItem><t:ItemId Id={quoteattr(item_id)} ChangeKey={quoteattr(item["ck"])}'
                       f'/></t:CalendarItem></t:{kind}>')
        upto = last[page[-1]] if more else self.state.seq
        return f"{self.state.epoch}:{upto}", not more, "".join(out)

    def busy(self, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime, str]]:
        out = []
        for item in self.items.values():
            if item["fb"] == "Free":
                continue
            if item.get("recurrence") is None:
                spans = [(item["start"], item["end"])]
            else:
                length = item["end"] - item["start"]
                spans = []
                for n, start in enumerate(_series(item), start=1):
                    if n in item["deleted"]:
                        continue
                    exc = item["exceptions"].get(n)
                    spans.append((exc["start"], exc["end"]) if exc else (start, start + length))
            out += [(s, e, item["fb"]) for s, e in spans if s < hi and e > lo]
        return sorted(out)


# --- the SOAP endpoint ----------------------------------------------------------------------------------------
def _user(state: EwsState, request: Request) -> str:
    header = request.headers.get("authorization") or ""
    kind, _, value = header.partition(" ")
    if kind.lower() == "bearer" and value in state.bearer:
        return state.bearer[value]
    if kind.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            user, password = "", ""
        if state.passwords.get(user) == password:
            return user
    raise PermissionError


def _mailbox_of(state: EwsState, body: Element, user: str) -> Mailbox:
    folder = next((e for e in body.iter() if _local(e.tag) == "DistinguishedFolderId"), None)
    address = next((e.text for e in folder.iter() if _local(e.tag) == "EmailAddress"), None) if folder is not None \
        else None
    if address and address != user:
        raise EwsFault("ErrorAccessDenied", f"{user} has no delegate access to {address}")
    return Mailbox(state, user)


def _handle(state: EwsState, op: Element, user: str) -> str:
    name = _local(op.tag)
    state.requests[name] = state.requests.get(name, 0) + 1
    if name == "GetUserAvailabilityRequest":
        return _availability(state, op)
    if name == "GetServerTimeZones":
        return _envelope(name, [_message(name, f"<m:TimeZoneDefinitions>{UTC_DEFINITION}</m:TimeZoneDefinitions>")
                                if {i.text for i in op.iter() if _local(i.tag) == "Id"} <= {"UTC"} else
                                _message(name, code="ErrorTimeZone", text="only UTC is served by this sandbox")])
    box = _mailbox_of(state, op, user)
    messages = []
    if name == "CreateItem":
        for elem in _child(op, "Items") or []:
            try:
                messages.append(_message(name, f"<m:Items>{render_item(box.create(elem))}</m:Items>"))
            except EwsFault as exc:
                messages.append(_message(name, code=exc.code, text=exc.text))
    elif name in ("GetItem", "DeleteItem"):
        for ref in _child(op, "ItemIds") or []:
            try:
                if name == "GetItem":
                    item, index = box.find(ref)
                    messages.append(_message(name, f"<m:Items>{render_item(item, index)}</m:Items>"))
                else:
                    box.delete(ref)
                    messages.append(_message(name))
            except EwsFault as exc:
                messages.append(_message(name, code=exc.code, text=exc.text))
    elif name == "UpdateItem":
        for change in _child(op, "ItemChanges") or []:
            try:
                rendered = box.update(change, op.get("ConflictResolution") or "AutoResolve")
                messages.append(_message(name, f"<m:Items>{rendered}</m:Items>"
                                               "<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"))
            except EwsFault as exc:
                messages.append(_message(name, code=exc.code, text=exc.text))
    elif name == "FindItem":
        wanted = None
        equal = next((e for e in op.iter() if _local(e.tag) == "IsEqualTo"), None)
        if equal is not None:
            uri = _child(equal, "ExtendedFieldURI")
            constant = next((e for e in equal.iter() if _local(e.tag) == "Constant"), None)
            if uri is None or constant is None:
                raise EwsFault("ErrorUnsupportedQueryFilter", "only an extended property equal to a value")
            wanted = (_prop_key(uri), constant.get("Value"))
        found = [i for i in box.items.values() if wanted is None or i["ext"].get(wanted[0]) == wanted[1]]
        messages.append(_message(name, f'<m:RootFolder TotalItemsInView="{len(found)}" IncludesLastItemInRange="true">'
                                       f'<t:Items>{"".join(render_item(i) for i in found)}</t:Items></m:RootFolder>'))
    elif name == "SyncFolderItems":
        try:
            token, last, changes = box.sync(_text(op, "SyncState"), int(_text(op, "MaxChangesReturned", "100")))
            messages.append(_message(name, f"<m:SyncState>{token}</m:SyncState><m:IncludesLastItemInRange>"
                                           f"{str(last).lower()}</m:IncludesLastItemInRange><m:Changes>{changes}"
                                           "</m:Changes>"))
        except EwsFault as exc:
            messages.append(_message(name, code=exc.code, text=exc.text))
    else:
        raise EwsFault("ErrorInvalidOperation", f"{name} is not served by this sandbox")
    return _envelope(name, messages)


def _availability(state: EwsState, op: Element) -> str:
    bias = int(next((e.text for e in op.iter() if _local(e.tag) == "Bias"), "0") or 0)
    local = timedelta(minutes=-bias)
    window = next(e for e in op.iter() if _local(e.tag) == "TimeWindow")
    lo = datetime.fromisoformat(_text(window, "StartTime")).replace(tzinfo=UTC) - local
    hi = datetime.fromisoformat(_text(window, "EndTime")).replace(tzinfo=UTC) - local
    answers = []
    for data in (e for e in op.iter() if _local(e.tag) == "MailboxData"):
        address = next((e.text for e in data.iter() if _local(e.tag) == "Address"), "") or ""
        if address not in state.items:
            answers.append(f'<m:FreeBusyResponse><m:ResponseMessage ResponseClass="Error"><m:MessageText>no mailbox '
                           f'{escape(address)}</m:MessageText><m:ResponseCode>ErrorMailRecipientNotFound'
                           f'</m:ResponseCode></m:ResponseMessage></m:FreeBusyResponse>')
            continue
        events = "".join(
            f"<t:CalendarEvent><t:StartTime>{(s.astimezone(UTC) + local).replace(tzinfo=None).isoformat()}"
            f"</t:StartTime><t:EndTime>{(e.astimezone(UTC) + local).replace(tzinfo=None).isoformat()}</t:EndTime>"
            f"<t:BusyType>{escape(kind)}</t:BusyType></t:CalendarEvent>"
            for s, e, kind in Mailbox(state, address).busy(lo, hi))
        answers.append(f'<m:FreeBusyResponse><m:ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                       f'</m:ResponseCode></m:ResponseMessage><m:FreeBusyView><t:FreeBusyViewType>Detailed'
                       f'</t:FreeBusyViewType><t:CalendarEventArray>{events}</t:CalendarEventArray>'
                       f'</m:FreeBusyView></m:FreeBusyResponse>')
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}"><s:Body>'
            f'<m:GetUserAvailabilityResponse xmlns:m="{M}" xmlns:t="{T}"><m:FreeBusyResponseArray>{"".join(answers)}'
            f"</m:FreeBusyResponseArray></m:GetUserAvailabilityResponse></s:Body></s:Envelope>")


def make_ews_app(state: EwsState) -> FastAPI:
    app = FastAPI(title="EWS sandbox")

    @app.post("/EWS/Exchange.asmx")
    async def soap(request: Request):
        xml = "text/xml; charset=utf-8"
        try:
            user = _user(state, request)
        except PermissionError:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="ews"'})
        try:
            envelope = ElementTree.fromstring(await request.body(), forbid_dtd=True)
            body = next(c for c in envelope if _local(c.tag) == "Body")
            op = body[0]
        except (DefusedXmlException, ElementTree.ParseError, StopIteration, IndexError):
            return Response(_fault("ErrorSchemaValidation", "The request failed schema validation."),
                            status_code=500, media_type=xml)
        with state.lock:
            if state.hostile > 0:
                state.hostile -= 1
                return Response(BOMB, media_type=xml)
            if state.busy > 0:   # Exchange throttling: a fault that says how long to back off
                state.busy -= 1
                return Response(_fault("ErrorServerBusy", "The server cannot service this request right now.",
                                       f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">'
                                       f"{state.back_off_ms}</t:Value></t:MessageXml>"), status_code=500,
                                media_type=xml)
            try:
                answer = _handle(state, op, user)
                if state.lose.get(_local(op.tag), 0) > 0:   # done, but the client never hears of it
                    state.lose[_local(op.tag)] -= 1
                    return Response(status_code=502)
                return Response(answer, media_type=xml)
            except EwsFault as exc:
                return Response(_fault(exc.code, exc.text), status_code=500, media_type=xml)

    return app

