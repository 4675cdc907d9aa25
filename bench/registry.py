"""Registry benchmark: porter and lsst-daf-butler side by side, same synthetic data, SQLite.

    python bench/registry.py                  # 2,000 visits x 189 detectors = 378,000 data IDs
    python bench/registry.py --visits 200     # a quick run
    python bench/registry.py --memory-check   # also run porter at half size: memory must scale with data
    python bench/registry.py --queries --visits 200   # set-up and queries only (no export/import), each
                                                      # query timed in fresh processes: first call and median of 5

Each implementation runs in its own subprocess (so peak-memory figures do not
mix); every step is timed with time.perf_counter and its peak-RSS growth is
read from getrusage.  The queries run 5 times each; the median counts.
Steps:

  1. insert dimension records (instrument, filters, 189 detectors, day_obs,
     visits and visit-detector regions with sphgeom polygons, skymap,
     tracts, patches)
  2. register 378,000 datasets (calexp: instrument, visit, detector) in one run
  3. query_datasets with  visit > 1000 AND detector IN (1..50) AND band = 'r'
  4. query_datasets for every dataset of the run
  5. query_data_ids for all (visit, detector) of one band
  6. spatial query_data_ids(["visit", "detector"]) for one tract/patch
  7. export the whole run (datasets and the records they need) to YAML
  8. import that file into a fresh repository

``--queries`` runs steps 1-2 only in each implementation's worker, keeping the
repository, and then times each query in new processes: each opens the
repository, runs the query once (the "first call in a fresh process": what a
script pays) and four more times (the median of the five is the warm figure).
``--fresh N`` such processes per query and implementation, alternating porter
and daf_butler; the medians over processes are reported, with ratios.

Requires lsst-daf-butler (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _synthetic as syn
from _harness import peak_mb, run_worker

STEPS = [
    "insert dimension records",
    "register datasets",
    "query_datasets (visit>1000, detector 1..50, band r)",
    "query_datasets all of the run",
    "query_data_ids one band",
    "spatial query_data_ids one patch",
    "export run",
    "import run",
]
QUERY_STEPS = STEPS[2:6]
QUERY_REPEATS = 5
WHERE = "visit > 1000 AND detector IN (1..50) AND band = 'r'"
FORMATTER = "lsst.daf.butler.formatters.json.JsonFormatter"  # any importable formatter; no files exist


class Timer:
    """Times each step; in memory mode, records each step's peak Python allocation instead.

    Peak RSS (getrusage) is a process-wide maximum, so a step that needs
    less than an earlier one shows no growth at all; tracemalloc's peak,
    reset before each step, measures the step itself (but slows it down, so
    memory runs are separate from timing runs).
    """

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.memory = os.environ.get("PORTER_BENCH_MEMORY") == "1"
        if self.memory:
            import tracemalloc

            tracemalloc.start()

    def run(self, name: str, func: Callable[[], Any]) -> Any:
        rss0 = peak_mb()
        if self.memory:
            import tracemalloc

            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        # Queries take tens of milliseconds: one sample is mostly noise, so
        # they run QUERY_REPEATS times and the median counts (the first,
        # cold run is kept in the JSON too).
        repeat = QUERY_REPEATS if name in QUERY_STEPS and not self.memory else 1
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            value = func()
            samples.append(time.perf_counter() - t0)
        dt = statistics.median(samples)
        self.results[name] = {"seconds": dt, "samples": samples, "peak_rss_growth_mb": peak_mb() - rss0}
        if self.memory:
            self.results[name]["step_peak_mb"] = (tracemalloc.get_traced_memory()[1] - base) / 1e6
        n = len(value) if hasattr(value, "__len__") else value
        self.results[name]["rows"] = n
        print(f"  {name:<52} {dt:9.3f} s  rows={n}", file=sys.stderr, flush=True)
        return value


def middle_patch() -> tuple[int, int]:
    tracts = list(syn.tracts())
    tract = tracts[len(tracts) // 2 + 1][0]
    return tract, 44


# --- porter --------------------------------------------------------------------------------------------


def porter_queries(butler: Any) -> dict[str, Callable[[], Any]]:
    """The benchmark's queries against a porter butler, by step name."""
    tract, patch = middle_patch()
    return {
        STEPS[2]: lambda: butler.query_datasets("calexp", "run", where=WHERE, instrument=syn.INSTRUMENT),
        STEPS[3]: lambda: butler.query_datasets("calexp", "run"),
        STEPS[4]: lambda: butler.query_data_ids(
            ["visit", "detector"], where="band = 'r'", instrument=syn.INSTRUMENT
        ),
        STEPS[5]: lambda: butler.query_data_ids(
            ["visit", "detector"],
            instrument=syn.INSTRUMENT,
            skymap=syn.SKYMAP,
            where="tract = :t AND patch = :p",
            bind={"t": tract, "p": patch},
        ),
    }


def run_porter(n_visits: int, workdir: Path, setup_only: bool = False) -> dict[str, Any]:
    from porter import Butler, Timespan

    timer = Timer()
    vis = syn.visits(n_visits)
    records = syn.records(vis, Timespan)
    data_ids = syn.data_ids(vis)
    butler = Butler.create(workdir / "porter-repo")

    def insert_records() -> int:
        n = 0
        for element, recs in records.items():
            n += butler.insert_dimension_records(element, recs)
        return n

    timer.run(STEPS[0], insert_records)

    def register() -> list:
        butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
        butler.collections.register("run")
        return butler.registry.insert_datasets("calexp", data_ids, "run")

    timer.run(STEPS[1], register)
    if setup_only:
        return timer.results
    for name, query in porter_queries(butler).items():
        timer.run(name, query)
    export = workdir / "porter-export.yaml"
    timer.run(STEPS[6], lambda: butler.export(export, collections=["run"])["datasets"])
    fresh = Butler.create(workdir / "porter-fresh")
    timer.run(STEPS[7], lambda: fresh.import_(export)["datasets"])
    return timer.results


# --- daf_butler ----------------------------------------------------------------------------------------


def daf_queries(butler: Any) -> dict[str, Callable[[], Any]]:
    """The same queries against a daf_butler butler."""
    tract, patch = middle_patch()
    return {
        STEPS[2]: lambda: butler.query_datasets(
            "calexp", "run", where=WHERE, instrument=syn.INSTRUMENT, limit=None, explain=False
        ),
        STEPS[3]: lambda: butler.query_datasets("calexp", "run", limit=None, explain=False),
        STEPS[4]: lambda: butler.query_data_ids(
            ["visit", "detector"], where="band = 'r'", instrument=syn.INSTRUMENT, limit=None, explain=False
        ),
        STEPS[5]: lambda: butler.query_data_ids(
            ["visit", "detector"],
            instrument=syn.INSTRUMENT,
            skymap=syn.SKYMAP,
            where="tract = :t AND patch = :p",
            bind={"t": tract, "p": patch},
            limit=None,
            explain=False,
        ),
    }


def run_daf(n_visits: int, workdir: Path, setup_only: bool = False) -> dict[str, Any]:
    import astropy.time
    from lsst.daf.butler import Butler, DatasetType, FileDataset, Timespan
    from lsst.daf.butler.transfers import YamlRepoExportBackend, YamlRepoImportBackend

    timer = Timer()
    vis = syn.visits(n_visits)
    root = workdir / "daf-repo"
    Butler.makeRepo(str(root))
    butler = Butler(str(root), writeable=True)
    universe = butler.dimensions
    records = syn.records(
        vis,
        lambda b, e: Timespan(astropy.time.Time(b, scale="tai"), astropy.time.Time(e, scale="tai")),
    )
    data_ids = syn.data_ids(vis)

    def insert_records() -> int:
        n = 0
        for element, recs in records.items():
            butler.registry.insertDimensionData(element, *recs)
            n += len(recs)
        return n

    timer.run(STEPS[0], insert_records)
    dataset_type = DatasetType("calexp", ["instrument", "visit", "detector"], "ExposureF", universe=universe)

    def register() -> list:
        butler.registry.registerDatasetType(dataset_type)
        butler.registry.registerRun("run")
        return list(butler.registry.insertDatasets(dataset_type, data_ids, run="run"))

    timer.run(STEPS[1], register)
    if setup_only:
        return timer.results
    for name, query in daf_queries(butler).items():
        timer.run(name, query)
    export = workdir / "daf-export.yaml"

    def do_export() -> int:
        # daf_butler's own export path minus the datastore (which has no
        # artifacts here): query the refs and the records their data IDs
        # need, and write them with its YAML export backend.
        refs = butler.query_datasets("calexp", "run", limit=None, explain=False)
        with open(export, "w") as stream:
            backend = YamlRepoExportBackend(stream, universe)
            for element in [
                "instrument",
                "physical_filter",
                "detector",
                "day_obs",
                "visit",
                "visit_detector_region",
            ]:
                backend.saveDimensionData(
                    universe[element], *butler.query_dimension_records(element, limit=None, explain=False)
                )
            backend.saveCollection(butler._registry._managers.collections.find("run"), None)
            backend.saveDatasets(
                dataset_type,
                "run",
                *[FileDataset(f"run/calexp/{r.id}.fits", [r], formatter=FORMATTER) for r in refs],
            )
            backend.finish()
        return len(refs)

    timer.run(STEPS[6], do_export)
    fresh_root = workdir / "daf-fresh"
    Butler.makeRepo(str(fresh_root))
    fresh = Butler(str(fresh_root), writeable=True)

    def do_import() -> int:
        with open(export) as stream:
            backend = YamlRepoImportBackend(stream, fresh)
        backend.register()
        backend.load(None)
        return len(backend.refsByFileId)

    timer.run(STEPS[7], do_import)
    return timer.results


# --- one query in a fresh process -----------------------------------------------------------------------


def query_worker(impl: str, repo: Path, step: str) -> dict[str, Any]:
    """Open the repository, run one query QUERY_REPEATS times: the first call, and the median of all.

    ``open_s`` is the time from just before the butler package's import to a
    butler ready to query (what a fresh process pays before its first query).
    """
    t0 = time.perf_counter()
    if impl == "porter":
        from porter import Butler

        butler = Butler(repo / "porter-repo")
        queries = porter_queries
    else:
        from lsst.daf.butler import Butler as DafButler

        butler = DafButler(str(repo / "daf-repo"))
        queries = daf_queries
    open_s = time.perf_counter() - t0
    query = queries(butler)[step]
    samples = []
    value: Any = None
    for _ in range(QUERY_REPEATS):
        t0 = time.perf_counter()
        value = query()
        samples.append(time.perf_counter() - t0)
    return {
        "first": samples[0],
        "median": statistics.median(samples),
        "samples": samples,
        "open_s": open_s,
        "rows": len(value),
    }


def run_queries(n_visits: int, fresh: int, impls: list[str]) -> dict[str, Any]:
    """Build each implementation's repository, then time every query in ``fresh`` new processes each."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-registry-queries-"))
    results: dict[str, Any] = {"visits": n_visits, "data_ids": n_visits * 189, "fresh": fresh}
    try:
        for impl in impls:
            print(f"{impl}, {n_visits} visits x 189 detectors (set-up):", file=sys.stderr, flush=True)
            results[impl] = run_worker(
                __file__, impl, ["--visits", str(n_visits), "--setup-only", "--keep", str(workdir)]
            )
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {impl: {} for impl in impls}
        for step in QUERY_STEPS:
            for k in range(fresh):
                # Alternate which implementation goes first, so neither always runs after the other.
                for impl in impls if k % 2 == 0 else impls[::-1]:
                    r = run_worker(__file__, f"{impl}-query", ["--keep", str(workdir), "--step", step])
                    samples[impl].setdefault(step, []).append(r)
                    print(
                        f"  {impl:<6} {step:<52} first {r['first']:8.4f} s  median {r['median']:8.4f} s"
                        f"  open {r['open_s']:6.2f} s  rows={r['rows']}",
                        file=sys.stderr,
                        flush=True,
                    )
        for impl in impls:
            for step, runs in samples[impl].items():
                results[impl][step] = {
                    "first": statistics.median(r["first"] for r in runs),
                    "seconds": statistics.median(r["median"] for r in runs),
                    "open_s": statistics.median(r["open_s"] for r in runs),
                    "rows": runs[0]["rows"],
                    "runs": runs,
                }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def print_queries(results: dict[str, Any]) -> None:
    print()
    print(
        f"Registry queries, SQLite, {results['visits']} visits x 189 detectors = {results['data_ids']:,} "
        f"datasets; medians over {results['fresh']} fresh processes per query"
    )
    header = (
        f"{'query':<52} {'rows':>7} | {'first call: porter s':>20} {'daf s':>8} {'ratio':>7} | "
        f"{'median of 5: porter s':>21} {'daf s':>8} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for step in QUERY_STEPS:
        p = results.get("porter", {}).get(step)
        d = results.get("daf", {}).get(step)
        cells = []
        for key in ("first", "seconds"):
            ps = f"{p[key]:.4f}" if p else "-"
            ds = f"{d[key]:.4f}" if d else "-"
            ratio = f"{d[key] / p[key]:.1f}x" if p and d and p[key] > 0 else "-"
            cells.append((ps, ds, ratio))
        rows = (p or d or {}).get("rows", "-")
        (pf, df, rf), (pm, dm, rm) = cells
        print(f"{step:<52} {rows:>7} | {pf:>20} {df:>8} {rf:>7} | {pm:>21} {dm:>8} {rm:>7}")
        if p and d and p["rows"] != d["rows"]:
            print(f"    !! row counts differ: porter {p['rows']} daf {d['rows']}")
    opens = [
        f"{impl} {statistics.median(results[impl][s]['open_s'] for s in QUERY_STEPS):.2f} s"
        for impl in ("porter", "daf")
        if impl in results
    ]
    print(f"(import + open the repository, not in the figures above: {', '.join(opens)})")
    # What a one-shot script waits for: a library that defers imports to the first query (porter
    # imports lsst.sphgeom with the first spatial query) shows it here, not in "first call".
    print()
    print(
        f"{'time to the first answer in a fresh process (import + open + first call)':<72} {'porter s':>9} {'daf s':>8} {'ratio':>7}"
    )
    for step in QUERY_STEPS:
        p = results.get("porter", {}).get(step)
        d = results.get("daf", {}).get(step)
        if not (p and d):
            continue
        pt = statistics.median(r["open_s"] + r["first"] for r in p["runs"])
        dt = statistics.median(r["open_s"] + r["first"] for r in d["runs"])
        print(f"{step:<72} {pt:>9.3f} {dt:>8.3f} {dt / pt:>6.1f}x")


# --- driver ----------------------------------------------------------------------------------------------


def worker(impl: str, n_visits: int, keep: Path | None, setup_only: bool) -> None:
    workdir = keep or Path(tempfile.mkdtemp(prefix=f"bench-{impl}-"))
    try:
        run = run_porter if impl == "porter" else run_daf
        results = run(n_visits, workdir, setup_only)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


def spawn(impl: str, n_visits: int, memory: bool = False) -> dict[str, Any]:
    label = " (memory, tracemalloc)" if memory else ""
    print(f"{impl}, {n_visits} visits x 189 detectors{label}:", file=sys.stderr, flush=True)
    return run_worker(
        __file__, impl, ["--visits", str(n_visits)], env={"PORTER_BENCH_MEMORY": "1" if memory else "0"}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=2000)
    parser.add_argument("--worker", choices=["porter", "daf", "porter-query", "daf-query"])
    parser.add_argument("--only", choices=["porter", "daf"])
    parser.add_argument(
        "--memory-check",
        action="store_true",
        help="also measure porter's per-step memory at half and full size",
    )
    parser.add_argument(
        "--queries",
        action="store_true",
        help="set-up and queries only (no export/import); each query timed in fresh processes",
    )
    parser.add_argument(
        "--fresh", type=int, default=3, help="with --queries: fresh processes per query and implementation"
    )
    parser.add_argument("--out", type=Path, help="write all figures as JSON here")
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)  # worker: the repositories' directory
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker in ("porter-query", "daf-query"):
        print(json.dumps(query_worker(args.worker.split("-")[0], args.keep, args.step)))
        return
    if args.worker:
        worker(args.worker, args.visits, args.keep, args.setup_only)
        return
    impls = [args.only] if args.only else ["porter", "daf"]
    if args.queries:
        results = run_queries(args.visits, args.fresh, impls)
        print_queries(results)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
        return
    results: dict[str, Any] = {"visits": args.visits, "data_ids": args.visits * 189}
    for impl in impls:
        results[impl] = spawn(impl, args.visits)
    if args.memory_check:
        results["porter_memory_half"] = spawn("porter", args.visits // 2, memory=True)
        results["porter_memory_full"] = spawn("porter", args.visits, memory=True)
    print()
    print(
        f"Registry benchmark, SQLite, {args.visits} visits x 189 detectors = {args.visits * 189:,} data IDs"
    )
    header = f"{'step':<52} {'porter s':>10} {'daf s':>10} {'ratio':>8}  {'porter RSS+':>11} {'daf RSS+':>9}"
    print(header)
    print("-" * len(header))
    for step in STEPS:
        p = results.get("porter", {}).get(step)
        d = results.get("daf", {}).get(step)
        ps = f"{p['seconds']:.3f}" if p else "-"
        ds = f"{d['seconds']:.3f}" if d else "-"
        ratio = f"{d['seconds'] / p['seconds']:.1f}x" if p and d and p["seconds"] > 0 else "-"
        pm = f"{p['peak_rss_growth_mb']:.0f}" if p else "-"
        dm = f"{d['peak_rss_growth_mb']:.0f}" if d else "-"
        print(f"{step:<52} {ps:>10} {ds:>10} {ratio:>8}  {pm:>11} {dm:>9}")
        if p and d and p["rows"] != d["rows"]:
            print(f"    !! row counts differ: porter {p['rows']} daf {d['rows']}")
    if args.memory_check:
        print(
            "\nporter memory per step (tracemalloc peak above the step's starting heap), "
            f"{args.visits // 2} vs {args.visits} visits; x<=2.0 means growing no faster than the data:"
        )
        for step in STEPS:
            full = results["porter_memory_full"][step]["step_peak_mb"]
            half = results["porter_memory_half"][step]["step_peak_mb"]
            scale = f"x{full / half:.2f}" if half > 0.5 else "(under 0.5 MB)"
            print(f"  {step:<52} {half:8.1f} MB -> {full:8.1f} MB   {scale}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
