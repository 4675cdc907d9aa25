"""Running pipelines: the mini DRP end to end with every executor, failures, retries, limits, restart, provenance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import DRP_YAML, SURVEY_INPUTS, pool_run
from pipeline_tasks import ImageStatsTask
from porter import Butler
from porter.demo._checks import astrometric_residuals
from porter.images import Exposure
from porter.pipeline import (
    ExecutionOptions,
    Executor,
    InProcessExecutor,
    LocalPoolExecutor,
    ParslExecutor,
    Pipeline,
    RunState,
    build_quantum_graph,
    dataset_provenance,
    execute_graph,
    report_run,
    restart_run,
    run_prov_json,
    submit_steps,
)

RUN = "u/test/drp"


def executor(kind: str) -> Executor:
    if kind == "pool":
        return LocalPoolExecutor(2)
    if kind == "parsl":
        return ParslExecutor(workers=2)
    return InProcessExecutor()


def assert_outputs_exactly_once(butler: Butler, run: str) -> None:
    """Every quantum succeeded and each output dataset exists once, with its file, and fsck is clean."""
    report = report_run(butler, run)
    totals = report.totals()
    assert set(totals) == {"succeeded"}, report.to_dict()
    from porter.pipeline import load_run_graph

    graph = load_run_graph(butler, run)
    expected = Counter(r.dataset_type.name for q in graph.quanta for r in q.all_outputs())
    for name, n in expected.items():
        refs = butler.query_datasets(name, run, find_first=False)
        assert len(refs) == n, name
        assert len({r.data_id for r in refs}) == n, f"duplicate {name}"
        assert all(butler.exists(r, full_check=True) for r in refs[:5])
    assert butler.fsck().ok, butler.fsck().findings


@pytest.mark.parametrize("kind", ["in-process", "pool", "parsl"])
def test_drp_end_to_end(survey: tuple[Butler, Any], kind: str) -> None:
    butler, _ = survey
    pipe = Pipeline.from_uri(DRP_YAML)
    with executor(kind) as ex:
        results = submit_steps(
            butler,
            pipe,
            ["step1", "step2", "step3", "step4"],
            ex,
            collections=SURVEY_INPUTS,
            run=RUN,
            group_size=2,
        )
    assert [r.step for r in results] == ["step1", "step2", "step3", "step4"]
    assert all(not r.stopped and r.failure_rate == 0 for r in results)
    assert_outputs_exactly_once(butler, RUN)
    # Run state records where and how each quantum ran.
    records = RunState(butler.registry.db).records(RUN)
    assert {r.task for r in records} == set(pipe.tasks)
    assert all(r.host and r.wall is not None and r.versions["porter"] for r in records)
    # Submitting again does nothing new: everything is skipped.
    with executor("in-process") as ex:
        again = submit_steps(
            butler, pipe, ["step1", "step2", "step3", "step4"], ex, collections=SURVEY_INPUTS, run=RUN
        )
    assert all(r.n_quanta == 0 and r.skipped > 0 for r in again)


def test_science_step1_matches_truth(survey: tuple[Butler, Any]) -> None:
    """Astrometric scatter and zero points from step 1 agree with the truth within the injected noise."""
    butler, truth = survey
    pipe = Pipeline.from_uri(f"{DRP_YAML}#step1")
    graph = build_quantum_graph(butler, pipe, collections=SURVEY_INPUTS, run=RUN)
    assert execute_graph(butler, graph, InProcessExecutor()).ok
    spec = truth.spec
    visits = {v.id: v for v in truth.visits}
    zp_offsets, zp_errors = [], []
    for ref in butler.query_datasets("calexpSummary", RUN):
        s = butler.get(ref)
        zp_offsets.append(s["zeropoint"] - visits[s["visit"]].zeropoint)
        zp_errors.append(s["zeropoint_err"])
        # The fitted WCS shift undoes the pointing error the generator injected (0.4"/pixel).
        err = visits[s["visit"]].wcs_error
        assert abs(s["wcs_shift_pixels"][0] * spec.pixel_scale + err[0]) < 0.1
        assert abs(s["wcs_shift_pixels"][1] * spec.pixel_scale - err[1]) < 0.1
    zp_offsets_arr = np.array(zp_offsets)
    # Zero points: the reference catalog's magnitudes carry 0.01 mag noise; the fits' own errors say how well each did.
    assert np.sqrt(np.mean(zp_offsets_arr**2)) < max(4 * float(np.median(zp_errors)), 0.01)
    assert abs(np.mean(zp_offsets_arr)) < 0.01
    seps = astrometric_residuals(butler, RUN)
    rms_mas = float(np.sqrt(np.mean(np.square(seps)))) * 1000
    # Injected: 1500 mas pointing error; reference positions good to 10 mas; PSF ~0.9" at S/N > 50 centroids to ~20 mas.
    assert len(seps) > 50
    assert rms_mas < 60, rms_mas


def stats_pipeline(tmp_path: Path, task: str = "pipeline_tasks.ImageStatsTask", **config: object) -> Pipeline:
    """Writes ``stats.yaml`` (per-exposure stats, then a per-visit gather) with ``config`` for ``task``."""
    path = tmp_path / "stats.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            instrument: SynthCam
            tasks:
              stats:
                class: {task}
                config: {json.dumps(config)}
              visitStats: pipeline_tasks.VisitStatsTask
            subsets:
              step1: [stats]
              step2: [visitStats]
            """
        )
    )
    return Pipeline.from_uri(path)


def test_failure_blocks_descendants_then_restart(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    marker = tmp_path / "broken"
    marker.touch()
    pipe = stats_pipeline(tmp_path, fail_detector=1, fail_marker=str(marker))
    graph = build_quantum_graph(butler, pipe, collections=SURVEY_INPUTS, run=RUN)
    with LocalPoolExecutor(2) as ex:
        summary = execute_graph(butler, graph, ex)
    n_exposures = len({q.data_id["exposure"] for q in graph.quanta if q.task == "stats"})
    assert summary.counts["failed"] == n_exposures
    assert summary.counts["blocked"] == n_exposures  # one visit per exposure, each gathers detector 1
    assert summary.counts["succeeded"] == len(graph) - 2 * n_exposures
    report = report_run(butler, RUN)
    assert (
        report.tasks["stats"]["failed"] == n_exposures
        and report.tasks["visitStats"]["blocked"] == n_exposures
    )
    (error,) = report.errors
    assert error["count"] == n_exposures and "detector 1 is broken" in error["message"]
    assert all(e["detector"] == 1 for e in error["examples"])
    # The failed quanta left nothing behind; the repository is consistent.
    assert {r.data_id["detector"] for r in butler.query_datasets("rawStats", RUN)} == {0, 2, 3}
    assert butler.fsck().ok, butler.fsck().findings
    # Fix the cause and restart: only the failed and blocked quanta run.
    marker.unlink()
    with LocalPoolExecutor(2) as ex:
        again = restart_run(butler, RUN, ex)
    assert again.counts == Counter({"succeeded": 2 * n_exposures})
    assert_outputs_exactly_once(butler, RUN)
    records = {r.quantum_id: r for r in RunState(butler.registry.db).records(RUN)}
    retried = [r for r in records.values() if r.data_id.get("detector") == 1]
    assert retried and all(r.attempts == 2 for r in retried)


def test_transient_errors_are_retried(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    pipe = stats_pipeline(tmp_path, flaky_dir=str(flaky))
    graph = build_quantum_graph(butler, pipe, collections=SURVEY_INPUTS, run=RUN, where="detector = 0")
    summary = execute_graph(
        butler, graph, InProcessExecutor(), options=ExecutionOptions(retries=1, backoff=0.01)
    )
    assert summary.ok
    stats = [r for r in RunState(butler.registry.db).records(RUN) if r.task == "stats"]
    assert stats and all(r.attempts == 2 and r.status == "succeeded" for r in stats)
    # Without retries the same transient error is a failure.
    for f in flaky.iterdir():
        f.unlink()
    graph = build_quantum_graph(
        butler, pipe, collections=SURVEY_INPUTS, run="u/test/noretry", where="detector = 0"
    )
    summary = execute_graph(butler, graph, InProcessExecutor(), options=ExecutionOptions(retries=0))
    assert summary.counts["failed"] == len(stats)
    assert {f["error_type"] for f in summary.failures} == {"TransientError"}


class WrappingStatsTask(ImageStatsTask):
    """ImageStatsTask that re-raises whatever stops it as another error.

    A limit's interrupt lands wherever the quantum is, and code it passes through may do this (the
    datastore reports any error while decoding a file as a damaged file): the run must still record
    the limit as the reason.
    """

    def run(self, raw: Exposure, data_id: Any = None) -> dict[str, Any]:
        try:
            return super().run(raw, data_id)
        except Exception as exc:
            raise RuntimeError("something under the task went wrong") from exc


@pytest.mark.parametrize(
    "task",
    ["pipeline_tasks.ImageStatsTask", "test_pipeline_execution.WrappingStatsTask"],
    ids=["raw", "wrapped"],
)
@pytest.mark.parametrize(
    ("config", "options", "error", "reason"),
    [
        (
            {},
            ExecutionOptions(retries=0, timeout=0.5),
            "QuantumTimeoutError",
            "ran longer than its timeout of 0.5 s",
        ),
        (
            {"allocate_mb": 600},
            ExecutionOptions(retries=0, memory_limit_mb=400),
            "MemoryLimitError",
            "more than its memory limit of 400 MB",
        ),
    ],
    ids=["timeout", "memory"],
)
def test_limits(
    survey: tuple[Butler, Any],
    tmp_path: Path,
    task: str,
    config: dict[str, Any],
    options: ExecutionOptions,
    error: str,
    reason: str,
) -> None:
    """A quantum that would run for ever (or hold 600 MB for ever) is stopped by its limit and failed with it.

    The task waits at a gate this test never opens, so the only way the quantum ends is the limit
    firing (were it broken, the gate gives up after ten minutes with another error): the test checks
    what happened, not how long it took, and holds on a loaded machine.
    """
    butler, _ = survey
    stats_pipeline(tmp_path, task, gate=str(tmp_path / "never-opened"), **config)
    pipe = Pipeline.from_uri(f"{tmp_path / 'stats.yaml'}#step1")
    graph = build_quantum_graph(
        butler, pipe, collections=SURVEY_INPUTS, run=RUN, where="detector = 0 AND exposure = 1000"
    )
    summary = execute_graph(butler, graph, InProcessExecutor(), options=options)
    assert dict(summary.counts) == {"failed": 1}, summary.failures
    (failure,) = summary.failures
    assert failure["error_type"] == error and reason in failure["message"], failure
    # The run's own record says the same, with the peak memory that tripped the memory limit.
    (record,) = RunState(butler.registry.db).records(RUN)
    assert (record.status, record.error_type) == ("failed", error)
    assert record.message is not None and reason in record.message
    if error == "MemoryLimitError":
        assert record.max_rss_mb is not None and record.max_rss_mb > 400
    assert not butler.query_datasets("rawStats", RUN, explain=False)


def test_missing_input_fails_clearly(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    pipe = stats_pipeline(tmp_path)
    graph = build_quantum_graph(butler, pipe, collections=SURVEY_INPUTS, run=RUN)
    victim = next(q for q in graph.quanta if q.task == "stats")
    (raw,) = victim.inputs["raw"]
    butler.prune_datasets(
        [raw], unstore=True, disassociate=False
    )  # the file goes; the dataset stays registered
    summary = execute_graph(butler, graph, InProcessExecutor(), options=ExecutionOptions(retries=0))
    assert summary.counts["failed"] == 1 and summary.counts["blocked"] == 1
    failure = summary.failures[0]
    assert failure["error_type"] == "ArtifactMissingError" and "raw@" in failure["message"]
    # The only inconsistency is the one this test made; the broken quantum added none.
    assert [(f.kind, f.path) for f in butler.fsck().findings] == [("datasets without files", "raw")]


def test_killed_worker_then_restart(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    """SIGKILL a pool worker mid-quantum: the run stops with lost quanta; restart finishes it, every output once.

    Detector 0's quanta wait at a gate while the other detectors' run, so the kill lands in a quantum
    with part of the run done, however fast or slow the machine is (a per-quantum sleep made that a
    race the test could lose under load).
    """
    butler, _ = survey
    pipeline = tmp_path / "stats.yaml"
    gate = tmp_path / "gate"
    stats_pipeline(tmp_path, gate=str(gate), gate_detector=0)
    cmd, env = pool_run(butler.root, pipeline, RUN)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = RunState(butler.registry.db)
    waiting: list[Path] = []
    succeeded = 0
    # Wait for a worker at the gate and another quantum recorded as done; the deadline only turns a
    # broken run into a failure instead of a hang.
    give_up = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < give_up:
        waiting = list(tmp_path.glob(f"{gate.name}.*"))
        succeeded = sum(r.status == "succeeded" for r in state.records(RUN))
        if waiting and succeeded:
            break
        time.sleep(0.1)
    if not (waiting and succeeded):
        proc.kill()
        pytest.fail(
            f"no worker waiting at the gate ({waiting}) or no quantum done ({succeeded}): {proc.communicate()[0]}"
        )
    (at_gate,) = waiting
    os.kill(int(at_gate.suffix[1:]), signal.SIGKILL)  # the worker in detector 0's quantum
    gate.touch()  # the restart's quanta go straight through
    out, _ = proc.communicate(
        timeout=600
    )  # a hang guard, not a bound: the run ends as soon as it sees the loss
    assert proc.returncode == 1, out
    totals = report_run(butler, RUN).totals()
    assert 0 < totals["succeeded"] < sum(totals.values()), totals
    with LocalPoolExecutor(2) as ex:
        assert restart_run(butler, RUN, ex).ok
    assert_outputs_exactly_once(butler, RUN)


def test_provenance_back_to_the_raws(survey: tuple[Butler, Any]) -> None:
    butler, _ = survey
    pipe = Pipeline.from_uri(DRP_YAML)
    with InProcessExecutor() as ex:
        submit_steps(butler, pipe, ["step1", "step2", "step3"], ex, collections=SURVEY_INPUTS, run=RUN)
    (obj, *_) = butler.query_datasets("objectTable", RUN)
    tree = dataset_provenance(butler, str(obj.id))
    assert tree.quantum is not None and tree.quantum.task == "detectObjects"
    assert tree.quantum.config_hash == pipe.tasks["detectObjects"].config_hash
    leaves: set[str] = set()
    tasks: set[str] = set()

    def walk(node: Any) -> None:
        if node.quantum is None:
            leaves.add(node.dataset_type)
            return
        tasks.add(node.quantum.task)
        for child in node.inputs:
            walk(child)

    walk(tree)
    assert tasks == {"detectObjects", "makeCoadd", "calibrate", "isr"}
    assert leaves == {"raw", "bias", "ref_cat", "skyMap"}
    doc = run_prov_json(butler, RUN)
    n_quanta = sum(report_run(butler, RUN).totals().values())
    assert len(doc["activity"]) == n_quanta
    outputs = sum(1 for _ in doc["wasGeneratedBy"])
    assert outputs == sum(
        len(butler.query_datasets(t, RUN))
        for t in (
            "postISRCCD",
            "calexp",
            "src",
            "calexpSummary",
            "sourceTable_visit",
            "visitSummary",
            "deepCoadd",
            "objectTable",
            "objectTruthMatch",
        )
    )
    for used in doc["used"].values():
        assert used["prov:activity"] in doc["activity"] and used["prov:entity"] in doc["entity"]


def test_deferred_input_reads_only_a_cutout(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    path = tmp_path / "cut.yaml"
    path.write_text("instrument: SynthCam\ntasks:\n  cut: pipeline_tasks.CutoutTask\n")
    graph = build_quantum_graph(
        butler, Pipeline.from_uri(path), collections=SURVEY_INPUTS, run=RUN, where="detector = 0"
    )
    assert execute_graph(butler, graph, InProcessExecutor()).ok
    for q in graph.quanta:
        (raw,) = q.inputs["raw"]
        corner = butler.get(q.outputs["corner"][0])
        assert corner.shape == (16, 16)
        assert np.array_equal(corner, butler.get(raw).image[:16, :16])


def test_step_failure_rate_stops_the_submission(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    pipe = stats_pipeline(tmp_path, fail_detector=3)
    with InProcessExecutor() as ex:
        results = submit_steps(
            butler,
            pipe,
            ["step1", "step2"],
            ex,
            collections=SURVEY_INPUTS,
            run=RUN,
            max_failure_rate=0.1,
            options=ExecutionOptions(retries=0),
        )
    (step1,) = results  # step2 never started
    assert step1.stopped and step1.failure_rate == pytest.approx(0.25)
    assert "visitStats" not in {t.name for t in butler.query_dataset_types()}  # step 2 was never prepared
    # A lenient threshold lets the next step run.  As in Rubin's step-wise processing, a later step's
    # graph is built from what earlier steps delivered: each visit gathers the detectors that worked.
    with InProcessExecutor() as ex:
        results = submit_steps(
            butler,
            pipe,
            ["step1", "step2"],
            ex,
            collections=SURVEY_INPUTS,
            run=RUN,
            max_failure_rate=0.5,
            options=ExecutionOptions(retries=0),
        )
    assert [r.step for r in results] == ["step1", "step2"]
    assert results[0].counts == {"failed": step1.counts["failed"]}  # finished quanta were skipped
    summaries = [butler.get(r) for r in butler.query_datasets("visitStats", RUN)]
    assert summaries and all(s["n"] == 3 for s in summaries)


def test_drp_on_postgresql_and_s3(pg_server: str, s3_server: str, tmp_path: Path) -> None:
    """Many workers on one PostgreSQL registry with an S3 datastore: steps 1 and 2 with the warm pool."""
    import uuid

    from conftest import SMALL_SURVEY, TEST_BUCKET, drop_schema
    from porter.demo import SurveySpec, generate_survey

    schema = f"t_{uuid.uuid4().hex[:12]}"
    butler = Butler.create(
        tmp_path / "repo", registry=pg_server, namespace=schema, datastore=f"s3://{TEST_BUCKET}/{schema}"
    )
    try:
        generate_survey(butler, SurveySpec(**SMALL_SURVEY))
        pipe = Pipeline.from_uri(DRP_YAML)
        with LocalPoolExecutor(2) as ex:
            results = submit_steps(butler, pipe, ["step1", "step2"], ex, collections=SURVEY_INPUTS, run=RUN)
        assert all(r.failure_rate == 0 for r in results), [g.failures[:2] for r in results for g in r.groups]
        assert_outputs_exactly_once(butler, RUN)
        assert str(butler.get_uri(butler.query_datasets("calexp", RUN)[0])).startswith("s3://")
    finally:
        butler.close()
        drop_schema(pg_server, schema)


def test_rerun_after_a_put_killed_mid_write(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    """A put killed after reserving its path (journal row + partial file) does not stop the quantum's re-run."""
    butler, _ = survey
    pipe = stats_pipeline(tmp_path)
    graph = build_quantum_graph(
        butler,
        Pipeline.from_uri(f"{tmp_path / 'stats.yaml'}#step1"),
        collections=SURVEY_INPUTS,
        run=RUN,
        where="detector = 0",
    )
    from porter.pipeline import prepare_run

    graph_id = prepare_run(butler, graph)
    (ref,) = graph.quanta[0].outputs["stats"]
    full = butler._expander.expand(ref.data_id)
    plan = butler.datastore.plan(ref.dataset_type, full.mapping, ref.run, ref.id)
    butler.datastore.reserve([plan])  # what the killed put had done: path journaled as writing ...
    plan.uri.write(b"half a file")  # ... and some bytes written
    summary = execute_graph(
        butler, graph, InProcessExecutor(), graph_id=graph_id, options=ExecutionOptions(retries=0)
    )
    assert summary.ok, summary.failures
    assert butler.get(ref)["median"] > 0
    assert butler.fsck().ok
    del pipe
