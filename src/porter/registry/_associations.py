"""Dataset memberships beyond a run: TAGGED collections and CALIBRATION validity ranges."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy

from ..core import CollectionType, DatasetRef
from ..dimensions import DataCoordinate, Timespan
from ..errors import (
    CollectionTypeError,
    ConflictingDefinitionError,
    DatasetTypeError,
    MissingDatasetError,
)
from ._batching import ID_BATCH, batches
from ._collections import CollectionInfo, CollectionManager
from ._data_id_values import required_tuples
from ._dataset_types import DatasetTypeManager, DatasetTypeRecord
from ._db import Database
from ._schema import RegistrySchema

__all__ = ["AssociationManager"]


class AssociationManager:
    """Associates existing datasets with TAGGED and CALIBRATION collections."""

    def __init__(
        self,
        db: Database,
        schema: RegistrySchema,
        collections: CollectionManager,
        dataset_types: DatasetTypeManager,
    ):
        self._db = db
        self._schema = schema
        self._collections = collections
        self._dataset_types = dataset_types

    def _stored_values(
        self, conn: sqlalchemy.Connection, rec: DatasetTypeRecord, refs: Sequence[DatasetRef]
    ) -> list[tuple]:
        """The data IDs the registry holds for these datasets (raising if any is unknown).

        Associations copy the data ID from the dataset's run row rather than
        trusting the reference a caller passes in.
        """
        tags = rec.tables.tags
        d = self._schema.dataset
        names = rec.dataset_type.dimensions.required
        found: dict[str, tuple] = {}
        for chunk in batches([r.id for r in refs], ID_BATCH):
            rows = conn.execute(
                sqlalchemy.select(tags.c.dataset_id, *[tags.c[n] for n in names])
                .select_from(
                    tags.join(
                        d,
                        sqlalchemy.and_(
                            d.c.dataset_id == tags.c.dataset_id, d.c.run_id == tags.c.collection_id
                        ),
                    )
                )
                .where(tags.c.dataset_type_id == rec.id, tags.c.dataset_id.in_(chunk))
            ).all()
            for r in rows:
                found[r[0].hex] = tuple(r[1:])
        missing = [r for r in refs if r.id_hex not in found]
        if missing:
            raise MissingDatasetError(
                f"{len(missing)} {rec.dataset_type.name} dataset(s) do not exist in this repository, "
                f"e.g. {missing[0].id}."
            )
        return [found[r.id_hex] for r in refs]

    def associate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Add datasets to a TAGGED collection (already-present ones are fine).

        Raises
        ------
        ConflictingDefinitionError
            If the collection already holds a *different* dataset of the same
            type and data ID.
        """
        info = self._collections.get(collection)
        if info.type is not CollectionType.TAGGED:
            raise CollectionTypeError(
                f"Collection {collection!r} is {info.type.name}; only TAGGED collections take associate()."
            )
        for type_name, group_refs in _by_type(refs).items():
            rec = self._dataset_types.get_record(type_name)
            tags = rec.tables.tags
            names = rec.dataset_type.dimensions.required
            ids = [r.id for r in group_refs]
            with self._db.transaction(savepoint=True) as conn:
                present: set[uuid.UUID] = set()
                for chunk in batches(ids, ID_BATCH):
                    present.update(
                        conn.execute(
                            sqlalchemy.select(tags.c.dataset_id).where(
                                tags.c.collection_id == info.id, tags.c.dataset_id.in_(chunk)
                            )
                        ).scalars()
                    )
                rows = []
                for ref, values in zip(group_refs, self._stored_values(conn, rec, group_refs)):
                    if ref.id in present:
                        continue
                    row = dict(zip(names, values))
                    row.update(dataset_type_id=rec.id, dataset_id=ref.id, collection_id=info.id)
                    rows.append(row)
                try:
                    with self._db.transaction(savepoint=True) as inner:
                        for row_batch in batches(rows):
                            inner.execute(sqlalchemy.insert(tags), row_batch)
                except sqlalchemy.exc.IntegrityError:
                    raise ConflictingDefinitionError(
                        f"Collection {collection!r} already holds another {type_name} dataset with the same "
                        "data ID as one being tagged; disassociate it first."
                    ) from None

    def disassociate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        """Remove datasets from a TAGGED collection."""
        info = self._collections.get(collection)
        if info.type is not CollectionType.TAGGED:
            raise CollectionTypeError(
                f"Collection {collection!r} is {info.type.name}; only TAGGED collections take disassociate()."
            )
        for type_name, group_refs in _by_type(refs).items():
            tags = self._dataset_types.get_record(type_name).tables.tags
            with self._db.transaction() as conn:
                for chunk in batches([r.id for r in group_refs], ID_BATCH):
                    conn.execute(
                        sqlalchemy.delete(tags).where(
                            tags.c.collection_id == info.id, tags.c.dataset_id.in_(chunk)
                        )
                    )

    # --- calibration collections -------------------------------------------------------------------

    def _calibration(self, collection: str) -> CollectionInfo:
        info = self._collections.get(collection)
        if info.type is not CollectionType.CALIBRATION:
            raise CollectionTypeError(
                f"Collection {collection!r} is {info.type.name}; certification needs a CALIBRATION collection."
            )
        return info

    def certify(self, collection: str, refs: Iterable[DatasetRef], timespan: Timespan) -> None:
        """Associate calibration datasets with a validity range in a CALIBRATION collection.

        Raises
        ------
        ConflictingDefinitionError
            If a dataset of the same type and data ID is already valid during
            any part of ``timespan`` in that collection.
        """
        info = self._calibration(collection)
        if timespan.is_empty():
            raise ConflictingDefinitionError(f"Cannot certify with an empty validity range {timespan}.")
        begin, end = timespan.nsec
        for type_name, group_refs in _by_type(refs).items():
            rec = self._dataset_types.get_record(type_name)
            if not rec.dataset_type.is_calibration:
                raise DatasetTypeError(
                    f"Dataset type {type_name!r} is not a calibration type (is_calibration=False); "
                    "only calibration types can be certified."
                )
            calibs = rec.tables.calibs
            names = rec.dataset_type.dimensions.required
            with self._db.transaction(savepoint=True) as conn:
                values = self._stored_values(conn, rec, group_refs)
                if self._db.dialect == "postgresql":
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7706171)")
                overlapping = conn.execute(
                    sqlalchemy.select(
                        *[calibs.c[n] for n in names], calibs.c.validity_begin, calibs.c.validity_end
                    ).where(
                        calibs.c.dataset_type_id == rec.id,
                        calibs.c.collection_id == info.id,
                        calibs.c.validity_begin < end,
                        calibs.c.validity_end > begin,
                    )
                ).all()
                taken = {tuple(r[: len(names)]): r for r in overlapping}
                wanted: set[tuple] = set()
                for v in values:
                    if v in taken or v in wanted:
                        raise ConflictingDefinitionError(
                            f"A {type_name} dataset for {dict(zip(names, v))} is already certified in "
                            f"{collection!r} for a validity range overlapping {timespan}; decertify it first."
                        )
                    wanted.add(v)
                rows = []
                for ref, v in zip(group_refs, values):
                    row = dict(zip(names, v))
                    row.update(
                        dataset_type_id=rec.id,
                        dataset_id=ref.id,
                        collection_id=info.id,
                        validity_begin=begin,
                        validity_end=end,
                    )
                    rows.append(row)
                for chunk in batches(rows):
                    conn.execute(sqlalchemy.insert(calibs), chunk)

    def decertify(
        self,
        collection: str,
        dataset_type: str,
        timespan: Timespan,
        data_ids: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        """Remove validity for ``timespan``, keeping the parts of ranges outside it."""
        info = self._calibration(collection)
        rec = self._dataset_types.get_record(dataset_type)
        calibs = rec.tables.calibs
        names = rec.dataset_type.dimensions.required
        only = None if data_ids is None else set(required_tuples(rec.dataset_type.dimensions, data_ids))
        begin, end = timespan.nsec
        with self._db.transaction() as conn:
            rows = (
                conn.execute(
                    sqlalchemy.select(calibs).where(
                        calibs.c.dataset_type_id == rec.id,
                        calibs.c.collection_id == info.id,
                        calibs.c.validity_begin < end,
                        calibs.c.validity_end > begin,
                    )
                )
                .mappings()
                .all()
            )
            for r in rows:
                v = tuple(r[n] for n in names)
                if only is not None and v not in only:
                    continue
                conn.execute(sqlalchemy.delete(calibs).where(calibs.c.calib_id == r["calib_id"]))
                pieces = []
                if r["validity_begin"] < begin:
                    pieces.append((r["validity_begin"], begin))
                if end < r["validity_end"]:
                    pieces.append((end, r["validity_end"]))
                for b, e in pieces:
                    new = {k: r[k] for k in r if k != "calib_id"}
                    new.update(validity_begin=b, validity_end=e)
                    conn.execute(sqlalchemy.insert(calibs).values(**new))

    # --- removal -----------------------------------------------------------------------------------------

    def calibration_associations(self, collection: CollectionInfo) -> list[tuple[DatasetRef, Timespan]]:
        """All (dataset, validity range) pairs of a CALIBRATION collection."""
        out: list[tuple[DatasetRef, Timespan]] = []
        d = self._schema.dataset
        with self._db.reading() as conn:
            for rec in self._dataset_types.all_records():
                calibs = rec.tables.calibs
                names = rec.dataset_type.dimensions.required
                rows = conn.execute(
                    sqlalchemy.select(
                        calibs.c.dataset_id,
                        d.c.run_id,
                        calibs.c.validity_begin,
                        calibs.c.validity_end,
                        *[calibs.c[n] for n in names],
                    )
                    .select_from(calibs.join(d, d.c.dataset_id == calibs.c.dataset_id))
                    .where(calibs.c.dataset_type_id == rec.id, calibs.c.collection_id == collection.id)
                    .order_by(calibs.c.validity_begin, *[calibs.c[n] for n in names])
                ).all()
                group = rec.dataset_type.dimensions
                for r in rows:
                    run = self._collections.get_by_id(r[1]).name
                    ref = DatasetRef(rec.dataset_type, DataCoordinate(group, tuple(r[4:]), False), run, r[0])
                    out.append((ref, Timespan.from_nsec(r[2], r[3])))
        return out


def _by_type(refs: Iterable[DatasetRef]) -> dict[str, list[DatasetRef]]:
    out: dict[str, list[DatasetRef]] = defaultdict(list)
    for r in refs:
        out[r.dataset_type.name].append(r)
    return out
