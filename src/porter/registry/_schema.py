"""The registry's SQL schema, built from the dimension universe.

Static tables (collections, dataset types, datasets) are the same in every
repository; one table per dimension element holds its records, and spatial
elements get a second table listing the common-skypix (htm7) pixels their
regions overlap, which turns spatial joins into integer joins.  Datasets are
filed in one "tags" table (and one "calibs" table) per distinct set of
dimensions, whose unique constraint enforces one dataset per dataset type and
data ID in each RUN or TAGGED collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.schema import SchemaItem

from ..dimensions import ColumnSpec, Dimension, DimensionElement, DimensionGroup, DimensionUniverse

__all__ = ["SCHEMA_VERSION", "DatasetTables", "RegistrySchema"]

SCHEMA_VERSION = "1.0.0"
"""Version of the registry schema; recorded in the database and checked on open."""


def sql_type(spec: ColumnSpec) -> sqlalchemy.types.TypeEngine:
    """The SQL column type of a dimension-record field."""
    match spec.type:
        case "string":
            return String(spec.length or 255)
        case "int":
            return BigInteger()
        case "float":
            return Float(precision=53)
        case "bool":
            return Boolean()
        case "hash":
            return LargeBinary(spec.nbytes)
        case "region":
            return LargeBinary()
    raise ValueError(f"No SQL type for {spec.type!r}.")


def dimension_key_type(d: Dimension) -> sqlalchemy.types.TypeEngine:
    return sql_type(d.primary_key)


def dataset_index_order(group: DimensionGroup) -> list[str]:
    """Column order of the data-ID index of dataset tables.

    Governors first (always constrained by equality), then the most derived
    dimensions first while keeping each dimension after the ones it requires:
    (instrument, visit, detector) rather than universe order's (instrument,
    detector, visit), so that "these visits, a range of detectors" is a
    range scan per visit instead of a skip-scan over every detector.
    """
    universe = group.universe
    depth: dict[str, int] = {}

    def _depth(name: str) -> int:
        if name not in depth:
            d = universe.dimensions[name]
            deps = (*d.direct_requires, *d.direct_implies)
            depth[name] = 0 if not deps else 1 + max(_depth(x) for x in deps)
        return depth[name]

    remaining = [n for n in group.required if not universe.dimensions[n].is_governor]
    order = [n for n in group.required if universe.dimensions[n].is_governor]
    while remaining:
        ready = [
            n
            for n in remaining
            if all(r.name in order or r.name == n for r in universe.dimensions[n].required)
        ]
        best = max(ready, key=lambda n: (_depth(n), [-ord(c) for c in n]))
        order.append(best)
        remaining.remove(best)
    return order


def _key_order(element: DimensionElement) -> list[str]:
    """Primary-key column order of an element table (see `dataset_index_order`).

    For visit_detector_region this is (instrument, visit, detector): records
    arrive visit by visit, so inserts append, and "the detectors of a visit"
    is a range scan.
    """
    by_dim = dict(zip((d.name for d in element.required), element.key_columns))
    group = element.universe.conform(list(by_dim))
    return [by_dim[n] for n in dataset_index_order(group) if n in by_dim]


def element_table_name(element: DimensionElement) -> str:
    return f"dim_{element.name}"


def overlap_table_name(element: DimensionElement, skypix: str) -> str:
    return f"dim_{element.name}_{skypix}"


@dataclass
class DatasetTables:
    """The tags and calibs tables of one dimension group."""

    group: DimensionGroup
    group_id: int
    tags: Table
    calibs: Table


@dataclass
class RegistrySchema:
    """All SQLAlchemy tables of one repository."""

    universe: DimensionUniverse
    metadata: MetaData
    meta: Table = field(init=False)
    collection: Table = field(init=False)
    run: Table = field(init=False)
    collection_chain: Table = field(init=False)
    dataset_type: Table = field(init=False)
    dataset: Table = field(init=False)
    dimension_group: Table = field(init=False)
    elements: dict[str, Table] = field(init=False, default_factory=dict)
    overlaps: dict[str, Table] = field(init=False, default_factory=dict)
    dataset_tables: dict[int, DatasetTables] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        md = self.metadata
        self.meta = Table(
            "porter_meta",
            md,
            Column("name", String(64), primary_key=True),
            Column("value", Text, nullable=False),
        )
        self.collection = Table(
            "collection",
            md,
            Column("collection_id", Integer, primary_key=True, autoincrement=True),
            Column("name", String(255), nullable=False, unique=True),
            Column("type", SmallInteger, nullable=False),
            Column("doc", Text, nullable=True),
        )
        self.run = Table(
            "run",
            md,
            Column(
                "collection_id",
                Integer,
                ForeignKey(self.collection.c.collection_id, ondelete="CASCADE"),
                primary_key=True,
            ),
            Column("host", String(128), nullable=True),
            Column("timespan_begin", BigInteger, nullable=True),
            Column("timespan_end", BigInteger, nullable=True),
        )
        self.collection_chain = Table(
            "collection_chain",
            md,
            Column(
                "parent",
                Integer,
                ForeignKey(self.collection.c.collection_id, ondelete="CASCADE"),
                nullable=False,
            ),
            Column("position", Integer, nullable=False),
            # No cascade: a collection that is still a child of a chain cannot
            # be removed by accident.
            Column("child", Integer, ForeignKey(self.collection.c.collection_id), nullable=False, index=True),
            PrimaryKeyConstraint("parent", "position"),
        )
        self.dimension_group = Table(
            "dimension_group",
            md,
            Column("group_id", Integer, primary_key=True, autoincrement=True),
            Column("dimensions", Text, nullable=False, unique=True),
        )
        self.dataset_type = Table(
            "dataset_type",
            md,
            Column("dataset_type_id", Integer, primary_key=True, autoincrement=True),
            Column("name", String(255), nullable=False, unique=True),
            Column("dimensions", Text, nullable=False),
            Column("storage_class", String(128), nullable=False),
            Column("is_calibration", Boolean, nullable=False),
            Column("group_id", Integer, ForeignKey(self.dimension_group.c.group_id), nullable=False),
        )
        self.dataset = Table(
            "dataset",
            md,
            Column("dataset_id", Uuid, primary_key=True),
            Column(
                "dataset_type_id", Integer, ForeignKey(self.dataset_type.c.dataset_type_id), nullable=False
            ),
            Column("run_id", Integer, ForeignKey(self.collection.c.collection_id), nullable=False),
            Column("ingest_date", BigInteger, nullable=False),
            Index("dataset_run_type", "run_id", "dataset_type_id"),
        )
        for element in self.universe.database_elements:
            self._add_element_table(element)

    # --- dimension tables ----------------------------------------------------------------------

    def _add_element_table(self, element: DimensionElement) -> None:
        md = self.metadata
        universe = self.universe
        columns: list[SchemaItem] = []
        for spec in element.field_specs:
            nullable = spec.nullable and spec.name not in element.key_columns
            columns.append(Column(spec.name, sql_type(spec), nullable=nullable))
        if element.has_region:
            columns.append(Column("region", LargeBinary, nullable=True))
        if element.has_timespan:
            columns.append(Column("timespan_begin", BigInteger, nullable=True))
            columns.append(Column("timespan_end", BigInteger, nullable=True))
        columns.append(PrimaryKeyConstraint(*_key_order(element)))
        # No foreign keys to the records this element requires or implies:
        # DimensionRecordStorage checks the distinct keys of each insert with
        # one query per dependency (cheaper than a lookup per row), and
        # dimension records are never deleted.
        if isinstance(element, Dimension):
            parents = list(element.key_columns[:-1])
            for alt in element.alternate_keys:
                columns.append(UniqueConstraint(*parents, alt.name))
        table = Table(element_table_name(element), md, *columns)
        self.elements[element.name] = table
        if element.has_region:
            skypix = universe.common_skypix
            key_names = [d.name for d in element.required]
            ocols: list[SchemaItem] = [
                Column(d.name, dimension_key_type(d), nullable=False) for d in element.required
            ]
            ocols.append(Column(skypix.name, BigInteger, nullable=False))
            ocols.append(
                PrimaryKeyConstraint(
                    *dataset_index_order(element.minimal_group.universe.conform(key_names)), skypix.name
                )
            )
            # Only porter writes these rows, in the transaction that writes
            # their records, so no foreign key is needed; and with all columns
            # in the primary key, SQLite stores the table as that one B-tree.
            ocols.append(Index(f"{overlap_table_name(element, skypix.name)}_pix", skypix.name))
            self.overlaps[element.name] = Table(
                overlap_table_name(element, skypix.name), md, *ocols, sqlite_with_rowid=False
            )

    # --- dataset tables -----------------------------------------------------------------------

    def dataset_tables_for(self, group: DimensionGroup, group_id: int) -> DatasetTables:
        """The (possibly not yet created) tags and calibs tables of a dimension group."""
        existing = self.dataset_tables.get(group_id)
        if existing is not None:
            return existing
        md = self.metadata

        def dim_columns() -> list[SchemaItem]:
            # No foreign keys to dimension tables: DatasetManager checks the
            # distinct keys of each insert in one query per dimension, which is
            # much cheaper than a lookup per row (records are never deleted).
            return [
                Column(name, dimension_key_type(self.universe.dimensions[name]), nullable=False)
                for name in group.required
            ]

        def common() -> list[Column]:
            return [
                Column(
                    "dataset_type_id",
                    Integer,
                    ForeignKey(self.dataset_type.c.dataset_type_id),
                    nullable=False,
                ),
                # No foreign key to `dataset`: checking one costs a random
                # lookup in the largest table for every row of a bulk insert.
                # DatasetManager writes these rows only for datasets it has
                # verified, and deletes them explicitly with their datasets.
                Column("dataset_id", Uuid, nullable=False),
                Column(
                    "collection_id",
                    Integer,
                    ForeignKey(self.collection.c.collection_id, ondelete="CASCADE"),
                    nullable=False,
                ),
            ]

        tags = Table(
            f"dataset_tags_{group_id:05d}",
            md,
            *common(),
            *dim_columns(),
            PrimaryKeyConstraint("dataset_id", "collection_id"),
            UniqueConstraint("dataset_type_id", "collection_id", *dataset_index_order(group)),
        )
        calibs = Table(
            f"dataset_calibs_{group_id:05d}",
            md,
            Column("calib_id", Integer, primary_key=True, autoincrement=True),
            *common(),
            *dim_columns(),
            Column("validity_begin", BigInteger, nullable=False),
            Column("validity_end", BigInteger, nullable=False),
            Index(
                f"dataset_calibs_{group_id:05d}_lookup",
                "dataset_type_id",
                "collection_id",
                *dataset_index_order(group),
            ),
        )
        tables = DatasetTables(group, group_id, tags, calibs)
        self.dataset_tables[group_id] = tables
        return tables
