"""A sync pair of in-memory calendars over a real store: the rows a pair needs (tenant, user, accounts,
calendars), and memory connectors that declare other capabilities (a daily write cap, read-only)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from zoomcal.connectors.memory.connector import MemoryConnector
from zoomcal.mapping.rules import DEFAULT_RULES
from zoomcal.store import repo
from zoomcal.store.db import Database
from zoomcal.store.models import Account, Calendar, User
from zoomcal.sync.engine import SideSpec, SyncPair


class CappedMemory(MemoryConnector):
    """A calendar whose provider allows `cap` creates + updates a day (as Zoom does with 100)."""

    def __init__(self, cap: int, **kwargs):
        super().__init__(**kwargs)
        self.capabilities = replace(MemoryConnector.capabilities, writes_per_day=cap)
        self.writes: list[str] = []

    async def create(self, content, key, maybe_exists=False):
        self.writes.append("create")
        return await super().create(content, key, maybe_exists)

    async def update(self, item_id, content, etag, key, current):
        self.writes.append("update")
        return await super().update(item_id, content, etag, key, current)


class ReadOnlyMemory(MemoryConnector):
    """A read-only source: any write is a bug, so it fails the test loudly."""

    capabilities = replace(MemoryConnector.capabilities, writable=False)

    async def create(self, *args, **kwargs):
        raise AssertionError("a read-only side was written (create)")

    async def update(self, *args, **kwargs):
        raise AssertionError("a read-only side was written (update)")

    async def delete(self, *args, **kwargs):
        raise AssertionError("a read-only side was written (delete)")


@dataclass
class Clock:
    now: datetime = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def memory_pair(db: Database, a, b, *, a_label: str = "Zoom", b_label: str = "Calendar",
                email: str = "m@example.com") -> SyncPair:
    """Side a (the meetings side, owning join info) and side b, each on its own account and calendar."""
    with db.transaction() as s:
        tenant = repo.get_or_create_tenant(s)
        user = User(tenant_id=tenant.id, email=email)
        s.add(user)
        s.flush()
        ids = []
        for provider, remote, role in (("zoom", "a", "meetings"), ("google", "b", "calendar")):
            account = Account(tenant_id=tenant.id, user_id=user.id, provider=provider)
            s.add(account)
            s.flush()
            calendar = Calendar(tenant_id=tenant.id, user_id=user.id, account_id=account.id, remote_id=remote,
                                role=role)
            s.add(calendar)
            s.flush()
            ids.append((calendar.id, account.id))
        tenant_id, user_id = tenant.id, user.id
    side_a = SideSpec(ids[0][0], a, ids[0][1], owns=frozenset({"join"}), label=a_label) if a is not None else None
    return SyncPair(tenant_id, user_id, side_a, SideSpec(ids[1][0], b, ids[1][1], label=b_label), DEFAULT_RULES,
                    email)


def meeting(title: str, day: int = 10, hour: int = 9, **extra) -> dict:
    """Content fields of a one-hour event in March 2026."""
    return {"title": title, "start": f"2026-03-{day:02d}T{hour:02d}:00:00Z",
            "end": f"2026-03-{day:02d}T{hour + 1:02d}:00:00Z", **extra}
