"""B7 — webhook ingest throughput.

zoomcal's `POST /webhooks/zoom` (verify the signature → find whose calendars the notice names → mark their sync
due, durably → 2xx) against a bare FastAPI endpoint that only checks the same signature, both served by uvicorn
on loopback and driven by the same bounded load generator in another process (a fixed number of signed
`meeting.updated` notifications, a fixed number in flight). The notices name the meetings of 50 linked people on
SQLite, the default store (or in the empty database ZOOMCAL_BENCH_DATABASE_URL names, e.g. PostgreSQL).
Target: zoomcal's throughput >= 0.7x the bare endpoint's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from benchmarks.common import Result, check

PEOPLE = 50
REQUESTS = 1000
ROUNDS = 3
IN_FLIGHT = 16
SECRET = "b7-webhook-secret"
STORE_URL = os.environ.get("ZOOMCAL_BENCH_DATABASE_URL")     # e.g. a PostgreSQL URL; SQLite in a temp dir if unset


def bare_app() -> FastAPI:
    from zoomcal.connectors.spec import PushRefused
    from zoomcal.connectors.zoom.push import verify

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/webhooks/zoom")
    async def webhook(request: Request):
        try:
            verify(SECRET, request.headers, await request.body(), time.time())
        except PushRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        return {"ok": True}

    return app


def notices(hosts: list[str], count: int) -> list[tuple[dict[str, str], bytes]]:
    from zoomcal.connectors.zoom.push import zoom_signature

    rng = random.Random(7)
    out = []
    stamp = str(int(time.time()))
    for n in range(count):
        host = rng.choice(hosts)
        body = json.dumps({"event": "meeting.updated", "event_ts": int(time.time() * 1000),
                           "payload": {"account_id": "acct", "object": {
                               "id": 80000000000 + n, "host_id": host, "topic": f"Meeting {n}"}}}).encode()
        out.append(({"content-type": "application/json", "x-zm-request-timestamp": stamp,
                     "x-zm-signature": zoom_signature(SECRET, stamp, body)}, body))
    return out


async def drive(url: str, requests: list[tuple[dict[str, str], bytes]]) -> tuple[float, dict[int, int]]:
    """Requests per second, and how many got each status."""
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker():
            while queue:
                headers, body = queue.pop()
                answer = await client.post("/webhooks/zoom", headers=headers, content=body)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))        # warm the connections
        queue[:] = list(reversed(requests))
        statuses.clear()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return len(requests) / (time.perf_counter() - start), statuses


def generate(url: str, load_file: Path) -> tuple[float, dict[int, int]]:
    """Drive a server from another process (the load generator must not share the server's interpreter)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.b7_webhook_ingest", url, str(load_file)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
                          check=True)
    rate, statuses = json.loads(proc.stdout)
    return rate, {int(k): v for k, v in statuses.items()}


def run() -> list[Result]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from sqlalchemy import func, select

    from conftest import link_sandbox_user, make_context
    from zoomcal.sandbox.server import BackgroundServer
    from zoomcal.sandbox.world import SandboxWorld
    from zoomcal.store.models import SyncDue
    from zoomcal.web.app import make_app

    world = SandboxWorld()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = make_context(world, Path(tmp), database_url=STORE_URL)
        ctx.services.settings.zoom_webhook_secret = SECRET
        hosts = [link_sandbox_user(ctx, world, f"p{i}@example.com", f"Person {i}", zoom_mode="user")["zoom_user_id"]
                 for i in range(PEOPLE)]
        load = notices(hosts, REQUESTS)
        bare = BackgroundServer(app=bare_app()).start()
        served = BackgroundServer(app=make_app(ctx.services)).start()
        load_file = Path(tmp) / "load.json"
        load_file.write_text(json.dumps([[headers, body.decode()] for headers, body in load]))
        try:
            # alternate the two, best of a few rounds each: a busy machine slows both alike
            rounds = [(generate(bare.url, load_file), generate(served.url, load_file)) for _ in range(ROUNDS)]
        finally:
            served.stop()
            bare.stop()
            with ctx.store.session() as s:
                due_people = s.scalar(select(func.count()).select_from(SyncDue))
            ctx.services.close()
    baseline, value = max(b[0] for b, _ in rounds), max(z[0] for _, z in rounds)
    statuses = [z[1] for _, z in rounds]
    ok = all(st == {200: REQUESTS} for st in statuses + [b[1] for b, _ in rounds]) and due_people == PEOPLE
    ratio = value / baseline
    target = ">= 0.7"
    return [Result("B7 webhook ingest throughput vs a bare signature-checking endpoint", value, baseline, ratio,
                   target, ok and check(ratio, target), "req/s",
                   f"{REQUESTS} signed meeting.updated for {PEOPLE} people, {IN_FLIGHT} in flight, SQLite; "
                   f"best of {ROUNDS} alternating rounds; answers {statuses[0]}, people marked due {due_people}")]


if __name__ == "__main__":
    url, path = sys.argv[1:3]
    requests = [(headers, body.encode()) for headers, body in json.loads(Path(path).read_text())]
    print(json.dumps(asyncio.run(drive(url, requests))))
