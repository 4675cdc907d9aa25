"""Several processes importing and querying one PostgreSQL repository at once."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import pytest

from conftest import _pg_url, drop_schema
from peer import EXPORTS, norm_record, norm_ref
from porter import Butler

# Files that define no record differently from each other (ci_hsc-subset.yaml and
# hsc-rc2-subset.yaml disagree on the HSC instrument record, so there the first
# import would win, legitimately order-dependent).  Each order keeps base.yaml
# before the files that build on it.
FILES = [
    "base.yaml",
    "datasets.yaml",
    "spatial.yaml",
    "hsc-rc2-subset.yaml",
    "lsstcam-subset.yaml",
    "ci_hsc-subset-skymap.yaml",
]
ORDERS = [
    FILES,
    [
        "ci_hsc-subset-skymap.yaml",
        "lsstcam-subset.yaml",
        "hsc-rc2-subset.yaml",
        "base.yaml",
        "spatial.yaml",
        "datasets.yaml",
    ],
    [
        "hsc-rc2-subset.yaml",
        "base.yaml",
        "datasets.yaml",
        "ci_hsc-subset-skymap.yaml",
        "spatial.yaml",
        "lsstcam-subset.yaml",
    ],
]


def _importer(root: str, files: list[str], queue: multiprocessing.Queue[str]) -> None:
    try:
        butler = Butler(root)
        for f in files:
            butler.import_(EXPORTS / f)
        butler.close()
        queue.put("ok")
    except Exception as exc:  # reported to the parent
        queue.put(f"{type(exc).__name__}: {exc}")


def _querier(root: str, rounds: int, queue: multiprocessing.Queue[str]) -> None:
    try:
        butler = Butler(root)
        for _ in range(rounds):
            butler.query_data_ids(
                ["visit", "detector"], where="instrument = 'HSC' AND band = 'r'", explain=False
            )
            butler.query_dimension_records("detector", explain=False)
            for c in butler.collections.query():
                for t in butler.query_dataset_types():
                    butler.query_datasets(t, c, find_first=False, explain=False)
        butler.close()
        queue.put("ok")
    except Exception as exc:
        queue.put(f"{type(exc).__name__}: {exc}")


def _state(butler: Butler) -> tuple:
    records = tuple(
        (
            e.name,
            tuple(
                sorted(
                    (norm_record(r) for r in butler.query_dimension_records(e.name, explain=False)), key=repr
                )
            ),
        )
        for e in butler.dimensions.database_elements
    )
    datasets = tuple(
        sorted(
            (
                norm_ref(r)
                for c in butler.collections.query()
                for t in butler.query_dataset_types()
                for r in butler.query_datasets(t, c, find_first=False, explain=False)
            ),
            key=repr,
        )
    )
    return records, datasets, tuple(sorted(butler.collections.query()))


@pytest.mark.postgres
def test_concurrent_imports_and_queries(pg_server: str, tmp_path: Path) -> None:
    schema = f"c_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "repo"
    Butler.create(root, registry=_pg_url(), namespace=schema).close()
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    procs = [
        *[ctx.Process(target=_importer, args=(str(root), order, queue)) for order in ORDERS],
        ctx.Process(target=_querier, args=(str(root), 15, queue)),
        ctx.Process(target=_querier, args=(str(root), 15, queue)),
    ]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=240)
            assert not p.is_alive(), "a process hung (deadlock?)"
        results = [queue.get(timeout=5) for _ in procs]
        assert results == ["ok"] * len(procs), results
        # The result equals one clean, sequential import.
        concurrent = Butler(root)
        reference = Butler.create(tmp_path / "ref")
        for f in FILES:
            reference.import_(EXPORTS / f)
        assert _state(concurrent) == _state(reference)
        concurrent.close()
        reference.close()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        drop_schema(_pg_url(), schema)
