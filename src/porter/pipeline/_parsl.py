"""The Parsl executor: jobs run by Parsl's HighThroughputExecutor, locally or on a batch system.

A *site* file says where workers come from::

    provider: slurm            # local | slurm | pbs | torque | condor | kubernetes
    workers_per_node: 32       # worker processes per node (each runs one quantum at a time)
    launcher: srun             # single | srun | mpiexec | aprun (how a block starts on its nodes)
    address: hostname          # how workers reach this submit host: hostname | interface:eth0 | an IP
    provider_options:          # the Parsl provider's own arguments
      partition: roma
      account: rubin:production
      walltime: "04:00:00"
      nodes_per_block: 2
      max_blocks: 10
      worker_init: source /sdf/group/rubin/porter/venv/bin/activate
    executor_options:          # HighThroughputExecutor arguments
      mem_per_worker: 4

Examples for each batch system ship in ``porter/pipeline/sites/``.  Workers
need the repository's database and datastore (PostgreSQL + S3 on a cluster)
and ``porter`` importable; the graph is read from the repository, so no
shared file system is needed for it.
"""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import yaml

from ..errors import PipelineDefinitionError, did_you_mean
from ._execution import Job
from ._executors import Executor

__all__ = ["SITE_EXAMPLES", "ParslExecutor", "local_config", "site_config"]

SITE_EXAMPLES = Path(__file__).parent / "sites"
_PROVIDERS = {
    "local": "LocalProvider",
    "slurm": "SlurmProvider",
    "pbs": "PBSProProvider",
    "torque": "TorqueProvider",
    "condor": "CondorProvider",
    "kubernetes": "KubernetesProvider",
}
_LAUNCHERS = {
    "single": "SingleNodeLauncher",
    "srun": "SrunLauncher",
    "mpiexec": "MpiExecLauncher",
    "aprun": "AprunLauncher",
}
_SITE_KEYS = {
    "provider",
    "workers_per_node",
    "launcher",
    "address",
    "provider_options",
    "executor_options",
    "run_dir",
}


def run_job_remote(job: Job) -> list[dict[str, Any]]:
    """What a Parsl worker runs: import porter there and run the job."""
    from porter.pipeline._execution import run_job

    return run_job(job)


def local_config(workers: int = 2, run_dir: str | None = None) -> Any:
    """A Parsl config with one HighThroughputExecutor block of ``workers`` processes on this machine."""
    return site_config({"provider": "local", "workers_per_node": workers, "run_dir": run_dir})


def site_config(site: str | Path | dict[str, Any]) -> Any:
    """A Parsl `Config` from a site file (or dict); an unknown provider or key names the choices."""
    import parsl.launchers
    import parsl.providers
    from parsl.addresses import address_by_hostname, address_by_interface
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor

    if isinstance(site, str | Path):
        path = Path(site)
        if not path.exists():
            bundled = SITE_EXAMPLES / path.name
            if not bundled.exists():
                raise PipelineDefinitionError(
                    f"Site file {path} does not exist; examples: "
                    + ", ".join(p.name for p in sorted(SITE_EXAMPLES.glob("*.yaml")))
                )
            path = bundled
        spec = yaml.safe_load(path.read_text()) or {}
        where = str(path)
    else:
        spec, where = dict(site), "site"
    for key in set(spec) - _SITE_KEYS:
        raise PipelineDefinitionError(
            f"{where}: unknown key {key!r}." + did_you_mean(key, _SITE_KEYS, "keys")
        )
    kind = str(spec.get("provider", "local"))
    if kind not in _PROVIDERS:
        raise PipelineDefinitionError(
            f"{where}: unknown provider {kind!r}." + did_you_mean(kind, _PROVIDERS, "providers")
        )
    options = dict(spec.get("provider_options") or {})
    launcher_name = spec.get("launcher")
    if launcher_name is not None:
        if launcher_name not in _LAUNCHERS:
            raise PipelineDefinitionError(
                f"{where}: unknown launcher {launcher_name!r}."
                + did_you_mean(str(launcher_name), _LAUNCHERS, "launchers")
            )
        options["launcher"] = getattr(parsl.launchers, _LAUNCHERS[launcher_name])()
    if kind == "local":
        options.setdefault("init_blocks", 1)
        options.setdefault("max_blocks", 1)
    try:
        provider = getattr(parsl.providers, _PROVIDERS[kind])(**options)
    except TypeError as exc:
        raise PipelineDefinitionError(f"{where}: bad provider_options for {kind}: {exc}") from None
    address = str(spec.get("address") or ("127.0.0.1" if kind == "local" else "hostname"))
    if address == "hostname":
        address = address_by_hostname()
    elif address.startswith("interface:"):
        address = address_by_interface(address.split(":", 1)[1])
    executor_options = dict(spec.get("executor_options") or {})
    executor_options.setdefault("max_workers_per_node", int(spec.get("workers_per_node", 2)))
    executor_options.update(_this_interpreter(kind == "local", executor_options))
    try:
        htex = HighThroughputExecutor(
            label="porter", provider=provider, address=address, encrypted=False, **executor_options
        )
    except TypeError as exc:
        raise PipelineDefinitionError(f"{where}: bad executor_options: {exc}") from None
    run_dir = spec.get("run_dir") or tempfile.mkdtemp(prefix="porter-parsl-")
    return Config(executors=[htex], run_dir=str(run_dir), strategy="simple", initialize_logging=False)


def _this_interpreter(local_workers: bool, given: dict[str, Any]) -> dict[str, Any]:
    """Launch commands that use this Python's own Parsl scripts, not whatever is first on $PATH.

    The interchange always runs here; local workers do too.  Without this, a
    virtual environment that is not activated (``.venv/bin/python -m …``)
    would start another environment's Parsl, or none.  Remote workers get
    their environment from the site's ``worker_init``.
    """
    from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD

    bin_dir = Path(sys.executable).parent
    out: dict[str, Any] = {}
    interchange = bin_dir / "interchange.py"
    if "interchange_launch_cmd" not in given and interchange.exists():
        out["interchange_launch_cmd"] = [sys.executable, str(interchange)]
    pool = bin_dir / "process_worker_pool.py"
    if local_workers and "launch_cmd" not in given and pool.exists():
        out["launch_cmd"] = f"{sys.executable} {pool} " + DEFAULT_LAUNCH_CMD.split(" ", 1)[1]
    return out


class ParslExecutor(Executor):
    """Jobs as Parsl apps on a HighThroughputExecutor (local processes by default, or a site's batch system)."""

    name = "parsl"

    def __init__(self, config: Any = None, workers: int = 2):
        self._config = config if config is not None else local_config(workers)
        htex = self._config.executors[0]
        self.workers = max(workers, int(getattr(htex, "max_workers_per_node", workers) or workers))
        self._dfk: Any = None
        self._app: Any = None

    def _ensure(self) -> Any:
        if self._dfk is None:
            from parsl import python_app
            from parsl.dataflow.dflow import DataFlowKernel

            self._dfk = DataFlowKernel(self._config)
            self._app = python_app(run_job_remote, data_flow_kernel=self._dfk, executors=["porter"])
        return self._app

    def submit(self, job: Job) -> Future[list[dict[str, Any]]]:
        future: Future[list[dict[str, Any]]] = self._ensure()(job)
        return future

    def shutdown(self) -> None:
        if self._dfk is not None:
            self._dfk.cleanup()
            self._dfk = None
            self._app = None
