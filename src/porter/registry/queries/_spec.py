"""What a query asks for: the result kind, dimensions, dataset searches and constraints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...dimensions import DimensionElement, DimensionGroup
from .._collections import CollectionInfo
from .._dataset_types import DatasetTypeRecord
from ..expr import Node

__all__ = ["DatasetSearch", "QuerySpec"]


@dataclass
class DatasetSearch:
    """A dataset type searched for in an ordered list of (non-chained) collections."""

    record: DatasetTypeRecord
    collections: list[CollectionInfo]
    find_first: bool = False


@dataclass
class QuerySpec:
    """Everything a query asks for."""

    kind: Literal["data_ids", "datasets", "records"]
    dimensions: DimensionGroup
    """Dimensions of the results (for records, the element's own)."""
    element: DimensionElement | None = None
    searches: list[DatasetSearch] = field(default_factory=list)
    """For ``datasets`` the first search is the result; others only constrain."""
    where: str | Node | None = ""
    """A ``where`` expression, or its syntax tree (typed constraints build one directly)."""
    bind: Mapping[str, Any] = field(default_factory=dict)
    data_id: Mapping[str, Any] = field(default_factory=dict)
    default_data_id: Mapping[str, Any] = field(default_factory=dict)
    order_by: Sequence[str] = ()
    limit: int | None = None
    after: tuple[tuple[str, ...], tuple[Any, ...]] | None = None
    """A keyset page boundary: only rows whose values of these keys (dimension names, ``dataset_id``) come after
    these values, compared as one row value — which an index on those columns serves as a range."""
    with_implied: bool = True
    """False: results carry only the required dimensions' values, and the tables that would give the implied
    ones (a visit's band, day_obs …) are joined only where a constraint needs them — a narrower, faster
    statement for the database to compose further (`Coverage`)."""
