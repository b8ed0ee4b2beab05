"""One contract suite, run against every connector: memory, Zoom meetings, Google, Microsoft Graph, Exchange (EWS)
and Zoom Calendar sandboxes, a real Radicale for CalDAV; the listing part also against ICS feeds (read-only)."""

from __future__ import annotations

from datetime import UTC

import pytest

from zoomcal.auth.oauth import RefreshTokenSource, ZoomAccountCredentials
from zoomcal.connectors.google.connector import GoogleConnector
from zoomcal.connectors.http import ApiClient
from zoomcal.connectors.memory.connector import MemoryConnector
from zoomcal.connectors.zoom.connector import ZoomConnector
from zoomcal.domain.content import make_content
from zoomcal.errors import NotFound, PreconditionFailed
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.sandbox.world import SandboxWorld

pytestmark = pytest.mark.anyio

PLAIN = make_content(title="Contract", description="checks", start="2026-05-04T09:00:00Z",
                     end="2026-05-04T09:45:00Z", timezone="Europe/Paris", attendees=["a@example.com"])
RECURRING = make_content(title="Series", description="", start="2026-05-04T07:00:00Z", end="2026-05-04T07:30:00Z",
                         timezone="Europe/Paris", rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=4",
                         exdates=["2026-05-18T07:00:00Z"],
                         overrides={"2026-05-11T07:00:00Z": {"start": "2026-05-11T09:00:00Z",
                                                             "end": "2026-05-11T09:30:00Z"}})


def _memory():
    return MemoryConnector()


def _zoom():
    world = SandboxWorld()
    user = world.add_user("c@example.com", "C", "Europe/Paris")
    tokens = ZoomAccountCredentials("http://sandbox/zoom/oauth/token", world.zoom.account_id, world.zoom.client_id,
                                    world.zoom.client_secret)
    api = ApiClient("http://sandbox/zoom/v2", tokens, world.transport())
    return ZoomConnector(api, user["zoom_user_id"], DEFAULT_RULES)


def _google():
    world = SandboxWorld()
    user = world.add_user("c@example.com", "C", "Europe/Paris")
    tokens = RefreshTokenSource("http://sandbox/google/token", world.google.client_id, world.google.client_secret,
                                user["google_refresh_token"], basic_auth=False)
    api = ApiClient("http://sandbox/google/calendar/v3", tokens, world.transport())
    return GoogleConnector(api, user["google_calendar_id"], DEFAULT_RULES, page_size=2)


def _caldav(radicale_url):
    from conftest import new_collection
    from zoomcal.connectors.caldav.connector import CalDavConnector

    return CalDavConnector(new_collection(radicale_url), DEFAULT_RULES, username="ada", password="x",
                           allow_private=True)


def _graph():
    from datetime import datetime

    from zoomcal.connectors.graph.connector import GraphConnector

    world = SandboxWorld()
    user = world.add_user("c@example.com", "C", "Europe/Paris")
    tokens = RefreshTokenSource("http://sandbox/graph/oauth2/v2.0/token", world.graph.client_id,
                                world.graph.client_secret, user["graph_refresh_token"], basic_auth=False)
    api = ApiClient("http://sandbox/graph/v1.0", tokens, world.transport())
    window = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC))
    return GraphConnector(api, "c@example.com", "", DEFAULT_RULES, window)


def _ews(served):
    from zoomcal.connectors.ews.connector import EwsConnector

    world, url = served
    user = world.add_user("c@example.com", "C", "Europe/Paris")
    return EwsConnector(f"{url}/ews/EWS/Exchange.asmx", "c@example.com", DEFAULT_RULES, username="c@example.com",
                        secret=user["ews_password"], auth="basic", allow_private=True)


def _zoom_calendar():
    from zoomcal.connectors.zoom_calendar.connector import ZoomCalendarConnector

    world = SandboxWorld()
    world.add_user("c@example.com", "C", "Europe/Paris")
    tokens = ZoomAccountCredentials("http://sandbox/zoom/oauth/token", world.zoom.account_id, world.zoom.client_id,
                                    world.zoom.client_secret)
    api = ApiClient("http://sandbox/zoom/v2", tokens, world.transport())
    return ZoomCalendarConnector(api, "c@example.com", DEFAULT_RULES, page_size=2)


WRITABLE = ["memory", "zoom", "google", "caldav", "graph", "ews", "zoom-calendar"]


def _connector(name, request):
    if name == "caldav":
        return _caldav(request.getfixturevalue("radicale"))
    if name == "ews":
        return _ews(request.getfixturevalue("served_world"))
    return {"memory": _memory, "zoom": _zoom, "google": _google, "graph": _graph,
            "zoom-calendar": _zoom_calendar}[name]()


@pytest.fixture(params=WRITABLE)
async def conn(request):
    connector = _connector(request.param, request)
    yield connector
    await connector.aclose()


@pytest.fixture
def anyio_backend():
    return "asyncio"


def comparable(content, conn):
    """What every side must keep exactly; join info is the meeting side's own. A side that cannot hold moved
    occurrences leaves them out (and says so when it is written, see below)."""
    keep = ("title", "description", "start", "end", "timezone", "rrule", "exdates")
    out = {k: content[k] for k in keep}
    out["overrides"] = {k: {"start": v["start"], "end": v["end"]} for k, v in content["overrides"].items()
                        if conn.capabilities.occurrence_edits}
    return out


async def listed(conn, cursor=None):
    changes = await conn.changes(cursor, {})
    series: dict[str, list] = {}
    for raw in changes.changed:
        series.setdefault(conn.series_key(raw), []).append(raw)
    items = {k: conn.normalize(v) for k, v in series.items()}
    return {k: v for k, v in items.items() if v is not None}, changes


async def test_create_list_update_delete(conn):
    items, first = await listed(conn)
    assert items == {}
    created = await conn.create(PLAIN, "ev-contract-1")
    assert created.item.marker == ("ev-contract-1" if conn.capabilities.markers else None)
    assert comparable(created.item.content, conn) == comparable(PLAIN, conn)
    assert created.item == conn.normalize(created.raws)
    items, full = await listed(conn)
    assert list(items) == [created.id]
    assert items[created.id].hash == created.item.hash      # what we wrote is what comes back (no echo)
    updated = await conn.update(created.id, {**PLAIN, "title": "Renamed"}, created.etag, "ev-contract-1",
                                created.raws)
    assert updated.id == created.id and updated.item.content["title"] == "Renamed"
    if conn.capabilities.incremental:
        delta, changes = await listed(conn, full.cursor)
        assert delta[created.id].content["title"] == "Renamed"
    await conn.delete(created.id, updated.etag)
    items, after = await listed(conn)
    assert created.id not in items
    if conn.capabilities.incremental:
        _, changes = await listed(conn, full.cursor)
        assert created.id in changes.removed
    await conn.delete(created.id, None)   # deleting what is gone is not an error
    with pytest.raises(NotFound):
        await conn.get(created.id)


async def test_create_is_idempotent_with_the_same_key(conn):
    first = await conn.create(PLAIN, "ev-contract-2")
    again = await conn.create(PLAIN, "ev-contract-2", maybe_exists=True)
    assert again.id == first.id
    items, _ = await listed(conn)
    assert list(items) == [first.id]


async def test_stale_etag_is_a_typed_conflict(conn):
    created = await conn.create(PLAIN, "ev-contract-3")
    if created.etag is None:
        pytest.skip(f"{conn.name} has no etags (last writer wins)")
    await conn.update(created.id, {**PLAIN, "title": "one"}, created.etag, "k", created.raws)
    with pytest.raises(PreconditionFailed):
        await conn.update(created.id, {**PLAIN, "title": "two"}, created.etag, "k", [])


async def test_recurring_series_with_exceptions_round_trips(conn):
    created = await conn.create(RECURRING, "ev-contract-4")
    assert comparable(created.item.content, conn) == comparable(RECURRING, conn)
    if not conn.capabilities.occurrence_edits:   # the user is told what was not written
        assert any("2026-05-11T07:00:00Z" in note for note in created.notes), created.notes
    items, _ = await listed(conn)
    assert comparable(items[created.id].content, conn) == comparable(RECURRING, conn)
    moved = {**RECURRING, "overrides": {"2026-05-25T07:00:00Z": {"start": "2026-05-25T08:00:00Z",
                                                                 "end": "2026-05-25T08:45:00Z"}}}
    updated = await conn.update(created.id, moved, created.etag, "ev-contract-4", created.raws)
    assert comparable(updated.item.content, conn) == comparable(moved, conn)
    items, _ = await listed(conn)
    assert comparable(items[created.id].content, conn) == comparable(moved, conn)


@pytest.fixture(params=[*WRITABLE, "ics"])
async def reader(request):
    """Every connector, read-only ones included, with a way to put an item where it reads from."""
    if request.param != "ics":
        connector = _connector(request.param, request)

        async def put(content, key):
            await connector.create(content, key)
    else:
        from zoomcal.connectors.ics.connector import IcsConnector
        from zoomcal.mapping.ical import content_to_calendar

        world = SandboxWorld()
        connector = IcsConnector("http://sandbox/feeds/team.ics", DEFAULT_RULES, transport=world.transport(),
                                 resolve=lambda _host: ["93.184.216.34"])
        published = {}

        async def put(content, key):   # the publisher adds an event to the feed
            published[f"{key}@example.com"] = content
            world.feeds["team"] = content_to_calendar(published).decode()
    yield connector, put
    await connector.aclose()


async def test_listing_is_stable_and_quiet(reader):
    """What is there is listed as it was put; listing again from the cursor brings nothing new, with the same
    ids and the same content hashes."""
    conn, put = reader
    await put(PLAIN, "ev-contract-5")
    await put(RECURRING, "ev-contract-6")
    items, first = await listed(conn)
    assert sorted(item.content["title"] for item in items.values()) == ["Contract", "Series"]
    for item in items.values():
        wanted = PLAIN if item.content["title"] == "Contract" else RECURRING
        assert comparable(item.content, conn) == comparable(wanted, conn)
    mirror = {conn.raw_id(raw): raw for raw in first.changed}
    again = await conn.changes(first.cursor, mirror)
    series: dict[str, list] = {}
    for raw in again.changed:
        series.setdefault(conn.series_key(raw), []).append(raw)
    for key, raws in series.items():
        full = {conn.raw_id(r): r for r in [*(r for r in first.changed if conn.series_key(r) == key), *raws]}
        assert key in items and conn.normalize(list(full.values())).hash == items[key].hash
    assert not again.removed and (again.present is None or again.present == set(mirror))
