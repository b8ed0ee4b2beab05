"""P1 — zoomcal against vdirsyncer on the same CalDAV work.

One real Radicale server on loopback holds one calendar: EVENTS events over six months (ZOOMCAL_P1_EVENTS, default
1,000; 10,000 is the issue's large case and takes several minutes), 10 % of them weekly series with a moved and a
cancelled occurrence, the rest single events, in Europe/Berlin and America/New_York. Both tools read it as a fresh
user would: zoomcal into its store (`zoomcal sync` for a person whose only calendar is that one), vdirsyncer into a
folder (`vdirsyncer sync` of the CalDAV storage against a filesystem storage). Each runs as its own process, so
the time is the command's wall time (start-up included) and the memory its peak resident size (`/usr/bin/time`);
requests are counted at the server, from its log.

Steps, each run by both tools in alternating order, REPEAT times (the best of each is compared): a first sync
from nothing; a resync with nothing changed; a resync after 10 events changed, 5 deleted and 5 added. Targets:
time and requests <= 1.0x vdirsyncer's on every step, peak memory <= 1.5x.

Needs vdirsyncer (`pip install -e '.[bench]'`); without it the benchmark says so and reports nothing."""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import Result

EVENTS = int(os.environ.get("ZOOMCAL_P1_EVENTS", "1000"))
REPEAT = int(os.environ.get("ZOOMCAL_P1_REPEAT", "3" if EVENTS <= 2000 else "1"))
ZONES = ("Europe/Berlin", "America/New_York")
BIN = Path(sys.executable).parent
REQUEST = re.compile(r"\] \[INFO\] [A-Z]+ request for ")


@dataclass
class Run:
    seconds: float
    requests: int
    peak_kb: int


def calendar(count: int, seed: int = 1) -> dict[str, str]:
    """name -> iCalendar text of one item."""
    rnd = random.Random(seed)
    start = datetime(2027, 1, 4, tzinfo=UTC)
    out = {}
    for n in range(count):
        uid = f"p1-{n}@bench.example"
        zone = ZONES[n % 2]
        day = start + timedelta(days=rnd.randrange(182), hours=rnd.randrange(7, 18))
        local = day.strftime("%Y%m%dT%H%M%S")
        lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//zoomcal//bench//EN", "BEGIN:VEVENT", f"UID:{uid}",
                 "DTSTAMP:20270101T000000Z", f"DTSTART;TZID={zone}:{local}",
                 f"DTEND;TZID={zone}:{(day + timedelta(minutes=30 * rnd.randint(1, 4))).strftime('%Y%m%dT%H%M%S')}",
                 f"SUMMARY:Event {n}", f"DESCRIPTION:About item {n}", "END:VEVENT"]
        if n % 10 == 0:       # a weekly series: one occurrence moved, one cancelled
            moved = day + timedelta(weeks=2)
            lines[-1:-1] = ["RRULE:FREQ=WEEKLY;COUNT=12",
                            f"EXDATE;TZID={zone}:{(day + timedelta(weeks=3)).strftime('%Y%m%dT%H%M%S')}"]
            lines += ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20270101T000000Z",
                      f"RECURRENCE-ID;TZID={zone}:{moved.strftime('%Y%m%dT%H%M%S')}",
                      f"DTSTART;TZID={zone}:{(moved + timedelta(hours=1)).strftime('%Y%m%dT%H%M%S')}",
                      f"DTEND;TZID={zone}:{(moved + timedelta(hours=2)).strftime('%Y%m%dT%H%M%S')}",
                      f"SUMMARY:Event {n} (moved)", "END:VEVENT"]
        lines.append("END:VCALENDAR")
        out[f"p1-{n}.ics"] = "\r\n".join(lines) + "\r\n"
    return out


class Server:
    """Radicale on a free loopback port over a folder written beforehand (no thousands of PUTs to set up)."""

    def __init__(self, root: Path, items: dict[str, str]):
        collection = root / "data" / "collection-root" / "bench" / "cal"
        collection.mkdir(parents=True)
        (collection / ".Radicale.props").write_text('{"tag": "VCALENDAR"}')
        for name, text in items.items():
            (collection / name).write_text(text)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log = root / "radicale.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--storage-filesystem-folder", str(root / "data"),
             "--server-hosts", f"127.0.0.1:{self.port}", "--auth-type", "none", "--logging-level", "info"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.url = f"http://127.0.0.1:{self.port}/bench/cal/"
        import httpx

        for _ in range(400):
            try:    # the first listing builds the server's caches: before anything is measured
                httpx.request("PROPFIND", self.url, headers={"Depth": "1"}, timeout=120)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("Radicale did not start")

    def requests(self) -> int:
        return sum(1 for line in self.log.read_text(errors="replace").splitlines() if REQUEST.search(line))

    def put(self, name: str, text: str) -> None:
        import httpx

        httpx.put(self.url + name, content=text, headers={"Content-Type": "text/calendar"}).raise_for_status()

    def delete(self, name: str) -> None:
        import httpx

        httpx.delete(self.url + name).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def timed(server: Server, argv: list[str], env: dict[str, str], cwd: Path) -> Run:
    before = server.requests()
    report = cwd / "time.txt"
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), *argv], env=env, cwd=cwd,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr[-2000:]}")
    time.sleep(0.2)     # the server's last log lines
    return Run(seconds, server.requests() - before, int(report.read_text().split()[-1]))


class Zoomcal:
    name = "zoomcal"

    def __init__(self, root: Path, server: Server):
        self.root, self.server = root, server

    def fresh(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.env = {**os.environ, "ZOOMCAL_DATA_DIR": str(self.root / "data"), "ZOOMCAL_ALLOW_PRIVATE_URLS": "1",
                    "DAV_PW": "x"}
        zoomcal = str(BIN / "zoomcal")
        for argv in (["init"], ["user", "add", "bench@example.com", "--name", "Bench"],
                     ["account", "add", "caldav", "--user", "bench@example.com", "--url", self.server.url,
                      "--username", "bench", "--password-env", "DAV_PW"]):
            done = subprocess.run([zoomcal, *argv], env=self.env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"zoomcal {' '.join(argv)}: {done.stderr[-2000:]}")

    def sync(self) -> Run:
        return timed(self.server, [str(BIN / "zoomcal"), "sync", "--once"], self.env, self.root)


class Vdirsyncer:
    name = "vdirsyncer"

    def __init__(self, root: Path, server: Server):
        self.root, self.server = root, server

    def fresh(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "local").mkdir(parents=True)
        config = self.root / "config"
        config.write_text(f"""[general]
status_path = "{self.root / 'status'}"

[pair bench]
a = "bench_remote"
b = "bench_local"
collections = null
conflict_resolution = "a wins"

[storage bench_remote]
type = "caldav"
url = "{self.server.url}"
username = "bench"
password = "x"

[storage bench_local]
type = "filesystem"
path = "{self.root / 'local'}"
fileext = ".ics"
""")
        self.env = {**os.environ, "VDIRSYNCER_CONFIG": str(config)}
        done = subprocess.run([str(BIN / "vdirsyncer"), "discover", "bench"], env=self.env, input="y\n" * 4,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"vdirsyncer discover: {done.stderr[-2000:]}")

    def sync(self) -> Run:
        return timed(self.server, [str(BIN / "vdirsyncer"), "sync"], self.env, self.root)


def change(server: Server, items: dict[str, str], rnd: random.Random) -> None:
    """10 changed, 5 deleted, 5 added."""
    names = sorted(items)
    picked = rnd.sample(names, 15)
    for name in picked[:10]:
        items[name] = items[name].replace("SUMMARY:Event", "SUMMARY:Changed event", 1)
        server.put(name, items[name])
    for name in picked[10:]:
        server.delete(name)
        del items[name]
    extra = calendar(5, seed=rnd.randrange(10**6))
    for n, text in enumerate(extra.values()):
        new = f"p1-new-{len(items)}-{n}.ics"
        items[new] = text.replace("UID:p1-", f"UID:p1-new-{len(items)}-")
        server.put(new, items[new])


def measure(events: int = EVENTS, repeat: int = REPEAT) -> dict[str, dict[str, Run]]:
    """{step: {tool: best run}}."""
    with tempfile.TemporaryDirectory(prefix="zoomcal-p1-") as tmp:
        root = Path(tmp)
        items = calendar(events)
        server = Server(root / "radicale", items)
        tools = [Zoomcal(root / "zoomcal", server), Vdirsyncer(root / "vdirsyncer", server)]
        best: dict[str, dict[str, Run]] = {}
        rnd = random.Random(7)

        def keep(step: str, tool, run: Run) -> None:
            have = best.setdefault(step, {}).get(tool.name)
            if have is None or run.seconds < have.seconds:
                best[step][tool.name] = run

        try:
            for n in range(repeat):
                order = tools if n % 2 == 0 else tools[::-1]
                for tool in order:
                    tool.fresh()
                    keep("first sync", tool, tool.sync())
                for tool in order:
                    keep("no-op resync", tool, tool.sync())
                change(server, items, rnd)
                for tool in order:
                    keep("resync after 20 changes", tool, tool.sync())
        finally:
            server.stop()
        return best


def run() -> list[Result]:
    if shutil.which("vdirsyncer", path=str(BIN)) is None:
        print("P1 skipped: vdirsyncer is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return []
    best = measure()
    out = []
    for step, runs in best.items():
        ours, theirs = runs["zoomcal"], runs["vdirsyncer"]
        for what, value, base, unit, target in (
                ("time", ours.seconds, theirs.seconds, "s", 1.0),
                ("requests", ours.requests, theirs.requests, "requests", 1.0),
                ("peak memory", ours.peak_kb / 1024, theirs.peak_kb / 1024, "MB", 1.5)):
            ratio = value / base if base else float("inf") if value else 1.0
            out.append(Result(f"P1 {step} of {EVENTS:,} CalDAV events: {what} vs vdirsyncer", value, base, ratio,
                              f"<= {target}", ratio <= target, unit))
    return out
