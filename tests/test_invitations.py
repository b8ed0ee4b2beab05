"""E-mail invitations against a real SMTP server on loopback (aiosmtpd): a booking with guests sends each of them
a valid iTIP REQUEST once the Zoom meeting has its link; changes send a higher SEQUENCE, a guest taken off gets a
CANCEL of their own, deleting the event cancels it for everyone; answers come back as REPLYs; a crash between
deciding and sending neither loses nor doubles a message."""

from __future__ import annotations

import datetime as dt
import email
import re
import ssl
import threading
import zoneinfo
from email import policy

import httpx
import icalendar
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from conftest import _fresh_pg, link_sandbox_user, make_context, new_collection
from zoomcal.app import availability, invitations
from zoomcal.app import sync as app_sync
from zoomcal.app.errors import ConflictError, InvalidError
from zoomcal.invitations import smtp
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.server import free_port
from zoomcal.store.models import Event, OutboxMessage

pytestmark = pytest.mark.anyio
GUESTS = ["guest@example.org", "other@example.net"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Inbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    def __init__(self):
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def take(self) -> list[tuple[str, email.message.EmailMessage, icalendar.Calendar]]:
        with self.lock:
            got, self.messages = self.messages, []
        out = []
        for rcpts, message in got:
            assert len(rcpts) == 1                      # one message per recipient
            parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
            out.append((rcpts[0], message, icalendar.Calendar.from_ical(parts[0].get_payload(decode=True))))
        return sorted(out, key=lambda m: m[0])


@pytest.fixture
def mailserver():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def setup(world, tmp_path, mailserver, radicale):
    """An organizer whose calendar (CalDAV) does not invite attendees itself: zoomcal e-mails them."""
    controller, inbox = mailserver
    ctx = make_context(world, tmp_path)
    user = link_sandbox_user(ctx, world, "h@example.com", "Hedy", "Europe/Rome",
                             calendar=new_collection(radicale, "h"))
    invitations.set_mail(ctx, host="127.0.0.1", port=controller.port, security="none",
                         sender="zoomcal@example.com")
    yield ctx, user, SandboxActor(world, transport=world.transport()), inbox
    ctx.store.dispose()


async def sync(ctx, trigger="cli"):
    results = await app_sync.run(ctx, "h@example.com", trigger=trigger)
    assert results and all(r.status == "ok" for r in results), [r.errors for r in results]


def caldav_attendees(collection: str, title: str, emails: list[str]) -> None:
    """Another CalDAV client sets the attendees of the event called `title`."""
    listing = httpx.request("PROPFIND", collection, headers={"Depth": "1"}, auth=("h", "x"))
    base = collection.split("/h/")[0]
    for href in sorted(set(re.findall(r"<[^>]*href>([^<]+\.ics)</", listing.text))):
        got = httpx.get(base + href, auth=("h", "x"))
        vcal = icalendar.Calendar.from_ical(got.content)
        event = event_of(vcal)
        if str(event.get("SUMMARY")) != title:
            continue
        del event["ATTENDEE"]
        for address in emails:
            event.add("ATTENDEE", icalendar.vCalAddress(f"mailto:{address}"))
        put = httpx.put(base + href, content=vcal.to_ical(), auth=("h", "x"),
                        headers={"If-Match": got.headers["etag"], "Content-Type": "text/calendar"})
        assert put.status_code in (201, 204), put.text
        return
    raise AssertionError(f"no event {title!r} in {collection}")


def event_of(vcal) -> icalendar.Event:
    return next(iter(vcal.walk("VEVENT")))


async def test_a_booking_invites_each_guest_and_follows_every_change(setup):
    ctx, user, actor, inbox = setup
    start = dt.datetime(2026, 12, 14, 15, 0)
    booked = availability.book(ctx, "h@example.com", start, start + dt.timedelta(minutes=45), "Interview",
                               attendees=GUESTS, zoom=True, description="Bring your portfolio")
    assert invitations.deliver(ctx).sent == 0           # a Zoom meeting: nothing until it has its link
    await sync(ctx, "booking")
    assert invitations.deliver(ctx).sent == 2
    first = inbox.take()
    assert [m[0] for m in first] == sorted(GUESTS)
    for recipient, message, vcal in first:
        assert str(vcal["METHOD"]) == "REQUEST"
        ev = event_of(vcal)
        assert str(ev["UID"]) == f"{booked.event_id}@zoomcal" and int(ev["SEQUENCE"]) == 0
        assert str(ev["ORGANIZER"]) == "mailto:h@example.com" and str(ev["SUMMARY"]) == "Interview"
        assert ev["DTSTART"].dt == dt.datetime.fromisoformat(booked.start)
        assert ev["DTEND"].dt - ev["DTSTART"].dt == dt.timedelta(minutes=45)
        assert sorted(str(a) for a in ev["ATTENDEE"]) == [f"mailto:{g}" for g in sorted(GUESTS)]
        assert str(ev["LOCATION"]).startswith("https://sandbox.zoom.us/j/")
        assert not any(k.startswith("X-ZOOMCAL") for k in ev)
        text = message.get_body(("plain",)).get_content()
        assert str(ev["LOCATION"]) in text and "Bring your portfolio" in text
        assert message.get_body(("html",)) is not None and message["To"] == recipient
        assert [p.get_filename() for p in message.iter_attachments()] == ["invite.ics"]
    # nothing new: nothing sent
    await sync(ctx)
    assert invitations.deliver(ctx).sent == 0 and inbox.take() == []

    # the meeting moves in Zoom: an updated REQUEST, SEQUENCE 1, to both
    with ctx.store.session() as s:
        meeting_id = s.get(Event, booked.event_id).content["join"]["meeting_id"]
    await actor.zoom_patch(meeting_id, start_time="2026-12-14T15:30:00Z")
    await sync(ctx, "zoom:meeting.updated")
    invitations.deliver(ctx)
    moved = inbox.take()
    assert [(m[0], int(event_of(m[2])["SEQUENCE"])) for m in moved] == [(g, 1) for g in sorted(GUESTS)]
    assert all(m[1]["Subject"] == "Updated invitation: Interview" for m in moved)

    # a guest taken off in the calendar: a CANCEL of their own, the other gets the new REQUEST
    caldav_attendees(user["caldav_collection"], "Interview", ["guest@example.org"])
    await sync(ctx, "caldav")
    invitations.deliver(ctx)
    dropped = {(m[0], str(m[2]["METHOD"]), int(event_of(m[2])["SEQUENCE"])) for m in inbox.take()}
    assert dropped == {("other@example.net", "CANCEL", 2), ("guest@example.org", "REQUEST", 2)}

    # the guest accepts: their REPLY is recorded, and the event's attendee carries the answer
    reply = icalendar.Calendar()
    reply.add("PRODID", "-//test//EN")
    reply.add("VERSION", "2.0")
    reply.add("METHOD", "REPLY")
    answer = icalendar.Event()
    answer.add("UID", f"{booked.event_id}@zoomcal")
    answer.add("SEQUENCE", 2)
    answer.add("DTSTAMP", dt.datetime.now(dt.UTC))
    guest = icalendar.vCalAddress("mailto:Guest@Example.org")
    guest.params["PARTSTAT"] = "ACCEPTED"
    answer.add("ATTENDEE", guest)
    reply.add_component(answer)
    got = invitations.inbound(ctx, reply.to_ical())
    assert (got.attendee, got.status, got.applied) == ("guest@example.org", "accepted", True)
    with ctx.store.session() as s:
        assert s.get(Event, booked.event_id).content["attendees"]["guest@example.org"]["status"] == "accepted"
    listed = invitations.list_invitations(ctx)
    assert listed[0].attendees == {"guest@example.org": "accepted"} and listed[0].messages == {"sent": 6}

    # deleted in Zoom: everyone still invited gets a CANCEL
    await actor.zoom_delete(meeting_id)
    await sync(ctx, "zoom:meeting.deleted")
    invitations.deliver(ctx)
    cancelled = inbox.take()
    assert [(m[0], str(m[2]["METHOD"])) for m in cancelled] == [("guest@example.org", "CANCEL")]
    assert str(event_of(cancelled[0][2])["STATUS"]) == "CANCELLED" and int(event_of(cancelled[0][2])["SEQUENCE"]) == 3
    assert invitations.list_invitations(ctx)[0].status == "cancelled"


async def test_replies_that_are_not_ours_are_refused(setup):
    ctx, _user, _actor, _inbox = setup
    for data in (b"not a calendar", b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n",
                 b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:nobody@zoomcal\r\n"
                 b"ATTENDEE;PARTSTAT=ACCEPTED:mailto:a@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"):
        with pytest.raises((InvalidError, Exception)) as caught:
            invitations.inbound(ctx, data)
        assert type(caught.value).__name__ in ("InvalidError", "NotFoundError")


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_a_crash_between_deciding_and_sending_neither_loses_nor_doubles(world, tmp_path, mailserver, request,
                                                                             db, monkeypatch, radicale):
    controller, inbox = mailserver
    url = _fresh_pg(request.getfixturevalue("pg_schema_url")).url if db == "postgresql" else None
    ctx = make_context(world, tmp_path, url)
    link_sandbox_user(ctx, world, "h@example.com", "Hedy", "Europe/Rome", calendar=new_collection(radicale, "h"))
    invitations.set_mail(ctx, host="127.0.0.1", port=controller.port, security="none", sender="z@example.com")
    start = dt.datetime(2026, 12, 15, 9)
    availability.book(ctx, "h@example.com", start, start + dt.timedelta(minutes=30), "Review", attendees=GUESTS)

    # decided (the outbox rows are committed with the booking), then the process died before sending
    class Crash(Exception):
        pass

    def crash_after_first(_row):
        raise Crash()

    # crash after the server took the first message, before it was marked sent
    with pytest.raises(Crash):
        invitations.deliver(ctx, after_send=crash_after_first)
    with ctx.store.session() as s:
        assert sorted(s.scalars(select(OutboxMessage.status))) == ["pending", "sending"]
    invitations.deliver(ctx)                             # the claim is fresh: only the pending one goes
    monkeypatch.setattr(smtp, "STALE", dt.timedelta(0))   # ... until the claim is stale
    invitations.deliver(ctx)
    got = inbox.take()
    ids = {(m[0], m[1]["Message-ID"]) for m in got}
    assert sorted(r for r, _ in ids) == sorted(GUESTS)     # every guest has one distinct message
    assert len(got) == 3                                    # the ambiguous one went again, as the same message
    with ctx.store.session() as s:
        assert sorted(s.scalars(select(OutboxMessage.status))) == ["sent", "sent"]
    assert invitations.deliver(ctx).sent == 0 and inbox.take() == []
    ctx.store.dispose()


def _self_signed(tmp_path):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_starttls_and_a_password_sealed(tmp_path, monkeypatch, world, radicale):
    """A server that wants STARTTLS and a login: the settings are checked against it before they are kept, the
    password is sealed, and a wrong one is refused up front."""
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))      # the client trusts this server's certificate

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"zc", b"s3cret")
        return AuthResult(success=ok, handled=False)     # a refusal is answered 535 by the server

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True, authenticator=authenticate, auth_require_tls=True)
    controller.start()
    try:
        ctx = make_context(world, tmp_path)
        with pytest.raises(InvalidError) as refused:
            invitations.set_mail(ctx, host="127.0.0.1", port=controller.port, security="starttls",
                                 sender="z@example.com", username="zc", password="wrong")
        assert "did not take these settings" in str(refused.value) and "535" in str(refused.value)
        assert invitations.show_mail(ctx) is None
        view = invitations.set_mail(ctx, host="127.0.0.1", port=controller.port, security="starttls",
                                    sender="z@example.com", username="zc", password="s3cret")
        assert view.has_password and "s3cret" not in repr(view.as_dict())
        from zoomcal.store.models import MailSettings

        with ctx.store.session() as s:
            assert b"s3cret" not in s.scalar(select(MailSettings.secret))
        link_sandbox_user(ctx, world, "h@example.com", "Hedy", "UTC", calendar=new_collection(radicale, "h"))
        start = dt.datetime(2026, 12, 16, 9)
        availability.book(ctx, "h@example.com", start, start + dt.timedelta(minutes=30), "Sync", attendees=GUESTS)
        assert invitations.deliver(ctx).sent == 2 and len(inbox.take()) == 2
        ctx.store.dispose()
    finally:
        controller.stop()


async def test_an_organizer_on_microsoft_365_has_outlook_invite_the_guests(world, tmp_path, mailserver):
    """Outlook invites an event's attendees itself when the organizer's event is written: the guests are put on
    the event, and zoomcal sends no e-mail of its own (they would be invited twice)."""
    controller, inbox = mailserver
    ctx = make_context(world, tmp_path)
    link_sandbox_user(ctx, world, "m@example.com", "Mia", "UTC", calendar="graph")
    invitations.set_mail(ctx, host="127.0.0.1", port=controller.port, security="none", sender="z@example.com")
    start = dt.datetime(2026, 12, 17, 9)
    booked = availability.book(ctx, "m@example.com", start, start + dt.timedelta(minutes=30), "Review",
                               attendees=GUESTS)
    await app_sync.run(ctx, "m@example.com", trigger="booking")
    assert invitations.deliver(ctx).sent == 0 and inbox.take() == []
    assert invitations.list_invitations(ctx) == []
    (event,) = [e for e in world.graph.events[world.graph.default_key("m@example.com")].values()
                if e["subject"] == "Review"]
    assert sorted(a["emailAddress"]["address"] for a in event["attendees"]) == sorted(GUESTS)
    assert booked.event_id
    ctx.store.dispose()


async def test_an_organizer_on_google_has_google_invite_the_guests(world, tmp_path, mailserver):
    """Google invites the guests of an event its organizer writes (sendUpdates): zoomcal puts them on the event,
    asks Google to tell them whenever what they see changes, and sends no e-mail of its own. Nothing is told
    twice: not by a resync, not by a create retried after its answer was lost."""
    controller, inbox = mailserver
    ctx = make_context(world, tmp_path)
    user = link_sandbox_user(ctx, world, "g@example.com", "Gia", "UTC")
    invitations.set_mail(ctx, host="127.0.0.1", port=controller.port, security="none", sender="z@example.com")
    actor = SandboxActor(world, transport=world.transport())

    def mail() -> list[tuple[str, str, str]]:
        taken = [(m["kind"], m["to"], m["summary"]) for m in world.google.guest_mail]
        world.google.guest_mail.clear()
        return sorted(taken)

    async def sync(trigger: str = "cli") -> None:
        results = await app_sync.run(ctx, "g@example.com", trigger=trigger)
        assert all(r.status == "ok" for r in results), [r.errors for r in results]

    start = dt.datetime(2026, 12, 18, 9)
    booked = availability.book(ctx, "g@example.com", start, start + dt.timedelta(minutes=30), "Planning",
                               attendees=GUESTS, zoom=True)
    await sync("booking")
    assert mail() == [("invitation", g, "Planning") for g in sorted(GUESTS)]
    assert invitations.deliver(ctx).sent == 0 and inbox.take() == [] and invitations.list_invitations(ctx) == []
    await sync()
    assert mail() == []                                   # a resync changes nothing: nobody is told anything

    with ctx.store.session() as s:
        meeting_id = s.get(Event, booked.event_id).content["join"]["meeting_id"]
    await actor.zoom_patch(meeting_id, start_time="2026-12-18T10:00:00Z")
    await sync("zoom:meeting.updated")
    assert mail() == [("update", g, "Planning") for g in sorted(GUESTS)]

    # a guest answers: Google keeps the answer on the organizer's event; zoomcal reads it back
    event = actor.google_find(user["google_calendar_id"], "Planning")
    answered = [{**a, "responseStatus": "accepted"} if a["email"] == GUESTS[0] else a for a in event["attendees"]]
    await actor.google_patch(user["google_calendar_id"], event["id"], attendees=answered)
    mail()
    await sync("google:exists")
    with ctx.store.session() as s:
        assert s.get(Event, booked.event_id).content["attendees"][GUESTS[0]]["status"] == "accepted"
    assert mail() == []

    # the create's answer is lost: the retry finds the event made earlier and invites nobody again
    world.google_faults.add("lost_response", "POST", r"/events$")
    second = availability.book(ctx, "g@example.com", start + dt.timedelta(hours=3),
                               start + dt.timedelta(hours=3, minutes=30), "Retro", attendees=GUESTS[:1])
    for _ in range(3):
        results = await app_sync.run(ctx, "g@example.com", trigger="booking")
        if all(r.status == "ok" for r in results):
            break
    assert world.google_faults.fired.get("lost_response") == 1
    assert mail() == [("invitation", GUESTS[0], "Retro")]
    assert [e["summary"] for e in world.google.calendars[user["google_calendar_id"]].events.values()
            if e.get("status") != "cancelled"].count("Retro") == 1
    assert second.event_id

    # cancelled in Zoom: Google tells the guests
    await actor.zoom_delete(meeting_id)
    await sync("zoom:meeting.deleted")
    assert mail() == [("cancellation", g, "Planning") for g in sorted(GUESTS)]
    assert invitations.deliver(ctx).sent == 0 and inbox.take() == []
    ctx.store.dispose()


async def test_an_answer_for_one_occurrence_is_kept_for_that_occurrence(setup):
    """A REPLY with a RECURRENCE-ID answers one occurrence of a series (its TZID applied): the series' answer
    stays, the occurrence's is kept and listed; a RECURRENCE-ID that is no occurrence is refused."""
    ctx, _user, actor, inbox = setup
    start = dt.datetime(2026, 12, 14, 8, 0)
    booked = availability.book(ctx, "h@example.com", start, start + dt.timedelta(minutes=30), "Standup",
                               attendees=GUESTS, zoom=True)
    await sync(ctx, "booking")
    with ctx.store.session() as s:
        meeting_id = s.get(Event, booked.event_id).content["join"]["meeting_id"]
    await actor.zoom_patch(meeting_id, type=8, timezone="Europe/Rome",
                           recurrence={"type": 1, "repeat_interval": 1, "end_times": 5})
    await sync(ctx, "zoom:meeting.updated")
    invitations.deliver(ctx)
    updated = [m for m in inbox.take() if int(event_of(m[2])["SEQUENCE"]) == 1]
    assert len(updated) == 2 and all("RRULE" in event_of(m[2]) for m in updated)

    def reply(rid: dt.datetime | None, partstat: str) -> bytes:
        cal = icalendar.Calendar()
        cal.add("PRODID", "-//test//EN")
        cal.add("VERSION", "2.0")
        cal.add("METHOD", "REPLY")
        answer = icalendar.Event()
        answer.add("UID", f"{booked.event_id}@zoomcal")
        answer.add("SEQUENCE", 1)
        answer.add("DTSTAMP", dt.datetime.now(dt.UTC))
        if rid is not None:
            answer.add("RECURRENCE-ID", rid)
        guest = icalendar.vCalAddress("mailto:guest@example.org")
        guest.params["PARTSTAT"] = partstat
        answer.add("ATTENDEE", guest)
        cal.add_component(answer)
        return cal.to_ical()

    rome = zoneinfo.ZoneInfo("Europe/Rome")
    assert invitations.inbound(ctx, reply(None, "ACCEPTED")).applied
    third = invitations.inbound(ctx, reply(dt.datetime(2026, 12, 16, 9, 0, tzinfo=rome), "DECLINED"))
    assert (third.status, third.applied) == ("declined", True) and "2026-12-16T08:00:00Z" in third.note
    with pytest.raises(ConflictError):          # 09:30 Rome is no occurrence of a series at 09:00
        invitations.inbound(ctx, reply(dt.datetime(2026, 12, 16, 9, 30, tzinfo=rome), "DECLINED"))
    (listed,) = invitations.list_invitations(ctx)
    assert listed.attendees["guest@example.org"] == "accepted"
    assert listed.occurrences == {"2026-12-16T08:00:00Z": {"guest@example.org": "declined"}}
    with ctx.store.session() as s:
        assert s.get(Event, booked.event_id).content["attendees"]["guest@example.org"]["status"] == "accepted"
