"""Microsoft Graph's users, Outlook contacts and relevant people as contact records (pure: raw JSON in,
`ContactRecord` out).

Addresses are reported as Graph holds them, the primary one first, nothing checked or normalised (the contacts
service does that):
- a user: `mail`, then the SMTP addresses among `proxyAddresses` (`SMTP:` the primary one, `smtp:` the others; the
  prefix is Exchange's, not part of the address; `SIP:`, `X500:` and other kinds are not e-mail addresses), then
  `otherMails`. The `userPrincipalName` is a sign-in name, not a mailbox (a guest's reads
  `jane_contoso.com#EXT#@…`), so it is not reported as an address;
- a contact: its `emailAddresses` in order (Outlook's first, second and third address);
- a person of `/people`: its `scoredEmailAddresses` in Graph's order (most relevant first).
"""

from __future__ import annotations

from typing import Any

from zoomcal.connectors.contacts import CONTACT, RELEVANT, USER, ContactRecord
from zoomcal.errors import InvalidItem


def item_id(raw: Any) -> str:
    """The id of a listed item; InvalidItem when it has none."""
    if not isinstance(raw, dict):
        raise InvalidItem(f"not an object: {type(raw).__name__}")
    value = raw.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidItem("no id")
    return value


def is_removed(raw: dict[str, Any]) -> bool:
    """A delta round's removal (`@removed`: deleted, or for a user also moved to the recycle bin)."""
    return "@removed" in raw


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _unique(values: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        if value and value not in out:
            out.append(value)
    return tuple(out)


def smtp_addresses(proxy_addresses: Any) -> list[str]:
    """The e-mail addresses among a user's proxyAddresses, the primary (`SMTP:`) one first."""
    primary, others = [], []
    for entry in _strings(proxy_addresses):
        kind, sep, address = entry.partition(":")
        if sep and kind.lower() == "smtp":
            (primary if kind == "SMTP" else others).append(address)
    return primary + others


def _phones(raw: dict[str, Any], *names: str) -> tuple[str, ...]:
    return _unique([p for name in names for p in _strings(raw.get(name))])


def user_record(raw: Any, record_id: str) -> ContactRecord:
    item_id(raw)
    emails = _unique([_text(raw, "mail"), *smtp_addresses(raw.get("proxyAddresses")),
                      *_strings(raw.get("otherMails"))])
    return ContactRecord(record_id=record_id, kind=USER, emails=emails, display_name=_text(raw, "displayName"),
                         given_name=_text(raw, "givenName"), family_name=_text(raw, "surname"),
                         phones=_phones(raw, "businessPhones", "mobilePhone"))


def contact_record(raw: Any, record_id: str) -> ContactRecord:
    item_id(raw)
    addresses = raw.get("emailAddresses")
    emails = _unique([e.get("address") for e in addresses if isinstance(e, dict) and isinstance(e.get("address"), str)]
                     if isinstance(addresses, list) else [])
    etag = raw.get("@odata.etag") or raw.get("changeKey")
    return ContactRecord(record_id=record_id, kind=CONTACT, emails=emails, display_name=_text(raw, "displayName"),
                         given_name=_text(raw, "givenName"), family_name=_text(raw, "surname"),
                         phones=_phones(raw, "businessPhones", "homePhones", "mobilePhone"),
                         etag=etag if isinstance(etag, str) else None)


def person_record(raw: Any, record_id: str) -> ContactRecord:
    item_id(raw)
    scored = raw.get("scoredEmailAddresses")
    emails = _unique([e.get("address") for e in scored if isinstance(e, dict) and isinstance(e.get("address"), str)]
                     if isinstance(scored, list) else [])
    phones = raw.get("phones")
    numbers = _unique([p.get("number") for p in phones if isinstance(p, dict) and isinstance(p.get("number"), str)]
                      if isinstance(phones, list) else [])
    return ContactRecord(record_id=record_id, kind=RELEVANT, emails=emails, display_name=_text(raw, "displayName"),
                         given_name=_text(raw, "givenName"), family_name=_text(raw, "surname"), phones=numbers)
