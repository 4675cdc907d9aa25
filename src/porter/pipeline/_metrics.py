"""The metrics package a pipeline checks its runs against: its ``metrics:`` section, and recording on arrival.

A pipeline YAML may name the lsst/verify-style metrics package (``metrics/``, ``specs/``,
``alerts.yaml``) its tasks' measurements are declared in::

    metrics: ../verify_metrics                          # relative to this pipeline file
    metrics: resource://porter.demo/verify_metrics      # a directory inside an installed package
    metrics: {package: ../verify_metrics}               # the same, as a mapping

Then every execution of the pipeline (``pipeline run``, each step of ``submit``, ``restart``)
stores what its run's succeeded quanta measured (``self.measure``) in the repository's metric
store, as ``porter verify ingest-run REPO RUN --metrics PACKAGE`` does: each measurement checked on
arrival against the specs and its baseline, alert rules evaluated, the alerts that fire delivered
to the package's channels (a failed delivery, or a channel whose ``${SECRET}`` this process's
environment lacks, stays queued for ``porter verify notify``), the
measurements queued for InfluxDB when sinks are configured.  The store keys measurements by
(metric, data ID, run), so recording a run again (a restart, the next step) replaces and never
duplicates.  The section is checked when the pipeline is read (the package loads: metrics, specs,
alert rules) so a typo is refused before any quantum runs.

Recording runs before the pipeline's ``reports:`` are published, so a report shows its own run's
metrics.  A measurement the store refuses (a NaN, a unit that does not fit its metric) does not undo
the run: the error is returned to the caller, which names it and exits non-zero; nothing of that
batch is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PipelineDefinitionError, PorterError, did_you_mean
from ._reports import RESOURCE, locate

if TYPE_CHECKING:
    from ..butler import DirectButler
    from ..verify import AlertBook

__all__ = ["MetricsDef", "MetricsOutcome", "read_metrics", "record_run_metrics"]

_KEYS = {"package"}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricsDef:
    """The metrics package a pipeline's measurements are declared in."""

    package: str
    """As written in the pipeline (a ``resource://package/path`` URI is kept as such)."""
    path: Path
    """The package's directory (or a single metrics YAML file)."""

    def to_dict(self) -> dict[str, Any]:
        """The section as `read_metrics` reads it back, located without the pipeline file's directory."""
        return {"package": self.package if self.package.startswith(RESOURCE) else str(self.path)}


@dataclass
class MetricsOutcome:
    """What recording a run's measurements did: how many stored and how they fared, or why it failed."""

    run: str
    package: str
    stored: int = 0
    replaced: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    """Measurements failing a spec, per level (``minimum``, ``design``, ``stretch``)."""
    regressed: int = 0
    undeclared: list[str] = field(default_factory=list)
    """Metrics the tasks measured that the package does not declare (not stored)."""
    alerts: list[str] = field(default_factory=list)
    """One line per alert that fired or resolved."""
    delivered: int = 0
    undelivered: list[str] = field(default_factory=list)
    """Notifications that could not be sent (kept queued for ``porter verify notify``), with why."""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "package": self.package,
            "stored": self.stored,
            "replaced": self.replaced,
            "failed": dict(self.failed),
            "regressed": self.regressed,
            "undeclared": list(self.undeclared),
            "alerts": list(self.alerts),
            "delivered": self.delivered,
            "undelivered": list(self.undelivered),
            **({"error": self.error} if self.error else {}),
        }


def read_metrics(raw: Any, base: Path, source: str, *, check: bool = True) -> MetricsDef | None:
    """A pipeline file's ``metrics:`` section; with ``check``, the package must load without problems.

    Without ``check`` (a pipeline read back from a stored graph) only the section's shape is
    checked; a package gone since is reported when the run's measurements are recorded.
    """
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        for key in sorted(set(map(str, raw)) - _KEYS):
            raise PipelineDefinitionError(
                f"{source}: metrics has unknown key {key!r}." + did_you_mean(key, _KEYS, "keys")
            )
        raw = raw.get("package")
    if not isinstance(raw, str) or not raw.strip():
        raise PipelineDefinitionError(
            f"{source}: 'metrics' names the metrics package the tasks' measurements are declared in: a "
            "directory relative to the pipeline file (metrics: ../verify_metrics), "
            f"resource://package/path, or {{package: …}}; not {raw!r}."
        )
    written = raw.strip()
    path = locate(written, base, f"{source}: metrics")
    if check:
        _check_package(path, written, base, source)
    return MetricsDef(written, path)


def _check_package(path: Path, written: str, base: Path, source: str) -> None:
    from ..verify import DeclarationError, load_package

    if not path.exists():
        raise PipelineDefinitionError(
            f"{source}: metrics: {written!r} does not exist (looked for {path}); give a path relative to "
            f"the pipeline file's directory ({base}) or resource://package/path."
        )
    try:
        load_package(path)
    except DeclarationError as exc:
        raise PipelineDefinitionError(
            f"{source}: metrics: the package {written!r} has problems (`porter verify lint {path}` "
            f"lists them):\n{exc}"
        ) from None


def record_run_metrics(
    butler: DirectButler, run: str, metrics: MetricsDef, inputs: Sequence[str] = ()
) -> MetricsOutcome:
    """Store what ``run``'s succeeded quanta measured, checked on arrival; deliver the alerts that fire.

    All of the run's succeeded quanta are recorded, not only this execution's: the run's
    provenance (software versions, every task's configuration) is of the whole run, and the
    store replaces what an earlier execution recorded.  ``inputs`` are the run's input
    collections, part of the provenance a change-point names.
    """
    from ..verify import open_store, pipeline_run_measurements
    from ._state import SUCCEEDED, RunState

    outcome = MetricsOutcome(run, metrics.package)
    records = [r for r in RunState(butler.registry.db).records(run) if r.status == SUCCEEDED]
    if not records or not any(r.measurements for r in records):
        return outcome
    try:
        store, hook = open_store(butler.registry.db, metrics.path, butler.root)
        measured, provenance = pipeline_run_measurements(run, records)
        provenance = replace(provenance, inputs=tuple(inputs))
        declared = [m for m in measured if m.metric in store.metrics]
        outcome.undeclared = sorted({m.metric for m in measured} - {m.metric for m in declared})
        fired_before = len(hook.transitions) if hook else 0
        result = store.record(declared, provenance)
    except PorterError as exc:  # a refused measurement must not undo the run: name it, store nothing
        outcome.error = str(exc)
        _log.error("measurements of run %s were not recorded: %s", run, exc)
        return outcome
    outcome.stored, outcome.replaced = result.stored, result.replaced
    outcome.failed, outcome.regressed = dict(result.failed), result.regressed
    if hook is not None:
        outcome.alerts = [t.summary for t in hook.transitions[fired_before:]]
        if outcome.alerts and metrics.path.is_dir():
            _deliver(outcome, hook.book, metrics.path)
    return outcome


def _deliver(outcome: MetricsOutcome, book: AlertBook, package: Path) -> None:
    """Send the queued notifications now; what cannot be sent stays queued for ``porter verify notify``.

    The channels (``alerts.yaml``) are read here, not when the pipeline is read: a webhook's
    ``${SECRET}`` need only be in the environment of the process that delivers.
    """
    from ..verify import AlertConfig, Notifier

    try:
        report = Notifier(book, AlertConfig.load(package)).deliver()
    except PorterError as exc:
        outcome.undelivered = [f"{package / 'alerts.yaml'}: {exc}"]
        return
    outcome.delivered = len(report.delivered)
    outcome.undelivered = [f"{note.channel}: {error}" for note, error in report.failed]
