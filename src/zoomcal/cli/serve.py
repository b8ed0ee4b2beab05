"""`zoomcal serve`: the web app (webhooks, metrics, health, the live feed) on one address."""

from __future__ import annotations

import socket

import typer

from zoomcal.cli.common import context, err, fail, handled


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a busy port is one clear line rather than a server's traceback."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # a restart reuses it; a listener still refuses
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


@handled
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8080, "--port", help="Port to bind."),
    jobs: bool | None = typer.Option(None, "--jobs/--no-jobs",
                                     help="Also run the jobs in this process (syncs marked due, reconciliation, "
                                          "renewals). Default: yes with SQLite, no with PostgreSQL, where "
                                          "`zoomcal worker` processes run them."),
) -> None:
    """Serve the web app: POST /webhooks/{channel}, GET /metrics, /healthz, /readyz and /events (the live feed;
    with ZOOMCAL_API_TOKEN set it takes that bearer token, without it it is served on a loopback address only)."""
    import uvicorn

    from zoomcal.web.app import is_loopback, make_app

    ctx = context()                 # stops with one line when the schema is not this zoomcal's
    services = ctx.services
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    from zoomcal.app import runner

    run_jobs = (not runner.uses_workers(services.settings)) if jobs is None else jobs
    background = runner.Background(services)
    app = make_app(services, on_startup=[background.start] if run_jobs else [],
                   on_shutdown=[services.aclose] + ([background.stop] if run_jobs else []))
    err.print(f"serving on http://{host}:{bound_port}: /webhooks/{{channel}}, /metrics, /healthz, /readyz, /events",
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
