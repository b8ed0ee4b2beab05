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
    attendees                   {lower-case e-mail: details}, details being any of
                                  "name" (display name, "" when none), "status" (one of RESPONSES),
                                  "optional" (bool; False = required)
    organizer                   {"email", "name"} or None; read from providers, never written
    show_as                     how the event counts for availability: busy, tentative, free, ooo, focus
    join                        {"meeting_id", "join_url", "passcode"} for a Zoom meeting, else None
    version                     the version of this shape (CONTENT_VERSION); content stored without one is 1

A side that cannot hold a field simply leaves it out of what it reports; the merge works per flattened
path, so a field one side never shows is never "changed" by that side. An attendee detail works the same
way: Zoom reports its invitees as {e-mail: {}}, a calendar reports every detail it holds. A change that a
side cannot hold (an attendee's answer, for Zoom) therefore never calls for a write to it (`side_holds`).

Versions: content stored by an older release (an event's content, a link's state) keeps the shape it was
written in. `as_version` shows current content the way an older version would have held it and `upgraded`
brings old content to the current shape (what the old one did not know is empty), so stored hashes keep
their meaning: the planner compares a new listing with an old link state in the old shape, and takes what
the old shape could not see into the base without calling it a change (`absorb`).

Version 1: attendees were a sorted list of lower-case e-mails; there was no organizer and no version key.
Version 2: attendees as above, organizer, version.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from zoomcal.domain.timeutil import fmt_instant, is_date, parse_date, to_datetime

CONTENT_VERSION = 2
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
    "organizer",
    "show_as",
    "join",
    "version",
)
# Containers whose keys are merged one by one instead of as a whole value.
NESTED = ("overrides", "join", "attendees")
# Fields read from providers and never written: their changes call for no write anywhere.
READ_ONLY = ("organizer",)
RESPONSES = ("needs_action", "accepted", "tentative", "declined")
ATTENDEE_DETAILS = ("name", "status", "optional")
MISSING = "\x00missing"
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "Zulu", "Universal", "Etc/Universal", "Etc/Zulu"})


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
        "attendees": {},
        "organizer": None,
        "show_as": "busy",
        "join": None,
        "version": CONTENT_VERSION,
    }


def make_content(**fields: Any) -> dict[str, Any]:
    content = empty_content()
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise KeyError(f"unknown content fields: {sorted(unknown)}")
    content.update(fields)
    if content["timezone"] in UTC_NAMES:
        content["timezone"] = None   # one spelling for UTC, whatever the provider wrote
    content["exdates"] = sorted(set(content["exdates"] or []))
    content["rdates"] = sorted(set(content["rdates"] or []))
    content["attendees"] = make_attendees(content["attendees"])
    content["organizer"] = make_organizer(content["organizer"])
    content["overrides"] = dict(sorted((content["overrides"] or {}).items()))
    content["version"] = CONTENT_VERSION
    return content


def make_attendees(value: Any) -> dict[str, dict[str, Any]]:
    """{e-mail: details} from that map, from a list of e-mails (booking) or from a list of
    {"email", details...}; e-mails lower-case, details limited to ATTENDEE_DETAILS, the first spelling wins."""
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = [(a, {}) if isinstance(a, str) else (a.get("email"), a) for a in value or [] if a]
    out: dict[str, dict[str, Any]] = {}
    for email, details in pairs:
        key = (email or "").strip().lower()
        if not key:
            continue
        entry = out.setdefault(key, {})
        for name in ATTENDEE_DETAILS:
            if name in (details or {}) and name not in entry:
                entry[name] = _detail(name, details[name])
    return dict(sorted(out.items()))


def _detail(name: str, value: Any) -> Any:
    if name == "status":
        return value if value in RESPONSES else "needs_action"
    if name == "optional":
        return bool(value)
    return str(value or "").strip()


def make_organizer(value: Any) -> dict[str, str] | None:
    if isinstance(value, str):
        value = {"email": value}
    email = ((value or {}).get("email") or "").strip().lower()
    return {"email": email, "name": str(value.get("name") or "").strip()} if email else None


# --- flattened paths ---------------------------------------------------------------------------------------------
# An attendee is "attendees/<e-mail>" (its presence) plus "attendees/<e-mail>/<detail>" per detail it has. An
# e-mail may hold "/" (RFC 5321 allows it before the "@"), so it is escaped in paths.

def _path_key(email: str) -> str:
    return email.replace("%", "%25").replace("/", "%2F")


def _path_email(key: str) -> str:
    return key.replace("%2F", "/").replace("%25", "%")


def attendee_path(email: str, detail: str | None = None) -> str:
    return f"attendees/{_path_key(email)}" + (f"/{detail}" if detail else "")


def attendee_detail(path: str) -> tuple[str, str] | None:
    """(e-mail, detail) when `path` is an attendee's detail, else None."""
    if not path.startswith("attendees/"):
        return None
    parts = path.split("/")
    return (_path_email(parts[1]), parts[2]) if len(parts) == 3 else None


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
            elif key == "attendees":
                for email, details in value.items():
                    flat[attendee_path(email)] = True
                    for sub, leaf in details.items():
                        flat[attendee_path(email, sub)] = leaf
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
    present: set[str] = set()
    for path, leaf in flat.items():
        parts = path.split("/")
        if parts[0] == "overrides":
            content.setdefault("overrides", {}).setdefault(parts[1], {})[parts[2]] = leaf
        elif parts[0] == "attendees":
            entry = content.setdefault("attendees", {}).setdefault(_path_email(parts[1]), {})
            if len(parts) == 3:
                entry[parts[2]] = leaf
            else:
                present.add(_path_email(parts[1]))
        elif len(parts) == 2:
            content.setdefault(parts[0], {})[parts[1]] = leaf
        else:
            content[path] = list(leaf) if isinstance(leaf, tuple) else leaf
    for key in NESTED:
        content.setdefault(key, {} if key in ("overrides", "attendees") else None)
    content["overrides"] = dict(sorted(content["overrides"].items()))
    # an attendee is there only with its presence path: details left without it (removed on one side while
    # the other changed an answer) go with it, so a removed attendee is removed entirely
    content["attendees"] = {e: d for e, d in sorted(content["attendees"].items()) if e in present}
    return content


def content_hash(content: dict[str, Any]) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _leaf(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def diff_paths(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Flattened paths whose value differs; a path that disappeared maps to MISSING.

    Equal top-level values are skipped without flattening (the common case: one or two fields changed).
    """
    changed: dict[str, Any] = {}
    keys = after.keys() if before.keys() == after.keys() else before.keys() | after.keys()
    for key in keys:
        old, new = before.get(key, MISSING), after.get(key, MISSING)
        if old == new:
            continue
        if key in NESTED:
            fb = flatten({key: old}) if old is not MISSING else {}
            fa = flatten({key: new}) if new is not MISSING else {}
            for path, value in fa.items():
                if fb.get(path, MISSING) != value:
                    changed[path] = value
            for path in fb.keys() - fa.keys():
                changed[path] = MISSING
        else:
            changed[key] = MISSING if new is MISSING else _leaf(new)
    return changed


def apply_paths(content: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(content)
    nested: dict[str, dict[str, Any]] = {}
    for path, value in changes.items():
        head, sep, _rest = path.partition("/")
        if sep:
            nested.setdefault(head, {})[path] = value
        elif value is MISSING or value == MISSING:
            out.pop(path, None)
        else:
            out[path] = list(value) if isinstance(value, tuple) else value
    for head, sub in nested.items():
        flat = flatten({head: out.get(head)})
        for path, value in sub.items():
            if value is MISSING or value == MISSING:
                flat.pop(path, None)
            else:
                flat[path] = value
        out[head] = unflatten(flat)[head]
    return out


# --- the merge view: times as (start, duration) ----------------------------------------------------------------
# Moving an event and changing its length are separate intentions: one side may move a meeting while the other
# lengthens it. Merged as (start, end), both edits touch "end" and collide; merged as (start, duration) they
# combine, and the result can never end before it starts.

def length_of(start: str, end: str) -> int:
    if is_date(start) and is_date(end):
        return (parse_date(end) - parse_date(start)).days
    return int((to_datetime(end) - to_datetime(start)).total_seconds())


def add_length(start: str, length: int) -> str:
    if is_date(start):
        return (parse_date(start) + timedelta(days=length)).isoformat()
    return fmt_instant(to_datetime(start) + timedelta(seconds=length))


def _times_to_view(entry: dict[str, Any]) -> dict[str, Any]:
    if entry.get("start") is None or entry.get("end") is None:
        return entry
    out = {k: v for k, v in entry.items() if k != "end"}
    out["duration"] = length_of(entry["start"], entry["end"])
    return out


def _times_from_view(entry: dict[str, Any]) -> dict[str, Any]:
    if "duration" not in entry:
        return entry
    out = {k: v for k, v in entry.items() if k != "duration"}
    out["end"] = add_length(entry["start"], entry["duration"]) if entry.get("start") is not None else None
    return out


def merge_view(content: dict[str, Any]) -> dict[str, Any]:
    view = _times_to_view(content)
    if content.get("overrides"):
        view["overrides"] = {rid: _times_to_view(ov) for rid, ov in content["overrides"].items()}
    return view


def from_merge_view(view: dict[str, Any]) -> dict[str, Any]:
    content = _times_from_view(view)
    if view.get("overrides"):
        content["overrides"] = {rid: _times_from_view(ov) for rid, ov in view["overrides"].items()}
    ordered = {key: content.get(key) for key in FIELDS if key in content}
    return ordered


def diff_view(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`diff_paths` of the merge views, computed without building them in the common cases."""
    changed = diff_paths(before, after)
    if any(p.startswith("overrides/") and not p.endswith(("/title", "/description")) for p in changed):
        return diff_paths(merge_view(before), merge_view(after))
    if "start" in changed or "end" in changed:
        changed.pop("end", None)
        new_len = length_of(after["start"], after["end"]) if after.get("start") and after.get("end") else None
        old_len = length_of(before["start"], before["end"]) if before.get("start") and before.get("end") else None
        if new_len != old_len:
            changed["duration"] = MISSING if new_len is None else new_len
    return changed


def apply_view(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply changes from `diff_view` to a (plain) content."""
    if any(p.startswith("overrides/") and p.endswith(("/start", "/duration")) for p in changes):
        return from_merge_view(apply_paths(merge_view(base), changes))
    duration = changes.get("duration", MISSING)
    plain = {p: v for p, v in changes.items() if p != "duration"} if "duration" in changes else changes
    out = apply_paths(base, plain)
    if ("start" in changes or duration is not MISSING) and out.get("start") is not None:
        if duration is MISSING or duration == MISSING:
            duration = length_of(base["start"], base["end"]) if base.get("start") and base.get("end") else None
        if duration is not None:
            out["end"] = add_length(out["start"], duration)
    return out


# --- content versions ---------------------------------------------------------------------------------------------
# One step per version: how content of version N becomes version N + 1 (what N did not know is empty), and how
# content of version N + 1 looks to version N (exactly as a release of version N stored it).

def _up_from_1(content: dict[str, Any]) -> dict[str, Any]:
    out = dict(content)
    attendees = content.get("attendees") or []
    out["attendees"] = make_attendees(attendees) if isinstance(attendees, list) else attendees
    out["organizer"] = None
    out["version"] = 2
    return out


def _down_to_1(content: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in content.items() if k not in ("organizer", "version")}
    out["attendees"] = sorted(content.get("attendees") or {})
    return out


UPGRADES = {1: _up_from_1}     # version N -> content of N + 1
DOWNGRADES = {2: _down_to_1}   # version N -> content of N - 1


def content_version(content: dict[str, Any]) -> int:
    return content.get("version") or 1


def upgraded(content: dict[str, Any]) -> dict[str, Any]:
    """Content of any version in the current shape."""
    version = content_version(content)
    while version < CONTENT_VERSION:
        content = UPGRADES[version](content)
        version += 1
    return content


def as_version(content: dict[str, Any], version: int) -> dict[str, Any]:
    """Current content as a release of `version` would have held it (and hashed it)."""
    current = content_version(content)
    while current > version:
        content = DOWNGRADES[current](content)
        current -= 1
    return content


def absorb(base: dict[str, Any], content: dict[str, Any], version: int) -> dict[str, Any]:
    """The base with what `content` holds beyond `version`'s shape filled in where the base has nothing yet
    (details of attendees the base has, the organizer). Details of attendees the base lacks are left out."""
    unseen = diff_paths(upgraded(as_version(content, version)), content)
    known = flatten(base)
    fill = {p: v for p, v in unseen.items() if v != MISSING and known.get(p) is None}
    return apply_paths(base, fill) if fill else base


def side_holds(held: dict[str, Any] | None, path: str) -> bool:
    """Can a side that holds `held` (what it reported last; None: unknown) take a change of `path`?

    No side is written a read-only field; an attendee detail goes only to a side whose entry for that attendee
    carries the detail (Zoom's invitees carry none). An attendee the side lacks is taken, details and all.
    """
    if path.partition("/")[0] in READ_ONLY:
        return False
    detail = attendee_detail(path)
    if held is None or detail is None:
        return True
    entry = (upgraded(held).get("attendees") or {}).get(detail[0])
    return entry is None or detail[1] in entry
