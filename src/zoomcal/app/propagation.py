"""Propagation: how long a change took to reach the other side.

A sample is one change: when the provider says it happened (a webhook's timestamp, an item's modification time)
and when zoomcal's write of it was confirmed on the other side (kind "sync"), or when the Zoom presence PUT that
followed a calendar change was made (kind "presence"). Samples are kept for a week in the `propagation` table, so
the percentiles are those of every process (workers on several machines), and observed as they are recorded by
the `zoomcal_propagation_seconds` histogram of the process that recorded them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from zoomcal.app.context import AppContext
from zoomcal.availability.intervals import as_utc
from zoomcal.metrics import PROPAGATION
from zoomcal.store.models import PropagationSample

KINDS = ("sync", "presence")
KEEP = timedelta(days=7)
PRUNE_EVERY = 100          # one sample in this many (by id) clears the tenant's samples older than KEEP
PERCENTILES = (50, 95, 99)



def record(ctx: AppContext, kind: str, provider: str, changed_at: datetime | None,
           written_at: datetime | None) -> int | None:
    """Keep one sample -> its latency in milliseconds (None: nothing recorded, because a time is unknown or the
    write seems to precede the change, which only clocks that disagree can do)."""
    if changed_at is None or written_at is None:
        return None
    changed_at, written_at = as_utc(changed_at), as_utc(written_at)
    seconds = (written_at - changed_at).total_seconds()
    if seconds < 0:
        return None
    ms = int(round(seconds * 1000))
    with ctx.store.transaction() as s:
        sample = PropagationSample(tenant_id=ctx.tenant_id, kind=kind[:20], provider=(provider or "")[:20],
                                   changed_at=changed_at, written_at=written_at, ms=ms)
        s.add(sample)
        s.flush()
        if sample.id % PRUNE_EVERY == 0:
            s.execute(delete(PropagationSample).where(PropagationSample.tenant_id == ctx.tenant_id,
                                                      PropagationSample.written_at < ctx.now() - KEEP))
    PROPAGATION.labels(kind=kind, provider=provider or "unknown").observe(seconds)
    return ms


def prune(ctx: AppContext, older_than: timedelta = KEEP) -> int:
    """Forget the tenant's samples older than `older_than` -> how many."""
    with ctx.store.transaction() as s:
        done = s.execute(delete(PropagationSample).where(PropagationSample.tenant_id == ctx.tenant_id,
                                                         PropagationSample.written_at < ctx.now() - older_than))
        return done.rowcount or 0


def percentile(sorted_values: list[int], p: float) -> int:
    """The nearest-rank percentile of values sorted ascending (the smallest value with at least p% at or below)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(ctx: AppContext, since: timedelta = timedelta(days=1)) -> dict[str, dict[str, dict[str, Any]]]:
    """{kind: {provider: {count, p50, p95, p99}}} over the tenant's samples written in the last `since`;
    percentiles in milliseconds (nearest rank)."""
    values: dict[str, dict[str, list[int]]] = {}
    with ctx.store.session() as s:
        rows = s.execute(select(PropagationSample.kind, PropagationSample.provider, PropagationSample.ms)
                         .where(PropagationSample.tenant_id == ctx.tenant_id,
                                PropagationSample.written_at >= ctx.now() - since))
        for kind, provider, ms in rows:
            values.setdefault(kind, {}).setdefault(provider, []).append(ms)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in sorted(values):
        for provider in sorted(values[kind]):
            ordered = sorted(values[kind][provider])
            out.setdefault(kind, {})[provider] = {"count": len(ordered),
                                                  **{f"p{p}": percentile(ordered, p) for p in PERCENTILES}}
    return out
