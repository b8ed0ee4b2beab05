"""Sync: which calendar pairs a tenant has, running them (or planning them without writing), status, the sync log,
the canonical events, and the review queue with its resolutions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from zoomcal.app import feed, users
from zoomcal.app import propagation as app_propagation
from zoomcal.app.context import AppContext
from zoomcal.app.errors import ConflictError, InvalidError, NotFoundError
from zoomcal.availability import intervals
from zoomcal.connectors.spec import CALENDAR, MEETINGS
from zoomcal.domain.content import MISSING, apply_view
from zoomcal.metrics import SYNC_DURATION
from zoomcal.store import repo
from zoomcal.store.models import Account, Calendar, Event, Link, ReviewItem, SyncLogEntry, SyncRun, User
from zoomcal.sync.engine import RunReport, SideSpec, SyncEngine, SyncPair, describe


@dataclass
class PairResult:
    user: str
    calendars: list[str]
    status: str
    writes: int = 0
    api_calls: int = 0
    rejected: int = 0
    duration_ms: int = 0
    run_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)    # dry run: what would happen, one line per event
    providers: list[str] = field(default_factory=list)  # the sides' provider keys, in the order of `calendars`

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pairs(ctx: AppContext, email: str | None = None, calendar_id: int | None = None) -> list[SyncPair]:
    """The tenant's sync pairs: each user's meetings calendar with the calendar that receives the meetings, and
    every other linked calendar or feed on its own, read for availability. Accounts that need to be linked again
    are left out (the status says so)."""
    rules = ctx.rules()
    out = []
    with ctx.store.session() as s:
        query = select(User).order_by(User.id)
        if email:
            query = query.where(User.id == users.find(s, ctx, email).id)
        for user in s.scalars(query):
            rows = list(s.execute(select(Calendar, Account).join(Account, Calendar.account_id == Account.id)
                                  .where(Calendar.user_id == user.id).order_by(Calendar.id)))
            meetings = next(((c, a) for c, a in rows if c.role == MEETINGS), None)
            target = next(((c, a) for c, a in rows if c.receives_meetings and c.role == CALENDAR), None)
            # a degraded account (its provider was not answering) is tried again; one that needs linking is not
            if meetings is None or target is None or meetings[1].status == "reauth" or target[1].status == "reauth":
                meetings_pair = None
            else:
                meetings_pair = (meetings, target)
            for cal, acc in rows:
                if acc.status == "reauth" or cal.role == MEETINGS or (meetings_pair and cal is target[0]):
                    continue
                # calendars that do not take the meetings, and feeds, are read: they count for availability
                out.append(SyncPair(tenant_id=ctx.tenant_id, user_id=user.id, rules=rules, user_email=user.email,
                                    a=None, b=_side(ctx, acc, cal, rules)))
            if meetings_pair is not None:
                (m_cal, m_acc), (t_cal, t_acc) = meetings_pair
                out.append(SyncPair(tenant_id=ctx.tenant_id, user_id=user.id, rules=rules, user_email=user.email,
                                    a=_side(ctx, m_acc, m_cal, rules, owns=frozenset({"join"})),
                                    b=_side(ctx, t_acc, t_cal, rules)))
    if calendar_id is not None:
        out = [p for p in out if calendar_id in {p.side(x).calendar_id for x in p.sides}]
        if not out:
            raise NotFoundError(f"no calendar {calendar_id} to sync", field="calendar")
    return out


def _side(ctx: AppContext, account: Account, calendar: Calendar, rules, owns: frozenset[str] = frozenset()
          ) -> SideSpec:
    connector = ctx.services.connector(ctx, account, calendar, rules)
    return SideSpec(calendar.id, connector, account.id, owns=owns, label=ctx.spec(account.provider).label)


def engine(ctx: AppContext, on_change: Callable[[dict[str, Any]], None] | None = None) -> SyncEngine:
    return SyncEngine(ctx.store, retrier=ctx.services.retrier(), on_event=on_change,
                      lease_ttl=timedelta(seconds=max(1.0, ctx.settings.lease_seconds)))


def _result(pair: SyncPair, report: RunReport, dry_run: bool) -> PairResult:
    labels = [pair.side(s).label for s in pair.sides]
    planned = []
    if dry_run and report.plan:
        for p in report.plan.events:
            writes = ", ".join(f"{w.op} {pair.side(w.side).label}" for w in p.writes) or "record only"
            title = (p.base or {}).get("title") or next(
                (item.content.get("title") for item in p.seen.values() if item is not None), "") or "(untitled)"
            planned.append(f"{title!r} [{p.event_id}]: {describe(p.reason, pair)} ({writes})")
    return PairResult(pair.user_email, labels, report.status, report.writes, report.api_calls, report.rejected,
                      report.duration_ms, report.run_id, dict(report.counts), list(report.notes),
                      list(report.errors), planned)


async def run(ctx: AppContext, email: str | None = None, *, calendar_id: int | None = None, dry_run: bool = False,
              confirm_deletes: bool = False, trigger: str = "manual",
              on_change: Callable[[dict[str, Any]], None] | None = None,
              on_pair: Callable[[PairResult], None] | None = None,
              changed: frozenset[int] | None = None) -> list[PairResult]:
    """Sync (or, with dry_run, plan without writing) every pair of the tenant, one user's, or one calendar's.
    `changed`: the calendars notifications said changed; only pairs holding one run, and only those calendars are
    listed (the others count as unchanged). None: everything is listed."""
    if email:
        ctx.require_manage(email)
    else:
        ctx.require_admin()
    sync_engine = engine(ctx, on_change)
    results = []
    for pair in pairs(ctx, email, calendar_id):
        quiet = frozenset(s for s in pair.sides if changed is not None and pair.side(s).calendar_id not in changed)
        if quiet and quiet == set(pair.sides) and not _owes(ctx, [pair.side(s).calendar_id for s in pair.sides]):
            continue                          # nothing said any of its calendars changed, and it owes no write
        accounts = [pair.side(s).account_id for s in pair.sides if pair.side(s).account_id is not None]
        before = _account_health(ctx, accounts)
        report = await sync_engine.run(pair, trigger=trigger, dry_run=dry_run, confirm_deletes=confirm_deletes,
                                       quiet=quiet)
        result = _result(pair, report, dry_run)
        result.providers = [before[a][0] for a in accounts if a in before]
        if not dry_run:
            _after_run(ctx, pair, report, before)
        results.append(result)
        if on_pair is not None:
            on_pair(result)
    return results


def _owes(ctx: AppContext, calendar_ids: list[int]) -> bool:
    """Whether a write to one of these calendars is still owed (a pending mark from an earlier run)."""
    with ctx.store.session() as s:
        return s.scalar(select(Link.event_id).where(Link.calendar_id.in_(calendar_ids), Link.pending.is_not(None))
                        .limit(1)) is not None


def _account_health(ctx: AppContext, account_ids: list[int]) -> dict[int, tuple[str, str, str | None, int]]:
    """account id -> (provider key, status, reason, user id)."""
    if not account_ids:
        return {}
    with ctx.store.session() as s:
        return {a.id: (a.provider, a.status, a.status_reason, a.user_id)
                for a in s.scalars(select(Account).where(Account.id.in_(account_ids)))}


def _after_run(ctx: AppContext, pair: SyncPair, report: RunReport, before: dict) -> None:
    """What a finished run leaves for the feed and the metrics: a line saying it finished, a line per account whose
    health the run changed (a refused token refresh), the run's duration by the receiving calendar's provider."""
    after = _account_health(ctx, list(before))
    receiving = pair.b.account_id
    if receiving in after and report.status != "skipped":
        SYNC_DURATION.labels(provider=after[receiving][0]).observe(report.duration_ms / 1000)
    with ctx.store.transaction() as s:
        if report.run_id is not None:
            feed.run_finished(s, ctx.tenant_id, pair.user_id, report.run_id, report.status, report.writes,
                              report.api_calls, report.duration_ms)
        for account_id, (provider, status, reason, user_id) in sorted(after.items()):
            if before.get(account_id, (None, status))[1] != status:
                feed.account_health(s, ctx.tenant_id, user_id, account_id, ctx.spec(provider).label, status, reason)


# --- what happened ------------------------------------------------------------------------------------------

@dataclass
class UserStatus:
    user: str
    last_run: datetime | None
    status: str
    writes: int
    errors: int
    review_queue: int
    accounts_needing_reauth: int
    accounts_degraded: int


def status(ctx: AppContext) -> list[UserStatus]:
    rows = []
    with ctx.store.session() as s:
        for u in s.scalars(select(User).order_by(User.id)):
            if not ctx.actor.may_manage(u.email):
                continue
            run = s.scalar(select(SyncRun).where(SyncRun.user_id == u.id).order_by(SyncRun.id.desc()).limit(1))
            reviews = s.scalar(select(func.count()).select_from(ReviewItem).where(
                ReviewItem.user_id == u.id, ReviewItem.status == "open"))
            statuses = list(s.scalars(select(Account.status).where(Account.user_id == u.id)))
            rows.append(UserStatus(u.email, run.started_at if run else None, run.status if run else "never",
                                   (run.counts or {}).get("writes", 0) if run else 0, run.errors if run else 0,
                                   reviews, statuses.count("reauth"), statuses.count("degraded")))
    return rows


@dataclass
class Overview:
    """The status page: every person's last run, and how long changes took to propagate (the last day)."""

    users: list[UserStatus]
    propagation: dict[str, dict[str, dict[str, Any]]]

    def as_dict(self) -> dict[str, Any]:
        return {"users": [asdict(u) for u in self.users], "propagation": self.propagation}


def overview(ctx: AppContext) -> Overview:
    return Overview(status(ctx), app_propagation.summary(ctx))


@dataclass
class LogEntry:
    id: int
    at: datetime
    level: str
    action: str
    event: str | None
    user: str | None
    message: str
    title: str | None = None          # the event's title now, when the line names an event zoomcal still has


def log(ctx: AppContext, email: str | None = None, *, after: int = 0, limit: int = 50) -> list[LogEntry]:
    """Sync-log entries, oldest first: the last `limit`, or (after > 0) every entry newer than `after`."""
    with ctx.store.session() as s:
        emails = {u.id: u.email for u in s.scalars(select(User))}
        query = select(SyncLogEntry)
        if email:
            ctx.require_manage(email)
            query = query.where(SyncLogEntry.user_id == users.find(s, ctx, email).id)
        else:
            ctx.require_admin()
        if after:
            entries = list(s.scalars(query.where(SyncLogEntry.id > after).order_by(SyncLogEntry.id).limit(10_000)))
        else:
            entries = list(reversed(list(s.scalars(query.order_by(SyncLogEntry.id.desc()).limit(max(1, limit))))))
        named = sorted({e.event_id for e in entries if e.event_id})
        titles = {event_id: title for event_id, title in
                  s.execute(select(Event.id, Event.title).where(Event.id.in_(named)))}
        return [LogEntry(e.id, e.created_at, e.level, e.action, e.event_id, emails.get(e.user_id), e.message,
                         titles.get(e.event_id)) for e in entries]


@dataclass
class EventInfo:
    id: str
    user: str
    title: str
    start: str | None
    end: str | None
    is_meeting: bool
    content: dict[str, Any]
    links: list[dict[str, Any]]


def events(ctx: AppContext, email: str | None = None) -> list[EventInfo]:
    """The canonical events of the central store, with where each one lives."""
    with ctx.store.session() as s:
        query = select(Event, User).join(User, Event.user_id == User.id).order_by(Event.start_at, Event.id)
        if email:
            ctx.require_manage(email)
            query = query.where(User.id == users.find(s, ctx, email).id)
        else:
            ctx.require_admin()
        rows = list(s.execute(query))
        links: dict[str, list[dict[str, Any]]] = {}
        for link in s.scalars(select(Link).where(Link.event_id.in_([ev.id for ev, _u in rows]))):
            links.setdefault(link.event_id, []).append({"calendar_id": link.calendar_id,
                                                        "remote_id": link.remote_id, "pending": link.pending})
        return [EventInfo(ev.id, u.email, ev.title, ev.start_at, ev.end_at, ev.is_meeting, ev.content,
                          links.get(ev.id, [])) for ev, u in rows]


def event(ctx: AppContext, event_id: str) -> EventInfo:
    """One canonical event with where it lives (its owner, or an admin)."""
    with ctx.store.session() as s:
        found = s.execute(select(Event, User).join(User, Event.user_id == User.id)
                          .where(Event.id == (event_id or "")[:64])).first()
        if found is None or not ctx.actor.may_manage(found[1].email):
            raise NotFoundError(f"no event {event_id!r}", field="event")
        ev, u = found
        links = [{"calendar_id": link.calendar_id, "remote_id": link.remote_id, "pending": link.pending}
                 for link in s.scalars(select(Link).where(Link.event_id == ev.id))]
        return EventInfo(ev.id, u.email, ev.title, ev.start_at, ev.end_at, ev.is_meeting, ev.content, links)


# --- the review queue -----------------------------------------------------------------------------------------

CHOICES = {"conflict": ("zoom", "calendar"), "mass_delete": ("confirm", "dismiss"), "overlap": ("dismiss",),
           "contact": ("dismiss",), "contact_match": ("merge", "dismiss")}


@dataclass
class ReviewEntry:
    id: int
    kind: str
    user: str | None
    event: str | None
    field: str
    zoom: Any
    calendar: Any
    applied: str
    status: str
    choices: list[str]


def _review(r: ReviewItem, emails: dict[int, str]) -> ReviewEntry:
    return ReviewEntry(r.id, r.kind, emails.get(r.user_id), r.event_id, r.field, r.zoom_value, r.calendar_value,
                       r.chosen, r.status, list(CHOICES.get(r.kind, ("dismiss",))))


def reviews(ctx: AppContext, status: str = "open") -> list[ReviewEntry]:
    with ctx.store.session() as s:
        emails = {u.id: u.email for u in s.scalars(select(User))}
        rows = s.scalars(select(ReviewItem).where(ReviewItem.status == status).order_by(ReviewItem.id))
        return [_review(r, emails) for r in rows if ctx.actor.may_manage(emails.get(r.user_id, ""))]


async def resolve(ctx: AppContext, review_id: int, choice: str) -> ReviewEntry:
    """Close a review item. A conflict: keep the value applied, or take the other side's (written to both sides by
    the next sync). Held deletions: confirm them (the user's calendars are synced now with the deletions carried
    out) or dismiss. An overlap: dismiss."""
    with ctx.store.transaction() as s:
        item = s.get(ReviewItem, review_id)
        if item is None:
            raise NotFoundError(f"no review item {review_id}", field="review")
        owner = s.get(User, item.user_id) if item.user_id else None
        ctx.require_manage(owner.email if owner else "")
        if item.status != "open":
            raise ConflictError(f"review item {review_id} is already {item.status}")
        allowed = CHOICES.get(item.kind, ("dismiss",))
        if choice not in allowed:
            raise InvalidError(f"a {item.kind} review takes one of: {', '.join(allowed)}", field="choice")
        if item.kind == "conflict" and choice != item.chosen:
            _apply_choice(ctx, s, item, choice)
        item.status, item.chosen = "resolved", choice
        ctx.audit(s, "review.resolve", str(review_id), {"kind": item.kind, "choice": choice})
        email = owner.email if owner else None
        entry = _review(item, {owner.id: owner.email} if owner else {})
    if item.kind == "mass_delete" and choice == "confirm" and email:
        await run(ctx, email, confirm_deletes=True, trigger="review:confirm-deletes")
    if item.kind == "contact_match" and choice == "merge":
        from zoomcal.app import contacts

        contacts.merge(ctx, item.zoom_value["a"], item.zoom_value["b"])
    return entry


def _apply_choice(ctx: AppContext, s, item: ReviewItem, choice: str) -> None:
    """Put the chosen side's value into the event."""
    value = {"zoom": item.zoom_value, "calendar": item.calendar_value}[choice]
    value = MISSING if value is None else (tuple(value) if isinstance(value, list) else value)
    change_event(ctx, s, item.event_id, {item.field: value}, "the event of this review item no longer exists")


def change_event(ctx: AppContext, s, event_id: str, changes: dict[str, Any], gone: str = "") -> None:
    """Change fields of a stored event in the caller's transaction (busy intervals follow in it); every side
    gets an update, written by the next sync."""
    event = s.get(Event, event_id)
    if event is None:
        raise ConflictError(gone or f"event {event_id} no longer exists")
    content = apply_view(event.content, changes)
    repo.upsert_event(s, event.tenant_id, event.user_id, event.id, content)
    avail = ctx.rules().availability
    lo, hi = intervals.window(avail.window_past_days, avail.window_future_days, ctx.now())
    intervals.refresh_events(s, event.tenant_id, event.user_id, {event.id: content}, lo, hi,
                             intervals.user_timezone(s, event.user_id))
    for link in s.scalars(select(Link).where(Link.event_id == event.id)):
        if link.remote_id and link.pending is None:
            link.pending = "update"


def note(ctx: AppContext, action: str, message: str, *, level: str = "info", email: str | None = None) -> None:
    """A line in the tenant's sync log that no run wrote (a refused notification, an operator's note)."""
    with ctx.store.transaction() as s:
        user_id = users.find(s, ctx, email).id if email else None
        repo.log(s, ctx.tenant_id, action, message, user_id=user_id, level=level)
