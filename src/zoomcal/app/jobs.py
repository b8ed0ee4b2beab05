"""Running the jobs a process has been given (in this process: the in-process queue; workers on several machines
take the same jobs from a durable queue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoomcal.app import channels, sync
from zoomcal.app.context import SYSTEM, Job, Services


async def run(services: Services, jobs: list[Job], *, on_pair: Callable[[sync.PairResult], None] | None = None,
              on_change: Callable[[dict[str, Any]], None] | None = None,
              only: str | None = None) -> list[sync.PairResult]:
    """Carry out jobs; several "sync" jobs for one person become one run."""
    due: dict[tuple[str, str], list[str]] = {}
    renewals = sorted({job.args["tenant"] for job in jobs if job.name == "channels"})
    for tenant in renewals:      # a provider asked for a channel to be renewed or created again
        await channels.renew_due(services.context(tenant, SYSTEM))
    for job in jobs:
        if job.name == "sync":
            due.setdefault((job.args["tenant"], job.args["user"]), []).append(job.args.get("reason", ""))
    results: list[sync.PairResult] = []
    for (tenant, user), reasons in sorted(due.items()):
        if only is not None and user != only:
            continue
        ctx = services.context(tenant, SYSTEM)
        trigger = ", ".join(sorted(set(filter(None, reasons))))[:40] or "job"
        results += await sync.run(ctx, user, trigger=trigger, on_pair=on_pair, on_change=on_change)
    return results
