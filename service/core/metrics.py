"""Prometheus metrics of the API process (request counts and latencies by route
template) and of the job queue (job counts kept in Redis by the worker, since
the worker is another process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "callpact_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "callpact_http_request_duration_seconds",
    "HTTP request latency by method and route template.",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

JOB_COUNTS_KEY = "callpact:metrics:jobs"
"""Redis hash `<job name>|<outcome>` → count, incremented by the worker."""
