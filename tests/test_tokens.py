"""Access tokens shared through the store: one refresh at a time per account, across processes.

Zoom rotates refresh tokens and its sandbox lets each one work once, so two processes refreshing the same
account without coordination end in `invalid_grant`; with the shared store they never do.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import structlog
from sqlalchemy import select

from zoomcal.auth.tokens import StoredTokens, stored_tokens
from zoomcal.auth.vault import Vault, new_key_spec
from zoomcal.connectors.http import ApiClient
from zoomcal.errors import AuthExpired, Transient
from zoomcal.store.models import Account, Tenant, User

pytestmark = pytest.mark.anyio

SANDBOX = "http://sandbox"
ZOOM_TOKEN_URL = f"{SANDBOX}/zoom/oauth/token"
ITERATIONS = 100

# One process of the race. It links nothing itself: it opens the account the test stored, waits for "go" on
# stdin (so both processes start together), forces a refresh ITERATIONS times by invalidating the token it
# holds, then calls the API once and prints what happened as JSON. Modes: "stored" (StoredTokens),
# "memory" (a per-process RefreshTokenSource persisting each rotated refresh token, as without the shared
# store) and "unlocked" (each refresh reads the latest refresh token from the store, but takes no lock).
CHILD = r"""
import asyncio, hashlib, json, sys

from zoomcal.auth.oauth import RefreshTokenSource
from zoomcal.auth.tokens import stored_tokens
from zoomcal.connectors import registry
from zoomcal.connectors.spec import AccountView, Env
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.auth.vault import Vault
from zoomcal.connectors.http import ApiClient
from zoomcal.errors import AuthExpired
from zoomcal.store.db import Database
from zoomcal.store.models import Account

args = json.loads(sys.argv[1])
db, vault = Database(args["db"]), Vault.from_spec(args["vault"])


def persist(refresh_token):
    with db.transaction() as s:
        account = s.get(Account, args["account"])
        account.secret = vault.seal({**vault.open(account.secret), "refresh_token": refresh_token})


def memory_source():
    with db.session() as s:
        secret = vault.open(s.get(Account, args["account"]).secret)
    return RefreshTokenSource(args["token_url"], secret["client_id"], secret["client_secret"],
                              secret["refresh_token"], basic_auth=True, on_rotate=persist)


async def main():
    mode, requests = args["mode"], 0

    async def count(request):
        nonlocal requests
        requests += request.url.path.endswith("/oauth/token")

    if mode == "stored":
        zoom = registry.get("zoom")
        tokens = stored_tokens(db, vault, args["account"], lambda secret: zoom.grant(
            AccountView(0, {"token_url": args["token_url"]}, secret, ""), Env(DEFAULT_RULES)))
    else:
        tokens = memory_source()
    api = ApiClient(args["api_base"], tokens)
    api.client.event_hooks["request"].append(count)
    print("ready", flush=True)
    sys.stdin.readline()
    result = {"iterations": 0, "invalid_grant": 0}
    try:
        for _ in range(args["n"]):
            if mode == "unlocked":
                api.tokens = tokens = memory_source()
            token = await tokens.token(api.client)
            tokens.invalidate(token)
            result["iterations"] += 1
        result["me"] = (await api.json("GET", "users/me"))["email"]
        result["token"] = hashlib.sha256((await tokens.token(api.client)).encode()).hexdigest()
    except AuthExpired as exc:
        result["invalid_grant"] = int("invalid_grant" in str(exc))
        result["error"] = str(exc)
    result["token_requests"] = requests
    await api.aclose()
    print(json.dumps(result), flush=True)


asyncio.run(main())
"""


def grant_of(provider: str, token_url: str):
    """The provider's own grant (from its spec) for an opened secret, at this token URL."""
    from zoomcal.connectors import registry
    from zoomcal.connectors.spec import AccountView, Env
    from zoomcal.mapping.rules import DEFAULT_RULES

    spec = registry.get(provider)
    return lambda secret: spec.grant(AccountView(0, {"token_url": token_url}, secret, ""), Env(DEFAULT_RULES))


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def vault_spec():
    return new_key_spec("t1")


def store_account(db, vault: Vault, secret: dict, provider: str = "zoom", email: str = "ada@example.com") -> int:
    with db.transaction() as s:
        tenant = Tenant(name="default")
        s.add(tenant)
        s.flush()
        user = User(tenant_id=tenant.id, email=email)
        s.add(user)
        s.flush()
        account = Account(tenant_id=tenant.id, user_id=user.id, provider=provider, config={},
                          secret=vault.seal(secret))
        s.add(account)
        s.flush()
        return account.id


def zoom_user(world, vault: Vault, db, email: str = "ada@example.com") -> tuple[int, dict]:
    """A Zoom user-OAuth account (refresh token, client in an HTTP Basic header) stored for `email`."""
    info = world.add_user(email, "Ada Lovelace", "Europe/London")
    secret = {"client_id": world.zoom.client_id, "client_secret": world.zoom.client_secret,
              "refresh_token": info["zoom_refresh_token"]}
    return store_account(db, vault, secret, email=email), info


def account_row(db, account_id: int) -> Account:
    with db.session() as s:
        return s.get(Account, account_id)


def issued(world) -> int:
    """Access tokens the Zoom sandbox has issued: one per successful token request."""
    return len(world.zoom.tokens.access)


def run_processes(mode: str, db, vault_spec: str, account_id: int, url: str, n: int = ITERATIONS,
                  processes: int = 2) -> list[dict]:
    """Start the processes, let them all go at once, and collect what each one reports."""
    args = json.dumps({"mode": mode, "db": db.url, "vault": vault_spec, "account": account_id, "n": n,
                       "token_url": f"{url}/zoom/oauth/token", "api_base": f"{url}/zoom/v2"})
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            assert line.strip() == "ready", line + proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_the_zoom_sandbox_lets_a_refresh_token_work_once(world):
    info = world.add_user("ada@example.com")
    auth = (world.zoom.client_id, world.zoom.client_secret)
    form = {"grant_type": "refresh_token", "refresh_token": info["zoom_refresh_token"]}
    async with httpx.AsyncClient(transport=world.transport()) as client:
        first = await client.post(ZOOM_TOKEN_URL, data=form, auth=auth)
        again = await client.post(ZOOM_TOKEN_URL, data=form, auth=auth)
        rotated = await client.post(ZOOM_TOKEN_URL, auth=auth, data={
            "grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    assert first.status_code == 200 and first.json()["refresh_token"] != info["zoom_refresh_token"]
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert rotated.status_code == 200


async def test_two_processes_refreshing_one_account_never_hit_invalid_grant(any_db, served_world, vault_spec):
    world, url = served_world
    vault = Vault.from_spec(vault_spec)
    account_id, info = zoom_user(world, vault, any_db)
    before = issued(world)
    results = await asyncio.to_thread(run_processes, "stored", any_db, vault_spec, account_id, url)

    assert [r["invalid_grant"] for r in results] == [0, 0], results
    assert all(r["iterations"] == ITERATIONS and r["me"] == "ada@example.com" for r in results), results
    refreshes = issued(world) - before
    # every forced refresh moves a process to a newer token, so one process alone needs ITERATIONS of them;
    # a process that finds a newer token already stored (the other one refreshed) uses it without a request
    assert refreshes == sum(r["token_requests"] for r in results)
    assert ITERATIONS <= refreshes <= 2 * (ITERATIONS + 1)
    # the store holds the one refresh token the sandbox still accepts, and it works for a new process
    stored = account_row(any_db, account_id)
    assert list(world.zoom.tokens.refresh) == [vault.open(stored.secret)["refresh_token"]]
    assert stored.status == "ok"
    tokens = StoredTokens(any_db, vault, account_id, grant_of("zoom", f"{url}/zoom/oauth/token"))
    api = ApiClient(f"{url}/zoom/v2", tokens)
    tokens.invalidate(await tokens.token(api.client))
    assert (await api.json("GET", "users/me"))["email"] == "ada@example.com"
    assert issued(world) - before == refreshes + 1
    await api.aclose()


async def test_without_the_shared_store_the_same_race_ends_in_invalid_grant(sqlite_db, served_world, vault_spec):
    """The control: each process keeps its own refresh token (persisting rotations, as before the store
    shared them); the first refresh by one makes the other's token stale."""
    world, url = served_world
    account_id, _ = zoom_user(world, Vault.from_spec(vault_spec), sqlite_db)
    results = await asyncio.to_thread(run_processes, "memory", sqlite_db, vault_spec, account_id, url)
    assert sum(r["invalid_grant"] for r in results) >= 1, results


async def test_reading_the_stored_refresh_token_without_the_lock_still_races(sqlite_db, served_world, vault_spec):
    """A second control: sharing the refresh token is not enough - two refreshes that read the same one
    before either stores its successor send it twice."""
    world, url = served_world
    account_id, _ = zoom_user(world, Vault.from_spec(vault_spec), sqlite_db)
    results = await asyncio.to_thread(run_processes, "unlocked", sqlite_db, vault_spec, account_id, url)
    assert sum(r["invalid_grant"] for r in results) >= 1, results


async def test_a_cached_token_is_reused_by_another_process(sqlite_db, served_world, vault_spec):
    world, url = served_world
    account_id, _ = zoom_user(world, Vault.from_spec(vault_spec), sqlite_db)
    before = issued(world)
    first, = await asyncio.to_thread(run_processes, "stored", sqlite_db, vault_spec, account_id, url, 0, 1)
    second, = await asyncio.to_thread(run_processes, "stored", sqlite_db, vault_spec, account_id, url, 0, 1)
    assert first["me"] == second["me"] == "ada@example.com"
    assert (first["token_requests"], second["token_requests"]) == (1, 0)
    assert first["token"] == second["token"] and issued(world) - before == 1


def zoom_tokens(world, db, vault, account_id: int, **kwargs) -> tuple[StoredTokens, ApiClient]:
    tokens = StoredTokens(db, vault, account_id, grant_of("zoom", ZOOM_TOKEN_URL), **kwargs)
    return tokens, ApiClient(f"{SANDBOX}/zoom/v2", tokens, world.transport())


async def test_one_expired_token_seen_by_many_makes_one_refresh(world, sqlite_db):
    """Three token sources (as three processes would have) are refused with the same token at once."""
    vault = Vault.from_spec(new_key_spec("t1"))
    account_id, _ = zoom_user(world, vault, sqlite_db)
    clients = [zoom_tokens(world, sqlite_db, vault, account_id)[1] for _ in range(3)]
    for api in clients:
        assert (await api.json("GET", "users/me"))["email"] == "ada@example.com"
    assert issued(world) == 1   # the first one asked; the others found its token in the store
    world.zoom.tokens.expire_all()   # the provider ends the token early: every caller gets a 401
    answers = await asyncio.gather(*(api.json("GET", "users/me") for api in clients))
    assert [a["email"] for a in answers] == ["ada@example.com"] * 3
    assert issued(world) == 1   # expire_all dropped the old one: the single refresh issued this one
    assert len({await api.tokens.token(api.client) for api in clients}) == 1
    for api in clients:
        await api.aclose()


async def test_a_token_near_expiry_is_refreshed_and_a_fresh_one_is_reused(world, sqlite_db):
    vault = Vault.from_spec(new_key_spec("t1"))
    account_id, _ = zoom_user(world, vault, sqlite_db)
    tokens, api = zoom_tokens(world, sqlite_db, vault, account_id)
    first = await tokens.token(api.client)
    with sqlite_db.transaction() as s:   # another process's view: 30 s left, within the 60 s margin
        s.get(Account, account_id).access_expires_at = datetime.now(UTC) + timedelta(seconds=30)
    other, other_api = zoom_tokens(world, sqlite_db, vault, account_id)
    renewed = await other.token(other_api.client)
    assert renewed != first and issued(world) == 2
    stored = account_row(sqlite_db, account_id)
    assert vault.open(stored.access_token) == {"access_token": renewed}
    assert stored.access_expires_at.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=50)
    third, third_api = zoom_tokens(world, sqlite_db, vault, account_id)
    assert await third.token(third_api.client) == renewed and issued(world) == 2
    for client in (api, other_api, third_api):
        await client.aclose()


async def test_a_server_to_server_account_shares_its_access_token(world, sqlite_db):
    vault = Vault.from_spec(new_key_spec("t1"))
    world.add_user("ada@example.com")
    secret = {"client_id": world.zoom.client_id, "client_secret": world.zoom.client_secret,
              "account_id": world.zoom.account_id}
    account_id = store_account(sqlite_db, vault, secret)
    sources = [zoom_tokens(world, sqlite_db, vault, account_id) for _ in range(2)]
    got = [await tokens.token(api.client) for tokens, api in sources]
    assert got[0] == got[1] and issued(world) == 1
    assert vault.open(account_row(sqlite_db, account_id).secret) == secret
    for _, api in sources:
        await api.aclose()


@pytest.mark.parametrize("provider", ["google", "graph-public"])
async def test_form_client_grants_store_their_tokens(world, sqlite_db, provider):
    """Google (client in the form, no rotation) and a Graph public client (no secret; rotates)."""
    vault = Vault.from_spec(new_key_spec("t1"))
    info = world.add_user("ada@example.com")
    if provider == "google":
        state, token_url = world.google, f"{SANDBOX}/google/token"
        secret = {"client_id": state.client_id, "client_secret": state.client_secret,
                  "refresh_token": info["google_refresh_token"]}
    else:
        state, token_url = world.graph, f"{SANDBOX}/graph/oauth2/v2.0/token"
        secret = {"client_id": state.client_id, "refresh_token": info["graph_refresh_token"]}
    account_id = store_account(sqlite_db, vault, secret, provider=provider.partition("-")[0])
    tokens = stored_tokens(sqlite_db, vault, account_id, grant_of(provider.partition("-")[0], token_url))
    async with httpx.AsyncClient(transport=world.transport()) as client:
        for _ in range(3):
            token = await tokens.token(client)
            assert token in state.tokens.access
            tokens.invalidate(token)
    kept = vault.open(account_row(sqlite_db, account_id).secret)["refresh_token"]
    assert list(state.tokens.refresh) == [kept]
    assert (kept == secret["refresh_token"]) == (provider == "google")


async def test_a_refused_refresh_marks_the_account_for_reauthorisation(world, sqlite_db, capsys):
    from zoomcal.logging import configure

    configure("INFO")
    vault = Vault.from_spec(new_key_spec("t1"))
    account_id, info = zoom_user(world, vault, sqlite_db)
    tokens, api = zoom_tokens(world, sqlite_db, vault, account_id)
    await tokens.token(api.client)   # rotates; the refresh token the account was linked with is now spent
    with sqlite_db.transaction() as s:
        account = s.get(Account, account_id)
        account.secret = vault.seal({**vault.open(account.secret), "refresh_token": info["zoom_refresh_token"]})
    tokens.invalidate()
    try:
        with pytest.raises(AuthExpired, match="invalid_grant"):
            await api.json("GET", "users/me")
        logged = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        await api.aclose()
    stored = account_row(sqlite_db, account_id)
    assert stored.status == "reauth" and "invalid_grant" in stored.status_reason
    assert stored.checked_at is not None
    assert "token.refreshed" in logged and "token.refused" in logged and "invalid_grant" in logged
    spent = info["zoom_refresh_token"]
    for text in (stored.status_reason, logged):
        assert spent not in text and world.zoom.client_secret not in text
        assert not any(token in text for token in world.zoom.tokens.access)


async def test_a_failed_token_request_leaves_the_account_as_it_was(sqlite_db):
    vault = Vault.from_spec(new_key_spec("t1"))
    secret = {"client_id": "c", "client_secret": "s", "refresh_token": "rt-1"}
    account_id = store_account(sqlite_db, vault, secret)
    answers = [httpx.Response(503), httpx.Response(200, json={"access_token": "at-2", "expires_in": 3600,
                                                              "refresh_token": "rt-2"})]
    transport = httpx.MockTransport(lambda request: answers.pop(0))
    tokens = StoredTokens(sqlite_db, vault, account_id, grant_of("google", "http://idp/token"))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(Transient):
            await tokens.token(client)
        stored = account_row(sqlite_db, account_id)
        assert stored.status == "ok" and stored.access_token is None
        assert vault.open(stored.secret) == secret
        assert await tokens.token(client) == "at-2"   # the lock was released: the next refresh goes through
    assert vault.open(account_row(sqlite_db, account_id).secret)["refresh_token"] == "rt-2"


async def test_the_periodic_refresh_renews_tokens_before_they_expire(world, tmp_path):
    """Tokens that end within the window are refreshed ahead (under the account's lock, one refresh), fresh ones
    are left alone, and a refused refresh marks the account as needing to be linked again."""
    from conftest import link_sandbox_user, make_context
    from zoomcal.app import jobs
    from zoomcal.app import sync as app_sync

    ctx = make_context(world, tmp_path)
    try:
        link_sandbox_user(ctx, world, "ada@example.com", "Ada", zoom_mode="user")
        await app_sync.run(ctx)           # both accounts now hold a shared access token
        with ctx.store.session() as s:
            rows = {a.provider: (a.id, a.access_token) for a in s.scalars(select(Account))}
        assert all(token for _id, token in rows.values())
        assert await jobs.refresh_tokens(ctx.services) == {"refreshed": 0, "failed": 0}   # an hour left
        zoom_id = rows["zoom"][0]
        with ctx.store.transaction() as s:
            s.get(Account, zoom_id).access_expires_at = datetime.now(UTC) + timedelta(minutes=5)
        assert await jobs.refresh_tokens(ctx.services) == {"refreshed": 1, "failed": 0}
        stored = account_row(ctx.services.db, zoom_id)
        assert stored.access_token != rows["zoom"][1] and stored.status == "ok"
        assert stored.access_expires_at.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=50)
        with ctx.store.transaction() as s:
            s.get(Account, zoom_id).access_expires_at = datetime.now(UTC) + timedelta(minutes=5)
        world.zoom.tokens.refresh.clear()          # the provider forgot every refresh token: the grant is gone
        assert await jobs.refresh_tokens(ctx.services) == {"refreshed": 0, "failed": 1}
        assert account_row(ctx.services.db, zoom_id).status == "reauth"
    finally:
        await ctx.services.aclose()
        ctx.services.close()


def _google_tokens(db, answer):
    """An account whose token requests go to `answer` (an async httpx handler), and its StoredTokens."""
    vault = Vault.from_spec(new_key_spec("t1"))
    account_id = store_account(db, vault, {"client_id": "c", "client_secret": "s", "refresh_token": "rt-1"})
    tokens = StoredTokens(db, vault, account_id, grant_of("google", "http://idp/token"))
    return vault, account_id, tokens, httpx.AsyncClient(transport=httpx.MockTransport(answer))


def _issued(n: int) -> httpx.Response:
    return httpx.Response(200, json={"access_token": f"at-{n}", "expires_in": 3600, "refresh_token": f"rt-{n}"})


def _held_answer() -> tuple[asyncio.Event, asyncio.Event, object]:
    """A token endpoint that answers (with at-2 / rt-2) only once told: (asked, answer_now, handler)."""
    asked, answer_now = asyncio.Event(), asyncio.Event()

    async def slow(request):
        asked.set()
        await answer_now.wait()
        return _issued(2)

    return asked, answer_now, slow


async def test_the_store_takes_writes_while_a_token_request_is_under_way(sqlite_db):
    """The refresh holds no lock while the provider answers: a write on the same loop meanwhile (another person's
    sync, in a process serving several at once) goes through at once instead of waiting for the refresh."""
    asked, answer_now, slow = _held_answer()
    vault, account_id, tokens, client = _google_tokens(sqlite_db, slow)
    async with client:
        pending = asyncio.create_task(tokens.token(client))
        await asyncio.wait_for(asked.wait(), 10)
        def write() -> None:     # would wait for the refresh's lock: none is held
            with sqlite_db.locked_transaction() as s:
                s.get(Account, account_id).status_reason = "written meanwhile"

        await asyncio.wait_for(asyncio.to_thread(write), 10)
        claimed = account_row(sqlite_db, account_id)
        assert claimed.refresh_holder and claimed.refresh_until is not None
        answer_now.set()
        assert await asyncio.wait_for(pending, 10) == "at-2"
    stored = account_row(sqlite_db, account_id)
    assert stored.status_reason == "written meanwhile" and stored.refresh_holder is None
    assert vault.open(stored.secret)["refresh_token"] == "rt-2"


async def test_a_refresh_finishes_and_is_stored_when_its_caller_is_cancelled(sqlite_db):
    asked, answer_now, slow = _held_answer()
    vault, account_id, tokens, client = _google_tokens(sqlite_db, slow)
    async with client:
        caller = asyncio.create_task(tokens.token(client))
        await asyncio.wait_for(asked.wait(), 10)
        caller.cancel()
        answer_now.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
        for _ in range(200):          # the rotated refresh token is not lost with the caller
            if account_row(sqlite_db, account_id).refresh_holder is None:
                break
            await asyncio.sleep(0.02)
    stored = account_row(sqlite_db, account_id)
    assert vault.open(stored.secret)["refresh_token"] == "rt-2" and stored.refresh_holder is None


async def test_another_process_running_refresh_is_waited_for_and_a_dead_ones_claim_lapses(sqlite_db):
    calls = []

    async def answer(request):
        calls.append(request)
        return _issued(len(calls) + 1)

    vault, account_id, tokens, client = _google_tokens(sqlite_db, answer)
    async with client:
        # a live claim elsewhere: this process waits, then uses the token that process stored
        with sqlite_db.transaction() as s:
            row = s.get(Account, account_id)
            row.refresh_holder, row.refresh_until = "other:1", datetime.now(UTC) + timedelta(minutes=1)
        waiting = asyncio.create_task(tokens.token(client))
        await asyncio.sleep(0.3)
        assert not waiting.done() and calls == []
        with sqlite_db.transaction() as s:
            row = s.get(Account, account_id)
            row.access_token = vault.seal({"access_token": "at-other"})
            row.access_expires_at = datetime.now(UTC) + timedelta(hours=1)
            row.refresh_holder = row.refresh_until = None
        assert await asyncio.wait_for(waiting, 10) == "at-other" and calls == []

        # a claim whose process died (it lapsed): taken over, and the refresh goes through
        tokens.invalidate("at-other")
        with sqlite_db.transaction() as s:
            row = s.get(Account, account_id)
            row.refresh_holder, row.refresh_until = "dead:1", datetime.now(UTC) - timedelta(seconds=1)
        assert await asyncio.wait_for(tokens.token(client), 10) == "at-2" and len(calls) == 1
    assert account_row(sqlite_db, account_id).refresh_holder is None


async def test_an_account_linked_again_during_a_refresh_keeps_its_new_link(sqlite_db):
    asked, answer_now, slow = _held_answer()
    vault, account_id, tokens, client = _google_tokens(sqlite_db, slow)
    relinked = {"client_id": "c-new", "client_secret": "s-new", "refresh_token": "rt-relinked"}
    async with client:
        pending = asyncio.create_task(tokens.token(client))
        await asyncio.wait_for(asked.wait(), 10)
        with sqlite_db.transaction() as s:        # the person links the account again meanwhile
            s.get(Account, account_id).secret = vault.seal(relinked)
        answer_now.set()
        with pytest.raises(Transient, match="linked again"):
            await asyncio.wait_for(pending, 10)
    stored = account_row(sqlite_db, account_id)
    assert vault.open(stored.secret) == relinked and stored.access_token is None
    assert stored.refresh_holder is None and stored.status == "ok"


async def test_a_malformed_token_answer_stores_nothing_and_releases_the_claim(sqlite_db):
    async def answer(request):
        return httpx.Response(200, json={"access_token": "at-2", "expires_in": "soon", "refresh_token": "rt-2"})

    vault, account_id, tokens, client = _google_tokens(sqlite_db, answer)
    async with client:
        with pytest.raises(Transient, match="lifetime"):
            await tokens.token(client)
    stored = account_row(sqlite_db, account_id)
    assert stored.refresh_holder is None and stored.access_token is None
    assert vault.open(stored.secret)["refresh_token"] == "rt-1"


async def test_a_process_that_stops_waits_for_its_refreshes_under_way(sqlite_db):
    from zoomcal.auth import tokens as tokens_module

    asked, answer_now, slow = _held_answer()
    vault, account_id, tokens, client = _google_tokens(sqlite_db, slow)
    async with client:
        caller = asyncio.create_task(tokens.token(client))
        await asyncio.wait_for(asked.wait(), 10)
        caller.cancel()                               # the process is stopping
        asyncio.get_running_loop().call_later(0.3, answer_now.set)
        await tokens_module.settle(10)                # what Services.aclose() does first
        assert vault.open(account_row(sqlite_db, account_id).secret)["refresh_token"] == "rt-2"
