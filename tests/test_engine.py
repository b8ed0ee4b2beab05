"""The engine end to end against the sandboxes: faults, crashes, resync, bad input, guard, recurrence."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from conftest import build_pairs, link_sandbox_user, make_context, sync_first_pair
from zoomcal.agreement import compare_user
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import Account, Event, ReviewItem, SyncLogEntry
from zoomcal.sync.engine import SimulatedCrash, SyncEngine
from zoomcal.sync.retry import Retrier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Harness:
    def __init__(self, world, tmp_path, database_url=None, rules=None, zoom_mode="account"):
        self.world = world
        self.ctx = make_context(world, tmp_path, database_url, rules)
        self.user = link_sandbox_user(self.ctx, world, "h@example.com", "H", "America/New_York", zoom_mode)
        self.actor = SandboxActor(world, transport=world.transport())
        self.slept: list[float] = []
        self.crash_after: int | None = None
        self.writes_seen = 0

        async def sleep(seconds):
            self.slept.append(seconds)

        def after_write(_side, _write):
            self.writes_seen += 1
            if self.crash_after is not None and self.writes_seen >= self.crash_after:
                self.crash_after = None
                raise SimulatedCrash()

        self.engine = SyncEngine(self.ctx.store, retrier=Retrier(max_retries=3, sleep=sleep, seed=3),
                                 after_write=after_write)

    async def sync(self, **kw):
        return await sync_first_pair(self.ctx, self.engine, **kw)

    def agree(self):
        return compare_user(self.world, self.user["zoom_user_id"], self.user["google_calendar_id"])

    def log(self, level=None):
        with self.ctx.store.session() as s:
            q = select(SyncLogEntry.message)
            if level:
                q = q.where(SyncLogEntry.level == level)
            return list(s.scalars(q))

    @property
    def cal(self):
        return self.user["google_calendar_id"]

    @property
    def zid(self):
        return self.user["zoom_user_id"]


@pytest.fixture
def h(world, tmp_path):
    harness = Harness(world, tmp_path)
    yield harness
    harness.ctx.store.dispose()


async def test_renaming_a_series_in_the_calendar_keeps_its_moved_occurrence_in_zoom_with_one_write(h):
    """The rule Zoom holds (no repeat_interval) and the one zoomcal would write (repeat_interval 1) repeat alike: it
    is not sent again, which would make a new series and drop the moved occurrence, to be moved back by one more
    write."""
    weekly = await h.actor.zoom_create(h.zid, topic="Weekly", type=8, start_time="2026-03-02T14:00:00Z", duration=30,
                                       timezone="UTC", recurrence={"type": 2, "weekly_days": "2", "end_times": 6})
    await h.sync()
    second = (await h.actor.zoom_get(weekly["id"]))["occurrences"][1]
    await h.actor.zoom_patch(weekly["id"], occurrence_id=second["occurrence_id"],
                             start_time=second["start_time"].replace("T14:00", "T16:00"), duration=30)
    await h.sync()
    await h.actor.google_patch(h.cal, h.actor.google_find(h.cal, "Weekly")["id"], summary="Weekly sync")
    writes = h.world.zoom_calls["writes"]
    report = await h.sync()
    assert report.status == "ok" and h.world.zoom_calls["writes"] - writes == 1
    full = await h.actor.zoom_get(weekly["id"])
    assert full["topic"] == "Weekly sync" and "repeat_interval" not in full["recurrence"]
    assert full["occurrences"][1]["start_time"].endswith("T16:00:00Z") and not h.agree().mismatches


async def test_two_way_sync_with_recurrence_and_join_write_back(h):
    weekly = await h.actor.zoom_create(h.zid, topic="Weekly", type=8, start_time="2026-03-02T14:00:00Z", duration=30,
                                       timezone="America/New_York",
                                       recurrence={"type": 2, "weekly_days": "2", "end_times": 6})
    await h.actor.google_insert(h.cal, summary="Planning", location="zoom",
                                start={"dateTime": "2026-03-03T15:00:00Z"}, end={"dateTime": "2026-03-03T16:00:00Z"})
    await h.actor.google_insert(h.cal, summary="Gym", start={"dateTime": "2026-03-03T07:00:00Z"},
                                end={"dateTime": "2026-03-03T08:00:00Z"})
    report = await h.sync()
    assert report.status == "ok" and report.counts["create_b"] == 1 and report.counts["create_a"] == 1
    assert not h.agree().mismatches and not h.agree().duplicates
    planning = h.actor.google_find(h.cal, "Planning")
    assert planning["location"].startswith("https://sandbox.zoom.us/j/")     # join info written back
    assert len(h.world.zoom.meetings) == 2   # the plain event ("Gym") only feeds availability
    # occurrence edits both ways: Zoom moves the 2nd, the calendar cancels the 4th
    full = await h.actor.zoom_get(weekly["id"])
    second = full["occurrences"][1]
    await h.actor.zoom_patch(weekly["id"], occurrence_id=second["occurrence_id"],
                             start_time=second["start_time"].replace("T14:00", "T16:00"), duration=30)
    weekly_cal = h.actor.google_find(h.cal, "Weekly")
    instances = await h.actor.google_instances(h.cal, weekly_cal["id"])
    await h.actor.google_delete(h.cal, instances[3]["id"])
    report = await h.sync()
    assert report.status == "ok"
    assert not h.agree().mismatches
    statuses = [o["status"] for o in (await h.actor.zoom_get(weekly["id"]))["occurrences"]]
    assert statuses[3] == "deleted"
    assert (await h.sync()).writes == 0


async def test_faults_are_retried_and_429_waits_for_retry_after(h):
    await h.actor.zoom_create(h.zid, topic="A", type=2, start_time="2026-03-02T14:00:00Z", duration=30)
    h.world.google_faults.add("429", method="POST", path="/events", retry_after=9)
    h.world.google_faults.add("500", method="POST", path="/events")
    h.world.zoom_faults.add("timeout", method="GET")
    report = await h.sync()
    assert report.status == "ok" and 9.0 in h.slept
    assert not h.agree().mismatches and not h.agree().duplicates


async def test_lost_create_response_finds_its_twin_on_both_sides(h):
    await h.actor.zoom_create(h.zid, topic="From Zoom", type=2, start_time="2026-03-02T14:00:00Z", duration=30)
    await h.actor.google_insert(h.cal, summary="From calendar", description="#zoom",
                                start={"dateTime": "2026-03-03T15:00:00Z"}, end={"dateTime": "2026-03-03T16:00:00Z"})
    h.world.google_faults.add("lost_response", method="POST")
    h.world.zoom_faults.add("lost_response", method="POST")
    report = await h.sync()
    assert report.status == "ok"
    assert h.world.google_faults.fired["lost_response"] == 1 and h.world.zoom_faults.fired["lost_response"] == 1
    agreement = h.agree()
    assert agreement.zoom_meetings == 2 and agreement.calendar_events == 2
    assert not agreement.duplicates and not agreement.mismatches


@pytest.mark.parametrize("crash_at", [1, 2, 3])
async def test_crash_between_remote_write_and_local_commit_is_repaired(h, crash_at):
    await h.actor.zoom_create(h.zid, topic="Z", type=2, start_time="2026-03-02T14:00:00Z", duration=30)
    await h.actor.google_insert(h.cal, summary="C", location="zoom",
                                start={"dateTime": "2026-03-03T15:00:00Z"}, end={"dateTime": "2026-03-03T16:00:00Z"})
    h.crash_after = crash_at
    with pytest.raises(SimulatedCrash):
        await h.sync()
    report = await h.sync()
    assert report.status == "ok"
    agreement = h.agree()
    assert (agreement.zoom_meetings, agreement.calendar_events) == (2, 2)
    assert not agreement.duplicates and not agreement.mismatches
    assert (await h.sync()).writes == 0


async def test_expired_sync_token_triggers_full_resync(h):
    await h.actor.google_insert(h.cal, summary="One", start={"dateTime": "2026-03-03T15:00:00Z"},
                                end={"dateTime": "2026-03-03T16:00:00Z"})
    await h.sync()
    h.world.google.expire_sync_tokens()
    await h.actor.google_insert(h.cal, summary="Two", description="#zoom",
                                start={"dateTime": "2026-03-04T15:00:00Z"}, end={"dateTime": "2026-03-04T16:00:00Z"})
    report = await h.sync()
    assert report.status == "ok" and any("full resync" in n for n in report.notes)
    assert [m["topic"] for m in h.world.zoom.meetings.values()] == ["Two"]


async def test_bad_items_are_rejected_with_a_reason_and_the_rest_syncs(h):
    cal = h.world.google.calendars[h.cal]
    good = await h.actor.google_insert(h.cal, summary="Good", description="#zoom",
                                       start={"dateTime": "2026-03-03T15:00:00Z"},
                                       end={"dateTime": "2026-03-03T16:00:00Z"})
    # items another client managed to store that zoomcal cannot read (written behind the API's back)
    for i, broken in enumerate([
        {"start": {"dateTime": "2026-03-03T10:00:00", "timeZone": "Atlantis/Capital"},
         "end": {"dateTime": "2026-03-03T11:00:00", "timeZone": "Atlantis/Capital"}},
        {"start": {"dateTime": "garbage"}, "end": {"dateTime": "2026-03-03T11:00:00Z"}},
        {"start": {"date": "2026-03-03"}, "end": {"date": "2026-03-04"}, "summary": "x" * 20000},
        {"start": {"dateTime": "2026-03-03T10:00:00Z"}, "end": {"dateTime": "2026-03-03T11:00:00Z"},
         "recurrence": ["RRULE:BANANA"]},
    ]):
        h.world.google.seq += 1
        cal.events[f"broken{i}"] = {"id": f"broken{i}", "kind": "calendar#event", "status": "confirmed",
                                    "etag": f'"{h.world.google.seq}"', "_seq": h.world.google.seq, **broken,
                                    "description": "#zoom"}
    report = await h.sync()
    assert report.rejected == 4 and report.status == "ok"
    errors = "\n".join(h.log("error"))
    assert "unknown time zone 'Atlantis/Capital'" in errors and "malformed" in errors
    assert "longer than" in errors and "RRULE" in errors
    assert [m["topic"] for m in h.world.zoom.meetings.values()] == ["Good"]
    with h.ctx.store.session() as s:
        titles = sorted(s.scalars(select(Event.title)))
    assert titles == ["Good"]
    assert h.actor.google_find(h.cal, "Good")["id"] == good["id"]


async def test_conflict_goes_to_review_queue_with_policy(h):
    await h.actor.zoom_create(h.zid, topic="Orig", type=2, start_time="2026-03-02T14:00:00Z", duration=30)
    await h.sync()
    meeting = h.actor.zoom_find(h.zid, "Orig")
    event = h.actor.google_find(h.cal, "Orig")
    await h.actor.zoom_patch(meeting["id"], topic="Zoom says")
    await h.actor.google_patch(h.cal, event["id"], summary="Calendar says")
    await h.sync()
    assert h.world.zoom.meetings[meeting["id"]]["topic"] == "Calendar says"   # default policy: calendar wins
    with h.ctx.store.session() as s:
        review = s.scalars(select(ReviewItem)).one()
    assert (review.field, review.zoom_value, review.calendar_value, review.chosen) == \
        ("title", "Zoom says", "Calendar says", "calendar")


async def test_mass_delete_is_held_until_confirmed(h):
    for i in range(6):
        await h.actor.zoom_create(h.zid, topic=f"M{i}", type=2, start_time=f"2026-03-0{i + 1}T14:00:00Z", duration=30)
    await h.sync()
    for meeting in list(h.world.zoom.meetings):
        await h.actor.zoom_delete(meeting)
    report = await h.sync()
    assert report.plan.held_deletes == 6 and report.writes == 0
    assert h.agree().calendar_events == 6
    with h.ctx.store.session() as s:
        assert s.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.kind == "mass_delete")) == 1
    report = await h.sync(confirm_deletes=True)
    assert report.writes == 6 and h.agree().calendar_events == 0


async def test_dry_run_writes_nothing(h):
    await h.actor.zoom_create(h.zid, topic="Z", type=2, start_time="2026-03-02T14:00:00Z", duration=30)
    report = await h.sync(dry_run=True)
    assert report.counts["create_b"] == 1 and report.writes == 0 and report.run_id is None
    assert h.agree().calendar_events == 0
    with h.ctx.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 0


async def test_user_oauth_refresh_token_rotation_is_persisted(world, tmp_path):
    harness = Harness(world, tmp_path, zoom_mode="user")
    await harness.actor.zoom_create(harness.zid, topic="Z", type=2, start_time="2026-03-02T14:00:00Z", duration=30)
    assert (await harness.sync()).status == "ok"
    world.zoom.tokens.expire_all()             # access tokens expire; the stored (rotated) refresh token must work
    world.google.tokens.expire_all()
    assert (await harness.sync()).status == "ok"
    with harness.ctx.store.session() as s:
        zoom_account = s.scalars(select(Account).where(Account.provider == "zoom")).one()
        secret = harness.ctx.vault.open(zoom_account.secret)
    assert secret["refresh_token"] != harness.user["zoom_refresh_token"]
    assert secret["refresh_token"] in world.zoom.tokens.refresh


async def test_revoked_credentials_mark_the_account_for_reauth(h):
    h.world.google.tokens.refresh.clear()
    h.world.google.tokens.expire_all()
    report = await h.sync()
    assert report.status == "failed" and "linked again" in report.errors[0]
    with h.ctx.store.session() as s:
        assert s.scalars(select(Account.status).where(Account.provider == "google")).one() == "reauth"
    assert build_pairs(h.ctx) == []


async def test_sync_on_postgresql(world, tmp_path, pg_schema_url):
    from conftest import _fresh_pg

    _fresh_pg(pg_schema_url).dispose()
    harness = Harness(world, tmp_path, database_url=pg_schema_url)
    await harness.actor.zoom_create(harness.zid, topic="PG", type=8, start_time="2026-03-02T14:00:00Z", duration=30,
                                    recurrence={"type": 1, "end_times": 3})
    harness.world.google_faults.add("lost_response", method="POST")
    assert (await harness.sync()).status == "ok"
    assert not harness.agree().mismatches and not harness.agree().duplicates
    assert (await harness.sync()).writes == 0
    harness.ctx.store.dispose()


async def test_overlaps_someone_can_act_on_are_recorded_once_and_closed_when_gone(h):
    """An invitation on top of a Zoom meeting goes to the review queue, once; two outside events that overlap are a
    normal calendar (listed by `conflicts`, not queued); an overlap that is gone is closed."""
    from datetime import timedelta

    from zoomcal.availability.booking import inbound_conflicts
    from zoomcal.domain.timeutil import fmt_instant, now_utc

    day = (now_utc() + timedelta(days=5)).replace(hour=10, minute=0, second=0, microsecond=0)
    await h.actor.zoom_create(h.zid, topic="Team", type=2, start_time=fmt_instant(day), duration=60)
    invite = await h.actor.google_insert(h.cal, summary="Invite",
                                         start={"dateTime": fmt_instant(day + timedelta(minutes=30))},
                                         end={"dateTime": fmt_instant(day + timedelta(minutes=90))})
    for title, hours in (("Lunch", 3), ("Errand", 3.5)):        # two outside events on top of each other
        start = day + timedelta(hours=hours)
        await h.actor.google_insert(h.cal, summary=title, start={"dateTime": fmt_instant(start)},
                                    end={"dateTime": fmt_instant(start + timedelta(hours=1))})
    await h.sync()
    await h.sync()

    def overlaps(status="open"):
        with h.ctx.store.session() as s:
            return list(s.scalars(select(ReviewItem).where(ReviewItem.kind == "overlap",
                                                           ReviewItem.status == status)))

    found = overlaps()
    assert [(o.zoom_value["title"], o.calendar_value["title"]) for o in found] == [("Team", "Invite")]
    listed = inbound_conflicts(h.ctx.store, found[0].user_id, day - timedelta(days=1), day + timedelta(days=1))
    assert sorted((c["first"]["title"], c["second"]["title"]) for c in listed) == [("Lunch", "Errand"),
                                                                                   ("Team", "Invite")]
    # the invitation moves away: the overlap is closed, not left open
    await h.actor.google_patch(h.cal, invite["id"], start={"dateTime": fmt_instant(day + timedelta(hours=6))},
                               end={"dateTime": fmt_instant(day + timedelta(hours=7))})
    await h.sync()
    assert overlaps() == [] and [o.chosen for o in overlaps("resolved")] == ["gone"]


async def test_overlaps_on_the_review_queue_are_capped_per_person(h):
    from datetime import timedelta

    from zoomcal.availability.subscribers import OverlapRecorder
    from zoomcal.domain.timeutil import fmt_instant, now_utc

    recorder = next(sub for sub, _only in h.engine.changes.subscribers if isinstance(sub, OverlapRecorder))
    recorder.cap = 2
    day = (now_utc() + timedelta(days=5)).replace(hour=8, minute=0, second=0, microsecond=0)
    await h.actor.zoom_create(h.zid, topic="All day workshop", type=2, start_time=fmt_instant(day), duration=600)
    for n in range(4):
        start = day + timedelta(hours=2 * n)
        await h.actor.google_insert(h.cal, summary=f"Call {n}", start={"dateTime": fmt_instant(start)},
                                    end={"dateTime": fmt_instant(start + timedelta(minutes=30))})
    await h.sync()
    await h.sync()
    with h.ctx.store.session() as s:
        pairs = [{r.zoom_value["title"], r.calendar_value["title"]} for r in s.scalars(select(ReviewItem).where(
            ReviewItem.kind == "overlap"))]
    assert len(pairs) == 2 and all("All day workshop" in pair for pair in pairs)


def test_graph_style_503_with_retry_after_is_a_rate_limit():
    import httpx

    from zoomcal.connectors.http import error_for
    from zoomcal.errors import RateLimited, Transient

    limited = error_for(httpx.Response(503, headers={"Retry-After": "12"}), "GET /events")
    assert isinstance(limited, RateLimited) and limited.retry_after == 12
    assert type(error_for(httpx.Response(503), "GET /events")) is Transient


async def test_two_runs_of_the_same_calendars_never_overlap(h):
    """Two processes (or a webhook and a polling round) syncing the same user at once: the second run is
    skipped while the first holds the calendars, so a new meeting gets exactly one calendar event."""
    import asyncio

    from conftest import build_pairs, close_pairs

    await h.actor.zoom_create(h.zid, topic="Once only", type=2, start_time="2026-12-03T15:00:00Z", duration=30,
                              timezone="UTC")
    first, second = build_pairs(h.ctx), build_pairs(h.ctx)
    listing = first[0].b.connector.changes
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_changes(*args, **kwargs):
        entered.set()
        await release.wait()
        return await listing(*args, **kwargs)

    first[0].b.connector.changes = slow_changes
    try:
        running = asyncio.create_task(h.engine.run(first[0]))
        await entered.wait()
        skipped = await h.engine.run(second[0])
        release.set()
        done = await running
    finally:
        await close_pairs(h.ctx)
    assert skipped.status == "skipped" and "another run" in skipped.notes[0] and skipped.writes == 0
    assert done.status == "ok" and done.writes == 1
    titles = [e["summary"] for e in h.world.google.calendars[h.cal].events.values()]
    assert titles.count("Once only") == 1
    assert (await h.sync()).status == "ok"             # the lease went with the run that held it
