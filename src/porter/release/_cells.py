"""The cells a completeness check counts its expected data IDs in: those of the dashboard's completeness map.

A ``datasets`` item's check has every expected data ID in hand (DuckDB, or the
registry's database); counting them per cell there costs a fraction of a
second, where the map would otherwise group millions of rows again in the
registry.  The counts are stored as a small Parquet file beside the missing
data IDs (``CheckResult.cells``), with the cells' definition (each axis's key
and, for integer keys with many values, the equal ranges they are grouped
into) in its metadata.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["MAX_COLUMNS", "MAX_ROWS", "cell_keys", "read_cells", "write_cells"]

MAX_ROWS = 80
"""Rows of a map grid drawn one value each; beyond, values are grouped into this many ranges."""
MAX_COLUMNS = 200
"""Columns of a map grid drawn one value each; beyond, grouped into ranges."""
GOVERNORS = ("instrument", "skymap")
SKY = ("skymap", "tract", "patch", "band")
METADATA = b"porter.cells"


def cell_keys(keys: Sequence[str]) -> list[tuple[str, int | None]]:
    """The keys a map's cells are made of, each with the number of values beyond which it is grouped into ranges.

    ``keys`` are the dataset type's required dimensions.  On the sky (a ``patch`` among them): skymap,
    tract, patch and band, never grouped.  Otherwise rows (``visit``, or the first other key) by columns
    (``detector``, or the next key).
    """
    if "patch" in keys:
        return [(k, None) for k in SKY if k in keys]
    rest = [k for k in keys if k not in GOVERNORS]
    row = "visit" if "visit" in rest else (rest[0] if rest else None)
    col = (
        "detector" if "detector" in rest and row != "detector" else next((k for k in rest if k != row), None)
    )
    return [(k, limit) for k, limit in ((row, MAX_ROWS), (col, MAX_COLUMNS)) if k is not None]


def write_cells(directory: Path, name: str, axes: Sequence[Any], table: pa.Table) -> None:
    """Store per-cell counts (``table``: the axes' columns, then ``expected``) as ``directory/name``, atomically.

    ``axes`` are `CellAxis`-like (key, low, span, bins); their definition goes in the file's metadata.
    """
    definition = [{"key": a.key, "low": a.low, "span": a.span, "bins": a.bins} for a in axes]
    table = table.replace_schema_metadata({METADATA: json.dumps({"axes": definition}).encode()})
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
    try:
        pq.write_table(table, tmp)
        tmp.replace(directory / name)
    finally:
        tmp.unlink(missing_ok=True)


def read_cells(path: Path) -> tuple[list[dict[str, Any]], pa.Table]:
    """The axes (key, low, span, bins) and the per-cell counts stored by `write_cells`."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(METADATA, b"{}"))
    if "axes" not in meta:
        raise ValueError(f"{path} holds no per-cell counts (no {METADATA.decode()} metadata)")
    return list(meta["axes"]), table
