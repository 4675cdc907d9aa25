"""Several processes putting into one PostgreSQL + S3 repository at once: nothing lost, no overwrite.

Each writer puts its own datasets (distinct detectors) and also races the
others for the same contested data IDs.  Afterwards every dataset reads back
as the table its writer stored (each table names its writer), each contested
dataset was stored exactly once — the losers got a ConflictingDefinitionError
— and ``fsck --checksums`` finds nothing.
"""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from conftest import TEST_BUCKET, _pg_url, drop_schema, load
from porter import Butler
from porter.errors import ConflictingDefinitionError

WRITERS = 4
OWN = 12  # datasets each writer puts alone
CONTESTED = [90, 91, 92, 93, 94]  # detectors every writer tries to put
RUN = "u/concurrent/run"


def _table(writer: int, detector: int) -> pa.Table:
    rng = np.random.default_rng(1000 * writer + detector)
    n = 2000
    return pa.table(
        {"writer": np.full(n, writer), "detector": np.full(n, detector), "flux": rng.normal(size=n)}
    )


def _writer(root: str, writer: int, queue: multiprocessing.Queue[tuple[int, list[int], str]]) -> None:
    won: list[int] = []
    try:
        butler = Butler(root, run=RUN)
        mine = [writer * OWN + i for i in range(OWN)]
        for detector in [*CONTESTED[writer % 2 :], *mine, *CONTESTED[: writer % 2]]:
            try:
                butler.put(_table(writer, detector), "src", instrument="HSC", visit=1228, detector=detector)
                if detector in CONTESTED:
                    won.append(detector)
            except ConflictingDefinitionError:
                if detector not in CONTESTED:
                    raise
        butler.close()
        queue.put((writer, won, "ok"))
    except Exception as exc:  # reported to the parent
        queue.put((writer, won, f"{type(exc).__name__}: {exc}"))


def test_concurrent_puts_postgresql_s3(tmp_path: Path, pg_server: str, s3_server: str) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    root = tmp_path / "repo"
    butler = Butler.create(
        root, registry=_pg_url(), namespace=schema, datastore=f"s3://{TEST_BUCKET}/{schema}"
    )
    try:
        load(butler, "hsc-rc2-subset.yaml")
        butler.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
        ctx = multiprocessing.get_context("spawn")
        queue: multiprocessing.Queue[tuple[int, list[int], str]] = ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(str(root), w, queue)) for w in range(WRITERS)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert all(status == "ok" for _, _, status in results), results
        winners: dict[int, int] = {}
        for writer, won, _ in results:
            for detector in won:
                assert detector not in winners, f"detector {detector} stored twice"
                winners[detector] = writer
        assert sorted(winners) == CONTESTED  # every contested dataset stored exactly once
        refs = butler.query_datasets("src", RUN)
        assert len(refs) == WRITERS * OWN + len(CONTESTED)
        for ref in refs:
            detector = ref.data_id["detector"]
            owner = winners.get(detector, detector // OWN)
            assert butler.get(ref).equals(_table(owner, detector)), detector
        report = butler.fsck(checksums=True, grace=0)
        assert report.ok, report.findings
    finally:
        butler.close()
        drop_schema(_pg_url(), schema)


def test_threaded_puts_and_gets_share_one_butler(
    tmp_path: Path, rc2_template: Path, datastore_root: str | None
) -> None:
    """One Butler used from 8 threads (as bench/io.py does for S3): every put lands once and reads back."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import rc2_repo

    butler = rc2_repo(tmp_path / "repo", datastore_root, rc2_template, run=RUN)
    butler.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    detectors = list(range(0, 80))

    def put(detector: int) -> object:
        return butler.put(
            _table(detector % 8, detector), "src", instrument="HSC", visit=1228, detector=detector
        )

    with ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(put, detectors))
        tables = list(pool.map(butler.get, refs))
    assert len({r.id for r in refs}) == len(detectors)
    for detector, table in zip(detectors, tables):
        assert table.equals(_table(detector % 8, detector))
    assert len(butler.query_datasets("src", RUN)) == len(detectors)
    assert butler.fsck(checksums=True, grace=0).ok
