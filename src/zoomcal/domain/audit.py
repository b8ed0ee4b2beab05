"""The audit trail's hash chain, as pure functions.

Each tenant's entries are numbered 1, 2, 3, ... and each carries the hash of the one before it; an entry's hash
covers its number, time, tenant, who, what, target, detail and that previous hash. Changing, removing or
reordering any entry breaks the chain at that point, which `verify` reports. Cutting entries off the end leaves a
shorter chain that is still whole: a head (number and hash) kept elsewhere catches that (`verify(..., head=...)`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def canonical_detail(detail: dict[str, Any] | None) -> dict[str, Any]:
    """The detail as the store keeps it: plain JSON (anything else as its text), so what is hashed is what is
    read back."""
    return json.loads(json.dumps(detail or {}, default=str, sort_keys=True))


def stamp(at: datetime) -> str:
    """A UTC time to the microsecond; a naive time (as SQLite gives it back) is UTC."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Entry:
    tenant_id: int
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str = ""


def entry_hash(entry: Entry) -> str:
    body = json.dumps([entry.tenant_id, entry.seq, stamp(entry.at), entry.actor, entry.action, entry.target,
                       canonical_detail(entry.detail), entry.prev_hash],
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.what}"


def verify(entries: Iterable[Entry], head: tuple[int, str] | None = None) -> tuple[list[Problem], int, str]:
    """Walk one tenant's entries in order of their numbers -> (problems, last number, last hash). `head`: a
    (number, hash) recorded earlier, which the chain must still contain."""
    problems: list[Problem] = []
    expected_seq, prev = 1, GENESIS
    seen_head = head is None
    for entry in entries:
        if entry.seq != expected_seq:
            what = (f"entries {expected_seq}..{entry.seq - 1} are missing" if entry.seq > expected_seq
                    else f"out of order (after {expected_seq - 1})")
            problems.append(Problem(entry.seq, what))
        if entry.prev_hash != prev:
            problems.append(Problem(entry.seq, "does not follow the entry before it (removed, inserted or moved)"))
        if entry_hash(entry) != entry.hash:
            problems.append(Problem(entry.seq, "was altered after it was written (its hash does not match)"))
        if head is not None and entry.seq == head[0]:
            seen_head = True
            if entry.hash != head[1]:
                problems.append(Problem(entry.seq, "differs from the head recorded earlier"))
        expected_seq, prev = max(expected_seq, entry.seq) + 1, entry.hash
    if not seen_head:
        problems.append(Problem(head[0], f"the head recorded earlier is gone: the chain ends at {expected_seq - 1}"))
    return problems, expected_seq - 1, prev
