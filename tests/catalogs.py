"""Parquet catalogs that conform to real Felis tables (from lsst-sdm-schemas), and copies with one defect each;
the same catalogs as live PostgreSQL tables; and the DP2 release plan whose catalogs checkpoint ships them,
written once here for the tests that check such deliveries."""

from __future__ import annotations

import contextlib
import datetime
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy

from porter.release import Checkpoint, Item, Person, Release, ReleasePlan, dump_plan
from porter.schema import CheckResult, load_schema, table_of

FOOTPRINT = {"ra_min": 149.0, "ra_max": 151.0, "dec_min": 1.0, "dec_max": 3.0}
_ARROW = {
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "string": pa.string(),
    "unicode": pa.string(),
    "text": pa.string(),
    "timestamp": pa.timestamp("us"),
}


def conforming(
    schema: str, table: str, n: int, rng: np.random.Generator, fixed: dict[str, Any] | None = None
) -> pa.Table:
    """``n`` rows with every column of the Felis table, of its type; keys unique, positions in FOOTPRINT."""
    t = table_of(load_schema(schema), table)
    fixed = fixed or {}
    columns: dict[str, Any] = {}
    for c in t.columns:
        kind = c.datatype.value
        if c.name in fixed:
            values: Any = fixed[c.name]
        elif kind in ("long", "int", "short", "byte"):
            values = (
                np.arange(1, n + 1) if c.name.endswith("Id") or c.name == "visit" else rng.integers(0, 100, n)
            )
        elif kind in ("double", "float"):
            if c.name in ("ra", "coord_ra"):
                values = rng.uniform(FOOTPRINT["ra_min"], FOOTPRINT["ra_max"], n)
            elif c.name in ("dec", "coord_dec"):
                values = rng.uniform(FOOTPRINT["dec_min"], FOOTPRINT["dec_max"], n)
            else:
                values = rng.normal(100, 10, n)
        elif kind == "boolean":
            values = rng.random(n) < 0.1
        elif kind == "timestamp":
            values = np.datetime64("2025-01-01T00:00:00") + np.arange(n).astype("timedelta64[s]")
        else:
            values = [f"{c.name}-{i % 7}" for i in range(n)]
        columns[c.name] = pa.array(values, type=_ARROW[kind])
    return pa.table(columns)


def write(table: pa.Table, directory: Path, parts: int = 2) -> Path:
    """Write as ``parts`` Parquet files in ``directory`` (a multi-file catalog, as pipelines deliver them)."""
    directory.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), directory / f"part-{i}.parquet")
    return directory


def visit_and_source(
    root: Path, rng: np.random.Generator, n_visits: int = 20, n_sources: int = 5000
) -> tuple[pa.Table, pa.Table]:
    visits = conforming("dp1", "Visit", n_visits, rng)
    visit_ids = np.asarray(visits["visit"])
    sources = conforming(
        "dp1",
        "Source",
        n_sources,
        rng,
        fixed={
            "visit": rng.choice(visit_ids, n_sources),
            "detector": rng.integers(0, 189, n_sources).astype(np.int32),
        },
    )
    write(visits, root / "Visit", parts=1)
    write(sources, root / "Source")
    return visits, sources


def upload(directory: Path, prefix: str) -> str:
    """Copy a local catalog directory to the test bucket; its ``s3://`` location."""
    import boto3

    from conftest import TEST_BUCKET

    client = boto3.client("s3", endpoint_url=os.environ["PORTER_S3_ENDPOINT_URL"])
    for f in sorted(directory.rglob("*.parquet")):
        client.upload_file(str(f), TEST_BUCKET, f"{prefix}/{f.relative_to(directory)}")
    return f"s3://{TEST_BUCKET}/{prefix}"


def with_units(table: pa.Table, schema: str, name: str, units: dict[str, str] | None = None) -> pa.Table:
    """``table`` with each column's unit in its Parquet field metadata (``b"unit"``, as Rubin's butler writes
    it): the Felis table's ``ivoa:unit``, or the one given in ``units``; columns without either get none."""
    felis = {c.name: c.ivoa_unit for c in table_of(load_schema(schema), name).columns}
    fields = []
    for f in table.schema:
        unit = (units or {}).get(f.name, felis.get(f.name))
        fields.append(f.with_metadata({b"unit": unit.encode()}) if unit else f)
    return table.cast(pa.schema(fields))


# --- PostgreSQL --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def pg_schema(pg_server: str) -> Iterator[tuple[sqlalchemy.Engine, str]]:
    """An engine on the test database and a fresh schema of its own there, dropped afterwards: where a test
    loads catalogs as live tables (``{pg_server}#{schema}.{table}``) without meeting another test's."""
    from conftest import drop_schema

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(pg_server.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield engine, schema
    finally:
        engine.dispose()
        drop_schema(pg_server, schema)


def to_postgresql(directory: Path, table: str, engine: sqlalchemy.Engine, schema: str) -> None:
    """Load a local catalog directory into ``schema.table``: the same rows served as a live table."""
    pq.read_table(directory).to_pandas().to_sql(table, engine, schema=schema, index=False)


# --- the DP2 release plan that ships these catalogs ---------------------------------------------------------

LEAD = Person(name="lead", can_waive=True, release_manager=True)
"""The plan's release manager, who may also waive."""


def dp2_catalogs(releases: Path, n_sources: int = 3000) -> Path:
    """DP2's Visit (one file) and Source (two files) catalogs in ``releases/DP2/catalogs``, where
    `dp1_item` locates them; the same rows every time (seed 5)."""
    catalogs = releases / "DP2" / "catalogs"
    visit_and_source(catalogs, np.random.default_rng(5), n_visits=20, n_sources=n_sources)
    return catalogs


def dp1_item(
    name: str, table: str, location: str | None = None, rules: list[dict[str, Any]] | None = None
) -> Item:
    """A catalog item checked against the ``dp1`` Felis table ``table``, at ``DP2/catalogs/{table}`` (where
    `dp2_catalogs` writes it) unless ``location`` says otherwise."""
    return Item(
        name=name,
        kind="catalog",
        location=location or f"DP2/catalogs/{table}",
        schema_file="dp1",
        table=table,
        rules=rules or [],
    )


def visit_and_source_items() -> list[Item]:
    """The ``visit`` and ``source`` items of the catalogs `dp2_catalogs` writes; Source with a footprint and a
    row count rule, so that content rules run too."""
    return [
        dp1_item("visit", "Visit"),
        dp1_item(
            "source", "Source", rules=[{"rule": "footprint", **FOOTPRINT}, {"rule": "row_count", "min": 1000}]
        ),
    ]


def catalogs_checkpoint(items: list[Item]) -> Checkpoint:
    """The ``catalogs`` hand-over (Pipelines to Catalogs, due 2027-02-01) that `checked` runs."""
    return Checkpoint(
        name="catalogs",
        from_team="Pipelines",
        to_team="Catalogs",
        deadline=datetime.date(2027, 2, 1),
        items=items,
    )


def write_plan(
    releases: Path,
    repository: str,
    checkpoints: list[Checkpoint],
    people: list[Person] | None = None,
    collections: list[str] | None = None,
) -> None:
    """Write ``releases/DP2.yaml``: release DP2 on ``repository`` with these checkpoints; ``people``: only
    `LEAD` unless given."""
    plan = ReleasePlan(
        release="DP2",
        repository=repository,
        collections=collections or [],
        people=[LEAD] if people is None else people,
        checkpoints=checkpoints,
    )
    dump_plan(plan, releases / "DP2.yaml")


@contextlib.contextmanager
def opened(releases: Path, name: str = "DP2") -> Iterator[Release]:
    """The release ``name`` of the plans in ``releases``, closed (its repository too) however the test ends."""
    rel = Release.open(name, releases)
    try:
        yield rel
    finally:
        rel.close()


def checked(releases: Path, checkpoint: str = "catalogs") -> dict[tuple[str, str], CheckResult]:
    """Run DP2's ``checkpoint`` once; its results by (item, check), for tests that look up a few of them."""
    with opened(releases) as rel:
        return {(r.item, r.check): r for r in rel.check(checkpoint)}
