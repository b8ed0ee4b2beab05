"""Prometheus metrics (exposed by the web app in a later step; counted from the first run)."""

from prometheus_client import Counter

SYNC_RUNS = Counter("zoomcal_sync_runs_total", "Sync runs by outcome", ["status"])
SYNC_WRITES = Counter("zoomcal_sync_writes_total", "Remote writes by operation and side", ["op", "side"])
SYNC_ERRORS = Counter("zoomcal_sync_errors_total", "Failed remote writes by error type", ["kind"])
