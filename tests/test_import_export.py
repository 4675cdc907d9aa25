"""Import and export of Rubin export files: round trips, daf_butler compatibility, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import astropy.time
import pytest

from conftest import load
from peer import EXPORTS, norm_record, norm_ref
from porter import Butler, Timespan
from porter.errors import ConflictingDefinitionError, DataIdError, ExportFormatError, PorterError
from test_registry import snapshot


def records_of(butler: Butler) -> dict[str, list]:
    return {
        e.name: sorted(norm_record(r) for r in butler.query_dimension_records(e.name, explain=False))
        for e in butler.dimensions.database_elements
    }


def add_collections(butler: Butler) -> None:
    """TAGGED, CALIBRATION and CHAINED collections over base+datasets, to exercise every export section."""
    butler.collections.register("tagged", "TAGGED", doc="hand-picked biases")
    butler.registry.associate("tagged", butler.query_datasets("bias", "imported_g", explain=False)[:2])
    butler.collections.register("calib", "CALIBRATION")
    t = lambda s: astropy.time.Time(s, scale="tai")  # noqa: E731
    butler.registry.certify(
        "calib",
        butler.query_datasets("bias", "imported_g", explain=False),
        Timespan(t("2020-01-01T00:00:00"), t("2021-01-01T00:00:00")),
    )
    butler.registry.certify(
        "calib",
        butler.query_datasets("flat", "imported_r", explain=False),
        Timespan(None, t("2022-01-01T00:00:00.123456789")),
    )
    butler.collections.redefine_chain("chain", ["tagged", "imported_r", "calib"])


def test_round_trip_through_export(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = make_repo("src")
    load(src, "base.yaml", "datasets.yaml", "spatial.yaml")
    add_collections(src)
    out = tmp_path / "export.yaml"
    counts = src.export(out, collections=["chain", "imported_g"], include_all_dimensions=True)
    assert counts["datasets"] == 13
    dst = make_repo("dst")
    dst.import_(out)
    assert records_of(dst) == records_of(src)
    for c in ["imported_g", "imported_r", "tagged", "calib", "chain"]:
        for dt in ("bias", "flat"):
            assert sorted(
                norm_ref(r) for r in dst.query_datasets(dt, c, find_first=False, explain=False)
            ) == sorted(norm_ref(r) for r in src.query_datasets(dt, c, find_first=False, explain=False)), (
                c,
                dt,
            )
    assert dst.collections.get_info("chain").children == ("tagged", "imported_r", "calib")
    assert dst.collections.get_info("tagged").doc == "hand-picked biases"
    a = src.registry.associations.calibration_associations(src.collections.get_info("calib"))
    b = dst.registry.associations.calibration_associations(dst.collections.get_info("calib"))
    assert sorted((r.id, ts.nsec) for r, ts in a) == sorted((r.id, ts.nsec) for r, ts in b)


def test_export_only_brings_the_records_datasets_need(repo: Butler, tmp_path: Path) -> None:
    load(repo, "base.yaml", "datasets.yaml", "spatial.yaml")
    out = tmp_path / "g.yaml"
    repo.export(out, collections=["imported_g"], dataset_types=["bias"])
    text = out.read_text()
    assert "element: visit" not in text  # biases do not need visits
    assert "element: detector" in text and "element: instrument" in text
    assert text.count("!uuid") == 3


def test_daf_butler_reads_porter_exports(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The proof of compatibility: a real daf_butler repository imports porter's export file."""
    from lsst.daf.butler import Butler as DafButler
    from lsst.daf.butler.transfers import YamlRepoImportBackend

    src = make_repo("src")
    load(src, "base.yaml", "datasets.yaml", "spatial.yaml", "hsc-rc2-subset.yaml")
    add_collections(src)
    out = tmp_path / "for-daf.yaml"
    src.export(out, collections=["chain", "imported_g"], include_all_dimensions=True)
    DafButler.makeRepo(str(tmp_path / "daf"))
    daf = DafButler(str(tmp_path / "daf"), writeable=True)
    with open(out) as stream:
        backend = YamlRepoImportBackend(stream, daf)
    backend.register()
    backend.load(None)
    for element in src.dimensions.database_elements:
        if element.name == "band":
            continue
        expected = sorted(norm_record(r) for r in src.query_dimension_records(element.name, explain=False))
        got = sorted(norm_record(r) for r in daf.query_dimension_records(element.name, explain=False))
        assert got == expected, element.name
    assert sorted(daf.collections.query("*")) == sorted(src.collections.query("*"))
    assert list(daf.collections.get_info("chain").children) == ["tagged", "imported_r", "calib"]
    for c in ["imported_g", "imported_r", "tagged"]:
        for dt in ("bias", "flat"):
            assert sorted(
                norm_ref(r) for r in daf.query_datasets(dt, c, find_first=False, explain=False)
            ) == sorted(norm_ref(r) for r in src.query_datasets(dt, c, find_first=False, explain=False))
    calib = sorted(
        (str(a.ref.id), a.timespan.begin is None)
        for a in daf.registry.queryDatasetAssociations("bias", collections=["calib"])
    )
    assert calib == sorted(
        (str(r.id), False) for r in src.query_datasets("bias", "imported_g", explain=False)
    )


def test_importing_twice_is_harmless(repo: Butler) -> None:
    load(repo, "base.yaml", "datasets.yaml")
    before = snapshot(repo)
    counts = repo.import_(EXPORTS / "datasets.yaml")
    assert counts["new datasets"] == 0
    assert snapshot(repo) == before


BAD_FILES = {
    "not yaml": ("a: [unclosed", "not valid YAML"),
    "not an export": ("just: a mapping\n", "Not a butler export file"),
    "future version": ("description: x\nversion: 2.0.0\ndata: []\n", "not supported"),
    "unknown element": (
        "version: 1.0.2\ndata:\n- type: dimension\n  element: vist\n  records: []\n",
        "Did you mean 'visit'",
    ),
    "unknown entry type": ("version: 1.0.2\ndata:\n- type: datasett\n", "unknown entry type"),
    "bad record field": (
        "version: 1.0.2\ndata:\n- type: dimension\n  element: instrument\n  records:\n  - {name: X, visit_maxx: 3}\n",
        "Unknown field",
    ),
    "missing key": ("version: 1.0.2\ndata:\n- type: dimension\n  records: []\n", "missing key 'element'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_files_import_nothing(repo: Butler, case: str) -> None:
    load(repo, "base.yaml")
    text, message = BAD_FILES[case]
    before = snapshot(repo)
    with pytest.raises(ExportFormatError, match=message):
        repo.import_(io.StringIO(text))
    assert snapshot(repo) == before


def _corrupt(name: str, old: str, new: str) -> io.StringIO:
    text = (EXPORTS / name).read_text()
    assert old in text
    return io.StringIO(text.replace(old, new, 1))


def test_late_error_rolls_back_everything(repo: Butler) -> None:
    """A dataset whose data ID names a missing detector, at the end of a file: nothing imported."""
    load(repo, "base.yaml")
    before = snapshot(repo)
    bad = _corrupt(
        "datasets.yaml",
        "          detector: 4\n        path: placeholder",
        "          detector: 44\n        path: placeholder",
    )
    with pytest.raises(DataIdError, match="detector"):
        repo.import_(bad)
    assert snapshot(repo) == before
    # And the repository still works: a good import afterwards succeeds.
    repo.import_(EXPORTS / "datasets.yaml")
    assert len(repo.query_datasets("bias", "imported_r", explain=False)) == 3


def test_conflicting_dataset_id_rolls_back(repo: Butler) -> None:
    load(repo, "base.yaml", "datasets.yaml")
    before = snapshot(repo)
    text = (EXPORTS / "datasets.yaml").read_text().replace("imported_g", "other_run")
    with pytest.raises(ConflictingDefinitionError, match="already exists"):
        repo.import_(io.StringIO(text))
    assert snapshot(repo) == before


def test_bad_region_and_time(repo: Butler) -> None:
    load(repo, "base.yaml")
    before = snapshot(repo)
    with pytest.raises(PorterError):
        repo.import_(_corrupt("spatial.yaml", "encoded: 704d45", "encoded: zz4d45"))
    with pytest.raises(PorterError):
        repo.import_(_corrupt("spatial.yaml", "'2021-09-09 03:00:00.000000000'", "'yesterday'"))
    assert snapshot(repo) == before


def test_v0_migration(repo: Butler) -> None:
    load(repo, "hsc-rc2-subset-v0.yaml")
    assert len(repo.query_dimension_records("visit_system_membership", explain=False)) == 2
    assert [r.name for r in repo.query_dimension_records("group", explain=False)] == ["903342"]
    visits = repo.query_dimension_records("visit", instrument="HSC", explain=False)
    assert sorted(v.day_obs for v in visits) == [20141118, 20150318]
    assert {r.id for r in repo.query_dimension_records("day_obs", explain=False)} >= {
        20130617,
        20141118,
        20150318,
    }
