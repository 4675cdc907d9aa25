"""The `porter` command line, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peer import EXPORTS
from porter import Butler
from porter.cli import app

runner = CliRunner()


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result.output


@pytest.fixture
def cli_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    run("create", repo)
    run("import", repo, EXPORTS / "base.yaml")
    run("import", repo, EXPORTS / "datasets.yaml")
    run("import", repo, EXPORTS / "spatial.yaml")
    return repo


def test_query_commands_json(cli_repo: Path) -> None:
    data = json.loads(run("query-datasets", cli_repo, "bias", "-c", "imported_g,imported_r", "--json"))
    assert len(data) == 4 and {d["run"] for d in data} == {"imported_g", "imported_r"}
    data = json.loads(
        run("query-datasets", cli_repo, "-c", "imported_g", "-c", "imported_r", "--no-find-first", "--json")
    )
    assert len(data) == 13
    data = json.loads(
        run(
            "query-data-ids",
            cli_repo,
            "visit",
            "detector",
            "--where",
            "instrument = 'Cam1' AND visit_detector_region.region OVERLAPS CIRCLE(0.5, 0.5, 0.1)",
            "--json",
        )
    )
    assert sorted((d["visit"], d["detector"]) for d in data) == [(2, 2), (2, 4)]
    data = json.loads(
        run(
            "query-dimension-records",
            cli_repo,
            "detector",
            "--where",
            "detector.raft = :r",
            "--bind",
            "r=B",
            "--json",
        )
    )
    assert [d["full_name"] for d in data] == ["Ba", "Bb"]
    data = json.loads(run("query-collections", cli_repo, "--json"))
    assert {d["name"] for d in data} == {"imported_g", "imported_r"}
    data = json.loads(run("query-dataset-types", cli_repo, "--json"))
    assert [d["name"] for d in data] == ["bias", "flat"]


def test_tables_for_people(cli_repo: Path) -> None:
    out = run("query-data-ids", cli_repo, "detector", "--where", "instrument='Cam1'")
    assert "instrument" in out and "Cam1" in out and "┃" in out


def test_writes(cli_repo: Path, tmp_path: Path) -> None:
    run("register-dataset-type", cli_repo, "calexp", "ExposureF", "instrument", "visit", "detector")
    assert "calexp" in run("query-dataset-types", cli_repo)
    run("collection-chain", cli_repo, "defaults", "imported_r", "imported_g")
    assert "imported_r, imported_g" in run("query-collections", cli_repo, "defaults")
    run("collection-chain", cli_repo, "defaults", "imported_g", "--mode", "remove")
    run("collection-chain", cli_repo, "defaults", "imported_g", "--mode", "prepend")
    out = json.loads(run("query-collections", cli_repo, "defaults", "--json"))
    assert out[0]["children"] == ["imported_g", "imported_r"]
    run(
        "certify-calibrations",
        cli_repo,
        "imported_g",
        "calib",
        "bias",
        "--begin-date",
        "2020-01-01",
        "--end-date",
        "2022-01-01",
    )
    data = json.loads(
        run(
            "query-datasets",
            cli_repo,
            "bias",
            "-c",
            "calib",
            "--where",
            "instrument='Cam1' AND visit = 1",
            "--json",
        )
    )
    assert {d["run"] for d in data} == {"imported_g"}
    run("remove-runs", cli_repo, "imported_r", "--no-confirm", ok=False)  # still in a chain
    run("collection-chain", cli_repo, "defaults", "0", "1", "--mode", "pop")
    out = run("remove-runs", cli_repo, "imported_r", "--no-confirm")
    assert "7 dataset(s)" in out
    export = tmp_path / "out.yaml"
    run("export", cli_repo, export, "-c", "imported_g")
    fresh = tmp_path / "fresh"
    run("create", fresh)
    run("import", fresh, export)
    assert len(json.loads(run("query-datasets", fresh, "-c", "imported_g", "--json"))) == 6


def test_errors_are_clear_and_fail(cli_repo: Path) -> None:
    result = runner.invoke(
        app,
        [
            "query-data-ids",
            str(cli_repo),
            "visit",
            "--where",
            "instrument='Cam1' AND visit.regoin OVERLAPS POINT(1, 2)",
        ],
    )
    assert result.exit_code == 1
    assert (
        "Did you mean 'region'" in result.output and "^" in result.output and "Traceback" not in result.output
    )
    result = runner.invoke(app, ["query-datasets", str(cli_repo), "-c", "imported_gg"])
    assert result.exit_code == 1 and "Did you mean 'imported_g'" in result.output
    result = runner.invoke(app, ["import", str(cli_repo), str(EXPORTS / "README.md")])
    assert result.exit_code == 1 and "Not a butler export file" in result.output
    result = runner.invoke(app, ["create", str(cli_repo)])
    assert result.exit_code == 1 and "already exists" in result.output


def test_help_has_examples() -> None:
    for command in ["query-datasets", "query-data-ids", "import", "export", "collection-chain"]:
        out = run(command, "--help")
        assert "Example" in out, command


def test_demo_main_job_runs_as_a_console_script(tmp_path: Path) -> None:
    """The README's first command: `porter demo` on the real HSC RC2 subset."""
    exe = Path(sys.executable).with_name("porter")
    result = subprocess.run(
        [
            str(exe),
            "demo",
            "--repo",
            str(tmp_path / "demo"),
            "--export-file",
            str(EXPORTS / "hsc-rc2-subset.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Visits per band" in out and "160" in out and "111" in out
    assert "hsc_rings_v1" in out
    assert "overlapping tract 9615 patch 14 of hsc_rings_v1 (914 found" in out
    assert "Stored 320 datasets" in out and "fsck --checksums: clean" in out  # 160 visits x 2
    with Butler(tmp_path / "demo") as butler:
        refs = butler.query_datasets("visitSummary", "demo/visit-summaries")
        assert len(refs) == 160
        visit = refs[0].data_id["visit"]
        assert butler.get(refs[0])["visit"].to_pylist() == [visit]


LONG_RUN = "u/someone/long-collection-name/run-20270104T00"
LONG_TYPE = "deepCoadd_forcedPhotometry_with_a_long_dataset_type_name"


def piped(*args: object, columns: str | None = None) -> str:
    """`porter ARGS` as a console script with stdout to a pipe (not a terminal), as `| grep` sees it."""
    env = {"PATH": "/usr/bin:/bin"} | ({"COLUMNS": columns} if columns else {})
    result = subprocess.run(
        [str(Path(sys.executable).with_name("porter")), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tables_in_a_pipe_keep_values_whole(cli_repo: Path) -> None:
    """Output to a pipe is not folded at 80 columns: each name sits whole on one line."""
    with Butler(cli_repo) as butler:
        butler.collections.register(LONG_RUN, "RUN")
        butler.collections.redefine_chain("u/someone/chain", [LONG_RUN, "imported_g", "imported_r"])
        butler.register_dataset_type(LONG_TYPE, ["instrument", "visit", "detector"], "ArrowTable")
    out = piped("query-collections", cli_repo)
    assert any(LONG_RUN in line for line in out.splitlines()), out
    children = next(line for line in out.splitlines() if "u/someone/chain" in line)
    assert f"{LONG_RUN}, imported_g, imported_r" in children, out
    out = piped("query-dataset-types", cli_repo)
    assert any(LONG_TYPE in line and "ArrowTable" in line for line in out.splitlines()), out
    # COLUMNS is honoured: at 80 the list of children wraps, the name column keeps names whole.
    out = piped("query-collections", cli_repo, columns="80")
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert any(LONG_RUN in line for line in out.splitlines()), out
    assert "imported_g" in out and "u/someone/chain" in out


def test_release_plans_are_found_through_the_repository(
    cli_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`porter release` finds a plan in --plans, --repo's releases/, ./releases or a repository here."""
    out = run("release", "init", "DP9", "--template", "rubin", "--repo", cli_repo, "--start", "2027-01-04")
    assert (cli_repo / "releases" / "DP9.yaml").is_file() and "DP9.yaml" in out
    monkeypatch.chdir(tmp_path)  # the repository is ./repo: found without saying so
    assert "release DP9" in run("release", "status", "DP9")
    run("release", "init", "DP10", "--like", "DP9", "--shift-days", "91")  # written beside DP9
    assert (cli_repo / "releases" / "DP10.yaml").is_file()
    out = run("release", "status", "DP9", "--html", "dp9.html")  # the table, and the full report
    assert "release DP9" in out and "Wrote dp9.html" in out
    assert (tmp_path / "dp9.html").read_text().startswith("<!doctype html>")
    run("release", "report", "DP9", "--html", "report.html")  # the report alone, as before
    assert (tmp_path / "report.html").read_text().startswith("<!doctype html>")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = run("release", "status", "DP9", ok=False)
    assert "No release plan DP9.yaml; looked in ./releases" in out and "--repo REPO" in out
    assert "release DP9" in run("release", "status", "DP9", "--repo", cli_repo)
    result = runner.invoke(app, ["release", "status", "DP9"], env={"PORTER_REPO": str(cli_repo)})
    assert result.exit_code == 0 and "release DP9" in result.output
    assert "release DP9" in run("release", "status", "DP9", "--plans", cli_repo / "releases")
    out = run("release", "status", "DP9", "--repo", elsewhere, ok=False)
    assert "not a porter repository" in out

    # Two repositories here with a plan of that name: which one is for the user to say.
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other"
    run("create", other)
    run("release", "init", "DP9", "--template", "rubin", "--repo", other)
    out = run("release", "status", "DP9", ok=False)
    assert "several repositories" in out and "./other/releases/DP9.yaml" in out and "./repo/releases" in out
