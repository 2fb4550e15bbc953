"""Prometheus metrics of the API process (request counts and latencies by route
template) and of the job queue (job counts kept in Redis by the worker, since
the worker is another process)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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


# ---- caches (read at scrape time: nothing on the request path) ---------------------

_WATCHED: dict[str, Any] = {}


def watch(name: str, source: Any) -> None:
    """Expose a `TenantCache` (hits, misses, entries, bytes) or a `ChangeFeed`
    (up, notifications) under `name`; the latest registration of a name wins."""
    _WATCHED[name] = source


class _CacheCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        hits = CounterMetricFamily(
            "callpact_cache_hits", "Answers served from a process cache.", labels=["cache"]
        )
        misses = CounterMetricFamily(
            "callpact_cache_misses", "Lookups that had to compute.", labels=["cache"]
        )
        entries = GaugeMetricFamily("callpact_cache_entries", "Entries held.", labels=["cache"])
        size = GaugeMetricFamily("callpact_cache_bytes", "Bytes held.", labels=["cache"])
        up = GaugeMetricFamily(
            "callpact_change_feed_up",
            "1 while the change feed listens (caches serve only then).",
            labels=["feed"],
        )
        notes = CounterMetricFamily(
            "callpact_change_notifications", "Change notifications received.", labels=["feed"]
        )
        for name, source in _WATCHED.items():
            if hasattr(source, "hits"):
                hits.add_metric([name], source.hits)
                misses.add_metric([name], source.misses)
                entries.add_metric([name], len(source))
                size.add_metric([name], source.size)
            else:
                up.add_metric([name], 1.0 if source.live else 0.0)
                notes.add_metric([name], source.received)
        yield from (hits, misses, entries, size, up, notes)


REGISTRY.register(_CacheCollector())
