"""Required-dimension values of many data IDs, validated in bulk."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import Any

from ..dimensions import DataCoordinate, DimensionGroup
from ..errors import DataIdError

__all__ = ["required_tuples"]


def required_tuples(
    group: DimensionGroup, data_ids: Iterable[Mapping[str, Any] | DataCoordinate]
) -> list[tuple]:
    """Required-dimension values of many data IDs, validated, as tuples.

    The bulk case (plain dicts, or data IDs that already have these
    dimensions) is handled column-wise at C speed: one ``itemgetter`` pass
    and one type check per column.  Anything else (numeric strings, numpy
    integers, missing keys) goes through `DataCoordinate.standardize` row by
    row, which coerces or explains.
    """
    universe = group.universe
    names = group.required
    kinds = [{"int": int, "string": str}.get(universe.dimensions[n].primary_key.type) for n in names]
    items = list(data_ids)
    if not items:
        return []
    if not names:  # a dimensionless dataset type: every data ID is the empty one
        return [() for _ in items]
    getter = operator.itemgetter(*names)
    if all(type(d) is dict for d in items):
        try:
            out = list(map(getter, items)) if len(names) > 1 else [(v,) for v in map(getter, items)]
        except KeyError:
            out = None
        if out is not None and all(
            kind is None or all(type(v) is kind for v in map(operator.itemgetter(i), out))
            for i, kind in enumerate(kinds)
        ):
            return out
    result: list[tuple] = []
    for d in items:
        if isinstance(d, DataCoordinate):
            if d.dimensions == group:
                result.append(d.required_values)
                continue
            d = d.mapping
        missing = [n for n in names if n not in d]
        if missing:
            raise DataIdError(f"Data ID {dict(d)} is missing {missing} (dataset dimensions {group}).")
        result.append(
            DataCoordinate.standardize(
                {n: d[n] for n in names}, dimensions=group.universe.conform(names)
            ).required_values
        )
    return result
