"""Durable work: a notification or a timer only marks a person's sync due; a job syncs them. The embedded runner
(SQLite, nothing to install) and procrastinate workers (PostgreSQL) serve the same marks; a mark is cleared only
by a run that started after it, so nothing marked is lost with a run or a process."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from conftest import _fresh_pg, link_sandbox_user, make_context
from zoomcal.app import due, jobs, runner
from zoomcal.app import sync as app_sync
from zoomcal.domain.timeutil import now_utc
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store import repo
from zoomcal.store.models import Calendar, SyncDue

pytestmark = pytest.mark.anyio
ADA = "ada@example.com"


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _linked(ctx, world):
    info = link_sandbox_user(ctx, world, ADA, "Ada")
    await app_sync.run(ctx)
    return info


async def _meeting(world, info, topic):
    actor = SandboxActor(world, transport=world.transport())
    try:
        return await actor.zoom_create(info["zoom_user_id"], topic=topic, type=2, start_time="2026-12-10T09:00:00Z",
                                       duration=30)
    finally:
        await actor.aclose()


def _google_titles(world, info):
    return {e.get("summary") for e in world.google.calendars[info["google_calendar_id"]].events.values()
            if e.get("status") != "cancelled"}


async def test_a_due_mark_is_served_by_the_embedded_runner_and_cleared(world, tmp_path):
    ctx = make_context(world, tmp_path)
    try:
        info = await _linked(ctx, world)
        await _meeting(world, info, "Kickoff")
        changed = now_utc() - timedelta(seconds=2)
        assert due.mark(ctx, [ADA, "nobody@example.com"], "zoom:meeting.created", changed_at=changed) == [ADA]
        due.mark(ctx, ADA, "zoom:meeting.updated", changed_at=changed + timedelta(seconds=1))
        (mark,) = due.pending(ctx)
        assert mark.marks == 2 and mark.changed_at == changed      # coalesced; the earliest change time kept
        outcomes = await runner.EmbeddedRunner(ctx.services, presence=False).step()
        assert [o.user for o in outcomes] == [ADA] and outcomes[0].cleared
        assert "Kickoff" in _google_titles(world, info)
        assert due.pending(ctx) == []
    finally:
        await ctx.services.aclose()
        ctx.services.close()


async def test_a_mark_made_during_the_run_stays_due(world, tmp_path):
    ctx = make_context(world, tmp_path)
    try:
        await _linked(ctx, world)
        due.mark(ctx, ADA, "first")
        again = []

        def during(_result):     # a notification arrives while the run works
            if not again:
                again.append(due.mark(ctx, ADA, "second"))

        outcome = await jobs.sync_person(ctx.services, "default", ADA, on_pair=during, presence=False)
        assert again and not outcome.cleared
        assert [m.reason for m in due.pending(ctx)] == ["second"]
        assert (await jobs.sync_person(ctx.services, "default", ADA, presence=False)).cleared
    finally:
        await ctx.services.aclose()
        ctx.services.close()


async def test_a_person_whose_calendars_are_held_elsewhere_is_retried_not_dropped(world, tmp_path):
    ctx = make_context(world, tmp_path)
    try:
        await _linked(ctx, world)
        with ctx.store.session() as s:
            cals = list(s.scalars(select(Calendar.id)))
        with ctx.services.db.transaction() as s:
            repo.take_leases(s, cals, "other-machine:run", timedelta(minutes=5))
        due.mark(ctx, ADA, "zoom:meeting.updated")
        with pytest.raises(jobs.RetryLater, match="skipped"):
            await jobs.sync_person(ctx.services, "default", ADA, presence=False)
        assert len(due.pending(ctx)) == 1 and due.pending(ctx)[0].attempts == 1
        now = [1000.0]
        embedded = runner.EmbeddedRunner(ctx.services, presence=False, clock=lambda: now[0])

        def attempts() -> int:
            return due.pending(ctx)[0].attempts

        assert await embedded.step() == [] and attempts() == 2      # run, skipped: back off 2 s
        assert await embedded.step() == [] and attempts() == 2      # not in a tight loop
        now[0] = 1001.0
        due.mark(ctx, ADA, "zoom:meeting.updated")
        assert await embedded.step() == [] and attempts() == 2      # news, but within the first rung: waits
        now[0] = 1002.0
        assert await embedded.step() == [] and attempts() == 3      # run, skipped again: back off 4 s
        now[0] = 1004.5
        with ctx.services.db.transaction() as s:
            repo.drop_leases(s, cals, "other-machine:run")
        assert await embedded.step() == [] and attempts() == 3      # still backing off: nothing new
        due.mark(ctx, ADA, "zoom:meeting.updated")                  # news past the first rung cuts it short
        assert [o.cleared for o in await embedded.step()] == [True]
    finally:
        await ctx.services.aclose()
        ctx.services.close()


async def test_the_embedded_runner_serves_several_people_at_once(world, tmp_path, monkeypatch):
    """One person's sync waiting on a provider does not hold up another's: while Ada's run waits, Grace's runs
    to the end (its writes go through) - with one at a time, Ada's wait would never end."""
    ctx = make_context(world, tmp_path)
    try:
        ada = await _linked(ctx, world)
        grace = link_sandbox_user(ctx, world, "grace@example.com", "Grace")
        await _meeting(world, ada, "Ada's")
        await _meeting(world, grace, "Grace's")
        real, grace_done, timeout = jobs.sync_person, asyncio.Event(), [2.0]

        async def ada_waits(services, tenant, email, **kwargs):
            if email == ADA:
                await asyncio.wait_for(grace_done.wait(), timeout[0])   # a slow provider, answering after Grace
            outcome = await real(services, tenant, email, **kwargs)
            if email != ADA:
                grace_done.set()
            return outcome

        monkeypatch.setattr(jobs, "sync_person", ada_waits)
        due.mark(ctx, ADA, "first")
        due.mark(ctx, "grace@example.com", "second")
        # one at a time: Ada's run gives up waiting (Grace's comes only after it), Grace's is served
        served = await runner.EmbeddedRunner(ctx.services, presence=False, concurrency=1).step()
        assert [o.user for o in served] == ["grace@example.com"] and [m.email for m in due.pending(ctx)] == [ADA]
        grace_done.clear()
        timeout[0] = 30.0
        due.mark(ctx, "grace@example.com", "again")
        served = await runner.EmbeddedRunner(ctx.services, presence=False, concurrency=2).step()
        assert sorted(o.user for o in served if o.cleared) == [ADA, "grace@example.com"]
        assert "Ada's" in _google_titles(world, ada) and "Grace's" in _google_titles(world, grace)
    finally:
        await ctx.services.aclose()
        ctx.services.close()


async def test_the_embedded_runner_keeps_its_periods_by_the_clock_it_is_given(world, tmp_path):
    ctx = make_context(world, tmp_path)
    try:
        await _linked(ctx, world)
        now = [1000.0]
        embedded = runner.EmbeddedRunner(ctx.services, presence=False, clock=lambda: now[0],
                                         intervals=runner.Intervals(reconcile=900.0))
        assert [o.user for o in await embedded.step()] == [ADA]      # the first round syncs everyone
        now[0] = 1899.0
        assert await embedded.step() == []
        now[0] = 1900.0
        assert [o.user for o in await embedded.step()] == [ADA]      # the next one, 900 s later on that clock
    finally:
        await ctx.services.aclose()
        ctx.services.close()


@pytest.mark.pg
async def test_procrastinate_workers_serve_marks_one_job_per_person(world, tmp_path, pg_schema_url):
    _fresh_pg(pg_schema_url).dispose()
    ctx = make_context(world, tmp_path, database_url=pg_schema_url)
    services = ctx.services
    try:
        assert isinstance(services.jobs, runner.WorkerJobs)
        info = await _linked(ctx, world)
        await _meeting(world, info, "Planning")
        for reason in ("zoom:meeting.created", "zoom:meeting.updated", "google:exists"):
            due.mark(ctx, ADA, reason)
        with services.db.session() as s:
            queued = s.execute(text("select count(*) from procrastinate_jobs where status = 'todo'")).scalar()
        assert queued == 1                       # the queueing lock: one waiting job per person
        await runner.run_worker(services, wait=False, install_signal_handlers=False, concurrency=2, periodic=False)
        assert "Planning" in _google_titles(world, info)
        assert due.pending(ctx) == []
        with services.db.session() as s:
            states = s.execute(text("select status from procrastinate_jobs where task_name = 'zoomcal.sync'"))
            assert [r[0] for r in states] == ["succeeded"]

        # a mark whose job was lost (its process died between the mark and the defer) is queued by the sweep
        with services.db.transaction() as s:
            due.mark_ids(s, ctx.tenant_id, [due.pending(ctx) and 0 or _user_id(s)], "lost",
                         at=now_utc() - timedelta(minutes=5))
        await _meeting(world, info, "Retro")
        app = runner.build_app(services)
        async with app.open_async():
            assert (await runner.sweep(app, services))["queued"] == 1
        await runner.run_worker(services, wait=False, install_signal_handlers=False, periodic=False)
        assert "Retro" in _google_titles(world, info) and due.pending(ctx) == []
    finally:
        await services.aclose()
        services.close()


def test_a_retry_waits_what_the_job_asked_for_doubling_up_to_its_cap():
    skipped = jobs.RetryLater("held elsewhere", delay=2.0, cap=30.0)
    assert [jobs.retry_after(skipped, n) for n in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    failed = jobs.RetryLater("a pair failed", delay=30.0)
    assert [jobs.retry_after(failed, n) for n in (0, 1, 3, 40)] == [30.0, 60.0, 240.0, 300.0]
    assert [jobs.retry_after(RuntimeError("boom"), n) for n in (0, 2, 99)] == [5.0, 20.0, 300.0]


@pytest.mark.pg
async def test_a_failed_job_while_a_newer_one_waits_leaves_nobody_stuck(world, tmp_path, pg_schema_url,
                                                                         monkeypatch):
    """A mark arrives while the person's job runs (a second job waits behind the queueing lock), then the running
    job fails: the waiting one runs next and serves the mark. (A retry of the failed job itself cannot be queued
    beside the waiting one; it used to stay `doing`, holding the person's lock, on a worker that lived on.)"""
    _fresh_pg(pg_schema_url).dispose()
    ctx = make_context(world, tmp_path, database_url=pg_schema_url)
    services = ctx.services
    try:
        info = await _linked(ctx, world)
        real, calls = jobs.sync_person, []

        async def fails_once(services_, tenant, email, **kwargs):
            calls.append(email)
            if len(calls) == 1:
                await asyncio.to_thread(due.mark, ctx, ADA, "zoom:meeting.updated")    # news meanwhile
                raise RuntimeError("the provider went away")
            return await real(services_, tenant, email, **kwargs)

        monkeypatch.setattr(jobs, "sync_person", fails_once)
        await _meeting(world, info, "Planning")
        due.mark(ctx, ADA, "zoom:meeting.created")
        await runner.run_worker(services, wait=False, install_signal_handlers=False, concurrency=1, periodic=False)
        with services.db.session() as s:
            states = sorted(r[0] for r in s.execute(text(
                "select status from procrastinate_jobs where task_name = 'zoomcal.sync'")))
        assert calls == [ADA, ADA] and states == ["failed", "succeeded"]
        assert due.pending(ctx) == [] and "Planning" in _google_titles(world, info)
    finally:
        await services.aclose()
        services.close()


@pytest.mark.pg
async def test_a_job_backing_off_runs_sooner_on_a_new_mark_but_not_on_the_sweeps_reminder(world, tmp_path,
                                                                                             pg_schema_url):
    _fresh_pg(pg_schema_url).dispose()
    ctx = make_context(world, tmp_path, database_url=pg_schema_url)
    services = ctx.services
    try:
        await _linked(ctx, world)

        def waiting() -> list[tuple[float, int]]:       # the person's waiting job: (seconds until due, attempt)
            with services.db.session() as s:
                return [(float(r[0]), int(r[1])) for r in s.execute(text(
                    "select extract(epoch from scheduled_at - now()), coalesce((args->>'attempt')::int, 0) "
                    "from procrastinate_jobs where task_name = 'zoomcal.sync' and status = 'todo'"))]

        app = runner.build_app(services)
        with app.open():
            # a failed job queues its follow-up after the back-off: what the job asked for, doubled per attempt
            assert runner.follow_up(app, "default", ADA, jobs.RetryLater("held", delay=2.0, cap=30.0), attempt=9)
            [(wait, attempt)] = waiting()
            assert 28 < wait <= 30 and attempt == 10                     # 30 s: its cap
            # news: it runs at once (its first rung, 2 s after the failure, has passed by then? not yet: 2 s)
            due.mark(ctx, ADA, "zoom:meeting.updated")
            [(wait, attempt)] = waiting()
            assert 0 < wait <= 2 and attempt == 10                       # sooner, never before the first rung
            with services.db.transaction() as s:      # the first rung long past, the job 10 minutes away
                s.execute(text("update procrastinate_jobs set scheduled_at = now() + interval '10 minutes', "
                               "args = args || '{\"soonest\": 0}' where task_name = 'zoomcal.sync' "
                               "and status = 'todo'"))
            due.mark(ctx, ADA, "zoom:meeting.updated")
            [(wait, attempt)] = waiting()
            assert wait <= 0 and attempt == 10                           # at once, its attempts kept
            with services.db.transaction() as s:
                s.execute(text("update procrastinate_jobs set scheduled_at = now() + interval '10 minutes' "
                               "where task_name = 'zoomcal.sync' and status = 'todo'"))
                due.mark_ids(s, ctx.tenant_id, [_user_id(s)], "old", at=now_utc() - timedelta(minutes=5))
        async with app.open_async():
            assert (await runner.sweep(app, services))["queued"] == 0
        assert waiting()[0][0] > 500                                     # the sweep's reminder leaves it alone
    finally:
        await services.aclose()
        services.close()


def _user_id(s):
    from zoomcal.store.models import User

    return s.scalar(select(User.id).where(User.email == ADA))


async def test_the_embedded_loop_stops_when_told_and_survives_a_failing_person(world, tmp_path, monkeypatch):
    ctx = make_context(world, tmp_path)
    try:
        await _linked(ctx, world)
        errors = []

        async def broken(*_args, **_kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(jobs, "sync_person", broken)
        due.mark(ctx, ADA, "x")
        loop_runner = runner.EmbeddedRunner(ctx.services, presence=False, on_error=lambda u, e: errors.append(u),
                                            intervals=runner.Intervals(poll=0.05, reconcile=3600))
        stop = asyncio.Event()
        task = asyncio.create_task(loop_runner.run(stop))
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert errors[:1] == [ADA] and len(due.pending(ctx)) == 1      # kept: the next attempt serves it
    finally:
        await ctx.services.aclose()
        ctx.services.close()


def test_marks_without_a_person_are_not_kept(any_db):
    with any_db.transaction() as s:
        tenant = repo.get_or_create_tenant(s)
        s.flush()
        due.mark_ids(s, tenant.id, [], "nothing")
        assert s.scalar(select(SyncDue.user_id)) is None
    with any_db.transaction() as s:
        s.execute(update(SyncDue).values(reason="x"))


@pytest.mark.anyio
async def test_a_notification_about_one_calendar_lists_only_that_calendar(world, tmp_path):
    """A mark from a notification names the calendar that changed: the job lists that calendar alone; the other
    counts as unchanged since its last listing and takes creates as it is, but is listed before an update. A mark
    without calendars (a timer, a command) lists both, and so do marks that pile up from both sides."""
    from zoomcal.store.models import Account, Calendar

    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, ADA, "Ada")
        actor = SandboxActor(world, transport=world.transport())
        made = await actor.zoom_create(info["zoom_user_id"], topic="Plan", type=2, start_time="2026-12-10T09:00:00Z",
                                       duration=30)
        due.mark(ctx, ADA, "first round")
        await jobs.sync_person(ctx.services, "default", ADA, presence=False)
        with ctx.store.session() as s:
            cal = {provider: cal_id for provider, cal_id in s.execute(
                select(Account.provider, Calendar.id).join(Calendar, Calendar.account_id == Account.id))}

        await actor.zoom_create(info["zoom_user_id"], topic="Review", type=2, start_time="2026-12-11T09:00:00Z",
                                duration=30)
        reads = world.google_calls.get("reads", 0)
        due.mark(ctx, ADA, "zoom:meeting.created", calendars=[cal["zoom"]])
        (result,) = (await jobs.sync_person(ctx.services, "default", ADA, presence=False)).results
        assert result.writes == 1 and world.google_calls.get("reads", 0) == reads      # a create: Google not listed

        await actor.zoom_patch(made["id"], topic="Plan (moved)")
        due.mark(ctx, ADA, "zoom:meeting.updated", calendars=[cal["zoom"]])
        (result,) = (await jobs.sync_person(ctx.services, "default", ADA, presence=False)).results
        # an update there: Google is listed first (it may have changed too), once
        assert result.writes == 1 and world.google_calls.get("reads", 0) == reads + 1
        assert "Plan (moved)" in {e["summary"] for e in world.google.calendars[info["google_calendar_id"]]
                                  .events.values()}

        zoom_reads = world.zoom_calls.get("reads", 0)
        due.mark(ctx, ADA, "google:changed", calendars=[cal["google"]])        # the echo of zoomcal's own write
        (echo,) = (await jobs.sync_person(ctx.services, "default", ADA, presence=False)).results
        assert echo.writes == 0 and world.zoom_calls.get("reads", 0) == zoom_reads   # Zoom was not listed

        due.mark(ctx, ADA, "zoom:meeting.updated", calendars=[cal["zoom"]])
        due.mark(ctx, ADA, "google:changed", calendars=[cal["google"]])
        assert due.get(ctx, due.pending(ctx)[0].user_id).calendars == {cal["zoom"], cal["google"]}
        due.mark(ctx, ADA, "booking")
        assert due.get(ctx, due.pending(ctx)[0].user_id).calendars is None          # all of them
    finally:
        await ctx.services.aclose()
        ctx.services.close()


@pytest.mark.anyio
async def test_a_pair_no_notification_named_still_runs_while_it_owes_a_write(world, tmp_path):
    from zoomcal.sync.retry import Retrier

    ctx = make_context(world, tmp_path)
    ctx.services.retrier = lambda: Retrier(max_retries=0)
    try:
        info = link_sandbox_user(ctx, world, ADA, "Ada")
        actor = SandboxActor(world, transport=world.transport())
        await actor.zoom_create(info["zoom_user_id"], topic="Plan", type=2, start_time="2026-12-10T09:00:00Z",
                                duration=30)
        world.google_faults.add("503", "POST", "/events", times=1)
        (failed,) = await app_sync.run(ctx, ADA)
        assert failed.writes == 0 and failed.errors                       # the create is owed
        assert await app_sync.run(ctx, ADA, changed=frozenset({999_999})) != []   # another calendar was named
        assert await app_sync.run(ctx, ADA, changed=frozenset({999_999})) == []   # nothing owed: not run
        assert len(world.google.calendars[info["google_calendar_id"]].events) == 1
    finally:
        await ctx.services.aclose()
        ctx.services.close()
