"""A full filesystem, as porter's `StorageFullError`: the one place the datastore translates it.

A write that runs out of space fails in whatever wrote the bytes — a
formatter (Parquet, FITS, YAML, numpy), a copy, a link — each with its own
`OSError`.  `full_filesystem` turns those whose ``errno`` says the space
ran out into one porter error that names the filesystem (its mount point),
the file, and what was being written, and says the write was rolled back:
the callers (`Datastore.write`, `Datastore.adopt`) run inside the put or
ingest sequence, whose failure path deletes every file written and the
journal rows, so nothing is left half-written.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from .._mounts import mount_point
from ..errors import StorageFullError

__all__ = ["FULL_ERRNOS", "full_filesystem"]

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""No space left, quota exceeded, file larger than the filesystem or a process limit allows."""


def _cause(exc: OSError) -> str:
    if exc.errno == errno.EDQUOT:
        return "the disk quota there is exceeded"
    if exc.errno == errno.EFBIG:
        return "the file grew beyond the largest allowed there (a filesystem or process file-size limit)"
    return "no space is left on it"


@contextlib.contextmanager
def full_filesystem(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Raise `StorageFullError` for an out-of-space `OSError` in the block; any other error passes unchanged.

    ``path`` is where the block writes (the error's own file name is not
    used: a copy reports its source); ``what`` names the dataset or file, for people.
    """
    try:
        yield
    except StorageFullError:
        raise
    except OSError as exc:
        if exc.errno not in FULL_ERRNOS:
            raise
        where = os.fspath(path)
        raise StorageFullError(
            f"Cannot write {what}: the filesystem mounted at {mount_point(where)} is full ({_cause(exc)}; "
            f"writing in {where}). Nothing was kept: the write was rolled back. Free space there (or raise "
            "the quota or limit) and run the same command again."
        ) from exc  # the OSError, errno and all, stays as the cause
