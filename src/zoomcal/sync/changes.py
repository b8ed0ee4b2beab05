"""The engine's change stream: typed changes, published after they are durable, to whoever subscribed.

Subscribers are callables taking one change. A plain function runs in a worker thread (it may read the
database: it never blocks the event loop), a coroutine function is awaited on the loop. Changes arrive in
the order they were made, one batch at a time; a subscriber that raises is logged and the others still run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoomcal.logging import get_logger

if TYPE_CHECKING:
    from zoomcal.sync.engine import RunReport
    from zoomcal.sync.status import PairScope

log = get_logger("zoomcal.sync")


@dataclass(frozen=True)
class EventChanged:
    """An event of the central store was recorded (first time), changed, or forgotten (content None)."""

    kind: str                        # "recorded" | "changed" | "forgotten"
    tenant_id: int
    user_id: int
    event_id: str
    content: dict[str, Any] | None
    reason: str = ""
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The shape `on_event` callbacks have always received."""
        return {"event_id": self.event_id, "reason": self.reason, "user_id": self.user_id, "kind": self.kind,
                "tenant_id": self.tenant_id}


@dataclass(frozen=True)
class RunFinished:
    scope: PairScope
    report: RunReport

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.report.run_id, "status": self.report.status, "user_id": self.scope.user_id}


Change = EventChanged | RunFinished
Subscriber = Callable[[Change], Any]


class ChangeStream:
    def __init__(self) -> None:
        self.subscribers: list[tuple[Subscriber, tuple[type, ...] | None]] = []

    def subscribe(self, subscriber: Subscriber, only: type | tuple[type, ...] | None = None) -> Callable[[], None]:
        """Register (`only`: the change types wanted, default all); returns a function that unsubscribes."""
        entry = (subscriber, (only,) if isinstance(only, type) else only)
        self.subscribers.append(entry)
        return lambda: self.subscribers.remove(entry)

    async def publish(self, changes: Sequence[Change]) -> None:
        for subscriber, only in list(self.subscribers):
            wanted = [c for c in changes if only is None or isinstance(c, only)]
            if not wanted:
                continue
            if _is_async(subscriber):
                for change in wanted:
                    await _guarded_async(subscriber, change)
            else:
                await asyncio.to_thread(_deliver, subscriber, wanted)


def _is_async(subscriber: Subscriber) -> bool:
    return inspect.iscoroutinefunction(subscriber) or inspect.iscoroutinefunction(type(subscriber).__call__)


def _deliver(subscriber: Subscriber, changes: Sequence[Change]) -> None:
    for change in changes:
        try:
            subscriber(change)
        except Exception as exc:   # one subscriber's failure must not undo or stop a sync
            log.warning("subscriber_failed", subscriber=repr(subscriber), error=repr(exc))


async def _guarded_async(subscriber: Subscriber, change: Change) -> None:
    try:
        await subscriber(change)
    except Exception as exc:
        log.warning("subscriber_failed", subscriber=repr(subscriber), error=repr(exc))


def legacy(on_event: Callable[[dict[str, Any]], None]) -> Subscriber:
    """An `on_event(dict)` callback as a subscriber (the dict shapes it always had)."""
    def deliver(change: Change) -> None:
        on_event(change.as_dict())
    deliver.__qualname__ = f"legacy({getattr(on_event, '__qualname__', on_event)!s})"
    return deliver
