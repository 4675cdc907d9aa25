"""A pipeline's ``reports:`` section: its notebooks published for every run its quanta complete.

Real pipeline runs over the demo survey (SQLite and PostgreSQL), real notebooks in a real kernel:
the report is a dataset of the run made from the run's outputs; bad ``reports:`` input is refused
before anything is written; a failing notebook is named and recorded, and the run's outputs stay.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import DRP_YAML, SURVEY_INPUTS
from porter import Butler
from porter.errors import PipelineDefinitionError
from porter.pipeline import (
    InProcessExecutor,
    Pipeline,
    RunState,
    build_quantum_graph,
    execute_graph,
    report_outcomes,
    submit_steps,
)
from porter.verify import ReportToolsMissingError, report_provenance
from test_cli import run

DEMO_REPORTS = DRP_YAML.with_name("drp_reports.yaml")
DEMO_TYPE = "verifyReport_metrics_report"
INPUTS = ",".join(SURVEY_INPUTS)
RUN = "u/reports/drp"

COUNTING = """\
from porter.butler import DirectButler

butler = DirectButler(repo, writeable=False)
n = len(butler.query_datasets("calexp", collections=run, explain=False))
print(f"REPORT run={run} calexps={n} band={band}")
butler.close()
"""


def notebook(path: Path, *cells: str, parameters: str = "repo = ''\nrun = ''\nband = 'r'") -> Path:
    """A notebook whose first code cell is tagged ``parameters``."""
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell(parameters)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


def pipeline_file(path: Path, reports: str, *, base: Path = DRP_YAML) -> Path:
    """A pipeline importing ``base`` with ``reports`` (YAML text) as its reports section."""
    path.write_text(f"imports:\n  - location: {base}\nreports:\n{reports}")
    return path


def reports_of(butler: Any, run: str, dataset_type: str) -> list[Any]:
    if dataset_type not in {t.name for t in butler.query_dataset_types("verifyReport_*")}:
        return []
    return list(butler.query_datasets(dataset_type, collections=run, explain=False))


def state_of(butler: Any) -> tuple[list[str], list[str], list[str]]:
    """What a refused command must not change: collections, dataset types, runs with pipelines."""
    return (
        sorted(butler.collections.query("*")),
        sorted(t.name for t in butler.query_dataset_types("*")),
        RunState(butler.registry.db).runs(),
    )


def test_the_demo_pipeline_publishes_its_report_as_a_dataset_of_every_run(
    survey: tuple[Butler, Any],
) -> None:
    butler, _ = survey
    repo = butler.root
    args = ["-i", INPUTS, "--output-run", RUN, "-d", "band = 'g'", "--json"]
    out = json.loads(run("pipeline", "run", repo, f"{DEMO_REPORTS}#step1", *args))
    [outcome] = out["reports"]
    assert (outcome["status"], outcome["dataset_type"], outcome["run"]) == ("published", DEMO_TYPE, RUN)
    [ref] = reports_of(butler, RUN, DEMO_TYPE)
    assert ref.id.hex == outcome["dataset_id"] and ref.run == RUN
    report = butler.get(ref)
    assert report.lstrip().lower().startswith("<!doctype html>") and "Traceback" not in report
    text = html.unescape(re.sub(r"<[^>]+>", "", report))  # the rendered cells, highlighting dropped
    assert f"run = {RUN!r}" in text and "max_points = 20" in text  # injected: this run, the pipeline's values
    provenance = report_provenance(report)
    assert (provenance["run"], provenance["parameters"]) == (RUN, {"max_points": 20})
    assert (
        provenance["source"] == DRP_YAML.parent.parent.joinpath("reports", "metrics_report.ipynb").read_text()
    )
    recorded = json.loads(run("pipeline", "report", repo, RUN, "--json"))["reports"]
    assert [(r["status"], r["dataset_id"]) for r in recorded] == [("published", ref.id.hex)]

    # Running the run again replaces its report: one report, made by the latest execution.
    again = ["--extend-run", "--clobber-outputs"]
    out = json.loads(run("pipeline", "run", repo, f"{DEMO_REPORTS}#step1", *args, *again))
    [outcome] = out["reports"]
    [newer] = reports_of(butler, RUN, DEMO_TYPE)
    assert newer.id != ref.id and newer.id.hex == outcome["dataset_id"]


def test_the_report_is_made_from_the_runs_outputs_and_submit_publishes_it_once(
    survey: tuple[Butler, Any], tmp_path: Path
) -> None:
    butler, _ = survey
    nb = notebook(tmp_path / "counts.ipynb", COUNTING)
    pipe = Pipeline.from_uri(
        pipeline_file(
            tmp_path / "drp.yaml",
            f"  - notebook: {nb.name}\n    parameters: {{band: g}}\n"
            "  - notebook: resource://porter.demo/reports/metrics_report.ipynb\n",
        )
    )
    assert [r.path for r in pipe.reports] == [nb, DRP_YAML.parent.parent / "reports" / "metrics_report.ipynb"]
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
    assert [r.reports for r in results[:-1]] == [[]]  # published once, after the last step
    assert [(o.dataset_type, o.status) for o in results[-1].reports] == [
        ("verifyReport_counts", "published"),
        (DEMO_TYPE, "published"),
    ]
    calexps = butler.query_datasets("calexp", collections=RUN, explain=False)
    assert calexps
    [ref] = reports_of(butler, RUN, "verifyReport_counts")
    assert f"REPORT run={RUN} calexps={len(calexps)} band=g" in butler.get(ref)
    assert [r.dataset_type for r in report_outcomes(butler, RUN)] == sorted(
        ["verifyReport_counts", DEMO_TYPE]
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "  - notebook: missing/nowhere.ipynb\n",
            r"reports\[0\]\.notebook: 'missing/nowhere.ipynb' does not exist \(looked for .*nowhere.ipynb\); "
            r"give a path relative to the pipeline file's directory",
        ),
        (
            "  - notebook: counts.ipynb\n    parameters: [band, g]\n",
            r"reports\[0\]\.parameters must be a mapping of NAME: value \(e\.g\. \{max_points: 20\}\), not a list",
        ),
        (
            "  - notebook: counts.ipynb\n    parameters: {bnad: g}\n",
            r"reports\[0\] \(counts.ipynb\): parameter 'bnad' is not declared in counts.ipynb's parameters "
            r"cell \(declared: band\)",
        ),
        (
            "  - notebook: counts.ipynb\n    parameters: {run: other}\n",
            r"reports\[0\] \(counts.ipynb\): parameter 'run' is set by porter",
        ),
        ("  - notebok: counts.ipynb\n", r"reports\[0\] has unknown key 'notebok'.*notebook"),
        ("  notebook: counts.ipynb\n", r"'reports' must be a list of entries"),
        (
            "  - notebook: counts.ipynb\n    timeout: soon\n",
            r"reports\[0\]\.timeout must be a positive number",
        ),
        (
            "  - notebook: resource://porter.demo/reports/none.ipynb\n",
            r"reports\[0\]\.notebook: 'resource://porter\.demo/reports/none\.ipynb' does not exist",
        ),
        (
            "  - notebook: resource://no_such_package/x.ipynb\n",
            r"reports\[0\]\.notebook: '.*': cannot import package 'no_such_package'",
        ),
    ],
)
def test_bad_reports_sections_are_refused_naming_file_field_and_fix(
    tmp_path: Path, entry: str, expected: str
) -> None:
    notebook(tmp_path / "counts.ipynb", COUNTING)
    path = pipeline_file(tmp_path / "bad.yaml", entry)
    with pytest.raises(PipelineDefinitionError, match=rf"{re.escape(str(path))}: {expected}"):
        Pipeline.from_uri(path)


@pytest.mark.parametrize(
    "entry",
    ["  - notebook: missing/nowhere.ipynb\n", "  - notebook: counts.ipynb\n    parameters: [band, g]\n"],
)
def test_bad_reports_are_refused_before_anything_runs(
    survey: tuple[Butler, Any], tmp_path: Path, entry: str
) -> None:
    butler, _ = survey
    notebook(tmp_path / "counts.ipynb", COUNTING)
    path = pipeline_file(tmp_path / "bad.yaml", entry)
    before = state_of(butler)
    for command in ("run", "submit"):
        out = run("pipeline", command, butler.root, path, "-i", INPUTS, "-o", "u/reports/chain", ok=False)
        flat = "".join(out.split())
        assert "".join(f"{path}: reports[0]".split()) in flat
    assert state_of(butler) == before  # no chain, no run, no dataset type, no graph


def test_a_failing_notebook_is_named_and_recorded_and_the_run_is_kept(
    survey: tuple[Butler, Any], tmp_path: Path
) -> None:
    butler, _ = survey
    repo = butler.root
    nb = notebook(tmp_path / "broken.ipynb", "x = 1", "raise ValueError(f'no sources in band {band}')")
    path = pipeline_file(tmp_path / "drp.yaml", f"  - notebook: {nb}\n")
    out = run(
        "pipeline",
        "run",
        repo,
        f"{path}#step1",
        "-i",
        INPUTS,
        "--output-run",
        RUN,
        "-d",
        "band = 'g'",
        ok=False,
    )
    flat = " ".join(out.split())
    assert "report failed" in flat and "broken.ipynb" in flat
    assert 'cell 4 ("raise ValueError' in flat and "ValueError: no sources in band r" in flat
    assert "the run's outputs are kept" in flat
    assert butler.query_datasets("calexp", collections=RUN, explain=False)  # the run stays
    report = json.loads(run("pipeline", "report", repo, RUN, "--json"))
    assert report["totals"]["failed"] == 0 and report["totals"]["succeeded"] > 0
    [recorded] = report["reports"]
    assert (recorded["status"], recorded["dataset_type"]) == ("failed", "verifyReport_broken")
    assert "ValueError: no sources in band r" in recorded["message"]
    assert reports_of(butler, RUN, "verifyReport_broken") == []

    # Fixed, the notebook is published by a restart of the finished run (only the missing report).
    notebook(nb, "x = 1", "print(f'fixed for {run}')")
    out = run("pipeline", "restart", repo, RUN)
    assert "published report verifyReport_broken" in " ".join(out.split())
    [ref] = reports_of(butler, RUN, "verifyReport_broken")
    assert f"fixed for {RUN}" in butler.get(ref)
    assert [(o.status, o.dataset_id) for o in report_outcomes(butler, RUN)] == [("published", ref.id.hex)]
    assert run("pipeline", "restart", repo, RUN, "--json")  # nothing missing: nothing published again
    assert [r.id for r in reports_of(butler, RUN, "verifyReport_broken")] == [ref.id]


def test_a_run_with_failed_quanta_publishes_when_a_restart_completes_it(
    survey: tuple[Butler, Any], tmp_path: Path
) -> None:
    butler, _ = survey
    repo = butler.root
    marker = tmp_path / "broken"
    marker.touch()
    nb = notebook(
        tmp_path / "stats.ipynb",
        "from porter.butler import DirectButler\n"
        "b = DirectButler(repo, writeable=False)\n"
        "print(f'STATS {run}: {len(b.query_datasets(\"rawStats\", collections=run, explain=False))}')",
    )
    pipe = tmp_path / "stats.yaml"
    pipe.write_text(
        "instrument: SynthCam\ntasks:\n  stats:\n    class: pipeline_tasks.ImageStatsTask\n"
        f"    config: {{fail_detector: 2, fail_marker: '{marker}'}}\n"
        f"reports:\n  - notebook: {nb.name}\n"
    )
    out = run("pipeline", "run", repo, pipe, "-i", INPUTS, "--output-run", RUN, "--retries", "0", ok=False)
    assert "report failed" not in out and "published report" not in out  # not done: no report yet
    assert reports_of(butler, RUN, "verifyReport_stats") == [] and report_outcomes(butler, RUN) == []
    marker.unlink()
    out = run("pipeline", "restart", repo, RUN, "--json")
    [outcome] = json.loads(out)["reports"]
    assert outcome["status"] == "published"
    n = len(butler.query_datasets("rawStats", collections=RUN, explain=False))
    [ref] = reports_of(butler, RUN, "verifyReport_stats")
    assert f"STATS {RUN}: {n}" in butler.get(ref)


def test_missing_notebook_machinery_is_refused_before_the_run(
    survey: tuple[Butler, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    butler, _ = survey
    pipe = Pipeline.from_uri(f"{DEMO_REPORTS}#step1")
    graph = build_quantum_graph(butler, pipe, collections=SURVEY_INPUTS, run=RUN, where="band = 'g'")
    before = state_of(butler)
    monkeypatch.setitem(sys.modules, "nbclient", None)  # as if porter[reports] were not installed
    with (
        InProcessExecutor() as ex,
        pytest.raises(ReportToolsMissingError, match=r"pip install 'porter\[reports\]'"),
    ):
        execute_graph(butler, graph, ex)
    assert state_of(butler) == before
    with InProcessExecutor() as ex:  # without the reports, the run goes ahead
        summary = execute_graph(butler, graph, ex, reports=False)
    assert summary.ok and summary.reports == [] and reports_of(butler, RUN, DEMO_TYPE) == []
