"""What runs when measurements arrive: the store with its hooks, opened from a metrics package.

A metrics package (lsst/verify's layout: ``metrics/``, ``specs/``, plus porter's ``alerts.yaml``)
declares what is measured, what it must meet and whom to tell.  `open_store` loads it, checks it
whole, and returns the repository's metric store with the alert rules attached, so every
``record`` evaluates specs and baselines, then alerts, in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._alert_rules import Transition
from ._alerts import AlertBook
from ._metrics import Metric, MetricSet
from ._outbox import Outbox, SinkConfig, load_sinks
from ._outcome import Outcome
from ._specs import SpecificationSet
from ._store import MetricStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ..registry import Database

__all__ = ["AlertHook", "ForwardHook", "load_package", "open_store"]


@dataclass
class AlertHook:
    """Hands the measurements of metrics with an ``alert:`` policy to the alert book, in the store's transaction."""

    book: AlertBook
    metrics: MetricSet
    transitions: list[Transition] = field(default_factory=list)

    def wants(self, metric: Metric) -> bool:
        return metric.alert is not None

    def arrived(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        self.transitions += self.book.observe(outcomes, self.metrics, conn=conn)


@dataclass
class ForwardHook:
    """Queues every measurement for the configured InfluxDB sinks, in the store's transaction.

    The outbox row exists exactly when its measurement does; ``porter verify forward`` sends
    the queue in order (and resumes it after any failure).
    """

    outbox: Outbox
    sinks: list[SinkConfig]
    queued: int = 0

    def wants(self, metric: Metric) -> bool:
        return True

    def arrived(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        self.queued += self.outbox.enqueue_outcomes(conn, [s.name for s in self.sinks], outcomes)


_loaded: dict[Path, tuple[tuple[tuple[str, int, int], ...], tuple[MetricSet, SpecificationSet]]] = {}
_loaded_lock = threading.Lock()


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file of a metrics package with its modification time and size: what a change of it changes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(f), (st := f.stat()).st_mtime_ns, st.st_size) for f in files)


def load_package(path: str | Path) -> tuple[MetricSet, SpecificationSet]:
    """A metrics package's metrics and specs, every problem raised at once (`DeclarationError`).

    Parsed once per change of its files: a release gate or a dashboard page asks for the same package on
    every request, and parsing its YAML is most of their time.  The sets are not changed by their users.
    """
    where = Path(path).resolve()
    stamp = _fingerprint(where) if where.exists() else ()
    with _loaded_lock:
        cached = _loaded.get(where)
    if cached is not None and cached[0] == stamp and stamp:
        return cached[1]
    metrics = MetricSet.load(path)
    loaded = (metrics, SpecificationSet.load(path, metrics))
    with _loaded_lock:
        if len(_loaded) > 16:
            _loaded.clear()
        _loaded[where] = (stamp, loaded)
    return loaded


def open_store(
    db: Database, package: str | Path | None = None, repo_root: str | Path | None = None
) -> tuple[MetricStore, AlertHook | None]:
    """The repository's metric store, checking against ``package`` and alerting, or read-only without it.

    With sinks configured (``$PORTER_VERIFY_SINKS``, or ``verify-sinks.yaml`` in ``repo_root``),
    every stored measurement is also queued for forwarding to InfluxDB.
    """
    if package is None:
        return MetricStore(db), None
    metrics, specs = load_package(package)
    hook = AlertHook(AlertBook(db), metrics)
    hooks: list[AlertHook | ForwardHook] = [hook]
    sinks = load_sinks(repo_root)
    if sinks:
        hooks.append(ForwardHook(Outbox(db), sinks))
    return MetricStore(db, metrics, specs, hooks=hooks), hook
