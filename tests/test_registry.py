"""Registry behaviour on SQLite and PostgreSQL: collections, dataset types, datasets,
calibrations, dimension records, bulk paths, atomicity."""

from __future__ import annotations

import re
import uuid

import astropy.time
import lsst.sphgeom
import pytest
import sqlalchemy

from conftest import load
from porter import Butler, CollectionType, Timespan
from porter.butler import read_collection_infos
from porter.errors import (
    CollectionCycleError,
    CollectionTypeError,
    ConflictingDefinitionError,
    DataIdError,
    DatasetTypeError,
    InUseError,
    MissingCollectionError,
    MissingDatasetTypeError,
    RepositoryError,
)
from porter.registry import select_names


def snapshot(butler: Butler) -> tuple:
    """Everything a bad operation must leave unchanged."""
    reg = butler.registry
    colls = tuple(sorted((i.name, i.type.name, i.children) for i in butler.collections.query_info()))
    types = tuple(sorted(str(t) for t in butler.query_dataset_types()))
    datasets = []
    for t in butler.query_dataset_types():
        for c in butler.collections.query(collection_types=[CollectionType.RUN, CollectionType.TAGGED]):
            refs = butler.query_datasets(t.name, c, find_first=False, explain=False)
            datasets.extend(sorted(str(r.id) for r in refs))
    records = tuple(
        (e.name, len(butler.query_dimension_records(e.name, explain=False)))
        for e in reg.universe.database_elements
    )
    return colls, types, tuple(sorted(datasets)), records


# --- repository lifecycle -------------------------------------------------------------------------------


def test_schema_version_recorded(repo: Butler) -> None:
    meta = repo.registry.schema.meta
    with repo.registry.db.reading() as conn:
        values = dict(conn.execute(sqlalchemy.select(meta.c.name, meta.c.value)).all())
    assert values["schema_version"].startswith("1.")
    assert values["universe_namespace"] == "daf_butler" and values["universe_version"] == "8"


def test_create_twice_and_open_missing(tmp_path, repo: Butler) -> None:
    with pytest.raises(RepositoryError, match="already exists"):
        Butler.create(repo.root)
    with pytest.raises(RepositoryError, match="No porter repository"):
        Butler(tmp_path / "nowhere")


# --- collections ------------------------------------------------------------------------------------------


def test_collections_and_chains(repo: Butler) -> None:
    c = repo.collections
    assert c.register("run1") is True
    assert c.register("run1") is False
    c.register("run2", "RUN", doc="second")
    c.register("tagged", CollectionType.TAGGED)
    c.register("calib", "calibration")
    with pytest.raises(ConflictingDefinitionError, match="already exists as RUN"):
        c.register("run1", "TAGGED")
    c.redefine_chain("chain", ["run2", "run1"])
    c.redefine_chain("outer", ["tagged", "chain", "run1"])
    assert c.get_info("outer").children == ("tagged", "chain", "run1")
    assert c.query("outer", flatten_chains=True) == ["tagged", "run2", "run1"]
    assert c.query("outer", flatten_chains=True, include_chains=True) == [
        "outer",
        "tagged",
        "chain",
        "run2",
        "run1",
    ]
    assert c.query("run*") == ["run1", "run2"]
    assert c.query(re.compile("r.n[0-9]")) == ["run1", "run2"]
    assert c.query("*", collection_types=[CollectionType.CHAINED]) == ["chain", "outer"]
    assert [i.name for i in repo.registry.resolve_collections(["outer"])] == ["tagged", "run2", "run1"]
    with pytest.raises(CollectionCycleError, match="cycle"):
        c.redefine_chain("chain", ["outer"])
    with pytest.raises(CollectionCycleError):
        c.extend_chain("chain", "chain")
    c.prepend_chain("chain", ["calib"])
    assert c.get_info("chain").children == ("calib", "run2", "run1")
    c.remove_from_chain("chain", "run2")
    assert c.get_info("chain").children == ("calib", "run1")
    with pytest.raises(CollectionTypeError):
        c.extend_chain("run1", ["run2"])
    with pytest.raises(MissingCollectionError, match="Did you mean 'run1'"):
        c.get_info("rn1")
    with pytest.raises(InUseError, match="child of chained"):
        c.x_remove("run1")
    c.x_remove("outer")
    assert "outer" not in c.query()
    assert c.get_info("run2").doc == "second"


def test_collections_read_without_sqlalchemy_agree_with_the_registry(repo: Butler, backend: str) -> None:
    """`read_collection_infos` (the CLI's stdlib-sqlite3 path) gives the registry's own answer on SQLite,
    chains and docs included, and declines (None) on PostgreSQL, where the CLI opens the butler."""
    load(repo, "base.yaml", "datasets.yaml")
    c = repo.collections
    c.register("tagged", CollectionType.TAGGED, doc="hand-picked")
    c.redefine_chain("inner", ["imported_r", "tagged"])
    c.redefine_chain("outer", ["inner", "imported_g"])
    read = read_collection_infos(repo.root)
    if backend == "postgresql":
        assert read is None
        return
    assert read == {i.name: i for i in c.query_info("*")}
    for expression, kwargs in [
        ("*", {}),
        ("outer", {"flatten_chains": True}),
        (["outer", "imp*"], {"flatten_chains": True, "include_chains": True}),
        (re.compile("i.*"), {"collection_types": ["RUN", "TAGGED"]}),
    ]:
        assert read is not None and select_names(read, expression, **kwargs) == c.query(expression, **kwargs)
    with pytest.raises(MissingCollectionError, match="Did you mean 'outer'"):
        select_names(read, "outr")


def test_a_chain_with_a_missing_child_is_not_created(repo: Butler) -> None:
    repo.collections.register("run1")
    with pytest.raises(MissingCollectionError, match="'run2'"):
        repo.collections.redefine_chain("chain", ["run1", "run2"])
    assert repo.collections.query("*") == ["run1"]


def test_remove_run_with_datasets_needs_remove_runs(repo: Butler) -> None:
    load(repo, "base.yaml", "datasets.yaml")
    with pytest.raises(InUseError, match="remove_runs"):
        repo.collections.x_remove("imported_g")
    repo.collections.redefine_chain("both", ["imported_g", "imported_r"])
    before = snapshot(repo)
    with pytest.raises(ConflictingDefinitionError, match="chained"):
        repo.remove_runs(["imported_g"])
    assert snapshot(repo) == before
    repo.collections.remove_from_chain("both", "imported_g")
    assert repo.remove_runs(["imported_g"]) == 6
    assert "imported_g" not in repo.collections.query()
    assert len(repo.query_datasets("bias", ["imported_r"])) == 3


# --- dataset types ------------------------------------------------------------------------------------------


def test_dataset_types(repo: Butler) -> None:
    load(repo, "base.yaml")
    assert repo.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF") is True
    assert repo.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF") is False
    with pytest.raises(ConflictingDefinitionError, match="cannot redefine"):
        repo.register_dataset_type("calexp", ["instrument", "visit"], "ExposureF")
    dt = repo.get_dataset_type("calexp")
    assert dt.dimensions.required == ("instrument", "detector", "visit")
    assert "physical_filter" in dt.dimensions.implied
    assert [t.name for t in repo.query_dataset_types("*")] == ["bias", "calexp", "flat"]
    assert [t.name for t in repo.query_dataset_types("c*")] == ["calexp"]
    with pytest.raises(MissingDatasetTypeError, match="Did you mean 'calexp'"):
        repo.get_dataset_type("calexps")
    with pytest.raises(DatasetTypeError, match="Invalid dataset type name"):
        repo.register_dataset_type("bad name", ["instrument"], "X")
    with pytest.raises(DataIdError, match="Did you mean 'detector'"):
        repo.register_dataset_type("x", ["instrument", "detectr"], "X")
    repo.remove_dataset_type("calexp")
    assert [t.name for t in repo.query_dataset_types()] == ["bias", "flat"]


def test_dataset_type_removal_refused_in_use(repo: Butler) -> None:
    load(repo, "base.yaml", "datasets.yaml")
    before = snapshot(repo)
    with pytest.raises(InUseError, match="still has 6 dataset"):
        repo.remove_dataset_type("bias")
    assert snapshot(repo) == before


# --- datasets ------------------------------------------------------------------------------------------------


def test_insert_find_and_conflicts(repo: Butler) -> None:
    load(repo, "base.yaml")
    repo.collections.register("run")
    refs = repo.registry.insert_datasets(
        "bias", [{"instrument": "Cam1", "detector": d} for d in (1, 2, 3)], "run"
    )
    assert len({r.id for r in refs}) == 3 and all(r.id.version == 4 for r in refs)
    assert repo.find_dataset("bias", instrument="Cam1", detector=2, collections="run") == refs[1]
    assert repo.find_dataset("bias", instrument="Cam1", detector=4, collections="run") is None
    assert repo.get_dataset(refs[0].id) == refs[0]
    before = snapshot(repo)
    with pytest.raises(ConflictingDefinitionError, match="already exist in run 'run'"):
        repo.registry.insert_datasets(
            "bias", [{"instrument": "Cam1", "detector": 4}, {"instrument": "Cam1", "detector": 2}], "run"
        )
    with pytest.raises(DataIdError, match=r"detector .* which has no dimension record"):
        repo.registry.insert_datasets("bias", [{"instrument": "Cam1", "detector": 99}], "run")
    with pytest.raises(DataIdError, match="missing"):
        repo.registry.insert_datasets("bias", [{"instrument": "Cam1"}], "run")
    with pytest.raises(CollectionTypeError):
        repo.collections.register("tag", "TAGGED")
        repo.registry.insert_datasets("bias", [{"instrument": "Cam1", "detector": 4}], "tag")
    repo.collections.x_remove("tag")
    assert snapshot(repo) == before
    ids = [uuid.uuid4()]
    kept = repo.registry.insert_datasets("bias", [{"instrument": "Cam1", "detector": 4}], "run", ids=ids)
    assert kept[0].id == ids[0]


def test_tagged_collections(repo: Butler) -> None:
    load(repo, "base.yaml", "datasets.yaml")
    repo.collections.register("tag", "TAGGED")
    g = repo.query_datasets("bias", "imported_g")
    repo.registry.associate("tag", g)
    repo.registry.associate("tag", g[:1])  # already there: fine
    assert sorted(repo.query_datasets("bias", "tag")) == sorted(g)
    r = repo.query_datasets("bias", "imported_r", instrument="Cam1", detector=2)
    with pytest.raises(ConflictingDefinitionError, match="already holds another bias"):
        repo.registry.associate("tag", r)
    repo.registry.disassociate("tag", g[1:])
    assert repo.query_datasets("bias", "tag") == g[:1]
    # A tagged dataset keeps its run.
    assert repo.query_datasets("bias", ["tag"])[0].run == "imported_g"


def test_calibration_collections(repo: Butler) -> None:
    load(repo, "base.yaml", "datasets.yaml", "spatial.yaml")
    repo.collections.register("calib", "CALIBRATION")
    g = repo.query_datasets("bias", "imported_g")
    r = repo.query_datasets("bias", "imported_r")
    t = lambda s: astropy.time.Time(s, scale="tai")  # noqa: E731
    early = Timespan(t("2021-09-01T00:00:00"), t("2021-09-09T03:01:30"))
    late = Timespan(t("2021-09-09T03:01:30"), None)
    repo.registry.certify("calib", g, early)
    repo.registry.certify("calib", r, late)
    with pytest.raises(ConflictingDefinitionError, match="already certified"):
        repo.registry.certify("calib", r[:1], Timespan(t("2021-09-05T00:00:00"), t("2021-09-06T00:00:00")))
    # Lookup by time.
    found = repo.find_dataset(
        "bias",
        instrument="Cam1",
        detector=2,
        collections="calib",
        timespan=Timespan(t("2021-09-09T03:00:00"), t("2021-09-09T03:00:10")),
    )
    assert found is not None and found.run == "imported_g"
    found = repo.find_dataset(
        "bias",
        instrument="Cam1",
        detector=2,
        collections="calib",
        timespan=Timespan(t("2021-09-10T00:00:00"), t("2021-09-11T00:00:00")),
    )
    assert found is not None and found.run == "imported_r"
    # Query with the visit's timespan: visit 1 is early (g), visit 2 late (r).
    refs = repo.query_datasets("bias", "calib", where="visit = 2 AND detector = 2", instrument="Cam1")
    assert [x.run for x in refs] == ["imported_r"]
    refs = repo.query_datasets("bias", "calib", where="visit = 1 AND detector = 2", instrument="Cam1")
    assert [x.run for x in refs] == ["imported_g"]
    # Without a time, find-first is ambiguous where two ranges exist.
    with pytest.raises(Exception, match="Ambiguous calibration"):
        repo.query_datasets("bias", "calib", instrument="Cam1", detector=2)
    assert len(repo.query_datasets("bias", "calib", find_first=False)) == 6
    # Decertify the middle of the late range: it splits.
    repo.registry.decertify("calib", "bias", Timespan(t("2021-09-10T00:00:00"), t("2021-09-11T00:00:00")))
    assoc = repo.registry.associations.calibration_associations(repo.collections.get_info("calib"))
    assert len(assoc) == 3 + 3 * 2
    assert (
        repo.find_dataset(
            "bias",
            instrument="Cam1",
            detector=3,
            collections="calib",
            timespan=Timespan(t("2021-09-10T01:00:00"), t("2021-09-10T02:00:00")),
        )
        is None
    )
    with pytest.raises(DatasetTypeError, match="not a calibration"):
        repo.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
        repo.collections.register("run")
        ref = repo.registry.insert_datasets(
            "calexp", [{"instrument": "Cam1", "visit": 1, "detector": 1}], "run"
        )
        repo.registry.certify("calib", ref, late)


# --- dimension records -------------------------------------------------------------------------------


def test_dimension_record_inserts(repo: Butler) -> None:
    load(repo, "base.yaml")
    before = snapshot(repo)
    with pytest.raises(ConflictingDefinitionError, match="already exist"):
        repo.insert_dimension_records("detector", [{"instrument": "Cam1", "id": 1, "full_name": "Zz"}])
    with pytest.raises(DataIdError, match="refer to instrument"):
        repo.insert_dimension_records("detector", [{"instrument": "Nope", "id": 1, "full_name": "Zz"}])
    with pytest.raises(DataIdError, match="Unknown field"):
        repo.insert_dimension_records("detector", [{"instrument": "Cam1", "id": 9, "fullname": "Zz"}])
    with pytest.raises(ConflictingDefinitionError, match="same key"):
        repo.insert_dimension_records(
            "detector", [{"instrument": "Cam1", "id": 9}, {"instrument": "Cam1", "id": 9}]
        )
    assert snapshot(repo) == before
    assert (
        repo.insert_dimension_records(
            "detector", [{"instrument": "Cam1", "id": 1, "full_name": "Aa"}], skip_existing=True
        )
        == 1
    )
    repo.insert_dimension_records(
        "detector", [{"instrument": "Cam1", "id": 1, "full_name": "Aa", "raft": "Z"}], replace=True
    )
    (rec,) = repo.query_dimension_records("detector", instrument="Cam1", detector=1)
    assert rec.raft == "Z"
    # Physical filters populate bands.
    repo.insert_dimension_records("physical_filter", [{"instrument": "Cam1", "name": "Cam1-U", "band": "u"}])
    assert {d["band"] for d in repo.query_data_ids(["band"])} == {"g", "r", "u"}


def test_replaced_regions_update_the_spatial_index(repo: Butler) -> None:
    load(repo, "base.yaml", "spatial.yaml")
    (visit,) = repo.query_dimension_records("visit", instrument="Cam1", visit=1)
    far = lsst.sphgeom.Circle(
        lsst.sphgeom.UnitVector3d(lsst.sphgeom.LonLat.fromDegrees(180, 45)),
        lsst.sphgeom.Angle.fromDegrees(0.5),
    )
    assert (
        repo.query_data_ids(
            ["visit"], instrument="Cam1", where="visit.region OVERLAPS POINT(180, 45)", explain=False
        )
        == []
    )
    values = visit.to_dict()
    values["region"] = far
    repo.insert_dimension_records("visit", [values], replace=True)
    ids = repo.query_data_ids(["visit"], instrument="Cam1", where="visit.region OVERLAPS POINT(180, 45)")
    assert [d["visit"] for d in ids] == [1]


def test_bulk_paths_are_set_based(repo: Butler) -> None:
    """Inserting many records and datasets issues a handful of statements, not one per row."""
    load(repo, "base.yaml")
    statements: list[tuple[str, bool]] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append((statement.split()[0], executemany))

    engine = repo.registry.db.engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", count)
    try:
        n = 20_000
        repo.insert_dimension_records("day_obs", [{"instrument": "Cam1", "id": 20210909}])
        statements.clear()
        repo.insert_dimension_records(
            "visit",
            [
                {
                    "instrument": "Cam1",
                    "id": i,
                    "physical_filter": "Cam1-G",
                    "day_obs": 20210909,
                    "name": f"v{i}",
                }
                for i in range(n)
            ],
        )
        inserts = [s for s in statements if s[0].upper() == "INSERT"]
        # SQLite: one executemany per chunk; PostgreSQL: multi-row VALUES batches of 1000.
        assert 0 < len(inserts) <= n // 500, len(inserts)
        repo.register_dataset_type("raw", ["instrument", "visit", "detector"], "Exposure")
        repo.collections.register("run")
        statements.clear()
        refs = repo.registry.insert_datasets(
            "raw",
            [{"instrument": "Cam1", "visit": i % n, "detector": 1 + i // n} for i in range(2 * n)],
            "run",
        )
        inserts = [s for s in statements if s[0].upper() == "INSERT"]
        assert len(refs) == 2 * n
        assert 0 < len(inserts) <= 4 * n // 500, len(inserts)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
    assert len(repo.query_datasets("raw", "run", instrument="Cam1", where="detector = 2")) == n


def test_failed_transaction_leaves_nothing_and_caches_recover(repo: Butler) -> None:
    load(repo, "base.yaml")
    before = snapshot(repo)
    with pytest.raises(RuntimeError), repo.transaction():
        repo.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
        repo.collections.register("run")
        repo.registry.insert_datasets("bias", [{"instrument": "Cam1", "detector": 1}], "run")
        raise RuntimeError("boom")
    assert snapshot(repo) == before
    # The dataset type and its tables can be created again afterwards.
    repo.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    repo.collections.register("run")
    assert repo.query_datasets("calexp", "run", explain=False) == []


def test_default_collections_and_data_id(make_repo) -> None:  # type: ignore[no-untyped-def]
    b = make_repo()
    load(b, "base.yaml", "datasets.yaml")
    other = Butler(b.root, collections=["imported_r", "imported_g"], instrument="Cam1")
    try:
        assert sorted(r.run for r in other.query_datasets("bias")) == [
            "imported_g",
            "imported_r",
            "imported_r",
            "imported_r",
        ]
        # instrument comes from the default data ID, so detector alone is allowed.
        assert len(other.query_data_ids(["detector"], where="detector > 2")) == 2
        run_butler = Butler(b.root, run="u/me/run1")
        assert "u/me/run1" in run_butler.collections.query()
        run_butler.close()
    finally:
        other.close()
    with pytest.raises(MissingCollectionError, match="No collections given"):
        b.query_datasets("bias")


def test_governor_rule(repo: Butler) -> None:
    load(repo, "base.yaml", "spatial.yaml")
    with pytest.raises(Exception, match="instrument"):
        repo.query_data_ids(["detector"], where="detector = 1")
    assert len(repo.query_data_ids(["detector"], where="detector.raft = 'A'")) == 2
    assert len(repo.query_data_ids(["detector"], where="instrument = 'Cam1' AND detector = 1")) == 1


def test_removing_datasets_removes_their_memberships(repo: Butler) -> None:
    load(repo, "base.yaml", "datasets.yaml")
    repo.collections.register("tag", "TAGGED")
    repo.collections.register("calib", "CALIBRATION")
    g = repo.query_datasets("bias", "imported_g")
    repo.registry.associate("tag", g)
    repo.registry.certify("calib", g, Timespan(None, None))
    assert repo.registry.remove_datasets(g[:1]) == 1
    assert sorted(repo.query_datasets("bias", "tag")) == sorted(g[1:])
    assert len(repo.query_datasets("bias", "calib", find_first=False)) == 2
    repo.remove_runs(["imported_g"])
    assert repo.query_datasets("bias", "tag", explain=False) == []
    assert repo.query_datasets("bias", "calib", find_first=False, explain=False) == []
    assert repo.get_dataset(g[1].id) is None


def test_associating_unknown_datasets_is_refused(repo: Butler) -> None:
    from porter import DatasetRef
    from porter.errors import MissingDatasetError

    load(repo, "base.yaml", "datasets.yaml")
    repo.collections.register("tag", "TAGGED")
    real = repo.query_datasets("bias", "imported_g")[0]
    fake = DatasetRef(real.dataset_type, real.data_id, real.run, uuid.uuid4())
    before = snapshot(repo)
    with pytest.raises(MissingDatasetError, match="do not exist"):
        repo.registry.associate("tag", [real, fake])
    assert snapshot(repo) == before


def test_factorized_products_match_the_joined_query(repo: Butler) -> None:
    """Independent dimensions (visit x detector) evaluated as a product give the same rows as one SQL join.

    order_by turns the factorized evaluation off, so the two calls take different paths.
    Two instruments check that rows only combine when their governor values agree.
    """
    load(repo, "base.yaml", "spatial.yaml", "hsc-rc2-subset.yaml", "lsstcam-subset.yaml")
    for kwargs in [
        {},
        {"where": "band = 'r'"},
        {"where": "instrument = 'HSC' AND detector.purpose = 'SCIENCE' AND visit.exposure_time > 100"},
        {"where": "instrument = 'HSC' AND detector < 5 AND (visit = 1228 OR visit = 1230)"},
        {"where": "instrument = 'HSC' AND band IN ('g', 'y') AND day_obs > 20140101"},
        {"where": "instrument = 'Cam1' AND detector.raft = 'B'"},
    ]:
        fast = repo.query_data_ids(["visit", "detector"], **kwargs)
        joined = repo.query_data_ids(["visit", "detector"], order_by=["visit", "detector"], **kwargs)
        assert sorted(fast) == sorted(joined), kwargs
        assert len(set(fast)) == len(fast)
    counts = {}
    for d in repo.query_data_ids(["visit", "detector"]):
        counts[d["instrument"]] = counts.get(d["instrument"], 0) + 1
    assert counts == {"Cam1": 2 * 4, "HSC": 160 * 111, "LSSTCam": 2 * 2}
    # A filter-only component (band) with no matching value empties the product.
    assert repo.query_data_ids(["detector"], where="band = 'nope'", instrument="HSC", explain=False) == []


def test_records_fetched_in_blocks_match_one_block(repo: Butler, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attaching records binds key values in blocks; small blocks give the same records."""
    import porter.registry._expand as expand

    load(repo, "hsc-rc2-subset.yaml")
    whole = repo.query_data_ids(["visit", "detector"], instrument="HSC", with_dimension_records=True)
    monkeypatch.setattr(expand, "_VALUES_PER_QUERY", 7)
    blocks = repo.query_data_ids(["visit", "detector"], instrument="HSC", with_dimension_records=True)
    assert len(whole) == 1132  # one per visit_detector_region record
    assert [(d, dict(d.records)) for d in blocks] == [(d, dict(d.records)) for d in whole]
    assert all(d.records["visit_detector_region"].region is not None for d in whole)
