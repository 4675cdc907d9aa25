"""Writing dimension records, in bulk, with their sky-pixel overlap rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy

from ..dimensions import (
    DimensionElement,
    DimensionRecord,
    DimensionUniverse,
    Timespan,
    decode_region,
    encode_region,
    pixel_envelope,
)
from ..errors import ConflictingDefinitionError, DataIdError
from ._db import Database
from ._schema import RegistrySchema

__all__ = ["DimensionRecordStorage", "record_from_row", "record_to_row"]

_CHUNK = 50_000


def record_to_row(record: DimensionRecord) -> dict[str, Any]:
    """The SQL row of a record (regions encoded, timespans as nanoseconds)."""
    row = record.to_dict()
    if "region" in row:
        region = row["region"]
        row["region"] = None if region is None else encode_region(region)
    if "timespan" in row:
        ts = row.pop("timespan")
        row["timespan_begin"], row["timespan_end"] = (None, None) if ts is None else ts.nsec
    return row


def record_from_row(element: DimensionElement, row: Mapping[str, Any]) -> DimensionRecord:
    """Rebuild a record from its SQL row."""
    values: dict[str, Any] = {}
    for name in element.schema:
        if name == "region":
            raw = row["region"]
            values["region"] = None if raw is None else decode_region(raw)
        elif name == "timespan":
            b, e = row["timespan_begin"], row["timespan_end"]
            values["timespan"] = None if b is None else Timespan.from_nsec(b, e)
        else:
            values[name] = row[name]
    return DimensionRecord(element, values)


class DimensionRecordStorage:
    """Inserts dimension records with set-based statements."""

    def __init__(self, db: Database, schema: RegistrySchema, universe: DimensionUniverse):
        self._db = db
        self._schema = schema
        self._universe = universe

    def insert(
        self,
        element: DimensionElement,
        records: Sequence[DimensionRecord],
        *,
        skip_existing: bool = False,
        replace: bool = False,
    ) -> int:
        """Insert records of one element; returns how many were given.

        ``skip_existing`` leaves records whose keys already exist untouched;
        ``replace`` overwrites them.  Without either, an existing key is a
        `ConflictingDefinitionError`.  A record that refers to a missing
        record of another element (a visit whose physical_filter is unknown)
        is a `DataIdError` naming it.  Nothing is written when an error is
        raised.
        """
        if not element.has_own_table:
            raise DataIdError(
                f"Records of {element.name!r} are computed from the sky pixelization; none are stored."
            )
        if not records:
            return 0
        table = self._schema.elements[element.name]
        rows = [record_to_row(r) for r in records]
        keys = list(element.key_columns)
        # Sorting by key gives every writer the same lock order (no deadlocks
        # between concurrent imports on PostgreSQL) and finds duplicates.
        rows.sort(key=lambda r: tuple(_sortable(r[k]) for k in keys))
        for a, b in itertools.pairwise(rows):
            if all(a[k] == b[k] for k in keys):
                if replace or skip_existing:
                    continue
                raise ConflictingDefinitionError(
                    f"Two records of {element.name!r} have the same key {dict((k, a[k]) for k in keys)}."
                )
        if replace:
            stmt = self._db.upsert(table, keys)
        elif skip_existing:
            stmt = self._db.insert(table, on_conflict="ignore")
        else:
            stmt = sqlalchemy.insert(table)
        try:
            # A savepoint, so a failure inside a larger transaction (an import)
            # can be diagnosed and reported without poisoning it.
            with self._db.transaction(savepoint=True) as conn:
                self._ensure_bands(conn, element, rows)
                for chunk in _chunks(rows):
                    conn.execute(stmt, chunk)
                if element.has_region:
                    self._write_overlaps(conn, element, records, replace=replace)
        except sqlalchemy.exc.IntegrityError as exc:
            # The fast path failed; find out why, in words the user can act on.
            with self._db.reading() as conn:
                self._check_dependencies(conn, element, rows)
                if not (skip_existing or replace):
                    self._check_not_existing(conn, element, rows)
            raise ConflictingDefinitionError(
                f"Records of {element.name!r} conflict with existing ones (a duplicate alternate key such as "
                f"a detector full_name or visit name?): {exc.orig}"
            ) from None
        return len(rows)

    def _ensure_bands(self, conn: sqlalchemy.Connection, element: DimensionElement, rows: list[dict]) -> None:
        """Bands are implied by physical filters; insert the ones they name (as daf_butler's band view does)."""
        if "band" not in element.direct_implies or "band" not in self._schema.elements:
            return
        bands = sorted({r["band"] for r in rows if r.get("band") is not None})
        if bands:
            conn.execute(
                self._db.insert(self._schema.elements["band"], on_conflict="ignore"),
                [{"name": b} for b in bands],
            )

    def _check_not_existing(
        self, conn: sqlalchemy.Connection, element: DimensionElement, rows: list[dict]
    ) -> None:
        table = self._schema.elements[element.name]
        keys = list(element.key_columns)
        existing = _existing_keys(conn, table, keys, {tuple(r[k] for k in keys) for r in rows})
        if existing:
            first = sorted(existing, key=lambda t: tuple(map(_sortable, t)))[0]
            raise ConflictingDefinitionError(
                f"{len(existing)} record(s) of {element.name!r} already exist, e.g. {dict(zip(keys, first))}; "
                "use skip_existing=True to keep them or replace=True to overwrite them."
            )

    def _check_dependencies(
        self, conn: sqlalchemy.Connection, element: DimensionElement, rows: list[dict]
    ) -> None:
        """Name the first missing record another element's foreign key would reject."""
        for dep_name in (*element.direct_requires, *element.direct_implies):
            dep = self._universe.dimensions[dep_name]
            if not dep.has_own_table:
                continue
            local = [d.name for d in dep.required]
            wanted = {tuple(r[c] for c in local) for r in rows if all(r.get(c) is not None for c in local)}
            if not wanted:
                continue
            dep_table = self._schema.elements[dep.name]
            found = _existing_keys(conn, dep_table, list(dep.key_columns), wanted)
            missing = wanted - found
            if missing:
                example = sorted(missing, key=lambda t: tuple(map(_sortable, t)))[0]
                raise DataIdError(
                    f"{len(missing)} record(s) of {element.name!r} refer to {dep.name} "
                    f"{dict(zip(local, example))}, which does not exist; insert the {dep.name} record(s) first."
                )

    def _write_overlaps(
        self,
        conn: sqlalchemy.Connection,
        element: DimensionElement,
        records: Iterable[DimensionRecord],
        replace: bool,
    ) -> None:
        overlap = self._schema.overlaps[element.name]
        skypix = self._universe.common_skypix
        pixelization = skypix.pixelization
        key_names = [d.name for d in element.required]
        orows: list[dict[str, Any]] = []
        records = list(records)
        if replace:
            for chunk in _chunks(records):
                keys = [r.key_values for r in chunk]
                conn.execute(
                    sqlalchemy.delete(overlap).where(
                        sqlalchemy.tuple_(*[overlap.c[k] for k in key_names]).in_(keys)
                    )
                )
        for r in records:
            region = r.region
            if region is None:
                continue
            key = dict(zip(key_names, r.key_values))
            for pix in pixel_envelope(pixelization, region):
                row = dict(key)
                row[skypix.name] = pix
                orows.append(row)
        stmt = self._db.insert(overlap, on_conflict="ignore")
        for chunk in _chunks(orows):
            conn.execute(stmt, chunk)


def _sortable(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, int | float) else (1, 0, str(v))


def _chunks(rows: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _existing_keys(
    conn: sqlalchemy.Connection, table: sqlalchemy.Table, columns: list[str], wanted: set[tuple]
) -> set[tuple]:
    """The subset of ``wanted`` key tuples that exist in ``table``.

    Selects by the leading key column (few distinct values: instruments,
    skymaps) and filters in Python, which is one cheap query per chunk on
    both SQLite and PostgreSQL.
    """
    found: set[tuple] = set()
    cols = [table.c[c] for c in columns]
    wanted_list = sorted(wanted, key=lambda t: tuple(map(_sortable, t)))
    for chunk in _chunks(wanted_list, 500):
        if len(columns) == 1:
            cond = cols[0].in_([t[0] for t in chunk])
        else:
            cond = sqlalchemy.tuple_(*cols).in_(list(chunk))
        for row in conn.execute(sqlalchemy.select(*cols).where(cond)):
            found.add(tuple(row))
    return found & wanted
