"""Release-check benchmark: Felis conformance + content rules over a large Parquet catalog.

    python bench/release.py                    # 100 million rows (about 11 GB of Parquet)
    python bench/release.py --rows 20000000    # quicker

A generated Object-like catalog (20 columns: id, position, 6 bands of flux and error,
extendedness, flags, tract/patch, counts) in files of 1 million rows, a Felis table
describing it, and the checks a release runs on it: columns, types, not-null,
primary-key uniqueness, units; row count, value range, finite positions, footprint,
per-band coverage.  porter runs them as streaming DuckDB queries (memory limit
1.5 GB, spilling to disk); the same checks written with pandas run on a 10-million-row
slice (pandas must load what it checks).  Each in its own process; wall time, rows/s
and peak RSS are printed.  (Great Expectations: not yet measured, see the README.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BANDS = "ugrizy"
FOOTPRINT = {"ra_min": 50.0, "ra_max": 70.0, "dec_min": -45.0, "dec_max": -25.0}
ROWS_PER_FILE = 1_000_000


def felis_yaml() -> str:
    cols = [
        ("objectId", "long", False, "meta.id;src", None),
        ("coord_ra", "double", False, "pos.eq.ra;meta.main", "deg"),
        ("coord_dec", "double", False, "pos.eq.dec;meta.main", "deg"),
        ("tract", "int", False, "meta.id", None),
        ("patch", "int", False, "meta.id", None),
        ("refExtendedness", "float", True, "src.morph", None),
        ("detect_isPrimary", "boolean", True, "meta.code", None),
        ("nVisits", "short", True, "meta.number", None),
    ]
    for b in BANDS:
        cols += [
            (f"{b}_psfFlux", "double", True, "phot.flux", "nJy"),
            (f"{b}_psfFluxErr", "float", True, "stat.error;phot.flux", "nJy"),
        ]
    lines = [
        "name: bench",
        "description: benchmark schema",
        "tables:",
        "- name: BenchObject",
        "  description: Object-like table",
        "  primaryKey: '#BenchObject.objectId'",
        "  columns:",
    ]
    for name, dt, nullable, ucd, unit in cols:
        lines += [
            f"  - name: {name}",
            f"    description: {name}",
            f"    datatype: {dt}",
            f"    nullable: {str(nullable).lower()}",
            f"    ivoa:ucd: {ucd}",
        ] + ([f"    ivoa:unit: {unit}"] if unit else [])
    return "\n".join(lines) + "\n"


def generate(root: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for start in range(0, rows, ROWS_PER_FILE):
        n = min(ROWS_PER_FILE, rows - start)
        cols: dict[str, Any] = {
            "objectId": np.arange(start, start + n, dtype=np.int64),
            "coord_ra": rng.uniform(FOOTPRINT["ra_min"], FOOTPRINT["ra_max"], n),
            "coord_dec": rng.uniform(FOOTPRINT["dec_min"], FOOTPRINT["dec_max"], n),
            "tract": rng.integers(0, 200, n, dtype=np.int32),
            "patch": rng.integers(0, 100, n, dtype=np.int32),
            "refExtendedness": (rng.random(n) < 0.6).astype(np.float32),
            "detect_isPrimary": rng.random(n) < 0.9,
            "nVisits": rng.integers(1, 300, n, dtype=np.int16),
        }
        for b in BANDS:
            flux = rng.lognormal(7, 1.5, n)
            flux[rng.random(n) < 0.05] = np.nan  # not every object is measured in every band
            cols[f"{b}_psfFlux"] = flux
            cols[f"{b}_psfFluxErr"] = (np.abs(flux) * 0.05 + 10).astype(np.float32)
        pq.write_table(
            pa.table(cols), root / f"part-{start // ROWS_PER_FILE:05d}.parquet", row_group_size=ROWS_PER_FILE
        )


RULES = [
    {"rule": "row_count", "min": 1},
    {"rule": "range", "column": "nVisits", "min": 1, "max": 1000},
    {"rule": "finite", "columns": ["coord_ra", "coord_dec"]},
    {"rule": "footprint", "ra": "coord_ra", "dec": "coord_dec", **FOOTPRINT},
    {"rule": "band_coverage", "bands": list(BANDS), "column": "{band}_psfFlux", "min_fraction": 0.9},
]


def run_porter(root: Path, schema: Path, tmp: Path) -> dict[str, Any]:
    from porter.schema import CatalogSource, check_rules, conformance, load_schema, table_of

    source = CatalogSource(str(root))
    source.con.execute(
        f"SET memory_limit = '1.5GB'; SET temp_directory = '{tmp}'; SET preserve_insertion_order = false"
    )
    table = table_of(load_schema(str(schema)), "BenchObject")
    t = time.perf_counter()
    results = conformance("bench", source, table) + check_rules("bench", source, RULES)
    seconds = time.perf_counter() - t
    (rows,) = source.one(f"SELECT count(*) FROM {source.sql}")
    return {
        "rows": rows,
        "seconds": seconds,
        "rows/s": rows / seconds,
        "peak MB": _peak(),
        "checks": {r.check: r.status for r in results},
        "per check s": {r.check: round(r.seconds, 2) for r in results},
    }


def run_pandas(root: Path, rows: int) -> dict[str, Any]:
    """The same checks in pandas, on the first ``rows`` rows (it has to load them)."""
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted(root.glob("*.parquet"))[: max(1, rows // ROWS_PER_FILE)]
    t = time.perf_counter()
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    expected = {
        "objectId": "int64",
        "coord_ra": "float64",
        "coord_dec": "float64",
        "tract": "int32",
        "patch": "int32",
        "refExtendedness": "float32",
        "detect_isPrimary": "bool",
        "nVisits": "int16",
    }
    for b in BANDS:
        expected |= {f"{b}_psfFlux": "float64", f"{b}_psfFluxErr": "float32"}
    checks = {
        "columns": set(expected) <= set(df.columns),
        "types": all(str(df[c].dtype) == d for c, d in expected.items()),
        "not-null": not df[["objectId", "coord_ra", "coord_dec", "tract", "patch"]].isna().any().any(),
        "primary key": not df["objectId"].duplicated().any(),
        "row_count": len(df) >= 1,
        "range nVisits": bool(df["nVisits"].between(1, 1000).all()),
        "finite": bool(np.isfinite(df[["coord_ra", "coord_dec"]].to_numpy()).all()),
        "footprint": bool(
            (
                df["coord_ra"].between(FOOTPRINT["ra_min"], FOOTPRINT["ra_max"])
                & df["coord_dec"].between(FOOTPRINT["dec_min"], FOOTPRINT["dec_max"])
            ).all()
        ),
        "band_coverage": all(df[f"{b}_psfFlux"].notna().mean() >= 0.9 for b in BANDS),
    }
    seconds = time.perf_counter() - t
    return {
        "rows": len(df),
        "seconds": seconds,
        "rows/s": len(df) / seconds,
        "peak MB": _peak(),
        "checks": checks,
    }


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(step: str, args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    if step == "generate":
        t = time.perf_counter()
        generate(work / "catalog", args.rows)
        (work / "bench.yaml").write_text(felis_yaml())
        size = sum(f.stat().st_size for f in (work / "catalog").glob("*.parquet"))
        out: dict[str, Any] = {"seconds": time.perf_counter() - t, "GB": size / 1e9}
    elif step == "porter":
        out = run_porter(work / "catalog", work / "bench.yaml", work / "spill")
    else:
        out = run_pandas(work / "catalog", args.pandas_rows)
    print(json.dumps(out, default=str))


def spawn(step: str, argv: list[str]) -> dict[str, Any]:
    print(f"  {step} …", file=sys.stderr, flush=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, __file__, "--worker", step, *argv],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--pandas-rows", type=int, default=10_000_000)
    parser.add_argument("--workdir")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-release-", dir=args.workdir))
    argv = ["--rows", str(args.rows), "--pandas-rows", str(args.pandas_rows), "--workdir", str(work)]
    try:
        gen = spawn("generate", argv)
        porter = spawn("porter", argv)
        pandas = spawn("pandas", argv)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"generate": gen, "porter": porter, "pandas": pandas}, indent=1, default=str))
    print(
        f"\ncatalog: {args.rows:,} rows, {gen['GB']:.1f} GB of Parquet (generated in {gen['seconds']:.0f} s)"
    )
    print(
        f"porter (DuckDB, streaming): {porter['seconds']:.1f} s, {porter['rows/s']:,.0f} rows/s, peak {porter['peak MB']:.0f} MB;"
        f" checks: {sorted(set(porter['checks'].values()))}"
    )
    print(
        f"pandas ({pandas['rows']:,} rows): {pandas['seconds']:.1f} s, {pandas['rows/s']:,.0f} rows/s, peak {pandas['peak MB']:.0f} MB"
    )
    print(f"rows/s ratio porter/pandas: {porter['rows/s'] / pandas['rows/s']:.1f}x")


if __name__ == "__main__":
    main()
