"""Release-check benchmark: Felis conformance + content rules over a large Parquet catalog.

    python bench/release.py                    # 100 million rows (about 11 GB of Parquet)
    python bench/release.py --rows 20000000    # quicker

A generated Object-like catalog (20 columns: id, position, 6 bands of flux and error,
extendedness, flags, tract/patch, counts) in files of 1 million rows, a Felis table
describing it, and the checks a release runs on it: columns, types, not-null,
primary-key uniqueness, units; row count, value range, finite positions, footprint,
per-band coverage.  porter runs them as streaming DuckDB queries (memory limit
1.5 GB, spilling to disk); the same checks written with pandas run on a 10-million-row
slice (pandas must load what it checks), and so do they as a Great Expectations suite
(pandas back end) when ``--ge-python`` names an interpreter that has it.  Each in its own
process; wall time, rows/s and peak RSS are printed.

Completeness: a PostgreSQL repository with a raw for each of 10 million (exposure, detector)
pairs and a calexp for nearly each, and the release check "a calexp for every (visit,
detector) with a raw" (``--visits`` x 189 detectors).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _harness import peak_mb, run_worker

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
        "peak MB": peak_mb(),
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
        "peak MB": peak_mb(),
        "checks": checks,
    }


# --- completeness on PostgreSQL ---------------------------------------------------------------------------

COMPLETENESS_RAW = "bench/raw"
COMPLETENESS_RUN = "bench/calexp"


def build_completeness_repo(root: Path, url: str, namespace: str, n_visits: int) -> dict[str, Any]:
    """A PostgreSQL repository with a raw for every (exposure, detector) and a calexp for nearly every one.

    189 detectors per visit; every 500th visit lost detector 7, every 2,000th visit has no calexp at
    all: the completeness check must find exactly these.
    """
    import _synthetic as syn
    from porter import Butler, Timespan
    from porter.dimensions import DataCoordinate

    t = time.perf_counter()
    vis = syn.visits(n_visits)
    records = syn.records(vis, Timespan)
    for skip in ("visit_detector_region", "skymap", "tract", "patch"):
        del records[skip]
    butler = Butler.create(root, registry=url, namespace=namespace)
    for element, recs in records.items():
        butler.insert_dimension_records(element, recs)
    butler.insert_dimension_records(
        "group", [{"instrument": syn.INSTRUMENT, "name": f"g{v.id}"} for v in vis]
    )
    butler.insert_dimension_records(
        "exposure",
        [
            {
                "instrument": syn.INSTRUMENT,
                "id": r["id"],
                "obs_id": f"E{r['id']}",
                "physical_filter": r["physical_filter"],
                "group": f"g{r['id']}",
                "day_obs": r["day_obs"],
                "timespan": r["timespan"],
            }
            for r in records["visit"]
        ],
    )
    butler.insert_dimension_records(
        "visit_definition", [{"instrument": syn.INSTRUMENT, "exposure": v.id, "visit": v.id} for v in vis]
    )
    butler.register_dataset_type("raw", ["instrument", "exposure", "detector"], "ExposureF")
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    butler.collections.register(COMPLETENESS_RAW)
    butler.collections.register(COMPLETENESS_RUN)
    raw_dims = butler.registry.universe.conform(["instrument", "exposure", "detector"])
    calexp_dims = butler.registry.universe.conform(["instrument", "visit", "detector"])
    detectors = [d for d, _, _ in syn.detector_offsets()]

    def order(group: Any, **values: int) -> tuple:
        return tuple(syn.INSTRUMENT if k == "instrument" else values[k] for k in group.required)

    missing = 0
    step = 250  # visits per insert: about 47,000 datasets
    for start in range(0, len(vis), step):
        chunk = vis[start : start + step]
        raws = [
            DataCoordinate(raw_dims, order(raw_dims, exposure=v.id, detector=d), False)
            for v in chunk
            for d in detectors
        ]
        butler.registry.insert_datasets("raw", raws, COMPLETENESS_RAW)
        calexps = [
            DataCoordinate(calexp_dims, order(calexp_dims, visit=v.id, detector=d), False)
            for i, v in enumerate(chunk, start)
            if i % 2000 != 1999
            for d in detectors
            if not (i % 500 == 499 and d == 7)
        ]
        missing += len(raws) - len(calexps)
        butler.registry.insert_datasets("calexp", calexps, COMPLETENESS_RUN)
    butler.close()
    _analyze(url, namespace)  # what autovacuum does within a minute of a bulk load
    return {"seconds": time.perf_counter() - t, "expected": n_visits * len(detectors), "missing": missing}


def run_completeness(root: Path) -> dict[str, Any]:
    """The release check of the rubin template's ``calexps`` item: a calexp for every (visit, detector) with a raw."""
    from porter import Butler
    from porter.release._checks import completeness
    from porter.release._plan import Item

    butler = Butler(root)
    item = Item(
        name="calexps",
        kind="datasets",
        dataset_types=["calexp"],
        collections=[COMPLETENESS_RUN],
        expected={"dimensions": ["visit", "detector"], "datasets": "raw", "collections": [COMPLETENESS_RAW]},
        group_by="visit",
    )
    t = time.perf_counter()
    (result,) = completeness(butler, item, root / "missing")
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "value": result.value,
        "message": result.message,
        "peak MB": peak_mb(),
        "method": butler.registry.coverage(
            "calexp",
            COMPLETENESS_RUN,
            dimensions=["visit", "detector"],
            datasets="raw",
            expected_collections=[COMPLETENESS_RAW],
        ).method,
    }


def run_great_expectations(root: Path, rows: int) -> dict[str, Any]:
    """The same checks as a Great Expectations suite over the first ``rows`` rows (pandas back end).

    Runs in the interpreter given by ``--ge-python`` (a separate environment: Great Expectations pins
    its own versions of much of the scientific stack).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted(root.glob("*.parquet"))[: max(1, rows // ROWS_PER_FILE)]
    t = time.perf_counter()
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    loaded = time.perf_counter() - t
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("bench")
        .add_dataframe_asset("catalog")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": df})
    )
    types = {"objectId": "int64", "coord_ra": "float64", "coord_dec": "float64", "nVisits": "int16"}
    suite = gx.ExpectationSuite("release")
    for e in [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(df.columns), exact_match=False),
        *[gxe.ExpectColumnValuesToBeOfType(column=c, type_=t) for c, t in types.items()],
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c)  # pandas counts NaN as null: also "finite"
            for c in ("objectId", "coord_ra", "coord_dec", "tract", "patch")
        ],
        gxe.ExpectColumnValuesToBeUnique(column="objectId"),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="nVisits", min_value=1, max_value=1000),
        gxe.ExpectColumnValuesToBeBetween(
            column="coord_ra", min_value=FOOTPRINT["ra_min"], max_value=FOOTPRINT["ra_max"]
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="coord_dec", min_value=FOOTPRINT["dec_min"], max_value=FOOTPRINT["dec_max"]
        ),
        *[gxe.ExpectColumnValuesToNotBeNull(column=f"{b}_psfFlux", mostly=0.9) for b in BANDS],
    ]:
        suite.add_expectation(e)
    result = batch.validate(suite)
    seconds = time.perf_counter() - t
    return {
        "rows": len(df),
        "seconds": seconds,
        "load seconds": loaded,
        "rows/s": len(df) / seconds,
        "peak MB": peak_mb(),
        "expectations": len(result.results),
        "success": bool(result.success),
        "version": gx.__version__,
    }


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
    elif step == "great-expectations":
        out = run_great_expectations(work / "catalog", args.pandas_rows)
    elif step == "completeness-build":
        out = build_completeness_repo(work / "pg-repo", args.pg_url, work.name.replace("-", "_"), args.visits)
    elif step == "completeness":
        out = run_completeness(work / "pg-repo")
    else:
        out = run_pandas(work / "catalog", args.pandas_rows)
    print(json.dumps(out, default=str))


def spawn(step: str, argv: list[str], python: str = sys.executable) -> dict[str, Any]:
    print(f"  {step} …", file=sys.stderr, flush=True)
    return run_worker(__file__, step, argv, python=python)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--pandas-rows", type=int, default=10_000_000)
    parser.add_argument("--visits", type=int, default=53_000, help="x 189 detectors expected data IDs")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--parts", default="catalog,completeness", help="comma-separated: catalog, completeness"
    )
    parser.add_argument(
        "--ge-python",
        help="a Python with great_expectations installed (a separate venv: python -m venv ge && "
        "ge/bin/pip install great_expectations); without it the Great Expectations run is left out",
    )
    parser.add_argument("--workdir")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    parts = set(args.parts.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-release-", dir=args.workdir))
    argv = [
        "--rows", str(args.rows), "--pandas-rows", str(args.pandas_rows), "--visits", str(args.visits),
        "--pg-url", args.pg_url, "--workdir", str(work),
    ]  # fmt: skip
    out: dict[str, Any] = {}
    try:
        if "catalog" in parts:
            out["generate"] = spawn("generate", argv)
            out["porter"] = spawn("porter", argv)
            out["pandas"] = spawn("pandas", argv)
            if args.ge_python:
                out["great expectations"] = spawn("great-expectations", argv, args.ge_python)
        if "completeness" in parts:
            out["completeness build"] = spawn("completeness-build", argv)
            out["completeness"] = spawn("completeness", argv)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if "completeness" in parts:
            _drop_schema(args.pg_url, work.name.replace("-", "_"))
    print(json.dumps(out, indent=1, default=str))
    if "catalog" in parts:
        gen, porter, pandas = out["generate"], out["porter"], out["pandas"]
        print(
            f"\ncatalog: {args.rows:,} rows, {gen['GB']:.1f} GB of Parquet (generated in {gen['seconds']:.0f} s)"
        )
        print(
            f"porter (DuckDB, streaming): {porter['seconds']:.1f} s, {porter['rows/s']:,.0f} rows/s, "
            f"peak {porter['peak MB']:.0f} MB; checks: {sorted(set(porter['checks'].values()))}"
        )
        print(
            f"pandas ({pandas['rows']:,} rows): {pandas['seconds']:.1f} s, {pandas['rows/s']:,.0f} rows/s, "
            f"peak {pandas['peak MB']:.0f} MB"
        )
        print(f"rows/s ratio porter/pandas: {porter['rows/s'] / pandas['rows/s']:.1f}x")
        ge = out.get("great expectations")
        if ge:
            print(
                f"Great Expectations {ge['version']} ({ge['rows']:,} rows, {ge['expectations']} expectations, "
                f"pandas): {ge['seconds']:.1f} s, {ge['rows/s']:,.0f} rows/s, peak {ge['peak MB']:.0f} MB"
            )
            print(f"rows/s ratio porter/Great Expectations: {porter['rows/s'] / ge['rows/s']:.1f}x")
        else:
            print("Great Expectations: not run (pass --ge-python)")
    if "completeness" in parts:
        build, done = out["completeness build"], out["completeness"]
        print(
            f"\ncompleteness on PostgreSQL: {build['expected']:,} expected (visit, detector) data IDs, "
            f"{build['missing']:,} without a calexp (repository built in {build['seconds']:.0f} s)"
        )
        print(
            f"check: {done['seconds']:.1f} s, peak {done['peak MB']:.0f} MB, compared by: "
            f"{done['method']}; {done['value']}, {done['message']}"
        )


def _analyze(url: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        tables = conn.execute(
            sqlalchemy.text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
        ).scalars()
        for table in list(tables):
            conn.execute(sqlalchemy.text(f'ANALYZE "{schema}"."{table}"'))
    engine.dispose()


def _drop_schema(url: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


if __name__ == "__main__":
    main()
