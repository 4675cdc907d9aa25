"""``fsck`` finds each kind of damage, repairs only what is safe, and never deletes a referenced file."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import load
from porter import Butler
from porter.cli import app
from porter.datastore import ORPHANS_AREA
from porter.datastore._uri import Writer

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
    assert not report.ok and not any(f.garbage for f in report.damage)
    assert "interrupted write" in butler.fsck(grace=0).counts()  # the young journal row, once old enough

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
