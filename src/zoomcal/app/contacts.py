"""The contacts service: read every contact source, resolve one directory of people, search it, explain it,
and let an admin merge and split — each decision audited and kept across later syncs.

A source is a linked account whose provider has the contacts role (Zoom's users, a CardDAV address book,
Google People, Microsoft Graph's directory and contacts). Accounts that list the same directory (everyone
linked through one Zoom server-to-server app) are read once. Records a source lists are kept as listed;
people are rebuilt from all records, the tenant's users and the admin's decisions by a pure function
(zoomcal.contacts.resolve), and only what changed is written. Records that cannot be a person go to the sync
log and the review queue with their reason; a name match without a shared address is offered for review."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import delete, func, select

from zoomcal.app.context import SYSTEM, AppContext, Services
from zoomcal.app.errors import ConflictError, InvalidError, NotFoundError
from zoomcal.availability.index import epoch
from zoomcal.connectors import registry
from zoomcal.connectors.contacts import ContactRecord
from zoomcal.connectors.spec import CONTACTS
from zoomcal.contacts.identity import NotAnAddress, normalize
from zoomcal.contacts.resolve import (
    ContactRules,
    Decisions,
    Person,
    Resolution,
    SourceRecord,
    UserRef,
    normal_forms,
    of_stored,
    resolve,
)
from zoomcal.contacts.search import Entry, SearchIndex
from zoomcal.errors import AuthExpired, ConnectorError
from zoomcal.logging import get_logger
from zoomcal.net import tls
from zoomcal.store.models import (
    Account,
    ContactDecision,
    ContactPerson,
    ContactRecordRow,
    ContactSource,
    ReviewItem,
    SyncLogEntry,
    User,
)

log = get_logger("zoomcal.contacts")
PROBLEM, MATCH = "contact", "contact_match"      # the review queue's kinds
STANDARD_SCOPES = {"openid", "offline_access", "profile", "email"}


# --- sources -------------------------------------------------------------------------------------------------
@dataclass
class SourceView:
    account_id: int
    provider: str
    owner: str
    status: str
    error: str
    records: int
    synced_at: datetime | None
    shared_with: int | None = None      # read through this other account (one directory, one listing)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _contact_accounts(s) -> list[tuple[Account, str]]:
    keys = {spec.key for spec in registry.all_specs() if CONTACTS in spec.roles and spec.contacts is not None}
    rows = s.execute(select(Account, User.email).join(User, Account.user_id == User.id)
                     .where(Account.provider.in_(keys)).order_by(Account.id)).all()
    return [(a, email) for a, email in rows]


def _source_of(s, ctx: AppContext, account: Account) -> ContactSource:
    row = s.scalar(select(ContactSource).where(ContactSource.account_id == account.id))
    if row is None:
        row = ContactSource(tenant_id=ctx.tenant_id, account_id=account.id, status="ok", error="", records=0)
        s.add(row)
        s.flush()
    return row


def _open(ctx: AppContext, account: Account):
    spec = registry.get(account.provider)
    view, env = ctx.services.provider_env(ctx, account, None, ctx.rules())
    return spec.contacts(view, env)


def sources(ctx: AppContext) -> list[SourceView]:
    ctx.require_admin()
    with ctx.store.session() as s:
        out = []
        for account, email in _contact_accounts(s):
            row = s.scalar(select(ContactSource).where(ContactSource.account_id == account.id))
            out.append(SourceView(account.id, account.provider, email, row.status if row else "new",
                                  row.error if row else "", row.records if row else 0,
                                  row.synced_at if row else None,
                                  row.shared_with if row is not None and row.status == "shared" else None))
        return out


# --- syncing -----------------------------------------------------------------------------------------------
@dataclass
class SyncReport:
    sources: int = 0
    read: int = 0                   # records listed (new or changed at the source)
    written: int = 0                # records whose stored copy changed
    removed: int = 0
    rejected: int = 0
    failed: list[str] = field(default_factory=list)
    people: int = 0
    changed_people: int = 0
    problems: int = 0
    new_problems: int = 0
    suggestions: int = 0
    api_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


NORMAL = "_normal"      # a stored record's key for its addresses' normal forms


def _record_data(record: ContactRecord) -> dict[str, Any]:
    """The record as stored, with its addresses' normal forms worked out once here (resolving reads them)."""
    data = asdict(record)
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()
              if v not in (None, "", ()) or k == "emails"}
    stored[NORMAL] = normal_forms(record.emails)
    return stored


def _record_of(data: dict[str, Any]) -> ContactRecord:
    fields = {"emails": (), **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}}
    return ContactRecord(**{k: v for k, v in fields.items() if k in ContactRecord.__dataclass_fields__})


async def sync(ctx: AppContext, *, account_id: int | None = None) -> SyncReport:
    """Read every contact source (or one account's), then resolve the directory."""
    ctx.require_admin()
    report = SyncReport()
    with ctx.store.session() as s:
        accounts = [a for a, _email in _contact_accounts(s) if account_id in (None, a.id)]
    if account_id is not None and not accounts:
        raise NotFoundError(f"account {account_id} is not a contact source", field="account")
    seen: dict[str, int] = {}
    for account in accounts:
        source = _open(ctx, account)
        try:
            directory = await _directory(ctx, account, source)
            if directory and directory in seen:     # another account already listed this directory
                with ctx.store.transaction() as s:
                    row = s.scalar(select(ContactSource).where(ContactSource.account_id == account.id))
                    if row is not None:
                        row.status, row.error, row.shared_with = "shared", "", seen[directory]
                continue
            seen[directory] = account.id
            report.sources += 1
            await _read(ctx, account, source, report)
        finally:
            await source.aclose()
    _resolve_and_store(ctx, report)
    return report


async def _directory(ctx: AppContext, account: Account, source: Any) -> str:
    """The directory the source lists ("" for one of its own): as the source names it, or, where that takes a
    call, as it named it the first time (kept with the source)."""
    named = getattr(source, "directory", "") or ""
    learn = getattr(source, "directory_key", None)
    if learn is None:
        return named
    with ctx.store.session() as s:
        known = s.scalar(select(ContactSource.directory).where(ContactSource.account_id == account.id))
    if known:
        return known
    try:
        key = await learn()
    except (ConnectorError, httpx.HTTPError):
        return named                # the listing will say what is wrong
    if key != named:                # learnt by a call: kept, so it is asked once
        with ctx.store.transaction() as s:
            _source_of(s, ctx, account).directory = key[:200]
    return key


async def _read(ctx: AppContext, account: Account, source: Any, report: SyncReport) -> None:
    with ctx.store.transaction() as s:
        row = _source_of(s, ctx, account)
        cursor, source_id = row.cursor, row.id
    try:
        changes = await source.changes(cursor)
    except (ConnectorError, httpx.HTTPError) as exc:
        status = "needs_reauth" if isinstance(exc, AuthExpired) else "error"
        reason = f"{type(exc).__name__}: {exc}"[:500]
        with ctx.store.transaction() as s:
            row = s.get(ContactSource, source_id)
            row.status, row.error = status, reason
            s.add(SyncLogEntry(tenant_id=ctx.tenant_id, user_id=account.user_id, level="error",
                               action="contacts.source", message=f"{account.provider} account {account.id}: {reason}"))
        report.failed.append(f"{account.provider}:{account.id}: {reason}")
        log.warning("contacts.source_failed", account_id=account.id, provider=account.provider, reason=reason)
        return
    report.api_calls += changes.api_calls
    report.read += len(changes.records)
    with ctx.store.transaction() as s:
        held = {r.record_id: r for r in s.scalars(select(ContactRecordRow).where(
            ContactRecordRow.source_id == source_id))}
        listed = set()
        for record in changes.records:
            listed.add(record.record_id)
            data = _record_data(record)
            have = held.get(record.record_id)
            if record.presence is None and have is not None and have.data.get("presence"):
                data["presence"] = have.data["presence"]    # a listing that did not read presence keeps the last
            if have is None:
                s.add(ContactRecordRow(tenant_id=ctx.tenant_id, source_id=source_id, record_id=record.record_id[:500],
                                       provider=account.provider, kind=record.kind, data=data))
                report.written += 1
            elif have.data != data:
                have.data, have.kind = data, record.kind
                report.written += 1
        gone = set(changes.removed) & set(held)
        if changes.complete:
            gone |= set(held) - listed
        if gone:
            s.execute(delete(ContactRecordRow).where(ContactRecordRow.source_id == source_id,
                                                     ContactRecordRow.record_id.in_(sorted(gone))))
        report.removed += len(gone)
        for record_id, reason in changes.rejected:
            report.rejected += 1
            s.add(SyncLogEntry(tenant_id=ctx.tenant_id, user_id=account.user_id, level="warning",
                               action="contacts.rejected",
                               message=f"{account.provider} record {record_id or '(no id)'}: {reason}"[:2000]))
        row = s.get(ContactSource, source_id)
        row.cursor, row.status, row.error, row.synced_at = changes.cursor, "ok", "", ctx.now()
        row.shared_with = None
        row.records = len(set(held) - gone | listed)


# --- resolving -----------------------------------------------------------------------------------------------
def _inputs(s, ctx: AppContext) -> tuple[list[SourceRecord], list[UserRef], Decisions]:
    records = [of_stored(f"{row.source_id}/{row.record_id}", row.provider, _record_of(row.data), row.data.get(NORMAL))
               for row in s.scalars(select(ContactRecordRow))]
    zones = dict(s.execute(select(User.id, User.email)).all())
    from zoomcal.availability.intervals import user_timezone

    refs = [UserRef(uid, email, s.get(User, uid).name or "", user_timezone(s, uid)) for uid, email in zones.items()]
    merges, splits, no_invite = set(), set(), set()
    for d in s.scalars(select(ContactDecision).order_by(ContactDecision.id)):
        if d.kind == "merge":
            merges.add((d.a, d.b))
        elif d.kind == "unmerge":
            merges.discard((d.a, d.b))
            merges.discard((d.b, d.a))
        elif d.kind == "split":
            splits.add(d.a)
        elif d.kind == "unsplit":
            splits.discard(d.a)
        elif d.kind == "no_invite":
            no_invite.add(d.a)
        elif d.kind == "may_invite":
            no_invite.discard(d.a)
    return records, refs, Decisions(frozenset(merges), frozenset(splits), frozenset(no_invite))


def _rules(ctx: AppContext) -> ContactRules:
    return ContactRules(name_from=tuple(ctx.rules().contacts.name_from))


def resolution(ctx: AppContext) -> Resolution:
    with ctx.store.session() as s:
        records, refs, decisions = _inputs(s, ctx)
    return resolve(records, refs, decisions, _rules(ctx))


PERSON_FIELDS = ("user_id", "primary_email", "display_name", "name_from", "emails", "records", "kinds", "groups",
                 "zoom_user_id", "timezone", "invitable")


def _resolve_and_store(ctx: AppContext, report: SyncReport | None = None) -> Resolution:
    report = report or SyncReport()
    with ctx.store.transaction() as s:
        records, refs, decisions = _inputs(s, ctx)
        result = resolve(records, refs, decisions, _rules(ctx))
        held = {p.person_id: p for p in s.scalars(select(ContactPerson))}
        now = ctx.now()
        for person in result.people:
            values = {"user_id": person.user_id, "primary_email": person.primary_email,
                      "display_name": person.display_name, "name_from": person.name_from,
                      "emails": list(person.emails), "records": list(person.records), "kinds": list(person.kinds),
                      "groups": list(person.groups), "zoom_user_id": person.zoom_user_id,
                      "timezone": person.timezone, "invitable": person.invitable}
            row = held.pop(person.id, None)
            if row is None:
                row = ContactPerson(tenant_id=ctx.tenant_id, person_id=person.id, **values)
                s.add(row)
                report.changed_people += 1
            elif any(getattr(row, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(row, k, v)
                report.changed_people += 1
            if person.presence and person.presence != row.presence:
                row.presence, row.presence_at = person.presence, now
        for row in held.values():
            s.delete(row)
            report.changed_people += 1
        report.people = len(result.people)
        report.problems = len(result.problems)
        report.suggestions = len(result.suggestions)
        report.new_problems = _review(s, ctx, result)
    _bump(ctx)
    return result


def _review(s, ctx: AppContext, result: Resolution) -> int:
    """Problems and suggestions into the review queue (each once: one dismissed stays dismissed) and new problems
    into the sync log; open problems that are gone are closed."""
    known = {(r.kind, r.field, (r.zoom_value or {}).get("reason", "") if isinstance(r.zoom_value, dict) else ""): r
             for r in s.scalars(select(ReviewItem).where(ReviewItem.kind.in_((PROBLEM, MATCH))))}
    by_key = {p.id: p for p in result.people}
    current = set()
    added = 0
    for problem in result.problems:
        key = (PROBLEM, problem.record[:200], problem.reason[:1000])
        current.add(key)
        if key in known:
            continue
        s.add(ReviewItem(tenant_id=ctx.tenant_id, kind=PROBLEM, field=key[1],
                         zoom_value={"problem": problem.kind, "reason": key[2]}, status="open"))
        s.add(SyncLogEntry(tenant_id=ctx.tenant_id, level="warning", action="contacts.unmapped",
                           message=f"{problem.record}: {problem.kind}: {problem.reason}"[:2000]))
        added += 1
    for suggestion in result.suggestions:
        a, b = by_key[suggestion.a], by_key[suggestion.b]
        key = (MATCH, f"{a.primary_email}|{b.primary_email}"[:200], suggestion.reason[:1000])
        current.add(key)
        if key not in known:
            s.add(ReviewItem(tenant_id=ctx.tenant_id, kind=MATCH, field=key[1], status="open",
                             zoom_value={"a": a.primary_email, "b": b.primary_email, "reason": key[2]}))
    for key, row in known.items():
        if key not in current and row.status == "open":
            row.status, row.chosen = "resolved", "gone"
    return added


# --- the directory as people see it --------------------------------------------------------------------------
@dataclass
class PersonView:
    id: str
    name: str
    email: str
    emails: list[str]
    status: str                   # live Zoom presence, else the calendar-derived state of a linked user, else ""
    status_from: str              # zoom | calendar | ""
    sources: list[str]            # the providers the person's records came from
    kinds: list[str]
    groups: list[str]
    user: str | None              # the zoomcal user this person is
    zoom_user_id: str | None
    timezone: str | None
    invitable: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Directory:
    """A process's search index per tenant, rebuilt when the tenant's directory changed (its revision)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revisions: dict[int, int] = {}
        self.indexes: dict[int, tuple[int, SearchIndex, dict[str, ContactPerson]]] = {}


_DIRECTORY = _Directory()


def _bump(ctx: AppContext) -> None:
    with _DIRECTORY.lock:
        _DIRECTORY.revisions[ctx.tenant_id] = _DIRECTORY.revisions.get(ctx.tenant_id, 0) + 1


def _index(ctx: AppContext) -> tuple[SearchIndex, dict[str, ContactPerson]]:
    with ctx.store.session() as s:      # the directory's state in one small query: how many, last changed when
        stamp = tuple(s.execute(select(func.count(ContactPerson.id), func.max(ContactPerson.updated_at))).one())
    revision = hash((stamp, _DIRECTORY.revisions.get(ctx.tenant_id, 0)))
    with _DIRECTORY.lock:
        found = _DIRECTORY.indexes.get(ctx.tenant_id)
        if found is not None and found[0] == revision:
            return found[1], found[2]
    with ctx.store.session() as s:
        rows = list(s.scalars(select(ContactPerson)))
        for row in rows:
            s.expunge(row)
    people = {r.person_id: r for r in rows}
    index = SearchIndex([Entry(r.person_id, r.display_name, r.primary_email, tuple(r.emails)) for r in rows])
    with _DIRECTORY.lock:
        _DIRECTORY.indexes[ctx.tenant_id] = (revision, index, people)
    return index, people


def _views(ctx: AppContext, rows: list[ContactPerson]) -> list[PersonView]:
    linked = [r.user_id for r in rows if r.user_id is not None and not r.presence]
    states: dict[int, str] = {}
    if linked:
        from zoomcal.app import availability

        view = availability.current(ctx, linked)
        now = epoch(ctx.now())
        for uid in linked:
            kind, _event = view.state_at(uid, now)
            states[uid] = kind or "free"
    providers: dict[int, str] = {}
    with ctx.store.session() as s:
        providers = dict(s.execute(select(ContactSource.id, Account.provider)
                                   .join(Account, ContactSource.account_id == Account.id)).all())
        emails = {u.id: u.email for u in s.scalars(select(User))}
    out = []
    for r in rows:
        if r.presence:
            status, status_from = r.presence, "zoom"
        elif r.user_id in states:
            status, status_from = states[r.user_id], "calendar"
        else:
            status, status_from = "", ""
        sources = sorted({providers.get(int(k.split("/", 1)[0]), "?") for k in r.records})
        out.append(PersonView(r.person_id, r.display_name, r.primary_email, list(r.emails), status, status_from,
                              sources, list(r.kinds), list(r.groups), emails.get(r.user_id), r.zoom_user_id,
                              r.timezone, r.invitable))
    return out


def list_people(ctx: AppContext, *, limit: int | None = None, offset: int = 0) -> list[PersonView]:
    _index_rows = sorted(_index(ctx)[1].values(), key=lambda r: (r.display_name.casefold(), r.person_id))
    return _views(ctx, _index_rows[offset:offset + limit if limit else None])


def search(ctx: AppContext, text: str, limit: int = 10) -> list[PersonView]:
    """People whose name or address starts with `text` (any word of it), best first."""
    if not 0 < limit <= 100:
        raise InvalidError("limit is between 1 and 100", field="limit")
    index, people = _index(ctx)
    return _views(ctx, [people[e.person_id] for e in index.search(text, limit)])


# --- explaining ----------------------------------------------------------------------------------------------
@dataclass
class Explanation:
    person: PersonView
    records: list[dict[str, Any]]           # each record: its key, source, kind, name, addresses
    links: list[dict[str, str]]             # why they are one
    name_from: str
    problems: list[dict[str, str]]
    decisions: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _address(text: str) -> str:
    try:
        return normalize(text)
    except NotAnAddress as exc:
        raise InvalidError(f"not an e-mail address: {exc}", field="email") from None


def _person(result: Resolution, ref: str) -> Person:
    """A person named by their id (as the directory lists it) or by an address (the first holder, in id order,
    when a split left an address on two people)."""
    if "@" not in ref:
        person = next((p for p in result.people if p.id == ref.strip()), None)
        if person is None:
            raise NotFoundError(f"nobody in the directory has the id {ref[:60]!r}", field="email")
        return person
    address = _address(ref)
    person = next((p for p in result.people if address in p.emails), None)
    if person is None:
        raise NotFoundError(f"nobody in the directory has the address {address}", field="email")
    return person


def explain(ctx: AppContext, email: str) -> Explanation:
    """Which records are the person (named by an address or their id) and why."""
    ctx.require_admin()
    result = resolution(ctx)
    person = _person(result, email)
    with ctx.store.session() as s:
        providers = dict(s.execute(select(ContactSource.id, Account.provider)
                                   .join(Account, ContactSource.account_id == Account.id)).all())
        rows = {f"{r.source_id}/{r.record_id}": r for r in s.scalars(select(ContactRecordRow))
                if f"{r.source_id}/{r.record_id}" in person.records}
        decisions = [{"kind": d.kind, "a": d.a, "b": d.b, "by": d.actor, "at": d.created_at.isoformat()}
                     for d in s.scalars(select(ContactDecision).order_by(ContactDecision.id))
                     if d.a in person.records or d.b in person.records or
                     (person.user_id is not None and f"user:{person.user_id}" in (d.a, d.b))]
        row = s.scalar(select(ContactPerson).where(ContactPerson.person_id == person.id))
    records = [{"key": k, "source": providers.get(rows[k].source_id, "?"), "kind": rows[k].kind,
                "name": rows[k].data.get("display_name", ""), "emails": list(rows[k].data.get("emails", []))}
               for k in person.records if k in rows]
    links = [{"a": link.a, "b": link.b, "why": link.why, "address": link.address}
             for link in result.links_of(person)]
    nodes = set(person.records) | ({f"user:{person.user_id}"} if person.user_id is not None else set())
    problems = [{"record": p.record, "kind": p.kind, "reason": p.reason} for p in result.problems if p.record in nodes]
    view = _views(ctx, [row])[0] if row is not None else None
    return Explanation(view, records, links, person.name_from, problems, decisions)   # type: ignore[arg-type]


# --- an admin's decisions ------------------------------------------------------------------------------------
def _node(ctx: AppContext, result: Resolution, ref: str) -> str:
    """A merge or split names a record by its key (as `explain` shows it), or a person by an address or id."""
    if "/" in ref and "@" not in ref.split("/", 1)[0]:
        if any(ref in p.records for p in result.people) or any(ref == p.record for p in result.problems):
            return ref
        raise NotFoundError(f"no contact record {ref!r}", field="record")
    person = _person(result, ref)
    return f"user:{person.user_id}" if person.user_id is not None else person.records[0]


def merge(ctx: AppContext, a: str, b: str) -> PersonView:
    """Make two people one (each named by an address or a record key). Two zoomcal users are never merged."""
    ctx.require_admin()
    result = resolution(ctx)
    na, nb = _node(ctx, result, a), _node(ctx, result, b)
    pa, pb = result.person_of(na), result.person_of(nb)
    if pa is not None and pb is not None and pa.id == pb.id:
        raise ConflictError("they are one person already")
    if pa is not None and pb is not None and pa.user_id is not None and pb.user_id is not None:
        raise ConflictError("both are zoomcal users: two accounts are never one person")
    with ctx.store.transaction() as s:
        s.add(ContactDecision(tenant_id=ctx.tenant_id, kind="merge", a=na, b=nb, actor=ctx.actor.name))
        ctx.audit(s, "contacts.merge", f"{a} + {b}", {"a": na, "b": nb})
    merged = _resolve_and_store(ctx)
    person = merged.person_of(na)
    return _view_of(ctx, person.id if person else "")


def split(ctx: AppContext, record: str) -> PersonView | None:
    """Take a record out of the person it was joined to: it stands alone from now on (and a merge made by hand
    with it is undone)."""
    ctx.require_admin()
    result = resolution(ctx)
    node = _node(ctx, result, record)
    if node.startswith("user:"):
        raise InvalidError("split takes a record key (as `explain` shows it), not a person", field="record")
    person = result.person_of(node)
    if person is not None and len(person.records) + (person.user_id is not None) < 2:
        raise ConflictError("this record is a person of its own already")
    with ctx.store.transaction() as s:
        for d in s.scalars(select(ContactDecision).where(ContactDecision.kind == "merge")):
            if node in (d.a, d.b):
                s.add(ContactDecision(tenant_id=ctx.tenant_id, kind="unmerge", a=d.a, b=d.b, actor=ctx.actor.name))
        s.add(ContactDecision(tenant_id=ctx.tenant_id, kind="split", a=node, actor=ctx.actor.name))
        ctx.audit(s, "contacts.split", record, {"record": node})
    after = _resolve_and_store(ctx)
    alone = after.person_of(node)
    return _view_of(ctx, alone.id) if alone else None


def set_invitable(ctx: AppContext, email: str, invitable: bool) -> PersonView:
    """Whether zoomcal may invite this address (an admin's word, kept across syncs)."""
    ctx.require_admin()
    address = _address(email)
    with ctx.store.transaction() as s:
        s.add(ContactDecision(tenant_id=ctx.tenant_id, kind="may_invite" if invitable else "no_invite", a=address,
                              actor=ctx.actor.name))
        ctx.audit(s, "contacts.invitable", address, {"invitable": invitable})
    result = _resolve_and_store(ctx)
    person = next((p for p in result.people if address in p.emails), None)
    if person is None:
        raise NotFoundError(f"nobody in the directory has the address {address}", field="email")
    return _view_of(ctx, person.id)


def _view_of(ctx: AppContext, person_id: str) -> PersonView:
    with ctx.store.session() as s:
        row = s.scalar(select(ContactPerson).where(ContactPerson.person_id == person_id))
        if row is None:
            raise NotFoundError(f"no person {person_id}", field="person")
        s.expunge(row)
    return _views(ctx, [row])[0]


# --- live status ---------------------------------------------------------------------------------------------
def presence_changed(ctx: AppContext, zoom_user_id: str, status: str) -> int:
    """A Zoom user's presence changed (the webhook): the directory shows it at once."""
    with ctx.store.transaction() as s:
        rows = list(s.scalars(select(ContactPerson).where(ContactPerson.zoom_user_id == zoom_user_id)))
        for row in rows:
            row.presence, row.presence_at = status, ctx.now()
    if rows:
        _bump(ctx)
    return len(rows)


# --- scopes --------------------------------------------------------------------------------------------------
@dataclass
class ScopeView:
    account_id: int
    provider: str
    owner: str
    needed: dict[str, list[str]]        # feature -> scopes
    granted: list[str] | None           # None: the provider does not say (or grants by password)
    missing: list[str]
    unused: list[str]                   # granted, needed by nothing zoomcal reads of this account
    note: str = ""

    def met(self, feature: str) -> bool:
        """Whether every scope the feature needs was granted (so far as the provider said)."""
        return self.granted is None or set(self.needed[feature]) <= set(self.granted)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def scopes(ctx: AppContext) -> list[ScopeView]:
    """Per contact source: the scopes each feature needs against what the provider granted (asked now, with one
    token request)."""
    ctx.require_admin()
    with ctx.store.session() as s:
        accounts = _contact_accounts(s)
    out = []
    for account, owner in accounts:
        spec = registry.get(account.provider)
        source = _open(ctx, account)
        try:
            needed = {k: list(v) for k, v in source.features.items()}
        finally:
            await source.aclose()
        granted, note = None, ""
        if spec.grant is not None:
            try:
                granted = await _granted(ctx, account)
                if granted is None:
                    note = "the provider did not say which scopes it granted"
            except ConnectorError as exc:
                note = f"could not ask: {type(exc).__name__}: {exc}"
        else:
            note = "signs in with a password: no scopes"
        wanted = {scope for scopes_ in needed.values() for scope in scopes_}
        missing = sorted(wanted - set(granted)) if granted is not None else []
        other_roles = spec.calendar_role is not None
        unused = [] if granted is None or other_roles else sorted(set(granted) - wanted - STANDARD_SCOPES)
        if other_roles and granted is not None:
            note = note or f"its {spec.calendar_role} scopes are not judged here"
        with ctx.store.transaction() as s:
            row = _source_of(s, ctx, account)
            row.granted, row.scopes_checked_at = granted, ctx.now()
        out.append(ScopeView(account.id, account.provider, owner, needed, granted, missing, unused, note))
    return out


async def _granted(ctx: AppContext, account: Account) -> list[str] | None:
    """The scopes the provider grants now: one token refresh through the account's shared token source (so a
    refresh token that rotates is kept), which records what the answer names."""
    view, env = ctx.services.provider_env(ctx, account, None, ctx.rules())
    source = env.share_tokens(registry.get(account.provider).grant(view, env))
    async with httpx.AsyncClient(verify=tls(), transport=ctx.services.transport,
                                 timeout=ctx.settings.http_timeout) as client:
        source.invalidate(await source.token(client))
        await source.token(client)
    with ctx.store.session() as s:
        return s.get(Account, account.id).granted_scopes


# --- the periodic job ----------------------------------------------------------------------------------------
async def sync_all(services: Services, *, tenant: str | None = None) -> int:
    """Every tenant with a contact source: read them and resolve (the workers run it on a schedule)."""
    done = 0
    for _tid, name in services.tenants():
        if tenant not in (None, name):
            continue
        ctx = services.context(name, SYSTEM)
        with ctx.store.session() as s:
            if not _contact_accounts(s):
                continue
        await sync(ctx)
        done += 1
    return done


# --- trying rules --------------------------------------------------------------------------------------------
@dataclass
class Preview:
    person: str                 # the person's primary address
    field: str
    now: Any
    would_be: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dry_run(ctx: AppContext, rules_file: str | None = None) -> list[Preview]:
    """What the directory would show under other mapping rules (their contacts section): each person whose
    name, or whose source of it, would change. Nothing is written."""
    ctx.require_admin()
    from zoomcal.errors import ConfigError
    from zoomcal.mapping.rules import load_rules

    try:
        rules = load_rules(rules_file)
    except ConfigError as exc:
        raise InvalidError(str(exc), field="rules") from exc
    with ctx.store.session() as s:
        records, refs, decisions = _inputs(s, ctx)
        held = {p.person_id: (p.primary_email, p.display_name, p.name_from) for p in s.scalars(select(ContactPerson))}
    result = resolve(records, refs, decisions, ContactRules(name_from=tuple(rules.contacts.name_from)))
    out = []
    for person in result.people:
        email, name, name_from = held.get(person.id, (person.primary_email, None, None))
        if name != person.display_name:
            out.append(Preview(email, "name", name, person.display_name))
        elif name_from != person.name_from:
            out.append(Preview(email, "name_from", name_from, person.name_from))
    return out
