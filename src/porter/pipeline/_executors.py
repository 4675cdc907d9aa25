"""Executors: where jobs run.  One small interface, three implementations.

- `InProcessExecutor`: in this process, one job at a time (debugging; a
  breakpoint in a task just works);
- `LocalPoolExecutor`: ``N`` warm worker processes that each open the
  repository and load the graph once, then run many jobs;
- `porter.pipeline.ParslExecutor`: Parsl's HighThroughputExecutor, on this
  machine or on a cluster's batch system.

Each returns `concurrent.futures.Future` objects whose result is the job's
list of outcomes; the scheduler in `porter.pipeline.execute_graph` does the
rest (dependencies, blocking, progress), so it is the same for all.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from ._execution import Job, forget_workers, run_job
from ._processes import ProcessId, die_with_submitter, this_process

__all__ = ["Executor", "InProcessExecutor", "LocalPoolExecutor"]


class Executor(ABC):
    """Runs jobs, returning futures of their outcome lists."""

    name = "executor"
    workers = 1

    @abstractmethod
    def submit(self, job: Job) -> Future[list[dict[str, Any]]]:
        """Start a job (or queue it) and return its future."""

    def prepare(self, modules: Sequence[str]) -> None:
        """Called before the first job with the modules the tasks live in (workers may pre-import them)."""
        return None

    def shutdown(self) -> None:
        """Stop workers and release resources."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


class InProcessExecutor(Executor):
    """Runs each job immediately in the calling process."""

    name = "in-process"

    def submit(self, job: Job) -> Future[list[dict[str, Any]]]:
        future: Future[list[dict[str, Any]]] = Future()
        try:
            future.set_result(run_job(job))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        forget_workers()


def _warm(modules: Sequence[str], environment: dict[str, str], submitter: ProcessId) -> None:
    """Worker initializer: die with the submitter, take its environment, import porter's pipeline code and the task modules once.

    A worker outliving a killed submitter would go on writing to a run that
    a restart is about to redo, so it is tied to the submitter first
    (`die_with_submitter`).  The fork server is started once per process and
    keeps the environment of that moment; the submitter's current one (S3
    endpoint, credentials …) is what the workers need.
    """
    die_with_submitter(submitter)
    os.environ.clear()
    os.environ.update(environment)
    importlib.import_module("porter.pipeline._execution")
    for name in modules:
        importlib.import_module(name)


class LocalPoolExecutor(Executor):
    """``workers`` long-lived processes on this machine; each runs many jobs without restarting.

    Processes are started with ``forkserver`` (a clean, already-imported
    template process) so workers never inherit the caller's open database
    connections or threads.  Workers end when the submitting process does,
    even if it is killed (see `die_with_submitter`).
    """

    name = "local pool"

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ValueError(f"A local pool needs at least 1 worker, not {workers}.")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._modules: list[str] = []

    def prepare(self, modules: Sequence[str]) -> None:
        self._modules = sorted(set(modules))

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["porter.pipeline._execution", *self._modules])
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_warm,
                initargs=(tuple(self._modules), dict(os.environ), this_process()),
            )
        return self._pool

    def submit(self, job: Job) -> Future[list[dict[str, Any]]]:
        return self._ensure().submit(run_job, job)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
