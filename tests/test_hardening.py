"""What a stored copy must never hold, and other things a careful operator expects."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from conftest import link_sandbox_user, make_context
from zoomcal.app import sync as app_sync
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import RemoteItem

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _person(s, email: str = "a@example.com"):
    """A tenant with one person in a bare store -> the person (flushed: ids set)."""
    from zoomcal.store.models import Tenant, User

    tenant = Tenant(name="t")
    s.add(tenant)
    s.flush()
    user = User(tenant_id=tenant.id, email=email, name="A")
    s.add(user)
    s.flush()
    return user


async def test_the_hosts_start_link_is_never_stored(world, tmp_path):
    """Zoom answers every meeting with `start_url` (it starts the meeting as its host) and the passcode in other
    forms; the raw mirror keeps what sync reads, never those. The passcode itself goes into the calendar."""
    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        actor = SandboxActor(world, transport=world.transport())
        made = await actor.zoom_create(info["zoom_user_id"], topic="Board", type=2,
                                       start_time="2026-12-10T09:00:00Z", duration=30)
        assert "start_url" in world.zoom.meetings[made["id"]] or "start_url" in made
        await app_sync.run(ctx)
        with ctx.store.session() as s:
            raws = [json.dumps(r) for r in s.scalars(select(RemoteItem.raw))]
        zoom_raws = [r for r in raws if '"join_url"' in r]
        assert zoom_raws and not any("start_url" in r or "pstn_password" in r for r in zoom_raws)
        assert all('"password"' in r for r in zoom_raws)            # the passcode invitees need is kept
    finally:
        await ctx.services.aclose()
        ctx.services.close()


def test_an_upgrade_forgets_host_links_stored_before(any_db):
    """Mirrors written before the change are scrubbed by the migration, on both backends."""
    from alembic import command

    from zoomcal.store.db import alembic_config
    from zoomcal.store.models import Account, Calendar

    with any_db.transaction() as s:
        user = _person(s)
        tenant = user.tenant_id
        account = Account(tenant_id=tenant, user_id=user.id, provider="zoom", config={})
        s.add(account)
        s.flush()
        cal = Calendar(tenant_id=tenant, user_id=user.id, account_id=account.id, remote_id="u1", name="Zoom")
        s.add(cal)
        s.flush()
        s.add(RemoteItem(calendar_id=cal.id, remote_id="1", series_id="1",
                         raw={"id": 1, "join_url": "j", "password": "p", "start_url": "https://host/secret"}))
    cfg = alembic_config(any_db.url)
    with any_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
        command.upgrade(cfg, "head")
    with any_db.session() as s:
        assert s.scalars(select(RemoteItem.raw)).one() == {"id": 1, "join_url": "j", "password": "p"}


HOSTILE = {
    "bad-duration": "DTSTART:20261201T100000Z\r\nDURATION:P1X\r\n",
    "long-tzid": "DTSTART;TZID=" + "A" * 300 + ":20261201T100000\r\nDTEND:20261201T110000Z\r\n",
    "negative-interval": "DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\nRRULE:FREQ=DAILY;INTERVAL=-1\r\n",
    "every-second": "DTSTART:19700101T100000Z\r\nDTEND:19700101T100001Z\r\nRRULE:FREQ=SECONDLY\r\n",
}


def _ics(events: dict[str, str]) -> str:
    body = "".join(f"BEGIN:VEVENT\r\nUID:{uid}\r\n{lines}SUMMARY:{uid}\r\nEND:VEVENT\r\n"
                   for uid, lines in events.items())
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{body}END:VCALENDAR\r\n"


def test_a_hostile_feed_costs_its_own_items_only(tmp_path, monkeypatch):
    """One person's feed holds events that do not parse, a zone name that breaks the zone lookup, a rule that
    cannot be walked and one that repeats every second since 1970: each is rejected with its reason, the feed's
    good event is kept, the other person syncs, and `sync --once` ends in bounded time, non-zero, naming them."""
    from typer.testing import CliRunner

    from zoomcal.cli.main import app

    monkeypatch.setenv("ZOOMCAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ZOOMCAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("ZOOMCAL_VAULT_KEYS", raising=False)
    good = "DTSTART:20261203T100000Z\r\nDTEND:20261203T110000Z\r\n"
    (tmp_path / "bob.ics").write_text(_ics({**HOSTILE, "fine": good}))
    (tmp_path / "ada.ics").write_text(_ics({"ada-fine": good}))

    def run(*args):
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    assert run("init").exit_code == 0
    for who in ("ada", "bob"):
        assert run("user", "add", f"{who}@example.com").exit_code == 0
        assert run("account", "add", "ics", "--user", f"{who}@example.com", "--url",
                   str(tmp_path / f"{who}.ics")).exit_code == 0
    synced = run("sync", "--once")
    out = " ".join(synced.output.split())
    assert synced.exit_code == 1, out
    assert "ada@example.com: ok" in out and "needs attention: bob@example.com" in out and "4 item(s) rejected" in out
    log = " ".join(run("log").output.split())
    for reason in ("malformed DURATION", "names no time zone", "INTERVAL must be a positive", "every second"):
        assert reason in log, reason
    titles = {e["title"] for who in ("ada", "bob")
              for e in json.loads(run("events", "--user", f"{who}@example.com", "--json").output)}
    assert {"fine", "ada-fine"} <= titles and not titles & set(HOSTILE)


@pytest.mark.parametrize("rule", ["FREQ=HOURLY;COUNT=20000", "FREQ=HOURLY;INTERVAL=7", "FREQ=HOURLY;COUNT=15000",
                                  "FREQ=DAILY;INTERVAL=3;COUNT=400", "FREQ=WEEKLY;COUNT=200"])
def test_a_window_far_from_a_series_start_is_reached_without_walking_there(rule):
    """Rules of a fixed period jump to the window (a counted one keeps its count), and give exactly what walking
    every occurrence from the start gives."""
    from datetime import UTC, datetime

    from zoomcal.domain.recurrence import occurrence_starts

    content = {"start": "2025-01-01T00:30:00Z", "end": "2025-01-01T00:45:00Z", "timezone": "Europe/Berlin",
               "rrule": rule}
    lo, hi = datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    assert occurrence_starts(content, lo, hi) == occurrence_starts(content, lo, hi, fast=False)


def test_a_rule_too_dense_to_walk_is_refused_with_its_reason():
    from datetime import UTC, datetime

    from zoomcal.domain import recurrence
    from zoomcal.errors import InvalidItem

    content = {"start": "2000-01-01T00:00:00Z", "end": "2000-01-01T00:10:00Z", "timezone": "UTC",
               "rrule": "FREQ=HOURLY;BYMINUTE=0,30"}          # not a fixed period: walked from 2000
    with pytest.raises(InvalidItem, match="needs more than"):
        recurrence.occurrence_starts(content, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))


def test_a_booking_a_year_ahead_is_checked_against_recurring_events_and_bookings(sqlite_db):
    from datetime import UTC, datetime, timedelta

    from zoomcal.availability import intervals
    from zoomcal.availability.booking import book
    from zoomcal.domain.content import make_content
    from zoomcal.domain.timeutil import fmt_instant, now_utc
    from zoomcal.mapping.rules import DEFAULT_RULES
    from zoomcal.store import repo
    from zoomcal.store.models import BusyInterval

    monday = (now_utc() - timedelta(days=now_utc().weekday())).replace(hour=9, minute=0, second=0, microsecond=0)
    with sqlite_db.transaction() as s:
        user = _person(s)
        tenant = user.tenant_id
        weekly = make_content(title="Weekly review", start=fmt_instant(monday),
                              end=fmt_instant(monday + timedelta(hours=1)), timezone="UTC", rrule="FREQ=WEEKLY")
        repo.upsert_event(s, tenant, user.id, "weekly", weekly)
        s.flush()
        lo, hi = intervals.window(7, 180)
        intervals.refresh_events(s, tenant, user.id, {"weekly": weekly}, lo, hi, "UTC", new={"weekly"})
        user_id = user.id
    far_monday = monday + timedelta(weeks=52)
    clash = book(sqlite_db, user_id, far_monday + timedelta(minutes=30), far_monday + timedelta(hours=2), "x",
                 DEFAULT_RULES)
    assert not clash.booked and clash.conflict["title"] == "Weekly review"
    assert clash.conflict["start"] == fmt_instant(far_monday)
    made = book(sqlite_db, user_id, far_monday + timedelta(hours=2), far_monday + timedelta(hours=3), "Far away",
                DEFAULT_RULES)
    assert made.booked
    again = book(sqlite_db, user_id, far_monday + timedelta(hours=2, minutes=30),
                 far_monday + timedelta(hours=4), "Overlap", DEFAULT_RULES)
    assert not again.booked and again.conflict["title"] == "Far away"
    too_far = datetime.now(UTC) + timedelta(days=6 * 366)
    with pytest.raises(Exception, match="between now and"):
        book(sqlite_db, user_id, too_far, too_far + timedelta(hours=1), "x", DEFAULT_RULES)

    # once the window reaches the far booking, its busy time is stored like any other event's
    with sqlite_db.transaction() as s:
        assert s.scalar(select(BusyInterval.id).where(BusyInterval.event_id == made.event_id)) is None
        later = now_utc() + timedelta(weeks=30)
        lo, hi = intervals.window(7, 180, now=later)
        assert intervals.roll_window(s, 1, user_id, lo, hi, now=later)
        assert s.scalar(select(BusyInterval.id).where(BusyInterval.event_id == made.event_id)) is not None


async def test_a_zoom_listing_survives_failing_requests_and_keeps_what_it_learned(world, tmp_path, monkeypatch):
    """Zoom lists meetings without their details, so a listing is one GET per changed meeting: each GET retries
    on its own, and a meeting that still does not answer keeps its stored copy while the others sync."""
    from zoomcal.connectors.zoom.connector import ZoomConnector

    monkeypatch.setattr(ZoomConnector, "backoff", 0.001)
    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        actor = SandboxActor(world, transport=world.transport())
        made = [await actor.zoom_create(info["zoom_user_id"], topic=f"M{i}", type=2,
                                        start_time=f"2026-12-{1 + i % 28:02d}T09:00:00Z", duration=30)
                for i in range(40)]
        world.zoom_faults.random_rate, world.zoom_faults.random_kinds = 0.08, ("500",)
        stubborn = made[0]["id"]
        world.zoom_faults.add("500", "GET", rf"/meetings/{stubborn}$", times=1000)
        (result,) = await app_sync.run(ctx)
        (note,) = [n for n in result.notes if "could not be read" in n]
        unread = int(note.split("Zoom: ", 1)[1].split(" ", 1)[0])
        assert str(stubborn) in note and 1 <= unread <= 3                # the stubborn one, rarely a second
        assert result.status == "ok" and result.writes == 40 - unread, result.errors
        assert world.zoom_faults.fired.get("500", 0) > 5
        world.zoom_faults.clear()
        (again,) = await app_sync.run(ctx)
        assert again.status == "ok" and again.writes == unread
    finally:
        await ctx.services.aclose()
        ctx.services.close()


async def test_a_side_that_stops_answering_mid_run_is_left_for_the_next_run(world, tmp_path):
    """Writes to a provider that keeps failing after their retries: after three in a row the run stops writing
    there (no back-off for every remaining write), says how many are owed, and the next run makes them."""
    from zoomcal.sync.retry import Retrier

    ctx = make_context(world, tmp_path)
    ctx.services.retrier = lambda: Retrier(max_retries=1, base_delay=0.001)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        actor = SandboxActor(world, transport=world.transport())
        for i in range(20):
            await actor.zoom_create(info["zoom_user_id"], topic=f"M{i}", type=2,
                                    start_time=f"2026-12-{1 + i:02d}T09:00:00Z", duration=30)
        world.google_faults.add("503", "POST", "/events", times=10_000)
        (down,) = await app_sync.run(ctx)
        assert down.status == "partial" and down.writes == 0
        assert world.google_faults.fired["503"] == 3 * 2                  # three writes, each tried twice
        assert any("stopped answering" in e and "17 more write(s)" in e for e in down.errors), down.errors
        from zoomcal.store.models import Account

        def health():
            with ctx.store.session() as s:
                return {provider: status for provider, status in s.execute(select(Account.provider, Account.status))}

        assert health() == {"zoom": "ok", "google": "degraded"}       # still synced: the next run tries again
        world.google_faults.clear()
        (back,) = await app_sync.run(ctx)
        assert back.status == "ok" and back.writes == 20
        assert health() == {"zoom": "ok", "google": "ok"}
        log = " ".join(e.message for e in app_sync.log(ctx))
        assert "Google account 2: degraded (stopped answering" in log and "Google account 2: healthy again" in log
        assert len(world.google.calendars[info["google_calendar_id"]].events) == 20
    finally:
        await ctx.services.aclose()
        ctx.services.close()


def test_a_booking_keeps_the_persons_buffers_as_slots_do(sqlite_db):
    from datetime import timedelta

    from zoomcal.availability import intervals
    from zoomcal.availability.booking import book
    from zoomcal.domain.content import make_content
    from zoomcal.domain.timeutil import fmt_instant, now_utc
    from zoomcal.mapping.rules import DEFAULT_RULES
    from zoomcal.store import repo
    from zoomcal.store.models import AvailabilitySettings

    at = (now_utc() + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    with sqlite_db.transaction() as s:
        user = _person(s)
        tenant = user.tenant_id
        s.add(AvailabilitySettings(user_id=user.id, timezone="UTC", buffer_before_min=15, buffer_after_min=10))
        meeting = make_content(title="Standing", start=fmt_instant(at), end=fmt_instant(at + timedelta(hours=1)))
        repo.upsert_event(s, tenant, user.id, "m", meeting)
        s.flush()
        lo, hi = intervals.window(7, 180)
        intervals.refresh_events(s, tenant, user.id, {"m": meeting}, lo, hi, "UTC", new={"m"})
        user_id = user.id
    hour = timedelta(hours=1)
    assert not book(sqlite_db, user_id, at - hour, at - timedelta(minutes=5), "ends 5 min before", DEFAULT_RULES).booked
    assert not book(sqlite_db, user_id, at + timedelta(minutes=65), at + 2 * hour, "5 min after", DEFAULT_RULES).booked
    assert book(sqlite_db, user_id, at - hour, at - timedelta(minutes=15), "15 min before", DEFAULT_RULES).booked
    assert book(sqlite_db, user_id, at + timedelta(minutes=70), at + 2 * hour, "10 min after", DEFAULT_RULES).booked


OUTLOOK_ZONE = """BEGIN:VTIMEZONE
TZID:(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
"""
NEW_YORK_ZONE = """BEGIN:VTIMEZONE
TZID:custom_America/New_York
BEGIN:STANDARD
DTSTART:20071104T020000
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:20070311T020000
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
END:DAYLIGHT
END:VTIMEZONE
"""


@pytest.mark.parametrize("definition, tzid, zone, utc", [
    (OUTLOOK_ZONE, '"(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna"', "Europe/Amsterdam",
     ("2026-07-01T07:00:00Z", "2026-12-01T08:00:00Z")),
    (NEW_YORK_ZONE, "custom_America/New_York", "America/New_York", ("2026-07-01T13:00:00Z", "2026-12-01T14:00:00Z")),
])
def test_a_zone_the_file_defines_under_its_own_name_is_honoured(definition, tzid, zone, utc):
    """Outlook and other exporters name zones their own way and define them in the file: the events keep their
    times, and the series its wall-clock time across daylight saving, under the IANA zone with the same clock."""
    from zoomcal.domain.recurrence import occurrence_starts
    from zoomcal.mapping.ical import series_to_content, split_events
    from zoomcal.mapping.rules import DEFAULT_RULES

    ics = ("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//t//EN\n" + definition +
           f"BEGIN:VEVENT\nUID:s\nDTSTART;TZID={tzid}:20260701T090000\nDTEND;TZID={tzid}:20260701T100000\n"
           "RRULE:FREQ=MONTHLY;COUNT=6\nSUMMARY:Monthly\nEND:VEVENT\nEND:VCALENDAR\n").replace("\n", "\r\n")
    blocks, _tz = split_events(ics)
    content = series_to_content(blocks, DEFAULT_RULES)
    assert content["timezone"] == zone and content["start"] == utc[0]
    assert utc[1] in occurrence_starts(content)          # 09:00 local in winter too


def test_busy_and_slots_a_year_ahead_include_recurring_events(world, tmp_path):
    """Past the precomputed window the people's events are expanded for the question: a weekly meeting is busy
    time a year from now, and slots go around it."""
    from datetime import timedelta

    from conftest import add_user
    from zoomcal.app import availability
    from zoomcal.availability import intervals
    from zoomcal.domain.content import make_content
    from zoomcal.domain.timeutil import fmt_instant, now_utc
    from zoomcal.store import repo
    from zoomcal.store.models import User

    ctx = make_context(world, tmp_path)
    add_user(ctx, "a@example.com")
    monday = (now_utc() - timedelta(days=now_utc().weekday())).replace(hour=9, minute=0, second=0, microsecond=0)
    with ctx.store.transaction() as s:
        user = s.scalars(select(User)).one()
        weekly = make_content(title="Weekly review", start=fmt_instant(monday),
                              end=fmt_instant(monday + timedelta(hours=1)), timezone="UTC", rrule="FREQ=WEEKLY")
        repo.upsert_event(s, user.tenant_id, user.id, "weekly", weekly)
        s.flush()
        lo, hi = intervals.window(7, 180)
        intervals.refresh_events(s, user.tenant_id, user.id, {"weekly": weekly}, lo, hi, "UTC", new={"weekly"})
    far = monday + timedelta(weeks=52)
    busy = availability.busy(ctx, "a@example.com", far - timedelta(days=1), far + timedelta(days=1)).busy
    assert [(b["title"], b["start"][:16]) for b in busy] == [("Weekly review", f"{far:%Y-%m-%dT%H:%M}")]
    near = availability.busy(ctx, "a@example.com", monday + timedelta(weeks=2) - timedelta(days=1),
                             monday + timedelta(weeks=2) + timedelta(days=1)).busy
    assert len(near) == 1                       # inside the window, from the stored intervals as before
    found = availability.slots(ctx, ["a@example.com"], 3600, far, far + timedelta(hours=3)).slots
    assert found and found[0]["start"][:16] == f"{far + timedelta(hours=1):%Y-%m-%dT%H:%M}"
    end = now_utc() + timedelta(days=180)         # across the window's end: every Monday once
    across = availability.busy(ctx, "a@example.com", end - timedelta(days=10), end + timedelta(days=10)).busy
    mondays = [monday + timedelta(weeks=w) for w in range(60)]
    assert [b["start"][:10] for b in across] == [f"{m:%Y-%m-%d}" for m in mondays
                                                 if end - timedelta(days=10) <= m < end + timedelta(days=10)]
    ctx.services.close()


async def test_an_answer_that_is_not_json_fails_that_pair_only(world, tmp_path):
    """A 200 whose body is an HTML page (a proxy's error page) or cut short is a typed, retried failure naming
    what came; that person's pair fails, everyone else syncs."""
    import httpx

    from zoomcal.sync.retry import Retrier

    ctx = make_context(world, tmp_path)
    ctx.services.retrier = lambda: Retrier(max_retries=1, base_delay=0.001)
    inner = ctx.services.transport
    try:
        ada = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        bob = link_sandbox_user(ctx, world, "bob@example.com", "Bob")
        actor = SandboxActor(world, transport=world.transport())
        for who in (ada, bob):
            await actor.zoom_create(who["zoom_user_id"], topic="Plan", type=2, start_time="2026-12-10T09:00:00Z",
                                    duration=30)
        broken = f"/calendars/{bob['google_calendar_id']}/events"

        class Proxy(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request):
                if request.url.path.endswith(broken) and request.method == "GET":
                    body = b"<html><body>502 Bad Gateway</body></html>" if "pageToken" not in str(request.url) \
                        else b'{"items": [{"id": "cut'
                    return httpx.Response(200, content=body, headers={"content-type": "text/html"})
                return await inner.handle_async_request(request)

        ctx.services.transport = Proxy()
        results = {r.user: r for r in await app_sync.run(ctx)}
        assert results["ada@example.com"].status == "ok" and results["ada@example.com"].writes == 1
        failed = results["bob@example.com"]
        assert failed.status == "failed" and "not JSON (text/html" in failed.errors[0], failed.errors
    finally:
        await ctx.services.aclose()
        ctx.services.close()


async def test_retries_are_told_in_the_verbose_log():
    from structlog.testing import capture_logs

    from zoomcal.errors import Transient
    from zoomcal.sync.retry import Retrier

    calls = []

    async def flaky(attempt):
        calls.append(attempt)
        if attempt < 2:
            raise Transient("GET events answered 503")
        return "done"

    async def no_sleep(_delay):
        return None

    import structlog

    from zoomcal.logging import configure

    saved = structlog.get_config()
    configure("INFO")                  # what `zoomcal -v` sets (an earlier command may have set ERROR)
    try:
        with capture_logs() as logs:
            assert await Retrier(max_retries=3, sleep=no_sleep, seed=1).call(flaky) == "done"
    finally:
        structlog.configure(**saved)
    told = [entry for entry in logs if entry["event"] == "retrying"]
    assert [entry["attempt"] for entry in told] == [1, 2] and "503" in told[0]["error"]


def test_a_file_full_of_zones_of_its_own_costs_a_bounded_lookup(monkeypatch):
    """Each zone a file defines under its own name is matched against the IANA zones; a hostile file defining
    hundreds is matched for its first few only (the rest stay unknown: their events are rejected), and an
    unterminated block is no block."""
    from zoomcal.mapping import ical

    looked = []
    real = ical._equivalent.__wrapped__
    monkeypatch.setattr(ical, "_equivalent", lambda definition, tzid: looked.append(tzid) or real(definition, tzid))
    odd = OUTLOOK_ZONE.replace("+0200", "+0217").replace("+0100", "+0117")      # a clock no IANA zone keeps
    zones = "".join(odd.replace("(UTC+01:00) Amsterdam", f"Zone {n} Amsterdam") for n in range(300))
    ics = ("BEGIN:VCALENDAR\nVERSION:2.0\n" + zones + "BEGIN:VEVENT\nUID:open\nDTSTART:20261201T100000Z\n"
           "END:VCALENDAR\n").replace("\n", "\r\n")
    blocks, _tz = ical.split_events(ics)
    assert blocks == [] and len(looked) == ical.MAX_CUSTOM_ZONES


def test_the_booking_guard_covers_the_window_end_and_keeps_excluded_calendars_out(sqlite_db):
    """(1) Stored intervals reach the window's end as of the last roll (here 20 hours ago): a booking just before
    the current end is still checked. (2) An event only on a calendar the person excluded blocks nothing, inside
    the window or past it."""
    from datetime import timedelta

    from zoomcal.availability import intervals
    from zoomcal.availability.booking import book
    from zoomcal.domain.content import make_content
    from zoomcal.domain.timeutil import fmt_instant, now_utc
    from zoomcal.mapping.rules import DEFAULT_RULES
    from zoomcal.store import repo
    from zoomcal.store.models import Account, AvailabilitySettings, Calendar, Link

    db = sqlite_db
    F = DEFAULT_RULES.availability.window_future_days
    now = now_utc().replace(microsecond=0)
    with db.transaction() as s:
        u = _person(s)
        first = (now - timedelta(days=3, hours=3)).replace(minute=0, second=0)
        daily = make_content(title="Stand-up", start=fmt_instant(first),
                             end=fmt_instant(first + timedelta(minutes=30)), timezone="UTC", rrule="FREQ=DAILY")
        repo.upsert_event(s, u.tenant_id, u.id, "daily", daily)
        s.flush()
        then = now - timedelta(hours=20)
        lo, hi = intervals.window(7, F, now=then)
        intervals.refresh_events(s, u.tenant_id, u.id, {"daily": daily}, lo, hi, "UTC", new={"daily"})
        s.add(AvailabilitySettings(user_id=u.id, timezone="UTC", working_hours={}, buffer_before_min=0,
                                   buffer_after_min=0, excluded_calendars=[], rolled_at=then))
        uid, tid = u.id, u.tenant_id
    occ = first + timedelta(days=(now + timedelta(days=F) - timedelta(hours=2) - first).days)
    assert then + timedelta(days=F) < occ < now + timedelta(days=F) - timedelta(hours=1), occ
    clash = book(db, uid, occ, occ + timedelta(minutes=30), "double", DEFAULT_RULES)
    assert not clash.booked and clash.conflict["title"] == "Stand-up"

    with db.transaction() as s:
        a = Account(tenant_id=tid, user_id=uid, provider="ics")
        s.add(a)
        s.flush()
        c = Calendar(tenant_id=tid, user_id=uid, account_id=a.id, remote_id="holidays")
        s.add(c)
        s.flush()
        s.get(AvailabilitySettings, uid).excluded_calendars = [c.id]
        far = now + timedelta(days=F + 30)
        for ev, at in (("in", now + timedelta(days=10)), ("out", far)):
            content = make_content(title=f"team holiday {ev}", start=fmt_instant(at),
                                   end=fmt_instant(at + timedelta(hours=1)), timezone="UTC")
            repo.upsert_event(s, tid, uid, ev, content)
            s.flush()
            s.add(Link(tenant_id=tid, event_id=ev, calendar_id=c.id, remote_id=ev))
            s.flush()
            lo, hi = intervals.window(7, F)
            intervals.refresh_events(s, tid, uid, {ev: content}, lo, hi, "UTC", new={ev})
    for at in (now + timedelta(days=10), far):
        assert book(db, uid, at, at + timedelta(minutes=30), "x", DEFAULT_RULES).booked
