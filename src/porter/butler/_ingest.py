"""Ingest: existing files become datasets (``Butler.ingest``, and the file half of ``import_`` and ``transfer_from``).

The sequence is the put's (see `porter.datastore._records`), for many files
at once: plan every file's place, journal all paths in one transaction,
transfer the files, then register the datasets and their locations in one
more transaction — or undo the transfers.  A ``move`` deletes its sources
only after that transaction committed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy

from ..datastore import Adoption, Datastore, ResourceURI, remove_sources
from ..dimensions import DataCoordinate
from ..errors import DatasetTypeError
from ..registry import DatasetRef, Registry
from ._file_dataset import FileDataset
from ._io import ensure_run

if TYPE_CHECKING:
    from ._io import DataIdExpander

__all__ = ["FileDataset", "ingest_files"]


Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(description, total)`` returns a callable advancing that bar by n."""


def ingest_files(
    registry: Registry,
    datastore: Datastore,
    expander: DataIdExpander,
    datasets: Sequence[FileDataset],
    transfer: str,
    *,
    register: Callable[[sqlalchemy.Connection], None] | None = None,
    progress: Progress | None = None,
) -> list[DatasetRef]:
    """Bring ``datasets``' files into the datastore and register them; all or nothing.

    ``register(conn)``, when given, writes the registry rows instead of the
    default (new datasets in their runs, created if needed), inside the same
    transaction that records the files' locations.  Returns the refs
    ingested.  (``import_`` with files runs the same steps itself, see
    `porter.butler._file_transfers.import_files`: it plans the files' places
    inside a rehearsal of its registry writes.)
    """
    if not datasets:
        return []
    _check_refs(registry, datasets)
    adoptions = _plan(registry, datastore, expander, datasets, transfer)
    datastore.reserve(adoptions)
    refs = [r for fd in datasets for r in fd.refs]  # type: ignore[union-attr]
    try:
        advance = progress("transferring files", len(adoptions)) if progress else None
        datastore.adopt(adoptions, advance)
        with registry.db.transaction() as conn:
            if register is not None:
                register(conn)
            else:
                _register_new(registry, refs)
            datastore.record(conn, adoptions)
    except BaseException:
        registry.reset_caches()
        datastore.abandon(adoptions)
        raise
    remove_sources(adoptions)
    return refs


def _check_refs(registry: Registry, datasets: Sequence[FileDataset]) -> None:
    """Every ref's dataset type must be registered as it is; every file's refs share a storage class."""
    seen: dict[str, Any] = {}
    for fd in datasets:
        refs: list[DatasetRef] = fd.refs  # type: ignore[assignment]
        classes = {r.dataset_type.storage_class_name for r in refs}
        if len(classes) > 1:
            raise DatasetTypeError(
                f"{fd.path}: the datasets of one file must share a storage class (got {sorted(classes)})."
            )
        for r in refs:
            name = r.dataset_type.name
            if name not in seen:
                seen[name] = registry.dataset_types.get_record(name).dataset_type
            if seen[name] != r.dataset_type:
                raise DatasetTypeError(
                    f"{fd.path}: dataset type {name!r} is registered as {seen[name]}, not {r.dataset_type}; "
                    "make the refs with butler.get_dataset_type(name)."
                )


def _plan(
    registry: Registry,
    datastore: Datastore,
    expander: DataIdExpander,
    datasets: Sequence[FileDataset],
    transfer: str,
) -> list[Adoption]:
    """One `Adoption` per file; data IDs are expanded in bulk for the templates that need it."""
    sources = [ResourceURI.from_string(fd.path) for fd in datasets]
    firsts: list[DatasetRef] = [fd.refs[0] for fd in datasets]  # type: ignore[index]
    expanded: dict[int, DataCoordinate] = {}
    if transfer != "direct":  # templated paths: implied values (and records, if named) are needed
        wants_records: dict[str, bool] = {}
        for r in firsts:
            if r.dataset_type.name not in wants_records:
                names = datastore.template_for(r.dataset_type).names
                wants_records[r.dataset_type.name] = any("." in n for n in names)
        for with_records in (False, True):
            positions = [
                i for i, r in enumerate(firsts) if wants_records[r.dataset_type.name] is with_records
            ]
            if positions:
                fulls = expander.expand_many(
                    [firsts[i].data_id for i in positions], with_records=with_records
                )
                expanded.update(zip(positions, fulls))
    out: list[Adoption] = []
    for i, (fd, source) in enumerate(zip(datasets, sources)):
        refs: list[DatasetRef] = fd.refs  # type: ignore[assignment]
        full = expanded.get(i)
        if full is not None:
            head = refs[0]
            refs = [DatasetRef(head.dataset_type, full, head.run, head.id), *refs[1:]]
        records = full.records if full is not None and full.has_records else None
        out.append(datastore.plan_adoption(source, transfer, refs, fd.formatter, records))
    return out


def _register_new(registry: Registry, refs: Sequence[DatasetRef]) -> None:
    """The default registration: new datasets, in RUN collections created if needed."""
    groups: dict[tuple[str, str], list[DatasetRef]] = defaultdict(list)
    for r in refs:
        groups[(r.dataset_type.name, r.run)].append(r)
    for run in {run for _, run in groups}:
        ensure_run(registry, run, "datasets are ingested into RUN collections")
    for (type_name, run), group in groups.items():
        registry.insert_datasets(type_name, [r.data_id for r in group], run, ids=[r.id for r in group])
