"""A Rubin-style script runs unchanged (but for the import) against porter and daf_butler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import porter
from conftest import load
from peer import EXPORTS, make_daf_repo, norm_data_id, norm_record, norm_ref
from porter import Butler

pytestmark = pytest.mark.peer


def rubin_script(butler: Any, CollectionType: Any, Timespan: Any, Time: Any) -> dict[str, Any]:
    """Uses only daf_butler's names; the results must be identical in both systems."""
    reg = butler.registry
    out: dict[str, Any] = {}
    out["detectors"] = sorted(
        norm_record(r) for r in reg.queryDimensionRecords("detector", instrument="Cam1")
    )
    out["ids"] = sorted(
        norm_data_id(d)
        for d in reg.queryDataIds(["visit", "detector"], where="instrument='Cam1' AND visit = 1")
    )
    out["all_bias"] = sorted(
        norm_ref(r) for r in reg.queryDatasets("bias", collections=["imported_g", "imported_r"])
    )
    first = sorted(
        reg.queryDatasets("bias", collections=["imported_r", "imported_g"], findFirst=True), key=norm_ref
    )
    out["first_bias"] = sorted(norm_ref(r) for r in first)
    reg.registerRun("u/me/run")
    reg.registerCollection("u/me/tagged", CollectionType.TAGGED)
    reg.associate("u/me/tagged", first[:2])
    reg.registerCollection("u/me/chain", CollectionType.CHAINED)
    reg.setCollectionChain("u/me/chain", ["u/me/tagged", "imported_g"])
    out["chain"] = list(reg.getCollectionChain("u/me/chain"))
    out["via_chain"] = sorted(
        norm_ref(r) for r in reg.queryDatasets("bias", collections="u/me/chain", findFirst=True)
    )
    reg.registerCollection("u/me/calib", CollectionType.CALIBRATION)
    reg.certify("u/me/calib", first, Timespan(Time("2021-09-01T00:00:00", scale="tai"), None))
    found = reg.findDataset(
        "bias",
        instrument="Cam1",
        detector=2,
        collections=["u/me/calib"],
        timespan=Timespan(Time("2021-09-09T03:00:00", scale="tai"), Time("2021-09-09T03:01:00", scale="tai")),
    )
    out["calib_lookup"] = norm_ref(found)
    out["collections"] = sorted(reg.queryCollections("u/me/*"))
    out["types"] = sorted(t.name for t in reg.queryDatasetTypes())
    out["collection_type"] = reg.getCollectionType("u/me/calib").name
    reg.insertDimensionData("detector", {"instrument": "Cam1", "id": 5, "full_name": "Cc", "raft": "C"})
    out["new_detector"] = [
        norm_record(r)
        for r in reg.queryDimensionRecords("detector", where="detector.raft = 'C'", instrument="Cam1")
    ]
    return out


def test_rubin_script_same_results(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import astropy.time
    from lsst.daf.butler import CollectionType as DafCollectionType
    from lsst.daf.butler import Timespan as DafTimespan

    daf = make_daf_repo(tmp_path / "daf", ["base.yaml", "datasets.yaml", "spatial.yaml"])
    ours = load(make_repo(), "base.yaml", "datasets.yaml", "spatial.yaml")
    expected = rubin_script(daf, DafCollectionType, DafTimespan, astropy.time.Time)
    got = rubin_script(ours, porter.CollectionType, porter.Timespan, astropy.time.Time)
    assert got == expected


def test_export_as_context_manager(repo: Butler, tmp_path: Path) -> None:
    load(repo, "base.yaml", "datasets.yaml")
    out = tmp_path / "ctx.yaml"
    with repo.export(filename=out) as export:
        export.saveDatasets(repo.query_datasets("flat", "imported_r"))
        export.saveCollection("imported_g")
    assert export["datasets"] == 4
    fresh = Butler.create(tmp_path / "fresh")
    fresh.import_(filename=out)
    assert len(fresh.query_datasets("flat", "imported_r")) == 4
    assert fresh.collections.query() == ["imported_g", "imported_r"]


def test_make_repo_and_remove_runs_names(tmp_path: Path) -> None:
    config = Butler.makeRepo(tmp_path / "r")
    assert config.registry_url.startswith("sqlite")
    b = Butler(tmp_path / "r")
    b.import_(EXPORTS / "base.yaml")
    b.import_(EXPORTS / "datasets.yaml")
    b.removeRuns(["imported_g"])
    assert b.collections.query() == ["imported_r"]
