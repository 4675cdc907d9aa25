"""The query engine: from a query description to rows.

Planning, in order:

1. Resolve the ``where`` expression, keyword constraints and ``order_by``
   against the universe; every column they mention adds its dimensions.
2. Check governors and pull spatial conditions out of the top-level AND
   (`._analysis`).
3. Choose the relations to join (`._relations`): dataset searches, overlap
   subqueries, dimension tables whose fields are needed, always-join tables,
   and a table for every dimension whose value (or implied values) nothing
   else provides.
4. Evaluate: as a product of independent sub-queries when the relations
   allow it (`._factorized`), otherwise as one SQL statement with
   find-first ranking by a window function and exact region refinement of
   the rows it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lsst.sphgeom
import sqlalchemy

from ..._gc import paused_gc
from ...dimensions import (
    DataCoordinate,
    DimensionUniverse,
    SkyPixDimension,
    coerce_dimension_value,
    decode_region,
)
from ...errors import InvalidQueryError
from .._collection_type import CollectionType
from .._collections import CollectionManager
from .._dataset_ref import DatasetRef
from .._db import Database
from .._dimension_records import record_from_row
from .._schema import RegistrySchema
from ..expr import parse_expression
from ._analysis import apply_governors, constraint_data_id, extract_spatial
from ._factorized import run_factorized
from ._ir import (
    Compare,
    DatasetField,
    DimField,
    DimKey,
    Lit,
    Predicate,
    conjoin,
    iter_columns,
)
from ._relations import Relation, RelationBuilder, join_relations
from ._resolve import ResolveContext, resolve_order_by, resolve_predicate
from ._spec import DatasetSearch, QuerySpec
from ._sql import SqlCompiler

__all__ = ["DatasetSearch", "QueryEngine", "QuerySpec"]


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

    def statement(self, spec: QuerySpec, *, distinct: bool = True) -> Any | None:
        """The query as one SQL SELECT whose rows are exactly its results, or None if it needs Python.

        Columns are labelled ``d_<dimension>`` (and, for datasets, ``x_dataset_id`` and ``x_run_id``),
        so the database can compose it further (counts, anti-joins) without sending the rows here.
        None when rows must be refined by exact region overlap or checked for ambiguous calibrations.
        ``distinct=False`` leaves duplicates (one data ID reached through several exposures …) for the
        caller to remove, when it deduplicates anyway and faster than the database would.
        """
        plan = _Plan(self, spec)
        plan.prepare()
        sel = plan.select(distinct)
        return sel.stmt if sel.complete else None


@dataclass
class _Select:
    """One query as SQL: the statement, its column labels, and what Python must still do with its rows."""

    stmt: Any
    names: list[str]
    """Labels of the selected columns: ``out_keys`` first (``d_<dimension>``, ``x_dataset_id`` …)."""
    out_keys: list[str]
    post_region_cols: dict[str, str]
    postfilter: bool
    """Rows must be refined by exact region overlap in Python."""
    check_calib: bool
    """Rows carry ``w_n`` for the ambiguous-calibration check."""
    dedupe_in_python: bool
    """Duplicates are removed after region refinement (asking SQL too would sort rows holding regions)."""

    @property
    def complete(self) -> bool:
        """Are the statement's rows the answer, with nothing left for Python to filter?"""
        return not (self.postfilter or self.check_calib)


class _Plan:
    """The state of one query while it is analysed, planned and run."""

    def __init__(self, engine: QueryEngine, spec: QuerySpec):
        self.engine = engine
        self.spec = spec
        self.universe = engine._universe
        self.schema = engine._schema
        self.postfilter_joins: list[tuple[str, str]] = []
        self.postfilter_regions: list[tuple[str, lsst.sphgeom.Region]] = []
        self.sql_conditions: list[Any] = []
        self.canonical: dict[str, Any] = {}

    @property
    def relations(self) -> list[Relation]:
        return self.builder.relations

    @property
    def element_relations(self) -> dict[str, Relation]:
        return self.builder.element_relations

    def execute(self) -> list[Any]:
        self.prepare()
        return self._run_sql()

    def prepare(self) -> None:
        """Resolve the constraints and choose the relations (steps 1 to 3 of the module docstring)."""
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
        pred, self.full = apply_governors(universe, pred, ctx_dims.union(extra), spec.default_data_id)
        pred, spatial = extract_spatial(universe, pred, self.full)
        self.spatial_joins = spatial.joins
        self.spatial_constraints = spatial.constraints
        self.pred = pred
        self.order_terms = order_terms
        # Implied dimensions are joined when results carry them, a constraint names one, or a result key is
        # implied by another dimension of the query (a coadd's band, given by a raw's exposure).
        self.implied_needed = (
            spec.with_implied
            or any(
                isinstance(r, DimKey) and r.dimension in self.full.implied
                for r in [*iter_columns(pred), *(t[0] for t in order_terms)]
            )
            or any(d in self.full.implied for d in spec.dimensions.required)
        )
        self.builder = RelationBuilder(self.schema, universe, constraint_data_id(pred))
        self._build_relations()

    def _build_relations(self) -> None:
        universe = self.universe
        spec = self.spec
        skypix = universe.common_skypix.name
        refs = iter_columns(self.pred) + [t[0] for t in self.order_terms]
        dataset_fields_needed = {(r.dataset_type, r.field) for r in refs if isinstance(r, DatasetField)}
        # Dataset searches.
        self.search_relations: dict[str, Relation] = {}
        for search in spec.searches:
            name = search.record.dataset_type.name
            need_ds = (name, "ingest_date") in dataset_fields_needed
            rel = self.builder.search(search, need_ds)
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
                self.relations.append(self.builder.overlap(other.name, None, distinct_keys=False))
            elif skypix in self.full:
                self.relations.append(self.builder.overlap(a, None, distinct_keys=False))
                self.relations.append(self.builder.overlap(b, None, distinct_keys=False))
                self.postfilter_joins.append((a, b))
            else:
                self.relations.append(self.builder.pair_overlap(a, b))
                self.postfilter_joins.append((a, b))
        for element_name, region in self.spatial_constraints:
            e = universe[element_name]
            if isinstance(e, SkyPixDimension):
                ranges = list(e.pixelization.envelope(region))
                self.sql_conditions.append(("skypix", e.name, ranges))
                continue
            ranges = list(universe.common_skypix.pixelization.envelope(region))
            if skypix in self.full:
                rel = self.builder.overlap(element_name, ranges, distinct_keys=False)
            else:
                rel = self.builder.overlap(element_name, ranges, distinct_keys=True)
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
            self.builder.element(name)
        for name in self.full.elements:
            if universe[name].always_join:
                self.builder.element(name)
        for name in self.full.names if self.implied_needed else ():
            d = universe.dimensions[name]
            if any(i in self.full for i in d.direct_implies):
                self.builder.element(name)
        for name in reversed(self.full.names if self.implied_needed else self.full.required):
            if any(name in r.dims for r in self.relations):
                continue
            d = universe.dimensions[name]
            if isinstance(d, SkyPixDimension):
                raise InvalidQueryError(
                    f"Cannot query {name} on its own: sky pixels are related to data only through the "
                    f"regions of spatial dimensions (e.g. query visit and {skypix} together)."
                )
            self.builder.element(name)

    # --- SQL ------------------------------------------------------------------------------------------------

    def lookup(self, ref: DimKey | DimField | DatasetField) -> Any:
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
                rel = self.builder.element(ref.element)
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

    def _run_sql(self) -> list[Any]:
        factorized = run_factorized(self)
        if factorized is not None:
            return factorized
        sel = self.select()
        return self._fetch(sel)

    def select(self, distinct: bool = True) -> _Select:
        """The plan as one SQL statement (rows may still need region refinement or calibration checks)."""
        spec = self.spec
        from_, self.canonical = join_relations(self.relations)
        compiler = SqlCompiler(self.lookup)
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
                ts = self.lookup(DimField(member.name, "timespan", "timespan"))
                vb, ve = self.search_relations[name].search_cols["timespan"]
                where.append(sqlalchemy.or_(vb.is_(None), sqlalchemy.and_(vb < ts[1], ts[0] < ve)))
        # Select list.
        labeled: list[Any] = []
        out_keys: list[str] = []
        result_group = spec.dimensions
        result_keys = result_group.data_coordinate_keys if spec.with_implied else result_group.required
        if spec.kind == "data_ids":
            for n in result_keys:
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
            for n in result_keys:
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
        if distinct and need_distinct and not postfilter:
            stmt = stmt.distinct()
        if order_labels:
            cols = stmt.selected_columns
            stmt = stmt.order_by(*[(cols[lbl].desc() if desc else cols[lbl]) for lbl, desc in order_labels])
        if spec.limit is not None and not postfilter:
            stmt = stmt.limit(spec.limit)
        names = [c.name for c in labeled] + (["w_n"] if check_calib else [])
        return _Select(
            stmt, names, out_keys, post_region_cols, postfilter, check_calib, postfilter and need_distinct
        )

    def _fetch(self, sel: _Select) -> list[Any]:
        """Run the statement and turn its rows into results, refining regions and checking calibrations."""
        spec = self.spec
        stmt, names, out_keys, post_region_cols = sel.stmt, sel.names, sel.out_keys, sel.post_region_cols
        postfilter, check_calib, python_dedupe = sel.postfilter, sel.check_calib, sel.dedupe_in_python
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

        def overlapping(row: Any) -> bool:
            # Plain loops, not any(<generator>): this runs once per candidate row.
            for a, b in joins:
                ra, rb = row[a], row[b]
                if ra is None or rb is None or region(ra).overlaps(region(rb)) is False:
                    return False
            for c, r in wheres:
                rc = row[c]
                if rc is None or region(rc).overlaps(r) is False:
                    return False
            return True

        w_n = position.get("w_n")
        for row in rows:
            if postfilter and not overlapping(row):
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
            if not spec.with_implied:
                return [DataCoordinate(group, tuple(r), False) for r in rows]
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
            refs.append(DatasetRef(dt, DataCoordinate(group, tuple(row[2:]), spec.with_implied), run, row[0]))
        return refs
