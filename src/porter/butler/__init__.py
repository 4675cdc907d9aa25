"""The Butler facade: the object users hold, keeping registry and datastore consistent."""

from ._butler import Butler
from ._collections import ButlerCollections
from ._deferred import DeferredDatasetHandle
from ._ingest import FileDataset
from ._query import DataCoordinateQueryResults, DatasetRefQueryResults, DimensionRecordQueryResults, Query
from ._repo_config import RepoConfig

__all__ = [
    "Butler",
    "ButlerCollections",
    "DataCoordinateQueryResults",
    "DatasetRefQueryResults",
    "DeferredDatasetHandle",
    "DimensionRecordQueryResults",
    "FileDataset",
    "Query",
    "RepoConfig",
]
