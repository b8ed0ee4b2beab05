"""What the sync engine keeps between runs, behind one small interface.

The engine decides; a `StatusStore` remembers. Every method is one durable step (one transaction in the SQL
store, `zoomcal.store.status`), so the engine's order of durability is the order in which it calls them:
`record_plan` (the write-ahead `pending` marks) before a remote write, `confirm` / `write_failed` after it,
`save_listings` (raw mirror and cursors) only once every plan was handled. Methods are plain blocking calls:
the engine runs them off the event loop (`asyncio.to_thread`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from zoomcal.sync.planner import EventPlan, EventRecord


class LeaseHeld(Exception):
    """Another run holds one of the calendars (raised before anything of this run is kept)."""


class LeaseLost(Exception):
    """The run's lease on its calendars was taken over (it expired while the run was paused or cut off): the run
    must stop writing; the store refuses its writes from here on."""


@dataclass(frozen=True)
class Lease:
    """A run's hold on its calendars: the holder's name and, per calendar, the fencing token it was given. Every
    status write carries it, and is refused once another holder has taken a calendar over."""

    holder: str
    fences: Mapping[int, int]


@dataclass(frozen=True)
class PairScope:
    """Who and where a run writes: the tenant, the user and each side's calendar (and its label for the log).
    `rules` are the pair's mapping rules, for store hooks that need them (the availability window)."""

    tenant_id: int
    user_id: int
    calendars: Mapping[str, int]                 # side ("a" / "b") -> calendar id
    labels: Mapping[str, str] = field(default_factory=dict)
    rules: Any = None
    lease: Lease | None = None                   # set by the run that holds the calendars: writes are fenced

    def label(self, side: str) -> str:
        return self.labels.get(side) or side

    def describe(self, reason: str) -> str:
        """A planner reason with the sides' names ("new on A -> create on B" -> "new on Zoom -> create on Google")."""
        names = {"A": self.labels.get("a") or "A", "B": self.labels.get("b") or "B"}
        return re.sub(r"\b[AB]\b", lambda m: names[m.group(0)], reason)


@dataclass
class SideState:
    """One calendar as the last run left it."""

    cursor: str | None
    raws: dict[str, dict[str, Any]]              # the raw listing mirror: raw id -> raw item
    linked: set[str]                             # remote ids of links whose create was confirmed


@dataclass(frozen=True)
class LogLine:
    action: str
    message: str
    event_id: str | None = None
    level: str = "info"
    detail: dict[str, Any] | None = None      # structured: what the event's history shows


@dataclass(frozen=True)
class Confirmation:
    """A remote write that succeeded: what the side now holds, to store as the link's new state."""

    event_id: str
    side: str
    op: str                                      # "create" | "update" | "delete"
    remote_id: str | None = None                 # what the side now holds (nothing after a delete)
    etag: str | None = None
    state: dict[str, Any] | None = None
    state_hash: str | None = None
    base: dict[str, Any] | None = None           # the event's new base, when the write brought fields it owns
    mark_peer: bool = False                      # the peer side now owes an update (those fields flow on)
    log: Sequence[LogLine] = ()


@dataclass(frozen=True)
class Confirmed:
    removed: str | None = None                   # remote id of the link a delete removed
    forgotten: bool = False                      # the event went with its last link
    peer: tuple[str, str | None] | None = None   # (remote id, etag) of the peer marked for an update


@dataclass(frozen=True)
class RunSummary:
    status: str
    counts: dict[str, int]
    api_calls: int
    errors: Sequence[str]
    duration_ms: int


@runtime_checkable
class StatusStore(Protocol):
    # runs
    def begin_run(self, scope: PairScope, trigger: str, holder: str, ttl: timedelta
                  ) -> tuple[int, list[str], Lease]:
        """Lease the scope's calendars and open a sync run -> (run id, notes, lease); raises LeaseHeld. Writes
        for a scope that carries the lease raise LeaseLost once another holder took a calendar over."""
        ...

    def renew_lease(self, lease: Lease, ttl: timedelta) -> bool:
        """The run is alive: hold its calendars `ttl` longer -> False when the lease was lost meanwhile."""
        ...

    def end_run(self, calendar_ids: Sequence[int], holder: str) -> None:
        """Give the calendars' leases back."""
        ...

    def finish_run(self, run_id: int, scope: PairScope, summary: RunSummary) -> None: ...

    # reading
    def load_side(self, calendar_id: int) -> SideState: ...

    def load_records(self, scope: PairScope) -> list[EventRecord]: ...

    def link_target(self, event_id: str, calendar_id: int) -> tuple[str | None, str | None] | None:
        """(remote id, etag) of the event's link on that calendar, None without a link."""
        ...

    # writing
    def record_quiet(self, scope: PairScope, plans: Sequence[EventPlan], run_id: int | None) -> set[str]:
        """Plans that write nothing remote, in one batch -> ids of events stored for the first time."""
        ...

    def record_plan(self, scope: PairScope, plan: EventPlan, planned_ids: Mapping[str, str | None],
                    run_id: int | None) -> bool:
        """The event's new base, the links as seen and a `pending` mark per planned write (the write-ahead
        record), review items -> whether the event is new. `planned_ids`: side -> the id a create will get."""
        ...

    def confirm(self, scope: PairScope, confirmation: Confirmation, run_id: int | None) -> Confirmed: ...

    def write_failed(self, scope: PairScope, event_id: str, side: str, outcome: str | None, log: LogLine,
                     run_id: int | None) -> None:
        """outcome "rejected": drop the mark (and an unconfirmed create's link); "gone": drop the mark."""
        ...

    def save_listings(self, listings: Sequence[tuple[int, Mapping[str, tuple[str, dict[str, Any]]],
                                                     set[str], str | None]], lease: Lease | None = None) -> None:
        """(calendar id, mirror upserts, mirror deletes, cursor) of every side, in one step."""
        ...

    def log(self, scope: PairScope, lines: Sequence[LogLine], run_id: int | None) -> None: ...

    def hold_deletes(self, scope: PairScope, message: str, run_id: int | None) -> None:
        """A mass deletion waits for confirmation: one open review item, one log line."""
        ...

    def mark_reauth(self, account_ids: Sequence[int]) -> None: ...

    def set_health(self, account_ids: Sequence[int], status: str, reason: str | None) -> None:
        """Accounts are now `degraded` (their provider stopped answering) or `ok` again (a run got
        through). Accounts that need linking again are left as they are."""

    # per-day write caps (shared by every process using the store)
    def reserve_write(self, tenant_id: int, account_id: int, day: str, cap: int) -> bool:
        """Count one create/update for the account on that UTC day, unless `cap` are counted already."""
        ...

    def exhaust_quota(self, tenant_id: int, account_id: int, day: str, cap: int) -> None:
        """The provider says the day's writes are used up: count them as such."""
        ...
