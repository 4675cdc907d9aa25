"""Reading and writing datasets: the part of the `Butler` that keeps registry and datastore consistent.

A put registers the dataset and stores its file together or not at all
(see `porter.datastore._records` for the journal that makes a crash safe);
a get finds the dataset (by reference, or by type + data ID through the
collection search path) and reads its file with the formatter that wrote it.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..datastore import (
    Datastore,
    DatastoreTables,
    LocalURI,
    ResourceURI,
    StorageClassRegistry,
    WritePlan,
    WriterBusyError,
)
from ..dimensions import DataCoordinate, DimensionGroup
from ..errors import (
    ArtifactMissingError,
    ConflictingDefinitionError,
    DataIdError,
    MissingCollectionError,
    MissingDatasetError,
    StorageClassError,
)
from ..registry import CollectionType, DatasetRef, DatasetType, Registry, attach_records
from ..registry.expr import ExpressionFactory

if TYPE_CHECKING:
    from ._repo_config import RepoConfig

__all__ = ["DataIdExpander", "open_datastore"]

_PREFETCH = 1_024
"""Sibling data IDs expanded together by `DataIdExpander.expand` (bounded: the cache holds 4,096)."""

_EXPAND_BLOCK = 2_000
"""Data IDs looked up per query by `DataIdExpander.expand_many` (bounds the IN lists and the cross product)."""


def open_datastore(registry: Registry, config: RepoConfig) -> Datastore:
    """The repository's datastore; creates its tables in a repository made before they existed."""
    root_text = config.resolved_datastore_root
    root = ResourceURI.from_string(root_text)
    db = registry.db
    tables = DatastoreTables(db, registry.schema.metadata, registry.schema.dataset)
    with db.reading() as conn:
        import sqlalchemy

        inspector = sqlalchemy.inspect(conn)
        existing = set(inspector.get_table_names(schema=tables.artifact.schema))
        has_writer = tables.artifact.name not in existing or any(
            c["name"] == "writer"
            for c in inspector.get_columns(tables.artifact.name, schema=tables.artifact.schema)
        )
    if not {tables.artifact.name, tables.location.name} <= existing:
        with db.transaction() as conn:
            db.lock_for_schema_change(conn)
            tables.create(conn)
    if not has_writer:  # made before journal rows named their writer (see porter.datastore._recovery)
        with db.transaction() as conn:
            db.lock_for_schema_change(conn)
            columns = sqlalchemy.inspect(conn).get_columns(
                tables.artifact.name, schema=tables.artifact.schema
            )
            if not any(c["name"] == "writer" for c in columns):  # another process may have been first
                tables.add_writer_column(conn)
    storage_classes = StorageClassRegistry.default(config.resolved_storage_class_files)
    return Datastore(root, db, tables, storage_classes, config.templates)


class DataIdExpander:
    """Full data IDs (implied values filled in, records attached when asked), with a cache.

    Path templates name implied dimensions (``band``, ``day_obs``) and record
    fields; finding them costs a query per data ID, and successive puts
    often share data IDs (all the datasets of one visit-detector).
    """

    def __init__(self, registry: Registry, size: int = 4096):
        self._registry = registry
        self._cache: OrderedDict[tuple[DimensionGroup, tuple, bool], DataCoordinate] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._last_miss: dict[DimensionGroup, tuple] = {}  # to guess which dimension puts iterate over

    def expand(self, data_id: DataCoordinate, with_records: bool = False) -> DataCoordinate:
        key = (data_id.dimensions, data_id.required_values, with_records)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        if all(not self._registry.universe.dimensions[n].has_own_table for n in data_id.dimensions.names):
            # Only sky pixels (or nothing): their values are the whole data ID and have no records.
            full = data_id
        else:
            prefetched = self._prefetch(data_id, with_records)
            if prefetched is not None:
                return prefetched
            matches = self._registry.query_data_ids(data_id.dimensions.names, data_id=data_id.required)
            if not matches:
                raise DataIdError(
                    f"No dimension records match the data ID {data_id.required}; insert them (or import an "
                    "export file holding them) before storing datasets with this data ID."
                )
            full = matches[0]
        if with_records:
            full = attach_records(self._registry, [full])[0]
        self._remember(key, full)
        return full

    def _prefetch(self, data_id: DataCoordinate, with_records: bool) -> DataCoordinate | None:
        """Expand the data ID's siblings too (every detector of its visit), in one query.

        Puts come in runs over one dimension (all detectors of a visit); the
        dimension that changed between this miss and the previous one is the
        one left free, so a run costs one query instead of one per put.
        Returns the wanted data ID if the batch held it.
        """
        group = data_id.dimensions
        previous = self._last_miss.get(group)
        self._last_miss[group] = data_id.required_values
        if previous is None:
            return None
        required = group.required
        differing = [i for i, (a, b) in enumerate(zip(previous, data_id.required_values)) if a != b]
        if len(differing) != 1:
            return None
        fixed = {n: v for i, (n, v) in enumerate(zip(required, data_id.required_values)) if i != differing[0]}
        batch = self._registry.query_data_ids(group.names, data_id=fixed, limit=_PREFETCH)
        if with_records:
            batch = attach_records(self._registry, batch)
        wanted = None
        for full in batch:
            self._remember((group, full.required_values, with_records), full)
            if full.required_values == data_id.required_values:
                wanted = full
        return wanted

    def _remember(self, key: tuple[DimensionGroup, tuple, bool], full: DataCoordinate) -> None:
        with self._lock:  # puts from several threads share the cache
            self._cache[key] = full
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)

    def expand_many(
        self, data_ids: Sequence[DataCoordinate], with_records: bool = False
    ) -> list[DataCoordinate]:
        """`expand` for many data IDs with a few set-based queries (an ingest of 10⁵ files).

        Data IDs are grouped by dimensions; each group's full data IDs come
        from one `query_data_ids` per block of values, constrained by
        ``IN`` lists on every required dimension and matched back in memory.
        """
        out: list[DataCoordinate | None] = [None] * len(data_ids)
        by_group: dict[DimensionGroup, list[int]] = {}
        for i, d in enumerate(data_ids):
            if (not d.dimensions.implied and not with_records) or not d.dimensions.names:
                out[i] = d  # nothing to look up
            else:
                by_group.setdefault(d.dimensions, []).append(i)
        for group, positions in by_group.items():
            wanted = {data_ids[i].required_values for i in positions}
            found: dict[tuple, DataCoordinate] = {}
            ordered = sorted(wanted, key=repr)
            for start in range(0, len(ordered), _EXPAND_BLOCK):
                block = ordered[start : start + _EXPAND_BLOCK]
                columns = list(zip(*block))
                x = ExpressionFactory()
                where = ExpressionFactory.all(
                    *(
                        x[name].in_iterable(sorted(set(col), key=repr))
                        for name, col in zip(group.required, columns)
                    )
                )
                for full in self._registry.query_data_ids(group.names, where=where.node, bind=where.bind):
                    if full.required_values in wanted:
                        found[full.required_values] = full
            missing = wanted - found.keys()
            if missing:
                example = dict(zip(group.required, sorted(missing, key=repr)[0]))
                raise DataIdError(
                    f"No dimension records match {len(missing)} of the data IDs, e.g. {example}; insert them "
                    "(or import an export file holding them) before storing datasets with these data IDs."
                )
            fulls = list(found.values())
            if with_records:
                fulls = attach_records(self._registry, fulls)
            by_values = {f.required_values: f for f in fulls}
            for i in positions:
                out[i] = by_values[data_ids[i].required_values]
        return out  # type: ignore[return-value]


def resolve_for_put(
    registry: Registry,
    ref_or_type: DatasetRef | DatasetType | str,
    data_id: Mapping[str, Any] | None,
    run: str | None,
    kwargs: Mapping[str, Any],
) -> tuple[DatasetType, DataCoordinate, str, uuid.UUID]:
    """The dataset type, data ID, run and UUID of a dataset about to be stored."""
    if isinstance(ref_or_type, DatasetRef):
        if data_id is not None or kwargs:
            raise DataIdError("put() with a DatasetRef takes no other data ID; the reference has one.")
        return ref_or_type.dataset_type, ref_or_type.data_id, run or ref_or_type.run, ref_or_type.id
    dataset_type = registry.dataset_types.get_record(ref_or_type).dataset_type
    if run is None:
        raise MissingCollectionError(
            "put() needs a RUN collection: pass run=… or create the butler with Butler(root, run=…)."
        )
    ensure_run(registry, run, "put() writes to RUN collections")
    did = DataCoordinate.standardize(
        data_id, universe=registry.universe, dimensions=dataset_type.dimensions, allow_extra=True, **kwargs
    )
    return dataset_type, did, run, uuid.uuid4()


def ensure_run(registry: Registry, run: str, why: str) -> None:
    """Register ``run`` as a RUN collection if it does not exist; refuse another collection type."""
    info = registry.collections.find(run)
    if info is None:
        registry.collections.register(run, CollectionType.RUN)
    elif info.type is not CollectionType.RUN:
        raise MissingCollectionError(f"{run!r} is a {info.type.name} collection; {why}.")


def put(
    registry: Registry,
    datastore: Datastore,
    expander: DataIdExpander,
    obj: Any,
    dataset_type: DatasetType,
    data_id: DataCoordinate,
    run: str,
    dataset_id: uuid.UUID,
) -> DatasetRef:
    """Store ``obj`` as a new dataset: file and registry rows together, or neither."""
    what = f"{dataset_type.name}@{dict(data_id.required)} in {run!r}"
    storage_class = datastore.storage_classes.get(
        dataset_type.storage_class_name, dataset_type=dataset_type.name
    )
    try:
        value = storage_class.coerce(obj)
        native = datastore.storage_classes.get(storage_class.formatter.native).coerce(value)
    except StorageClassError as exc:
        raise StorageClassError(f"Cannot put {what}: {exc}") from None
    template = datastore.template_for(dataset_type)
    needs_records = any("." in n for n in template.names)
    full = expander.expand(data_id, with_records=needs_records)
    plan = datastore.plan(
        dataset_type, full.mapping, run, dataset_id, records=full.records if needs_records else None
    )
    # No look-up for an existing dataset first: the same type, data ID and run give
    # the same path, whose journal row (a primary key) refuses a second writer, and
    # the registry's unique constraint refuses a dataset registered without a file.
    try:
        return commit_writes(registry, datastore, [plan], [(dataset_type, full, run, native)])[0]
    except WriterBusyError:
        raise  # another process is writing it: nothing exists yet to remove
    except ConflictingDefinitionError as exc:
        raise ConflictingDefinitionError(
            f"{what} already exists; porter never overwrites a dataset. Remove it first "
            f"(butler.prune_datasets) or put into another run. ({exc})"
        ) from None


def clear_interrupted_puts(datastore: Datastore, expander: DataIdExpander, refs: Sequence[DatasetRef]) -> int:
    """Clear journal rows (and partial files) that killed puts of ``refs`` left behind, so they can be put again."""
    paths = []
    for ref in refs:
        template = datastore.template_for(ref.dataset_type)
        needs_records = any("." in n for n in template.names)
        full = expander.expand(ref.data_id, with_records=needs_records)
        plan = datastore.plan(
            ref.dataset_type, full.mapping, ref.run, ref.id, records=full.records if needs_records else None
        )
        paths.append(plan.path)
    return datastore.clear_interrupted_writes(paths) if paths else 0


def commit_writes(
    registry: Registry,
    datastore: Datastore,
    plans: Sequence[WritePlan],
    items: Sequence[tuple[DatasetType, DataCoordinate, str, Any]],
) -> list[DatasetRef]:
    """Reserve, write and register: the crash-safe sequence of a put (see `porter.datastore._records`)."""
    datastore.reserve(plans)
    try:
        for plan, (_, _, _, native) in zip(plans, items):
            datastore.write(plan, native)
        refs: list[DatasetRef] = []
        with registry.db.transaction() as conn:
            for plan, (dataset_type, data_id, run, _) in zip(plans, items):
                refs += registry.datasets.insert(
                    dataset_type, run, [data_id], ids=[plan.dataset_id], records_checked=True
                )
            datastore.record(conn, plans)
    except BaseException:
        registry.reset_caches()
        datastore.abandon(plans)
        raise
    return refs


def find_ref(
    registry: Registry,
    ref_or_type: DatasetRef | DatasetType | str,
    data_id: Mapping[str, Any] | None,
    collections: Sequence[str],
    kwargs: Mapping[str, Any],
    timespan: Any = None,
) -> DatasetRef:
    """The dataset a get/get_uri/exists call means; `MissingDatasetError` naming what was searched."""
    if isinstance(ref_or_type, DatasetRef):
        return ref_or_type
    ref = registry.find_dataset(ref_or_type, data_id, collections=collections, timespan=timespan, **kwargs)
    if ref is None:
        name = ref_or_type if isinstance(ref_or_type, str) else ref_or_type.name
        given = dict(data_id or {}) | dict(kwargs)
        raise MissingDatasetError(
            f"No {name} dataset with data ID {given} in collections {list(collections)}; check the "
            f"collections (porter query-datasets REPO {name} --collections …)."
        )
    return ref


def read(
    datastore: Datastore,
    ref: DatasetRef,
    parameters: Mapping[str, Any] | None,
    storage_class: str | None,
) -> Any:
    location = datastore.locations([ref.id]).get(ref.id)
    what = f"{ref.dataset_type.name}@{dict(ref.data_id.required)} in {ref.run!r} ({ref.id})"
    if location is None:
        raise ArtifactMissingError(
            f"{what} is registered but has no stored file (imported without files, or being written). "
            "Import it with its files (transfer=) or put it again."
        )
    component = ref.dataset_type.component()
    if component is not None:
        return datastore.read(location, what=what, parameters=parameters, component=component)
    target = datastore.storage_classes.get(storage_class) if storage_class is not None else None
    return datastore.read(location, what=what, parameters=parameters, storage_class=target)


def uris(datastore: Datastore, refs: Iterable[DatasetRef]) -> dict[DatasetRef, ResourceURI]:
    refs = list(refs)
    found = datastore.locations([r.id for r in refs])
    out: dict[DatasetRef, ResourceURI] = {}
    for r in refs:
        location = found.get(r.id)
        if location is None:
            raise ArtifactMissingError(
                f"{r.dataset_type.name}@{dict(r.data_id.required)} in {r.run!r} has no stored file."
            )
        out[r] = datastore.uri_of(location.path)
    return out


def is_local_root(datastore: Datastore) -> bool:
    return isinstance(datastore.root, LocalURI)
