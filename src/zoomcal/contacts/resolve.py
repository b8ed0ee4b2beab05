"""Identity resolution: which contact records, from every source, are one human — a pure function.

Records are one person when they share a normalised e-mail address (any of their addresses, primary or not);
a record holding an address of a zoomcal user is that user. A display name never merges anything: two people
with one name and no shared address are offered as a suggestion only. An admin's decisions are applied on top
and kept across syncs: a merge joins two records (or a record and a user), a split makes a record stand alone.

Records that cannot be a person are problems, each with its reason: no address, only malformed addresses, an
address that two zoomcal users claim, a record that would join two users. Nothing is dropped without one.

The result depends only on the set of inputs: the same records, users and decisions in any order give the
same people, ids, names and problems (property-tested)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha1

from zoomcal.connectors.contacts import KINDS, USER, ContactRecord
from zoomcal.contacts.identity import name_key, split

PROFILE = "zoomcal"     # the name rule's word for a zoomcal user's own profile
DEFAULT_NAME_FROM = (PROFILE, "zoom", "graph-contacts", "google-contacts", "carddav")
MAX_SUGGESTIONS = 1000


@dataclass(frozen=True)
class SourceRecord:
    """A source's record with its addresses' normal forms, worked out once when the record is read (a stored
    record keeps them: `normal_forms`), so resolving never parses an address again."""

    key: str                 # unique across sources: "<source id>/<record id>"
    provider: str            # the source's provider key (what the name rule orders)
    record: ContactRecord
    addresses: tuple[str, ...] | None = None             # the normal forms; None: worked out from the record
    malformed: tuple[tuple[str, str], ...] = ()           # (text, reason) of what is no address

    def __post_init__(self) -> None:
        if self.addresses is None:
            good, bad = split(self.record.emails)
            object.__setattr__(self, "addresses", tuple(good))
            object.__setattr__(self, "malformed", tuple(bad))


NORMAL_FORMS = 1    # the version of identity.normalize that stored normal forms came from


def normal_forms(emails: tuple[str, ...] | list[str]) -> dict:
    """What a stored record keeps of its addresses (JSON), for `SourceRecord.of_stored`."""
    good, bad = split(emails)
    return {"v": NORMAL_FORMS, "addresses": good, "malformed": [list(b) for b in bad]}


def of_stored(key: str, provider: str, record: ContactRecord, stored: dict | None) -> SourceRecord:
    """A record as stored, with the normal forms stored beside it where they are current."""
    if isinstance(stored, dict) and stored.get("v") == NORMAL_FORMS:
        return SourceRecord(key, provider, record, tuple(stored["addresses"]),
                            tuple((t, r) for t, r in stored["malformed"]))
    return SourceRecord(key, provider, record)


@dataclass(frozen=True)
class UserRef:
    user_id: int
    email: str
    name: str = ""
    timezone: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True)
class Decisions:
    merges: frozenset[tuple[str, str]] = frozenset()   # node keys (record keys or "user:<id>") joined by hand
    splits: frozenset[str] = frozenset()                # record keys that stand alone whatever they share
    no_invite: frozenset[str] = frozenset()             # normalised addresses zoomcal may not invite


@dataclass(frozen=True)
class ContactRules:
    name_from: tuple[str, ...] = DEFAULT_NAME_FROM     # whose display name wins: providers in order


@dataclass
class Person:
    id: str
    user_id: int | None
    primary_email: str
    emails: tuple[str, ...]
    display_name: str
    name_from: str                      # the record (or "user:<id>") the name came from
    records: tuple[str, ...]
    zoom_user_id: str | None = None
    timezone: str | None = None
    presence: str | None = None         # the last status a source reported (Zoom)
    invitable: bool = True
    kinds: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    why: str                            # "address" | "merged by hand"
    address: str = ""


@dataclass(frozen=True, order=True)
class Problem:
    record: str
    kind: str                           # no_address | malformed | conflict
    reason: str


@dataclass(frozen=True, order=True)
class Suggestion:
    a: str                              # person ids
    b: str
    reason: str


@dataclass
class Resolution:
    people: list[Person]
    problems: list[Problem]
    suggestions: list[Suggestion]
    why: _Why | None = None

    def person_of(self, node: str) -> Person | None:
        return next((p for p in self.people if node in p.records or node == f"user:{p.user_id}"), None)

    def links_of(self, person: Person) -> list[Link]:
        """Why the person's records are one: the addresses they share, and an admin's merges."""
        nodes = set(person.records) | ({f"user:{person.user_id}"} if person.user_id is not None else set())
        return self.why.links(nodes) if self.why is not None else []


class _Union:
    """Union-find over tokens (addresses, or a node's private token); a token never joined is its own root."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, token: str) -> str:
        parent = self.parent
        root = token
        while True:
            up = parent.get(root)
            if up is None or up == root:
                break
            root = up
        while token != root:       # compress
            token, parent[token] = parent.get(token, root), root
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:   # the smaller root wins: the same sets give the same roots in any order
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def resolve(records: Iterable[SourceRecord], users: Iterable[UserRef] = (), decisions: Decisions = Decisions(),
            rules: ContactRules = ContactRules()) -> Resolution:
    # nothing below depends on the order records come in: keys decide every tie
    records = records if isinstance(records, list) else list(records)
    users = sorted(users, key=lambda u: u.user_id)
    by_key = {r.key: r for r in records}
    user_by_key = {u.key: u for u in users}
    problems: set[Problem] = set()

    # --- addresses: each node's normal forms; who owns what ---------------------------------------------------
    addresses: dict[str, tuple[str, ...]] = {}
    owners: dict[str, set[str]] = defaultdict(set)
    primaries: dict[str, set[str]] = defaultdict(set)
    for u in users:
        own, _bad = split((u.email,))
        addresses[u.key] = tuple(split((u.email, *u.aliases))[0])
        if own:
            primaries[own[0]].add(u.key)
    for u in users:
        for a in addresses[u.key]:
            # a user's own (sign-in) address is theirs alone: another user's alias cannot claim it
            if a in primaries and u.key not in primaries[a]:
                problems.add(Problem(u.key, "conflict", f"the alias {a} is {' and '.join(sorted(primaries[a]))}'s "
                                                        "address: ignored"))
                continue
            owners[a].add(u.key)
    for u in users:
        addresses[u.key] = tuple(a for a in addresses[u.key] if u.key in owners[a])
    claimed = {a for a, o in owners.items() if len(o) > 1}
    for a in sorted(claimed):
        for owner in sorted(owners[a]):
            problems.add(Problem(owner, "conflict", f"{a} is claimed by {' and '.join(sorted(owners[a]))}"))
    merged_by_hand = {n for pair in decisions.merges for n in pair}
    for r in records:
        if r.malformed:
            for text, reason in r.malformed:
                problems.add(Problem(r.key, "malformed", f"{text!r}: {reason}"))
        if r.addresses:
            addresses[r.key] = r.addresses
        elif r.key in merged_by_hand:
            addresses[r.key] = ()
        else:
            problems.add(Problem(r.key, "no_address", "the record has no e-mail address" if not r.malformed
                                 else "none of the record's addresses is usable"))

    # --- records that touch two users cannot be placed ----------------------------------------------------------
    excluded: set[str] = set()
    touches: dict[str, set[str]] = {}
    if owners:
        for key in (r.key for r in records if r.key in addresses):
            touched = {o for a in addresses[key] if a in owners and a not in claimed for o in owners[a]}
            touches[key] = touched
            if len(touched) > 1 and key not in decisions.splits:
                excluded.add(key)
                problems.add(Problem(key, "conflict", f"holds the addresses of {' and '.join(sorted(touched))}"))

    # --- join by shared addresses: union-find over addresses, a record joining the ones it holds ---------------
    dropped: set[str] = set()

    def join() -> tuple[_Union, dict[str, tuple[str, ...]]]:
        uf = _Union()
        if excluded or decisions.splits or claimed or dropped:
            def tokens_of(node: str, held: tuple[str, ...]) -> tuple[str, ...]:
                if node in excluded or node in decisions.splits:
                    return ("#" + node,)
                return tuple(a for a in held if a not in claimed and a not in dropped) or ("#" + node,)
            tokens = {node: tokens_of(node, held) for node, held in addresses.items()}
        else:
            tokens = {node: held or ("#" + node,) for node, held in addresses.items()}
        union = uf.union
        for toks in tokens.values():
            if len(toks) > 1:
                first = toks[0]
                for t in toks[1:]:
                    union(first, t)
        return uf, tokens

    uf, tokens = join()
    # a chain of records can still join two users (x of A and z on one record, z and y of B on another)
    while len({uf.find(tokens[u][0]) for u in user_by_key}) < len(user_by_key):
        roots: dict[str, list[str]] = defaultdict(list)
        for u in user_by_key:
            roots[uf.find(tokens[u][0])].append(u)
        for root, crowd in roots.items():
            if len(crowd) < 2:
                continue
            members = [n for n in addresses if uf.find(tokens[n][0]) == root]
            holders: dict[str, list[str]] = defaultdict(list)
            for n in members:
                for a in tokens[n]:
                    holders[a].append(n)
            bridges = [a for a, nodes in holders.items()
                       if len({u for n in nodes for u in (touches.get(n) or {n} & user_by_key.keys())}) > 1]
            for a in bridges:
                dropped.add(a)
                for n in holders[a]:
                    if n not in user_by_key:
                        problems.add(Problem(n, "conflict", f"{a} is on records of different users: kept apart"))
            if not bridges:
                for n in sorted(members):
                    if n not in user_by_key and not touches.get(n):
                        excluded.add(n)
                        problems.add(Problem(n, "conflict", "it links the addresses of two users: kept apart"))
        uf, tokens = join()

    # --- an admin's merges (never two users in one person) ------------------------------------------------------
    hand: list[tuple[str, str]] = []
    for a, b in sorted(tuple(sorted(pair)) for pair in decisions.merges):
        if a not in tokens or b not in tokens:
            continue
        ra, rb = uf.find(tokens[a][0]), uf.find(tokens[b][0])
        users_a = {u for u in user_by_key if uf.find(tokens[u][0]) == ra}
        users_b = {u for u in user_by_key if uf.find(tokens[u][0]) == rb}
        if users_a and users_b and users_a != users_b:
            problems.add(Problem(a, "conflict", f"a merge with {b} would join two users: not applied"))
            continue
        uf.union(tokens[a][0], tokens[b][0])
        hand.append((a, b))

    # --- people ---------------------------------------------------------------------------------------------------
    groups: dict[str, list[str]] = {}
    parent, find = uf.parent, uf.find
    usable = dict(tokens)       # the addresses that place each node ("#..." is a node alone)
    for node, toks in tokens.items():
        first = toks[0]
        if first[0] == "#":
            usable[node] = () if node not in decisions.splits else \
                tuple(a for a in addresses[node] if a not in claimed and a not in dropped)
        root = find(first) if first in parent else first
        held = groups.get(root)
        if held is None:
            groups[root] = [node]
        else:
            held.append(node)
    people: list[Person] = []
    build = _Builder(by_key, usable, decisions, rules)
    for members in groups.values():
        if len(members) == 1:       # the common case: one record alone (or a user without records)
            node = members[0]
            user = user_by_key.get(node)
            record_keys = () if user is not None or node in excluded else (node,)
        else:
            user = next((user_by_key[n] for n in members if n in user_by_key), None)
            record_keys = tuple(sorted(n for n in members if n in by_key and n not in excluded))
        if not record_keys and user is None:
            continue
        if user is None and not any(usable[k] for k in record_keys):
            for k in record_keys:   # nobody to reach: every address it has is another's too
                if addresses.get(k):
                    problems.add(Problem(k, "conflict", "each of its addresses belongs to someone else as well"))
            continue
        people.append(build(record_keys, user))
    people.sort(key=lambda p: p.id)
    return Resolution(people, sorted(problems), _suggestions(people), _Why(usable, hand))


@dataclass
class _Why:
    """What explains a person (asked for one person at a time: `Resolution.links_of`)."""

    usable: dict[str, list[str]]
    hand: list[tuple[str, str]]

    def links(self, nodes: set[str]) -> list[Link]:
        holders: dict[str, list[str]] = defaultdict(list)
        for node in sorted(nodes):
            for a in self.usable.get(node, ()):
                holders[a].append(node)
        out = [Link(held[0], other, "address", a) for a, held in sorted(holders.items()) for other in held[1:]]
        out.extend(Link(a, b, "merged by hand") for a, b in self.hand if a in nodes)
        return out


def _rank(rules: ContactRules, provider: str) -> int:
    try:
        return rules.name_from.index(provider)
    except ValueError:
        return len(rules.name_from)


class _Builder:
    """Makes a person of their records (and user): the name rule orders the records — provider, then kind, then
    key — and the first of each field in that order wins."""

    def __init__(self, by_key: dict[str, SourceRecord], usable: dict[str, tuple[str, ...]], decisions: Decisions,
                 rules: ContactRules):
        self.by_key, self.usable, self.decisions, self.rules = by_key, usable, decisions, rules
        self.ranks: dict[tuple[str, str], int] = {}
        self.kinds = {k: i for i, k in enumerate(KINDS)}

    def rank(self, r: SourceRecord) -> int:
        rank = self.ranks.get((r.provider, r.record.kind))
        if rank is None:
            rank = self.ranks[(r.provider, r.record.kind)] = \
                _rank(self.rules, r.provider) * (len(KINDS) + 1) + self.kinds.get(r.record.kind, len(KINDS))
        return rank

    def __call__(self, record_keys: tuple[str, ...], user: UserRef | None) -> Person:
        by_key, usable, rules = self.by_key, self.usable, self.rules
        if len(record_keys) == 1:
            r = by_key[record_keys[0]]
            rec = r.record
            held = usable.get(r.key) or ()
            emails = set(held)
            kinds = {rec.kind}
            groups = rec.groups
            best = r if rec.display_name.strip() else None
            zoom = rec if rec.zoom_user_id else None
            first_address = held[0] if held else None
            timezone = rec.timezone
            ordered = (r,)
        else:
            # keys are sorted already: a stable sort on the rank alone keeps them in key order within a rank
            ordered = sorted((by_key[k] for k in record_keys), key=self.rank)
            emails, kinds, group_set = set(), set(), set()
            best = zoom = first_address = timezone = None
            for r in ordered:           # one pass, in the name rule's order: the first of each wins
                rec = r.record
                held = usable.get(r.key)
                if held:
                    emails.update(held)
                    if first_address is None:
                        first_address = held[0]
                kinds.add(rec.kind)
                if rec.groups:
                    group_set.update(rec.groups)
                if best is None and rec.display_name.strip():
                    best = r
                if zoom is None and rec.zoom_user_id:
                    zoom = rec
                if timezone is None and rec.timezone:
                    timezone = rec.timezone
            groups = tuple(group_set)
        name, name_from = (best.record.display_name.strip(), best.key) if best is not None else ("", "")
        primary = first_address or ""
        if user is not None:
            own = usable.get(user.key) or ()
            emails.update(own)
            kinds.add(USER)
            primary = own[0] if own else primary
            timezone = user.timezone or timezone
            pid = f"u{user.user_id}"
            if user.name and (not name or _rank(rules, PROFILE) <= min(_rank(rules, r.provider) for r in ordered)):
                name, name_from = user.name, user.key
        else:
            pid = "c" + sha1(record_keys[0].encode()).hexdigest()[:15]
        return Person(
            id=pid, user_id=user.user_id if user is not None else None, primary_email=primary,
            emails=tuple(sorted(emails)), display_name=name or primary.split("@")[0], name_from=name_from,
            records=record_keys, zoom_user_id=zoom.zoom_user_id if zoom is not None else None, timezone=timezone,
            presence=zoom.presence if zoom is not None else None,
            invitable=bool(primary) and primary not in self.decisions.no_invite,
            kinds=tuple(sorted(kinds)), groups=tuple(sorted(set(groups))) if groups else ())


def _suggestions(people: list[Person]) -> list[Suggestion]:
    """People with one name and no shared address (else they would be one): perhaps one human, for an admin to
    decide. Two zoomcal users are never suggested (they are two accounts)."""
    by_name: dict[str, list[Person]] = {}
    for p in people:
        key = name_key(p.display_name)
        if " " in key and len(key) >= 3:       # a full name, not "info" or a lone first name
            held = by_name.get(key)
            if held is None:
                by_name[key] = [p]
            else:
                held.append(p)
    out: list[Suggestion] = []
    for key in sorted(k for k, group in by_name.items() if 1 < len(group) <= 5):
        group = sorted(by_name[key], key=lambda p: p.id)
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a.user_id is not None and b.user_id is not None:
                    continue
                out.append(Suggestion(a.id, b.id, f"both are called {a.display_name!r}, with no address in common"))
                if len(out) >= MAX_SUGGESTIONS:
                    return out
    return out
