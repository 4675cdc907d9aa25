"""How a dataset was made: the chain of quanta back to the raws, and W3C PROV-JSON for a run.

Provenance is what the workers recorded when each quantum succeeded: the
task (label, class, config hash), the datasets it read and wrote, the
software versions, host and times (``pipeline_quantum`` and
``pipeline_quantum_dataset``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MissingDatasetError
from ._state import SUCCEEDED, QuantumRecord, RunState

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["ProvenanceNode", "dataset_provenance", "run_prov_json"]


@dataclass
class ProvenanceNode:
    """A dataset and, if a pipeline made it, the quantum that did and the inputs' own provenance."""

    dataset_id: str
    dataset_type: str
    data_id: dict[str, Any]
    run: str
    quantum: QuantumRecord | None = None
    inputs: list[ProvenanceNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset_id": self.dataset_id,
            "dataset_type": self.dataset_type,
            "data_id": self.data_id,
            "run": self.run,
        }
        if self.quantum is not None:
            q = self.quantum
            out["made_by"] = {
                "quantum_id": q.quantum_id,
                "task": q.task,
                "task_class": q.task_class,
                "config_hash": q.config_hash,
                "status": q.status,
                "host": q.host,
                "started": _iso(q.started),
                "ended": _iso(q.ended),
                "versions": q.versions,
                "measurements": q.measurements,
            }
            out["inputs"] = [i.to_dict() for i in self.inputs]
        return out


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def _hex(dataset_id: str) -> str:
    return dataset_id.replace("-", "").lower()


def dataset_provenance(butler: DirectButler, dataset_id: str, max_depth: int = 20) -> ProvenanceNode:
    """The provenance tree of one dataset (by UUID), down to datasets no pipeline made (raws, calibrations)."""
    state = RunState(butler.registry.db)
    cache: dict[str, ProvenanceNode] = {}

    def node(hex_id: str, depth: int) -> ProvenanceNode:
        if hex_id in cache:
            return cache[hex_id]
        ref = butler.get_dataset(hex_id)
        if ref is None:
            raise MissingDatasetError(f"No dataset with ID {hex_id} in this repository.")
        out = ProvenanceNode(hex_id, ref.dataset_type.name, dict(ref.data_id.required), ref.run)
        cache[hex_id] = out
        producer = state.producer(hex_id)
        if producer is not None and depth < max_depth:
            records = state.records(quantum_ids=[producer])
            if records:
                out.quantum = records[0]
                links = state.links([producer])[producer]
                out.inputs = [node(i, depth + 1) for i in links["input"]]
        return out

    return node(_hex(dataset_id), 0)


def run_prov_json(butler: DirectButler, run: str) -> dict[str, Any]:
    """A W3C PROV-JSON document for every succeeded quantum of ``run``: activities, entities, used, generated."""
    state = RunState(butler.registry.db)
    records = [r for r in state.records(run) if r.status == SUCCEEDED]
    links = state.links([r.quantum_id for r in records])
    doc: dict[str, Any] = {
        "prefix": {
            "porter": "https://github.com/porter-survey/porter#",
            "dataset": "urn:uuid:",
            "quantum": "urn:uuid:",
        },
        "agent": {},
        "activity": {},
        "entity": {},
        "used": {},
        "wasGeneratedBy": {},
        "wasAssociatedWith": {},
    }
    ids: set[str] = set()
    for r in records:
        act = f"quantum:{r.quantum_id}"
        agent = f"porter:{r.task_class}"
        doc["agent"].setdefault(agent, {"prov:type": "prov:SoftwareAgent", "porter:versions": r.versions})
        doc["activity"][act] = {
            "prov:startTime": _iso(r.started),
            "prov:endTime": _iso(r.ended),
            "prov:label": r.task,
            "porter:data_id": r.data_id,
            "porter:config_hash": r.config_hash,
            "porter:host": r.host,
            "porter:run": r.run,
        }
        doc["wasAssociatedWith"][f"_:assoc_{r.quantum_id}"] = {"prov:activity": act, "prov:agent": agent}
        for i in links[r.quantum_id]["input"]:
            ids.add(i)
            doc["used"][f"_:used_{r.quantum_id}_{i}"] = {"prov:activity": act, "prov:entity": f"dataset:{i}"}
        for o in links[r.quantum_id]["output"]:
            ids.add(o)
            doc["wasGeneratedBy"][f"_:gen_{o}"] = {"prov:entity": f"dataset:{o}", "prov:activity": act}
    from ._report import load_run_graph

    known = {
        r.id_hex: r for q in load_run_graph(butler, run).quanta for r in (*q.all_inputs(), *q.all_outputs())
    }
    for i in sorted(ids):
        ref = known.get(i) or butler.get_dataset(
            i
        )  # the run's graphs name every dataset; no query per dataset
        doc["entity"][f"dataset:{i}"] = (
            {
                "prov:label": ref.dataset_type.name,
                "porter:data_id": dict(ref.data_id.required),
                "porter:run": ref.run,
            }
            if ref is not None
            else {"prov:label": "(removed)"}
        )
    return doc
