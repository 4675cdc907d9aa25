"""The table ``porter ingest-files`` reads: one file per row, then its data ID values (CSV or Parquet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import DataIdError

__all__ = ["read_ingest_table"]


def read_ingest_table(
    table_file: Path, prefix: str | None = None, *, keep_relative: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """``(file, data ID values)`` per row.

    The first column names the file (a path or an ``s3://`` URI); the other
    columns are dimensions.  Relative paths are taken relative to ``prefix``,
    or to the table file's own directory, so a table can travel with its files
    — or, with ``keep_relative`` and no ``prefix``, left as they are (paths in
    a server's datastore area, which only the server can resolve).
    """
    table = _read(table_file)
    if table.num_columns < 1 or table.num_rows == 0:
        raise DataIdError(f"{table_file} has no rows; it must list one file per row, then data ID columns.")
    base = prefix if prefix is not None else str(table_file.parent.absolute())
    names = table.column_names[1:]
    files = table.column(0).to_pylist()
    columns = [table.column(n).to_pylist() for n in names]
    rows: list[tuple[str, dict[str, Any]]] = []
    for i, f in enumerate(files):
        if f is None or str(f).strip() == "":
            raise DataIdError(f"{table_file}, row {i + 1}: the file column is empty.")
        f = str(f).strip()
        if "://" not in f and not f.startswith("/") and not (keep_relative and prefix is None):
            f = f"{base.rstrip('/')}/{f}"
        rows.append((f, {n: c[i] for n, c in zip(names, columns) if c[i] is not None}))
    return rows


def _read(table_file: Path) -> pa.Table:
    if not table_file.exists():
        raise FileNotFoundError(f"No such table file: {table_file}")
    if table_file.suffix.lower() in (".parquet", ".parq", ".pq"):
        import pyarrow.parquet as pq

        return pq.read_table(table_file)
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(table_file)
    except pa.ArrowInvalid as exc:
        raise DataIdError(
            f"{table_file} is not a readable CSV table ({exc}); the first line must name the columns."
        ) from None
