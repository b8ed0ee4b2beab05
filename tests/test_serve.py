"""`zoomcal serve`: health, readiness, metrics, the live feed over server-sent events, propagation percentiles, and
the feed's items written by runs, account checks and relinks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from conftest import make_context
from zoomcal.app import accounts, due, feed, propagation, users
from zoomcal.app import sync as app_sync
from zoomcal.app.context import Services
from zoomcal.auth.vault import Vault, new_key_spec
from zoomcal.cli.main import app as cli
from zoomcal.config import Settings
from zoomcal.domain.timeutil import now_utc
from zoomcal.store.db import Database
from zoomcal.web.app import make_app

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def ctx(tmp_path):
    context = make_context(None, tmp_path)
    yield context
    context.services.close()


@pytest.fixture
def any_ctx(any_db, tmp_path):
    """A context on SQLite or PostgreSQL (a store every thread and process reaches)."""
    context = make_context(None, tmp_path, database_url=any_db.url)
    yield context
    context.services.close()


def client(services: Services, host: str = "127.0.0.1", **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(make_app(services, **kwargs)), base_url=f"http://{host}")


class Served:
    """The app on a real loopback socket (a stream needs a server that sends as it goes)."""

    def __init__(self, services: Services, **kwargs):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(make_app(services, **kwargs), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()


async def test_health_needs_no_database_and_readiness_does(ctx, tmp_path):
    async with client(ctx.services) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}

    behind_db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    behind_db.upgrade("0003")                            # what an older release left
    unreachable = Database("postgresql+psycopg://zoomcal@127.0.0.1:1/none?connect_timeout=2")
    for db, reason in ((behind_db, "schema behind"), (unreachable, "database unreachable")):
        services = Services(Settings(data_dir=tmp_path), db, Vault.from_spec(new_key_spec("t")))
        async with client(services) as http:
            assert (await http.get("/healthz")).status_code == 200
            answer = await http.get("/readyz")
            assert answer.status_code == 503 and answer.json()["reason"].startswith(reason), answer.json()
        db.dispose()


async def test_metrics_name_every_metric_and_read_the_due_queue_from_the_store(any_ctx):
    users.add(any_ctx, "ada@example.com", "Ada")
    users.add(any_ctx, "bob@example.com", "Bob")
    async with client(any_ctx.services) as http:
        text = (await http.get("/metrics")).text
        assert "zoomcal_sync_due 0.0" in text
        for name in ("zoomcal_api_calls_total", "zoomcal_api_rate_limited_total", "zoomcal_sync_duration_seconds",
                     "zoomcal_token_refresh_failures_total", "zoomcal_propagation_seconds",
                     "zoomcal_presence_writes_total", "zoomcal_sync_due_oldest_seconds", "zoomcal_webhooks_total"):
            assert f"# TYPE {name.removesuffix('_total')}" in text, name
        due.mark(any_ctx, ["ada@example.com", "bob@example.com"], "test")
        due.mark(any_ctx, "ada@example.com", "again")      # marks coalesce: still two people
        answer = await http.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    assert "zoomcal_sync_due 2.0" in answer.text
    assert REGISTRY.get_sample_value("zoomcal_sync_due_oldest_seconds") >= 0


async def _events(lines, count: int) -> list[dict]:
    """The next `count` events of a stream's lines (comments and heartbeats skipped)."""
    found, current = [], {}
    async for line in lines:
        if line == "":
            if "data" in current:
                found.append({"id": int(current["id"]), "event": current["event"], **json.loads(current["data"])})
                if len(found) == count:
                    return found
            current = {}
        elif not line.startswith(":") and ":" in line:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return found


async def test_the_event_stream_sends_lines_written_after_it_started_and_resumes_without_repeats(any_ctx):
    users.add(any_ctx, "ada@example.com", "Ada")
    app_sync.note(any_ctx, "note", "written before anyone listened", email="ada@example.com")
    with Served(any_ctx.services, poll=0.05) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            with anyio.fail_after(30):
                async with http.stream("GET", "/events") as stream:
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    lines = stream.aiter_lines()
                    assert (await lines.__anext__()).startswith("retry:")   # the stream is open
                    app_sync.note(any_ctx, "note", "first after start", email="ada@example.com")
                    (first,) = await _events(lines, 1)
                assert first["kind"] == "log" and first["data"]["message"] == "first after start"
                assert first["data"]["user"] == "ada@example.com" and first["event"] == "log"
                app_sync.note(any_ctx, "note", "second", level="warning")
                app_sync.note(any_ctx, "note", "third", level="error")
                async with http.stream("GET", "/events", headers={"Last-Event-ID": str(first["id"])}) as stream:
                    resumed = await _events(stream.aiter_lines(), 2)
    assert [e["data"]["message"] for e in resumed] == ["second", "third"]
    assert [e["data"]["level"] for e in resumed] == ["warning", "error"]
    assert resumed[0]["id"] > first["id"] and resumed[1]["id"] > resumed[0]["id"]


async def test_the_stream_is_refused_without_the_token_or_off_loopback(ctx):
    async with client(ctx.services, host="zoomcal.example.com") as http:
        refused = await http.get("/events")
        assert refused.status_code == 403 and "loopback" in refused.json()["error"]
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
    ctx.services.settings.api_token = "s3cret-token"
    async with client(ctx.services) as http:          # a token configured: even loopback must present it
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            answer = await http.get("/events", headers=headers)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/events?tenant=nobody",
                               headers={"Authorization": "Bearer s3cret-token"})).status_code == 404
    app_sync.note(ctx, "note", "for the token holder")
    with Served(ctx.services, poll=0.05) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            with anyio.fail_after(30):
                async with http.stream("GET", "/events?after=0",
                                       headers={"Authorization": "Bearer s3cret-token"}) as stream:
                    assert stream.status_code == 200
                    (item,) = await _events(stream.aiter_lines(), 1)
    assert item["data"]["message"] == "for the token holder"


async def test_a_quiet_stream_sends_heartbeats(ctx):
    with Served(ctx.services, poll=0.02, heartbeat=0.05) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            with anyio.fail_after(30):
                async with http.stream("GET", "/events") as stream:
                    lines = stream.aiter_lines()
                    seen = [await lines.__anext__() for _ in range(6)]
    assert ": keep-alive" in seen


async def test_propagation_percentiles_over_known_samples(ctx):
    now = now_utc()
    before = REGISTRY.get_sample_value("zoomcal_propagation_seconds_count",
                                       {"kind": "sync", "provider": "google"}) or 0
    for ms in range(1, 101):                             # 1 ms .. 100 ms, recorded in a shuffled order
        ms = (ms * 37) % 100 + 1
        assert propagation.record(ctx, "sync", "google", now - timedelta(milliseconds=ms), now) == ms
    propagation.record(ctx, "presence", "zoom", now - timedelta(seconds=3), now)
    assert propagation.record(ctx, "sync", "google", now, now - timedelta(seconds=1)) is None   # clocks disagree
    assert propagation.record(ctx, "sync", "google", None, now) is None
    propagation.record(ctx, "sync", "google", now - timedelta(days=2, seconds=9), now - timedelta(days=2))
    propagation.record(ctx, "sync", "google", now - timedelta(days=8, seconds=9), now - timedelta(days=8))
    summary = propagation.summary(ctx)
    assert summary["sync"]["google"] == {"count": 100, "p50": 50, "p95": 95, "p99": 99}
    assert summary["presence"]["zoom"] == {"count": 1, "p50": 3000, "p95": 3000, "p99": 3000}
    assert propagation.summary(ctx, since=timedelta(days=3))["sync"]["google"]["count"] == 101
    assert REGISTRY.get_sample_value("zoomcal_propagation_seconds_count",
                                     {"kind": "sync", "provider": "google"}) == before + 102
    assert propagation.prune(ctx) == 1                   # only the sample older than a week
    assert propagation.summary(ctx, since=timedelta(days=30))["sync"]["google"]["count"] == 101
    overview = app_sync.overview(ctx).as_dict()
    assert overview["propagation"]["sync"]["google"]["p95"] == 95 and overview["users"] == []


async def test_runs_account_health_and_api_calls_reach_the_feed_and_the_metrics(world, tmp_path):
    from test_app import google_link, zoom_user_link

    ctx = make_context(world, tmp_path)
    try:
        info = world.add_user("ada@example.com", "Ada", "UTC")
        users.add(ctx, "ada@example.com", "Ada")
        calls = REGISTRY.get_sample_value("zoomcal_api_calls_total", {"provider": "google", "status": "200"}) or 0
        refused = REGISTRY.get_sample_value("zoomcal_token_refresh_failures_total",
                                            {"provider": "google", "reason": "refused"}) or 0
        await accounts.link(ctx, "ada@example.com", "zoom", *zoom_user_link(world, info))
        google = await accounts.link(ctx, "ada@example.com", "google", *google_link(world, info))
        start = feed.latest_id(ctx)
        assert [r.status for r in await app_sync.run(ctx)] == ["ok"]
        assert REGISTRY.get_sample_value("zoomcal_api_calls_total",
                                         {"provider": "google", "status": "200"}) > calls
        for token in [t for t, s in world.google.tokens.refresh.items() if s == info["email"]]:
            world.google.tokens.revoke(token)
        assert [r.status for r in await app_sync.run(ctx)] == ["failed"]
        assert REGISTRY.get_sample_value("zoomcal_token_refresh_failures_total",
                                         {"provider": "google", "reason": "refused"}) == refused + 1
        await accounts.health(ctx)       # the run marked the pair's accounts; Zoom's check passes again
        fresh = world.google.tokens.grant_refresh(info["email"])
        await accounts.relink(ctx, google.id, {}, {"refresh_token": fresh})
        items = feed.recent(ctx, start)
        runs = [i.data for i in items if i.kind == "run"]
        assert [(r["user"], r["status"]) for r in runs] == [("ada@example.com", "ok"), ("ada@example.com", "failed")]
        assert all(r["duration_ms"] >= 0 and "writes" in r for r in runs)
        health = [(i.data["account_id"], i.data["status"]) for i in items if i.kind == "account"]
        zoom = next(a.id for a in accounts.list_accounts(ctx) if a.id != google.id)
        assert health == [(zoom, "needs_reauth"), (google.id, "needs_reauth"), (zoom, "ok"), (google.id, "ok")]
        assert [i.id for i in items] == sorted(i.id for i in items)
        assert feed.recent(ctx, items[-1].id) == []
        assert all(i.data["user"] == "ada@example.com" for i in feed.recent(ctx, start, user="ada@example.com"))
    finally:
        await ctx.services.aclose()
        ctx.services.close()


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOMCAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ZOOMCAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("ZOOMCAL_VAULT_KEYS", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], result.output
    assert "Traceback" not in result.output


def test_log_follow_prints_an_entry_written_later(tmp_path):
    """`zoomcal log --follow` in its own process: a line another process writes afterwards shows up."""
    env = {"ZOOMCAL_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    zoomcal = [sys.executable, "-m", "zoomcal"]
    subprocess.run([*zoomcal, "init"], env=env, check=True, capture_output=True, timeout=120)
    subprocess.run([*zoomcal, "user", "add", "ada@example.com"], env=env, check=True, capture_output=True,
                   timeout=120)
    settings = Settings(data_dir=tmp_path / "data")
    services = Services(settings, Database(settings.resolved_database_url()),
                        Vault.from_file(tmp_path / "data" / "vault.keys"))
    writer = services.context()
    app_sync.note(writer, "note", "written before", email="ada@example.com")
    follower = subprocess.Popen([*zoomcal, "log", "--follow", "--json"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(_readline(follower))         # the recent entries are printed: it now follows
        app_sync.note(writer, "note", "written later", email="ada@example.com")
        later = json.loads(_readline(follower))
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        services.close()
    assert first["message"] == "written before"
    assert later["message"] == "written later" and later["user"] == "ada@example.com" and later["id"] > first["id"]


def _readline(proc: subprocess.Popen, guard: float = 60) -> str:
    import select

    ready, _, _ = select.select([proc.stdout], [], [], guard)    # a guard against a hang, not a measure
    assert ready, proc.stderr.read() if proc.poll() is not None else "no line"
    return proc.stdout.readline()
