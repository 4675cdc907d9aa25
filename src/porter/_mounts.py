"""Which filesystem holds a path: for messages about a full disk that name it (`StorageFullError`)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["mount_point"]


def mount_point(path: str | os.PathLike[str]) -> str:
    """The mount point of the filesystem holding ``path`` (or its nearest existing parent).

    A full-disk message names the mount point, not just the file: that is
    what a person frees space on, and what ``df`` lists.
    """
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return str(here)
