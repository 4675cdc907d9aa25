"""Registration and lookup of dataset types, and the tables their datasets live in."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy

from ..core import DatasetType
from ..dimensions import DimensionGroup, DimensionUniverse
from ..errors import ConflictingDefinitionError, InUseError, MissingDatasetTypeError, did_you_mean
from ._db import Database
from ._schema import DatasetTables, RegistrySchema

__all__ = ["DatasetTypeManager", "DatasetTypeRecord"]


@dataclass(frozen=True)
class DatasetTypeRecord:
    """A registered dataset type with its database identity and tables."""

    dataset_type: DatasetType
    id: int
    tables: DatasetTables


class DatasetTypeManager:
    """Keeps the dataset_type table and creates per-dimension-group dataset tables."""

    def __init__(self, db: Database, schema: RegistrySchema, universe: DimensionUniverse):
        self._db = db
        self._schema = schema
        self._universe = universe
        self._by_name: dict[str, DatasetTypeRecord] = {}
        self._by_id: dict[int, DatasetTypeRecord] = {}
        self._groups: dict[int, DimensionGroup] = {}

    def refresh(self) -> None:
        """Reload dataset types and dimension groups from the database."""
        dt = self._schema.dataset_type
        dg = self._schema.dimension_group
        with self._db.reading() as conn:
            # Types first: under READ COMMITTED a type committed between the two statements would otherwise
            # name a group this reader never saw; a group read without its type is harmless.
            rows = conn.execute(sqlalchemy.select(dt)).all()
            groups = conn.execute(sqlalchemy.select(dg.c.group_id, dg.c.dimensions)).all()
        self._groups = {
            g.group_id: self._universe.conform(g.dimensions.split()) if g.dimensions else self._universe.empty
            for g in groups
        }
        self._by_name = {}
        self._by_id = {}
        for r in rows:
            group = self._groups[r.group_id]
            dataset_type = DatasetType(
                r.name,
                self._universe.conform(r.dimensions.split()),
                r.storage_class,
                is_calibration=r.is_calibration,
            )
            rec = DatasetTypeRecord(
                dataset_type, r.dataset_type_id, self._schema.dataset_tables_for(group, r.group_id)
            )
            self._by_name[r.name] = rec
            self._by_id[r.dataset_type_id] = rec

    # --- lookups ---------------------------------------------------------------------------------

    def find(self, name: str) -> DatasetTypeRecord | None:
        rec = self._by_name.get(name)
        if rec is None:
            self.refresh()
            rec = self._by_name.get(name)
        return rec

    def get_record(self, name: str | DatasetType) -> DatasetTypeRecord:
        """The registered record of a dataset type, or a helpful `MissingDatasetTypeError`."""
        if isinstance(name, DatasetType):
            rec = self.get_record(name.name)
            if rec.dataset_type.dimensions != name.dimensions:
                raise ConflictingDefinitionError(
                    f"Dataset type {name.name!r} is registered with dimensions {rec.dataset_type.dimensions}, "
                    f"not {name.dimensions}."
                )
            return rec
        found = self.find(name)
        if found is None:
            raise MissingDatasetTypeError(
                f"Dataset type {name!r} is not registered."
                + did_you_mean(name, self._by_name, "dataset types")
            )
        return found

    def get(self, name: str) -> DatasetType:
        return self.get_record(name).dataset_type

    def get_by_id(self, dataset_type_id: int) -> DatasetTypeRecord:
        rec = self._by_id.get(dataset_type_id)
        if rec is None:
            self.refresh()
            rec = self._by_id[dataset_type_id]
        return rec

    def all_records(self) -> list[DatasetTypeRecord]:
        self.refresh()
        return sorted(self._by_name.values(), key=lambda r: r.dataset_type.name)

    def query(self, expression: str | re.Pattern | Iterable[str | re.Pattern] = "*") -> list[DatasetType]:
        """Dataset types whose names match glob patterns, regexes or exact names (exact must exist)."""
        self.refresh()
        items = [expression] if isinstance(expression, str | re.Pattern) else list(expression)
        out: dict[str, DatasetType] = {}
        for item in items:
            if isinstance(item, re.Pattern):
                for n in sorted(self._by_name):
                    if item.fullmatch(n):
                        out[n] = self._by_name[n].dataset_type
            elif item in ("*", "...") or any(c in item for c in "*?["):
                pattern = "*" if item == "..." else item
                for n in sorted(self._by_name):
                    if fnmatch.fnmatchcase(n, pattern):
                        out[n] = self._by_name[n].dataset_type
            else:
                out[item] = self.get(item)
        return list(out.values())

    # --- registration ----------------------------------------------------------------------------

    def register(self, dataset_type: DatasetType) -> bool:
        """Register a dataset type; `False` if an identical one exists.

        Raises
        ------
        ConflictingDefinitionError
            If one with the same name but different dimensions, storage class
            or calibration flag exists.
        """
        existing = self.find(dataset_type.name)
        if existing is not None:
            if existing.dataset_type != dataset_type:
                raise ConflictingDefinitionError(
                    f"Dataset type {dataset_type.name!r} is already registered as {existing.dataset_type}; "
                    f"cannot redefine it as {dataset_type}."
                )
            return False
        dims_text = " ".join(dataset_type.dimensions.names)
        with self._db.transaction() as conn:
            self._db.lock_for_schema_change(conn)
            group_id = self._ensure_group(conn, dataset_type.dimensions)
            dt = self._schema.dataset_type
            res = conn.execute(
                self._db.insert(dt, on_conflict="ignore").values(
                    name=dataset_type.name,
                    dimensions=dims_text,
                    storage_class=dataset_type.storage_class_name,
                    is_calibration=dataset_type.is_calibration,
                    group_id=group_id,
                )
            )
            created = res.rowcount == 1
        self.refresh()
        if not created and self._by_name[dataset_type.name].dataset_type != dataset_type:
            raise ConflictingDefinitionError(
                f"Dataset type {dataset_type.name!r} was registered concurrently with a different definition."
            )
        return created

    def _ensure_group(self, conn: sqlalchemy.Connection, group: DimensionGroup) -> int:
        dg = self._schema.dimension_group
        key = " ".join(group.names)
        row = conn.execute(
            sqlalchemy.select(dg.c.group_id).where(dg.c.dimensions == key)
        ).scalar_one_or_none()
        if row is None:
            inserted = conn.execute(sqlalchemy.insert(dg).values(dimensions=key)).inserted_primary_key
            assert inserted is not None
            row = inserted[0]
        tables = self._schema.dataset_tables_for(group, row)
        tables.tags.create(conn, checkfirst=True)
        tables.calibs.create(conn, checkfirst=True)
        return int(row)

    def remove(self, name: str) -> None:
        """Remove a dataset type; refused while any dataset of that type exists."""
        rec = self.get_record(name)
        d = self._schema.dataset
        with self._db.transaction() as conn:
            n = conn.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(d).where(d.c.dataset_type_id == rec.id)
            ).scalar_one()
            if n:
                runs = (
                    conn.execute(
                        sqlalchemy.select(self._schema.collection.c.name)
                        .select_from(
                            d.join(
                                self._schema.collection, d.c.run_id == self._schema.collection.c.collection_id
                            )
                        )
                        .where(d.c.dataset_type_id == rec.id)
                        .distinct()
                        .limit(5)
                    )
                    .scalars()
                    .all()
                )
                raise InUseError(
                    f"Dataset type {name!r} still has {n} dataset(s) (in runs {list(runs)}); "
                    "remove those runs or datasets first."
                )
            conn.execute(
                sqlalchemy.delete(self._schema.dataset_type).where(
                    self._schema.dataset_type.c.dataset_type_id == rec.id
                )
            )
        self.refresh()
