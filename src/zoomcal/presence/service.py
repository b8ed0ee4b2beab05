"""The presence driver: state from the busy index, status from Zoom, the pure decision, at most one PUT.

Transitions are scheduled at interval boundaries in a due-time queue (a heap), not found by scanning
everyone every minute; a rate-limited write comes back at the time Zoom allows.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zoomcal.availability.index import BusyIndex, epoch
from zoomcal.availability.intervals import as_utc, user_timezone
from zoomcal.connectors import registry
from zoomcal.connectors.spec import PRESENCE
from zoomcal.domain.timeutil import UTC, now_utc, zone
from zoomcal.errors import ConnectorError, InvalidItem, RateLimited
from zoomcal.metrics import PRESENCE_WRITES
from zoomcal.presence.engine import PROTECTED, Decision, Memory, Situation, canonical_status, decide
from zoomcal.presence.rules import PresenceRules, load_presence_rules
from zoomcal.store import repo
from zoomcal.store.models import Account, Calendar, Event, Link, PresenceState, Tenant, User

if TYPE_CHECKING:
    from zoomcal.app.context import AppContext


@dataclass
class Outcome:
    user: str
    decision: Decision
    situation: Situation
    current: str | None
    written: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"user": self.user, "state": self.situation.kind, "event": self.situation.title,
                "zoom_status": self.current, "rule": self.decision.rule, "write": self.decision.status,
                "dnd_minutes": self.decision.dnd_minutes, "written": self.written, "reason": self.decision.reason,
                "error": self.error, "checked": [{"rule": r, "why": w} for r, w in self.decision.checked],
                "retry_at": self.decision.retry_at.isoformat() if self.decision.retry_at else None}


@dataclass
class PresenceService:
    ctx: AppContext
    index: BusyIndex
    rules_override: PresenceRules | None = None
    queue: list[tuple[float, int]] = field(default_factory=list)
    writes: int = 0

    # --- reading -------------------------------------------------------------------------------------
    def rules_for(self, user: User) -> PresenceRules:
        if self.rules_override is not None:
            return self.rules_override
        with self.ctx.store.session() as s:
            tenant = s.get(Tenant, user.tenant_id)
            state = s.get(PresenceState, user.id)
        return load_presence_rules(self.ctx.settings.presence_rules, tenant.presence_rules,
                                   state.rules if state else None)

    def busy(self, user: User) -> BusyIndex:
        """The person's busy intervals as of the last commit of any process (reread only when they moved)."""
        return self.index.current(self.ctx.store, [user.id])

    def situation(self, user: User, at: datetime, busy: BusyIndex | None = None) -> Situation:
        busy = busy or self.busy(user)
        kind, event_id = busy.state_at(user.id, epoch(at))
        title, is_zoom, calendars, end = None, False, (), None
        with self.ctx.store.session() as s:
            tz = user_timezone(s, user.id)
            if event_id:
                event = s.get(Event, event_id)
                title, is_zoom = (event.title, bool(event.is_meeting)) if event else (None, False)
                calendars = tuple(name for (name,) in s.execute(
                    select(Calendar.name).join(Link, Link.calendar_id == Calendar.id).where(Link.event_id == event_id)))
        boundary = busy.next_boundary(user.id, epoch(at))
        if boundary is not None:
            end = datetime.fromtimestamp(boundary, UTC)
        return Situation(kind, event_id, title, is_zoom, calendars, at.astimezone(zone(tz)), end)

    def memory(self, user_id: int) -> Memory:
        with self.ctx.store.session() as s:
            row = s.get(PresenceState, user_id)
        if row is None:
            return Memory()
        return Memory(row.last_written, _utc_or_none(row.last_written_at), row.restore_to,
                      _utc_or_none(row.manual_since),
                      row.state_key)

    def _zoom(self, user: User):
        """The connector of the user's account whose provider can read and set presence (their Zoom account)."""
        presence = {spec.key for spec in registry.all_specs() if PRESENCE in spec.roles}
        with self.ctx.store.session() as s:
            found = s.execute(select(Account, Calendar).join(Calendar, Calendar.account_id == Account.id).where(
                Account.user_id == user.id, Account.provider.in_(presence), Account.status == "ok")
                .order_by(Account.id)).first()
        if found is None:
            return None
        return self.ctx.services.connector(self.ctx, found[0], found[1], self.ctx.rules())

    # --- deciding and writing --------------------------------------------------------------------------
    async def evaluate(self, user: User, at: datetime | None = None, write: bool = True,
                       rules: PresenceRules | None = None) -> Outcome:
        return await self._evaluate(user, at or now_utc(), write, rules, self._zoom(user))

    async def keep_in_line(self, user: User, at: datetime) -> Outcome | None:
        """Evaluate and write for a person whose Zoom account is linked (None for the others: nothing to do)."""
        zoom = self._zoom(user)
        return None if zoom is None else await self._evaluate(user, at, True, None, zoom)

    async def _evaluate(self, user: User, at: datetime, write: bool, rules: PresenceRules | None,
                        zoom: Any) -> Outcome:
        busy = self.busy(user)
        situation = self.situation(user, at, busy)
        memory = self.memory(user.id)
        current, error = memory.last_written, None
        try:
            if zoom is not None:
                current = await zoom.get_presence()      # read before write: a status set by hand shows here
        except ConnectorError as exc:
            error = f"could not read the Zoom status: {exc}"
        decision = decide(situation, current, memory, rules or self.rules_for(user), at)
        outcome = Outcome(user.email, decision, situation, current, error=error)
        if write and decision.status and zoom is not None and error is None:
            try:
                await zoom.set_presence(decision.status, decision.dnd_minutes)
                outcome.written = True
                self.writes += 1
                PRESENCE_WRITES.labels(status="ok").inc()
            except RateLimited as exc:
                PRESENCE_WRITES.labels(status="rate_limited").inc()
                decision.retry_at = at + timedelta(seconds=exc.retry_after)
                decision.memory = memory
                outcome.error = f"Zoom rate limit: retry at {decision.retry_at:%H:%M:%S}"
            except InvalidItem as exc:      # e.g. the user is not signed in to Zoom: try at the next change
                PRESENCE_WRITES.labels(status="refused").inc()
                decision.memory = memory
                outcome.error = str(exc)
            except ConnectorError as exc:
                PRESENCE_WRITES.labels(status="error").inc()
                decision.memory = memory
                outcome.error = f"{type(exc).__name__}: {exc}"
        if write:
            self._save(user, decision, outcome)
            self.schedule(user.id, at, decision.retry_at, busy)
        return outcome

    def _save(self, user: User, decision: Decision, outcome: Outcome) -> None:
        m = decision.memory
        with self.ctx.store.transaction() as s:
            row = s.get(PresenceState, user.id)
            if row is None:
                row = PresenceState(user_id=user.id)
                s.add(row)
            row.last_written, row.last_written_at, row.restore_to = m.last_written, m.last_written_at, m.restore_to
            row.manual_since, row.state_key = m.manual_since, m.state_key
            if outcome.written:
                repo.audit(s, user.tenant_id, self.ctx.actor.name, "presence.write", user.email,
                           {"status": decision.status, "reason": decision.reason})
            if outcome.written or outcome.error:
                repo.log(s, user.tenant_id, "presence", outcome.error or decision.reason, user_id=user.id,
                         event_id=outcome.situation.event_id, level="warning" if outcome.error else "info")

    def set_by_hand(self, user: User, status: str, at: datetime) -> bool:
        """Zoom says the person set `status` themselves: respect it at once. It is remembered as set by hand in the
        state they are in now, so no decision overwrites it until that state changes, and what was shown before is
        no longer put back (the person's own choice is newer). Zoom's live states and the echo of zoomcal's own
        write are not a choice -> whether it was recorded as one."""
        status = canonical_status(status) or ""
        memory = self.memory(user.id)
        if status in PROTECTED or (memory.last_written is not None
                                   and status == canonical_status(memory.last_written)
                                   and (memory.manual_since is None)):
            return False
        situation = self.situation(user, at)
        wanted = next((rule.status for rule in self.rules_for(user).rule if rule.when.matches(situation)[0]), None)
        if status == canonical_status(wanted):
            # what the rules want now (zoomcal's own write, told back before it was recorded): not a choice
            return False
        key = situation.key
        with self.ctx.store.transaction() as s:
            row = s.get(PresenceState, user.id)
            if row is None:
                row = PresenceState(user_id=user.id)
                s.add(row)
            row.manual_since, row.state_key, row.restore_to = at, key, None
            repo.log(s, user.tenant_id, "presence", f"{status} set by hand: left alone until the state changes",
                     user_id=user.id)
        return True

    # --- scheduling ------------------------------------------------------------------------------------
    def schedule(self, user_id: int, after: datetime, retry_at: datetime | None = None,
                 busy: BusyIndex | None = None) -> None:
        boundary = (busy or self.index).next_boundary(user_id, epoch(after))
        due = [t for t in (boundary, epoch(retry_at) if retry_at else None) if t is not None]
        if due:
            heapq.heappush(self.queue, (min(due), user_id))

    def mark_due(self, user_id: int) -> None:
        """Something about this user changed (the sync's change stream): evaluate at the next run_due."""
        heapq.heappush(self.queue, (0, user_id))

    def users(self) -> list[User]:
        with self.ctx.store.session() as s:
            return list(s.scalars(select(User).order_by(User.id)))

    async def start(self, at: datetime | None = None) -> list[Outcome]:
        """Evaluate everyone once (on start), which also fills the queue."""
        return [await self.evaluate(u, at) for u in self.users()]

    async def run_due(self, at: datetime | None = None) -> list[Outcome]:
        """Evaluate the users whose next transition is due; each user at most once per call."""
        at = at or now_utc()
        due: set[int] = set()
        while self.queue and self.queue[0][0] <= epoch(at):
            due.add(heapq.heappop(self.queue)[1])
        users = {u.id: u for u in self.users()}
        return [await self.evaluate(users[uid], at) for uid in sorted(due) if uid in users]


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
