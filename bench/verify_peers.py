"""Peers for the metric-store benchmark (``bench/verify.py``): MLflow's tracking API, and change-points.

    python bench/verify_peers.py --n-metrics 100 --n-data-ids 100   # quick: 10,000 measurements
    python bench/verify_peers.py                                    # the issue's 1,000 x 1,000
    python bench/verify_peers.py --json                             # one JSON object instead of a table

``bench/verify.py`` imports `mlflow_log_batch` and `changepoint_timing`; this script's ``main`` runs
them alone.

MLflow.  The same workload the store takes — ``n_metrics`` metrics measured on ``n_data_ids`` data IDs
of one pipeline run — written through ``MlflowClient().log_batch`` to a SQLite backend store
(``sqlite:///…``).  MLflow has no data-ID axis, so the mapping is: the porter run is one MLflow
*experiment*; each data ID is one MLflow *run* in it, tagged with the data ID's dimensions
(``tract``, ``band``); each measurement is one MLflow metric of that run, keyed by the metric's
name (step 0, the run's time).  That is how the MLflow docs suggest logging per-entity results, and
it lets ``log_batch`` carry a whole data ID's metrics in one call (MLflow accepts at most 1,000
metrics per call; more are split).  Timed: creating each run, its ``log_batch`` calls and closing
it; not timed: creating the database schema (MLflow's migrations), reported as ``setup_seconds``.
The count written is read back from the SQLite file, not assumed.  MLflow is not a porter dependency:
it runs in its own venv at ``/tmp/porter-bench-mlflow`` (``mlflow-skinny`` plus SQLAlchemy and
Alembic, which its SQL store needs), created on first use.

Change-points.  ``n_series`` series of ``n_points`` Gaussian points, a level shift of 6 sigma planted
at a random place in ``shifted`` of them (default a tenth: most series in a real store are flat),
through `porter.verify.detect_many`; reported with how many shifts were found within one point of
where they were planted and how many were found in series with none planted.

Everything above ``worker`` uses only the standard library, so the MLflow worker can import this file
in MLflow's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import run_worker

MLFLOW_VENV = Path("/tmp/porter-bench-mlflow")
MLFLOW_PACKAGES = ["mlflow-skinny", "sqlalchemy", "alembic"]
MLFLOW_BATCH_LIMIT = 1000
"""MLflow's cap on metrics per ``log_batch`` call."""

FULL_MEASUREMENTS = 1_000_000


# ---------------------------------------------------------------- MLflow


def ensure_mlflow_venv(venv: Path = MLFLOW_VENV) -> Path:
    """The Python of a venv with MLflow's tracking client and SQL store, created if missing."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import mlflow, sqlalchemy, alembic; from mlflow import MlflowClient"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"  creating {venv} with {' '.join(MLFLOW_PACKAGES)} …", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *MLFLOW_PACKAGES],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(probe, check=True)
    return python


def mlflow_log_batch(
    n_metrics: int = 1000,
    n_data_ids: int = 1000,
    *,
    workdir: str | Path | None = None,
    python: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``n_metrics x n_data_ids`` measurements through MLflow's ``log_batch`` to SQLite.

    Runs in a subprocess in MLflow's venv (`ensure_mlflow_venv` unless ``python`` is given); the
    database is made in a fresh directory under ``workdir`` and removed afterwards.  Returns
    ``seconds`` (timed writing), ``written`` (metric rows in the database afterwards),
    ``measurements_per_s``, ``setup_seconds`` (schema creation) and MLflow's ``version``.
    """
    interpreter = Path(python) if python else ensure_mlflow_venv()
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-", dir=workdir) as tmp:
        argv = ["--n-metrics", str(n_metrics), "--n-data-ids", str(n_data_ids), "--db", f"{tmp}/mlflow.db"]
        return run_worker(__file__, "mlflow", argv, python=str(interpreter), env={"PYTHONWARNINGS": "ignore"})


def _mlflow_worker(n_metrics: int, n_data_ids: int, db: str) -> dict[str, Any]:
    """In MLflow's venv: the timed writes, then the count read back from SQLite."""
    import logging

    logging.disable(logging.WARNING)  # alembic's migration chatter
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    bands = "ugrizy"
    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.create_experiment("porter-bench-run")  # the porter run
    setup = time.perf_counter() - t0
    names = [f"bench.metric_{m:04d}" for m in range(n_metrics)]
    stamp = int(time.time() * 1000)
    t0 = time.perf_counter()
    for d in range(n_data_ids):
        tract, band = 9000 + d // len(bands), bands[d % len(bands)]
        run = client.create_run(experiment, tags={"tract": str(tract), "band": band})
        run_id = run.info.run_id
        metrics = [Metric(name, float(d + m) * 0.001, stamp, 0) for m, name in enumerate(names)]
        for start in range(0, len(metrics), MLFLOW_BATCH_LIMIT):
            client.log_batch(run_id, metrics=metrics[start : start + MLFLOW_BATCH_LIMIT])
        client.set_terminated(run_id)
    seconds = time.perf_counter() - t0
    with sqlite3.connect(db) as conn:
        written = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    return {
        "version": mlflow.__version__,
        "n_metrics": n_metrics,
        "n_data_ids": n_data_ids,
        "measurements": n_metrics * n_data_ids,
        "written": int(written),
        "seconds": seconds,
        "measurements_per_s": written / seconds if seconds > 0 else float("inf"),
        "setup_seconds": setup,
    }


# ---------------------------------------------------------------- change-points


def changepoint_timing(
    n_series: int = 1000,
    n_points: int = 1000,
    *,
    shifted: float = 0.1,
    shift_sigma: float = 6.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Time `porter.verify.detect_many` over ``n_series`` series of ``n_points`` points.

    A fraction ``shifted`` of the series get a level shift of ``shift_sigma`` noise sigmas at a
    random point (at least 2 from either end).  Importing ruptures (about a second, SciPy with it)
    is done before the clock starts and reported as ``import_seconds``.
    """
    import numpy as np

    t0 = time.perf_counter()
    import ruptures  # noqa: F401  (imported here so the timing below is the detection alone)

    from porter.verify import detect_many

    imported = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 10.0, size=(n_series, 1))
    values = 20.0 + scale * rng.standard_normal((n_series, n_points))
    planted = np.flatnonzero(rng.random(n_series) < shifted)
    where = rng.integers(2, n_points - 2, size=n_series)
    for i in planted:
        values[i, where[i] :] += shift_sigma * scale[i, 0]
    t0 = time.perf_counter()
    found = detect_many(values)
    seconds = time.perf_counter() - t0
    planted_set = set(planted.tolist())
    located = sum(any(abs(j - where[i]) <= 1 for j in found[i]) for i in planted_set)
    spurious = sum(1 for i, f in enumerate(found) if f and i not in planted_set)
    return {
        "n_series": n_series,
        "n_points": n_points,
        "seconds": seconds,
        "series_per_s": n_series / seconds if seconds > 0 else float("inf"),
        "planted": len(planted_set),
        "located": int(located),
        "spurious": int(spurious),
        "import_seconds": imported,
    }


# ---------------------------------------------------------------- the script


def worker(step: str, args: argparse.Namespace) -> None:
    if step == "mlflow":
        out = _mlflow_worker(args.n_metrics, args.n_data_ids, args.db)
    else:
        raise SystemExit(f"unknown worker step {step!r}")
    print(json.dumps(out))


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="porter.verify peers", title_justify="left")
    for col, justify in [
        ("what", "left"),
        ("size", "right"),
        ("seconds", "right"),
        ("rate", "right"),
        ("notes", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    ml = results.get("mlflow")
    if ml and "error" not in ml:
        full = FULL_MEASUREMENTS / ml["measurements_per_s"]
        note = f"MLflow {ml['version']}, SQLite; schema {ml['setup_seconds']:.1f} s, not timed"
        if ml["measurements"] != FULL_MEASUREMENTS:
            note += f"; 1,000,000 at this rate: {full:,.0f} s"
        table.add_row(
            "MLflow log_batch",
            f"{ml['n_metrics']:,} metrics x {ml['n_data_ids']:,} data IDs = {ml['written']:,} written",
            f"{ml['seconds']:.2f}",
            f"{ml['measurements_per_s']:,.0f} /s",
            note,
        )
    elif ml:
        table.add_row("MLflow log_batch", "-", "-", "-", f"[red]{ml['error']}[/red]")
    cp = results.get("changepoints")
    if cp:
        table.add_row(
            "change-points (detect_many)",
            f"{cp['n_series']:,} series x {cp['n_points']:,} points",
            f"{cp['seconds']:.2f}",
            f"{cp['series_per_s']:,.0f} series/s",
            f"target < 10 s; {cp['located']}/{cp['planted']} planted shifts within 1 point, "
            f"{cp['spurious']} spurious; import {cp['import_seconds']:.1f} s, not timed",
        )
    Console(width=max(Console().width, 150)).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-metrics", type=int, default=1000)
    parser.add_argument("--n-data-ids", type=int, default=1000)
    parser.add_argument("--n-series", type=int, default=1000, help="change-point series")
    parser.add_argument("--n-points", type=int, default=1000, help="points per change-point series")
    parser.add_argument("--shifted", type=float, default=0.1, help="fraction of series with a planted shift")
    parser.add_argument(
        "--parts", default="mlflow,changepoints", help="comma-separated: mlflow, changepoints"
    )
    parser.add_argument(
        "--mlflow-python", help="a Python with mlflow (default: the venv at /tmp/porter-bench-mlflow)"
    )
    parser.add_argument("--workdir")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {}
    if "changepoints" in parts:
        print(f"  change-points: {args.n_series:,} x {args.n_points:,} …", file=sys.stderr, flush=True)
        results["changepoints"] = changepoint_timing(args.n_series, args.n_points, shifted=args.shifted)
    if "mlflow" in parts:
        print(f"  MLflow: {args.n_metrics:,} x {args.n_data_ids:,} …", file=sys.stderr, flush=True)
        try:
            results["mlflow"] = mlflow_log_batch(
                args.n_metrics, args.n_data_ids, workdir=args.workdir, python=args.mlflow_python
            )
        except (subprocess.CalledProcessError, OSError) as exc:
            results["mlflow"] = {"error": f"MLflow run failed: {exc}"}
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_table(results)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
