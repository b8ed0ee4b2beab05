"""An event's history ("why did this change?"): what brought each change, the decision and the rules behind it,
the writes on each side, bookings and review decisions — through the application layer and the command line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import link_sandbox_user, make_context
from zoomcal.app import availability, history
from zoomcal.app import sync as app_sync
from zoomcal.app.context import Actor
from zoomcal.app.errors import InvalidError, NotFoundError
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import Event, Link

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def setup(world, tmp_path):
    ctx = make_context(world, tmp_path, rules_overrides={"fields": {"description": "zoom_to_calendar"}})
    user = link_sandbox_user(ctx, world, "h@example.com", "H", "Europe/Rome")
    actor = SandboxActor(world, transport=world.transport())
    yield ctx, user, actor
    ctx.store.dispose()


async def sync(ctx, trigger):
    results = await app_sync.run(ctx, "h@example.com", trigger=trigger)
    assert results and all(r.status == "ok" for r in results), [r.errors for r in results]


def event_of(ctx, remote_id: str) -> str:
    with ctx.store.session() as s:
        return s.scalar(select(Link.event_id).where(Link.remote_id == remote_id))


async def test_each_change_says_what_brought_it_what_was_decided_and_what_was_written(setup):
    ctx, user, actor = setup
    meeting = await actor.zoom_create(user["zoom_user_id"], topic="Design review", type=2,
                                      start_time="2026-12-10T09:00:00Z", duration=60, timezone="Europe/Rome")
    await sync(ctx, "zoom:meeting.created")
    event_id = event_of(ctx, str(meeting["id"]))
    created = history.history(ctx, event_id)
    assert created.exists and created.title == "Design review" and created.user == "h@example.com"
    decided, wrote = created.steps[0], created.steps[1]
    assert decided.step == "decided" and decided.trigger == "zoom:meeting.created" and decided.run_id
    assert decided.message.startswith("new on Zoom -> create on ")
    assert decided.detail["seen"] == {"Zoom": str(meeting["id"])}
    assert any("asks for a counterpart (marker)" in rule for rule in decided.detail["rules"])
    google_id = actor.google_find(user["google_calendar_id"], "Design review")["id"]
    assert wrote.step == "wrote" and wrote.detail["op"] == "create" and wrote.detail["remote_id"] == google_id

    # an edit in the calendar: the fields it changed, and the update it caused in Zoom
    await actor.google_patch(user["google_calendar_id"], google_id, summary="Design review (moved)")
    await sync(ctx, "google:exists")
    steps = history.history(ctx, event_id[:8]).steps
    edit = next(s for s in steps if s.trigger == "google:exists" and s.step == "decided")
    calendar = next(label for label in edit.detail["seen"] if label != "Zoom")
    assert edit.detail["changed"] == {calendar: ["title"]}
    assert edit.detail["writes"] == ["update on Zoom"]
    assert any(s.step == "wrote" and s.detail == {"side": "Zoom", "op": "update", "remote_id": str(meeting["id"])}
               for s in steps if s.run_id == edit.run_id)

    # a field whose calendar edits do not flow to Zoom (the tenant's rules): the rule is named
    await actor.google_patch(user["google_calendar_id"], google_id, description="notes only for me")
    await sync(ctx, "google:exists")
    kept = [s for s in history.history(ctx, event_id).steps if s.step == "decided"][-1]
    assert f"description edits on {calendar} do not flow from there (fields)" in kept.detail["rules"]

    # the same field changed on both sides: the conflict, the rule that chose, and a person's decision
    await actor.google_patch(user["google_calendar_id"], google_id, summary="Calendar's title")
    await actor.zoom_patch(meeting["id"], topic="Zoom's title")
    await sync(ctx, "reconcile")
    steps = history.history(ctx, event_id).steps
    conflict = next(s for s in steps if s.step == "conflict")
    assert "title" in conflict.message and "'Zoom''s title'" not in conflict.message
    assert any(rule == f"title changed on both sides: {calendar} wins (conflict.policy)"
               for s in steps for rule in s.detail.get("rules", []))
    review_id = conflict.detail["review"]
    await app_sync.resolve(ctx, review_id, "zoom")
    resolved = history.history(ctx, event_id).steps[-1]
    assert resolved.step == "resolved" and resolved.actor == ctx.actor.name and "zoom" in resolved.message

    # deleted everywhere: the history stays, and says so
    await actor.zoom_delete(meeting["id"])
    await sync(ctx, "zoom:meeting.deleted")
    gone = history.history(ctx, event_id)
    assert not gone.exists and gone.steps[-1].trigger == "zoom:meeting.deleted"
    with ctx.store.session() as s:
        assert s.get(Event, event_id) is None


async def test_a_booking_shows_who_booked_it_then_the_writes(setup):
    ctx, _user, _actor = setup
    start = datetime(2026, 12, 11, 10)
    booked = availability.book(ctx, "h@example.com", start, start + timedelta(minutes=30), "Interview", zoom=True)
    await sync(ctx, "booking")
    steps = history.history(ctx, booked.event_id).steps
    assert steps[0].step == "booked" and steps[0].actor == ctx.actor.name and steps[0].detail["zoom"] is True
    written = {s.detail["side"] for s in steps if s.step == "wrote"}
    assert "Zoom" in written and len(written) == 2
    assert all(s.trigger == "booking" for s in steps[1:])


async def test_lookup_and_access(setup, world):
    ctx, user, actor = setup
    with pytest.raises(NotFoundError):
        history.history(ctx, "evnothere0000")
    with pytest.raises(NotFoundError):
        history.history(ctx, "ev")                      # too short to stand for anything
    with pytest.raises(InvalidError):
        history.history(ctx, "   ")
    await actor.zoom_create(user["zoom_user_id"], topic="Mine", type=2, start_time="2026-12-10T09:00:00Z",
                            duration=30, timezone="UTC")
    await sync(ctx, "cli")
    with ctx.store.session() as s:
        event_id = s.scalar(select(Event.id))
    stranger = ctx.services.context(ctx.tenant_name, Actor("other@example.com", "member", "other@example.com"))
    with pytest.raises(NotFoundError):      # another person's event is not there for them, not even by name
        history.history(stranger, event_id)
    with pytest.raises(NotFoundError):
        history.history(stranger, event_id[:8])
    owner = ctx.services.context(ctx.tenant_name, Actor("h@example.com", "member", "h@example.com"))
    assert history.history(owner, event_id).steps


async def test_the_command_line(setup, monkeypatch):
    from typer.testing import CliRunner

    from zoomcal.cli import sync as cli_sync
    from zoomcal.cli.main import app

    ctx, user, actor = setup
    meeting = await actor.zoom_create(user["zoom_user_id"], topic="Standup", type=2,
                                      start_time="2026-12-10T09:00:00Z", duration=15, timezone="UTC")
    await sync(ctx, "zoom:meeting.created")
    event_id = event_of(ctx, str(meeting["id"]))
    monkeypatch.setattr(cli_sync, "context", lambda svc=None: ctx)
    listed = CliRunner().invoke(app, ["events"], catch_exceptions=False)
    assert listed.exit_code == 0 and event_id[:10] in listed.output, listed.output
    shown = CliRunner().invoke(app, ["events", "history", event_id[:10]], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "new on Zoom -> create on" in shown.output and "zoom:meeting.created" in shown.output
    data = json.loads(CliRunner().invoke(app, ["events", "history", event_id, "--json"]).output)
    assert data["event_id"] == event_id and [s["step"] for s in data["steps"]][:2] == ["decided", "wrote"]
    missing = CliRunner().invoke(app, ["events", "history", "nosuchevent"])
    assert missing.exit_code == 1 and "no event" in missing.output
