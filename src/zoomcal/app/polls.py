"""Polls of a Zoom meeting: create, list, change and delete them, read who answered what after the meeting, and
attach one while scheduling (it is created on the meeting once the meeting exists)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from zoomcal.app import users
from zoomcal.app.context import SYSTEM, AppContext, Services
from zoomcal.app.errors import ConflictError, InvalidError, NotFoundError
from zoomcal.connectors import registry
from zoomcal.connectors.spec import MEETINGS
from zoomcal.errors import ConnectorError, InvalidItem
from zoomcal.store.models import Account, Calendar, Event, MeetingPoll, User

QUESTION_TYPES = ("single", "multiple")


def poll_body(title: str, questions: list[dict[str, Any]], anonymous: bool = False) -> dict[str, Any]:
    """A poll as Zoom takes it, checked here first so a mistake is named before anything is sent."""
    title = (title or "").strip()
    if not title or len(title) > 64:
        raise InvalidError("a poll needs a title of at most 64 characters", field="title")
    if not questions:
        raise InvalidError("a poll needs at least one question", field="question")
    out = []
    for q in questions:
        name, kind = str(q.get("name") or "").strip(), q.get("type", "single")
        answers = [str(a).strip() for a in q.get("answers") or [] if str(a).strip()]
        if not name:
            raise InvalidError("each question needs its text", field="question")
        if kind not in QUESTION_TYPES:
            raise InvalidError(f"a question is {' or '.join(QUESTION_TYPES)} choice", field="question")
        if not 2 <= len(answers) <= 10:
            raise InvalidError(f"{name!r}: between 2 and 10 answers", field="question")
        out.append({"name": name, "type": kind, "answers": answers})
    return {"title": title, "anonymous": bool(anonymous), "poll_type": 1, "questions": out}


def parse_question(text: str, multiple: bool = False) -> dict[str, Any]:
    """`Which day? = Monday | Tuesday` -> a question with its answers."""
    name, sep, answers = text.partition("=")
    if not sep:
        raise InvalidError(f"write a question as 'text = answer | answer', not {text!r}", field="question")
    return {"name": name.strip(), "type": "multiple" if multiple else "single",
            "answers": [a.strip() for a in answers.split("|")]}


def _meeting(ctx: AppContext, email: str, ref: str) -> tuple[Any, str]:
    """(the person's meetings connector, the Zoom meeting id) for a meeting id or an event of theirs."""
    ctx.require_manage(email)
    roles = {spec.key for spec in registry.all_specs() if MEETINGS in spec.roles}
    with ctx.store.session() as s:
        user = users.find(s, ctx, email)
        meeting_id = ref.strip()
        if not meeting_id.isdigit():
            event = s.get(Event, meeting_id)
            if event is None or event.user_id != user.id:
                raise NotFoundError(f"{email} has no event {ref!r}", field="meeting")
            meeting_id = str(((event.content or {}).get("join") or {}).get("meeting_id") or "")
            if not meeting_id:
                raise ConflictError("this event has no Zoom meeting (yet): a booking made as a Zoom meeting gets its "
                                    "meeting when it is synced")
        found = s.execute(select(Account, Calendar).join(Calendar, Calendar.account_id == Account.id).where(
            Account.user_id == user.id, Account.provider.in_(roles), Account.status == "ok")
            .order_by(Account.id)).first()
    if found is None:
        raise ConflictError(f"{email} has no linked Zoom account")
    return ctx.services.connector(ctx, found[0], found[1], ctx.rules()), meeting_id


async def _call(work):
    try:
        return await work
    except InvalidItem as exc:
        raise InvalidError(f"Zoom refused it: {exc}", field="poll") from exc
    except ConnectorError as exc:
        raise ConflictError(f"Zoom could not be asked: {type(exc).__name__}: {exc}") from exc


@dataclass
class Poll:
    id: str
    title: str
    status: str
    anonymous: bool
    questions: list[dict[str, Any]]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Poll:
        questions = [{"name": q.get("name"), "type": q.get("type"), "answers": q.get("answers") or []}
                     for q in raw.get("questions") or []]
        return cls(str(raw.get("id") or ""), raw.get("title") or "", raw.get("status") or "",
                   bool(raw.get("anonymous")), questions)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def create(ctx: AppContext, email: str, ref: str, body: dict[str, Any]) -> Poll:
    conn, meeting_id = _meeting(ctx, email, ref)
    made = Poll.of(await _call(conn.create_poll(meeting_id, body)))
    with ctx.store.transaction() as s:
        ctx.audit(s, "poll.create", meeting_id, {"poll": made.id, "title": made.title})
    return made


async def list_polls(ctx: AppContext, email: str, ref: str) -> list[Poll]:
    conn, meeting_id = _meeting(ctx, email, ref)
    return [Poll.of(p) for p in await _call(conn.list_polls(meeting_id))]


async def update(ctx: AppContext, email: str, ref: str, poll_id: str, body: dict[str, Any]) -> None:
    conn, meeting_id = _meeting(ctx, email, ref)
    await _call(conn.update_poll(meeting_id, poll_id, body))
    with ctx.store.transaction() as s:
        ctx.audit(s, "poll.update", meeting_id, {"poll": poll_id, "title": body["title"]})


async def delete(ctx: AppContext, email: str, ref: str, poll_id: str) -> None:
    conn, meeting_id = _meeting(ctx, email, ref)
    await _call(conn.delete_poll(meeting_id, poll_id))
    with ctx.store.transaction() as s:
        ctx.audit(s, "poll.delete", meeting_id, {"poll": poll_id})


@dataclass
class Answer:
    participant: str          # name (or "Anonymous Attendee")
    email: str
    question: str
    answer: str
    at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def results(ctx: AppContext, email: str, ref: str) -> list[Answer]:
    """Who answered what, once the meeting has taken place."""
    conn, meeting_id = _meeting(ctx, email, ref)
    return [Answer(p.get("name") or "", p.get("email") or "", d.get("question") or "", d.get("answer") or "",
                   d.get("date_time") or "")
            for p in await _call(conn.poll_results(meeting_id)) for d in p.get("question_details") or []]


async def attach_waiting(ctx: AppContext) -> dict[str, int]:
    """Polls attached while scheduling whose meeting now exists are created on it (a poll of the same title and
    questions already there — made by a run that stopped before recording it — is taken instead)."""
    done = {"created": 0, "waiting": 0, "failed": 0}
    with ctx.store.session() as s:
        rows = [(p.id, p.event_id, p.poll, s.get(User, p.user_id).email)
                for p in s.scalars(select(MeetingPoll).where(MeetingPoll.status == "waiting"))]
    for row_id, event_id, body, email in rows:
        try:
            conn, meeting_id = _meeting(ctx.services.context(ctx.tenant_name, SYSTEM), email, event_id)
            same = [p for p in await conn.list_polls(meeting_id)
                    if Poll.of(p).title == body["title"] and Poll.of(p).questions == Poll.of(body).questions]
            made = same[0] if same else await conn.create_poll(meeting_id, body)
            values = {"status": "created", "zoom_poll_id": str(made.get("id") or ""), "last_error": ""}
            done["created"] += 1
        except ConflictError as exc:          # no meeting yet (or no Zoom account now): try again later
            values = {"last_error": exc.message}
            done["waiting"] += 1
        except NotFoundError as exc:
            values = {"status": "failed", "last_error": exc.message}
            done["failed"] += 1
        except InvalidItem as exc:
            values = {"status": "failed", "last_error": str(exc)}
            done["failed"] += 1
        except ConnectorError as exc:
            values = {"last_error": f"{type(exc).__name__}: {exc}"}
            done["waiting"] += 1
        with ctx.store.transaction() as s:
            row = s.get(MeetingPoll, row_id)
            for key, value in values.items():
                setattr(row, key, value[:2000] if isinstance(value, str) else value)
            if values.get("status") == "created":
                ctx.audit(s, "poll.create", event_id, {"poll": row.zoom_poll_id, "title": body["title"]})
    return done


async def attach_all(services: Services, *, tenant: str | None = None) -> int:
    """The periodic job: every tenant's polls waiting for their meeting."""
    created = 0
    for _tid, name in services.tenants():
        if tenant in (None, name):
            ctx = services.context(name, SYSTEM)
            with ctx.store.session() as s:
                waiting = s.scalar(select(MeetingPoll.id).where(MeetingPoll.status == "waiting").limit(1))
            if waiting is not None:
                created += (await attach_waiting(ctx))["created"]
    return created
