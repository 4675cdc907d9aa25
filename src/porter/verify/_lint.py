"""`porter verify lint`: every problem of a metrics package, or of single files, in one pass.

A metrics package is a directory with ``metrics/`` and ``specs/`` (lsst/verify's layout, as in
``verify_metrics``).  Beyond what loading checks, lint cross-checks the parts: a spec's metric
must be defined, its threshold unit convertible to the metric's, and an alert's level must
have a spec at that level (or the alert could never fire).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._channels import AlertConfig, channel_problems
from ._job import read_job
from ._metrics import Metric, MetricSet
from ._problems import DeclarationError, JobFormatError, Problem, display_path
from ._specs import Specification, SpecificationSet
from ._yaml import load_documents

__all__ = ["LintReport", "lint"]


@dataclass
class LintReport:
    """What lint found: the problems, and how many metrics, specs and jobs were read."""

    problems: list[Problem] = field(default_factory=list)
    metrics: int = 0
    specifications: int = 0
    jobs: int = 0

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems

    def summary(self) -> str:
        """``ok: N metrics, M specifications`` (and jobs, when any were read)."""
        text = f"{self.metrics} metrics, {self.specifications} specifications"
        if self.jobs:
            text += f", {self.jobs} jobs"
        return f"ok: {text}" if self.ok else f"{len(self.problems)} problems in {text}"


def alert_problems(metrics: Iterable[Metric], specs: SpecificationSet) -> list[Problem]:
    """Problems of alert rules that can never fire: no spec of the metric at the alert's level."""
    problems = []
    for metric in metrics:
        if metric.alert is None:
            continue
        levels = {s.level for s in specs.for_metric(metric.name)}
        if metric.alert.level not in levels:
            have = ", ".join(sorted(str(level) for level in levels if level)) or "none"
            problems.append(
                Problem(
                    metric.source.file if metric.source else "?",
                    metric.source.line if metric.source else None,
                    metric.name,
                    "alert.level",
                    f"alerts at level {metric.alert.level!r} but the metric has no spec at that level "
                    f"(levels with specs: {have})",
                    f"add a {metric.alert.level} spec for {metric.short_name}, or alert at a level it has",
                )
            )
    return problems


def _is_spec_file(path: Path) -> bool:
    parents = [p.name for p in path.resolve().parents]
    if path.parent.name == "metrics":
        return False
    if "specs" in parents:
        return True
    try:
        docs = load_documents(path)
    except Exception:
        return False  # reported when read as a metrics file
    return len(docs) > 1 or any(
        isinstance(d.data, dict) and ("name" in d.data or "id" in d.data) for d in docs
    )


def lint(paths: Iterable[str | Path]) -> LintReport:
    """Check metrics packages, metrics files, spec files and Job JSON files; never raises on bad input."""
    report = LintReport()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            report.problems.append(
                Problem(
                    display_path(path),
                    None,
                    str(raw),
                    None,
                    "does not exist",
                    "give a metrics package or file",
                )
            )
            continue
        metrics: list[Metric] = []
        specs: list[Specification] = []
        if path.is_dir():
            is_package = (path / "metrics").is_dir() or (path / "specs").is_dir()
            has_metrics = (path / "metrics").is_dir() if is_package else path.name == "metrics"
            has_specs = (path / "specs").is_dir() if is_package else path.name != "metrics"
            if has_metrics:
                metrics, problems = MetricSet.read(path)
                report.problems += problems
            if has_specs:
                spec_set, problems = SpecificationSet.read(path, MetricSet(metrics) if has_metrics else None)
                report.problems += problems
                specs = list(spec_set)
                if has_metrics:
                    report.problems += alert_problems(metrics, spec_set)
            if is_package and has_metrics:
                report.problems += _channel_problems(path, metrics)
            for job_file in sorted(path.glob("*.json")) if not is_package else []:
                report.jobs += 1
                report.problems += _job_problems(job_file)
        elif path.suffix == ".json":
            report.jobs += 1
            report.problems += _job_problems(path)
        elif _is_spec_file(path):
            spec_set, problems = SpecificationSet.read(path)
            report.problems += problems
            specs = list(spec_set)
        else:
            metrics, problems = MetricSet.read(path)
            report.problems += problems
        report.metrics += len(metrics)
        report.specifications += len(specs)
    return report


def _job_problems(path: Path) -> list[Problem]:
    try:
        read_job(path)
    except JobFormatError as exc:
        return exc.problems
    return []


class _AnyEnvironment(Mapping[str, str]):
    """Every ``${NAME}`` of alerts.yaml is "set": lint checks the file, not this machine's secrets."""

    def __getitem__(self, name: str) -> str:
        return f"${{{name}}}"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _channel_problems(package: Path, metrics: list[Metric]) -> list[Problem]:
    """Problems of the package's alerts.yaml, and alert channels it cannot deliver to."""
    try:
        config = AlertConfig.load(package, environ=_AnyEnvironment())
    except DeclarationError as exc:
        return exc.problems
    return channel_problems(MetricSet(metrics), config)
