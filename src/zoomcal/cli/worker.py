"""`zoomcal worker`: a process that runs zoomcal's jobs from the PostgreSQL queue (start several, on any machines)."""

from __future__ import annotations

import typer

from zoomcal.cli.common import context, err, fail, handled, run_async
from zoomcal.lazy import lazy

runner = lazy("zoomcal.app.runner")


@handled
def worker(
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64,
                                    help="Jobs this process runs at once (different people)."),
    name: str | None = typer.Option(None, "--name", help="The worker's name in the queue (default: generated)."),
    metrics_port: int = typer.Option(0, "--metrics-port",
                                     help="Also expose Prometheus metrics on this port (GET /metrics)."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="Address the metrics endpoint binds."),
) -> None:
    """Run jobs from the durable queue: syncs that notifications, timers and operations marked due, and the
    periodic work (reconciliation, token refresh, push channel renewal, presence due times, contacts, account
    checks, invitations, polls, audit retention). Needs PostgreSQL; one job per person runs at a time across all
    workers, and a killed worker's jobs are retried by the others."""
    ctx = context()
    problem = runner.worker_problem(ctx.services)
    if problem == "sqlite":
        fail("workers share a PostgreSQL database; this one is SQLite",
             hint="set ZOOMCAL_DATABASE_URL=postgresql+psycopg://...; with SQLite, `zoomcal sync` and `zoomcal serve` "
                  "run the jobs themselves")
    if problem == "no_queue":
        fail("the database has no job queue yet", hint="run `zoomcal db upgrade`")
    if metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr=metrics_host)
        except OSError as exc:
            fail(f"could not listen on {metrics_host}:{metrics_port} ({exc.strerror or exc})")
    err.print(f"worker running {concurrency} job(s) at a time; stop with Ctrl-C (running jobs finish first)")
    run_async(ctx, lambda: runner.run_worker(ctx.services, concurrency=concurrency, name=name))
