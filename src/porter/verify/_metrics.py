"""Metric definitions: lsst/verify's ``metrics/<package>.yaml``, with porter's extensions.

The file format is lsst/verify's, unchanged, so a Rubin metrics package (``verify_metrics``)
reads as it is::

    AM1:
      description: The maximum rms of the astrometric distance distribution ...
      unit: marcsec
      reference: {doc: LPM-17, url: http://ls.st/lpm-17, page: 23}
      tags: [astrometry]

porter adds optional keys that lsst/verify's readers ignore, so that one file declares the
metric, how it is read and when to alert on it (issue 16)::

      direction: lower            # which way is better
      dimensions: [tract, band]   # the data-ID dimensions it is measured over
      baseline: {kind: previous_release}            # or reference_run + run, last_n + n
      alert: {level: minimum, for: 3, severity: critical, channels: [webhook:dm-alerts]}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import did_you_mean
from ._problems import DeclarationError, Problem, VerifyError, display_path
from ._units import parse_unit
from ._validation import problems_from_validation, unknown_key_problems
from ._yaml import load_documents

if TYPE_CHECKING:
    import astropy.units as u

__all__ = [
    "LEVELS",
    "AlertPolicy",
    "Baseline",
    "Level",
    "Metric",
    "MetricReference",
    "MetricSet",
    "SourceLocation",
    "UnknownMetricError",
    "read_metrics_file",
]

Level = Literal["minimum", "design", "stretch"]
LEVELS: tuple[str, ...] = ("minimum", "design", "stretch")
"""Specification levels, from the least to the most demanding (LPM-17's words)."""

LSST_METRIC_KEYS = ("description", "unit", "reference", "tags")
PORTER_METRIC_KEYS = ("direction", "dimensions", "baseline", "alert")


class UnknownMetricError(VerifyError, KeyError):
    """A metric name that no loaded metric definition has."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SourceLocation(BaseModel):
    """Where a declaration was read from, so later errors and reports can point at it."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


class MetricReference(BaseModel):
    """The document a metric comes from (lsst/verify's ``reference``: doc, url, page)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    doc: str | None = None
    url: str | None = None
    page: int | str | None = None


class Baseline(BaseModel):
    """What a new measurement is compared with to call it a regression.

    ``previous_release``: the last published release; ``reference_run``: a named ``run``;
    ``last_n``: the mean of the last ``n`` runs of the same metric and data ID.  A measurement
    regressed when it is worse than the baseline, in the metric's ``direction``, by more than
    ``tolerance`` times the baseline's magnitude.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["previous_release", "reference_run", "last_n"]
    run: str | None = None
    n: int | None = Field(default=None, ge=1)
    tolerance: float = Field(default=0.05, ge=0)
    """How much worse than the baseline, as a fraction of it, still counts as no regression.

    Measurements scatter from run to run; 5% keeps that noise from being called a regression,
    and a metric whose noise is larger says so here (``tolerance: 0.2``)."""

    @model_validator(mode="after")
    def _needs_its_parameter(self) -> Baseline:
        if self.kind == "reference_run" and not self.run:
            raise ValueError("kind reference_run needs run: the name of the reference run")
        if self.kind == "last_n" and self.n is None:
            raise ValueError("kind last_n needs n: how many previous runs to compare with")
        return self


class AlertPolicy(BaseModel):
    """When a metric raises an alert: below ``level`` for ``for`` consecutive runs.

    Channels are ``webhook:NAME`` (a Slack-compatible webhook configured by name) or
    ``email:ADDRESS``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    level: Level = "minimum"
    for_runs: int = Field(default=1, alias="for", ge=1)
    severity: Literal["warning", "critical"] = "warning"
    channels: tuple[str, ...] = ()

    @field_validator("channels", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, channels: tuple[str, ...]) -> tuple[str, ...]:
        for channel in channels:
            kind, _, target = channel.partition(":")
            if kind not in ("webhook", "email") or not target:
                raise ValueError(f"channel {channel!r} must be webhook:NAME or email:ADDRESS")
            if kind == "email" and "@" not in target:
                raise ValueError(f"channel {channel!r}: {target!r} is not an e-mail address")
        return channels


class Metric(BaseModel):
    """A resolved metric definition: lsst/verify's fields plus porter's extensions.

    ``name`` is the full name, ``package.metric`` (``validate_drp.AM1``), as in Job JSON files.
    ``unit`` is the astropy unit string as written (``''`` for dimensionless).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    unit: str = ""
    reference: MetricReference = MetricReference()
    tags: tuple[str, ...] = ()
    direction: Literal["lower", "higher"] | None = None
    dimensions: tuple[str, ...] = ()
    baseline: Baseline | None = None
    alert: AlertPolicy | None = None
    source: SourceLocation | None = Field(default=None, exclude=True, repr=False)

    @field_validator("name")
    @classmethod
    def _full_name(cls, name: str) -> str:
        package, _, metric = name.rpartition(".")
        if not package or not metric:
            raise ValueError(f"metric name {name!r} must be package.metric (validate_drp.AM1)")
        return name

    @field_validator("description", mode="before")
    @classmethod
    def _folded(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("unit")
    @classmethod
    def _astropy_unit(cls, unit: str) -> str:
        parse_unit(unit)  # ValueError names the unit and astropy's reason
        return unit

    @field_validator("tags", "dimensions", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return ()
        return [value] if isinstance(value, str) else value

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, dimensions: tuple[str, ...]) -> tuple[str, ...]:
        known = _dimension_names()
        for name in dimensions:
            if name not in known:
                raise ValueError(
                    f"{name!r} is not a dimension of porter's universe.{did_you_mean(name, known)}"
                )
        return dimensions

    @property
    def package(self) -> str:
        """The package part of the name (``validate_drp``)."""
        return self.name.rpartition(".")[0]

    @property
    def short_name(self) -> str:
        """The metric part of the name (``AM1``), the key in the metrics file."""
        return self.name.rpartition(".")[2]

    @property
    def astropy_unit(self) -> u.UnitBase:
        """The unit as an astropy unit."""
        return parse_unit(self.unit)

    def check_unit(self, quantity: u.Quantity) -> bool:
        """Whether ``quantity`` can be converted to this metric's unit."""
        return bool(quantity.unit.is_equivalent(self.astropy_unit))

    def to_yaml_dict(self) -> dict[str, Any]:
        """The definition as written under the metric's key in ``metrics/<package>.yaml``.

        Only the keys with a value are written, so an lsst/verify metric comes back as it was.
        """
        doc: dict[str, Any] = {"description": self.description, "unit": self.unit}
        reference = self.reference.model_dump(exclude_none=True)
        if reference:
            doc["reference"] = reference
        if self.tags:
            doc["tags"] = list(self.tags)
        if self.direction:
            doc["direction"] = self.direction
        if self.dimensions:
            doc["dimensions"] = list(self.dimensions)
        if self.baseline:
            doc["baseline"] = self.baseline.model_dump(exclude_none=True)
        if self.alert:
            alert = self.alert.model_dump(by_alias=True)
            alert["channels"] = list(alert["channels"])
            doc["alert"] = alert
        return doc

    def to_job_json(self) -> dict[str, Any]:
        """The metric as lsst/verify writes it in a Job's ``metrics`` list."""
        return {
            "name": self.name,
            "description": self.description,
            "unit": self.unit,
            "tags": list(self.tags),
            "reference": self.reference.model_dump(exclude_none=True),
        }


def _dimension_names() -> tuple[str, ...]:
    from ..dimensions import DimensionUniverse

    return tuple(DimensionUniverse.default().getStaticDimensions().names)


def read_metrics_file(file: str | Path, package: str | None = None) -> tuple[list[Metric], list[Problem]]:
    """The metrics defined in one ``metrics/<package>.yaml`` file, and every problem found.

    The package is the file's name without extension, as in lsst/verify, unless given.
    Problems do not stop the reading: the other metrics of the file are still returned.
    """
    path = Path(file)
    shown = display_path(path)
    package = package or path.stem
    try:
        docs = load_documents(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(shown, None, package, None, f"cannot be read ({exc})", "")]
    except Exception as exc:  # yaml.YAMLError, with its own line and column
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return [], [Problem(shown, line, package, None, f"is not valid YAML ({exc})", "fix the YAML syntax")]
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        return [], [
            Problem(
                shown,
                docs[0].line if docs else None,
                package,
                None,
                "a metrics file is one YAML mapping of metric name to definition",
                "write `AM1: {description: ..., unit: ..., tags: [...]}` entries in a single document",
            )
        ]
    doc = docs[0]
    metrics: list[Metric] = []
    problems: list[Problem] = []
    for key, body in doc.data.items():
        name = f"{package}.{key}"
        if not isinstance(body, dict):
            problems.append(
                Problem(shown, doc.line_of(str(key)), name, None, "a metric definition must be a mapping", "")
            )
            continue
        problems += unknown_key_problems(
            doc, body, (*LSST_METRIC_KEYS, *PORTER_METRIC_KEYS), document=name, at=(str(key),)
        )
        fields = {k: v for k, v in body.items() if k in (*LSST_METRIC_KEYS, *PORTER_METRIC_KEYS)}
        try:
            metrics.append(
                Metric(name=name, source=SourceLocation(file=shown, line=doc.line_of(str(key))), **fields)
            )
        except ValidationError as exc:
            problems += problems_from_validation(
                exc,
                file=shown,
                document=name,
                line_of=lambda p: doc.line_of(*p),
                at=(str(key),),
                aliases={"for_runs": "for"},
            )
    return metrics, problems


class MetricSet:
    """Metric definitions by full name (``package.metric``), as lsst/verify's MetricSet."""

    def __init__(self, metrics: Iterable[Metric] = ()) -> None:
        self._metrics: dict[str, Metric] = {}
        for metric in metrics:
            self._metrics[metric.name] = metric

    @classmethod
    def load(cls, path: str | Path) -> MetricSet:
        """Every metric of a metrics package, its ``metrics/`` directory, or one metrics file.

        Raises `DeclarationError` listing every problem (file, line, metric, field).
        """
        metrics, problems = cls.read(path)
        if problems:
            raise DeclarationError(problems)
        return cls(metrics)

    @staticmethod
    def read(path: str | Path) -> tuple[list[Metric], list[Problem]]:
        """Like `load`, but returns the metrics that are valid and the problems, without raising."""
        p = Path(path)
        if p.is_dir() and (p / "metrics").is_dir():
            p = p / "metrics"
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        metrics: list[Metric] = []
        problems: list[Problem] = []
        for file in files:
            found, wrong = read_metrics_file(file)
            metrics += found
            problems += wrong
        return metrics, problems

    def __getitem__(self, name: str) -> Metric:
        try:
            return self._metrics[name]
        except KeyError:
            raise UnknownMetricError(
                f"no metric {name!r} is defined.{did_you_mean(name, self._metrics, 'metrics')}"
            ) from None

    def get(self, name: str) -> Metric | None:
        """The metric named ``name``, or None."""
        return self._metrics.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._metrics

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._metrics.values())

    def __len__(self) -> int:
        return len(self._metrics)

    @property
    def names(self) -> list[str]:
        """The full names of the metrics, sorted."""
        return sorted(self._metrics)

    def subset(self, package: str | None = None, tags: Iterable[str] = ()) -> MetricSet:
        """The metrics of one package and/or carrying every tag in ``tags`` (``kpm``)."""
        wanted = set(tags)
        return MetricSet(
            m for m in self if (package is None or m.package == package) and wanted.issubset(m.tags)
        )

    def to_yaml_files(self) -> dict[str, dict[str, Any]]:
        """Per package, the mapping a ``metrics/<package>.yaml`` file holds."""
        files: dict[str, dict[str, Any]] = {}
        for metric in self:
            files.setdefault(metric.package, {})[metric.short_name] = metric.to_yaml_dict()
        return files

    def __repr__(self) -> str:
        return f"MetricSet({len(self)} metrics)"


def metrics_by_name(metrics: Mapping[str, Metric] | MetricSet) -> dict[str, Metric]:
    """A plain name → metric dict of either container."""
    if isinstance(metrics, MetricSet):
        return {m.name: m for m in metrics}
    return dict(metrics)
