"""The datastore: where datasets' bytes live (local files or S3) and how they are written and read."""

from ._datastore import TEMP_AREA, Datastore, WritePlan, WriterBusyError
from ._fsck import ORPHANS_AREA, Finding, FsckReport, fsck
from ._records import DatastoreTables, LocationRow
from ._storage_classes import StorageClass, StorageClassRegistry
from ._templates import DEFAULT_TEMPLATE, PathTemplate
from ._transfer import Adoption, check_transfer_mode, remove_sources, resolve_transfer, transfer_file
from ._uri import S3URI, ArtifactExistsError, LocalURI, ResourceURI, check_datastore_root

__all__ = [
    "DEFAULT_TEMPLATE",
    "ORPHANS_AREA",
    "S3URI",
    "TEMP_AREA",
    "Adoption",
    "ArtifactExistsError",
    "Datastore",
    "DatastoreTables",
    "Finding",
    "FsckReport",
    "LocalURI",
    "LocationRow",
    "PathTemplate",
    "ResourceURI",
    "StorageClass",
    "StorageClassRegistry",
    "WritePlan",
    "WriterBusyError",
    "check_datastore_root",
    "check_transfer_mode",
    "fsck",
    "remove_sources",
    "resolve_transfer",
    "transfer_file",
]
