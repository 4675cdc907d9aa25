"""Datasets moving between repositories with their files: transfer_from, export/import with directory=.

Every back-end pairing (file→file, file→S3, S3→file) is exercised with real
FITS exposures and Parquet catalogs; the receiving repository starts empty
(no dimension records, no dataset types) so what must come along does.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from conftest import TEST_BUCKET, rc2_repo
from porter import Butler
from porter.errors import ArtifactMissingError, DatastoreError, ExportFormatError
from realistic import calexp, source_table

RUN = "HSC/runs/transfer-test"


def _fill(butler: Butler) -> dict[int, tuple]:
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    butler.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    made = {}
    for d in (10, 11):
        exp, cat = calexp(width=128, height=256, seed=d), source_table(n=300, seed=d, detector=d)
        butler.put(exp, "calexp", instrument="HSC", visit=1228, detector=d, run=RUN)
        butler.put(cat, "src", instrument="HSC", visit=1228, detector=d, run=RUN)
        made[d] = (exp, cat)
    return made


def _all_refs(butler: Butler) -> list:
    return butler.query_datasets("calexp", RUN) + butler.query_datasets("src", RUN)


def _root_for(kind: str, s3: str | None) -> str | None:
    return f"s3://{TEST_BUCKET}/{uuid.uuid4().hex[:12]}" if kind == "s3" else None


@pytest.mark.parametrize("pairing", ["file->file", "file->s3", "s3->file"])
def test_transfer_from_any_pairing(
    tmp_path: Path, rc2_template: Path, pairing: str, request: pytest.FixtureRequest
) -> None:
    src_kind, dst_kind = pairing.split("->")
    if "s3" in pairing:
        request.getfixturevalue("s3_server")
    source = rc2_repo(tmp_path / "source", _root_for(src_kind, "s3"), rc2_template)
    made = _fill(source)
    target = Butler.create(tmp_path / "target", datastore=_root_for(dst_kind, "s3"))  # empty: no records
    refs = _all_refs(source)
    moved = target.transfer_from(source, refs)
    assert {r.id for r in moved} == {r.id for r in refs}  # UUIDs kept
    for d, (exp, cat) in made.items():
        assert target.get("calexp", instrument="HSC", visit=1228, detector=d, collections=RUN) == exp
        assert target.get("src", instrument="HSC", visit=1228, detector=d, collections=RUN).equals(cat)
    # The records came along: implied values and regions are queryable in the target.
    ids = target.query_data_ids(["visit", "detector"], instrument="HSC", where="visit = 1228")
    assert {d["detector"] for d in ids} == {10, 11}
    assert {d["band"] for d in ids} == {
        d["band"] for d in source.query_data_ids(["visit"], instrument="HSC", visit=1228)
    }
    (visit,) = target.query_data_ids(["visit"], instrument="HSC", visit=1228, with_dimension_records=True)
    assert visit.records["visit"] == source.query_dimension_records("visit", instrument="HSC", visit=1228)[0]
    assert target.fsck(checksums=True).ok
    # Transferring again is harmless (already there), and the source is untouched.
    assert target.transfer_from(source, refs) == []
    assert source.fsck(checksums=True).ok


def test_transfer_refuses_missing_files_unless_skipped(tmp_path: Path, rc2_template: Path) -> None:
    source = rc2_repo(tmp_path / "source", None, rc2_template)
    _fill(source)
    ref = source.query_datasets("src", RUN, where="instrument = 'HSC' AND detector = 10")[0]
    source.prune_datasets([ref], disassociate=False, unstore=True)
    target = Butler.create(tmp_path / "target")
    refs = _all_refs(source)
    with pytest.raises(ArtifactMissingError, match="skip_missing=True"):
        target.transfer_from(source, refs, skip_missing=False)
    assert target.query_dataset_types() == []  # refused before anything was written
    moved = target.transfer_from(source, refs)
    assert len(moved) == 3


def test_transfer_refuses_a_different_dataset_type(tmp_path: Path, rc2_template: Path) -> None:
    source = rc2_repo(tmp_path / "source", None, rc2_template)
    _fill(source)
    target = rc2_repo(tmp_path / "target", None, rc2_template)
    target.register_dataset_type("src", ["instrument", "visit", "detector"], "DataFrame")
    with pytest.raises(DatastoreError, match="differs between the repositories"):
        target.transfer_from(source, source.query_datasets("src", RUN))
    assert target.query_datasets("src", "*", find_first=False, explain=False) == []


@pytest.mark.parametrize("transfer", ["copy", "symlink"])
def test_export_and_import_with_files(
    tmp_path: Path, rc2_template: Path, datastore_root: str | None, transfer: str
) -> None:
    source = rc2_repo(tmp_path / "source", None, rc2_template)
    made = _fill(source)
    out = tmp_path / "exported"
    counts = source.export(directory=str(out), collections=[RUN], transfer=transfer)
    assert counts["datasets"] == 4 and counts["files"] == 4
    text = (out / "export.yaml").read_text()
    assert "formatter: porter.datastore.formatters.ParquetFormatter" in text
    target = Butler.create(tmp_path / "target", datastore=datastore_root)
    if transfer == "symlink":
        # The export's files are links to the source repository, outside the export's directory:
        # an import follows no path out of it (issue 14), so it refuses them, writing nothing.
        with pytest.raises(ExportFormatError, match=r"symbolic link .* outside the export's directory"):
            target.import_(directory=str(out), transfer="copy")
        assert target.query_dataset_types() == []
        return
    result = target.import_(directory=str(out), transfer="copy" if datastore_root else "auto")
    assert result["files"] == 4
    for d, (exp, cat) in made.items():
        assert target.get("calexp", instrument="HSC", visit=1228, detector=d, collections=RUN) == exp
        assert target.get("src", instrument="HSC", visit=1228, detector=d, collections=RUN).equals(cat)
    assert target.fsck(checksums=True).ok
    # Importing the same directory again changes nothing.
    assert target.import_(directory=str(out), transfer="copy")["files"] == 0


def test_import_with_missing_files_changes_nothing(tmp_path: Path, rc2_template: Path) -> None:
    source = rc2_repo(tmp_path / "source", None, rc2_template)
    _fill(source)
    out = tmp_path / "exported"
    source.export(directory=str(out), collections=[RUN])
    victim = next(out.rglob("*.parq"))
    victim.unlink()
    target = Butler.create(tmp_path / "target")
    with pytest.raises(ArtifactMissingError, match=re.escape(victim.name)):
        target.import_(directory=str(out), transfer="copy")
    assert target.query_dataset_types() == []
    assert target.registry.query_dimension_records("instrument") == []
