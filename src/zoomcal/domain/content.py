"""The canonical event content and the pure helpers every layer uses on it.

Content is a plain JSON-able dict (fast to hash, diff and store). Keys:

    title, description          str
    start, end                  "YYYY-MM-DDTHH:MM:SSZ" (UTC) or "YYYY-MM-DD" when all_day
    timezone                    IANA name the event was scheduled in (None = UTC / floating)
    all_day                     bool
    rrule                       RFC 5545 RRULE value without the "RRULE:" prefix, or None
    exdates                     sorted list of cancelled occurrences (their original start)
    rdates                      sorted list of extra occurrence starts
    overrides                   {original start: {"start", "end", optional "title", "description"}}
    attendees                   sorted list of lower-case e-mail addresses
    join                        {"meeting_id", "join_url", "passcode"} for a Zoom meeting, else None

A side that cannot hold a field simply leaves it out of what it reports; the merge works per flattened
path, so a field one side never shows is never "changed" by that side.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FIELDS = (
    "title",
    "description",
    "start",
    "end",
    "timezone",
    "all_day",
    "rrule",
    "exdates",
    "rdates",
    "overrides",
    "attendees",
    "join",
)
# Containers whose keys are merged one by one instead of as a whole value.
NESTED = ("overrides", "join")
MISSING = "\x00missing"


def empty_content() -> dict[str, Any]:
    return {
        "title": "",
        "description": "",
        "start": None,
        "end": None,
        "timezone": None,
        "all_day": False,
        "rrule": None,
        "exdates": [],
        "rdates": [],
        "overrides": {},
        "attendees": [],
        "join": None,
    }


def make_content(**fields: Any) -> dict[str, Any]:
    content = empty_content()
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise KeyError(f"unknown content fields: {sorted(unknown)}")
    content.update(fields)
    content["exdates"] = sorted(set(content["exdates"] or []))
    content["rdates"] = sorted(set(content["rdates"] or []))
    content["attendees"] = sorted({a.strip().lower() for a in content["attendees"] or [] if a and a.strip()})
    content["overrides"] = dict(sorted((content["overrides"] or {}).items()))
    return content


def flatten(content: dict[str, Any]) -> dict[str, Any]:
    """Map content to {path: leaf}; nested containers become one path per sub key."""
    flat: dict[str, Any] = {}
    for key, value in content.items():
        if key in NESTED and not value:
            continue   # None / {}: no paths, so "absent" and "empty" merge the same way
        if key in NESTED and isinstance(value, dict):
            if key == "overrides":
                for rid, ov in value.items():
                    for sub, leaf in ov.items():
                        flat[f"overrides/{rid}/{sub}"] = leaf
            else:
                for sub, leaf in value.items():
                    flat[f"{key}/{sub}"] = leaf
        elif isinstance(value, list):
            flat[key] = tuple(value)
        else:
            flat[key] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for path, leaf in flat.items():
        parts = path.split("/")
        if parts[0] == "overrides":
            content.setdefault("overrides", {}).setdefault(parts[1], {})[parts[2]] = leaf
        elif len(parts) == 2:
            content.setdefault(parts[0], {})[parts[1]] = leaf
        else:
            content[path] = list(leaf) if isinstance(leaf, tuple) else leaf
    for key in NESTED:
        content.setdefault(key, {} if key == "overrides" else None)
    content["overrides"] = dict(sorted(content["overrides"].items()))
    return content


def content_hash(content: dict[str, Any]) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def diff_paths(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Flattened paths whose value differs; a path that disappeared maps to MISSING."""
    fb, fa = flatten(before), flatten(after)
    changed = {p: v for p, v in fa.items() if fb.get(p, MISSING) != v}
    for p in fb.keys() - fa.keys():
        changed[p] = MISSING
    return changed


def apply_paths(content: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    flat = flatten(content)
    for path, value in changes.items():
        if value is MISSING or value == MISSING:
            flat.pop(path, None)
        else:
            flat[path] = value
    return unflatten(flat)
