"""Microsoft 365 linked from the command line without a calendar id: the mailbox's default calendar."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from zoomcal.cli.main import app
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.server import BackgroundServer
from zoomcal.sandbox.world import SandboxWorld


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOMCAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ZOOMCAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("ZOOMCAL_VAULT_KEYS", raising=False)
    return tmp_path


def run(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_graph_without_a_calendar_id_links_and_syncs_the_default_calendar(env, monkeypatch):
    world = SandboxWorld()
    server = BackgroundServer(world).start()
    try:
        info = world.add_user("kim@example.com", "Kim", "Europe/Berlin")
        assert run("init").exit_code == 0
        assert run("user", "add", "kim@example.com").exit_code == 0
        monkeypatch.setenv("ZC_ZOOM_SECRET", world.zoom.client_secret)
        monkeypatch.setenv("ZC_MS_SECRET", world.graph.client_secret)
        monkeypatch.setenv("ZC_MS_REFRESH", info["graph_refresh_token"])
        r = run("account", "add", "zoom", "--user", "kim@example.com", "--client-id", world.zoom.client_id,
                "--client-secret-env", "ZC_ZOOM_SECRET", "--account-id", world.zoom.account_id,
                "--zoom-user", info["zoom_user_id"], "--api-base", f"{server.url}/zoom/v2",
                "--token-url", f"{server.url}/zoom/oauth/token")
        assert r.exit_code == 0, r.output
        r = run("account", "add", "graph", "--user", "kim@example.com", "--client-id", world.graph.client_id,
                "--client-secret-env", "ZC_MS_SECRET", "--refresh-token-env", "ZC_MS_REFRESH",
                "--api-base", f"{server.url}/graph/v1.0", "--token-url", f"{server.url}/graph/oauth2/v2.0/token")
        assert r.exit_code == 0, r.output
        asyncio.run(SandboxActor(world, base_url=server.url).zoom_create(
            info["zoom_user_id"], topic="Standup", type=2, start_time="2027-03-01T09:00:00Z", duration=15))
        (done,) = json.loads(run("sync", "--once", "--json").output)
        assert done["status"] == "ok" and done["writes"] == 1, done
        default = world.graph.events[world.graph.key("kim@example.com", "calendar")]
        assert [e["subject"] for e in default.values()] == ["Standup"]
    finally:
        server.stop()
