"""Parquet catalogs that conform to real Felis tables (from lsst-sdm-schemas), and copies with one defect each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from porter.schema import load_schema, table_of

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
