"""lsst/verify Job JSON files: read with every problem named, written back equivalently.

A Job file (``*.verify.json``) is what lsst/verify's ``Job.write`` produces and what Rubin CI
dispatches to SQuaSH::

    {"measurements": [{"metric": "validate_drp.AM1", "identifier": "…", "value": 12.1,
                       "unit": "marcsec", "blob_refs": ["…"]}],
     "blobs": [{"identifier": "…", "name": "…", "data": {"key": {"value": …, "unit": …,
                                                               "label": …, "description": …}}}],
     "metrics": [...], "specs": [...],
     "meta": {"packages": {...}, "env": {...}, ...}}

porter imports these unchanged (issue 16), so existing CI outputs come in as they are.  A file
that cannot be imported as a whole is refused as a whole: `JobFormatError` lists every problem
(missing field, NaN, unknown metric, incompatible unit, dangling blob reference) with the file,
the document path (``measurements[3]``) and the field, and nothing of it is used.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import did_you_mean
from ._metrics import MetricSet
from ._problems import JobFormatError, Problem, display_path
from ._units import parse_unit, unit_string
from ._validation import dotted

if TYPE_CHECKING:
    import astropy.units as u

__all__ = [
    "Blob",
    "Datum",
    "Job",
    "JobMeasurement",
    "MeasurementRecord",
    "job_from_dict",
    "read_job",
    "validate_job",
    "write_job",
]


class Datum(BaseModel):
    """One named value of a blob (lsst/verify's Datum: value, unit, label, description)."""

    model_config = ConfigDict(extra="allow")

    value: Any = None
    unit: str | None = None
    label: str | None = None
    description: str | None = None


class Blob(BaseModel):
    """Extra data a measurement links to (lsst/verify's Blob), shared by identifier."""

    model_config = ConfigDict(extra="allow")

    identifier: str
    name: str
    data: dict[str, Datum] = Field(default_factory=dict)


class JobMeasurement(BaseModel):
    """One measurement as a Job file holds it: metric, value, unit, identifier, blob references."""

    model_config = ConfigDict(extra="allow")

    metric: str
    value: float | None
    unit: str | None
    identifier: str | None = None
    blob_refs: list[str] = Field(default_factory=list)

    @classmethod
    def from_quantity(
        cls,
        metric: str,
        quantity: u.Quantity,
        blob_refs: list[str] | None = None,
        identifier: str | None = None,
    ) -> JobMeasurement:
        """A measurement of ``metric`` (full name) from an astropy Quantity, with a new identifier."""
        return cls(
            metric=metric,
            value=float(quantity.value),
            unit=unit_string(quantity.unit),
            identifier=identifier or uuid.uuid4().hex,
            blob_refs=list(blob_refs or []),
        )


class Job(BaseModel):
    """An lsst/verify Job: measurements, their blobs, metric and spec definitions, metadata."""

    model_config = ConfigDict(extra="allow")

    measurements: list[JobMeasurement]
    blobs: list[Blob] = Field(default_factory=list)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    specs: list[dict[str, Any]] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """The Job as lsst/verify writes it (every field present, so lsst/verify can read it)."""
        return self.model_dump(mode="json")

    def records(self, source: str | None = None) -> list[MeasurementRecord]:
        """The measurements with their quantities, linked blobs and the job's metadata.

        Assumes a validated Job (as `read_job` returns); call `validate_job` on one built by hand.
        """
        blobs = {b.identifier: b for b in self.blobs}
        out = []
        for i, m in enumerate(self.measurements):
            assert m.value is not None and m.unit is not None, "records() of an unvalidated Job"
            out.append(
                MeasurementRecord(
                    metric=m.metric,
                    value=float(m.value),
                    unit=m.unit,
                    identifier=m.identifier,
                    blobs={blobs[r].name: blobs[r] for r in m.blob_refs if r in blobs},
                    meta=self.meta,
                    source=f"{source}#measurements[{i}]" if source else f"measurements[{i}]",
                )
            )
        return out


@dataclass(frozen=True)
class MeasurementRecord:
    """One measurement ready to be stored or evaluated.

    ``blobs`` are the linked blobs by name; ``meta`` is the whole job's metadata, whose
    ``packages`` and ``env`` say which software produced it and where.
    """

    metric: str
    value: float
    unit: str
    identifier: str | None
    blobs: dict[str, Blob] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def quantity(self) -> u.Quantity:
        """The value as an astropy Quantity."""
        return self.value * parse_unit(self.unit)

    @property
    def packages(self) -> Any:
        """The software versions the job's metadata records (``meta['packages']``), or ``{}``."""
        return self.meta.get("packages", {})

    @property
    def env(self) -> Any:
        """The environment the job's metadata records (``meta['env']``: CI, host …), or ``{}``."""
        return self.meta.get("env", {})


def _document(loc: tuple[Any, ...]) -> tuple[str, str | None]:
    """A pydantic location split into a document path (``measurements[3]``) and a field (``unit``)."""
    if len(loc) >= 2 and isinstance(loc[1], int):
        return dotted(loc[:2]), dotted(loc[2:]) or None
    if len(loc) == 1:
        return "job", str(loc[0])
    return dotted(loc[:1]), dotted(loc[1:]) or None


def validate_job(job: Job, file: str, metrics: MetricSet | None = None) -> list[Problem]:
    """Problems that stop ``job`` being imported: NaN or missing values, bad or incompatible
    units, unknown metrics (with ``metrics``, or the job's own ``metrics`` list), dangling blob
    references."""
    problems: list[Problem] = []
    own_units = {
        m.get("name"): m.get("unit")
        for m in job.metrics
        if isinstance(m, dict) and isinstance(m.get("unit"), str)
    }
    blob_ids = {b.identifier for b in job.blobs}
    for i, m in enumerate(job.measurements):
        doc = f"measurements[{i}]"
        what = f"{doc} ({m.metric})"
        if m.value is None:
            problems.append(
                Problem(file, None, what, "value", "has no value (null)", "measure it, or leave it out")
            )
        elif math.isnan(m.value) or math.isinf(m.value):
            problems.append(
                Problem(
                    file,
                    None,
                    what,
                    "value",
                    f"is {m.value}, not a finite number",
                    "leave the measurement out",
                )
            )
        unit = None
        if m.unit is None:
            problems.append(
                Problem(file, None, what, "unit", "is null", "write '' for a dimensionless value")
            )
        else:
            try:
                unit = parse_unit(m.unit)
            except ValueError as exc:
                problems.append(Problem(file, None, what, "unit", str(exc), "use an astropy unit string"))
        metric_unit: str | None = None
        if metrics is not None:
            metric = metrics.get(m.metric)
            if metric is None:
                problems.append(
                    Problem(
                        file,
                        None,
                        what,
                        "metric",
                        f"unknown metric {m.metric!r}.{did_you_mean(m.metric, metrics.names, 'metrics')}",
                        "define the metric in the metrics package, or correct the name",
                    )
                )
                continue
            metric_unit = metric.unit
        else:
            metric_unit = own_units.get(m.metric)
        if unit is not None and metric_unit is not None:
            expected = parse_unit(metric_unit)
            if not unit.is_equivalent(expected):
                problems.append(
                    Problem(
                        file,
                        None,
                        what,
                        "unit",
                        f"{m.unit!r} is incompatible with metric {m.metric}'s unit {metric_unit!r}"
                        + (
                            f" ({unit.physical_type} vs {expected.physical_type})"
                            if "unknown" not in (str(unit.physical_type), str(expected.physical_type))
                            else ""
                        ),
                        f"measure in a unit convertible to {metric_unit!r}",
                    )
                )
        for j, ref in enumerate(m.blob_refs):
            if ref not in blob_ids:
                problems.append(
                    Problem(
                        file,
                        None,
                        what,
                        f"blob_refs[{j}]",
                        f"refers to blob {ref!r}, which is not in the job's blobs",
                        "add the blob or remove the reference",
                    )
                )
    meta = job.meta
    for key in ("packages", "env"):
        if key in meta and not isinstance(meta[key], dict | list):
            problems.append(
                Problem(file, None, "meta", key, f"must be a mapping, not {type(meta[key]).__name__}", "")
            )
    return problems


def job_from_dict(data: Any, file: str = "<job>", metrics: MetricSet | None = None) -> Job:
    """A validated Job from a parsed Job JSON document; `JobFormatError` lists every problem."""
    if not isinstance(data, dict):
        raise JobFormatError(
            [Problem(file, None, "job", None, f"a Job file is a JSON object, not {type(data).__name__}")]
        )
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            document, field_name = _document(tuple(err["loc"]))
            if err["type"] == "missing":
                message, fix = "is missing", f"add {field_name!r} (lsst/verify writes it)"
            else:
                message, fix = f"{err['msg'][0].lower()}{err['msg'][1:]} (got {err['input']!r})", ""
            problems.append(Problem(file, None, document, field_name, message, fix))
        raise JobFormatError(problems) from None
    problems = validate_job(job, file, metrics)
    if problems:
        raise JobFormatError(problems)
    return job


def read_job(path: str | Path, metrics: MetricSet | None = None) -> Job:
    """Read and validate an lsst/verify Job JSON file.

    With ``metrics``, every measurement's metric must be defined there and its unit convertible
    to the metric's.  Raises `JobFormatError` naming the file, the document path and the field of
    every problem; a file with any problem yields nothing.
    """
    p = Path(path)
    shown = display_path(p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFormatError([Problem(shown, None, "job", None, f"cannot be read ({exc})")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobFormatError(
            [Problem(shown, exc.lineno, "job", None, f"is not valid JSON ({exc.msg}, column {exc.colno})")]
        ) from None
    return job_from_dict(data, shown, metrics)


def write_job(job: Job, path: str | Path) -> Path:
    """Write ``job`` as lsst/verify Job JSON, atomically (a crash leaves the old file or the new one)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(job.to_json_dict(), indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
