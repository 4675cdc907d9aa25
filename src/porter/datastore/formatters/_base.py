"""What every formatter does: write one in-memory object to a local file, read it back (partially)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .._uri import ResourceURI

__all__ = ["Formatter", "ReadParameterError"]


class ReadParameterError(ValueError):
    """A read parameter (bbox, columns …) that does not fit the stored data."""


class Formatter(ABC):
    """Turns objects of one native storage class into files and back.

    A formatter is named in the datastore's records by its import path, so a
    file is always read by the formatter that wrote it, even after the
    dataset type's storage class configuration changes.  Subclasses set
    ``native`` (the storage class of the objects `write` takes and `read`
    returns), ``extension`` and the read ``parameters`` they honour.
    """

    native: ClassVar[str]
    extension: ClassVar[str]
    parameters: ClassVar[frozenset[str]] = frozenset()
    components: ClassVar[Mapping[str, str]] = {}
    """Parts readable alone (``calexp.wcs``), each with the storage class it is read as."""

    @classmethod
    def import_path(cls) -> str:
        """The name stored in datastore records: porter's own by their public package."""
        if cls.__module__.startswith(__package__ + "."):
            return f"{__package__}.{cls.__qualname__}"
        return f"{cls.__module__}.{cls.__qualname__}"

    @abstractmethod
    def write(self, obj: Any, path: Path) -> str | None:
        """Write ``obj`` (of the ``native`` storage class) to the local file ``path``.

        A formatter that hashes the bytes as it writes them (with
        `porter.datastore._checksum.Hasher`) returns the checksum, which saves
        the datastore reading a large file back; others return None.
        """

    @abstractmethod
    def read(self, uri: ResourceURI, parameters: Mapping[str, Any]) -> Any:
        """Read the artifact at ``uri``; ``parameters`` (already checked) select part of it."""

    def read_component(self, uri: ResourceURI, component: str, parameters: Mapping[str, Any]) -> Any:
        """One of `components` of the artifact at ``uri``.

        By default the whole object is read and the part taken from it;
        formatters override this to read only what the part needs (a FITS
        header for a WCS, a Parquet footer for the column names).
        """
        return getattr(self.read(uri, parameters), component)
