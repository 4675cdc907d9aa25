"""Ingesting existing files with every transfer mode, on local files and S3; bad input leaves nothing behind.

The files are real FITS exposures (WCS, mask, variance) and Parquet
catalogs with Rubin-like columns (tests/realistic.py), keyed by data IDs of
the real HSC RC2 subset.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import rc2_repo
from porter import Butler, DatasetRef, FileDataset
from porter.datastore.formatters import FitsExposureFormatter, ParquetFormatter
from porter.errors import (
    ConflictingDefinitionError,
    DataIdError,
    DatasetTypeError,
    DatastoreError,
    MissingDatasetTypeError,
)
from realistic import calexp, source_table

RUN = "HSC/raw/ingested"
DETECTORS = [10, 11, 12, 50]


@pytest.fixture
def butler(tmp_path: Path, datastore_root: str | None, rc2_template: Path) -> Butler:
    b = rc2_repo(tmp_path / "repo", datastore_root, rc2_template)
    b.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    b.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    return b


@pytest.fixture
def local_butler(tmp_path: Path, rc2_template: Path) -> Butler:
    b = rc2_repo(tmp_path / "repo", None, rc2_template)
    b.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    return b


def _write_catalogs(directory: Path, detectors: list[int], visit: int = 1228) -> dict[int, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for d in detectors:
        path = directory / f"src_HSC_{visit}_{d:03d}.parquet"
        pq.write_table(source_table(n=500, seed=d, visit=visit, detector=d), path)
        paths[d] = path
    return paths


def _file_datasets(butler: Butler, paths: dict[int, Path], visit: int = 1228) -> list[FileDataset]:
    src = butler.get_dataset_type("src")
    return [
        FileDataset(path, DatasetRef(src, {"instrument": "HSC", "visit": visit, "detector": d}, RUN))
        for d, path in paths.items()
    ]


def _snapshot(butler: Butler) -> tuple[int, int, set[str]]:
    """What a failed ingest must leave unchanged: datasets, journal rows, files under the root."""
    with butler.registry.db.reading() as conn:
        journal = conn.execute(butler.datastore.tables.artifact.select()).all()
    files = {str(u) for u, _ in butler.datastore.root.walk()}
    return len(butler.query_datasets("src", "*", find_first=False, explain=False)), len(journal), files


@pytest.mark.parametrize("mode", ["copy", "move", "auto"])
def test_ingest_copies_and_moves(butler: Butler, tmp_path: Path, mode: str) -> None:
    paths = _write_catalogs(tmp_path / "incoming", DETECTORS)
    expected = {d: pq.read_table(p) for d, p in paths.items()}
    refs = butler.ingest(*_file_datasets(butler, paths), transfer=mode)
    assert len(refs) == len(DETECTORS)
    for ref in refs:
        table = butler.get("src", ref.data_id, collections=RUN)
        assert table.equals(expected[ref.data_id["detector"]])
        uri = butler.get_uri(ref)
        assert uri.relative_to(butler.datastore.root) is not None  # inside the datastore
        assert "1228" in str(uri) and "HSC" in str(uri)  # the path template, with the source's extension
        assert str(uri).endswith(".parquet")
    sources_left = [p.exists() for p in paths.values()]
    assert sources_left == [mode != "move"] * len(paths)
    report = butler.fsck(checksums=True)
    assert report.ok, report.findings


@pytest.mark.parametrize("mode", ["symlink", "relsymlink", "hardlink", "link"])
def test_ingest_links(local_butler: Butler, tmp_path: Path, mode: str) -> None:
    paths = _write_catalogs(tmp_path / "incoming", DETECTORS)
    refs = local_butler.ingest(*_file_datasets(local_butler, paths), transfer=mode)
    for ref in refs:
        uri = local_butler.get_uri(ref)
        source = paths[ref.data_id["detector"]]
        assert uri.path.samefile(source)  # type: ignore[attr-defined]
        if mode in ("symlink", "relsymlink"):
            target = os.readlink(uri.path)  # type: ignore[attr-defined]
            assert os.path.isabs(target) == (mode == "symlink")
        else:
            assert source.stat().st_nlink == 2
        assert local_butler.get(ref).equals(pq.read_table(source))
    assert local_butler.fsck(checksums=True).ok
    # Removing the run removes the links, never the files they point to.
    local_butler.remove_runs([RUN])
    assert all(p.exists() for p in paths.values())
    assert local_butler.fsck().ok


def test_ingest_direct_leaves_files_in_place(local_butler: Butler, tmp_path: Path) -> None:
    paths = _write_catalogs(tmp_path / "elsewhere", DETECTORS)
    refs = local_butler.ingest(*_file_datasets(local_butler, paths), transfer="direct")
    for ref in refs:
        assert local_butler.get_uri(ref).path == paths[ref.data_id["detector"]].absolute()  # type: ignore[attr-defined]
        assert local_butler.get(ref, parameters={"columns": ["sourceId"]}).column_names == ["sourceId"]
    assert local_butler.fsck(checksums=True).ok
    local_butler.remove_runs([RUN])
    assert all(p.exists() for p in paths.values())


def test_auto_adopts_files_already_in_the_datastore(local_butler: Butler) -> None:
    inside = local_butler.datastore.root.path / "staged"  # type: ignore[attr-defined]
    paths = _write_catalogs(inside, [10, 11])
    refs = local_butler.ingest(*_file_datasets(local_butler, paths), transfer="auto")
    for ref in refs:
        uri = local_butler.get_uri(ref)
        assert uri.path == paths[ref.data_id["detector"]]  # type: ignore[attr-defined]
        assert not uri.path.is_symlink()  # type: ignore[attr-defined]
    with local_butler.registry.db.reading() as conn:
        stored = {r.path for r in local_butler.datastore.tables.artifacts(conn)}
    assert stored == {"staged/src_HSC_1228_010.parquet", "staged/src_HSC_1228_011.parquet"}  # relative
    assert local_butler.fsck().ok


def test_ingest_exposures_exactly(butler: Butler, tmp_path: Path) -> None:
    calexp_type = butler.get_dataset_type("calexp")
    fds = []
    originals = {}
    for d in (10, 11):
        path = tmp_path / f"calexp-{d}.fits"
        originals[d] = calexp(width=256, height=512, seed=d)
        FitsExposureFormatter().write(originals[d], path)
        fds.append(
            FileDataset(
                path, DatasetRef(calexp_type, {"instrument": "HSC", "visit": 1228, "detector": d}, RUN)
            )
        )
    butler.ingest(*fds, transfer="copy")
    for d, exposure in originals.items():
        assert butler.get("calexp", instrument="HSC", visit=1228, detector=d, collections=RUN) == exposure


def test_one_file_many_datasets(local_butler: Butler, tmp_path: Path) -> None:
    """A file holding several datasets (one catalog read for two data IDs) is one artifact."""
    path = _write_catalogs(tmp_path / "in", [10])[10]
    src = local_butler.get_dataset_type("src")
    refs = [DatasetRef(src, {"instrument": "HSC", "visit": 1228, "detector": d}, RUN) for d in (10, 11)]
    local_butler.ingest(
        FileDataset(path, refs, formatter=ParquetFormatter), transfer="copy"
    )  # a class works too
    uris = local_butler.get_many_uris(refs)
    assert len(set(uris.values())) == 1
    assert local_butler.get(refs[1]).equals(pq.read_table(path))
    local_butler.remove_runs([RUN])
    assert not any(local_butler.datastore.root.path.rglob("*.parquet"))  # type: ignore[attr-defined]


def test_ingest_from_s3_into_local(local_butler: Butler, tmp_path: Path, s3_server: str) -> None:
    from porter.datastore import ResourceURI

    path = _write_catalogs(tmp_path / "in", [12])[12]
    remote = ResourceURI.from_string(f"s3://porter-test/incoming-{uuid.uuid4().hex[:8]}/{path.name}")
    remote.write(path.read_bytes())
    src = local_butler.get_dataset_type("src")
    ref = DatasetRef(src, {"instrument": "HSC", "visit": 1228, "detector": 12}, RUN)
    local_butler.ingest(FileDataset(remote, ref), transfer="auto")  # S3 → local: a copy
    assert local_butler.get(ref).equals(pq.read_table(path))
    assert local_butler.get_uri(ref).is_local
    assert remote.exists()


# --- bad input: a clear error, and the repository unchanged ------------------------------------------------


def test_missing_file_changes_nothing(butler: Butler, tmp_path: Path) -> None:
    paths = _write_catalogs(tmp_path / "in", DETECTORS)
    paths[99] = tmp_path / "in" / "not-there.parquet"
    fds = _file_datasets(butler, {d: p for d, p in paths.items() if d != 99})
    src = butler.get_dataset_type("src")
    fds.append(
        FileDataset(paths[99], DatasetRef(src, {"instrument": "HSC", "visit": 1228, "detector": 99}, RUN))
    )
    before = _snapshot(butler)
    with pytest.raises(DatastoreError, match=r"not-there\.parquet"):
        butler.ingest(*fds, transfer="copy")
    assert _snapshot(butler) == before
    assert all(p.exists() for d, p in paths.items() if d != 99)


def test_unknown_data_id_changes_nothing(butler: Butler, tmp_path: Path) -> None:
    paths = _write_catalogs(tmp_path / "in", [10], visit=1228)
    fds = _file_datasets(butler, paths, visit=1228)
    fds += _file_datasets(butler, _write_catalogs(tmp_path / "in2", [10], visit=999_999_9), visit=999_999_9)
    before = _snapshot(butler)
    with pytest.raises(DataIdError, match="9999999"):
        butler.ingest(*fds, transfer="copy")
    assert _snapshot(butler) == before


def test_existing_dataset_is_a_conflict(butler: Butler, tmp_path: Path) -> None:
    paths = _write_catalogs(tmp_path / "in", [10, 11])
    butler.ingest(*_file_datasets(butler, paths), transfer="copy")
    before = _snapshot(butler)
    with pytest.raises(ConflictingDefinitionError):
        butler.ingest(*_file_datasets(butler, paths), transfer="copy")
    assert _snapshot(butler) == before


def test_bad_modes_and_types(butler: Butler, tmp_path: Path) -> None:
    paths = _write_catalogs(tmp_path / "in", [10])
    before = _snapshot(butler)
    with pytest.raises(DatastoreError, match="Unknown transfer mode 'teleport'"):
        butler.ingest(*_file_datasets(butler, paths), transfer="teleport")
    if not butler.datastore.root.is_local:
        with pytest.raises(DatastoreError, match="transfer='copy'"):
            butler.ingest(*_file_datasets(butler, paths), transfer="symlink")
    with pytest.raises(MissingDatasetTypeError):
        from porter import DatasetType

        other = DatasetType(
            "deepCoadd", butler.dimensions.conform(["tract", "patch", "band", "skymap"]), "ExposureF"
        )
        butler.ingest(
            FileDataset(
                paths[10],
                DatasetRef(other, {"skymap": "hsc_rings_v1", "tract": 9813, "patch": 40, "band": "r"}, RUN),
            )
        )
    with pytest.raises(DatasetTypeError, match="no DatasetRef"):
        FileDataset(paths[10], [])
    assert _snapshot(butler) == before


def test_two_files_for_one_dataset_in_one_call(butler: Butler, tmp_path: Path) -> None:
    first = _write_catalogs(tmp_path / "a", [10])
    second = _write_catalogs(tmp_path / "b", [10])
    before = _snapshot(butler)
    with pytest.raises(ConflictingDefinitionError, match="Two datasets would be stored"):
        butler.ingest(*_file_datasets(butler, first), *_file_datasets(butler, second), transfer="copy")
    assert _snapshot(butler) == before
