"""E-mail invitations: the tenant's SMTP server, sending the outbox, attendees' answers (iTIP REPLY), and what was
sent to whom. What to send is decided where the event changes (zoomcal.invitations.outbox)."""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import asdict, dataclass
from email import message_from_bytes, policy
from typing import Any

from sqlalchemy import func, select

from zoomcal.app import sync
from zoomcal.app.context import SYSTEM, AppContext, Services
from zoomcal.app.errors import ConflictError, InvalidError, NotFoundError
from zoomcal.domain.recurrence import occurrence_starts
from zoomcal.errors import InvalidItem
from zoomcal.invitations import smtp
from zoomcal.mapping import itip
from zoomcal.store.models import Event, Invitation, MailSettings, OutboxMessage, User

MAX_INBOUND = 5 * 1024 * 1024


@dataclass
class MailView:
    host: str
    port: int
    security: str
    username: str
    sender: str
    has_password: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_mail(ctx: AppContext, *, host: str, port: int, security: str, sender: str, username: str = "",
             password: str | None = None, check: bool = True) -> MailView:
    """Where the tenant's invitations leave from (the password sealed by the vault, never shown). With `check`,
    the server is asked first: it must answer, do TLS as set, and take the credentials."""
    ctx.require_admin()
    host = (host or "").strip()
    if not host or any(c in host for c in "/ @"):
        raise InvalidError(f"not a host name: {host!r}", field="host")
    if not 0 < port < 65536:
        raise InvalidError(f"not a port: {port}", field="port")
    if security not in smtp.SECURITY:
        raise InvalidError(f"security is one of {', '.join(smtp.SECURITY)}", field="security")
    sender = (sender or "").strip()
    if "@" not in sender or any(c in sender for c in " \r\n<>"):
        raise InvalidError(f"not an e-mail address: {sender!r}", field="sender")
    if check:
        kept = ""
        if password is None and username:
            with ctx.store.session() as s:
                old = smtp.settings_of(s, ctx.tenant_id)
                kept = ctx.vault.open(old.secret).get("password", "") if old is not None and old.secret else ""
        try:
            smtp.connect(smtp.Server(host, port, security, username, kept if password is None else password,
                                     sender, timeout=ctx.settings.http_timeout)).quit()
        except (OSError, smtplib.SMTPException) as exc:
            raise InvalidError(f"the SMTP server at {host}:{port} did not take these settings: "
                               f"{type(exc).__name__}: {exc}", field="host") from exc
    with ctx.store.transaction() as s:
        row = smtp.settings_of(s, ctx.tenant_id) or MailSettings(tenant_id=ctx.tenant_id)
        row.host, row.port, row.security, row.sender, row.username = host, port, security, sender, username or ""
        if password is not None:
            row.secret = ctx.vault.seal({"password": password}) if password else None
        s.add(row)
        ctx.audit(s, "mail.settings", host, {"port": port, "security": security, "sender": sender,
                                              "username": username or "", "password": password is not None})
        return _view(row)


def _view(row: MailSettings) -> MailView:
    return MailView(row.host, row.port, row.security, row.username, row.sender, row.secret is not None)


def show_mail(ctx: AppContext) -> MailView | None:
    ctx.require_admin()
    with ctx.store.session() as s:
        row = smtp.settings_of(s, ctx.tenant_id)
        return _view(row) if row else None


def _server(ctx: AppContext) -> smtp.Server:
    with ctx.store.session() as s:
        row = smtp.settings_of(s, ctx.tenant_id)
    if row is None:
        raise InvalidError("no SMTP server is set for invitations", field="mail")
    password = ctx.vault.open(row.secret).get("password", "") if row.secret else ""
    return smtp.Server(row.host, row.port, row.security, row.username, password, row.sender,
                       timeout=ctx.settings.http_timeout)


def deliver(ctx: AppContext, **kwargs: Any) -> smtp.Delivered:
    """Send what the outbox holds; each message sent is in the audit trail."""
    ctx.require_admin()
    server = _server(ctx)

    def sent(row: OutboxMessage) -> None:
        with ctx.store.transaction() as s:
            ctx.audit(s, "invitation.sent", row.event_id, {"to": row.recipient, "method": row.method,
                                                           "sequence": row.sequence})

    return smtp.deliver(ctx.store, ctx.tenant_id, server, after_send=kwargs.pop("after_send", None) or sent,
                        **kwargs)


async def deliver_all(services: Services, *, tenant: str | None = None) -> int:
    """The periodic job: every tenant with an SMTP server and something to send."""
    sent = 0
    for tid, name in services.tenants():
        if tenant not in (None, name):
            continue
        ctx = services.context(name, SYSTEM)
        with ctx.store.session() as s:
            waiting = s.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.status.in_(
                ("pending", "sending"))))
            configured = smtp.settings_of(s, tid) is not None
        if waiting and configured:
            sent += (await asyncio.to_thread(deliver, ctx)).sent
    return sent


def _calendar_part(data: bytes) -> bytes:
    """The iCalendar object in what was fed in: an .ics file, or a whole e-mail carrying one."""
    head = data.lstrip()[:15].upper()
    if head.startswith(b"BEGIN:VCALENDAR"):
        return data
    message = message_from_bytes(data, policy=policy.default)
    for part in message.walk():
        if part.get_content_type() in ("text/calendar", "application/ics"):
            payload = part.get_payload(decode=True)
            if payload:
                return payload
    raise InvalidError("neither an iCalendar object nor an e-mail carrying one", field="reply")


@dataclass
class Answer:
    event_id: str
    attendee: str
    status: str
    applied: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def inbound(ctx: AppContext, data: bytes) -> Answer:
    """An attendee's answer (an iTIP REPLY, or the e-mail carrying it): recorded for the invitation and in the
    event's attendee, which the next sync writes to the calendars. A reply to an older SEQUENCE than the last
    REQUEST still counts for who answered, as calendar clients do."""
    if len(data) > MAX_INBOUND:
        raise InvalidError(f"larger than {MAX_INBOUND // (1024 * 1024)} MiB", field="reply")
    try:
        reply = itip.parse_reply(_calendar_part(data))
    except InvalidItem as exc:
        raise InvalidError(str(exc), field="reply") from exc
    with ctx.store.transaction() as s:
        row = s.scalar(select(Invitation).where(Invitation.uid == reply.uid))
        if row is None:
            raise NotFoundError(f"no invitation with UID {reply.uid[:120]!r}", field="reply")
        owner = s.get(User, row.user_id)
        ctx.require_manage(owner.email if owner else "")
        if reply.attendee not in row.attendees:
            raise ConflictError(f"{reply.attendee} is not invited to this event")
        if reply.recurrence_id:
            return _occurrence_answer(ctx, s, row, reply)
        row.attendees = {**row.attendees, reply.attendee: reply.status}
        note = "" if reply.sequence >= row.sequence else f"answers SEQUENCE {reply.sequence} of {row.sequence}"
        applied = True
        try:
            sync.change_event(ctx, s, row.event_id, {f"attendees/{reply.attendee}/status": reply.status})
        except ConflictError:
            applied, note = False, "the event no longer exists"
        ctx.audit(s, "invitation.reply", row.event_id, {"attendee": reply.attendee, "status": reply.status,
                                                        "sequence": reply.sequence})
        return Answer(row.event_id, reply.attendee, reply.status, applied, note)


def _occurrence_answer(ctx: AppContext, s, row: Invitation, reply: itip.Reply) -> Answer:
    """An answer for one occurrence of a series (a REPLY with RECURRENCE-ID): kept for that occurrence; the
    series' answer stays as it was."""
    event = s.get(Event, row.event_id)
    content = event.content if event is not None else None
    if content is None:
        return Answer(row.event_id, reply.attendee, reply.status, False, "the event no longer exists")
    rid = reply.recurrence_id or ""
    if not (content.get("rrule") or content.get("rdates")) or rid not in occurrence_starts(content) or \
            rid in (content.get("exdates") or ()):
        raise ConflictError(f"{rid[:40]} is not an occurrence of this event")
    answers = dict(row.occurrence_answers or {})
    answers[rid] = {**answers.get(rid, {}), reply.attendee: reply.status}
    row.occurrence_answers = answers
    ctx.audit(s, "invitation.reply", row.event_id, {"attendee": reply.attendee, "status": reply.status,
                                                    "sequence": reply.sequence, "occurrence": rid})
    return Answer(row.event_id, reply.attendee, reply.status, True, f"for the occurrence at {rid}")


@dataclass
class InvitationView:
    event_id: str
    organizer: str
    title: str
    sequence: int
    status: str
    attendees: dict[str, str]
    messages: dict[str, int]          # outbox status -> count
    occurrences: dict[str, dict[str, str]]     # an occurrence's original start -> answers given for it alone

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_invitations(ctx: AppContext, email: str | None = None) -> list[InvitationView]:
    with ctx.store.session() as s:
        query = select(Invitation).order_by(Invitation.id)
        if email:
            ctx.require_manage(email)
            query = query.where(Invitation.organizer == email.strip().lower())
        else:
            ctx.require_admin()
        out = []
        for row in s.scalars(query):
            counts = dict(s.execute(select(OutboxMessage.status, func.count(OutboxMessage.id))
                                    .where(OutboxMessage.event_id == row.event_id).group_by(OutboxMessage.status))
                          .all())
            out.append(InvitationView(row.event_id, row.organizer, (row.sent_content or {}).get("title", ""),
                                      row.sequence, row.status, dict(row.attendees), counts,
                                      dict(row.occurrence_answers or {})))
        return out
