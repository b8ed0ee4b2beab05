"""The B6 and B9 harnesses at a tiny scale: what they report is what happened on the sandboxes."""

from __future__ import annotations

import asyncio

import pytest
from benchmarks import b6_presence_push, b9_propagation


def test_b6_every_notification_makes_exactly_one_presence_put_of_the_busy_status():
    [(_rate, _count, _bound, got)] = asyncio.run(b6_presence_push.measure(((20, 4, 50.0),)))
    assert got["lost"] == got["duplicated"] == got["wrong"] == 0
    assert len(got["latency"]) == len(got["baseline"]) == 4 and all(ms > 0 for ms in got["latency"])


def test_b9_every_zoom_edit_reaches_google_pushed_and_polled():
    got = asyncio.run(b9_propagation.measure(1, 3))
    assert got["lost"] == 0 and len(got["push"]) == len(got["synced"]) == 3
    assert all(seconds > 0 for seconds in got["push"] + got["synced"])


def test_b9_polling_latency_is_a_uniform_wait_plus_a_measured_sync():
    assert b9_propagation.poll_quantile(0.5, [0.0], 60.0) == pytest.approx(30.0)
    assert b9_propagation.poll_quantile(0.5, [0.0, 10.0], 60.0) == pytest.approx(35.0)
    assert b9_propagation.poll_quantile(0.99, [2.0], 60.0) == pytest.approx(2.0 + 59.4)


def test_p1_runs_both_tools_on_one_radicale_calendar_and_counts_their_requests_at_the_server(tmp_path):
    """P1's harness at a tiny scale: both tools really sync the calendar, and the server's count of requests is
    what each made (zoomcal: one sync-collection report on a no-op resync, and one multiget more after changes)."""
    import random
    import shutil

    from benchmarks import p1_vdirsyncer as p1

    if shutil.which("vdirsyncer", path=str(p1.BIN)) is None:
        pytest.skip("vdirsyncer is not installed (pip install -e '.[bench]')")
    items = p1.calendar(30)
    server = p1.Server(tmp_path / "radicale", items)
    try:
        zoomcal, vdir = p1.Zoomcal(tmp_path / "z", server), p1.Vdirsyncer(tmp_path / "v", server)
        for tool in (zoomcal, vdir):
            tool.fresh()
            first = tool.sync()
            assert first.requests >= 1 and first.peak_kb > 0 and first.seconds > 0
        assert len(list((tmp_path / "v" / "local").glob("*.ics"))) == 30
        assert zoomcal.sync().requests == 1
        p1.change(server, items, random.Random(1))
        assert zoomcal.sync().requests == 2 and vdir.sync().requests >= 2
        assert len(list((tmp_path / "v" / "local").glob("*.ics"))) == 30
    finally:
        server.stop()


def test_p2_a_first_sync_reads_a_full_calendar_in_the_fewest_pages():
    """P2 at a small scale: 120 events (12 of them weekly series) from Google in one page of events.list; from
    Microsoft 365 in the delta's pages plus one `$batch` for the series masters."""
    from benchmarks import p2_providers as p2

    google = asyncio.run(p2.first_sync("google", 120))
    assert google["requests"] == google["minimum"] == 1
    graph = asyncio.run(p2.first_sync("graph", 120))
    assert graph["requests"] == graph["minimum"] == -(-(108 + 12 * 4) // 50) + 1
