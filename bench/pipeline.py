"""Pipeline benchmark: quantum-graph building and executor overhead, porter vs lsst-pipe-base, same data.

    python bench/pipeline.py                          # the issue's sizes: 530 visits x 189 detectors
    python bench/pipeline.py --visits 100 --noop 4000 --pipetask-quanta 20   # quicker
    python bench/pipeline.py --only porter

Data: the synthetic instrument of bench/_synthetic.py (189 detectors, N visits with real regions),
and a registered ``calexp`` dataset per (visit, detector) (registry rows only: nothing is read).
Both repositories hold the same dimension records and datasets.

  1. graph build: a per-(visit, detector) task reading calexp and a per-visit gather of its outputs
     (about 100,000 quanta for 530 visits); wall time and the build's memory (peak RSS above the
     process's RSS before the build).  porter: `build_quantum_graph`; pipe_base:
     `AllDimensionsQuantumGraphBuilder.build`.  Each in a fresh process.
  2. executor overhead: no-op quanta (a deferred input that is never read, no outputs) through
     porter's warm local pool with 2 workers and Parsl's HighThroughputExecutor with 2 local
     workers, quanta clustered per visit (the default); and the pool with one job per quantum
     (a quarter as many quanta).  Each executor first runs one visit to start up (reported
     apart); the figure is wall time / quanta of the measured graph.  pipe_base: `pipetask run -j 2` on a graph of
     the same task (pipe_base needs an output, and writes metadata and log datasets per quantum).

Ratios are pipe_base / porter (higher is better for porter).  Requires pip install -e '.[bench]'
plus lsst-pipe-base and lsst-ctrl-mpexec (pipetask).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _synthetic as syn  # noqa: E402 - found through the sys.path entry above
from _harness import peak_mb, run_worker  # noqa: E402

VD = ["instrument", "visit", "detector"]
INPUTS = "calexps"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- porter -----------------------------------------------------------------------------------------------


def porter_setup(root: Path, n_visits: int) -> None:
    from porter import Butler, Timespan

    vis = syn.visits(n_visits)
    butler = Butler.create(root)
    for element, recs in syn.records(vis, Timespan).items():
        butler.insert_dimension_records(element, recs)
    butler.register_dataset_type("calexp", VD, "StructuredDataDict")
    butler.registry.collections.register(INPUTS, "RUN")
    butler.registry.insert_datasets("calexp", syn.data_ids(vis), INPUTS)
    butler.close()


PORTER_YAML = """
tasks:
  perDetector: _porter_bench_tasks.PerDetectorTask
  perVisit: _porter_bench_tasks.PerVisitTask
"""
PORTER_NOOP_YAML = "tasks:\n  noop: _porter_bench_tasks.NoOpTask\n"


def porter_build(root: Path, workdir: Path) -> dict[str, float]:
    from porter import Butler
    from porter.pipeline import Pipeline, build_quantum_graph

    butler = Butler(root, writeable=False)
    pipe = Pipeline.from_yaml(PORTER_YAML)
    base = rss_mb()
    t = time.perf_counter()
    graph = build_quantum_graph(
        butler, pipe, collections=[INPUTS], run="bench/out", data_id={"instrument": syn.INSTRUMENT}
    )
    seconds = time.perf_counter() - t
    peak = peak_mb()
    t = time.perf_counter()
    graph.save(workdir / "porter.qgraph")
    save = time.perf_counter() - t
    return {
        "quanta": len(graph),
        "build s": seconds,
        "build MB": peak - base,
        "save s": save,
        "file MB": (workdir / "porter.qgraph").stat().st_size / 2**20,
    }


def porter_exec(root: Path, n_quanta: int, kind: str) -> dict[str, float]:
    """No-op quanta through an executor: first one visit to start it (timed apart), then the measured graph."""
    from porter import Butler
    from porter.pipeline import (
        ExecutionOptions,
        LocalPoolExecutor,
        ParslExecutor,
        Pipeline,
        build_quantum_graph,
        execute_graph,
    )

    butler = Butler(root)
    pipe = Pipeline.from_yaml(PORTER_NOOP_YAML)
    n_visits = max(1, n_quanta // 189)
    instrument = {"instrument": syn.INSTRUMENT}
    warm = build_quantum_graph(
        butler, pipe, collections=[INPUTS], run=f"bench/warm-{kind}", where="visit = 1000", data_id=instrument
    )
    graph = build_quantum_graph(
        butler,
        pipe,
        collections=[INPUTS],
        run=f"bench/noop-{kind}",
        where=f"visit > 1000 AND visit <= {1000 + n_visits}",
        data_id=instrument,
    )
    executor = ParslExecutor(workers=2) if kind == "parsl" else LocalPoolExecutor(2)
    options = ExecutionOptions(retries=0)
    cluster_by = () if kind == "pool-unclustered" else None  # () = one job per quantum
    if cluster_by is not None:
        graph = graph.restricted({q.id for q in graph.quanta[: n_quanta // 4]})
    with executor:
        t = time.perf_counter()
        assert execute_graph(butler, warm, executor, options=options, cluster_by=cluster_by).ok
        startup = time.perf_counter() - t
        t = time.perf_counter()
        summary = execute_graph(butler, graph, executor, options=options, cluster_by=cluster_by)
        seconds = time.perf_counter() - t
    assert summary.ok, summary.to_dict()["counts"]
    return {
        "quanta": len(graph),
        "seconds": seconds,
        "ms/quantum": 1000 * seconds / len(graph),
        "quanta/s": len(graph) / seconds,
        "startup s": startup,
    }


# --- pipe_base --------------------------------------------------------------------------------------------


def daf_setup(root: Path, n_visits: int) -> None:
    import astropy.time
    from lsst.daf.butler import Butler, CollectionType, DatasetType, Timespan

    vis = syn.visits(n_visits)
    Butler.makeRepo(str(root))
    butler = Butler(str(root), writeable=True)
    records = syn.records(
        vis, lambda b, e: Timespan(astropy.time.Time(b, scale="tai"), astropy.time.Time(e, scale="tai"))
    )
    for element, recs in records.items():
        butler.registry.insertDimensionData(element, *recs)
    butler.registry.registerDatasetType(
        DatasetType("calexp", VD, "StructuredDataDict", universe=butler.dimensions)
    )
    butler.registry.registerCollection(INPUTS, CollectionType.RUN)
    butler.registry.insertDatasets("calexp", syn.data_ids(vis), run=INPUTS)


PIPE_BASE_YAML = """
description: bench
tasks:
  perDetector: _pipe_base_tasks.PerDetectorTask
  perVisit: _pipe_base_tasks.PerVisitTask
"""
PIPE_BASE_NOOP_YAML = "description: bench\ntasks:\n  noop: _pipe_base_tasks.NoOpTask\n"


def pipe_base_build(root: Path, workdir: Path) -> dict[str, float]:
    from lsst.daf.butler import Butler
    from lsst.pipe.base import Pipeline
    from lsst.pipe.base.all_dimensions_quantum_graph_builder import AllDimensionsQuantumGraphBuilder

    butler = Butler(str(root), writeable=False)
    graph_def = Pipeline.fromString(PIPE_BASE_YAML).to_graph(registry=butler.registry)
    base = rss_mb()
    t = time.perf_counter()
    builder = AllDimensionsQuantumGraphBuilder(
        graph_def,
        butler,
        input_collections=[INPUTS],
        output_run="bench/out",
        where=f"instrument = '{syn.INSTRUMENT}'",
    )
    qg = builder.build(attach_datastore_records=False)
    seconds = time.perf_counter() - t
    peak = peak_mb()
    t = time.perf_counter()
    qg.saveUri(str(workdir / "pipe_base.qgraph"))
    save = time.perf_counter() - t
    return {
        "quanta": len(qg),
        "build s": seconds,
        "build MB": peak - base,
        "save s": save,
        "file MB": (workdir / "pipe_base.qgraph").stat().st_size / 2**20,
    }


def pipetask_exec(root: Path, n_quanta: int, workdir: Path) -> dict[str, float]:
    pipeline = workdir / "noop.yaml"
    pipeline.write_text(PIPE_BASE_NOOP_YAML)
    n_det = max(1, min(189, n_quanta))
    common = [
        "-b",
        str(root),
        "-p",
        str(pipeline),
        "-i",
        INPUTS,
        "--output-run",
        "bench/noop",
        "-d",
        f"instrument = '{syn.INSTRUMENT}' AND visit = 1000 AND detector < {n_det}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    qgraph = workdir / "noop.qgraph"
    subprocess.run(
        ["pipetask", "qgraph", *common, "--save-qgraph", str(qgraph)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t = time.perf_counter()
    subprocess.run(
        ["pipetask", "run", "-b", str(root), "-g", str(qgraph), "-j", "2", "--register-dataset-types"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - t
    return {
        "quanta": n_det,
        "seconds": seconds,
        "ms/quantum": 1000 * seconds / n_det,
        "quanta/s": n_det / seconds,
    }


# --- driver ---------------------------------------------------------------------------------------------------


def worker(step: str, args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    root = workdir / ("porter-repo" if step.startswith("porter") else "daf-repo")
    if step == "porter-setup":
        porter_setup(root, args.visits)
        out: dict[str, Any] = {}
    elif step == "porter-build":
        out = porter_build(root, workdir)
    elif step == "porter-pool":
        out = porter_exec(root, args.noop, "pool")
    elif step == "porter-parsl":
        out = porter_exec(root, args.noop, "parsl")
    elif step == "porter-pool-unclustered":
        out = porter_exec(root, args.noop, "pool-unclustered")
    elif step == "daf-setup":
        daf_setup(root, args.visits)
        out = {}
    elif step == "daf-build":
        out = pipe_base_build(root, workdir)
    elif step == "daf-pipetask":
        out = pipetask_exec(root, args.pipetask_quanta, workdir)
    else:
        raise SystemExit(f"unknown step {step}")
    print(json.dumps(out))


def spawn(step: str, argv: list[str]) -> dict[str, Any]:
    print(f"  {step} …", file=sys.stderr, flush=True)
    t = time.perf_counter()
    out = run_worker(__file__, step, argv)
    print(f"  {step} done in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=530)
    parser.add_argument("--noop", type=int, default=20_000, help="no-op quanta through porter's executors")
    parser.add_argument(
        "--pipetask-quanta", type=int, default=40, help="no-op quanta through pipetask run -j 2"
    )
    parser.add_argument("--only", choices=["porter", "pipe_base"])
    parser.add_argument("--workdir")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=args.workdir))
    argv = [
        "--visits",
        str(args.visits),
        "--noop",
        str(args.noop),
        "--pipetask-quanta",
        str(args.pipetask_quanta),
        "--workdir",
        str(workdir),
    ]
    res: dict[str, dict[str, Any]] = {}
    try:
        if args.only != "pipe_base":
            print("porter:", file=sys.stderr)
            spawn("porter-setup", argv)
            res["porter build"] = spawn("porter-build", argv)
            res["porter pool"] = spawn("porter-pool", argv)
            res["porter parsl"] = spawn("porter-parsl", argv)
            res["porter pool-unclustered"] = spawn("porter-pool-unclustered", argv)
        if args.only != "porter":
            print("pipe_base:", file=sys.stderr)
            spawn("daf-setup", argv)
            res["pipe_base build"] = spawn("daf-build", argv)
            res["pipetask -j 2"] = spawn("daf-pipetask", argv)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(res, indent=1))
    print(
        textwrap.dedent(f"""
        {args.visits} visits x 189 detectors
        step                          porter            pipe_base         ratio (pipe_base/porter)""")
    )
    pb, pp = res.get("pipe_base build"), res.get("porter build")
    if pp:
        line = f"graph build ({pp['quanta']} quanta)".ljust(30) + f"{pp['build s']:8.2f} s".ljust(18)
        if pb:
            line += (
                f"{pb['build s']:8.2f} s ({pb['quanta']})".ljust(18) + f"{pb['build s'] / pp['build s']:.1f}x"
            )
        print(line)
        line = "graph build memory".ljust(30) + f"{pp['build MB']:8.0f} MB".ljust(18)
        if pb:
            line += f"{pb['build MB']:8.0f} MB".ljust(18) + f"{pb['build MB'] / max(pp['build MB'], 1):.1f}x"
        print(line)
        line = "graph file".ljust(30) + f"{pp['file MB']:8.1f} MB".ljust(18)
        if pb:
            line += f"{pb['file MB']:8.1f} MB"
        print(line)
    pt = res.get("pipetask -j 2")
    for key in ("porter pool", "porter parsl", "porter pool-unclustered"):
        r = res.get(key)
        if r:
            line = f"{key[7:]} -j 2 no-op ({r['quanta']} q)".ljust(
                30
            ) + f"{r['ms/quantum']:8.2f} ms/q ({r['quanta/s']:.0f}/s)".ljust(18)
            line += f" [startup + 189 q: {r['startup s']:.1f} s]"
            if pt:
                line += (
                    f" {pt['ms/quantum']:8.0f} ms/q".ljust(18) + f"{pt['ms/quantum'] / r['ms/quantum']:.0f}x"
                )
            print(line)


if __name__ == "__main__":
    main()
