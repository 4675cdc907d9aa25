"""The datastore: where datasets' bytes live (local files or S3) and how they are written and read.

The names load on first use (PEP 562, `porter._lazy`): a `RemoteButler` reads a downloaded file with
`read_file` and the storage classes without importing the datastore's SQLAlchemy tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them on demand
    from ._checksum import checksum_file, checksum_stream
    from ._datastore import TEMP_AREA, Datastore, WritePlan, WriterBusyError
    from ._fsck import ORPHANS_AREA, SERVER_AREA, Finding, FsckReport, fsck
    from ._http_uri import SignedHttpURI
    from ._records import DatastoreTables, LocationRow
    from ._single_file import WrittenFile, read_file, write_file
    from ._storage_classes import StorageClass, StorageClassRegistry
    from ._templates import DEFAULT_TEMPLATE, PathTemplate
    from ._transfer import Adoption, check_transfer_mode, remove_sources, resolve_transfer, transfer_file
    from ._uri import S3URI, ArtifactExistsError, LocalURI, ResourceURI, check_datastore_root

_LAZY: dict[str, str] = {
    "Adoption": "._transfer",
    "ArtifactExistsError": "._uri",
    "DEFAULT_TEMPLATE": "._templates",
    "Datastore": "._datastore",
    "DatastoreTables": "._records",
    "Finding": "._fsck",
    "FsckReport": "._fsck",
    "LocalURI": "._uri",
    "LocationRow": "._records",
    "ORPHANS_AREA": "._fsck",
    "SERVER_AREA": "._fsck",
    "PathTemplate": "._templates",
    "ResourceURI": "._uri",
    "S3URI": "._uri",
    "SignedHttpURI": "._http_uri",
    "StorageClass": "._storage_classes",
    "StorageClassRegistry": "._storage_classes",
    "TEMP_AREA": "._datastore",
    "WritePlan": "._datastore",
    "WriterBusyError": "._datastore",
    "WrittenFile": "._single_file",
    "check_datastore_root": "._uri",
    "check_transfer_mode": "._transfer",
    "checksum_file": "._checksum",
    "checksum_stream": "._checksum",
    "fsck": "._fsck",
    "read_file": "._single_file",
    "remove_sources": "._transfer",
    "resolve_transfer": "._transfer",
    "transfer_file": "._transfer",
    "write_file": "._single_file",
}
"""Public name → the module that defines it, imported when the name is first asked for."""

__all__ = [
    "DEFAULT_TEMPLATE",
    "ORPHANS_AREA",
    "S3URI",
    "SERVER_AREA",
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
    "SignedHttpURI",
    "StorageClass",
    "StorageClassRegistry",
    "WritePlan",
    "WriterBusyError",
    "WrittenFile",
    "check_datastore_root",
    "check_transfer_mode",
    "checksum_file",
    "checksum_stream",
    "fsck",
    "read_file",
    "remove_sources",
    "resolve_transfer",
    "transfer_file",
    "write_file",
]

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
