"""The command a writer-recovery test runs, kills, and runs again (see test_writer_recovery.py).

    python recovery_worker.py REPO put RUN COUNT   # put COUNT tables (detectors 0..COUNT-1) into RUN

Deterministic: the same arguments put the same data at the same paths, as
re-running a killed command does.  ``PORTER_STOP_AT`` (see
`porter._stop_points`) makes it stop at a named moment of its first put and
wait to be killed.  Prints "done" when every put is stored.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa

from porter import Butler


def table(detector: int) -> pa.Table:
    """The table put for ``detector``: big enough that writing it takes a moment, the same every run."""
    rng = np.random.default_rng(detector)
    return pa.table({"id": np.arange(20_000), "flux": rng.normal(size=20_000)})


def main() -> None:
    repo, mode, run, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    assert mode == "put", mode
    with Butler(repo, run=run) as butler:
        for detector in range(count):
            butler.put(table(detector), "src", instrument="HSC", visit=1228, detector=detector)
    print("done", flush=True)


if __name__ == "__main__":
    main()
