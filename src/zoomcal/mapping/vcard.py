"""vCard 3 and 4 (RFC 2426, RFC 6350) to contact records: every EMAIL (the preferred one first), FN or the
structured N, TEL, CATEGORIES as groups, TZ when it names a zone. A text that is no vCard raises InvalidItem
with the reason; one card's trouble never reaches another's."""

from __future__ import annotations

from typing import Any

import vobject

from zoomcal.connectors.contacts import CONTACT, ContactRecord
from zoomcal.errors import InvalidItem

MAX_CARD = 256 * 1024


def _values(card: Any, name: str) -> list[Any]:
    return list(card.contents.get(name, []))


def _preference(line: Any) -> int:
    """Lower is preferred: vCard 4 PREF=1..100, vCard 3 TYPE=pref."""
    params = {k.upper(): [str(v).lower() for v in vs] for k, vs in line.params.items()}
    if "PREF" in params:
        try:
            return int(params["PREF"][0])
        except ValueError:
            return 1
    return 1 if "pref" in params.get("TYPE", []) else 101


def card_to_record(record_id: str, text: str, etag: str | None = None) -> ContactRecord:
    if len(text) > MAX_CARD:
        raise InvalidItem(f"a vCard larger than {MAX_CARD // 1024} KiB")
    try:
        card = vobject.readOne(text)
    except Exception as exc:   # noqa: BLE001 — vobject raises many kinds for malformed input
        raise InvalidItem(f"not a vCard: {type(exc).__name__}: {str(exc)[:120]}") from None
    if getattr(card, "name", "").upper() != "VCARD":
        raise InvalidItem(f"not a vCard but {getattr(card, 'name', '?')}")
    emails = sorted(((_preference(line), i, str(line.value).strip()) for i, line in enumerate(_values(card, "email"))
                     if str(line.value).strip()))
    given = family = ""
    for line in _values(card, "n")[:1]:
        value = line.value
        given = str(getattr(value, "given", "") or "").strip()
        family = str(getattr(value, "family", "") or "").strip()
    name = next((str(line.value).strip() for line in _values(card, "fn") if str(line.value).strip()), "") or \
        " ".join(p for p in (given, family) if p)
    groups: list[str] = []
    for line in _values(card, "categories"):
        value = line.value
        groups.extend(str(v).strip() for v in (value if isinstance(value, list) else [value]) if str(v).strip())
    zone = next((str(line.value).strip() for line in _values(card, "tz") if "/" in str(line.value)), None)
    return ContactRecord(
        record_id=record_id, kind=CONTACT, emails=tuple(e for _p, _i, e in emails), display_name=name,
        given_name=given, family_name=family,
        phones=tuple(str(line.value).strip() for line in _values(card, "tel") if str(line.value).strip()),
        groups=tuple(dict.fromkeys(groups)), timezone=zone, etag=etag)
