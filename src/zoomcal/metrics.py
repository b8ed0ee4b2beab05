"""Prometheus metrics, counted in every process (`zoomcal serve` and `zoomcal worker` expose them at /metrics).

Gauges of shared state (queue depth, oldest due mark) are read from the store when scraped; everything else is
counted where it happens. Label values are provider keys, statuses and outcomes: never an e-mail, a URL or a token.
"""

from prometheus_client import Counter, Gauge, Histogram

SYNC_RUNS = Counter("zoomcal_sync_runs_total", "Sync runs by outcome", ["status"])
SYNC_WRITES = Counter("zoomcal_sync_writes_total", "Remote writes by operation and side", ["op", "side"])
SYNC_ERRORS = Counter("zoomcal_sync_errors_total", "Failed remote writes by error type", ["kind"])
SYNC_DURATION = Histogram("zoomcal_sync_duration_seconds", "Duration of one pair's sync run, by the provider of "
                          "the calendar that receives meetings", ["provider"],
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))

API_CALLS = Counter("zoomcal_api_calls_total", "Provider API calls by provider and HTTP status", ["provider", "status"])
RATE_LIMITED = Counter("zoomcal_api_rate_limited_total", "Provider answers of 429 (or a vendor's throttling)",
                       ["provider"])
TOKEN_REFRESH_FAILURES = Counter("zoomcal_token_refresh_failures_total", "Failed access-token refreshes",
                                 ["provider", "reason"])

WEBHOOKS = Counter("zoomcal_webhooks_total", "Notifications received, by channel and outcome "
                   "(received, verified, rejected, handshake, acted, held: the version named is held already)",
                   ["channel", "outcome"])

JOBS = Counter("zoomcal_jobs_total", "Jobs by task and outcome (queued, started, succeeded, failed, retried)",
               ["task", "outcome"])
JOBS_RUNNING = Gauge("zoomcal_jobs_running", "Jobs running in this process", ["task"])
DUE_DEPTH = Gauge("zoomcal_sync_due", "People whose sync is marked due and not yet run (all tenants)")
DUE_OLDEST = Gauge("zoomcal_sync_due_oldest_seconds", "Age of the oldest due mark not yet served")

PROPAGATION = Histogram("zoomcal_propagation_seconds", "From a change at a provider to zoomcal's write of it on the "
                        "other side (sync), or from a calendar change to the Zoom presence PUT (presence)",
                        ["kind", "provider"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600))
PRESENCE_WRITES = Counter("zoomcal_presence_writes_total", "Zoom presence PUTs by status", ["status"])
