"""The SQL registry: dimension records, dataset types, datasets, collections and queries."""

from ._collection_type import CollectionType
from ._collections import CollectionInfo
from ._dataset_ref import DatasetRef
from ._dataset_type import DatasetType
from ._registry import Registry

__all__ = ["CollectionInfo", "CollectionType", "DatasetRef", "DatasetType", "Registry"]
