"""The quantum graph: every quantum of a pipeline over some data, with the datasets that link them.

A quantum is one task on one data ID, with the exact dataset references it
reads and the references (UUIDs chosen at build time) it will write.  The
graph is saved as gzip-compressed JSON in a columnar layout: each dataset is
written once and quanta refer to datasets by index, so a 10⁵-quantum graph
is a few MB and loads without the repository.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..datastore import ResourceURI
from ..dimensions import DataCoordinate, DimensionUniverse
from ..errors import PipelineDefinitionError
from ..registry import DatasetRef, DatasetType
from ._pipeline import Pipeline

__all__ = ["Quantum", "QuantumGraph"]

FORMAT = "porter-quantum-graph"
VERSION = 1


@dataclass
class Quantum:
    """One task run on one data ID."""

    id: str
    """32 hex digits (a UUID)."""
    task: str
    data_id: DataCoordinate
    inputs: dict[str, list[DatasetRef]]
    prerequisites: dict[str, list[DatasetRef]]
    outputs: dict[str, list[DatasetRef]]

    def all_inputs(self) -> Iterator[DatasetRef]:
        for refs in (*self.inputs.values(), *self.prerequisites.values()):
            yield from refs

    def all_outputs(self) -> Iterator[DatasetRef]:
        for refs in self.outputs.values():
            yield from refs

    def describe(self) -> str:
        return f"{self.task} {dict(self.data_id.required)}"


@dataclass
class QuantumGraph:
    """Quanta in dependency order (every producer before its consumers), and what they were built from."""

    pipeline: Pipeline
    run: str
    collections: list[str]
    quanta: list[Quantum]
    dataset_types: dict[str, DatasetType]
    metadata: dict[str, Any] = field(default_factory=dict)
    clobber: list[str] = field(default_factory=list)
    """Hex IDs of existing datasets in the output run to delete before running (``--clobber-outputs``)."""

    # --- structure --------------------------------------------------------------------------------

    @cached_property
    def by_id(self) -> dict[str, Quantum]:
        return {q.id: q for q in self.quanta}

    @cached_property
    def producer_of(self) -> dict[str, str]:
        """Dataset hex ID → the ID of the quantum that writes it."""
        return {ref.id_hex: q.id for q in self.quanta for ref in q.all_outputs()}

    @cached_property
    def upstream(self) -> dict[str, set[str]]:
        """Quantum ID → IDs of the quanta whose outputs it reads."""
        producer = self.producer_of
        return {
            q.id: {producer[r.id_hex] for r in q.all_inputs() if r.id_hex in producer} for q in self.quanta
        }

    @cached_property
    def downstream(self) -> dict[str, set[str]]:
        """Quantum ID → IDs of the quanta that read its outputs."""
        out: dict[str, set[str]] = {q.id: set() for q in self.quanta}
        for qid, ups in self.upstream.items():
            for u in ups:
                out[u].add(qid)
        return out

    def descendants(self, ids: Sequence[str]) -> set[str]:
        """Every quantum that depends, directly or not, on any of ``ids``."""
        seen: set[str] = set()
        stack = list(ids)
        down = self.downstream
        while stack:
            for d in down.get(stack.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return seen

    def restricted(self, ids: set[str]) -> QuantumGraph:
        """The graph with only the quanta in ``ids`` (order kept)."""
        return QuantumGraph(
            self.pipeline,
            self.run,
            self.collections,
            [q for q in self.quanta if q.id in ids],
            self.dataset_types,
            dict(self.metadata),
            list(self.clobber),
        )

    def __len__(self) -> int:
        return len(self.quanta)

    def summary(self) -> dict[str, Any]:
        """Quanta per task and datasets per type (inputs found in the repository and outputs to be written)."""
        per_task = Counter(q.task for q in self.quanta)
        inputs: Counter[str] = Counter()
        outputs: Counter[str] = Counter()
        produced = self.producer_of
        seen: set[str] = set()
        for q in self.quanta:
            for r in q.all_inputs():
                if r.id_hex not in produced and r.id_hex not in seen:
                    seen.add(r.id_hex)
                    inputs[r.dataset_type.name] += 1
            for r in q.all_outputs():
                outputs[r.dataset_type.name] += 1
        return {
            "run": self.run,
            "collections": self.collections,
            "quanta": len(self.quanta),
            "tasks": {label: per_task.get(label, 0) for label in self.pipeline.tasks},
            "existing_inputs": dict(sorted(inputs.items())),
            "outputs": dict(sorted(outputs.items())),
            **{k: v for k, v in self.metadata.items() if k in ("where", "skipped", "pruned")},
        }

    # --- saving and loading ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        types = sorted(self.dataset_types)
        type_index = {n: i for i, n in enumerate(types)}
        runs: dict[str, int] = {}
        datasets: list[list[Any]] = []
        dataset_index: dict[str, int] = {}

        def index(ref: DatasetRef) -> int:
            i = dataset_index.get(ref.id_hex)
            if i is None:
                i = dataset_index[ref.id_hex] = len(datasets)
                run = runs.setdefault(ref.run, len(runs))
                datasets.append(
                    [type_index[ref.dataset_type.name], run, ref.id_hex, *ref.data_id.full_values]
                )
            return i

        labels = list(self.pipeline.tasks)
        label_index = {label: i for i, label in enumerate(labels)}
        order = {label: list(self.pipeline.tasks[label].connections) for label in labels}
        quanta = []
        for q in self.quanta:
            links = []
            for name in order[q.task]:
                refs = q.inputs.get(name) or q.prerequisites.get(name) or q.outputs.get(name) or []
                links.append([index(r) for r in refs])
            quanta.append([label_index[q.task], q.id, list(q.data_id.full_values), links])
        return {
            "format": FORMAT,
            "version": VERSION,
            "run": self.run,
            "collections": self.collections,
            "metadata": self.metadata,
            "clobber": self.clobber,
            "pipeline": self.pipeline.to_dict(),
            "dataset_types": [
                [
                    n,
                    list(self.dataset_types[n].dimensions.required),
                    self.dataset_types[n].storage_class_name,
                    self.dataset_types[n].is_calibration,
                ]
                for n in types
            ],
            "runs": list(runs),
            "datasets": datasets,
            "quanta": quanta,
        }

    def to_bytes(self) -> bytes:
        """The graph as gzip-compressed JSON (what `save` writes and the run state stores)."""
        return gzip.compress(json.dumps(self.to_json(), separators=(",", ":")).encode(), compresslevel=3)

    def save(self, path: str | Path) -> None:
        """Write the graph to ``path`` atomically (a local path or an s3:// URI)."""
        ResourceURI.from_string(str(path)).write(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path, universe: DimensionUniverse | None = None) -> QuantumGraph:
        """Read a graph written by `save`."""
        try:
            data = json.loads(gzip.decompress(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise PipelineDefinitionError(f"{path} is not a porter quantum graph file: {exc}") from None
        return cls.from_json(data, universe)

    @classmethod
    def from_bytes(cls, blob: bytes, universe: DimensionUniverse | None = None) -> QuantumGraph:
        return cls.from_json(json.loads(gzip.decompress(blob)), universe)

    @classmethod
    def from_json(cls, data: dict[str, Any], universe: DimensionUniverse | None = None) -> QuantumGraph:
        if data.get("format") != FORMAT:
            raise PipelineDefinitionError(
                "Not a porter quantum graph (its 'format' field is missing or wrong)."
            )
        if data.get("version") != VERSION:
            raise PipelineDefinitionError(
                f"Quantum graph format version {data.get('version')}; this porter reads version {VERSION}."
            )
        universe = universe or DimensionUniverse.default()
        pipeline = Pipeline.from_dict(data["pipeline"], check_reports=False)
        types = {
            name: DatasetType(name, universe.conform(dims), sc, is_calibration=calib)
            for name, dims, sc, calib in data["dataset_types"]
        }
        type_list = [types[row[0]] for row in data["dataset_types"]]
        runs = data["runs"]
        refs = []
        for t, run, hex_id, *values in data["datasets"]:
            dt = type_list[t]
            refs.append(
                DatasetRef(
                    dt, DataCoordinate.from_full_values(dt.dimensions, tuple(values)), runs[run], hex_id
                )
            )
        labels = list(pipeline.tasks)
        groups = {label: universe.conform(pipeline.tasks[label].dimensions) for label in labels}
        quanta = []
        for t, qid, values, links in data["quanta"]:
            task = pipeline.tasks[labels[t]]
            buckets: dict[str, dict[str, list[DatasetRef]]] = defaultdict(dict)
            for name, idx in zip(task.connections, links):
                kind = task.connections[name].kind
                buckets[kind][name] = [refs[i] for i in idx]
            quanta.append(
                Quantum(
                    qid,
                    task.label,
                    DataCoordinate.from_full_values(groups[task.label], tuple(values)),
                    buckets["Input"],
                    buckets["PrerequisiteInput"],
                    buckets["Output"],
                )
            )
        return cls(
            pipeline,
            data["run"],
            list(data["collections"]),
            quanta,
            types,
            dict(data.get("metadata") or {}),
            list(data.get("clobber") or []),
        )
