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
