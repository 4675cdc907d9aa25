"""Factorized evaluation: a data-ID query over independent dimensions as a product of small queries."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy

from ._ir import DimField, DimKey, Predicate, conjoin, iter_columns, top_level_terms
from ._relations import Relation, join_relations
from ._sql import SqlCompiler

if TYPE_CHECKING:
    from ._engine import _Plan

__all__ = ["components", "run_factorized"]


def components(relations: list[Relation], governors: set[str]) -> list[list[Relation]]:
    """Relations grouped by the non-governor dimensions that join them."""
    groups: list[tuple[set[str], list[Relation]]] = []
    for rel in relations:
        dims = {d for d in rel.dims if d not in governors}
        merged_dims, merged_rels = set(dims), [rel]
        keep = []
        for g_dims, g_rels in groups:
            if g_dims & dims:
                merged_dims |= g_dims
                merged_rels = g_rels + merged_rels
            else:
                keep.append((g_dims, g_rels))
        keep.append((merged_dims, merged_rels))
        groups = keep
    return [rels for _, rels in groups]


def run_factorized(plan: _Plan) -> list[Any] | None:
    """Evaluate a data-ID query as a product of independent sub-queries, if it is one.

    (visit, detector) data IDs of one band are 333 visits times 189
    detectors: asking SQL for the 63,000-row cross product costs far more
    than two small queries and a product in Python.  Applies when the
    relations fall into components linked only through governor
    dimensions, every condition concerns one component (or only
    governors), and there is no spatial refinement, ordering or limit.
    Rows are combined only where their governor values agree.
    """
    spec = plan.spec
    if (
        spec.kind != "data_ids"
        or not spec.with_implied
        or spec.searches
        or spec.order_by
        or spec.limit is not None
        or plan.postfilter_joins
        or plan.postfilter_regions
        or plan.sql_conditions
    ):
        return None
    comps = components(plan.relations, set(plan.universe.governors))
    if len(comps) < 2:
        return None
    governors = set(plan.universe.governors)
    owner: dict[str, int] = {}
    for i, rels in enumerate(comps):
        for rel in rels:
            for d in rel.dims:
                if d not in governors:
                    owner[d] = i
            for element_name, _ in rel.fields:
                owner[f"field:{element_name}"] = i
    per_component: list[list[Predicate]] = [[] for _ in comps]
    for term in top_level_terms(plan.pred):
        touched: set[int] = set()
        for ref in iter_columns(term):
            if isinstance(ref, DimKey):
                if ref.dimension in governors:
                    continue
                touched.add(owner[ref.dimension])
            elif isinstance(ref, DimField):
                field_key = f"field:{ref.element}"
                if field_key not in owner:
                    return None
                touched.add(owner[field_key])
            else:
                return None
        if len(touched) > 1:
            return None
        if touched:
            per_component[touched.pop()].append(term)
        else:  # governors only: every component that has them applies it
            refs = {r.dimension for r in iter_columns(term) if isinstance(r, DimKey)}
            for i, rels in enumerate(comps):
                if refs <= {d for rel in rels for d in rel.dims}:
                    per_component[i].append(term)
    out_keys = list(spec.dimensions.data_coordinate_keys)
    results: list[tuple[list[str], Sequence[Any]]] = []
    with plan.engine._db.reading() as conn:
        for rels, terms in zip(comps, per_component):
            from_, canonical = join_relations(rels)
            plan.canonical = canonical
            cols = [d for d in canonical if d in out_keys or d in governors]
            compiler = SqlCompiler(plan.lookup)
            where = compiler.predicate(conjoin(*terms)) if terms else sqlalchemy.true()
            if cols:
                stmt = (
                    sqlalchemy.select(*[canonical[d].label(f"d_{d}") for d in cols])
                    .select_from(from_)
                    .where(where)
                    .distinct()
                )
            else:  # a component that only filters: does any row satisfy it?
                stmt = sqlalchemy.select(sqlalchemy.literal(1)).select_from(from_).where(where).limit(1)
            result = conn.execute(stmt)
            fetched = result.cursor.fetchall()
            result.close()
            results.append((cols, fetched if cols else [()] * len(fetched)))
    shared = sorted(set.intersection(*[set(c) & governors for c, _ in results]))
    grouped: list[dict[tuple, list[tuple]]] = []
    for cols, rows in results:
        pick = [cols.index(g) for g in shared]
        groups: dict[tuple, list[tuple]] = {}
        for row in rows:
            groups.setdefault(tuple(row[i] for i in pick), []).append(row)
        grouped.append(groups)
    # Where each output column sits in the concatenation of one row per component.
    offsets = []
    total = 0
    for cols, _ in results:
        offsets.append(total)
        total += len(cols)
    position: dict[str, int] = {}
    for (cols, _), offset in zip(results, offsets):
        for j, d in enumerate(cols):
            position.setdefault(d, offset + j)
    if any(k not in position for k in out_keys):
        return None
    getter = operator.itemgetter(*[position[k] for k in out_keys])
    rows_out: list[Any] = []
    single = len(out_keys) == 1
    for key in grouped[0]:
        parts = [g.get(key, []) for g in grouped]
        if len(parts) == 2 and not single:
            first, second = parts
            rows_out.extend([getter(a + b) for a in first for b in second])
            continue
        for combo in itertools.product(*parts):
            joined = sum(combo, ())
            rows_out.append((getter(joined),) if single else getter(joined))
    return plan._convert(rows_out, [f"d_{k}" for k in out_keys])
