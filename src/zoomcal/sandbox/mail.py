"""A mail server for the demo and the tests: SMTP on loopback (aiosmtpd) that keeps what it receives, one entry
per message and recipient, as a person's mailbox would show it."""

from __future__ import annotations

import email
import socket
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    recipient: str
    subject: str
    method: str          # the iTIP method of its text/calendar part (REQUEST, CANCEL), "" without one
    message: EmailMessage


class MailSandbox:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.received: list[Received] = []
        self._lock = threading.Lock()
        if not port:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.controller = Controller(self, hostname=host, port=port)

    @property
    def host(self) -> str:
        return self.controller.hostname

    @property
    def port(self) -> int:
        return self.controller.port

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        method = ""
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                method = (part.get_param("method") or "").upper()
                break
        with self._lock:
            for recipient in envelope.rcpt_tos:
                self.received.append(Received(recipient.lower(), str(message["Subject"] or ""), method, message))
        return "250 OK"

    def start(self) -> MailSandbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
