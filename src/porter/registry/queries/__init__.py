"""The query system: ``where`` resolution, planning and SQL generation."""

from ._engine import DatasetSearch, QueryEngine, QuerySpec

__all__ = ["DatasetSearch", "QueryEngine", "QuerySpec"]
