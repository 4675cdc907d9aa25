"""Rubin's side of bench/server.py: build a daf_butler repository and measure its RemoteButler.

Runs under the Python that has ``lsst-daf-butler[remote,server]`` (3.13+, a
separate venv), never under porter's: bench/server.py starts it as a
subprocess and reads one JSON document from its standard output.

    python bench/server_peer.py build PLAN.json ROOT      # S3 endpoint and bucket come from PLAN.json
    python bench/server_peer.py measure PLAN.json URL     # URL: http://127.0.0.1:PORT/api/butler/repo/NAME

The plan (written by bench/server.py) names the export file, the dataset
type, the runs and every dataset's UUID, run and data ID, so both
repositories hold the same datasets with the same IDs, and the operations
each side times with their repeat counts and time budget.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any


def small_table(seed: int) -> Any:
    """The small ArrowTable stored per file dataset: 100 rows, three columns (the same on both sides)."""
    import pyarrow as pa

    n = 100
    return pa.table(
        {
            "id": pa.array([seed * 1000 + i for i in range(n)], pa.int64()),
            "flux": pa.array([float(seed) + i / 7.0 for i in range(n)], pa.float64()),
            "flag": pa.array([(seed + i) % 3 == 0 for i in range(n)], pa.bool_()),
        }
    )


def table_digest(table: Any) -> str:
    """A content digest of a table, equal for equal tables read by either butler."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(table.column_names):
        h.update(name.encode())
        h.update(json.dumps(table.column(name).to_pylist()).encode())
    return h.hexdigest()[:16]


def ref_key(ref: Any) -> list[Any]:
    """(dataset type, data ID's required values, run, UUID) of a daf_butler DatasetRef, as JSON."""
    required = ref.dataId.required
    return [
        ref.datasetType.name,
        sorted([k, v] for k, v in required.items()),
        ref.run,
        str(ref.id),
    ]


def build(plan: dict[str, Any], root: Path) -> dict[str, Any]:
    """A daf_butler repository (SQLite + S3 datastore) with the plan's records and datasets."""
    from lsst.daf.butler import Butler, CollectionType, Config, DataCoordinate, DatasetRef, DatasetType

    t0 = time.perf_counter()
    config = Config({"datastore": {"root": plan["s3_root_rubin"]}})
    Butler.makeRepo(str(root), config=config, forceConfigRoot=False)
    butler = Butler.from_config(str(root), writeable=True)
    butler.import_(filename=plan["export"], transfer=None)
    t_import = time.perf_counter() - t0
    universe = butler.dimensions
    dt = DatasetType(
        plan["dataset_type"], ["instrument", "visit", "detector"], "ArrowTable", universe=universe
    )
    butler.registry.registerDatasetType(dt)
    for run in plan["runs"]:
        butler.registry.registerRun(run)
    butler.registry.registerCollection(plan["chain"], type=CollectionType.CHAINED)
    butler.registry.setCollectionChain(plan["chain"], plan["stream_runs"])
    instrument = plan["instrument"]
    refs = [
        DatasetRef(
            dt,
            DataCoordinate.standardize(
                {"instrument": instrument, "visit": visit, "detector": detector}, universe=universe
            ),
            run=run,
            id=uuid.UUID(ident),
        )
        for ident, run, visit, detector in plan["registry_only"]
    ]
    t1 = time.perf_counter()
    by_run: dict[str, list[Any]] = {}
    for ref in refs:
        by_run.setdefault(ref.run, []).append(ref)
    for run_refs in by_run.values():  # one run per call (daf_butler's rule)
        butler.registry._importDatasets(run_refs, expand=True)
    t_refs = time.perf_counter() - t1
    t2 = time.perf_counter()
    for k, (ident, run, visit, detector) in enumerate(plan["files"]):
        data_id = butler.registry.expandDataId(instrument=instrument, visit=visit, detector=detector)
        ref = DatasetRef(dt, data_id, run=run, id=uuid.UUID(ident))
        butler.put(small_table(k), ref)
    t_puts = time.perf_counter() - t2
    return {
        "import_s": t_import,
        "registry_refs": len(refs),
        "registry_refs_s": t_refs,
        "files": len(plan["files"]),
        "puts_s": t_puts,
        "total_s": time.perf_counter() - t0,
    }


def timed(call: Any, repeat: int, budget: float) -> tuple[list[float], Any]:
    """Samples (seconds) of ``call()`` after one warm-up call, at most ``repeat`` of them and ``budget`` seconds."""
    value = call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < repeat and (not samples or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        value = call()
        samples.append(time.perf_counter() - t0)
    return samples, value


def measure(plan: dict[str, Any], url: str) -> dict[str, Any]:
    """Time the plan's operations against Rubin's server at ``url``; answers go back as JSON for comparison."""
    from lsst.daf.butler import Butler

    t0 = time.perf_counter()
    os.environ.setdefault("BUTLER_RUBIN_ACCESS_TOKEN", "bench-token-not-checked")
    butler = Butler.from_config(url)
    open_s = time.perf_counter() - t0
    instrument = plan["instrument"]
    files = plan["files"]
    files_run = plan["files_run"]
    name = plan["dataset_type"]
    out: dict[str, Any] = {"open_s": open_s, "ops": {}}
    counter = {"find": 0, "get": 0, "get_data_id": 0}

    def q100() -> list[Any]:
        return butler.query_datasets(name, collections=files_run, limit=None)

    refs = q100()
    refs_by_id = {str(r.id): r for r in refs}
    ordered = [refs_by_id[f[0]] for f in files if f[0] in refs_by_id]

    def find() -> Any:
        _, _, visit, detector = files[counter["find"] % len(files)]
        counter["find"] += 1
        return butler.find_dataset(
            name, instrument=instrument, visit=visit, detector=detector, collections=files_run
        )

    def get() -> Any:
        ref = ordered[counter["get"] % len(ordered)]
        counter["get"] += 1
        return ref, butler.get(ref)

    def get_data_id() -> Any:
        _, _, visit, detector = files[counter["get_data_id"] % len(files)]
        counter["get_data_id"] += 1
        return butler.get(name, instrument=instrument, visit=visit, detector=detector, collections=files_run)

    def stream() -> list[Any]:
        return butler.query_datasets(name, collections=plan["chain"], find_first=False, limit=None)

    def records() -> list[Any]:
        return butler.query_dimension_records("visit", instrument=instrument, limit=None)

    def data_ids() -> list[Any]:
        return butler.query_data_ids(
            ["visit", "detector"], where=plan["data_id_where"], instrument=instrument, limit=None
        )

    repeat, budget = plan["repeat"], plan["budget_s"]
    ops = {
        "query_datasets": (q100, repeat),
        "find_dataset": (find, repeat),
        "get": (get, repeat),
        "get_data_id": (get_data_id, repeat),
        "query_dimension_records": (records, repeat),
        "query_data_ids": (data_ids, repeat),
        "stream": (stream, plan["stream_repeat"]),
    }
    for op in plan["ops"]:
        call, n = ops[op]
        samples, value = timed(call, n, budget)
        entry: dict[str, Any] = {"samples": samples, "median": statistics.median(samples)}
        if op in ("query_datasets", "stream"):
            entry["answer"] = sorted(ref_key(r) for r in value)
        elif op == "find_dataset":
            # Check every one of the plan's data IDs once, not only the last timed one.
            entry["answer"] = sorted(
                ref_key(
                    butler.find_dataset(
                        name, instrument=instrument, visit=v, detector=d, collections=files_run
                    )
                )
                for _, _, v, d in files
            )
        elif op == "get":
            ref, table = value
            entry["answer"] = [str(ref.id), table_digest(table)]
        elif op == "get_data_id":
            entry["answer"] = [table_digest(value)]
        elif op == "query_dimension_records":
            entry["answer"] = sorted([r.id, r.physical_filter, r.day_obs] for r in value)
        elif op == "query_data_ids":
            entry["answer"] = sorted(sorted([k, v] for k, v in d.required.items()) for d in value)
        out["ops"][op] = entry
        print(f"  rubin  {op:<24} median {entry['median'] * 1e3:9.1f} ms", file=sys.stderr, flush=True)
    return out


def main() -> None:
    warnings.simplefilter("ignore")
    command, plan_path, target = sys.argv[1:4]
    plan = json.loads(Path(plan_path).read_text())
    if command == "build":
        result = build(plan, Path(target))
    elif command == "measure":
        result = measure(plan, target)
    else:
        raise SystemExit(f"unknown command {command!r}: build or measure")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
