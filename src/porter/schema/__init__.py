"""Felis schemas: conformance of real catalogs (Parquet through DuckDB, or PostgreSQL), content rules, diffs."""

from ._conformance import (
    RULES,
    CatalogFileError,
    CatalogSource,
    ExpectedRows,
    RuleError,
    check_rules,
    conformance,
    directory_loops,
    postgres_columns,
    same_unit,
    schema_diff,
    validate_rule,
)
from ._felis import FelisError, compatibility, load_schema, primary_key, table_of
from ._result import ERROR, FAIL, PASS, PENDING, WARN, CheckResult

__all__ = [
    "ERROR",
    "FAIL",
    "PASS",
    "PENDING",
    "RULES",
    "WARN",
    "CatalogFileError",
    "CatalogSource",
    "CheckResult",
    "ExpectedRows",
    "FelisError",
    "RuleError",
    "check_rules",
    "compatibility",
    "conformance",
    "directory_loops",
    "load_schema",
    "postgres_columns",
    "primary_key",
    "same_unit",
    "schema_diff",
    "table_of",
    "validate_rule",
]
