"""Writing dimension records, in bulk, with their sky-pixel overlap rows.

Records arrive as mappings (or `DimensionRecord` objects) and are validated
straight into SQL rows by a per-element `RecordRowBuilder`: the common case
(right types, known fields) costs a few type checks per field; anything else
goes through `DimensionRecord.from_mapping`, which coerces what can be
coerced and explains what cannot.

astropy and lsst.sphgeom are not imported here: a time or region in a record
was made by them already (`is_astropy_time`, `is_region`); the registry
imports this module whenever it opens a repository.
"""

from __future__ import annotations

import datetime
import itertools
import operator
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import sqlalchemy

from .._gc import paused_gc
from ..dimensions import (
    MAX_NSEC,
    MIN_NSEC,
    DimensionElement,
    DimensionRecord,
    DimensionUniverse,
    Timespan,
    decode_region,
    is_astropy_time,
    is_region,
    is_region_type,
    tai_nsec_from_datetime,
    tai_nsec_from_time,
)
from ..errors import ConflictingDefinitionError, DataIdError
from ._batching import batches
from ._db import Database
from ._schema import RegistrySchema
from ._spatial_index import InvalidRegionError, PixelChunk, envelopes

__all__ = ["DimensionRecordStorage", "RecordRowBuilder", "record_from_row"]

_ANALYZE_AFTER = 5_000

_INT64 = (-(2**63), 2**63 - 1)


def _value_problem(value: Any) -> str | None:
    """Why the database cannot hold this value of a record, or `None`."""
    if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
        return "is out of range: integers must fit in 64 bits"
    if type(value) is str and "\x00" in value:
        return "contains a NUL character (\\x00), which databases cannot store"
    return None


def _check_storable(element: DimensionElement, builder: RecordRowBuilder, rows: list[tuple]) -> None:
    """Refuse, naming the record, a value the database cannot hold: an integer beyond 64 bits, a NUL.

    Otherwise the driver fails mid-insert with its own error (SQLite's
    ``OverflowError``, PostgreSQL's ``DataError``), or SQLite stores a NUL
    that PostgreSQL would refuse.  Column-wise, so 10⁵ records cost a few
    C-level passes (``min``/``max`` of each integer column, a scan of each
    string column); only a column that fails is searched for the record.
    """
    for position, (name, column) in enumerate(zip(builder.columns, zip(*rows))):
        kinds = set(map(type, column))
        suspect = False
        if int in kinds:
            ints = [v for v in column if type(v) is int]
            suspect = min(ints) < _INT64[0] or max(ints) > _INT64[1]
        if not suspect and str in kinds:
            suspect = any("\x00" in v for v in column if type(v) is str)
        if not suspect:
            continue
        for row in rows:
            why = _value_problem(row[position])
            if why is not None:
                key = {k: row[i] for k, i in zip(element.key_columns, builder.key_positions)}
                what = f"{name} = {row[position]!r:.60}"
                if name.startswith("timespan"):
                    what, why = "its timespan", "is outside the times porter stores (about 1677 to 2262)"
                raise DataIdError(f"The {element.name} record {key}: {what} {why}; correct the value.")


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


def _time_nsec(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return int(value)
    if is_astropy_time(value):
        return tai_nsec_from_time(value)
    if isinstance(value, datetime.datetime):
        return tai_nsec_from_datetime(value)
    raise TypeError(value)


class RecordRowBuilder:
    """Turns record mappings of one element into SQL row tuples (``columns`` order)."""

    def __init__(self, element: DimensionElement):
        self.element = element
        specs = element.field_specs
        self.columns: list[str] = [s.name for s in specs]
        self.key_positions = [self.columns.index(k) for k in element.key_columns]
        self.has_region = element.has_region
        self.has_timespan = element.has_timespan
        if self.has_region:
            self.region_position = len(self.columns)
            self.columns.append("region")
        if self.has_timespan:
            self.columns += ["timespan_begin", "timespan_end"]
        self.allowed = {s.name for s in specs}
        if self.has_region:
            self.allowed.add("region")
        if self.has_timespan:
            self.allowed |= {"timespan", "datetime_begin", "datetime_end"}
        keys = set(element.key_columns)
        self._checks = [
            (
                s.name,
                {"int": int, "float": float, "string": str, "bool": bool, "hash": bytes}[s.type],
                s.length,
                s.nullable and s.name not in keys,
            )
            for s in specs
        ]

    def row(self, data: Mapping[str, Any] | DimensionRecord) -> tuple:
        """One SQL row (region as encoded bytes, timespan as two nanosecond bounds)."""
        if isinstance(data, DimensionRecord):
            data = data.to_dict()
        fast = self._fast(data)
        if fast is not None:
            return fast
        record = DimensionRecord.from_mapping(self.element, data)
        values = record.to_dict()
        out: list[Any] = [values[name] for name in self.columns[: len(self._checks)]]
        if self.has_region:
            region = values["region"]
            out.append(None if region is None else region.encode())
        if self.has_timespan:
            ts = values["timespan"]
            out += [None, None] if ts is None else list(ts.nsec)
        return tuple(out)

    def _fast(self, data: Mapping[str, Any]) -> tuple | None:
        for k in data:
            if k not in self.allowed:
                return None
        out: list[Any] = []
        get = data.get
        for name, kind, length, nullable in self._checks:
            v = get(name)
            if v is None:
                if not nullable:
                    return None
            elif type(v) is not kind:
                if kind is float and type(v) is int:
                    v = float(v)
                else:
                    return None
            elif length is not None and len(v) > length:  # type: ignore[arg-type]
                return None
            out.append(v)
        if self.has_region:
            region = get("region")
            if region is None or type(region) is bytes:
                out.append(region)
            elif isinstance(region, bytes):
                out.append(bytes(region))
            elif is_region(region):
                out.append(region.encode())
            else:
                return None
        if self.has_timespan:
            if "timespan" in data:
                if "datetime_begin" in data or "datetime_end" in data:
                    return None
                ts = data["timespan"]
                if ts is None:
                    out += [None, None]
                elif isinstance(ts, Timespan):
                    out += list(ts.nsec)
                else:
                    return None
            elif "datetime_begin" in data or "datetime_end" in data:
                try:
                    out += list(
                        Timespan(_time_nsec(get("datetime_begin")), _time_nsec(get("datetime_end"))).nsec
                    )
                except TypeError:
                    return None
            else:
                out += [None, None]
        return tuple(out)

    def rows(self, records: Iterable[Mapping[str, Any] | DimensionRecord]) -> list[tuple]:
        """SQL rows for many records: column-wise when every value has the right type.

        One pass per field with a set of the types seen replaces per-row
        checks (several times faster for 10⁵ records); if any column needs
        coercion or holds a bad value, every record goes through `row`,
        which coerces or explains.
        """
        recs = [r.to_dict() if isinstance(r, DimensionRecord) else r for r in records]
        fast = self._columnwise(recs)
        return fast if fast is not None else [self.row(r) for r in recs]

    def _columnwise(self, recs: list[Any]) -> list[tuple] | None:
        if not recs or not all(isinstance(r, dict) for r in recs):
            return None
        if not all(map(self.allowed.issuperset, recs)):
            return None
        none = type(None)
        cols: list[list[Any]] = []
        for name, kind, length, nullable in self._checks:
            col = [d.get(name) for d in recs]
            types = set(map(type, col))
            if kind is float and int in types:
                col = [float(v) if type(v) is int else v for v in col]
                types = set(map(type, col))
            if not types <= ({kind, none} if nullable else {kind}):
                return None
            if length is not None and max(map(len, filter(None, col)), default=0) > length:
                return None
            cols.append(col)
        if self.has_region:
            col = [d.get("region") for d in recs]
            types = set(map(type, col)) - {none}
            if types <= {bytes}:
                pass
            elif all(issubclass(t, bytes) for t in types):
                col = [None if v is None else bytes(v) for v in col]
            elif all(is_region_type(t) for t in types):
                col = [None if v is None else v.encode() for v in col]
            else:
                return None
            cols.append(col)
        if self.has_timespan:
            split = [("datetime_begin" in d or "datetime_end" in d) for d in recs]
            if any(split):
                if any("timespan" in d for d in recs):
                    return None
                begin = [d.get("datetime_begin") for d in recs]
                end = [d.get("datetime_end") for d in recs]
                if not all(isinstance(v, int) for v in (*begin, *end) if v is not None):
                    return None
                cols.append(
                    [None if not s else (MIN_NSEC if b is None else int(b)) for s, b in zip(split, begin)]
                )
                cols.append(
                    [None if not s else (MAX_NSEC if e is None else int(e)) for s, e in zip(split, end)]
                )
            else:
                spans = [d.get("timespan") for d in recs]
                if not set(map(type, spans)) <= {Timespan, none}:
                    return None
                cols.append([None if t is None else t.nsec[0] for t in spans])
                cols.append([None if t is None else t.nsec[1] for t in spans])
        return list(zip(*cols))

    def key(self, row: tuple) -> tuple:
        return tuple(row[i] for i in self.key_positions)


class DimensionRecordStorage:
    """Inserts dimension records with set-based statements."""

    def __init__(self, db: Database, schema: RegistrySchema, universe: DimensionUniverse):
        self._db = db
        self._schema = schema
        self._universe = universe
        self._builders: dict[str, RecordRowBuilder] = {}

    def builder(self, element: DimensionElement) -> RecordRowBuilder:
        b = self._builders.get(element.name)
        if b is None:
            b = self._builders[element.name] = RecordRowBuilder(element)
        return b

    def insert(
        self,
        element: DimensionElement,
        records: Iterable[Mapping[str, Any] | DimensionRecord],
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
        builder = self.builder(element)
        records = [r.to_dict() if isinstance(r, DimensionRecord) else r for r in records]
        # Envelopes start first: with many regions, worker processes compute
        # them while the rows are built and written below.
        regions = _raw_regions(records) if element.has_region else None
        chunks = None
        try:
            if regions is not None:
                chunks = self._start_envelopes(regions)
            return self._insert_rows(element, builder, records, regions, chunks, skip_existing, replace)
        except InvalidRegionError as exc:
            n = self._region_owner(regions, exc.index)
            which = f"{ {k: records[n].get(k) for k in element.key_columns} } " if regions is not None else ""
            raise DataIdError(
                f"The {element.name} record {which}(#{n} of those given) has an invalid region "
                f"({exc.reason}); give an lsst.sphgeom region (or the bytes of its encode()) with finite "
                "unit-vector vertices in counter-clockwise order, or no region."
            ) from None
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # stops the envelope workers if anything failed

    @staticmethod
    def _region_owner(regions: list[Any] | None, index: int) -> int:
        """The position, among the records given, of the ``index``-th record that has a region."""
        if regions is None:
            return index
        with_region = [i for i, r in enumerate(regions) if r is not None]
        return with_region[index]

    def _start_envelopes(self, regions: list[Any]) -> Iterator[PixelChunk]:
        skypix = self._universe.common_skypix
        return envelopes(skypix.system, skypix.level, [r for r in regions if r is not None])

    def _insert_rows(
        self,
        element: DimensionElement,
        builder: RecordRowBuilder,
        records: list[Any],
        regions: list[Any] | None,
        chunks: Iterator[PixelChunk] | None,
        skip_existing: bool,
        replace: bool,
    ) -> int:
        with paused_gc():
            rows = builder.rows(records)
        if not rows:
            return 0
        _check_storable(element, builder, rows)
        key_of = operator.itemgetter(*builder.key_positions)
        keys = (
            list(map(key_of, rows))
            if len(builder.key_positions) > 1
            else [(r[builder.key_positions[0]],) for r in rows]
        )
        # The key of each given record, None for a duplicate that is dropped.
        record_keys: list[tuple | None] = list(keys)
        if len(set(keys)) != len(keys):
            seen: set[tuple] = set()
            unique_rows = []
            for n, (k, r) in enumerate(zip(keys, rows)):
                if k in seen:
                    if not (replace or skip_existing):
                        raise ConflictingDefinitionError(
                            f"Two records of {element.name!r} have the same key {dict(zip(element.key_columns, k))}."
                        )
                    record_keys[n] = None
                    continue
                seen.add(k)
                unique_rows.append(r)
            rows = unique_rows
            keys = [builder.key(r) for r in rows]
        if self._db.dialect == "postgresql":
            # The same lock order in every writer: concurrent imports cannot deadlock.
            order = sorted(range(len(rows)), key=lambda i: tuple(map(_sortable, keys[i])))
            rows = [rows[i] for i in order]
            keys = [keys[i] for i in order]
        region_keys: list[tuple | None] = []
        if element.has_region:
            pos = builder.region_position
            if chunks is None:  # regions given in a form only the row builder understands
                regions = [r[pos] for r in rows]
                record_keys = list(keys)
                chunks = self._start_envelopes(regions)
            assert regions is not None
            region_keys = [k for k, g in zip(record_keys, regions) if g is not None]
        table = self._schema.elements[element.name]
        try:
            # A savepoint, so a failure inside a larger transaction (an import)
            # can be diagnosed and reported without poisoning it.
            with self._db.transaction(savepoint=True) as conn:
                self._ensure_bands(conn, element, builder, rows)
                self._check_dependencies(conn, element, builder, rows)
                if replace:
                    stmt = self._db.upsert(table, list(element.key_columns))
                    for chunk in batches(rows):
                        conn.execute(stmt, [dict(zip(builder.columns, r)) for r in chunk])
                else:
                    self._db.bulk_insert(
                        conn, table, builder.columns, rows, "ignore" if skip_existing else "error"
                    )
                if chunks is not None:
                    self._write_overlaps(conn, element, keys, region_keys, chunks, replace)
                if len(rows) >= _ANALYZE_AFTER:
                    self._db.analyze(conn, table, len(rows))
                    if element.has_region:
                        self._db.analyze(conn, self._schema.overlaps[element.name], len(rows))
        except sqlalchemy.exc.IntegrityError as exc:
            # The fast path failed; find out why, in words the user can act on.
            named = [dict(zip(builder.columns, r)) for r in rows]
            with self._db.reading() as conn:
                if not (skip_existing or replace):
                    self._check_not_existing(conn, element, named)
            raise ConflictingDefinitionError(
                f"Records of {element.name!r} conflict with existing ones (a duplicate alternate key such as "
                f"a detector full_name or visit name?): {exc.orig}"
            ) from None
        return len(rows)

    def _ensure_bands(
        self,
        conn: sqlalchemy.Connection,
        element: DimensionElement,
        builder: RecordRowBuilder,
        rows: list[tuple],
    ) -> None:
        """Bands are implied by physical filters; insert the ones they name (as daf_butler's band view does)."""
        if "band" not in element.direct_implies or "band" not in self._schema.elements:
            return
        pos = builder.columns.index("band")
        bands = sorted({r[pos] for r in rows if r[pos] is not None})
        self._db.bulk_insert(conn, self._schema.elements["band"], ["name"], [(b,) for b in bands], "ignore")

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
        self,
        conn: sqlalchemy.Connection,
        element: DimensionElement,
        builder: RecordRowBuilder,
        rows: list[tuple],
    ) -> None:
        """Every record these rows require or imply must exist; name the first that does not.

        Set-based: the distinct keys of each dependency, one query each.
        """
        for dep_name in (*element.direct_requires, *element.direct_implies):
            dep = self._universe.dimensions[dep_name]
            if not dep.has_own_table:
                continue
            local = [d.name for d in dep.required]
            positions = [
                builder.columns.index(c if c in builder.columns else _own_key(element, c)) for c in local
            ]
            pick = operator.itemgetter(*positions)
            values = map(pick, rows) if len(positions) > 1 else ((v,) for v in map(pick, rows))
            wanted = {v for v in values if None not in v}
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
        keys: list[tuple],
        region_keys: list[tuple | None],
        chunks: Iterator[PixelChunk],
        replace: bool,
    ) -> None:
        """Write the overlap rows of each region (owned by ``region_keys``) from the envelope chunks, as they arrive.

        ``keys`` are all records written (with ``replace`` their old overlap
        rows go first); a region whose key is None belonged to a duplicate
        record that was dropped.
        """
        overlap = self._schema.overlaps[element.name]
        key_names = [d.name for d in element.required]
        columns = [*key_names, self._universe.common_skypix.name]
        if replace:
            for chunk in batches(keys):
                conn.execute(
                    sqlalchemy.delete(overlap).where(
                        sqlalchemy.tuple_(*[overlap.c[k] for k in key_names]).in_(list(chunk))
                    )
                )
        with self._db.deferred_indexes(conn, overlap, 2 * len(region_keys)):
            done = 0
            for counts, pixels in chunks:
                chunk_keys = region_keys[done : done + len(counts)]
                done += len(counts)
                repeated = itertools.chain.from_iterable(map(itertools.repeat, chunk_keys, counts))
                rows = [(*key, pix) for key, pix in zip(repeated, pixels) if key is not None]
                self._db.bulk_insert(conn, overlap, columns, rows, "ignore")


def _raw_regions(records: list[Any]) -> list[Any] | None:
    """The region of each record, if every one is an sphgeom region, its encoding or None.

    Otherwise None: the row builder will explain what is wrong or convert.
    """
    try:
        regions = [r.get("region") for r in records]
    except AttributeError:
        return None
    none = type(None)
    if all(t is none or issubclass(t, bytes) or is_region_type(t) for t in set(map(type, regions))):
        return regions
    return None


def _own_key(element: DimensionElement, dimension: str) -> str:
    """The record field holding ``dimension``'s value (``id`` for the element's own key)."""
    for d, column in zip(element.required, element.key_columns):
        if d.name == dimension:
            return column
    return dimension


def _sortable(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, int | float) else (1, 0, str(v))


def _existing_keys(
    conn: sqlalchemy.Connection, table: sqlalchemy.Table, columns: list[str], wanted: set[tuple]
) -> set[tuple]:
    """The subset of ``wanted`` key tuples that exist in ``table`` (only used to explain errors)."""
    found: set[tuple] = set()
    cols = [table.c[c] for c in columns]
    wanted_list = sorted(wanted, key=lambda t: tuple(map(_sortable, t)))
    for chunk in batches(wanted_list, 500):
        if len(columns) == 1:
            cond = cols[0].in_([t[0] for t in chunk])
        else:
            cond = sqlalchemy.tuple_(*cols).in_(list(chunk))
        for row in conn.execute(sqlalchemy.select(*cols).where(cond)):
            found.add(tuple(row))
    return found & wanted
