"""Running a quantum graph: clustering quanta into jobs, dependencies, blocking, progress.

The scheduler lives in the submitting process and is the same for every
executor: a job is submitted once every quantum it depends on has finished;
when a quantum fails, every quantum downstream of it is *blocked* (not run)
while unrelated work continues.  Outcomes are written to the repository by
the workers themselves, so `restart` needs only the repository.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..registry import CollectionType
from ._execution import BLOCKED, ExecutionOptions, Job
from ._executors import Executor
from ._graph import QuantumGraph
from ._metrics import MetricsOutcome, record_run_metrics
from ._processes import this_process
from ._reports import ReportDef, ReportOutcome, publish_reports, run_complete
from ._state import FAILED, SUCCEEDED, RunState

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["RunSummary", "cluster_quanta", "execute_graph", "prepare_run"]

DEFAULT_CLUSTER_DIMENSIONS = ("visit", "exposure", "tract")
LOST = "lost"


@dataclass
class RunSummary:
    """What one execution did."""

    run: str
    graph_id: int
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    bad: set[str] = field(default_factory=set)
    """IDs of the quanta that failed, were blocked or were lost."""
    reports: list[ReportOutcome] = field(default_factory=list)
    """The pipeline's report notebooks published (or failed) after this execution completed the run."""
    metrics: MetricsOutcome | None = None
    """The run's measurements recorded against the pipeline's ``metrics:`` package (None: none declared)."""

    @property
    def ok(self) -> bool:
        return not (self.counts[FAILED] or self.counts[BLOCKED] or self.counts[LOST])

    @property
    def failure_rate(self) -> float:
        done = sum(self.counts.values())
        return (self.counts[FAILED] + self.counts[LOST]) / done if done else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "graph_id": self.graph_id,
            "counts": dict(self.counts),
            "failures": self.failures[:50],
            "seconds": round(self.seconds, 3),
            **({"reports": [r.to_dict() for r in self.reports]} if self.reports else {}),
            **({"metrics": self.metrics.to_dict()} if self.metrics else {}),
        }


def cluster_quanta(
    graph: QuantumGraph, dimensions: Sequence[str] | None = None, max_size: int = 500
) -> list[list[str]]:
    """Group quanta into jobs: a task's quanta sharing values of ``dimensions`` (default visit/exposure/tract).

    Jobs never mix tasks, so job dependencies follow the (acyclic) task graph.
    A task with none of the dimensions gets one job per quantum.
    """
    dims = tuple(DEFAULT_CLUSTER_DIMENSIONS if dimensions is None else dimensions)
    groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for q in graph.quanta:
        keys = [d for d in dims if d in q.data_id.dimensions.names]
        key = (q.task, tuple(q.data_id[d] for d in keys)) if keys else (q.task, q.id)
        groups[key].append(q.id)
    jobs: list[list[str]] = []
    for ids in groups.values():
        jobs.extend(ids[i : i + max_size] for i in range(0, len(ids), max_size))
    return jobs


def prepare_run(butler: DirectButler, graph: QuantumGraph, label: str = "") -> int:
    """Register the run and output dataset types, delete ``clobber`` datasets, store the graph; its ID."""
    for name, dt in graph.dataset_types.items():
        if name in graph.pipeline.producers():
            butler.registry.register_dataset_type(dt)
    butler.registry.collections.register(graph.run, CollectionType.RUN)
    if graph.clobber:
        there = butler.registry.datasets.existing_ids([uuid.UUID(hex=h) for h in graph.clobber])
        refs = [r for r in (butler.get_dataset(i) for i in there) if r is not None]
        if refs:
            butler.prune_datasets(refs, purge=True, unstore=True)
    state = RunState(butler.registry.db)
    return state.save_graph(graph.run, label or ",".join(graph.pipeline.tasks), len(graph), graph.to_bytes())


def _resumes_other_execution(butler: DirectButler, run: str) -> bool:
    """Whether ``run`` has graphs submitted by some process other than this one (or by one not recorded)."""
    state = RunState(butler.registry.db)
    me = this_process()
    processes = state.processes(run)
    if processes:
        return any(p.submitter != me for p in processes)
    return run in state.runs()


def execute_graph(
    butler: DirectButler,
    graph: QuantumGraph,
    executor: Executor,
    *,
    options: ExecutionOptions | None = None,
    cluster_by: Sequence[str] | None = None,
    cluster_size: int = 500,
    label: str = "",
    graph_id: int | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    reconcile: bool = True,
    reports: bool = True,
    on_report: Callable[[ReportDef], None] | None = None,
    metrics: bool = True,
) -> RunSummary:
    """Run every quantum of ``graph`` with ``executor``; returns counts and the failures.

    ``on_progress(status, n)`` is called as quanta finish (for progress bars).
    A job whose worker died (a killed process) counts its quanta as ``lost``;
    ``porter pipeline restart`` runs them again.

    Extending a run another process executed (``--extend-run``) first
    reconciles its state (`reconcile_run`): that refuses while the other
    execution's processes are alive, and records what a killed execution did
    not, so the report matches the files however the run is resumed.
    ``reconcile=False`` is for a caller that has just done it (restart).

    When this execution leaves every quantum of the run succeeded, the pipeline's ``reports:``
    notebooks are published for the run (`publish_reports`; ``on_report`` is called before each)
    and their outcomes are in the summary's ``reports``; a failing notebook does not undo the run.
    A graph with nothing left to run publishes only the reports not yet published for the run.
    ``reports=False`` publishes none; with reports to publish, missing notebook machinery
    (porter's ``reports`` extra) is refused before anything runs.

    With a ``metrics:`` package in the pipeline, what the run's succeeded quanta measured is
    recorded in the metric store after the execution, checked on arrival and alerted on
    (`record_run_metrics`), before the reports are published; ``metrics=False`` records nothing.
    """
    started = time.perf_counter()
    options = options or ExecutionOptions()
    if reports and graph.pipeline.reports:
        from ..verify import require_report_tools

        require_report_tools()
    me = this_process()
    if reconcile and _resumes_other_execution(butler, graph.run):
        from ._report import reconcile_run

        reconcile_run(butler, graph.run)
    if graph_id is None:
        graph_id = prepare_run(butler, graph, label)
    RunState(butler.registry.db).register_process(graph_id, graph.run, "submitter", me, me)
    summary = RunSummary(graph.run, graph_id)
    if not graph.quanta:
        if metrics:
            summary.metrics = finish_metrics(butler, graph)
        if reports:
            summary.reports = finish_reports(butler, graph, summary, only_missing=True, on_report=on_report)
        return summary
    root = str(butler.root)
    jobs = cluster_quanta(graph, cluster_by, cluster_size)
    job_of = {qid: i for i, ids in enumerate(jobs) for qid in ids}
    upstream = graph.upstream
    waits_on: list[set[int]] = [
        {job_of[u] for qid in ids for u in upstream[qid] if job_of.get(u, i) != i}
        for i, ids in enumerate(jobs)
    ]
    dependents: dict[int, set[int]] = defaultdict(set)
    for i, deps in enumerate(waits_on):
        for d in deps:
            dependents[d].add(i)
    remaining = [len(d) for d in waits_on]
    bad: set[str] = set()  # failed, blocked or lost quanta
    ready = [i for i, n in enumerate(remaining) if n == 0]
    in_flight: dict[Future[list[dict[str, Any]]], int] = {}
    modules = {t.task_class.__module__ for t in graph.pipeline.tasks.values()}
    executor.prepare(sorted(modules))
    limit = max(2, executor.workers * 2)

    def report(status: str, n: int) -> None:
        summary.counts[status] += n
        if on_progress:
            on_progress(status, n)

    def finish_job(i: int) -> None:
        for d in dependents.get(i, ()):
            remaining[d] -= 1
            if remaining[d] == 0:
                ready.append(d)

    while ready or in_flight:
        while ready and len(in_flight) < limit:
            i = ready.pop(0)
            runnable = tuple(q for q in jobs[i] if not (upstream[q] & bad))
            blocked = [q for q in jobs[i] if upstream[q] & bad]
            bad.update(blocked)
            if blocked:
                report(BLOCKED, len(blocked))
            if not runnable:
                finish_job(i)
                continue
            try:
                in_flight[executor.submit(Job(root, graph_id, runnable, options, me))] = i
            except Exception as exc:  # a broken pool refuses new work: the job is lost, restart runs it
                failed: Future[list[dict[str, Any]]] = Future()
                failed.set_exception(exc)
                in_flight[failed] = i
        if not in_flight:
            continue
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            i = in_flight.pop(future)
            try:
                outcomes = future.result()
            except Exception as exc:
                ids = [q for q in jobs[i] if q not in bad]
                bad.update(ids)
                summary.failures.append(
                    {
                        "task": graph.by_id[ids[0]].task if ids else "?",
                        "data_id": {},
                        "status": LOST,
                        "message": f"{type(exc).__name__}: {exc}",
                    }
                )
                report(LOST, len(ids))
                finish_job(i)
                continue
            for o in outcomes:
                status = o["status"]
                if status != SUCCEEDED:
                    bad.add(o["id"])
                    if status == FAILED:
                        q = graph.by_id[o["id"]]
                        summary.failures.append(
                            {
                                "task": q.task,
                                "data_id": dict(q.data_id.required),
                                "status": status,
                                "error_type": o.get("error_type"),
                                "message": (o.get("message") or "").split("\n")[0],
                            }
                        )
                report(status, 1)
            finish_job(i)
    summary.seconds = time.perf_counter() - started
    summary.bad = bad
    if metrics:
        summary.metrics = finish_metrics(butler, graph)
    if reports:
        summary.reports = finish_reports(butler, graph, summary, on_report=on_report)
    return summary


def finish_metrics(butler: DirectButler, graph: QuantumGraph) -> MetricsOutcome | None:
    """Record the run's measurements against the pipeline's ``metrics:`` package, if it names one."""
    if graph.pipeline.metrics is None:
        return None
    return record_run_metrics(butler, graph.run, graph.pipeline.metrics, graph.collections)


def finish_reports(
    butler: DirectButler,
    graph: QuantumGraph,
    summary: RunSummary,
    *,
    only_missing: bool = False,
    on_report: Callable[[ReportDef], None] | None = None,
) -> list[ReportOutcome]:
    """Publish the pipeline's reports for the run if this execution went well and the whole run is done."""
    if not graph.pipeline.reports or not summary.ok or not run_complete(butler, graph.run):
        return []
    return publish_reports(
        butler,
        graph.run,
        graph.pipeline.reports,
        instrument=graph.pipeline.instrument,
        only_missing=only_missing,
        on_report=on_report,
    )
