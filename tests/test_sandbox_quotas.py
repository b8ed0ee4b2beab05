"""The sandboxes keep the vendors' rate limits and answer past them as the vendors do (Zoom 429 with its
X-RateLimit headers and Retry-After, Google 403/429 `userRateLimitExceeded`/`rateLimitExceeded` with no Retry-After,
Graph 429 `TooManyRequests` with Retry-After), on a clock a test drives; they count apps' requests, refusals and echo
writes per user; and zoomcal's client, told to wait, waits that long and then succeeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from conftest import build_pairs, close_pairs, link_sandbox_user, make_context
from zoomcal.auth.oauth import RefreshTokenSource, ZoomAccountCredentials
from zoomcal.connectors.http import ApiClient
from zoomcal.errors import RateLimited
from zoomcal.sandbox import zoom as zoom_sandbox
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.world import SandboxWorld
from zoomcal.sync.engine import SyncEngine
from zoomcal.sync.retry import Retrier

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Ticks:
    """A driven clock: seconds for rate windows, a UTC day for daily limits, and waits that pass on it."""

    def __init__(self, day: datetime = datetime(2026, 3, 2, tzinfo=UTC)):
        self.t, self.day, self.slept = 0.0, day, []

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.day + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def driven():
    world = SandboxWorld()
    ticks = Ticks()
    world.use_clock(ticks, ticks.wall)
    user = world.add_user("q@example.com", "Q", "UTC")
    return world, ticks, user


def client(world: SandboxWorld) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://sandbox", transport=world.transport())


async def zoom_app(c: httpx.AsyncClient, world: SandboxWorld) -> dict[str, str]:
    issued = await c.post("/zoom/oauth/token", auth=(world.zoom.client_id, world.zoom.client_secret),
                          data={"grant_type": "account_credentials", "account_id": world.zoom.account_id})
    return {"Authorization": f"Bearer {issued.json()['access_token']}"}


async def refreshed(c: httpx.AsyncClient, url: str, state, refresh: str) -> dict[str, str]:
    issued = await c.post(url, data={"grant_type": "refresh_token", "refresh_token": refresh,
                                     "client_id": state.client_id, "client_secret": state.client_secret})
    return {"Authorization": f"Bearer {issued.json()['access_token']}"}


# --- Zoom -----------------------------------------------------------------------------------------------------------

async def test_zoom_refuses_past_its_per_second_limit_by_category_like_zoom(driven):
    world, ticks, user = driven
    world.zoom.rate_plan = "pro"               # Medium 20 a second, Light 30, for the whole account
    listing = f"/zoom/v2/users/{user['zoom_user_id']}/meetings"
    async with client(world) as c:
        app = await zoom_app(c, world)
        meeting = (await c.post(listing, json={"topic": "T", "type": 2, "start_time": "2026-03-10T09:00:00Z"},
                                headers=app)).json()
        for _ in range(20):
            assert (await c.get(listing, headers=app)).status_code == 200
        refused = await c.get(listing, headers=app)
        assert refused.status_code == 429
        assert refused.json() == {"code": 429, "message": "You have reached the maximum per-second rate limit for "
                                                          "this API. Try again later."}
        assert {k: refused.headers[k] for k in ("x-ratelimit-category", "x-ratelimit-type", "x-ratelimit-limit",
                                                "x-ratelimit-remaining", "retry-after")} == {
            "x-ratelimit-category": "Medium", "x-ratelimit-type": "QPS", "x-ratelimit-limit": "20",
            "x-ratelimit-remaining": "0", "retry-after": "1"}
        assert (await c.get(f"/zoom/v2/meetings/{meeting['id']}", headers=app)).status_code == 200   # Light
        assert (await c.get(listing, headers=app)).status_code == 429      # again, before the advised second
        # a person in Zoom's own apps is no app: neither limited nor counted
        person = SandboxActor(world, transport=world.transport())
        await person.zoom_patch(meeting["id"], topic="by hand")
        ticks.t += 1.0
        assert (await c.get(listing, headers=app)).status_code == 200
        await person.aclose()
    meter = world.zoom.meter
    assert meter.per_user() == {user["zoom_user_id"]: {"requests": 25, "refused": 2, "avoidable": 1,
                                                        "echo_writes": 0}}
    assert [(r.limit, r.retry_after, r.avoidable) for r in meter.refusals] == [
        ("zoom:Medium:QPS", 1, False), ("zoom:Medium:QPS", 1, True)]


async def test_zoom_daily_limits_of_a_plan_lift_at_midnight_utc(driven, monkeypatch):
    world, ticks, user = driven
    monkeypatch.setitem(zoom_sandbox.RATE_PLANS, "tiny", {"Light": (100, None), "Medium": (100, 2),
                                                          "Heavy": (100, None)})
    world.zoom.rate_plan = "tiny"
    listing = f"/zoom/v2/users/{user['zoom_user_id']}/meetings"
    async with client(world) as c:
        app = await zoom_app(c, world)
        assert [(await c.get(listing, headers=app)).status_code for _ in range(2)] == [200, 200]
        refused = await c.get(listing, headers=app)
        assert refused.status_code == 429 and refused.json()["message"].startswith(
            "You have reached the maximum daily rate limit for this API.")
        assert refused.headers["x-ratelimit-type"] == "Daily-limit" and refused.headers["x-ratelimit-limit"] == "2"
        assert refused.headers["retry-after"] == "2026-03-03T00:00:00Z"
        ticks.t += 24 * 3600
        assert (await c.get(listing, headers=app)).status_code == 200
    [refusal] = world.zoom.meter.refusals
    assert refusal.limit == "zoom:Medium:Daily-limit" and refusal.retry_after == 24 * 3600


async def test_zoom_counts_a_patch_that_changes_nothing_as_an_echo_write(driven):
    world, _ticks, user = driven
    async with client(world) as c:
        app = await zoom_app(c, world)
        meeting = (await c.post(f"/zoom/v2/users/{user['zoom_user_id']}/meetings", headers=app, json={
            "topic": "T", "type": 8, "start_time": "2026-03-10T09:00:00Z", "duration": 30,
            "recurrence": {"type": 2, "weekly_days": "3", "end_times": 3}})).json()
        url = f"/zoom/v2/meetings/{meeting['id']}"
        occurrence = meeting["occurrences"][1]
        for body in ({"topic": "T"}, {"topic": "U"}, {"duration": 30}):
            assert (await c.patch(url, json=body, headers=app)).status_code == 204
        same = {"start_time": occurrence["start_time"], "duration": 30}
        moved = {"start_time": "2026-03-17T10:00:00Z", "duration": 30}
        for body in (same, moved, moved):
            assert (await c.patch(url, params={"occurrence_id": occurrence["occurrence_id"]}, json=body,
                                  headers=app)).status_code == 204
    echoes = [(method, path) for _at, _user, method, path in world.zoom.meter.echo_writes]
    assert echoes == [("PATCH", url)] * 4       # same topic, same duration, the occurrence where it was, moved twice


# --- Google ---------------------------------------------------------------------------------------------------------

async def test_google_refuses_past_its_per_user_and_per_project_minute_like_google(driven):
    world, ticks, user = driven
    other = world.add_user("r@example.com", "R", "UTC")
    world.google.per_user_per_minute, world.google.per_project_per_minute = 3, 5
    async with client(world) as c:
        mine = await refreshed(c, "/google/token", world.google, user["google_refresh_token"])
        theirs = await refreshed(c, "/google/token", world.google, other["google_refresh_token"])
        events = "/google/calendar/v3/calendars/{}/events"
        for _ in range(3):
            assert (await c.get(events.format(user["email"]), headers=mine)).status_code == 200
        refused = await c.get(events.format(user["email"]), headers=mine)
        assert refused.status_code == 403 and "retry-after" not in refused.headers
        assert refused.json() == {"error": {"code": 403, "message": "User Rate Limit Exceeded", "errors": [
            {"domain": "usageLimits", "reason": "userRateLimitExceeded", "message": "User Rate Limit Exceeded"}]}}
        assert (await c.get(events.format(other["email"]), headers=theirs)).status_code == 200   # per user
        assert (await c.get(events.format(other["email"]), headers=theirs)).status_code == 200
        project = await c.get(events.format(other["email"]), headers=theirs)     # the project's 5 are used up
        assert project.status_code == 403 and project.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"
        world.google.rate_limit_status = 429
        ticks.t += 59.0
        assert (await c.get(events.format(user["email"]), headers=mine)).status_code == 429   # a sliding minute
        ticks.t += 1.0
        assert (await c.get(events.format(user["email"]), headers=mine)).status_code == 200
    assert [(r.user, r.limit, r.retry_after) for r in world.google.meter.refusals] == [
        (user["email"], f"google:user:{user['email']}", None), (other["email"], "google:project", None),
        (user["email"], f"google:user:{user['email']}", None)]


# --- Graph ----------------------------------------------------------------------------------------------------------

async def test_graph_throttles_each_mailbox_and_judges_batched_requests_one_by_one(driven):
    world, ticks, user = driven
    world.graph.per_mailbox = (3, 600.0)
    async with client(world) as c:
        app = await refreshed(c, "/graph/oauth2/v2.0/token", world.graph, user["graph_refresh_token"])
        events = f"/graph/v1.0/users/{user['email']}/calendar/events"
        created = await c.post(events, headers=app, json={
            "subject": "S", "start": {"dateTime": "2026-03-10T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-03-10T10:00:00", "timeZone": "UTC"}})
        url = f"{events}/{created.json()['id']}"
        assert (await c.patch(url, json={"subject": "S"}, headers=app)).status_code == 200      # an echo write
        ticks.t += 100.0
        batch = await c.post("/graph/v1.0/$batch", headers=app, json={"requests": [
            {"id": "1", "method": "GET", "url": url.removeprefix("/graph/v1.0")},
            {"id": "2", "method": "GET", "url": url.removeprefix("/graph/v1.0")}]})
        first, second = batch.json()["responses"]
        assert batch.status_code == 200 and first["status"] == 200 and second["status"] == 429
        assert second["headers"]["Retry-After"] == "500"
        refused = await c.get(url, headers=app)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "500"
        assert refused.json()["error"]["code"] == "TooManyRequests"
        ticks.t += 500.0
        assert (await c.get(url, headers=app)).status_code == 200
    assert world.graph.meter.per_user() == {user["email"]: {"requests": 5, "refused": 2, "avoidable": 1,
                                                            "echo_writes": 1}}


# --- zoomcal, told to wait ------------------------------------------------------------------------------------------

async def test_zoomcals_client_waits_as_long_as_it_is_told_and_then_succeeds(driven, monkeypatch):
    world, ticks, user = driven
    monkeypatch.setitem(zoom_sandbox.RATE_PLANS, "tiny", {"Light": (1, None), "Medium": (1, None),
                                                          "Heavy": (1, None)})
    world.zoom.rate_plan = "tiny"
    world.graph.per_mailbox = (2, 60.0)
    world.google.per_user_per_minute = 2
    transport = world.transport()
    zoom = ApiClient("http://sandbox/zoom/v2", ZoomAccountCredentials(
        "http://sandbox/zoom/oauth/token", world.zoom.account_id, world.zoom.client_id, world.zoom.client_secret),
        transport)
    graph = ApiClient("http://sandbox/graph/v1.0", RefreshTokenSource(
        "http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id, world.graph.client_secret,
        user["graph_refresh_token"], basic_auth=False), transport)
    google = ApiClient("http://sandbox/google/calendar/v3", RefreshTokenSource(
        "http://sandbox/google/token", world.google.client_id, world.google.client_secret,
        user["google_refresh_token"], basic_auth=False), transport)
    retrier = Retrier(max_retries=4, sleep=ticks.sleep)
    zoom_list = f"users/{user['zoom_user_id']}/meetings"
    graph_delta = f"users/{user['email']}/calendar/calendarView/delta"
    window = {"startDateTime": "2026-03-01T00:00:00", "endDateTime": "2026-04-01T00:00:00"}
    google_list = f"calendars/{user['email']}/events"
    for _ in range(2):
        await retrier.call(lambda _a: google.json("GET", google_list))
    ticks.t = 58.0                            # Google's minute slides: its first two leave it at 60 s
    await retrier.call(lambda _a: google.json("GET", google_list))
    for _ in range(2):
        await retrier.call(lambda _a: zoom.json("GET", zoom_list))            # the second waits Zoom's second
    for _ in range(3):
        await retrier.call(lambda _a: graph.json("GET", graph_delta, params=window))
    assert ticks.slept == [5.0, 1.0, 60.0]    # Google sends no Retry-After (5 s); Zoom and Graph say how long
    refusals = [r for m in world.meters().values() for r in m.refusals]
    assert len(refusals) == 3 and not any(r.avoidable for r in refusals)
    await zoom.json("GET", zoom_list)
    with pytest.raises(RateLimited) as refused:     # without a retrier, the refusal is the caller's, with the wait
        await zoom.json("GET", zoom_list)
    assert refused.value.retry_after == 1.0
    for api in (zoom, graph, google):
        await api.aclose()


async def test_a_sync_under_tight_limits_waits_them_out_and_lands_everything(tmp_path):
    world = SandboxWorld()
    ticks = Ticks()
    world.use_clock(ticks, ticks.wall)
    world.zoom.rate_plan = "pro"
    world.google.per_user_per_minute = 4
    ctx = make_context(world, tmp_path)
    user = link_sandbox_user(ctx, world, "w@example.com", "W", "UTC")
    person = SandboxActor(world, transport=world.transport())
    for i in range(6):
        await person.zoom_create(user["zoom_user_id"], topic=f"M{i}", type=2, start_time=f"2026-03-1{i}T09:00:00Z",
                                 duration=30)
    engine = SyncEngine(ctx.store, retrier=Retrier(max_retries=4, sleep=ticks.sleep), clock=ticks.wall)
    pairs = build_pairs(ctx)
    try:
        report = await engine.run(pairs[0])
    finally:
        await close_pairs(ctx)
        await person.aclose()
    assert report.status == "ok" and report.writes == 6
    assert len(world.google.calendars[user["google_calendar_id"]].events) == 6
    refusals = world.google.meter.refusals
    assert refusals and not any(r.avoidable for r in refusals)
    # the listing and three inserts use up the minute; Google says no wait, so zoomcal backs off until it slides
    assert ticks.slept == [5.0, 10.0, 20.0, 40.0] and len(refusals) == 4
    assert world.google.meter.echo_writes == [] and world.zoom.meter.echo_writes == []
    ctx.store.dispose()


async def test_without_a_given_wait_retries_back_off_and_a_longer_wait_than_a_retry_may_wait_is_kept():
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def google_style(_attempt: int):
        raise RateLimited("403 User Rate Limit Exceeded", 5.0, advised=False)

    with pytest.raises(RateLimited):
        await Retrier(max_retries=4, max_delay=60.0, sleep=sleep).call(google_style)
    assert slept == [5.0, 10.0, 20.0, 40.0]
    slept.clear()
    calls: list[int] = []

    async def told_to_wait_long(attempt: int):
        calls.append(attempt)
        raise RateLimited("429", 500.0)

    with pytest.raises(RateLimited):        # retrying after 60 s would only be refused again: it is not sent
        await Retrier(max_retries=4, max_delay=60.0, sleep=sleep).call(told_to_wait_long)
    assert calls == [0] and slept == []
