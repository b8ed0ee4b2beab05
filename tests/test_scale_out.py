"""Several machines' worth of processes on one real PostgreSQL: `zoomcal serve` receives the sandboxes'
notifications, three `zoomcal worker` processes run the jobs, and one worker is killed with SIGKILL every few
seconds while a scripted person edits meetings and events on both sides. Afterwards Zoom and the calendars agree,
nothing is duplicated, every item created on either side exists once on both, and every notification was
answered (so it was marked durably) by the web process."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import text

from conftest import _fresh_pg
from zoomcal.agreement import agreement as agreement_of
from zoomcal.app import accounts, admin, due, users
from zoomcal.app.context import Actor, open_services
from zoomcal.auth.vault import new_key_spec
from zoomcal.config import Settings
from zoomcal.sandbox import person
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.server import free_port

pytestmark = [pytest.mark.pg, pytest.mark.anyio]
PUBLIC = "https://zoomcal.scale.test"
EDITS = 200
PEOPLE = [(f"p{i}@example.com", f"Person {i}", "Europe/Berlin", "graph" if i % 2 else "google")
          for i in range(8)]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen:
    log = open(os.path.join(env["ZOOMCAL_DATA_DIR"], f"{args[0]}-{time.monotonic_ns()}.log"), "w")   # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "zoomcal", "-v", *args], env=env, stdout=log, stderr=log,
                            text=True)


async def test_serve_and_three_workers_agree_after_workers_are_killed(served_world, tmp_path, pg_schema_url):
    _fresh_pg(pg_schema_url).dispose()
    world, base = served_world
    port = free_port()
    local = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ZOOMCAL_DATA_DIR": str(tmp_path), "ZOOMCAL_DATABASE_URL": pg_schema_url,
           "ZOOMCAL_VAULT_KEYS": new_key_spec("scale"), "ZOOMCAL_ZOOM_WEBHOOK_SECRET": world.zoom.webhook_secret,
           "ZOOMCAL_PUBLIC_URL": PUBLIC, "ZOOMCAL_ALLOW_PRIVATE_URLS": "true", "ZOOMCAL_LEASE_SECONDS": "6",
           "ZOOMCAL_RECONCILE_MINUTES": "1", "ZOOMCAL_HTTP_TIMEOUT": "10"}
    settings = Settings(data_dir=tmp_path, database_url=pg_schema_url, vault_keys=env["ZOOMCAL_VAULT_KEYS"],
                        zoom_webhook_secret=world.zoom.webhook_secret, public_url=PUBLIC, allow_private_urls=True,
                        lease_seconds=6)
    admin.init(settings)

    async def deliver(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10.0) as client:     # the HTTPS proxy in front of `zoomcal serve`
            return await client.post(url.replace(PUBLIC, local, 1), headers=headers, content=body)

    world.zoom.webhook_url = f"{PUBLIC}/webhooks/zoom"
    for state in (world.zoom, world.google, world.graph):
        state.outbox.deliver = deliver

    serve = _spawn(env, "serve", "--port", str(port), "--no-jobs")
    workers: list[subprocess.Popen] = []
    services = open_services(settings)
    actor = SandboxActor(world, base_url=base)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{local}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        ctx = services.context("default", Actor("test", "admin"))
        people = []
        for email, name, tz, calendar in PEOPLE:
            info = {**world.add_user(email, name, tz), "provider": calendar}
            people.append(info)
            users.add(ctx, email, name)
            for link in world.link_requests(info, base, calendar):
                linked = await accounts.link(ctx, email, link["provider"], link["options"], link["secrets"])
                assert not linked.push or "fail" not in str(linked.push).lower(), linked.push
        workers = [_spawn(env, "worker", "--concurrency", "2") for _ in range(3)]
        await person.seed(actor, people)
        due.mark_all(ctx, "first round")

        rng = random.Random(7)
        kinds: dict[str, int] = {}
        kills = 0
        last_kill = time.monotonic()
        for _ in range(EDITS):
            done = await person.random_edit(actor, people, rng)
            kind = done.split(": ", 1)[1]
            kinds[kind] = kinds.get(kind, 0) + 1
            await asyncio.sleep(0.05)
            if time.monotonic() - last_kill > 4:
                victim = rng.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = _spawn(env, "worker", "--concurrency", "2")
                kills += 1
                last_kill = time.monotonic()
        assert kills >= 3

        # quiet: let the workers (and their lease take-overs) finish, with one reconciliation round at the end
        edits_done = time.monotonic()
        due.mark_all(ctx, "final check")
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            with services.db.session() as s:
                busy = s.execute(text("select count(*) from procrastinate_jobs where task_name = 'zoomcal.sync' "
                                      "and status in ('todo', 'doing')")).scalar()
            if not busy and not due.pending(ctx) and all(not agreement_of(actor, p).mismatches for p in people):
                break
            await asyncio.sleep(1)
        settled = time.monotonic()
        with services.db.session() as s:
            jobs = s.execute(text("select task_name, status, count(*) from procrastinate_jobs group by 1, 2")).all()
        for p in people:
            agreement = agreement_of(actor, p)
            if agreement.mismatches:      # what the person's jobs and runs did, to tell why
                with services.db.session() as s:
                    mine = s.execute(text(
                        "select j.id, j.status, j.attempts, j.scheduled_at, j.worker_id, "
                        "(select string_agg(e.type || '@' || to_char(e.at, 'HH24:MI:SS'), ' ' order by e.at) "
                        "from procrastinate_events e where e.job_id = j.id) from procrastinate_jobs j "
                        "where j.args->>'user' = :u order by j.id"), {"u": p["email"]}).all()
                    runs = s.execute(text(
                        "select r.id, r.trigger, r.status, to_char(r.started_at, 'HH24:MI:SS'), r.duration_ms, "
                        "(select string_agg(l.message, ' | ') from sync_log l where l.run_id = r.id "
                        "and l.level <> 'info') from sync_runs r join users u on u.id = r.user_id "
                        "where u.email = :u order by r.id"), {"u": p["email"]}).all()
                print(jobs, *mine, *runs[-40:], sep="\n")
            assert agreement.mismatches == [] and agreement.duplicates == [], (p["email"], agreement)
        assert due.pending(ctx) == []

        # every item created during the run exists exactly once on each side (nothing lost, nothing twice)
        def count(prefix: str) -> tuple[int, int]:
            zoom = sum(1 for p in people for m in world.zoom.user_meetings(p["zoom_user_id"])
                       if m.get("topic", "").startswith(prefix))
            cal = sum(1 for p in people for t in person.CalendarOps(actor, p).titles() if t.startswith(prefix))
            return zoom, cal
        created_zoom = kinds.get("new Zoom meeting", 0)
        created_cal = kinds.get("new calendar event marked for Zoom", 0)
        assert created_zoom and created_cal
        assert count("Ad-hoc ") == (created_zoom, created_zoom)
        assert count("Focus ") == (created_cal, created_cal)

        # every notification reached the web process and was answered 2xx (marked durably before that)
        sent = [d for s in (world.zoom, world.google, world.graph) for d in s.outbox.sent]
        assert len(sent) > EDITS / 2
        assert [d for d in sent if d.error or not (200 <= (d.status or 0) < 300)] == []
        assert serve.poll() is None
        from zoomcal.app import propagation
        print(f"\nscale-out: {EDITS} edits, {kills} workers killed, {len(sent)} notifications, settled "
              f"{settled - edits_done:.1f} s after the last edit; propagation {propagation.summary(ctx)}")
    finally:
        for proc in workers + [serve]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers + [serve]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await actor.aclose()
        await services.aclose()
        services.close()
