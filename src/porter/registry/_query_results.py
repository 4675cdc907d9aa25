"""Results of ``registry.queryDatasets/queryDataIds/queryDimensionRecords``, chained as in daf_butler.

Rubin code refines a registry query before reading it:
``registry.queryDataIds(["visit"], …).expanded().order_by("visit").limit(10)``,
``….count()``, ``….any()``, ``for refs in results.byParentDatasetType(): …``.
Each refinement returns a new results object; nothing runs until the
results are iterated (or counted), and then once: a results object keeps
what it read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from ..core import DatasetRef
from ..dimensions import DataCoordinate, DimensionGroup, DimensionRecord

__all__ = [
    "DataCoordinateQueryResults",
    "DatasetQueryResults",
    "DimensionRecordQueryResults",
    "QueryOptions",
]

T = TypeVar("T")


@dataclass(frozen=True)
class QueryOptions:
    """The refinements a results object carries to the query it runs."""

    order_by: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0
    with_records: bool = False


Runner = Callable[[QueryOptions], list[Any]]
"""Runs the query with the given refinements (the registry's own query method, bound to the constraints)."""

Explainer = Callable[[], list[str]]
"""Possible reasons the query is empty (see `porter.registry._explain`)."""


@dataclass
class _Results(Generic[T]):
    _run: Runner
    _explain: Explainer
    _options: QueryOptions = field(default_factory=QueryOptions)
    _rows: list[T] | None = None

    def _refined(self, **changes: Any) -> Any:
        return replace(self, _options=replace(self._options, **changes), _rows=None)

    def _all(self) -> list[T]:
        if self._rows is None:
            options = self._options
            if options.offset:
                wanted = None if options.limit is None else options.limit + options.offset
                rows = self._run(replace(options, limit=wanted))[options.offset :]
            else:
                rows = self._run(options)
            self._rows = rows
        return self._rows

    def __iter__(self) -> Iterator[T]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index: int) -> T:
        return self._all()[index]

    def __bool__(self) -> bool:
        return bool(self._all())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._all()!r})"

    def order_by(self, *args: str) -> Any:
        """Sort by dimension keys or record fields (``"visit"``, ``"-visit.exposure_time"``)."""
        return self._refined(order_by=tuple(args))

    def limit(self, limit: int | None, offset: int | None = 0) -> Any:
        """At most ``limit`` results, after skipping ``offset``."""
        return self._refined(limit=limit, offset=offset or 0)

    def count(self, *, exact: bool = True, discard: bool = False) -> int:
        """The number of results (porter always counts exactly)."""
        return len(self._all())

    def any(self, *, execute: bool = True, exact: bool = True) -> bool:
        """Whether there is at least one result (runs the query with a limit of one unless already read)."""
        if self._rows is not None:
            return bool(self._rows)
        return bool(self._run(replace(self._options, limit=self._options.offset + 1))[self._options.offset :])

    def explain_no_results(self, execute: bool = True) -> list[str]:
        """Possible reasons the query has no results (empty if it has some)."""
        if self.any():
            return []
        return self._explain()

    def materialize(self) -> Any:
        """daf_butler's temporary-table context manager; here the results are simply read once."""
        import contextlib

        self._all()
        return contextlib.nullcontext(self)


@dataclass(repr=False)
class DataCoordinateQueryResults(_Results[DataCoordinate]):
    """Data IDs from ``registry.queryDataIds``."""

    dimensions: DimensionGroup | None = None

    def expanded(self) -> DataCoordinateQueryResults:
        """The same data IDs with every element's record attached (``d.records["visit"]``)."""
        return self._refined(with_records=True)

    def hasFull(self) -> bool:
        return True

    def hasRecords(self) -> bool:
        return self._options.with_records

    def subset(
        self, dimensions: DimensionGroup | Sequence[str] | None = None, *, unique: bool = False
    ) -> DataCoordinateQueryResults:
        """The data IDs cut down to some of their dimensions (``unique`` drops repeats, keeping order)."""
        target: Any = self.dimensions if dimensions is None else dimensions
        if not isinstance(target, DimensionGroup):
            target = list(target or ())
        parent = self

        def run(options: QueryOptions) -> list[DataCoordinate]:
            rows = [d.subset(target) for d in parent]
            if unique:
                rows = list(dict.fromkeys(rows))
            end = None if options.limit is None else options.offset + options.limit
            return rows[options.offset : end]

        return DataCoordinateQueryResults(run, self._explain, dimensions=self.dimensions)


@dataclass(repr=False)
class DatasetQueryResults(_Results[DatasetRef]):
    """Dataset references from ``registry.queryDatasets`` (one or more dataset types)."""

    by_type: dict[str, DatasetQueryResults] | None = None
    """For a query over several dataset types: the results of each."""

    def expanded(self) -> DatasetQueryResults:
        """The same references with their data IDs' records attached."""
        if self.by_type is not None:
            return DatasetQueryResults(
                self._run,
                self._explain,
                self._options,
                by_type={k: v.expanded() for k, v in self.by_type.items()},
            )
        return self._refined(with_records=True)

    def byParentDatasetType(self) -> Iterator[DatasetQueryResults]:
        """The results of each dataset type in turn (one object for a single-type query)."""
        if self.by_type is None:
            yield self
        else:
            yield from self.by_type.values()

    @property
    def parentDatasetType(self) -> Any:
        """The dataset type of a single-type query's results."""
        rows = self._all()
        return rows[0].dataset_type if rows else None


@dataclass(repr=False)
class DimensionRecordQueryResults(_Results[DimensionRecord]):
    """Dimension records from ``registry.queryDimensionRecords``."""
