"""Putting and getting real data products, on local files and on S3 (emulator on loopback).

Data IDs come from the real HSC RC2 export; images and catalogs are
realistic (tests/realistic.py) and are compared exactly after a round trip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from conftest import rc2_repo
from porter import Butler
from porter.errors import (
    ArtifactMissingError,
    ConflictingDefinitionError,
    CorruptArtifactError,
    DatastoreError,
    MissingCollectionError,
    MissingDatasetError,
    PathTemplateError,
    StorageClassError,
)
from porter.images import BBox
from realistic import calexp, source_table

RUN = "u/someone/run1"
VISIT = {"instrument": "HSC", "visit": 1228}
CCD = {"instrument": "HSC", "visit": 1228, "detector": 50}


@pytest.fixture
def butler(tmp_path: Path, datastore_root: str | None, rc2_template: Path) -> Butler:
    b = rc2_repo(tmp_path / "repo", datastore_root, rc2_template, run=RUN)
    for name, dims, storage_class in [
        ("calexp", ["instrument", "visit", "detector"], "ExposureF"),
        ("src", ["instrument", "visit", "detector"], "ArrowTable"),
        ("src_df", ["instrument", "visit", "detector"], "DataFrame"),
        ("src_astropy", ["instrument", "visit", "detector"], "AstropyTable"),
        ("image", ["instrument", "visit", "detector"], "ImageF"),
        ("summary", ["instrument", "visit"], "StructuredDataDict"),
        ("summary_json", ["instrument", "visit"], "StructuredDataJson"),
        ("psf_array", ["instrument", "visit", "detector"], "NumpyArray"),
        ("raw_bytes", ["instrument", "visit", "detector"], "Bytes"),
        ("log", ["instrument", "visit", "detector"], "Text"),
        ("unknown_sc", ["instrument", "visit"], "SourceCatalog"),
    ]:
        b.register_dataset_type(name, dims, storage_class)
    return b


def test_exposure_round_trip_and_cutout(butler: Butler) -> None:
    exposure = calexp(seed=3)
    ref = butler.put(exposure, "calexp", CCD)
    assert butler.get(ref) == exposure
    assert butler.get("calexp", CCD, collections=[RUN]) == exposure
    box = BBox(100, 300, 64, 48)
    cut = butler.get(ref, parameters={"bbox": box})
    assert cut == exposure.cutout(box)
    assert cut.xy0 == (100, 300) and cut.image.shape == (48, 64)
    # The cut-out's WCS maps its pixels to the same sky as the parent's.
    sky_parent = exposure.wcs.pixel_to_world(110, 305)
    sky_cut = cut.wcs.pixel_to_world(10, 5)
    assert sky_parent.separation(sky_cut).arcsec < 1e-6
    assert np.count_nonzero(cut.mask & 16) == 0 or box.x0 < 4  # EDGE only at the borders


def test_tables_round_trip_with_columns_and_conversions(butler: Butler) -> None:
    table = source_table(n=3000, seed=5)
    ref = butler.put(table, "src", CCD)
    got = butler.get(ref)
    assert got.equals(table) and got.schema.field("coord_ra").metadata == {b"unit": b"rad"}
    subset = butler.get(ref, parameters={"columns": ["coord_ra", "psfFlux"]})
    assert subset.column_names == ["coord_ra", "psfFlux"]
    assert subset.column("psfFlux").equals(table.column("psfFlux"))
    df = butler.get(ref, storage_class="DataFrame")
    assert list(df.columns) == table.column_names and np.array_equal(df["sourceId"], table["sourceId"])
    astropy_table = butler.get(ref, storage_class="AstropyTable")
    assert isinstance(astropy_table, Table) and str(astropy_table["coord_ra"].unit) == "rad"
    # Putting a DataFrame into an ArrowTable dataset type converts it (pandas makes strings large_string).
    ref2 = butler.put(df, "src", {**CCD, "detector": 51})
    assert butler.get(ref2).select(table.column_names).cast(table.schema).equals(table)


def test_dataframe_and_astropy_dataset_types(butler: Butler) -> None:
    df = source_table(n=500, seed=7).to_pandas().set_index("sourceId")
    ref = butler.put(df, "src_df", CCD)
    back = butler.get(ref)
    assert back.equals(df) and back.index.name == "sourceId"
    t = Table({"flux": [1.5, 2.5], "name": ["a", "b"]})
    t["flux"].unit = "nJy"
    t.meta["comment"] = "two sources"
    ref = butler.put(t, "src_astropy", CCD)
    back = butler.get(ref)
    assert list(back["flux"]) == [1.5, 2.5] and str(back["flux"].unit) == "nJy"
    assert list(back["name"]) == ["a", "b"] and back.meta["comment"] == "two sources"


def test_small_products_round_trip(butler: Butler) -> None:
    summary = {"nSources": 1234, "psfSigma": 1.82, "bands": ["g", "r"], "nested": {"ok": True}}
    assert butler.get(butler.put(summary, "summary", VISIT)) == summary
    assert butler.get(butler.put(summary, "summary_json", VISIT)) == summary
    psf = np.random.default_rng(0).normal(size=(41, 41)).astype(np.float64)
    assert np.array_equal(butler.get(butler.put(psf, "psf_array", CCD)), psf)
    blob = bytes(range(256)) * 7
    assert butler.get(butler.put(blob, "raw_bytes", CCD)) == blob
    text = "processCcd: 1228/50 done — ok\n"
    assert butler.get(butler.put(text, "log", CCD)) == text
    image = calexp(width=64, height=32).image
    ref = butler.put(image, "image", CCD)
    assert np.array_equal(butler.get(ref), image)
    assert np.array_equal(butler.get(ref, parameters={"bbox": (8, 4, 16, 8)}), image[4:12, 8:24])


def test_uris_exists_and_removal(butler: Butler) -> None:
    ref = butler.put({"a": 1}, "summary", VISIT)
    uri = butler.get_uri(ref)
    root = butler.datastore.root
    assert uri.relative_to(root) is not None and uri.relative_to(root).startswith("u/someone/run1/summary/")
    assert uri.exists() and butler.exists(ref) and butler.exists("summary", VISIT, collections=[RUN])
    assert not butler.exists("summary", {**VISIT, "visit": 318}, collections=[RUN])
    assert butler.get_many_uris([ref]) == {ref: uri}
    assert butler.remove_runs([RUN]) == 1
    assert not uri.exists()
    assert not butler.exists(ref)
    with pytest.raises(MissingCollectionError, match="u/someone/run1"):
        butler.get("summary", VISIT, collections=[RUN])
    butler.collections.register("u/someone/other")
    with pytest.raises(
        MissingDatasetError, match=r"No summary dataset .* in collections \['u/someone/other'\]"
    ):
        butler.get("summary", VISIT, collections=["u/someone/other"])


def test_another_butler_reads_each_put_at_once_and_sees_removals(butler: Butler) -> None:
    """A get's location look-up keeps its own connection between gets (SQLite): it must still see
    every later commit of another writer, never a snapshot from its first read."""
    reader = Butler(butler.root)
    for visit in (1228, 1166, 1170):
        ref = butler.put({"visit": visit}, "summary", {**VISIT, "visit": visit})
        assert reader.get(ref) == {"visit": visit}
    butler.prune_datasets([ref], purge=True, unstore=True)
    with pytest.raises(ArtifactMissingError):
        reader.get(ref)
    reader.close()


def test_conflicting_put_is_refused_and_keeps_the_original(butler: Butler) -> None:
    first = butler.put({"v": 1}, "summary", VISIT)
    with pytest.raises(ConflictingDefinitionError, match="never overwrites"):
        butler.put({"v": 2}, "summary", VISIT)
    assert butler.get(first) == {"v": 1}
    assert len(butler.query_datasets("summary", RUN)) == 1


def test_bad_objects_and_parameters(butler: Butler) -> None:
    with pytest.raises(StorageClassError, match=r"calexp@.*cannot be stored as ExposureF|is not a"):
        butler.put({"not": "an image"}, "calexp", CCD)
    with pytest.raises(StorageClassError, match=r"Unknown storage class 'SourceCatalog'.*unknown_sc"):
        butler.put({"a": 1}, "unknown_sc", VISIT)
    ref = butler.put(source_table(n=10), "src", CCD)
    with pytest.raises(DatastoreError, match=r"unknown read parameter.*bbox.*supports: columns"):
        butler.get(ref, parameters={"bbox": (0, 0, 1, 1)})
    with pytest.raises(DatastoreError, match=r"no column\(s\) \['nope'\]"):
        butler.get(ref, parameters={"columns": ["nope"]})
    image_ref = butler.put(calexp(width=64, height=64), "calexp", CCD)
    with pytest.raises(DatastoreError, match="not inside"):
        butler.get(image_ref, parameters={"bbox": BBox(60, 60, 10, 10)})
    # Nothing was left behind by the refused puts.
    assert {r.dataset_type.name for r in butler.query_datasets("calexp", RUN)} == {"calexp"}
    assert len(butler.query_datasets("calexp", RUN)) == 1


def test_missing_and_damaged_files_are_named(butler: Butler) -> None:
    ref = butler.put(calexp(width=64, height=64), "calexp", CCD)
    uri = butler.get_uri(ref)
    uri.write(uri.read()[:5000])  # truncated
    with pytest.raises(CorruptArtifactError, match=r"calexp@.*damaged.*5000 bytes but \d+ were written"):
        butler.get(ref)
    uri.remove()
    with pytest.raises(ArtifactMissingError, match=r"calexp@.*is missing.*porter fsck"):
        butler.get(ref)
    assert butler.exists(ref) and not butler.exists(ref, full_check=True)


def test_registry_only_datasets_have_no_file(butler: Butler) -> None:
    (ref,) = butler.registry.insert_datasets("summary", [VISIT], RUN)
    with pytest.raises(ArtifactMissingError, match="has no stored file"):
        butler.get(ref)
    assert not butler.exists(ref)


def test_templates(tmp_path: Path, datastore_root: str | None, rc2_template: Path) -> None:
    with pytest.raises(PathTemplateError, match="Malformed"):
        Butler.create(tmp_path / "bad", templates={"default": "{run/{datasetType}"})
    assert not (tmp_path / "bad").exists()
    b = Butler.create(
        tmp_path / "repo",
        datastore=datastore_root,
        templates={
            "summary": "{run}/{instrument}/{visit.name}/{band}_{visit:08d}",
            "log": "{run}/{detector}",
        },
    )
    b.close()
    (tmp_path / "repo" / "registry.sqlite3").write_bytes(rc2_template.read_bytes())
    b = Butler(tmp_path / "repo", run=RUN)
    b.register_dataset_type("summary", ["instrument", "visit"], "StructuredDataDict")
    b.register_dataset_type("log", ["instrument", "visit", "detector"], "Text")
    ref = b.put({"x": 1}, "summary", VISIT)
    assert b.get_uri(ref).relative_to(b.datastore.root) == "u/someone/run1/HSC/HSCA00122800/i_00001228.yaml"
    with pytest.raises(
        PathTemplateError, match=r"does not make log paths unique: add \{instrument\}, \{visit\}"
    ):
        b.put("x", "log", CCD)
    assert b.query_datasets("log", RUN, explain=False) == []
