"""Felis schemas (through the lsst-felis library) and how their types meet Parquet/DuckDB and PostgreSQL types.

A schema is named by a file path or, for Rubin's published schemas, by the
name of a file in the ``lsst-sdm-schemas`` package (``dp1``, ``dp02_dc2``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PorterError, did_you_mean

__all__ = ["FelisError", "compatibility", "load_schema", "table_of"]


class FelisError(PorterError, ValueError):
    """A Felis schema or table that cannot be found or read."""


# Felis datatype → (family, width); DuckDB/PostgreSQL type names → the same.
_FELIS = {
    "boolean": ("bool", 1),
    "byte": ("int", 8),
    "short": ("int", 16),
    "int": ("int", 32),
    "long": ("int", 64),
    "float": ("float", 32),
    "double": ("float", 64),
    "char": ("text", 0),
    "string": ("text", 0),
    "unicode": ("text", 0),
    "text": ("text", 0),
    "binary": ("binary", 0),
    "timestamp": ("time", 0),
}
_SQL = {
    "BOOLEAN": ("bool", 1),
    "TINYINT": ("int", 8),
    "SMALLINT": ("int", 16),
    "INTEGER": ("int", 32),
    "BIGINT": ("int", 64),
    "UTINYINT": ("int", 16),
    "USMALLINT": ("int", 32),
    "UINTEGER": ("int", 64),
    "UBIGINT": ("int", 128),
    "HUGEINT": ("int", 128),
    "FLOAT": ("float", 32),
    "REAL": ("float", 32),
    "DOUBLE": ("float", 64),
    "DOUBLE PRECISION": ("float", 64),
    "VARCHAR": ("text", 0),
    "TEXT": ("text", 0),
    "CHARACTER VARYING": ("text", 0),
    "CHARACTER": ("text", 0),
    "BLOB": ("binary", 0),
    "BYTEA": ("binary", 0),
    "TIMESTAMP": ("time", 0),
    "TIMESTAMP_NS": ("time", 0),
    "TIMESTAMP_MS": ("time", 0),
    "TIMESTAMP_S": ("time", 0),
    "TIMESTAMP WITH TIME ZONE": ("time", 0),
    "TIMESTAMP WITHOUT TIME ZONE": ("time", 0),
    "DATE": ("time", 0),
}


def _sql_kind(sql_type: str) -> tuple[str, int] | None:
    return _SQL.get(sql_type.upper().split("(")[0].strip())


def sql_family(sql_type: str) -> str | None:
    """The family ("int", "float", "text" …) of a DuckDB or PostgreSQL type name; None if unknown."""
    kind = _sql_kind(sql_type)
    return kind[0] if kind else None


def compatibility(felis_type: str, sql_type: str) -> tuple[str, str]:
    """("pass" | "warn" | "fail", why) for a column of ``sql_type`` where the schema says ``felis_type``."""
    want = _FELIS.get(felis_type)
    have = _sql_kind(sql_type)
    if want is None or have is None:
        return ("warn", f"cannot compare {sql_type} with {felis_type}")
    if want[0] != have[0]:
        return ("fail", f"{sql_type} is not a {felis_type}")
    if want[0] == "int" and have[1] > want[1]:
        return ("fail", f"{sql_type} is wider than {felis_type}: values may not fit")
    if want[0] == "float" and have[1] > want[1]:
        return ("warn", f"{sql_type} loses precision as {felis_type}")
    return ("pass", "")


@lru_cache(maxsize=16)
def load_schema(name: str) -> Any:
    """A felis `Schema` from a file, or from lsst-sdm-schemas by name (``dp1``)."""
    from felis.datamodel import Schema

    path = Path(name)
    if not path.exists():
        try:
            from importlib.resources import files

            package = files("lsst.sdm.schemas")
        except ModuleNotFoundError:
            raise FelisError(
                f"Felis schema {name} not found (and lsst-sdm-schemas is not installed)."
            ) from None
        candidate = package / (name if name.endswith(".yaml") else f"{name}.yaml")
        if not candidate.is_file():
            known = sorted(
                p.name.removesuffix(".yaml") for p in package.iterdir() if p.name.endswith(".yaml")
            )
            raise FelisError(
                f"Felis schema {name!r} is neither a file nor in lsst-sdm-schemas."
                + did_you_mean(name, known, "schemas")
            )
        path = Path(str(candidate))
    try:
        return Schema.from_uri(str(path), context={"id_generation": True})
    except Exception as exc:
        raise FelisError(f"{path} is not a valid Felis schema: {exc}") from None


def table_of(schema: Any, name: str) -> Any:
    for t in schema.tables:
        if t.name == name:
            return t
    raise FelisError(
        f"Schema {schema.name!r} has no table {name!r}."
        + did_you_mean(name, [t.name for t in schema.tables], "tables")
    )


def column_name(ref: str) -> str:
    """``#Source.visit`` → ``visit``."""
    return ref.rsplit(".", 1)[-1]


def primary_key(table: Any) -> list[str]:
    pk = table.primary_key
    if not pk:
        return []
    return [column_name(c) for c in ([pk] if isinstance(pk, str) else pk)]
