"""Run by test_crash_safety.py in a subprocess that is killed (SIGKILL) at a random moment.

    python crash_worker.py REPO put SEED      # put datasets of mixed sizes, forever
    python crash_worker.py REPO remove SEED   # put a run of datasets, remove it, repeat
    python crash_worker.py REPO ingest SEED   # write Parquet files outside, ingest them (copy/move/symlink)
    python crash_worker.py REPO transfer SEED SOURCE  # transfer_from SOURCE, remove the run, repeat
    python crash_worker.py REPO hold SEED     # put one dict, stopping half-way through formatting it

Prints "ready" once the repository is open, so the parent knows the kill
lands inside the operations and not in interpreter start-up.  ``hold``
then prints "holding PATH" (PATH is the half-written temporary) and waits
for a line on stdin before it finishes the put and prints "stored ID": a
live writer caught mid-put, whose temporary no sweep may touch.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from porter import Butler, DatasetRef, FileDataset
from porter.datastore.formatters import YamlFormatter


class HeldFormatter(YamlFormatter):
    """A YAML formatter that stops half-way through writing its file until told to go on (``hold`` mode).

    Imported as ``crash_worker.HeldFormatter`` (this directory is on the path of
    the worker and of the tests), so the test reads what it wrote.
    """

    def write(self, obj: Any, path: Path) -> str | None:
        path.write_bytes(b"partial: ")
        print(f"holding {path}", flush=True)
        sys.stdin.readline()
        return super().write(obj, path)


def main() -> None:
    repo, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(seed)
    butler = Butler(repo)
    detectors = [d["detector"] for d in butler.query_data_ids(["detector"], instrument="HSC")][:100]
    if mode == "ingest":
        ingest_forever(butler, detectors, rng, seed)
    if mode == "transfer":
        transfer_forever(butler, Butler(sys.argv[4]))
    if mode == "hold":
        hold(butler, detectors[0])
        return
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        run = f"crash/{seed}/{i}"
        # Removal rounds store many small files, so that deleting them takes a while.
        count = 50 if mode == "remove" else int(rng.integers(1, 8))
        for detector in detectors[:count]:
            rows = 10 if mode == "remove" else int(rng.choice([10, 20_000, 200_000]))
            table = pa.table({"id": np.arange(rows), "flux": rng.normal(size=rows)})
            butler.put(table, "src", instrument="HSC", visit=1228, detector=detector, run=run)
        if mode == "remove":
            butler.remove_runs([run])


def ingest_forever(butler: Butler, detectors: list[int], rng: np.random.Generator, seed: int) -> None:
    staging = Path(tempfile.mkdtemp(prefix="porter-crash-staging-"))
    src = butler.get_dataset_type("src")
    modes = ["copy", "move"] + (["symlink"] if butler.datastore.root.is_local else [])
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        run = f"crash/{seed}/{i}"
        fds = []
        for detector in detectors[: int(rng.integers(5, 40))]:
            rows = int(rng.choice([10, 20_000]))
            path = staging / f"{i}-{detector}.parquet"
            pq.write_table(pa.table({"id": np.arange(rows), "flux": rng.normal(size=rows)}), path)
            fds.append(
                FileDataset(
                    path, DatasetRef(src, {"instrument": "HSC", "visit": 1228, "detector": detector}, run)
                )
            )
        butler.ingest(*fds, transfer=modes[i % len(modes)])


def transfer_forever(butler: Butler, source: Butler) -> None:
    refs = source.query_datasets("src", "crash/source")
    print("ready", flush=True)
    while True:
        butler.transfer_from(source, refs)
        butler.remove_runs(["crash/source"])


def hold(butler: Butler, detector: int) -> None:
    """Put one ``summary`` dict through `HeldFormatter` (this process's StructuredDataDict formatter)."""
    config = Path(tempfile.mkdtemp(prefix="porter-crash-held-")) / "held.yaml"
    config.write_text(
        "StructuredDataDict:\n  pytype: builtins.dict\n  formatter: crash_worker.HeldFormatter\n"
    )
    butler.datastore.storage_classes.load(config)
    print("ready", flush=True)
    ref = butler.put(
        {"held": True}, "summary", instrument="HSC", visit=1228, detector=detector, run="crash/held"
    )
    print(f"stored {ref.id}", flush=True)


if __name__ == "__main__":
    main()
