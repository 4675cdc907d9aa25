"""Benchmark: ``where`` expressions with long IN lists and many ranges (issue 14, "Queries under fuzzing").

    python bench/query_in_lists.py                       # 200 visits x 189 detectors = 37,800 datasets
    python bench/query_in_lists.py --visits 2000         # 378,000 datasets
    python bench/query_in_lists.py --repo /tmp/inbench   # keep (and reuse) the repository there
    python bench/query_in_lists.py --postgresql postgresql://postgres@127.0.0.1:5432/porter_test

A fuzzer found that a few hundred ``IN`` ranges made a query take more than
5 s: each range was a ``BETWEEN`` of one ``OR`` tree that the database
evaluates for every candidate row.  This script builds the synthetic survey of
bench/registry.py (one run of calexps, one per visit and detector) and times
``query_datasets`` and ``query_data_ids`` with IN lists of a few hundred to
tens of thousands of ranges and values.  Each query runs ``--repeat`` times
in this process after one warm-up call; the minimum counts (the least
disturbed by other load on a shared machine).  The row counts are printed so
that before/after runs can be compared for equal answers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _synthetic as syn


def build(butler: Any, n_visits: int) -> None:
    """The synthetic survey's records and one calexp per (visit, detector) in the run ``run``."""
    from porter import Timespan

    vis = syn.visits(n_visits)
    for element, recs in syn.records(vis, Timespan).items():
        butler.insert_dimension_records(element, recs)
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    butler.collections.register("run")
    butler.registry.insert_datasets("calexp", syn.data_ids(vis), "run")


def queries(n_visits: int) -> dict[str, str]:
    """The ``where`` expressions timed, by label (visits are numbered from 1000)."""
    first, last = 1000, 1000 + n_visits - 1
    short = ", ".join(f"{v}..{v + 1}" for v in range(first, last, 3))  # ~n/3 two-visit ranges
    strided = ", ".join(f"{d}..{d + 60}:{2 + d % 3}" for d in range(300))  # 300 strided ranges
    wide = ", ".join(f"{i * 10**12}..{i * 10**12 + 10**11}" for i in range(1, 301))  # unexpandable
    values = ", ".join(str(v) for v in range(first, last + 1, 2))
    many = ", ".join(f"{v}..{v}" for v in range(first, first + 20_000))
    return {
        f"visit IN ({short.count('..')} 2-visit ranges)": f"visit IN ({short})",
        "detector IN (300 strided ranges)": f"detector IN ({strided})",
        "visit IN (300 ranges of 10^11, none matching)": f"visit IN ({wide}) OR visit = {first}",
        f"visit IN ({values.count(',') + 1} values)": f"visit IN ({values})",
        "visit IN (20,000 one-visit ranges)": f"visit IN ({many})",
        "detector NOT IN (300 strided ranges)": f"detector NOT IN ({strided})",
    }


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, int]:
    """Minimum seconds over ``repeat`` calls after one warm-up, and the answer's length."""
    n = len(call())
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best, n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repo", type=Path, help="where to keep the repository (reused if it exists)")
    parser.add_argument("--postgresql", help="registry URL: a new schema there instead of SQLite")
    args = parser.parse_args()

    from porter import Butler

    root = args.repo or Path(tempfile.mkdtemp(prefix="porter-inbench-"))
    t0 = time.perf_counter()
    if (root / "porter.yaml").exists():
        butler = Butler(root)
    else:
        if args.postgresql:
            butler = Butler.create(
                root, registry=args.postgresql, namespace=f"inbench_{uuid.uuid4().hex[:8]}"
            )
        else:
            butler = Butler.create(root)
        build(butler, args.visits)
    print(f"repository {root} ready in {time.perf_counter() - t0:.1f} s ({args.visits} visits)", flush=True)
    gov = f"instrument = '{syn.INSTRUMENT}' AND "
    print(f"{'query':<50} {'rows':>8} {'query_datasets s':>17} {'query_data_ids s':>17}")
    for label, text in queries(args.visits).items():
        where = gov + f"({text})"
        try:
            ds, n_ds = timed(
                lambda w=where: butler.query_datasets("calexp", "run", where=w, explain=False), args.repeat
            )
            di, n_di = timed(
                lambda w=where: butler.query_data_ids(["visit", "detector"], where=w, explain=False),
                args.repeat,
            )
        except Exception as exc:  # a failure is a result too (the 'before' of a fix)
            print(f"{label:<50} {type(exc).__name__}: {str(exc)[:60]}", flush=True)
            continue
        assert n_ds == n_di, (label, n_ds, n_di)
        print(f"{label:<50} {n_ds:>8} {ds:>17.3f} {di:>17.3f}", flush=True)


if __name__ == "__main__":
    main()
