"""Measurements coming in: lsst/verify Job JSON files, as existing CI jobs write them.

A Job carries no data ID of its own; its ``meta`` says what it measured (``instrument``,
``filter_name``, ``tract`` …) and which software did (``packages``, ``env``).  A metric declared
over dimensions takes its data ID from those metadata keys (``band`` also from lsst/verify's
``filter_name``); the whole ``meta`` is what a spec's ``metadata_query`` is matched against, as in
lsst/verify.  The job's run is named by the caller, or by its CI build (``env.ci_name`` and
``env.ci_id``), or by its file name, so importing the same job again replaces its measurements.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ._job import Job, read_job
from ._metrics import MetricSet
from ._outcome import DataIdValue, Provenance
from ._store import MetricStore, NewMeasurement, RecordResult

__all__ = [
    "QuantumOutcome",
    "import_job",
    "job_measurements",
    "job_provenance",
    "job_run_name",
    "pipeline_run_measurements",
]

_ALIASES: dict[str, tuple[str, ...]] = {
    "band": ("band", "filter_name"),
    "physical_filter": ("physical_filter", "filter"),
}
"""Where in a Job's ``meta`` each dimension's value may be written (lsst/verify jobs say ``filter_name``)."""


def job_run_name(job: Job, path: str | Path) -> str:
    """The run a job's measurements are recorded under when the caller names none.

    The CI build that produced it (``env.ci_name``/``env.ci_id``, lsst/verify's own fields),
    else ``job/<file name without .json>``: stable, so re-importing replaces rather than adds.
    """
    env = job.meta.get("env") or {}
    if isinstance(env, Mapping) and env.get("ci_name") and env.get("ci_id"):
        return f"{env['ci_name']}/{env['ci_id']}"
    name = Path(path).name
    for suffix in (".json", ".verify"):
        name = name.removesuffix(suffix)
    return f"job/{name}"


def job_provenance(job: Job, run: str, time: float) -> Provenance:
    """The run's provenance from a job's ``meta``: package versions (git SHA, else EUPS version)."""
    versions: dict[str, str] = {}
    packages = job.meta.get("packages") or {}
    if isinstance(packages, Mapping):
        for name, info in packages.items():
            if isinstance(info, Mapping):
                version = info.get("git_commit") or info.get("eups_version") or info.get("version")
                if version:
                    versions[str(name)] = str(version)
            elif info:
                versions[str(name)] = str(info)
    env = job.meta.get("env") or {}
    pipeline = str(env.get("ci_name", "")) if isinstance(env, Mapping) else ""
    inputs = (str(job.meta["dataset_repo_url"]),) if job.meta.get("dataset_repo_url") else ()
    return Provenance(run=run, time=time, pipeline=pipeline, versions=versions, inputs=inputs)


def job_measurements(job: Job, metrics: MetricSet) -> list[NewMeasurement]:
    """The job's measurements, each with the data ID its metric is declared over, read from ``meta``.

    A metric with no declared dimensions is measured over the whole job (data ID ``{}``).  A
    dimension the metadata lacks is left out, and the store then refuses the measurement, naming
    the dimension.
    """
    out = []
    for m in job.measurements:
        assert m.value is not None and m.unit is not None, "job_measurements() of an unvalidated Job"
        metric = metrics.get(m.metric)
        data_id: dict[str, DataIdValue] = {}
        for dimension in metric.dimensions if metric else ():
            for key in _ALIASES.get(dimension, (dimension,)):
                value = job.meta.get(key)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    data_id[dimension] = value
                    break
        out.append(NewMeasurement(m.metric, float(m.value), m.unit, data_id))
    return out


def import_job(store: MetricStore, path: str | Path, run: str | None = None) -> RecordResult:
    """Read, validate and store one lsst/verify Job JSON file as one run's measurements.

    The file is checked whole against the store's metric definitions before anything is stored
    (`JobFormatError` naming file, document and field); the run's time is the file's modification
    time, so a history imported from archived jobs keeps its order.
    """
    job = read_job(path, store.metrics)
    name = run or job_run_name(job, path)
    provenance = job_provenance(job, name, os.path.getmtime(path))
    metadata: dict[str, Any] = {k: v for k, v in job.meta.items() if not isinstance(v, Mapping | list)}
    return store.record(job_measurements(job, store.metrics), provenance, metadata)


class QuantumOutcome(Protocol):
    """What a pipeline's run state records of one quantum (porter.pipeline.QuantumRecord has it)."""

    task: str
    data_id: dict[str, Any]
    config_hash: str
    versions: dict[str, str]
    measurements: list[dict[str, Any]]
    ended: float | None


def pipeline_run_measurements(
    run: str, quanta: Sequence[QuantumOutcome]
) -> tuple[list[NewMeasurement], Provenance]:
    """A pipeline run's measurements (``self.measure`` of its quanta) and the run's provenance.

    A task's metric ``name`` becomes ``TASK.name`` (``calibrate.astrometric_scatter``: the task
    label is the package) unless it already names a package; the data ID is the quantum's.  The
    provenance's ``config_hash`` hashes every task's configuration hash, so a changed configuration
    of any task shows as a change between runs; its time is when the last quantum ended.
    """
    measurements = []
    versions: dict[str, str] = {}
    configs: dict[str, str] = {}
    for q in quanta:
        versions.update(q.versions)
        configs[q.task] = q.config_hash
        for m in q.measurements:
            name = m["metric"] if "." in m["metric"] else f"{q.task}.{m['metric']}"
            measurements.append(NewMeasurement(name, float(m["value"]), m.get("unit", ""), q.data_id))
    config_hash = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()[:16]
    ended = max((q.ended or 0.0) for q in quanta) if quanta else 0.0
    provenance = Provenance(
        run=run, time=ended, task=",".join(sorted(configs)), config_hash=config_hash, versions=versions
    )
    return measurements, provenance
