"""Factorized evaluation: a data-ID query over independent dimensions as a product of small queries."""

from __future__ import annotations

import itertools
import operator
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...dimensions import DataCoordinate
from ._ir import DimField, DimKey, Predicate, conjoin, iter_columns, top_level_terms
from ._relations import Relation, join_relations
from ._sql import SqlCompiler

if TYPE_CHECKING:
    from ._engine import QueryEngine, _Plan
    from ._spec import QuerySpec

__all__ = ["FactorizedPlan", "components", "factorize"]


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


def factorize(plan: _Plan) -> FactorizedPlan | None:
    """A data-ID query as a product of independent sub-queries, if it is one.

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
        or plan.postfilter_fixed
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
    statements: list[tuple[list[str], Any]] = []
    for rels, terms in zip(comps, per_component):
        kit = plan.kit
        from_, canonical = join_relations(rels, kit)
        plan.canonical = canonical
        cols = [d for d in canonical if d in out_keys or d in governors]
        compiler = SqlCompiler(plan.lookup, kit)
        where = compiler.predicate(conjoin(*terms)) if terms else kit.true()
        if cols:
            stmt = (
                kit.select(*[canonical[d].label(f"d_{d}") for d in cols])
                .select_from(from_)
                .where(where)
                .distinct()
            )
        else:  # a component that only filters: does any row satisfy it?
            stmt = kit.select(kit.literal(1).label("k_exists")).select_from(from_).where(where).limit(1)
        statements.append((cols, stmt))
    # Where each output column sits: (component, column); the first component that has it gives it.
    position: dict[str, tuple[int, int]] = {}
    for c, (cols, _) in enumerate(statements):
        for j, d in enumerate(cols):
            position.setdefault(d, (c, j))
    if any(k not in position for k in out_keys):
        return None
    return FactorizedPlan(plan, statements, [position[k] for k in out_keys], governors)


class FactorizedPlan:
    """The statements of a factorized query, rendered, and the product of their rows."""

    def __init__(
        self,
        plan: _Plan,
        statements: list[tuple[list[str], Any]],
        positions: list[tuple[int, int]],
        governors: set[str],
    ):
        self.statements = [(cols, *plan.render(stmt)) for cols, stmt in statements]
        shared = sorted(set.intersection(*[set(cols) & governors for cols, _ in statements]))
        self.picks = [[cols.index(g) for g in shared] for cols, _ in statements]
        self.positions = positions
        # Rows of all components concatenated: where each output value sits.
        offsets = list(itertools.accumulate([len(cols) for cols, _ in statements], initial=0))
        self.getter = operator.itemgetter(*[offsets[c] + j for c, j in positions])
        self.product = (
            _pair_product(tuple(positions)) if len(statements) == 2 and len(positions) > 1 else None
        )

    def execute(self, engine: QueryEngine, spec: QuerySpec) -> list[Any]:
        results = []
        with engine.rows(snapshot=True) as fetch:
            for cols, sql, params in self.statements:
                fetched = fetch(sql, params)
                results.append(fetched if cols else [()] * len(fetched))
        grouped: list[dict[tuple, list[tuple]]] = []
        for pick, rows in zip(self.picks, results):
            groups: dict[tuple, list[tuple]] = {}
            for row in rows:
                groups.setdefault(tuple([row[i] for i in pick]), []).append(row)
            grouped.append(groups)
        group = spec.dimensions
        if self.product is not None:
            return self.product(grouped[0], grouped[1], group)
        getter = self.getter
        single = len(self.positions) == 1
        rows_out: list[Any] = []
        for key in grouped[0]:
            parts = [g.get(key, []) for g in grouped]
            for combo in itertools.product(*parts):
                joined = sum(combo, ())
                rows_out.append((getter(joined),) if single else getter(joined))
        return DataCoordinate.many_from_full_values(group, rows_out)


_PRODUCTS: dict[tuple, Callable[..., list[Any]]] = {}
_products_lock = threading.Lock()


def _pair_product(positions: tuple[tuple[int, int], ...]) -> Callable[..., list[Any]]:
    """``product(first, second, group)``: data IDs of every pair of rows with the same governor values.

    Generated for one layout (which value comes from which component's column): one loop, the
    first row's values read once per row of it, one tuple and one data ID per pair.
    """
    product = _PRODUCTS.get(positions)
    if product is not None:
        return product
    a_cols = sorted({j for c, j in positions if c == 0})
    values = ", ".join(f"a{j}" if c == 0 else f"b[{j}]" for c, j in positions)
    lines = [
        "def product(first, second, group):",
        "    out = []",
        "    append = out.append",
        "    for key, a_rows in first.items():",
        "        b_rows = second.get(key)",
        "        if not b_rows:",
        "            continue",
        "        for a in a_rows:",
    ]
    if a_cols:
        lines.append(
            "            "
            + "".join(f"a{j}, " for j in a_cols)
            + "= "
            + ", ".join(f"a[{j}]" for j in a_cols)
            + ("," if len(a_cols) == 1 else "")
        )
    lines += [
        "            for b in b_rows:",
        "                d = new(DataCoordinate)",
        "                d.dimensions = group",
        f"                d._values = ({values})",
        "                append(d)",
        "    return out",
    ]
    namespace: dict[str, Any] = {"new": object.__new__, "DataCoordinate": DataCoordinate}
    exec("\n".join(lines), namespace)  # only integers and fixed names go into the text
    product = namespace["product"]
    with _products_lock:
        _PRODUCTS[positions] = product
    return product
