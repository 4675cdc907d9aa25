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
5. Compile (`_Plan.compile`): the statements are rendered to SQL text with
   their parameters once and the plan is kept, keyed by everything the query
   asks for, so a repeated query goes straight to the database.  Rows are
   read on a plain driver cursor and turned into results by a function
   generated for the plan's row layout: values fixed by the constraints
   (``instrument = 'HSC'``, the one RUN searched) are not sent by the
   database, and implied values (a visit's band and day_obs) are looked up
   once per distinct visit instead of joined onto every row.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

import lsst.sphgeom

from ...core import CollectionType, DatasetRef
from ...dimensions import (
    DataCoordinate,
    DimensionUniverse,
    SkyPixDimension,
    coerce_dimension_value,
    decode_region,
)
from ...errors import InvalidQueryError
from .._collections import CollectionManager
from .._db import Database
from .._dimension_records import record_from_row
from .._schema import RegistrySchema
from ..expr import parse_expression
from ._analysis import apply_governors, constraint_data_id, extract_spatial
from ._factorized import factorize
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
from ._sql import SA_KIT, SqlCompiler, TextKit, Unsupported, member_sql

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
        self._plans = _PlanCache()
        try:
            self.text_kit: Any = TextKit(db.engine.dialect)
        except Unsupported:  # a driver whose parameter style the text kit does not write
            self.text_kit = SA_KIT
        # SQLite returns dataset IDs as the 32 hex digits they are stored as, which is `DatasetRef`'s own
        # form; other databases return UUIDs (or their text), which the constructor normalizes.
        self.hex_dataset_ids = db.dialect == "sqlite"
        self.dialect_paramstyle: str = db.engine.dialect.paramstyle

    # --- entry point -------------------------------------------------------------------------------

    def run(self, spec: QuerySpec) -> list[Any]:
        """Run a query and return data IDs, dataset refs or dimension records."""
        key = _plan_key(spec) if spec.after is None else None  # a page boundary changes every time
        plan = self._plans.get(key) if key is not None else None
        if plan is None:
            try:
                plan = _Plan(self, spec, self.text_kit).compile()
            except Unsupported:  # SQL the text kit does not write (`._sql`): as SQLAlchemy writes it
                plan = _Plan(self, spec, SA_KIT).compile()
            if key is not None:
                self._plans.put(key, plan)
        with _building_results():
            return plan.execute(self, spec)

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

    # --- reading --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def rows(self, snapshot: bool = False) -> Iterator[Callable[[str, Any], list[Any]]]:
        """A function that runs one rendered statement (`render`) and returns its rows as driver tuples.

        On a pooled DBAPI connection used directly: SQLAlchemy's connection, with its BEGIN and COMMIT,
        costs more than a small query.  Inside a write transaction, on that transaction's connection
        (so it sees what the transaction wrote).  ``snapshot``: the statements see one state of the
        database (several statements make one result).
        """
        db = self._db
        current = db._current
        if current is not None:
            yield _fetcher(current.connection)
            return
        raw = db.engine.raw_connection()
        try:
            if snapshot and db.dialect == "sqlite":  # autocommit otherwise (PostgreSQL: a transaction)
                raw.cursor().execute("BEGIN")
                try:
                    with db.time_limited(raw.dbapi_connection):
                        yield _fetcher(raw)
                finally:
                    raw.rollback()
            else:
                with db.time_limited(raw.dbapi_connection):
                    yield _fetcher(raw)
        finally:
            raw.close()  # back to the pool, which rolls back what is open

    def render(self, stmt: Any, parameters: Mapping[str, Any] | None = None) -> tuple[str, Any]:
        """A SQLAlchemy statement as the driver takes it: SQL text and its processed parameters."""
        return Rendering(stmt, self._db.engine.dialect)(parameters)

    def rendering(self, stmt: Any) -> Rendering:
        """``stmt`` compiled once, to render with different parameters."""
        return Rendering(stmt, self._db.engine.dialect)


class Rendering:
    """A statement compiled for one dialect: SQL text and the driver's parameters for given values.

    IN lists are expanded and every value goes through its type's bind processor (a UUID becomes the
    32 hex digits SQLite stores), as SQLAlchemy's own execution would do.
    """

    def __init__(self, stmt: Any, dialect: Any):
        self.compiled = stmt.compile(dialect=dialect)
        self.processors = {}
        for name, bind in self.compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.processors[name] = process

    def __call__(self, parameters: Mapping[str, Any] | None = None) -> tuple[str, Any]:
        """SQL text and parameters (a tuple or a dict, per the dialect's style)."""
        state = self.compiled.construct_expanded_state(dict(parameters) if parameters else None)
        params = dict(state.parameters)
        if self.processors:
            expansion = state.parameter_expansion
            for name, process in self.processors.items():
                for expanded in expansion.get(name, (name,)):
                    if expanded in params:
                        params[expanded] = process(params[expanded])
        if state.positiontup is not None:
            return state.statement, tuple(params[n] for n in state.positiontup)
        return state.statement, params


def _fetcher(dbapi_connection: Any) -> Callable[[str, Any], list[Any]]:
    def fetch(sql: str, params: Any) -> list[Any]:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        except Exception as exc:
            error = evaluation_error(exc)
            if error is None:
                raise
            raise error from exc
        finally:
            cursor.close()

    return fetch


def evaluation_error(exc: BaseException) -> InvalidQueryError | None:
    """The porter error for a database's refusal to evaluate the ``where`` expression on stored values.

    Arithmetic on columns can overflow (PostgreSQL: ``bigint out of range``, ``value out of range:
    overflow`` for a float) for values only the database sees, so it cannot be refused before the SQL
    runs; SQLite gives infinity or a float instead.  Drivers raise their DB-API ``DataError`` for it
    (SQLAlchemy wraps it in one of the same name); anything else is not a query error and is None.
    """
    if not any(c.__name__ == "DataError" for c in type(exc).__mro__):
        return None
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    return InvalidQueryError(
        f"The database could not evaluate the where expression on the stored values ({detail}). "
        "Arithmetic on a column overflowed its type: compare the column with a rearranged literal "
        "instead (visit.exposure_time > 1e300 / 2, not visit.exposure_time * 2 > 1e300)."
    )


# --- the plan cache --------------------------------------------------------------------------------------


class _Uncacheable(Exception):
    pass


_ATOMS = frozenset({int, float, str, bytes, bool, type(None), uuid.UUID})


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a constraint value, typed (``1``, ``1.0`` and ``True`` differ)."""
    t = type(value)
    if t in _ATOMS:
        return (t, value)
    if t is list or t is tuple:
        return (t, tuple(_frozen(v) for v in value))
    if t is set or t is frozenset:
        return (t, frozenset(_frozen(v) for v in value))
    raise _Uncacheable  # regions, times …: planned afresh each time


def _frozen_items(mapping: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, _frozen(v)) for k, v in mapping.items()))


def _plan_key(spec: QuerySpec) -> tuple | None:
    """Everything a plan depends on, or None when a value cannot be compared safely.

    Plans read nothing from the database, so equal keys make the same statements.
    """
    try:
        key = (
            spec.kind,
            spec.dimensions,
            spec.element.name if spec.element is not None else None,
            tuple(
                (
                    s.record.id,
                    s.record.dataset_type.name,
                    s.record.dataset_type.dimensions,
                    s.record.tables.tags.name,
                    s.record.tables.calibs.name,
                    s.find_first,
                    tuple((c.id, c.name, c.type) for c in s.collections),
                )
                for s in spec.searches
            ),
            spec.where,
            _frozen_items(spec.bind),
            _frozen_items(spec.data_id),
            _frozen_items(spec.default_data_id),
            tuple(spec.order_by),
            spec.limit,
            spec.with_implied,
        )
        hash(key)
    except (_Uncacheable, TypeError):
        return None
    return key


class _PlanCache:
    """The most recently used compiled plans of one engine."""

    def __init__(self, size: int = 256):
        self._size = size
        self._plans: OrderedDict[tuple, _Compiled] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> _Compiled | None:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def put(self, key: tuple, plan: _Compiled) -> None:
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)


@contextlib.contextmanager
def _building_results() -> Iterator[None]:
    """The cyclic garbage collector paused while results are built; they then join the oldest generation.

    The objects built (data IDs, refs, their value tuples) form no cycles.  With the collector merely
    paused, the first allocation after it resumes runs a young-generation collection that walks every
    one of them (a quarter of the time it took to build 37,800 refs); ``gc.freeze()`` then
    ``gc.unfreeze()`` move the young generations into the oldest one in constant time instead, where
    two collections would have put them.  Not done when the process uses ``gc.freeze`` itself.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


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
    sources: tuple[tuple[str, int], ...] = ()
    """Where each result value comes from: ("c", column), ("k", constant) or ("i", implied look-up)."""
    constants: tuple[Any, ...] = ()
    run_id: int | None = None
    """The collection ID of every row's run, when it is not selected."""

    @property
    def complete(self) -> bool:
        """Are the statement's rows the answer, with nothing left for Python to filter?"""
        return not (self.postfilter or self.check_calib)


class _Plan:
    """The state of one query while it is analysed, planned and run."""

    def __init__(self, engine: QueryEngine, spec: QuerySpec, kit: Any = SA_KIT):
        self.engine = engine
        self.spec = spec
        self.kit = kit
        """How statements are built: `SA_KIT`, or a `TextKit` writing SQL text (`compile` only)."""
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

    def compile(self) -> _Compiled:
        """Plan the query and render its statements (step 5 of the module docstring)."""
        self.prepare(defer_implied=True)
        if self.deferred_root is None and self.spec.after is None:  # a page boundary is one SQL condition
            factorized = factorize(self)
            if factorized is not None:
                return factorized
        sel = self.select(python=True)
        return _SinglePlan(self, sel)

    def render(self, stmt: Any) -> tuple[str, Any]:
        """A statement built with this plan's kit as SQL text and the driver's parameters."""
        return stmt.statement()() if self.kit.text else self.engine.render(stmt)

    def rendering(self, stmt: Any) -> Callable[..., tuple[str, Any]]:
        """A statement with named parameters (`bindparam`), to render for given values."""
        return stmt.statement() if self.kit.text else self.engine.rendering(stmt)

    def prepare(self, defer_implied: bool = False) -> None:
        """Resolve the constraints and choose the relations (steps 1 to 3 of the module docstring).

        ``defer_implied``: when the results' implied values (band, day_obs …) all follow from one
        dimension's value (visit) whose table the query needs for nothing else, leave that table and
        its implied ones out of the statement and look the values up per distinct visit afterwards
        (`deferred_root`): joining them onto 37,800 rows costs SQLite two index look-ups a row.
        """
        spec = self.spec
        universe = self.universe
        datasets = {s.record.dataset_type.name: s.record.dataset_type.dimensions for s in spec.searches}
        ctx_dims = spec.dimensions.union(*datasets.values())
        where_text = spec.where if isinstance(spec.where, str) else ""  # a caret can point into text only
        ctx = ResolveContext(universe, ctx_dims, datasets, spec.bind, where_text)
        # A typed constraint (expression factory) arrives as the tree the parser would have built.
        if isinstance(spec.where, str):
            tree = parse_expression(spec.where) if spec.where.strip() else None
        else:
            tree = spec.where
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
        refs = [*iter_columns(pred), *(t[0] for t in order_terms)]
        constraint_implied = any(
            isinstance(r, DimKey) and r.dimension in self.full.implied for r in refs
        ) or any(d in self.full.implied for d in spec.dimensions.required)
        self.implied_needed = spec.with_implied or constraint_implied
        fixed = constraint_data_id(pred)
        self.python = defer_implied
        self.fixed = self._typed_fixed(fixed)
        self.constants = {n: self.fixed[n] for n in spec.dimensions.names if n in self.fixed}
        self.deferred_root: str | None = None
        if defer_implied and not constraint_implied:
            root = self._implied_root(refs)
            if root is not None:
                self.implied_needed = False
                self.builder = RelationBuilder(self.schema, universe, fixed, self.kit)
                self._build_relations()
                if root not in self.element_relations:
                    self.deferred_root = root
                    return
                self.implied_needed = True
        self.builder = RelationBuilder(self.schema, universe, fixed, self.kit)
        self._build_relations()

    def _typed_fixed(self, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """Dimension values a top-level equality fixes, where the value has the key's own Python type.

        Every row has exactly that value (what the database would return), so SQL need not send it
        (`constants`: those of result dimensions), and an element all of whose keys are fixed has one
        record.
        """
        out = {}
        dims = self.universe.dimensions
        for name, value in fixed.items():
            if name not in dims:
                continue
            pk_type = dims[name].primary_key.type
            if (pk_type == "int" and type(value) is int) or (pk_type == "string" and type(value) is str):
                out[name] = value
        return out

    def _fixed_element(self, name: str) -> bool:
        """Does the query fix every key of element ``name`` (so its region is one value)?"""
        element = self.universe[name]
        return (
            not isinstance(element, SkyPixDimension)
            and element.has_own_table
            and all(d.name in self.fixed for d in element.required)
        )

    def _implied_root(self, refs: list[Any]) -> str | None:
        """The one dimension of the results that implies all their implied ones, if their look-up can wait.

        Not when the query constrains, orders by or spatially joins anything of those implied
        dimensions' tables, has other dimensions implying any (an exposure as well as a visit: their
        tables must then agree), or a limit (rows dropped for a missing record would shorten it).
        """
        spec = self.spec
        group = spec.dimensions
        if (
            spec.kind not in ("datasets", "data_ids")
            or not spec.with_implied
            or not group.implied
            or spec.limit is not None
            or self.engine.dialect_paramstyle not in ("qmark", "format", "pyformat", "named")
        ):
            return None
        dims = self.universe.dimensions
        full = self.full
        implying = [n for n in full.names if any(i in full for i in dims[n].direct_implies)]
        roots = [n for n in implying if n in group.required]
        if len(roots) != 1:
            return None
        root = roots[0]
        lookup = self.universe.conform([root])
        if (
            set(lookup.implied) != set(group.implied)
            or set(full.implied) != set(group.implied)
            or any(n not in lookup for n in implying)
            or any(n != root and not dims[n].is_governor for n in lookup.required)
            or not set(lookup.required) <= set(group.required)
            or root in self.constants
        ):
            return None
        implied_elements = set(group.implied)
        for r in refs:
            if isinstance(r, DimField) and (
                r.element in implied_elements
                or any(d.name in implied_elements for d in self.universe[r.element].required)
            ):
                return None
        return root

    def _build_relations(self) -> None:
        universe = self.universe
        spec = self.spec
        skypix = universe.common_skypix.name
        self.postfilter_joins = []
        self.postfilter_regions = []
        self.postfilter_fixed: list[tuple[str, str]] = []
        self.sql_conditions = []
        self.semijoins: list[tuple[str, str]] = []
        """(a, b): a spatial join where the constraints fix the one b record, made a semi-join on a's keys."""
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
                fixed_a, fixed_b = self._fixed_element(a), self._fixed_element(b)
                if self.python and fixed_a != fixed_b:
                    # b's keys are constants (their element's table gives them to the query): a's keys
                    # are filtered by the pixels they share with b instead of joined to b's key pairs.
                    self.semijoins.append((b, a) if fixed_a else (a, b))
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
        if self.python:
            # A join with an element the constraints fix (one patch) compares every row's region with
            # that element's one region: read it once, not joined onto every row.
            joins, self.postfilter_joins = self.postfilter_joins, []
            for a, b in joins:
                fixed_a, fixed_b = self._fixed_element(a), self._fixed_element(b)
                if fixed_b and not fixed_a:
                    self.postfilter_fixed.append((a, b))
                elif fixed_a and not fixed_b:
                    self.postfilter_fixed.append((b, a))
                else:
                    self.postfilter_joins.append((a, b))
        # Element tables for referenced fields and region postfilters.
        needed_elements = {r.element for r in refs if isinstance(r, DimField)}
        needed_elements.update(e for pair in self.postfilter_joins for e in pair)
        needed_elements.update(e for e, _ in self.postfilter_fixed)
        needed_elements.update(e for e, _ in self.postfilter_regions)
        if spec.kind == "records" and spec.element is not None:
            needed_elements.add(spec.element.name)
        # A CALIBRATION search is joined to the observation's timespan (`select`): that table belongs in
        # the join from the start (it also gives implied values, which then need no look-up).
        if (
            self.python
            and self.full.temporal
            and any(c.type is CollectionType.CALIBRATION for s in spec.searches for c in s.collections)
        ):
            needed_elements.add(self.full.choose_family_member(self.full.temporal[0]).name)
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
        kit = self.kit
        c = kit.table(c)
        return kit.select(c.c.name).select_from(c).where(c.c.collection_id == id_column).scalar_subquery()

    def select(self, distinct: bool = True, python: bool = False) -> _Select:
        """The plan as one SQL statement (rows may still need region refinement or calibration checks).

        ``python``: the rows are for `_SinglePlan`, not for the database to compose further: values fixed
        by the constraints (and the run, when one RUN is searched) are not selected, nor deferred
        implied values, and ``sources`` says where each result value comes from.
        """
        spec = self.spec
        kit = self.kit
        from_, self.canonical = join_relations(self.relations, kit)
        compiler = SqlCompiler(self.lookup, kit)
        where = [compiler.predicate(self.pred)]
        for item in self.sql_conditions:
            _, dim, ranges = item
            col = self.canonical.get(dim)
            if col is None:
                raise InvalidQueryError(f"{dim} is not available to constrain in this query.")
            where.append(member_sql(kit, col, [], [(b, e - 1, 1) for b, e in ranges]))
        for free, fixed in self.semijoins:
            dims = self.element_relations[free].dims
            keys = [d.name for d in self.universe[free].required if d.name not in self.fixed]
            where.append(
                kit.in_select([dims[k] for k in keys], self.builder.pixel_partners(free, fixed, keys))
            )
        if spec.after is not None:
            after_keys, after_values = spec.after
            columns = [
                self.search_relations[spec.searches[0].record.dataset_type.name].search_cols["dataset_id"]
                if k == "dataset_id"
                else self.canonical[k]
                for k in after_keys
            ]
            where.append(kit.row_after(columns, list(after_values)))
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
                where.append(kit.or_(vb.is_(None), kit.and_(vb < ts[1], ts[0] < ve)))
        # Select list.
        labeled: list[Any] = []
        out_keys: list[str] = []
        result_group = spec.dimensions
        result_keys = result_group.data_coordinate_keys if spec.with_implied else result_group.required
        constants = self.constants if python else {}
        deferred = python and self.deferred_root is not None
        sources: list[tuple[str, int]] = []
        const_values: list[Any] = []
        run_const: int | None = None

        def value_columns() -> None:
            for n in result_keys:
                if n in constants:
                    sources.append(("k", len(const_values)))
                    const_values.append(constants[n])
                elif deferred and n in result_group.implied:
                    sources.append(("i", result_group.implied.index(n)))
                else:
                    sources.append(("c", len(labeled)))
                    labeled.append(self.canonical[n].label(f"d_{n}"))
                    out_keys.append(f"d_{n}")

        if spec.kind == "data_ids":
            value_columns()
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
            out_keys.append("x_dataset_id")
            if python and len(search.collections) == 1 and search.collections[0].type is CollectionType.RUN:
                run_const = search.collections[0].id
            else:
                labeled.append(rel.search_cols["run_id"].label("x_run_id"))
                out_keys.append("x_run_id")
            value_columns()
        if not labeled:  # every result value is fixed by the constraints: a row says one exists
            labeled.append(kit.literal(1).label("k_exists"))
        post_region_cols: dict[str, str] = {}
        for e in (
            {x for pair in self.postfilter_joins for x in pair}
            | {e for e, _ in self.postfilter_regions}
            | {e for e, _ in self.postfilter_fixed}
        ):
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
        stmt: Any = kit.select(*labeled).select_from(from_).where(*where)
        check_calib = False
        if needs_window:
            assert find_first_search is not None
            rel = self.search_relations[find_first_search.record.dataset_type.name]
            rank = kit.case(
                {c.id: i for i, c in enumerate(find_first_search.collections)},
                value=rel.search_cols["collection_id"],
            )
            partition = [self.canonical[d] for d in self.full.required]
            extra = [kit.row_number(partition, rank).label("w_rn")]
            if any(c.type is CollectionType.CALIBRATION for c in find_first_search.collections):
                extra.append(kit.count_over([*partition, rank]).label("w_n"))
                check_calib = True
            sub = stmt.add_columns(*extra).subquery("ranked")
            stmt = kit.select(*[sub.c[c.name] for c in labeled]).select_from(sub).where(sub.c.w_rn == 1)
            if check_calib:
                stmt = stmt.add_columns(sub.c.w_n)
        postfilter = bool(self.postfilter_joins or self.postfilter_regions or self.postfilter_fixed)
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
            stmt,
            names,
            out_keys,
            post_region_cols,
            postfilter,
            check_calib,
            postfilter and need_distinct,
            tuple(sources),
            tuple(const_values),
            run_const,
        )

    def _need_distinct(self) -> bool:
        spec = self.spec
        if self.postfilter_joins or self.postfilter_regions or self.postfilter_fixed:
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

    def fixed_region(self, name: str) -> Any:
        """The statement reading the region of the one record of element ``name`` the constraints fix."""
        element = self.universe[name]
        t = self.kit.table(self.schema.elements[name])
        keys = [t.c[k] == self.fixed[d.name] for d, k in zip(element.required, element.key_columns)]
        return self.kit.select(t.c.region).select_from(t).where(*keys)

    def implied_lookup(self, sel: _Select) -> _ImpliedLookup:
        """The statement that looks up the deferred implied values of given values of `deferred_root`."""
        root = self.deferred_root
        assert root is not None
        universe = self.universe
        group = self.spec.dimensions
        lookup_group = universe.conform([root])
        kit = self.kit
        builder = RelationBuilder(self.schema, universe, {}, kit)
        # The tables the full plan would have joined for these values: those of dimensions implying
        # others, then one for any dimension none of them gives.
        for name in lookup_group.names:
            if any(i in lookup_group for i in universe.dimensions[name].direct_implies):
                builder.element(name)
        for name in reversed(lookup_group.names):
            if not any(name in r.dims for r in builder.relations):
                builder.element(name)
        from_, canonical = join_relations(builder.relations, kit)
        result_keys = list(group.data_coordinate_keys)
        # The key: the root's governors the constraints leave open, then the root itself.
        key_dims = [
            n for n in lookup_group.required if n != root and sel.sources[result_keys.index(n)][0] == "c"
        ] + [root]
        where = [canonical[n] == self.constants[n] for n in lookup_group.required if n in self.constants]
        where += [canonical[n] == kit.bindparam(f"k_{n}") for n in key_dims if n != root]
        where.append(canonical[root].in_(kit.bindparam("k_values", expanding=True)))
        stmt = (
            kit.select(*[canonical[n] for n in key_dims], *[canonical[n] for n in group.implied])
            .select_from(from_)
            .where(*where)
        )
        key_columns = tuple(sel.sources[result_keys.index(n)][1] for n in key_dims)
        return _ImpliedLookup(self.rendering(stmt), [n for n in key_dims if n != root], key_columns)


# --- compiled plans ------------------------------------------------------------------------------------------

_new = object.__new__
_CONVERTERS: dict[tuple, Callable[..., list[Any]]] = {}
_converters_lock = threading.Lock()


def row_converter(
    kind: str,
    sources: tuple[tuple[str, int], ...],
    n_columns: int,
    n_constants: int,
    id_column: int | None = None,
    run_column: int | None = None,
    key_columns: tuple[int, ...] = (),
    hex_ids: bool = True,
) -> Callable[..., list[Any]]:
    """A function turning driver rows into data IDs or refs, generated for one row layout.

    ``convert(rows, group, constants, lookup, dataset_type, runs, run)``: ``sources`` give each
    data ID value's origin — ``("c", i)`` the row's column i, ``("k", i)`` ``constants[i]``,
    ``("i", i)`` item i of ``lookup[key]`` (``key`` the row's ``key_columns``; rows whose key has no
    entry are dropped, as an inner join would drop them).  For refs, the dataset ID is column
    ``id_column`` and the run ``runs[row[run_column]]`` or ``run``.  Slots are set directly (the
    values come from the database, already of the right types), in one loop without a call per row:
    this is the query engine's hot path.
    """
    signature = (kind, sources, n_columns, n_constants, id_column, run_column, key_columns, hex_ids)
    convert = _CONVERTERS.get(signature)
    if convert is not None:
        return convert
    lines = ["def convert(rows, group, constants, lookup, dataset_type, runs, run):"]
    lines.append("    out = []")
    lines.append("    append = out.append")
    if n_constants:
        lines.append("    " + "".join(f"k{i}, " for i in range(n_constants)) + "= constants")
    lines.append("    for r in rows:")
    if key_columns:
        key = (
            f"r[{key_columns[0]}]"
            if len(key_columns) == 1
            else "(" + ", ".join(f"r[{i}]" for i in key_columns) + ")"
        )
        lines.append(f"        i = lookup.get({key})")
        lines.append("        if i is None:")
        lines.append("            continue")
    if (
        kind == "data_ids"
        and n_columns == len(sources)
        and sources == tuple(("c", i) for i in range(n_columns))
    ):
        values = "r"  # the driver's row tuple is the data ID's values tuple
    else:
        items = [f"r[{i}]" if tag == "c" else f"k{i}" if tag == "k" else f"i[{i}]" for tag, i in sources]
        values = "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    lines.append("        d = new(DataCoordinate)")
    lines.append("        d.dimensions = group")
    lines.append(f"        d._values = {values}")
    if kind == "data_ids":
        lines.append("        append(d)")
    else:
        run_expr = "run" if run_column is None else f"runs[r[{run_column}]]"
        if hex_ids:
            lines.append("        ref = new(DatasetRef)")
            lines.append("        ref.dataset_type = dataset_type")
            lines.append("        ref.data_id = d")
            lines.append(f"        ref.run = {run_expr}")
            lines.append(f"        ref._hex = r[{id_column}]")
            lines.append("        ref._id = None")
            lines.append("        append(ref)")
        else:
            lines.append(f"        append(DatasetRef(dataset_type, d, {run_expr}, r[{id_column}]))")
    lines.append("    return out")
    namespace: dict[str, Any] = {"new": _new, "DataCoordinate": DataCoordinate, "DatasetRef": DatasetRef}
    exec("\n".join(lines), namespace)  # only integers and fixed names go into the text
    convert = namespace["convert"]
    with _converters_lock:
        _CONVERTERS[signature] = convert
    return convert


class _RunNames(dict[int, str]):
    """Collection ID -> run name, asking the collection manager only for IDs not seen yet."""

    def __init__(self, collections: CollectionManager):
        super().__init__()
        self._collections = collections

    def __missing__(self, collection_id: int) -> str:
        name = self._collections.get_by_id(collection_id).name
        self[collection_id] = name
        return name


class _Compiled(Protocol):
    """A query ready to run: rendered statements and what turns their rows into results
    (`_SinglePlan`, `FactorizedPlan`)."""

    def execute(self, engine: QueryEngine, spec: QuerySpec) -> list[Any]:
        """Run the statements and build the results (``spec`` is the query's, equal to the planned one)."""


_IN_CHUNK = 900
"""Values per IN list of a look-up (SQLite before 3.32 allows 999 parameters)."""


class _ImpliedLookup:
    """Deferred implied values (band, day_obs …) of the distinct values of one dimension (visit) among rows."""

    def __init__(
        self, rendering: Callable[..., tuple[str, Any]], governors: list[str], key_columns: tuple[int, ...]
    ):
        self.rendering = rendering
        self.governors = governors
        """The root's governors that are not constants: part of the key, one statement per value."""
        self.key_columns = key_columns
        """Row columns of the key: the governors', then the root's."""

    def fetch(self, fetch: Callable[[str, Any], list[Any]], rows: list[Any]) -> tuple[dict, bool]:
        """The implied values of every key among ``rows``, as one tuple per key.

        Keyed by the root's value alone (second item True) when no value of it appears with two
        governor values among the rows (always, with one instrument), which saves making a key per row.
        """
        *gov_columns, root_column = self.key_columns
        roots = itemgetter(root_column)
        groups: dict[tuple, set] = {}
        by_root = True
        if not gov_columns:
            groups[()] = set(map(roots, rows))
        else:
            govs = set(map(itemgetter(*gov_columns), rows))  # values, or tuples of them for several
            if len(govs) == 1:
                (gov,) = govs
                groups[(gov,) if len(gov_columns) == 1 else gov] = set(map(roots, rows))
            else:
                pairs = set(map(itemgetter(*gov_columns, root_column), rows))
                for p in pairs:
                    groups.setdefault(p[:-1], set()).add(p[-1])
                by_root = len({p[-1] for p in pairs}) == len(pairs)
        out: dict[Any, tuple] = {}
        n_gov = len(gov_columns)
        for gov_values, values in groups.items():
            params = {f"k_{g}": v for g, v in zip(self.governors, gov_values)}
            keys = list(values)
            for start in range(0, len(keys), _IN_CHUNK):
                params["k_values"] = keys[start : start + _IN_CHUNK]
                for row in fetch(*self.rendering(params)):
                    out[row[n_gov] if by_root else row[: n_gov + 1]] = row[n_gov + 1 :]
        return out, by_root


class _Refine:
    """Python's part of a statement's rows: exact region overlaps, ambiguous calibrations, duplicates."""

    def __init__(self, plan: _Plan, sel: _Select):
        position = {n: i for i, n in enumerate(sel.names)}
        cols = sel.post_region_cols
        self.postfilter = sel.postfilter
        self.joins = [(position[cols[a]], position[cols[b]]) for a, b in plan.postfilter_joins]
        self.wheres = [(position[cols[e]], region) for e, region in plan.postfilter_regions]
        self.fixed_wheres = [(position[cols[a]], b) for a, b in plan.postfilter_fixed]
        self.w_n = position.get("w_n")
        self.n_out = len(sel.out_keys)
        self.dedupe = sel.dedupe_in_python
        self.limit = plan.spec.limit

    def __call__(self, rows: list[Any], fixed_regions: Mapping[str, Any]) -> list[Any]:
        """The rows that pass; ``fixed_regions``: the regions of the elements the constraints fix."""
        postfilter, w_n, n_out, dedupe, limit = self.postfilter, self.w_n, self.n_out, self.dedupe, self.limit
        joins = self.joins
        wheres = self.wheres + [(c, fixed_regions[e]) for c, e in self.fixed_wheres]
        decoded: dict[bytes, Any] = {}
        decode = lsst.sphgeom.Region.decode

        def region(raw: Any) -> Any:
            r = decoded.get(raw)
            if r is None:
                r = decode(raw if type(raw) is bytes else bytes(raw))
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

        if postfilter and limit is None and not joins and len(wheres) == 1:
            # The usual case (visits overlapping one patch), in one loop without a call per row.
            ((c, target),) = wheres
            passed: list[Any] = []
            append = passed.append
            for row in rows:
                raw = row[c]
                if raw is None:
                    continue
                r = decoded.get(raw)
                if r is None:
                    r = decoded[raw] = decode(raw if type(raw) is bytes else bytes(raw))
                if r.overlaps(target) is not False:
                    append(row)
            rows, postfilter = passed, False
            if w_n is None and not dedupe:
                return rows
        results: list[Any] = []
        seen: set[tuple] = set()
        for row in rows:
            if postfilter and not overlapping(row):
                continue
            if w_n is not None and row[w_n] > 1:
                raise InvalidQueryError(
                    "Ambiguous calibration lookup: more than one validity range matches a data ID; add a "
                    "temporal constraint (e.g. an exposure or visit) or a time range."
                )
            if dedupe:
                key = tuple(row[:n_out])
                if key in seen:
                    continue
                seen.add(key)
            results.append(row)
            if postfilter and limit is not None and len(results) >= limit:
                break
        return results


class _SinglePlan:
    """One statement; its rows refined in Python if need be, implied values looked up if deferred."""

    def __init__(self, plan: _Plan, sel: _Select):
        engine = plan.engine
        spec = plan.spec
        self.kind = spec.kind
        self.sql, self.params = plan.render(sel.stmt)
        self.refine = None if sel.complete else _Refine(plan, sel)
        self.lookup = plan.implied_lookup(sel) if plan.deferred_root is not None else None
        self.fixed_regions = [(b, *plan.render(plan.fixed_region(b))) for _, b in plan.postfilter_fixed]
        self.constants = sel.constants
        self.run_id = sel.run_id
        self.record_names = [k[2:] for k in sel.out_keys] if spec.kind == "records" else []
        self.layout = (
            spec.kind,
            sel.sources,
            len(sel.names),
            len(sel.constants),
            0 if spec.kind == "datasets" else None,
            None if sel.run_id is not None or spec.kind != "datasets" else 1,
        )
        self.hex_ids = engine.hex_dataset_ids
        self._converters: dict[bool, Callable[..., list[Any]]] = {}

    def converter(self, by_root: bool) -> Callable[..., list[Any]]:
        """The row converter; ``by_root``: implied values keyed by the root's value alone (`_ImpliedLookup`)."""
        convert = self._converters.get(by_root)
        if convert is None:
            key_columns = self.lookup.key_columns if self.lookup is not None else ()
            if by_root:
                key_columns = key_columns[-1:]
            convert = self._converters[by_root] = row_converter(*self.layout, key_columns, self.hex_ids)
        return convert

    def execute(self, engine: QueryEngine, spec: QuerySpec) -> list[Any]:
        lookup = self.lookup
        with engine.rows(snapshot=lookup is not None or bool(self.fixed_regions)) as fetch:
            fixed: dict[str, Any] = {}
            for element, sql, params in self.fixed_regions:
                found = fetch(sql, params)
                if not found or found[0][0] is None:  # no record, or no region: nothing overlaps it
                    return []
                raw = found[0][0]
                fixed[element] = decode_region(raw if type(raw) is bytes else bytes(raw))
            rows = fetch(self.sql, self.params)
            if self.refine is not None:
                rows = self.refine(rows, fixed)
            implied, by_root = lookup.fetch(fetch, rows) if lookup is not None and rows else ({}, False)
        if self.kind == "records":
            assert spec.element is not None
            return records_from_rows(spec.element, self.record_names, rows)
        convert = self.converter(by_root)
        if self.kind == "data_ids":
            return convert(rows, spec.dimensions, self.constants, implied, None, None, None)
        collections = engine._collections
        run = collections.get_by_id(self.run_id).name if self.run_id is not None else None
        dataset_type = spec.searches[0].record.dataset_type
        return convert(
            rows, spec.dimensions, self.constants, implied, dataset_type, _RunNames(collections), run
        )


def records_from_rows(element: Any, names: list[str], rows: Sequence[Any]) -> list[Any]:
    """Driver rows of an element's table (columns ``names``) to dimension records."""
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
    n_names = len(names)
    out = []
    for row in rows:
        if bools or blobs:
            row = list(row[:n_names])
            for i in bools:
                if row[i] is not None:
                    row[i] = bool(row[i])
            for i in blobs:
                if row[i] is not None:
                    row[i] = bytes(row[i])
        out.append(record_from_row(element, dict(zip(names, row))))
    return out
