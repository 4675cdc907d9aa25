"""One dataset's file, written or read with its formatter, with no database behind it.

`Datastore.read` finds a dataset's file through the registry; a `RemoteButler`
has the file already (downloaded through a signed URL) and the names the
server sent with it: formatter and storage class.  Both read the same way,
with the same parameter checks and errors.  For a put through a server, the
client writes the file itself (`write_file`, the same conversions as a local
put) and uploads it; the server files it away as it is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatastoreError, StorageClassError
from ._checksum import checksum_local_file
from ._storage_classes import StorageClass, StorageClassRegistry, import_object
from ._uri import ResourceURI
from .formatters import Formatter, ReadParameterError

__all__ = [
    "WrittenFile",
    "check_read_parameters",
    "formatter_class",
    "formatter_named",
    "read_file",
    "write_file",
]


def formatter_class(name: str | type) -> type[Formatter] | None:
    """The formatter class an import path (or a class) names; `None` if it is not a porter formatter."""
    try:
        cls = import_object(name) if isinstance(name, str) else name
    except Exception:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Formatter) else None


def formatter_named(name: str | type, storage_class: StorageClass | None = None) -> Formatter:
    """A formatter instance from its import path; ``storage_class``'s default for a name porter does not know
    (an export from daf_butler names ``lsst.daf.butler.formatters.…``)."""
    cls = formatter_class(name)
    if cls is not None:
        return cls()
    if storage_class is not None:
        return storage_class.formatter
    raise DatastoreError(f"{name!r} is not a porter Formatter (a subclass of porter.datastore Formatter).")


def check_read_parameters(formatter: Formatter, parameters: Mapping[str, Any], what: str) -> None:
    """`DatastoreError` naming the parameters ``formatter`` does not support, and the ones it does."""
    unknown = sorted(set(parameters) - formatter.parameters)
    if unknown:
        supported = ", ".join(sorted(formatter.parameters)) or "none"
        raise DatastoreError(
            f"{what}: unknown read parameter(s) {unknown}; {type(formatter).__name__} supports: {supported}."
        )


def read_file(
    uri: ResourceURI,
    formatter: str,
    storage_class: str,
    *,
    storage_classes: StorageClassRegistry,
    parameters: Mapping[str, Any] | None = None,
    as_storage_class: str | None = None,
    component: str | None = None,
    what: str,
) -> Any:
    """The object in the file ``uri``, read by ``formatter`` and given as its storage class (or ``as_storage_class``)."""
    stored = storage_classes.get(storage_class)
    reader = formatter_named(formatter, stored)
    parameters = dict(parameters or {})
    check_read_parameters(reader, parameters, what)
    try:
        if component is not None:
            return reader.read_component(uri, component, parameters)
        native = reader.read(uri, parameters)
    except ReadParameterError as exc:
        raise DatastoreError(f"{what}: {exc}") from None
    target = storage_classes.get(as_storage_class) if as_storage_class is not None else stored
    return target.coerce(native)


@dataclass(frozen=True)
class WrittenFile:
    """A file `write_file` wrote: where, by which formatter, and its size and checksum."""

    path: Path
    formatter: str
    size: int
    checksum: str


def write_file(
    obj: Any, storage_class: str, directory: Path, *, storage_classes: StorageClassRegistry, what: str
) -> WrittenFile:
    """Write ``obj`` as a dataset of ``storage_class`` would be written by a put, into a new file in ``directory``.

    ``obj`` is converted as a put converts it (a DataFrame for an ArrowTable);
    a value that cannot be is a `StorageClassError` naming ``what``.
    """
    target = storage_classes.get(storage_class)
    try:
        value = target.coerce(obj)
        native = storage_classes.get(target.formatter.native).coerce(value)
    except StorageClassError as exc:
        raise StorageClassError(f"Cannot put {what}: {exc}") from None
    writer = target.formatter
    fd, name = tempfile.mkstemp(suffix=writer.extension, prefix="porter-put-", dir=directory)
    os.close(fd)
    path = Path(name)
    try:
        writer.write(native, path)
        size, checksum = checksum_local_file(name)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return WrittenFile(path, type(writer).import_path(), size, checksum)
