"""Presence: rules, the pure decision, and the driver against the Zoom sandbox (rate limit, sign-in)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import link_sandbox_user, make_context
from zoomcal.availability import intervals
from zoomcal.availability.index import BusyIndex
from zoomcal.domain.content import make_content
from zoomcal.domain.timeutil import UTC, fmt_instant
from zoomcal.errors import ConfigError
from zoomcal.presence.engine import Memory, Situation, decide
from zoomcal.presence.rules import load_presence_rules, parse_presence_rules
from zoomcal.presence.service import PresenceService
from zoomcal.store import repo
from zoomcal.store.models import AvailabilitySettings, User

RULES = parse_presence_rules({})
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def sit(kind="busy", event="e1", title="Standup", is_zoom=False, at=T0, end=None):
    return Situation(kind, event if kind != "free" else None, title, is_zoom, ("Work",), at, end)


def test_defaults_map_each_kind():
    assert decide(sit("busy"), "Available", Memory(), RULES, T0).status == "In_Calendar_Event"
    assert decide(sit("ooo"), "Available", Memory(), RULES, T0).status == "Out_of_Office"
    focus = decide(sit("focus", end=T0 + timedelta(minutes=50)), "Available", Memory(), RULES, T0)
    assert (focus.status, focus.dnd_minutes) == ("Do_Not_Disturb", 50)


def test_restore_previous_status_when_the_interval_ends():
    d1 = decide(sit("busy"), "Away", Memory(), RULES, T0)
    assert d1.status == "In_Calendar_Event" and d1.memory.restore_to == "Away"
    later = T0 + timedelta(minutes=30)
    d2 = decide(sit("free", at=later), "In_Calendar_Event", d1.memory, RULES, later)
    assert d2.status == "Away" and d2.rule == "free again" and d2.memory.restore_to is None


@pytest.mark.parametrize("live", ["In_A_Zoom_Meeting", "Presenting", "On_A_Call"])
def test_never_overrides_zoom_live_states(live):
    d = decide(sit("busy"), live, Memory(), RULES, T0)
    assert d.status is None and "never overrides" in d.reason


def test_a_status_set_by_hand_is_left_alone_until_the_state_changes():
    mine = Memory(last_written="In_Calendar_Event", last_written_at=T0, state_key="busy:e1")
    later = T0 + timedelta(minutes=5)
    d = decide(sit("busy"), "Busy", mine, RULES, later)        # the user picked Busy meanwhile
    assert d.status is None and "by hand" in d.reason
    nxt = T0 + timedelta(hours=1)
    d = decide(sit("ooo", event="e2", at=nxt), "Busy", d.memory, RULES, nxt)   # a new state: rules apply again
    assert d.status == "Out_of_Office"


def test_rate_limit_coalesces_and_only_changes_write():
    mine = Memory(last_written="In_Calendar_Event", last_written_at=T0, state_key="busy:e1")
    assert decide(sit("busy"), "In_Calendar_Event", mine, RULES, T0 + timedelta(minutes=5)).status is None
    soon = T0 + timedelta(seconds=20)
    d = decide(sit("ooo", event="e2", at=soon), "In_Calendar_Event", mine, RULES, soon)
    assert d.status is None and d.retry_at == T0 + timedelta(seconds=60)


def test_conditions_title_zoom_time_of_day_and_explanations():
    rules = parse_presence_rules({"rule": [
        {"name": "interviews", "when": {"title_contains": ["interview"]}, "status": "Do_Not_Disturb",
         "dnd_minutes": 45},
        {"name": "zoom calls", "when": {"kind": "busy", "zoom_meeting": True}, "status": "Busy"},
        {"name": "office hours", "when": {"kind": "busy", "between": "09:00-12:00", "weekdays": ["tue"]},
         "status": "In_Calendar_Event"},
        {"name": "free", "when": {"kind": "free"}, "status": "restore"}]})
    d = decide(sit(title="Interview: Ada"), "Available", Memory(), rules, T0)
    assert (d.status, d.dnd_minutes, d.rule) == ("Do_Not_Disturb", 45, "interviews")
    d = decide(sit(is_zoom=True), "Available", Memory(), rules, T0)
    assert d.rule == "zoom calls"
    d = decide(sit(), "Available", Memory(), rules, T0)       # 2026-12-01 is a Tuesday, 10:00
    assert d.rule == "office hours"
    d = decide(sit(at=T0.replace(hour=13)), "Available", Memory(), rules, T0.replace(hour=13))
    assert d.rule is None and ("office hours", "13:00 is outside 09:00-12:00") in d.checked


def test_rules_files_are_validated(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('version = 1\n[[rule]]\nname = "x"\nstatus = "Presenting"\n')
    with pytest.raises(ConfigError, match="status"):
        load_presence_rules(bad)
    bad.write_text('version = 1\n[[rule]]\nname = "x"\nstatus = "Busy"\nwhen = { between = "late" }\n')
    with pytest.raises(ConfigError, match="between"):
        load_presence_rules(bad)


# --- the driver against the Zoom sandbox ------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def setup(world, tmp_path):
    clock = Clock()
    world.zoom.clock = clock
    ctx = make_context(world, tmp_path)
    info = link_sandbox_user(ctx, world, "p@example.com", "P", "Europe/Berlin")
    with ctx.store.transaction() as s:
        user = s.scalars(select(User)).one()
        s.add(AvailabilitySettings(user_id=user.id, timezone="Europe/Berlin"))
        lo, hi = datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
        for ev, start, minutes, kind in [("meet", T0, 30, "busy"), ("ooo", T0 + timedelta(hours=2), 60, "ooo")]:
            content = make_content(title=ev, start=fmt_instant(start),
                                   end=fmt_instant(start + timedelta(minutes=minutes)), show_as=kind)
            repo.upsert_event(s, user.tenant_id, user.id, ev, content)
            s.flush()
            intervals.refresh_events(s, user.tenant_id, user.id, {ev: content}, lo, hi, "Europe/Berlin")
        user_id = user.id
    service = PresenceService(ctx, BusyIndex.load(ctx.store))
    zoom_user = world.zoom.users[info["zoom_user_id"]]
    yield service, zoom_user, clock, user_id
    ctx.store.dispose()


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _user(service, user_id):
    with service.ctx.store.session() as s:
        return s.get(User, user_id)


@pytest.mark.anyio
async def test_driver_follows_the_calendar_and_restores(setup):
    service, zoom_user, clock, user_id = setup
    user = _user(service, user_id)
    zoom_user["_presence"] = "Away"
    first = await service.evaluate(user, T0 + timedelta(minutes=1))
    assert first.written and zoom_user["_presence"] == "In_Calendar_Event"
    again = await service.evaluate(user, T0 + timedelta(minutes=2))       # same state: no second write
    assert not again.written and service.writes == 1
    clock.t += 3600
    back = await service.evaluate(user, T0 + timedelta(minutes=40))
    assert back.written and zoom_user["_presence"] == "Away"
    # the queue holds the next boundary: the out-of-office block at 12:00
    assert (int((T0 + timedelta(hours=2)).timestamp()), user_id) in service.queue


@pytest.mark.anyio
async def test_driver_respects_zoom_rate_limit_and_sign_in(setup):
    service, zoom_user, clock, user_id = setup
    user = _user(service, user_id)
    await service.evaluate(user, T0 + timedelta(minutes=1))
    # another writer used this user's one update a minute: zoomcal's PUT gets 429 and is scheduled, not lost
    service.ctx.store.dispose()
    with service.ctx.store.transaction() as s:
        from zoomcal.store.models import PresenceState

        s.get(PresenceState, user_id).last_written_at = None
    zoom_user["_presence"] = "In_Calendar_Event"
    at = T0 + timedelta(hours=2, minutes=1)
    clock.t += 10
    limited = await service.evaluate(user, at)
    assert not limited.written and "rate limit" in limited.error and limited.decision.retry_at > at
    clock.t += 120
    zoom_user["_signed_in"] = False
    signed_out = await service.evaluate(user, at + timedelta(minutes=2))
    assert not signed_out.written and "not signed in" in signed_out.error
    zoom_user["_signed_in"] = True
    ok = await service.evaluate(user, at + timedelta(minutes=3))
    assert ok.written and zoom_user["_presence"] == "Out_of_Office"


@pytest.mark.anyio
async def test_driver_never_overrides_a_live_zoom_meeting(setup):
    service, zoom_user, _clock, user_id = setup
    zoom_user["_presence"] = "In_A_Zoom_Meeting"
    outcome = await service.evaluate(_user(service, user_id), T0 + timedelta(minutes=1))
    assert not outcome.written and zoom_user["_presence"] == "In_A_Zoom_Meeting"


@pytest.mark.anyio
async def test_presence_due_times_come_from_the_store_so_any_worker_serves_them(setup):
    """The periodic presence job asks the store whose busy time starts or ends in the window it covers: a process
    that never saw the events (another machine's worker) still turns the status on and back off."""
    from zoomcal.app import jobs

    service, zoom_user, clock, user_id = setup
    services = service.ctx.services
    zoom_user["_presence"] = "Available"
    assert await jobs.presence_tick(services, T0 - timedelta(minutes=5), T0 - timedelta(minutes=1)) == 0
    assert zoom_user["_presence"] == "Available"             # nothing starts or ends then: nobody evaluated
    assert await jobs.presence_tick(services, T0 - timedelta(seconds=30), T0) == 1
    assert zoom_user["_presence"] == "In_Calendar_Event"     # the meeting at T0 began
    clock.t += 3600
    assert await jobs.presence_tick(services, T0 + timedelta(minutes=29), T0 + timedelta(minutes=30)) == 1
    assert zoom_user["_presence"] == "Available"             # and ended: what was shown before is back


@pytest.mark.anyio
async def test_a_presence_write_after_a_notified_change_counts_its_latency_under_the_reporting_channel(setup):
    """Presence decided after a due sync keeps a propagation sample from the change time the notification gave,
    labelled with the channel that reported it (what `zoomcal status` shows per provider)."""
    from zoomcal.app import due, jobs, propagation
    from zoomcal.domain.timeutil import now_utc

    service, zoom_user, _clock, user_id = setup

    class AtTheMeeting:
        def now(self):
            return T0 + timedelta(minutes=1)

    ctx = service.ctx.services.context("default", clock=AtTheMeeting())
    zoom_user["_presence"] = "Available"
    due.mark(ctx, "p@example.com", "google:changed", changed_at=now_utc() - timedelta(seconds=2))
    await jobs._presence_after_sync(ctx, user_id, due.get(ctx, user_id))
    assert zoom_user["_presence"] == "In_Calendar_Event"
    (sample,) = propagation.summary(ctx)["presence"].items()
    assert sample[0] == "google" and sample[1]["count"] == 1 and 2000 <= sample[1]["p50"] < 60_000
    assert jobs._source("booking") == "" and jobs._source("graph:missed") == "graph"   # a named channel only
