"""Pipelines: tasks, pipeline YAML with steps, quantum graphs, executors, run state and provenance.

The flow a user sees::

    pipeline = Pipeline.from_uri("pipelines/drp.yaml#step1")
    graph = build_quantum_graph(butler, pipeline, collections=["raw/all"], run="u/me/drp1", where="band = 'r'")
    summary = execute_graph(butler, graph, LocalPoolExecutor(4))

A task is plain Python (`Task.run`) with declared connections; the graph
is built with set-based registry queries; executors (in-process, a warm
local pool, Parsl) run clusters of quanta; the outcome of every quantum and
the datasets it read and wrote are kept in the repository.  Notebooks named in a
pipeline's ``reports:`` section are published for each run its quanta complete.
"""

from ._builder import build_quantum_graph
from ._connections import Connection, Input, Output, PrerequisiteInput
from ._execution import DeferredDatasetHandle, ExecutionOptions, Job, TransientError
from ._executors import Executor, InProcessExecutor, LocalPoolExecutor
from ._graph import Quantum, QuantumGraph
from ._limits import MemoryLimitError, QuantumTimeoutError
from ._metrics import MetricsDef, MetricsOutcome, record_run_metrics
from ._parsl import ParslExecutor, local_config, site_config
from ._pipeline import Pipeline, StepDef, TaskDef
from ._provenance import ProvenanceNode, dataset_provenance, run_prov_json
from ._report import RunInProgressError, RunReport, load_run_graph, reconcile_run, report_run
from ._reports import (
    ReportDef,
    ReportOutcome,
    publish_reports,
    report_outcomes,
    report_outcomes_of,
    run_complete,
)
from ._run import RunSummary, cluster_quanta, execute_graph, prepare_run
from ._state import QuantumRecord, RunState
from ._submit import StepResult, group_quanta, restart_run, submit_steps
from ._task import Measurement, Task, TaskConfig

__all__ = [
    "Connection",
    "DeferredDatasetHandle",
    "ExecutionOptions",
    "Executor",
    "InProcessExecutor",
    "Input",
    "Job",
    "LocalPoolExecutor",
    "Measurement",
    "MemoryLimitError",
    "MetricsDef",
    "MetricsOutcome",
    "Output",
    "ParslExecutor",
    "Pipeline",
    "PrerequisiteInput",
    "ProvenanceNode",
    "Quantum",
    "QuantumGraph",
    "QuantumRecord",
    "QuantumTimeoutError",
    "ReportDef",
    "ReportOutcome",
    "RunInProgressError",
    "RunReport",
    "RunState",
    "RunSummary",
    "StepDef",
    "StepResult",
    "Task",
    "TaskConfig",
    "TaskDef",
    "TransientError",
    "build_quantum_graph",
    "cluster_quanta",
    "dataset_provenance",
    "execute_graph",
    "group_quanta",
    "load_run_graph",
    "local_config",
    "prepare_run",
    "publish_reports",
    "reconcile_run",
    "record_run_metrics",
    "report_outcomes",
    "report_outcomes_of",
    "report_run",
    "restart_run",
    "run_complete",
    "run_prov_json",
    "site_config",
    "submit_steps",
]
