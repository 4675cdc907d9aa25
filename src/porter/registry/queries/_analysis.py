"""Query analysis: governor rules and spatial conditions, before any SQL is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lsst.sphgeom

from ...dimensions import Dimension, DimensionGroup, DimensionUniverse, coerce_dimension_value
from ...errors import InvalidQueryError
from ._ir import (
    And,
    Arith,
    Bound,
    Compare,
    Const,
    DimField,
    DimKey,
    InValues,
    Lit,
    Neg,
    Not,
    Or,
    Overlaps,
    Predicate,
    conjoin,
    iter_columns,
    top_level_terms,
)
from ._resolve import check_value

__all__ = ["SpatialPlan", "apply_governors", "check_literals", "constraint_data_id", "extract_spatial"]


def apply_governors(
    universe: DimensionUniverse, pred: Predicate, full: DimensionGroup, default_data_id: Mapping[str, Any]
) -> tuple[Predicate, DimensionGroup]:
    """Enforce daf_butler's governor rule and apply the default data ID.

    A dimension that depends on a governor (detector on instrument) may only
    be constrained when the governor is constrained too; a default data ID
    fills in governors the query leaves open.  Returns the predicate with
    any default constraints added and the (possibly grown) dimensions.

    This is the first step that sees every constraint together, the keyword
    (data ID) ones included, which the ``where`` resolver never sees; so it
    also refuses values the database cannot hold (`check_literals`).
    """
    check_literals(pred)
    needed: set[str] = set()
    referenced: set[str] = set()
    for ref in iter_columns(pred):
        if isinstance(ref, DimKey):
            dim = universe.dimensions[ref.dimension]
            if dim.is_governor:
                referenced.add(dim.name)
            elif dim.governor is not None:
                needed.add(dim.governor.name)
        elif isinstance(ref, DimField):
            element = universe[ref.element]
            if isinstance(element, Dimension) and ref.field in {k.name for k in element.alternate_keys}:
                if element.is_governor:
                    referenced.add(element.name)
                elif element.governor is not None:
                    needed.add(element.governor.name)
    constrained = set(constraint_data_id(pred))
    additions: list[Predicate] = []
    for gov in sorted(needed | set(full.governors)):
        if gov in constrained or gov in referenced:
            continue
        if gov in default_data_id:
            value = coerce_dimension_value(universe, gov, default_data_id[gov])
            pk_type = universe.dimensions[gov].primary_key.type
            problem = check_value(value, pk_type, f"The default {gov} {value!r}")
            if problem:
                raise InvalidQueryError(problem)
            additions.append(Compare("==", DimKey(gov, pk_type), Lit(value, pk_type)))
            full = full.union([gov])
        elif gov in needed:
            # Defaults that know why they have no value (several instruments in the default
            # collections) say so; see porter.registry.GovernorDefaults.
            explain = getattr(default_data_id, "missing_message", None)
            why = explain(gov) if explain is not None else ""
            raise InvalidQueryError(
                f"The query constrains a dimension that depends on {gov!r} without constraining {gov!r} "
                f"itself; add {gov} = '…' to the where expression or pass {gov}='…' (as daf_butler requires)."
                + (f" Here {why}." if why else "")
            )
    return conjoin(pred, *additions), full


@dataclass
class SpatialPlan:
    """The spatial conditions pulled out of a query's top-level AND."""

    joins: list[tuple[str, str]] = field(default_factory=list)
    """Pairs of elements whose regions must overlap (explicit and automatic)."""
    constraints: list[tuple[str, lsst.sphgeom.Region]] = field(default_factory=list)
    """Elements whose regions must overlap a literal region."""


def extract_spatial(
    universe: DimensionUniverse, pred: Predicate, full: DimensionGroup
) -> tuple[Predicate, SpatialPlan]:
    """Split region OVERLAPS terms out of the predicate and add automatic spatial joins.

    Families of spatial dimensions the query mixes without joining them
    explicitly (visit/detector with tract/patch) are joined through their
    finest members, as daf_butler does; spatial conditions under OR or NOT
    are refused, as there.
    """
    terms = top_level_terms(pred)
    kept: list[Predicate] = []
    connections: dict[str, set[str]] = {f: {f} for f in full.spatial}
    explicit_joins: list[tuple[str, str]] = []
    constraints: list[tuple[str, lsst.sphgeom.Region]] = []
    for term in terms:
        if isinstance(term, Overlaps) and "region" in (term.a.type, term.b.type):
            a, b = term.a, term.b
            if isinstance(a, DimField) and isinstance(b, DimField):
                ea, eb = universe[a.element], universe[b.element]
                if ea.spatial == eb.spatial:
                    raise InvalidQueryError(
                        f"Spatial join between {ea.name} and {eb.name} is not necessary (same family)."
                    )
                explicit_joins.append((ea.name, eb.name))
                merged = connections[ea.spatial] | connections[eb.spatial]  # type: ignore[index]
                for f in merged:
                    connections[f] = merged
            elif isinstance(a, DimField) and isinstance(b, Lit):
                constraints.append((a.element, b.value))
            elif isinstance(b, DimField) and isinstance(a, Lit):
                constraints.append((b.element, a.value))
            else:
                raise InvalidQueryError(
                    "Spatial OVERLAPS needs a dimension region (e.g. visit.region) and a region literal "
                    "(POINT, CIRCLE, BOX, POLYGON, REGION or a bound sphgeom region)."
                )
            continue
        if contains_region_overlap(term):
            raise InvalidQueryError("Spatial overlap constraints nested inside OR or NOT are not supported.")
        kept.append(term)
    subsets: list[set[str]] = []
    for s in connections.values():
        if s not in subsets:
            subsets.append(s)
    joins = list(explicit_joins)
    if len(subsets) > 2:
        raise InvalidQueryError(
            f"Too many unconnected spatial families for an automatic join: {[sorted(s) for s in subsets]}; "
            "add explicit joins such as visit.region OVERLAPS patch.region."
        )
    if len(subsets) == 2:
        a_set, b_set = subsets
        if len(a_set) > 1 or len(b_set) > 1:
            raise InvalidQueryError(
                f"A spatial join between {sorted(a_set)} and {sorted(b_set)} is needed, but which one is "
                "ambiguous; add an explicit one."
            )
        (fa,) = a_set
        (fb,) = b_set
        joins.append((full.choose_family_member(fa).name, full.choose_family_member(fb).name))
    return (conjoin(*kept) if kept else Const(True)), SpatialPlan(joins, constraints)


def check_literals(pred: Predicate) -> None:
    """Raise `InvalidQueryError` for a literal no database column can hold.

    Literals written in ``where`` or bound with ``bind=`` were checked by the
    resolver (with a caret under them); this catches the ones from keyword
    data-ID constraints (``visit=2**70``, ``instrument="HSC\\x00"``), which
    `coerce_dimension_value` accepts as the right Python type, and which the
    SQLite driver would answer with ``OverflowError`` and PostgreSQL's with
    ``ValueError``.  Iterative, so it costs no stack however the predicate
    nests.
    """
    stack: list[Any] = [pred]
    while stack:
        x = stack.pop()
        if isinstance(x, Lit):
            problem = check_value(x.value, x.type, f"The value {x.value!r:.80}")
            if problem:
                raise InvalidQueryError(problem)
        elif isinstance(x, And | Or):
            stack.extend(x.items)
        elif isinstance(x, Not):
            stack.append(x.item)
        elif isinstance(x, Neg):
            stack.append(x.a)
        elif isinstance(x, Bound):
            stack.append(x.operand)
        elif isinstance(x, Compare | Overlaps | Arith):
            if isinstance(x, Compare) and isinstance(x.a, DimKey) and isinstance(x.b, Lit):
                _check_constraint(x.a, x.b)
            stack.extend((x.a, x.b))
        elif isinstance(x, InValues):
            stack.append(x.a)
            stack.extend(x.values)
        elif hasattr(x, "a"):
            stack.append(x.a)


def _check_constraint(key: DimKey, lit: Lit) -> None:
    """A data-ID constraint's value, named by its dimension so the message points at the keyword."""
    problem = check_value(lit.value, lit.type, f"The value {lit.value!r:.80} for {key.dimension}")
    if problem:
        raise InvalidQueryError(problem)


def constraint_data_id(pred: Predicate) -> dict[str, Any]:
    """Dimension values fixed by equality terms of the top-level AND."""
    out: dict[str, Any] = {}
    for term in top_level_terms(pred):
        if isinstance(term, Compare) and term.op == "==":
            a, b = term.a, term.b
            if isinstance(a, DimKey) and isinstance(b, Lit):
                out.setdefault(a.dimension, b.value)
            elif isinstance(b, DimKey) and isinstance(a, Lit):
                out.setdefault(b.dimension, a.value)
        elif isinstance(term, InValues) and isinstance(term.a, DimKey) and len(term.values) == 1:
            out.setdefault(term.a.dimension, term.values[0].value)
    return out


def contains_region_overlap(p: Any) -> bool:
    if isinstance(p, Overlaps):
        return "region" in (p.a.type, p.b.type)
    for attr in ("items",):
        if hasattr(p, attr):
            return any(contains_region_overlap(i) for i in getattr(p, attr))
    if hasattr(p, "item"):
        return contains_region_overlap(p.item)
    return False
