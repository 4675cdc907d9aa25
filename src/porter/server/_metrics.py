"""Prometheus metrics of one server process: requests, latencies and errors by endpoint, active queries.

Each application has its own registry (not prometheus_client's global one),
so several apps in one process — the tests start many — do not collide.  With
several workers each reports its own numbers; Prometheus sums them by the
``instance`` it scraped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["ServerMetrics"]


class ServerMetrics:
    """The counters, histograms and gauges `/metrics` reports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "porter_requests",
            "HTTP requests answered, by method, endpoint and status.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "porter_request_errors",
            "Requests answered with a 5xx status, by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "porter_request_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.active = Gauge("porter_active_queries", "Queries running now.", registry=self.registry)
        self.downloads = Counter(
            "porter_download_urls", "Signed download URLs handed out.", registry=self.registry
        )

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 500:
            self.errors.labels(endpoint).inc()

    @contextlib.contextmanager
    def active_query(self) -> Iterator[None]:
        """Counts a query as active while it runs."""
        self.active.inc()
        try:
            yield
        finally:
            self.active.dec()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
