"""The sync planner: a pure function of (side A listing, side B listing, link status) -> plans.

It follows the shape of a three-way sync against a status table (as vdirsyncer does): every branch below
is one case with a one-line comment, and each case yields one `EventPlan` that says what to record and
what to write. It knows nothing of providers: side "a" is the meeting side (Zoom), side "b" the calendar,
but only through the generic flags on `Item` (marker, peer_ref, wants_peer) and the rules it is given.

Listings map a remote id to the item now there, or to None when the item is gone. An id that a listing
does not mention is unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from zoomcal.connectors.base import Item
from zoomcal.domain.content import (
    CONTENT_VERSION,
    MISSING,
    READ_ONLY,
    absorb,
    apply_paths,
    apply_view,
    as_version,
    attendee_detail,
    content_hash,
    content_version,
    diff_paths,
    diff_view,
    side_holds,
    upgraded,
)

SIDES = ("a", "b")


def other(side: str) -> str:
    return "b" if side == "a" else "a"


@dataclass(frozen=True)
class SideLink:
    """What the status table knows of one side of an event (the base for three-way decisions)."""

    remote_id: str | None
    etag: str | None = None
    hash: str | None = None
    state: dict[str, Any] | None = None
    pending: str | None = None          # "create" | "update" | "delete": a write we started, not yet confirmed


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    base: dict[str, Any]
    a: SideLink | None = None
    b: SideLink | None = None

    def link(self, side: str) -> SideLink | None:
        return self.a if side == "a" else self.b


@dataclass(frozen=True)
class Write:
    side: str
    op: str                             # "create" | "update" | "delete"
    remote_id: str | None = None
    etag: str | None = None
    maybe_exists: bool = False          # a create that may already have happened (retry after a crash)


@dataclass(frozen=True)
class Review:
    event_id: str
    path: str
    a_value: Any
    b_value: Any
    chosen: str


@dataclass
class EventPlan:
    event_id: str
    reason: str
    base: dict[str, Any] | None                       # None: forget the event
    seen: dict[str, Item | None] = field(default_factory=dict)   # side -> item now there (None: gone)
    writes: list[Write] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    held: bool = False
    changed: dict[str, list[str]] = field(default_factory=dict)   # side -> fields its item changed since the base
    rules: list[str] = field(default_factory=list)                # the rules that shaped this plan, in words

    @property
    def is_noop(self) -> bool:
        return (not self.writes and not self.reviews and self.base is not None and not self.seen
                and not self.held)


@dataclass(frozen=True)
class PlanRules:
    winner: str = "b"                                  # side whose value wins a same-field conflict
    adopt_winner: str = "a"                            # side whose fields win when adopting an existing pair
    flows: dict[str, frozenset[str]] = field(default_factory=dict)  # side -> fields whose edits do NOT flow
    max_delete_share: float = 0.5
    min_delete_items: int = 5
    confirm_deletes: bool = False
    read_only: frozenset[str] = frozenset()            # sides never written (an ICS feed): record, do not write

    def blocked(self, side: str, path: str) -> bool:
        return path.split("/", 1)[0] in self.flows.get(side, frozenset())


@dataclass
class Plan:
    events: list[EventPlan]
    held_deletes: int = 0

    @property
    def writes(self) -> list[tuple[EventPlan, Write]]:
        return [(p, w) for p in self.events for w in p.writes]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, w in self.writes:
            key = f"{w.op}_{w.side}"
            out[key] = out.get(key, 0) + 1
        out["reviews"] = sum(len(p.reviews) for p in self.events)
        out["held_deletes"] = self.held_deletes
        return out


def new_event_id(pair_key: str, side: str, remote_id: str) -> str:
    """Deterministic, so a plan repeated after a crash names the same event (and the same create keys)."""
    return "ev" + hashlib.blake2b(f"{pair_key}|{side}|{remote_id}".encode(), digest_size=12).hexdigest()


class _Unseen:
    def __repr__(self) -> str:
        return "UNSEEN"


UNSEEN: Any = _Unseen()


@dataclass
class StatusIndex:
    """The link status, indexed the way the planner looks it up (built once per run from the store)."""

    records: dict[str, EventRecord]
    by_remote: dict[str, dict[str, EventRecord]]
    pending: set[str]

    @classmethod
    def build(cls, events: Iterable[EventRecord]) -> StatusIndex:
        records: dict[str, EventRecord] = {}
        by_a: dict[str, EventRecord] = {}
        by_b: dict[str, EventRecord] = {}
        pending: set[str] = set()
        for ev in events:
            records[ev.event_id] = ev
            a, b = ev.a, ev.b
            if a is not None:
                if a.remote_id is not None:
                    by_a[a.remote_id] = ev
                if a.pending:
                    pending.add(ev.event_id)
            if b is not None:
                if b.remote_id is not None:
                    by_b[b.remote_id] = ev
                if b.pending:
                    pending.add(ev.event_id)
        return cls(records, {"a": by_a, "b": by_b}, pending)


def plan_sync(
    listing_a: dict[str, Item | None],
    listing_b: dict[str, Item | None],
    events: Iterable[EventRecord] | StatusIndex,
    rules: PlanRules = PlanRules(),
    pair_key: str = "",
) -> Plan:
    listings = {"a": listing_a, "b": listing_b}
    status = events if isinstance(events, StatusIndex) else StatusIndex.build(events)
    records = status.records
    by_remote = status.by_remote
    # side -> event id -> item now there / None when gone (only what the listings mention)
    seen: dict[str, dict[str, Item | None]] = {"a": {}, "b": {}}
    unlinked: dict[str, dict[str, Item]] = {"a": {}, "b": {}}
    for side in SIDES:
        for remote_id, item in listings[side].items():
            ev = by_remote[side].get(remote_id)
            if ev is not None:
                seen[side][ev.event_id] = item
            elif item is not None:
                unlinked[side][remote_id] = item

    plans: list[EventPlan] = []
    claimed: set[str] = set()
    # An unlinked item carrying our marker is the twin of a create we started: adopt it, never create again.
    for side in SIDES:
        for remote_id, item in list(unlinked[side].items()):
            ev = records.get(item.marker or "")
            link = ev.link(side) if ev else None
            if ev is not None and (link is None or link.remote_id is None or link.pending == "create") \
                    and ev.event_id not in seen[side]:
                seen[side][ev.event_id] = item
                claimed.add(f"{side}:{ev.event_id}")
                del unlinked[side][remote_id]

    # A calendar item pointing at a meeting (join URL / meeting id) pairs with it: adopt instead of twins.
    for b_id, b_item in list(unlinked["b"].items()):
        ref = b_item.peer_ref
        if not ref:
            continue
        if ref in unlinked["a"]:
            a_item = unlinked["a"].pop(ref)
            del unlinked["b"][b_id]
            plans.append(_adopt_pair(new_event_id(pair_key, "a", ref), a_item, b_item, rules))
            continue
        ev = by_remote["a"].get(ref)
        if ev is not None and (ev.b is None or ev.b.remote_id is None) and ev.event_id not in seen["b"]:
            seen["b"][ev.event_id] = b_item
            del unlinked["b"][b_id]

    # Items nobody knows yet: new events.
    for side in SIDES:
        for remote_id, item in unlinked[side].items():
            event_id = new_event_id(pair_key, side, remote_id)
            if event_id in records:
                # the id is taken by an event that lost this item earlier: treat it as that event's item
                seen[side].setdefault(event_id, item)
                continue
            plan = EventPlan(event_id, "", base=item.content, seen={side: item})
            if item.wants_peer:
                plan.writes.append(Write(other(side), "create"))
                plan.reason = f"new on {side.upper()} -> create on {other(side).upper()}"
                plan.rules.append(f"{side.upper()} item asks for a counterpart (marker)")
            else:
                plan.reason = f"new on {side.upper()} -> track (no counterpart wanted)"
            plans.append(plan)

    touched = set(seen["a"]) | set(seen["b"]) | status.pending
    for event_id in touched:
        ev = records[event_id]
        plans.append(_plan_event(ev, seen["a"].get(event_id, UNSEEN), seen["b"].get(event_id, UNSEEN), rules))

    _spare_read_only(plans, rules)
    held = _guard_mass_delete(plans, {s: len(by_remote[s]) for s in SIDES}, rules)
    return Plan([p for p in plans if not p.is_noop], held_deletes=held)


def _adopt_pair(event_id: str, a_item: Item, b_item: Item, rules: PlanRules) -> EventPlan:
    """First sync found both halves of a pair: merge them, the adopt winner's fields first."""
    items = {"a": a_item, "b": b_item}
    loser = other(rules.adopt_winner)
    lose, win = items[loser], items[rules.adopt_winner]
    base = apply_paths(lose.content, {p: v for p, v in diff_paths(lose.content, win.content).items()
                                      if v != MISSING})
    plan = EventPlan(event_id, "existing pair adopted (matched by meeting id)", base=base, seen=dict(items),
                     rules=[f"{rules.adopt_winner.upper()}'s fields win when an existing pair is adopted"])
    if any(side_holds(lose.content, p) for p in diff_paths(lose.content, base)):
        plan.writes.append(Write(loser, "update", lose.id, lose.etag))
    return plan


def _view_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Changed paths with times seen as start + duration."""
    return diff_view(before, after)


def _apply(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    return apply_view(base, changes) if changes else base


def _changes(link: SideLink | None, now: Any, side: str, rules: PlanRules,
             blocked: list[str] | None = None) -> dict[str, Any]:
    """The fields the side's item changed since it was last seen, without those whose edits do not flow from
    that side (named in `blocked`)."""
    if link is None or now is UNSEEN or now is None or link.state is None:
        return {}
    if now.hash == link.hash:
        return {}   # content unchanged (an etag-only change writes nothing)
    before, after = link.state, now.content
    version = content_version(before)
    if version < content_version(after):
        # stored by an older release: compare what that release would have seen; what it could not see is no
        # change on this side (it is absorbed into the base instead)
        seen_then = as_version(after, version)
        if content_hash(seen_then) == link.hash:
            return {}
        before, after = upgraded(before), upgraded(seen_then)
    return _flowing(_view_diff(before, after), side, rules, blocked)


def _flowing(changes: dict[str, Any], side: str, rules: PlanRules, blocked: list[str] | None) -> dict[str, Any]:
    kept = {p: v for p, v in changes.items() if not rules.blocked(side, p)}
    if blocked is not None:
        blocked += sorted({p.split("/", 1)[0] for p in changes if p not in kept})
    return kept


def _absorb_upgrades(base: dict[str, Any], links: dict[str, SideLink | None], now: dict[str, Any],
                     rules: PlanRules) -> dict[str, Any]:
    """What a side shows beyond the shape its link was stored in (details an older release did not read) goes
    into the base as no change on either side: an upgrade writes nothing remote. The winner's side first."""
    for side in (rules.winner, other(rules.winner)):
        link, item = links[side], now[side]
        if link is None or link.state is None or item is None or item is UNSEEN:
            continue
        stored = content_version(link.state)
        if stored < CONTENT_VERSION and stored < content_version(item.content):
            base = absorb(base, item.content, stored)
    return base


def _plan_event(ev: EventRecord, a_now: Any, b_now: Any, rules: PlanRules) -> EventPlan:
    now = {"a": a_now, "b": b_now}
    links = {"a": ev.a, "b": ev.b}
    # an event stored by an older release, in the current shape
    ev_base = ev.base if content_version(ev.base) == CONTENT_VERSION else upgraded(ev.base)
    seen = {s: now[s] for s in SIDES if now[s] is not UNSEEN}
    present = {s: links[s] is not None and links[s].remote_id is not None for s in SIDES}
    gone = {s: present[s] and now[s] is None for s in SIDES}
    # a create we started but never confirmed (its id may be known in advance, or not at all)
    unconfirmed = {s: links[s] is not None and links[s].pending == "create" for s in SIDES}
    # ...whose twin now shows up in the listing
    adopted = {s: unconfirmed[s] and now[s] not in (None, UNSEEN) for s in SIDES}
    blocked: dict[str, list[str]] = {s: [] for s in SIDES}
    changes = {s: _changes(links[s], now[s], s, rules, blocked[s]) for s in SIDES}
    for s in SIDES:
        if adopted[s]:
            # the twin holds what we wrote (the base) plus whatever happened to it since: edits and, for the
            # side that originates them, fields such as join info. What it cannot hold is not a change.
            blocked[s] = []
            changes[s] = _flowing({p: v for p, v in _view_diff(ev_base, now[s].content).items() if v != MISSING},
                                  s, rules, blocked[s])
    told = _told(changes, blocked)

    def item_or_link(side: str):
        if now[side] not in (None, UNSEEN):
            return now[side].id, now[side].etag
        return links[side].remote_id, links[side].etag

    if all(gone[s] or links[s] is None for s in SIDES) and any(gone.values()):
        # gone everywhere we had it -> forget the event
        return told(EventPlan(ev.event_id, "deleted on every side -> forget", base=None, seen=seen))

    for side in SIDES:
        peer = other(side)
        if gone[side] and (present[peer] or adopted[peer]) and not gone[peer]:
            if changes[peer]:
                # deleted on one side but modified on the other -> modification wins: recreate
                base = _absorb_upgrades(_apply(ev_base, changes[peer]), links, now, rules)
                return told(EventPlan(ev.event_id, f"deleted on {side.upper()} but modified on {peer.upper()} "
                                      f"-> recreate on {side.upper()}", base=base, seen=seen,
                                      writes=[Write(side, "create", maybe_exists=True)]))
            # deleted on one side, unchanged on the other -> delete there too
            remote_id, etag = item_or_link(peer)
            return told(EventPlan(ev.event_id, f"deleted on {side.upper()} -> delete on {peer.upper()}",
                                  base=ev_base, seen=seen, writes=[Write(peer, "delete", remote_id, etag)]))
        if gone[side] and links[peer] is None:
            # a tracked item (no counterpart) went away -> forget it
            return told(EventPlan(ev.event_id, f"deleted on {side.upper()} -> forget", base=None, seen=seen))
        if gone[side] and unconfirmed[peer]:
            if links[peer].remote_id is not None:
                # gone before its counterpart was confirmed -> delete the counterpart we may have made
                return told(EventPlan(ev.event_id, f"deleted on {side.upper()} before its counterpart was "
                                      f"confirmed -> delete on {peer.upper()}", base=ev_base, seen=seen,
                                      writes=[Write(peer, "delete", links[peer].remote_id, None)]))
            # gone before its counterpart was created -> forget it (the create is abandoned)
            return told(EventPlan(ev.event_id, f"deleted on {side.upper()} before its counterpart existed "
                                  "-> forget", base=None, seen=seen))

    def held(side: str) -> dict[str, Any] | None:
        """What the side holds now: its item, else what we last knew of it."""
        if now[side] not in (None, UNSEEN):
            return now[side].content
        return links[side].state if links[side] else None

    base, reviews, to_side = _merge(ev.event_id, ev_base, changes["a"], changes["b"], rules, held)
    base = _absorb_upgrades(base, links, now, rules)
    plan = told(EventPlan(ev.event_id, "", base=base, seen=seen, reviews=reviews))
    plan.rules += [f"{r.path} changed on both sides: {r.chosen.upper()} wins (conflict.policy)" for r in reviews]
    reasons = []
    for side in SIDES:
        link = links[side]
        if any(w.side == side for w in plan.writes):
            continue
        if link is None:
            peer_item = now[other(side)]
            if peer_item not in (None, UNSEEN) and peer_item.wants_peer:
                # an item that now asks for a counterpart (e.g. marked for Zoom later) -> create it
                plan.writes.append(Write(side, "create"))
                reasons.append(f"create on {side.upper()}")
                plan.rules.append(f"{other(side).upper()} item asks for a counterpart (marker)")
            continue
        if unconfirmed[side] and not adopted[side]:
            # a create we started earlier never got confirmed -> create again, adopting a twin if one exists
            plan.writes.append(Write(side, "create", maybe_exists=True))
            reasons.append(f"retry create on {side.upper()}")
        elif link.pending == "delete" and changes[side]:
            # a delete we still owed, but the item was modified since -> modification wins: keep it, recreate peer
            peer_owed = any(w.side == other(side) for w in plan.writes)
            if not peer_owed and (links[other(side)] is None or not present[other(side)]):
                plan.writes.append(Write(other(side), "create", maybe_exists=True))
                reasons.append(f"keep {side.upper()} (modified), recreate on {other(side).upper()}")
        elif link.pending == "delete":
            plan.writes.append(Write(side, "delete", *item_or_link(side)))
            reasons.append(f"retry delete on {side.upper()}")
        elif to_side[side] or link.pending == "update":
            # changed on the other side (or an earlier update did not finish) -> update this side
            plan.writes.append(Write(side, "update", *item_or_link(side)))
            reasons.append(f"update {side.upper()}")
    changed_on = [s.upper() for s in SIDES if changes[s]]
    prefix = f"modified on {'+'.join(changed_on)}" if changed_on else "unchanged"
    plan.reason = prefix + (" -> " + ", ".join(reasons) if reasons else "")
    if reviews:
        plan.reason += f"; {len(reviews)} conflicting field(s) -> review queue"
    if not plan.writes and not reviews and not changes["a"] and not changes["b"]:
        kept_back = [f"{', '.join(fields)} on {s.upper()}" for s, fields in blocked.items() if fields]
        # nothing changed in content (or only what the rules keep from flowing): etags/last-seen to record
        plan.reason = f"edited {'; '.join(kept_back)}: kept there by the rules" if kept_back else "unchanged"
    return plan


def _told(changes: dict[str, dict[str, Any]], blocked: dict[str, list[str]]) -> Callable[[EventPlan], EventPlan]:
    """Stamp a plan with what each side changed and the flow rules that kept edits back."""
    def stamp(plan: EventPlan) -> EventPlan:
        plan.changed = {s: sorted({p.split("/", 1)[0] for p in changes[s]}) for s in SIDES if changes[s]}
        plan.rules += [f"{', '.join(fields)} edits on {s.upper()} do not flow from there (fields)"
                       for s, fields in blocked.items() if fields]
        return plan
    return stamp


def _merge(event_id: str, base: dict[str, Any], a_changes: dict[str, Any], b_changes: dict[str, Any],
           rules: PlanRules, held: Callable[[str], dict[str, Any] | None] | None = None,
           ) -> tuple[dict[str, Any], list[Review], dict[str, bool]]:
    """Field-level three-way merge against the base; same path changed differently -> policy + review.

    `held(side)` is what that side holds now: a change goes to a side only if the side can hold it (an attendee's
    answer never calls for a Zoom write; the organizer is never written)."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    reviews: list[Review] = []
    for path, value in a_changes.items():
        merged[path], origin[path] = value, "a"
    for path, value in b_changes.items():
        if path in merged and merged[path] != value:
            if path.split("/", 1)[0] not in READ_ONLY:   # nobody can act on a read-only field: no review
                reviews.append(Review(event_id, path, _show(merged[path]), _show(value), rules.winner))
            if rules.winner == "b":
                merged[path], origin[path] = value, "b"
        elif path in merged:
            origin[path] = "both"
        else:
            merged[path], origin[path] = value, "b"
    result = _apply(base, merged)
    attendees = result.get("attendees") or {}
    to_side = {"a": False, "b": False}
    for path, source in origin.items():
        target = other(source) if source in SIDES else None
        if target is None or to_side[target]:
            continue
        detail = attendee_detail(path)
        if detail is not None and detail[0] not in attendees:
            continue   # an attendee removed on one side is removed entirely: the other side's edits of it go nowhere
        if side_holds(held(target) if held else None, path):
            to_side[target] = True
    return result, reviews, to_side


def _show(value: Any) -> Any:
    return None if value == MISSING else (list(value) if isinstance(value, tuple) else value)


def _spare_read_only(plans: list[EventPlan], rules: PlanRules) -> None:
    for p in plans:
        refused = sorted({w.side.upper() for w in p.writes if w.side in rules.read_only})
        if refused:
            # a write to a read-only side -> record what was seen, write nothing there
            p.writes = [w for w in p.writes if w.side not in rules.read_only]
            p.reason += f"; {' and '.join(refused)} read-only -> not written"
            p.rules.append(f"{' and '.join(refused)} read-only (a busy source): never written")


def _guard_mass_delete(plans: list[EventPlan], linked: dict[str, int], rules: PlanRules) -> int:
    if rules.confirm_deletes:
        return 0
    held = 0
    for side in SIDES:
        deleting = [p for p in plans if any(w.side == side and w.op == "delete" for w in p.writes)]
        if len(deleting) >= max(1, rules.min_delete_items) and len(deleting) > rules.max_delete_share * linked[side]:
            for p in deleting:
                # too many deletions at once -> hold them until someone confirms (nothing recorded, nothing written)
                p.writes = [w for w in p.writes if not (w.side == side and w.op == "delete")]
                p.seen = {}
                p.held = True
                p.reason = f"held: mass delete on {side.upper()} ({len(deleting)} of {linked[side]})"
                p.rules.append(f"deleting more than {int(rules.max_delete_share * 100)}% of {side.upper()} at once "
                               "is held for confirmation (deletes.max_share)")
                held += 1
    return held
