"""Delivering the outbox over SMTP, one message per recipient.

A message is claimed (status `sending`, committed) before it is sent and marked `sent` after the server took it.
A process that dies in between leaves it `sending`; once the claim is older than STALE it is sent again, with
the same Message-ID, so the copy is recognisably the same message (a crash before the server took it loses
nothing; the window after it can at worst repeat the identical message). Refused recipients and messages fail
for good with the server's answer; a server that cannot be reached leaves them pending for the next round.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from zoomcal.store.models import MailSettings, OutboxMessage

STALE = timedelta(minutes=10)
MAX_ATTEMPTS = 8
SECURITY = ("starttls", "tls", "none")


@dataclass
class Server:
    host: str
    port: int
    security: str
    username: str
    password: str
    sender: str
    timeout: float = 30.0


@dataclass
class Delivered:
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def connect(server: Server) -> smtplib.SMTP:
    """An SMTP session as the settings say: implicit TLS, STARTTLS (required, certificate checked), or plain —
    plain only without credentials or on a loopback address (no password crosses a network unencrypted)."""
    context = ssl.create_default_context()
    if server.security == "tls":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout, context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
    try:
        smtp.ehlo()
        if server.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(f"{server.host} does not offer STARTTLS")
            smtp.starttls(context=context)
            smtp.ehlo()
        elif server.security == "none" and server.username and not is_loopback(server.host):
            raise smtplib.SMTPNotSupportedError("refusing to send a password without TLS to a server that is not "
                                                "on this machine (use --security starttls or tls)")
        if server.username:
            smtp.login(server.username, server.password)
    except BaseException:
        smtp.close()
        raise
    return smtp


def _claim(store, tenant_id: int, now: datetime) -> OutboxMessage | None:
    """The next message to send, claimed for this process (a pending one, or one left `sending` by a process
    that stopped)."""
    with store.transaction() as s:
        candidates = s.scalars(select(OutboxMessage).where(
            OutboxMessage.tenant_id == tenant_id,
            or_(OutboxMessage.status == "pending",
                (OutboxMessage.status == "sending") & (OutboxMessage.claimed_at < now - STALE)))
            .order_by(OutboxMessage.id).limit(5))
        for row in candidates:
            took = s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id,
                                                         OutboxMessage.status == row.status,
                                                         OutboxMessage.attempts == row.attempts)
                             .values(status="sending", claimed_at=now, attempts=row.attempts + 1))
            if took.rowcount == 1:
                s.expunge(row)
                return row
    return None


def _finish(store, row_id: int, **values) -> None:
    with store.transaction() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(**values))


def deliver(store, tenant_id: int, server: Server, *, limit: int = 200,
            after_send: Callable[[OutboxMessage], None] | None = None) -> Delivered:
    """Send what the tenant's outbox holds (up to `limit` messages)."""
    from email import message_from_string, policy

    done = Delivered()
    smtp: smtplib.SMTP | None = None
    try:
        for _ in range(limit):
            row = _claim(store, tenant_id, datetime.now(UTC))
            if row is None:
                break
            try:
                if smtp is None:
                    smtp = connect(server)
                message = message_from_string(row.message, policy=policy.SMTP)
                smtp.send_message(message, from_addr=server.sender, to_addrs=[row.recipient])
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                permanent = not isinstance(exc, smtplib.SMTPDataError) or exc.smtp_code >= 500
                if permanent or row.attempts >= MAX_ATTEMPTS:
                    _finish(store, row.id, status="failed", last_error=f"{type(exc).__name__}: {exc}"[:2000])
                    done.failed += 1
                else:
                    _finish(store, row.id, status="pending", last_error=str(exc)[:2000])
                    done.waiting += 1
                done.errors.append(f"{row.recipient}: {exc}")
                continue
            except (OSError, smtplib.SMTPException) as exc:   # the server: unreachable, refused us, TLS, login
                status = "failed" if row.attempts >= MAX_ATTEMPTS else "pending"
                _finish(store, row.id, status=status, last_error=f"{type(exc).__name__}: {exc}"[:2000])
                done.failed += status == "failed"
                done.waiting += status == "pending"
                done.errors.append(f"{server.host}:{server.port}: {type(exc).__name__}: {exc}")
                break
            if after_send is not None:
                after_send(row)
            _finish(store, row.id, status="sent", sent_at=datetime.now(UTC), last_error="")
            done.sent += 1
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
    return done


def settings_of(s, tenant_id: int) -> MailSettings | None:
    return s.scalar(select(MailSettings).where(MailSettings.tenant_id == tenant_id))
