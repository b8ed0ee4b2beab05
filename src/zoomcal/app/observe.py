"""What a process says about itself and the shared state: the due queue read from the store, readiness, and the
Prometheus exposition (counters of this process, gauges of the store set when scraped)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from zoomcal.app.context import Services
from zoomcal.domain.timeutil import now_utc
from zoomcal.metrics import DUE_DEPTH, DUE_OLDEST
from zoomcal.store.db import DatabaseUnavailable, SchemaError
from zoomcal.store.models import SyncDue


@dataclass(frozen=True)
class QueueState:
    due: int                        # people whose sync is marked due and not yet run, every tenant
    oldest_seconds: float           # age of the oldest of those marks (0: none)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_state(services: Services, now: datetime | None = None) -> QueueState:
    """The due marks of every tenant: how many, and how long the oldest has waited."""
    with services.db.session() as s:
        count, oldest = s.execute(select(func.count(), func.min(SyncDue.marked_at))).one()
    if not count or oldest is None:
        return QueueState(0, 0.0)
    oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
    return QueueState(int(count), max(0.0, ((now or now_utc()) - oldest).total_seconds()))


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "unavailable", **({"reason": self.reason} if self.reason else {})}


def readiness(services: Services) -> Readiness:
    """Ready when the database answers and its schema is the one this zoomcal reads."""
    try:
        services.db.check_schema()
    except SchemaError as exc:
        return Readiness(False, f"schema {exc.state}: {exc}")
    except DatabaseUnavailable:
        return Readiness(False, "database unreachable")
    except (SQLAlchemyError, OSError) as exc:
        return Readiness(False, f"database unreachable: {type(exc).__name__}")
    return Readiness(True)


def metrics_text(services: Services) -> bytes:
    """The Prometheus exposition of this process, with the store's gauges read now (left as they were when the
    database does not answer, so a scrape never fails because of it)."""
    try:
        state = queue_state(services)
    except SQLAlchemyError:
        pass
    else:
        DUE_DEPTH.set(state.due)
        DUE_OLDEST.set(state.oldest_seconds)
    return generate_latest(REGISTRY)
