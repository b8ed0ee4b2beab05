"""The command line, as an admin uses it: set-up, accounts, sync against a served sandbox, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zoomcal.cli.main import app
from zoomcal.sandbox.server import BackgroundServer
from zoomcal.sandbox.world import SandboxWorld

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOMCAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ZOOMCAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("ZOOMCAL_VAULT_KEYS", raising=False)
    return tmp_path


def run(*args, input=None):
    result = CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)
    return result


def link_zoom(world, server, info, monkeypatch) -> None:
    """`account add zoom` for a sandbox user (server-to-server)."""
    monkeypatch.setenv("ZC_ZOOM_SECRET", world.zoom.client_secret)
    r = run("account", "add", "zoom", "--user", info["email"], "--client-id", world.zoom.client_id,
            "--client-secret-env", "ZC_ZOOM_SECRET", "--account-id", world.zoom.account_id,
            "--zoom-user", info["zoom_user_id"], "--api-base", f"{server.url}/zoom/v2",
            "--token-url", f"{server.url}/zoom/oauth/token")
    assert r.exit_code == 0, r.output


def test_help_lists_the_commands():
    out = run("--help").output
    for name in ("init", "db", "demo", "sync", "status", "log", "events", "user", "account", "mapping", "sandbox",
                 "serve"):
        assert name in out


def test_setup_link_sync_and_inspect_against_a_served_sandbox(env, monkeypatch):
    world = SandboxWorld()
    server = BackgroundServer(world).start()
    try:
        info = world.add_user("ada@example.com", "Ada L", "Europe/London")
        assert run("init").exit_code == 0
        assert (env / "data" / "vault.keys").exists()
        assert run("user", "add", "ada@example.com", "--name", "Ada").exit_code == 0
        assert run("user", "add", "ada@example.com").exit_code == 1          # no duplicates
        link_zoom(world, server, info, monkeypatch)
        monkeypatch.setenv("ZC_G_SECRET", world.google.client_secret)
        monkeypatch.setenv("ZC_G_REFRESH", info["google_refresh_token"])
        r = run("account", "add", "google", "--user", "ada@example.com", "--client-id", world.google.client_id,
                "--client-secret-env", "ZC_G_SECRET", "--refresh-token-env", "ZC_G_REFRESH",
                "--calendar-id", info["google_calendar_id"], "--api-base", f"{server.url}/google/calendar/v3",
                "--token-url", f"{server.url}/google/token")
        assert r.exit_code == 0, r.output
        accounts = json.loads(run("account", "list", "--json").output)
        assert [a["provider"] for a in accounts] == ["zoom", "google"]
        assert world.google.client_secret not in run("account", "list", "--json").output
        world.zoom.meetings.clear()
        import asyncio

        from zoomcal.sandbox.actor import SandboxActor

        actor = SandboxActor(world, base_url=server.url)
        asyncio.run(actor.zoom_create(info["zoom_user_id"], topic="Kickoff", type=2,
                                      start_time="2026-06-01T09:00:00Z", duration=30))
        dry = run("sync", "--dry-run")
        said = " ".join(dry.output.split())
        assert dry.exit_code == 0 and "new on Zoom -> create on Google (create Google)" in said
        assert "'Kickoff'" in said and "planned: 1 to create on Google" in said
        (planned,) = json.loads(run("sync", "--dry-run", "--json").output)
        assert planned["counts"]["create_b"] == 1 and planned["writes"] == 0
        assert run("sync", "--json").exit_code == 1                      # one round only
        assert not world.google.calendars[info["google_calendar_id"]].events
        (done,) = json.loads(run("sync", "--once", "--json").output)
        assert done["status"] == "ok" and done["writes"] == 1
        events = json.loads(run("events", "--user", "ada@example.com", "--json").output)
        assert [e["title"] for e in events] == ["Kickoff"] and events[0]["is_meeting"]
        status = json.loads(run("status", "--json").output)
        assert status["users"][0]["status"] == "ok" and status["users"][0]["review_queue"] == 0
        assert status["propagation"] == {}
        log = run("log", "--json").output.splitlines()
        assert any("create" in json.loads(line)["action"] for line in log)
        assert world.zoom.client_secret not in run("log").output
        assert "'Kickoff'" in run("log").output                     # events are named by title, not only by id
        assert any(json.loads(line)["title"] == "Kickoff" for line in run("log", "--json").output.splitlines())
        world.google_faults.add("503", "POST", "/events", times=1000)         # the calendar is down for now
        booked = run("book", "--user", "ada@example.com", "--start", "2027-01-05T09:00:00Z", "--end",
                     "2027-01-05T10:00:00Z", "--title", "Review", "--json")
        assert booked.exit_code == 4 and "not yet written everywhere" in booked.output, booked.output
        assert json.loads(booked.output[booked.output.index("{"):booked.output.rindex("}") + 1])["booked"]["event_id"]
        world.google_faults.clear()
        assert run("sync", "--once").exit_code == 0
        assert "Review" in {e["summary"] for e in world.google.calendars[info["google_calendar_id"]].events.values()}
        assert run("vault", "rotate").exit_code == 0
    finally:
        server.stop()


@pytest.fixture
def served():
    world = SandboxWorld()
    server = BackgroundServer(world).start()
    yield world, server
    server.stop()


def test_graph_without_a_calendar_id_links_and_syncs_the_default_calendar(env, served, monkeypatch):
    import asyncio

    from zoomcal.sandbox.actor import SandboxActor

    world, server = served
    info = world.add_user("kim@example.com", "Kim", "Europe/Berlin")
    assert run("init").exit_code == 0 and run("user", "add", "kim@example.com").exit_code == 0
    link_zoom(world, server, info, monkeypatch)
    monkeypatch.setenv("ZC_MS_SECRET", world.graph.client_secret)
    monkeypatch.setenv("ZC_MS_REFRESH", info["graph_refresh_token"])
    r = run("account", "add", "graph", "--user", "kim@example.com", "--client-id", world.graph.client_id,
            "--client-secret-env", "ZC_MS_SECRET", "--refresh-token-env", "ZC_MS_REFRESH",
            "--api-base", f"{server.url}/graph/v1.0", "--token-url", f"{server.url}/graph/oauth2/v2.0/token")
    assert r.exit_code == 0, r.output
    asyncio.run(SandboxActor(world, base_url=server.url).zoom_create(
        info["zoom_user_id"], topic="Standup", type=2, start_time="2027-03-01T09:00:00Z", duration=15))
    (done,) = json.loads(run("sync", "--once", "--json").output)
    assert done["status"] == "ok" and done["writes"] == 1, done
    default = world.graph.events[world.graph.default_key("kim@example.com")]
    assert [e["subject"] for e in default.values()] == ["Standup"]

def test_mapping_check(env, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('version = 1\n[conflict]\npolicy = "zoom"\n')
    assert run("mapping", "check", str(good)).exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[conflict]\npolicy = "loudest"\n[zoom]\ntopic_max = 999\n')
    result = run("mapping", "check", str(bad))
    assert result.exit_code == 1
    assert "conflict.policy" in result.output and "zoom.topic_max" in result.output
    checked = json.loads(run("mapping", "check", str(good), "--json").output)
    assert checked["ok"] and checked["rules"]["conflict"]["policy"] == "zoom"
    (tmp_path / "v9.toml").write_text("version = 9\n")
    assert "unsupported rules version" in run("mapping", "check", str(tmp_path / "v9.toml")).output
    (tmp_path / "broken.toml").write_text("version = \n")
    assert "not valid TOML" in run("mapping", "check", str(tmp_path / "broken.toml")).output


def test_demo_once_json_agrees_with_no_duplicates(env):
    proc = subprocess.run([sys.executable, "-m", "zoomcal", "demo", "--once", "--json"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "ZOOMCAL_DATA_DIR": str(env / "demo")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["mismatches"] == 0 and summary["duplicates"] == 0
    assert summary["users"] == 4 and summary["zoom_meetings"] > 0 and summary["calendar_events"] > 0
    assert summary["review_queue"] >= 1 and summary["resync_writes"] == 0
    assert set(summary["faults_fired"]) >= {"500", "503", "google_429", "google_lost_response", "graph_lost_response"}
    assert summary["calendars"]["grace@example.com"] == "graph"        # a Microsoft 365 user among them
    assert summary["calendars"]["katherine@example.com"] == "ews"      # and one on Exchange
    assert summary["presence"] == {"ada@example.com": "In_Calendar_Event", "grace@example.com": "Out_of_Office",
                                   "alan@example.com": "Do_Not_Disturb", "katherine@example.com": "Available"}
    assert summary["presence_writes"] == 3
    # the bookings with guests: Google invited the Google organizer's two, once; zoomcal e-mailed a REQUEST to the
    # Exchange organizer's guest, once
    assert summary["invitations"] == {"sent": 3, "by_email": {"REQUEST": 1}, "by_google": {"invitation": 2}}
    assert summary["polls_created"] == 1          # the poll attached while booking, on the meeting
    # the directory: Zoom's users and the first person's Google and Microsoft 365 contacts, live status for some
    directory = summary["contacts"]
    assert directory["sources"] == 3 and directory["people"] >= 4 and directory["with_status"] >= 4
    assert directory["unmapped"] >= 1 and len(directory["shown"]) == 5


def test_sandbox_first_line_is_json(env, monkeypatch):
    """The first line says everything a person needs to link each provider by hand: the lines it gives link
    Zoom, Zoom's calendar, Google, Microsoft 365 and Exchange, and a sync over them runs clean."""
    import shlex

    from zoomcal.sandbox.server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zoomcal", "sandbox", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["zoom_api_base"] == f"http://127.0.0.1:{port}/zoom/v2"
        assert first["google_api_base"].endswith("/google/calendar/v3")
        assert first["zoom_token_url"].endswith("/zoom/oauth/token") and len(first["users"]) == 4
        import time

        import httpx

        for _ in range(100):
            try:
                token = httpx.post(first["zoom_token_url"], auth=(first["zoom_client_id"], first["zoom_client_secret"]),
                                   data={"grant_type": "account_credentials", "account_id": first["zoom_account_id"]})
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert token.status_code == 200
        assert first["graph_login_base"] == f"http://127.0.0.1:{port}/graph"
        ada = first["users"][0]
        assert run("init").exit_code == 0 and run("user", "add", ada["email"]).exit_code == 0
        assert set(ada["link"]) == {"zoom", "zoom-calendar", "google", "graph", "ews"}
        for provider, line in ada["link"].items():
            words = shlex.split(line)
            while "=" in words[0]:
                name, _, value = words.pop(0).partition("=")
                monkeypatch.setenv(name, value)
            assert words[:3] == ["zoomcal", "account", "add"]
            result = run(*words[1:])
            assert result.exit_code == 0, (provider, result.output)
        linked = json.loads(run("account", "list", "--json").output)
        assert sorted(a["provider"] for a in linked) == sorted(ada["link"])
        result = run("sync", "--once")
        assert result.exit_code == 0, result.output
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_availability_slots_booking_and_presence_commands(env, tmp_path):
    from datetime import timedelta

    from zoomcal.domain.timeutil import fmt_instant, now_utc

    assert run("init").exit_code == 0
    assert run("user", "add", "ana@example.com").exit_code == 0
    assert run("user", "add", "bo@example.com").exit_code == 0
    shown = json.loads(run("settings", "--user", "ana@example.com", "--tz", "Europe/Berlin", "--hours",
                           "mon-sun 00:00-23:59", "--buffer-after", "10", "--json").output)
    table = " ".join(run("settings", "--user", "ana@example.com").output.split())
    assert "timezone │ Europe/Berlin" in table and "buffer after min │ 10" in table
    assert shown["timezone"] == "Europe/Berlin" and shown["buffer_after_min"] == 10
    assert run("settings", "--user", "ana@example.com", "--tz", "Mars/Base").exit_code == 1
    assert run("settings", "--user", "bo@example.com", "--hours", "mon-sun 00:00-23:59").exit_code == 0
    day = (now_utc() + timedelta(days=3)).replace(hour=9, minute=0, second=0)
    start, end = fmt_instant(day), fmt_instant(day + timedelta(hours=1))
    booked = run("book", "--user", "ana@example.com", "--start", start, "--end", end, "--title", "Design",
                 "--no-sync")
    assert booked.exit_code == 0, booked.output
    clash = run("book", "--user", "ana@example.com", "--start", fmt_instant(day + timedelta(minutes=30)),
                "--end", fmt_instant(day + timedelta(hours=2)), "--title", "Other", "--no-sync")
    assert clash.exit_code == 3 and "Design" in clash.output
    inside_buffer = run("book", "--user", "ana@example.com", "--start", fmt_instant(day + timedelta(minutes=65)),
                        "--end", fmt_instant(day + timedelta(minutes=90)), "--title", "Too close", "--no-sync",
                        "--json")
    assert inside_buffer.exit_code == 3 and "Design" in inside_buffer.output    # Ana's 10 minutes after it
    busy = json.loads(run("availability", "--user", "ana@example.com", "--from", fmt_instant(day - timedelta(hours=1)),
                          "--to", fmt_instant(day + timedelta(hours=3)), "--json").output)
    assert [(b["title"], b["kind"]) for b in busy["busy"]] == [("Design", "busy")]
    assert busy["busy"][0]["start"] == query_local(day, "Europe/Berlin")     # shown in the user's own zone
    found = json.loads(run("slots", "--users", "ana@example.com,bo@example.com", "--duration", "1h", "--from",
                           fmt_instant(day), "--to", fmt_instant(day + timedelta(hours=3)), "--json").output)
    # Design ends at +1h, plus Ana's 10 minute buffer: the first hour-long slot starts at +1h15 (15 min steps)
    assert found["slots"][0]["start"] == query_local(day + timedelta(minutes=75), "Europe/Berlin")
    assert "no overlapping events" in run("conflicts", "--user", "ana@example.com").output
    explained = json.loads(run("presence", "explain", "--user", "ana@example.com", "--at",
                               fmt_instant(day + timedelta(minutes=5)), "--json").output)
    assert explained["state"] == "busy" and explained["rule"] == "in a calendar event"
    assert explained["write"] == "In_Calendar_Event" and explained["written"] is False
    rules = tmp_path / "presence.toml"
    rules.write_text('version = 1\n[[rule]]\nname = "all busy"\nwhen = { kind = ["busy", "free"] }\nstatus = "Busy"\n')
    dry = json.loads(run("presence", "dry-run", "--rules", str(rules), "--json").output)
    assert {r["user"] for r in dry} == {"ana@example.com", "bo@example.com"}
    assert all(r["proposed"]["rule"] == "all busy" for r in dry)
    assert run("presence", "rules", str(rules), "--user", "bo@example.com").exit_code == 0
    explained = json.loads(run("presence", "explain", "--user", "bo@example.com", "--json").output)
    assert explained["rule"] == "all busy"                     # the user's own rules now apply to Bo
    explained = json.loads(run("presence", "explain", "--user", "ana@example.com", "--at",
                               fmt_instant(day + timedelta(minutes=5)), "--json").output)
    assert explained["rule"] == "in a calendar event"          # ...and not to Ana
    (tmp_path / "bad.toml").write_text('version = 1\n[[rule]]\nname = "x"\nstatus = "Presenting"\n')
    assert run("presence", "rules", str(tmp_path / "bad.toml")).exit_code == 1


def query_local(value, tz):
    from zoomcal.availability.query import fmt_local

    return fmt_local(int(value.timestamp()), tz)


def test_ics_feed_account_from_the_command_line(env, tmp_path):
    from zoomcal.domain.content import make_content
    from zoomcal.domain.timeutil import fmt_instant, now_utc
    from zoomcal.mapping.ical import content_to_calendar

    start = now_utc().replace(microsecond=0) + __import__("datetime").timedelta(days=1)
    feed = tmp_path / "team.ics"
    feed.write_bytes(content_to_calendar({"x@feed": make_content(
        title="Team offsite", start=fmt_instant(start), end=fmt_instant(start.replace(hour=(start.hour + 1) % 24)
                                                                          if start.hour < 23 else start),
        timezone="Europe/Rome")}))
    assert run("init").exit_code == 0
    assert run("user", "add", "ics@example.com").exit_code == 0
    assert run("account", "add", "ics", "--user", "ics@example.com").exit_code == 1        # --url is required
    assert run("account", "add", "ics", "--user", "ics@example.com", "--url", "http://127.0.0.1/x.ics").exit_code == 1
    assert run("account", "add", "ics", "--user", "ics@example.com", "--url", str(feed)).exit_code == 0
    synced = run("sync", "--once")
    assert synced.exit_code == 0, synced.output
    events = json.loads(run("events", "--user", "ics@example.com", "--json").output)
    assert [e["title"] for e in events] == ["Team offsite"]


def test_sync_with_presence_follows_the_calendar(env, monkeypatch):
    from datetime import timedelta

    from zoomcal.domain.timeutil import fmt_instant, now_utc
    from zoomcal.sandbox.actor import SandboxActor

    world = SandboxWorld()
    server = BackgroundServer(world).start()
    try:
        info = world.add_user("pia@example.com", "Pia", "UTC")
        run("init")
        run("user", "add", "pia@example.com")
        monkeypatch.setenv("ZC_Z", world.zoom.client_secret)
        monkeypatch.setenv("ZC_G", world.google.client_secret)
        monkeypatch.setenv("ZC_R", info["google_refresh_token"])
        run("account", "add", "zoom", "--user", "pia@example.com", "--client-id", world.zoom.client_id,
            "--client-secret-env", "ZC_Z", "--account-id", world.zoom.account_id, "--zoom-user", info["zoom_user_id"],
            "--api-base", f"{server.url}/zoom/v2", "--token-url", f"{server.url}/zoom/oauth/token")
        run("account", "add", "google", "--user", "pia@example.com", "--client-id", world.google.client_id,
            "--client-secret-env", "ZC_G", "--refresh-token-env", "ZC_R", "--calendar-id", info["google_calendar_id"],
            "--api-base", f"{server.url}/google/calendar/v3", "--token-url", f"{server.url}/google/token")
        import asyncio

        now = now_utc()
        asyncio.run(SandboxActor(world, base_url=server.url).google_insert(
            info["google_calendar_id"], summary="Vacation", eventType="outOfOffice",
            start={"dateTime": fmt_instant(now - timedelta(hours=1))},
            end={"dateTime": fmt_instant(now + timedelta(hours=3))}))
        result = run("sync", "--once", "--presence")
        assert result.exit_code == 0, result.output
        assert world.zoom.users[info["zoom_user_id"]]["_presence"] == "Out_of_Office"
        assert "out of office" in result.output
    finally:
        server.stop()


def test_only_init_and_db_upgrade_migrate_every_other_command_stops_when_behind(env):
    from zoomcal.store.db import Database, head_revision, schema_state

    data = env / "data"
    missing = run("user", "list")
    assert missing.exit_code == 1 and "no zoomcal schema" in missing.output and "zoomcal init" in missing.output
    url = f"sqlite:///{data / 'zoomcal.db'}"
    db = Database(url)
    db.upgrade("0003")                                   # a database an older release left behind
    assert run("init", "--help").exit_code == 0
    for args in (("user", "list"), ("sync", "--once"), ("status",), ("account", "list")):
        behind = run(*args)
        assert behind.exit_code == 1 and "zoomcal db upgrade" in behind.output, (args, behind.output)
    assert schema_state(db.engine)[1] == "0003"          # none of them migrated on the side
    assert json.loads(run("db", "status", "--json").output)["state"] == "behind"
    upgraded = run("db", "upgrade")
    assert upgraded.exit_code == 0 and f"database at {head_revision()} (was 0003)" in upgraded.output
    assert run("db", "upgrade").output.strip().endswith("(already there)")
    assert run("init").exit_code == 0 and run("init").exit_code == 0      # init is safe to repeat
    assert run("user", "list").exit_code == 0
    with db.engine.begin() as conn:
        conn.exec_driver_sql("update alembic_version set version_num = '9999'")
    ahead = run("user", "list")
    assert ahead.exit_code == 1 and "newer than this zoomcal" in ahead.output
    db.dispose()


def test_command_line_hints_name_the_flag_to_fix(env, tmp_path):
    assert run("init").exit_code == 0 and run("user", "add", "ada@example.com").exit_code == 0
    wrong = run("account", "add", "google", "--user", "ada@example.com", "--client-id", "x", "--mailbox", "m")
    assert wrong.exit_code == 1 and "Google does not take mailbox" in wrong.output and "--mailbox" in wrong.output
    nobody = run("account", "add", "ics", "--user", "bob@example.com", "--url", str(tmp_path))
    assert nobody.exit_code == 1 and "no user bob@example.com" in nobody.output and "zoomcal user add" in nobody.output
    unknown = run("account", "add", "gmail", "--user", "ada@example.com")
    assert unknown.exit_code == 1 and "google" in unknown.output and "zoom-calendar" in unknown.output
    providers = json.loads(run("account", "providers", "--json").output)
    assert {p["key"] for p in providers} >= {"zoom", "google", "graph", "ews", "caldav", "ics", "zoom-calendar"}
    other = run("--tenant", "globex", "user", "list")
    assert other.exit_code == 1 and "zoomcal tenant add" in other.output
    assert run("tenant", "add", "globex").exit_code == 0
    assert json.loads(run("--tenant", "globex", "user", "list", "--json").output) == []
    assert [u["email"] for u in json.loads(run("user", "list", "--json").output)] == ["ada@example.com"]


def test_the_data_is_the_owners_only_and_a_lost_key_is_never_silently_replaced(env):
    ics = env / "team.ics"
    ics.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n"
                   "DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    data = env / "data"
    assert run("init").exit_code == 0
    assert {p.name: p.stat().st_mode & 0o777 for p in (data, data / "zoomcal.db", data / "vault.keys")} == {
        "data": 0o700, "zoomcal.db": 0o600, "vault.keys": 0o600}
    assert run("user", "add", "ada@example.com").exit_code == 0
    linked = run("account", "add", "ics", "--user", "ada@example.com", "--url", str(ics))
    assert linked.exit_code == 0, linked.output
    (data / "vault.keys").unlink()
    again = run("init")
    assert again.exit_code != 0 and "vault key file" in again.output and "restore" in again.output
    assert not (data / "vault.keys").exists()
    assert run("account", "list").exit_code != 0          # and nothing else pretends all is well


@pytest.mark.parametrize("url, says", [
    ("mysql://someone@localhost/db", "SQLite or PostgreSQL, not 'mysql'"),
    ("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "cannot reach the database"),
    ("not a url at all", "cannot read the database URL"),
])
def test_a_database_url_that_cannot_be_used_is_one_line(env, monkeypatch, url, says):
    monkeypatch.setenv("ZOOMCAL_DATABASE_URL", url)
    for command in (["init"], ["user", "list"]):
        result = run(*command)
        assert result.exit_code == 1 and says in " ".join(result.output.split())
        assert "Traceback" not in result.output and len(result.output.splitlines()) <= 4


def test_version():
    from zoomcal import __version__

    assert run("--version").output.strip() == f"zoomcal {__version__}"


def test_a_refused_window_names_the_commands_own_flag(env):
    assert run("init").exit_code == 0 and run("user", "add", "a@example.com").exit_code == 0
    for command in (["slots", "--users", "a@example.com", "--duration", "30m"],
                    ["availability", "--user", "a@example.com"]):
        result = run(*command, "--from", "2026-12-10T18:00", "--to", "2026-12-10T08:00")
        assert result.exit_code == 1 and "check --to" in result.output and "--end" not in result.output


def test_every_option_says_what_it_does():
    import typer.main

    def commands(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    missing = [(" ".join(path), opt.opts[0]) for path, command in commands(typer.main.get_command(app))
               for opt in command.params if getattr(opt, "help", None) in (None, "") and opt.opts[0].startswith("--")]
    assert missing == []


def test_the_live_demo_prints_a_line_per_round_when_its_output_is_not_a_terminal(env):
    proc = subprocess.run([sys.executable, "-m", "zoomcal", "demo", "--rounds", "2", "--interval", "0.2"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ZOOMCAL_DATA_DIR": str(env / "live")})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("round ")]
    assert proc.returncode == 0 and len(lines) == 2, proc.stdout + proc.stderr
    assert "4/4 people in sync, 0 duplicates" in lines[0]


@pytest.mark.parametrize("args, says", [
    (["slots", "--users", "a@example.com", "--duration", "30m", "--step", "0"], "must be positive"),
    (["slots", "--users", "a@example.com", "--duration", "0m"], "must be positive"),
    (["settings", "--user", "a@example.com", "--buffer-before", "-10"], "0 to 1440 minutes"),
    (["events", "--user", "nobody@example.com"], "no user nobody@example.com"),
    (["availability", "--user", "nobody@example.com"], "no user nobody@example.com"),
])
def test_nonsense_input_is_refused_with_a_reason(env, args, says):
    assert run("init").exit_code == 0 and run("user", "add", "a@example.com").exit_code == 0
    window = ["--from", "2026-12-10T08:00", "--to", "2026-12-10T18:00"] if args[0] in ("slots", "availability") else []
    result = run(*args, *window)
    assert result.exit_code == 1 and says in " ".join(result.output.split()), result.output


def test_the_sandbox_on_a_busy_port_is_one_line_and_no_json(env):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "zoomcal", "sandbox", "--port", str(port)], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "ZOOMCAL_DATA_DIR": str(env / "sb")})
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"cannot serve the sandboxes on 127.0.0.1:{port}" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_contacts_from_the_command_line(env, monkeypatch, radicale):
    """An address book linked by `account add carddav`, then read, searched and explained by `zoomcal contacts`."""
    from test_contacts import address_book, put_card, vcard

    monkeypatch.setenv("ZOOMCAL_ALLOW_PRIVATE_URLS", "true")
    assert run("init").exit_code == 0
    assert run("user", "add", "dee@example.com", "--name", "Dee").exit_code == 0
    book = address_book(radicale, "dee")
    put_card(book, "dee", "eve", vcard("u-eve", "Eve Example", "Eve@Example.org", "eve@home.example"))
    put_card(book, "dee", "nobody", vcard("u-nobody", "No Address"))
    monkeypatch.setenv("ZC_DAV_PW", "x")
    linked = run("account", "add", "carddav", "--user", "dee@example.com", "--url", book, "--username", "dee",
                 "--password-env", "ZC_DAV_PW")
    assert linked.exit_code == 0 and "contact source" in linked.output, linked.output
    synced = run("contacts", "sync", "--json")
    assert synced.exit_code == 0, synced.output
    report = json.loads(synced.output)
    assert report["people"] == 2 and report["problems"] == 1            # Eve, and Dee the user; one card unmapped
    found = json.loads(run("contacts", "search", "eve@h", "--json").output)
    assert [p["email"] for p in found] == ["eve@example.org"]
    explained = run("contacts", "explain", "EVE@home.example")
    assert explained.exit_code == 0 and "Eve Example" in explained.output and "carddav" in explained.output
    assert run("contacts", "explain", "not an address").exit_code != 0
    scopes = json.loads(run("contacts", "scopes", "--json").output)
    assert [(r["provider"], r["granted"], r["note"]) for r in scopes] == [
        ("carddav", None, "signs in with a password: no scopes")]
