"""Parsl site files: each bundled batch-system configuration builds, and submits through its batch command."""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from parsl.providers import CondorProvider, LocalProvider, PBSProProvider, SlurmProvider, TorqueProvider

from porter.errors import PipelineDefinitionError
from porter.pipeline import site_config
from porter.pipeline._parsl import SITE_EXAMPLES

PROVIDERS = {
    "local": LocalProvider,
    "slurm": SlurmProvider,
    "pbs": PBSProProvider,
    "torque": TorqueProvider,
    "condor": CondorProvider,
}


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_bundled_sites_build(name: str) -> None:
    config = site_config(SITE_EXAMPLES / f"{name}.yaml")
    (htex,) = config.executors
    assert htex.label == "porter"
    assert isinstance(htex.provider, PROVIDERS[name])


def test_kubernetes_site_creates_its_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Kubernetes site submits a pod through the API server named in the kubeconfig (here: one on loopback)."""
    created: list[dict[str, object]] = []

    class ApiServer(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            created.append({"path": self.path, "pod": body})
            reply = json.dumps({"kind": "Pod", "apiVersion": "v1", "metadata": body["metadata"]}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: t, cluster: {{server: 'http://127.0.0.1:{server.server_port}'}}}}]\n"
        "contexts: [{name: t, context: {cluster: t, user: t}}]\ncurrent-context: t\n"
        "users: [{name: t, user: {token: test}}]\n"
    )
    import kubernetes.config.kube_config

    # The client reads $KUBECONFIG once, when imported; point its default at this file instead.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    try:
        provider = site_config(SITE_EXAMPLES / "kubernetes.yaml").executors[0].provider
        provider.submit("process_worker_pool.py --max_workers_per_node 4", 1, job_name="porter-test")
    finally:
        server.shutdown()
    ((request),) = created
    assert request["path"] == "/api/v1/namespaces/porter-batch/pods"
    (container,) = request["pod"]["spec"]["containers"]  # type: ignore[index]
    assert container["image"] == "ghcr.io/porter-survey/porter:latest"
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert "process_worker_pool.py --max_workers_per_node 4" in " ".join(
        container["args"] + container.get("command", [])
    )


def fake_command(bin_dir: Path, name: str, reply: str) -> Path:
    """A stand-in for a batch system's submit command that records the script it was given."""
    log = bin_dir / f"{name}.log"
    script = bin_dir / name
    script.write_text(
        f'#!/bin/sh\necho "$@" > {log}\nfor a in "$@"; do last="$a"; done\ncat "$last" >> {log}\necho "{reply}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


@pytest.mark.parametrize(
    ("name", "command", "reply", "expected"),
    [
        (
            "slurm",
            "sbatch",
            "Submitted batch job 4242",
            ["#SBATCH --partition=roma", "#SBATCH --account=rubin:production", "#SBATCH --time=240"],
        ),
        ("pbs", "qsub", "4242.pbs", ["-q workq", "-A survey", "#PBS -l walltime=02:00:00"]),
        ("torque", "qsub", "4243.torque", ["-q batch", "#PBS -l walltime=02:00:00", "#PBS -l nodes=1"]),
        (
            "condor",
            "condor_submit",
            "1 job(s) submitted to cluster 4242.",
            ["RequestCpus = 8", "RequestMemory = 16384", 'OpSysAndVer == "AlmaLinux9"'],
        ),
    ],
)
def test_sites_submit_through_the_batch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, command: str, reply: str, expected: list[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = fake_command(bin_dir, command, reply)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    provider = site_config(SITE_EXAMPLES / f"{name}.yaml").executors[0].provider
    provider.script_dir = str(tmp_path)
    job = provider.submit("process_worker_pool.py --max_workers_per_node 32", 1, job_name="porter.test")
    assert reply.split()[-1].rstrip(".").split(".")[0].split()[-1] in str(job)
    submitted = log.read_text()  # the command line, then the file it was given
    for path in tmp_path.glob("*.script"):  # HTCondor's submit file points at the worker script
        submitted += path.read_text()
    for line in expected:
        assert line in submitted, submitted
    assert "process_worker_pool.py --max_workers_per_node 32" in submitted


@pytest.mark.parametrize(
    ("site", "message"),
    [
        ({"provider": "slurmm"}, r"unknown provider 'slurmm'.*Did you mean 'slurm'"),
        ({"provider": "slurm", "launcher": "srunn"}, r"unknown launcher 'srunn'"),
        ({"provider": "slurm", "provider_options": {"partitionn": "x"}}, r"bad provider_options for slurm"),
        ({"provder": "slurm"}, r"unknown key 'provder'.*Did you mean 'provider'"),
    ],
)
def test_bad_sites_name_the_problem(site: dict[str, object], message: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=message):
        site_config(site)
