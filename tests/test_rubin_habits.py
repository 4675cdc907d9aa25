"""Rubin users' habits, run on porter and on lsst-daf-butler side by side, with the answers compared.

The repositories hold the real export files: ci_hsc (HSC calexps in one run,
a discrete skymap), and Cam1's biases and flats (two runs).  Each test writes
its calls the way tutorial notebooks and observatory scripts write them —
a butler built with ``collections=`` and no instrument, ``dataId=``,
``butler.registry.queryDatasets(...).expanded()`` — and runs the same
function against a daf_butler repository built from the same files.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import porter
from conftest import _pg_url, drop_schema, load
from peer import make_daf_repo, norm_data_id, norm_record, norm_ref
from porter import Butler

pytestmark = pytest.mark.peer

FILES = ("ci_hsc-subset-skymap.yaml", "ci_hsc-subset.yaml", "base.yaml", "datasets.yaml")
CI_RUN = "HSC/runs/ci_hsc/20240806T180642Z"
CAM1_RUNS = ["imported_g", "imported_r"]


@pytest.fixture(scope="module")
def daf_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registry-only daf_butler repository of the same export files, with a chain over both instruments."""
    from lsst.daf.butler import CollectionType

    root = tmp_path_factory.mktemp("daf") / "repo"
    butler = make_daf_repo(root, list(FILES))
    butler.registry.registerCollection("both", CollectionType.CHAINED)
    butler.registry.setCollectionChain("both", [CI_RUN, "imported_g"])
    return str(root)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def porter_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A porter repository of the same files on SQLite or PostgreSQL, with the same chain."""
    root = tmp_path_factory.mktemp(f"porter-{request.param}") / "repo"
    schema = None
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        butler = Butler.create(root, registry=_pg_url(), namespace=schema)
    else:
        butler = Butler.create(root)
    load(butler, *FILES)
    butler.collections.register("both", "CHAINED")
    butler.collections.redefine_chain("both", [CI_RUN, "imported_g"])
    butler.close()
    yield root
    if schema:
        drop_schema(_pg_url(), schema)


def daf_butler(root: str, **kwargs: Any) -> Any:
    from lsst.daf.butler import Butler as DafButler

    return DafButler.from_config(root, **kwargs)


def both(daf_root: str, porter_root: Path, **kwargs: Any) -> tuple[Any, Butler]:
    return daf_butler(daf_root, **kwargs), Butler(porter_root, **kwargs)


def ci_visits(butler: Butler) -> list[int]:
    """The ci_hsc visits that have calexps, found with the instrument named (so no defaults are involved)."""
    refs = butler.query_datasets("calexp", CI_RUN, instrument="HSC")
    return sorted({r.data_id["visit"] for r in refs})


# --- 1. governor defaults from the default collections ----------------------------------------------


def test_governor_default_from_collections(daf_root: str, porter_root: Path) -> None:
    daf, ours = both(daf_root, porter_root, collections=CI_RUN)
    visit = ci_visits(ours)[0]

    def script(butler: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["where"] = sorted(norm_ref(r) for r in butler.query_datasets("calexp", where=f"visit = {visit}"))
        out["kwargs"] = sorted(norm_ref(r) for r in butler.query_datasets("calexp", visit=visit))
        detector = out["kwargs"][0][3]
        det = dict(detector)["detector"]
        out["find"] = norm_ref(butler.find_dataset("calexp", visit=visit, detector=det))
        out["registry"] = sorted(
            norm_ref(r) for r in butler.registry.queryDatasets("calexp", where=f"visit = {visit}")
        )
        out["ids"] = sorted(
            norm_data_id(d)
            for d in butler.query_data_ids(["visit", "detector"], where=f"visit = {visit} AND detector > 10")
        )
        out["defaults"] = dict(butler.registry.defaults.dataId.mapping)
        return out

    assert script(ours) == script(daf)
    assert script(ours)["defaults"] == {"instrument": "HSC"}  # the run holds no skyMap: no skymap default


def test_explicit_governor_and_cam1_defaults(daf_root: str, porter_root: Path) -> None:
    def script(butler: Any) -> dict[str, Any]:
        return {
            "bias": norm_ref(butler.find_dataset("bias", detector=2)),
            "registry": norm_ref(butler.registry.findDataset("bias", detector=3)),
            "flats": sorted(norm_ref(r) for r in butler.registry.queryDatasets("flat", where="detector > 1")),
            "records": sorted(norm_record(r) for r in butler.registry.queryDimensionRecords("detector")),
        }

    for kwargs in ({"collections": CAM1_RUNS}, {"collections": CAM1_RUNS, "instrument": "Cam1"}):
        daf, ours = both(daf_root, porter_root, **kwargs)
        assert script(ours) == script(daf)


def test_two_instruments_in_the_defaults_is_an_error_naming_both(daf_root: str, porter_root: Path) -> None:
    daf, ours = both(daf_root, porter_root, collections="both")
    with pytest.raises(Exception):  # noqa: B017 - daf_butler's own error type differs by call
        daf.find_dataset("bias", detector=2)
    with pytest.raises(porter.DataIdError, match=r"'Cam1', 'HSC'"):
        ours.find_dataset("bias", detector=2)
    with pytest.raises(porter.InvalidQueryError, match=r"'Cam1', 'HSC'"):
        ours.query_data_ids(["detector"], where="detector = 2")
    # Naming the instrument settles it, in both.
    assert norm_ref(ours.find_dataset("bias", detector=2, instrument="Cam1")) == norm_ref(
        daf.find_dataset("bias", detector=2, instrument="Cam1")
    )


def test_governor_defaults_are_only_governors(porter_root: Path) -> None:
    with pytest.raises(porter.DataIdError, match="Only governor dimensions"):
        Butler(porter_root, collections=CI_RUN, visit=903334)
    with pytest.raises(porter.DataIdError, match="instrumnet"):
        Butler(porter_root, collections=CI_RUN, instrumnet="HSC")


def test_defaults_do_not_override_an_explicit_data_id(porter_root: Path) -> None:
    ours = Butler(porter_root, collections=["both", *CAM1_RUNS], instrument="HSC")
    ref = ours.find_dataset("bias", {"instrument": "Cam1", "detector": 2})
    assert ref is not None and ref.data_id["instrument"] == "Cam1"


# --- 2. dataId= and mixed data IDs -------------------------------------------------------------------


def test_data_id_keyword_positional_and_merged(daf_root: str, porter_root: Path) -> None:
    daf, ours = both(daf_root, porter_root, collections=CAM1_RUNS)

    def script(butler: Any) -> list[Any]:
        coordinate = butler.registry.expandDataId(instrument="Cam1", detector=2)
        return [
            norm_ref(butler.get_dataset(butler.find_dataset("bias", data_id={"detector": 2}).id)),
            norm_ref(butler.find_dataset("bias", {"instrument": "Cam1"}, detector=3)),
            norm_ref(butler.find_dataset("bias", coordinate)),
            norm_ref(butler.find_dataset("bias", coordinate, detector=3)),  # keywords win
            norm_ref(butler.registry.findDataset("bias", dataId={"detector": 4})),
            sorted(norm_ref(r) for r in butler.query_datasets("flat", data_id={"detector": 2})),
        ]

    assert script(ours) == script(daf)
    # daf_butler's find_dataset has no dataId= (it collides with its own argument); porter's takes it too.
    assert ours.find_dataset("bias", dataId={"detector": 2}) == ours.find_dataset("bias", detector=2)
    with pytest.raises(porter.DataIdError, match="once"):
        ours.find_dataset("bias", {"detector": 2}, dataId={"detector": 2})


def test_put_get_exists_uri_with_data_id_keyword(tmp_path: Path) -> None:
    """porter alone (the peer repositories have no datastore): the whole read/write path takes ``dataId=``."""
    root = tmp_path / "repo"
    load(Butler.create(root), "base.yaml", "datasets.yaml").close()
    writer = Butler(root, run="u/me/run")
    writer.register_dataset_type("notes", ["instrument", "detector"], "StructuredDataDict")
    ref = writer.put({"seeing": 0.7}, "notes", dataId={"instrument": "Cam1", "detector": 2})
    writer.put({"seeing": 0.9}, "notes", {"instrument": "Cam1"}, detector=3)
    # The run holds Cam1's data only: the instrument is inferred.
    reader = Butler(root, collections="u/me/run")
    assert reader.data_id_defaults == {"instrument": "Cam1"}
    assert reader.get("notes", dataId={"detector": 2}) == {"seeing": 0.7}
    assert reader.get("notes", detector=3) == {"seeing": 0.9}
    assert reader.exists("notes", dataId={"detector": 2})
    assert not reader.exists("notes", dataId={"detector": 4})
    assert reader.get_uri("notes", dataId={"detector": 2}) == writer.get_uri(ref)
    assert reader.get(ref) == {"seeing": 0.7}
    with pytest.raises(porter.DataIdError, match="DatasetRef"):
        reader.get(ref, detector=3)


# --- 3. from_config and the repository index ---------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_from_config_and_repository_labels(
    daf_root: str, porter_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    daf_index, our_index = tmp_path / f"daf-index{suffix}", tmp_path / f"porter-index{suffix}"
    daf_index.write_text(json.dumps({"ci": str(Path(daf_root) / "butler.yaml")}))
    our_index.write_text(json.dumps({"ci": str(porter_root / "porter.yaml")}))

    def script(butler_class: Any) -> dict[str, Any]:
        butler = butler_class.from_config("ci", collections=CI_RUN)
        keyword = butler_class(config="ci", collections=CI_RUN)
        return {
            "known": sorted(butler_class.get_known_repos()),
            "refs": sorted(norm_ref(r) for r in butler.query_datasets("calexp", limit=None)),
            "same": sorted(norm_ref(r) for r in keyword.query_datasets("calexp", limit=None)),
        }

    from lsst.daf.butler import Butler as DafButler

    monkeypatch.setenv("DAF_BUTLER_REPOSITORY_INDEX", str(daf_index))
    expected = script(DafButler)
    monkeypatch.setenv("DAF_BUTLER_REPOSITORY_INDEX", str(our_index))
    got = script(Butler)
    assert got == expected and got["refs"]


def test_unknown_label_names_the_index_and_its_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "index.yaml"
    index.write_text("dp1: /nowhere/dp1\ndp2: /nowhere/dp2\n")
    monkeypatch.setenv("DAF_BUTLER_REPOSITORY_INDEX", str(index))
    with pytest.raises(porter.RepositoryError, match=r"no label 'dp3'.*dp1, dp2"):
        Butler("dp3")
    monkeypatch.delenv("DAF_BUTLER_REPOSITORY_INDEX")
    with pytest.raises(porter.RepositoryError, match="no index is set"):
        Butler("dp3")
    index.write_text("dp1: [not, a, path]\n")
    monkeypatch.setenv("PORTER_REPOSITORY_INDEX", str(index))
    with pytest.raises(porter.RepositoryError, match="must map labels"):
        Butler("dp1")


# --- 4. butler.registry carries the butler's defaults ----------------------------------------------


def test_registry_view_results_chain_like_daf_butler(daf_root: str, porter_root: Path) -> None:
    daf, ours = both(daf_root, porter_root, collections=CI_RUN)

    def script(butler: Any) -> dict[str, Any]:
        reg = butler.registry
        out: dict[str, Any] = {}
        ids = reg.queryDataIds(["visit", "detector"], datasets="calexp")
        out["count"] = ids.count()
        out["any"] = ids.any()
        out["ordered"] = [
            norm_data_id(d)
            for d in reg.queryDataIds(["visit", "detector"], datasets="calexp")
            .order_by("-visit", "detector")
            .limit(5)
        ]
        expanded = list(
            reg.queryDataIds(["visit", "detector"], datasets="calexp")
            .expanded()
            .order_by("visit", "detector")
            .limit(2)
        )
        out["exposure_time"] = [d.records["visit"].exposure_time for d in expanded]
        out["records"] = sorted(norm_record(r) for r in reg.queryDimensionRecords("visit", datasets="calexp"))
        refs = reg.queryDatasets("calexp", where="detector < 20")
        out["by_parent"] = [
            (group.parentDatasetType.name, sorted(norm_ref(r) for r in group))
            for group in refs.byParentDatasetType()
        ]
        out["expanded_refs"] = sorted(r.dataId.records["detector"].full_name for r in refs.expanded())
        out["empty_any"] = reg.queryDataIds(["detector"], where="detector > 10000").any()
        # A fresh query for each chain: daf_butler's legacy results refine in place, porter's return new ones.
        first = next(iter(reg.queryDataIds(["visit"], datasets="calexp").order_by("visit").limit(1)))
        expanded_id = reg.expandDataId(visit=first["visit"])
        out["expand"] = (norm_data_id(expanded_id), expanded_id.records["visit"].physical_filter)
        return out

    assert script(ours) == script(daf)


def test_registry_collection_calls_and_refresh(daf_root: str, porter_root: Path, tmp_path: Path) -> None:
    from lsst.daf.butler import CollectionType as DafCollectionType

    def script(butler: Any, collection_type: Any) -> dict[str, Any]:
        reg = butler.registry
        tag = f"u/me/{uuid.uuid4().hex[:8]}"
        out = {"run": reg.registerRun(tag + "/run"), "again": reg.registerRun(tag + "/run")}
        reg.registerCollection(tag + "/chain", collection_type.CHAINED)
        reg.setCollectionChain(tag + "/chain", [tag + "/run", *CAM1_RUNS])
        out["chain"] = list(reg.getCollectionChain(tag + "/chain"))[1:]
        out["type"] = reg.getCollectionType(tag + "/chain").name
        out["via_chain"] = norm_ref(
            reg.findDataset("bias", instrument="Cam1", detector=2, collections=tag + "/chain")
        )
        reg.refresh()
        return out

    daf, ours = both(daf_root, porter_root, writeable=True)
    assert script(ours, porter.CollectionType) == script(daf, DafCollectionType)


def test_registry_refresh_sees_another_writers_collection(porter_root: Path) -> None:
    reader = Butler(porter_root, collections=CAM1_RUNS)
    writer = Butler(porter_root)
    name = f"u/other/{uuid.uuid4().hex[:8]}"
    writer.registry.registerRun(name)
    reader.registry.refresh()
    assert name in reader.registry.queryCollections("u/other/*")


def test_registry_without_collections_is_a_clear_error(porter_root: Path) -> None:
    with pytest.raises(porter.NoDefaultCollectionError, match="no default collections"):
        Butler(porter_root).registry.queryDatasets("bias")


# --- 8. the exception family -------------------------------------------------------------------------

DAF_ERROR_NAMES = [
    "CalibrationLookupError",
    "CollectionCycleError",
    "CollectionTypeError",
    "ConflictingDefinitionError",
    "DataIdValueError",
    "DatasetNotFoundError",
    "DimensionNameError",
    "DimensionValueError",
    "EmptyQueryResultError",
    "InvalidQueryError",
    "MissingCollectionError",
    "MissingDatasetTypeError",
    "NoDefaultCollectionError",
    "UnknownComponentError",
    "DataIdError",
    "DatasetTypeError",
    "CollectionError",
    "RegistryError",
    "UserExpressionError",
    "UserExpressionSyntaxError",
]


@pytest.mark.parametrize("name", DAF_ERROR_NAMES)
def test_daf_butler_exception_names_with_the_same_builtin_bases(name: str) -> None:
    import lsst.daf.butler
    import lsst.daf.butler._exceptions
    import lsst.daf.butler.registry

    theirs = (
        getattr(lsst.daf.butler, name, None)
        or getattr(lsst.daf.butler.registry, name, None)
        or getattr(lsst.daf.butler._exceptions, name)
    )
    ours = getattr(porter, name)
    builtin_bases = {
        b
        for b in theirs.__mro__
        if b.__module__ == "builtins" and b not in (object, Exception, BaseException)
    }
    assert builtin_bases <= set(ours.__mro__), f"{name}: daf_butler's is also a {builtin_bases}"
    assert issubclass(ours, porter.PorterError)


# --- 7. the query builder ----------------------------------------------------------------------------


def test_query_builder_like_daf_butler(daf_root: str, porter_root: Path) -> None:
    daf, ours = both(daf_root, porter_root, collections=CI_RUN)

    def script(butler: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with butler.query() as q:
            x = q.expression_factory
            typed = q.datasets("calexp").where(x.visit.exposure_time > 29, x.detector.in_iterable([22, 23]))
            out["typed"] = sorted(norm_ref(r) for r in typed)
            out["string"] = sorted(
                norm_ref(r) for r in q.datasets("calexp").where("band = 'r'").where(detector=23)
            )
            out["ordered"] = [
                norm_data_id(d)
                for d in q.data_ids(["visit"]).where(x.band == "i").order_by(x.visit.desc).limit(3)
            ]
            out["joined"] = sorted(
                norm_data_id(d)
                for d in q.join_dataset_search("calexp")
                .data_ids(["visit", "detector"])
                .where(x.detector.in_range(20, 30))
            )
            out["count"] = q.datasets("calexp").count()
            out["any"] = (q.datasets("calexp").where("visit = 1").any(), q.datasets("calexp").any())
            out["records"] = sorted(norm_record(r) for r in q.dimension_records("physical_filter"))
            with_records = q.data_ids(["visit", "detector"]).with_dimension_records().where("detector = 23")
            out["with_records"] = [d.records["visit"].exposure_time for d in with_records.order_by("visit")]
            out["bind"] = sorted(
                norm_ref(r) for r in q.datasets("calexp").where("visit IN (:v)", bind={"v": [903334, 903986]})
            )
            narrowed = q.where(x.any(x.band == "r", x.visit == 903986), instrument="HSC")
            out["query_where"] = sorted(
                norm_ref(r) for r in narrowed.datasets("calexp").where(x.detector > 22)
            )
            out["negated"] = sorted(norm_ref(r) for r in q.datasets("calexp").where(x.not_(x.band == "r")))
        return out

    expected = script(daf)
    assert script(ours) == expected
    assert expected["typed"] and expected["joined"] and expected["query_where"]


def test_query_builder_refuses_bad_input_clearly(porter_root: Path) -> None:
    ours = Butler(porter_root, collections=CI_RUN)
    with ours.query() as q:
        x = q.expression_factory
        with pytest.raises(porter.InvalidQueryError, match="exposure_tme"):
            list(q.datasets("calexp").where(x.visit.exposure_tme > 3))
        with pytest.raises(porter.MissingDatasetTypeError, match="calexp"):
            q.datasets("calexpp")
        with pytest.raises(TypeError, match="no truth value"):
            list(q.datasets("calexp").where((x.visit > 1) and (x.detector > 2)))
        with pytest.raises(porter.InvalidQueryError, match="expression factory"):
            q.where(3.5)
        reasons = q.datasets("calexp").where(x.visit == 12345).explain_no_results()
        assert reasons and "visit = 12345" in " ".join(reasons)
        # porter's predicates also take Python's operators (daf_butler spells these x.not_/x.any/x.all).
        assert {r.id for r in q.datasets("calexp").where(~(x.band == "r") | (x.detector == 22))} == {
            r.id for r in q.datasets("calexp").where(x.any(x.not_(x.band == "r"), x.detector == 22))
        }


# --- 8. limits, explain and the remaining names -------------------------------------------------------


def test_explain_and_negative_limits_like_daf_butler(daf_root: str, porter_root: Path) -> None:
    daf, ours = both(daf_root, porter_root, collections=CI_RUN)

    def script(butler: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for call in (
            lambda: butler.query_datasets("calexp", where="visit = 1"),
            lambda: butler.query_data_ids(["visit"], where="visit = 1"),
            lambda: butler.query_dimension_records("visit", where="visit = 1"),
        ):
            try:
                call()
                out.setdefault("raised", []).append(None)
            except Exception as exc:
                out.setdefault("raised", []).append(type(exc).__name__)
        out["quiet"] = butler.query_datasets("calexp", where="visit = 1", explain=False)
        out["zero"] = butler.query_datasets("calexp", limit=0)
        out["capped"] = len(butler.query_datasets("calexp", limit=-3))
        out["all"] = len(butler.query_datasets("calexp", limit=None))
        out["positive"] = len(butler.query_data_ids(["visit", "detector"], limit=4))
        return out

    expected = script(daf)
    assert script(ours) == expected
    assert expected["raised"] == ["EmptyQueryResultError"] * 3
    with pytest.warns(UserWarning, match="limit of 3"):
        ours.query_datasets("calexp", limit=-3)
    with pytest.raises(porter.EmptyQueryResultError) as caught:
        ours.query_datasets("calexp", where="visit = 1")
    assert any("visit = 1" in r for r in caught.value.reasons)


def test_storage_class_and_universe_names(daf_root: str, porter_root: Path) -> None:
    daf, ours = both(daf_root, porter_root)

    def script(butler: Any) -> dict[str, Any]:
        universe = butler.dimensions
        return {
            "storage_class": butler.get_dataset_type("calexp").storageClass.name,
            "static_dimensions": sorted(universe.getStaticDimensions().names),
            "static_elements": sorted(universe.getStaticElements().names),
        }

    assert script(ours) == script(daf)


def test_every_name_notebooks_import_from_daf_butler() -> None:
    """``from lsst.daf.butler import …`` lines of the tutorials, as ``from porter import …``."""
    names = [
        "Butler",
        "CollectionType",
        "DataCoordinate",
        "DatasetRef",
        "DatasetType",
        "DimensionRecord",
        "DimensionUniverse",
        "FileDataset",
        "Timespan",
        "DatasetNotFoundError",
        "EmptyQueryResultError",
        "MissingCollectionError",
        "MissingDatasetTypeError",
        "DataIdValueError",
        "CollectionTypeError",
        "ConflictingDefinitionError",
        "InvalidQueryError",
        "RegistryDefaults",
    ]
    missing = [n for n in names if not hasattr(porter, n)]
    assert not missing


# --- 5. record fields and calibration look-ups in data IDs ----------------------------------------


@pytest.fixture(scope="module")
def lsstcam_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """LSSTCam's real exposures in both systems, with raws, and biases and flats certified per exposure."""
    import astropy.time
    from lsst.daf.butler import CollectionType as DafCollectionType
    from lsst.daf.butler import DatasetType as DafDatasetType
    from lsst.daf.butler import Timespan as DafTimespan

    base = tmp_path_factory.mktemp("lsstcam")
    daf = make_daf_repo(base / "daf", ["lsstcam-subset.yaml"])
    ours = load(Butler.create(base / "porter"), "lsstcam-subset.yaml")
    exposures = sorted(ours.query_dimension_records("exposure"), key=lambda r: r.id)
    detectors = sorted(r.id for r in ours.query_dimension_records("detector"))

    def build(butler: Any, dataset_type: Any, collection_type: Any, timespan: Any) -> None:
        reg = butler.registry
        for name, dims, calib in (
            ("raw", ["instrument", "exposure", "detector"], False),
            ("bias", ["instrument", "detector"], True),
            ("flat", ["instrument", "detector", "physical_filter", "band"], True),
        ):
            reg.registerDatasetType(
                dataset_type(name, dims, "Exposure", universe=butler.dimensions, isCalibration=calib)
            )
        reg.registerRun("LSSTCam/raw/all")
        reg.insertDatasets(
            "raw",
            [
                {"instrument": "LSSTCam", "exposure": e.id, "detector": d}
                for e in exposures
                for d in detectors
            ],
            run="LSSTCam/raw/all",
        )
        reg.registerCollection("LSSTCam/calib", collection_type.CALIBRATION)
        for n, exposure in enumerate(exposures):
            run = f"LSSTCam/calib/run{n}"
            reg.registerRun(run)
            refs = reg.insertDatasets(
                "bias", [{"instrument": "LSSTCam", "detector": d} for d in detectors], run=run
            )
            refs += reg.insertDatasets(
                "flat",
                [
                    {
                        "instrument": "LSSTCam",
                        "detector": d,
                        "physical_filter": exposure.physical_filter,
                        "band": "z",
                    }
                    for d in detectors
                ],
                run=run,
            )
            begin = astropy.time.Time(exposure.timespan.begin.tai.isot, scale="tai")
            end = astropy.time.Time(exposure.timespan.end.tai.isot, scale="tai")
            reg.certify("LSSTCam/calib", refs, timespan(begin, end))
        reg.registerCollection("LSSTCam/defaults", collection_type.CHAINED)
        reg.setCollectionChain("LSSTCam/defaults", ["LSSTCam/raw/all", "LSSTCam/calib"])

    build(daf, DafDatasetType, DafCollectionType, DafTimespan)
    build(ours, porter.DatasetType, porter.CollectionType, porter.Timespan)
    return {
        "daf": str(base / "daf"),
        "porter": base / "porter",
        "exposures": exposures,
        "detectors": detectors,
    }


def test_exposure_record_fields_and_calibrations_in_data_ids(lsstcam_roots: dict[str, Any]) -> None:
    first, second = lsstcam_roots["exposures"][:2]
    detector = lsstcam_roots["detectors"][0]
    full_name = (
        Butler(lsstcam_roots["porter"])
        .query_dimension_records("detector", detector=detector, instrument="LSSTCam")[0]
        .full_name
    )

    def key(ref: Any) -> tuple:
        return (ref.datasetType.name, ref.run, norm_data_id(ref.dataId))

    def script(butler: Any) -> list[Any]:
        # What get() looks up: daf_butler's find_dataset skips the calibration look-up its get()
        # makes, so its own look-up (_findDatasetRef) is the reference here.
        find = getattr(butler, "_findDatasetRef", butler.find_dataset)
        return [
            key(find("raw", day_obs=first.day_obs, seq_num=first.seq_num, detector=detector)),
            key(find("raw", {"exposure.obs_id": second.obs_id}, detector=detector)),
            key(find("raw", exposure=second.id, detector=full_name)),
            key(find("bias", exposure=first.id, detector=detector)),
            key(find("bias", visit=second.id, detector=detector)),
            key(find("flat", exposure=second.id, detector=detector)),
        ]

    daf = daf_butler(lsstcam_roots["daf"], collections="LSSTCam/defaults")
    ours = Butler(lsstcam_roots["porter"], collections="LSSTCam/defaults")
    expected = script(daf)
    assert script(ours) == expected
    spans = [b.registry.expandDataId(exposure=first.id, detector=detector).timespan for b in (daf, ours)]
    for ends in (
        (spans[0].begin, spans[1].begin),
        (spans[0].end, spans[1].end),
    ):  # an exposure within its night
        assert abs((ends[0] - ends[1]).to_value("s")) < 1e-6
    assert expected[3][1] != expected[4][1]  # each exposure found its own night's bias
    with pytest.raises(porter.DimensionValueError, match="seq_num"):
        ours.find_dataset("raw", day_obs=first.day_obs, seq_num=99999, detector=detector)
    with pytest.raises(porter.DimensionValueError, match="seq_nmu"):
        ours.find_dataset("raw", day_obs=first.day_obs, seq_nmu=first.seq_num, detector=detector)


# --- 9. sky-pixel records ------------------------------------------------------------------------------


def test_skypix_records_like_daf_butler(daf_repos: Any, rc2_template: Path, tmp_path: Path) -> None:
    import lsst.sphgeom

    from conftest import rc2_repo

    daf = daf_repos(("hsc-rc2-subset.yaml",))
    ours = rc2_repo(tmp_path / "rc2", None, rc2_template)
    patch = ours.query_data_ids(["tract", "patch"], skymap="hsc_rings_v1")[0]
    visit = ours.query_data_ids(["visit"], instrument="HSC", order_by="visit")[0]["visit"]

    def script(butler: Any) -> list[Any]:
        out = []
        for kwargs in (dict(patch.required), {"instrument": "HSC", "visit": visit}):
            records = butler.query_dimension_records("htm7", **kwargs)
            out.append(sorted((r.id, r.region.encode().hex()) for r in records))
        return out

    expected = script(daf)
    assert script(ours) == expected and all(expected)
    # porter also answers for other pixelizations (daf_butler refuses): each pixel overlaps the patch.
    patch_region = ours.query_dimension_records("patch", **patch.required)[0].region
    healpix = ours.query_dimension_records("healpix8", **patch.required)
    pixelization = lsst.sphgeom.HealpixPixelization(8)
    candidates = {i for begin, end in pixelization.envelope(patch_region) for i in range(begin, end)}
    assert healpix and {r.id for r in healpix} <= candidates
    assert all(not (r.region.relate(patch_region) & lsst.sphgeom.DISJOINT) for r in healpix)
    with pytest.raises(porter.InvalidQueryError, match="cover the sky"):
        ours.query_dimension_records("healpix8")


@pytest.mark.parametrize(
    "location",
    [
        "/data/repo/calexp/HSC/r/calexp_HSC_1228_50.fits",
        "s3://bucket/dr1/src/src_1228.parq",
        "/tmp/x/raw.fits.fz",
    ],
)
def test_uris_answer_like_resource_paths(location: str) -> None:
    """``get_uri`` results answer what code asks of lsst.resources.ResourcePath."""
    from lsst.resources import ResourcePath

    from porter.datastore import ResourceURI

    theirs, ours = ResourcePath(location), ResourceURI.from_string(location)
    for name in ("scheme", "netloc", "ospath", "relativeToPathRoot", "isLocal"):
        try:
            expected = getattr(theirs, name)
        except AttributeError:  # an S3 URI has no ospath, in both
            with pytest.raises(AttributeError):
                getattr(ours, name)
            continue
        assert getattr(ours, name) == expected, name
    assert (ours.geturl(), ours.basename(), ours.getExtension()) == (
        theirs.geturl(),
        theirs.basename(),
        theirs.getExtension(),
    )
    assert ours.dirname().geturl().rstrip("/") == theirs.dirname().geturl().rstrip("/")


def test_astropy_coordinates_in_binds(daf_repos: Any, rc2_template: Path, tmp_path: Path) -> None:
    """A SkyCoord binds as a point (as in daf_butler); porter also takes angles for CIRCLE's arguments."""
    import astropy.units as u
    from astropy.coordinates import Angle, SkyCoord

    from conftest import rc2_repo

    daf = daf_repos(("hsc-rc2-subset.yaml",))
    ours = rc2_repo(tmp_path / "rc2", None, rc2_template)
    visit = ours.query_dimension_records("visit", instrument="HSC", order_by="visit", limit=1)[0]
    centre = lsst_centre(visit.region)
    point = SkyCoord(centre[0] * u.deg, centre[1] * u.deg)

    def script(butler: Any) -> list[Any]:
        found = butler.query_data_ids(
            ["visit"], instrument="HSC", where="visit.region OVERLAPS :pt", bind={"pt": point}, explain=False
        )
        return sorted(norm_data_id(d) for d in found)

    expected = script(daf)
    assert script(ours) == expected and expected
    by_angles = ours.query_data_ids(
        ["visit"],
        instrument="HSC",
        where="visit.region OVERLAPS CIRCLE(:ra, :dec, :r)",
        bind={"ra": Angle(centre[0], u.deg), "dec": centre[1] * u.deg, "r": 1 * u.arcsec},
    )
    assert {d["visit"] for d in by_angles} >= {visit.id}
    with pytest.raises(porter.InvalidQueryError, match="single point"):
        ours.query_data_ids(
            ["visit"],
            instrument="HSC",
            where="visit.region OVERLAPS :pt",
            bind={"pt": SkyCoord([1, 2] * u.deg, [3, 4] * u.deg)},
        )


def lsst_centre(region: Any) -> tuple[float, float]:
    import lsst.sphgeom

    centre = lsst.sphgeom.LonLat(region.getBoundingCircle().getCenter())
    return centre.getLon().asDegrees(), centre.getLat().asDegrees()
