"""`FileDataset`: a file and the dataset(s) it holds, for ``Butler.ingest`` (local or through a server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import DatasetRef
from ..errors import DatasetTypeError

if TYPE_CHECKING:
    from ..datastore import ResourceURI

__all__ = ["FileDataset"]


@dataclass
class FileDataset:
    """A file and the dataset(s) it holds, for `Butler.ingest`.

    Parameters
    ----------
    path : `str`, `~pathlib.Path` or `ResourceURI`
        The file (a local path, relative to the current directory, or an
        ``s3://`` URI; through a server, a path relative to its datastore's root).
    refs : `DatasetRef` or list of them
        The dataset(s) in the file; usually one.  Make them with
        ``DatasetRef(dataset_type, data_id, run)`` (a new UUID is drawn).
    formatter : `str` or `type`, optional
        The formatter that reads the file; default: the storage class's.
    """

    path: str | Path | ResourceURI
    refs: list[DatasetRef] | DatasetRef = field(default_factory=list)
    formatter: str | type | None = None

    def __post_init__(self) -> None:
        if isinstance(self.refs, DatasetRef):
            self.refs = [self.refs]
        if not self.refs:
            raise DatasetTypeError(
                f"FileDataset({self.path!s}) has no DatasetRef; give the dataset(s) it holds."
            )
