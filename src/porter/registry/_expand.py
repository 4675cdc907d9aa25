"""Dimension records for many data IDs at once: ``with_dimension_records=True`` and ``expand_data_id``.

A query that returns 10⁵ data IDs must not look up their records one data
ID at a time: the records of each element are fetched with one query per
element (per block of key values), restricted to the keys the data IDs
use, and attached from in-memory lookups.  Sky-pixel records (htm7 …) are
not stored; they are computed from the pixelization.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..dimensions import DataCoordinate, DimensionElement, DimensionRecord
from .expr import ExpressionFactory

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["attach_records", "has_all_records"]

_VALUES_PER_QUERY = 10_000
"""Key values bound in one ``IN (…)`` list (SQLite allows 32,766 parameters per statement)."""


def attach_records(registry: Registry, data_ids: Sequence[DataCoordinate]) -> list[DataCoordinate]:
    """The same data IDs, each carrying the record of every element of its dimensions.

    The data IDs must be full (implied values present), as query results
    are.  An element whose record does not exist maps to None.
    """
    by_group: dict[Any, list[int]] = defaultdict(list)
    for i, d in enumerate(data_ids):
        by_group[d.dimensions].append(i)
    out = list(data_ids)
    for group, positions in by_group.items():
        mappings = [data_ids[i].mapping for i in positions]
        lookups: list[tuple[str, list[str], dict[tuple, DimensionRecord]]] = []
        for name in group.elements:
            element = registry.universe[name]
            key_names = [d.name for d in element.required]
            keys = {tuple(m[k] for k in key_names) for m in mappings}
            lookups.append((name, key_names, _fetch(registry, element, keys)))
        for i, m in zip(positions, mappings):
            records = {name: recs.get(tuple(m[k] for k in keys)) for name, keys, recs in lookups}
            out[i] = data_ids[i].with_records(records)
    return out


def has_all_records(data_id: DataCoordinate) -> bool:
    """True when every element of the data ID has a record.

    A query with records keeps only such data IDs, as daf_butler's does (it
    joins each element's table): visit x detector pairs without a
    visit_detector_region record are not returned then.
    """
    return all(r is not None for r in data_id.records.values())


def _fetch(registry: Registry, element: DimensionElement, keys: set[tuple]) -> dict[tuple, DimensionRecord]:
    """The records of ``element`` with these key tuples (in ``element.required`` order)."""
    if not keys:
        return {}
    if not element.has_own_table:  # a sky pixelization: computed, never stored
        pixelization = element.pixelization  # type: ignore[attr-defined]
        return {
            (pix,): DimensionRecord.from_mapping(element, {"id": pix, "region": pixelization.pixel(pix)})
            for (pix,) in keys
        }
    names = [d.name for d in element.required]
    values = [sorted({k[j] for k in keys}) for j in range(len(names))]
    # The dimension with the most distinct values is bound in blocks.
    widest = max(range(len(names)), key=lambda j: len(values[j]))
    # Another dimension with that many values is left unconstrained (the
    # query returns a superset; the keys filter it).
    constrained = [j for j in range(len(names)) if j == widest or len(values[j]) <= _VALUES_PER_QUERY]
    x = ExpressionFactory()
    found: dict[tuple, DimensionRecord] = {}
    for start in range(0, len(values[widest]), _VALUES_PER_QUERY):
        block = {j: values[j] for j in constrained}
        block[widest] = values[widest][start : start + _VALUES_PER_QUERY]
        where = ExpressionFactory.all(*(x[names[j]].in_iterable(v) for j, v in sorted(block.items())))
        for record in registry.query_dimension_records(element, where=where.node, bind=where.bind):
            if record.key_values in keys:
                found[record.key_values] = record
    return found
