"""Report notebooks a pipeline publishes for every run: its ``reports:`` section, publication, and the record.

A pipeline YAML may name Jupyter notebooks to publish once a run's quanta are all done::

    reports:
      - notebook: ../reports/metrics_report.ipynb     # relative to this pipeline file
        parameters: {max_points: 20}                  # injected after the notebook's parameters cell
      - notebook: resource://porter.demo/reports/metrics_report.ipynb   # a file inside an installed package
        timeout: 900                                  # seconds each cell may take (default 600)

Each is published exactly as ``porter verify publish NOTEBOOK --run RUN --replace`` does (`porter.verify.publish`):
executed with ``repo`` and ``run`` injected, its HTML stored in the run as ``verifyReport_<name>``,
replacing the run's earlier report of that notebook.  The section is checked when the pipeline is
read (the notebook exists, has a ``parameters`` cell declaring every parameter, the values are
JSON), so a typo is refused before any quantum runs.

A failing notebook does not undo the run: its outcome (the cell and its error) is returned to the
caller and recorded in the repository's ``pipeline_report`` table with the run, read back by
`report_outcomes`; ``porter pipeline restart`` on a finished run publishes what is still missing.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import Column, Float, RowMapping, String, Table, Text

from ..errors import PipelineDefinitionError, PorterError, did_you_mean

if TYPE_CHECKING:
    from ..butler import DirectButler
    from ..registry import Database

__all__ = [
    "PUBLISHED",
    "REPORT_FAILED",
    "ReportDef",
    "ReportOutcome",
    "publish_reports",
    "read_reports",
    "report_outcomes",
    "report_outcomes_of",
]

PUBLISHED, REPORT_FAILED = "published", "failed"
RESOURCE = "resource://"
_REPORT_KEYS = {"notebook", "parameters", "timeout"}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportDef:
    """One notebook a pipeline publishes for every run: where it is, and its parameters."""

    notebook: str
    """As written in the pipeline (a ``resource://package/path`` URI is kept as such)."""
    path: Path
    """The notebook file."""
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    """Seconds each cell may take (None: `porter.verify.publish`'s default)."""

    @property
    def dataset_type(self) -> str:
        """The dataset type its reports are stored as (``verifyReport_<stem>``)."""
        from ..verify import report_dataset_type

        return report_dataset_type(self.path)

    def to_dict(self) -> dict[str, Any]:
        """The entry as `read_reports` reads it back, located without the pipeline file's directory."""
        where = self.notebook if self.notebook.startswith(RESOURCE) else str(self.path)
        out: dict[str, Any] = {"notebook": where}
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        if self.timeout is not None:
            out["timeout"] = self.timeout
        return out


@dataclass
class ReportOutcome:
    """What publishing one report for a run did: ``published`` (with the dataset's ID) or ``failed`` (why)."""

    notebook: str
    dataset_type: str
    status: str
    message: str = ""
    dataset_id: str | None = None
    run: str = ""
    recorded: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == PUBLISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "dataset_type": self.dataset_type,
            "status": self.status,
            "message": self.message,
            "dataset_id": self.dataset_id,
            "run": self.run,
        }


# --- reading the section --------------------------------------------------------------------------------


def locate(text: str, base: Path, where: str) -> Path:
    """The notebook file ``text`` names: ``resource://package/path`` or a path relative to ``base``."""
    if text.startswith(RESOURCE):
        package, _, inside = text[len(RESOURCE) :].partition("/")
        if not package or not inside:
            raise PipelineDefinitionError(
                f"{where}: {text!r} is not resource://PACKAGE/PATH (e.g. "
                "resource://porter.demo/reports/metrics_report.ipynb)."
            )
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise PipelineDefinitionError(
                f"{where}: {text!r}: cannot import package {package!r} ({exc}); install it or give a file path."
            ) from None
        roots = [Path(p) for p in getattr(module, "__path__", [])] or [Path(str(module.__file__)).parent]
        for root in roots:
            if (root / inside).exists():
                return (root / inside).resolve()
        return (roots[0] / inside).resolve()
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def read_reports(raw: Any, base: Path, source: str, *, check: bool = True) -> list[ReportDef]:
    """A pipeline file's ``reports:`` section, validated; notebook paths resolved against ``base``.

    With ``check`` (reading a pipeline a user wrote) each notebook must exist and declare every
    parameter in its ``parameters`` cell; without it (a pipeline read back from a stored graph)
    only the section's shape is checked, and a notebook gone since fails when it is published.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PipelineDefinitionError(
            f"{source}: 'reports' must be a list of entries like "
            "'- {notebook: reports/metrics.ipynb, parameters: {max_points: 20}}', "
            f"not a {type(raw).__name__}."
        )
    out: list[ReportDef] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(raw):
        where = f"{source}: reports[{i}]"
        spec = {"notebook": entry} if isinstance(entry, str) else entry
        if not isinstance(spec, Mapping):
            raise PipelineDefinitionError(
                f"{where} must be a mapping with a 'notebook' (and optional 'parameters', 'timeout'), "
                f"not {entry!r}."
            )
        for key in sorted(set(map(str, spec)) - _REPORT_KEYS):
            raise PipelineDefinitionError(
                f"{where} has unknown key {key!r}." + did_you_mean(key, _REPORT_KEYS, "keys")
            )
        notebook = spec.get("notebook")
        if not isinstance(notebook, str) or not notebook.strip():
            raise PipelineDefinitionError(
                f"{where}.notebook: give the notebook's path (relative to the pipeline file) or "
                f"resource://package/path.ipynb, not {notebook!r}."
            )
        parameters = spec.get("parameters")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, Mapping):
            raise PipelineDefinitionError(
                f"{where}.parameters must be a mapping of NAME: value (e.g. {{max_points: 20}}), "
                f"not a {type(parameters).__name__} ({parameters!r})."
            )
        timeout = spec.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise PipelineDefinitionError(
                f"{where}.timeout must be a positive number of seconds per cell, not {timeout!r}."
            )
        params = {str(k): v for k, v in parameters.items()}
        for name, value in params.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise PipelineDefinitionError(
                    f"{where}.parameters.{name} = {value!r} is not JSON (str, number, bool, null, list, "
                    "mapping): it could not be recorded to make the report again."
                ) from None
        path = locate(notebook.strip(), base, f"{where}.notebook")
        if check:
            _check_notebook(path, notebook, params, base, where)
        report = ReportDef(notebook.strip(), path, params, None if timeout is None else float(timeout))
        if report.dataset_type in seen:
            raise PipelineDefinitionError(
                f"{where}: {notebook!r} is stored as {report.dataset_type!r}, as {seen[report.dataset_type]!r} "
                "is: a run holds one report per notebook name; rename one of the notebooks."
            )
        seen[report.dataset_type] = notebook
        out.append(report)
    return out


def _check_notebook(path: Path, written: str, params: dict[str, Any], base: Path, where: str) -> None:
    from ..verify import ReportParameterError, check_notebook

    if not path.is_file():
        raise PipelineDefinitionError(
            f"{where}.notebook: {written!r} does not exist (looked for {path}); give a path relative to "
            f"the pipeline file's directory ({base}) or resource://package/path.ipynb."
        )
    try:
        check_notebook(path, params)
    except ReportParameterError as exc:
        raise PipelineDefinitionError(f"{where} ({written}): {exc}") from None


def merge_reports(earlier: Iterable[ReportDef], later: Iterable[ReportDef]) -> list[ReportDef]:
    """``earlier`` then ``later``, a later entry replacing an earlier one of the same dataset type."""
    merged: dict[str, ReportDef] = {}
    for report in [*earlier, *later]:
        merged.pop(report.dataset_type, None)
        merged[report.dataset_type] = report
    return list(merged.values())


# --- the record -------------------------------------------------------------------------------------------


class _ReportLog:
    """The ``pipeline_report`` table: the latest publication outcome per run and report dataset type."""

    def __init__(self, db: Database):
        self.db = db
        md = db.metadata
        name = f"{md.schema}.pipeline_report" if md.schema else "pipeline_report"
        existing = md.tables.get(name)
        self.table = (
            existing
            if existing is not None
            else Table(
                "pipeline_report",
                md,
                Column("run", String(255), nullable=False),
                Column("dataset_type", String(255), nullable=False),
                Column("notebook", Text, nullable=False),
                Column("status", String(16), nullable=False),
                Column("message", Text, nullable=False),
                Column("dataset_id", String(32), nullable=True),
                Column("recorded", Float, nullable=False),
                sqlalchemy.PrimaryKeyConstraint("run", "dataset_type"),
                extend_existing=True,
            )
        )

    def _ensure(self) -> None:
        with self.db.transaction() as conn:
            self.table.create(conn, checkfirst=True)

    def record(self, outcome: ReportOutcome) -> None:
        self._ensure()
        t = self.table.c

        def write() -> None:
            with self.db.transaction() as conn:
                conn.execute(
                    sqlalchemy.delete(self.table).where(
                        (t.run == outcome.run) & (t.dataset_type == outcome.dataset_type)
                    )
                )
                conn.execute(
                    sqlalchemy.insert(self.table).values(
                        run=outcome.run,
                        dataset_type=outcome.dataset_type,
                        notebook=outcome.notebook,
                        status=outcome.status,
                        message=outcome.message,
                        dataset_id=outcome.dataset_id,
                        recorded=outcome.recorded,
                    )
                )

        self.db.retrying(write)

    def outcomes(self, run: str) -> list[ReportOutcome]:
        self._ensure()
        t = self.table.c
        with self.db.reading() as conn:
            rows = conn.execute(
                sqlalchemy.select(self.table).where(t.run == run).order_by(t.dataset_type)
            ).mappings()
            return [_outcome(r) for r in rows]


def _outcome(row: RowMapping) -> ReportOutcome:
    """A ``pipeline_report`` row as the outcome it records."""
    return ReportOutcome(
        row["notebook"],
        row["dataset_type"],
        row["status"],
        row["message"],
        row["dataset_id"],
        row["run"],
        row["recorded"],
    )


def report_outcomes(butler: DirectButler, run: str) -> list[ReportOutcome]:
    """The latest recorded outcome of every report published (or attempted) for ``run`` by a pipeline run."""
    return _ReportLog(butler.registry.db).outcomes(run)


def report_outcomes_of(butler: DirectButler, runs: Iterable[str]) -> dict[str, list[ReportOutcome]]:
    """`report_outcomes` of many runs at once (a few statements, whatever their number), only reading.

    For pages that list runs: nothing is written (a repository where no report was ever recorded
    has no ``pipeline_report`` table yet, and every run has none).  Runs without reports are left out.
    """
    log = _ReportLog(butler.registry.db)
    t = log.table.c
    wanted = sorted(set(runs))
    out: dict[str, list[ReportOutcome]] = {}
    with log.db.reading() as conn:
        if not wanted or not sqlalchemy.inspect(conn).has_table(log.table.name, schema=log.table.schema):
            return out
        for i in range(0, len(wanted), 500):
            query = (
                sqlalchemy.select(log.table)
                .where(t.run.in_(wanted[i : i + 500]))
                .order_by(t.run, t.dataset_type)
            )
            for r in conn.execute(query).mappings():
                out.setdefault(r["run"], []).append(_outcome(r))
    return out


# --- publishing -------------------------------------------------------------------------------------------


def publish_reports(
    butler: DirectButler,
    run: str,
    reports: Sequence[ReportDef],
    *,
    instrument: str | None = None,
    only_missing: bool = False,
    on_report: Callable[[ReportDef], None] | None = None,
) -> list[ReportOutcome]:
    """Publish each of ``reports`` for ``run`` (replacing the run's earlier one), recording every outcome.

    A report that fails (a cell raises, the notebook is gone, no kernel) is returned and recorded
    as ``failed`` with its error; the others are still published and the run is left as it is.
    ``only_missing`` skips the reports already recorded as published for the run (a restart of a
    finished run).  ``on_report(report)`` is called before each one is executed.
    """
    from ..verify import publish

    log = _ReportLog(butler.registry.db)
    done = {o.dataset_type for o in log.outcomes(run) if o.ok} if only_missing else set()
    outcomes: list[ReportOutcome] = []
    for report in reports:
        if report.dataset_type in done:
            continue
        if on_report is not None:
            on_report(report)
        kwargs: dict[str, Any] = {} if report.timeout is None else {"timeout": report.timeout}
        try:
            ref = publish(
                butler,
                report.path,
                run,
                report.parameters,
                replace=True,
                instrument=instrument,
                **kwargs,
            )
        except Exception as exc:  # the notebook is the user's code: its failure must not undo the run
            message = str(exc) if isinstance(exc, PorterError) else f"{type(exc).__name__}: {exc}"
            _log.error("report %s for run %s failed: %s", report.notebook, run, message)
            outcome = ReportOutcome(
                report.notebook, report.dataset_type, REPORT_FAILED, message, None, run, time.time()
            )
        else:
            outcome = ReportOutcome(
                report.notebook, report.dataset_type, PUBLISHED, "", ref.id.hex, run, time.time()
            )
        log.record(outcome)
        outcomes.append(outcome)
    return outcomes


def run_complete(butler: DirectButler, run: str) -> bool:
    """Whether every quantum ever submitted for ``run`` has succeeded (its outputs are all there)."""
    from ._report import run_statuses
    from ._state import SUCCEEDED

    _graph, _records, status = run_statuses(butler, run)
    return all(s == SUCCEEDED for s in status.values())
