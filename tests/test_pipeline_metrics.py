"""A pipeline's ``metrics:`` section: every run's measurements stored in the metric store as it ends.

Real pipeline runs over a generated survey (SQLite and PostgreSQL), the demo's real metrics package
(copied and tightened where a test needs a failure), a real webhook receiver on loopback: what the
tasks measured arrives in the store checked against specs and baselines, alerts fire and are
delivered, a restart replaces rather than duplicates, bad sections are refused before anything is
written, and a measurement the store refuses is named while the run's outputs stay.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DRP_YAML, SURVEY_INPUTS
from porter import Butler
from porter.errors import PipelineDefinitionError
from porter.pipeline import InProcessExecutor, Pipeline, submit_steps
from porter.verify import AlertBook, MetricStore
from test_cli import run
from test_pipeline_reports import state_of
from test_verify_alerts import Receiver

DEMO_METRICS = DRP_YAML.parent.parent / "verify_metrics"
INPUTS = ",".join(SURVEY_INPUTS)
RUN = "u/metrics/drp"
CALIBRATE_METRICS = ("calibrate.astrometric_scatter", "calibrate.psf_fwhm", "calibrate.zeropoint")
"""What the demo package declares of CalibrateTask's measurements (it also measures n_sources)."""


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A webhook receiver on loopback recording what is posted to it."""
    r = Receiver()
    yield r
    r.stop()


def pipeline_file(path: Path, metrics: str) -> Path:
    """The mini DRP with ``metrics`` (YAML text) as its metrics section."""
    path.write_text(f"imports:\n  - location: {DRP_YAML}\nmetrics: {metrics}\n")
    return path


def strict_package(tmp_path: Path) -> Path:
    """The demo package with a ``minimum`` no real detector meets (0.001 mas) and an alert on it."""
    package = tmp_path / "strict_metrics"
    shutil.copytree(DEMO_METRICS, package)
    spec = package / "specs" / "calibrate" / "astrometric_scatter.yaml"
    spec.write_text(spec.read_text().replace("threshold: {value: 50.0}", "threshold: {value: 0.001}"))
    metrics = package / "metrics" / "calibrate.yaml"
    metrics.write_text(
        metrics.read_text().replace(
            "  baseline: {kind: last_n, n: 3, tolerance: 0.5}\n",
            "  baseline: {kind: last_n, n: 3, tolerance: 0.5}\n"
            "  alert: {level: minimum, for: 1, severity: critical, channels: [webhook:test]}\n",
        )
    )
    (package / "alerts.yaml").write_text('webhooks:\n  test: "${PORTER_TEST_WEBHOOK}"\n')
    return package


def stored(butler: Butler, run_name: str) -> dict[str, int]:
    """Measurements in the metric store per metric for ``run_name``."""
    return {s.metric: s.count for s in MetricStore(butler.registry.db).summary(run_name)}


def calibrate_quanta(butler: Butler, run_name: str) -> int:
    return len(butler.query_datasets("calexp", collections=run_name, explain=False))


def test_each_run_is_recorded_on_arrival_and_its_alerts_delivered(
    survey: tuple[Butler, Any], tmp_path: Path, webhook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    butler, _ = survey
    repo = butler.root
    monkeypatch.setenv("PORTER_TEST_WEBHOOK", webhook.url)
    path = pipeline_file(tmp_path / "drp.yaml", "strict_metrics")  # relative to the pipeline file
    strict_package(tmp_path)
    args = ["-i", INPUTS, "--output-run", RUN, "-d", "band = 'g'"]
    out = json.loads(run("pipeline", "run", repo, f"{path}#step1", *args, "--json"))
    n = calibrate_quanta(butler, RUN)
    assert n > 0
    recorded = out["metrics"]
    assert recorded["stored"] == 3 * n and recorded["replaced"] == 0 and "error" not in recorded
    assert recorded["failed"]["minimum"] == n  # every detector misses the impossible minimum
    assert {"calibrate.n_sources", "isr.bias_level"} <= set(recorded["undeclared"])
    assert stored(butler, RUN) == dict.fromkeys(CALIBRATE_METRICS, n)
    # The alert fired on arrival (one per detector: alerts are per metric and data ID) and was delivered.
    assert len(recorded["alerts"]) == n and all(
        "calibrate.astrometric_scatter" in a for a in recorded["alerts"]
    )
    assert recorded["delivered"] == n and recorded["undelivered"] == []
    assert len(webhook.posts) == n
    assert all("calibrate.astrometric_scatter" in json.dumps(body) for _, body in webhook.posts)
    firing = [a for a in AlertBook(butler.registry.db).alerts() if a.status == "firing"]
    assert len(firing) == n
    provenance = MetricStore(butler.registry.db).provenance(RUN)
    assert provenance is not None and provenance.inputs == tuple(SURVEY_INPUTS)
    assert set(provenance.task.split(",")) == {"isr", "calibrate"}

    # A restart of the finished run records the run again: replaced, never duplicated, not re-alerted.
    out = json.loads(run("pipeline", "restart", repo, RUN, "--json"))
    assert out["metrics"]["stored"] == 3 * n and out["metrics"]["replaced"] == 3 * n
    assert out["metrics"]["alerts"] == [] and len(webhook.posts) == n
    assert stored(butler, RUN) == dict.fromkeys(CALIBRATE_METRICS, n)

    # The human output names what was recorded and what fired.
    text = "".join(run("pipeline", "restart", repo, RUN).split())  # whatever the terminal's wrapping
    package = (tmp_path / "strict_metrics").resolve()  # as the run's stored pipeline names it
    assert "".join(f"recorded {3 * n} measurements of {RUN} against {package}:".split()) in text
    assert f"{n}belowminimum" in text


def test_no_metrics_records_nothing_and_ingest_run_does_it_later(
    survey: tuple[Butler, Any], tmp_path: Path
) -> None:
    butler, _ = survey
    path = pipeline_file(tmp_path / "drp.yaml", str(DEMO_METRICS))
    args = ["-i", INPUTS, "--output-run", RUN, "-d", "band = 'g'", "--no-metrics", "--json"]
    out = json.loads(run("pipeline", "run", butler.root, f"{path}#step1", *args))
    assert "metrics" not in out and stored(butler, RUN) == {}
    run("verify", "ingest-run", butler.root, RUN, "--metrics", DEMO_METRICS)
    assert stored(butler, RUN) == dict.fromkeys(CALIBRATE_METRICS, calibrate_quanta(butler, RUN))


def test_submit_records_after_each_step(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    pipe = Pipeline.from_uri(pipeline_file(tmp_path / "drp.yaml", "resource://porter.demo/verify_metrics"))
    assert pipe.metrics is not None and pipe.metrics.path == DEMO_METRICS.resolve()
    with InProcessExecutor() as ex:
        results = submit_steps(
            butler,
            pipe,
            ["step1", "step2"],
            ex,
            collections=SURVEY_INPUTS,
            run=RUN,
            where="band = 'g'",
            group_size=1,
        )
    n = calibrate_quanta(butler, RUN)
    first, second = (r.metrics for r in results)
    assert first is not None and first.ok and (first.stored, first.replaced) == (3 * n, 0)
    # step2's tasks declare nothing in the package: the run is recorded again as it stands, replacing.
    assert second is not None and second.ok and (second.stored, second.replaced) == (3 * n, 3 * n)
    assert stored(butler, RUN) == dict.fromkeys(CALIBRATE_METRICS, n)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("nowhere/metrics", "metrics: 'nowhere/metrics' does not exist (looked for"),
        ("{package: x, alerts: y}", "metrics has unknown key 'alerts'"),
        ("[a, b]", "'metrics' names the metrics package"),
        ("resource://porter.demo", "is not resource://PACKAGE/PATH"),
        ("broken_metrics", "the package 'broken_metrics' has problems (`porter verify lint"),
    ],
)
def test_bad_metrics_sections_are_refused_before_anything_runs(
    survey: tuple[Butler, Any], tmp_path: Path, section: str, expected: str
) -> None:
    butler, _ = survey
    broken = tmp_path / "broken_metrics"
    shutil.copytree(DEMO_METRICS, broken)
    spec = broken / "specs" / "calibrate" / "astrometric_scatter.yaml"
    spec.write_text(spec.read_text().replace("base: '#scatter-base'", "base: '#no-such-partial'", 1))
    path = pipeline_file(tmp_path / "bad.yaml", section)
    with pytest.raises(PipelineDefinitionError) as info:
        Pipeline.from_uri(path)
    assert expected in str(info.value) and str(path) in str(info.value)
    if section == "broken_metrics":
        assert "no-such-partial" in str(info.value)
    before = state_of(butler)
    for command in ("run", "submit"):
        out = run("pipeline", command, butler.root, path, "-i", INPUTS, "-o", "u/metrics/chain", ok=False)
        assert "".join(expected.split()) in "".join(out.split())
    assert state_of(butler) == before  # no chain, no run, no dataset type, no graph


def test_a_refused_measurement_is_named_and_the_run_is_kept(
    survey: tuple[Butler, Any], tmp_path: Path
) -> None:
    butler, _ = survey
    package = tmp_path / "wrong_units"
    shutil.copytree(DEMO_METRICS, package)
    metrics = package / "metrics" / "calibrate.yaml"
    # psf_fwhm is measured in arcsec; declared in mag, no measurement of it can be converted.
    metrics.write_text(metrics.read_text().replace("  unit: arcsec\n", "  unit: mag\n"))
    path = pipeline_file(tmp_path / "drp.yaml", str(package))
    args = ["-i", INPUTS, "--output-run", RUN, "-d", "band = 'g'"]
    out = " ".join(run("pipeline", "run", butler.root, f"{path}#step1", *args, ok=False).split())
    assert f"measurements not recorded for {RUN}" in out and "calibrate.psf_fwhm" in out
    assert "the run's outputs are kept" in out and f"porter verify ingest-run REPO {RUN}" in out
    assert calibrate_quanta(butler, RUN) > 0  # the run stays
    assert stored(butler, RUN) == {}  # nothing of the refused batch


def test_the_runs_report_shows_the_metrics_it_recorded(survey: tuple[Butler, Any]) -> None:
    """drp_reports.yaml records its runs' metrics before publishing its report: the report shows them."""
    butler, _ = survey
    demo = DRP_YAML.with_name("drp_reports.yaml")
    args = ["-i", INPUTS, "--output-run", RUN, "-d", "band = 'g'", "--json"]
    out = json.loads(run("pipeline", "run", butler.root, f"{demo}#step1", *args))
    n = calibrate_quanta(butler, RUN)
    assert out["metrics"]["stored"] == 3 * n and out["reports"][0]["status"] == "published"
    [ref] = butler.query_datasets("verifyReport_metrics_report", collections=RUN, explain=False)
    report = butler.get(ref)
    for metric in CALIBRATE_METRICS:
        assert f"<td>{metric}</td>" in report
