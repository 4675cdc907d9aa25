"""Bringing existing files into the datastore: the transfer modes of ``ingest``, ``import_`` and ``transfer_from``.

The modes are daf_butler's:

``copy``
    copy the file to its templated place in the datastore;
``move``
    the same, and delete the source once the datasets are registered;
``hardlink`` / ``symlink`` / ``relsymlink``
    a hard link, an absolute or a relative symbolic link at the templated
    place (local files and a local datastore only);
``link``
    a hard link, or a symbolic link where a hard link is impossible
    (another file system);
``direct``
    the file stays where it is and the datastore records its absolute
    URI; porter never deletes it;
``auto``
    a file already inside the datastore stays in place; otherwise ``link``
    between local paths and ``copy`` when S3 is involved.

A file already inside the datastore root is adopted in place by ``direct``
and ``auto`` (recorded by its relative path, so it moves with the root).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatastoreError
from ._checksum import checksum_local_file, checksum_stream
from ._records import ADOPTING, WRITING
from ._storage_classes import StorageClass
from ._uri import ArtifactExistsError, LocalURI, ResourceURI
from .formatters import Formatter

__all__ = [
    "IN_PLACE",
    "TRANSFER_MODES",
    "Adoption",
    "check_transfer_mode",
    "resolve_transfer",
    "transfer_file",
]

TRANSFER_MODES = ("auto", "copy", "move", "link", "symlink", "relsymlink", "hardlink", "direct")
IN_PLACE = "in-place"
"""The resolved mode of a file that stays where it is (``direct``, or any file already in the datastore)."""

_LINKS = ("link", "symlink", "relsymlink", "hardlink")


@dataclass
class Adoption:
    """One existing file becoming the artifact of one or more datasets."""

    source: ResourceURI
    mode: str  # a resolved mode: copy, move, link modes, or IN_PLACE
    path: str  # as recorded: relative to the root, or the absolute URI of an in-place file outside it
    uri: ResourceURI  # where the artifact will be
    formatter: Formatter
    storage_class: StorageClass
    dataset_ids: list[uuid.UUID] = field(default_factory=list)
    size: int = 0
    checksum: str = ""
    written: bool = False

    @property
    def moves_data(self) -> bool:
        """True when bytes are copied or S3 is involved (worth a thread pool); False for a link or an
        in-place file on local disk, a few system calls."""
        return (self.mode not in _LINKS and self.mode != IN_PLACE) or not isinstance(self.uri, LocalURI)

    @property
    def journal_state(self) -> str:
        """``adopting`` for a file porter did not create (a crash must not delete it), else ``writing``."""
        return ADOPTING if self.mode == IN_PLACE else WRITING


def check_transfer_mode(mode: str) -> None:
    """Refuse an unknown transfer mode, listing the known ones."""
    if mode not in TRANSFER_MODES:
        raise DatastoreError(f"Unknown transfer mode {mode!r}; choose one of {', '.join(TRANSFER_MODES)}.")


def resolve_transfer(mode: str, source: ResourceURI, root: ResourceURI) -> tuple[str, str | None]:
    """The concrete mode for one file, and its path relative to ``root`` when it is already inside it.

    Raises `DatastoreError` for an unknown mode or one the back ends cannot do.
    """
    check_transfer_mode(mode)
    inside = source.relative_to(root)
    both_local = isinstance(source, LocalURI) and isinstance(root, LocalURI)
    if mode in ("auto", "direct") and inside is not None:
        return IN_PLACE, inside
    if mode == "direct":
        return IN_PLACE, None
    if mode == "auto":
        return ("link" if both_local else "copy"), None
    if mode in _LINKS and not both_local:
        raise DatastoreError(
            f"transfer={mode!r} links files, which needs a local file and a local datastore ({source} → {root}); "
            "use transfer='copy' (or 'move'), or 'direct' to leave the file where it is."
        )
    return mode, None


def transfer_file(adoption: Adoption, made_dirs: set[Path] | None = None) -> None:
    """Put the artifact of ``adoption`` in place (never replacing a file) and measure it.

    For ``move`` the source is only copied or linked here; the caller deletes
    it after the datasets are registered, so a failure loses nothing.
    """
    a = adoption
    if a.mode == IN_PLACE:
        try:
            _measure(a, a.source)
        except FileNotFoundError:
            raise DatastoreError(f"Cannot ingest {a.source}: the file does not exist.") from None
        return
    dest = a.uri
    if isinstance(dest, LocalURI):
        parent = dest.path.parent
        if made_dirs is None or parent not in made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            if made_dirs is not None:
                made_dirs.add(parent)
    try:
        if a.mode in _LINKS:
            _link(a.mode, a.source, dest)
        elif isinstance(a.source, LocalURI) and isinstance(dest, LocalURI) and a.mode == "move":
            _link_or_copy(a.source.path, dest)
        else:
            with a.source.as_local() as local:
                dest.upload(local, exclusive=True)
    except ArtifactExistsError:
        raise
    except FileExistsError:
        raise ArtifactExistsError(f"{dest} already exists; porter does not overwrite it.") from None
    except FileNotFoundError:
        raise DatastoreError(f"Cannot ingest {a.source}: the file does not exist.") from None
    a.written = True
    try:
        _measure(a, a.source if a.mode in _LINKS else dest)
    except FileNotFoundError:
        raise DatastoreError(f"Cannot ingest {a.source}: the file does not exist.") from None


def _link(mode: str, source: ResourceURI, dest: ResourceURI) -> None:
    assert isinstance(source, LocalURI) and isinstance(dest, LocalURI)
    src = source.absolute
    if mode in ("hardlink", "link"):
        try:
            os.link(src, dest.path)
            return
        except (FileExistsError, FileNotFoundError):
            raise
        except OSError:
            if mode == "hardlink":
                raise DatastoreError(
                    f"Cannot hard-link {src} into {dest.path} (another file system?); use transfer='link', "
                    "which falls back to a symbolic link, or 'copy'."
                ) from None
    if not os.path.exists(src):
        raise FileNotFoundError(src)
    target = (
        src if mode != "relsymlink" else os.path.relpath(src, os.path.dirname(os.path.abspath(dest.path)))
    )
    os.symlink(target, dest.path)


def _link_or_copy(src: Path, dest: LocalURI) -> None:
    """A move's first half: a hard link when possible (instant), else an exclusive copy."""
    try:
        os.link(src, dest.path)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError:
        dest.upload(src, exclusive=True)


def _measure(a: Adoption, where: ResourceURI) -> None:
    """Size and checksum of the file (raises `FileNotFoundError` if it is not there)."""
    if isinstance(where, LocalURI):
        a.size, a.checksum = checksum_local_file(where.absolute)
    else:
        a.size = where.size()
        with contextlib.closing(where.open_read()) as stream:
            a.checksum = checksum_stream(stream)


def remove_sources(adoptions: Sequence[Adoption]) -> None:
    """After a committed ``move``: delete the originals."""
    for a in adoptions:
        if a.mode == "move":
            with contextlib.suppress(FileNotFoundError):
                a.source.remove()
