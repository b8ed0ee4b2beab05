"""The application layer, as the CLI, the portal and the workers use it: linking checked with the provider first,
a provider plugged in from its own folder, unlinking that revokes, re-linking after a refused grant, roles,
the review queue, people."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from conftest import SANDBOX, make_context
from zoomcal.app import accounts, settings, sync, users
from zoomcal.app.context import Actor
from zoomcal.app.errors import ConflictError, ForbiddenError, InvalidError, NeedsReauthError, NotFoundError
from zoomcal.connectors import registry
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import Account, AuditEntry, Event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def ctx(world, tmp_path):
    context = make_context(world, tmp_path)
    yield context
    await context.services.aclose()
    context.services.close()


def google_link(world, info, **secrets):
    options = {"client_id": world.google.client_id, "calendar_id": info["google_calendar_id"],
               "api_base": f"{SANDBOX}/google/calendar/v3", "token_url": f"{SANDBOX}/google/token"}
    return options, {"client_secret": world.google.client_secret, "refresh_token": info["google_refresh_token"],
                     **secrets}


def zoom_user_link(world, info):
    return ({"client_id": world.zoom.client_id, "api_base": f"{SANDBOX}/zoom/v2",
             "token_url": f"{SANDBOX}/zoom/oauth/token"},
            {"client_secret": world.zoom.client_secret, "refresh_token": info["zoom_refresh_token"]})


async def person(ctx, world, email="ada@example.com", name="Ada"):
    info = world.add_user(email, name, "UTC")
    users.add(ctx, email, name)
    return info


async def test_a_link_is_checked_with_the_provider_before_anything_is_stored(ctx, world, tmp_path):
    info = await person(ctx, world)
    options, secrets = google_link(world, info)
    with pytest.raises(InvalidError, match="unknown provider 'gmail'") as bad:
        await accounts.link(ctx, "ada@example.com", "gmail", options, secrets)
    assert bad.value.field == "provider" and "google" in bad.value.message
    with pytest.raises(NeedsReauthError, match="Google refused the credentials"):
        await accounts.link(ctx, "ada@example.com", "google", options, {**secrets, "client_secret": "wrong"})
    with pytest.raises(InvalidError, match="does not take mailbox") as bad:
        await accounts.link(ctx, "ada@example.com", "google", {**options, "mailbox": "x"}, secrets)
    assert bad.value.field == "mailbox"
    with pytest.raises(InvalidError, match="needs refresh_token") as bad:
        await accounts.link(ctx, "ada@example.com", "google", options, {"client_secret": secrets["client_secret"]})
    assert bad.value.field == "refresh_token"
    with pytest.raises(InvalidError, match="could not be read"):
        await accounts.link(ctx, "ada@example.com", "google", {**options, "calendar_id": "nobody@example.com"},
                            secrets)
    with pytest.raises(NotFoundError):
        await accounts.link(ctx, "stranger@example.com", "google", options, secrets)
    with pytest.raises(InvalidError, match="ICS file"):
        await accounts.link(ctx, "ada@example.com", "ics", {"url": str(tmp_path / "missing.ics")}, {})
    (tmp_path / "page.html").write_text("<html>not a calendar</html>")
    with pytest.raises(InvalidError, match="not an iCalendar file"):
        await accounts.link(ctx, "ada@example.com", "ics", {"url": str(tmp_path / "page.html")}, {})
    ctx.services.settings.allow_private_urls = True
    with pytest.raises(InvalidError, match="CalDAV"):
        await accounts.link(ctx, "ada@example.com", "caldav", {"url": "http://127.0.0.1:9/dav/", "username": "a"},
                            {"password": "p"})
    assert accounts.list_accounts(ctx) == []       # none of it was stored
    linked = await accounts.link(ctx, "ada@example.com", "google", options, secrets)
    assert linked.status == "ok" and linked.receives_meetings and linked.name == "Ada"
    with pytest.raises(ConflictError, match="already has this Google calendar"):
        await accounts.link(ctx, "ada@example.com", "google", options, secrets)
    with ctx.store.session() as s:
        sealed = s.scalar(select(Account.secret))
    assert secrets["refresh_token"].encode() not in sealed and secrets["client_secret"].encode() not in sealed


async def test_a_rotated_refresh_token_from_the_check_is_the_one_stored(ctx, world):
    """Zoom rotates refresh tokens on every use: the check at link time uses the one given, so the new one must
    be what is stored, or the first sync would fail with invalid_grant."""
    info = await person(ctx, world)
    options, secrets = zoom_user_link(world, info)
    linked = await accounts.link(ctx, "ada@example.com", "zoom", options, secrets)
    assert linked.calendar == info["zoom_user_id"]           # the e-mail was resolved to the Zoom user id
    assert info["zoom_refresh_token"] not in world.zoom.tokens.refresh    # used once by the check
    with pytest.raises(ConflictError, match="meetings account"):
        await accounts.link(ctx, "ada@example.com", "zoom", options, secrets)
    await accounts.link(ctx, "ada@example.com", "google", *google_link(world, info))
    await SandboxActor(world, transport=world.transport()).zoom_create(
        info["zoom_user_id"], topic="Kickoff", type=2, start_time="2026-12-10T09:00:00Z", duration=30)
    (result,) = [r for r in await sync.run(ctx) if len(r.calendars) == 2]
    assert result.status == "ok" and result.writes == 1, result.errors


async def test_a_provider_plugs_in_from_its_own_folder(ctx, world, monkeypatch):
    """The memory connector's folder exports a spec; naming its module is all it takes to link and sync it."""
    monkeypatch.setenv("ZOOMCAL_EXTRA_PROVIDERS", "zoomcal.connectors.memory")
    try:
        from zoomcal.connectors.memory.spec import calendar

        info = await person(ctx, world)
        await accounts.link(ctx, "ada@example.com", "zoom", *zoom_user_link(world, info))
        linked = await accounts.link(ctx, "ada@example.com", "memory", {"name": "team"}, {})
        assert linked.receives_meetings and linked.label == "Memory"
        await SandboxActor(world, transport=world.transport()).zoom_create(
            info["zoom_user_id"], topic="Plugged in", type=2, start_time="2026-12-10T09:00:00Z", duration=30)
        calendar("team").put({"title": "From memory", "start": "2026-12-11T09:00:00Z",
                              "end": "2026-12-11T10:00:00Z"}, wants_peer=True)
        (result,) = await sync.run(ctx)
        assert result.status == "ok" and result.calendars == ["Zoom", "Memory"], result.errors
        assert {i["content"]["title"] for i in calendar("team").items.values()} == {"Plugged in", "From memory"}
        assert "From memory" in {m["topic"] for m in world.zoom.meetings.values()}
        assert (await sync.run(ctx))[0].writes == 0
    finally:
        registry._specs.pop("memory", None)
        registry._loaded.discard("zoomcal.connectors.memory")


async def test_unlinking_revokes_the_grant_and_forgets_what_only_it_knew(ctx, world):
    info = await person(ctx, world)
    zoom = await accounts.link(ctx, "ada@example.com", "zoom", *zoom_user_link(world, info))
    google = await accounts.link(ctx, "ada@example.com", "google", *google_link(world, info))
    actor = SandboxActor(world, transport=world.transport())
    await actor.zoom_create(info["zoom_user_id"], topic="Kickoff", type=2, start_time="2026-12-10T09:00:00Z",
                            duration=30)
    await actor.google_insert(info["google_calendar_id"], summary="Dentist",
                              start={"dateTime": "2026-12-11T09:00:00Z"}, end={"dateTime": "2026-12-11T10:00:00Z"})
    await sync.run(ctx)
    assert sorted(e.title for e in sync.events(ctx)) == ["Dentist", "Kickoff"]
    google_grants = [t for t, subject in world.google.tokens.refresh.items() if subject == info["email"]]
    assert google_grants
    done = await accounts.unlink(ctx, google.id)
    assert done.revoked == "grant revoked"
    assert not any(s == info["email"] for s in world.google.tokens.refresh.values())    # refused from now on
    assert [e.title for e in sync.events(ctx)] == ["Kickoff"]       # the Zoom meeting is still known
    done = await accounts.unlink(ctx, zoom.id)
    assert done.revoked == "grant revoked"
    assert not any(s == info["zoom_user_id"] for s in world.zoom.tokens.refresh.values())
    assert sync.events(ctx) == [] and accounts.list_accounts(ctx) == []
    with ctx.store.session() as s:
        assert [a for (a,) in s.execute(select(AuditEntry.action)) if a.startswith("account.")] == \
            ["account.link", "account.link", "account.unlink", "account.unlink"]
    with pytest.raises(NotFoundError):
        await accounts.unlink(ctx, zoom.id)


async def test_a_refused_grant_needs_relinking_and_relinking_heals_it(ctx, world):
    info = await person(ctx, world)
    await accounts.link(ctx, "ada@example.com", "zoom", *zoom_user_link(world, info))
    google = await accounts.link(ctx, "ada@example.com", "google", *google_link(world, info))
    assert all(r.status == "ok" for r in await sync.run(ctx))
    for token in [t for t, s in world.google.tokens.refresh.items() if s == info["email"]]:
        world.google.tokens.revoke(token)            # the person revoked zoomcal's access at Google
    results = await sync.run(ctx)
    assert [r.status for r in results] == ["failed"] and "linked again" in results[0].errors[0]
    (checked,) = [a for a in await accounts.health(ctx) if a.id == google.id]
    assert checked.status == "reauth" and "refused" in checked.status_reason
    assert sync.status(ctx)[0].accounts_needing_reauth == 1
    assert await sync.run(ctx) == []                    # nothing to sync until it is linked again
    with pytest.raises(NeedsReauthError):
        await accounts.relink(ctx, google.id, {}, {"refresh_token": "rt_not-a-real-one"})
    fresh = world.google.tokens.grant_refresh(info["email"])
    healed = await accounts.relink(ctx, google.id, {}, {"refresh_token": fresh})
    assert healed.status == "ok" and healed.status_reason is None
    assert [r.status for r in await sync.run(ctx)] == ["ok"]
    assert all(a.status == "ok" for a in await accounts.health(ctx))


async def test_a_member_acts_only_on_their_own_account(ctx, world):
    await person(ctx, world, "ada@example.com")
    await person(ctx, world, "bo@example.com")
    member = ctx.services.context("default", Actor("portal:ada", "member", "ada@example.com"))
    with pytest.raises(ForbiddenError):
        users.add(member, "eve@example.com")
    with pytest.raises(ForbiddenError):
        settings.update(member, "bo@example.com", timezone="Europe/Paris")
    with pytest.raises(ForbiddenError):
        await sync.run(member)
    assert settings.update(member, "ada@example.com", timezone="Europe/Paris").timezone == "Europe/Paris"
    assert [u.email for u in users.list_users(member)] == ["ada@example.com"]
    assert await sync.run(member, "ada@example.com") == []
    with pytest.raises(ForbiddenError):
        settings.set_presence_rules(member, {"version": 1})


async def test_a_conflict_resolved_with_the_other_side_reaches_both_sides(ctx, world):
    from conftest import link_sandbox_user

    info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
    actor = SandboxActor(world, transport=world.transport())
    meeting = await actor.zoom_create(info["zoom_user_id"], topic="Plan", type=2, start_time="2026-12-10T09:00:00Z",
                                      duration=30)
    await sync.run(ctx)
    await actor.zoom_patch(meeting["id"], topic="Plan (Zoom)")
    event = actor.google_find(info["google_calendar_id"], "Plan")
    await actor.google_patch(info["google_calendar_id"], event["id"], summary="Plan (calendar)")
    await sync.run(ctx)
    (item,) = sync.reviews(ctx)
    assert item.kind == "conflict" and item.applied == "calendar" and item.choices == ["zoom", "calendar"]
    with pytest.raises(InvalidError):
        await sync.resolve(ctx, item.id, "loudest")
    done = await sync.resolve(ctx, item.id, "zoom")
    assert done.status == "resolved" and sync.reviews(ctx) == []
    await sync.run(ctx)
    assert world.zoom.meetings[meeting["id"]]["topic"] == "Plan (Zoom)"
    assert actor.google_find(info["google_calendar_id"], "Plan (Zoom)")
    with pytest.raises(ConflictError):
        await sync.resolve(ctx, item.id, "calendar")


async def test_people_are_renamed_and_removed_with_their_accounts(ctx, world):
    info = await person(ctx, world)
    await accounts.link(ctx, "ada@example.com", "google", *google_link(world, info))
    await SandboxActor(world, transport=world.transport()).google_insert(
        info["google_calendar_id"], summary="Dentist", start={"dateTime": "2026-12-11T09:00:00Z"},
        end={"dateTime": "2026-12-11T10:00:00Z"})
    await sync.run(ctx)
    renamed = users.rename(ctx, "ada@example.com", new_email="Ada.L@Example.com", name="Ada L")
    assert (renamed.email, renamed.name) == ("ada.l@example.com", "Ada L")
    with pytest.raises(NotFoundError):
        users.get(ctx, "ada@example.com")
    await person(ctx, world, "bo@example.com")
    with pytest.raises(ConflictError):
        users.rename(ctx, "bo@example.com", new_email="ada.l@example.com")
    with pytest.raises(InvalidError):
        users.add(ctx, "not-an-address")
    outcomes = await users.remove(ctx, "ada.l@example.com")
    assert outcomes == ["grant revoked"]
    assert [u.email for u in users.list_users(ctx)] == ["bo@example.com"]
    with ctx.store.session() as s:
        assert s.scalars(select(Event)).all() == []


async def test_connectors_and_tokens_are_built_once_per_account_and_reused_across_rounds(ctx, world):
    info = await person(ctx, world)
    await accounts.link(ctx, "ada@example.com", "zoom", *zoom_user_link(world, info))
    google = await accounts.link(ctx, "ada@example.com", "google", *google_link(world, info))
    first = sync.pairs(ctx)[0]
    await sync.run(ctx)
    tokens_before = world.google_calls.get("token", 0) + len(world.google.tokens.access)
    await sync.run(ctx)
    second = sync.pairs(ctx)[0]
    assert second.b.connector is first.b.connector and second.a.connector is first.a.connector
    assert len(world.google.tokens.access) + world.google_calls.get("token", 0) == tokens_before   # no new token
    fresh = world.google.tokens.grant_refresh(info["email"])
    await accounts.relink(ctx, google.id, {}, {"refresh_token": fresh})
    assert sync.pairs(ctx)[0].b.connector is not first.b.connector      # new credentials, new connector


async def test_held_deletions_are_carried_out_when_confirmed_in_the_review_queue(ctx, world):
    from conftest import link_sandbox_user

    info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
    actor = SandboxActor(world, transport=world.transport())
    for day in range(10, 16):
        await actor.zoom_create(info["zoom_user_id"], topic=f"Meeting {day}", type=2,
                                start_time=f"2026-12-{day}T09:00:00Z", duration=30)
    await sync.run(ctx)
    assert len(world.google.calendars[info["google_calendar_id"]].events) == 6
    world.zoom.meetings.clear()                       # someone cleared the Zoom account
    (held,) = await sync.run(ctx)
    assert "deletions held" in held.notes[0] and held.writes == 0
    (item,) = sync.reviews(ctx)
    assert item.kind == "mass_delete" and item.choices == ["confirm", "dismiss"]
    await sync.resolve(ctx, item.id, "confirm")
    live = [e for e in world.google.calendars[info["google_calendar_id"]].events.values()
            if e.get("status") != "cancelled"]
    assert live == [] and sync.events(ctx) == []
