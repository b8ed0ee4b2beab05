"""Microsoft 365 through the Graph sandbox: two-way with Zoom, series rebuilt from delta instances."""

from __future__ import annotations

from datetime import UTC, timedelta

import httpx
import pytest

from conftest import (
    SANDBOX,
    add_account,
    add_user,
    build_pairs,
    close_pairs,
    link_sandbox_user,
    link_sandbox_zoom,
    make_context,
    sync_first_pair,
)
from zoomcal.domain.timeutil import fmt_instant, now_utc
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.graph import expand
from zoomcal.sync.engine import SyncEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_two_way_with_zoom(world, tmp_path):
    ctx = make_context(world, tmp_path)
    info = world.add_user("mia@example.com", "Mia", "Europe/Paris")
    add_user(ctx, "mia@example.com")
    link_sandbox_zoom(ctx, world, "mia@example.com", info)
    add_account(ctx, "mia@example.com", "graph", {"api_base": f"{SANDBOX}/graph/v1.0",
                                                  "token_url": f"{SANDBOX}/graph/oauth2/v2.0/token"},
                {"client_id": world.graph.client_id, "client_secret": world.graph.client_secret,
                 "refresh_token": info["graph_refresh_token"]}, info["graph_calendar_id"], "Outlook")
    actor = SandboxActor(world, transport=world.transport())
    engine = SyncEngine(ctx.store)

    async def sync(**kw):
        return await sync_first_pair(ctx, engine, **kw)

    start = (now_utc() + timedelta(days=3)).replace(hour=8, minute=0, second=0)
    meeting = await actor.zoom_create(info["zoom_user_id"], topic="Weekly", type=8, start_time=fmt_instant(start),
                                      duration=30, timezone="Europe/Paris",
                                      recurrence={"type": 1, "repeat_interval": 7, "end_times": 4})
    report = await sync()
    assert report.status == "ok" and report.writes == 1, report.errors
    events = world.graph.events[world.graph.default_key("mia@example.com")]
    (series,) = events.values()
    assert series["subject"] == "Weekly" and series["location"]["displayName"] == meeting["join_url"]
    assert series["originalStartTimeZone"] == "Romance Standard Time"      # written with the Windows name
    # another Outlook client: rename the series, move the 2nd occurrence, cancel the 3rd
    token = world.graph.tokens.issue("mia@example.com")["access_token"]
    graph = httpx.AsyncClient(base_url="http://sandbox/graph/v1.0/users/mia@example.com/calendar",
                              transport=world.transport(), headers={"Authorization": f"Bearer {token}"})
    await graph.patch(f"/events/{series['id']}", json={"subject": "Weekly sync"})
    far = (now_utc() - timedelta(days=1), now_utc() + timedelta(days=60))
    second, third = expand(series, *far)[1:3]
    moved = fmt_instant(start + timedelta(days=7, hours=2))
    response = await graph.patch(f"/events/{second['id']}", json={
        "start": {"dateTime": moved[:-1], "timeZone": "UTC"},
        "end": {"dateTime": fmt_instant(start + timedelta(days=7, hours=2, minutes=30))[:-1], "timeZone": "UTC"}})
    assert response.status_code == 200
    assert (await graph.delete(f"/events/{third['id']}")).status_code == 204
    # and a new Outlook event marked for Zoom
    planning_start = start + timedelta(days=1, hours=5)
    await graph.post("/events", json={
        "subject": "Planning", "body": {"contentType": "text", "content": "numbers #zoom"},
        "start": {"dateTime": fmt_instant(planning_start)[:-1], "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": fmt_instant(planning_start + timedelta(hours=1))[:-1],
                "timeZone": "W. Europe Standard Time"}})
    report = await sync()
    assert report.status == "ok", report.errors
    full = await actor.zoom_get(meeting["id"])
    assert full["topic"] == "Weekly sync"
    assert [o["status"] for o in full["occurrences"]] == ["available", "available", "deleted", "available"]
    assert full["occurrences"][1]["start_time"] == moved
    planning = next(m for m in world.zoom.meetings.values() if m["topic"] == "Planning")
    outlook = next(e for e in events.values() if e["subject"] == "Planning")
    assert planning["join_url"] in outlook["body"]["content"] and outlook["location"]["displayName"]
    assert (await sync()).writes == 0
    world.graph.expire_delta_tokens()
    report = await sync()
    assert report.status == "ok" and report.writes == 0 and any("full resync" in n for n in report.notes)
    # deleting the series in Outlook cancels the Zoom meeting
    await graph.delete(f"/events/{series['id']}")
    report = await sync()
    assert report.status == "ok" and meeting["id"] not in world.zoom.meetings
    await graph.aclose()
    ctx.store.dispose()


def _outlook_connector(world, email):
    """A Graph connector for a new sandbox user of that address, on the sandbox's own token endpoint."""
    from datetime import datetime

    from zoomcal.auth.oauth import RefreshTokenSource
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.connectors.http import ApiClient
    from zoomcal.mapping.rules import DEFAULT_RULES

    user = world.add_user(email)
    tokens = RefreshTokenSource("http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id,
                                world.graph.client_secret, user["graph_refresh_token"], basic_auth=False)
    return GraphConnector(ApiClient("http://sandbox/graph/v1.0", tokens, world.transport()), email, "",
                          DEFAULT_RULES, (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)))


async def test_instance_writes_go_in_one_batch(world):
    from zoomcal.domain.content import make_content

    conn = _outlook_connector(world, "b@example.com")
    moved = {f"2026-05-{d:02d}T07:00:00Z": {"start": f"2026-05-{d:02d}T09:00:00Z", "end": f"2026-05-{d:02d}T09:30:00Z"}
             for d in (5, 6, 7, 8)}
    content = make_content(title="Daily", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                           timezone="Europe/Paris", rrule="FREQ=DAILY;COUNT=10", overrides=moved,
                           exdates=["2026-05-10T07:00:00Z", "2026-05-11T07:00:00Z"])
    result = await conn.create(content, "ev-batch")
    assert result.item.content["overrides"] == moved and result.item.content["exdates"] == content["exdates"]
    # POST, instances, one $batch for the six instance writes, then the master and its instances read back
    assert result.api_calls == 5 and world.graph_calls["writes"] == 2
    await conn.aclose()


async def test_a_series_with_more_instances_than_a_page_is_written_and_read_back_whole(world):
    """Graph answers a series' instances ten at a time: the ones past the first page are moved and cancelled as
    well, and read back (not taken for cancelled ones)."""
    from zoomcal.domain.content import make_content

    conn = _outlook_connector(world, "d@example.com")
    moved = {"2026-05-16T07:00:00Z": {"start": "2026-05-16T09:00:00Z", "end": "2026-05-16T09:30:00Z"}}
    content = make_content(title="Daily", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                           rrule="FREQ=DAILY;COUNT=25", overrides=moved, exdates=["2026-05-27T07:00:00Z"])
    result = await conn.create(content, "ev-daily")
    assert result.item.content["overrides"] == moved and result.item.content["exdates"] == content["exdates"]
    series = world.graph.events[world.graph.default_key("d@example.com")][result.id]
    assert list(series["_exceptions"]) == ["2026-05-16T07:00:00Z"] and series["_cancelled"] == {"2026-05-27T07:00:00Z"}
    await conn.aclose()


async def test_a_throttled_request_in_a_batch_says_how_long_to_wait(world):
    from datetime import datetime

    from zoomcal.auth.oauth import RefreshTokenSource
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.connectors.http import ApiClient
    from zoomcal.domain.content import make_content
    from zoomcal.errors import RateLimited
    from zoomcal.mapping.rules import DEFAULT_RULES

    user = world.add_user("t@example.com")
    world.graph.per_mailbox = (3, 600.0)
    tokens = RefreshTokenSource("http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id,
                                world.graph.client_secret, user["graph_refresh_token"], basic_auth=False)
    conn = GraphConnector(ApiClient("http://sandbox/graph/v1.0", tokens, world.transport()), "t@example.com",
                          "", DEFAULT_RULES,
                          (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)))
    content = make_content(title="Daily", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                           rrule="FREQ=DAILY;COUNT=5", exdates=["2026-05-06T07:00:00Z", "2026-05-07T07:00:00Z"])
    with pytest.raises(RateLimited) as caught:      # POST and instances, then the mailbox's third is the last
        await conn.create(content, "ev-throttled")
    assert caught.value.advised and caught.value.retry_after == 600.0
    await conn.aclose()


async def _weekly_on_outlook(world, tmp_path, email: str):
    """A person on Microsoft 365 with a weekly Zoom meeting (four occurrences) synced to Outlook once."""
    ctx = make_context(world, tmp_path)
    info = link_sandbox_user(ctx, world, email, email.split("@")[0].title(), calendar="graph")
    actor = SandboxActor(world, transport=world.transport())
    engine = SyncEngine(ctx.store)
    start = (now_utc() + timedelta(days=3)).replace(hour=8, minute=0, second=0, microsecond=0)
    meeting = await actor.zoom_create(info["zoom_user_id"], topic="Weekly", type=8, start_time=fmt_instant(start),
                                      duration=30, recurrence={"type": 2, "weekly_days": "2", "end_times": 4})
    assert (await sync_first_pair(ctx, engine)).writes == 1
    return ctx, actor, engine, start, meeting, info


async def test_an_occurrence_moved_in_zoom_is_one_instance_write_in_outlook(world, tmp_path):
    """The series master already holds what it should: it is not written again (no echo write), only the moved
    instance is."""
    ctx, actor, engine, start, meeting, _info = await _weekly_on_outlook(world, tmp_path, "ola@example.com")
    occurrence = (await actor.zoom_get(meeting["id"]))["occurrences"][1]
    moved = fmt_instant(start + timedelta(days=7, hours=2))
    await actor.zoom_patch(meeting["id"], occurrence_id=occurrence["occurrence_id"], start_time=moved, duration=30)
    writes = world.graph_calls["writes"]
    report = await sync_first_pair(ctx, engine)
    assert report.status == "ok" and report.writes == 1
    assert world.graph_calls["writes"] - writes == 1 and world.graph.meter.echo_writes == []
    (series,) = world.graph.events[world.graph.default_key("ola@example.com")].values()
    far = (now_utc(), now_utc() + timedelta(days=60))
    assert [i["start"]["dateTime"][:16] for i in expand(series, *far)][1] == moved[:16]
    await actor.aclose()
    ctx.store.dispose()


async def test_a_series_renamed_in_outlook_while_its_occurrence_is_written_keeps_the_rename(world, tmp_path):
    """A run lists Outlook, then the person renames the series there before the run writes the occurrence Zoom
    lengthened. The master needs no change of ours, so no PATCH carries the planned etag: the rename must still
    be noticed (not overwritten occurrence by occurrence, not taken for what zoomcal wrote), and it reaches Zoom."""
    from zoomcal.agreement import compare_user

    ctx, actor, engine, _start, meeting, info = await _weekly_on_outlook(world, tmp_path, "ida@example.com")
    last = (await actor.zoom_get(meeting["id"]))["occurrences"][-1]
    await actor.zoom_patch(meeting["id"], occurrence_id=last["occurrence_id"], duration=45)
    series = actor.graph_find("ida@example.com", "Weekly")

    pair = build_pairs(ctx)[0]
    update = pair.b.connector.update

    async def renamed_first(*args, **kwargs):     # after the listing, before the write: the person's rename
        await actor.graph_patch("ida@example.com", series["id"], subject="Weekly (renamed)")
        return await update(*args, **kwargs)

    pair.b.connector.update = renamed_first
    try:
        await engine.run(pair)
    finally:
        await close_pairs(ctx)
    exceptions = series["_exceptions"]
    assert all("subject" not in e or e["subject"] == "Weekly (renamed)" for e in exceptions.values()), exceptions
    for _ in range(2):
        assert (await sync_first_pair(ctx, engine)).status == "ok"
    assert (await actor.zoom_get(meeting["id"]))["topic"] == "Weekly (renamed)"
    assert series["subject"] == "Weekly (renamed)" and len(series["_exceptions"]) == 1
    agreement = compare_user(world, info["zoom_user_id"], info["graph_calendar_id"], provider="graph")
    assert agreement.mismatches == [] and agreement.duplicates == []
    assert (await sync_first_pair(ctx, engine)).writes == 0
    await actor.aclose()
    ctx.store.dispose()


async def test_a_series_renamed_while_its_instances_are_written_is_not_taken_for_what_was_written(world):
    """The series is as planned when the update starts, and renamed before its instances are read: only the occurrence
    to move is written (the others show the series' subject, whatever it is), and the update is refused rather
    than reading the rename back as zoomcal's own write."""
    from datetime import datetime

    from zoomcal.auth.oauth import RefreshTokenSource
    from zoomcal.connectors.graph.connector import GraphConnector
    from zoomcal.connectors.http import ApiClient
    from zoomcal.domain.content import make_content
    from zoomcal.errors import PreconditionFailed
    from zoomcal.mapping.rules import DEFAULT_RULES

    user = world.add_user("rae@example.com")
    actor = SandboxActor(world, transport=world.transport())
    renamed: list[str] = []

    class RenameBeforeInstances(httpx.AsyncBaseTransport):
        """The person renames the series in Outlook just before the connector reads its instances (once armed)."""

        def __init__(self):
            self.inner, self.series = world.transport(), None

        async def handle_async_request(self, request):
            if self.series and request.method == "GET" and request.url.path.endswith("/instances"):
                await actor.graph_patch("rae@example.com", self.series, subject="Weekly (renamed)")
                renamed.append(self.series)
                self.series = None
            return await self.inner.handle_async_request(request)

    transport = RenameBeforeInstances()
    tokens = RefreshTokenSource("http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id,
                                world.graph.client_secret, user["graph_refresh_token"], basic_auth=False)
    conn = GraphConnector(ApiClient("http://sandbox/graph/v1.0", tokens, transport), "rae@example.com", "",
                          DEFAULT_RULES, (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)))
    content = make_content(title="Weekly", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                           rrule="FREQ=WEEKLY;COUNT=4")
    created = await conn.create(content, "ev-renamed")
    longer = {**content, "overrides": {"2026-05-25T07:00:00Z": {"start": "2026-05-25T07:00:00Z",
                                                                "end": "2026-05-25T07:45:00Z"}}}
    transport.series = created.id
    with pytest.raises(PreconditionFailed):
        await conn.update(created.id, longer, created.etag, "ev-renamed", created.raws)
    assert renamed == [created.id]
    series = world.graph.events[world.graph.default_key("rae@example.com")][created.id]
    assert series["subject"] == "Weekly (renamed)" and list(series["_exceptions"]) == ["2026-05-25T07:00:00Z"]
    await conn.aclose()
    await actor.aclose()


async def test_sign_in_with_pkce_links_a_public_client(world, tmp_path):
    """Authorization code + S256 PKCE over a loopback redirect; the refresh token then works without a secret."""
    from zoomcal.auth.authorize import Provider, authorize
    from zoomcal.auth.oauth import RefreshTokenSource

    world.add_user("lea@example.com", "Lea", "Europe/Paris")
    provider = Provider("http://sandbox/graph/oauth2/v2.0/authorize", "http://sandbox/graph/oauth2/v2.0/token",
                        "offline_access Calendars.ReadWrite")
    seen = []

    async def browser(url):   # the person signs in; the provider sends the browser back to our loopback
        seen.append(url)
        async with httpx.AsyncClient(transport=world.transport()) as client:
            back = (await client.get(url)).headers["location"]
        async with httpx.AsyncClient() as client:
            assert (await client.get(back)).status_code == 200

    token = await authorize(provider, world.graph.client_id, None, "lea@example.com", browser,
                            transport=world.transport(), timeout=10)
    assert "code_challenge_method=S256" in seen[0] and "code_challenge=" in seen[0]
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in seen[0]
    source = RefreshTokenSource(provider.token_url, world.graph.client_id, "", token["refresh_token"],
                                basic_auth=False)
    async with httpx.AsyncClient(transport=world.transport()) as client:
        access = await source.token(client)
    api = httpx.AsyncClient(transport=world.transport(), headers={"Authorization": f"Bearer {access}"})
    listed = await api.get("http://sandbox/graph/v1.0/users/lea@example.com/calendar/calendarView/delta",
                           params={"startDateTime": "2026-01-01T00:00:00", "endDateTime": "2026-02-01T00:00:00"})
    assert listed.status_code == 200
    await api.aclose()


async def test_sign_in_refuses_a_stranger_and_a_wrong_verifier(world):
    from zoomcal.auth.authorize import Provider, authorize
    from zoomcal.errors import AuthExpired

    provider = Provider("http://sandbox/graph/oauth2/v2.0/authorize", "http://sandbox/graph/oauth2/v2.0/token",
                        "offline_access Calendars.ReadWrite")

    async def browser(url):
        async with httpx.AsyncClient(transport=world.transport()) as client:
            back = (await client.get(url)).headers["location"]
        async with httpx.AsyncClient() as client:
            await client.get(back)

    with pytest.raises(AuthExpired, match="AADSTS50020"):
        await authorize(provider, world.graph.client_id, None, "nobody@example.com", browser,
                        transport=world.transport(), timeout=10)
    # a code is bound to its verifier: a stolen code alone buys nothing
    world.add_user("lea@example.com")
    async with httpx.AsyncClient(transport=world.transport(), follow_redirects=False) as client:
        sent = await client.get(provider.authorize_url, params={
            "client_id": world.graph.client_id, "response_type": "code", "redirect_uri": "http://127.0.0.1:9/cb",
            "scope": "offline_access", "state": "s", "code_challenge": "x" * 43, "code_challenge_method": "S256",
            "login_hint": "lea@example.com"})
        code = httpx.URL(sent.headers["location"]).params["code"]
        refused = await client.post(provider.token_url, data={
            "grant_type": "authorization_code", "code": code, "code_verifier": "y" * 43,
            "redirect_uri": "http://127.0.0.1:9/cb", "client_id": world.graph.client_id})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_cli_connect_signs_in_and_stores_only_the_refresh_token(served_world, tmp_path):
    import json
    import os
    import subprocess
    import sys

    world, base = served_world
    world.add_user("lea@example.com", "Lea")
    env = {**os.environ, "ZOOMCAL_DATA_DIR": str(tmp_path), "SECRET": world.graph.client_secret}
    env.pop("ZOOMCAL_DATABASE_URL", None)

    def zc(*args):
        return subprocess.run([sys.executable, "-m", "zoomcal", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    assert zc("init").returncode == 0 and zc("user", "add", "lea@example.com").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "zoomcal", "account", "connect", "graph", "--user",
                             "lea@example.com", "--client-id", world.graph.client_id, "--client-secret-env", "SECRET",
                             "--login-base", f"{base}/graph", "--api-base", f"{base}/graph/v1.0", "--no-browser",
                             "--timeout", "30"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = ""
    while not url.startswith("http"):
        url = proc.stdout.readline().strip()
    assert url.startswith(f"{base}/graph/common/oauth2/v2.0/authorize?")
    back = httpx.get(url).headers["location"]             # the browser, sent back to zoomcal's loopback
    assert httpx.get(back).status_code == 200
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    listed = json.loads(zc("account", "list", "--json").stdout)
    assert [a["provider"] for a in listed] == ["graph"]
    (db,) = [p.read_bytes() for p in tmp_path.iterdir() if p.suffix == ".db"]
    assert world.graph.client_secret.encode() not in db
    assert world.graph.tokens.refresh and not any(rt.encode() in db for rt in world.graph.tokens.refresh)


async def test_the_masters_of_many_series_are_read_twenty_to_a_batch(world):
    """A first listing of an Outlook calendar with 25 weekly series: the delta names their occurrences, and the
    25 masters behind them come in two `$batch` calls, not 25 GETs; a master deleted meanwhile is gone, not an
    error."""
    from datetime import datetime, timedelta

    from zoomcal.sandbox.actor import SandboxActor

    conn = _outlook_connector(world, "s@example.com")
    actor = SandboxActor(world, transport=world.transport())
    first = datetime(2026, 5, 4, 9, tzinfo=UTC)
    for n in range(25):
        start = first + timedelta(days=n % 5, hours=n // 5)
        await actor.graph_insert(
            "s@example.com", subject=f"Series {n}",
            start={"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            end={"dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            recurrence={"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [start.strftime("%A").lower()]},
                        "range": {"type": "numbered", "startDate": start.date().isoformat(),
                                  "numberOfOccurrences": 3}})
    masters = [e["id"] for e in world.graph.events[world.graph.default_key("s@example.com")].values()
               if e.get("type") == "seriesMaster"]
    assert len(masters) == 25
    listing = await conn.changes(None, {})
    delta_pages = -(-25 * 3 // 50)                      # the sandbox's delta pages of 50
    assert listing.api_calls == delta_pages + 2
    assert sorted(r["id"] for r in listing.changed if r.get("type") == "seriesMaster") == sorted(masters)
    found, gone = await conn._masters([masters[0], "no-such-master", masters[1]])
    assert [m["id"] for m in found] == masters[:2] and gone == ["no-such-master"]
    await conn.aclose()
