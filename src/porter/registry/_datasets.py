"""Datasets: registration in runs, tagging, calibration certification, lookup and removal.

All writes are set-based (one executemany per table per chunk), and all run
inside a savepoint so a conflict can be explained without leaving anything
half-written.
"""

from __future__ import annotations

import operator
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy

from .._gc import paused_gc
from ..core import CollectionType, DatasetRef, DatasetType, new_dataset_id_hexes
from ..dimensions import DataCoordinate, DimensionUniverse, Timespan, tai_now_nsec
from ..errors import (
    CollectionTypeError,
    ConflictingDefinitionError,
    DataIdError,
    DatasetTypeError,
    InvalidQueryError,
)
from ._batching import ID_BATCH, batches
from ._collections import CollectionInfo, CollectionManager
from ._data_id_values import required_tuples
from ._dataset_types import DatasetTypeManager, DatasetTypeRecord
from ._db import Database
from ._schema import RegistrySchema

__all__ = ["DatasetManager"]


class DatasetManager:
    """Reads and writes the dataset, tags and calibs tables."""

    def __init__(
        self,
        db: Database,
        schema: RegistrySchema,
        universe: DimensionUniverse,
        collections: CollectionManager,
        dataset_types: DatasetTypeManager,
    ):
        self._db = db
        self._schema = schema
        self._universe = universe
        self._collections = collections
        self._dataset_types = dataset_types

    # --- helpers --------------------------------------------------------------------------------

    def _run(self, run: str) -> CollectionInfo:
        info = self._collections.get(run)
        if info.type is not CollectionType.RUN:
            raise CollectionTypeError(
                f"Datasets are written to RUN collections; {run!r} is {info.type.name}."
            )
        return info

    @staticmethod
    def _now() -> int:
        return tai_now_nsec()

    def _make_refs(
        self, rec: DatasetTypeRecord, run: str, ids: Sequence[str], values: Sequence[tuple]
    ) -> list[DatasetRef]:
        group = rec.dataset_type.dimensions
        dt = rec.dataset_type
        return [DatasetRef(dt, DataCoordinate(group, v, False), run, i) for i, v in zip(ids, values)]

    # --- insertion ---------------------------------------------------------------------------------

    def insert(
        self,
        dataset_type: str | DatasetType,
        run: str,
        data_ids: Iterable[Mapping[str, Any] | DataCoordinate],
        ids: Sequence[uuid.UUID | str] | None = None,
        *,
        records_checked: bool = False,
    ) -> list[DatasetRef]:
        """Register new datasets in a RUN collection and return their references.

        UUIDs are new (version 4) unless ``ids`` gives them.  A data ID that
        already has a dataset of this type in the run is a
        `ConflictingDefinitionError`; a data ID naming a dimension record that
        does not exist is a `DataIdError`.  Either way nothing is written.
        ``records_checked`` skips that last check, for callers that just found
        the data IDs in the registry (a put expands its data ID first).
        """
        with paused_gc():
            return self._insert(dataset_type, run, data_ids, ids, records_checked)

    def _insert(
        self,
        dataset_type: str | DatasetType,
        run: str,
        data_ids: Iterable[Mapping[str, Any] | DataCoordinate],
        ids: Sequence[uuid.UUID | str] | None,
        records_checked: bool = False,
    ) -> list[DatasetRef]:
        rec = self._dataset_types.get_record(dataset_type)
        run_info = self._run(run)
        group = rec.dataset_type.dimensions
        values = required_tuples(group, data_ids)
        if ids is None:
            hexes = new_dataset_id_hexes(len(values))
        elif len(ids) != len(values):
            raise DatasetTypeError(f"Got {len(ids)} dataset IDs for {len(values)} data IDs.")
        else:
            hexes = [i.hex if isinstance(i, uuid.UUID) else uuid.UUID(str(i)).hex for i in ids]
        self._write(rec, run_info, hexes, values, self._now(), check=not records_checked)
        return self._make_refs(rec, run, hexes, values)

    def _write(
        self,
        rec: DatasetTypeRecord,
        run_info: CollectionInfo,
        ids: Sequence[str],
        values: Sequence[tuple],
        ingest_date: int,
        check: bool = True,
    ) -> None:
        """Insert dataset and tags rows; ``ids`` are 32-digit hex UUIDs."""
        if not ids:
            return
        names = rec.dataset_type.dimensions.required
        db = self._db
        keys = ids
        type_id, run_id = rec.id, run_info.id
        try:
            with db.transaction(savepoint=True) as conn:
                if check:
                    self._check_dimension_records(conn, rec, values)
                for chunk in batches(range(len(ids))):
                    db.bulk_insert(
                        conn,
                        self._schema.dataset,
                        ["dataset_id", "dataset_type_id", "run_id", "ingest_date"],
                        [(keys[i], type_id, run_id, ingest_date) for i in chunk],
                    )
                    db.bulk_insert(
                        conn,
                        rec.tables.tags,
                        ["dataset_type_id", "dataset_id", "collection_id", *names],
                        [(type_id, keys[i], run_id, *values[i]) for i in chunk],
                    )
                if len(ids) >= 5_000:
                    db.analyze(conn, rec.tables.tags, len(ids))
        except sqlalchemy.exc.IntegrityError as exc:
            self._explain_write_failure(rec, run_info, ids, values, exc)
            raise  # pragma: no cover - _explain always raises

    def _check_dimension_records(
        self, conn: sqlalchemy.Connection, rec: DatasetTypeRecord, values: Sequence[tuple]
    ) -> None:
        """Every dimension record the data IDs name must exist (set-based, one query per dimension).

        Dataset tables have no foreign keys to the dimension tables: checking
        the few distinct keys of a bulk insert once is far cheaper than a
        foreign-key lookup per row, and dimension records are never deleted.
        """
        names = rec.dataset_type.dimensions.required
        for n in names:
            dim = self._universe.dimensions[n]
            if not dim.has_own_table:
                continue
            cols = [x.name for x in dim.required]
            positions = [names.index(c) for c in cols]
            pick = operator.itemgetter(*positions)
            wanted = set(map(pick, values)) if len(positions) > 1 else {(v,) for v in map(pick, values)}
            table = self._schema.elements[dim.name]
            key_cols = [table.c[c] for c in dim.key_columns]
            found: set[tuple] = set()
            for chunk in batches(sorted(wanted, key=str), 500):
                cond = (
                    key_cols[0].in_([t[0] for t in chunk])
                    if len(cols) == 1
                    else sqlalchemy.tuple_(*key_cols).in_(list(chunk))
                )
                found.update(tuple(r) for r in conn.execute(sqlalchemy.select(*key_cols).where(cond)))
            missing = wanted - found
            if missing:
                example = sorted(missing, key=str)[0]
                raise DataIdError(
                    f"{len(missing)} data ID(s) of {rec.dataset_type.name} refer to {dim.name} "
                    f"{dict(zip(cols, example))}, which has no dimension record; insert or import it first."
                )

    def _explain_write_failure(
        self,
        rec: DatasetTypeRecord,
        run_info: CollectionInfo,
        ids: Sequence[str],
        values: Sequence[tuple],
        exc: Exception,
    ) -> None:
        group = rec.dataset_type.dimensions
        names = group.required
        seen: dict[tuple, int] = {}
        for i, v in enumerate(values):
            if v in seen:
                raise ConflictingDefinitionError(
                    f"Two {rec.dataset_type.name} datasets with the same data ID {dict(zip(names, v))} "
                    f"cannot both be in run {run_info.name!r}."
                )
            seen[v] = i
        if len(set(ids)) != len(ids):
            raise ConflictingDefinitionError("The same dataset ID was given twice.")
        tags = rec.tables.tags
        d = self._schema.dataset
        with self._db.reading() as conn:
            for chunk in batches([uuid.UUID(i) for i in ids], ID_BATCH):
                row = conn.execute(sqlalchemy.select(d.c.dataset_id).where(d.c.dataset_id.in_(chunk))).first()
                if row is not None:
                    raise ConflictingDefinitionError(
                        f"Dataset ID {row[0]} already exists in this repository."
                    )
            existing = conn.execute(
                sqlalchemy.select(*[tags.c[n] for n in names]).where(
                    tags.c.dataset_type_id == rec.id, tags.c.collection_id == run_info.id
                )
            ).all()
            clash = set(map(tuple, existing)) & set(values)
            if clash:
                example = sorted(clash)[0]
                raise ConflictingDefinitionError(
                    f"{len(clash)} {rec.dataset_type.name} dataset(s) already exist in run {run_info.name!r} "
                    f"with the same data ID, e.g. {dict(zip(names, example))}; datasets in a run are "
                    "never overwritten (use another run)."
                )
        raise ConflictingDefinitionError(f"Could not register {rec.dataset_type.name} datasets: {exc}")

    def import_refs(self, refs: Sequence[DatasetRef]) -> int:
        """Register datasets with the UUIDs they already have (an import).

        A dataset that already exists with the same type, run and data ID is
        left alone, so importing the same file twice is harmless; a UUID that
        exists with different content is a `ConflictingDefinitionError`.
        Returns the number of new datasets.
        """
        by_key: dict[tuple[str, str], list[DatasetRef]] = defaultdict(list)
        for ref in refs:
            by_key[(ref.dataset_type.name, ref.run)].append(ref)
        n_new = 0
        for (type_name, run), group_refs in by_key.items():
            rec = self._dataset_types.get_record(type_name)
            run_info = self._run(run)
            values = required_tuples(rec.dataset_type.dimensions, [r.data_id for r in group_refs])
            ids = [r.id_hex for r in group_refs]
            try:
                self._write(rec, run_info, ids, values, self._now())
                n_new += len(ids)
                continue
            except ConflictingDefinitionError:
                pass
            existing = self._existing(rec, [uuid.UUID(i) for i in ids])
            fresh_ids: list[str] = []
            fresh_values: list[tuple] = []
            for i, v in zip(ids, values):
                have = existing.get(uuid.UUID(i))
                if have is None:
                    fresh_ids.append(i)
                    fresh_values.append(v)
                elif have != (rec.id, run_info.id, v):
                    raise ConflictingDefinitionError(
                        f"Dataset {i} already exists with a different type, run or data ID than in the import "
                        f"({type_name} in {run!r}, {dict(zip(rec.dataset_type.dimensions.required, v))})."
                    )
            self._write(rec, run_info, fresh_ids, fresh_values, self._now())
            n_new += len(fresh_ids)
        return n_new

    def existing_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Those of ``ids`` that are registered (any type, any run)."""
        d = self._schema.dataset
        out: set[uuid.UUID] = set()
        with self._db.reading() as conn:
            for chunk in batches(list(ids), ID_BATCH):
                out.update(
                    conn.execute(sqlalchemy.select(d.c.dataset_id).where(d.c.dataset_id.in_(chunk))).scalars()
                )
        return out

    def _existing(self, rec: DatasetTypeRecord, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple]:
        """(type id, run id, data ID values) of those ``ids`` that exist."""
        d = self._schema.dataset
        out: dict[uuid.UUID, tuple] = {}
        with self._db.reading() as conn:
            for chunk in batches(list(ids), ID_BATCH):
                rows = conn.execute(
                    sqlalchemy.select(d.c.dataset_id, d.c.dataset_type_id, d.c.run_id).where(
                        d.c.dataset_id.in_(chunk)
                    )
                ).all()
                for r in rows:
                    other = self._dataset_types.get_by_id(r.dataset_type_id)
                    tags = other.tables.tags
                    names = other.dataset_type.dimensions.required
                    v = conn.execute(
                        sqlalchemy.select(*[tags.c[n] for n in names]).where(
                            tags.c.dataset_id == r.dataset_id, tags.c.collection_id == r.run_id
                        )
                    ).one()
                    out[r.dataset_id] = (r.dataset_type_id, r.run_id, tuple(v))
        return out

    def _delete_memberships(self, conn: sqlalchemy.Connection, ids: Any) -> None:
        """Delete the tags and calibs rows of datasets (``ids``: a list or a subquery)."""
        for rec in self._dataset_types.all_records():
            for table in (rec.tables.tags, rec.tables.calibs):
                conn.execute(sqlalchemy.delete(table).where(table.c.dataset_id.in_(ids)))

    def remove(self, refs: Iterable[DatasetRef]) -> int:
        """Delete datasets from the registry (and every collection holding them)."""
        ids = [r.id for r in refs]
        d = self._schema.dataset
        n = 0
        with self._db.transaction() as conn:
            for chunk in batches(ids, ID_BATCH):
                self._delete_memberships(conn, list(chunk))
                n += conn.execute(sqlalchemy.delete(d).where(d.c.dataset_id.in_(chunk))).rowcount
        return n

    def ids_in_runs(self, runs: Sequence[str]) -> list[uuid.UUID]:
        """The UUIDs of every dataset in these RUN collections."""
        d = self._schema.dataset
        run_ids = [self._run(r).id for r in runs]
        with self._db.reading() as conn:
            return list(
                conn.execute(sqlalchemy.select(d.c.dataset_id).where(d.c.run_id.in_(run_ids))).scalars()
            )

    def remove_runs(self, runs: Sequence[str]) -> int:
        """Delete every dataset of the given RUN collections, then the collections."""
        infos = [self._run(r) for r in runs]
        d = self._schema.dataset
        total = 0
        with self._db.transaction():
            for info in infos:
                parents = self._collections.parents_of(info.name)
                if parents:
                    raise ConflictingDefinitionError(
                        f"Run {info.name!r} is a child of chained collection(s) {parents}; remove it from "
                        "those chains first (porter collection-chain REPO PARENT RUN --mode remove)."
                    )
            with self._db.transaction() as conn:
                for info in infos:
                    self._delete_memberships(
                        conn, sqlalchemy.select(d.c.dataset_id).where(d.c.run_id == info.id)
                    )
                    total += conn.execute(sqlalchemy.delete(d).where(d.c.run_id == info.id)).rowcount
                for info in infos:
                    self._collections.remove(info.name, allow_datasets=True)
        return total

    # --- lookups ----------------------------------------------------------------------------------------

    def refs_in_collection(
        self, collection: CollectionInfo, dataset_types: Iterable[DatasetTypeRecord] | None = None
    ) -> list[DatasetRef]:
        """All datasets in a RUN or TAGGED collection, with their runs."""
        out: list[DatasetRef] = []
        recs = list(dataset_types) if dataset_types is not None else self._dataset_types.all_records()
        d = self._schema.dataset
        with self._db.reading() as conn:
            for rec in recs:
                tags = rec.tables.tags
                names = rec.dataset_type.dimensions.required
                rows = conn.execute(
                    sqlalchemy.select(tags.c.dataset_id, d.c.run_id, *[tags.c[n] for n in names])
                    .select_from(tags.join(d, d.c.dataset_id == tags.c.dataset_id))
                    .where(tags.c.dataset_type_id == rec.id, tags.c.collection_id == collection.id)
                    .order_by(*[tags.c[n] for n in names])
                ).all()
                group = rec.dataset_type.dimensions
                for r in rows:
                    run = self._collections.get_by_id(r[1]).name
                    out.append(
                        DatasetRef(rec.dataset_type, DataCoordinate(group, tuple(r[2:]), False), run, r[0])
                    )
        return out

    def get(self, dataset_id: uuid.UUID) -> DatasetRef | None:
        """The dataset with this UUID, or `None`."""
        d = self._schema.dataset
        with self._db.reading() as conn:
            row = conn.execute(
                sqlalchemy.select(d.c.dataset_type_id, d.c.run_id).where(d.c.dataset_id == dataset_id)
            ).one_or_none()
            if row is None:
                return None
            rec = self._dataset_types.get_by_id(row.dataset_type_id)
            tags = rec.tables.tags
            names = rec.dataset_type.dimensions.required
            values = conn.execute(
                sqlalchemy.select(*[tags.c[n] for n in names]).where(
                    tags.c.dataset_id == dataset_id, tags.c.collection_id == row.run_id
                )
            ).one()
        run = self._collections.get_by_id(row.run_id).name
        return DatasetRef(
            rec.dataset_type,
            DataCoordinate(rec.dataset_type.dimensions, tuple(values), False),
            run,
            dataset_id,
        )

    def find(
        self,
        dataset_type: str | DatasetType,
        data_id: DataCoordinate,
        collections: Sequence[str],
        timespan: Timespan | None = None,
    ) -> DatasetRef | None:
        """The first dataset of this type and data ID found in the collection search path.

        CALIBRATION collections are searched by ``timespan``; more than one
        dataset valid in it is an error (the lookup would be ambiguous).
        """
        rec = self._dataset_types.get_record(dataset_type)
        group = rec.dataset_type.dimensions
        values = required_tuples(group, [data_id])[0]
        names = group.required
        d = self._schema.dataset
        # Consecutive RUN/TAGGED collections are searched by one statement (the first in search order wins);
        # each CALIBRATION collection by its own, with the validity-range test.
        # The first collection alone: a search usually ends there, by an equality on the unique index.
        segments: list[list[CollectionInfo]] = []
        for info in self._collections.flatten(collections):
            if (
                info.type is CollectionType.CALIBRATION
                or len(segments) < 2
                or segments[-1][0].type is CollectionType.CALIBRATION
            ):
                segments.append([info])
            else:
                segments[-1].append(info)
        with self._db.reading() as conn:
            for segment in segments:
                first = segment[0]
                if first.type is CollectionType.CALIBRATION:
                    if timespan is None:
                        continue
                    table = rec.tables.calibs
                    b, e = timespan.nsec
                    extra = [table.c.validity_begin < e, table.c.validity_end > b]
                else:
                    table = rec.tables.tags
                    extra = []
                ids = [info.id for info in segment]
                rows = conn.execute(
                    sqlalchemy.select(table.c.dataset_id, d.c.run_id, table.c.collection_id)
                    .select_from(table.join(d, d.c.dataset_id == table.c.dataset_id))
                    .where(
                        table.c.dataset_type_id == rec.id,
                        table.c.collection_id == ids[0] if len(ids) == 1 else table.c.collection_id.in_(ids),
                        *[table.c[n] == v for n, v in zip(names, values)],
                        *extra,
                    )
                ).all()
                if not rows:
                    continue
                rank = {cid: i for i, cid in enumerate(ids)}
                best = min(rank[r.collection_id] for r in rows)
                rows = [r for r in rows if rank[r.collection_id] == best]
                if len(rows) > 1:
                    raise InvalidQueryError(
                        f"{len(rows)} {rec.dataset_type.name} datasets for {dict(zip(names, values))} are valid "
                        f"during {timespan} in {segment[best].name!r}; narrow the time range."
                    )
                run = self._collections.get_by_id(rows[0].run_id).name
                return DatasetRef(
                    rec.dataset_type, DataCoordinate(group, values, False), run, rows[0].dataset_id
                )
        return None
