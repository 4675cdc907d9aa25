"""A process killed at a random moment of a put or a removal leaves a consistent repository.

Each round starts a writer subprocess and kills it with SIGKILL: after a
random delay, or the moment the write journal shows it inside a write
(``writing``) or a removal (``deleting``), so that every phase is hit.  Then
it checks the invariants: every dataset the registry has, with a
file, has that file intact; every file in the datastore is known to the
registry (datasets or the write journal) or is a named temporary file; and
``fsck --repair`` brings the repository back to a clean state.
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

from conftest import load
from porter import Butler

WORKER = Path(__file__).with_name("crash_worker.py")
ROUNDS = 6


def _start(repo: Path, mode: str, seed: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(repo), mode, str(seed), *extra],
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
    for ref in butler.query_datasets("src", "crash/*", find_first=False):
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
