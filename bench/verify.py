"""The metric store's benchmark (issue 16), side by side with MLflow and InfluxDB in one run.

    .venv/bin/python bench/verify.py                      # the issue's sizes: 1,000 metrics x 1,000 data IDs
    .venv/bin/python bench/verify.py --n-metrics 100 --n-data-ids 100 --parts porter   # quick
    .venv/bin/python bench/verify.py --json

What is measured (each a fresh SQLite repository database under --workdir):

- **store + evaluate**: ``MetricStore.record`` of one run's 1,000 x 1,000 measurements, with every
  metric declared with a ``minimum`` and a ``design`` spec (in a different unit from the values,
  so every threshold is converted) and a ``last_n: 3`` baseline — validated, evaluated against both
  levels and the baseline, and committed.  Twice: the first run (no history, so no baseline) and a
  fourth run (three runs of history: every measurement compared with the mean of its data ID's last
  three).  Target: < 10 s.  The count stored is read back, not assumed.
- **trend read**: ``MetricStore.series`` of one metric over 100,000 points (100 runs x 1,000 data
  IDs), median of 20.  Target: < 50 ms.
- **MLflow** (``bench/verify_peers.py``): the same 1,000,000 measurements through ``log_batch``
  on a SQLite backend, in MLflow's own venv.  Target: porter ≥ 10x faster.
- **InfluxDB 1.x** (``bench/verify_influx.py``): the same measurements through the official client's
  ``write_points`` to a throw-away ``influxd`` on loopback (Debian's package).
- **change-points** (``bench/verify_peers.py``): 1,000 series x 1,000 points.  Target: < 10 s.

Machine: report it with the numbers (2 cores here; the rate of one busy core matters).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent


def _declarations(n_metrics: int) -> tuple[Any, Any]:
    from porter.verify import Metric, MetricSet, Specification, SpecificationSet

    metrics = MetricSet(
        Metric(
            name=f"bench.metric{m:04d}",
            unit="mas",
            direction="lower",
            dimensions=("tract", "band"),
            baseline={"kind": "last_n", "n": 3},
        )
        for m in range(n_metrics)
    )
    specs = SpecificationSet(
        Specification(
            name=f"bench.metric{m:04d}.{level}",
            metric=f"bench.metric{m:04d}",
            threshold={"value": value, "unit": "arcsec", "operator": "<="},
            level=level,
        )
        for m in range(n_metrics)
        for level, value in (("minimum", 0.020), ("design", 0.010))
    )
    return metrics, specs


def _batch(n_metrics: int, n_data_ids: int, rng: np.random.Generator) -> Any:
    from porter.verify import Batch

    bands = "grizy"
    data_ids = [{"tract": 9000 + j // len(bands), "band": bands[j % len(bands)]} for j in range(n_data_ids)]
    n = n_metrics * n_data_ids
    return Batch(
        [f"bench.metric{m:04d}" for m in range(n_metrics)],
        np.repeat(np.arange(n_metrics), n_data_ids),
        data_ids,
        np.tile(np.arange(n_data_ids), n_metrics),
        rng.normal(12.0, 1.0, n),
        ["mas"],
        np.zeros(n, dtype=np.int64),
    )


def porter_store(n_metrics: int, n_data_ids: int, workdir: Path) -> dict[str, Any]:
    """Record four runs of n_metrics x n_data_ids; time the first (no history) and the fourth (baselines)."""
    from porter.registry import Database
    from porter.verify import MetricStore, Provenance

    root = Path(tempfile.mkdtemp(prefix="bench-verify-", dir=workdir))
    try:
        db = Database(f"sqlite:///{root}/store.sqlite3")
        metrics, specs = _declarations(n_metrics)
        store = MetricStore(db, metrics, specs)
        rng = np.random.default_rng(0)
        seconds = []
        results = []
        for k in range(4):
            batch = _batch(n_metrics, n_data_ids, rng)
            t0 = time.perf_counter()
            results.append(store.record(batch, Provenance(f"bench/run{k}", 1_700_000_000.0 + 3600 * k)))
            seconds.append(time.perf_counter() - t0)
        with db.reading() as conn:
            stored = int(conn.exec_driver_sql("SELECT count(*) FROM verify_measurement").scalar() or 0)
        db.dispose()
        n = n_metrics * n_data_ids
        return {
            "measurements": n,
            "first_seconds": seconds[0],
            "with_baseline_seconds": seconds[3],
            "rate_with_baseline": n / seconds[3],
            "stored_rows": stored,
            "failed_design_run4": results[3].failed["design"],
            "regressed_run4": results[3].regressed,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def trend_read(n_runs: int, n_data_ids: int, workdir: Path, repeats: int = 20) -> dict[str, Any]:
    """Median time of ``series`` for one metric with n_runs x n_data_ids points."""
    from porter.registry import Database
    from porter.verify import MetricStore, Provenance

    root = Path(tempfile.mkdtemp(prefix="bench-verify-trend-", dir=workdir))
    try:
        db = Database(f"sqlite:///{root}/store.sqlite3")
        metrics, specs = _declarations(1)
        store = MetricStore(db, metrics, specs)
        rng = np.random.default_rng(1)
        for k in range(n_runs):
            store.record(_batch(1, n_data_ids, rng), Provenance(f"bench/run{k:03d}", 1_700_000_000.0 + k))
        times = []
        points = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            points = len(store.series("bench.metric0000"))
            times.append(time.perf_counter() - t0)
        db.dispose()
        return {"points": points, "median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def influx(n_metrics: int, n_data_ids: int) -> dict[str, Any]:
    import verify_influx

    with verify_influx.temporary_influxd() as (url, database):
        seconds = verify_influx.influx_write_seconds(n_metrics, n_data_ids, url, database)
    return {"seconds": seconds, "measurements": n_metrics * n_data_ids}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-metrics", type=int, default=1000)
    parser.add_argument("--n-data-ids", type=int, default=1000)
    parser.add_argument(
        "--trend-runs", type=int, default=100, help="runs of the trend metric (x n-data-ids points)"
    )
    parser.add_argument(
        "--parts",
        default="porter,trend,mlflow,influxdb,changepoints",
        help="comma-separated: porter, trend, mlflow, influxdb, changepoints",
    )
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(BENCH))
    parts = set(args.parts.split(","))
    workdir = Path(args.workdir)
    out: dict[str, Any] = {"n_metrics": args.n_metrics, "n_data_ids": args.n_data_ids}
    if "porter" in parts:
        out["porter"] = porter_store(args.n_metrics, args.n_data_ids, workdir)
    if "trend" in parts:
        out["trend"] = trend_read(args.trend_runs, args.n_data_ids, workdir)
    if "mlflow" in parts:
        import verify_peers

        out["mlflow"] = verify_peers.mlflow_log_batch(args.n_metrics, args.n_data_ids, workdir=workdir)
    if "influxdb" in parts:
        try:
            out["influxdb"] = influx(args.n_metrics, args.n_data_ids)
        except Exception as exc:  # no influxd here: say so in the table, keep the rest
            out["influxdb"] = {"error": f"{type(exc).__name__}: {exc}"}
    if "changepoints" in parts:
        import verify_peers

        out["changepoints"] = verify_peers.changepoint_timing(args.n_metrics, args.n_data_ids)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    _print(out)


def _print(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"metric store: {out['n_metrics']:,} metrics x {out['n_data_ids']:,} data IDs")
    for column in ("what", "seconds", "measurements/s", "vs porter", "notes"):
        table.add_column(column)
    porter = out.get("porter")
    rate = porter["rate_with_baseline"] if porter else None
    if porter:
        table.add_row(
            "porter: store + evaluate, first run",
            f"{porter['first_seconds']:.2f}",
            f"{porter['measurements'] / porter['first_seconds']:,.0f}",
            "",
            "no history: specs only",
        )
        table.add_row(
            "porter: store + evaluate, 4th run",
            f"{porter['with_baseline_seconds']:.2f}",
            f"{rate:,.0f}",
            "1x",
            f"specs + last-3 baseline; {porter['stored_rows']:,} rows stored in all (target < 10 s)",
        )
    for key, label in (("mlflow", "MLflow log_batch (SQLite)"), ("influxdb", "InfluxDB 1.x write_points")):
        peer = out.get(key)
        if not peer:
            continue
        if "error" in peer:
            table.add_row(label, "-", "-", "-", peer["error"])
            continue
        peer_rate = peer["measurements"] / peer["seconds"]
        table.add_row(
            label,
            f"{peer['seconds']:.2f}",
            f"{peer_rate:,.0f}",
            f"{rate / peer_rate:.1f}x faster" if rate else "",
            f"written: {peer.get('written', peer['measurements']):,}",
        )
    trend = out.get("trend")
    if trend:
        table.add_row(
            "porter: trend read of one metric",
            f"{trend['median_ms'] / 1000:.3f}",
            "",
            "",
            f"{trend['points']:,} points, median of 20: {trend['median_ms']:.1f} ms (target < 50 ms)",
        )
    cp = out.get("changepoints")
    if cp:
        table.add_row(
            "change-points",
            f"{cp['seconds']:.2f}",
            "",
            "",
            f"{cp['n_series']:,} series x {cp['n_points']:,} points; {cp['located']}/{cp['planted']} planted "
            f"found, {cp['spurious']} spurious (target < 10 s)",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
