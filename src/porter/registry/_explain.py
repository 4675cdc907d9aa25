"""Why a query found nothing: daf_butler's ``explain_no_results`` and ``EmptyQueryResultError`` reasons.

An empty answer is the most common surprise of a new user (a typo in a
collection name, a visit of another instrument, a dataset type that run
never made).  These reasons are worked out only once a query came back
empty, with a few cheap queries, each testing one constraint on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PorterError
from ._defaults import GovernorDefaults, merge_data_id

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["explain_no_results", "explainer"]


def explain_no_results(
    registry: Registry,
    *,
    dataset_types: Sequence[str] = (),
    collections: Sequence[str] = (),
    data_id: Mapping[str, Any] | None = None,
    where: str = "",
) -> list[str]:
    """Possible reasons a query with these constraints has no results; never empty.

    Each constraint is tested alone: the datasets of each type in the
    collections, then each data ID value against its dimension's records.
    When every one of them matches something, the combination (with the
    ``where`` expression) is what excludes everything, and that is said.
    """
    reasons: list[str] = []
    names = list(collections)
    for name in dataset_types:
        try:
            found = registry.query_datasets(name, names, find_first=False, limit=1) if names else []
        except PorterError as exc:
            reasons.append(str(exc))
            continue
        if not found:
            reasons.append(
                f"No {name!r} datasets exist in collections {names}"
                + (" (they hold datasets of other types only)." if names else ".")
            )
    values = dict(data_id or {})
    governors = {k: v for k, v in values.items() if k in registry.universe.governors}
    for key, value in values.items():
        if key not in registry.universe.dimensions:
            continue
        dimension = registry.universe.dimensions[key]
        if not dimension.has_own_table:
            continue
        constraint = {k: v for k, v in governors.items() if k in {d.name for d in dimension.required}}
        constraint[key] = value
        try:
            present = registry.query_data_ids([key], data_id=constraint, limit=1)
        except PorterError as exc:
            reasons.append(str(exc))
            continue
        if not present:
            reasons.append(f"No {key} {value!r} exists" + (f" for {governors}" if governors else "") + ".")
    if not reasons:
        constraints = [f"data ID {values}"] if values else []
        if where:
            constraints.append(f"where {where!r}")
        reasons.append(
            "Each constraint matches something on its own, but together "
            + (" and ".join(constraints) if constraints else "the query's joins")
            + " match nothing"
            + (f" in collections {names}" if names else "")
            + "."
        )
    return reasons


def explainer(
    registry: Registry,
    *,
    dataset_types: Sequence[str] = (),
    collections: Sequence[str] = (),
    data_id: Mapping[str, Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    defaults: GovernorDefaults | None = None,
    where: Any = "",
) -> Callable[[], list[str]]:
    """`explain_no_results` for a query's constraints as query methods take them, worked out only if called.

    The data ID, keyword constraints and governor defaults are merged as the
    query merged them; ``where`` may be text or a typed constraint's tree.
    """

    def explain() -> list[str]:
        given = merge_data_id(registry.universe, defaults or GovernorDefaults(), data_id, kwargs or {})
        return explain_no_results(
            registry,
            dataset_types=dataset_types,
            collections=collections,
            data_id=given,
            where=where if isinstance(where, str) else str(where),
        )

    return explain
