"""A SIGKILLed ``porter pipeline run -j 2`` submitter: its workers die with it, and either way of resuming
(``restart``, or ``run --extend-run --skip-existing-in``) ends with a report that matches the files and
outputs byte-identical to a clean run (issue 14).

The pipeline is the demo DRP's per-detector and per-visit processing on the generated survey's raws,
next to the small stats task, whose detector-0 quanta wait at a gate file: the kill lands while a
worker is inside a quantum and part of the run is done, however fast or slow the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import DRP_YAML, SURVEY_INPUTS, pool_run
from porter import Butler
from porter.pipeline import (
    InProcessExecutor,
    Pipeline,
    RunState,
    build_quantum_graph,
    execute_graph,
    load_run_graph,
    report_run,
)
from porter.pipeline._processes import ProcessId, is_alive, process_start, this_process
from test_cli import run as cli

RUN = "u/recovery/drp"
CLEAN = "u/recovery/clean"
POLL = 0.1
POLLS = 600
"""Polls of /proc (60 s at POLL) before deciding the workers outlived their submitter: a cap, not a timing claim."""


def test_process_identity() -> None:
    """A process is host, PID and start time: a reused PID, a zombie or another host's process is not 'alive'."""
    me = this_process()
    assert is_alive(me) is True
    assert is_alive(ProcessId(me.host, me.pid, "another-start")) is False  # the same PID, another process
    assert is_alive(ProcessId(f"not-{me.host}", me.pid, me.start)) is None  # cannot be seen from here
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = ProcessId(me.host, child.pid, process_start(child.pid))
    for _ in range(POLLS):  # exited but not reaped yet: a zombie, which writes nothing
        if is_alive(gone) is False:
            break
        time.sleep(POLL)
    assert is_alive(gone) is False
    child.wait()
    assert is_alive(gone) is False


def recovery_pipeline(tmp_path: Path, gate: Path) -> Path:
    """DRP step 1 and 2 (isr, calibrate, consolidateVisit) plus per-exposure stats whose detector 0 waits at ``gate``."""
    path = tmp_path / "recovery.yaml"
    path.write_text(
        f"""
instrument: SynthCam
imports:
  - location: {DRP_YAML}
    include: [isr, calibrate, consolidateVisit]
tasks:
  stats:
    class: pipeline_tasks.ImageStatsTask
    config: {json.dumps({"gate": str(gate), "gate_detector": 0})}
  visitStats: pipeline_tasks.VisitStatsTask
"""
    )
    return path


def session_processes(session: int) -> list[int]:
    """Live processes of a session (zombies run nothing, so they do not count)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgrp, sid = text[text.rindex(")") + 2 :].split()[:4]
        if int(sid) == session and state not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def kill_submitter_mid_run(
    butler: Butler, pipeline: Path, gate: Path, before_kill: Callable[[int], None] | None = None
) -> None:
    """Start ``porter pipeline run -j 2`` in its own session, SIGKILL it mid-run; assert its workers die too.

    ``before_kill(pid)`` is called while the worker with that PID waits at the gate.
    """
    cmd, env = pool_run(butler.root, pipeline, RUN)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    # Wait for a worker at the gate and a quantum recorded as done; the cap only turns a broken run into a
    # failure instead of a hang.
    state = RunState(butler.registry.db)
    waiting: list[Path] = []
    succeeded = 0
    for _ in range(6000):
        if proc.poll() is not None:
            break
        waiting = list(gate.parent.glob(f"{gate.name}.*"))
        succeeded = sum(r.status == "succeeded" for r in state.records(RUN)) if waiting else 0
        if waiting and succeeded:
            break
        time.sleep(POLL)
    if not (waiting and succeeded):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(
            f"no worker at the gate ({waiting}) or no quantum done ({succeeded}): {proc.communicate()[0]}"
        )
    children = [p for p in session_processes(proc.pid) if p != proc.pid]
    assert children, "the pool's workers should be running"
    if before_kill is not None:
        try:
            before_kill(int(waiting[0].suffix[1:]))
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()  # not communicate(): orphans would hold its output pipe open
    left: list[int] = children
    for _ in range(POLLS):
        left = session_processes(proc.pid)
        if not left:
            break
        time.sleep(POLL)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)  # do not leave them writing into the next test
    output = proc.communicate()[0]
    assert not left, f"processes of the killed submitter {proc.pid} still alive: {left}\n{output}"
    gate.touch()  # the resumed run's quanta go straight through


def assert_report_matches_files(butler: Butler, run: str) -> dict[str, int]:
    """Each quantum is reported succeeded exactly when all its outputs exist with their files; none 'running'."""
    report = report_run(butler, run)
    graph = load_run_graph(butler, run)
    present = {q.id: all(butler.exists(r, full_check=True) for r in q.all_outputs()) for q in graph.quanta}
    for q in graph.quanta:
        status = report.status_of[q.id]
        assert (status == "succeeded") == present[q.id], (q.describe(), status, present[q.id])
    totals = report.totals()
    assert totals["running"] == 0 and totals["failed"] == 0, dict(totals)
    assert totals["succeeded"] == sum(present.values()), dict(totals)
    assert totals["pending"] + totals["blocked"] == len(graph) - sum(present.values()), dict(totals)
    return dict(totals)


def clean_run(butler: Butler, pipeline: Path) -> None:
    """The same pipeline, uninterrupted, into another run (the gate is open by now)."""
    graph = build_quantum_graph(butler, Pipeline.from_uri(pipeline), collections=SURVEY_INPUTS, run=CLEAN)
    with InProcessExecutor() as ex:
        assert execute_graph(butler, graph, ex).ok


def assert_identical_to_clean(butler: Butler) -> int:
    """Every output of RUN has the bytes of the same dataset in the clean run; returns how many were compared."""
    graph = load_run_graph(butler, RUN)
    compared = 0
    for name in sorted({r.dataset_type.name for q in graph.quanta for r in q.all_outputs()}):
        ours = {r.data_id: r for r in butler.query_datasets(name, RUN)}
        theirs = {r.data_id: r for r in butler.query_datasets(name, CLEAN)}
        assert ours.keys() == theirs.keys(), name
        uris = butler.get_many_uris([*ours.values(), *theirs.values()])
        for data_id, ref in ours.items():
            a = Path(str(uris[ref]).removeprefix("file://")).read_bytes()
            b = Path(str(uris[theirs[data_id]]).removeprefix("file://")).read_bytes()
            assert a == b, f"{name} {data_id} differs from the clean run"
            compared += 1
    return compared


def _killed_run(
    butler: Butler, tmp_path: Path, before_kill: Callable[[int], None] | None = None
) -> tuple[Path, dict[str, int]]:
    gate = tmp_path / "gate"
    pipeline = recovery_pipeline(tmp_path, gate)
    kill_submitter_mid_run(butler, pipeline, gate, before_kill)
    totals = assert_report_matches_files(butler, RUN)
    assert 0 < totals["succeeded"] < sum(totals.values()), totals
    return pipeline, totals


def test_killed_submitter_then_restart(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey

    def refused_while_running(worker: int) -> None:
        """A restart while the run's workers live would race them: refused, naming them, with nothing changed."""
        out = cli("pipeline", "restart", str(butler.root), RUN, "-j", "2", ok=False)
        assert "still being executed" in out and str(worker) in out and "kill" in out, out
        state = RunState(butler.registry.db)
        assert "restart" not in [label for _, label, _ in state.graphs_of(RUN)]
        assert not [r for r in state.records(RUN) if r.status == "interrupted"]

    pipeline, _ = _killed_run(butler, tmp_path, refused_while_running)
    cli("pipeline", "restart", str(butler.root), RUN, "-j", "2")
    totals = assert_report_matches_files(butler, RUN)
    assert set(k for k, v in totals.items() if v) == {"succeeded"}, totals
    clean_run(butler, pipeline)
    assert assert_identical_to_clean(butler) > 0


def test_killed_submitter_then_extend_run(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    pipeline, _ = _killed_run(butler, tmp_path)
    cli(
        "pipeline",
        "run",
        str(butler.root),
        str(pipeline),
        "-i",
        ",".join(SURVEY_INPUTS),
        "--output-run",
        RUN,
        "--extend-run",
        "--skip-existing-in",
        RUN,
        "--clobber-outputs",  # the quantum a killed worker was inside may have written some of its outputs
        "-j",
        "2",
    )
    totals = assert_report_matches_files(butler, RUN)
    assert set(k for k, v in totals.items() if v) == {"succeeded"}, totals
    # A restart now has nothing to do, and records nothing as failed or blocked.
    out = json.loads(cli("pipeline", "restart", str(butler.root), RUN, "--json"))
    assert sum(out["counts"].values()) == 0, out
    assert assert_report_matches_files(butler, RUN) == totals
    clean_run(butler, pipeline)
    assert_identical_to_clean(butler)
