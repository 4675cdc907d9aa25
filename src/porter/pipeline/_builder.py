"""Build a quantum graph with set-based registry queries.

One query finds every combination of the pipeline's dimensions for which
the overall inputs exist (spatial dimensions joined by region overlap); each
task's quanta are the distinct projections of those rows onto its dimensions,
and each input's datasets the projections onto the input's dimensions.  One
query per overall-input dataset type finds their references; prerequisites
are matched per dataset type by data ID, validity time (calibrations) or sky
region (sharded reference catalogs).  Nothing is queried per quantum.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ..dimensions import DataCoordinate, DimensionGroup, SkyPixDimension
from ..errors import MissingCollectionError, QuantumGraphBuildError
from ..registry import CollectionType, DatasetRef, DatasetType, new_dataset_id_hexes
from ._connections import Connection
from ._graph import Quantum, QuantumGraph
from ._pipeline import Pipeline, TaskDef

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["build_quantum_graph"]

Key = tuple[Any, ...]
Progress = Callable[[str], None]


@dataclass
class _Projection:
    """How to cut a row of the big query down to one dimension group."""

    group: DimensionGroup
    required: Callable[[Key], Any]
    full: Callable[[Key], Any]
    n_required: int


def _projection(source: DimensionGroup, target: DimensionGroup) -> _Projection:
    keys = source.data_coordinate_keys
    req = [keys.index(n) for n in target.required]
    full = [keys.index(n) for n in target.data_coordinate_keys]
    return _Projection(target, _getter(req), _getter(full), len(req))


def _getter(positions: list[int]) -> Callable[[Key], Key]:
    if not positions:
        return lambda row: ()
    if len(positions) == 1:
        p = positions[0]
        return lambda row: (row[p],)
    return itemgetter(*positions)


def build_quantum_graph(
    butler: DirectButler,
    pipeline: Pipeline,
    *,
    collections: Sequence[str],
    run: str,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    data_id: Mapping[str, Any] | None = None,
    skip_existing_in: Sequence[str] = (),
    extend_run: bool = False,
    clobber_outputs: bool = False,
    progress: Progress | None = None,
) -> QuantumGraph:
    """Every quantum of ``pipeline`` over the data selected by ``where``, reading ``collections``, writing ``run``.

    ``skip_existing_in``: quanta whose outputs all exist in these collections
    are left out (their outputs feed later tasks instead).  ``extend_run``:
    the output run may already exist (its datasets are then inputs too);
    ``clobber_outputs``: outputs already in the run from an incomplete attempt
    are deleted before the quanta that make them run again.
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    if pipeline.instrument and "instrument" not in (data_id or {}):
        data_id = {"instrument": pipeline.instrument, **(data_id or {})}
    universe = butler.dimensions
    collections = list(collections)
    _check_collections(butler, collections, run, extend_run)
    if extend_run and run not in collections and _run_exists(butler, run):
        collections = [run, *collections]
    dataset_types = _dataset_types(butler, pipeline)
    producers = pipeline.producers()
    tasks = list(pipeline.tasks.values())
    overall = sorted(
        {c.dataset_type for t in tasks for c in t.inputs.values() if c.dataset_type not in producers}
    )

    # 1. one query for every data-ID combination of the pipeline's dimensions
    names: set[str] = set()
    for t in tasks:
        names.update(t.dimensions)
        for c in [*t.inputs.values(), *t.outputs.values()]:
            names.update(c.dimensions)
    union = universe.conform(names)
    say(f"querying data IDs over {', '.join(union.required)}")
    rows = [
        d.full_values
        for d in butler.query_data_ids(
            list(union.names),
            where=where,
            bind=bind,
            data_id=data_id,
            datasets=overall or None,
            collections=collections,
            explain=False,
        )
    ]
    if not rows:
        raise QuantumGraphBuildError(
            f"No data found: no combination of {', '.join(union.required)} matches the where expression "
            f"{where!r} with all of {overall} present in collections {collections}. Check the collections "
            "(porter query-datasets) and the where expression."
        )

    # 2. existing datasets, one query per type
    say(f"finding {len(overall)} input dataset types")
    existing: dict[str, dict[Key, DatasetRef]] = {}
    for name in overall:
        existing[name] = {
            r.data_id.required_values: r
            for r in butler.query_datasets(
                name, collections, where=where, bind=bind, data_id=data_id, find_first=True, explain=False
            )
        }
    in_run = _existing_in(butler, pipeline, [run]) if _run_exists(butler, run) else {}
    # Resubmitting to a run usually skips what that same run holds: no need to ask twice.
    skip = in_run if list(skip_existing_in) == [run] else _existing_in(butler, pipeline, skip_existing_in)

    # 3. quanta, task by task
    produced: dict[str, dict[Key, DatasetRef]] = defaultdict(dict)
    quanta: list[Quantum] = []
    pruned: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    clobber: list[str] = []
    for task in tasks:
        say(f"making quanta of {task.label}")
        task_group = universe.conform(task.dimensions)
        tproj = _projection(union, task_group)
        links = {name: _projection(union, universe.conform(c.dimensions)) for name, c in task.inputs.items()}
        members: dict[Key, tuple[Key, dict[str, set[Key]]]] = {}
        for row in rows:
            k = tproj.required(row)
            entry = members.get(k)
            if entry is None:
                entry = members[k] = (tproj.full(row), {n: set() for n in links})
            for n, p in links.items():
                entry[1][n].add(p.required(row))
        finders = {
            n: _prerequisite_finder(
                butler, task, c, dataset_types[c.dataset_type], collections, task_group, members
            )
            for n, c in task.prerequisites.items()
        }
        outs = {n: _projection(task_group, universe.conform(c.dimensions)) for n, c in task.outputs.items()}
        new_ids = iter(new_dataset_id_hexes(len(members) * len(outs) + len(members)))
        for k in sorted(members):
            full, input_keys = members[k]
            data_id = DataCoordinate.from_full_values(task_group, full)
            inputs: dict[str, list[DatasetRef]] = {}
            for n, c in task.inputs.items():
                source = produced[c.dataset_type] if c.dataset_type in producers else existing[c.dataset_type]
                refs = [source[ik] for ik in sorted(input_keys[n]) if ik in source]
                if len(refs) > 1 and not c.multiple:
                    raise QuantumGraphBuildError(
                        f"Task {task.label!r}, data ID {dict(data_id.required)}: input {n!r} matches "
                        f"{len(refs)} {c.dataset_type!r} datasets; declare the connection multiple=True "
                        "(a gather) or narrow the where expression."
                    )
                if not refs:
                    break
                inputs[n] = refs
            else:
                outputs: dict[str, list[DatasetRef]] = {}
                existing_outputs: list[DatasetRef] = []
                skipped_refs: dict[str, DatasetRef] = {}
                for n, c in task.outputs.items():
                    dt = dataset_types[c.dataset_type]
                    okey = outs[n].required(full)
                    done = skip.get(c.dataset_type, {}).get(okey)
                    if done is not None:
                        skipped_refs[c.dataset_type] = done
                    there = in_run.get(c.dataset_type, {}).get(okey)
                    if there is not None:
                        existing_outputs.append(there)
                    oid = DataCoordinate.from_full_values(dt.dimensions, outs[n].full(full))
                    outputs[n] = [DatasetRef(dt, oid, run, next(new_ids))]
                if task.outputs and len(skipped_refs) == len(task.outputs):
                    skipped[task.label] += 1
                    for n, c in task.outputs.items():
                        produced[c.dataset_type][outs[n].required(full)] = skipped_refs[c.dataset_type]
                    continue
                if existing_outputs:
                    if not clobber_outputs:
                        where = f"Task {task.label!r}, data ID {dict(data_id.required)}"
                        if run in skip_existing_in:  # finished work is kept already: this one is partial
                            raise QuantumGraphBuildError(
                                f"{where}: {len(existing_outputs)} of its {len(task.outputs)} outputs are in run "
                                f"{run!r} (an attempt interrupted between writes). Add --clobber-outputs to redo "
                                "it (finished quanta are still skipped), or use porter pipeline restart."
                            )
                        raise QuantumGraphBuildError(
                            f"{where}: output {existing_outputs[0].dataset_type.name!r} already exists in run "
                            f"{run!r}. Pass --skip-existing-in {run} to keep finished work, or --clobber-outputs "
                            "to replace it."
                        )
                    clobber.extend(r.id_hex for r in existing_outputs)
                prerequisites = {n: f(k, full, data_id) for n, f in finders.items()}
                quanta.append(Quantum(next(new_ids), task.label, data_id, inputs, prerequisites, outputs))
                for n, c in task.outputs.items():
                    produced[c.dataset_type][outs[n].required(full)] = outputs[n][0]
                continue
            pruned[task.label] += 1
    metadata = {
        "where": where,
        "bind": dict(bind or {}),
        "data_id": dict(data_id or {}),
        "skip_existing_in": list(skip_existing_in),
        "pruned": dict(pruned),
        "skipped": dict(skipped),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    used = {r.dataset_type.name for q in quanta for r in (*q.all_inputs(), *q.all_outputs())}
    types = {n: dataset_types[n] for n in sorted(used | set(producers))}
    return QuantumGraph(pipeline, run, collections, quanta, types, metadata, clobber)


# --- dataset types and collections ----------------------------------------------------------------------------


def _dataset_types(butler: DirectButler, pipeline: Pipeline) -> dict[str, DatasetType]:
    """The pipeline's dataset types, checked against the repository's definitions."""
    universe = butler.dimensions
    registered = {dt.name: dt for dt in butler.query_dataset_types("*")}
    producers = pipeline.producers()
    out: dict[str, DatasetType] = {}
    for name, uses in pipeline.dataset_type_connections().items():
        label, conn = uses[0]
        try:
            group = universe.conform(conn.dimensions)
        except Exception as exc:
            raise QuantumGraphBuildError(f"Task {label!r}, connection {conn.name!r}: {exc}") from None
        have = registered.get(name)
        if have is None:
            if name not in producers:
                raise QuantumGraphBuildError(
                    f"Dataset type {name!r} (read by task {label!r}) is not registered in this repository, "
                    "and no task of the pipeline writes it. Ingest or import it first, or check the spelling."
                )
            out[name] = DatasetType(name, group, conn.storage_class)
            continue
        if have.dimensions != group:
            raise QuantumGraphBuildError(
                f"Dataset type {name!r}: task {label!r} declares dimensions {list(group.required)} but the "
                f"repository has {list(have.dimensions.required)}. Fix the task's connection, or rename its "
                "dataset type with a 'connections:' override."
            )
        out[name] = have
    return out


def _run_exists(butler: DirectButler, run: str) -> bool:
    return butler.registry.collections.find(run) is not None


def _check_collections(butler: DirectButler, collections: Sequence[str], run: str, extend_run: bool) -> None:
    for name in collections:
        if butler.registry.collections.find(name) is None:
            raise MissingCollectionError(f"Input collection {name!r} does not exist.")
    info = butler.registry.collections.find(run)
    if info is None:
        return
    if info.type is not CollectionType.RUN:
        raise QuantumGraphBuildError(
            f"Output {run!r} exists and is a {info.type.name} collection, not a RUN."
        )
    if not extend_run and butler.registry.count_datasets(run):
        raise QuantumGraphBuildError(
            f"Output run {run!r} already exists and holds datasets. Pass --extend-run to add to it "
            "(with --skip-existing-in or --clobber-outputs), or choose a new run name."
        )


def _existing_in(
    butler: DirectButler, pipeline: Pipeline, collections: Sequence[str]
) -> dict[str, dict[Key, DatasetRef]]:
    if not collections:
        return {}
    registered = {dt.name for dt in butler.query_dataset_types("*")}
    out: dict[str, dict[Key, DatasetRef]] = {}
    for name in pipeline.producers():
        if name in registered:
            out[name] = {
                r.data_id.required_values: r
                for r in butler.query_datasets(name, list(collections), find_first=True, explain=False)
            }
    return out


# --- prerequisites --------------------------------------------------------------------------------------------


def _prerequisite_finder(
    butler: DirectButler,
    task: TaskDef,
    conn: Connection,
    dataset_type: DatasetType,
    collections: Sequence[str],
    task_group: DimensionGroup,
    members: Mapping[Key, Any],
) -> Callable[[Key, Key, DataCoordinate], list[DatasetRef]]:
    """A function giving the prerequisite datasets of one quantum, from candidates fetched once."""
    universe = butler.dimensions
    group = dataset_type.dimensions
    skypix = [n for n in group.required if isinstance(universe.dimensions[n], SkyPixDimension)]
    missing = set(group.required) - set(task_group.names) - set(skypix)
    if missing:
        raise QuantumGraphBuildError(
            f"Task {task.label!r}: prerequisite {conn.name!r} ({dataset_type.name}) has dimensions "
            f"{sorted(missing)} that the task's dimensions do not give; porter cannot look it up."
        )
    key_of = _projection(task_group, universe.conform([n for n in group.required if n not in skypix]))

    def fail(data_id: DataCoordinate, why: str) -> QuantumGraphBuildError:
        return QuantumGraphBuildError(
            f"Task {task.label!r}, data ID {dict(data_id.required)}: no prerequisite {dataset_type.name!r} "
            f"{why} in collections {list(collections)}. Certify or ingest one (porter certify-calibrations, "
            "porter ingest-files), or add its collection to the inputs."
        )

    if skypix:
        pix = universe.dimensions[skypix[0]]
        assert isinstance(pix, SkyPixDimension)
        by_pixel: dict[Key, dict[int, DatasetRef]] = defaultdict(dict)
        position = group.required.index(skypix[0])
        for ref in butler.query_datasets(dataset_type, list(collections), find_first=True, explain=False):
            values = ref.data_id.required_values
            rest = tuple(v for i, v in enumerate(values) if i != position)
            by_pixel[rest][int(values[position])] = ref
        regions = _regions(butler, task_group, members)

        def find_by_region(k: Key, full: Key, data_id: DataCoordinate) -> list[DatasetRef]:
            region = regions.get(k)
            if region is None:
                raise fail(data_id, "can be matched: the quantum has no sky region")
            candidates = by_pixel.get(key_of.required(full), {})
            refs = [
                candidates[p]
                for begin, end in pix.pixelization.envelope(region)
                for p in range(begin, end)
                if p in candidates
            ]
            if not refs:
                raise fail(data_id, f"covers its region (no {pix.name} pixel of it has one)")
            return refs

        return find_by_region

    if dataset_type.is_calibration:
        times = _timespans(butler, task_group, members)
        searches: list[tuple[bool, dict[Key, list[tuple[DatasetRef, Any]]]]] = []
        for info in butler.registry.collections.flatten(collections):
            table: dict[Key, list[tuple[DatasetRef, Any]]] = defaultdict(list)
            if info.type is CollectionType.CALIBRATION:
                for ref, span in butler.registry.associations.calibration_associations(info):
                    if ref.dataset_type.name == dataset_type.name:
                        table[ref.data_id.required_values].append((ref, span))
                searches.append((True, table))
            elif info.type is CollectionType.RUN:
                for ref in butler.query_datasets(dataset_type, [info.name], find_first=True, explain=False):
                    table[ref.data_id.required_values].append((ref, None))
                searches.append((False, table))

        def find_calibration(k: Key, full: Key, data_id: DataCoordinate) -> list[DatasetRef]:
            key = key_of.required(full)
            when = times.get(k)
            for timed, table in searches:
                matches = [
                    ref
                    for ref, span in table.get(key, ())
                    if not timed or (when is not None and span.overlaps(when))
                ]
                if len(matches) > 1:
                    raise QuantumGraphBuildError(
                        f"Task {task.label!r}, data ID {dict(data_id.required)}: {len(matches)} {dataset_type.name!r} "
                        "calibrations are valid at its time in one collection; fix their validity ranges."
                    )
                if matches:
                    return matches
            raise fail(data_id, "valid at its observation time" if when is not None else "")

        return find_calibration

    found = {
        r.data_id.required_values: r
        for r in butler.query_datasets(dataset_type, list(collections), find_first=True, explain=False)
    }

    def find_by_data_id(k: Key, full: Key, data_id: DataCoordinate) -> list[DatasetRef]:
        ref = found.get(key_of.required(full))
        if ref is None:
            raise fail(data_id, "with a matching data ID")
        return [ref]

    return find_by_data_id


def _element_records(
    butler: DirectButler, element: str, task_group: DimensionGroup, members: Mapping[Key, Any]
) -> dict[Key, Any]:
    """The records of ``element`` for the quanta, by quantum key (one query per governor value)."""
    universe = butler.dimensions
    elem = universe.elements[element]
    proj = _projection(task_group, universe.conform([d.name for d in elem.required]))
    keys = task_group.data_coordinate_keys
    governors = {n: {m[0][keys.index(n)] for m in members.values()} for n in task_group.governors}
    records: dict[Key, Any] = {}
    for values in _product(governors):
        for rec in butler.query_dimension_records(element, data_id=values, explain=False):
            records[rec.data_id.required_values] = rec
    return {k: records.get(proj.required(m[0])) for k, m in members.items()}


def _product(options: Mapping[str, set[Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{}]
    for name, values in options.items():
        out = [{**o, name: v} for o in out for v in sorted(values)]
    return out


def _timespans(
    butler: DirectButler, task_group: DimensionGroup, members: Mapping[Key, Any]
) -> dict[Key, Any]:
    for element in ("exposure", "visit"):
        if element in task_group.names:
            return {
                k: getattr(r, "timespan", None)
                for k, r in _element_records(butler, element, task_group, members).items()
            }
    return {}


def _regions(butler: DirectButler, task_group: DimensionGroup, members: Mapping[Key, Any]) -> dict[Key, Any]:
    for element in ("visit_detector_region", "visit", "patch", "tract"):
        elem = butler.dimensions.elements[element]
        if all(d.name in task_group.names for d in elem.required):
            return {
                k: getattr(r, "region", None)
                for k, r in _element_records(butler, element, task_group, members).items()
            }
    return {}
