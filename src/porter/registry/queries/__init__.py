"""The query system: ``where`` resolution, planning and SQL generation."""

from ._engine import QueryEngine
from ._spec import DatasetSearch, QuerySpec

__all__ = ["DatasetSearch", "QueryEngine", "QuerySpec"]
