"""One invitation e-mail: a plain-text and an HTML body with the Zoom join details, and the iTIP calendar both
inline (text/calendar; method=..., which Outlook and Gmail read) and as an .ics attachment (RFC 6047)."""

from __future__ import annotations

import hashlib
import html
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

VERB = {"REQUEST": "Invitation", "CANCEL": "Cancelled"}


def message_id(key: str, sender: str) -> str:
    """The same key gives the same Message-ID: a copy sent again after a crash is recognisably the same message."""
    domain = sender.rpartition("@")[2] or "zoomcal.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def _when(content: dict[str, Any]) -> str:
    start, end, tz = content.get("start") or "", content.get("end") or "", content.get("timezone") or "UTC"
    if content.get("all_day"):
        return f"{start} (all day)"
    return f"{start} - {end} ({tz})" + (f", repeating: {content['rrule']}" if content.get("rrule") else "")


def compose(*, key: str, method: str, sender: str, organizer: str, organizer_name: str, recipient: str,
            content: dict[str, Any], ics: bytes, sequence: int, stamp: datetime, updated: bool) -> EmailMessage:
    title = content.get("title") or "(no title)"
    verb = VERB[method] if not (updated and method == "REQUEST") else "Updated invitation"
    msg = EmailMessage()
    msg["Subject"] = f"{verb}: {title}"
    msg["From"] = formataddr((organizer_name or "", sender))
    msg["To"] = recipient
    if organizer.lower() != sender.lower():
        msg["Reply-To"] = organizer
    msg["Date"] = format_datetime(stamp)
    msg["Message-ID"] = message_id(key, sender)
    msg["X-Zoomcal-Sequence"] = str(sequence)
    join = content.get("join") or {}
    lines = [f"{organizer_name or organizer} {'cancelled' if method == 'CANCEL' else 'invites you to'}: {title}",
             f"When: {_when(content)}"]
    if method == "REQUEST" and join.get("join_url"):
        lines += ["", "Join Zoom meeting:", join["join_url"], f"Meeting ID: {join.get('meeting_id', '')}"]
        if join.get("passcode"):
            lines.append(f"Passcode: {join['passcode']}")
    if content.get("description"):
        lines += ["", content["description"]]
    text = "\n".join(lines) + "\n"
    body = "".join(f"<p>{html.escape(line)}</p>" if line else "" for line in lines)
    if method == "REQUEST" and join.get("join_url"):
        url = html.escape(join["join_url"], quote=True)
        body += f'<p><a href="{url}">Join the Zoom meeting</a></p>'
    msg.set_content(text)
    msg.add_alternative(f"<!doctype html><html><body>{body}</body></html>", subtype="html")
    msg.add_alternative(ics, maintype="text", subtype="calendar", params={"method": method, "charset": "utf-8"})
    msg.add_attachment(ics, maintype="application", subtype="ics", filename="invite.ics")
    return msg
