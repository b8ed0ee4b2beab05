"""`zoomcal serve`: the web app (webhooks, metrics, health, the live feed) on one address."""

from __future__ import annotations

import typer

from zoomcal.cli.common import context, err, handled, listen


@handled
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8080, "--port", help="Port to bind."),
    jobs: bool | None = typer.Option(None, "--jobs/--no-jobs",
                                     help="Also run the jobs in this process (syncs marked due, reconciliation, "
                                          "renewals). Default: yes with SQLite, no with PostgreSQL, where "
                                          "`zoomcal worker` processes run them."),
) -> None:
    """Serve the web app: the portal at / (people sign in with `zoomcal user password` or `zoomcal user link`),
    POST /webhooks/{channel}, GET /metrics, /healthz, /readyz and /events (the live feed; with ZOOMCAL_API_TOKEN
    set it takes that bearer token, without it it is served on a loopback address only)."""
    import uvicorn

    from zoomcal.web.app import is_loopback, make_app

    ctx = context()                 # stops with one line when the schema is not this zoomcal's
    services = ctx.services
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    from zoomcal.app import runner

    run_jobs = (not runner.uses_workers(services.settings)) if jobs is None else jobs
    background = runner.Background(services)
    app = make_app(services, on_startup=[background.start] if run_jobs else [],
                   on_shutdown=[services.aclose] + ([background.stop] if run_jobs else []))
    err.print(f"serving on http://{host}:{bound_port}: the portal at /, /webhooks/{{channel}}, /metrics, /healthz, "
              "/readyz, /events",
              highlight=False, markup=False, soft_wrap=True)
    if run_jobs:
        err.print("running jobs in this process (syncs marked due, reconciliation, renewals)", highlight=False)
    if not services.settings.api_token and not is_loopback(bound_host):
        err.print("note: /events is refused on this address until ZOOMCAL_API_TOKEN is set", highlight=False,
                  markup=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        services.close()
