"""Writing Rubin-format export files (version 1.0.2), readable by daf_butler.

The file is emitted directly as text rather than through a YAML dumper: the
structure is fixed and regular, and writing hundreds of thousands of dataset
entries this way is an order of magnitude faster.  Every scalar goes through
`yaml_scalar`, which quotes anything YAML could misread.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from ..._gc import paused_gc
from ...dimensions import (
    MAX_NSEC,
    MIN_NSEC,
    DataCoordinate,
    DimensionRecord,
    DimensionUniverse,
    Timespan,
    encode_region,
)
from ...registry import CollectionInfo, CollectionType, DatasetRef, Registry
from ...registry.expr import ExpressionFactory
from ._yaml_tags import TaiTime, timespan_yaml, yaml_scalar

__all__ = ["EXPORT_FORMAT_VERSION", "ExportWriter", "write_export"]

EXPORT_FORMAT_VERSION = "1.0.2"


class ExportWriter:
    """Accumulates what to export and writes it in daf_butler's layout."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.universe: DimensionUniverse = registry.universe
        self.records: dict[str, dict[tuple, DimensionRecord]] = defaultdict(dict)
        self.collections: dict[str, CollectionInfo] = {}
        self.datasets: dict[tuple[str, str], list[DatasetRef]] = defaultdict(list)
        self._dataset_ids: set[uuid.UUID] = set()
        self.paths: dict[uuid.UUID, str] = {}
        self.formatters: dict[uuid.UUID, str] = {}  # for datasets exported with their files
        self.tag_associations: dict[str, list[uuid.UUID]] = {}
        self.calib_associations: dict[str, list[tuple[DatasetRef, Timespan]]] = {}

    # --- what to export -------------------------------------------------------------------------

    def add_records(self, element: str, records: Iterable[DimensionRecord]) -> None:
        store = self.records[element]
        for r in records:
            store[r.key_values] = r

    def add_dimension_data(self, data_ids: Iterable[DataCoordinate]) -> None:
        """Add the records of every element of these data IDs (as daf_butler's saveDataIds does)."""
        by_group: dict[Any, list[DataCoordinate]] = defaultdict(list)
        for d in data_ids:
            by_group[d.dimensions].append(d)
        for group, ids in by_group.items():
            wanted: dict[str, set[tuple]] = defaultdict(set)
            for name in group.elements:
                element = self.universe[name]
                if not element.has_own_table or name == "band":
                    continue
                keys = [d.name for d in element.required]
                for d in ids:
                    mapping = d.mapping
                    if all(k in mapping for k in keys):
                        wanted[name].add(tuple(mapping[k] for k in keys))
            for name, key_set in wanted.items():
                missing = key_set - set(self.records[name])
                if missing:
                    self._fetch(name, missing)
            # Implied dimensions (physical_filter of a visit, day_obs …) are
            # needed too, and come from the records just fetched.
            self._add_implied()

    def _add_implied(self) -> None:
        changed = True
        while changed:
            changed = False
            for name in list(self.records):
                element = self.universe[name]
                for dim in element.implied:
                    if not dim.has_own_table or dim.name == "band":
                        continue
                    keys = set()
                    for r in self.records[name].values():
                        values = r.to_dict()
                        key = tuple(values.get(d.name) for d in dim.required)
                        if None not in key:
                            keys.add(key)
                    missing = keys - set(self.records[dim.name])
                    if missing:
                        self._fetch(dim.name, missing)
                        changed = True

    def _fetch(self, element: str, keys: set[tuple]) -> None:
        e = self.universe[element]
        if not keys:
            return
        where = None
        if e.required[0].is_governor:  # only the governors' records in question, as a typed constraint
            where = ExpressionFactory()[e.required[0].name].in_iterable(sorted({k[0] for k in keys}))
        recs = self.registry.query_dimension_records(
            e, where=where.node if where is not None else "", bind=where.bind if where is not None else None
        )
        store = self.records[element]
        for r in recs:
            if r.key_values in keys:
                store[r.key_values] = r

    def add_all_dimension_records(self, elements: Iterable[str] | None = None) -> None:
        """Add every record of the given (default: all stored) elements."""
        names = elements if elements is not None else [e.name for e in self.universe.database_elements]
        for name in names:
            if name == "band":
                continue
            self.add_records(name, self.registry.query_dimension_records(name))

    def add_datasets(self, refs: Iterable[DatasetRef]) -> None:
        refs = [r for r in refs if r.id not in self._dataset_ids]
        for ref in refs:
            self._dataset_ids.add(ref.id)
            self.datasets[(ref.dataset_type.name, ref.run)].append(ref)
        for run in {r.run for r in refs}:
            self.add_collection(run)
        self.add_dimension_data(r.data_id for r in refs)

    def add_collection(self, name: str, with_associations: bool = True) -> None:
        if name in self.collections:
            return
        info = self.registry.collections.get(name)
        self.collections[name] = info
        if not with_associations:
            return
        if info.type is CollectionType.TAGGED:
            refs = self.registry.datasets.refs_in_collection(info)
            self.add_datasets(refs)
            self.tag_associations[name] = [r.id for r in refs]
        elif info.type is CollectionType.CALIBRATION:
            assoc = self.registry.associations.calibration_associations(info)
            self.add_datasets(r for r, _ in assoc)
            self.calib_associations[name] = assoc
        elif info.type is CollectionType.CHAINED:
            for child in info.children:
                self.add_collection(child)

    # --- writing ----------------------------------------------------------------------------------

    def write(self, out: IO[str]) -> None:
        w = out.write
        u = self.universe
        w("description: Butler Data Repository Export\n")
        w(f"version: {EXPORT_FORMAT_VERSION}\n")
        w(f"universe_version: {u.version}\n")
        w(f"universe_namespace: {u.namespace}\n")
        w("data:\n")
        for name in u.sorted_names(self.records):
            recs = self.records[name]
            if not recs:
                continue
            w(f"- type: dimension\n  element: {name}\n  records:\n")
            for key in sorted(recs, key=_key_sort):
                self._write_record(w, recs[key])
        for name, info in self.collections.items():
            w(f"- type: collection\n  collection_type: {info.type.name}\n  name: {yaml_scalar(name)}\n")
            if info.doc:
                w(f"  doc: {yaml_scalar(info.doc)}\n")
            if info.type is CollectionType.RUN:
                host, ts = self.registry.collections.run_timespan(name)
                b, e = ts.nsec
                begin = "null" if b == MIN_NSEC else yaml_scalar(TaiTime(b))
                end = "null" if e == MAX_NSEC else yaml_scalar(TaiTime(e))
                w(f"  host: {yaml_scalar(host)}\n  timespan_begin: {begin}\n  timespan_end: {end}\n")
            elif info.type is CollectionType.CHAINED:
                w("  children:\n")
                for child in info.children:
                    w(f"  - {yaml_scalar(child)}\n")
        written_types: set[str] = set()
        for (type_name, run), refs in self.datasets.items():
            dt = refs[0].dataset_type
            if type_name not in written_types:
                written_types.add(type_name)
                w(f"- type: dataset_type\n  name: {type_name}\n  dimensions:\n")
                for d in dt.dimensions.names:
                    w(f"  - {d}\n")
                w(f"  storage_class: {yaml_scalar(dt.storage_class_name)}\n")
                w(f"  is_calibration: {yaml_scalar(dt.is_calibration)}\n")
            w(f"- type: dataset\n  dataset_type: {type_name}\n  run: {yaml_scalar(run)}\n  records:\n")
            names = dt.dimensions.required
            parts: list[str] = []
            # Datasets sharing a file are one entry, as daf_butler writes them: an importer
            # refuses two entries claiming one file.
            entries: dict[str, list[DatasetRef]] = {}
            for ref in refs:
                path = self.paths.get(ref.id) or _default_path(ref)
                entries.setdefault(path, []).append(ref)
            for path, sharing in entries.items():
                id_lines = "".join(f"    - !uuid '{ref.id}'\n" for ref in sharing)
                data_ids = "".join(
                    "    - {"
                    + ", ".join(f"{n}: {yaml_scalar(v)}" for n, v in zip(names, ref.data_id.required_values))
                    + "}\n"
                    for ref in sharing
                )
                formatter = self.formatters.get(sharing[0].id)
                parts.append(
                    f"  - dataset_id:\n{id_lines}    data_id:\n{data_ids}"
                    f"    path: {yaml_scalar(path)}\n"
                    + (f"    formatter: {yaml_scalar(formatter)}\n" if formatter else "")
                )
                if len(parts) > 4096:
                    w("".join(parts))
                    parts.clear()
            w("".join(parts))
        for name, ids in self.tag_associations.items():
            w(
                f"- type: associations\n  collection: {yaml_scalar(name)}\n  collection_type: TAGGED\n  dataset_ids:\n"
            )
            w("".join(f"  - !uuid '{i}'\n" for i in ids))
        for name, assoc in self.calib_associations.items():
            w(f"- type: associations\n  collection: {yaml_scalar(name)}\n  collection_type: CALIBRATION\n")
            w("  validity_ranges:\n")
            by_ts: dict[Timespan, list[uuid.UUID]] = defaultdict(list)
            for ref, ts in assoc:
                by_ts[ts].append(ref.id)
            for ts, ids in by_ts.items():
                w(f"  - timespan: {timespan_yaml(ts)}\n    dataset_ids:\n")
                w("".join(f"    - !uuid '{i}'\n" for i in ids))

    def _write_record(self, w: Any, record: DimensionRecord) -> None:
        values = record.to_dict()
        lines = []
        first = True
        for name, value in values.items():
            prefix = "  - " if first else "    "
            first = False
            if name == "region":
                if value is None:
                    lines.append(f"{prefix}region: null\n")
                else:
                    kind = type(value).__name__
                    lines.append(
                        f"{prefix}region: !<lsst.sphgeom.{kind}>\n      encoded: {encode_region(value).hex()}\n"
                    )
            elif name == "timespan":
                if value is None:
                    continue  # daf_butler omits absent timespans
                b, e = value.nsec
                begin = "null" if b == MIN_NSEC else yaml_scalar(TaiTime(b))
                end = "null" if e == MAX_NSEC else yaml_scalar(TaiTime(e))
                lines.append(f"{prefix}datetime_begin: {begin}\n    datetime_end: {end}\n")
            else:
                lines.append(f"{prefix}{name}: {yaml_scalar(value)}\n")
        w("".join(lines))


def _default_path(ref: DatasetRef) -> str:
    """The relative path daf_butler's default file template would give a dataset.

    daf_butler requires a path for every dataset in an export; datasets that
    have no artifact recorded get this one.
    """
    values = "_".join(str(v) for v in ref.data_id.required_values)
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.\-]", "_", s)  # noqa: E731
    return f"{ref.run}/{ref.dataset_type.name}/{safe(ref.dataset_type.name)}_{safe(values)}_{safe(ref.run)}"


def _key_sort(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in key)


def write_export(writer: ExportWriter, filename: str | Path) -> None:
    """Write atomically: to a temporary file next to the target, then rename."""
    path = Path(filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f, paused_gc():
            writer.write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refs_for_export(
    registry: Registry,
    collections: Sequence[str],
    dataset_types: Sequence[str] | None,
    where: str,
) -> list[DatasetRef]:
    """Every dataset of the given types (default: all) in the given collections."""
    out: list[DatasetRef] = []
    types = registry.query_dataset_types(dataset_types or "*")
    for dt in types:
        out.extend(registry.query_datasets(dt.name, collections, find_first=False, where=where))
    return out
