"""Running quanta: the code every executor's workers run.

A *job* is a list of quantum IDs from one stored graph.  A worker process
opens the repository and loads the graph once (then keeps them: a warm
worker), and for each quantum reads the inputs through the butler, calls the
task, and writes the outputs with the dataset IDs chosen when the graph was
built.  Outcomes go to the repository's run-state tables, so restart and
report do not depend on the executor.

Exactly-once: before a quantum runs, any of its outputs left by an attempt
that was killed are deleted; a failed attempt deletes what it wrote.  So a
dataset exists only if the quantum that makes it finished writing it, and
rerunning a quantum never duplicates one.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy

from ._graph import Quantum, QuantumGraph
from ._limits import limits
from ._processes import ProcessId, this_process
from ._state import FAILED, SUCCEEDED, QuantumRecord, RunState

if TYPE_CHECKING:
    from ..butler import DirectButler
    from ._pipeline import TaskDef

__all__ = ["DeferredDatasetHandle", "ExecutionOptions", "Job", "TransientError", "run_job"]

BLOCKED = "blocked"


class DeferredDatasetHandle:
    """An input the task reads itself (``Input(..., deferred=True)``): all of it, or a cut-out or some columns."""

    def __init__(self, butler: DirectButler, ref: Any, storage_class: str | None = None):
        self._butler = butler
        self.ref = ref
        self._storage_class = storage_class

    @property
    def data_id(self) -> Any:
        return self.ref.data_id

    def get(self, parameters: dict[str, Any] | None = None) -> Any:
        """Read the dataset (``parameters={"bbox": ...}`` or ``{"columns": [...]}`` read part of it)."""
        return self._butler.get(self.ref, parameters=parameters, storage_class=self._storage_class)


class TransientError(Exception):
    """Raise from a task to say "this may work if tried again" (a flaky mount, a busy service)."""


@dataclass(frozen=True)
class ExecutionOptions:
    """How each quantum is run: retries with exponential backoff for transient errors, and limits."""

    retries: int = 2
    backoff: float = 0.5
    timeout: float | None = None
    memory_limit_mb: float | None = None
    flush_seconds: float = 1.0
    """Outcomes are written at most this long after they happen (batched: cheap for tiny quanta)."""


@dataclass(frozen=True)
class Job:
    """Quanta to run in order in one worker (a cluster: e.g. every detector of one visit)."""

    root: str
    graph_id: int
    quantum_ids: tuple[str, ...]
    options: ExecutionOptions = field(default_factory=ExecutionOptions)
    submitter: ProcessId | None = None
    """The process that submitted the job: workers record it, so a restart can tell whose workers are still alive."""


@dataclass
class _Worker:
    """What a warm worker keeps between jobs."""

    butler: DirectButler
    state: RunState
    graphs: dict[int, QuantumGraph] = field(default_factory=dict)
    registered: set[int] = field(default_factory=set)
    """Graphs this process is recorded (in ``pipeline_process``) as working on."""


_WORKERS: dict[str, _Worker] = {}


def _worker(root: str) -> _Worker:
    worker = _WORKERS.get(root)
    if worker is None or worker.butler.registry.db.engine is None:
        from ..butler import DirectButler

        butler = DirectButler(root)
        worker = _WORKERS[root] = _Worker(butler, RunState(butler.registry.db))
    return worker


def forget_workers() -> None:
    """Close the butlers this process keeps for jobs (tests and shutdown)."""
    for w in _WORKERS.values():
        w.butler.close()
    _WORKERS.clear()


def _graph(worker: _Worker, graph_id: int) -> QuantumGraph:
    graph = worker.graphs.get(graph_id)
    if graph is None:
        graph = QuantumGraph.from_bytes(worker.state.graph_blob(graph_id), worker.butler.dimensions)
        worker.graphs[graph_id] = graph
    return graph


def run_job(job: Job) -> list[dict[str, Any]]:
    """Run a job's quanta in order; return one small outcome dict per quantum.

    A quantum whose upstream quantum failed in this same job is not run and
    comes back ``blocked``.  Outcomes are recorded in the repository as they
    happen (batched at most ``flush_seconds``).
    """
    worker = _worker(job.root)
    graph = _graph(worker, job.graph_id)
    if job.graph_id not in worker.registered:
        me = this_process()
        worker.state.register_process(job.graph_id, graph.run, "worker", me, job.submitter or me)
        worker.registered.add(job.graph_id)
    host = socket.gethostname()
    quanta = [graph.by_id[qid] for qid in job.quantum_ids]
    worker.state.start([_record(graph, q, host, "running") for q in quanta])
    failed: set[str] = set()
    pending: list[QuantumRecord] = []
    results: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    for q in quanta:
        if graph.upstream[q.id] & failed:
            failed.add(q.id)
            results.append({"id": q.id, "status": BLOCKED})
            continue
        record = execute_quantum(worker.butler, graph, q, job.options, host)
        if record.status != SUCCEEDED:
            failed.add(q.id)
        pending.append(record)
        results.append(
            {
                "id": q.id,
                "status": record.status,
                "message": record.message,
                "error_type": record.error_type,
                "wall": record.wall,
            }
        )
        if time.monotonic() - last_flush >= job.options.flush_seconds:
            worker.state.finish(pending)
            pending = []
            last_flush = time.monotonic()
    worker.state.finish(pending)
    return results


def execute_quantum(
    butler: DirectButler, graph: QuantumGraph, quantum: Quantum, options: ExecutionOptions, host: str = ""
) -> QuantumRecord:
    """Run one quantum with retries; its outputs are all written, or none are."""
    task_def = graph.pipeline.tasks[quantum.task]
    record = _record(graph, quantum, host or socket.gethostname(), FAILED)
    what = f"task {quantum.task!r} on {dict(quantum.data_id.required)}"
    for attempt in range(1, options.retries + 2):
        record.attempts = attempt
        record.started = time.time()
        usage = None
        try:
            _remove_outputs(butler, quantum)
            with limits(options.timeout, options.memory_limit_mb, what) as usage:
                measurements = _run(butler, task_def, quantum, what)
            record.status = SUCCEEDED
            record.measurements = measurements
            record.error_type = record.message = None
        except Exception as exc:
            _remove_outputs(butler, quantum)
            # A limit that fired is the reason, even if code it interrupted re-raised it as another error.
            error: BaseException = usage.exceeded if usage is not None and usage.exceeded else exc
            transient = _is_transient(error)
            record.status = FAILED
            record.error_type = type(error).__name__
            record.message = f"{error}"[:2000] or type(error).__name__
            record.message += "\n" + "".join(traceback.format_exception(error)[-6:])[-4000:]
            if transient and attempt <= options.retries:
                time.sleep(options.backoff * 2 ** (attempt - 1))
                continue
        finally:
            record.ended = time.time()
            record.wall = record.ended - record.started
        if usage is not None:
            record.cpu, record.max_rss_mb = usage.cpu, usage.max_rss_mb
        break
    return record


def _run(butler: DirectButler, task_def: TaskDef, quantum: Quantum, what: str) -> list[dict[str, Any]]:
    """Read the inputs, call the task, check and write its outputs; returns its measurements."""
    args: dict[str, Any] = {}
    for kind in (quantum.inputs, quantum.prerequisites):
        for name, refs in kind.items():
            conn = task_def.connections[name]
            wanted = (
                conn.storage_class if conn.storage_class != refs[0].dataset_type.storage_class_name else None
            )
            if conn.deferred:
                objs: list[Any] = [DeferredDatasetHandle(butler, r, wanted) for r in refs]
            else:
                objs = [butler.get(r, storage_class=wanted) for r in refs]
            args[name] = objs if conn.multiple else objs[0]
    task = task_def.make_task()
    extra = _extras(task_def.task_class.run)
    if "data_id" in extra:
        args["data_id"] = quantum.data_id
    if "input_data_ids" in extra:
        args["input_data_ids"] = {
            n: [r.data_id for r in refs]
            for n, refs in (*quantum.inputs.items(), *quantum.prerequisites.items())
        }
    result = task.run(**args)
    if not isinstance(result, dict):
        raise TypeError(
            f"{what}: run() returned {type(result).__name__}; it must return a dict of output connection "
            f"name to object ({', '.join(task_def.outputs) or 'no outputs'})."
        )
    missing = set(task_def.outputs) - set(result)
    unknown = set(result) - set(task_def.outputs)
    if missing or unknown:
        raise TypeError(
            f"{what}: run() returned {sorted(result)}, but the task's outputs are {sorted(task_def.outputs)}"
            + (f" (missing {sorted(missing)})" if missing else "")
            + (f" (unknown {sorted(unknown)})" if unknown else "")
            + "."
        )
    for name, refs in quantum.outputs.items():
        butler.put(result[name], refs[0])
    return [m.to_dict() for m in task.measurements]


_EXTRAS: dict[Callable[..., Any], set[str]] = {}


def _extras(run: Callable[..., Any]) -> set[str]:
    found = _EXTRAS.get(run)
    if found is None:
        import inspect

        found = _EXTRAS[run] = set(inspect.signature(run).parameters) & {"data_id", "input_data_ids"}
    return found


def _remove_outputs(butler: DirectButler, quantum: Quantum) -> None:
    """Delete any of the quantum's outputs that exist (left by a killed or failed attempt)."""
    refs = list(quantum.all_outputs())
    if not refs:
        return
    there = butler.registry.datasets.existing_ids([r.id for r in refs])
    if there:
        butler.prune_datasets([r for r in refs if r.id in there], purge=True, unstore=True)
    # A put killed between reserving its path and registering its dataset leaves a journal row (and maybe a file).
    butler.clear_interrupted_puts([r for r in refs if r.id not in there])


def _is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: a task's own TransientError, lost connections, busy databases, I/O hiccups."""
    if isinstance(exc, TransientError | ConnectionError):
        return True
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    name = type(exc).__name__
    return name in {"EndpointConnectionError", "ReadTimeoutError", "ConnectTimeoutError"} or (
        isinstance(exc, OSError) and exc.errno in {5, 11, 110, 116}  # EIO, EAGAIN, ETIMEDOUT, ESTALE
    )


_VERSIONS: dict[str, dict[str, str]] = {}


def software_versions(task_class: type) -> dict[str, str]:
    """porter's, Python's and the task's package's versions (recorded with every quantum)."""
    module = task_class.__module__
    found = _VERSIONS.get(module)
    if found is None:
        from .. import __version__

        found = {"porter": __version__, "python": platform.python_version()}
        top = module.split(".")[0]
        if top != "porter":
            try:
                found[top] = importlib.metadata.version(top)
            except importlib.metadata.PackageNotFoundError:
                found[top] = "unknown"
        _VERSIONS[module] = found
    return found


def _record(graph: QuantumGraph, q: Quantum, host: str, status: str) -> QuantumRecord:
    task_def = graph.pipeline.tasks[q.task]
    return QuantumRecord(
        quantum_id=q.id,
        run=graph.run,
        task=q.task,
        data_id=dict(q.data_id.required),
        status=status,
        host=f"{host}:{os.getpid()}",
        started=time.time(),
        task_class=task_def.class_name,
        config_hash=task_def.config_hash,
        versions=software_versions(task_def.task_class),
        inputs=[r.id_hex for r in q.all_inputs()],
        outputs=[r.id_hex for r in q.all_outputs()],
    )
