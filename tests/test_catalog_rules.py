"""Catalog rules that catch what slipped through (issue 13), on catalogs written from Rubin's real ``dp1``
Felis schema (lsst-sdm-schemas), read by real DuckDB:

- ``group_by``: a content rule evaluated per tract, band … in one ``GROUP BY`` query, failing with the
  groups that fail (a band missing from one tract);
- Parquet ``unit`` metadata (Rubin's butler, astropy) against the schema's ``ivoa:unit``, compared as
  astropy units; the schema's own gaps (no UCD for most DP1 columns) are information, not a warning;
- schema drift between the files of one catalog: a ``fail`` naming the file and the columns;
- row counts expected from another catalog item of the plan, or from the datasets in the butler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalogs import (
    catalogs_checkpoint,
    checked,
    conforming,
    dp1_item,
    dp2_catalogs,
    pg_schema,
    to_postgresql,
    with_units,
    write,
    write_plan,
)
from conftest import DRP_YAML, SURVEY_INPUTS
from porter import Butler
from porter.pipeline import InProcessExecutor, Pipeline, build_quantum_graph, execute_graph
from porter.release import Item
from porter.schema import (
    CatalogSource,
    RuleError,
    check_rules,
    conformance,
    load_schema,
    same_unit,
    table_of,
    validate_rule,
)

TRACTS = [9813, 9814, 9815]


class CountingSource(CatalogSource):
    """A catalog that records the queries run over it (to show a grouped rule is one query)."""

    def __init__(self, location: str):
        super().__init__(location)
        self.queries: list[str] = []

    def _execute(self, query: str) -> Any:
        self.queries.append(query)
        return super()._execute(query)


def _set(table: pa.Table, column: str, values: Any) -> pa.Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(values, type=table.schema.field(i).type))


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    """A DP1 Object catalog over three tracts whose i-band PSF fluxes are all missing in tract 9814."""
    rng = np.random.default_rng(13)
    n = 3000
    tract = rng.choice(TRACTS, n)
    table = conforming("dp1", "Object", n, rng, fixed={"tract": tract})
    i_flux = np.where(tract == 9814, np.nan, np.asarray(table["i_psfFlux"]))
    return write(_set(table, "i_psfFlux", i_flux), tmp_path / "Object", parts=3)


def test_a_band_missing_from_one_tract_is_caught_per_group(objects: Path) -> None:
    source = CountingSource(str(objects))
    source.columns()
    source.queries.clear()
    coverage = {
        "rule": "band_coverage",
        "bands": ["g", "r", "i"],
        "column": "{band}_psfFlux",
        "min_fraction": 0.5,
    }
    # Over the whole catalog, two thirds of the rows have i: the hole in one tract slips through.
    (whole,) = check_rules("object", source, [coverage])
    assert whole.status == "pass", whole
    (per_tract,) = check_rules("object", source, [{**coverage, "group_by": "tract"}])
    assert per_tract.check == "band_coverage {band}_psfFlux by tract"
    assert per_tract.status == "fail" and per_tract.value == "1/3 tract groups fail"
    assert per_tract.sample == [{"tract": 9814, "g": 1.0, "r": 1.0, "i": 0.0}]
    assert "tract 9814: i 0.0 < 0.5" in per_tract.message
    # Each rule was one query over the catalog, grouped in the database — not one per tract.
    assert len(source.queries) == 2 and "GROUP BY" in source.queries[1]

    source.queries.clear()
    results = check_rules(
        "object",
        source,
        [
            {"rule": "row_count", "min": 1, "group_by": "tract"},
            {"rule": "row_count", "min": 1005, "group_by": "tract"},
            {"rule": "finite", "columns": ["g_psfFlux", "i_psfFlux"], "group_by": "tract"},
            {"rule": "not_null", "columns": ["objectId"], "group_by": "patch"},
            {"rule": "range", "column": "coord_ra", "min": 149, "max": 151, "group_by": "tract"},
        ],
    )
    assert len(source.queries) == len(results)
    got = {r.check: r for r in results}
    assert results[0].check == "row_count by tract" and results[0].status == "pass"
    assert results[0].value == "0/3 tract groups fail"
    counts = pq.read_table(objects, columns=["tract"]).group_by("tract").aggregate([("tract", "count")])
    rows = dict(zip(counts["tract"].to_pylist(), counts["tract_count"].to_pylist()))
    few = sorted(t for t, n in rows.items() if n < 1005)
    assert few, rows  # the generated tracts hold about 1000 rows each
    short = results[1]  # the second row_count by tract
    assert short.status == "fail" and short.value == f"{len(few)}/3 tract groups fail"
    assert sorted(s["tract"] for s in short.sample) == few
    assert all(s["rows"] == rows[s["tract"]] for s in short.sample)
    finite = got["finite g_psfFlux,i_psfFlux by tract"]
    assert finite.status == "fail" and finite.sample == [
        {"tract": 9814, "g_psfFlux": 0, "i_psfFlux": rows[9814]}
    ]
    assert f"tract 9814: i_psfFlux {rows[9814]}" in finite.message
    assert got["not_null objectId by patch"].status == "pass"
    assert got["range coord_ra by tract"].status == "pass"


def test_finite_by_band_on_sources(tmp_path: Path) -> None:
    """DP1 Source rows carry their band: NaN PSF fluxes in the i band only are named as the i band's."""
    rng = np.random.default_rng(21)
    n = 2000
    band = rng.choice(["g", "r", "i"], n)
    table = conforming("dp1", "Source", n, rng, fixed={"band": band})
    broken = np.where((band == "i") & (np.arange(n) % 10 == 0), np.nan, np.asarray(table["psfFlux"]))
    write(_set(table, "psfFlux", broken), tmp_path / "Source")
    (result,) = check_rules(
        "source",
        CatalogSource(str(tmp_path / "Source")),
        [{"rule": "finite", "columns": ["psfFlux"], "group_by": "band"}],
    )
    bad = int(np.isnan(broken).sum())
    assert result.status == "fail" and result.value == "1/3 band groups fail"
    assert result.sample == [{"band": "i", "psfFlux": bad}]
    assert result.message == f"1 of 3 band groups fail: band i: psfFlux {bad}"


def test_group_by_is_validated(objects: Path) -> None:
    for rule in (
        {"rule": "row_count", "min": 1, "group_by": "tract"},
        {"rule": "range", "column": "coord_ra", "min": 0, "group_by": "tract"},
        {"rule": "finite", "columns": ["psfFlux"], "group_by": "band"},
        {"rule": "not_null", "columns": ["objectId"], "group_by": "tract"},
        {"rule": "footprint", "circle": [150, 2, 2], "group_by": "patch"},
        {"rule": "band_coverage", "bands": ["g"], "column": "{band}_psfFlux", "group_by": "tract"},
    ):
        assert validate_rule(rule) == rule
    with pytest.raises(RuleError, match=r"unique takes no group_by: .* columns: \[tract, objectId\]"):
        validate_rule({"rule": "unique", "columns": ["objectId"], "group_by": "tract"})
    with pytest.raises(RuleError, match="group_by must be a column name, not 3"):
        validate_rule({"rule": "row_count", "min": 1, "group_by": 3})
    with pytest.raises(RuleError, match="no group_by with the last two"):
        validate_rule({"rule": "row_count", "equals_item": "visit", "group_by": "tract"})
    # A group_by column the catalog lacks is named, with the closest one.
    source = CatalogSource(str(objects))
    with pytest.raises(RuleError, match=r"groups by column 'tratc'.*Did you mean 'tract'"):
        check_rules("object", source, [{"rule": "row_count", "min": 1, "group_by": "tratc"}])
    # … and so it is when a plan's rule is checked against the Felis table alone, before any catalog.
    felis = {c.name: c.datatype.value for c in table_of(load_schema("dp1"), "Object").columns}
    with pytest.raises(RuleError, match="groups by column 'band'"):
        check_rules("object", None, [{"rule": "row_count", "min": 1, "group_by": "band"}], felis)
    assert check_rules("object", None, [{"rule": "row_count", "min": 1, "group_by": "tract"}], felis) == []


# --- units ------------------------------------------------------------------------------------------------


def test_units_compare_as_astropy_units() -> None:
    assert same_unit("nJy", "nanojansky") and same_unit("nJy", "1e-9 Jy") and same_unit("deg", "degree")
    assert same_unit("pixel**2", "pix2") and same_unit("mas/yr", "mas.yr-1")
    assert not same_unit("mag", "nJy") and not same_unit("nJy", "Jy") and not same_unit("nJy", "nJY")


def _units_result(location: Path) -> Any:
    source = CatalogSource(str(location))
    results = conformance("source", source, table_of(load_schema("dp1"), "Source"))
    return next(r for r in results if r.check == "units and UCDs")


def test_parquet_units_against_felis(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    table = conforming("dp1", "Source", 500, rng)
    felis = table_of(load_schema("dp1"), "Source")
    with_unit = [c.name for c in felis.columns if c.ivoa_unit]

    # No unit metadata at all: nothing to compare, and the schema's own gap is information, not a warning.
    plain = _units_result(write(table, tmp_path / "plain"))
    assert plain.status == "pass" and plain.value == "no units in the files"
    assert "the schema Source itself declares no UCD for 146 of 156 columns" in plain.message

    # The butler's way: every column's unit in its field metadata, as the schema says, or spelt otherwise.
    same = with_units(table, "dp1", "Source", {"psfFlux": "nanojansky", "coord_ra": "degree"})
    good = _units_result(write(same, tmp_path / "good"))
    assert good.status == "pass" and good.value == f"0 of {len(with_unit)} columns differ", good

    # One file of two says psfFlux is in magnitudes.
    bad_dir = write(with_units(table, "dp1", "Source"), tmp_path / "bad")
    half = pq.read_table(bad_dir / "part-1.parquet")
    pq.write_table(with_units(half, "dp1", "Source", {"psfFlux": "mag"}), bad_dir / "part-1.parquet")
    bad = _units_result(bad_dir)
    assert bad.status == "fail" and bad.value == f"1 of {len(with_unit)} columns differ", bad
    assert bad.sample == [
        {
            "column": "psfFlux",
            "schema": "nJy",
            "data": "mag",
            "files": 1,
            "file": str(bad_dir / "part-1.parquet"),
        }
    ]
    assert "psfFlux is in 'mag' in part-1.parquet, the schema says 'nJy'" in bad.message


def test_astropy_written_units_are_read(tmp_path: Path) -> None:
    """astropy's Parquet writer keeps units in its own YAML header; they are compared the same way."""
    from astropy.table import Table

    table = conforming("dp1", "Source", 200, np.random.default_rng(4))
    astro = Table.from_pandas(table.to_pandas())
    for column in ("psfFlux", "psfFluxErr"):
        astro[column].unit = "nJy"
    astro["coord_ra"].unit = "deg"
    (tmp_path / "ok").mkdir()
    astro.write(tmp_path / "ok" / "part-0.parquet", format="parquet")
    ok = _units_result(tmp_path / "ok")
    assert ok.status == "pass" and ok.value == "0 of 3 columns differ", ok
    astro["psfFlux"].unit = "mag"
    (tmp_path / "wrong").mkdir()
    astro.write(tmp_path / "wrong" / "part-0.parquet", format="parquet")
    wrong = _units_result(tmp_path / "wrong")
    assert wrong.status == "fail" and [s["column"] for s in wrong.sample] == ["psfFlux"], wrong


# --- release checks: drift between files, row counts from elsewhere ---------------------------------------------


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    """releases/: DP1 Visit and Source catalogs (Source in two files) and an empty repository."""
    Butler.create(tmp_path / "repo").close()
    releases = tmp_path / "releases"
    dp2_catalogs(releases)
    return releases


@pytest.mark.parametrize(
    ("drift", "problem"),
    [
        (lambda t: t.drop_columns(["psfFlux"]), "lacks ['psfFlux']"),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("detector"), "detector", pc.cast(t["detector"], pa.int64())
            ),
            "column detector is BIGINT, not INTEGER",
        ),
    ],
)
def test_schema_drift_between_files_is_a_failure_naming_file_and_columns(
    releases: Path, drift: Any, problem: str
) -> None:
    write_plan(
        releases,
        str(releases.parent / "repo"),
        [catalogs_checkpoint([dp1_item("source", "Source"), dp1_item("visit", "Visit")])],
    )
    odd = releases / "DP2" / "catalogs" / "Source" / "part-1.parquet"
    pq.write_table(drift(pq.read_table(odd)), odd)
    got = checked(releases)
    files = got[("source", "files")]
    assert files.status == "fail", files
    assert str(odd) in files.message and problem in files.message, files.message
    assert files.sample == [
        {"file": str(odd), "problem": f"has another schema than part-0.parquet: {problem}"}
    ]
    assert files.value == "1 file(s) with another schema"
    assert all(r.status == "pass" for (item, _), r in got.items() if item == "visit")
    # A damaged file is still an error: the check could not read it, which is another matter.
    odd.write_bytes(odd.read_bytes()[:100])
    assert checked(releases)[("source", "files")].status == "error"


def test_row_count_equals_another_item(releases: Path, pg_server: str) -> None:
    """The Source table loaded into PostgreSQL for the portal holds as many rows as the Parquet delivery."""
    catalogs = releases / "DP2" / "catalogs"
    with pg_schema(pg_server) as (engine, schema):
        to_postgresql(catalogs / "Source", "Source", engine, schema)
        write_plan(
            releases,
            str(releases.parent / "repo"),
            [
                catalogs_checkpoint(
                    [
                        Item(
                            name="source-table",
                            kind="catalog",
                            location="DP2/catalogs/Source",
                            rules=[{"rule": "row_count", "min": 1}],
                        ),
                        Item(
                            name="source-tap",
                            kind="catalog",
                            location=f"{pg_server}#{schema}.Source",
                            rules=[{"rule": "row_count", "equals_item": "source-table"}],
                        ),
                    ]
                )
            ],
        )
        got = checked(releases)
        same = got[("source-tap", "row_count = source-table")]
        assert same.status == "pass" and same.value == 3000, same
        assert same.expected == "3000 (the rows of catalog item 'source-table')"
        # A misspelt item is refused with the plan, not found when the checks run.
        typo = {"rule": "row_count", "equals_item": "source-tabel"}
        with pytest.raises(ValueError, match=r"compares with 'source-tabel'.*Did you mean 'source-table'"):
            write_plan(
                releases,
                "repo",
                [
                    catalogs_checkpoint(
                        [
                            Item(name="source-table", kind="catalog", location="DP2/catalogs/Source"),
                            Item(name="typo", kind="catalog", location="DP2/catalogs/Source", rules=[typo]),
                        ]
                    )
                ],
            )
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f'DELETE FROM "{schema}"."Source" WHERE "sourceId" IN '
                f'(SELECT "sourceId" FROM "{schema}"."Source" ORDER BY "sourceId" LIMIT 5)'
            )
        short = checked(releases)[("source-tap", "row_count = source-table")]
        assert short.status == "fail" and short.value == 2995
        assert short.message == "5 rows fewer than the rows of catalog item 'source-table'"


RUN = "u/drp/step1"


def test_row_count_per_dataset_in_the_butler(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    """A Visit table has one row per visit that has a calexp: the butler says how many that is."""
    butler, _ = survey
    graph = build_quantum_graph(
        butler, Pipeline.from_uri(f"{DRP_YAML}#step1"), collections=SURVEY_INPUTS, run=RUN
    )
    assert execute_graph(butler, graph, InProcessExecutor()).ok
    visits = sorted(
        {d["visit"] for d in butler.query_data_ids(["visit"], datasets="calexp", collections=[RUN])}
    )
    g_visits = {
        d["visit"]
        for d in butler.query_data_ids(["visit"], datasets="calexp", collections=[RUN], where="band = 'g'")
    }
    assert len(visits) > len(g_visits) > 0
    releases = tmp_path / "releases"
    table = conforming("dp1", "Visit", len(visits), np.random.default_rng(8), fixed={"visit": visits})
    write(table, releases / "DP2" / "Visit", parts=1)
    per_visit = {"rule": "row_count", "per_dataset": {"dataset_type": "calexp", "dimensions": ["visit"]}}
    g_only = {
        "rule": "row_count",
        "per_dataset": {
            "dataset_type": "calexp",
            "dimensions": ["visit"],
            "collections": [RUN],
            "where": "band = 'g'",
        },
    }
    write_plan(
        releases,
        str(butler.root),
        [catalogs_checkpoint([dp1_item("visit", "Visit", location="DP2/Visit", rules=[per_visit, g_only])])],
        collections=[RUN],
    )
    got = checked(releases)
    every = got[("visit", "row_count per visit of calexp")]
    assert every.status == "pass" and every.value == len(visits), every
    assert every.expected == f"{len(visits)} (distinct visit of calexp datasets in {RUN})"
    # The g-band visits alone are fewer than the table's rows: that rule fails, saying by how many.
    g = got[("visit", "row_count per visit of calexp where band = 'g'")]
    assert g.status == "fail" and g.value == len(visits), g
    assert g.expected == f"{len(g_visits)} (distinct visit of calexp datasets in {RUN} where band = 'g')"
    assert g.message.startswith(f"{len(visits) - len(g_visits)} rows more than distinct visit")
    # One visit's row lost from the delivery: the count falls short of the butler's.
    write(table.slice(1), releases / "DP2" / "Visit", parts=1)
    short = checked(releases)[("visit", "row_count per visit of calexp")]
    assert short.status == "fail" and short.value == len(visits) - 1
    assert short.message == f"1 rows fewer than distinct visit of calexp datasets in {RUN}"


# --- keys with nulls --------------------------------------------------------------------------------------


def test_a_null_key_is_no_duplicate_but_no_primary_key_either(tmp_path: Path) -> None:
    """As in SQL, a null equals nothing: ``unique`` compares the keyed rows and says how many were not; the
    primary key (Felis) fails on a null by name rather than calling it a duplicate no sample shows."""
    table = conforming("dp1", "Visit", 40, np.random.default_rng(3))
    visits = table.column("visit").to_pylist()
    visits[5] = visits[4]  # one duplicate
    visits[10] = visits[11] = None  # two nulls, which are not duplicates of each other
    location = write(
        table.set_column(table.schema.get_field_index("visit"), "visit", pa.array(visits, pa.int64())),
        tmp_path / "Visit",
        parts=1,
    )
    source = CatalogSource(str(location))
    (unique,) = check_rules("visit", source, [{"rule": "unique", "columns": ["visit"]}])
    assert (unique.status, unique.value) == ("fail", "1 duplicated rows")
    assert unique.sample == [[visits[4], 2]]
    assert unique.message == "1+ duplicated keys; 2 rows with a null in the key (not compared)"
    visits[5] = 10_000
    table = table.set_column(table.schema.get_field_index("visit"), "visit", pa.array(visits, pa.int64()))
    location = write(table, tmp_path / "Visit2", parts=1)
    (unique,) = check_rules("visit", CatalogSource(str(location)), [{"rule": "unique", "columns": ["visit"]}])
    assert unique.status == "pass" and unique.message == "2 rows with a null in the key (not compared)"
    results = conformance("visit", CatalogSource(str(location)), table_of(load_schema("dp1"), "Visit"))
    (pk,) = [r for r in results if r.check == "primary key"]
    assert (
        pk.status == "fail" and pk.message == "2 rows with a null in the key (a primary key cannot be null)"
    )


def test_a_relative_schema_file_is_found_beside_the_plan(
    releases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schema_file: schemas/mine.yaml`` means the file beside the plan, wherever the command runs from."""
    from importlib.resources import files

    (releases / "schemas").mkdir()
    (releases / "schemas" / "mine.yaml").write_text((files("lsst.sdm.schemas") / "dp1.yaml").read_text())
    item = dp1_item("visit", "Visit").model_copy(update={"schema_file": "schemas/mine.yaml"})
    write_plan(releases, str(releases.parent / "repo"), [catalogs_checkpoint([item])])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    got = checked(releases)
    assert {check for _, check in got} >= {"columns", "types", "primary key"}  # the schema was read
    assert all(r.status == "pass" for r in got.values()), got
