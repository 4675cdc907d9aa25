"""Pipelines: tasks, pipeline YAML with steps, quantum graphs, executors, run state and provenance.

The flow a user sees::

    pipeline = Pipeline.from_uri("pipelines/drp.yaml#step1")
    graph = build_quantum_graph(butler, pipeline, collections=["raw/all"], run="u/me/drp1", where="band = 'r'")
    summary = execute_graph(butler, graph, LocalPoolExecutor(4))

A task is plain Python (`Task.run`) with declared connections; the graph
is built with set-based registry queries; executors (in-process, a warm
local pool, Parsl) run clusters of quanta; the outcome of every quantum and
the datasets it read and wrote are kept in the repository.
"""

from ._builder import build_quantum_graph
from ._connections import Connection, Input, Output, PrerequisiteInput
from ._execution import ExecutionOptions, Job, TransientError
from ._executors import Executor, InProcessExecutor, LocalPoolExecutor
from ._graph import Quantum, QuantumGraph
from ._limits import MemoryLimitError, QuantumTimeoutError
from ._pipeline import Pipeline, StepDef, TaskDef
from ._run import RunSummary, cluster_quanta, execute_graph, prepare_run
from ._state import QuantumRecord, RunState
from ._task import Measurement, Task, TaskConfig

__all__ = [
    "Connection",
    "ExecutionOptions",
    "Executor",
    "InProcessExecutor",
    "Input",
    "Job",
    "LocalPoolExecutor",
    "Measurement",
    "MemoryLimitError",
    "Output",
    "Pipeline",
    "PrerequisiteInput",
    "Quantum",
    "QuantumGraph",
    "QuantumRecord",
    "QuantumTimeoutError",
    "RunState",
    "RunSummary",
    "StepDef",
    "Task",
    "TaskConfig",
    "TaskDef",
    "TransientError",
    "build_quantum_graph",
    "cluster_quanta",
    "execute_graph",
    "prepare_run",
]
