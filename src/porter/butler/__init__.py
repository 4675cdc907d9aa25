"""The Butler facade: the object users hold, keeping registry and datastore consistent.

The names are loaded on first use (PEP 562, `porter._lazy`), so that
`read_collection_infos` and `RepoConfig` are importable without the registry's
SQLAlchemy layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them on demand
    from ._butler import Butler
    from ._collection_listing import read_collection_infos
    from ._collections import ButlerCollections
    from ._deferred import DeferredDatasetHandle
    from ._direct_butler import DirectButler
    from ._file_dataset import FileDataset
    from ._query import DataCoordinateQueryResults, DatasetRefQueryResults, DimensionRecordQueryResults, Query
    from ._remote_butler import RemoteButler
    from ._repo_config import RepoConfig

_LAZY: dict[str, str] = {
    "Butler": "._butler",
    "DirectButler": "._direct_butler",
    "RemoteButler": "._remote_butler",
    "read_collection_infos": "._collection_listing",
    "ButlerCollections": "._collections",
    "DeferredDatasetHandle": "._deferred",
    "FileDataset": "._file_dataset",
    "DataCoordinateQueryResults": "._query",
    "DatasetRefQueryResults": "._query",
    "DimensionRecordQueryResults": "._query",
    "Query": "._query",
    "RepoConfig": "._repo_config",
}
"""Public name → the module that defines it, imported when the name is first asked for."""

__all__ = [
    "Butler",
    "ButlerCollections",
    "DataCoordinateQueryResults",
    "DatasetRefQueryResults",
    "DeferredDatasetHandle",
    "DimensionRecordQueryResults",
    "DirectButler",
    "FileDataset",
    "Query",
    "RemoteButler",
    "RepoConfig",
    "read_collection_infos",
]

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
