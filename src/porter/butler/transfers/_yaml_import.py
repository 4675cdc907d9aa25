"""Reading Rubin butler export files (format versions 0 and 1.0.x).

The whole file is read and validated first, then written in one registry
transaction in dependency order: dimension records, dataset types, runs and
other collections, chains, datasets (keeping their UUIDs), TAGGED
associations and CALIBRATION certifications.  A file with any error imports
nothing.

Files written with older daf_butler dimension universes are migrated as
daf_butler migrates them: visits' ``visit_system`` becomes
``visit_system_membership`` records (universe < 2), ``seeing`` is dropped and
a missing ``visit.day_obs`` is derived from the visit's start (< 1),
``exposure.group_name`` becomes a ``group`` record and ``day_obs`` values get
``day_obs`` records (< 6).
"""

from __future__ import annotations

import datetime
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from ..._gc import paused_gc
from ...dimensions import (
    MAX_NSEC,
    MIN_NSEC,
    DataCoordinate,
    DimensionUniverse,
    Timespan,
    iso_from_tai_nsec,
    tai_nsec_from_datetime,
)
from ...errors import DataIdError, ExportFormatError, PorterError
from ...registry import CollectionType, DatasetRef, DatasetType, Registry, check_collection_name
from . import _fast_yaml as fast_yaml
from ._yaml_tags import ExportLoader, TaiTime

__all__ = ["ImportPlan", "apply_contents", "apply_definitions", "apply_plan", "plan_refs", "read_export"]

SUPPORTED_MAJOR = 1
SUPPORTED_MINOR = 0


@dataclass
class ImportPlan:
    """Everything an export file asks to create, validated, in memory."""

    universe_version: int
    universe_namespace: str
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    """Raw record mappings per element (validated when written)."""
    dataset_types: dict[str, DatasetType] = field(default_factory=dict)
    runs: dict[str, tuple[str | None, Timespan | None]] = field(default_factory=dict)
    collections: dict[str, CollectionType] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)
    datasets: list[tuple[str, str, list[tuple[uuid.UUID, dict[str, Any], str | None]]]] = field(
        default_factory=list
    )
    tags: dict[str, list[uuid.UUID]] = field(default_factory=lambda: defaultdict(list))
    calibs: dict[str, list[tuple[Timespan, list[uuid.UUID]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    paths: dict[uuid.UUID, tuple[str | None, str | None]] = field(default_factory=dict)
    file_records: dict[uuid.UUID, int] = field(default_factory=dict)
    """Which ``records`` entry of the file named each dataset's path (its position among all of them).

    Datasets listed together in one entry share its file; two entries naming
    the same path are two claims on one file, refused when files are imported.
    """

    def step_count(self, skip_dimensions: Iterable[str] = ()) -> int:
        """Number of progress steps `apply_plan` reports."""
        skip = set(skip_dimensions)
        return sum(1 for n, recs in self.records.items() if recs and n not in skip) + 3

    def summary(self) -> dict[str, int]:
        return {
            "dimension records": sum(len(v) for v in self.records.values()),
            "dataset types": len(self.dataset_types),
            "runs": len(self.runs),
            "other collections": len(self.collections) + len(self.chains),
            "datasets": sum(len(r) for _, _, r in self.datasets),
        }


def _where(index: int, item: Mapping[str, Any]) -> str:
    what = item.get("type", "?") if isinstance(item, Mapping) else "?"
    detail = (
        item.get("element") or item.get("name") or item.get("dataset_type") or item.get("collection")
        if isinstance(item, Mapping)
        else None
    )
    if detail and len(str(detail)) > 60:
        detail = f"{str(detail)[:60]!r}…"
    elif detail and not str(detail).isprintable():
        detail = repr(str(detail))  # a NUL or escape in a message would garble the terminal
    return f"data[{index}] ({what}{' ' + str(detail) if detail else ''})"


def _parse_version(wrapper: Mapping[str, Any]) -> None:
    version = wrapper.get("version")
    if version == 0 or version == "0":
        return
    try:
        parts = [int(p) for p in str(version).split(".")]
    except ValueError:
        raise ExportFormatError(f"Export file has unreadable version {version!r}.") from None
    major = parts[0]
    minor = parts[1] if len(parts) > 1 else 0
    if major != SUPPORTED_MAJOR or minor > SUPPORTED_MINOR:
        raise ExportFormatError(
            f"Export file version {version} is not supported; porter reads versions 0 and "
            f"{SUPPORTED_MAJOR}.{SUPPORTED_MINOR}.x."
        )


def _to_time_value(value: Any) -> Any:
    """Normalise times from any export vintage: tagged TAI ns, or naive UTC datetimes."""
    if isinstance(value, TaiTime):
        return int(value)
    if isinstance(value, datetime.datetime):
        return tai_nsec_from_datetime(value)
    return value


def _source(stream: IO[str] | str | Path) -> str:
    """How messages name the file being read."""
    return f"export file {str(stream)!r}" if isinstance(stream, str | Path) else "the export stream"


def load_export_yaml(stream: IO[str] | str | Path) -> Any:
    """Parse export-file YAML: the fast reader when it can, PyYAML (libyaml) otherwise.

    Every way the text can fail to parse is an `ExportFormatError`: PyYAML
    raises ``ValueError`` (not a ``YAMLError``) for an impossible timestamp
    such as ``2021-13-45``, and both readers recurse once per level of
    nesting, so a pathologically nested file ends in ``RecursionError``.
    """
    source = _source(stream)
    capitalized = source[0].upper() + source[1:]  # to start a sentence
    try:
        if isinstance(stream, str | Path):
            with open(stream, encoding="utf-8") as f:
                text = f.read()
        else:
            text = stream.read()
    except FileNotFoundError:
        raise ExportFormatError(f"{capitalized} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise ExportFormatError(f"{capitalized} is not UTF-8 text: {exc}") from None
    if not isinstance(text, str):
        raise ExportFormatError(f"{capitalized} gave {type(text).__name__}, not text; open it in text mode.")
    try:
        with paused_gc():
            return fast_yaml.load(text)
    except fast_yaml.Unsupported:
        pass
    except (ValueError, TypeError, OverflowError) as exc:
        raise ExportFormatError(f"Bad value in {source}: {exc}") from None
    except RecursionError:
        raise ExportFormatError(f"{capitalized} is nested too deeply to be an export file.") from None
    try:
        return yaml.load(text, Loader=ExportLoader)
    except yaml.YAMLError as exc:
        raise ExportFormatError(f"{capitalized} is not valid YAML: {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ExportFormatError(f"Bad value in {source}: {exc}") from None
    except RecursionError:
        raise ExportFormatError(f"{capitalized} is nested too deeply to be an export file.") from None


_INT64 = (-(2**63), 2**63 - 1)


def _value_problem(value: Any) -> str | None:
    """Why the database cannot hold this scalar of an export file, or `None`.

    Checked while the file is read, so that such a value is an error naming
    its place in the file rather than a driver error (``OverflowError`` from
    SQLite's, ``DataError`` or ``ValueError`` from PostgreSQL's) in the middle
    of the import's transaction.  Cheap on the common case: most values are
    small ints and ASCII strings.
    """
    kind = type(value)
    if kind is TaiTime:
        if not MIN_NSEC <= value <= MAX_NSEC:
            return (
                f"time {value} ns is outside the times porter stores (TAI nanoseconds in 64 bits, "
                "about 1677 to 2262)"
            )
    elif kind is int:
        if not _INT64[0] <= value <= _INT64[1]:
            return f"{value} is out of range: integers must fit in 64 bits"
    elif kind is str:
        if "\x00" in value:
            return f"{value!r:.80} contains a NUL character (\\x00), which databases cannot store"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"{value!r:.80} is not valid Unicode text ({exc.reason})"
    elif kind is Timespan:
        b, e = value.nsec
        if not (MIN_NSEC <= b <= MAX_NSEC and MIN_NSEC <= e <= MAX_NSEC):
            return "timespan bound outside the times porter stores (about 1677 to 2262)"
    return None


def _check_values(item: Any) -> None:
    """Raise `ExportFormatError` for the first value (or key) of ``item`` the database cannot hold.

    The message gives its path inside the item (``records[3].id``); the
    caller adds which data entry it is.  Iterative: no recursion however
    deeply a broken file nests.
    """
    stack: list[tuple[str, Any]] = [("", item)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ExportFormatError(
                        f"{path or 'the entry'} has the key {k!r}: keys must be field names."
                    )
                problem = _value_problem(k)
                if problem:
                    raise ExportFormatError(f"key {problem}")
                stack.append((f"{path}.{k}" if path else k, v))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        else:
            problem = _value_problem(value)
            if problem:
                raise ExportFormatError(f"{path}: {problem}.")


def _universe_version(wrapper: Mapping[str, Any]) -> int:
    """The export's universe version; ``int()`` semantics for strings (so ``'1_000'`` is 1000)."""
    value = wrapper.get("universe_version", 0) or 0
    if not isinstance(value, bool) and isinstance(value, int | str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ExportFormatError(f"Export file has universe_version {value!r}; it must be an integer such as 7.")


def read_export(stream: IO[str] | str | Path, universe: DimensionUniverse, registry: Registry) -> ImportPlan:
    """Parse and validate an export file into an `ImportPlan` (nothing is written)."""
    wrapper = load_export_yaml(stream)
    if not isinstance(wrapper, Mapping) or "data" not in wrapper or "version" not in wrapper:
        raise ExportFormatError(
            "Not a butler export file: expected a mapping with 'version' and 'data' keys "
            "(description: Butler Data Repository Export)."
        )
    _parse_version(wrapper)
    plan = ImportPlan(
        universe_version=_universe_version(wrapper),
        universe_namespace=str(wrapper.get("universe_namespace", "daf_butler")),
    )
    if not isinstance(wrapper["data"], list):
        raise ExportFormatError("The 'data' entry of an export file must be a list.")
    migrate = plan.universe_namespace == "daf_butler" and plan.universe_version < universe.version
    v = plan.universe_version
    day_obs_needed: set[tuple[str, int]] = set()
    dataset_items: list[tuple[int, Mapping[str, Any]]] = []
    for index, item in enumerate(wrapper["data"]):
        try:
            _check_values(item)
            kind = item["type"]
            if kind == "dimension":
                element_name = item["element"]
                universe[element_name]  # unknown elements are errors here, with suggestions
                raw_records = [dict(r) for r in item.get("records") or []]
                if migrate and element_name == "visit":
                    if v < 2 and "visit_system_membership" in universe:
                        plan.records["visit_system_membership"].extend(
                            {
                                "instrument": r["instrument"],
                                "visit_system": r["visit_system"],
                                "visit": r["id"],
                            }
                            for r in raw_records
                            if r.get("visit_system") is not None
                        )
                        for r in raw_records:
                            r.pop("visit_system", None)
                    if v < 1:
                        for r in raw_records:
                            r.pop("seeing", None)
                            if r.get("day_obs") is None and r.get("datetime_begin") is not None:
                                begin = _to_time_value(r["datetime_begin"])
                                r["day_obs"] = int(iso_from_tai_nsec(begin)[:10].replace("-", ""))
                if migrate and element_name == "exposure" and v < 6:
                    for r in raw_records:
                        if "group_name" in r:
                            r["group"] = r.pop("group_name")
                            r.pop("group_id", None)
                            plan.records["group"].append(
                                {"instrument": r["instrument"], "name": str(r["group"])}
                            )
                if migrate and v < 6 and element_name in ("visit", "exposure"):
                    for r in raw_records:
                        if r.get("day_obs") is not None:
                            day_obs_needed.add((r["instrument"], int(r["day_obs"])))
                # Validated (quickly) by the registry's row builder when written.
                plan.records[element_name].extend(raw_records)
            elif kind == "collection":
                ctype = CollectionType.from_name(item["collection_type"])
                name = item["name"]
                check_collection_name(name)
                if ctype is CollectionType.RUN:
                    b, e = item.get("timespan_begin"), item.get("timespan_end")
                    ts = None if b is None and e is None else Timespan(_to_time_value(b), _to_time_value(e))
                    plan.runs[name] = (item.get("host"), ts)
                elif ctype is CollectionType.CHAINED:
                    children = []
                    for child in item.get("children") or []:
                        if not isinstance(child, str):
                            warnings.warn(
                                f"Chained collection {name!r} has a dataset-type restriction on a child; "
                                "restrictions are not supported and are ignored.",
                                stacklevel=2,
                            )
                            child = child[0]
                        children.append(child)
                    plan.chains[name] = children
                else:
                    plan.collections[name] = ctype
                if item.get("doc"):
                    plan.docs[name] = item["doc"]
            elif kind == "run":
                check_collection_name(item["name"])
                plan.runs[item["name"]] = (None, None)
            elif kind == "dataset_type":
                dims = list(item["dimensions"])
                if migrate and v < 2 and "visit" in dims and "visit_system" in dims:
                    dims.remove("visit_system")
                dt = DatasetType(
                    item["name"],
                    dims,
                    item["storage_class"],
                    universe=universe,
                    is_calibration=bool(item.get("is_calibration", False)),
                )
                existing = plan.dataset_types.get(dt.name)
                if existing is not None and existing != dt:
                    raise ExportFormatError(f"dataset type {dt.name!r} is defined twice, differently.")
                plan.dataset_types[dt.name] = dt
            elif kind == "dataset":
                dataset_items.append((index, item))
            elif kind == "associations":
                ctype = CollectionType.from_name(item["collection_type"])
                name = item["collection"]
                if ctype is CollectionType.TAGGED:
                    plan.tags[name].extend(_uuid(x) for x in item.get("dataset_ids") or [])
                elif ctype is CollectionType.CALIBRATION:
                    for vr in item.get("validity_ranges") or []:
                        if "timespan" in vr:
                            ts = vr["timespan"] if vr["timespan"] is not None else Timespan(None, None)
                        else:
                            ts = Timespan(_to_time_value(vr.get("begin")), _to_time_value(vr.get("end")))
                        plan.calibs[name].append((ts, [_uuid(x) for x in vr.get("dataset_ids") or []]))
                else:
                    raise ExportFormatError(f"associations for a {ctype.name} collection are not allowed.")
            else:
                raise ExportFormatError(
                    f"unknown entry type {kind!r} (expected dimension, collection, run, dataset_type, "
                    "dataset or associations)."
                )
        except ExportFormatError as exc:
            raise ExportFormatError(f"Bad export file at {_where(index, item)}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError, PorterError) as exc:
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ExportFormatError(f"Bad export file at {_where(index, item)}: {detail}") from None
    if day_obs_needed:
        have = {(r["instrument"], r["id"]) for r in plan.records.get("day_obs", [])}
        for instrument, day_obs in sorted(day_obs_needed - have):
            plan.records["day_obs"].append({"instrument": instrument, "id": day_obs})
    record_number = 0
    for index, item in dataset_items:
        try:
            type_name = item["dataset_type"]
            run = item["run"]
            check_collection_name(run)
            if type_name not in plan.dataset_types:
                plan.dataset_types[type_name] = registry.dataset_types.get(type_name)
            entries: list[tuple[uuid.UUID, dict[str, Any], str | None]] = []
            for rec in item.get("records") or []:
                ids = rec["dataset_id"] if isinstance(rec["dataset_id"], list) else [rec["dataset_id"]]
                data_ids = rec["data_id"] if isinstance(rec["data_id"], list) else [rec["data_id"]]
                if len(ids) != len(data_ids):
                    raise ExportFormatError(
                        f"{len(ids)} dataset IDs but {len(data_ids)} data IDs in one record."
                    )
                record_number += 1
                for did, data_id in zip(ids, data_ids):
                    entries.append((_uuid(did), dict(data_id), rec.get("path")))
                    plan.paths[_uuid(did)] = (rec.get("path"), rec.get("formatter"))
                    plan.file_records.setdefault(_uuid(did), record_number)
            plan.datasets.append((type_name, run, entries))
        except ExportFormatError as exc:
            raise ExportFormatError(f"Bad export file at {_where(index, item)}: {exc}") from None
        except (KeyError, TypeError, ValueError, PorterError) as exc:
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ExportFormatError(f"Bad export file at {_where(index, item)}: {detail}") from None
    return plan


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, int):
        # Integer dataset IDs of very old exports map to deterministic UUIDs,
        # the same ones daf_butler assigns.
        return uuid.uuid3(uuid.UUID("4d4851f4-2890-4d41-8779-5f38a3f5062b"), str(value))
    return uuid.UUID(str(value))


def apply_plan(
    plan: ImportPlan,
    registry: Registry,
    skip_dimensions: Iterable[str] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write an `ImportPlan` to the registry in one transaction; return counts.

    ``progress`` is called with a description before each of
    ``plan.step_count()`` steps.
    """
    step = progress or (lambda _: None)
    with registry.transaction():
        apply_definitions(plan, registry, skip_dimensions, step)
        return apply_contents(plan, registry, step)


def apply_definitions(
    plan: ImportPlan,
    registry: Registry,
    skip_dimensions: Iterable[str] = (),
    progress: Callable[[str], None] | None = None,
) -> None:
    """The dimension records and dataset types of a plan (existing records are kept)."""
    universe = registry.universe
    skip = set(skip_dimensions)
    step = progress or (lambda _: None)
    with registry.transaction():
        for name in universe.sorted_names(plan.records):
            if name in skip or not plan.records[name]:
                continue
            step(f"{len(plan.records[name])} {name} records")
            try:
                registry.records.insert(universe[name], plan.records[name], skip_existing=True)
            except DataIdError as exc:
                raise ExportFormatError(f"Bad {name} records in export file: {exc}") from None
        for dt in plan.dataset_types.values():
            registry.register_dataset_type(dt)


def plan_refs(plan: ImportPlan) -> list[DatasetRef]:
    """The datasets of a plan, as refs with the UUIDs of the export file."""
    refs: list[DatasetRef] = []
    for type_name, run, entries in plan.datasets:
        dt = plan.dataset_types[type_name]
        for did, data_id, _ in entries:
            try:
                coord = DataCoordinate.standardize(data_id, dimensions=dt.dimensions, allow_extra=True)
            except DataIdError as exc:
                raise ExportFormatError(f"Dataset {did} ({type_name} in {run!r}): {exc}") from None
            refs.append(DatasetRef(dt, coord, run, did))
    return refs


def apply_contents(
    plan: ImportPlan, registry: Registry, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Collections, datasets and associations of a plan (after `apply_definitions`); returns counts."""
    counts = plan.summary()
    step = progress or (lambda _: None)
    with registry.transaction():
        step("dataset types and collections")
        for run, (host, ts) in plan.runs.items():
            registry.collections.register(run, CollectionType.RUN, doc=plan.docs.get(run))
            if host is not None or ts is not None:
                _set_run_info(registry, run, host, ts)
        for name, ctype in plan.collections.items():
            registry.collections.register(name, ctype, doc=plan.docs.get(name))
        for name in plan.chains:
            registry.collections.register(name, CollectionType.CHAINED, doc=plan.docs.get(name))
        for name, children in plan.chains.items():
            registry.collections.set_chain(name, children)
        step(f"{sum(len(e) for _, _, e in plan.datasets)} datasets")
        refs = plan_refs(plan)
        by_id = {r.id: r for r in refs}
        counts["new datasets"] = registry.import_datasets(refs)
        step("collection associations")
        for name, ids in plan.tags.items():
            registry.associate(name, [_lookup(registry, by_id, i, name) for i in ids])
        for name, ranges in plan.calibs.items():
            for ts, ids in ranges:
                registry.certify(name, [_lookup(registry, by_id, i, name) for i in ids], ts)
    return counts


def _lookup(
    registry: Registry, by_id: dict[uuid.UUID, DatasetRef], dataset_id: uuid.UUID, collection: str
) -> DatasetRef:
    ref = by_id.get(dataset_id)
    if ref is None:
        ref = registry.get_dataset(dataset_id)
    if ref is None:
        raise ExportFormatError(
            f"Collection {collection!r} lists dataset {dataset_id}, which is neither in the file nor the repository."
        )
    return ref


def _set_run_info(registry: Registry, run: str, host: str | None, ts: Timespan | None) -> None:
    import sqlalchemy

    info = registry.collections.get(run)
    r = registry.schema.run
    b, e = (None, None) if ts is None else ts.nsec
    with registry.db.transaction() as conn:
        conn.execute(
            sqlalchemy.update(r)
            .where(r.c.collection_id == info.id)
            .values(host=host, timespan_begin=b, timespan_end=e)
        )
