"""The query engine: from a query description to rows, in one SQL statement.

Planning, in order:

1. Resolve the ``where`` expression, keyword constraints and ``order_by``
   against the universe; every column they mention adds its dimensions.
2. Check governors (instrument, skymap): a dimension that depends on one
   may only be constrained if the governor is too (daf_butler's rule),
   filling in the butler's default data ID where it has one.
3. Pull spatial conditions out of the top-level AND: region constraints and
   joins go through the common-skypix (htm7) overlap tables in SQL and are
   refined with exact sphgeom overlaps afterwards.  Families of spatial
   dimensions that the query mixes but does not join (visit/detector with
   tract/patch) are joined automatically, as are calibration validity ranges
   with the query's observation timespan.
4. Choose the relations to join: dataset searches, overlap subqueries,
   dimension tables whose fields are needed, always-join tables, and a table
   for every dimension whose value (or implied values) nothing else provides.
5. Compile the predicate, add find-first ranking with a window function, and
   run it.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lsst.sphgeom
import sqlalchemy
from sqlalchemy import BigInteger

from ..._gc import paused_gc
from ...dimensions import (
    DataCoordinate,
    Dimension,
    DimensionElement,
    DimensionGroup,
    DimensionUniverse,
    SkyPixDimension,
    coerce_dimension_value,
    decode_region,
)
from ...errors import InvalidQueryError
from .._collection_type import CollectionType
from .._collections import CollectionInfo, CollectionManager
from .._dataset_ref import DatasetRef
from .._dataset_types import DatasetTypeRecord
from .._db import Database
from .._dimension_records import record_from_row
from .._schema import RegistrySchema
from ..expr import parse_expression
from ._ir import (
    Compare,
    Const,
    DatasetField,
    DimField,
    DimKey,
    InValues,
    Lit,
    Overlaps,
    Predicate,
    conjoin,
    iter_columns,
    top_level_terms,
)
from ._resolve import ResolveContext, resolve_order_by, resolve_predicate
from ._sql import SqlCompiler

__all__ = ["DatasetSearch", "QueryEngine", "QuerySpec"]


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
    where: str = ""
    bind: Mapping[str, Any] = field(default_factory=dict)
    data_id: Mapping[str, Any] = field(default_factory=dict)
    default_data_id: Mapping[str, Any] = field(default_factory=dict)
    order_by: Sequence[str] = ()
    limit: int | None = None


@dataclass
class _Relation:
    from_: Any
    dims: dict[str, Any]
    fields: dict[tuple[str, str], Any] = field(default_factory=dict)
    name: str = ""
    search_cols: dict[str, Any] = field(default_factory=dict)


class QueryEngine:
    """Plans and runs queries against one repository's registry."""

    def __init__(
        self,
        db: Database,
        schema: RegistrySchema,
        universe: DimensionUniverse,
        collections: CollectionManager,
    ):
        self._db = db
        self._schema = schema
        self._universe = universe
        self._collections = collections

    # --- entry point -------------------------------------------------------------------------------

    def run(self, spec: QuerySpec) -> list[Any]:
        """Run a query and return data IDs, dataset refs or dimension records."""
        plan = _Plan(self, spec)
        with paused_gc():
            return plan.execute()


class _Plan:
    def __init__(self, engine: QueryEngine, spec: QuerySpec):
        self.engine = engine
        self.spec = spec
        self.universe = engine._universe
        self.schema = engine._schema
        self.relations: list[_Relation] = []
        self.element_relations: dict[str, _Relation] = {}
        self.postfilter_joins: list[tuple[str, str]] = []
        self.postfilter_regions: list[tuple[str, lsst.sphgeom.Region]] = []
        self.sql_conditions: list[Any] = []
        self._alias_counter = 0

    # --- analysis ----------------------------------------------------------------------------------

    def execute(self) -> list[Any]:
        spec = self.spec
        universe = self.universe
        datasets = {s.record.dataset_type.name: s.record.dataset_type.dimensions for s in spec.searches}
        ctx_dims = spec.dimensions.union(*datasets.values())
        ctx = ResolveContext(universe, ctx_dims, datasets, spec.bind, spec.where)
        tree = parse_expression(spec.where) if spec.where and spec.where.strip() else None
        pred = resolve_predicate(ctx, tree)
        kw_terms: list[Predicate] = []
        for key, value in spec.data_id.items():
            dim = universe.get_dimension(key)
            coerced = coerce_dimension_value(universe, key, value)
            kw_terms.append(
                Compare("==", DimKey(key, dim.primary_key.type), Lit(coerced, dim.primary_key.type))
            )
        pred = conjoin(pred, *kw_terms)
        order_terms = [resolve_order_by(ctx, t) for t in spec.order_by]
        extra: set[str] = set()
        for ref in [*iter_columns(pred), *(t[0] for t in order_terms)]:
            if isinstance(ref, DimKey):
                extra.add(ref.dimension)
            elif isinstance(ref, DimField):
                extra.update(d.name for d in universe[ref.element].required)
            elif isinstance(ref, DatasetField) and ref.dataset_type not in datasets:
                raise InvalidQueryError(
                    f"{ref} refers to dataset type {ref.dataset_type!r}, which this query does not search."
                )
        for ref, _ in order_terms:
            if isinstance(ref, DimKey) and ref.dimension not in spec.dimensions:
                raise InvalidQueryError(
                    f"Cannot order by {ref}: it is not a dimension of the results ({spec.dimensions})."
                )
            if isinstance(ref, DimField) and ref.element not in spec.dimensions.elements:
                raise InvalidQueryError(
                    f"Cannot order by {ref}: {ref.element} is not an element of the results ({spec.dimensions})."
                )
        self.full = ctx_dims.union(extra)
        pred = self._apply_governors(pred)
        pred = self._extract_spatial(pred)
        self.pred = pred
        self.order_terms = order_terms
        self._build_relations()
        return self._run_sql()

    def _apply_governors(self, pred: Predicate) -> Predicate:
        universe = self.universe
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
        constrained = set(_constraint_data_id(pred))
        additions: list[Predicate] = []
        for gov in sorted(needed | set(self.full.governors)):
            if gov in constrained or gov in referenced:
                continue
            if gov in self.spec.default_data_id:
                value = coerce_dimension_value(universe, gov, self.spec.default_data_id[gov])
                pk_type = universe.dimensions[gov].primary_key.type
                additions.append(Compare("==", DimKey(gov, pk_type), Lit(value, pk_type)))
                self.full = self.full.union([gov])
            elif gov in needed:
                raise InvalidQueryError(
                    f"The query constrains a dimension that depends on {gov!r} without constraining {gov!r} "
                    f"itself; add {gov} = '…' to the where expression or pass {gov}='…' (as daf_butler requires)."
                )
        return conjoin(pred, *additions)

    # --- spatial -------------------------------------------------------------------------------------------

    def _extract_spatial(self, pred: Predicate) -> Predicate:
        terms = top_level_terms(pred)
        kept: list[Predicate] = []
        connections: dict[str, set[str]] = {f: {f} for f in self.full.spatial}
        explicit_joins: list[tuple[str, str]] = []
        constraints: list[tuple[str, lsst.sphgeom.Region]] = []
        for term in terms:
            if isinstance(term, Overlaps) and "region" in (term.a.type, term.b.type):
                a, b = term.a, term.b
                if isinstance(a, DimField) and isinstance(b, DimField):
                    ea, eb = self.universe[a.element], self.universe[b.element]
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
            if _contains_region_overlap(term):
                raise InvalidQueryError(
                    "Spatial overlap constraints nested inside OR or NOT are not supported."
                )
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
            joins.append((self.full.choose_family_member(fa).name, self.full.choose_family_member(fb).name))
        self.spatial_joins = joins
        self.spatial_constraints = constraints
        return conjoin(*kept) if kept else Const(True)

    # --- relations -------------------------------------------------------------------------------------------

    def _alias(self, prefix: str) -> str:
        self._alias_counter += 1
        return f"{prefix}_{self._alias_counter}"

    def _element_relation(self, name: str) -> _Relation:
        rel = self.element_relations.get(name)
        if rel is not None:
            return rel
        element = self.universe[name]
        if not element.has_own_table:
            raise InvalidQueryError(
                f"{name} records are not stored; {name} can only be used with a spatial element "
                f"(e.g. visit) that is joined to it through the {self.universe.common_skypix.name} index."
            )
        t = self.schema.elements[name].alias(self._alias(f"t_{name}"))
        dims = {d.name: t.c[k] for d, k in zip(element.required, element.key_columns)}
        for d in element.implied:
            dims[d.name] = t.c[d.name]
        fields: dict[tuple[str, str], Any] = {}
        for fname in element.schema:
            if fname == "timespan":
                fields[(name, fname)] = (t.c.timespan_begin, t.c.timespan_end)
            else:
                fields[(name, fname)] = t.c[fname]
        rel = _Relation(t, dims, fields, name=name)
        self.element_relations[name] = rel
        self.relations.append(rel)
        return rel

    def _overlap_relation(
        self, element: str, pixel_ranges: list[tuple[int, int]] | None, distinct_keys: bool
    ) -> _Relation:
        """The common-skypix overlap rows of ``element`` (optionally restricted to pixel ranges)."""
        universe = self.universe
        e = universe[element]
        skypix = universe.common_skypix.name
        ov = self.schema.overlaps[element]
        cols = [ov.c[d.name] for d in e.required]
        conds = self._constraint_conditions(ov, [d.name for d in e.required])
        if pixel_ranges is not None:
            conds.append(sqlalchemy.or_(*[ov.c[skypix].between(b, end - 1) for b, end in pixel_ranges]))
        if distinct_keys:
            sub = sqlalchemy.select(*cols).where(*conds).distinct().subquery(self._alias(f"ov_{element}"))
            return _Relation(sub, {d.name: sub.c[d.name] for d in e.required}, name=f"overlap:{element}")
        sub = sqlalchemy.select(*cols, ov.c[skypix]).where(*conds).subquery(self._alias(f"ov_{element}"))
        dims = {d.name: sub.c[d.name] for d in e.required}
        dims[skypix] = sub.c[skypix]
        return _Relation(sub, dims, name=f"overlap:{element}")

    def _constraint_conditions(self, table: Any, dims: list[str]) -> list[Any]:
        data_id = _constraint_data_id(self.pred)
        return [table.c[d] == data_id[d] for d in dims if d in data_id]

    def _pair_overlap_relation(self, a: str, b: str) -> _Relation:
        ea, eb = self.universe[a], self.universe[b]
        skypix = self.universe.common_skypix.name
        oa = self.schema.overlaps[a].alias(self._alias(f"ova_{a}"))
        ob = self.schema.overlaps[b].alias(self._alias(f"ovb_{b}"))
        cols = [oa.c[d.name] for d in ea.required] + [
            ob.c[d.name] for d in eb.required if d.name not in {x.name for x in ea.required}
        ]
        on = [oa.c[skypix] == ob.c[skypix]]
        on.extend(
            oa.c[d.name] == ob.c[d.name] for d in eb.required if d.name in {x.name for x in ea.required}
        )
        conds = self._constraint_conditions(oa, [d.name for d in ea.required])
        conds += self._constraint_conditions(ob, [d.name for d in eb.required])
        sub = (
            sqlalchemy.select(*cols)
            .select_from(oa.join(ob, sqlalchemy.and_(*on)))
            .where(*conds)
            .distinct()
            .subquery(self._alias(f"sj_{a}_{b}"))
        )
        return _Relation(sub, {c.name: c for c in sub.c}, name=f"spatial:{a}:{b}")

    def _search_relation(self, search: DatasetSearch, need_dataset_table: bool) -> _Relation:
        rec = search.record
        group = rec.dataset_type.dimensions
        name = rec.dataset_type.name
        tag_ids = [c.id for c in search.collections if c.type in (CollectionType.RUN, CollectionType.TAGGED)]
        cal_ids = [c.id for c in search.collections if c.type is CollectionType.CALIBRATION]
        self.search_has_calibs = getattr(self, "search_has_calibs", False) or bool(cal_ids)
        parts = []
        dims = list(group.required)
        if tag_ids or not cal_ids:
            t = rec.tables.tags
            cols: list[Any] = [t.c.dataset_id, t.c.collection_id, *[t.c[d] for d in dims]]
            if cal_ids:
                cols += [
                    sqlalchemy.null().cast(BigInteger).label("validity_begin"),
                    sqlalchemy.null().cast(BigInteger).label("validity_end"),
                ]
            coll_cond = (
                t.c.collection_id == tag_ids[0] if len(tag_ids) == 1 else t.c.collection_id.in_(tag_ids)
            )
            parts.append(sqlalchemy.select(*cols).where(t.c.dataset_type_id == rec.id, coll_cond))
        if cal_ids:
            c = rec.tables.calibs
            cols = [
                c.c.dataset_id,
                c.c.collection_id,
                *[c.c[d] for d in dims],
                c.c.validity_begin,
                c.c.validity_end,
            ]
            coll_cond = (
                c.c.collection_id == cal_ids[0] if len(cal_ids) == 1 else c.c.collection_id.in_(cal_ids)
            )
            parts.append(sqlalchemy.select(*cols).where(c.c.dataset_type_id == rec.id, coll_cond))
        union = parts[0] if len(parts) == 1 else sqlalchemy.union_all(*parts)
        sub = union.subquery(self._alias(f"s_{name.replace('.', '_')}"))
        search_cols: dict[str, Any] = {
            "dataset_id": sub.c.dataset_id,
            "collection_id": sub.c.collection_id,
        }
        from_: Any = sub
        all_runs = all(c.type is CollectionType.RUN for c in search.collections)
        if need_dataset_table or not all_runs:
            d = self.schema.dataset.alias(self._alias("ds"))
            from_ = sub.join(d, d.c.dataset_id == sub.c.dataset_id)
            search_cols["run_id"] = d.c.run_id
            search_cols["ingest_date"] = d.c.ingest_date
        else:
            search_cols["run_id"] = sub.c.collection_id
        if cal_ids:
            search_cols["timespan"] = (sub.c.validity_begin, sub.c.validity_end)
        else:
            search_cols["timespan"] = (sqlalchemy.null(), sqlalchemy.null())
        return _Relation(from_, {d: sub.c[d] for d in dims}, name=f"search:{name}", search_cols=search_cols)

    def _build_relations(self) -> None:
        universe = self.universe
        spec = self.spec
        skypix = universe.common_skypix.name
        refs = iter_columns(self.pred) + [t[0] for t in self.order_terms]
        dataset_fields_needed = {(r.dataset_type, r.field) for r in refs if isinstance(r, DatasetField)}
        # Dataset searches.
        self.search_relations: dict[str, _Relation] = {}
        for search in spec.searches:
            name = search.record.dataset_type.name
            need_ds = (name, "ingest_date") in dataset_fields_needed
            rel = self._search_relation(search, need_ds)
            self.relations.append(rel)
            self.search_relations[name] = rel
        # Spatial joins and constraints.
        for a, b in self.spatial_joins:
            ea, eb = universe[a], universe[b]
            if isinstance(ea, SkyPixDimension) or isinstance(eb, SkyPixDimension):
                pix, other = (ea, eb) if isinstance(ea, SkyPixDimension) else (eb, ea)
                if pix.name != skypix or isinstance(other, SkyPixDimension):
                    raise InvalidQueryError(
                        f"Unsupported spatial join between {a} and {b}: only the common sky pixelization "
                        f"({skypix}) can be joined to dimension regions."
                    )
                self.relations.append(self._overlap_relation(other.name, None, distinct_keys=False))
            elif skypix in self.full:
                self.relations.append(self._overlap_relation(a, None, distinct_keys=False))
                self.relations.append(self._overlap_relation(b, None, distinct_keys=False))
                self.postfilter_joins.append((a, b))
            else:
                self.relations.append(self._pair_overlap_relation(a, b))
                self.postfilter_joins.append((a, b))
        for element_name, region in self.spatial_constraints:
            e = universe[element_name]
            if isinstance(e, SkyPixDimension):
                ranges = list(e.pixelization.envelope(region))
                self.sql_conditions.append(("skypix", e.name, ranges))
                continue
            ranges = list(universe.common_skypix.pixelization.envelope(region))
            if skypix in self.full:
                rel = self._overlap_relation(element_name, ranges, distinct_keys=False)
            else:
                rel = self._overlap_relation(element_name, ranges, distinct_keys=True)
            self.relations.append(rel)
            self.postfilter_regions.append((element_name, region))
        # Element tables for referenced fields and region postfilters.
        needed_elements = {r.element for r in refs if isinstance(r, DimField)}
        needed_elements.update(e for pair in self.postfilter_joins for e in pair)
        needed_elements.update(e for e, _ in self.postfilter_regions)
        if spec.kind == "records" and spec.element is not None:
            needed_elements.add(spec.element.name)
        for name in universe.sorted_names(needed_elements):
            if isinstance(universe[name], SkyPixDimension):
                continue
            self._element_relation(name)
        for name in self.full.elements:
            if universe[name].always_join:
                self._element_relation(name)
        for name in self.full.names:
            d = universe.dimensions[name]
            if any(i in self.full for i in d.direct_implies):
                self._element_relation(name)
        for name in reversed(self.full.names):
            if any(name in r.dims for r in self.relations):
                continue
            d = universe.dimensions[name]
            if isinstance(d, SkyPixDimension):
                raise InvalidQueryError(
                    f"Cannot query {name} on its own: sky pixels are related to data only through the "
                    f"regions of spatial dimensions (e.g. query visit and {skypix} together)."
                )
            self._element_relation(name)

    # --- SQL ------------------------------------------------------------------------------------------------

    def _lookup(self, ref: DimKey | DimField | DatasetField) -> Any:
        if isinstance(ref, DimKey):
            try:
                return self.canonical[ref.dimension]
            except KeyError:
                raise InvalidQueryError(
                    f"Dimension {ref.dimension} is not available in this query."
                ) from None
        if isinstance(ref, DimField):
            rel = self.element_relations.get(ref.element)
            if rel is None:
                rel = self._element_relation(ref.element)
            return rel.fields[(ref.element, ref.field)]
        rel = self.search_relations[ref.dataset_type]
        if ref.field == "run":
            return self._collection_name_column(rel.search_cols["run_id"])
        if ref.field == "collection":
            return self._collection_name_column(rel.search_cols["collection_id"])
        if ref.field == "ingest_date":
            return rel.search_cols["ingest_date"]
        return rel.search_cols[ref.field]

    def _collection_name_column(self, id_column: Any) -> Any:
        c = self.schema.collection
        return sqlalchemy.select(c.c.name).where(c.c.collection_id == id_column).scalar_subquery()

    def _join_all(self) -> Any:
        from_, self.canonical = self._join(self.relations)
        return from_

    @staticmethod
    def _join(relations: list[_Relation]) -> tuple[Any, dict[str, Any]]:
        """Join relations on their shared dimensions; the first provider of a dimension is canonical."""
        canonical: dict[str, Any] = {}
        from_: Any = None
        for rel in relations:
            on = [col == canonical[d] for d, col in rel.dims.items() if d in canonical]
            for d, col in rel.dims.items():
                canonical.setdefault(d, col)
            if from_ is None:
                from_ = rel.from_
            else:
                from_ = from_.join(rel.from_, sqlalchemy.and_(*on) if on else sqlalchemy.true())
        return from_, canonical

    # --- factorized evaluation ------------------------------------------------------------------------

    def _components(self) -> list[list[_Relation]]:
        """Relations grouped by the non-governor dimensions that join them."""
        governors = set(self.universe.governors)
        groups: list[tuple[set[str], list[_Relation]]] = []
        for rel in self.relations:
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

    def _try_factorized(self) -> list[Any] | None:
        """Evaluate a data-ID query as a product of independent sub-queries, if it is one.

        (visit, detector) data IDs of one band are 333 visits times 189
        detectors: asking SQL for the 63,000-row cross product costs far more
        than two small queries and a product in Python.  Applies when the
        relations fall into components linked only through governor
        dimensions, every condition concerns one component (or only
        governors), and there is no spatial refinement, ordering or limit.
        Rows are combined only where their governor values agree.
        """
        spec = self.spec
        if (
            spec.kind != "data_ids"
            or spec.searches
            or spec.order_by
            or spec.limit is not None
            or self.postfilter_joins
            or self.postfilter_regions
            or self.sql_conditions
        ):
            return None
        components = self._components()
        if len(components) < 2:
            return None
        governors = set(self.universe.governors)
        owner: dict[str, int] = {}
        for i, rels in enumerate(components):
            for rel in rels:
                for d in rel.dims:
                    if d not in governors:
                        owner[d] = i
                for element_name, _ in rel.fields:
                    owner[f"field:{element_name}"] = i
        per_component: list[list[Predicate]] = [[] for _ in components]
        for term in top_level_terms(self.pred):
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
                for i, rels in enumerate(components):
                    if refs <= {d for rel in rels for d in rel.dims}:
                        per_component[i].append(term)
        out_keys = list(spec.dimensions.data_coordinate_keys)
        results: list[tuple[list[str], Sequence[Any]]] = []
        with self.engine._db.reading() as conn:
            for rels, terms in zip(components, per_component):
                from_, canonical = self._join(rels)
                self.canonical = canonical
                cols = [d for d in canonical if d in out_keys or d in governors]
                compiler = SqlCompiler(self._lookup)
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
        return self._convert(rows_out, [f"d_{k}" for k in out_keys])

    def _run_sql(self) -> list[Any]:
        spec = self.spec
        factorized = self._try_factorized()
        if factorized is not None:
            return factorized
        from_ = self._join_all()
        compiler = SqlCompiler(self._lookup)
        where = [compiler.predicate(self.pred)]
        for item in self.sql_conditions:
            _, dim, ranges = item
            col = self.canonical.get(dim)
            if col is None:
                raise InvalidQueryError(f"{dim} is not available to constrain in this query.")
            where.append(
                sqlalchemy.or_(*[col.between(b, e - 1) for b, e in ranges]) if ranges else sqlalchemy.false()
            )
        # Automatic temporal join of calibration searches with the observation timespan.
        for search in spec.searches:
            if not any(c.type is CollectionType.CALIBRATION for c in search.collections):
                continue
            name = search.record.dataset_type.name
            if any(
                isinstance(r, DatasetField) and r.dataset_type == name and r.field == "timespan"
                for r in iter_columns(self.pred)
            ):
                continue
            if self.full.temporal:
                member = self.full.choose_family_member(self.full.temporal[0])
                ts = self._lookup(DimField(member.name, "timespan", "timespan"))
                vb, ve = self.search_relations[name].search_cols["timespan"]
                where.append(sqlalchemy.or_(vb.is_(None), sqlalchemy.and_(vb < ts[1], ts[0] < ve)))
        # Select list.
        labeled: list[Any] = []
        out_keys: list[str] = []
        result_group = spec.dimensions
        if spec.kind == "data_ids":
            for n in result_group.data_coordinate_keys:
                labeled.append(self.canonical[n].label(f"d_{n}"))
                out_keys.append(f"d_{n}")
        elif spec.kind == "records":
            assert spec.element is not None
            rel = self.element_relations[spec.element.name]
            for c in rel.from_.c:
                labeled.append(c.label(f"r_{c.name}"))
                out_keys.append(f"r_{c.name}")
        else:
            search = spec.searches[0]
            rel = self.search_relations[search.record.dataset_type.name]
            labeled.append(rel.search_cols["dataset_id"].label("x_dataset_id"))
            labeled.append(rel.search_cols["run_id"].label("x_run_id"))
            out_keys += ["x_dataset_id", "x_run_id"]
            for n in result_group.data_coordinate_keys:
                labeled.append(self.canonical[n].label(f"d_{n}"))
                out_keys.append(f"d_{n}")
        post_region_cols: dict[str, str] = {}
        for e in {x for pair in self.postfilter_joins for x in pair} | {
            e for e, _ in self.postfilter_regions
        }:
            label = f"g_{e}"
            labeled.append(self.element_relations[e].fields[(e, "region")].label(label))
            post_region_cols[e] = label
        order_labels: list[tuple[str, bool]] = []
        for i, (ref, desc) in enumerate(self.order_terms):
            col = compiler.value(ref)
            if isinstance(col, tuple):
                col = col[0]
            labeled.append(col.label(f"o_{i}"))
            order_labels.append((f"o_{i}", desc))
        # Find-first ranking.
        find_first_search = (
            spec.searches[0]
            if spec.kind == "datasets" and spec.searches and spec.searches[0].find_first
            else None
        )
        needs_window = find_first_search is not None and (
            len(find_first_search.collections) > 1
            or any(c.type is CollectionType.CALIBRATION for c in find_first_search.collections)
        )
        stmt: Any = sqlalchemy.select(*labeled).select_from(from_).where(*where)
        check_calib = False
        if needs_window:
            assert find_first_search is not None
            rel = self.search_relations[find_first_search.record.dataset_type.name]
            rank = sqlalchemy.case(
                {c.id: i for i, c in enumerate(find_first_search.collections)},
                value=rel.search_cols["collection_id"],
            )
            partition = [self.canonical[d] for d in self.full.required]
            extra = [sqlalchemy.func.row_number().over(partition_by=partition, order_by=rank).label("w_rn")]
            if any(c.type is CollectionType.CALIBRATION for c in find_first_search.collections):
                extra.append(sqlalchemy.func.count().over(partition_by=[*partition, rank]).label("w_n"))
                check_calib = True
            sub = stmt.add_columns(*extra).subquery("ranked")
            stmt = sqlalchemy.select(*[sub.c[c.name] for c in labeled]).where(sub.c.w_rn == 1)
            if check_calib:
                stmt = stmt.add_columns(sub.c.w_n)
        postfilter = bool(self.postfilter_joins or self.postfilter_regions)
        need_distinct = self._need_distinct()
        # With postfiltering, duplicates are removed in Python after the
        # projection anyway; asking SQL too would sort rows holding regions.
        python_dedupe = postfilter and need_distinct
        if need_distinct and not postfilter:
            stmt = stmt.distinct()
        if order_labels:
            cols = stmt.selected_columns
            stmt = stmt.order_by(*[(cols[lbl].desc() if desc else cols[lbl]) for lbl, desc in order_labels])
        if spec.limit is not None and not postfilter:
            stmt = stmt.limit(spec.limit)
        names = [c.name for c in labeled] + (["w_n"] if check_calib else [])
        position = {n: i for i, n in enumerate(names)}
        with self.engine._db.reading() as conn:
            result = conn.execute(stmt)
            # Plain driver tuples: no per-row SQLAlchemy Row objects on the hot path.
            rows = result.cursor.fetchall()
            result.close()
        n_out = len(out_keys)
        if not postfilter and not check_calib:
            if n_out == len(names):
                return self._convert(rows, out_keys)
            return self._convert([r[:n_out] for r in rows], out_keys)
        results: list[Any] = []
        seen: set[tuple] = set()
        joins = [
            (position[post_region_cols[a]], position[post_region_cols[b]]) for a, b in self.postfilter_joins
        ]
        wheres = [(position[post_region_cols[e]], region) for e, region in self.postfilter_regions]
        decoded: dict[bytes, Any] = {}

        def region(raw: Any) -> Any:
            r = decoded.get(raw)
            if r is None:
                r = decode_region(bytes(raw))
                decoded[raw] = r
            return r

        w_n = position.get("w_n")
        for row in rows:
            if postfilter:
                if any(
                    row[a] is None or row[b] is None or region(row[a]).overlaps(region(row[b])) is False
                    for a, b in joins
                ):
                    continue
                if any(row[c] is None or region(row[c]).overlaps(r) is False for c, r in wheres):
                    continue
            if w_n is not None and row[w_n] > 1:
                raise InvalidQueryError(
                    "Ambiguous calibration lookup: more than one validity range matches a data ID; add a "
                    "temporal constraint (e.g. an exposure or visit) or a time range."
                )
            key = tuple(row[:n_out])
            if python_dedupe:
                if key in seen:
                    continue
                seen.add(key)
            results.append(key)
            if postfilter and spec.limit is not None and len(results) >= spec.limit:
                break
        return self._convert(results, out_keys)

    def _need_distinct(self) -> bool:
        spec = self.spec
        if self.postfilter_joins or self.postfilter_regions:
            return True
        if spec.kind == "records":
            assert spec.element is not None
            base = spec.element.minimal_group
        else:
            base = spec.dimensions
        if not self.full.issubset(base):
            return True
        for i, search in enumerate(spec.searches):
            if spec.kind == "datasets" and i == 0 and search.find_first:
                continue
            if len(search.collections) > 1 or spec.kind != "datasets" or i > 0:
                return True
        return False

    def _convert(self, rows: Sequence[Any], keys: list[str]) -> list[Any]:
        """Driver rows (out_keys columns first) to data IDs, records or refs."""
        spec = self.spec
        group = spec.dimensions
        if spec.kind == "data_ids":
            return DataCoordinate.many_from_full_values(group, rows)
        if spec.kind == "records":
            assert spec.element is not None
            element = spec.element
            names = [k[2:] for k in keys]
            bools = [
                i
                for i, n in enumerate(names)
                if n in element.field_by_name and element.field_by_name[n].type == "bool"
            ]
            blobs = [
                i
                for i, n in enumerate(names)
                if n == "region" or (n in element.field_by_name and element.field_by_name[n].type == "hash")
            ]
            out = []
            for row in rows:
                if bools or blobs:
                    row = list(row)
                    for i in bools:
                        if row[i] is not None:
                            row[i] = bool(row[i])
                    for i in blobs:
                        if row[i] is not None:
                            row[i] = bytes(row[i])
                out.append(record_from_row(element, dict(zip(names, row))))
            return out
        search = spec.searches[0]
        dt = search.record.dataset_type
        collections = self.engine._collections
        run_names: dict[int, str] = {}
        refs = []
        for row in rows:
            run_id = row[1]
            run = run_names.get(run_id)
            if run is None:
                run = collections.get_by_id(run_id).name
                run_names[run_id] = run
            refs.append(DatasetRef(dt, DataCoordinate(group, tuple(row[2:]), True), run, row[0]))
        return refs


def _constraint_data_id(pred: Predicate) -> dict[str, Any]:
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


def _contains_region_overlap(p: Any) -> bool:
    if isinstance(p, Overlaps):
        return "region" in (p.a.type, p.b.type)
    for attr in ("items",):
        if hasattr(p, attr):
            return any(_contains_region_overlap(i) for i in getattr(p, attr))
    if hasattr(p, "item"):
        return _contains_region_overlap(p.item)
    return False
