"""Catalog conformance to real Rubin Felis schemas (lsst-sdm-schemas' DP1), content rules, and schema diffs."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy

from catalogs import FOOTPRINT, upload, visit_and_source, write
from conftest import TEST_BUCKET, drop_schema
from porter.errors import PorterError
from porter.schema import (
    CatalogSource,
    RuleError,
    check_rules,
    conformance,
    load_schema,
    schema_diff,
    table_of,
)

RULES = [
    {"rule": "row_count", "min": 1000, "max": 10000},
    {"rule": "range", "column": "detector", "min": 0, "max": 188},
    {"rule": "finite", "columns": ["coord_ra", "coord_dec"]},
    {"rule": "footprint", "ra": "coord_ra", "dec": "coord_dec", **FOOTPRINT},
    {"rule": "unique", "columns": ["sourceId"]},
]


@pytest.fixture
def catalogs(tmp_path: Path) -> tuple[Path, pa.Table, pa.Table]:
    visits, sources = visit_and_source(tmp_path / "clean", np.random.default_rng(7))
    return tmp_path, visits, sources


def check(root: Path | str, source_dir: Path | str, visit: str | None = None) -> dict[str, str]:
    """Conformance and rules of the Source catalog at ``source_dir`` (the Visit catalog under ``root``)."""
    dp1 = load_schema("dp1")
    refs = {"Visit": CatalogSource(visit or f"{root}/clean/Visit")}
    src = CatalogSource(str(source_dir))
    results = conformance("source", src, table_of(dp1, "Source"), refs) + check_rules("source", src, RULES)
    return {r.check: r.status for r in results} | {f"{r.check}:msg": r.message for r in results}


def test_clean_catalog_has_no_false_alarms(catalogs: tuple[Path, pa.Table, pa.Table]) -> None:
    root, _, _ = catalogs
    got = check(root, root / "clean" / "Source")
    statuses = {k: v for k, v in got.items() if not k.endswith(":msg")}
    # DP1's schema itself lacks most UCDs: said as information about the schema, not a warning on the data.
    assert "the schema Source itself declares no UCD for 146 of 156 columns" in got["units and UCDs:msg"]
    assert statuses == dict.fromkeys(
        [
            "units and UCDs",
            "columns",
            "types",
            "not-null",
            "primary key",
            "foreign key visit → Visit",
            "row_count",
            "range detector",
            "finite coord_ra,coord_dec",
            "footprint",
            "unique sourceId",
        ],
        "pass",
    )


def defect(catalogs: tuple[Path, pa.Table, pa.Table], name: str, table: pa.Table) -> Path:
    root, _, _ = catalogs
    return write(table, root / name / "Source")


@pytest.mark.parametrize(
    ("name", "break_it", "failing", "message"),
    [
        ("missing-column", lambda t: t.drop_columns(["psfFlux"]), {"columns"}, "missing ['psfFlux']"),
        (
            "wrong-type",
            lambda t: t.set_column(
                t.schema.get_field_index("detector"), "detector", pc.cast(t["detector"], pa.string())
            ),
            {"types"},
            "detector: VARCHAR is not a int",
        ),
        (
            "duplicate-key",
            lambda t: pa.concat_tables([t, t.slice(0, 3)]),
            {"primary key", "unique sourceId"},
            "3+ duplicated keys",
        ),
        (
            "dangling-fk",
            lambda t: t.set_column(
                t.schema.get_field_index("visit"),
                "visit",
                pa.array(np.where(np.arange(t.num_rows) < 5, 999_999, np.asarray(t["visit"]))),
            ),
            {"foreign key visit → Visit"},
            "5 rows refer to missing visit",
        ),
        (
            "null-in-non-null",
            lambda t: t.set_column(
                t.schema.get_field_index("visit"),
                "visit",
                pa.array([None, *np.asarray(t["visit"])[1:].tolist()], type=pa.int64()),
            ),
            {"not-null"},
            "visit: 1 null/NaN",
        ),
        (
            "outside-footprint",
            lambda t: t.set_column(
                t.schema.get_field_index("coord_ra"),
                "coord_ra",
                pa.array(np.where(np.arange(t.num_rows) < 4, 10.0, np.asarray(t["coord_ra"]))),
            ),
            {"footprint"},
            "",
        ),
        (
            "nan-position",
            lambda t: t.set_column(
                t.schema.get_field_index("coord_dec"),
                "coord_dec",
                pa.array(np.where(np.arange(t.num_rows) < 2, np.nan, np.asarray(t["coord_dec"]))),
            ),
            {"finite coord_ra,coord_dec", "footprint"},
            "coord_dec: 2",
        ),
    ],
)
def test_each_defect_is_caught_and_named(
    catalogs: tuple[Path, pa.Table, pa.Table], name: str, break_it: object, failing: set[str], message: str
) -> None:
    root, _, sources = catalogs
    got = check(root, defect(catalogs, name, break_it(sources)))  # type: ignore[operator]
    failed = {k for k, v in got.items() if not k.endswith(":msg") and v == "fail"}
    assert failed == failing, got
    assert any(message in got[f"{k}:msg"] for k in failing)


def test_catalogs_in_s3(catalogs: tuple[Path, pa.Table, pa.Table], s3_server: str) -> None:
    """The same checks read Parquet from S3 (the emulator): same verdicts, and a local catalog's foreign key
    resolves against an S3 one."""
    root, _, sources = catalogs
    prefix = f"catalogs-{uuid.uuid4().hex[:8]}"
    s3_root = upload(root / "clean", f"{prefix}/clean")
    assert check(f"s3://{TEST_BUCKET}/{prefix}", f"{s3_root}/Source") == check(
        root, root / "clean" / "Source"
    )
    broken = sources.set_column(
        sources.schema.get_field_index("visit"),
        "visit",
        pa.array(np.where(np.arange(sources.num_rows) < 5, 999_999, np.asarray(sources["visit"]))),
    )
    got = check(f"s3://{TEST_BUCKET}/{prefix}", defect(catalogs, "dangling", broken))
    assert got["foreign key visit → Visit"] == "fail" and "5 rows" in got["foreign key visit → Visit:msg"]
    with pytest.raises(PorterError, match="No Parquet files"):
        CatalogSource(f"s3://{TEST_BUCKET}/{prefix}/nothing-here")


def test_catalogs_in_postgresql(catalogs: tuple[Path, pa.Table, pa.Table], pg_server: str) -> None:
    """Live PostgreSQL tables are checked like Parquet (through a streamed snapshot): same verdicts on the
    clean copy, and a duplicate key and NaN positions inserted afterwards are caught."""
    root, visits, sources = catalogs
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(pg_server.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        visits.to_pandas().to_sql("Visit", engine, schema=schema, index=False)
        sources.to_pandas().to_sql("Source", engine, schema=schema, index=False)
        visit, source = f"{pg_server}#{schema}.Visit", f"{pg_server}#{schema}.Source"
        parquet = check(root, root / "clean" / "Source")
        live = check(root, source, visit)
        assert {k: v for k, v in live.items() if not k.endswith(":msg")} == {
            k: v for k, v in parquet.items() if not k.endswith(":msg")
        }
        assert CatalogSource(source).columns()["coord_ra"] == "double precision"  # PostgreSQL's own types
        with engine.begin() as conn:
            conn.exec_driver_sql(f'INSERT INTO "{schema}"."Source" SELECT * FROM "{schema}"."Source" LIMIT 3')
            conn.exec_driver_sql(
                f'UPDATE "{schema}"."Source" SET coord_dec = \'NaN\' WHERE "sourceId" IN '
                f'(SELECT "sourceId" FROM "{schema}"."Source" ORDER BY "sourceId" DESC LIMIT 2)'
            )
        got = check(root, source, visit)
        failed = {k for k, v in got.items() if not k.endswith(":msg") and v == "fail"}
        assert failed == {"primary key", "unique sourceId", "finite coord_ra,coord_dec", "footprint"}, got
        with pytest.raises(PorterError, match="names no table"):
            CatalogSource(pg_server)
    finally:
        engine.dispose()
        drop_schema(pg_server, schema)


def test_rule_errors_name_the_problem(catalogs: tuple[Path, pa.Table, pa.Table]) -> None:
    root, _, _ = catalogs
    src = CatalogSource(str(root / "clean" / "Source"))
    with pytest.raises(RuleError, match="unknown rule 'rnage'"):
        check_rules("source", src, [{"rule": "rnage", "column": "x"}])
    with pytest.raises(RuleError, match="names column 'nope'"):
        check_rules("source", src, [{"rule": "range", "column": "nope", "min": 0}])


def test_band_coverage(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 1000
    g = rng.normal(100, 5, n)
    r = np.where(rng.random(n) < 0.3, np.nan, rng.normal(100, 5, n))  # r measured for only ~70%
    write(pa.table({"g_psfFlux": g, "r_psfFlux": r}), tmp_path / "obj", parts=1)
    (res,) = check_rules(
        "obj",
        CatalogSource(str(tmp_path / "obj")),
        [{"rule": "band_coverage", "bands": ["g", "r"], "column": "{band}_psfFlux", "min_fraction": 0.9}],
    )
    assert (
        res.status == "fail"
        and res.value["g"] == 1.0
        and 0.6 < res.value["r"] < 0.8
        and "['r']" in res.message
    )


def test_schema_diff_parquet_and_postgresql(
    catalogs: tuple[Path, pa.Table, pa.Table], pg_server: str
) -> None:
    root, visits, _ = catalogs
    table = table_of(load_schema("dp1"), "Visit")
    broken = visits.drop_columns(["airmass"]).append_column("seeing", pa.array(np.ones(visits.num_rows)))
    write(broken, root / "bad" / "Visit", parts=1)
    diff = schema_diff(table, CatalogSource(str(root / "bad" / "Visit")).columns())
    assert (
        diff["missing_in_data"] == ["airmass"]
        and diff["not_in_schema"] == ["seeing"]
        and not diff["type_mismatches"]
    )
    # The same diff against a live PostgreSQL table (both directions), with one wrong type.
    from porter.schema import postgres_columns

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(pg_server.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            conn.exec_driver_sql(
                f'CREATE TABLE "{schema}"."Visit" (visit bigint, band text, ra text, dec double precision, seeing real)'
            )
        diff = schema_diff(table, postgres_columns(pg_server, "Visit", schema))
        assert "airmass" in diff["missing_in_data"] and diff["not_in_schema"] == ["seeing"]
        assert [m["column"] for m in diff["type_mismatches"]] == ["ra"]
    finally:
        engine.dispose()
        drop_schema(pg_server, schema)


def test_schema_cli(catalogs: tuple[Path, pa.Table, pa.Table]) -> None:
    from test_cli import run

    root, visits, _ = catalogs
    out = run("schema", "diff", "dp1", "Visit", "--parquet", root / "clean" / "Visit", "--json")
    assert '"missing_in_data": []' in out
    write(visits.drop_columns(["band"]), root / "bad" / "Visit", parts=1)
    out = run("schema", "diff", "dp1", "Visit", "--parquet", root / "bad" / "Visit", ok=False)
    assert "band" in out and "in the schema, not in the data" in out
    run(
        "schema",
        "check",
        "dp1",
        "Source",
        "--parquet",
        root / "clean" / "Source",
        "--reference",
        f"Visit={root / 'clean' / 'Visit'}",
    )
    out = run("schema", "diff", "dp1", "Nope", "--parquet", root / "clean" / "Visit", ok=False)
    assert "no table 'Nope'" in out
