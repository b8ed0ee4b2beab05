"""Tenants are walls: two organisations that both have ada@example.com; every application operation run in one
of them reads nothing of the other and leaves the other's rows exactly as they were (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from conftest import SANDBOX, _fresh_pg, make_context
from zoomcal.app import accounts, admin, availability, due, presence, push, settings, sync, users
from zoomcal.app.context import CLI
from zoomcal.app.errors import ConflictError
from zoomcal.connectors.spec import PushTarget
from zoomcal.connectors.zoom.push import zoom_signature
from zoomcal.domain.timeutil import now_utc
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.db import Database, TenantBreach
from zoomcal.store.models import Base, Event, TenantOwned, User

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tenants.db'}"
    db = _fresh_pg(request.getfixturevalue("pg_schema_url"))
    url = db.url
    db.dispose()
    return url


def snapshot(db: Database, tenant_id: int) -> str:
    """Every row that belongs to the tenant, in every table (directly, or through its users and calendars)."""
    out = {}
    with db.engine.connect() as conn:
        users_of = [r[0] for r in conn.execute(sa.text("select id from users where tenant_id = :t"), {"t": tenant_id})]
        calendars = [r[0] for r in conn.execute(sa.text("select id from calendars where tenant_id = :t"),
                                                {"t": tenant_id})]
        for table in Base.metadata.sorted_tables:
            cols = table.c
            if "tenant_id" in cols:
                query = sa.select(table).where(cols.tenant_id == tenant_id)
            elif "user_id" in cols:
                query = sa.select(table).where(cols.user_id.in_(users_of or [-1]))
            elif "calendar_id" in cols:
                query = sa.select(table).where(cols.calendar_id.in_(calendars or [-1]))
            elif table.name == "tenants":
                query = sa.select(table).where(cols.id == tenant_id)
            elif table.name == "sign_in_failures":
                continue        # counted before anyone is signed in (per address and client): no tenant's
            else:
                raise AssertionError(f"table {table.name} belongs to no tenant")
            out[table.name] = sorted(json.dumps(dict(r._mapping), default=str, sort_keys=True)
                                     for r in conn.execute(query))
    return json.dumps(out, sort_keys=True)


async def arrange(ctx, world, sandbox_email: str, name: str, title: str) -> dict:
    """Ada (the same address in both tenants) with Zoom and Google linked, synced, a booking and a conflict."""
    info = world.add_user(sandbox_email, name, "Europe/London")
    users.add(ctx, "ada@example.com", name)
    for link in world.link_requests(info, SANDBOX, "google"):
        await accounts.link(ctx, "ada@example.com", link["provider"], link["options"], link["secrets"])
    actor = SandboxActor(world, transport=world.transport())
    meeting = await actor.zoom_create(info["zoom_user_id"], topic=f"{title} meeting", type=2,
                                      start_time="2026-12-10T09:00:00Z", duration=30)
    await actor.google_insert(info["google_calendar_id"], summary=f"{title} dentist",
                              start={"dateTime": "2026-12-11T09:00:00Z"}, end={"dateTime": "2026-12-11T10:00:00Z"})
    settings.update(ctx, "ada@example.com", timezone="Europe/London", working_hours="mon-sun 00:00-23:59")
    await sync.run(ctx)
    await actor.zoom_patch(meeting["id"], topic=f"{title} meeting (zoom)")
    event = actor.google_find(info["google_calendar_id"], f"{title} meeting")
    await actor.google_patch(info["google_calendar_id"], event["id"], summary=f"{title} meeting (calendar)")
    await sync.run(ctx)
    start = (now_utc() + timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
    availability.book(ctx, "ada@example.com", start, start + timedelta(hours=1), f"{title} booking")
    await sync.run(ctx)
    return info


async def test_no_operation_crosses_tenants(world, tmp_path, database_url):
    acme = make_context(world, tmp_path, database_url, tenant="acme")
    services = acme.services
    admin.add_tenant(services, "globex")
    globex = services.context("globex", CLI)
    theirs = await arrange(globex, world, "ada.globex@sandbox.test", "Ada GLOBEX", "GLOBEX-ONLY")
    for mark in due.pending(globex):     # globex's own booking marked its Ada due: served, as a job would
        assert due.clear(globex, mark)
    before = snapshot(services.db, globex.tenant_id)
    with globex.store.session() as s:
        their_ids = [str(i) for i in s.scalars(sa.select(Event.id))]
    assert len(their_ids) >= 3

    mine = await arrange(acme, world, "ada@example.com", "Ada Acme", "Acme")
    seen: list = []     # everything the operations in acme returned
    seen += [users.add(acme, "bo@example.com", "Bo"), users.list_users(acme), users.get(acme, "ada@example.com"),
             users.rename(acme, "bo@example.com", name="Bo B")]
    assert users.get(acme, "ada@example.com").name == "Ada Acme"
    seen += [accounts.list_accounts(acme), await accounts.health(acme), accounts.providers(acme),
             accounts.needed_secrets(acme, "google", {"client_id": "x"})]
    google = next(a for a in accounts.list_accounts(acme) if a.provider == "google")
    seen.append(await accounts.relink(acme, google.id, {}, {}))
    seen += [settings.get(acme, "ada@example.com"),
             settings.update(acme, "ada@example.com", buffer_after_min=5, timezone="Europe/Berlin")]
    settings.set_presence_rules(acme, {"version": 1})
    settings.set_presence_rules(acme, {"version": 1}, "ada@example.com")
    settings.set_mapping_rules(acme, {"conflict": {"policy": "zoom"}})
    seen += [sync.pairs(acme), await sync.run(acme, dry_run=True), await sync.run(acme), sync.status(acme),
             sync.log(acme, limit=10_000), sync.log(acme, "ada@example.com", after=1), sync.events(acme),
             sync.reviews(acme)]
    (review,) = sync.reviews(acme)
    seen.append(await sync.resolve(acme, review.id, "zoom"))
    sync.note(acme, "note", "an operator's note")
    now = now_utc()
    seen += [availability.busy(acme, "ada@example.com", now - timedelta(days=30), now + timedelta(days=60)),
             availability.slots(acme, ["ada@example.com", "bo@example.com"], 1800, now, now + timedelta(days=3)),
             availability.conflicts(acme, "ada@example.com")]
    with pytest.raises(ConflictError):   # the booking of acme's Ada blocks only acme's Ada
        availability.book(acme, "ada@example.com", *_booking_slot(acme), "Double")
    seen += [await presence.explain(acme, "ada@example.com"), await presence.dry_run(acme, {"version": 1}),
             await presence.run_once(acme)]
    # a notification about globex's calendars marks globex's Ada only; acme does not even see those calendars
    assert push.owners(acme, PushTarget("google", calendar=theirs["google_calendar_id"])) == []
    assert push.owners(acme, PushTarget("zoom", calendar=theirs["zoom_user_id"])) == []
    services.settings.zoom_webhook_secret = "s"
    body = json.dumps({"event": "meeting.updated", "payload": {"object": {"host_id": theirs["zoom_user_id"]}}})
    stamp = str(int(time.time()))
    answer = push.receive(services, "zoom", {"x-zm-request-timestamp": stamp,
                                              "x-zm-signature": zoom_signature("s", stamp, body.encode())},
                          body.encode(), time.time())
    assert answer.marked == [("globex", "ada@example.com")]
    [mark] = due.pending(globex)            # the notification named globex's Ada: her sync, and only hers, is due
    assert mark.email == "ada@example.com" and due.clear(globex, mark)
    for account in accounts.list_accounts(acme):
        seen.append(await accounts.unlink(acme, account.id))
    seen.append(await users.remove(acme, "bo@example.com"))
    seen.append(await users.remove(acme, "ada@example.com"))

    blob = json.dumps([_plain(x) for x in seen], default=str)
    assert "GLOBEX" not in blob and theirs["google_calendar_id"] not in blob and theirs["zoom_user_id"] not in blob
    assert not any(event_id in blob for event_id in their_ids)
    assert snapshot(services.db, globex.tenant_id) == before          # not one row of globex changed
    assert users.get(globex, "ada@example.com").name == "Ada GLOBEX"
    assert mine["zoom_user_id"] not in snapshot(services.db, globex.tenant_id)
    await services.aclose()
    services.close()


def _booking_slot(ctx) -> tuple[datetime, datetime]:
    start = next(e for e in sync.events(ctx) if e.title == "Acme booking").start
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return begin, begin + timedelta(minutes=30)


def _plain(value):
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        try:
            return asdict(value)
        except TypeError:
            return repr(value)
    return value


def test_a_tenant_store_filters_every_query_and_refuses_writes_into_another_tenant(any_db):
    with any_db.transaction() as s:
        s.execute(sa.insert(Base.metadata.tables["tenants"]), [{"name": "a"}, {"name": "b"}])
        a, b = s.execute(sa.text("select id from tenants order by id")).scalars().all()
        s.add_all([User(tenant_id=a, email="x@example.com", name="A"),
                   User(tenant_id=b, email="x@example.com", name="B")])
    store = any_db.for_tenant(a)
    with any_db.session() as s:
        theirs = s.scalar(sa.select(User.id).where(User.tenant_id == b))
    with store.session() as s:
        assert s.scalars(sa.select(User.name)).all() == ["A"]
        assert s.get(User, theirs) is None
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == 1
        assert s.execute(sa.select(User.name).where(User.email == "x@example.com")).scalars().all() == ["A"]
    with store.transaction() as s:
        assert s.execute(sa.update(User).values(name="renamed")).rowcount == 1
        s.execute(sa.delete(User).where(User.name == "B"))
    with any_db.session() as s:
        assert sorted(s.scalars(sa.select(User.name))) == ["B", "renamed"]
    with pytest.raises(TenantBreach), store.transaction() as s:
        s.add(User(tenant_id=b, email="y@example.com"))
    with store.transaction() as s:
        s.add(User(email="z@example.com"))     # no tenant given: it is the store's
    with any_db.session() as s:
        assert s.scalar(sa.select(User.tenant_id).where(User.email == "z@example.com")) == a
    assert all(issubclass(m.class_, TenantOwned) or "tenant_id" not in m.local_table.c
               for m in Base.registry.mappers)
