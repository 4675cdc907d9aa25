"""The datastore: where datasets' bytes live (local files or S3) and how they are written and read."""

from ._datastore import TEMP_AREA, Datastore, WritePlan
from ._records import DatastoreTables, LocationRow
from ._storage_classes import StorageClass, StorageClassRegistry
from ._templates import DEFAULT_TEMPLATE, PathTemplate
from ._uri import S3URI, ArtifactExistsError, LocalURI, ResourceURI

__all__ = [
    "DEFAULT_TEMPLATE",
    "S3URI",
    "TEMP_AREA",
    "ArtifactExistsError",
    "Datastore",
    "DatastoreTables",
    "LocalURI",
    "LocationRow",
    "PathTemplate",
    "ResourceURI",
    "StorageClass",
    "StorageClassRegistry",
    "WritePlan",
]
