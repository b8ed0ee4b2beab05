"""Exchange through EWS: exchangelib's real HTTP stack against the loopback EWS sandbox, two-way with Zoom."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from exchangelib import CalendarItem, EWSDateTime
from exchangelib.items import SEND_TO_NONE

from conftest import add_account, add_user, link_sandbox_zoom, make_context, sync_first_pair
from zoomcal.app.errors import InvalidError
from zoomcal.connectors.ews.connector import EwsConnector
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.errors import AuthExpired, ConfigError, CursorInvalid
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store import repo
from zoomcal.store.models import Event
from zoomcal.sync.engine import SyncEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def outlook(world, base: str, email: str):
    """Another Exchange client (as Outlook would be): exchangelib on the same mailbox, outside zoomcal."""
    return SandboxActor(world, base_url=base).ews_client(email)


@pytest.fixture
def eva(served_world, tmp_path):
    """Eva: Zoom meetings and an Exchange calendar (basic auth) linked; (world, base, ctx, info, actor, engine)."""
    world, base = served_world
    ctx = make_context(world, tmp_path)
    ctx.settings.allow_private_urls = True
    info = world.add_user("eva@example.com", "Eva", "Europe/Paris")
    add_user(ctx, "eva@example.com")
    link_sandbox_zoom(ctx, world, "eva@example.com", info)
    add_account(ctx, "eva@example.com", "ews", {"url": f"{base}/ews/EWS/Exchange.asmx", "auth": "basic"},
                {"username": "eva@example.com", "password": info["ews_password"]}, "eva@example.com", "Exchange")
    yield world, base, ctx, info, SandboxActor(world, transport=world.transport()), SyncEngine(ctx.store)
    ctx.store.dispose()


async def test_two_way_with_zoom(eva):
    world, base, ctx, info, actor, engine = eva

    async def sync(**kw):
        return await sync_first_pair(ctx, engine, **kw)

    start = (now_utc() + timedelta(days=3)).replace(hour=8, minute=0, second=0, microsecond=0)
    meeting = await actor.zoom_create(info["zoom_user_id"], topic="Weekly", type=8, start_time=fmt_instant(start),
                                      duration=30, timezone="Europe/Paris",
                                      recurrence={"type": 1, "repeat_interval": 7, "end_times": 4})
    report = await sync()
    assert report.status == "ok" and report.writes == 1, report.errors
    (series,) = world.ews.items["eva@example.com"].values()
    assert series["subject"] == "Weekly" and series["location"] == meeting["join_url"]
    assert series["tz"] == "Romance Standard Time"      # written with the Windows name, as Outlook does

    # Outlook: rename the series, move the 2nd occurrence, cancel the 3rd, add an event marked for Zoom
    account, folder = outlook(world, base, "eva@example.com")
    (master,) = account.fetch(ids=[(series["id"], None)], folder=folder)
    master.subject = "Weekly sync"
    master.save(update_fields=["subject"])
    second = master.occurrence(2)
    moved = EWSDateTime.from_datetime(start + timedelta(days=7, hours=2))
    second.start, second.end = moved, moved + timedelta(minutes=30)
    second.save(update_fields=["start", "end"])
    master.occurrence(3).delete(send_meeting_cancellations=SEND_TO_NONE)
    planning = start + timedelta(days=1, hours=5)
    CalendarItem(account=account, folder=folder, subject="Planning", body="numbers #zoom",
                 start=EWSDateTime.from_datetime(planning),
                 end=EWSDateTime.from_datetime(planning + timedelta(hours=1))).save()

    report = await sync()
    assert report.status == "ok", report.errors
    full = await actor.zoom_get(meeting["id"])
    assert full["topic"] == "Weekly sync"
    assert [o["status"] for o in full["occurrences"]] == ["available", "available", "deleted", "available"]
    assert full["occurrences"][1]["start_time"] == fmt_instant(start + timedelta(days=7, hours=2))
    zoom_planning = next(m for m in world.zoom.meetings.values() if m["topic"] == "Planning")
    outlook_planning = next(i for i in world.ews.items["eva@example.com"].values() if i["subject"] == "Planning")
    assert zoom_planning["join_url"] in outlook_planning["body"] and outlook_planning["location"]
    assert (await sync()).writes == 0                      # nothing echoes back

    # Zoom side: move the 4th occurrence; Exchange gets an exception on that occurrence
    fourth = full["occurrences"][3]
    await actor.zoom_patch(meeting["id"], fourth["occurrence_id"], start_time=fmt_instant(
        start + timedelta(days=21, hours=1)))
    report = await sync()
    assert report.status == "ok" and report.writes == 1, report.errors
    exceptions = world.ews.items["eva@example.com"][series["id"]]["exceptions"]
    assert {fmt_instant(e["start"]) for e in exceptions.values()} >= {fmt_instant(start + timedelta(days=21,
                                                                                                    hours=1))}
    # a forgotten sync state is a full resync, not an error, and writes nothing
    world.ews.forget_sync_states()
    report = await sync()
    assert report.status == "ok" and report.writes == 0, report.errors
    assert any("cursor expired" in note for note in report.notes)


async def test_stale_sync_state_and_bad_credentials_are_typed(served_world):
    world, base = served_world
    url = f"{base}/ews/EWS/Exchange.asmx"
    world.add_user("ivy@example.com")
    bad = EwsConnector(url, "ivy@example.com", DEFAULT_RULES, username="ivy@example.com", secret="wrong",
                       auth="basic", allow_private=True)
    with pytest.raises(AuthExpired):
        await bad.probe()
    await bad.aclose()
    world.ews.passwords["ivy@example.com"] = "right"
    conn = EwsConnector(url, "ivy@example.com", DEFAULT_RULES, username="ivy@example.com", secret="right",
                        auth="basic", allow_private=True)
    first = await conn.changes(None, {})
    world.ews.forget_sync_states()
    with pytest.raises(CursorInvalid):
        await conn.changes(first.cursor, {})
    await conn.aclose()


def test_private_addresses_are_refused_unless_allowed():
    with pytest.raises(ConfigError, match="ZOOMCAL_ALLOW_PRIVATE_URLS"):
        EwsConnector("http://127.0.0.1:9/EWS/Exchange.asmx", "a@example.com", DEFAULT_RULES, username="a",
                     secret="x", auth="basic")


async def test_free_busy_of_mailboxes(served_world):
    world, base = served_world
    url = f"{base}/ews/EWS/Exchange.asmx"
    ivy = world.add_user("ivy@example.com")
    world.add_user("max@example.com")
    conn = EwsConnector(url, "ivy@example.com", DEFAULT_RULES, username="ivy@example.com",
                        secret=ivy["ews_password"], auth="basic", allow_private=True)
    from zoomcal.domain.content import make_content

    start = (now_utc() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    await conn.create(make_content(title="Busy", start=fmt_instant(start), end=fmt_instant(start + timedelta(hours=1)),
                                   timezone="Europe/Paris"), "ev-fb")
    await conn.create(make_content(title="Free", start=fmt_instant(start + timedelta(hours=2)),
                                   end=fmt_instant(start + timedelta(hours=3)), show_as="free"), "ev-free")
    answer = await conn.free_busy(["ivy@example.com", "max@example.com"], start - timedelta(hours=4),
                                  start + timedelta(hours=8))
    assert answer["max@example.com"] == []
    assert [(fmt_instant(s), fmt_instant(e), kind) for s, e, kind in answer["ivy@example.com"]] == [
        (fmt_instant(start), fmt_instant(start + timedelta(hours=1)), "busy")]
    await conn.aclose()


def test_cli_links_an_exchange_account_and_syncs(served_world, tmp_path):
    """`account add ews` checks the credentials against the server, stores them sealed, and `sync --once` then
    `events --json` show what was ingested."""
    world, base = served_world
    url = f"{base}/ews/EWS/Exchange.asmx"
    info = world.add_user("zoe@example.com", "Zoe", "Europe/Paris")
    account, folder = outlook(world, base, "zoe@example.com")
    start = (now_utc() + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    CalendarItem(account=account, folder=folder, subject="Dentist", start=EWSDateTime.from_datetime(start),
                 end=EWSDateTime.from_datetime(start + timedelta(minutes=45))).save()
    env = {**os.environ, "ZOOMCAL_DATA_DIR": str(tmp_path), "ZOOMCAL_ALLOW_PRIVATE_URLS": "true",
           "EWS_PASSWORD": info["ews_password"]}
    env.pop("ZOOMCAL_DATABASE_URL", None)

    def zc(*args):
        return subprocess.run([sys.executable, "-m", "zoomcal.cli.main", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    assert zc("init").returncode == 0
    assert zc("user", "add", "zoe@example.com").returncode == 0
    wrong = zc("account", "add", "ews", "--user", "zoe@example.com", "--url", url, "--username", "zoe@example.com",
               "--password-env", "NOPE_UNSET", "--auth", "basic")
    assert wrong.returncode != 0
    env["WRONG"] = "nope"
    refused = zc("account", "add", "ews", "--user", "zoe@example.com", "--url", url, "--username",
                 "zoe@example.com", "--password-env", "WRONG", "--auth", "basic")
    assert refused.returncode != 0 and "credentials" in (refused.stdout + refused.stderr)
    linked = zc("account", "add", "ews", "--user", "zoe@example.com", "--url", url, "--username", "zoe@example.com",
                "--password-env", "EWS_PASSWORD")      # --auth auto: the server's 401 offers Basic
    assert linked.returncode == 0, linked.stdout + linked.stderr
    listed = zc("account", "list", "--json")
    assert info["ews_password"] not in listed.stdout and "ews" in listed.stdout
    synced = zc("sync", "--once")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    events = json.loads(zc("events", "--user", "zoe@example.com", "--json").stdout)
    assert [e["title"] for e in events] == ["Dentist"]


def test_which_calendar_receives_meetings_is_a_per_user_setting(world, tmp_path):
    """Linking Google then Exchange: Google takes the meetings, Exchange is read for availability; switching the
    setting swaps them (one receiving calendar per user)."""
    from conftest import build_pairs, close_pairs, link_sandbox_user
    from zoomcal.app.accounts import set_meetings_calendar
    from zoomcal.store.models import User

    ctx = make_context(world, tmp_path)
    ctx.settings.allow_private_urls = True
    info = link_sandbox_user(ctx, world, "kim@example.com", "Kim")
    add_account(ctx, "kim@example.com", "ews", {"url": "http://127.0.0.1:9/EWS/Exchange.asmx", "auth": "basic"},
                {"username": "kim", "password": info["ews_password"]}, "kim@example.com", "Exchange")

    def shape():
        pairs = build_pairs(ctx)
        asyncio.run(close_pairs(ctx))
        return sorted((p.a.label if p.a else "", p.b.label) for p in pairs)

    assert shape() == [("", "Exchange"), ("Zoom", "Google")]
    with ctx.store.transaction() as s:
        user = s.query(User).one()
        exchange = next(c for c in repo.user_calendars(s, user.id) if c.name == "Exchange")
        set_meetings_calendar(s, user, exchange.id)
    assert shape() == [("", "Google"), ("Zoom", "Exchange")]
    with ctx.store.transaction() as s, pytest.raises(InvalidError):
        set_meetings_calendar(s, s.query(User).one(), 999)


async def test_hostile_xml_and_an_unreadable_item_are_refused_with_a_reason(served_world, tmp_path):
    """A server answer with a DTD (entity expansion) is refused before parsing; an item in an unknown zone is
    rejected alone while the rest of the calendar syncs."""
    from zoomcal.domain.content import make_content
    from zoomcal.errors import InvalidItem

    world, base = served_world
    url = f"{base}/ews/EWS/Exchange.asmx"
    ivy = world.add_user("ivy@example.com")
    conn = EwsConnector(url, "ivy@example.com", DEFAULT_RULES, username="ivy@example.com",
                        secret=ivy["ews_password"], auth="basic", allow_private=True)
    start = (now_utc() + timedelta(days=1)).replace(microsecond=0)
    good = await conn.create(make_content(title="Good", start=fmt_instant(start),
                                          end=fmt_instant(start + timedelta(hours=1))), "ev-good")
    bad = await conn.create(make_content(title="Odd zone", start=fmt_instant(start),
                                         end=fmt_instant(start + timedelta(hours=1))), "ev-bad")
    world.ews.items["ivy@example.com"][bad.id]["tz"] = "Mars Standard Time"   # what no zone table knows
    world.ews.hostile = 1
    with pytest.raises(InvalidItem, match="XML zoomcal refuses"):
        await conn.changes(None, {})
    listing = await conn.changes(None, {})
    by_id = {raw["id"]: raw for raw in listing.changed}
    assert conn.normalize([by_id[good.id]]).content["title"] == "Good"
    with pytest.raises(InvalidItem, match="time zone .* unknown"):
        conn.normalize([by_id[bad.id]])
    await conn.aclose()

    # through the engine: one rejection in the log, the good event ingested
    ctx = make_context(world, tmp_path)
    ctx.settings.allow_private_urls = True
    add_user(ctx, "ivy@example.com")
    add_account(ctx, "ivy@example.com", "ews", {"url": url, "auth": "basic"},
                {"username": "ivy@example.com", "password": ivy["ews_password"]}, "ivy@example.com", "Exchange")
    from conftest import build_pairs, close_pairs

    pairs = build_pairs(ctx)
    try:
        report = await SyncEngine(ctx.store).run(pairs[0])
    finally:
        await close_pairs(ctx)
    assert report.rejected == 1 and report.status in ("ok", "partial"), report.errors
    with ctx.store.session() as s:
        titles = [e.content["title"] for e in s.query(Event).all()]
    assert titles == ["Good"]


async def test_oauth_bearer_credentials(served_world, monkeypatch):
    """Exchange with modern authentication: the stored secret is an access token sent as a Bearer header (over
    https only; the loopback sandbox speaks http, so the test lifts that one check)."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    world, base = served_world
    world.add_user("ivy@example.com")
    world.ews.bearer["token-for-ivy"] = "ivy@example.com"
    conn = EwsConnector(f"{base}/ews/EWS/Exchange.asmx", "ivy@example.com", DEFAULT_RULES, secret="token-for-ivy",
                        auth="oauth", allow_private=True)
    await conn.probe()
    assert (await conn.changes(None, {})).changed == []
    await conn.aclose()
    wrong = EwsConnector(f"{base}/ews/EWS/Exchange.asmx", "ivy@example.com", DEFAULT_RULES, secret="stolen",
                         auth="oauth", allow_private=True)
    with pytest.raises(AuthExpired):
        await wrong.probe()
    await wrong.aclose()


async def test_throttling_is_a_rate_limit_with_the_servers_back_off(served_world):
    """Exchange throttles with ErrorServerBusy and BackOffMilliseconds: a typed rate limit the retrier honours."""
    from zoomcal.errors import RateLimited
    from zoomcal.sync.retry import Retrier

    world, base = served_world
    ivy = world.add_user("ivy@example.com")
    conn = EwsConnector(f"{base}/ews/EWS/Exchange.asmx", "ivy@example.com", DEFAULT_RULES,
                        username="ivy@example.com", secret=ivy["ews_password"], auth="basic", allow_private=True)
    world.ews.busy, world.ews.back_off_ms = 1, 2500
    with pytest.raises(RateLimited) as caught:
        await conn.changes(None, {})
    assert caught.value.retry_after == 2.5
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    world.ews.busy = 2
    changes = await Retrier(max_retries=3, sleep=sleep).call(lambda _attempt: conn.changes(None, {}))
    assert changes.changed == [] and waits[:2] == [2.5, 2.5]
    await conn.aclose()


async def test_a_create_whose_answer_was_lost_is_found_not_repeated(eva):
    """Exchange carried out CreateItem but the answer never came back: the retried create finds the item by
    our extended property instead of making a second one."""
    from sqlalchemy import select

    from zoomcal.store.models import SyncLogEntry

    world, base, ctx, info, actor, engine = eva
    start = (now_utc() + timedelta(days=3)).replace(hour=8, minute=0, second=0, microsecond=0)
    await actor.zoom_create(info["zoom_user_id"], topic="Kickoff", type=2, start_time=fmt_instant(start),
                            duration=30, timezone="Europe/Paris")
    world.ews.lose["CreateItem"] = 1
    report = await sync_first_pair(ctx, engine)
    assert report.status == "ok", report.errors
    assert [i["subject"] for i in world.ews.items["eva@example.com"].values()] == ["Kickoff"]
    assert world.ews.requests["CreateItem"] == 1 and world.ews.requests["FindItem"] == 1
    with ctx.store.session() as s:
        notes = list(s.scalars(select(SyncLogEntry.message).where(SyncLogEntry.action == "note")))
    assert any("found the item created earlier" in n for n in notes), notes
    assert (await sync_first_pair(ctx, engine)).writes == 0


async def test_a_day_past_a_short_months_end_is_read_where_exchange_puts_it(served_world):
    """Outlook's "day 31 of every month" falls on the last day of shorter months: zoomcal reads those occurrences,
    cancels the one it means, and writes the series back with its own pattern."""
    from exchangelib import EWSTimeZone
    from exchangelib.recurrence import AbsoluteMonthlyPattern, Recurrence

    from zoomcal.domain.recurrence import occurrence_starts

    world, base = served_world
    info = world.add_user("ivy@example.com")
    account, folder = outlook(world, base, "ivy@example.com")
    paris = EWSTimeZone("Europe/Paris")
    first = EWSDateTime(2026, 1, 31, 10, tzinfo=paris)
    series = CalendarItem(account=account, folder=folder, subject="Month end", start=first,
                          end=first + timedelta(hours=1), recurrence=Recurrence(
                              pattern=AbsoluteMonthlyPattern(interval=1, day_of_month=31), start=first.date(),
                              number=4))
    series.save(send_meeting_invitations=SEND_TO_NONE)
    conn = EwsConnector(f"{base}/ews/EWS/Exchange.asmx", "ivy@example.com", DEFAULT_RULES,
                        username="ivy@example.com", secret=info["ews_password"], auth="basic", allow_private=True)
    try:
        raws = await conn.get(series.id)
        content = conn.normalize(raws).content
        assert occurrence_starts(content) == ["2026-01-31T09:00:00Z", "2026-02-28T09:00:00Z",
                                              "2026-03-31T08:00:00Z", "2026-04-30T08:00:00Z"]
        wanted = {**content, "title": "Month end review", "exdates": ["2026-03-31T08:00:00Z"]}
        written = await conn.update(series.id, wanted, None, "ev-month-end", raws)
        assert not written.notes, written.notes
        assert written.item.content["rrule"] == content["rrule"]
        (master,) = account.fetch(ids=[(series.id, None)], folder=folder)
        assert master.recurrence.pattern.day_of_month == 31 and master.subject == "Month end review"
        assert [d.start.astimezone(paris).date().isoformat() for d in master.deleted_occurrences] == ["2026-03-31"]
    finally:
        await conn.aclose()


def test_month_end_rules_as_exchange_holds_them():
    from zoomcal.connectors.ews.mapping import exchange_month_days

    month_end, notes = exchange_month_days({"rrule": "FREQ=MONTHLY;BYMONTHDAY=28,29,30;BYSETPOS=-1;COUNT=3"})
    assert (month_end["rrule"], notes) == ("FREQ=MONTHLY;BYMONTHDAY=30;COUNT=3", [])
    plain, notes = exchange_month_days({"rrule": "FREQ=MONTHLY;BYMONTHDAY=31"})
    assert plain["rrule"] == "FREQ=MONTHLY;BYMONTHDAY=31" and "last day of shorter months" in notes[0]
    assert exchange_month_days({"rrule": "FREQ=MONTHLY;BYMONTHDAY=15"}) == ({"rrule": "FREQ=MONTHLY;BYMONTHDAY=15"},
                                                                            [])
    assert exchange_month_days({"rrule": None}) == ({"rrule": None}, [])


async def test_occurrences_moved_past_each_other_are_written_in_an_order_exchange_accepts(served_world):
    """Two Mondays of a weekly series move later, the first past where the second was: moved in date order,
    Exchange would refuse the first move (it crosses the second occurrence, ErrorOccurrenceCrossingBoundary)."""
    from zoomcal.domain.content import make_content

    world, base = served_world
    info = world.add_user("ivy@example.com")
    conn = EwsConnector(f"{base}/ews/EWS/Exchange.asmx", "ivy@example.com", DEFAULT_RULES,
                        username="ivy@example.com", secret=info["ews_password"], auth="basic", allow_private=True)
    moved = {"2026-05-04T07:00:00Z": {"start": "2026-05-12T07:00:00Z", "end": "2026-05-12T07:30:00Z"},
             "2026-05-11T07:00:00Z": {"start": "2026-05-13T07:00:00Z", "end": "2026-05-13T07:30:00Z"}}
    series = make_content(title="Series", description="", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                          timezone="Europe/Paris", rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3", overrides=moved)
    try:
        created = await conn.create(series, "ev-moves")
        assert {k: {"start": v["start"], "end": v["end"]} for k, v in created.item.content["overrides"].items()} \
            == moved
    finally:
        await conn.aclose()
