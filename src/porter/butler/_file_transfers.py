"""Datasets moving with their files: ``export(directory=)``, ``import_(directory=)`` and ``transfer_from``.

All three reuse the ingest sequence (`_ingest.ingest_files`) on the
receiving side, so the same journal makes them crash-safe, and the same
transfer modes apply.  Dimension records and dataset types are written
first, in their own transaction: they are definitions other datasets can
share, idempotent, and needed to name the incoming files by template.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..datastore import (
    Adoption,
    Datastore,
    LocalURI,
    LocationRow,
    ResourceURI,
    check_transfer_mode,
    remove_sources,
    resolve_transfer,
    transfer_file,
)
from ..errors import (
    ArtifactMissingError,
    DatastoreError,
    ExportFormatError,
    MissingDatasetTypeError,
    PorterError,
)
from ..registry import DatasetRef, Registry
from ._file_dataset import FileDataset
from ._ingest import _plan as plan_adoptions
from ._ingest import ingest_files
from ._io import ensure_run
from .transfers import ExportWriter, ImportPlan, apply_contents, apply_definitions, plan_refs

if TYPE_CHECKING:
    from ._direct_butler import DirectButler
    from ._io import DataIdExpander

__all__ = ["confined_source", "copy_out", "export_files", "import_files", "transfer_datasets"]

_EXPORT_MODES = ("copy", "link", "symlink", "relsymlink", "hardlink")


def export_files(
    datastore: Datastore,
    refs: Sequence[DatasetRef],
    directory: str | Path,
    transfer: str,
    writer: ExportWriter,
) -> int:
    """Copy (or link) the files of ``refs`` below ``directory``; record their paths in ``writer``.

    Returns the number of files written.
    """
    placed = copy_out(datastore, refs, directory, transfer)
    for ref_id, (relative, location) in placed.items():
        writer.paths[ref_id] = relative
        writer.formatters[ref_id] = location.formatter
    return len({relative for relative, _ in placed.values()})


def copy_out(
    datastore: Datastore,
    refs: Sequence[DatasetRef],
    directory: str | Path,
    transfer: str,
    *,
    preserve_path: bool = True,
    overwrite: bool = False,
) -> dict[uuid.UUID, tuple[str, LocationRow]]:
    """Copy (or link) the files of ``refs`` below ``directory`` (export, retrieve-artifacts).

    Paths below ``directory`` are the datastore's own relative paths (or, without
    ``preserve_path``, the file names); files ingested with ``direct`` go under
    ``direct/<dataset id>/``.  Datasets without a file are left out.  Returns
    each dataset's path below ``directory`` and its location.
    """
    if transfer not in _EXPORT_MODES:
        raise DatastoreError(
            f"transfer={transfer!r} cannot copy files out of a repository; choose one of {', '.join(_EXPORT_MODES)}."
        )
    dest_root = ResourceURI.from_string(directory)
    found = datastore.locations([r.id for r in refs])
    jobs: dict[str, Adoption] = {}
    placed: dict[uuid.UUID, tuple[str, LocationRow]] = {}
    for ref in refs:
        location = found.get(ref.id)
        if location is None:
            continue  # registered without a file
        source = datastore.uri_of(location.path)
        inside = source.relative_to(datastore.root)
        if inside is None:
            relative = f"direct/{ref.id.hex}/{source.name}"
        else:
            relative = inside if preserve_path else source.name
        placed[ref.id] = (relative, location)
        if relative in jobs:
            if jobs[relative].source != source:
                raise DatastoreError(
                    f"Two files would be written to {relative} in {directory}; keep the paths (preserve_path=True)."
                )
            continue
        mode, _ = resolve_transfer(transfer, source, dest_root)
        jobs[relative] = Adoption(
            source,
            mode,
            relative,
            dest_root.join(relative),
            datastore.formatter(location.formatter),
            datastore.storage_classes.get(location.storage_class),
        )
    if overwrite:
        for job in jobs.values():
            job.uri.remove()
    else:
        clashes = [str(j.uri) for j in jobs.values() if j.uri.exists()]
        if clashes:
            raise DatastoreError(
                f"{len(clashes)} file(s) already exist in {directory}, e.g. {clashes[0]}; nothing was written. "
                "Choose an empty directory or allow overwriting (--clobber)."
            )
    made: set[Path] = set()
    for job in jobs.values():
        transfer_file(job, made)
    return placed


def import_files(
    registry: Registry,
    datastore: Datastore,
    expander: DataIdExpander,
    plan: ImportPlan,
    directory: str | Path,
    transfer: str,
    skip_dimensions: Sequence[str],
    step: Callable[[str], None],
) -> dict[str, int]:
    """`Butler.import_` with files: the whole import (records, types, collections, datasets, files) or nothing.

    Everything that can be refused is refused before a file is touched or a
    row committed: every path must name a readable file inside ``directory``
    (`confined_source`) claimed by one entry of the export, and the registry
    writes are rehearsed in a transaction that is rolled back (which also
    validates every record and association, and lets the path templates see
    the dimension records the import brings).  Then the files are copied
    into place and the same writes are made, with the files' locations, in
    one transaction; if it fails the copied files are removed.
    """
    from ._io import DataIdExpander

    root = ResourceURI.from_string(directory)
    refs = plan_refs(plan)
    by_file = _files_of(plan, refs, directory)
    sources = {
        path: confined_source(root, path, _describe(group), directory) for path, group in by_file.items()
    }
    already = datastore.locations([r.id for r in refs])
    wanted = {p: group for p, group in by_file.items() if not all(r.id in already for r in group)}
    for path, group in wanted.items():
        _check_readable(sources[path], path, _describe(group))
    datasets = [FileDataset(sources[p], group, plan.paths[group[0].id][1]) for p, group in wanted.items()]
    counts: dict[str, int] = {}

    def write(progress: Callable[[str], None]) -> None:
        apply_definitions(plan, registry, skip_dimensions, progress)
        counts.update(apply_contents(plan, registry, progress))

    if not datasets:
        with registry.transaction():
            write(step)
        counts["files"] = 0
        return counts
    # The rehearsal: every registry write, then the files' places (templates need the new records).
    # Silent: progress is reported once, for the writes that stay.
    adoptions: list[Adoption] = []
    try:
        with registry.transaction():
            write(lambda _: None)
            adoptions = plan_adoptions(registry, datastore, DataIdExpander(registry), datasets, transfer)
            raise _Rehearsed
    except _Rehearsed:
        pass
    finally:
        registry.reset_caches()
    created = _missing_directories(adoptions)
    datastore.reserve(adoptions)
    try:
        datastore.adopt(adoptions)
        with registry.db.transaction() as conn:
            counts.clear()
            write(step)
            datastore.record(conn, adoptions)
    except BaseException as exc:
        registry.reset_caches()
        datastore.abandon(adoptions)
        _remove_empty(created)
        if isinstance(exc, OSError) and not isinstance(exc, PorterError):
            raise DatastoreError(
                f"Import from {directory} failed while copying files ({exc}); nothing was imported and "
                "the files already copied were removed. Fix the file named and import again."
            ) from exc
        raise
    remove_sources(adoptions)
    counts["files"] = len(datasets)
    return counts


class _Rehearsed(Exception):
    """Raised to roll back the rehearsal of an import's registry writes."""


def _describe(refs: Sequence[DatasetRef]) -> str:
    """How messages name the dataset(s) of one file: type, data ID and run of the first, and how many more."""
    r = refs[0]
    more = f" (and {len(refs) - 1} more dataset(s) in the same entry)" if len(refs) > 1 else ""
    return f"dataset {r.dataset_type.name} {dict(r.data_id.required)} in run {r.run!r}{more}"


def _files_of(
    plan: ImportPlan, refs: Sequence[DatasetRef], directory: str | Path
) -> dict[str, list[DatasetRef]]:
    """The datasets of each file the export names; a file named by two of its entries is refused.

    daf_butler lists the datasets of a file holding several in one entry
    (lists of IDs and data IDs); two separate entries naming one path would
    make two datasets silently share (and one of them misread) a file.
    """
    by_file: dict[str, list[DatasetRef]] = defaultdict(list)
    claimed_by: dict[str, int] = {}
    for ref in refs:
        path, _ = plan.paths.get(ref.id, (None, None))
        if path is None:
            raise ExportFormatError(
                f"{_describe([ref])} has no path in the export file; import without directory= to load "
                "the registry content only."
            )
        if not isinstance(path, str):
            raise ExportFormatError(
                f"{_describe([ref])} has the path {path!r}, not a string naming a file below {directory}."
            )
        entry = plan.file_records.get(ref.id, -1)
        first = claimed_by.setdefault(path, entry)
        if first != entry:
            raise ExportFormatError(
                f"The export file names {path!r} for {_describe(by_file[path][:1])} and again, in another "
                f"entry, for {_describe([ref])}; a file belongs to one entry. List datasets that share a "
                "file in one entry (lists of dataset_id and data_id), or give each its own file."
            )
        by_file[path].append(ref)
    return by_file


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def confined_source(root: ResourceURI, path: str, what: str, directory: str | Path) -> ResourceURI:
    """The file ``path`` (relative to the export's directory ``root``), refused if it could leave ``root``.

    An export file is data from elsewhere: a path that is absolute, a URI,
    has ``..`` components, or (locally) resolves through a symbolic link to
    somewhere outside the directory would copy an arbitrary file (``/etc/…``,
    another repository's) into this repository.  Every refusal is an
    `ExportFormatError` naming the dataset and the path.
    """
    fix = f"export file paths are relative to the export's directory ({directory}) and stay inside it"
    if not path or any(ord(c) < 32 for c in path):
        raise ExportFormatError(f"{what} has the path {path!r}, which names no file; {fix}.")
    if path.startswith(("/", "\\")) or "://" in path or _WINDOWS_DRIVE.match(path):
        raise ExportFormatError(f"{what} has the absolute path {path!r}; {fix}.")
    parts = path.split("/")
    if ".." in parts or ".." in path.split("\\"):
        raise ExportFormatError(f"{what} has the path {path!r}, which climbs out with '..'; {fix}.")
    relative = "/".join(p for p in parts if p not in ("", "."))
    if not relative:
        raise ExportFormatError(f"{what} has the path {path!r}, which names the directory itself; {fix}.")
    source = root.join(relative)
    if isinstance(source, LocalURI) and isinstance(root, LocalURI):
        base = os.path.realpath(root.path)
        real = os.path.realpath(source.path)
        if os.path.commonpath([base, real]) != base:
            raise ExportFormatError(
                f"{what} has the path {path!r}, a symbolic link (or below one) leading to {real}, outside "
                f"the export's directory; {fix}. Copy the file into the directory (export with "
                "transfer='copy') to import it."
            )
    return source


def _check_readable(source: ResourceURI, path: str, what: str) -> None:
    """Refuse, before anything is written, a file that is missing, not a regular file, or unreadable."""
    if not isinstance(source, LocalURI):
        if not source.exists():
            raise ArtifactMissingError(
                f"{what}: its file {path!r} is not in the export's directory ({source}); export with "
                "directory= and transfer= to carry the files, or import without directory=."
            )
        return
    try:
        mode = os.stat(source.path).st_mode
    except FileNotFoundError:
        raise ArtifactMissingError(
            f"{what}: its file {path!r} is not in the export's directory ({source.path}); export with "
            "directory= and transfer= to carry the files, or import without directory=."
        ) from None
    except OSError as exc:
        raise ExportFormatError(f"{what}: its file {path!r} cannot be examined ({exc.strerror}).") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ExportFormatError(
            f"{what}: its path {path!r} is {kind} ({source.path}), not the dataset's file; point the "
            "entry at the file itself."
        )
    try:
        with open(source.path, "rb"):
            pass
    except OSError as exc:
        raise ExportFormatError(
            f"{what}: its file {path!r} cannot be read ({exc.strerror}); give the importing user read "
            "permission."
        ) from None


def _missing_directories(adoptions: Sequence[Adoption]) -> list[Path]:
    """Local directories the adoptions will create (deepest first), to remove again if the import fails."""
    out: set[Path] = set()
    for a in adoptions:
        if isinstance(a.uri, LocalURI):
            parent = a.uri.path.parent
            while not parent.exists() and parent != parent.parent:
                out.add(parent)
                parent = parent.parent
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(directories: Sequence[Path]) -> None:
    """Remove the directories a failed import created, if still empty (another writer may have used one)."""
    for d in directories:
        with contextlib.suppress(OSError):
            d.rmdir()


def transfer_datasets(
    target: DirectButler,
    source: DirectButler,
    refs: Sequence[DatasetRef],
    transfer: str,
    *,
    skip_missing: bool,
    register_dataset_types: bool,
    transfer_dimensions: bool,
) -> list[DatasetRef]:
    """`Butler.transfer_from`: datasets of ``source`` (with their files) into ``target``, keeping UUIDs."""
    check_transfer_mode(transfer)
    if transfer in ("auto", "move"):
        # Another repository's files are copied: linking would tie this one to it, moving would damage it.
        transfer = "copy"
    refs = list(dict.fromkeys(refs))
    existing = target.registry.datasets.existing_ids([r.id for r in refs])
    refs = [r for r in refs if r.id not in existing]
    locations = source.datastore.locations([r.id for r in refs])
    lacking = [r for r in refs if r.id not in locations]
    if lacking and not skip_missing:
        r = lacking[0]
        raise ArtifactMissingError(
            f"{len(lacking)} dataset(s) have no file in the source repository, e.g. {r.dataset_type.name}@"
            f"{dict(r.data_id.required)} in {r.run!r}; pass skip_missing=True to transfer the others."
        )
    refs = [r for r in refs if r.id in locations]
    if not refs:
        return []
    _bring_definitions(target, source, refs, register_dataset_types, transfer_dimensions)
    by_path: dict[str, list[DatasetRef]] = defaultdict(list)
    for r in refs:
        by_path[locations[r.id].path].append(r)
    datasets = [
        FileDataset(source.datastore.uri_of(path), group, locations[group[0].id].formatter)
        for path, group in by_path.items()
    ]
    return ingest_files(target.registry, target.datastore, target._expander, datasets, transfer)


def _bring_definitions(
    target: DirectButler,
    source: DirectButler,
    refs: Sequence[DatasetRef],
    register_dataset_types: bool,
    transfer_dimensions: bool,
) -> None:
    """Dataset types, runs and (when asked) dimension records the transferred datasets need."""
    registry = target.registry
    with target.transaction():  # all or nothing, registry caches reset on failure
        for dt in {r.dataset_type.name: r.dataset_type for r in refs}.values():
            try:
                have = registry.get_dataset_type(dt.name)
            except MissingDatasetTypeError:
                if not register_dataset_types:
                    raise
                registry.register_dataset_type(dt)
                continue
            if have != dt:
                raise DatastoreError(
                    f"Dataset type {dt.name!r} differs between the repositories ({dt} vs {have}); "
                    "transfer_from will not convert it."
                )
        if transfer_dimensions:
            writer = ExportWriter(source.registry)
            writer.add_dimension_data([r.data_id for r in refs])
            for element in registry.universe.sorted_names(writer.records):
                records = list(writer.records[element].values())
                if records:
                    registry.insert_dimension_records(element, records, skip_existing=True)
        for run in {r.run for r in refs}:
            ensure_run(registry, run, "transferred datasets go to RUN collections of the same name")
