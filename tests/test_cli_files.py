"""The file-moving commands, run as a user would: ingest-files, retrieve-artifacts, transfer-datasets,
prune-datasets, export --directory/--transfer and import --directory."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from conftest import rc2_repo
from porter import Butler
from realistic import source_table
from test_cli import run

RUN = "HSC/raw/cli"


@pytest.fixture
def repo(tmp_path: Path, rc2_template: Path) -> Path:
    b = rc2_repo(tmp_path / "repo", None, rc2_template)
    b.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    b.close()
    return tmp_path / "repo"


def _files_table(directory: Path, detectors: list[int], fmt: str) -> tuple[Path, dict[int, pa.Table]]:
    """Catalog files plus a table listing them (relative paths, as a table next to its files has)."""
    directory.mkdir(parents=True, exist_ok=True)
    tables = {}
    for d in detectors:
        tables[d] = source_table(n=200, seed=d, detector=d)
        pq.write_table(tables[d], directory / f"src-{d}.parquet")
    listing = pa.table(
        {
            "file": [f"src-{d}.parquet" for d in detectors],
            "visit": [1228] * len(detectors),
            "detector": detectors,
        }
    )
    path = directory / f"files.{fmt}"
    if fmt == "csv":
        pacsv.write_csv(listing, path)
    else:
        pq.write_table(listing, path)
    return path, tables


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ingest_files_then_retrieve(repo: Path, tmp_path: Path, fmt: str) -> None:
    table_file, tables = _files_table(tmp_path / "incoming", [10, 11, 12], fmt)
    out = json.loads(
        run(
            "ingest-files",
            repo,
            "src",
            RUN,
            table_file,
            "--data-id",
            "instrument=HSC",
            "-t",
            "copy",
            "--json",
        )
    )
    assert sorted(r["detector"] for r in out) == [10, 11, 12]
    with Butler(repo) as b:
        for d, t in tables.items():
            assert b.get("src", instrument="HSC", visit=1228, detector=d, collections=RUN).equals(t)
    dest = tmp_path / "retrieved"
    written = json.loads(run("retrieve-artifacts", repo, dest, "-c", RUN, "--no-preserve-path", "--json"))
    assert len(written) == 3
    for f in dest.iterdir():
        assert any(pq.read_table(f).equals(t) for t in tables.values())
    # A second retrieval into the same place refuses to overwrite, and says how to.
    assert "--clobber" in run("retrieve-artifacts", repo, dest, "-c", RUN, "--no-preserve-path", ok=False)
    run("retrieve-artifacts", repo, dest, "-c", RUN, "--no-preserve-path", "--clobber")


def test_ingest_files_bad_table_changes_nothing(repo: Path, tmp_path: Path) -> None:
    table_file, _ = _files_table(tmp_path / "incoming", [10, 11], "csv")
    (tmp_path / "incoming" / "src-11.parquet").unlink()
    output = run("ingest-files", repo, "src", RUN, table_file, "--data-id", "instrument=HSC", ok=False)
    assert "src-11.parquet" in output
    assert "key=value" in run("ingest-files", repo, "src", RUN, table_file, "--data-id", "HSC", ok=False)
    with Butler(repo) as b:
        assert b.query_datasets("src", "*", find_first=False, explain=False) == []


def test_transfer_export_import_prune(repo: Path, tmp_path: Path) -> None:
    table_file, tables = _files_table(tmp_path / "incoming", [10, 11], "csv")
    run("ingest-files", repo, "src", RUN, table_file, "--data-id", "instrument=HSC")
    # transfer-datasets into an empty repository
    other = tmp_path / "other"
    run("create", other)
    moved = json.loads(run("transfer-datasets", repo, other, "-c", RUN, "-d", "src", "--json"))
    assert len(moved) == 2
    # export with files, import into a third repository
    handover = tmp_path / "handover"
    run("export", other, "export.yaml", "-c", RUN, "--directory", handover, "--transfer", "copy")
    third = tmp_path / "third"
    run("create", third)
    run("import", third, handover / "export.yaml", "--directory", handover, "--transfer", "copy")
    with Butler(third) as b:
        for d, t in tables.items():
            assert b.get("src", instrument="HSC", visit=1228, detector=d, collections=RUN).equals(t)
    # prune: dry run changes nothing; purge removes datasets and files
    listed = json.loads(run("prune-datasets", third, RUN, "--purge", RUN, "--dry-run", "--json"))
    assert len(listed) == 2
    run("prune-datasets", third, RUN, "--purge", RUN, "--no-confirm")
    with Butler(third) as b:
        assert b.query_datasets("src", RUN, explain=False) == []
        assert b.fsck().ok
    assert "Say what to do" in run("prune-datasets", third, RUN, ok=False)
