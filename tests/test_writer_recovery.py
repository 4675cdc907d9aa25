"""A writer killed mid-put or mid-import is recovered by the plain re-run of the same command, with no repair step.

Each journal row names its writer (host, PID, process start time).  These
tests run a real writer in a subprocess, stop it at a named moment
(``PORTER_STOP_AT``, see `porter._stop_points`: after the journal commit,
after the files are in place, inside the registry transaction), SIGKILL it
there, and then check that:

- ``fsck`` reports its leftovers at once as recoverable ("writer gone"),
  not as damage and not hidden behind the one-hour grace;
- the plain re-run of the same command succeeds, stores every dataset
  intact, and leaves ``fsck`` clean (no ``fsck --repair``, no ``--grace 0``);
- a writer that is still running is never cleaned up by anyone else: a
  second writer of the same paths gets a conflict naming it, and
  ``fsck --repair --grace 0`` leaves its journal row and file alone.

On SQLite and PostgreSQL, and on file and S3 datastores (deleting a dead
writer's file differs between them).  Random-moment kills of an import (a
re-run of an import is idempotent, so any moment must be recoverable) are
in `test_import_killed_at_random_moments_is_rerun`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy

from conftest import hsc_repository, load
from porter import Butler

WORKER = Path(__file__).with_name("recovery_worker.py")
PORTER = str(Path(sys.executable).with_name("porter"))
STOP_POINTS = ("journaled", "written", "registering")
PUTS = 3
RUN = "recover/run"


def _env(stop_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PORTER_STOP_AT"}
    if stop_at:
        env["PORTER_STOP_AT"] = stop_at
    return env


def _put_command(repo: Path) -> list[str]:
    return [sys.executable, str(WORKER), str(repo), "put", RUN, str(PUTS)]


def _start_stopped(command: list[str], point: str) -> subprocess.Popen[str]:
    """Start ``command`` and return once it has stopped at ``point`` (still running, waiting to be killed)."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(point),
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # ends at EOF if the command exits instead of stopping
        seen.append(line)
        if line.startswith(f"porter: stopped at {point} "):
            return proc
    proc.wait()
    raise AssertionError(f"{command} never stopped at {point!r} (exit {proc.returncode}):\n{''.join(seen)}")


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _rerun(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=_env(None), capture_output=True, text=True, stdin=subprocess.DEVNULL)


def _table(detector: int) -> pa.Table:
    """What recovery_worker.py puts for ``detector``."""
    rng = np.random.default_rng(detector)
    return pa.table({"id": np.arange(20_000), "flux": rng.normal(size=20_000)})


def _assert_leftovers_recoverable(butler: Butler) -> None:
    """fsck, with its default grace, shows the killed writer's journal rows as recoverable garbage."""
    butler.registry.reset_caches()
    report = butler.fsck()
    assert report.ok, report.damage
    interrupted = [f for f in report.garbage if f.kind == "interrupted write"]
    assert interrupted, report.findings
    assert all(f.detail.startswith("recoverable (writer gone)") for f in interrupted), interrupted
    assert report.journal_in_progress == 0


@pytest.mark.parametrize("point", STOP_POINTS)
def test_put_killed_is_rerun_without_repair(
    tmp_path: Path, backend: str, datastore_root: str | None, point: str
) -> None:
    repo = tmp_path / "repo"
    with hsc_repository(repo, backend, datastore_root) as butler:
        _kill(_start_stopped(_put_command(repo), point))
        _assert_leftovers_recoverable(butler)

        again = _rerun(_put_command(repo))
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "done"

        butler.registry.reset_caches()
        refs = sorted(butler.query_datasets("src", RUN, explain=False), key=lambda r: r.data_id["detector"])
        assert [r.data_id["detector"] for r in refs] == list(range(PUTS))
        for ref in refs:
            assert butler.get(ref).equals(_table(ref.data_id["detector"]))
        assert butler.fsck(checksums=True).clean


def _export_with_files(tmp_path: Path) -> tuple[Path, Path]:
    """An export file and its directory of files: PUTS tables in RUN, from a scratch SQLite repository."""
    source = load(Butler.create(tmp_path / "source"), "hsc-rc2-subset.yaml")
    source.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    for detector in range(PUTS):
        source.put(_table(detector), "src", instrument="HSC", visit=1228, detector=detector, run=RUN)
    directory = tmp_path / "handover"
    export = directory / "export.yaml"
    source.export(export, collections=[RUN], directory=str(directory), transfer="copy")
    source.close()
    return export, directory


def _import_command(repo: Path, export: Path, directory: Path) -> list[str]:
    return [PORTER, "import", str(repo), str(export), "--directory", str(directory), "--transfer", "copy"]


def _assert_imported(butler: Butler) -> None:
    butler.registry.reset_caches()
    refs = sorted(butler.query_datasets("src", RUN, explain=False), key=lambda r: r.data_id["detector"])
    assert [r.data_id["detector"] for r in refs] == list(range(PUTS))
    for ref in refs:
        assert butler.get(ref).equals(_table(ref.data_id["detector"]))
    report = butler.fsck(checksums=True)
    assert report.clean, report.findings


@pytest.mark.parametrize("point", STOP_POINTS)
def test_import_with_files_killed_is_rerun_without_repair(
    tmp_path: Path, backend: str, datastore_root: str | None, point: str
) -> None:
    export, directory = _export_with_files(tmp_path)
    repo = tmp_path / "repo"
    command = _import_command(repo, export, directory)
    with hsc_repository(repo, backend, datastore_root) as butler:
        _kill(_start_stopped(command, point))
        _assert_leftovers_recoverable(butler)

        again = _rerun(command)
        assert again.returncode == 0, again.stdout + again.stderr
        _assert_imported(butler)


IMPORT_TRIALS = 4


def test_import_killed_at_random_moments_is_rerun(tmp_path: Path, backend: str) -> None:
    """SIGKILL an import with files after a random delay (any moment, start-up included), then re-run it."""
    export, directory = _export_with_files(tmp_path)
    for trial in range(IMPORT_TRIALS):
        repo = tmp_path / f"repo{trial}"
        command = _import_command(repo, export, directory)
        with hsc_repository(repo, backend, None) as butler:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(
                random.Random(trial).uniform(0.5, 3.0)
            )  # where the kill lands, not a bound on anything
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            again = _rerun(command)
            assert again.returncode == 0, again.stdout + again.stderr
            _assert_imported(butler)


@pytest.mark.parametrize("point", ["journaled", "written"])
def test_a_live_writer_is_never_cleaned_up(
    tmp_path: Path, backend: str, datastore_root: str | None, point: str
) -> None:
    """While a writer is stopped mid-put (alive), neither a second writer of the same paths nor
    ``fsck --repair --grace 0`` touches its journal row or its file; once it is killed, the re-run recovers."""
    repo = tmp_path / "repo"
    with hsc_repository(repo, backend, datastore_root) as butler:
        held = _start_stopped(_put_command(repo), point)
        try:
            (row,) = _journal(butler)
            assert row.writer is not None and f"w{held.pid}-" in row.writer
            uri = butler.datastore.uri_of(row.path)
            assert uri.exists() == (point == "written")

            second = _rerun(_put_command(repo))
            assert second.returncode != 0
            assert (
                "WriterBusyError: Another process is writing" in second.stderr
                and "still running" in second.stderr
            ), second.stderr
            assert f"process {held.pid} " in second.stderr

            repaired = subprocess.run(
                [PORTER, "fsck", str(repo), "--repair", "--grace", "0"], capture_output=True, text=True
            )
            assert repaired.returncode == 0, repaired.stdout + repaired.stderr
            assert "1 journal row(s) of writes or removals still running" in repaired.stdout
            assert _journal(butler) == [row]
            assert uri.exists() == (point == "written")
            assert held.poll() is None
        finally:
            _kill(held)
        again = _rerun(_put_command(repo))
        assert again.returncode == 0, again.stderr
        assert butler.fsck(checksums=True).clean


def _journal(butler: Butler) -> list:
    """The datastore's journal rows (not stored artifacts)."""
    with butler.datastore.db.reading() as conn:
        return [r for r in butler.datastore.tables.artifacts(conn) if r.state != "stored"]


def test_a_repository_made_before_writers_were_recorded(tmp_path: Path, backend: str) -> None:
    """Opening a repository whose journal has no ``writer`` column adds it; its old rows wait for the grace."""
    repo = tmp_path / "repo"
    with hsc_repository(repo, backend, None) as butler:
        data_id = butler.registry.expand_data_id(instrument="HSC", visit=1228, detector=0)
        path = butler.datastore.plan(
            butler.registry.get_dataset_type("src"), data_id.mapping, RUN, uuid.uuid4()
        ).path
        db = butler.registry.db
        table = db.engine.dialect.identifier_preparer.format_table(butler.datastore.tables.artifact)
        with db.engine.begin() as conn:  # the table as an older porter made it
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN writer")
            # An older porter's journal row, of a writer it did not name, two hours old.
            conn.execute(
                sqlalchemy.text(f"INSERT INTO {table} (path, state, created) VALUES (:p, 'writing', :c)"),
                {"p": path, "c": time.time_ns() - 7200 * 10**9},
            )
        db.engine.dispose()
        with Butler(repo, run=RUN) as reopened:
            report = reopened.fsck()
            assert [f.kind for f in report.garbage] == ["interrupted write"]
            assert "older porter" in report.garbage[0].detail
            reopened.put(_table(0), "src", instrument="HSC", visit=1228, detector=0)  # recovers the old row
            assert reopened.fsck(checksums=True).clean
