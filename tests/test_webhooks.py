"""Zoom webhooks: signatures, the URL challenge, who a notification names, and a sync that follows in seconds."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from conftest import add_account, add_user, link_sandbox_zoom, make_context
from zoomcal.app.push import owners
from zoomcal.connectors.spec import PushRefused, PushTarget
from zoomcal.connectors.zoom.push import handshake, verify, zoom_signature
from zoomcal.web.webhooks import make_app

SECRET = "whsec-test"


def signed(body: dict, secret: str = SECRET, at: float | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    stamp = str(int(at if at is not None else time.time()))
    return raw, {"x-zm-request-timestamp": stamp, "x-zm-signature": zoom_signature(secret, stamp, raw),
                 "content-type": "application/json"}


EVENT = {"event": "calendar.event_update", "event_ts": 1626230691572,
         "payload": {"account_id": "A", "operator": "ola@example.com",
                     "object": {"resource_id": "ola@example.com", "event_id": "y95rj3e0i54dbz8hstc2q5qoa1"}}}


def test_signature_is_zooms_hmac_of_version_timestamp_and_body():
    raw, headers = signed(EVENT, at=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"v0:1700000000:" + raw, hashlib.sha256).hexdigest()
    assert headers["x-zm-signature"] == "v0=" + expected
    assert verify(SECRET, headers, raw, now=1_700_000_010)["event"] == "calendar.event_update"


@pytest.mark.parametrize("tamper, reason", [
    (lambda raw, h: (raw, {}), "unsigned"),
    (lambda raw, h: (raw.replace(b"ola", b"eve"), h), "signature"),
    (lambda raw, h: (raw, {**h, "x-zm-request-timestamp": str(int(h["x-zm-request-timestamp"]) - 3600)}),
     "replay"),
])
def test_tampered_or_stale_notifications_are_refused(tamper, reason):
    raw, headers = signed(EVENT)
    raw, headers = tamper(raw, headers)
    with pytest.raises(PushRefused, match=reason):
        verify(SECRET, headers, raw, now=time.time())
    body, headers = b"not json", {}
    stamp = str(int(time.time()))
    headers = {"x-zm-request-timestamp": stamp, "x-zm-signature": zoom_signature(SECRET, stamp, body)}
    with pytest.raises(PushRefused, match="not JSON"):
        verify(SECRET, headers, body, now=time.time())


def test_url_validation_answer():
    answer = handshake(SECRET, {"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6"}})
    assert answer == {"plainToken": "qgg8vlvZRS6",
                      "encryptedToken": hmac.new(SECRET.encode(), b"qgg8vlvZRS6", hashlib.sha256).hexdigest()}
    assert handshake(SECRET, EVENT) is None


def _zoom_calendar(ctx, world, email: str) -> None:
    add_account(ctx, email, "zoom-calendar", {"api_base": "http://sandbox/zoom/v2",
                                              "token_url": "http://sandbox/zoom/oauth/token"},
                {"client_id": world.zoom.client_id, "client_secret": world.zoom.client_secret,
                 "account_id": world.zoom.account_id}, email)


def _zoom_pushing_to_zoomcal(world, tmp_path, secret: str):
    """A context whose web app receives the Zoom sandbox's webhooks (in process), with Ola's Zoom linked."""
    ctx = make_context(world, tmp_path)
    ctx.services.settings.zoom_webhook_secret = secret
    receiver = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services)), base_url="https://zoomcal")

    async def deliver(url, headers, body):
        return await receiver.post(url, headers=headers, content=body)

    world.zoom.webhook_url, world.zoom.outbox.deliver = "https://zoomcal/webhooks/zoom", deliver
    info = world.add_user("ola@example.com", "Ola")
    add_user(ctx, "ola@example.com")
    link_sandbox_zoom(ctx, world, "ola@example.com", info)
    return ctx, info


@pytest.mark.anyio
async def test_receiver_marks_the_owners_sync_as_due_and_refuses_bad_ones(world, tmp_path):
    ctx = make_context(world, tmp_path)
    ctx.services.settings.zoom_webhook_secret = SECRET
    info = world.add_user("ola@example.com", "Ola")
    add_user(ctx, "ola@example.com")
    link_sandbox_zoom(ctx, world, "ola@example.com", info)
    _zoom_calendar(ctx, world, "ola@example.com")
    answers = []
    client = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services, lambda c, a: answers.append(a))),
                               base_url="http://zoomcal")
    raw, headers = signed(EVENT)
    assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()["acted"] is True
    jobs = ctx.services.jobs.pending()
    assert [(j.name, j.args["user"]) for j in jobs] == [("sync", "ola@example.com")]
    meeting = {"event": "meeting.updated", "payload": {"object": {"id": 81234567890, "host_id": info["zoom_user_id"]}}}
    raw, headers = signed(meeting)
    assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()["acted"] is True
    assert len(ctx.services.jobs.pending()) == 1
    stranger = {"event": "meeting.updated", "payload": {"object": {"id": 1, "host_id": "someone-else"}}}
    raw, headers = signed(stranger)
    assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()["acted"] is False
    raw, headers = signed({"event": "recording.completed", "payload": {}})
    assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()["acted"] is False
    raw, headers = signed(EVENT, secret="someone-else")
    answer = await client.post("/webhooks/zoom", content=raw, headers=headers)
    assert answer.status_code == 401 and "signature" in answer.json()["error"]
    assert answers[-1].refused and not ctx.services.jobs.pending()
    raw, headers = signed({"event": "endpoint.url_validation", "payload": {"plainToken": "abc"}})
    assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()["plainToken"] == "abc"
    assert (await client.post("/webhooks/nowhere", content=raw, headers=headers)).status_code == 404
    huge = await client.post("/webhooks/zoom", content=b"x" * (300 * 1024), headers=headers)
    assert huge.status_code == 413


@pytest.mark.anyio
async def test_a_burst_is_recorded_in_few_transactions_and_one_bad_notification_fails_alone(world, tmp_path,
                                                                                          monkeypatch):
    """Notifications that arrive while a batch is written share the next transaction; when a batch fails, each of
    its notifications is tried alone, so only the one that fails is answered with an error (the sender retries it)
    and every other one is marked and acknowledged."""
    from sqlalchemy import select

    from zoomcal.app import push
    from zoomcal.store.models import SyncDue, User

    ctx = make_context(world, tmp_path)
    ctx.services.settings.zoom_webhook_secret = SECRET
    hosts = {}
    for n in range(12):
        email = f"p{n}@example.com"
        info = world.add_user(email, f"P{n}")
        add_user(ctx, email)
        link_sandbox_zoom(ctx, world, email, info)
        hosts[email] = info["zoom_user_id"]
    batches, real_record = [], push.record

    def record(services, batch):
        batches.append(len(batch))
        if any(v.event["payload"]["object"]["id"] == 13 for v in batch):
            raise RuntimeError("the store refused this one")
        return real_record(services, batch)

    monkeypatch.setattr(push, "record", record)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services), raise_app_exceptions=False),
                               base_url="http://zoomcal")

    async def send(n: int, host: str) -> int:
        raw, headers = signed({"event": "meeting.updated", "payload": {"object": {"id": n, "host_id": host}}})
        return (await client.post("/webhooks/zoom", content=raw, headers=headers)).status_code

    statuses = await asyncio.gather(*(send(n, host) for n, host in enumerate(hosts.values(), start=10)))
    assert statuses.count(500) == 1 and statuses[3] == 500 and statuses.count(200) == 11
    assert max(batches) > 1 and len(batches) < 12 + 12        # batched, then the failing batch one by one
    with ctx.store.session() as s:
        due = set(s.scalars(select(User.email).join(SyncDue, SyncDue.user_id == User.id)))
    assert due == set(hosts) - {"p3@example.com"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_a_notification_names_its_owner(world, tmp_path):
    from conftest import sync_first_pair
    from zoomcal.sandbox.actor import SandboxActor
    from zoomcal.sync.engine import SyncEngine

    ctx = make_context(world, tmp_path)
    info = world.add_user("ola@example.com", "Ola")
    add_user(ctx, "ola@example.com")
    link_sandbox_zoom(ctx, world, "ola@example.com", info)
    _zoom_calendar(ctx, world, "ola@example.com")
    assert owners(ctx, PushTarget("zoom-calendar", calendar="ola@example.com")) == ["ola@example.com"]
    assert owners(ctx, PushTarget("zoom", calendar=info["zoom_user_id"])) == ["ola@example.com"]
    assert owners(ctx, PushTarget("zoom-calendar", calendar="stranger@example.com")) == []
    assert owners(ctx, PushTarget("google", calendar="ola@example.com")) == []     # the provider matters
    meeting = await SandboxActor(world, transport=world.transport()).zoom_create(
        info["zoom_user_id"], topic="Sync", type=2, start_time="2026-12-01T10:00:00Z", duration=30)
    assert owners(ctx, PushTarget("zoom", item=str(meeting["id"]))) == []        # not synced yet
    await sync_first_pair(ctx, SyncEngine(ctx.store))
    assert owners(ctx, PushTarget("zoom", item=str(meeting["id"]))) == ["ola@example.com"]


def test_sync_loop_runs_the_owner_within_seconds_of_a_webhook(served_world, tmp_path):
    """`zoomcal sync --webhooks-port`: with a 10-minute interval, a signed calendar.event_update makes the owner's
    calendar sync at once; a forged one is refused, with a security line on stderr and nothing written to the
    store."""
    from zoomcal.sandbox.server import free_port

    world, base = served_world
    info = world.add_user("ola@example.com", "Ola", "Europe/Oslo")
    env = {**os.environ, "ZOOMCAL_DATA_DIR": str(tmp_path), "ZOOMCAL_ZOOM_WEBHOOK_SECRET": SECRET,
           "ZS": world.zoom.client_secret}
    env.pop("ZOOMCAL_DATABASE_URL", None)

    def zc(*args):
        return subprocess.run([sys.executable, "-m", "zoomcal", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    assert zc("init").returncode == 0 and zc("user", "add", "ola@example.com").returncode == 0
    linked = zc("account", "add", "zoom-calendar", "--user", "ola@example.com", "--client-id", world.zoom.client_id,
                "--client-secret-env", "ZS", "--account-id", world.zoom.account_id, "--api-base", f"{base}/zoom/v2",
                "--token-url", f"{base}/zoom/oauth/token")
    assert linked.returncode == 0, linked.stdout + linked.stderr
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zoomcal", "sync", "--interval", "600", "--webhooks-port",
                             str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def next_run() -> str:
        while "ola@example.com:" not in (line := proc.stdout.readline()):
            assert line, proc.stderr.read()
        return line

    try:
        assert "ola@example.com: ok" in next_run()          # the first round
        token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
        httpx.post(f"{base}/zoom/v2/calendars/ola@example.com/events", headers={"Authorization": f"Bearer {token}"},
                   json={"summary": "Dentist", "start": {"dateTime": "2026-12-01T10:00:00Z"},
                         "end": {"dateTime": "2026-12-01T11:00:00Z"}})
        for _ in range(100):   # the receiver is up once it answers
            try:
                forged = httpx.post(f"http://127.0.0.1:{port}/webhooks/zoom", content=b"{}",
                                    headers={"x-zm-signature": "v0=00", "x-zm-request-timestamp": "1"})
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert forged.status_code == 401
        raw, headers = signed(EVENT)
        started = time.monotonic()
        assert httpx.post(f"http://127.0.0.1:{port}/webhooks/zoom", content=raw, headers=headers).json()["acted"]
        assert "ola@example.com: ok" in next_run() and time.monotonic() - started < 20
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "push_refused" in proc.stderr.read()
    events = json.loads(zc("events", "--user", "ola@example.com", "--json").stdout)
    assert [e["title"] for e in events] == ["Dentist"]
    log = " ".join(zc("log").stdout.split())
    assert "refused" not in log and info["zoom_user_id"] not in log


def test_during_a_rotation_every_secret_verifies_and_the_first_answers_the_challenge():
    setting = "whsec-new, whsec-old"
    for secret in ("whsec-new", "whsec-old"):
        raw, headers = signed(EVENT, secret=secret)
        assert verify(setting, headers, raw, now=time.time())["event"] == "calendar.event_update"
    raw, headers = signed(EVENT, secret="whsec-retired")
    with pytest.raises(PushRefused, match="signature"):
        verify(setting, headers, raw, now=time.time())
    answer = handshake(setting, {"event": "endpoint.url_validation", "payload": {"plainToken": "p"}})
    assert answer["encryptedToken"] == hmac.new(b"whsec-new", b"p", hashlib.sha256).hexdigest()


@pytest.mark.anyio
async def test_sandbox_webhooks_verify_and_presence_set_by_hand_is_respected(world, tmp_path):
    """The Zoom sandbox signs its webhooks with the app's secret token; zoomcal verifies them (here during a
    rotation), marks the host's sync due with Zoom's event time, and a status the person sets by hand is left
    alone by the presence driver until their calendar state changes."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from zoomcal.app import due
    from zoomcal.app.presence import driver
    from zoomcal.availability import intervals
    from zoomcal.domain.content import make_content
    from zoomcal.domain.timeutil import fmt_instant
    from zoomcal.sandbox.actor import SandboxActor
    from zoomcal.store import repo
    from zoomcal.store.models import PresenceState, User

    world.zoom.presence_min_interval = 0
    ctx, info = _zoom_pushing_to_zoomcal(world, tmp_path, f"whsec-next,{world.zoom.webhook_secret}")

    await SandboxActor(world, transport=world.transport()).zoom_create(
        info["zoom_user_id"], topic="Sync", type=2, start_time="2026-12-01T10:00:00Z", duration=30)
    sent = world.zoom.outbox.sent[-1]
    assert b'"meeting.created"' in sent.body and sent.status == 200 and '"acted":true' in sent.answer
    [mark] = due.pending(ctx)
    assert mark.email == "ola@example.com" and mark.changed_at is not None
    assert abs((mark.changed_at.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()) < 60

    # the person is in a calendar event now
    now = datetime.now(UTC).replace(microsecond=0)
    with ctx.store.transaction() as s:
        user = s.scalars(select(User)).one()
        content = make_content(title="Review", start=fmt_instant(now - timedelta(minutes=10)),
                               end=fmt_instant(now + timedelta(minutes=30)), show_as="busy")
        repo.upsert_event(s, user.tenant_id, user.id, "review", content)
        s.flush()
        intervals.refresh_events(s, user.tenant_id, user.id, {"review": content}, now - timedelta(days=1),
                                 now + timedelta(days=1), "UTC")
        s.expunge(user)
    zoom_user = world.zoom.users[info["zoom_user_id"]]
    first = await driver(ctx).evaluate(user, now)
    assert first.written and zoom_user["_presence"] == "In_Calendar_Event"
    # zoomcal's own write came back as a notification: not taken for a choice
    assert b"presence_status_updated" in world.zoom.outbox.sent[-1].body
    with ctx.store.session() as s:
        assert s.get(PresenceState, user.id).manual_since is None

    async with httpx.AsyncClient(transport=world.transport(), base_url="http://sandbox") as person:
        assert (await person.post(f"/zoom/sandbox/users/{info['zoom_user_id']}/presence",
                                  json={"status": "Away"})).status_code == 204
    assert world.zoom.outbox.sent[-1].status == 200
    with ctx.store.session() as s:
        state = s.get(PresenceState, user.id)
        assert state.manual_since is not None and state.restore_to is None
    # a fresh driver (nothing in memory but the store) leaves the status the person chose
    later = await driver(ctx).evaluate(user, now + timedelta(minutes=1))
    assert not later.written and "by hand" in later.decision.reason and zoom_user["_presence"] == "Away"
    # once the event is over the rules apply again, and there is nothing of before to put back over it
    after = await driver(ctx).evaluate(user, now + timedelta(minutes=31))
    assert not after.written and zoom_user["_presence"] == "Away"


@pytest.mark.anyio
async def test_zooms_calendar_notifies_its_event_changes_and_their_owner_becomes_due(world, tmp_path):
    """The Zoom calendar sandbox signs `calendar.event_create` / `_update` / `_delete` for every change of an
    event, naming the calendar as the resource; zoomcal marks the calendar's owner due on each."""
    from zoomcal.app import due

    ctx, _info = _zoom_pushing_to_zoomcal(world, tmp_path, world.zoom.webhook_secret)
    _zoom_calendar(ctx, world, "ola@example.com")
    token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
    async with httpx.AsyncClient(transport=world.transport(), base_url="http://sandbox/zoom/v2/calendars",
                                 headers={"Authorization": f"Bearer {token}"}) as zoom:
        created = (await zoom.post("/ola@example.com/events", json={
            "summary": "Dentist", "start": {"dateTime": "2026-12-01T10:00:00Z"},
            "end": {"dateTime": "2026-12-01T11:00:00Z"}})).json()
        await zoom.patch(f"/ola@example.com/events/{created['id']}", json={"summary": "Dentist (moved)"})
        await zoom.delete(f"/ola@example.com/events/{created['id']}")
        assert (await zoom.get("/ola@example.com/events")).status_code == 200     # a read notifies nothing
    sent = [json.loads(d.body) for d in world.zoom.outbox.sent]
    assert [(e["event"], e["payload"]["object"]) for e in sent] == [
        (name, {"resource_id": "ola@example.com", "event_id": created["id"]})
        for name in ("calendar.event_create", "calendar.event_update", "calendar.event_delete")]
    assert all(d.status == 200 and '"acted":true' in d.answer for d in world.zoom.outbox.sent)
    [mark] = due.pending(ctx)
    assert mark.email == "ola@example.com" and mark.marks == 3


@pytest.mark.anyio
async def test_a_flood_of_forged_notifications_writes_nothing_and_logs_a_few_lines(world, tmp_path):
    from prometheus_client import REGISTRY
    from sqlalchemy import func, select
    from structlog.testing import capture_logs

    from zoomcal.store.models import SyncDue, SyncLogEntry

    ctx = make_context(world, tmp_path)
    ctx.services.settings.zoom_webhook_secret = SECRET
    client = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services)), base_url="http://zoomcal")

    def rejected() -> float:
        return REGISTRY.get_sample_value("zoomcal_webhooks_total", {"channel": "zoom", "outcome": "rejected"}) or 0

    from zoomcal.app import push

    push.SECURITY.last.clear()          # earlier tests' refusals do not quiet this one's first line
    before = rejected()
    forged = [signed(EVENT, secret="forged", at=time.time() - 1000 - n) for n in range(60)]   # each its own time
    with capture_logs() as logs:
        answers = await asyncio.gather(*(client.post("/webhooks/zoom", content=raw, headers=headers)
                                         for raw, headers in forged))
    assert {a.status_code for a in answers} == {401}
    assert rejected() - before == 60
    assert 1 <= len([entry for entry in logs if entry["event"] == "push_refused"]) <= 2
    with ctx.store.session() as s:
        assert s.scalar(select(func.count()).select_from(SyncLogEntry)) == 0
        assert s.scalar(select(func.count()).select_from(SyncDue)) == 0


@pytest.mark.anyio
async def test_a_notification_sent_again_is_not_acted_on_twice_unless_the_first_failed(world, tmp_path, monkeypatch):
    from zoomcal.app import due, push

    ctx = make_context(world, tmp_path)
    ctx.services.settings.zoom_webhook_secret = SECRET
    info = world.add_user("ola@example.com", "Ola")
    add_user(ctx, "ola@example.com")
    link_sandbox_zoom(ctx, world, "ola@example.com", info)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services), raise_app_exceptions=False),
                               base_url="http://zoomcal")
    raw, headers = signed({"event": "meeting.updated", "event_ts": int(time.time() * 1000),
                           "payload": {"object": {"id": 5, "host_id": info["zoom_user_id"]}}})
    first = (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()
    again = (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()
    assert first["acted"] is True and again == {"received": "meeting.updated", "acted": False, "repeated": True}
    assert [m.marks for m in due.pending(ctx)] == [1]

    real = push._mark_owners
    monkeypatch.setattr(push, "_mark_owners", lambda *a: (_ for _ in ()).throw(RuntimeError("store down")))
    raw, headers = signed({"event": "meeting.updated", "event_ts": int(time.time() * 1000) + 1,
                           "payload": {"object": {"id": 6, "host_id": info["zoom_user_id"]}}})
    assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).status_code == 500
    monkeypatch.setattr(push, "_mark_owners", real)
    assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()["acted"] is True   # the retry
    assert [m.marks for m in due.pending(ctx)] == [2]


@pytest.mark.anyio
async def test_a_zoom_account_linked_by_e_mail_is_found_by_its_zoom_user_id(world, tmp_path):
    """Linking by e-mail (the README's way) stores the Zoom user id the provider answers with, so a notification
    naming the host by id marks the right person; one naming nobody zoomcal knows acts on nothing."""
    from zoomcal.app import accounts, due

    ctx = make_context(world, tmp_path)
    ctx.services.settings.zoom_webhook_secret = SECRET
    info = world.add_user("ola@example.com", "Ola")
    add_user(ctx, "ola@example.com")
    await accounts.link(ctx, "ola@example.com", "zoom",
                        {"api_base": "http://sandbox/zoom/v2", "token_url": "http://sandbox/zoom/oauth/token",
                         "client_id": world.zoom.client_id, "account_id": world.zoom.account_id},
                        {"client_secret": world.zoom.client_secret})
    client = httpx.AsyncClient(transport=httpx.ASGITransport(make_app(ctx.services)), base_url="http://zoomcal")
    for host, acted in ((info["zoom_user_id"], True), ("someone-else", False)):
        raw, headers = signed({"event": "meeting.created", "event_ts": int(time.time() * 1000),
                               "payload": {"object": {"id": 99, "host_id": host}}})
        assert (await client.post("/webhooks/zoom", content=raw, headers=headers)).json()["acted"] is acted
    assert [m.email for m in due.pending(ctx)] == ["ola@example.com"]
