"""The Exchange sandbox answers as Exchange does, driven by exchangelib (as Outlook-like clients reach it) over
loopback, and by raw SOAP where a client library never sends what a request may carry."""

from __future__ import annotations

import ast
import base64
import datetime as dt
from pathlib import Path

import anyio
import httpx
import pytest
from exchangelib import CalendarItem, EWSDate, EWSDateTime, EWSTimeZone, ExtendedProperty
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar
from exchangelib.items import SEND_TO_NONE
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    DailyPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

import zoomcal.sandbox.ews as sandbox_ews
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.ews import M, S, T
from zoomcal.sandbox.world import SandboxWorld

PARIS = EWSTimeZone("Europe/Paris")
UTC = EWSTimeZone("UTC")


# a client's own named property on calendar items
if "sandbox_tag" not in {f.name for f in CalendarItem.FIELDS}:
    CalendarItem.register("sandbox_tag", type("Tag", (ExtendedProperty,), {
        "property_set_id": "c11ff724-aa03-4555-9952-8fa248a11c3e", "property_name": "sandbox-tag",
        "property_type": "String"}))


@pytest.fixture
def eva(served_world):
    """(world, exchangelib account, calendar folder) for eva@example.com on the served sandbox."""
    world, base = served_world
    world.add_user("eva@example.com", "Eva", "Europe/Paris")
    account, folder = SandboxActor(world, base_url=base).ews_client("eva@example.com")
    yield world, account, folder
    account.protocol.close()


def local(hour: int, *day: int, minute: int = 0) -> EWSDateTime:
    return EWSDateTime(*day, hour, minute, tzinfo=PARIS)


def save(account, folder, subject: str, start: EWSDateTime, minutes: int = 30, **fields) -> CalendarItem:
    item = CalendarItem(account=account, folder=folder, subject=subject, start=start,
                        end=start + dt.timedelta(minutes=minutes), **fields)
    item.save(send_meeting_invitations=SEND_TO_NONE)
    return item


def starts(folder, lo: EWSDateTime, hi: EWSDateTime, **filters) -> list[tuple[str, EWSDateTime, str]]:
    """(subject, local start, CalendarItemType) of what a CalendarView lists."""
    view = folder.view(start=lo, end=hi)
    return [(i.subject, i.start.astimezone(PARIS), i.type) for i in (view.filter(**filters) if filters else view)]


def test_the_sandbox_reads_recurrences_and_times_with_its_own_code():
    tree = ast.parse(Path(sandbox_ews.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.startswith(("zoomcal.mapping", "zoomcal.connectors", "zoomcal.domain"))}


def test_a_weekly_series_keeps_its_wall_clock_across_the_change_of_hour(eva):
    world, account, folder = eva
    first = local(9, 2026, 3, 23)   # a Monday; Paris moves to summer time on Sunday 29 March
    save(account, folder, "Standup", first, recurrence=Recurrence(
        pattern=WeeklyPattern(interval=1, weekdays=[1, 3], first_day_of_week=1), start=first.date(), number=4))
    listed = starts(folder, local(0, 2026, 3, 1), local(0, 2026, 5, 1))
    assert [(s.day, s.hour) for _, s, _ in listed] == [(23, 9), (25, 9), (30, 9), (1, 9)]
    assert {kind for *_, kind in listed} == {"Occurrence"}        # the master itself is never in a view
    assert [s.utcoffset() for _, s, _ in listed][1:3] == [dt.timedelta(hours=1), dt.timedelta(hours=2)]


def test_monthly_patterns_as_outlook_lays_them_out(eva):
    world, account, folder = eva
    jan = local(10, 2026, 1, 31)
    save(account, folder, "Day 31", jan, recurrence=Recurrence(
        pattern=AbsoluteMonthlyPattern(interval=1, day_of_month=31), start=jan.date(), number=4))
    fri = local(16, 2026, 1, 30)
    save(account, folder, "Last Friday", fri, recurrence=Recurrence(
        pattern=RelativeMonthlyPattern(interval=2, weekday=5, week_number=5), start=fri.date(), number=3))
    sunday = local(8, 2026, 11, 1)
    save(account, folder, "First weekday of November", sunday, recurrence=Recurrence(
        pattern=RelativeYearlyPattern(weekday=9, week_number=1, month=11), start=sunday.date(), number=2))
    got = starts(folder, local(0, 2026, 1, 1), local(0, 2028, 1, 1))
    by = {}
    for subject, start, _ in got:
        by.setdefault(subject, []).append(start.date().isoformat())
    # a month without day 31 has the occurrence on its last day
    assert by["Day 31"] == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
    assert by["Last Friday"] == ["2026-01-30", "2026-03-27", "2026-05-29"]
    assert by["First weekday of November"] == ["2026-11-02", "2027-11-01"]


def test_a_series_begins_on_its_first_occurrence(eva):
    world, account, folder = eva
    tuesday = local(9, 2026, 3, 3)
    item = save(account, folder, "Mon and Wed", tuesday, recurrence=Recurrence(
        pattern=WeeklyPattern(interval=1, weekdays=[1, 3]), start=tuesday.date(), number=3))
    (got,) = account.fetch(ids=[item], folder=folder)
    assert got.first_occurrence.start.astimezone(PARIS) == local(9, 2026, 3, 4)   # the Wednesday
    assert got.last_occurrence.start.astimezone(PARIS) == local(9, 2026, 3, 11)
    assert [s.day for _, s, _ in starts(folder, local(0, 2026, 3, 1), local(0, 2026, 4, 1))] == [4, 9, 11]
    never = CalendarItem(account=account, folder=folder, subject="Never", start=tuesday,
                         end=tuesday + dt.timedelta(hours=1), recurrence=Recurrence(
                             pattern=WeeklyPattern(interval=1, weekdays=[1]), start=tuesday.date(),
                             end=tuesday.date()))
    with pytest.raises(ews_errors.ErrorRecurrenceHasNoOccurrence):
        never.save(send_meeting_invitations=SEND_TO_NONE)


def test_a_view_lists_exceptions_and_leaves_out_cancelled_occurrences(eva):
    world, account, folder = eva
    first = local(9, 2026, 6, 1)
    master = save(account, folder, "Daily", first, recurrence=Recurrence(
        pattern=DailyPattern(interval=1), start=first.date(), number=4))
    second = master.occurrence(2)
    second.subject, second.start, second.end = "Moved", local(14, 2026, 6, 2), local(15, 2026, 6, 2)
    second.save(update_fields=["subject", "start", "end"], send_meeting_invitations=SEND_TO_NONE)
    master.occurrence(3).delete(send_meeting_cancellations=SEND_TO_NONE)
    got = starts(folder, local(0, 2026, 6, 1), local(0, 2026, 6, 10))
    assert got == [("Daily", local(9, 2026, 6, 1), "Occurrence"), ("Moved", local(14, 2026, 6, 2), "Exception"),
                   ("Daily", local(9, 2026, 6, 4), "Occurrence")]
    assert [s for s, *_ in starts(folder, local(0, 2026, 6, 1), local(0, 2026, 6, 10),
                                  subject__icontains="move")] == ["Moved"]
    (again,) = account.fetch(ids=[master], folder=folder)
    assert [o.start for o in again.modified_occurrences] == [local(14, 2026, 6, 2)]
    assert [d.start for d in again.deleted_occurrences] == [local(9, 2026, 6, 3)]
    occurrence_ids = [i.id for i in folder.view(start=local(0, 2026, 6, 1), end=local(0, 2026, 6, 10))]
    assert len(set(occurrence_ids)) == 3 and master.id not in occurrence_ids
    assert again.modified_occurrences[0].id in occurrence_ids    # an exception has one id wherever it is read
    (read,) = account.fetch(ids=[(occurrence_ids[0], None)], folder=folder)
    assert (read.type, read.is_recurring, read.original_start) == ("Occurrence", True, local(9, 2026, 6, 1))
    assert again.is_recurring is False                            # a master is not "recurring" in EWS



def test_an_occurrence_keeps_what_was_changed_on_it(eva):
    world, account, folder = eva
    first = local(9, 2026, 6, 1)
    master = save(account, folder, "Daily", first, location="Room 1", recurrence=Recurrence(
        pattern=DailyPattern(interval=1), start=first.date(), number=3))
    second = master.occurrence(2)
    second.location, second.legacy_free_busy_status = "Room 2", "Free"
    second.save(update_fields=["location", "legacy_free_busy_status"], send_meeting_invitations=SEND_TO_NONE)
    listed = list(folder.view(start=local(0, 2026, 6, 1), end=local(0, 2026, 6, 4)))
    assert [(i.location, i.legacy_free_busy_status, i.type) for i in listed] == [
        ("Room 1", "Busy", "Occurrence"), ("Room 2", "Free", "Exception"), ("Room 1", "Busy", "Occurrence")]
    (view,) = account.protocol.get_free_busy_info(accounts=[(account, "Required", False)], start=first,
                                                  end=local(0, 2026, 6, 4), requested_view="Detailed")
    assert [e.start.astimezone(PARIS).day for e in view.calendar_events] == [1, 3]   # the free one is not busy
    (occurrence,) = account.fetch(ids=[(listed[1].id, None)], folder=folder)
    series = occurrence.recurring_master()
    series.refresh()                                                # GetItem by RecurringMasterItemId
    assert (series.type, series.location, series.id) == ("RecurringMaster", "Room 1", master.id)
    with pytest.raises(ews_errors.ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange):
        master.occurrence(4).refresh()


def test_a_moved_occurrence_may_not_cross_its_neighbours(eva):
    world, account, folder = eva
    first = local(9, 2026, 6, 1)
    master = save(account, folder, "Weekly", first, minutes=60, recurrence=Recurrence(
        pattern=WeeklyPattern(interval=1, weekdays=[1]), start=first.date(), number=3))

    def move(index: int, start: EWSDateTime) -> None:
        occurrence = master.occurrence(index)
        occurrence.start, occurrence.end = start, start + dt.timedelta(hours=1)
        occurrence.save(update_fields=["start", "end"], send_meeting_invitations=SEND_TO_NONE)

    move(2, local(9, 2026, 6, 12))                                  # within its week: fine
    for index, start in ((2, local(9, 2026, 6, 15)), (3, local(9, 2026, 6, 12)),
                         (1, local(9, 2026, 6, 12))):
        with pytest.raises(ews_errors.ErrorOccurrenceCrossingBoundary):
            move(index, start)    # onto the next occurrence, onto the moved one, past it
    move(3, local(10, 2026, 6, 12))                                 # right after the moved one: fine
    assert [s.day for _, s, _ in starts(folder, local(0, 2026, 6, 1), local(0, 2026, 7, 1))] == [1, 12, 12]

def test_ids_are_opaque_and_a_malformed_one_is_refused_in_its_own_answer(eva):
    world, account, folder = eva
    item = save(account, folder, "One", local(9, 2026, 6, 1))
    for value in (item.id, item.changekey):
        assert base64.b64decode(value, validate=True) and "." not in value
    unknown = base64.b64encode(base64.b64decode(item.id)[:-4] + b"\0\0\0\0").decode()
    answers = list(account.fetch(ids=[(item.id, None), ("not an id", None), (unknown, None)], folder=folder))
    assert isinstance(answers[0], CalendarItem) and answers[0].subject == "One"
    assert [type(a) for a in answers[1:]] == [ews_errors.ErrorInvalidIdMalformed, ews_errors.ErrorItemNotFound]
    empty = soap(world, "eva@example.com", '<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>'
                 f'<m:ItemIds><t:ItemId Id="{item.id}"/><t:ItemId Id=""/></m:ItemIds></m:GetItem>')
    assert empty.count('ResponseClass="Success"') == 1 and "ErrorInvalidIdEmpty" in empty


def test_get_item_answers_with_the_shape_asked_for(eva):
    world, account, folder = eva
    item = save(account, folder, "Review", local(9, 2026, 6, 1), categories=["Red", "Project"],
                importance="High", sensitivity="Private", reminder_minutes_before_start=10, sandbox_tag="t-1",
                body="agenda")
    (full,) = account.fetch(ids=[item], folder=folder)
    assert (full.categories, full.importance, full.sensitivity, full.reminder_minutes_before_start) == \
        (["Red", "Project"], "High", "Private", 10)
    assert full.uid and full.datetime_created and full.organizer.email_address == "eva@example.com"
    assert (full.is_all_day, full.legacy_free_busy_status, full.sandbox_tag, str(full.text_body)) == \
        (False, "Busy", "t-1", "agenda")
    assert full._start_timezone == PARIS and full.type == "Single"
    (some,) = account.fetch(ids=[item], folder=folder, only_fields=["subject"])
    assert (some.subject, some.categories, some.sandbox_tag, some.start) == ("Review", None, None, None)
    # extended properties come only when asked for, even with every other property
    raw = soap(world, "eva@example.com", f'<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape>'
                                         f'</m:ItemShape><m:ItemIds><t:ItemId Id="{item.id}"/></m:ItemIds>'
                                         "</m:GetItem>")
    assert "<t:Categories>" in raw and "sandbox-tag" not in raw and "<t:UID>" in raw
    default = soap(world, "eva@example.com", f'<m:GetItem><m:ItemShape><t:BaseShape>Default</t:BaseShape>'
                                             f'</m:ItemShape><m:ItemIds><t:ItemId Id="{item.id}"/></m:ItemIds>'
                                             "</m:GetItem>")
    assert "<t:Start>" in default and "<t:Categories>" not in default and "<t:UID>" not in default


def test_find_item_restrictions_sorting_and_pages(eva):
    world, account, folder = eva
    for n in range(5):
        save(account, folder, f"Slot {n}", local(9 + n, 2026, 6, 1), sandbox_tag="odd" if n % 2 else "even")
    later = folder.filter(start__gt=local(10, 2026, 6, 1)).order_by("-start")
    assert list(later.values_list("subject", flat=True)) == ["Slot 4", "Slot 3", "Slot 2"]
    assert sorted(folder.filter(sandbox_tag="odd").values_list("subject", flat=True)) == ["Slot 1", "Slot 3"]
    before = world.ews.requests.get("FindItem", 0)
    paged = folder.all().order_by("subject").only("subject")
    paged.page_size = 2
    assert [i.subject for i in paged] == [f"Slot {n}" for n in range(5)]
    assert world.ews.requests["FindItem"] - before == 3          # three pages of at most two
    refused = soap(world, "eva@example.com", '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly'
                   '</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Body"/>'
                   '</t:AdditionalProperties></m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId '
                   'Id="calendar"/></m:ParentFolderIds></m:FindItem>')
    assert "ErrorInvalidPropertyRequest" in refused and 'ResponseClass="Error"' in refused


def test_sync_folder_items_honours_the_shape_and_the_page_size(eva):
    world, account, folder = eva
    for n in range(3):
        save(account, folder, f"Item {n}", local(9 + n, 2026, 6, 1))
    folder.item_sync_state = None
    seen = [(change, item.subject) for change, item in folder.sync_items(only_fields=["subject"],
                                                                         max_changes_returned=2)]
    assert seen == [("create", "Item 0"), ("create", "Item 1"), ("create", "Item 2")]
    assert world.ews.requests["SyncFolderItems"] == 2           # a page of two, then the last one
    assert list(folder.sync_items(sync_state=folder.item_sync_state)) == []
    with pytest.raises(ews_errors.ErrorInvalidSyncStateData):
        list(folder.sync_items(sync_state=base64.b64encode(b"nothing:1").decode()))


def test_folders_zones_and_names(eva):
    world, account, folder = eva
    calendar = account.calendar
    assert (calendar.name, type(calendar)) == ("Calendar", Calendar)
    calendar.refresh()                                   # GetFolder by the folder's id
    assert calendar.name == "Calendar" and calendar.id == account.calendar.id
    zones = {z.id: z for z in account.protocol.get_timezones(return_full_timezone_data=True)}
    assert {"UTC", "Romance Standard Time", "Pacific Standard Time", "Tokyo Standard Time"} <= set(zones)
    std, dst, period = zones["Romance Standard Time"].get_std_and_dst(for_year=2026)
    # Windows biases: minutes added to local time to give UTC; summer time from the last Sunday of March
    assert (period.bias_in_minutes, std.iso_month, std.occurrence, dst.bias, dst.iso_month, dst.occurrence) == \
        (-60, 10, 5, -60, 3, 5)
    assert zones["Tokyo Standard Time"].get_std_and_dst(for_year=2026)[2].bias_in_minutes == -540
    world.ews.add_mailbox("evan@example.com", name="Evan Smith")
    assert [m.email_address for m in account.protocol.resolve_names(["eva@"])] == ["eva@example.com"]
    assert sorted(m.email_address for m in account.protocol.resolve_names(["eva"])) == \
        ["eva@example.com", "evan@example.com"]
    assert [m.email_address for m in account.protocol.resolve_names(["smith"])] == ["evan@example.com"]
    (nobody,) = account.protocol.resolve_names(["zed"])
    assert isinstance(nobody, ews_errors.ErrorNameResolutionNoResults)


def test_an_all_day_item_keeps_its_day_in_its_zone(eva):
    world, account, folder = eva
    item = CalendarItem(account=account, folder=folder, subject="Holiday", is_all_day=True,
                        start=EWSDate(2026, 7, 14), end=EWSDate(2026, 7, 15))
    item._start_timezone = item._end_timezone = PARIS
    item.save(send_meeting_invitations=SEND_TO_NONE)
    (got,) = account.fetch(ids=[item], folder=folder)
    assert got.is_all_day and got._start_timezone == PARIS
    assert got.start == EWSDate(2026, 7, 14) and got.end == EWSDate(2026, 7, 15)


def soap(world: SandboxWorld, email: str, operation: str) -> str:
    """A raw SOAP request in the mailbox's name, on the in-process transport (text of the answer, 200 only)."""
    status, text = soap_status(world, operation, email)
    assert status == 200, text
    return text


def _post(world: SandboxWorld, envelope: str, auth: tuple[str, str]) -> httpx.Response:
    async def send() -> httpx.Response:
        async with httpx.AsyncClient(base_url="http://sandbox", transport=world.transport()) as client:
            return await client.post("/ews/EWS/Exchange.asmx", content=envelope, auth=auth,
                                     headers={"Content-Type": "text/xml; charset=utf-8"})

    return anyio.run(send)



def test_free_busy_in_a_zone_with_summer_time(eva):
    world, account, folder = eva
    save(account, folder, "Winter", local(9, 2026, 1, 15), minutes=60)
    save(account, folder, "Summer", local(9, 2026, 7, 15), minutes=60, legacy_free_busy_status="Tentative")
    save(account, folder, "Free", local(11, 2026, 7, 15), legacy_free_busy_status="Free")
    for day, kind in (((2026, 1, 15), "Busy"), ((2026, 7, 15), "Tentative")):
        (view,) = account.protocol.get_free_busy_info(accounts=[(account, "Required", False)],
                                                      start=local(0, *day), end=local(23, *day),
                                                      requested_view="Detailed")
        assert [(e.start.astimezone(PARIS).hour, e.end.astimezone(PARIS).hour, e.busy_type)
                for e in view.calendar_events] == [(9, 10, kind)]   # 09:00 on the wall clock, winter and summer
    (merged,) = account.protocol.get_free_busy_info(accounts=[(account, "Required", False)],
                                                    start=local(8, 2026, 7, 15), end=local(12, 2026, 7, 15),
                                                    merged_free_busy_interval=60, requested_view="DetailedMerged")
    assert (merged.view_type, merged.merged) == ("DetailedMerged", "0100")   # Free counts as free


# the order of CalendarItemType's elements in the EWS schema (types.xsd, Exchange 2013): an answer out of this order
# fails schema validation in strict clients
CALENDAR_ITEM_ORDER = (
    "MimeContent ItemId ParentFolderId ItemClass Subject Sensitivity Body Attachments DateTimeReceived Size "
    "Categories Importance InReplyTo IsSubmitted IsDraft IsFromMe IsResend IsUnmodified InternetMessageHeaders "
    "DateTimeSent DateTimeCreated ResponseObjects ReminderDueBy ReminderIsSet ReminderNextTime "
    "ReminderMinutesBeforeStart DisplayCc DisplayTo DisplayBcc HasAttachments ExtendedProperty Culture "
    "EffectiveRights LastModifiedName LastModifiedTime IsAssociated WebClientReadFormQueryString "
    "WebClientEditFormQueryString ConversationId UniqueBody Flag StoreEntryId InstanceKey NormalizedBody "
    "EntityExtractionResult PolicyTag ArchiveTag RetentionDate Preview RightsManagementLicenseData "
    "PredictedActionReasons IsClutter BlockStatus HasBlockedImages TextBody IconIndex SearchKey SortKey Hashtags "
    "Mentions MentionedMe MentionsPreview MentionsEx AppliedHashtags AppliedHashtagsPreview Likes LikesPreview "
    "PendingSocialActivityTagIds AtAllMention CanDelete InferenceClassification UID RecurrenceId DateTimeStamp "
    "Start End OriginalStart IsAllDayEvent LegacyFreeBusyStatus Location When IsMeeting IsCancelled IsRecurring "
    "MeetingRequestWasSent IsResponseRequested CalendarItemType MyResponseType Organizer RequiredAttendees "
    "OptionalAttendees Resources ConflictingMeetingCount AdjacentMeetingCount ConflictingMeetings "
    "AdjacentMeetings Duration TimeZone AppointmentReplyTime AppointmentSequenceNumber AppointmentState "
    "Recurrence FirstOccurrence LastOccurrence ModifiedOccurrences DeletedOccurrences MeetingTimeZone "
    "StartTimeZone EndTimeZone").split()
MESSAGE_HEAD = ("MessageText", "ResponseCode", "DescriptiveLinkKey", "MessageXml")


def check_answer(text: str) -> str:
    """One SOAP answer against the EWS message and type schemas: (operation) with a ServerVersionInfo header,
    ResponseMessages of the operation's own kind with a class and a code first, calendar items in schema order."""
    from defusedxml import ElementTree

    root = ElementTree.fromstring(text.encode(), forbid_dtd=True)
    name = lambda e: e.tag.rsplit("}", 1)[-1]   # noqa: E731
    header, body = list(root)
    assert [name(e) for e in header] == ["ServerVersionInfo"] and header[0].get("Version") == "Exchange2013_SP1"
    (response,) = list(body)
    operation = name(response).removesuffix("Response")
    messages = response.find(f"{{{M}}}ResponseMessages")
    if operation == "GetUserAvailability":
        messages = response.find(f"{{{M}}}FreeBusyResponseArray")
        kinds = {"FreeBusyResponse"}
        entries = [m.find(f"{{{M}}}ResponseMessage") for m in messages]
    else:
        kinds = {f"{operation}ResponseMessage"}
        entries = list(messages)
    assert entries and {name(m) for m in (messages if operation == "GetUserAvailability" else entries)} == kinds
    for message in entries:
        assert message.get("ResponseClass") in ("Success", "Warning", "Error")
        head = [name(c) for c in message if name(c) in MESSAGE_HEAD]
        assert "ResponseCode" in head and head == sorted(head, key=MESSAGE_HEAD.index)
        assert [name(c) for c in message][:len(head)] == head                  # the head comes first
        assert (message.get("ResponseClass") == "Success") == (message.find(f"{{{M}}}ResponseCode").text == "NoError")
    for item in root.iter(f"{{{T}}}CalendarItem"):
        order = [CALENDAR_ITEM_ORDER.index(name(c)) for c in item]
        assert order == sorted(order), [name(c) for c in item]
        assert [c for c in item if name(c) == "ItemId"][0].get("ChangeKey")
        assert len({o for o in order if o != CALENDAR_ITEM_ORDER.index("ExtendedProperty")}) == \
            len([o for o in order if o != CALENDAR_ITEM_ORDER.index("ExtendedProperty")])
    return operation


@pytest.mark.anyio
async def test_every_answer_to_the_connector_follows_the_schemas(served_world, monkeypatch):
    from zoomcal.connectors.ews.connector import EwsConnector
    from zoomcal.domain.content import make_content
    from zoomcal.mapping.rules import DEFAULT_RULES

    world, base = served_world
    user = world.add_user("c@example.com")
    answers: list[str] = []
    handle = sandbox_ews._handle

    def recorded(*args):
        answers.append(handle(*args))
        return answers[-1]

    monkeypatch.setattr(sandbox_ews, "_handle", recorded)
    conn = EwsConnector(f"{base}/ews/EWS/Exchange.asmx", "c@example.com", DEFAULT_RULES, username="c@example.com",
                        secret=user["ews_password"], auth="basic", allow_private=True)
    series = make_content(title="Series", description="", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                          timezone="Europe/Paris", rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=4",
                          exdates=["2026-05-18T07:00:00Z"],
                          overrides={"2026-05-11T07:00:00Z": {"start": "2026-05-11T09:00:00Z",
                                                              "end": "2026-05-11T09:30:00Z"}})
    try:
        await conn.probe()
        created = await conn.create(series, "ev-1")
        changes = await conn.changes(None, {})
        await conn.update(created.id, {**series, "title": "Renamed"}, created.etag, "ev-1", created.raws)
        await conn.free_busy(["c@example.com"], dt.datetime(2026, 5, 4, tzinfo=dt.UTC),
                             dt.datetime(2026, 5, 5, tzinfo=dt.UTC))
        await conn.delete(created.id, None)
        await conn.delete(created.id, None)                    # already gone: an error message, not a fault
        await conn.changes(changes.cursor, {})
    finally:
        await conn.aclose()
    operations = {check_answer(text) for text in answers}
    assert operations >= {"FindItem", "CreateItem", "GetItem", "UpdateItem", "DeleteItem", "SyncFolderItems",
                          "GetServerTimeZones", "GetUserAvailability"}


def test_requests_exchange_refuses(eva):
    world, account, folder = eva
    calendar = '<t:DistinguishedFolderId Id="calendar"/>'
    too_many = soap_status(world, '<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
                                  f'</m:ItemShape><m:SyncFolderId>{calendar}</m:SyncFolderId>'
                                  '<m:MaxChangesReturned>513</m:MaxChangesReturned></m:SyncFolderItems>')
    assert too_many[0] == 500 and "ErrorSchemaValidation" in too_many[1]   # 1..512, by the schema
    item = ('<t:CalendarItem><t:Subject>Zone</t:Subject><t:Start>2026-06-01T09:00:00Z</t:Start>'
            '<t:End>2026-06-01T10:00:00Z</t:End><t:StartTimeZone Id="{zone}"/></t:CalendarItem>')
    answer = soap(world, "eva@example.com", '<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId>'
                  f'{calendar}</m:SavedItemFolderId><m:Items>{item.format(zone="Mars Standard Time")}'
                  f'{item.format(zone="Tokyo Standard Time")}</m:Items></m:CreateItem>')
    assert answer.count('ResponseClass="Error"') == 1 and "ErrorTimeZone" in answer
    assert answer.count('ResponseClass="Success"') == 1 and len(world.ews.items["eva@example.com"]) == 1



def test_a_time_without_offset_is_in_the_requests_time_zone(eva):
    world, account, folder = eva
    create = ('<m:CreateItem SendMeetingInvitations="SendToNone"><m:Items><t:CalendarItem><t:Subject>Local'
              '</t:Subject><t:Start>2026-07-01T09:00:00</t:Start><t:End>2026-07-01T09:30:00</t:End><t:Recurrence>'
              '<t:DailyRecurrence><t:Interval>1</t:Interval></t:DailyRecurrence><t:NumberedRecurrence><t:StartDate>'
              '2026-07-01</t:StartDate><t:NumberOfOccurrences>2</t:NumberOfOccurrences></t:NumberedRecurrence>'
              '</t:Recurrence></t:CalendarItem></m:Items></m:CreateItem>')
    status, answer = soap_status(world, create, zone="Romance Standard Time")
    assert status == 200 and 'ResponseClass="Success"' in answer
    (item,) = folder.all()
    assert item.start == local(9, 2026, 7, 1) and item._start_timezone == PARIS   # the context's zone
    assert [i.start for i in folder.view(start=local(0, 2026, 7, 1), end=local(0, 2026, 7, 3))] == \
        [local(9, 2026, 7, 1), local(9, 2026, 7, 2)]
    status, answer = soap_status(world, create, zone="Mars Standard Time")
    assert status == 500 and "ErrorTimeZone" in answer and len(list(folder.all())) == 1

def test_an_html_body_reads_as_text(eva):
    from exchangelib import HTMLBody

    world, account, folder = eva
    item = save(account, folder, "Notes", local(9, 2026, 6, 1), body=HTMLBody("<p>Hi <b>there</b> &amp; all</p>"))
    (got,) = account.fetch(ids=[item], folder=folder, only_fields=["body", "text_body"])
    assert isinstance(got.body, HTMLBody) and "<b>there</b>" in got.body
    assert str(got.text_body) == "Hi there & all"


def soap_status(world: SandboxWorld, operation: str, email: str = "eva@example.com",
                zone: str | None = None) -> tuple[int, str]:
    context = f'<t:TimeZoneContext><t:TimeZoneDefinition Id="{zone}"/></t:TimeZoneContext>' if zone else ""
    envelope = (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}" xmlns:m="{M}" xmlns:t="{T}">'
                f'<s:Header><t:RequestServerVersion Version="Exchange2013_SP1"/>{context}</s:Header><s:Body>'
                f"{operation}</s:Body></s:Envelope>")
    answer = _post(world, envelope, (email, world.ews.passwords[email]))
    return answer.status_code, answer.text
