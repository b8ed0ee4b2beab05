"""The standard wiring of the engine over a database: the SQL status store with busy intervals and e-mail
invitations kept in its transactions, and overlap detection on the change stream. The application layer may
wire its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoomcal.store.db import Database
    from zoomcal.sync.changes import Subscriber
    from zoomcal.sync.status import StatusStore


def standard(db: Database) -> tuple[StatusStore, list[tuple[Subscriber, type | tuple[type, ...] | None]]]:
    """-> (the store, [(subscriber, the change type it wants)])."""
    from zoomcal.availability.subscribers import BusyIntervals, OverlapRecorder
    from zoomcal.invitations.outbox import InvitationHook
    from zoomcal.store.status import SqlStatusStore
    from zoomcal.sync.changes import EventChanged, RunFinished

    store = SqlStatusStore(db, hooks=[BusyIntervals(), InvitationHook()])
    return store, [(OverlapRecorder(db), (EventChanged, RunFinished))]
