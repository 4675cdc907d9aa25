"""What happened in a run, from the repository alone: per-task counts, common errors, times; and restart.

Every graph submitted for the run is read back from ``pipeline_graph`` and
every outcome from ``pipeline_quantum``; *blocked* (an upstream quantum did
not succeed) and *pending* (never started) are derived, so the report is the
same whichever executor ran the quanta, and after a crash.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MissingCollectionError
from ._execution import BLOCKED
from ._graph import QuantumGraph
from ._state import FAILED, PENDING, RUNNING, SUCCEEDED, QuantumRecord, RunState

if TYPE_CHECKING:
    from ..butler import Butler

__all__ = ["RunReport", "load_run_graph", "report_run"]

STATUSES = (SUCCEEDED, FAILED, BLOCKED, RUNNING, PENDING)


def load_run_graph(butler: Butler, run: str) -> QuantumGraph:
    """Every quantum ever submitted for ``run`` as one graph (later submissions of a quantum win)."""
    state = RunState(butler.registry.db)
    graphs = state.graphs_of(run)
    if not graphs:
        known = state.runs()
        raise MissingCollectionError(
            f"No pipeline was ever submitted to run {run!r} in this repository."
            + (f" Runs with pipelines: {', '.join(known[:10])}." if known else "")
        )
    merged: QuantumGraph | None = None
    seen: dict[str, int] = {}
    for _gid, _label, blob in graphs:
        g = QuantumGraph.from_bytes(blob, butler.dimensions)
        if merged is None:
            merged = g
            seen = {q.id: i for i, q in enumerate(g.quanta)}
            continue
        for name, t in g.pipeline.tasks.items():
            merged.pipeline.tasks.setdefault(name, t)
        merged.dataset_types.update(g.dataset_types)
        for q in g.quanta:
            if q.id in seen:
                merged.quanta[seen[q.id]] = q
            else:
                seen[q.id] = len(merged.quanta)
                merged.quanta.append(q)
    assert merged is not None
    return merged


@dataclass
class RunReport:
    """Per-task outcome counts, the most common errors with example data IDs, and times."""

    run: str
    tasks: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    status_of: dict[str, str] = field(default_factory=dict)
    span: tuple[float | None, float | None] = (None, None)

    def totals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for c in self.tasks.values():
            out.update(c)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "totals": {s: self.totals().get(s, 0) for s in STATUSES},
            "tasks": {
                label: {
                    **{s: c.get(s, 0) for s in STATUSES},
                    "wall_seconds": round(self.wall.get(label, 0.0), 3),
                    "cpu_seconds": round(self.cpu.get(label, 0.0), 3),
                }
                for label, c in self.tasks.items()
            },
            "errors": self.errors,
            "elapsed_seconds": round(self.span[1] - self.span[0], 3)
            if self.span[0] is not None and self.span[1] is not None
            else None,
        }


def report_run(butler: Butler, run: str, max_errors: int = 10) -> RunReport:
    """Summarise a run from its stored graphs and quantum outcomes."""
    graph = load_run_graph(butler, run)
    state = RunState(butler.registry.db)
    records = {r.quantum_id: r for r in state.records(run)}
    status = _statuses(graph, records)
    report = RunReport(run, status_of=status)
    for label in graph.pipeline.tasks:
        report.tasks[label] = Counter()
    for q in graph.quanta:
        report.tasks.setdefault(q.task, Counter())[status[q.id]] += 1
    by_message: dict[tuple[str, str], list[QuantumRecord]] = defaultdict(list)
    starts, ends = [], []
    for r in records.values():
        if r.wall is not None:
            report.wall[r.task] = report.wall.get(r.task, 0.0) + r.wall
        if r.cpu is not None:
            report.cpu[r.task] = report.cpu.get(r.task, 0.0) + r.cpu
        if r.started is not None:
            starts.append(r.started)
        if r.ended is not None:
            ends.append(r.ended)
        if r.status == FAILED:
            first = (r.message or "").split("\n")[0]
            by_message[(r.task, f"{r.error_type}: {first}")].append(r)
    report.span = (min(starts) if starts else None, max(ends) if ends else None)
    common = sorted(by_message.items(), key=lambda kv: -len(kv[1]))[:max_errors]
    report.errors = [
        {"task": task, "message": message, "count": len(rs), "examples": [r.data_id for r in rs[:3]]}
        for (task, message), rs in common
    ]
    return report


def _statuses(graph: QuantumGraph, records: dict[str, QuantumRecord]) -> dict[str, str]:
    """Each quantum's status; blocked and pending derived from the graph (quanta are in dependency order)."""
    out: dict[str, str] = {}
    upstream = graph.upstream
    for q in graph.quanta:
        rec = records.get(q.id)
        if rec is not None and rec.status in (SUCCEEDED, FAILED):
            out[q.id] = rec.status
        elif any(out.get(u) in (FAILED, BLOCKED) for u in upstream[q.id]):
            out[q.id] = BLOCKED
        elif rec is not None:
            out[q.id] = RUNNING
        else:
            out[q.id] = PENDING
    return out


def unfinished(butler: Butler, run: str) -> QuantumGraph:
    """The part of a run still to do: failed, blocked, interrupted and pending quanta."""
    graph = load_run_graph(butler, run)
    records = {r.quantum_id: r for r in RunState(butler.registry.db).records(run)}
    status = _statuses(graph, records)
    return graph.restricted({qid for qid, s in status.items() if s != SUCCEEDED})
