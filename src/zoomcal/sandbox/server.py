"""Serve a sandbox world over loopback (uvicorn in a background thread) for the demo and `zoomcal sandbox`."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from zoomcal.sandbox.world import SandboxWorld


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """A world's sandboxes (or any ASGI app: the demo serves zoomcal's own web app the same way) on loopback."""

    def __init__(self, world: SandboxWorld | None = None, host: str = "127.0.0.1", port: int | None = None, *,
                 app=None):
        self.host = host
        self.port = port or free_port(host)
        # injected hang-ups make uvicorn log errors by design; keep them out of the demo's output
        served = app if app is not None else world.app(over_network=True)
        config = uvicorn.Config(served, host=host, port=self.port, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
