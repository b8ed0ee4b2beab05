"""Google People API persons as contact records (pure: raw JSON in, `ContactRecord` out).

A person's addresses are reported as Google holds them, the primary one first (the one whose field metadata says
`primary`, else the first); nothing is checked or normalised here (the contacts service does that). Which kind of
record a person is follows the collection it was listed in, and, in the directory, its source: a domain profile is
a member of the organisation, a domain shared contact is a contact.
"""

from __future__ import annotations

from typing import Any

from zoomcal.connectors.contacts import CONTACT, USER, ContactRecord
from zoomcal.errors import InvalidItem


def resource_name(raw: Any) -> str:
    """A person's resource name (`people/c…`, `otherContacts/c…`, `people/…`); InvalidItem when it has none."""
    if not isinstance(raw, dict):
        raise InvalidItem(f"not an object: {type(raw).__name__}")
    name = raw.get("resourceName")
    if not isinstance(name, str) or not name:
        raise InvalidItem("no resourceName")
    return name


def is_deleted(raw: dict[str, Any]) -> bool:
    """A sync listing's tombstone: the person was deleted since the sync token was issued."""
    metadata = raw.get("metadata")
    return isinstance(metadata, dict) and metadata.get("deleted") is True


def _entries(raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = raw.get(name)
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _primary_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def primary(entry: dict[str, Any]) -> bool:
        metadata = entry.get("metadata")
        return isinstance(metadata, dict) and metadata.get("primary") is True
    return sorted(entries, key=lambda e: not primary(e))     # stable: the rest keep Google's order


def _values(entries: list[dict[str, Any]]) -> tuple[str, ...]:
    out: list[str] = []
    for entry in _primary_first(entries):
        value = entry.get("value")
        if isinstance(value, str) and value and value not in out:
            out.append(value)
    return tuple(out)


def _source_type(raw: dict[str, Any]) -> str:
    metadata = raw.get("metadata")
    sources = metadata.get("sources") if isinstance(metadata, dict) else None
    first = sources[0] if isinstance(sources, list) and sources and isinstance(sources[0], dict) else {}
    return str(first.get("type") or "")


def person_record(raw: Any, record_id: str, kind: str) -> ContactRecord:
    """One person as a record of `kind` (USER for directory profiles); InvalidItem when it cannot be read at all."""
    resource_name(raw)
    if kind == USER and _source_type(raw) == "DOMAIN_CONTACT":
        kind = CONTACT
    names = _primary_first(_entries(raw, "names"))
    name = names[0] if names else {}
    given, family = str(name.get("givenName") or ""), str(name.get("familyName") or "")
    display = str(name.get("displayName") or name.get("unstructuredName") or " ".join(p for p in (given, family) if p))
    etag = raw.get("etag")
    return ContactRecord(record_id=record_id, kind=kind, emails=_values(_entries(raw, "emailAddresses")),
                         display_name=display, given_name=given, family_name=family,
                         phones=_values(_entries(raw, "phoneNumbers")),
                         etag=etag if isinstance(etag, str) else None)
