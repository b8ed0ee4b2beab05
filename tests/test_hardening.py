"""What a stored copy must never hold, and other things a careful operator expects."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from conftest import link_sandbox_user, make_context
from zoomcal.app import sync as app_sync
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import RemoteItem

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_the_hosts_start_link_is_never_stored(world, tmp_path):
    """Zoom answers every meeting with `start_url` (it starts the meeting as its host) and the passcode in other
    forms; the raw mirror keeps what sync reads, never those. The passcode itself goes into the calendar."""
    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        actor = SandboxActor(world, transport=world.transport())
        made = await actor.zoom_create(info["zoom_user_id"], topic="Board", type=2,
                                       start_time="2026-12-10T09:00:00Z", duration=30)
        assert "start_url" in world.zoom.meetings[made["id"]] or "start_url" in made
        await app_sync.run(ctx)
        with ctx.store.session() as s:
            raws = [json.dumps(r) for r in s.scalars(select(RemoteItem.raw))]
        zoom_raws = [r for r in raws if '"join_url"' in r]
        assert zoom_raws and not any("start_url" in r or "pstn_password" in r for r in zoom_raws)
        assert all('"password"' in r for r in zoom_raws)            # the passcode invitees need is kept
    finally:
        await ctx.services.aclose()
        ctx.services.close()


def test_an_upgrade_forgets_host_links_stored_before(any_db):
    """Mirrors written before the change are scrubbed by the migration, on both backends."""
    from alembic import command

    from zoomcal.store.db import alembic_config
    from zoomcal.store.models import Account, Calendar, Tenant, User

    with any_db.transaction() as s:
        tenant = Tenant(name="t")
        s.add(tenant)
        s.flush()
        user = User(tenant_id=tenant.id, email="a@example.com", name="A")
        s.add(user)
        s.flush()
        account = Account(tenant_id=tenant.id, user_id=user.id, provider="zoom", config={})
        s.add(account)
        s.flush()
        cal = Calendar(tenant_id=tenant.id, user_id=user.id, account_id=account.id, remote_id="u1", name="Zoom")
        s.add(cal)
        s.flush()
        s.add(RemoteItem(calendar_id=cal.id, remote_id="1", series_id="1",
                         raw={"id": 1, "join_url": "j", "password": "p", "start_url": "https://host/secret"}))
    cfg = alembic_config(any_db.url)
    with any_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
        command.upgrade(cfg, "head")
    with any_db.session() as s:
        assert s.scalars(select(RemoteItem.raw)).one() == {"id": 1, "join_url": "j", "password": "p"}
