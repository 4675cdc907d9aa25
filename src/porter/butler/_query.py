"""``with butler.query() as q:``: daf_butler's query builder, on porter's query engine.

Pipeline and analysis code written for daf_butler's newer query system builds
a query step by step::

    with butler.query() as q:
        x = q.expression_factory
        q = q.where(x.visit.exposure_time > 30, instrument="HSC")
        refs = list(q.datasets("calexp", collections="HSC/runs/RC2").where("band = 'r'").limit(10))
        ids = q.data_ids(["visit", "detector"]).with_dimension_records().order_by("visit")

Every step returns a new object (nothing is mutated), nothing runs until the
results are iterated, counted or tested, and each run is one registry query:
string and typed constraints are AND-ed into one syntax tree, dataset
searches become joins, and the butler's default collections and governor
values apply as in its other query methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..dimensions import DataCoordinate, DimensionElement, DimensionGroup, DimensionRecord
from ..errors import InvalidQueryError
from ..registry import DatasetRef, DatasetType, explainer
from ..registry.expr import (
    ExpressionFactory,
    Node,
    Predicate,
    ScalarExpression,
    combine_where,
    describe_where,
    parse_expression,
)

if TYPE_CHECKING:
    from ._direct_butler import DirectButler

__all__ = ["DataCoordinateQueryResults", "DatasetRefQueryResults", "DimensionRecordQueryResults", "Query"]


@dataclass(frozen=True)
class _Constraints:
    """The ``where`` terms (text or trees), bind values and data-ID constraints a query has gathered."""

    terms: tuple[str | Node, ...] = ()
    bind: Mapping[str, Any] = field(default_factory=dict)
    data_id: Mapping[str, Any] = field(default_factory=dict)

    def adding(
        self, args: Sequence[Any], bind: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
    ) -> _Constraints:
        terms = list(self.terms)
        binds = dict(self.bind)
        data_id = dict(self.data_id)
        for arg in args:
            if isinstance(arg, str):
                if arg.strip():
                    terms.append(arg)
            elif isinstance(arg, Predicate):
                terms.append(arg.node)
                binds.update(arg.bind)
            elif isinstance(arg, DataCoordinate):
                data_id.update(arg.mapping)
            elif isinstance(arg, Mapping):
                data_id.update(arg)
            else:
                raise InvalidQueryError(
                    f"where() takes 'where' strings, predicates from the expression factory and data IDs, "
                    f"not {type(arg).__name__} ({arg!r})."
                )
        for name, value in (bind or {}).items():
            if name in binds and binds[name] is not value and binds[name] != value:
                raise InvalidQueryError(f"Bind name {name!r} is given two different values; rename one.")
            binds[name] = value
        data_id.update(kwargs)
        return _Constraints(tuple(terms), binds, data_id)

    @property
    def where(self) -> str | Node:
        """One string when the query has just that (errors then point into it), else one tree."""
        if not self.terms:
            return ""
        if len(self.terms) == 1:
            return self.terms[0]
        return combine_where(parse_expression(t) if isinstance(t, str) else t for t in self.terms) or ""

    @property
    def where_text(self) -> str:
        """The constraints as text, typed ones with their values shown (for explanations)."""
        return describe_where(self.where, self.bind)


class Query:
    """A query being built: constraints, joined dataset searches and dimensions; see the module docstring.

    Get one with ``butler.query()`` (a context manager, as in daf_butler).
    """

    def __init__(
        self,
        butler: DirectButler,
        constraints: _Constraints | None = None,
        searches: Mapping[str, Sequence[str]] | None = None,
        dimensions: frozenset[str] = frozenset(),
    ):
        self._butler = butler
        self._constraints = constraints or _Constraints()
        self._searches: dict[str, list[str]] = {k: list(v) for k, v in (searches or {}).items()}
        self._dimensions = dimensions

    def __enter__(self) -> Query:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    @property
    def expression_factory(self) -> ExpressionFactory:
        """Builds typed constraints: ``x.visit.exposure_time > 30``, ``x.band.in_iterable(["g", "r"])``."""
        return ExpressionFactory()

    @property
    def constraint_dimensions(self) -> DimensionGroup:
        """The dimensions the query's joins bring (dataset searches and ``join_dimensions``)."""
        names = set(self._dimensions)
        for name in self._searches:
            names.update(self._butler.get_dataset_type(name).dimensions.names)
        return self._butler.dimensions.conform(names)

    def _with(self, **changes: Any) -> Query:
        return Query(
            self._butler,
            changes.get("constraints", self._constraints),
            changes.get("searches", self._searches),
            changes.get("dimensions", self._dimensions),
        )

    def where(self, *args: Any, bind: Mapping[str, Any] | None = None, **kwargs: Any) -> Query:
        """Add constraints: ``where`` strings, expression-factory predicates, data IDs and keywords."""
        return self._with(constraints=self._constraints.adding(args, bind, kwargs))

    def join_dataset_search(self, dataset_type: str | DatasetType, collections: Any = None) -> Query:
        """Only data IDs that have a ``dataset_type`` dataset in ``collections`` (default: the butler's)."""
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        self._butler.get_dataset_type(name)  # an unknown type is refused now, with a suggestion
        searches = dict(self._searches)
        searches[name] = self._butler._collections_or_default(collections)
        return self._with(searches=searches)

    def join_dimensions(self, dimensions: Iterable[str] | DimensionGroup) -> Query:
        """Bring these dimensions into the query (their values can then be constrained and returned)."""
        names = dimensions.names if isinstance(dimensions, DimensionGroup) else list(dimensions)
        self._butler.dimensions.conform(names)
        return self._with(dimensions=self._dimensions | frozenset(names))

    def datasets(
        self, dataset_type: str | DatasetType, collections: Any = None, *, find_first: bool = True
    ) -> DatasetRefQueryResults:
        """Datasets of one type in ``collections`` (default: the butler's), under this query's constraints."""
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        self._butler.get_dataset_type(name)
        return DatasetRefQueryResults(
            self,
            name=name,
            collections=tuple(self._butler._collections_or_default(collections)),
            find_first=find_first,
        )

    def data_ids(
        self, dimensions: Iterable[str] | DimensionGroup | str | None = None
    ) -> DataCoordinateQueryResults:
        """Data IDs of ``dimensions`` (default: those the query's joins bring) under the constraints."""
        if dimensions is None:
            group = self.constraint_dimensions
        elif isinstance(dimensions, str):
            group = self._butler.dimensions.conform([dimensions])
        elif isinstance(dimensions, DimensionGroup):
            group = dimensions
        else:
            group = self._butler.dimensions.conform(list(dimensions))
        return DataCoordinateQueryResults(self, dimensions=group)

    def dimension_records(self, element: str | DimensionElement) -> DimensionRecordQueryResults:
        """Records of one dimension element under the constraints."""
        e = self._butler.dimensions[element] if isinstance(element, str) else element
        return DimensionRecordQueryResults(self, element=e)

    # --- what the results run -------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        c = self._constraints
        return {
            "where": c.where,
            "bind": dict(c.bind),
            "data_id": dict(c.data_id),
            "default_data_id": self._butler.data_id_defaults,
        }

    def _reasons(self, dataset_types: Sequence[str], collections: Sequence[str]) -> list[str]:
        c = self._constraints
        return explainer(
            self._butler.registry,
            dataset_types=list(dict.fromkeys([*dataset_types, *self._searches])),
            collections=list(collections) or [n for names in self._searches.values() for n in names],
            data_id=c.data_id,
            defaults=self._butler.data_id_defaults,
            where=c.where_text,
        )()


@dataclass(frozen=True)
class _Results:
    """What every result kind of `Query` shares: refinements, counting and explaining."""

    _query: Query
    _order_by: tuple[str, ...] = ()
    _limit: int | None = None
    _offset: int = 0
    _with_records: bool = False

    def _fetch(self, limit: int | None) -> list[Any]:
        raise NotImplementedError

    def _explain(self) -> list[str]:
        raise NotImplementedError

    def _rows(self) -> list[Any]:
        limit = self._limit
        if self._offset:
            limit = None if limit is None else limit + self._offset
            return self._fetch(limit)[self._offset :]
        return self._fetch(limit)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows())

    def where(self, *args: Any, bind: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """These results with more constraints (strings, predicates, data IDs, keywords)."""
        return replace(self, _query=self._query.where(*args, bind=bind, **kwargs))

    def order_by(self, *args: str | ScalarExpression) -> Any:
        """Sorted by dimension keys or record fields (``"-visit"`` or ``x.visit.desc`` descending)."""
        return replace(self, _order_by=tuple(str(a) for a in args))

    def limit(self, limit: int | None = None, offset: int = 0) -> Any:
        """At most ``limit`` results (after skipping ``offset``)."""
        if limit is not None and limit < 0:
            raise InvalidQueryError(
                f"limit({limit}): a query builder's limit is a count; use limit=None for all rows."
            )
        return replace(self, _limit=limit, _offset=offset)

    def count(self, *, exact: bool = True, discard: bool = False) -> int:
        """How many results there are (porter always counts exactly)."""
        return len(self._rows())

    def any(self, *, execute: bool = True, exact: bool = True) -> bool:
        """Whether there is at least one result (a query with a limit of one)."""
        return bool(self._fetch(self._offset + 1)[self._offset :])

    def explain_no_results(self, execute: bool = True) -> list[str]:
        """Possible reasons there are no results (empty when there are some)."""
        return [] if self.any() else self._explain()


@dataclass(frozen=True)
class DatasetRefQueryResults(_Results):
    """Datasets from ``q.datasets(…)``."""

    name: str = ""
    collections: tuple[str, ...] = ()
    find_first: bool = True

    @property
    def dataset_type(self) -> DatasetType:
        return self._query._butler.get_dataset_type(self.name)

    @property
    def data_ids(self) -> DataCoordinateQueryResults:
        """The data IDs of these datasets (the same constraints, joined with this dataset search)."""
        q = self._query.join_dataset_search(self.name, list(self.collections))
        return DataCoordinateQueryResults(q, dimensions=self.dataset_type.dimensions)

    def with_dimension_records(self) -> DatasetRefQueryResults:
        """Each reference's data ID with its records attached (``ref.dataId.records["visit"]``)."""
        return replace(self, _with_records=True)

    expanded = with_dimension_records

    def _fetch(self, limit: int | None) -> list[DatasetRef]:
        q = self._query
        joined = {k: v for k, v in q._searches.items() if k != self.name}
        return q._butler.registry.query_datasets(
            self.name,
            list(self.collections),
            find_first=self.find_first,
            order_by=list(self._order_by) or None,
            limit=limit,
            with_dimension_records=self._with_records,
            datasets=joined or None,
            **q._common(),
        )

    def _explain(self) -> list[str]:
        return self._query._reasons([self.name], self.collections)


@dataclass(frozen=True)
class DataCoordinateQueryResults(_Results):
    """Data IDs from ``q.data_ids(…)``."""

    dimensions: DimensionGroup | None = None

    def with_dimension_records(self) -> DataCoordinateQueryResults:
        """Each data ID with the records of its elements attached."""
        return replace(self, _with_records=True)

    expanded = with_dimension_records

    def _fetch(self, limit: int | None) -> list[DataCoordinate]:
        q = self._query
        assert self.dimensions is not None
        return q._butler.registry.query_data_ids(
            list(self.dimensions.names),
            datasets=dict(q._searches) or None,
            order_by=list(self._order_by) or None,
            limit=limit,
            with_dimension_records=self._with_records,
            **q._common(),
        )

    def _explain(self) -> list[str]:
        return self._query._reasons([], [])


@dataclass(frozen=True)
class DimensionRecordQueryResults(_Results):
    """Dimension records from ``q.dimension_records(…)``."""

    element: DimensionElement | None = None

    def _fetch(self, limit: int | None) -> list[DimensionRecord]:
        q = self._query
        assert self.element is not None
        return q._butler.registry.query_dimension_records(
            self.element,
            datasets=dict(q._searches) or None,
            order_by=list(self._order_by) or None,
            limit=limit,
            **q._common(),
        )

    def _explain(self) -> list[str]:
        return self._query._reasons([], [])
