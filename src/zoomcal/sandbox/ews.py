"""Offline emulator of Exchange Web Services on one calendar folder per mailbox, written from the EWS reference.

POST `/ews/EWS/Exchange.asmx` with a SOAP envelope: GetFolder, CreateItem, GetItem, UpdateItem, DeleteItem,
FindItem (restrictions, a CalendarView or an IndexedPageItemView), SyncFolderItems, GetUserAvailability,
GetServerTimeZones and ResolveNames. Behaviour follows the documented one: ids and ChangeKeys are the server's
(opaque base64; a malformed id is ErrorInvalidIdMalformed, a well-formed unknown one ErrorItemNotFound, each in its
own ResponseMessage of a 200); the item shape (IdOnly, Default, AllProperties plus AdditionalProperties) decides
what an item carries, and extended properties only come back when asked for; `NeverOverwrite` with a stale
ChangeKey is ErrorIrresolvableConflict; a recurring master lists its ModifiedOccurrences and DeletedOccurrences;
recurrences are the EWS patterns expanded on the wall clock of the item's start zone (Windows zone names, as
exchangelib maps them); an occurrence is addressed by its own id or by its master and its 1-based position in the
series (OccurrenceItemId), a deleted one answers ErrorCalendarOccurrenceIsDeletedFromRecurrence, a moved one may
not cross its neighbours (ErrorOccurrenceCrossingBoundary); setting a new Recurrence drops the series' exceptions;
a CalendarView lists occurrences and exceptions, never the master; a date-time without an offset is read in the
request's TimeZoneContext; changes to an occurrence are an Update of the master in SyncFolderItems; an unknown
sync state is ErrorInvalidSyncStateData. Requests are parsed with defusedxml. Basic and Bearer authentication.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import html
import re
import secrets
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from xml.etree.ElementTree import Element, tostring
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

from dateutil import rrule
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP
from fastapi import FastAPI, Request, Response

from zoomcal.sandbox.clock import UTC, now, parse_stamp, stamp, tz

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
WEEKDAYS = {"Monday": rrule.MO, "Tuesday": rrule.TU, "Wednesday": rrule.WE, "Thursday": rrule.TH,
            "Friday": rrule.FR, "Saturday": rrule.SA, "Sunday": rrule.SU}
DAY_SETS = {"Day": list(WEEKDAYS.values()), "Weekday": list(WEEKDAYS.values())[:5],
            "WeekendDay": list(WEEKDAYS.values())[5:]}
WEEK_INDEX = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
MONTHS = list(calendar.month_name)[1:]
MERGED = {"Free": 0, "Tentative": 1, "Busy": 2, "OOF": 3, "WorkingElsewhere": 4, "NoData": 5}   # MergedFreeBusy
MAX_SERIES = 5000        # occurrences of a series without an end that are laid out
ITEM_HEAD = b"\x00\x03\x24\x00"      # how a mailbox item id begins ("AAMkA...")
OCCURRENCE_HEAD = b"\x04\x00"        # an occurrence id: this, the master's id bytes, the position
ITEM_BYTES = 41
# what an occurrence can hold of its own (the rest is the series')
EXCEPTION_FIELDS = ("subject", "body", "body_type", "start", "end", "location", "fb", "categories", "importance",
                    "sensitivity", "reminder", "reminder_set")
NOT_FOUND = "The specified object was not found in the store."


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
    names: dict[str, str] = field(default_factory=dict)            # mailbox -> display name (ResolveNames)
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

    def add_mailbox(self, email: str, password: str | None = None, name: str | None = None) -> str:
        password = password or secrets.token_urlsafe(12)
        self.passwords[email] = password
        self.names[email] = name or email.split("@")[0].capitalize()
        self.items.setdefault(email, {})
        self.changes.setdefault(email, [])
        return password

    def forget_sync_states(self) -> None:
        self.epoch = secrets.token_hex(3)

    def touch(self, mailbox: str, item: dict[str, Any]) -> None:
        self.seq += 1
        item["ck"] = base64.b64encode(b"\x0f\x00\x00\x00\x16\x00\x00\x00" + self.seq.to_bytes(8, "big")).decode()
        item["modified"] = now()
        self.changes[mailbox].append((self.seq, item["id"]))


# --- ids -----------------------------------------------------------------------------------------------------
def new_item_id() -> str:
    return base64.b64encode(ITEM_HEAD + secrets.token_bytes(ITEM_BYTES - len(ITEM_HEAD))).decode()


def occurrence_id(master_id: str, index: int) -> str:
    """The id Exchange gives occurrence `index` (1-based) of a series: opaque, and the same on every read."""
    return base64.b64encode(OCCURRENCE_HEAD + base64.b64decode(master_id) + index.to_bytes(4, "big")).decode()


def parse_id(text: str) -> tuple[str, int | None]:
    """(master item id, occurrence position or None) of an ItemId; ErrorInvalidIdMalformed for what Exchange
    never hands out, ErrorInvalidIdEmpty for nothing."""
    if not text:
        raise EwsFault("ErrorInvalidIdEmpty", "The ID is empty.")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == ITEM_BYTES and raw.startswith(ITEM_HEAD):
        return text, None
    body = raw[len(OCCURRENCE_HEAD):]
    if raw.startswith(OCCURRENCE_HEAD) and len(body) == ITEM_BYTES + 4 and body.startswith(ITEM_HEAD):
        return base64.b64encode(body[:ITEM_BYTES]).decode(), int.from_bytes(body[ITEM_BYTES:], "big")
    raise EwsFault("ErrorInvalidIdMalformed", "Id is malformed.")


def folder_id(email: str) -> str:
    """The id of the mailbox's calendar folder (stable per mailbox)."""
    return base64.b64encode(b"\x00\x01\x2e\x00" + hashlib.sha256(email.lower().encode()).digest()[:42]).decode()


# --- time zones (Windows names, as exchangelib maps them to the zone database) ---------------------------------
def zone_of(name: str | None) -> ZoneInfo:
    """The zone of a Windows time zone id (an IANA name is taken as such); ValueError for one nobody knows."""
    return tz("UTC" if name in (None, "", "UTC") else MS_TIMEZONE_TO_IANA_MAP.get(name, name))


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def zone_display_name(name: str) -> str:
    try:
        offset = int(datetime(now().year, 1, 1, tzinfo=zone_of(name)).utcoffset().total_seconds() // 60)
    except ValueError:
        return name
    return f"(UTC{_offset_text(offset)}) {MS_TIMEZONE_TO_IANA_MAP.get(name, name)}" if offset else f"(UTC) {name}"


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


def _transitions(zone: ZoneInfo, year: int) -> list[tuple[datetime, int]]:
    """(local wall time just before, new UTC offset in minutes) of each change of offset in `year`."""
    out = []
    at = datetime(year, 1, 1, tzinfo=UTC)
    before = _minutes(at.astimezone(zone).utcoffset())
    while at.year == year:
        step = at + timedelta(days=1)
        if _minutes(step.astimezone(zone).utcoffset()) != before:
            while step - at > timedelta(minutes=15):
                mid = at + (step - at) / 2
                if _minutes(mid.astimezone(zone).utcoffset()) == before:
                    at = mid
                else:
                    step = mid
            after = _minutes(step.astimezone(zone).utcoffset())
            out.append(((step + timedelta(minutes=before)).replace(tzinfo=None), after))
            before = after
        at = step
    return out


def zone_definition(name: str, full: bool) -> str:
    """A TimeZoneDefinition as GetServerTimeZones answers it: Windows biases (minutes to add to local time to
    get UTC), and with `full` this year's rule as RecurringDayTransitions."""
    head = f"<t:TimeZoneDefinition Id={quoteattr(name)} Name={quoteattr(zone_display_name(name))}"
    if not full:
        return head + "/>"
    zone, rule = zone_of(name), f"trule:Microsoft/Registry/{name}/1"
    changes = _transitions(zone, now().year)
    standard = min([_minutes(datetime(now().year, 1, 1, tzinfo=zone).utcoffset())] + [o for _, o in changes])
    periods = [f'<t:Period Bias="{_duration(-standard)}" Name="Standard" Id="{escape(rule)}-Standard"/>']
    group = []
    if len(changes) == 2:
        daylight = max(o for _, o in changes)
        periods.append(f'<t:Period Bias="{_duration(-daylight)}" Name="Daylight" Id="{escape(rule)}-Daylight"/>')
        for local, offset in changes:
            last = local.day + 7 > calendar.monthrange(local.year, local.month)[1]
            group.append(f'<t:RecurringDayTransition><t:To Kind="Period">{escape(rule)}-'
                         f'{"Daylight" if offset == daylight else "Standard"}</t:To><t:TimeOffset>'
                         f'{_duration(local.hour * 60 + local.minute)}</t:TimeOffset><t:Month>{local.month}</t:Month>'
                         f'<t:DayOfWeek>{local.strftime("%A")}</t:DayOfWeek><t:Occurrence>'
                         f'{-1 if last else (local.day - 1) // 7 + 1}</t:Occurrence></t:RecurringDayTransition>')
    else:
        group.append(f'<t:Transition><t:To Kind="Period">{escape(rule)}-Standard</t:To></t:Transition>')
    return (f"{head}><t:Periods>{''.join(periods)}</t:Periods><t:TransitionsGroups><t:TransitionsGroup Id=\"0\">"
            f"{''.join(group)}</t:TransitionsGroup></t:TransitionsGroups><t:Transitions><t:Transition>"
            '<t:To Kind="Group">0</t:To></t:Transition></t:Transitions></t:TimeZoneDefinition>')


def _duration(minutes: int) -> str:
    """An xs:duration of whole minutes (`PT90M`, `-PT60M`), as Exchange writes biases."""
    return f"{'-' if minutes < 0 else ''}PT{abs(minutes)}M"


def server_zones() -> list[str]:
    return sorted({"UTC", *MS_TIMEZONE_TO_IANA_MAP})


# --- parsing -----------------------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: Element, name: str) -> Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _text(elem: Element, name: str, default: str = "") -> str:
    found = _child(elem, name)
    return (found.text or "") if found is not None else default


# the Windows zone of the request's TimeZoneContext header (UTC without one)
REQUEST_ZONE: ContextVar[str] = ContextVar("REQUEST_ZONE", default="UTC")


def _when(text: str) -> datetime:
    """An xs:dateTime as EWS reads it: with `Z` or an offset, or (without one) in the request's TimeZoneContext."""
    try:
        return parse_stamp(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=zone_of(REQUEST_ZONE.get())).astimezone(UTC)
        except ValueError:
            raise EwsFault("ErrorSchemaValidation", f"{text!r} is not a date-time") from None


def _context_zone(envelope: Element) -> str:
    """The TimeZoneContext of a request's header; ErrorTimeZone for one this server does not know."""
    header = next((c for c in envelope if _local(c.tag) == "Header"), None)
    found = next((e for e in header.iter() if _local(e.tag) == "TimeZoneDefinition"), None) \
        if header is not None else None
    name = (found.get("Id") if found is not None else None) or "UTC"
    try:
        zone_of(name)
    except ValueError:
        raise EwsFault("ErrorTimeZone", f"The time zone {name!r} is not valid.") from None
    return name


def _day(text: str) -> date:
    """An xs:date (a StartDate or EndDate of a range, which may carry a zone suffix)."""
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise EwsFault("ErrorSchemaValidation", f"{text!r} is not a date") from None


def _flag(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "1")


def _apply_fields(item: dict[str, Any], elem: Element) -> None:
    """Copy the CalendarItem fields present in `elem` onto the stored item."""
    for c in elem:
        name = _local(c.tag)
        if name == "Subject":
            item["subject"] = c.text or ""
        elif name == "Body":
            item["body"], item["body_type"] = c.text or "", c.get("BodyType") or "Text"
        elif name in ("Start", "End"):
            item[name.lower()] = _when(c.text or "")
        elif name == "IsAllDayEvent":
            item["all_day"] = _flag(c.text)
        elif name == "LegacyFreeBusyStatus":
            item["fb"] = c.text or "Busy"
        elif name == "Location":
            item["location"] = c.text or ""
        elif name in ("StartTimeZone", "EndTimeZone"):
            try:
                zone_of(c.get("Id"))
            except ValueError:
                raise EwsFault("ErrorTimeZone", f"The time zone {c.get('Id')!r} is not valid.") from None
            item["tz" if name == "StartTimeZone" else "end_tz"] = c.get("Id") or "UTC"
        elif name == "Recurrence":
            item["recurrence"] = c
            item["deleted"], item["exceptions"] = set(), {}
        elif name == "RequiredAttendees":
            item["attendees"] = c
        elif name == "OptionalAttendees":
            item["optional_attendees"] = c
        elif name == "Categories":
            item["categories"] = [s.text or "" for s in c]
        elif name in ("Importance", "Sensitivity"):
            item[name.lower()] = c.text or "Normal"
        elif name == "ReminderIsSet":
            item["reminder_set"] = _flag(c.text)
        elif name == "ReminderMinutesBeforeStart":
            item["reminder"] = int(c.text or 0)
        elif name == "UID":
            item["uid"] = c.text or item.get("uid")
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
    tag = uri.get("PropertyTag")
    if tag:
        return f"tag|{int(tag, 0)}|{uri.get('PropertyType')}"
    name = uri.get("PropertyName") or f"id:{uri.get('PropertyId')}"
    return f"{(uri.get('PropertySetId') or uri.get('DistinguishedPropertySetId') or '').lower()}|{name}|" \
           f"{uri.get('PropertyType')}"


# --- recurrence: the EWS patterns on the wall clock of the start zone ------------------------------------------
def _days(text: str) -> list[rrule.weekday]:
    out: list[rrule.weekday] = []
    for word in text.split():
        if word in DAY_SETS:
            out += DAY_SETS[word]
        elif word in WEEKDAYS:
            out.append(WEEKDAYS[word])
        else:
            raise EwsFault("ErrorSchemaValidation", f"{word!r} is not a day of the week")
    return out


def _month_day(day: int) -> dict[str, Any]:
    """Day `day` of a month; in a shorter month the series falls on its last day (as Outlook lays it out)."""
    if not 1 <= day <= 31:
        raise EwsFault("ErrorSchemaValidation", f"day of month {day} is out of range")
    return {"bymonthday": day} if day <= 28 else {"bymonthday": tuple(range(28, day + 1)), "bysetpos": -1}


def _month(elem: Element) -> int:
    name = _text(elem, "Month")
    if name not in MONTHS:
        raise EwsFault("ErrorSchemaValidation", f"{name!r} is not a month")
    return MONTHS.index(name) + 1


def _relative(elem: Element) -> dict[str, Any]:
    index = _text(elem, "DayOfWeekIndex")
    if index not in WEEK_INDEX:
        raise EwsFault("ErrorSchemaValidation", f"{index!r} is not a DayOfWeekIndex")
    return {"byweekday": _days(_text(elem, "DaysOfWeek")), "bysetpos": WEEK_INDEX[index]}


def series_rule(rec: Element, first: datetime) -> rrule.rrule:
    """The Recurrence element as a rule on naive local times; `first` is the series' local start."""
    ranges = ("NoEndRecurrence", "EndDateRecurrence", "NumberedRecurrence")
    pattern = next((c for c in rec if _local(c.tag) not in ranges), None)
    bound = next((c for c in rec if _local(c.tag) in ranges), None)
    if pattern is None or bound is None:
        raise EwsFault("ErrorSchemaValidation", "a Recurrence needs a pattern and a range")
    kind = _local(pattern.tag)
    try:
        interval = int(_text(pattern, "Interval", "1"))
    except ValueError:
        raise EwsFault("ErrorSchemaValidation", "Interval is not a number") from None
    if interval < 1:
        raise EwsFault("ErrorCalendarInvalidRecurrence", "The recurrence interval must be at least 1.")
    kw: dict[str, Any] = {"interval": interval}
    if kind == "DailyRecurrence":
        freq = rrule.DAILY
    elif kind == "WeeklyRecurrence":
        freq = rrule.WEEKLY
        kw.update(byweekday=_days(_text(pattern, "DaysOfWeek")),
                  wkst=WEEKDAYS.get(_text(pattern, "FirstDayOfWeek", "Sunday"), rrule.SU))
        if not kw["byweekday"]:
            raise EwsFault("ErrorCalendarInvalidDayForWeeklyRecurrence", "A weekly pattern names its days.")
    elif kind == "AbsoluteMonthlyRecurrence":
        freq = rrule.MONTHLY
        kw.update(_month_day(int(_text(pattern, "DayOfMonth", "0") or 0)))
    elif kind == "RelativeMonthlyRecurrence":
        freq = rrule.MONTHLY
        kw.update(_relative(pattern))
    elif kind == "AbsoluteYearlyRecurrence":
        freq, kw = rrule.YEARLY, {"bymonth": _month(pattern), **_month_day(int(_text(pattern, "DayOfMonth", "0")
                                                                                 or 0))}
    elif kind == "RelativeYearlyRecurrence":
        freq, kw = rrule.YEARLY, {"bymonth": _month(pattern), **_relative(pattern)}
    else:   # the regeneration patterns (tasks only)
        raise EwsFault("ErrorUnsupportedRecurrence", f"{kind} is not a calendar recurrence pattern")
    begin = _day(_text(bound, "StartDate")) if _text(bound, "StartDate") else first.date()
    dtstart = datetime.combine(begin, first.time())
    if _local(bound.tag) == "NumberedRecurrence":
        count = int(_text(bound, "NumberOfOccurrences", "0") or 0)
        if count < 1:
            raise EwsFault("ErrorCalendarInvalidRecurrence", "NumberOfOccurrences must be at least 1.")
        kw["count"] = count
    elif _local(bound.tag) == "EndDateRecurrence":
        end = _day(_text(bound, "EndDate"))
        if end < begin:
            raise EwsFault("ErrorCalendarInvalidRecurrence", "The recurrence range ends before it starts.")
        kw["until"] = datetime.combine(end, time.max)
    return rrule.rrule(freq, dtstart=dtstart, cache=False, **kw)


def _series(item: dict[str, Any]) -> list[datetime]:
    """Every original start of a recurring item (UTC), in order (position n is InstanceIndex n)."""
    key = (item["ck"], "series")
    if item.get("_cache", (None,))[0] != key:
        try:
            zone = zone_of(item.get("tz"))
        except ValueError:
            zone = ZoneInfo("UTC")
        rule = series_rule(item["recurrence"], item["start"].astimezone(zone).replace(tzinfo=None))
        starts = []
        for local in rule:
            starts.append(local.replace(tzinfo=zone).astimezone(UTC))
            if len(starts) >= MAX_SERIES:
                break
        item["_cache"] = (key, starts)
    return item["_cache"][1]


def _occurrence(item: dict[str, Any], index: int) -> dict[str, Any]:
    """Occurrence `index` of a series as it stands: its exception, or the series' own time and subject."""
    original = _series(item)[index - 1]
    plain = {"id": occurrence_id(item["id"], index), "subject": item["subject"], "start": original,
             "end": original + (item["end"] - item["start"])}
    return {**plain, **item["exceptions"].get(index, {}), "original": original}


# --- rendering ---------------------------------------------------------------------------------------------
@dataclass
class Shape:
    """An ItemShape: a base set, the properties added to it, the extended properties asked for."""

    base: str = ""          # no base shape: every property (how the sandbox itself reads an item)
    fields: frozenset[str] = frozenset()
    extended: tuple[str, ...] | None = None     # keys asked for; None: every one (the sandbox's own reading)
    body_type: str = "Best"

    def wants(self, uri: str) -> bool:
        return uri == "item:ItemId" or uri in self.fields or uri in BASE_SHAPES.get(self.base, ALL_FIELDS)


def shape_of(elem: Element | None) -> Shape:
    if elem is None:
        return Shape("IdOnly", extended=())
    extra = _child(elem, "AdditionalProperties")
    fields = frozenset(c.get("FieldURI") or "" for c in extra or [] if _local(c.tag) == "FieldURI")
    extended = tuple(_prop_key(c) for c in extra or [] if _local(c.tag) == "ExtendedFieldURI")
    base = _text(elem, "BaseShape", "IdOnly")
    if base not in ("IdOnly", "Default", "AllProperties"):
        raise EwsFault("ErrorSchemaValidation", f"{base!r} is not a BaseShape")
    return Shape(base, fields, extended, _text(elem, "BodyType", "Best"))


def _mailbox_xml(address: str, name: str = "") -> str:
    return (f"<t:Mailbox><t:Name>{escape(name or address)}</t:Name><t:EmailAddress>{escape(address)}</t:EmailAddress>"
            "<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox>")


def _body(view: dict[str, Any], shape: Shape, element: str = "Body") -> str:
    text, kind = view.get("body") or "", view.get("body_type") or "Text"
    if element == "TextBody" or (shape.body_type == "Text" and kind == "HTML"):
        if kind == "HTML":   # the text of an HTML body, as Exchange converts it
            text = html.unescape(re.sub(r"<[^>]*>", "", text)).strip()
        kind = "Text"
    elif shape.body_type == "HTML" and kind == "Text":
        text, kind = f"<html><body>{escape(text)}</body></html>", "HTML"
    return f'<t:{element} BodyType="{kind}">{escape(text)}</t:{element}>'


def _occurrence_info(item: dict[str, Any], index: int, element: str = "Occurrence") -> str:
    occ = _occurrence(item, index)
    return (f'<t:{element}><t:ItemId Id={quoteattr(occ["id"])} ChangeKey={quoteattr(item["ck"])}/>'
            f'<t:Start>{stamp(occ["start"])}</t:Start><t:End>{stamp(occ["end"])}</t:End>'
            f'<t:OriginalStart>{stamp(occ["original"])}</t:OriginalStart></t:{element}>')


def _duration_of(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    return "P" + (f"{days}D" if days else "") + (f"T{minutes // 60}H{minutes % 60}M" if minutes or not days else "")


def _fields(item: dict[str, Any], occurrence: int | None, shape: Shape) -> list[tuple[str, str]]:
    """(field URI, element) of every property the item has, in the schema's order."""
    view = item if occurrence is None else {**item, **_occurrence(item, occurrence)}
    if occurrence is None:
        kind = "RecurringMaster" if item.get("recurrence") is not None else "Single"
    else:
        kind = "Exception" if occurrence in item["exceptions"] else "Occurrence"
    out = [("item:ParentFolderId", f'<t:ParentFolderId Id={quoteattr(folder_id(item["organizer"]))} '
                                   'ChangeKey="AgAAAA=="/>'),
           ("item:ItemClass", "<t:ItemClass>IPM.Appointment</t:ItemClass>"),
           ("item:Subject", f"<t:Subject>{escape(view['subject'])}</t:Subject>"),
           ("item:Sensitivity", f"<t:Sensitivity>{escape(view['sensitivity'])}</t:Sensitivity>"),
           ("item:Body", _body(view, shape)),
           ("item:DateTimeReceived", f"<t:DateTimeReceived>{stamp(item['created'])}</t:DateTimeReceived>"),
           ("item:Size", f"<t:Size>{len(view['subject']) + len(view.get('body') or '') + 512}</t:Size>")]
    if view["categories"]:
        out.append(("item:Categories", "<t:Categories>" + "".join(f"<t:String>{escape(c)}</t:String>"
                                                                   for c in view["categories"]) + "</t:Categories>"))
    out += [("item:Importance", f"<t:Importance>{escape(view['importance'])}</t:Importance>"),
            ("item:IsSubmitted", "<t:IsSubmitted>false</t:IsSubmitted>"),
            ("item:IsDraft", "<t:IsDraft>false</t:IsDraft>"),
            ("item:IsFromMe", "<t:IsFromMe>false</t:IsFromMe>"),
            ("item:IsResend", "<t:IsResend>false</t:IsResend>"),
            ("item:IsUnmodified", "<t:IsUnmodified>false</t:IsUnmodified>"),
            ("item:DateTimeSent", f"<t:DateTimeSent>{stamp(item['created'])}</t:DateTimeSent>"),
            ("item:DateTimeCreated", f"<t:DateTimeCreated>{stamp(item['created'])}</t:DateTimeCreated>"),
            ("item:ReminderIsSet", f"<t:ReminderIsSet>{str(view['reminder_set']).lower()}</t:ReminderIsSet>"),
            ("item:ReminderMinutesBeforeStart",
             f"<t:ReminderMinutesBeforeStart>{view['reminder']}</t:ReminderMinutesBeforeStart>"),
            ("item:HasAttachments", "<t:HasAttachments>false</t:HasAttachments>")]
    for key, value in item["ext"].items():
        if shape.extended is None or key in shape.extended:
            out.append(("ExtendedProperty", _extended(key, value)))
    out += [("item:Culture", "<t:Culture>en-US</t:Culture>"),
            ("item:LastModifiedName", f"<t:LastModifiedName>{escape(item['organizer'])}</t:LastModifiedName>"),
            ("item:LastModifiedTime", f"<t:LastModifiedTime>{stamp(item['modified'])}</t:LastModifiedTime>"),
            ("item:IsAssociated", "<t:IsAssociated>false</t:IsAssociated>"),
            ("item:TextBody", _body(view, shape, "TextBody")),
            ("calendar:UID", f"<t:UID>{escape(item['uid'])}</t:UID>")]
    if occurrence is not None:
        out.append(("calendar:RecurrenceId", f"<t:RecurrenceId>{stamp(view['original'])}</t:RecurrenceId>"))
    out += [("calendar:Start", f"<t:Start>{stamp(view['start'])}</t:Start>"),
            ("calendar:End", f"<t:End>{stamp(view['end'])}</t:End>")]
    if occurrence is not None:
        out.append(("calendar:OriginalStart", f"<t:OriginalStart>{stamp(view['original'])}</t:OriginalStart>"))
    attendees = [item[k] for k in ("attendees", "optional_attendees") if item.get(k) is not None and len(item[k])]
    out += [("calendar:IsAllDayEvent", f"<t:IsAllDayEvent>{str(item['all_day']).lower()}</t:IsAllDayEvent>"),
            ("calendar:LegacyFreeBusyStatus",
             f"<t:LegacyFreeBusyStatus>{escape(view['fb'])}</t:LegacyFreeBusyStatus>")]
    if view.get("location"):
        out.append(("calendar:Location", f"<t:Location>{escape(view['location'])}</t:Location>"))
    out += [("calendar:IsMeeting", f"<t:IsMeeting>{str(bool(attendees)).lower()}</t:IsMeeting>"),
            ("calendar:IsCancelled", "<t:IsCancelled>false</t:IsCancelled>"),
            # a master is not "recurring" in EWS' sense; its occurrences and exceptions are
            ("calendar:IsRecurring", f"<t:IsRecurring>{str(occurrence is not None).lower()}</t:IsRecurring>"),
            ("calendar:MeetingRequestWasSent", "<t:MeetingRequestWasSent>false</t:MeetingRequestWasSent>"),
            ("calendar:IsResponseRequested", f"<t:IsResponseRequested>{str(bool(attendees)).lower()}"
                                             "</t:IsResponseRequested>"),
            ("calendar:CalendarItemType", f"<t:CalendarItemType>{kind}</t:CalendarItemType>"),
            ("calendar:MyResponseType", "<t:MyResponseType>Organizer</t:MyResponseType>"),
            ("calendar:Organizer", f"<t:Organizer>{_mailbox_xml(item['organizer'], item['organizer_name'])}"
                                    "</t:Organizer>")]
    for uri, key in (("calendar:RequiredAttendees", "attendees"), ("calendar:OptionalAttendees",
                                                                   "optional_attendees")):
        if item.get(key) is not None and len(item[key]):
            out.append((uri, tostring(item[key], encoding="unicode")))
    out += [("calendar:Duration", f"<t:Duration>{_duration_of(view['end'] - view['start'])}</t:Duration>"),
            ("calendar:TimeZone", f"<t:TimeZone>{escape(zone_display_name(item['tz']))}</t:TimeZone>"),
            ("calendar:AppointmentSequenceNumber", "<t:AppointmentSequenceNumber>0</t:AppointmentSequenceNumber>"),
            ("calendar:AppointmentState", f"<t:AppointmentState>{1 if attendees else 0}</t:AppointmentState>")]
    if kind == "RecurringMaster":
        series = _series(item)
        live = [n for n in range(1, len(series) + 1) if n not in item["deleted"]]
        out.append(("calendar:Recurrence", tostring(item["recurrence"], encoding="unicode")))
        if live:
            out.append(("calendar:FirstOccurrence", _occurrence_info(item, live[0], "FirstOccurrence")))
            if _child(item["recurrence"], "NoEndRecurrence") is None:
                out.append(("calendar:LastOccurrence", _occurrence_info(item, live[-1], "LastOccurrence")))
        if item["exceptions"]:
            out.append(("calendar:ModifiedOccurrences", "<t:ModifiedOccurrences>" + "".join(
                _occurrence_info(item, n) for n in sorted(item["exceptions"])) + "</t:ModifiedOccurrences>"))
        if item["deleted"]:
            out.append(("calendar:DeletedOccurrences", "<t:DeletedOccurrences>" + "".join(
                f"<t:DeletedOccurrence><t:Start>{stamp(series[n - 1])}</t:Start></t:DeletedOccurrence>"
                for n in sorted(item["deleted"])) + "</t:DeletedOccurrences>"))
    out += [("calendar:StartTimeZone", f'<t:StartTimeZone Id={quoteattr(item["tz"])} '
                                       f'Name={quoteattr(zone_display_name(item["tz"]))}/>'),
            ("calendar:EndTimeZone", f'<t:EndTimeZone Id={quoteattr(item.get("end_tz") or item["tz"])} '
                                     f'Name={quoteattr(zone_display_name(item.get("end_tz") or item["tz"]))}/>')]
    return out


def _extended(key: str, value: str) -> str:
    set_id, name, kind = key.split("|")
    if set_id == "tag":
        uri = f'PropertyTag="{hex(int(name))}"'
    elif name.startswith("id:"):
        uri = f"PropertySetId={quoteattr(set_id)} PropertyId={quoteattr(name[3:])}"
    else:
        uri = f"PropertySetId={quoteattr(set_id)} PropertyName={quoteattr(name)}"
    return (f'<t:ExtendedProperty><t:ExtendedFieldURI {uri} PropertyType={quoteattr(kind)}/>'
            f"<t:Value>{escape(value)}</t:Value></t:ExtendedProperty>")


def render_item(item: dict[str, Any], occurrence: int | None = None, shape: Shape | None = None) -> str:
    """The item (or occurrence `occurrence` of the series) as a CalendarItem element, with the properties the
    shape asks for (every one, extended properties included, without a shape)."""
    shape = shape or Shape()
    item_id = item["id"] if occurrence is None else occurrence_id(item["id"], occurrence)
    parts = [f'<t:ItemId Id={quoteattr(item_id)} ChangeKey={quoteattr(item["ck"])}/>']
    parts += [xml for uri, xml in _fields(item, occurrence, shape) if uri == "ExtendedProperty" or shape.wants(uri)]
    return "<t:CalendarItem>" + "".join(parts) + "</t:CalendarItem>"


# what each base shape holds for a calendar item (Default as Exchange 2013 answers GetItem)
ALL_FIELDS = frozenset(
    "item:ParentFolderId item:ItemClass item:Subject item:Sensitivity item:Body item:DateTimeReceived item:Size "
    "item:Categories item:Importance item:IsSubmitted item:IsDraft item:IsFromMe item:IsResend item:IsUnmodified "
    "item:DateTimeSent item:DateTimeCreated item:ReminderIsSet item:ReminderMinutesBeforeStart "
    "item:HasAttachments item:Culture item:LastModifiedName item:LastModifiedTime item:IsAssociated item:TextBody "
    "calendar:UID calendar:RecurrenceId calendar:Start calendar:End calendar:OriginalStart calendar:IsAllDayEvent "
    "calendar:LegacyFreeBusyStatus calendar:Location calendar:IsMeeting calendar:IsCancelled calendar:IsRecurring "
    "calendar:MeetingRequestWasSent calendar:IsResponseRequested calendar:CalendarItemType calendar:MyResponseType "
    "calendar:Organizer calendar:RequiredAttendees calendar:OptionalAttendees calendar:Duration calendar:TimeZone "
    "calendar:AppointmentSequenceNumber calendar:AppointmentState calendar:Recurrence calendar:FirstOccurrence "
    "calendar:LastOccurrence calendar:ModifiedOccurrences calendar:DeletedOccurrences calendar:StartTimeZone "
    "calendar:EndTimeZone".split())
DEFAULT_FIELDS = frozenset(
    "item:ParentFolderId item:ItemClass item:Subject item:Sensitivity item:Body item:HasAttachments "
    "item:IsAssociated calendar:Start calendar:End calendar:LegacyFreeBusyStatus calendar:Location "
    "calendar:CalendarItemType calendar:Organizer calendar:RequiredAttendees calendar:OptionalAttendees".split())
# AllProperties leaves out what needs a conversion or another store read (TextBody, the full zone definitions)
BASE_SHAPES = {"IdOnly": frozenset(), "Default": DEFAULT_FIELDS,
               "AllProperties": ALL_FIELDS - {"item:TextBody"}}
# what FindItem refuses to list (ErrorInvalidPropertyRequest): properties read from the item's body or streams
NOT_IN_FIND = frozenset({"item:Body", "item:TextBody", "item:Attachments", "item:MimeContent",
                         "calendar:RequiredAttendees", "calendar:OptionalAttendees", "calendar:Resources",
                         "calendar:ModifiedOccurrences", "calendar:DeletedOccurrences",
                         "calendar:FirstOccurrence", "calendar:LastOccurrence", "calendar:Recurrence"})


def _message(op: str, body: str = "", code: str = "NoError", text: str = "", warning: bool = False) -> str:
    if code != "NoError":   # a failed sync still carries an (empty) state, as Exchange sends it
        tail = "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>" \
            if op == "SyncFolderItems" else ""
        return (f'<m:{op}ResponseMessage ResponseClass="{"Warning" if warning else "Error"}"><m:MessageText>'
                f"{escape(text or code)}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
                f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{tail}{body}</m:{op}ResponseMessage>")
    return f'<m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{body}' \
           f"</m:{op}ResponseMessage>"


HEADER = (f'<s:Header><h:ServerVersionInfo xmlns:h="{T}" MajorVersion="15" MinorVersion="0" MajorBuildNumber="847" '
          'MinorBuildNumber="31" Version="Exchange2013_SP1"/></s:Header>')


def _envelope(op: str, messages: list[str]) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}">{HEADER}<s:Body>'
            f'<m:{op}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>{"".join(messages)}'
            f"</m:ResponseMessages></m:{op}Response></s:Body></s:Envelope>")


def _fault(code: str, text: str, extra: str = "") -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}"><s:Body><s:Fault>'
            f'<faultcode xmlns:a="{T}">a:{code}</faultcode><faultstring>{escape(text)}</faultstring><detail>'
            f'<e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode><e:Message xmlns:e="{E}">{escape(text)}'
            f"</e:Message>{extra}</detail></s:Fault></s:Body></s:Envelope>")


# --- restrictions: what FindItem can be asked to match ----------------------------------------------------------
VALUES = {"item:Subject": "subject", "calendar:Start": "start", "calendar:End": "end", "calendar:Location": "location",
          "calendar:IsAllDayEvent": "all_day", "calendar:LegacyFreeBusyStatus": "fb", "item:Categories": "categories",
          "item:Importance": "importance", "item:Sensitivity": "sensitivity", "calendar:UID": "uid",
          "item:DateTimeCreated": "created", "item:LastModifiedTime": "modified", "item:Body": "body",
          "calendar:CalendarItemType": "kind", "item:ItemClass": "item_class"}
COMPARISONS = {"IsEqualTo": lambda a, b: a == b, "IsNotEqualTo": lambda a, b: a != b,
               "IsGreaterThan": lambda a, b: a > b, "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
               "IsLessThan": lambda a, b: a < b, "IsLessThanOrEqualTo": lambda a, b: a <= b}


def _operand(view: dict[str, Any], path: Element) -> Any:
    if _local(path.tag) == "ExtendedFieldURI":
        return view["ext"].get(_prop_key(path))
    uri = path.get("FieldURI") or ""
    if uri not in VALUES:
        raise EwsFault("ErrorUnsupportedPathForQuery", f"{uri} cannot be used in a restriction.")
    return view.get(VALUES[uri])


def _typed(value: Any, constant: str) -> Any:
    if isinstance(value, datetime):
        return _when(constant)
    if isinstance(value, bool):
        return _flag(constant)
    return constant.lower()


def matches(view: dict[str, Any], rule: Element) -> bool:
    """Whether an item (or occurrence) view satisfies a SearchExpression."""
    name = _local(rule.tag)
    if name in ("And", "Or"):
        results = (matches(view, c) for c in rule)
        return all(results) if name == "And" else any(results)
    if name == "Not":
        return not matches(view, rule[0])
    path = rule[0]
    if name == "Exists":
        return _operand(view, path) not in (None, "", [])
    if name == "Contains":
        constant = (_child(rule, "Constant").get("Value") if _child(rule, "Constant") is not None else "") or ""
        value = _operand(view, path)
        values = value if isinstance(value, list) else [value or ""]
        if (rule.get("ContainmentComparison") or "Exact") != "Exact":
            constant, values = constant.lower(), [v.lower() for v in values]
        mode = rule.get("ContainmentMode") or "FullString"
        test = {"FullString": lambda v: v == constant, "Prefixed": lambda v: v.startswith(constant),
                "PrefixOnWords": lambda v: any(w.startswith(constant) for w in v.split())}.get(
                    mode, lambda v: constant in v)
        return any(test(v) for v in values)
    if name not in COMPARISONS:
        raise EwsFault("ErrorInvalidRestriction", f"{name} is not a search expression this server evaluates.")
    other = _child(rule, "FieldURIOrConstant")
    constant = _child(other, "Constant") if other is not None else None
    if constant is None:
        raise EwsFault("ErrorUnsupportedQueryFilter", "only a property compared with a constant")
    value = _operand(view, path)
    if value is None:
        return name == "IsNotEqualTo"
    values = value if isinstance(value, list) else [value]
    return any(COMPARISONS[name](v.lower() if isinstance(v, str) else v, _typed(v, constant.get("Value") or ""))
               for v in values)


def _view(item: dict[str, Any], occurrence: int | None = None) -> dict[str, Any]:
    kind = "RecurringMaster" if item.get("recurrence") is not None else "Single"
    if occurrence is not None:
        kind = "Exception" if occurrence in item["exceptions"] else "Occurrence"
        return {**item, **_occurrence(item, occurrence), "kind": kind, "item_class": "IPM.Appointment"}
    return {**item, "kind": kind, "item_class": "IPM.Appointment"}


# --- the mailbox -----------------------------------------------------------------------------------------
class Mailbox:
    def __init__(self, state: EwsState, email: str):
        self.state, self.email = state, email
        if email not in state.items:
            raise EwsFault("ErrorNonExistentMailbox", f"no mailbox {email}")
        self.items = state.items[email]

    def find(self, ref: Element) -> tuple[dict[str, Any], int | None]:
        """(master item, occurrence position or None) for an ItemId, OccurrenceItemId or RecurringMasterItemId."""
        if _local(ref.tag) == "OccurrenceItemId":
            master_id, occ = parse_id(ref.get("RecurringMasterId") or "")
            item = self.items.get(master_id) if occ is None else None
            if item is None:
                raise EwsFault("ErrorItemNotFound", NOT_FOUND)
            try:
                index = int(ref.get("InstanceIndex") or 0)
            except ValueError:
                raise EwsFault("ErrorSchemaValidation", "InstanceIndex is not a number") from None
            if item.get("recurrence") is None or not 1 <= index <= len(_series(item)):
                raise EwsFault("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange")
            if index in item["deleted"]:
                raise EwsFault("ErrorCalendarOccurrenceIsDeletedFromRecurrence")
            return item, index
        if _local(ref.tag) == "RecurringMasterItemId":
            master_id, occ = parse_id(ref.get("OccurrenceId") or "")
            item = self.items.get(master_id)
            if item is None or item.get("recurrence") is None:
                raise EwsFault("ErrorItemNotFound", NOT_FOUND)
            return item, None
        master_id, occ = parse_id(ref.get("Id") or "")
        item = self.items.get(master_id)
        if item is None or (occ is not None and (item.get("recurrence") is None or occ in item["deleted"]
                                                 or not 1 <= occ <= len(_series(item)))):
            raise EwsFault("ErrorItemNotFound", NOT_FOUND)
        return item, occ

    def create(self, elem: Element) -> dict[str, Any]:
        created = now()
        item: dict[str, Any] = {
            "id": new_item_id(), "subject": "", "body": "", "body_type": "Text", "all_day": False, "fb": "Busy",
            "location": "", "tz": REQUEST_ZONE.get(), "recurrence": None, "attendees": None, "organizer": self.email,
            "organizer_name": self.state.names.get(self.email, self.email), "ext": {},
            "deleted": set(), "exceptions": {}, "categories": [], "importance": "Normal", "sensitivity": "Normal",
            "reminder_set": True, "reminder": 15, "created": created, "modified": created,
            "uid": "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(24).upper()}
        _apply_fields(item, elem)
        if "start" not in item or "end" not in item:
            raise EwsFault("ErrorMissingInformation", "Start and End are required")
        if item["end"] < item["start"]:
            raise EwsFault("ErrorCalendarEndDateIsEarlierThanStartDate")
        _first_occurrence(item)
        self.items[item["id"]] = item
        self.state.touch(self.email, item)
        return item

    def update(self, change: Element, resolution: str, shape: Shape) -> str:
        ref = next((c for c in change if _local(c.tag) in ("ItemId", "OccurrenceItemId", "RecurringMasterItemId")),
                   None)
        if ref is None:
            raise EwsFault("ErrorSchemaValidation", "an ItemChange names its item")
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
                        "calendar:RequiredAttendees": "attendees", "item:Categories": "categories",
                        "calendar:OptionalAttendees": "optional_attendees"}.get(field_name or "", "_ignored")] = None
            else:
                value = next((c for c in op if _local(c.tag) == "CalendarItem"), None)
                if value is not None:
                    scratch: dict[str, Any] = {"ext": {}}
                    _apply_fields(scratch, value)
                    target.update(scratch if scratch["ext"] else {k: v for k, v in scratch.items() if k != "ext"})
        if index is not None:   # an occurrence becomes (or stays) an exception
            exc = {k: v for k, v in _occurrence(item, index).items() if k != "original"}
            exc.update({k: ("" if v is None and k in ("location", "body") else [] if v is None else v)
                        for k, v in target.items() if k in EXCEPTION_FIELDS})
            if exc["end"] < exc["start"]:
                raise EwsFault("ErrorCalendarEndDateIsEarlierThanStartDate")
            _no_crossing(item, index, exc)
            item["exceptions"][index] = exc
            self.state.touch(self.email, item)
            return render_item(item, index, shape)
        if target.get("ext"):
            item["ext"].update(target.pop("ext"))
        target.pop("_ignored", None)
        if "recurrence" in target:
            item["deleted"], item["exceptions"] = set(), {}
        _keep_answers(item, target)
        blank = {"location": "", "body": "", "categories": []}
        changed = {**item, **{k: (blank.get(k) if v is None and k in blank else v) for k, v in target.items()}}
        if changed["end"] < changed["start"]:
            raise EwsFault("ErrorCalendarEndDateIsEarlierThanStartDate")
        if "recurrence" in target or "start" in target:
            _first_occurrence(changed)
        item.update(changed)
        self.state.touch(self.email, item)
        return render_item(item, None, shape)

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

    def sync(self, token: str, limit: int, shape: Shape) -> tuple[str, bool, str]:
        since = 0
        if token:
            try:
                epoch, _, number = base64.b64decode(token, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                epoch, number = "", ""
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
            out.append(f"<t:{kind}>{render_item(item, None, shape)}</t:{kind}>")
        upto = last[page[-1]] if more else self.state.seq
        return base64.b64encode(f"{self.state.epoch}:{upto}".encode()).decode(), not more, "".join(out)

    def instances(self, lo: datetime, hi: datetime) -> list[tuple[dict[str, Any], int | None]]:
        """(item, occurrence position or None) of every single item and occurrence that overlaps [lo, hi), by
        start (a CalendarView: the master itself is never listed)."""
        out = []
        for item in self.items.values():
            if item.get("recurrence") is None:
                if item["start"] < hi and (item["end"] > lo or item["start"] == item["end"] == lo):
                    out.append((item["start"], item, None))
                continue
            for n in range(1, len(_series(item)) + 1):
                if n in item["deleted"]:
                    continue
                occ = _occurrence(item, n)
                if occ["start"] < hi and occ["end"] > lo:
                    out.append((occ["start"], item, n))
        return [(item, n) for _, item, n in sorted(out, key=lambda t: t[0])]

    def busy(self, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime, str]]:
        out = []
        for item, n in self.instances(lo, hi):
            view = {**item, **_occurrence(item, n)} if n is not None else item
            if view["fb"] != "Free":
                out.append((view["start"], view["end"], view["fb"]))
        return sorted(out)


def _no_crossing(item: dict[str, Any], index: int, moved: dict[str, Any]) -> None:
    """A moved occurrence may not overlap or cross the occurrences next to it (as they stand, moved or not):
    ErrorOccurrenceCrossingBoundary."""
    live = [n for n in range(1, len(_series(item)) + 1) if n not in item["deleted"] and n != index]
    before = [n for n in live if n < index][-1:]
    after = [n for n in live if n > index][:1]
    for n in before + after:
        other = _occurrence(item, n)
        if (n < index and moved["start"] < other["end"]) or (n > index and moved["end"] > other["start"]):
            raise EwsFault("ErrorOccurrenceCrossingBoundary", "Modified occurrence is crossing or overlapping "
                           "adjacent occurrence.")


def _first_occurrence(item: dict[str, Any]) -> None:
    """A series must have an occurrence (ErrorRecurrenceHasNoOccurrence). The master keeps the Start it was given,
    even off the pattern's days; FirstOccurrence says when the series really begins."""
    if item.get("recurrence") is None:
        return
    try:
        zone = zone_of(item.get("tz"))
    except ValueError:
        zone = ZoneInfo("UTC")
    rule = series_rule(item["recurrence"], item["start"].astimezone(zone).replace(tzinfo=None))
    if next(iter(rule), None) is None:
        raise EwsFault("ErrorRecurrenceHasNoOccurrence", "The recurrence pattern has no occurrence.")


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
    if address and address.lower() != user.lower():
        raise EwsFault("ErrorAccessDenied", f"{user} has no delegate access to {address}")
    return Mailbox(state, user)


FOLDER_FIELDS = ("folder:FolderId", "folder:ParentFolderId", "folder:FolderClass", "folder:DisplayName",
                 "folder:TotalCount", "folder:ChildFolderCount")
FOLDER_SHAPES = {"IdOnly": (), "Default": ("folder:DisplayName", "folder:ChildFolderCount"),
                 "AllProperties": FOLDER_FIELDS}


def _get_folder(box: Mailbox, op: Element) -> list[str]:
    """GetFolder: the calendar, by its distinguished name or its id (the only folder this server keeps)."""
    shape = _child(op, "FolderShape")
    base = _text(shape, "BaseShape", "IdOnly") if shape is not None else "IdOnly"
    extra = _child(shape, "AdditionalProperties") if shape is not None else None
    wanted = {*FOLDER_SHAPES.get(base, ()), *(c.get("FieldURI") for c in extra or [])}
    values = {"folder:ParentFolderId": f'<t:ParentFolderId Id={quoteattr(folder_id("root:" + box.email))} '
                                       'ChangeKey="AQAAAA=="/>',
              "folder:FolderClass": "<t:FolderClass>IPF.Appointment</t:FolderClass>",
              "folder:DisplayName": "<t:DisplayName>Calendar</t:DisplayName>",
              "folder:TotalCount": f"<t:TotalCount>{len(box.items)}</t:TotalCount>",
              "folder:ChildFolderCount": "<t:ChildFolderCount>0</t:ChildFolderCount>"}
    root = {"folder:DisplayName": "<t:DisplayName>Root</t:DisplayName>",
            "folder:TotalCount": "<t:TotalCount>0</t:TotalCount>",
            "folder:ChildFolderCount": "<t:ChildFolderCount>1</t:ChildFolderCount>"}
    messages = []
    for ref in _child(op, "FolderIds") or []:
        wanted_id = ref.get("Id")
        if _local(ref.tag) == "DistinguishedFolderId":
            wanted_id = {"calendar": folder_id(box.email), "root": folder_id("root:" + box.email)}.get(wanted_id)
        if wanted_id not in (folder_id(box.email), folder_id("root:" + box.email)):
            messages.append(_message("GetFolder", code="ErrorFolderNotFound",
                                     text="The specified folder could not be found in the store."))
            continue
        is_root = wanted_id != folder_id(box.email)
        fields = "".join((root if is_root else values).get(f, "") for f in FOLDER_FIELDS[1:]
                         if f in wanted and not (is_root and f in ("folder:ParentFolderId", "folder:FolderClass")))
        element = "Folder" if is_root else "CalendarFolder"
        messages.append(_message("GetFolder", f"<m:Folders><t:{element}><t:FolderId Id={quoteattr(wanted_id)} "
                                              f'ChangeKey="AQAAAA=="/>{fields}</t:{element}></m:Folders>'))
    return messages


def _find_item(box: Mailbox, op: Element) -> str:
    shape = shape_of(_child(op, "ItemShape"))
    refused = sorted(shape.fields & NOT_IN_FIND)
    if refused:
        raise EwsFault("ErrorInvalidPropertyRequest", f"{refused[0]} cannot be requested in FindItem.")
    listed_fields = (ALL_FIELDS if shape.base == "AllProperties" else BASE_SHAPES[shape.base]) - NOT_IN_FIND
    listed = Shape("IdOnly", shape.fields | listed_fields, shape.extended, shape.body_type)
    restriction = _child(op, "Restriction")
    view = _child(op, "CalendarView")
    if view is not None:
        lo, hi = _when(view.get("StartDate") or ""), _when(view.get("EndDate") or "")
        if hi < lo:
            raise EwsFault("ErrorCalendarEndDateIsEarlierThanStartDate")
        found = box.instances(lo, hi)
    else:
        found = [(item, None) for item in box.items.values()]
    if restriction is not None and len(restriction):
        found = [(i, n) for i, n in found if matches(_view(i, n), restriction[0])]
    order = _child(op, "SortOrder")
    for rule in reversed(list(order) if order is not None and view is None else []):
        path = _child(rule, "FieldURI")
        key = VALUES.get(path.get("FieldURI") or "") if path is not None else None
        if key is None:
            raise EwsFault("ErrorUnsupportedPathForSortGroup", "The property cannot be used for sorting.")
        found.sort(key=lambda pair, k=key: (_view(*pair).get(k) is None, _view(*pair).get(k) or ""),
                   reverse=rule.get("Order") == "Descending")
    total, offset, last = len(found), 0, True
    paged = _child(op, "IndexedPageItemView")
    limit = (view if view is not None else paged).get("MaxEntriesReturned") if (view if view is not None
                                                                                 else paged) is not None else None
    if paged is not None:
        offset = int(paged.get("Offset") or 0)
        if paged.get("BasePoint") == "End":
            offset = max(total - offset - int(limit or total), 0)
    if limit is not None and int(limit) < 1:
        raise EwsFault("ErrorInvalidArgument", "MaxEntriesReturned must be at least 1.")
    page = found[offset:offset + int(limit)] if limit else found[offset:]
    last = offset + len(page) >= total
    paging = f' IndexedPagingOffset="{offset + len(page)}"' if paged is not None else ""
    items = "".join(render_item(i, n, listed) for i, n in page)
    return _message("FindItem", f'<m:RootFolder{paging} TotalItemsInView="{total if view is None else len(page)}" '
                                f'IncludesLastItemInRange="{str(last).lower()}"><t:Items>{items}</t:Items>'
                                "</m:RootFolder>")


def _resolve_names(state: EwsState, op: Element) -> str:
    entry = (_text(op, "UnresolvedEntry") or "").strip()
    wanted = entry.lower().removeprefix("smtp:")
    if entry.lower().startswith("smtp:"):
        found = [e for e in state.names if e.lower() == wanted]
    else:   # ambiguous name resolution: a prefix of the address or of a word of the name
        found = [e for e, name in state.names.items()
                 if wanted and (e.lower().startswith(wanted) or any(w.lower().startswith(wanted)
                                                                    for w in name.split()))]
    rows = "".join(f"<t:Resolution>{_mailbox_xml(e, state.names[e])}</t:Resolution>" for e in sorted(found))
    body = (f'<m:ResolutionSet TotalItemsInView="{len(found)}" IncludesLastItemInRange="true">{rows}'
            "</m:ResolutionSet>")
    if not found:
        return _message("ResolveNames", code="ErrorNameResolutionNoResults", text="No results were found.")
    if len(found) > 1:
        return _message("ResolveNames", body, code="ErrorNameResolutionMultipleResults",
                        text="Multiple results were found.", warning=True)
    return _message("ResolveNames", body)


def _time_zones(op: Element) -> str:
    asked = [i.text or "" for i in op.iter() if _local(i.tag) == "Id"]
    full = _flag(op.get("ReturnFullTimeZoneData") or "true")
    known = server_zones()
    unknown = [z for z in asked if z not in known]
    if unknown:
        return _message("GetServerTimeZones", code="ErrorTimeZone",
                        text=f"The time zone {unknown[0]!r} is not valid.")
    rows = "".join(zone_definition(z, full) for z in (asked or known))
    return _message("GetServerTimeZones", f"<m:TimeZoneDefinitions>{rows}</m:TimeZoneDefinitions>")


def _handle(state: EwsState, op: Element, user: str) -> str:
    name = _local(op.tag)
    state.requests[name] = state.requests.get(name, 0) + 1
    if name == "GetUserAvailabilityRequest":
        return _availability(state, op)
    if name == "GetServerTimeZones":
        return _envelope(name, [_time_zones(op)])
    if name == "ResolveNames":
        return _envelope(name, [_resolve_names(state, op)])
    box = _mailbox_of(state, op, user)
    messages = []
    if name == "GetFolder":
        messages = _get_folder(box, op)
    elif name == "CreateItem":
        for elem in _child(op, "Items") or []:
            try:
                messages.append(_message(name, f"<m:Items>{render_item(box.create(elem), None, Shape('IdOnly'))}"
                                               "</m:Items>"))
            except EwsFault as exc:
                messages.append(_message(name, code=exc.code, text=exc.text))
    elif name in ("GetItem", "DeleteItem"):
        shape = shape_of(_child(op, "ItemShape"))
        for ref in _child(op, "ItemIds") or []:
            try:
                if name == "GetItem":
                    item, index = box.find(ref)
                    messages.append(_message(name, f"<m:Items>{render_item(item, index, shape)}</m:Items>"))
                else:
                    box.delete(ref)
                    messages.append(_message(name))
            except EwsFault as exc:
                messages.append(_message(name, code=exc.code, text=exc.text))
    elif name == "UpdateItem":
        for change in _child(op, "ItemChanges") or []:
            try:
                rendered = box.update(change, op.get("ConflictResolution") or "AutoResolve", Shape("IdOnly"))
                messages.append(_message(name, f"<m:Items>{rendered}</m:Items>"
                                               "<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"))
            except EwsFault as exc:
                messages.append(_message(name, code=exc.code, text=exc.text))
    elif name == "FindItem":
        try:
            messages.append(_find_item(box, op))
        except EwsFault as exc:
            messages.append(_message(name, code=exc.code, text=exc.text))
    elif name == "SyncFolderItems":
        try:
            limit = int(_text(op, "MaxChangesReturned", "0") or 0)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 512:
            raise EwsFault("ErrorSchemaValidation", "MaxChangesReturned is between 1 and 512.")
        try:
            token, last, changes = box.sync(_text(op, "SyncState"), limit, shape_of(_child(op, "ItemShape")))
            messages.append(_message(name, f"<m:SyncState>{token}</m:SyncState><m:IncludesLastItemInRange>"
                                           f"{str(last).lower()}</m:IncludesLastItemInRange><m:Changes>{changes}"
                                           "</m:Changes>"))
        except EwsFault as exc:
            messages.append(_message(name, code=exc.code, text=exc.text))
    else:
        raise EwsFault("ErrorInvalidOperation", f"{name} is not served by this sandbox")
    return _envelope(name, messages)


def _transition_day(year: int, rule: Element) -> datetime:
    """The local moment a SerializableTimeZone rule (StandardTime or DaylightTime) takes effect in `year`:
    DayOrder 1-4 is the nth DayOfWeek of Month, 5 the last one."""
    month, order = int(_text(rule, "Month", "1")), int(_text(rule, "DayOrder", "1"))
    weekday = list(WEEKDAYS).index(_text(rule, "DayOfWeek", "Sunday"))
    days = [d for d in range(1, calendar.monthrange(year, month)[1] + 1)
            if date(year, month, d).weekday() == weekday]
    at = time.fromisoformat(_text(rule, "Time", "00:00:00"))
    return datetime.combine(date(year, month, days[-1] if order >= 5 else days[order - 1]), at)


def _request_offset(zone: Element | None, local: datetime) -> timedelta:
    """UTC offset of the request's TimeZone (Windows biases, with its daylight rule) at a naive local time."""
    if zone is None:
        return timedelta(0)
    bias = int(_text(zone, "Bias", "0") or 0)
    std, dst = _child(zone, "StandardTime"), _child(zone, "DaylightTime")
    if std is None or dst is None or int(_text(dst, "Bias", "0") or 0) == int(_text(std, "Bias", "0") or 0):
        return timedelta(minutes=-(bias + (int(_text(std, "Bias", "0") or 0) if std is not None else 0)))
    begin, end = _transition_day(local.year, dst), _transition_day(local.year, std)
    summer = begin <= local < end if begin < end else not end <= local < begin
    return timedelta(minutes=-(bias + int(_text(dst if summer else std, "Bias", "0") or 0)))


def _to_request_zone(zone: Element | None, instant: datetime) -> datetime:
    """An instant as a naive local time of the request's TimeZone (how free/busy answers are written)."""
    naive = instant.astimezone(UTC).replace(tzinfo=None)
    return naive + _request_offset(zone, naive + _request_offset(zone, naive))


def _window_edge(zone: Element | None, text: str) -> datetime:
    """A TimeWindow edge: local time of the request's TimeZone, or an instant when it carries an offset."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    return (value - _request_offset(zone, value)).replace(tzinfo=UTC)


def _availability(state: EwsState, op: Element) -> str:
    zone = next((e for e in op if _local(e.tag) == "TimeZone"), None)
    window = next(e for e in op.iter() if _local(e.tag) == "TimeWindow")
    lo, hi = (_window_edge(zone, _text(window, edge)) for edge in ("StartTime", "EndTime"))
    options = next((e for e in op.iter() if _local(e.tag) == "FreeBusyViewOptions"), window)
    view = _text(options, "RequestedView", "Detailed") or "Detailed"
    answers = []
    for data in (e for e in op.iter() if _local(e.tag) == "MailboxData"):
        address = next((e.text for e in data.iter() if _local(e.tag) == "Address"), "") or ""
        if address not in state.items:
            answers.append(f'<m:FreeBusyResponse><m:ResponseMessage ResponseClass="Error"><m:MessageText>no mailbox '
                           f'{escape(address)}</m:MessageText><m:ResponseCode>ErrorMailRecipientNotFound'
                           f'</m:ResponseCode></m:ResponseMessage></m:FreeBusyResponse>')
            continue
        busy = Mailbox(state, address).busy(lo, hi)
        events = "".join(
            f"<t:CalendarEvent><t:StartTime>{_to_request_zone(zone, s).isoformat()}"
            f"</t:StartTime><t:EndTime>{_to_request_zone(zone, e).isoformat()}</t:EndTime>"
            f"<t:BusyType>{escape(kind)}</t:BusyType></t:CalendarEvent>" for s, e, kind in busy)
        merged = ""
        if view.endswith("Merged") or view == "MergedOnly":   # one digit per interval: the busiest status in it
            step = timedelta(minutes=int(_text(options, "MergedFreeBusyIntervalInMinutes", "30") or 30))
            slots, at = [], lo
            while at < hi:
                slots.append(str(max((MERGED.get(k, 2) for s, e, k in busy if s < at + step and e > at), default=0)))
                at += step
            merged = f"<t:MergedFreeBusy>{''.join(slots)}</t:MergedFreeBusy>"
        listed = "" if view == "MergedOnly" else f"<t:CalendarEventArray>{events}</t:CalendarEventArray>"
        answers.append(f'<m:FreeBusyResponse><m:ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                       f'</m:ResponseCode></m:ResponseMessage><m:FreeBusyView><t:FreeBusyViewType>{escape(view)}'
                       f'</t:FreeBusyViewType>{merged}{listed}</m:FreeBusyView></m:FreeBusyResponse>')
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}">{HEADER}<s:Body>'
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
                REQUEST_ZONE.set(_context_zone(envelope))
                answer = _handle(state, op, user)
                if state.lose.get(_local(op.tag), 0) > 0:   # done, but the client never hears of it
                    state.lose[_local(op.tag)] -= 1
                    return Response(status_code=502)
                return Response(answer, media_type=xml)
            except EwsFault as exc:
                return Response(_fault(exc.code, exc.text), status_code=500, media_type=xml)

    return app

