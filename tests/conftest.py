"""Shared fixtures: databases (SQLite and real PostgreSQL), sandbox worlds, wired contexts."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import argon2
import pytest
import sqlalchemy as sa

from zoomcal.app import sync as app_sync
from zoomcal.app import users
from zoomcal.app.context import CLI, Actor, AppContext, open_services
from zoomcal.auth.vault import new_key_spec
from zoomcal.config import Settings
from zoomcal.sandbox.world import SandboxWorld
from zoomcal.store.db import Database
from zoomcal.store.models import Account, Calendar, Tenant, User

PG_URL = os.environ.get("ZOOMCAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SANDBOX = "http://sandbox"

pytest_plugins = ["browsers"]  # real-browser sessions: tests/browsers.py


@pytest.fixture
def anyio_backend():
    """zoomcal runs on asyncio (uvicorn, procrastinate, threads handed work with asyncio.to_thread): async tests do
    too, whatever other event loops happen to be installed (Selenium brings trio)."""
    return "asyncio"


def pytest_collection_modifyitems(items):
    """`-m pg` selects every test that reaches PostgreSQL (`-m "not pg"` runs without a server)."""
    for item in items:
        spec = getattr(item, "callspec", None)
        if "pg_schema_url" in item.fixturenames or (spec is not None and "postgresql" in spec.params.values()):
            item.add_marker(pytest.mark.pg)


def _pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_schema_url():
    """A fresh PostgreSQL schema for this test run (dropped at the end)."""
    if not _pg_available():
        if os.environ.get("ZOOMCAL_REQUIRE_PG"):
            pytest.fail(f"PostgreSQL required (ZOOMCAL_REQUIRE_PG is set) but unreachable at {PG_URL}")
        pytest.skip("PostgreSQL unreachable and ZOOMCAL_REQUIRE_PG unset")
    schema = "zc_test_" + secrets.token_hex(4)
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create schema {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop schema {schema} cascade"))
    engine.dispose()


def _fresh_pg(url: str) -> Database:
    db = Database(url, migrate=False)
    with db.engine.begin() as conn:   # everything in the schema: tables, and the job queue's types and functions
        schema = conn.execute(sa.text("select current_schema()")).scalar()
        conn.execute(sa.text(f'drop schema "{schema}" cascade'))
        conn.execute(sa.text(f'create schema "{schema}"'))
    db.dispose()
    return _migrated(url)


@pytest.fixture(autouse=True)
def _cheap_password_hashes(request, monkeypatch):
    """Passwords hashed in the tests' own process use argon2's cheapest parameters (its profile for tests): the
    portal's tests hash and verify hundreds. A test marked `real_password_cost` keeps the deployed cost (and one
    holds the hashes zoomcal stores to it)."""
    if request.node.get_closest_marker("real_password_cost") is None:
        from zoomcal.app import signin

        cheapest = argon2.PasswordHasher.from_parameters(argon2.profiles.CHEAPEST)
        monkeypatch.setattr(signin, "_hasher", lambda: cheapest)


_TEMPLATE: list[Path] = []


def _migrated(url: str) -> Database:
    """A store at the newest revision. A new SQLite file starts as a copy of one migrated once per test session
    (the same schema, without running every migration again); the migrations' own tests migrate for real."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        target = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if not target.exists():
            if not _TEMPLATE:
                template = Path(tempfile.mkdtemp(prefix="zoomcal-template-")) / "store.db"
                migrated = Database(f"sqlite:///{template}")
                migrated.upgrade()
                migrated.dispose()
                _TEMPLATE.append(template)
            shutil.copyfile(_TEMPLATE[0], target)
            return Database(url)
    db = Database(url)
    db.upgrade()
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path):
    """The store on both backends (PostgreSQL for real)."""
    if request.param == "sqlite":
        db = _migrated(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        db = _fresh_pg(request.getfixturevalue("pg_schema_url"))
    yield db
    db.dispose()


@pytest.fixture
def sqlite_db(tmp_path):
    db = _migrated(f"sqlite:///{tmp_path / 'store.db'}")
    yield db
    db.dispose()


def make_context(world: SandboxWorld | None, data_dir: Path, database_url: str | None = None,
                 rules_overrides: dict | None = None, tenant: str = "default", actor: Actor = CLI) -> AppContext:
    """An application context on a fresh, migrated store (SQLite in `data_dir` unless a URL is given), talking to
    the sandbox world in-process."""
    settings = Settings(data_dir=data_dir, database_url=database_url or f"sqlite:///{data_dir / 'zc.db'}",
                        vault_keys=new_key_spec("t1"))
    db = _migrated(settings.resolved_database_url())
    with db.transaction() as s:
        if s.scalar(sa.select(Tenant).where(Tenant.name == tenant)) is None:
            s.add(Tenant(name=tenant, mapping_rules=rules_overrides or None))
    db.dispose()
    services = open_services(settings, transport=world.transport() if world is not None else None)
    return services.context(tenant, actor)


def add_user(ctx: AppContext, email: str, name: str = ""):
    return users.add(ctx, email, name)


def add_account(ctx: AppContext, email: str, provider: str, config: dict, secret: dict, calendar_id: str,
                calendar_name: str = "", receives_meetings: bool | None = None) -> int:
    """Store an account as a link would, without asking the provider first (tests that arrange state; linking as
    a person does, checked with the provider, is `zoomcal.app.accounts.link`). Returns the account id."""
    from zoomcal.app.accounts import set_meetings_calendar
    from zoomcal.connectors import registry

    role = registry.get(provider).role
    with ctx.store.transaction() as s:
        user = s.scalar(sa.select(User).where(User.email == email))
        account = Account(tenant_id=ctx.tenant_id, user_id=user.id, provider=provider, external_id=calendar_id,
                          config=config, secret=ctx.vault.seal(secret) if secret else None)
        s.add(account)
        s.flush()
        mine = list(s.scalars(sa.select(Calendar).where(Calendar.user_id == user.id)))
        calendar = Calendar(tenant_id=ctx.tenant_id, user_id=user.id, account_id=account.id, remote_id=calendar_id,
                            name=calendar_name or calendar_id, role=role, receives_meetings=False)
        s.add(calendar)
        s.flush()
        if receives_meetings is None:
            receives_meetings = role == "calendar" and not any(c.receives_meetings for c in mine)
        if receives_meetings:
            set_meetings_calendar(s, user, calendar.id)
        return account.id


def build_pairs(ctx: AppContext, email: str | None = None):
    return app_sync.pairs(ctx, email)


async def close_pairs(ctx: AppContext) -> None:
    """Close the connectors the context's services built (the next pairs get new ones)."""
    await ctx.services.aclose()


def link_sandbox_zoom(ctx: AppContext, world: SandboxWorld, email: str, info: dict,
                      zoom_mode: str = "account") -> None:
    """The user's Zoom account on the sandbox (server-to-server, or user OAuth with a refresh token)."""
    zoom_secret = {"client_id": world.zoom.client_id, "client_secret": world.zoom.client_secret}
    if zoom_mode == "account":
        zoom_secret["account_id"] = world.zoom.account_id
    else:
        zoom_secret["refresh_token"] = info["zoom_refresh_token"]
    add_account(ctx, email, "zoom", {"api_base": f"{SANDBOX}/zoom/v2", "token_url": f"{SANDBOX}/zoom/oauth/token"},
                zoom_secret, info["zoom_user_id"])


async def sync_first_pair(ctx: AppContext, engine, **kwargs):
    """One run of the first sync pair, connectors closed afterwards."""
    pairs = build_pairs(ctx)
    try:
        return await engine.run(pairs[0], **kwargs)
    finally:
        await close_pairs(ctx)


def link_sandbox_user(ctx: AppContext, world: SandboxWorld, email: str, name: str = "", tz: str = "UTC",
                      zoom_mode: str = "account", calendar: str = "google") -> dict:
    """A sandbox user with their Zoom account and the calendar that receives their meetings (`calendar`: google,
    graph, or the URL of a CalDAV collection on the test Radicale), stored as linked."""
    info = world.add_user(email, name, tz)
    add_user(ctx, email, name)
    link_sandbox_zoom(ctx, world, email, info, zoom_mode)
    if calendar.startswith("http"):
        ctx.settings.allow_private_urls = True     # the test Radicale is on loopback
        add_account(ctx, email, "caldav", {}, {"username": email.split("@")[0], "password": "x"}, calendar, "Work")
        return {**info, "provider": "caldav", "caldav_collection": calendar}
    if calendar == "graph":
        add_account(ctx, email, "graph", {"api_base": f"{SANDBOX}/graph/v1.0",
                                          "token_url": f"{SANDBOX}/graph/oauth2/v2.0/token"},
                    {"client_id": world.graph.client_id, "client_secret": world.graph.client_secret,
                     "refresh_token": info["graph_refresh_token"]}, info["graph_calendar_id"], "Outlook")
    else:
        add_account(ctx, email, "google", {"api_base": f"{SANDBOX}/google/calendar/v3",
                                           "token_url": f"{SANDBOX}/google/token"},
                    {"client_id": world.google.client_id, "client_secret": world.google.client_secret,
                     "refresh_token": info["google_refresh_token"]}, info["google_calendar_id"])
    return {**info, "provider": calendar}


@pytest.fixture
def world():
    return SandboxWorld()


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.fixture(scope="session")
def radicale(tmp_path_factory):
    """A real Radicale CalDAV server on 127.0.0.1 with a free port, for the whole test session."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path_factory.mktemp("radicale")
    proc = subprocess.Popen([sys.executable, "-m", "radicale", "--storage-filesystem-folder", str(folder / "data"),
                             "--server-hosts", f"127.0.0.1:{port}", "--auth-type", "none",
                             "--logging-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("Radicale did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def new_collection(base: str, user: str = "ada") -> str:
    """A fresh, empty calendar collection on the Radicale server."""
    import httpx

    url = f"{base}/{user}/cal-{secrets.token_hex(4)}/"
    response = httpx.request("MKCALENDAR", url, auth=(user, "x"))
    assert response.status_code == 201, response.text
    return url


@pytest.fixture
def served_world():
    """A fresh sandbox world served over loopback (for clients with their own HTTP stack, like exchangelib)."""
    from zoomcal.sandbox.server import BackgroundServer

    world = SandboxWorld()
    server = BackgroundServer(world).start()
    yield world, server.url
    server.stop()
