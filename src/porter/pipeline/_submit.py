"""Submissions: run a pipeline step by step, each step in groups, with a sequence point between steps.

This is the "workflow of workflows" of a data-release production: step 1
for every detector of a group of visits, then the next group; when the whole
step is done (the sequence point) its failure rate is checked, and the next
step starts only if it is below the threshold.  Every submission is
resumable: finished quanta are skipped (their outputs are in the run) and
outputs left by interrupted ones are replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import PipelineDefinitionError
from ._builder import build_quantum_graph
from ._execution import BLOCKED, ExecutionOptions
from ._executors import Executor
from ._graph import QuantumGraph
from ._metrics import MetricsOutcome, record_run_metrics
from ._pipeline import Pipeline
from ._report import unfinished
from ._reports import ReportDef, ReportOutcome, publish_reports, run_complete
from ._run import RunSummary, execute_graph

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["StepResult", "group_quanta", "restart_run", "submit_steps"]

DEFAULT_GROUP_BY = ("visit", "tract")


@dataclass
class StepResult:
    """The outcome of one step: a summary per group and whether the failure threshold stopped the submission."""

    step: str
    groups: list[RunSummary] = field(default_factory=list)
    n_quanta: int = 0
    skipped: int = 0
    stopped: bool = False
    reports: list[ReportOutcome] = field(default_factory=list)
    """Report notebooks published (or failed) after this step, the last of a submission that completed the run."""
    metrics: MetricsOutcome | None = None
    """The run's measurements recorded after this step against the pipeline's ``metrics:`` package."""

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.groups:
            for k, v in g.counts.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def failure_rate(self) -> float:
        """Failed, blocked and lost quanta as a fraction of the whole step (quanta finished earlier included)."""
        c = self.counts
        total = sum(c.values()) + self.skipped
        return (sum(c.values()) - c.get("succeeded", 0)) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "quanta": self.n_quanta,
            "skipped": self.skipped,
            "groups": len(self.groups),
            "counts": self.counts,
            "fail rate": round(self.failure_rate, 4),
            "stopped": self.stopped,
            **({"reports": [r.to_dict() for r in self.reports]} if self.reports else {}),
            **({"metrics": self.metrics.to_dict()} if self.metrics else {}),
        }


def group_quanta(graph: QuantumGraph, group_by: Sequence[str], group_size: int) -> list[set[str]]:
    """Split a step's quanta into groups of ``group_size`` values of the first ``group_by`` dimension they have.

    A quantum without any of the dimensions joins the group of the quanta
    it feeds (per-exposure ISR goes with its visit), or else of the quanta
    that feed it; what is still unplaced runs in a group of its own, before
    the others if they depend on it and after them otherwise.
    """
    if group_size < 1:
        raise PipelineDefinitionError(f"--group-size must be at least 1, not {group_size}.")
    key: dict[str, tuple[int, Any]] = {}
    for q in graph.quanta:
        names = q.data_id.dimensions.names
        rank = next((i for i, d in enumerate(group_by) if d in names), None)
        if rank is not None:
            key[q.id] = (rank, q.data_id[group_by[rank]])
    for neighbours, order in (
        (graph.downstream, reversed(graph.quanta)),
        (graph.upstream, iter(graph.quanta)),
    ):
        for q in order:
            if q.id not in key:
                found = {key[n] for n in neighbours[q.id] if n in key}
                if len(found) == 1:
                    key[q.id] = found.pop()
    members: dict[tuple[int, Any], set[str]] = {}
    for qid, k in key.items():
        members.setdefault(k, set()).add(qid)
    groups: list[set[str]] = []
    for rank in range(len(group_by)):  # visits before tracts: a step's coarser tasks come later
        keys = sorted((k for k in members if k[0] == rank), key=lambda k: k[1])
        for start in range(0, len(keys), group_size):
            groups.append(set().union(*(members[k] for k in keys[start : start + group_size])))
    rest = {q.id for q in graph.quanta if q.id not in key}
    if rest:
        feeding = {qid for qid in rest if graph.descendants([qid]) - rest}
        if feeding:
            groups.insert(0, feeding)
        if rest - feeding:
            groups.append(rest - feeding)
    return groups


def submit_steps(
    butler: DirectButler,
    pipeline: Pipeline,
    steps: Sequence[str],
    executor: Executor,
    *,
    collections: Sequence[str],
    run: str,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    group_size: int = 50,
    max_failure_rate: float = 0.1,
    options: ExecutionOptions | None = None,
    cluster_by: Sequence[str] | None = None,
    on_group: Callable[[str, int, int, QuantumGraph], Callable[[str, int], None] | None] | None = None,
    reports: bool = True,
    on_report: Callable[[ReportDef], None] | None = None,
    metrics: bool = True,
) -> list[StepResult]:
    """Run ``steps`` of ``pipeline`` in order, each as groups of quanta; stop when a step fails too often.

    ``on_group(step, index, n_groups, graph)`` is called before each group
    and may return a progress callback for it.  When the submission leaves every quantum of the
    run succeeded, the pipeline's ``reports:`` notebooks are published for the run (see
    `execute_graph`); their outcomes are in the last step's ``reports``.  With a ``metrics:``
    package, the run's measurements are recorded after each step (``metrics=False``: never), so
    a step's metrics are checked and alerted on before the next step starts.
    """
    known = {s.label for s in pipeline.steps()} | set(pipeline.subsets)
    for step in steps:
        if step not in known:
            raise PipelineDefinitionError(
                f"The pipeline has no step {step!r}; its steps are: {', '.join(s.label for s in pipeline.steps())}."
            )
    if reports and pipeline.reports:
        from ..verify import require_report_tools

        require_report_tools()
    results: list[StepResult] = []
    for step in steps:
        graph = build_quantum_graph(
            butler,
            pipeline.select(step),
            collections=collections,
            run=run,
            where=where,
            bind=bind,
            extend_run=True,
            skip_existing_in=[run] if butler.registry.collections.find(run) is not None else [],
            clobber_outputs=True,
        )
        result = StepResult(
            step, n_quanta=len(graph), skipped=sum(graph.metadata.get("skipped", {}).values())
        )
        results.append(result)
        bad: set[str] = set()
        groups = group_quanta(graph, group_by, group_size)
        upstream = graph.upstream
        for index, ids in enumerate(groups):
            # Blocked by a failure in an earlier group (directly, or through a blocked quantum of this
            # group): never sent to the executor.  Quanta are in dependency order, so one pass finds them all.
            doomed: set[str] = set()
            for q in graph.quanta:
                if q.id in ids and (upstream[q.id] & bad or upstream[q.id] & doomed):
                    doomed.add(q.id)
            part = graph.restricted(ids - doomed)
            progress = on_group(step, index, len(groups), part) if on_group else None
            summary = execute_graph(
                butler,
                part,
                executor,
                options=options,
                cluster_by=cluster_by,
                label=f"{step}#{index + 1}",
                on_progress=progress,
                reports=False,  # once, after the whole submission
                metrics=False,  # once per step, below
            )
            if doomed:
                summary.counts[BLOCKED] += len(doomed)
                if progress:
                    progress(BLOCKED, len(doomed))
            bad |= doomed | summary.bad
            result.groups.append(summary)
        if metrics and pipeline.metrics is not None:
            result.metrics = record_run_metrics(butler, run, pipeline.metrics, collections)
        if result.failure_rate > max_failure_rate:
            result.stopped = True
            break
    if reports and pipeline.reports and results and not results[-1].stopped and run_complete(butler, run):
        results[-1].reports = publish_reports(
            butler, run, pipeline.reports, instrument=pipeline.instrument, on_report=on_report
        )
    return results


def restart_run(
    butler: DirectButler,
    run: str,
    executor: Executor,
    *,
    options: ExecutionOptions | None = None,
    cluster_by: Sequence[str] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    todo: QuantumGraph | None = None,
    reports: bool = True,
    on_report: Callable[[ReportDef], None] | None = None,
    metrics: bool = True,
) -> RunSummary:
    """Run again only what did not succeed in ``run``: failed, blocked, interrupted and pending quanta.

    ``todo`` is that part of the run when the caller has already worked it out (`unfinished`,
    which also reconciles the run state and refuses while an earlier execution's processes live).
    A restart that completes the run publishes the pipeline's ``reports:`` notebooks; one with
    nothing left to run publishes those not yet published (a failed report is retried).  The
    run's measurements are recorded again against the pipeline's ``metrics:`` package (replacing).
    """
    todo = todo if todo is not None else unfinished(butler, run)
    return execute_graph(
        butler,
        todo,
        executor,
        options=options,
        cluster_by=cluster_by,
        label="restart",
        on_progress=on_progress,
        reconcile=False,  # unfinished() did it
        reports=reports,
        on_report=on_report,
        metrics=metrics,
    )
