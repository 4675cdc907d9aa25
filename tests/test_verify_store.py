"""The metric store: measurements stored once per (metric, data ID, run), checked on arrival.

Against real repository databases (SQLite and PostgreSQL) with the lsst/verify-format
declarations in tests/data/verify/validate_drp (AM1: minimum 20, design 10, stretch 5 mas, a
previous-release baseline and an alert after 2 failing runs; PA1: per-band specs scoped by
``metadata_query``, a last-5-runs baseline).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from porter.cli import app
from porter.verify import (
    Batch,
    JobFormatError,
    MeasurementValueError,
    Metric,
    MetricSet,
    MetricStore,
    NewMeasurement,
    Provenance,
    SpecificationSet,
    UnitMismatchError,
    UnknownMetricError,
    VerifyError,
    data_id_from_key,
    data_id_key,
    import_job,
    open_store,
    replay,
)
from porter.verify._store import pack_flags, unpack_flags

DATA = Path(__file__).parent / "data" / "verify"
PACKAGE = DATA / "validate_drp"
JOB = DATA / "jobs" / "validate_drp_hsc.verify.json"
AM1, PA1 = "validate_drp.AM1", "validate_drp.PA1"
R = {"tract": 9813, "band": "r"}
I = {"tract": 9813, "band": "i"}  # noqa: E741


@pytest.fixture
def store(repo: Any) -> MetricStore:
    return open_store(repo.registry.db, PACKAGE)[0]


def prov(run: str, t: float, **kw: Any) -> Provenance:
    return Provenance(run=run, time=t, **kw)


def count(store: MetricStore) -> int:
    return len(list(store.outcomes()))


def test_a_measurement_is_stored_in_its_metrics_unit_and_checked_at_every_level(store: MetricStore) -> None:
    result = store.record(
        [NewMeasurement(AM1, 0.0128, "arcsec", R), NewMeasurement(AM1, 4.0, "marcsec", I)], prov("run1", 1.0)
    )
    assert (result.stored, result.replaced) == (2, 0)
    assert result.failed == {"minimum": 0, "design": 1, "stretch": 1}
    by_band = {o.data_id["band"]: o for o in store.outcomes()}
    assert by_band["r"].value == pytest.approx(12.8)  # 0.0128 arcsec in the metric's marcsec
    assert by_band["r"].unit == "marcsec"
    assert by_band["r"].levels == {"minimum": True, "design": False, "stretch": False}
    assert by_band["i"].levels == {"minimum": True, "design": True, "stretch": True}
    assert by_band["r"].data_id == R and by_band["r"].run == "run1"


def test_recording_a_run_again_replaces_its_measurements(store: MetricStore) -> None:
    store.record(
        [NewMeasurement(AM1, 12.0, "mas", R), NewMeasurement(AM1, 13.0, "mas", I)], prov("run1", 1.0)
    )
    again = store.record([NewMeasurement(AM1, 25.0, "mas", R)], prov("run1", 1.0))
    assert again.replaced == 1
    stored = {o.data_id["band"]: o.value for o in store.outcomes()}
    assert stored == {"r": 25.0, "i": 13.0}
    trend = store.series(AM1)  # the packed trend copy is merged the same way
    assert sorted(zip([d["band"] for d in trend.data_id], trend.value.tolist(), strict=True)) == [
        ("i", 13.0),
        ("r", 25.0),
    ]
    # within one batch, a later measurement of the same metric and data ID wins
    store.record([NewMeasurement(AM1, 1.0, "mas", R), NewMeasurement(AM1, 2.0, "mas", R)], prov("run2", 2.0))
    assert [o.value for o in store.outcomes(run="run2")] == [2.0]


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        (NewMeasurement("validate_drp.AM2", 1.0, "mas", R), UnknownMetricError, "validate_drp.AM1"),
        (NewMeasurement(AM1, float("nan"), "mas", R), MeasurementValueError, "NaN"),
        (NewMeasurement(AM1, 1.0, "mag", R), UnitMismatchError, "'mag'"),
        (NewMeasurement(AM1, 1.0, "mas", {"band": "r"}), VerifyError, "lacks tract"),
    ],
)
def test_a_bad_measurement_refuses_the_whole_batch(
    store: MetricStore, bad: NewMeasurement, error: type[Exception], words: str
) -> None:
    store.record([NewMeasurement(AM1, 12.0, "mas", R)], prov("run1", 1.0))
    before = list(store.outcomes())
    with pytest.raises(error, match=words) as info:
        store.record([NewMeasurement(AM1, 3.0, "mas", I), bad], prov("run2", 2.0))
    assert "nothing was stored" in str(info.value) or error is UnknownMetricError
    assert list(store.outcomes()) == before
    assert store.provenance("run2") is None


def test_concurrent_writers_of_one_run_leave_each_measurement_once(repo: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def write(k: int) -> int:
        store = open_store(repo.registry.db, PACKAGE)[0]
        rows = [NewMeasurement(AM1, 10.0 + k, "mas", {"tract": t, "band": "r"}) for t in range(50)]
        return store.record(rows, prov("run1", 1.0)).stored

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(write, range(4))) == [50] * 4
    stored = list(MetricStore(repo.registry.db).outcomes())
    assert len(stored) == 50 and len({o.data_id["tract"] for o in stored}) == 50
    assert len({o.value for o in stored}) == 1  # one writer's batch, whole: the last to commit
    assert len(MetricStore(repo.registry.db).series(AM1)) == 50


def test_specs_scoped_by_metadata_apply_only_to_their_band(store: MetricStore) -> None:
    # PA1: design_gri 5 mmag applies to filter_name r; minimum_uzy 0.010 mag to z only; both to HSC only
    rows = [
        NewMeasurement(PA1, 6.0, "mmag", {"tract": 1, "band": "r", "filter_name": "r"}),
        NewMeasurement(PA1, 12.0, "mmag", {"tract": 1, "band": "z", "filter_name": "z"}),
        NewMeasurement(PA1, 6.0, "mmag", {"tract": 1, "band": "y", "filter_name": "y"}),
    ]
    store.record(rows, prov("run1", 1.0), metadata={"instrument": "HSC"})  # the specs are HSC's
    levels = {o.data_id["band"]: o.levels for o in store.outcomes()}
    assert levels["r"] == {"minimum": True, "design": False, "stretch": False}
    assert levels["z"] == {"minimum": False}  # 12 mmag > 0.010 mag, units converted
    assert levels["y"] == {}  # no spec applies


def test_last_n_baseline_is_per_data_id_so_one_bad_patch_is_not_averaged_away(store: MetricStore) -> None:
    def run(name: str, t: float, r: float, i: float) -> None:
        store.record(
            [
                NewMeasurement(PA1, r, "mmag", {"tract": 9813, "band": "r"}),
                NewMeasurement(PA1, i, "mmag", {"tract": 9813, "band": "i"}),
            ],
            prov(name, t),
        )

    for k in range(6):
        run(f"run{k}", float(k), 4.0 + 0.01 * k, 4.0)
    run("run6", 6.0, 6.0, 2.5)  # r much worse, i better: the mean over bands improves
    last = {o.data_id["band"]: o for o in store.outcomes(run="run6")}
    assert last["r"].baseline == pytest.approx(np.mean([4.0 + 0.01 * k for k in range(1, 6)]))  # the last 5
    assert last["r"].regressed and not last["i"].regressed
    before = {o.data_id["band"]: o for o in store.outcomes(run="run5")}
    assert not before["r"].regressed  # within the 5% tolerance


def test_previous_release_baseline_follows_the_marked_release(store: MetricStore) -> None:
    store.record([NewMeasurement(AM1, 10.0, "mas", R)], prov("dp1", 1.0))
    store.record([NewMeasurement(AM1, 11.0, "mas", R)], prov("dev", 2.0))
    assert next(store.outcomes(run="dev")).baseline is None  # no release yet
    store.mark_release("dp1", "DP1")
    store.record([NewMeasurement(AM1, 11.0, "mas", R)], prov("dev2", 3.0))
    outcome = next(store.outcomes(run="dev2"))
    assert outcome.baseline == 10.0 and outcome.regressed  # 10% worse than DP1, tolerance 5%
    with pytest.raises(VerifyError, match="no measurements"):
        store.mark_release("nope", "DP2")


def test_reference_run_baseline(repo: Any) -> None:
    metric = Metric(
        name="demo.zeropoint",
        unit="mag",
        direction="higher",
        baseline={"kind": "reference_run", "run": "golden", "tolerance": 0.01},
    )
    store = MetricStore(repo.registry.db, MetricSet([metric]), SpecificationSet())
    store.record([NewMeasurement("demo.zeropoint", 27.0, "mag", {})], prov("golden", 1.0))
    store.record([NewMeasurement("demo.zeropoint", 26.5, "mag", {})], prov("new", 2.0))
    store.record([NewMeasurement("demo.zeropoint", 26.9, "mag", {})], prov("newer", 3.0))
    assert next(store.outcomes(run="new")).regressed  # 1.9% lower, beyond 1%
    assert not next(store.outcomes(run="newer")).regressed


def test_series_and_summary_read_back(store: MetricStore) -> None:
    for k in range(5):
        store.record(
            [NewMeasurement(AM1, 10.0 + k, "mas", R), NewMeasurement(AM1, 30.0, "mas", I)],
            prov(f"run{k}", 100.0 + k, versions={"porter": f"1.{k}"}),
        )
    series = store.series(AM1, data_id=R)
    assert series.value.tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert series.run == [f"run{k}" for k in range(5)] and series.unit == "marcsec"
    assert len(store.series(AM1)) == 10
    assert len(store.series(AM1, since=103.0)) == 4
    (summary,) = store.summary("run4")
    assert (summary.count, summary.min, summary.max) == (2, 14.0, 30.0)
    assert summary.failed == {"minimum": 1, "design": 2, "stretch": 2}
    assert store.latest_runs() == {AM1: "run4"}
    with pytest.raises(UnknownMetricError, match="AM1"):
        store.series("validate_drp.AM")
    changed = store.provenance("run0").differences(store.provenance("run4"))  # type: ignore[union-attr]
    assert changed == {"versions.porter": ("1.0", "1.4")}


def test_a_job_file_imports_as_a_run_and_again_replaces(store: MetricStore, tmp_path: Path) -> None:
    job = json.loads(JOB.read_text())
    job["meta"]["tract"] = 9813  # AM1 and PA1 are declared over tract and band
    path = tmp_path / "validate_drp_hsc.verify.json"
    path.write_text(json.dumps(job))
    first = import_job(store, path)
    assert first.run == "validate_drp/1234"  # the CI build named in meta.env
    again = import_job(store, path)
    assert again.replaced == first.stored
    outcomes = list(store.outcomes())
    assert len(outcomes) == first.stored
    am1 = next(o for o in outcomes if o.metric == AM1)
    assert am1.data_id == {"tract": 9813, "band": "r"}  # band from lsst/verify's filter_name
    provenance = store.provenance("validate_drp/1234")
    assert provenance is not None and provenance.versions["validate_drp"] == "3e5f2a1"


def test_a_job_without_the_metrics_dimensions_or_with_a_nan_stores_nothing(
    store: MetricStore, tmp_path: Path
) -> None:
    path = tmp_path / "job.json"
    shutil.copy(JOB, path)  # its meta has no tract
    with pytest.raises(VerifyError, match="lacks tract"):
        import_job(store, path)
    job = json.loads(JOB.read_text())
    job["meta"]["tract"] = 1
    job["measurements"][1]["value"] = None
    path.write_text(json.dumps(job))
    with pytest.raises(JobFormatError, match=r"measurements\[1\]"):
        import_job(store, path)
    assert count(store) == 0


def test_alerts_fire_on_arrival_after_their_for_runs(repo: Any) -> None:
    store, hook = open_store(repo.registry.db, PACKAGE)
    assert hook is not None
    store.record([NewMeasurement(AM1, 25.0, "mas", R)], prov("run1", 1.0))
    assert [t.kind for t in hook.transitions] == []  # AM1 alerts after 2 failing runs
    store.record([NewMeasurement(AM1, 26.0, "mas", R)], prov("run2", 2.0))
    assert [(t.kind, t.level, t.run) for t in hook.transitions] == [("fired", "minimum", "run2")]
    store.record([NewMeasurement(AM1, 12.0, "mas", R)], prov("run3", 3.0))
    assert [t.kind for t in hook.transitions] == ["fired", "resolved"]
    # replaying the stored history through the rules offline finds the same
    offline = replay(list(store.outcomes()), store.metrics)
    assert [(t.kind, t.run) for t in offline] == [(t.kind, t.run) for t in hook.transitions]


def test_a_million_row_batch_shape_is_columnar(store: MetricStore) -> None:
    """Batch: names and data IDs given once and indexed (the benchmark's and the pipeline's form)."""
    data_ids = [{"tract": 9813, "band": b} for b in "gri"]
    batch = Batch(
        [AM1, PA1],
        np.array([0, 0, 0, 1, 1, 1]),
        data_ids,
        np.array([0, 1, 2, 0, 1, 2]),
        np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ["mas", "mmag"],
        np.array([0, 0, 0, 1, 1, 1]),
    )
    assert store.record(batch, prov("run1", 1.0)).stored == 6
    assert sorted((o.metric, o.data_id["band"], o.value) for o in store.outcomes()) == [
        (AM1, "g", 1.0), (AM1, "i", 3.0), (AM1, "r", 2.0), (PA1, "g", 4.0), (PA1, "i", 6.0), (PA1, "r", 5.0),
    ]  # fmt: skip


def test_a_writer_killed_before_commit_leaves_nothing(repo: Any, tmp_path: Path) -> None:
    job = json.loads(JOB.read_text())
    job["meta"]["tract"] = 9813
    path = tmp_path / "job.verify.json"
    path.write_text(json.dumps(job))
    repo_path = repo.root
    env = {**os.environ, "PORTER_STOP_AT": "verify-recording"}
    cmd = [
        sys.executable,
        "-m",
        "porter.cli",
        "verify",
        "ingest",
        str(repo_path),
        str(path),
        "--metrics",
        str(PACKAGE),
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "stopped at verify-recording" in line, line + proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = MetricStore(repo.registry.db)
    assert list(store.outcomes()) == [] and store.runs() == []
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list(MetricStore(repo.registry.db).outcomes())) == len(job["measurements"])


def write_jobs(tmp_path: Path, am1_values: list[float], shas: list[str] | None = None) -> list[str]:
    """The test job, once per value of AM1: CI builds 1, 2 …, an hour apart, over tract 9813."""
    jobs = []
    for k, am1 in enumerate(am1_values):
        job = json.loads(JOB.read_text())
        job["meta"]["tract"] = 9813
        job["meta"]["env"]["ci_id"] = str(k + 1)
        job["meta"]["packages"]["validate_drp"]["git_commit"] = (shas or [f"sha{i}" for i in range(99)])[k]
        job["measurements"][0]["value"] = am1
        path = tmp_path / f"job{k}.verify.json"
        path.write_text(json.dumps(job))
        os.utime(path, (1000.0 + 3600 * k, 1000.0 + 3600 * k))
        jobs.append(str(path))
    return jobs


def test_the_cli_ingests_and_reads_back(repo: Any, tmp_path: Path) -> None:
    repo_path = str(repo.root)
    jobs = write_jobs(tmp_path, [12.0, 13.0, 27.0])
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "ingest", repo_path, *jobs, "--metrics", str(PACKAGE), "--json"])
    assert result.exit_code == 0, result.output
    stored = json.loads(result.output)
    assert [r["run"] for r in stored] == ["validate_drp/1", "validate_drp/2", "validate_drp/3"]
    result = runner.invoke(app, ["verify", "status", repo_path, "--json"])
    rows = {r["metric"]: r for r in json.loads(result.output)}
    assert rows[AM1]["run"] == "validate_drp/3" and rows[AM1]["failed minimum"] == 1
    result = runner.invoke(app, ["verify", "trend", repo_path, AM1, "--by", "band", "--json"])
    (trend,) = json.loads(result.output)
    assert trend["band"] == "r" and trend["values"] == [12.0, 13.0, 27.0]
    result = runner.invoke(app, ["verify", "compare", repo_path, "validate_drp/1", "validate_drp/3"])
    assert result.exit_code == 0, result.output
    assert "+15" in result.output and "versions.validate_drp: sha0 → sha2" in result.output
    svg, png = tmp_path / "am1.svg", tmp_path / "am1.png"
    args = ["--by", "band", "--svg", str(svg), "--png", str(png), "--metrics", str(PACKAGE)]
    result = runner.invoke(app, ["verify", "trend", repo_path, AM1, *args])
    assert result.exit_code == 0, result.output
    drawing = svg.read_text()
    assert "<svg" in drawing and "band=r" in drawing and "minimum &lt;= 20" in drawing  # levels in marcsec
    assert png.read_bytes().startswith(b"\x89PNG")
    result = runner.invoke(app, ["verify", "trend", repo_path, AM1, "--by", "visit"])
    assert result.exit_code != 0 and "no 'visit'" in result.output
    result = runner.invoke(app, ["verify", "ingest", repo_path, str(JOB), "--metrics", str(PACKAGE)])
    assert result.exit_code != 0 and "lacks tract" in result.output


@settings(deadline=None)  # CI's machine is busy: no per-example time bound
@given(
    st.dictionaries(
        st.text(st.characters(categories=("Ll",)), min_size=1, max_size=8),
        st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=8)),
        max_size=5,
    )
)
def test_data_id_keys_round_trip_whatever_the_order(data_id: dict[str, Any]) -> None:
    key = data_id_key(data_id)
    assert data_id_from_key(key) == data_id
    assert data_id_key(dict(reversed(list(data_id.items())))) == key


@settings(deadline=None)
@given(st.integers(0, 7), st.integers(0, 7), st.booleans())
def test_flags_round_trip(applicable: int, passed: int, regressed: bool) -> None:
    packed = pack_flags(np.array([applicable]), np.array([passed]), np.array([regressed]))
    assert unpack_flags(int(packed[0])) == (applicable, passed, regressed)


def test_the_cli_alerts_replays_and_finds_the_change(repo: Any, tmp_path: Path) -> None:
    """AM1 jumps from ~12 to ~25 mas (over minimum's 20) when validate_drp changes from sha-a to sha-b."""
    repo_path = str(repo.root)
    values = [12.0, 12.2, 11.9, 12.1, 12.0, 11.8, 25.0, 25.3, 24.8, 25.1, 25.2, 24.9]
    jobs = write_jobs(tmp_path, values, shas=["sha-a"] * 6 + ["sha-b"] * 6)
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "ingest", repo_path, *jobs, "--metrics", str(PACKAGE)])
    assert result.exit_code == 0, result.output
    assert "FIRING [critical] validate_drp.AM1" in result.output  # on arrival of the 2nd failing run
    result = runner.invoke(app, ["verify", "alerts", repo_path, "--json"])
    (alert,) = json.loads(result.output)
    assert alert["status"] == "firing" and alert["metric"] == AM1 and alert["first_run"] == "validate_drp/7"
    result = runner.invoke(app, ["verify", "test-rules", repo_path, "--metrics", str(PACKAGE), "--json"])
    assert [(t["kind"], t["run"]) for t in json.loads(result.output)] == [("fired", "validate_drp/8")]
    result = runner.invoke(
        app, ["verify", "ack", repo_path, str(alert["alert_id"]), "--reason", "known", "--by", "ann"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["verify", "alerts", repo_path, "--json"])
    assert [(a["acknowledged_by"], a["ack_reason"]) for a in json.loads(result.output)] == [("ann", "known")]
    assert runner.invoke(app, ["verify", "alerts", repo_path]).exit_code == 0  # the table
    result = runner.invoke(app, ["verify", "changes", repo_path, "--metric", AM1, "--json"])
    (change,) = json.loads(result.output)
    assert (change["run_before"], change["run_after"]) == ("validate_drp/6", "validate_drp/7")
    assert change["changed"]["versions.validate_drp"] == ["sha-a", "sha-b"]
    result = runner.invoke(
        app, ["verify", "silence", repo_path, "validate_drp.*", "--until", "7d", "--reason", "x"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["verify", "silence", repo_path, "x", "--until", "someday", "--reason", "x"])
    assert result.exit_code != 0 and "duration" in result.output


def test_a_pipeline_runs_measurements_are_ingested_with_the_demo_package(
    survey: tuple[Any, Any], tmp_path: Path
) -> None:
    """Step 1 of the mini DRP on the g visits; calibrate's self.measure values land in the store."""
    from conftest import DRP_YAML, SURVEY_INPUTS
    from porter.demo import VERIFY_METRICS

    butler, _ = survey
    runner = CliRunner()
    run = "u/test/step1"
    args = [
        "pipeline",
        "submit",
        str(butler.root),
        f"{DRP_YAML}",
        "--steps",
        "step1",
        "-i",
        ",".join(SURVEY_INPUTS),
    ]
    result = runner.invoke(app, [*args, "--output-run", run, "-d", "band = 'g'", "-j", "1", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["verify", "ingest-run", str(butler.root), run, "--metrics", str(VERIFY_METRICS)]
    )
    assert result.exit_code == 0, result.output
    assert "Not declared" in result.output and "calibrate.n_sources" in result.output
    store = MetricStore(butler.registry.db)
    raws = butler.query_datasets("raw", "SynthCam/raw/all", where="band = 'g'", instrument="SynthCam")
    scatter = store.series("calibrate.astrometric_scatter")
    assert len(scatter) == len(raws) and scatter.unit == "marcsec"
    assert {frozenset(d) for d in scatter.data_id} == {frozenset({"instrument", "visit", "detector"})}
    provenance = store.provenance(run)
    assert provenance is not None and provenance.task == "calibrate,isr" and "porter" in provenance.versions
