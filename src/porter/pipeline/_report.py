"""What happened in a run, from the repository alone: per-task counts, common errors, times; and restart.

Every graph submitted for the run is read back from ``pipeline_graph`` and
every outcome from ``pipeline_quantum``; *blocked* (an upstream quantum did
not succeed) and *pending* (never started) are derived, so the report is the
same whichever executor ran the quanta, and after a crash.

The stored outcomes are not trusted blindly, because a killed submitter
cannot write what its workers were doing: a quantum whose outputs all exist
is done (its outcome may never have been flushed), and one recorded as
``running`` whose process is gone is not running but still to do.  The
report derives this on the fly; `reconcile_run` (run before a restart and
before extending a run another process executed) writes it down, after
making sure no process of an earlier execution is still writing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MissingCollectionError, PorterError
from ._execution import BLOCKED, _record, _remove_outputs
from ._graph import Quantum, QuantumGraph
from ._processes import ProcessId, is_alive, this_process
from ._reports import merge_reports
from ._state import (
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    ProcessRecord,
    QuantumRecord,
    RunState,
)

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = [
    "RunInProgressError",
    "RunReport",
    "live_processes",
    "load_run_graph",
    "reconcile_run",
    "report_run",
]

STATUSES = (SUCCEEDED, FAILED, BLOCKED, RUNNING, PENDING)


class RunInProgressError(PorterError):
    """Processes of an earlier execution of a run are still alive (and may be writing to it)."""


def load_run_graph(butler: DirectButler, run: str) -> QuantumGraph:
    """Every quantum ever submitted for ``run`` as one graph (later submissions of a quantum win).

    A quantum is its task and data ID: a later graph built with
    ``--extend-run`` makes the same quantum again under a new ID, and that
    one replaces the earlier (otherwise the earlier would stay pending for ever).
    """
    state = RunState(butler.registry.db)
    graphs = state.graphs_of(run)
    if not graphs:
        known = state.runs()
        raise MissingCollectionError(
            f"No pipeline was ever submitted to run {run!r} in this repository."
            + (f" Runs with pipelines: {', '.join(known[:10])}." if known else "")
        )
    merged: QuantumGraph | None = None
    seen: dict[tuple[str, Any], int] = {}
    for _gid, _label, blob in graphs:
        g = QuantumGraph.from_bytes(blob, butler.dimensions)
        if merged is None:
            merged = g
            seen = {_key(q): i for i, q in enumerate(g.quanta)}
            continue
        for name, t in g.pipeline.tasks.items():
            merged.pipeline.tasks.setdefault(name, t)
        merged.pipeline.reports = merge_reports(merged.pipeline.reports, g.pipeline.reports)
        merged.dataset_types.update(g.dataset_types)
        for q in g.quanta:
            k = _key(q)
            if k in seen:
                merged.quanta[seen[k]] = q
            else:
                seen[k] = len(merged.quanta)
                merged.quanta.append(q)
    assert merged is not None
    return merged


def _key(q: Quantum) -> tuple[str, Any]:
    return (q.task, q.data_id.required_values)


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


def report_run(butler: DirectButler, run: str, max_errors: int = 10) -> RunReport:
    """Summarise a run from its stored graphs and quantum outcomes."""
    graph, records, status = run_statuses(butler, run)
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


def run_statuses(
    butler: DirectButler, run: str
) -> tuple[QuantumGraph, dict[str, QuantumRecord], dict[str, str]]:
    """The run's merged graph, its quanta's stored records, and each quantum's status reconciled with the repository."""
    graph = load_run_graph(butler, run)
    state = RunState(butler.registry.db)
    ids = {q.id for q in graph.quanta}
    records = {r.quantum_id: r for r in state.records(run) if r.quantum_id in ids}
    outputs = [r.id for q in graph.quanta for r in q.all_outputs()]
    existing = {u.hex for u in butler.registry.datasets.existing_ids(outputs)}
    processes = state.processes(run)
    status = _statuses(graph, records, existing, lambda rec: _running(rec, processes))
    return graph, records, status


def _running(rec: QuantumRecord, processes: list[ProcessRecord]) -> bool:
    """Whether the process a ``running`` record names is still alive (another host's: assumed so, it cannot be seen)."""
    host, _, pid_text = rec.host.rpartition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    start = ""
    for (
        p
    ) in processes:  # the registration just before the record: a later process with the same PID is not it
        if (
            p.process.host == host
            and p.process.pid == pid
            and (rec.started is None or p.registered <= rec.started)
        ):
            start = p.process.start
    return is_alive(ProcessId(host, pid, start)) is not False


def _statuses(
    graph: QuantumGraph,
    records: dict[str, QuantumRecord],
    existing: set[str],
    running: Callable[[QuantumRecord], bool],
) -> dict[str, str]:
    """Each quantum's status; blocked and pending derived from the graph (quanta are in dependency order).

    What exists wins over what was recorded: a quantum whose outputs are all
    in the registry succeeded (a killed worker may have written them without
    flushing its outcome), and a ``running`` one whose process is gone is pending.
    """
    out: dict[str, str] = {}
    upstream = graph.upstream
    for q in graph.quanta:
        rec = records.get(q.id)
        outs = [r.id_hex for r in q.all_outputs()]
        if outs and all(o in existing for o in outs):
            out[q.id] = SUCCEEDED
        elif rec is not None and rec.status in (SUCCEEDED, FAILED):
            out[q.id] = rec.status
        elif any(out.get(u) in (FAILED, BLOCKED) for u in upstream[q.id]):
            out[q.id] = BLOCKED
        elif rec is not None and rec.status == RUNNING and running(rec):
            out[q.id] = RUNNING
        else:
            out[q.id] = PENDING
    return out


def live_processes(butler: DirectButler, run: str) -> list[ProcessRecord]:
    """Processes of executions of ``run`` by other submitters that are still alive on this host."""
    me = this_process()
    out = []
    for p in RunState(butler.registry.db).processes(run):
        if p.submitter == me or p.process == me:
            continue
        if is_alive(p.process):
            out.append(p)
    return out


def reconcile_run(butler: DirectButler, run: str) -> dict[str, int]:
    """Write down what the repository shows about ``run``; returns how many quanta changed, per new status.

    Refuses (`RunInProgressError`, naming the PIDs) while a process of an
    earlier execution is alive: it may still be writing, and redoing its
    quanta now would race it.  Then a quantum whose outputs all exist is
    recorded as succeeded, with its provenance links; one recorded as
    ``running`` whose process is gone becomes ``interrupted``, and what its
    attempt left (outputs, journal entries of killed writes) is removed, so
    the next attempt, by ``restart`` or by ``run --extend-run
    --skip-existing-in``, starts clean.
    """
    alive = live_processes(butler, run)
    if alive:
        names = ", ".join(
            f"{p.role} {p.process.pid} on {p.process.host}"
            + (f" (submitted by {p.submitter.pid})" if p.submitter != p.process else "")
            for p in alive
        )
        pids = " ".join(sorted({str(p.process.pid) for p in alive}))
        raise RunInProgressError(
            f"Run {run!r} is still being executed: {names} "
            f"{'is' if len(alive) == 1 else 'are'} alive and may be writing to it. Wait for "
            f"{'it' if len(alive) == 1 else 'them'} to finish, or stop {'it' if len(alive) == 1 else 'them'} "
            f"(kill {pids}), then run this command again."
        )
    graph, records, status = run_statuses(butler, run)
    state = RunState(butler.registry.db)
    changed: list[QuantumRecord] = []
    interrupted: list[Quantum] = []
    for q in graph.quanta:
        rec = records.get(q.id)
        if status[q.id] == SUCCEEDED and (rec is None or rec.status != SUCCEEDED):
            if rec is None:
                rec = _record(graph, q, "", SUCCEEDED)
            rec.status = SUCCEEDED
            rec.inputs = [r.id_hex for r in q.all_inputs()]
            rec.outputs = [r.id_hex for r in q.all_outputs()]
            changed.append(rec)
        elif rec is not None and rec.status == RUNNING and status[q.id] != RUNNING:
            rec.status = INTERRUPTED
            changed.append(rec)
            interrupted.append(q)
    for q in interrupted:
        _remove_outputs(butler, q)
    state.finish(changed)
    counts: dict[str, int] = {}
    for rec in changed:
        counts[rec.status] = counts.get(rec.status, 0) + 1
    return counts


def unfinished(butler: DirectButler, run: str) -> QuantumGraph:
    """The part of a run still to do: failed, blocked, interrupted and pending quanta (after `reconcile_run`)."""
    reconcile_run(butler, run)
    _graph, _records, status = run_statuses(butler, run)
    return _graph.restricted({qid for qid, s in status.items() if s != SUCCEEDED})
