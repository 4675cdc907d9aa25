"""daf_butler's camelCase registry names, so Rubin scripts run with a changed import.

``butler.registry.queryDatasets(...)``, ``insertDimensionData(...)``,
``registerRun(...)`` and friends are still what many Rubin scripts call;
these delegate to porter's snake_case methods with daf_butler's argument
conventions (``findFirst``, ``dataId``, ``*records``, ``datasetType`` …).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..core import CollectionType, DatasetRef, DatasetType
from ..dimensions import DataCoordinate, DimensionElement, DimensionRecord, DimensionUniverse, Timespan
from ._defaults import GovernorDefaults, merge_data_id
from ._explain import explainer
from ._query_results import (
    DataCoordinateQueryResults,
    DatasetQueryResults,
    DimensionRecordQueryResults,
    Explainer,
    QueryOptions,
    Runner,
)

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["RegistryCompatMixin"]


def _r(obj: object) -> Registry:
    """The registry a mixin method runs on (typed for mypy)."""
    return cast("Registry", obj)


class RegistryCompatMixin:
    """camelCase aliases for `Registry` (mixed in; see `porter.registry.Registry`)."""

    @property
    def dimensions(self) -> DimensionUniverse:
        return _r(self).universe

    def insertDimensionData(
        self,
        element: str | DimensionElement,
        *data: Mapping[str, Any] | DimensionRecord,
        skip_existing: bool = False,
        replace: bool = False,
    ) -> None:
        _r(self).insert_dimension_records(element, data, skip_existing=skip_existing, replace=replace)

    def syncDimensionData(
        self,
        element: str | DimensionElement,
        row: Mapping[str, Any] | DimensionRecord,
        update: bool = False,
    ) -> bool:
        """Insert a record unless an identical one exists (``update`` replaces a different one)."""
        e = _r(self).universe[element] if isinstance(element, str) else element
        record = row if isinstance(row, DimensionRecord) else DimensionRecord.from_mapping(e, row)
        existing = _r(self).query_dimension_records(e, data_id=record.data_id.required)
        if existing:
            if existing[0] == record:
                return False
            if not update:
                from ..errors import ConflictingDefinitionError

                raise ConflictingDefinitionError(
                    f"{e.name} record {record.data_id} exists with different values."
                )
        _r(self).insert_dimension_records(e, [record], replace=update)
        return True

    def registerDatasetType(self, datasetType: DatasetType) -> bool:
        return _r(self).register_dataset_type(datasetType)

    def getDatasetType(self, name: str) -> DatasetType:
        return _r(self).get_dataset_type(name)

    def removeDatasetType(self, name: str) -> None:
        _r(self).remove_dataset_type(name)

    def registerRun(self, name: str, doc: str | None = None) -> bool:
        return _r(self).collections.register(name, CollectionType.RUN, doc)

    def registerCollection(
        self, name: str, type: CollectionType = CollectionType.TAGGED, doc: str | None = None
    ) -> bool:
        return _r(self).collections.register(name, type, doc)

    def getCollectionType(self, name: str) -> CollectionType:
        return _r(self).collections.get(name).type

    def getCollectionChain(self, parent: str) -> tuple[str, ...]:
        return _r(self).collections.get(parent).children

    def setCollectionChain(self, parent: str, children: Sequence[str], *, flatten: bool = False) -> None:
        _r(self).collections.set_chain(parent, children, flatten=flatten)

    def removeCollection(self, name: str) -> None:
        _r(self).collections.remove(name)

    def queryCollections(
        self,
        expression: Any = "*",
        datasetType: Any = None,
        collectionTypes: Iterable[CollectionType] | CollectionType | None = None,
        flattenChains: bool = False,
        includeChains: bool | None = None,
    ) -> list[str]:
        return _r(self).collections.query(expression, collectionTypes, flattenChains, includeChains)

    def queryDatasetTypes(self, expression: Any = "*") -> list[DatasetType]:
        return _r(self).query_dataset_types(expression)

    def insertDatasets(
        self,
        datasetType: str | DatasetType,
        dataIds: Iterable[Mapping[str, Any]],
        run: str,
        **kwargs: Any,
    ) -> list[DatasetRef]:
        return _r(self).insert_datasets(datasetType, dataIds, run)

    def findDataset(
        self,
        datasetType: str | DatasetType,
        dataId: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: Any = None,
        timespan: Timespan | None = None,
        datastore_records: bool = False,
        **kwargs: Any,
    ) -> DatasetRef | None:
        """daf_butler's ``registry.findDataset``: default collections and governors when not given."""
        reg = _r(self)
        dt = reg.dataset_types.get_record(datasetType).dataset_type
        merged = merge_data_id(reg.universe, reg.default_data_id(), dataId, kwargs, dt.dimensions)
        ref = reg.find_dataset(
            datasetType, merged, collections=reg.collections_or_default(collections), timespan=timespan
        )
        if ref is None or not dt.dimensions.implied:
            return ref
        full = reg.query_data_ids(dt.dimensions.names, data_id=ref.data_id.required, limit=1)
        return ref.expanded(full[0]) if full else ref

    def getDataset(self, id: Any) -> DatasetRef | None:
        return _r(self).get_dataset(id)

    def removeDatasets(self, refs: Iterable[DatasetRef]) -> None:
        _r(self).remove_datasets(refs)

    def queryDatasets(
        self,
        datasetType: Any,
        *,
        collections: Any = None,
        dimensions: Any = None,
        dataId: Mapping[str, Any] | DataCoordinate | None = None,
        where: str = "",
        findFirst: bool = False,
        bind: Mapping[str, Any] | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> DatasetQueryResults:
        """daf_butler's ``registry.queryDatasets`` (note its default ``findFirst=False``).

        ``datasetType`` is a name, a `DatasetType`, a glob or regex, a list of
        those, or ``...`` for every type; ``collections`` defaults to the
        butler's.  The results are lazy and refine like daf_butler's
        (``.expanded()``, ``.order_by()``, ``.limit()``, ``.byParentDatasetType()``).
        """
        reg = _r(self)
        names = reg.collections_or_default(collections)
        defaults = reg.default_data_id()
        types = _dataset_type_names(reg, datasetType)

        def runner(name: str) -> Runner:
            def run(options: QueryOptions) -> list[DatasetRef]:
                return reg.query_datasets(
                    name,
                    names,
                    find_first=findFirst,
                    data_id=dataId,
                    where=where,
                    bind=bind,
                    order_by=list(options.order_by) or None,
                    limit=options.limit,
                    default_data_id=defaults,
                    with_dimension_records=options.with_records,
                    **kwargs,
                )

            return run

        def explain(subset: Sequence[str]) -> Explainer:
            return explainer(
                reg,
                dataset_types=subset,
                collections=names,
                data_id=dataId,
                kwargs=kwargs,
                defaults=defaults,
                where=where,
            )

        if len(types) == 1:
            return DatasetQueryResults(runner(types[0]), explain(types))
        per_type = {t: DatasetQueryResults(runner(t), explain([t])) for t in types}

        def run_all(options: QueryOptions) -> list[DatasetRef]:
            rows: list[DatasetRef] = []
            for t in types:
                rows += runner(t)(options)
            return rows[: options.limit] if options.limit is not None else rows

        return DatasetQueryResults(run_all, explain(types), by_type=per_type)

    def queryDataIds(
        self,
        dimensions: Iterable[str] | str,
        *,
        dataId: Mapping[str, Any] | DataCoordinate | None = None,
        datasets: Any = None,
        collections: Any = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> DataCoordinateQueryResults:
        """daf_butler's ``registry.queryDataIds``; ``datasets`` search the default collections if none are given."""
        reg = _r(self)
        dims = [dimensions] if isinstance(dimensions, str) else list(dimensions)
        run, explain = _lazy_query(
            reg, reg.query_data_ids, dims, True, datasets, collections, dataId, where, bind, kwargs
        )
        return DataCoordinateQueryResults(run, explain, dimensions=reg.universe.conform(dims))

    def expandDataId(
        self,
        dataId: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        dimensions: Any = None,
        graph: Any = None,
        records: Any = None,
        withDefaults: bool = True,
        **kwargs: Any,
    ) -> DataCoordinate:
        """daf_butler's ``registry.expandDataId``: implied values and records attached, governors defaulted."""
        reg = _r(self)
        dims = dimensions if dimensions is not None else graph
        group = reg.universe.conform(dims) if dims is not None else None
        defaults = reg.default_data_id() if withDefaults else GovernorDefaults()
        merged = merge_data_id(reg.universe, defaults, dataId, kwargs, group)
        return reg.expand_data_id(merged, dimensions=group)

    def queryDimensionRecords(
        self,
        element: str | DimensionElement,
        *,
        dataId: Mapping[str, Any] | DataCoordinate | None = None,
        datasets: Any = None,
        collections: Any = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> DimensionRecordQueryResults:
        """daf_butler's ``registry.queryDimensionRecords``; ``datasets`` search the default collections."""
        reg = _r(self)
        run, explain = _lazy_query(
            reg,
            reg.query_dimension_records,
            element,
            False,
            datasets,
            collections,
            dataId,
            where,
            bind,
            kwargs,
        )
        return DimensionRecordQueryResults(run, explain)


def _lazy_query(
    reg: Registry,
    fetch: Callable[..., list[Any]],
    target: Any,
    with_records: bool,
    datasets: Any,
    collections: Any,
    data_id: Any,
    where: Any,
    bind: Mapping[str, Any] | None,
    kwargs: Mapping[str, Any],
) -> tuple[Runner, Explainer]:
    """What a data-ID or record query of the registry view runs, and why it may be empty, both deferred.

    The defaults (collections for ``datasets``, governor values) are taken
    now, as daf_butler's results capture them when made.
    """
    names = reg.collections_or_default(collections) if datasets else None
    defaults = reg.default_data_id()
    types = _dataset_type_names(reg, datasets) if datasets else []

    def run(options: QueryOptions) -> list[Any]:
        extra = {"with_dimension_records": options.with_records} if with_records else {}
        return fetch(
            target,
            data_id=data_id,
            datasets=types or None,
            collections=names,
            where=where,
            bind=bind,
            order_by=list(options.order_by) or None,
            limit=options.limit,
            default_data_id=defaults,
            **extra,
            **kwargs,
        )

    explain = explainer(
        reg,
        dataset_types=types,
        collections=names or (),
        data_id=data_id,
        kwargs=kwargs,
        defaults=defaults,
        where=where,
    )
    return run, explain


def _dataset_type_names(registry: Registry, expression: Any) -> list[str]:
    """Dataset type names from daf_butler's dataset type expressions (name, type, glob, regex, list, ``...``)."""
    if expression is ...:
        return [t.name for t in registry.query_dataset_types("*")]
    items = [expression] if isinstance(expression, str | DatasetType | re.Pattern) else list(expression)
    names: list[str] = []
    for item in items:
        if isinstance(item, DatasetType):
            names.append(item.name)
        elif isinstance(item, str) and not any(c in item for c in "*?["):
            registry.dataset_types.get_record(
                item
            )  # an unknown name: MissingDatasetTypeError with a suggestion
            names.append(item)
        else:
            names += [t.name for t in registry.query_dataset_types(item)]
    return list(dict.fromkeys(names))
