"""Felis schemas: conformance of real catalogs (Parquet through DuckDB, or PostgreSQL), content rules, diffs."""

from ._conformance import CatalogSource, RuleError, check_rules, conformance, postgres_columns, schema_diff
from ._felis import FelisError, compatibility, load_schema, primary_key, table_of
from ._result import ERROR, FAIL, PASS, WARN, CheckResult

__all__ = [
    "ERROR",
    "FAIL",
    "PASS",
    "WARN",
    "CatalogSource",
    "CheckResult",
    "FelisError",
    "RuleError",
    "check_rules",
    "compatibility",
    "conformance",
    "load_schema",
    "postgres_columns",
    "primary_key",
    "schema_diff",
    "table_of",
]
