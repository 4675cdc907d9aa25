"""A full filesystem is porter's `StorageFullError`, naming it, with the write rolled back and nothing half-written.

Real full filesystems, no stand-ins: a small tmpfs mounted for the test
holds the datastore (and so its temporary area) or the SQLite registry,
and fills up for real (ENOSPC from the formatter, the copy, or SQLite's
``SQLITE_FULL``).  PostgreSQL's disk cannot be filled here without taking
the shared server down, so its ``disk_full`` (SQLSTATE 53100) comes from the
server itself, raised by a trigger on the dataset table: the same error a
full data directory gives, through the same driver and code path.

After each failure the repository is exactly as before (no dataset, no
journal row, no file), ``fsck`` is clean, and the same write succeeds once
there is room.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy

from conftest import _pg_url, hsc_repository, load
from porter import Butler, DatasetRef, FileDataset
from porter.errors import MissingCollectionError, StorageFullError

MountSmall = Callable[[str, str], Path]
HUGE = 500_000
"""Rows of a table too big for the small filesystems (~4 MB as Parquet: random doubles do not compress)."""


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[MountSmall]:
    """``mount(name, size)``: a fresh tmpfs of ``size`` (``"1m"``) at ``tmp_path/name``, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            message = f"cannot mount a small tmpfs here ({done.stderr.strip()}); these tests need root"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def _huge_table() -> pa.Table:
    return pa.table({"flux": np.random.default_rng(1).normal(size=HUGE)})


def _fill(ballast: Path) -> None:
    """Fill ``ballast``'s filesystem to the last block (big writes, then ever smaller ones)."""
    with open(ballast, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _journal(butler: Butler) -> list:
    with butler.datastore.db.reading() as conn:
        return [r for r in butler.datastore.tables.artifacts(conn) if r.state != "stored"]


def _assert_unchanged(butler: Butler, files_before: list[str], files_root: Path) -> None:
    """Nothing of the failed write is left: no dataset, no journal row, no file (temporaries included)."""
    butler.registry.reset_caches()
    with contextlib.suppress(MissingCollectionError):  # an import rolled back has not even made the run
        assert list(butler.query_datasets("src", "full/run", explain=False)) == []
    assert _journal(butler) == []
    assert _files(files_root) == files_before
    assert butler.fsck().clean


def test_full_datastore(tmp_path: Path, backend: str, small_filesystem: MountSmall) -> None:
    """A put and an ingest (copy) into a datastore whose filesystem is full: the formatter's and the
    copy's ENOSPC become `StorageFullError` naming the mount point; nothing is left; a smaller write fits."""
    files = small_filesystem("datastore", "1m")
    with hsc_repository(tmp_path / "repo", backend, datastore=str(files)) as butler:
        before = _files(files)
        with pytest.raises(StorageFullError) as caught:
            butler.put(_huge_table(), "src", instrument="HSC", visit=1228, detector=0, run="full/run")
        message = str(caught.value)
        assert f"mounted at {files}" in message and "src dataset" in message, message
        assert "rolled back" in message and "run the same command again" in message
        assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == 28
        _assert_unchanged(butler, before, files)

        outside = tmp_path / "big.parquet"
        pq.write_table(_huge_table(), outside)
        src = butler.get_dataset_type("src")
        data_id = butler.registry.expand_data_id(instrument="HSC", visit=1228, detector=1)
        ref = DatasetRef(src, data_id, "full/run")
        with pytest.raises(
            StorageFullError, match=f"mounted at {files}.*big.parquet|big.parquet.*mounted at {files}"
        ):
            butler.ingest(FileDataset(str(outside), ref), transfer="copy")
        _assert_unchanged(butler, before, files)

        small = pa.table({"flux": np.arange(10.0)})
        stored = butler.put(small, "src", instrument="HSC", visit=1228, detector=0, run="full/run")
        assert butler.get(stored).equals(small)


def test_full_sqlite_registry(tmp_path: Path, small_filesystem: MountSmall) -> None:
    """The SQLite registry's filesystem fills up: SQLITE_FULL becomes `StorageFullError` naming the database
    and its mount point; the failed put left no dataset, journal row or file; it succeeds once there is room."""
    area = small_filesystem("registry", "64m")
    files = tmp_path / "files"
    with hsc_repository(area / "repo", "sqlite", datastore=str(files)) as butler:
        butler.put({"d": -1}, "summary", instrument="HSC", visit=1228, detector=99, run="full/run")
        _fill(area / "ballast")
        failed: StorageFullError | None = None
        for detector in range(100):  # the WAL has some room left; a few puts use it up
            try:
                butler.put(
                    {"d": detector, "pad": "x" * 4000},
                    "summary",
                    instrument="HSC",
                    visit=1228,
                    detector=detector,
                    run="full/run",
                )
            except StorageFullError as exc:
                failed = exc
                break
        assert failed is not None, "the registry never filled up"
        message = str(failed)
        assert "registry database" in message and f"mounted at {area}" in message, message
        assert "rolled back" in message
        butler.registry.reset_caches()
        assert (
            butler.registry.find_dataset(
                "summary", instrument="HSC", visit=1228, detector=detector, collections="full/run"
            )
            is None
        )
        stored_files = _files(files)
        assert len(stored_files) == detector + 1  # the failed put's file is gone

        (area / "ballast").unlink()
        ref = butler.put(
            {"d": detector}, "summary", instrument="HSC", visit=1228, detector=detector, run="full/run"
        )  # the same put, once there is room: no conflict with its own leftovers
        assert butler.get(ref) == {"d": detector}
        assert _journal(butler) == []
        assert butler.fsck().clean


def test_full_postgresql_registry(tmp_path: Path) -> None:
    """PostgreSQL's disk_full (SQLSTATE 53100, raised by the server) becomes `StorageFullError` naming the
    server; the put is rolled back: no dataset, no journal row, no file."""
    pytest.importorskip("psycopg2")
    files = tmp_path / "files"
    with hsc_repository(tmp_path / "repo", "postgresql", datastore=str(files)) as butler:
        schema = butler.registry.db.namespace
        engine = sqlalchemy.create_engine(_pg_url().replace("postgresql://", "postgresql+psycopg2://"))
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f'CREATE FUNCTION "{schema}".disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
                "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; "
                "END $$"
            )
            conn.exec_driver_sql(
                f'CREATE TRIGGER disk_full BEFORE INSERT ON "{schema}".dataset '
                f'FOR EACH ROW EXECUTE FUNCTION "{schema}".disk_full()'
            )
        before = _files(files)
        with pytest.raises(StorageFullError) as caught:
            butler.put(_huge_table(), "src", instrument="HSC", visit=1228, detector=0, run="full/run")
        message = str(caught.value)
        assert "PostgreSQL server" in message and "53100" in message and "inserting into" in message, message
        assert "rolled back" in message
        _assert_unchanged(butler, before, files)

        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TRIGGER disk_full ON "{schema}".dataset')
        engine.dispose()
        ref = butler.put(_huge_table(), "src", instrument="HSC", visit=1228, detector=0, run="full/run")
        assert butler.get(ref).num_rows == HUGE
        assert butler.fsck().clean


def test_full_temporary_area_of_an_s3_datastore(
    tmp_path: Path, s3_server: str, small_filesystem: MountSmall, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 datastore formats files in a local scratch area (in the system's temp directory) first:
    when that filesystem is full the put is a `StorageFullError` naming it, and nothing reaches S3."""
    import tempfile

    scratch = small_filesystem("tmp", "1m")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # what TMPDIR does for a new process
    root = f"s3://porter-test/{uuid.uuid4().hex[:12]}"
    with hsc_repository(tmp_path / "repo", "sqlite", datastore=root) as butler:
        assert str(butler.datastore.temporary_area()).startswith(str(scratch))
        with pytest.raises(StorageFullError, match=f"mounted at {scratch} is full"):
            butler.put(_huge_table(), "src", instrument="HSC", visit=1228, detector=0, run="full/run")
        butler.registry.reset_caches()
        assert list(butler.query_datasets("src", "full/run", explain=False)) == []
        assert _journal(butler) == []
        assert [uri for uri, _ in butler.datastore.root.walk()] == []
        assert _files(scratch) == []


def test_import_into_a_full_datastore(tmp_path: Path, backend: str, small_filesystem: MountSmall) -> None:
    """``porter import --directory`` into a full datastore: a porter error naming the filesystem (no
    traceback), and the import changed nothing: no dataset, no journal row, no file."""
    from typer.testing import CliRunner

    from porter.cli import app

    source = load(Butler.create(tmp_path / "source"), "hsc-rc2-subset.yaml")
    source.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    source.put(_huge_table(), "src", instrument="HSC", visit=1228, detector=0, run="full/run")
    handover = tmp_path / "handover"
    source.export(
        handover / "export.yaml", collections=["full/run"], directory=str(handover), transfer="copy"
    )
    source.close()

    files = small_filesystem("datastore", "1m")
    with hsc_repository(tmp_path / "repo", backend, datastore=str(files)) as butler:
        before = _files(files)
        result = CliRunner().invoke(
            app,
            [
                "import",
                str(tmp_path / "repo"),
                str(handover / "export.yaml"),
                "--directory",
                str(handover),
                "--transfer",
                "copy",
            ],
        )
        assert result.exit_code != 0
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert f"mounted at {files} is full" in " ".join(result.output.split()), result.output
        _assert_unchanged(butler, before, files)
