"""Polls of Zoom meetings: the sandbox answers as meetings-api.json describes; zoomcal creates, lists, changes and
deletes them, reads the answers after the meeting, and puts a poll attached while scheduling onto the meeting once
it exists (once, even when the run that made it stopped before recording it)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import select

from conftest import link_sandbox_user, make_context
from specs import validate, zoom_response_schema
from zoomcal.app import availability, polls
from zoomcal.app import sync as app_sync
from zoomcal.app.errors import ConflictError, InvalidError
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.store.models import AuditEntry, Event, MeetingPoll

pytestmark = pytest.mark.anyio
POLL = {"title": "Lunch", "questions": [{"name": "Where?", "type": "single", "answers": ["Pizza", "Sushi"]}]}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def setup(world, tmp_path):
    ctx = make_context(world, tmp_path)
    user = link_sandbox_user(ctx, world, "h@example.com", "Hedy", "UTC")
    yield ctx, user, SandboxActor(world, transport=world.transport())
    ctx.store.dispose()


async def test_the_sandbox_answers_poll_requests_as_the_spec_says(world):
    user = world.add_user("s@example.com", "S", "UTC")
    token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
    async with httpx.AsyncClient(base_url="http://sandbox/zoom/v2", transport=world.transport(),
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        meeting = (await api.post(f"/users/{user['zoom_user_id']}/meetings", json={
            "topic": "Retro", "type": 2, "start_time": "2026-12-20T10:00:00Z", "duration": 30})).json()
        base = f"/meetings/{meeting['id']}"
        made = await api.post(f"{base}/polls", json=POLL)
        assert made.status_code == 201
        validate(made.json(), zoom_response_schema("meetings-api.json", "/meetings/{meetingId}/polls", "post", "201"))
        listed = await api.get(f"{base}/polls")
        validate(listed.json(), zoom_response_schema("meetings-api.json", "/meetings/{meetingId}/polls", "get", "200"))
        poll_id = made.json()["id"]
        got = await api.get(f"{base}/polls/{poll_id}")
        validate(got.json(), zoom_response_schema("meetings-api.json", "/meetings/{meetingId}/polls/{pollId}", "get",
                                                  "200"))
        assert got.json()["status"] == "notstart" and got.json()["questions"][0]["answers"] == ["Pizza", "Sushi"]
        batch = await api.post(f"{base}/batch_polls", json={"polls": [POLL, {**POLL, "title": "Dessert"}]})
        assert batch.status_code == 201
        validate(batch.json(), zoom_response_schema("meetings-api.json", "/meetings/{meetingId}/batch_polls", "post",
                                                    "201"))
        assert (await api.put(f"{base}/polls/{poll_id}", json={**POLL, "title": "Dinner"})).status_code == 204
        assert (await api.get(f"{base}/polls/{poll_id}")).json()["title"] == "Dinner"
        # what Zoom refuses
        for bad in ({"title": "x" * 65, "questions": POLL["questions"]}, {"title": "No questions", "questions": []},
                    {"title": "One answer", "questions": [{"name": "?", "type": "single", "answers": ["only"]}]}):
            assert (await api.post(f"{base}/polls", json=bad)).status_code == 400
        advanced = await api.post(f"{base}/polls", json={"title": "Text", "questions": [
            {"name": "Why?", "type": "short_answer"}]})
        assert advanced.status_code == 400 and advanced.json()["code"] == 4400
        assert (await api.get("/meetings/1/polls")).status_code == 404
        assert (await api.get(f"{base}/polls/nope")).status_code == 404
        # answered during the meeting, read afterwards
        world.zoom.answer_poll(meeting["id"], poll_id, "ann@example.org", "Ann", {"Where?": "Sushi"})
        past = await api.get(f"/past_meetings/{meeting['id']}/polls")
        validate(past.json(), zoom_response_schema("meetings-api.json", "/past_meetings/{meetingId}/polls", "get",
                                                   "200"))
        (entry,) = past.json()["questions"]
        assert (entry["email"], entry["question_details"][0]["answer"]) == ("ann@example.org", "Sushi")
        assert (await api.put(f"{base}/polls/{poll_id}", json=POLL)).status_code == 400     # it has run
        assert (await api.delete(f"{base}/polls/{poll_id}")).status_code == 204
        assert len((await api.get(f"{base}/polls")).json()["polls"]) == 2


async def test_polls_of_a_meeting_through_zoomcal(setup, world):
    ctx, user, actor = setup
    meeting = await actor.zoom_create(user["zoom_user_id"], topic="Planning", type=2,
                                      start_time="2026-12-21T09:00:00Z", duration=30, timezone="UTC")
    body = polls.poll_body("Which day?", [polls.parse_question("Day = Mon | Tue | Wed")])
    made = await polls.create(ctx, "h@example.com", str(meeting["id"]), body)
    assert made.status == "notstart" and made.questions[0]["answers"] == ["Mon", "Tue", "Wed"]
    await app_sync.run(ctx, "h@example.com")
    with ctx.store.session() as s:           # the event that carries the meeting names it as well
        event_id = s.scalar(select(Event.id))
    listed = await polls.list_polls(ctx, "h@example.com", event_id)
    assert [p.id for p in listed] == [made.id]
    await polls.update(ctx, "h@example.com", event_id, made.id, polls.poll_body("Which day?", [
        polls.parse_question("Day = Thu | Fri", multiple=True)]))
    assert (await polls.list_polls(ctx, "h@example.com", event_id))[0].questions[0]["type"] == "multiple"
    world.zoom.answer_poll(meeting["id"], made.id, "guest@example.org", "Guest", {"Day": "Fri"})
    answers = await polls.results(ctx, "h@example.com", event_id)
    assert [(a.participant, a.question, a.answer) for a in answers] == [("Guest", "Day", "Fri")]
    await polls.delete(ctx, "h@example.com", event_id, made.id)
    assert await polls.list_polls(ctx, "h@example.com", event_id) == []
    with ctx.store.session() as s:
        assert [a for (a,) in s.execute(select(AuditEntry.action)) if a.startswith("poll.")] == \
            ["poll.create", "poll.update", "poll.delete"]
    with pytest.raises(InvalidError):
        polls.poll_body("", [])
    with pytest.raises(InvalidError):
        polls.parse_question("no answers here")
    with pytest.raises(InvalidError):            # what Zoom refuses is named, nothing else happens
        await polls.create(ctx, "h@example.com", str(meeting["id"]), {"title": "x", "questions": []})


async def test_a_poll_attached_while_scheduling_lands_on_the_meeting_once(setup, world):
    ctx, _user, _actor = setup
    body = polls.poll_body("Agenda", [polls.parse_question("First topic? = Budget | Hiring")])
    with pytest.raises(InvalidError):
        availability.book(ctx, "h@example.com", dt.datetime(2026, 12, 22, 9), dt.datetime(2026, 12, 22, 10),
                          "No Zoom", poll=body)
    booked = availability.book(ctx, "h@example.com", dt.datetime(2026, 12, 22, 9), dt.datetime(2026, 12, 22, 10),
                               "Kickoff", zoom=True, poll=body)
    assert await polls.attach_waiting(ctx) == {"created": 0, "waiting": 1, "failed": 0}   # no meeting yet
    with pytest.raises(ConflictError):
        await polls.list_polls(ctx, "h@example.com", booked.event_id)
    await app_sync.run(ctx, "h@example.com", trigger="booking")
    # a run that created the poll on Zoom but stopped before recording it: the next one takes that poll
    with ctx.store.session() as s:
        meeting_id = s.get(Event, booked.event_id).content["join"]["meeting_id"]
    token = world.zoom.tokens.issue("account:" + world.zoom.account_id)["access_token"]
    async with httpx.AsyncClient(transport=world.transport()) as http:
        await http.post(f"http://sandbox/zoom/v2/meetings/{meeting_id}/polls", json=body,
                        headers={"Authorization": f"Bearer {token}"})
    assert await polls.attach_waiting(ctx) == {"created": 1, "waiting": 0, "failed": 0}
    assert len(world.zoom.polls[int(meeting_id)]) == 1
    with ctx.store.session() as s:
        row = s.scalar(select(MeetingPoll))
        assert row.status == "created" and row.zoom_poll_id in world.zoom.polls[int(meeting_id)]
    assert await polls.attach_waiting(ctx) == {"created": 0, "waiting": 0, "failed": 0}
