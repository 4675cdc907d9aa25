"""A process killed at a random moment of a put or a removal leaves a consistent repository.

Each round starts a writer subprocess and kills it with SIGKILL: after a
random delay, or the moment the write journal shows it inside a write
(``writing``) or a removal (``deleting``), so that every phase is hit.  Then
it checks the invariants: every dataset the registry has, with a
file, has that file intact; every file in the datastore is known to the
registry (datasets or the write journal) or is a named temporary file; and
``fsck --repair`` brings the repository back to a clean state.

A killed writer's temporaries are garbage, not damage: ``porter fsck``
exits 0 with them there, and ``fsck --repair`` or the next writer sweeps
them, on SQLite and PostgreSQL, files and S3 (whose temporaries are local).
A running writer's temporary is never swept.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from conftest import hsc_repository, load
from porter import Butler
from porter.cli import app
from porter.datastore._uri import Writer

WORKER = Path(__file__).with_name("crash_worker.py")
ROUNDS = 6


def _start(repo: Path, mode: str, seed: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(repo), mode, str(seed), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"worker failed to start: {line}{proc.stderr.read() if proc.stderr else ''}")
    return proc


def _kill(proc: subprocess.Popen[str], repo: Path, seed: int, journal_state: str | None) -> None:
    """SIGKILL after a random delay, or as soon as the journal has a row in ``journal_state``."""
    deadline = time.monotonic() + (30.0 if journal_state else random.Random(seed).uniform(0.05, 1.5))
    db = sqlite3.connect(repo / "registry.sqlite3", timeout=30)
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (
                journal_state
                and db.execute(
                    "SELECT 1 FROM datastore_artifact WHERE state = ? LIMIT 1", (journal_state,)
                ).fetchone()
            ):
                break
            time.sleep(0.0005 if journal_state else 0.01)
        else:
            if journal_state:
                raise AssertionError(f"the worker never had a {journal_state!r} journal row")
    finally:
        db.close()
    if proc.poll() is not None:
        raise AssertionError(f"worker exited by itself: {proc.stderr.read() if proc.stderr else ''}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _check_consistent(butler: Butler) -> None:
    report = butler.fsck(grace=0)
    kinds = set(report.counts())
    # Allowed after a kill: journal rows of the interrupted operation and temporary files.
    assert kinds <= {"interrupted write", "interrupted removal", "temporary file"}, report.findings
    for ref in butler.query_datasets("src", "crash/*", find_first=False, explain=False):
        if butler.exists(ref):
            assert butler.get(ref, parameters={"columns": ["id"]}).num_rows > 0
    repaired = butler.fsck(repair=True, grace=0)
    assert all(f.repaired for f in repaired.findings), repaired.findings
    assert butler.fsck(grace=0).ok


@pytest.mark.parametrize("mode", ["put", "remove", "ingest", "transfer"])
def test_killed_writers_leave_consistent_repositories(
    tmp_path: Path, datastore_root: str | None, mode: str
) -> None:
    repo = tmp_path / "repo"
    butler = load(Butler.create(repo, datastore=datastore_root), "hsc-rc2-subset.yaml")
    butler.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    extra: list[str] = []
    if mode == "transfer":  # a source repository (local files) to transfer from, again and again
        source = load(Butler.create(tmp_path / "source"), "hsc-rc2-subset.yaml")
        source.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
        for detector in range(0, 60):
            table = pa.table(
                {"id": np.arange(5000), "flux": np.random.default_rng(detector).normal(size=5000)}
            )
            source.put(table, "src", instrument="HSC", visit=1228, detector=detector, run="crash/source")
        source.close()
        extra = [str(tmp_path / "source")]
    interrupted = "interrupted removal" if mode == "remove" else "interrupted write"
    hits = 0
    for round_ in range(ROUNDS):
        seed = 1000 * round_ + (7 if mode == "remove" else 3)
        # Odd rounds wait for the journal to show the operation in progress.
        state = None if round_ % 2 == 0 else ("deleting" if mode == "remove" else "writing")
        _kill(_start(repo, mode, seed, *extra), repo, seed, state)
        butler.registry.reset_caches()
        if state is not None:
            hits += interrupted in butler.fsck(grace=0).counts()
        _check_consistent(butler)
    butler.close()
    assert hits > 0, f"no kill landed inside a {mode}"


# --- temporaries of killed writers: garbage, swept; a live writer's: untouched --------------------------------

GARBAGE_ROUNDS = 4
"""Kills per back-end combination (half of them aimed at a moment when the writer has a temporary)."""
HANG_GUARD = 600.0
"""Seconds after which a wait for a worker fails instead of hanging the suite (not a performance bound)."""
runner = CliRunner()


def _temporaries_of(butler: Butler, pid: int) -> list[Path]:
    """The files process ``pid`` is formatting (or left) in the datastore's temporary area."""
    area = butler.datastore.temporary_area()
    if not area.is_dir():
        return []
    return [p for p in area.iterdir() if (w := Writer.parse(p.name)) is not None and w.pid == pid]


def _temporaries_in_root(butler: Butler) -> list[str]:
    """Every temporary below a local datastore root (the temp area and copies next to artifacts)."""
    root = butler.datastore.root
    relatives = (uri.relative_to(root) or "" for uri, _ in root.walk())
    return [r for r in relatives if r.startswith(".porter-tmp/") or r.endswith(".porter-tmp")]


def _kill_mid_write(proc: subprocess.Popen[str], butler: Butler, seed: int, in_temporary: bool) -> bool:
    """SIGKILL after a random delay, or the moment the worker has a temporary; True if one was left."""
    delay = random.Random(seed).uniform(0.05, 1.5)
    start = time.monotonic()
    while proc.poll() is None:
        elapsed = time.monotonic() - start
        if (in_temporary and _temporaries_of(butler, proc.pid)) or (not in_temporary and elapsed > delay):
            break
        if elapsed > HANG_GUARD:
            proc.kill()
            raise AssertionError("the worker never had a temporary")
        time.sleep(0.0005)
    if proc.poll() is not None:
        raise AssertionError(f"worker exited by itself: {proc.stderr.read() if proc.stderr else ''}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return bool(_temporaries_of(butler, proc.pid))


def test_killed_writers_temporaries_are_garbage_and_swept(
    tmp_path: Path, backend: str, datastore_root: str | None
) -> None:
    """Kill putting writers mid-put: fsck finds no damage and exits 0, and a sweep leaves no temporary.

    Even rounds kill after a random delay; odd rounds the moment the writer has a
    temporary (formatting, hashing or moving a file), so some kills leave one.  The
    sweep alternates between ``porter fsck --repair`` (which sees the temporaries
    below a local root) and a new writer's first put (which sweeps its temporary
    area: ``.porter-tmp`` of a local root, this user's scratch directory for S3).
    """
    repo = tmp_path / "repo"
    local = datastore_root is None
    with hsc_repository(repo, backend, datastore_root) as butler:
        left = 0
        for round_ in range(GARBAGE_ROUNDS):
            seed = 1000 * round_ + 11
            proc = _start(repo, "put", seed)
            left += _kill_mid_write(proc, butler, seed, in_temporary=round_ % 2 == 1)
            butler.registry.reset_caches()

            report = butler.fsck()
            assert report.ok, report.damage  # garbage is no damage
            # The killed put's temporary, and its journal row (reported at once: its writer is gone).
            assert {f.kind for f in report.garbage} <= {"temporary file", "interrupted write"}, report.garbage
            assert all("writer gone" in f.detail for f in report.garbage if f.kind == "interrupted write")
            checked = runner.invoke(app, ["fsck", str(repo)])
            assert checked.exit_code == 0, checked.output
            if local and _temporaries_of(butler, proc.pid):
                temporaries = [f.path for f in report.garbage if f.kind == "temporary file"]
                assert temporaries == _temporaries_in_root(butler)
                assert "1 temporary file" in checked.output.split("Garbage from interrupted writes:")[1]

            if local and round_ % 2 == 0:
                repaired = runner.invoke(app, ["fsck", str(repo), "--repair"])
                assert repaired.exit_code == 0, repaired.output
            else:
                with Butler(repo, run="u/sweeper") as writer:  # its first put sweeps
                    writer.put({"round": round_}, "summary", instrument="HSC", visit=1228, detector=round_)
            assert not _temporaries_of(butler, proc.pid)
            if local:
                assert _temporaries_in_root(butler) == []
        assert left > 0, "no kill left a temporary behind"
        _check_consistent(butler)


def test_a_running_writers_temporary_is_never_swept(
    tmp_path: Path, backend: str, datastore_root: str | None
) -> None:
    """A writer stopped half-way through formatting a file keeps its temporary through every sweep
    (fsck with no grace at all, fsck --repair, a new writer, an explicit sweep), then finishes its put."""
    repo = tmp_path / "repo"
    with hsc_repository(repo, backend, datastore_root) as butler:
        proc = _start(repo, "hold", 0)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = proc.stdout.readline()
            assert line.startswith("holding "), line + (proc.stderr.read() if proc.stderr else "")
            held = Path(line.removeprefix("holding ").strip())
            assert Writer.parse(held.name) == Writer.of(proc.pid)

            report = butler.fsck(grace=0)
            assert report.garbage == []
            local = datastore_root is None  # for S3 the temporary is local, outside what fsck checks
            assert report.in_progress == (1 if local else 0)
            repaired = runner.invoke(app, ["fsck", str(repo), "--repair"])
            assert repaired.exit_code == 0, repaired.output
            assert ("1 temporary file(s) of writes still running" in repaired.output) == local
            with Butler(repo, run="u/sweeper") as writer:  # a new writer's first put sweeps
                writer.put({"n": 1}, "summary", instrument="HSC", visit=1228, detector=1)
            assert butler.datastore.sweep_temporaries(grace=0) == []
            assert held.read_bytes() == b"partial: "

            proc.stdin.write("go on\n")
            proc.stdin.flush()
            assert proc.stdout.readline().startswith("stored "), proc.stderr.read() if proc.stderr else ""
            assert proc.wait() == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        butler.registry.reset_caches()
        (ref,) = butler.query_datasets("summary", "crash/held")
        assert butler.get(ref) == {"held": True}
        assert not held.exists()
        assert butler.fsck(grace=0, checksums=True).clean
