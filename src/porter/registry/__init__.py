"""The SQL registry: dimension records, dataset types, datasets, collections and queries.

The names are loaded on first use (PEP 562, `porter._lazy`): the collection
types and the stdlib-sqlite3 collection reader are importable without
SQLAlchemy, so a CLI command that only lists collections never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them on demand
    from ..core import (
        CollectionInfo,
        CollectionType,
        DatasetRef,
        DatasetType,
        new_dataset_id_hexes,
        select_names,
    )
    from ._collections import check_collection_name
    from ._db import Database
    from ._defaults import GovernorDefaults, RegistryDefaults, merge_data_id, pop_data_id
    from ._expand import attach_records
    from ._explain import explain_no_results, explainer
    from ._registry import Registry
    from ._schema import dataset_index_order
    from ._sqlite_collections import read_sqlite_collections
    from .queries._coverage import CellAxis

_LAZY: dict[str, str] = {
    "CellAxis": ".queries._coverage",
    "CollectionInfo": "..core",
    "select_names": "..core",
    "CollectionType": "..core",
    "check_collection_name": "._collections",
    "DatasetRef": "..core",
    "new_dataset_id_hexes": "..core",
    "DatasetType": "..core",
    "Database": "._db",
    "GovernorDefaults": "._defaults",
    "RegistryDefaults": "._defaults",
    "merge_data_id": "._defaults",
    "pop_data_id": "._defaults",
    "attach_records": "._expand",
    "explain_no_results": "._explain",
    "explainer": "._explain",
    "Registry": "._registry",
    "dataset_index_order": "._schema",
    "read_sqlite_collections": "._sqlite_collections",
}
"""Public name → the module that defines it, imported when the name is first asked for."""

__all__ = [
    "CellAxis",
    "CollectionInfo",
    "CollectionType",
    "Database",
    "DatasetRef",
    "DatasetType",
    "GovernorDefaults",
    "Registry",
    "RegistryDefaults",
    "attach_records",
    "check_collection_name",
    "dataset_index_order",
    "explain_no_results",
    "explainer",
    "merge_data_id",
    "new_dataset_id_hexes",
    "pop_data_id",
    "read_sqlite_collections",
    "select_names",
]

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
