"""Prometheus metrics of one server process: requests, latencies and errors by endpoint, active queries.

Each application has its own registry (not prometheus_client's global one),
so several apps in one process — the tests start many — do not collide.

``porter serve --workers N`` runs N processes behind one port, and a scrape
reaches whichever answers, so each must report the numbers of all: the
server then runs prometheus_client's multiprocess mode.  `multiprocess_directory`
makes the directory where every worker keeps its values (named by host and
the server's process, under the repository's server area; a dead server's is
swept at the next start, the server's own is removed when it stops), and
``/metrics`` adds up the files of every worker, live or gone (counters and
histograms), or of the live ones (the gauge of active queries).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["MULTIPROC_ENV", "ServerMetrics", "multiprocess_directory"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch to multiprocess mode: read when it is first imported, so set before workers start."""


def _multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


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
        self.active = Gauge(
            "porter_active_queries",
            "Queries running now.",
            registry=self.registry,
            multiprocess_mode="livesum",  # summed over the workers alive now
        )
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
        """The exposition text and its content type: this process's numbers, or every worker's in multiprocess mode."""
        if not _multiprocess():
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client.multiprocess import MultiProcessCollector

        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)
        return generate_latest(every_worker), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """As a worker stops: its live gauges leave the sums (its counters stay, as Prometheus expects)."""
        if _multiprocess():
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid())


@contextlib.contextmanager
def multiprocess_directory(repository: Path) -> Iterator[Path]:
    """A new, empty directory for the workers' metric files in the server area of ``repository``, removed when
    the block ends.

    Named ``metrics/<host>-<pid>`` after this (the supervising) process; the directories of this host's dead
    servers (killed before they could clean up) are removed first, so old numbers never count again.
    """
    from ..datastore import SERVER_AREA

    root = Path(repository) / SERVER_AREA / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for old in root.glob(f"{host}-*"):
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    mine = root / f"{host}-{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    try:
        yield mine
    finally:
        shutil.rmtree(mine, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
