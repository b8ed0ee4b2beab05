"""Push from Google (events.watch channels) and Microsoft Graph (subscriptions), end to end: linking creates the
channel at the sandbox, a change there reaches the receiver, the owner's sync is marked due; forged notifications
are refused; channels are renewed before they end and stopped on unlink."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from conftest import add_user, make_context
from zoomcal.app import accounts, channels, due
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import PushSubscription, SyncLogEntry
from zoomcal.web.webhooks import make_app

PUBLIC = "https://zoomcal.example.org"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def wired(world, tmp_path, public_url: str | None = PUBLIC):
    """A context with public_url set, whose receiver (the FastAPI app) gets every sandbox notification in-process."""
    ctx = make_context(world, tmp_path)
    ctx.services.settings.public_url = public_url
    answers = []
    receiver = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services,
                                                                        lambda c, a: answers.append(a))),
                                 base_url=PUBLIC)

    async def deliver(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return await receiver.post(url, headers=headers, content=body)

    for state in (world.google, world.graph, world.zoom):
        state.outbox.deliver = deliver
    return ctx, receiver, answers


async def link(ctx, world, email: str, provider: str):
    info = world.add_user(email, "Ola")
    add_user(ctx, email)
    request = world.link_requests(info, "http://sandbox", provider)[1]
    return info, await accounts.link(ctx, email, provider, request["options"], request["secrets"])


def subscriptions(ctx) -> list[PushSubscription]:
    with ctx.store.session() as s:
        return list(s.scalars(select(PushSubscription).order_by(PushSubscription.id)))


def due_emails(ctx) -> list[str]:
    return [d.email for d in due.pending(ctx)]


def clear_due(ctx) -> None:
    for d in due.pending(ctx):
        due.clear(ctx, d)


# --- Google ------------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_google_channel_from_link_to_due_sync_renewal_and_unlink(world, tmp_path):
    ctx, receiver, answers = wired(world, tmp_path)
    _info, linked = await link(ctx, world, "ola@example.com", "google")
    assert linked.push == "push channel created"
    [channel] = world.google.channels.values()
    [row] = subscriptions(ctx)
    assert channel["address"] == f"{PUBLIC}/webhooks/google" and channel["id"] == row.channel_id
    assert row.resource_id == channel["resourceId"] and row.token != channel["token"].encode()   # sealed
    assert ctx.vault.open(row.token)["token"] == channel["token"]
    # the `sync` message came at creation and was answered 200 without marking anyone
    [sync_message] = world.google.outbox.sent
    assert sync_message.headers["X-Goog-Resource-State"] == "sync" and sync_message.status == 200
    assert due_emails(ctx) == []

    await SandboxActor(world, transport=world.transport()).google_insert(
        "ola@example.com", summary="Dentist", start={"dateTime": "2026-12-01T10:00:00Z"},
        end={"dateTime": "2026-12-01T11:00:00Z"})
    change = world.google.outbox.sent[-1]
    assert change.headers["X-Goog-Resource-State"] == "exists" and change.status == 200
    assert answers[-1].marked == [("default", "ola@example.com")]
    assert due_emails(ctx) == ["ola@example.com"]
    assert [j.args["user"] for j in ctx.services.jobs.pending() if j.name == "sync"] == ["ola@example.com"]

    # forged: a known channel with a wrong token, or the right token on another resource
    clear_due(ctx)
    forged = {**change.headers, "X-Goog-Channel-Token": "guess"}
    answer = await receiver.post("/webhooks/google", headers=forged)
    assert answer.status_code == 401 and "token" in answer.json()["error"]
    other = {**change.headers, "X-Goog-Resource-ID": "another-resource"}
    assert (await receiver.post("/webhooks/google", headers=other)).status_code == 401
    unknown = {**change.headers, "X-Goog-Channel-ID": "not-ours"}
    assert (await receiver.post("/webhooks/google", headers=unknown)).status_code == 401
    assert (await receiver.post("/webhooks/google", headers={})).status_code == 401
    assert due_emails(ctx) == []

    # renewal: nothing is due a week ahead; with a longer horizon a new channel replaces the old one
    assert (await channels.renew_due(ctx)).renewed == 0
    counts = await channels.renew_due(ctx, ahead=timedelta(days=8))
    assert (counts.renewed, counts.failed) == (1, 0)
    [fresh] = world.google.channels.values()
    [row] = subscriptions(ctx)
    assert fresh["id"] != channel["id"] and row.channel_id == fresh["id"] and row.renewed_at is not None
    assert (await receiver.post("/webhooks/google", headers=change.headers)).status_code == 401   # old one gone

    # unlink stops the channel at Google and forgets it
    unlinked = await accounts.unlink(ctx, linked.id)
    assert unlinked.push == ["push channel stopped"]
    assert world.google.channels == {} and subscriptions(ctx) == []


@pytest.mark.anyio
async def test_without_public_url_no_channel_is_made_and_the_link_says_so(world, tmp_path):
    ctx, _receiver, _answers = wired(world, tmp_path, public_url=None)
    _info, linked = await link(ctx, world, "ola@example.com", "google")
    assert "no public_url" in linked.push and linked.status == "ok"
    assert world.google.channels == {} and subscriptions(ctx) == []
    assert (await channels.renew_due(ctx)).skipped == "no public_url is set"
    # set later: the renewal round creates the missing channel
    ctx.services.settings.public_url = PUBLIC
    assert (await channels.renew_due(ctx)).created == 1
    assert len(world.google.channels) == 1 and len(subscriptions(ctx)) == 1


# --- Graph -------------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_graph_subscription_handshake_notifications_and_unlink(world, tmp_path):
    ctx, receiver, answers = wired(world, tmp_path)
    info, linked = await link(ctx, world, "ola@example.com", "graph")
    assert linked.push == "push channel created"
    [sub] = world.graph.subscriptions.values()
    [row] = subscriptions(ctx)
    assert sub["id"] == row.channel_id and sub["changeType"] == "created,updated,deleted"
    calendar_id = info["graph_calendar_id"].partition("/")[2]     # opaque, quoted in the path
    assert unquote(sub["resource"]) == f"users/ola@example.com/calendars/{calendar_id}/events"
    assert sub["notificationUrl"] == sub["lifecycleNotificationUrl"] == f"{PUBLIC}/webhooks/graph"
    assert ctx.vault.open(row.token)["token"] == sub["clientState"]
    # both URLs were validated: the token came back as text/plain
    handshakes = world.graph.outbox.sent
    assert len(handshakes) == 2 and all("validationToken=" in h.url for h in handshakes)
    assert all(h.status == 200 and h.content_type.startswith("text/plain") and h.answer in h.url
               for h in handshakes)
    direct = await receiver.post("/webhooks/graph?validationToken=abc%20def")
    assert direct.text == "abc def" and direct.headers["content-type"].startswith("text/plain")

    event = await SandboxActor(world, transport=world.transport()).graph_insert(
        "ola@example.com", subject="Dentist", start={"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
        end={"dateTime": "2026-12-01T11:00:00", "timeZone": "UTC"})
    note = world.graph.outbox.sent[-1]
    assert note.status == 202 and event["id"] in note.body.decode()
    assert due_emails(ctx) == ["ola@example.com"] and answers[-1].marked == [("default", "ola@example.com")]

    # a wrong clientState is refused; in a batch only the wrong item is
    clear_due(ctx)
    good = {"subscriptionId": sub["id"], "clientState": sub["clientState"], "changeType": "updated"}
    bad = {**good, "clientState": "forged"}
    answer = await receiver.post("/webhooks/graph", json={"value": [bad]})
    assert answer.status_code == 401 and "clientState" in answer.json()["error"]
    assert due_emails(ctx) == []
    stranger = {**good, "subscriptionId": "not-ours"}
    assert (await receiver.post("/webhooks/graph", json={"value": [stranger]})).status_code == 401
    assert (await receiver.post("/webhooks/graph", content=b"not json")).status_code == 401
    mixed = await receiver.post("/webhooks/graph", json={"value": [bad, good]})
    assert mixed.status_code == 202 and mixed.json()["refused"] == 1 and due_emails(ctx) == ["ola@example.com"]

    unlinked = await accounts.unlink(ctx, linked.id)
    assert unlinked.push == ["push channel stopped"]
    assert world.graph.subscriptions == {} and subscriptions(ctx) == []


@pytest.mark.anyio
async def test_graph_lifecycle_events(world, tmp_path):
    ctx, _receiver, _answers = wired(world, tmp_path)
    await link(ctx, world, "ola@example.com", "graph")
    [sub] = world.graph.subscriptions.values()
    ctx.services.jobs.pending()

    # reauthorizationRequired: flagged and a renewal job queued; the renewal PATCHes the same subscription
    before = sub["expirationDateTime"]
    world.graph.subscriptions[sub["id"]]["expirationDateTime"] = "2000-01-01T00:00:00Z"   # to see the PATCH
    delivered = await world.graph.lifecycle(sub["id"], "reauthorizationRequired")
    assert delivered.status == 202 and due_emails(ctx) == []
    assert [j.name for j in ctx.services.jobs.pending()] == ["channels"]
    assert subscriptions(ctx)[0].status == "renew"
    counts = await channels.renew_due(ctx)
    assert (counts.renewed, counts.created) == (1, 0)
    [row] = subscriptions(ctx)
    assert row.status == "active" and row.channel_id == sub["id"]
    assert world.graph.subscriptions[sub["id"]]["expirationDateTime"] >= before[:19]

    # missed: a resync is due
    await world.graph.lifecycle(sub["id"], "missed")
    assert due_emails(ctx) == ["ola@example.com"]
    clear_due(ctx)

    # subscriptionRemoved: the owner syncs, and the renewal round makes a new subscription
    await world.graph.lifecycle(sub["id"], "subscriptionRemoved")
    assert due_emails(ctx) == ["ola@example.com"] and world.graph.subscriptions == {}
    assert (await channels.renew_due(ctx)).created == 1
    [fresh] = world.graph.subscriptions.values()
    [row] = subscriptions(ctx)
    assert fresh["id"] != sub["id"] and row.channel_id == fresh["id"] and row.status == "active"
    assert ctx.vault.open(row.token)["token"] == fresh["clientState"]

    # renewal before expiry: a subscription ending within the margin is extended in place
    world.graph.subscriptions[fresh["id"]]["expirationDateTime"] = "2000-01-01T00:00:00Z"
    assert (await channels.renew_due(ctx, ahead=timedelta(days=8))).renewed == 1
    assert world.graph.subscriptions[fresh["id"]]["expirationDateTime"] > "2026"


@pytest.mark.anyio
async def test_a_graph_endpoint_that_fails_the_handshake_does_not_fail_the_link(world, tmp_path):
    ctx, _receiver, _answers = wired(world, tmp_path)

    async def silent(url, headers, body):
        return httpx.Response(200, json={"not": "the token"})

    world.graph.outbox.deliver = silent
    _info, linked = await link(ctx, world, "ola@example.com", "graph")
    assert linked.status == "ok" and "could not create the push channel" in linked.push
    assert world.graph.subscriptions == {} and subscriptions(ctx) == []
    with ctx.store.session() as s:
        assert any("push channel" in e.message for e in s.scalars(select(SyncLogEntry)))


@pytest.mark.anyio
async def test_graph_refuses_a_subscription_longer_than_its_limit(world):
    info = world.add_user("ola@example.com")
    token = world.graph.tokens.issue("ola@example.com")["access_token"]
    async with httpx.AsyncClient(transport=world.transport(), base_url="http://sandbox/graph/v1.0") as client:
        answer = await client.post("/subscriptions", headers={"Authorization": f"Bearer {token}"}, json={
            "changeType": "created", "notificationUrl": f"{PUBLIC}/x", "clientState": "s",
            "resource": f"users/{info['email']}/events", "expirationDateTime": "2099-01-01T00:00:00Z"})
    assert answer.status_code == 400 and "10080 minutes" in answer.json()["error"]["message"]


@pytest.mark.anyio
async def test_a_graph_notification_of_a_version_zoomcal_holds_marks_nobody(world, tmp_path):
    """Graph names the changed event and its etag. When the store already holds that version (zoomcal wrote it,
    or read it before the notification came, as Graph's come seconds later), nobody is marked due; a later
    change is."""
    from conftest import sync_first_pair
    from zoomcal.sync.engine import SyncEngine

    ctx, _receiver, answers = wired(world, tmp_path)
    await link(ctx, world, "ola@example.com", "graph")
    world.graph.outbox.hold = True             # delivered later, as Graph does
    actor = SandboxActor(world, transport=world.transport())
    event = await actor.graph_insert(
        "ola@example.com", subject="Dentist", start={"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
        end={"dateTime": "2026-12-01T11:00:00", "timeZone": "UTC"})
    assert (await sync_first_pair(ctx, SyncEngine(ctx.store))).status == "ok"
    clear_due(ctx)
    [late] = await world.graph.outbox.release()
    assert late.status == 202 and event["id"] in late.body.decode()
    assert answers[-1].marked == [] and due_emails(ctx) == []
    await actor.graph_patch("ola@example.com", event["id"], subject="Dentist (moved)")
    [changed] = await world.graph.outbox.release()
    assert changed.status == 202 and answers[-1].marked == [("default", "ola@example.com")]
    assert due_emails(ctx) == ["ola@example.com"]
    ctx.store.dispose()
