"""daf_butler's camelCase registry names, so Rubin scripts run with a changed import.

``butler.registry.queryDatasets(...)``, ``insertDimensionData(...)``,
``registerRun(...)`` and friends are still what many Rubin scripts call;
these delegate to porter's snake_case methods with daf_butler's argument
conventions (``findFirst``, ``dataId``, ``*records``, ``datasetType`` …).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..dimensions import DataCoordinate, DimensionElement, DimensionRecord, DimensionUniverse, Timespan
from ._collection_type import CollectionType
from ._dataset_ref import DatasetRef
from ._dataset_type import DatasetType

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
        dataId: Mapping[str, Any] | None = None,
        *,
        collections: Sequence[str],
        timespan: Timespan | None = None,
        **kwargs: Any,
    ) -> DatasetRef | None:
        return _r(self).find_dataset(
            datasetType, dataId, collections=collections, timespan=timespan, **kwargs
        )

    def getDataset(self, id: Any) -> DatasetRef | None:
        return _r(self).get_dataset(id)

    def removeDatasets(self, refs: Iterable[DatasetRef]) -> None:
        _r(self).remove_datasets(refs)

    def queryDatasets(
        self,
        datasetType: str | DatasetType,
        *,
        collections: Any,
        dimensions: Any = None,
        dataId: Mapping[str, Any] | None = None,
        where: str = "",
        findFirst: bool = False,
        bind: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[DatasetRef]:
        """daf_butler's ``registry.queryDatasets`` (note its default ``findFirst=False``)."""
        return _r(self).query_datasets(
            datasetType, collections, find_first=findFirst, data_id=dataId, where=where, bind=bind, **kwargs
        )

    def queryDataIds(
        self,
        dimensions: Iterable[str] | str,
        *,
        dataId: Mapping[str, Any] | None = None,
        datasets: Any = None,
        collections: Any = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[DataCoordinate]:
        return _r(self).query_data_ids(
            dimensions,
            data_id=dataId,
            datasets=datasets,
            collections=collections,
            where=where,
            bind=bind,
            **kwargs,
        )

    def expandDataId(
        self,
        dataId: Mapping[str, Any] | None = None,
        *,
        dimensions: Any = None,
        **kwargs: Any,
    ) -> DataCoordinate:
        """daf_butler's ``registry.expandDataId``: implied values and records attached."""
        return _r(self).expand_data_id(dataId, dimensions=dimensions, **kwargs)

    def queryDimensionRecords(
        self,
        element: str | DimensionElement,
        *,
        dataId: Mapping[str, Any] | None = None,
        datasets: Any = None,
        collections: Any = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[DimensionRecord]:
        return _r(self).query_dimension_records(
            element,
            data_id=dataId,
            datasets=datasets,
            collections=collections,
            where=where,
            bind=bind,
            **kwargs,
        )
