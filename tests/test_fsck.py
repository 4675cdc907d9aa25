"""``fsck`` finds each kind of damage, repairs only what is safe, and never deletes a referenced file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import load
from porter import Butler
from porter.cli import app
from porter.datastore import ORPHANS_AREA
from porter.datastore._uri import DEAD, LIVE, UNKNOWN, LocalURI, Writer, classify_temporary

RUN = "u/fsck/run"
runner = CliRunner()
CCD = {"instrument": "HSC", "visit": 1228, "detector": 50}


@pytest.fixture
def butler(tmp_path: Path, datastore_root: str | None) -> Butler:
    b = load(Butler.create(tmp_path / "repo", datastore=datastore_root), "hsc-rc2-subset.yaml")
    b.close()
    b = Butler(tmp_path / "repo", run=RUN)
    b.register_dataset_type("summary", ["instrument", "visit", "detector"], "StructuredDataDict")
    return b


def dead_writer() -> Writer:
    """The writer identity of a process that has exited (and been reaped), as a killed writer's would be."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    writer = Writer.of(child.pid)  # while it runs: its start time is in /proc
    child.communicate()
    return writer


def _put(butler: Butler, detector: int, value: object = None) -> object:
    return butler.put({"detector": detector, "value": value}, "summary", {**CCD, "detector": detector})


def test_clean_repository(butler: Butler) -> None:
    for d in (50, 51):
        _put(butler, d)
    report = butler.fsck(checksums=True)
    assert report.ok and report.artifacts_checked == 2 and report.files_seen == 2


def test_each_finding_and_its_repair(butler: Butler) -> None:
    refs = {d: _put(butler, d, "x" * 10) for d in (50, 51, 52, 53, 54)}
    root = butler.datastore.root
    butler.get_uri(refs[50]).remove()  # missing file
    butler.get_uri(refs[51]).write(b"detector: 51\n")  # size mismatch
    uri52 = butler.get_uri(refs[52])
    data = uri52.read()
    uri52.write(data.replace(b"x", b"y"))  # same size, other content
    butler.registry.remove_datasets([refs[53]])  # registry-only removal: file left unreferenced
    root.join("stray/notes.txt").write(b"someone's file")  # orphan
    dead = f".porter-tmp/{dead_writer().token}.abc.yaml"
    root.join(dead).write(b"half")  # a killed writer's temporary: garbage
    live = f".porter-tmp/{Writer.current().token}.def.yaml"
    root.join(live).write(b"half")  # a running writer's (this process): left alone
    butler.registry.insert_datasets("summary", [{**CCD, "detector": 55}], RUN)  # no file
    butler.datastore.reserve(
        [
            butler.datastore.plan(
                butler.registry.get_dataset_type("summary"), {**CCD, "detector": 56}, RUN, uuid.uuid4()
            )
        ]
    )  # a write in progress (journal row, no file yet)

    report = butler.fsck(checksums=True)
    kinds = {f.kind: f for f in report.findings}
    assert set(kinds) == {
        "missing file",
        "size mismatch",
        "checksum mismatch",
        "unreferenced artifact",
        "orphan file",
        "temporary file",
        "datasets without files",
    }
    assert kinds["orphan file"].path == "stray/notes.txt"
    assert kinds["datasets without files"].path == "summary"
    assert kinds["temporary file"].path == dead and kinds["temporary file"].garbage
    assert [f.kind for f in report.garbage] == ["temporary file"] and report.in_progress == 1
    assert report.journal_in_progress == 1  # the reserved path: this process, running, reserved it
    assert not report.ok and not any(f.garbage for f in report.damage)
    assert "interrupted write" not in butler.fsck(grace=0).counts()  # a live writer's row, whatever the grace

    repaired = butler.fsck(repair=True, checksums=True)
    done = {f.kind for f in repaired.findings if f.repaired}
    assert done == {"unreferenced artifact", "orphan file", "temporary file"}
    # Referenced files are never deleted, even damaged ones.
    assert butler.get_uri(refs[51]).exists() and butler.get_uri(refs[52]).exists()
    assert root.join(f"{ORPHANS_AREA}/stray/notes.txt").read() == b"someone's file"
    assert not root.join(dead).exists() and root.join(live).read() == b"half"
    assert not root.join("stray/notes.txt").exists()
    after = butler.fsck(checksums=True).counts()
    assert after == {
        "missing file": 1,
        "size mismatch": 1,
        "checksum mismatch": 1,
        "datasets without files": 1,
    }
    assert butler.get(refs[54]) == {"detector": 54, "value": "x" * 10}


def test_release_files_in_the_repository_are_not_orphans(butler: Butler) -> None:
    """`porter release` keeps plans, manifests and reports in releases/, often inside the repository
    (the demo does): fsck --repair must not move them into quarantine, which would break the release."""
    root = butler.datastore.root
    _put(butler, 50)
    root.join("releases/DP2.yaml").write(b"name: DP2\n")
    root.join("releases/DP2/manifests/catalogs-1.parquet").write(b"PAR1")
    root.join("releases-old/notes.txt").write(b"not porter's")  # a look-alike name is still an orphan
    report = butler.fsck(repair=True, checksums=True)
    assert [(f.kind, f.path) for f in report.findings] == [("orphan file", "releases-old/notes.txt")]
    assert root.join("releases/DP2.yaml").read() == b"name: DP2\n"
    assert root.join("releases/DP2/manifests/catalogs-1.parquet").exists()


def test_cli(butler: Butler) -> None:
    _put(butler, 50)
    repo = str(butler.root)
    clean = runner.invoke(app, ["fsck", repo])
    assert clean.exit_code == 0, clean.output
    assert "no problems" in clean.output
    butler.datastore.root.join("stray.bin").write(b"?")
    found = runner.invoke(app, ["fsck", repo, "--json"])
    assert found.exit_code == 1
    assert json.loads(found.stdout) == [
        {"finding": "orphan file", "path": "stray.bin", "detail": "", "repaired": False, "garbage": False}
    ]
    fixed = runner.invoke(app, ["fsck", repo, "--repair"])
    assert fixed.exit_code == 0 and "1 orphan file" in fixed.output


def test_a_writer_is_live_until_it_exits_and_a_reused_pid_is_not_it() -> None:
    """How a sweeper decides liveness: PID, process start time (against PID reuse), host and boot."""
    me = Writer.current()
    assert me.state() == LIVE and Writer.parse(f".x.parquet.{me.token}.k2j4_9a.porter-tmp") == me
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        running = Writer.of(child.pid)
        assert running.state() == LIVE
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited but not reaped: a zombie
        assert running.state() == DEAD
    finally:
        child.wait()
    assert running.state() == DEAD
    assert Writer(me.pid, me.started + 1, me.machine).state() == DEAD  # an earlier process with this PID
    elsewhere = ("0123456789" if not me.machine.startswith("0123456789") else "9876543210") + me.machine[10:]
    assert Writer(me.pid, me.started, elsewhere).state() == UNKNOWN  # another host: PIDs mean nothing here
    if not me.machine.endswith("000000"):  # the boot ID is known
        other_boot = me.machine[:10] + ("abcdef" if not me.machine.endswith("abcdef") else "fedcba")
        assert Writer(me.pid, me.started, other_boot).state() == DEAD  # from before this host's last boot
    assert Writer.parse("0123abcd.parquet") is None


def test_which_temporaries_are_garbage() -> None:
    """A dead writer's temporary is garbage at once; a live one's never; one whose writer cannot be
    checked (another host, or no writer in the name) once nobody has modified it for the grace period."""
    now = time.time()
    dead, me = dead_writer(), Writer.current()
    elsewhere = Writer(
        me.pid, me.started, ("0123456789" if me.machine[0] != "0" else "9876543210") + "000000"
    )
    assert classify_temporary(f"{dead.token}.a.yaml", now, 3600, now)[0]
    assert not classify_temporary(f"{me.token}.a.yaml", now - 10**6, 0, now)[0]
    for name in (f"{elsewhere.token}.a.yaml", "0123abcd.yaml"):
        assert not classify_temporary(name, now - 60, 3600, now)[0]
        assert classify_temporary(name, now - 7200, 3600, now)[0]
    stale, why = classify_temporary(f".a.yaml.{dead.token}.x1y2z3.porter-tmp", now, 3600, now)
    assert stale and why == f"left by process {dead.pid} of this host, which has exited"


def test_temporaries_next_to_artifacts(tmp_path: Path) -> None:
    """Copies into a local datastore go through a temporary next to the target, named for its writer too
    (S3 writes are single PUTs): fsck reports a dead writer's as garbage (exit status 0) and leaves a live
    one's alone."""
    load(Butler.create(tmp_path / "repo"), "hsc-rc2-subset.yaml").close()
    butler = Butler(tmp_path / "repo", run=RUN)
    butler.register_dataset_type("summary", ["instrument", "visit", "detector"], "StructuredDataDict")
    _put(butler, 50)
    root = butler.datastore.root
    assert isinstance(root, LocalURI)
    mine = LocalURI(root.path / "u/copy/a.fits")._temporary()  # as a copy in progress names it
    assert Writer.parse(mine.name) == Writer.current() and mine.name.endswith(".porter-tmp")
    killed = f"u/copy/.b.fits.{dead_writer().token}.q8w7e6r5.porter-tmp"
    root.join(killed).write(b"half a copy")
    report = butler.fsck(grace=0)
    assert [(f.kind, f.path, f.garbage) for f in report.findings] == [("temporary file", killed, True)]
    assert report.ok and report.in_progress == 1
    cli = runner.invoke(app, ["fsck", str(butler.root)])
    assert cli.exit_code == 0, cli.output
    assert "no problems" in cli.output and "Garbage from interrupted writes: 1 temporary file" in cli.output
    repaired = runner.invoke(app, ["fsck", str(butler.root), "--repair", "--grace", "0"])
    assert repaired.exit_code == 0 and "1 temporary file, removed" in repaired.output
    assert not root.join(killed).exists() and mine.exists()
