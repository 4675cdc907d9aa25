"""Run by test_crash_safety.py in a subprocess that is killed (SIGKILL) at a random moment.

    python crash_worker.py REPO put SEED      # put datasets of mixed sizes, forever
    python crash_worker.py REPO remove SEED   # put a run of datasets, remove it, repeat

Prints "ready" once the repository is open, so the parent knows the kill
lands inside the operations and not in interpreter start-up.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa

from porter import Butler


def main() -> None:
    repo, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(seed)
    butler = Butler(repo)
    detectors = [d["detector"] for d in butler.query_data_ids(["detector"], instrument="HSC")][:100]
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


if __name__ == "__main__":
    main()
