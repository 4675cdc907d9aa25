"""A PostgreSQL table as a catalog to check: a streamed Parquet snapshot that DuckDB reads.

A catalog item may be a live table (``postgresql://user@host:5432/db#schema.Table``).
The checks are DuckDB SQL, and DuckDB's postgres extension, like httpfs, is
downloaded at run time; so the table is copied once through a server-side
cursor, in batches, into Parquet in a temporary directory.  Memory stays
bounded, every check of the run sees the same state of the table, and the
column types reported are PostgreSQL's own (what the Felis types are
compared with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PorterError

__all__ = ["is_postgres_location", "snapshot_table", "table_fingerprint"]

BATCH = 100_000
_ARROW = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "bytea": pa.binary(),
}


def is_postgres_location(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def parse_location(location: str) -> tuple[str, str | None, str]:
    """(database URL, schema or None, table) of ``postgresql://…/db#schema.Table``."""
    url, _, fragment = location.partition("#")
    if not fragment:
        raise PorterError(
            f"The PostgreSQL catalog location {location!r} names no table; add it after '#': "
            f"{url}#schema.Table (or {url}#Table for the search path)."
        )
    namespace, _, table = fragment.rpartition(".")
    return url, namespace or None, table


def snapshot_table(location: str, directory: Path) -> dict[str, str]:
    """Copy the table at ``location`` into Parquet files in ``directory``; its columns' PostgreSQL types."""
    import psycopg2
    from psycopg2 import sql

    from ._conformance import postgres_columns

    url, namespace, table = parse_location(location)
    types = postgres_columns(url, table, namespace)
    names = list(types)
    schema = pa.schema([(n, _ARROW.get(types[n], pa.string())) for n in names])
    convert = [_converter(types[n]) for n in names]
    target = sql.Identifier(namespace, table) if namespace else sql.Identifier(table)
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, names)), target)
    directory.mkdir(parents=True, exist_ok=True)
    conn = psycopg2.connect(url)
    try:
        with conn.cursor(name="porter_snapshot") as cursor:  # server-side: rows arrive in batches
            cursor.itersize = BATCH
            cursor.execute(query)
            with pq.ParquetWriter(directory / "part-0.parquet", schema) as writer:
                while rows := cursor.fetchmany(BATCH):
                    columns = [
                        pa.array(
                            [f(r[i]) for r in rows] if f else [r[i] for r in rows], type=schema.field(i).type
                        )
                        for i, f in enumerate(convert)
                    ]
                    writer.write_batch(pa.record_batch(columns, schema=schema))
    finally:
        conn.close()
    return types


def _converter(pg_type: str) -> Any:
    """Python values the driver returns that Arrow cannot take as they are (numeric, arrays …) become text."""
    return None if pg_type in _ARROW else (lambda v: None if v is None else str(v))


def table_fingerprint(location: str) -> tuple[int, str]:
    """(rows, content fingerprint) of the table at ``location``, computed by PostgreSQL in one scan.

    The fingerprint sums the first 64 bits of each row's MD5 (as numeric, so it cannot overflow): it
    does not depend on row order, and any changed, added or removed row changes it.  What a shipment
    records for a live table, in place of files' sizes and checksums.
    """
    import psycopg2
    from psycopg2 import sql

    url, namespace, table = parse_location(location)
    target = sql.Identifier(namespace, table) if namespace else sql.Identifier(table)
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0) "
        "FROM {} AS t"
    ).format(target)
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(query)
            rows, total = cursor.fetchone()
    except psycopg2.errors.UndefinedTable:
        raise PorterError(f"No table {table!r} at {location}; check the item's location.") from None
    finally:
        conn.close()
    return int(rows), f"pg-rows-md5:{total}"
