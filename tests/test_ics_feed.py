"""ICS feeds: a read-only busy source through the same engine; SSRF guard; bad items rejected alone."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest import add_account, add_user, build_pairs, close_pairs, make_context
from zoomcal.app import accounts
from zoomcal.app.errors import InvalidError
from zoomcal.availability.index import BusyIndex, epoch
from zoomcal.domain.content import make_content
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.errors import ConfigError
from zoomcal.mapping.ical import content_to_calendar
from zoomcal.net import check_url
from zoomcal.store.models import Event, SyncLogEntry, User
from zoomcal.sync.engine import SyncEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def public(_host):
    return ["93.184.216.34"]


def loopback(_host):
    return ["127.0.0.1"]


def test_ssrf_guard():
    assert check_url("https://calendar.example.com/x.ics", resolve=public)
    for url, resolver in [("http://localhost/x.ics", loopback), ("http://10.0.0.5/x.ics", lambda h: ["10.0.0.5"]),
                          ("http://[::1]/x", lambda h: ["::1"]), ("http://meta/x", lambda h: ["169.254.169.254"])]:
        with pytest.raises(ConfigError, match="private"):
            check_url(url, resolve=resolver)
    assert check_url("http://intranet/x.ics", allow_private=True, resolve=loopback)
    # IPv6 addresses that carry an IPv4 one lead to that host: IPv4-mapped, 6to4, Teredo's client, NAT64
    for carried in ("::ffff:10.0.0.1", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:f5ff:fffa", "64:ff9b::a9fe:a9fe"):
        with pytest.raises(ConfigError, match="private"):
            check_url("http://tricky/x.ics", resolve=lambda h, a=carried: [a])
    for fine in ("2002:5db8:d822::", "64:ff9b::5db8:d822", "2606:4700::1111"):    # public hosts, however reached
        assert check_url("http://fine/x.ics", resolve=lambda h, a=fine: [a])
    for bad in ("ftp://x/y.ics", "file:///etc/passwd", "https://user:pw@x/y.ics", "http:///nohost"):
        with pytest.raises(ConfigError):
            check_url(bad, resolve=public)


def _feed(now):
    day = now.replace(hour=0, minute=0, second=0) + timedelta(days=2)
    items = {
        "standup@feed": make_content(title="Standup", start=fmt_instant(day + timedelta(hours=9)),
                                     end=fmt_instant(day + timedelta(hours=9, minutes=15)), timezone="Europe/Rome",
                                     rrule="FREQ=DAILY;COUNT=5"),
        "lunch@feed": make_content(title="Lunch", start=fmt_instant(day + timedelta(hours=12)),
                                   end=fmt_instant(day + timedelta(hours=13)), show_as="free"),
    }
    text = content_to_calendar(items, marker=False).decode()
    broken = "\r\n".join([
        "BEGIN:VEVENT", "UID:badzone@feed", "SUMMARY:Atlantis", "DTSTART;TZID=Atlantis/Capital:20261201T100000",
        "DTEND;TZID=Atlantis/Capital:20261201T110000", "END:VEVENT",
        "BEGIN:VEVENT", "UID:baddate@feed", "SUMMARY:Garbage", "DTSTART:tomorrow-ish", "END:VEVENT",
        "BEGIN:VEVENT", "SUMMARY:No uid", "DTSTART:20261201T100000Z", "END:VEVENT",
        "BEGIN:VEVENT", "UID:orphan@feed", "RECURRENCE-ID:20261201T100000Z", "DTSTART:20261201T110000Z",
        "END:VEVENT", ""])
    return text.replace("END:VCALENDAR", broken + "END:VCALENDAR"), day


async def test_feed_ingests_rejects_bad_items_and_uses_conditional_get(world, tmp_path):
    ctx = make_context(world, tmp_path)
    ctx.services.resolver = public
    now = now_utc()
    world.feeds["team"], day = _feed(now)
    add_user(ctx, "f@example.com")
    add_account(ctx, "f@example.com", "ics", {}, {}, "http://sandbox/feeds/team.ics", "Team feed")
    engine = SyncEngine(ctx.store)

    async def sync():
        pairs = build_pairs(ctx)
        try:
            assert len(pairs) == 1 and pairs[0].a is None
            return await engine.run(pairs[0])
        finally:
            await close_pairs(ctx)

    report = await sync()
    assert report.status == "ok" and report.writes == 0 and report.rejected == 4
    with ctx.store.session() as s:
        titles = sorted(s.scalars(select(Event.title)))
        errors = "\n".join(s.scalars(select(SyncLogEntry.message).where(SyncLogEntry.level == "error")))
        user_id = s.scalar(select(User.id))
    assert titles == ["Lunch", "Standup"]
    assert "unknown time zone 'Atlantis/Capital'" in errors and "malformed DTSTART" in errors
    assert "without UID" in errors and "no master VEVENT" in errors
    index = BusyIndex.load(ctx.store)
    assert index.state_at(user_id, epoch(day + timedelta(days=3, hours=9, minutes=5)))[0] == "busy"   # 4th daily
    assert index.state_at(user_id, epoch(day + timedelta(hours=12, minutes=5)))[0] == "free"          # transparent
    again = await sync()                                     # unchanged feed: 304, nothing to do
    assert again.status == "ok" and again.plan.events == [] and world.feed_calls["team"] == 2
    world.feeds["team"] = world.feeds["team"].replace("SUMMARY:Standup", "SUMMARY:Daily standup")
    world.feeds["team"] = world.feeds["team"].replace("UID:lunch@feed", "UID:lunch2@feed")
    changed = await sync()
    assert changed.status == "ok"
    with ctx.store.session() as s:
        assert sorted(s.scalars(select(Event.title))) == ["Daily standup", "Lunch"]
    ctx.store.dispose()


async def test_feed_on_a_private_address_is_refused(world, tmp_path):
    ctx = make_context(world, tmp_path)
    ctx.services.resolver = loopback
    add_user(ctx, "f@example.com")
    with pytest.raises(InvalidError, match="ZOOMCAL_ALLOW_PRIVATE_URLS"):
        await accounts.link(ctx, "f@example.com", "ics", {"url": "http://intranet.local/feeds/x.ics"}, {})
    assert accounts.list_accounts(ctx) == []
    ctx.store.dispose()


async def test_local_file_feed_and_oversize(world, tmp_path):
    ctx = make_context(world, tmp_path)
    path = tmp_path / "cal.ics"
    path.write_text(_feed(now_utc())[0])
    add_user(ctx, "f@example.com")
    add_account(ctx, "f@example.com", "ics", {}, {}, str(path))
    pairs = build_pairs(ctx)
    report = await SyncEngine(ctx.store).run(pairs[0])
    assert report.status == "ok" and report.rejected == 4
    pairs[0].b.connector.max_bytes = 100
    path.write_text(path.read_text() + "\n")                 # changed, and now over the limit
    report = await SyncEngine(ctx.store).run(pairs[0])
    assert report.status == "failed" and "larger than 100 bytes" in report.errors[0]
    await close_pairs(ctx)
    ctx.store.dispose()


async def test_a_feed_url_is_kept_sealed_and_shown_masked(world, tmp_path):
    """A secret address (the kind Google and Outlook hand out for a private calendar) is the account's sealed
    secret: the calendar is known by a digest, listings show host and last segment only, and the sync reads it."""
    from zoomcal.app import accounts
    from zoomcal.app import sync as app_sync
    from zoomcal.store.models import Account, Calendar

    ctx = make_context(world, tmp_path)
    ctx.services.resolver = public
    world.feeds["private-0a1b2c3d4e5f-secret"], _day = _feed(now_utc())
    url = "http://sandbox/feeds/private-0a1b2c3d4e5f-secret.ics"
    add_user(ctx, "f@example.com")
    linked = await accounts.link(ctx, "f@example.com", "ics", {"url": url}, {})
    shown = json.dumps([vars(a) for a in accounts.list_accounts(ctx)], default=str)
    assert "0a1b2c3d4e5f" not in shown and linked.name == "ICS feed http://sandbox/….ics"
    with ctx.store.session() as s:
        stored = json.dumps([[c.remote_id, c.name, a.config] for c, a in s.execute(
            select(Calendar, Account).join(Account, Account.id == Calendar.account_id))])
    assert "0a1b2c3d4e5f" not in stored
    (result,) = await app_sync.run(ctx)
    assert result.status == "ok" and result.rejected == 4
    with pytest.raises(Exception, match="already has this"):
        await accounts.link(ctx, "f@example.com", "ics", {"url": url}, {})
    ctx.store.dispose()


async def test_a_redirect_is_reported_without_the_address_it_names():
    """A feed that moved answers with its new address, which carries the same kind of secret: the error that says
    so shows it masked."""
    import httpx

    from zoomcal.connectors.ics.connector import IcsConnector
    from zoomcal.errors import InvalidItem
    from zoomcal.mapping.rules import DEFAULT_RULES

    moved = httpx.MockTransport(lambda request: httpx.Response(
        302, headers={"location": "https://calendar.example.com/ical/private-9f8e7d6c5b4a/basic.ics"}))
    feed = IcsConnector("https://calendar.example.com/ical/private-0a1b2c3d/basic.ics", DEFAULT_RULES,
                        transport=moved, resolve=public)
    try:
        with pytest.raises(InvalidItem) as refused:
            await feed.changes(None, {})
    finally:
        await feed.aclose()
    assert "9f8e7d6c5b4a" not in str(refused.value) and "https://calendar.example.com/….ics" in str(refused.value)
