"""The SQL registry: dimension records, dataset types, datasets, collections and queries."""

from ._collection_type import CollectionType
from ._collections import CollectionInfo
from ._dataset_ref import DatasetRef, new_dataset_id_hexes
from ._dataset_type import DatasetType
from ._db import Database
from ._defaults import GovernorDefaults, RegistryDefaults, merge_data_id, pop_data_id
from ._expand import attach_records
from ._explain import explain_no_results, explainer
from ._registry import Registry

__all__ = [
    "CollectionInfo",
    "CollectionType",
    "Database",
    "DatasetRef",
    "DatasetType",
    "GovernorDefaults",
    "Registry",
    "RegistryDefaults",
    "attach_records",
    "explain_no_results",
    "explainer",
    "merge_data_id",
    "new_dataset_id_hexes",
    "pop_data_id",
]
