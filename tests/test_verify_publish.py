"""``porter verify publish``: a notebook executed in a real kernel against a real repository (SQLite and
PostgreSQL), its HTML stored as a dataset of the run with what is needed to make it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from typer.testing import CliRunner

from porter.cli import app
from porter.demo._survey import COLLECTIONS, INSTRUMENT
from porter.verify import MetricStore, NewMeasurement, Provenance, open_store
from porter.verify._publish import (
    NotebookExecutionError,
    ReportExistsError,
    ReportParameterError,
    publish,
    report_dataset_type,
    report_provenance,
)

NOTEBOOK = (
    Path(__file__).resolve().parent.parent / "src" / "porter" / "demo" / "reports" / "metrics_report.ipynb"
)
PACKAGE = Path(__file__).parent / "data" / "verify" / "validate_drp"
AM1, PA1 = "validate_drp.AM1", "validate_drp.PA1"
TYPE = report_dataset_type(NOTEBOOK)


@pytest.fixture
def measured(survey: tuple[Any, object]) -> tuple[Any, str, MetricStore]:
    """The small survey with AM1 and PA1 measured in its raw run (a real RUN holding SynthCam datasets)."""
    butler, _ = survey
    run = COLLECTIONS["raw"]
    store = open_store(butler.registry.db, PACKAGE)[0]
    rows = [NewMeasurement(AM1, v, "mas", {"tract": 9813, "band": b}) for b, v in (("r", 7.25), ("i", 13.5))]
    rows.append(NewMeasurement(PA1, 4.125, "mmag", {"tract": 9813, "band": "r"}))
    store.record(rows, Provenance(run=run, time=1.0), metadata={"instrument": "HSC"})
    return butler, run, store


def stored(butler: Any, run: str, dataset_type: str = TYPE) -> list[Any]:
    """The reports of ``dataset_type`` in ``run`` (none if the type was never registered)."""
    if dataset_type not in {t.name for t in butler.query_dataset_types("verifyReport_*")}:
        return []
    return list(butler.query_datasets(dataset_type, collections=run, explain=False))


def notebook(path: Path, *cells: str, parameters: str | None = "repo = ''\nrun = ''\nband = 'r'") -> Path:
    """A notebook of code cells, the first tagged ``parameters`` (unless ``parameters`` is None)."""
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        first = nbformat.v4.new_code_cell(parameters)
        first.metadata["tags"] = ["parameters"]
        nb.cells.append(first)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def test_the_demo_notebook_publishes_the_runs_metrics_with_its_provenance(measured: Any) -> None:
    butler, run, store = measured
    calls: list[tuple[int, int]] = []
    ref = publish(butler, NOTEBOOK, run, {"max_points": 5}, progress=lambda d, t: calls.append((d, t)))
    assert (ref.dataset_type.name, ref.run, ref.data_id["instrument"]) == (TYPE, run, INSTRUMENT)
    report = butler.get(TYPE, instrument=INSTRUMENT, collections=run)
    assert report == butler.get(ref)
    assert report.lstrip().lower().startswith("<!doctype html>")
    summaries = store.summary(run)
    assert {s.metric for s in summaries} == {AM1, PA1}
    for s in summaries:  # the summary table: every metric with its values, as `verify status` formats them
        assert s.metric in report
        for value in (s.min, s.mean, s.max):
            assert f"<td>{value:.4g}</td>" in report
    assert "Traceback" not in report
    provenance = report_provenance(report)
    source = NOTEBOOK.read_text(encoding="utf-8")
    assert provenance["notebook"] == "metrics_report.ipynb"
    assert provenance["source"] == source
    assert provenance["source_sha256"] == hashlib.sha256(source.encode()).hexdigest()
    assert (provenance["parameters"], provenance["run"]) == ({"max_points": 5}, run)
    assert provenance["instrument"] == INSTRUMENT
    # progress after every cell, the injected one included
    assert calls[-1][0] == calls[-1][1] == len(nbformat.reads(source, as_version=4).cells) + 1


def test_republishing_is_refused_unless_replace_and_replacing_leaves_one_report(
    measured: Any, tmp_path: Path
) -> None:
    butler, run, _ = measured
    path = notebook(tmp_path / "banded.ipynb", "print(f'band={band} run={run}')")
    first = publish(butler, path, run)
    with pytest.raises(ReportExistsError, match=r"already holds the report .verifyReport_banded.*--replace"):
        publish(butler, path, run, {"band": "i"})
    assert [r.id for r in stored(butler, run, "verifyReport_banded")] == [first.id]
    assert "band=r" in butler.get(first)
    second = publish(butler, path, run, {"band": "i"}, replace=True)
    assert second.id != first.id
    assert [r.id for r in stored(butler, run, "verifyReport_banded")] == [second.id]
    report = butler.get("verifyReport_banded", instrument=INSTRUMENT, collections=run)
    assert f"band=i run={run}" in report
    assert report_provenance(report)["parameters"] == {"band": "i"}


def test_a_failing_cell_stores_nothing_and_is_named(measured: Any, tmp_path: Path) -> None:
    butler, run, _ = measured
    path = notebook(
        tmp_path / "broken.ipynb", "x = 1", "raise ValueError(f'no data for band {band}')", "y = 2"
    )
    with pytest.raises(
        NotebookExecutionError, match=r"cell 4 \(\"raise ValueError.*ValueError: no data for band r"
    ):
        publish(butler, path, run)
    assert stored(butler, run, "verifyReport_broken") == []


def test_a_cell_over_the_timeout_stores_nothing_and_is_named(measured: Any, tmp_path: Path) -> None:
    butler, run, _ = measured
    path = notebook(tmp_path / "slow.ipynb", "import time", "time.sleep(120)")
    with pytest.raises(NotebookExecutionError, match=r"cell 4 \('time.sleep\(120\)'\)"):
        publish(butler, path, run, timeout=2)
    assert stored(butler, run, "verifyReport_slow") == []


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"bnad": "i"}, r"'bnad' is not declared in ok.ipynb's parameters cell \(declared: band\)"),
        ({"run": "other"}, r"'run' is set by porter"),
        ({"band": object()}, r"'band' = .* is not JSON"),
    ],
)
def test_bad_parameters_are_refused_before_anything_runs(
    measured: Any, tmp_path: Path, parameters: dict[str, Any], message: str
) -> None:
    butler, run, _ = measured
    path = notebook(tmp_path / "ok.ipynb", "open('ran', 'w').write('yes')")
    with pytest.raises(ReportParameterError, match=message):
        publish(butler, path, run, parameters)
    assert not (tmp_path / "ran").exists()
    assert stored(butler, run, "verifyReport_ok") == []


def test_a_notebook_without_a_parameters_cell_or_an_unknown_run_is_refused(
    measured: Any, tmp_path: Path
) -> None:
    butler, run, _ = measured
    bare = notebook(tmp_path / "bare.ipynb", "print(1)", parameters=None)
    with pytest.raises(ReportParameterError, match="no cell tagged 'parameters'"):
        publish(butler, bare, run)
    ok = notebook(tmp_path / "ok.ipynb", "print(1)")
    with pytest.raises(ReportParameterError, match="run 'u/nobody' is not a collection"):
        publish(butler, ok, "u/nobody")


def test_cli_publishes_the_demo_surveys_report(tmp_path: Path) -> None:
    """The main job's repository: ``porter verify publish`` on u/demo/drp, JSON out, refusal, --replace."""
    runner = CliRunner()
    repo = tmp_path / "demo"
    made = runner.invoke(
        app, ["demo-survey", "--repo", str(repo), "--detectors", "2", "--visits-per-band", "2"]
    )
    assert made.exit_code == 0, made.output
    args = [
        "verify",
        "publish",
        str(repo),
        str(NOTEBOOK),
        "--run",
        "u/demo/drp",
        "-p",
        "max_points=3",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    assert (
        out["dataset_type"] == TYPE and out["run"] == "u/demo/drp" and out["parameters"] == {"max_points": 3}
    )
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "ReportExistsError" in again.output
    bad = runner.invoke(
        app, ["verify", "publish", str(repo), str(NOTEBOOK), "--run", "u/demo/drp", "-p", "oops"]
    )
    assert bad.exit_code == 1 and "is not NAME=VALUE" in bad.output
    from porter.butler import DirectButler

    butler = DirectButler(repo, writeable=False)
    try:
        report = butler.get(TYPE, instrument=out["instrument"], collections="u/demo/drp")
        summaries = MetricStore(butler.registry.db).summary("u/demo/drp")
        assert any(s.metric.endswith("completeness") for s in summaries)
        for s in summaries:
            assert s.metric in report and f"<td>{s.mean:.4g}</td>" in report
        assert report_provenance(report)["parameters"] == {"max_points": 3}
    finally:
        butler.close()
