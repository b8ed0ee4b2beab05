"""Deciding which invitation e-mails to send, inside the transaction that changes the event.

An event zoomcal invites people to by e-mail has an `invitations` row. Whenever the event is recorded, changed or
forgotten (by a sync, a booking or a review decision), `InvitationHook` compares it with what the last REQUEST
said and writes the messages that follow into the outbox in the same transaction:

* first time, or anything the attendees see changed (title, time, recurrence, join details, description,
  who is invited): a REQUEST with the next SEQUENCE to everyone invited;
* an attendee taken off: a CANCEL of their own; the event deleted: a CANCEL to everyone.

Each outbox row has a key (event, SEQUENCE, method, recipient): a decision made again after a crash finds its
row there and adds nothing. A booked Zoom meeting waits for its join link before the first REQUEST goes out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zoomcal.invitations.compose import compose
from zoomcal.mapping import itip
from zoomcal.mapping.rules import MappingRules
from zoomcal.store.models import Invitation, MailSettings, OutboxMessage, User

SEEN = ("title", "description", "start", "end", "all_day", "timezone", "rrule", "exdates", "rdates", "overrides",
        "join")


def _what_they_see(content: dict[str, Any], attendees: list[str]) -> str:
    seen = {k: content.get(k) for k in SEEN}
    return hashlib.sha256(json.dumps([seen, sorted(attendees)], sort_keys=True, default=str).encode()).hexdigest()


def guests(content: dict[str, Any], organizer: str) -> list[str]:
    """Who is invited: the event's attendees but the organizer."""
    return sorted(e for e in (content.get("attendees") or {}) if e != organizer.lower())


def track(s: Session, tenant_id: int, user: User, event_id: str, content: dict[str, Any], rules: MappingRules,
          *, wait_for_join: bool = False) -> Invitation | None:
    """Start inviting this event's attendees by e-mail (a booking with guests); the first REQUEST is queued now,
    or once the event has its Zoom link."""
    if not guests(content, user.email):
        return None
    row = Invitation(tenant_id=tenant_id, user_id=user.id, event_id=event_id, organizer=user.email,
                     uid=f"{event_id}@zoomcal", sequence=0, sent_hash="", sent_content={}, attendees={},
                     status="active",
                     wait_for_join=wait_for_join)
    s.add(row)
    s.flush()
    follow(s, row, content, rules, user.name or "")
    return row


def follow(s: Session, row: Invitation, content: dict[str, Any] | None, rules: MappingRules,
           organizer_name: str = "") -> int:
    """Queue what the event's change calls for -> how many messages were queued."""
    if row.status != "active":
        return 0
    sender = s.scalar(select(MailSettings.sender).where(MailSettings.tenant_id == row.tenant_id)) or row.organizer
    stamp = datetime.now(UTC)
    queued = 0

    def queue(method: str, recipients: list[str], named: list[str], body: dict[str, Any], seq: int) -> None:
        nonlocal queued
        ics = itip.message(method, row.uid, body, row.organizer, named, seq, stamp, rules, organizer_name)
        for recipient in recipients:
            key = f"{row.event_id}:{seq}:{method}:{recipient}"
            if s.scalar(select(OutboxMessage.id).where(OutboxMessage.key == key)) is not None:
                continue
            email = compose(key=key, method=method, sender=sender, organizer=row.organizer,
                            organizer_name=organizer_name, recipient=recipient, content=body, ics=ics, sequence=seq,
                            stamp=stamp, updated=seq > 0 and method == "REQUEST")
            s.add(OutboxMessage(tenant_id=row.tenant_id, key=key, event_id=row.event_id, recipient=recipient,
                                method=method, sequence=seq, message=email.as_string()))
            queued += 1

    invited = sorted(row.attendees)
    if content is None:       # deleted: everyone invited gets a CANCEL
        if row.sent_hash and invited:
            row.sequence += 1
            queue("CANCEL", invited, invited, row.sent_content or {}, row.sequence)
        row.status = "cancelled"
        return queued
    if row.wait_for_join and not (content.get("join") or {}).get("join_url"):
        return 0
    now = guests(content, row.organizer)
    digest = _what_they_see(content, now)
    if digest == row.sent_hash:
        return 0
    removed = [e for e in invited if e not in now]
    if row.sent_hash:
        row.sequence += 1
    for email in removed:      # each one taken off hears it alone
        queue("CANCEL", [email], [email], content, row.sequence)
    if now:
        queue("REQUEST", now, now, content, row.sequence)
    answers = dict(row.attendees)
    row.attendees = {e: answers.get(e, "needs_action") for e in now}
    row.sent_hash, row.sent_content, row.wait_for_join = digest, content, False
    return queued


class InvitationHook:
    """The store hook: events with e-mail invitations follow every change in its own transaction."""

    def run_started(self, session: Session, scope: Any) -> list[str]:
        return []

    def events_changed(self, session: Session, scope: Any, contents: Mapping[str, dict[str, Any] | None],
                       new: set[str]) -> None:
        if not contents:
            return
        # on the sync's hot path: one lookup per batch, by the (tenant, event) unique index
        rows = list(session.scalars(select(Invitation).where(Invitation.tenant_id == scope.tenant_id,
                                                             Invitation.event_id.in_(list(contents)),
                                                             Invitation.status == "active")))
        for row in rows:
            user = session.get(User, row.user_id)
            follow(session, row, contents[row.event_id], scope.rules, user.name if user else "")
