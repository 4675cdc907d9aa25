"""Datasets moving with their files: ``export(directory=)``, ``import_(directory=)`` and ``transfer_from``.

All three reuse the ingest sequence (`_ingest.ingest_files`) on the
receiving side, so the same journal makes them crash-safe, and the same
transfer modes apply.  Dimension records and dataset types are written
first, in their own transaction: they are definitions other datasets can
share, idempotent, and needed to name the incoming files by template.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..datastore import (
    Adoption,
    Datastore,
    LocationRow,
    ResourceURI,
    check_transfer_mode,
    resolve_transfer,
    transfer_file,
)
from ..errors import ArtifactMissingError, DatastoreError, ExportFormatError, MissingDatasetTypeError
from ..registry import DatasetRef, Registry
from ._ingest import FileDataset, ingest_files
from ._io import ensure_run
from .transfers import ExportWriter, ImportPlan, apply_contents, apply_definitions, plan_refs

if TYPE_CHECKING:
    from ._butler import Butler
    from ._io import DataIdExpander

__all__ = ["copy_out", "export_files", "import_files", "transfer_datasets"]

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
    """`Butler.import_` with files: definitions, then files + datasets + collections together."""
    root = ResourceURI.from_string(directory)
    refs = plan_refs(plan)
    by_file: dict[str, list[DatasetRef]] = defaultdict(list)
    formatters: dict[str, str | None] = {}
    for ref in refs:
        path, formatter = plan.paths.get(ref.id, (None, None))
        if path is None:
            raise ExportFormatError(
                f"Dataset {ref.id} ({ref.dataset_type.name}) has no path in the export file; import without "
                "directory= to load the registry content only."
            )
        by_file[path].append(ref)
        formatters[path] = formatter
    sources = {
        p: (ResourceURI.from_string(p) if "://" in p or p.startswith("/") else root.join(p)) for p in by_file
    }
    missing = [str(u) for u in sources.values() if not u.exists()]
    if missing:
        raise ArtifactMissingError(
            f"{len(missing)} file(s) named by the export file are not in {directory}, e.g. {missing[0]}; "
            "export with directory= and transfer= to carry the files, or import without directory=."
        )
    apply_definitions(plan, registry, skip_dimensions, step)
    already = datastore.locations([r.id for r in refs])
    datasets = [
        FileDataset(sources[p], group, formatters[p])
        for p, group in by_file.items()
        if not all(r.id in already for r in group)
    ]
    counts: dict[str, int] = {}

    def register(_conn: Any) -> None:
        counts.update(apply_contents(plan, registry, step))

    if datasets:
        ingest_files(registry, datastore, expander, datasets, transfer, register=register)
    else:
        register(None)
    counts["files"] = len(datasets)
    return counts


def transfer_datasets(
    target: Butler,
    source: Butler,
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
    target: Butler,
    source: Butler,
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
