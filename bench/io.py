"""Butler I/O benchmark: porter and lsst-daf-butler side by side, local files (and S3 on an emulator).

    python bench/io.py                       # the issue's sizes: 10,000 dicts, 10,000 x 1 MB tables, 100k ingest
    python bench/io.py --dicts 2000 --tables 1000 --ingest 20000   # a quicker run
    python bench/io.py --only porter         # porter's figures alone

Each implementation runs in its own subprocess on the same synthetic
dimension records (bench/_synthetic.py).  Steps:

  1. put / get N small dicts (StructuredDataDict), one dataset per (visit, detector)
  2. put / get M 1 MB Arrow tables (131,072 float64 rows, Parquet); the gets twice: first from
     disk (both butlers run at the disk's read speed), then again from the page cache
  3. a 100 MB float32 image: put and get vs a raw disk copy of the same bytes (shutil.copyfile),
     a raw write and a raw read (each two ways: numpy's one call and 1 MB system calls), and a
     100x100 cut-out read vs the full read; interleaved rounds, medians  (porter only: daf's
     image storage classes need lsst.afw)
  4. ingest K existing small files with transfer="direct" and "symlink" (porter; and, for
     reference, a bare os.symlink loop over the same files)
  5. S3 (moto server on 127.0.0.1, its own process): put and get 1,000 x 1 MB tables from 8 threads vs a plain
     boto3 put_object/get_object loop  (porter only)

Ratios are daf seconds / porter seconds (higher is better for porter).
Requires: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

import _synthetic as syn
from _harness import run_worker

SMALL_DICT = {"zeropoint": 27.3, "psf_fwhm": 0.71, "n_sources": 1834, "flags": ["ok"], "band": "r"}
TABLE_ROWS = 131_072  # x 8 bytes = 1 MiB
IMAGE_SIDE = 5_120  # 5120^2 float32 = 100 MiB
IMAGE_ROUNDS = 9
RAW_WRITES = ("raw write 100 MB (ndarray.tofile)", "raw write 100 MB (1 MB writes)")
RAW_READS = ("raw read 100 MB (numpy.fromfile)", "raw read 100 MB (1 MB readinto)")
RAW_COPY = "raw copy 100 MB (shutil.copyfile)"
CHUNK = 1 << 20


def one_mb_table(seed: int) -> pa.Table:
    return pa.table({"flux": np.random.default_rng(seed).normal(size=TABLE_ROWS)})


def timed(results: dict[str, float], name: str, func: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    value = func()
    results[name] = time.perf_counter() - t0
    print(f"  {name:<44} {results[name]:9.3f} s", file=sys.stderr, flush=True)
    return value


def read_each(read: Callable[[Any], Any], items: list[Any]) -> None:
    """Read every item and drop it: a list of 10,000 gotten 1 MB tables holds 10 GB, which pushes the
    files out of the page cache and makes every get a disk read (earlier runs of this script did that)."""
    for item in items:
        read(item)


def put_get_steps(r: dict[str, float], butler: Any, dids: list[Any], args: argparse.Namespace) -> list[Any]:
    """The side-by-side steps: both butlers have put(obj, type, data_id) and get(ref)."""
    refs = timed(
        r, "put small dicts", lambda: [butler.put(SMALL_DICT, "summary", d) for d in dids[: args.dicts]]
    )
    timed(r, "get small dicts", lambda: read_each(butler.get, refs))
    tables = [one_mb_table(i) for i in range(min(args.tables, 16))]
    refs = timed(
        r,
        "put 1 MB tables",
        lambda: [butler.put(tables[i % len(tables)], "table", d) for i, d in enumerate(dids[: args.tables])],
    )
    os.sync()  # the gets should not compete with the puts' writeback
    timed(r, "get 1 MB tables", lambda: read_each(butler.get, refs))
    # Read again: the files are in the page cache (10 GB fits in this machine's 24 GB, as long as the
    # objects read are not all kept: see read_each), so this measures the butler rather than the disk.
    timed(r, "get 1 MB tables again (page cache)", lambda: read_each(butler.get, refs))
    return refs


def visits_for(n: int) -> list[syn.Visit]:
    return syn.visits(max(1, -(-n // 189)))


# --- porter -----------------------------------------------------------------------------------------------


def porter_repo(
    workdir: Path, n_data_ids: int, datastore: str | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    from porter import Butler, Timespan

    vis = visits_for(n_data_ids)
    butler = Butler.create(workdir / "porter-repo", datastore=datastore)
    for element, recs in syn.records(vis, Timespan).items():
        butler.insert_dimension_records(element, recs)
    butler.close()
    return Butler(workdir / "porter-repo", run="bench"), syn.data_ids(vis)[:n_data_ids]


def run_porter(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    from porter import DatasetRef, FileDataset

    r: dict[str, float] = {}
    n = max(args.dicts, args.tables, args.ingest, IMAGE_ROUNDS + 1)
    butler, dids = porter_repo(workdir, n)
    butler.register_dataset_type("summary", ["instrument", "visit", "detector"], "StructuredDataDict")
    butler.register_dataset_type("table", ["instrument", "visit", "detector"], "ArrowTable")
    butler.register_dataset_type("image", ["instrument", "visit", "detector"], "ImageF")
    butler.register_dataset_type("raw", ["instrument", "visit", "detector"], "Bytes")
    table_refs = put_get_steps(r, butler, dids, args)
    # The floor under the cached gets: reading the same files' bytes, nothing decoded.
    paths = [Path(str(butler.get_uri(ref)).removeprefix("file://")) for ref in table_refs]
    timed(r, "bare read of the table files (page cache)", lambda: read_each(Path.read_bytes, paths))

    image_steps(r, butler, dids, workdir)

    if args.ingest:
        raw_type = butler.get_dataset_type("raw")
        staging = workdir / "incoming"
        staging.mkdir()
        paths = [staging / f"raw-{i:06d}.dat" for i in range(args.ingest)]
        for i, p in enumerate(paths):
            p.write_bytes(i.to_bytes(8, "little") * 64)
        for mode in ("direct", "symlink"):
            run = f"ingest/{mode}"
            datasets = [FileDataset(p, DatasetRef(raw_type, d, run)) for p, d in zip(paths, dids)]
            timed(
                r,
                f"ingest {args.ingest} files ({mode})",
                lambda ds=datasets, m=mode: butler.ingest(*ds, transfer=m),
            )
        links = workdir / "bare-links"
        links.mkdir()
        timed(
            r,
            f"bare os.symlink loop ({args.ingest} files)",
            lambda: [os.symlink(p, links / p.name) for p in paths],
        )
    butler.close()
    return r


def image_steps(r: dict[str, float], butler: Any, dids: list[Any], workdir: Path) -> None:
    """A 100 MB image put and got by porter, against the raw operations on the same bytes.

    Single 100 MB operations on this machine vary by 2-5x from one moment to the next (page-cache
    writeback, a shared host), so every operation runs once per round, in a rotated order, after an
    os.sync(); each figure is the median of IMAGE_ROUNDS rounds.  The raw write and read are each
    timed two ways (numpy's single call, and 1 MB system calls) and the report compares porter with
    the faster: neither is always the faster here.
    """
    from porter.images import BBox

    image = np.random.default_rng(1).normal(size=(IMAGE_SIDE, IMAGE_SIDE)).astype(np.float32)
    raw = workdir / "raw-image.bin"
    image.tofile(raw)
    scratch = workdir / "raw-scratch.bin"
    box = BBox(2000, 3000, 100, 100)

    def write_chunks() -> None:
        data = image.reshape(-1).view(np.uint8).data
        with open(scratch, "wb", buffering=0) as f:
            for start in range(0, len(data), CHUNK):
                f.write(data[start : start + CHUNK])

    def read_chunks() -> np.ndarray:
        out = np.empty(image.size, dtype=np.float32)
        data = out.view(np.uint8).data
        with open(raw, "rb", buffering=0) as f:
            for start in range(0, len(data), CHUNK):
                f.readinto(data[start : start + CHUNK])
        return out

    refs: list[Any] = []

    def put() -> None:
        refs.append(butler.put(image, "image", dids[len(refs)]))

    def cutouts() -> None:
        for _ in range(5):
            assert np.array_equal(butler.get(refs[-1], parameters={"bbox": box}), image[3000:3100, 2000:2100])

    ops: list[tuple[str, Callable[[], Any]]] = [
        (RAW_COPY, lambda: shutil.copyfile(raw, scratch)),
        (RAW_WRITES[0], lambda: image.tofile(scratch)),
        (RAW_WRITES[1], write_chunks),
        ("put 100 MB image", put),
        (RAW_READS[0], lambda: np.fromfile(raw, dtype=np.float32)),
        (RAW_READS[1], read_chunks),
        ("get 100 MB image", lambda: butler.get(refs[-1])),
        ("get 100x100 cut-out (x5)", cutouts),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in ops}
    put()  # untimed: something for the gets to read before the first timed put
    for i in range(IMAGE_ROUNDS):
        k = i % len(ops)
        for name, op in ops[k:] + ops[:k]:
            os.sync()
            t0 = time.perf_counter()
            op()
            samples[name].append(time.perf_counter() - t0)
            scratch.unlink(missing_ok=True)
    assert np.array_equal(butler.get(refs[0]), image)
    for name, values in samples.items():
        per = 5 if name.startswith("get 100x100") else 1
        key = name.replace(" (x5)", "")
        r[key] = statistics.median(values) / per
        spread = f"{min(values) / per:.4f}-{max(values) / per:.4f}"
        print(f"  {key:<44} {r[key]:9.4f} s (median of {len(values)}; {spread})", file=sys.stderr, flush=True)
    raw.unlink()


def run_s3(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Porter's S3 put/get from threads vs a plain boto3 loop, on a moto server."""
    import socket

    import boto3

    # The emulator runs in its own process, so that it does not share a GIL with the clients measured.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(
        PORTER_S3_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    s3 = boto3.client("s3", endpoint_url=url)
    s3.create_bucket(Bucket="bench")
    r: dict[str, float] = {}
    n = args.s3
    payload = one_mb_table(0)
    import pyarrow.parquet as pq

    buf = pa.BufferOutputStream()
    pq.write_table(payload, buf)
    body = buf.getvalue().to_pybytes()
    timed(
        r,
        f"boto3 put_object loop ({n} x 1 MB)",
        lambda: [s3.put_object(Bucket="bench", Key=f"plain/{i}", Body=body) for i in range(n)],
    )
    timed(
        r,
        f"boto3 get_object loop ({n} x 1 MB)",
        lambda: [s3.get_object(Bucket="bench", Key=f"plain/{i}")["Body"].read() for i in range(n)],
    )
    butler, dids = porter_repo(workdir / "s3", n, datastore="s3://bench/porter")
    butler.register_dataset_type("table", ["instrument", "visit", "detector"], "ArrowTable")
    with ThreadPoolExecutor(8) as pool:
        refs = timed(
            r,
            f"porter put, 8 threads ({n} x 1 MB)",
            lambda: list(pool.map(lambda d: butler.put(payload, "table", d), dids)),
        )
        timed(r, f"porter get, 8 threads ({n} x 1 MB)", lambda: list(pool.map(butler.get, refs)))
    r["s3 MB"] = n * len(body) / 1e6
    stored = butler.datastore.locations([ref.id for ref in refs])
    r["porter s3 MB"] = sum(loc.size or 0 for loc in stored.values()) / 1e6  # porter's own Parquet files
    butler.close()
    server.terminate()
    server.wait()
    return r


# --- daf_butler -------------------------------------------------------------------------------------------


def run_daf(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    import astropy.time
    from lsst.daf.butler import Butler, DatasetType, Timespan

    r: dict[str, float] = {}
    n = max(args.dicts, args.tables)
    vis = visits_for(n)
    root = workdir / "daf-repo"
    Butler.makeRepo(str(root))
    butler = Butler(str(root), writeable=True, run="bench")
    records = syn.records(
        vis, lambda b, e: Timespan(astropy.time.Time(b, scale="tai"), astropy.time.Time(e, scale="tai"))
    )
    for element, recs in records.items():
        butler.registry.insertDimensionData(element, *recs)
    dids = syn.data_ids(vis)[:n]
    u = butler.dimensions
    for name, sc in (("summary", "StructuredDataDict"), ("table", "ArrowTable")):
        butler.registry.registerDatasetType(
            DatasetType(name, ["instrument", "visit", "detector"], sc, universe=u)
        )
    put_get_steps(r, butler, dids, args)
    return r


# --- driver -----------------------------------------------------------------------------------------------


def worker(impl: str, args: argparse.Namespace) -> None:
    base = Path(args.workdir) if args.workdir else None
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-io-{impl}-", dir=base))
    try:
        if impl == "porter":
            results = run_porter(args, workdir)
        elif impl == "s3":
            results = run_s3(args, workdir)
        else:
            results = run_daf(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


def spawn(impl: str, argv: list[str]) -> dict[str, float]:
    print(f"{impl}:", file=sys.stderr, flush=True)
    return run_worker(__file__, impl, argv)


def report(args: argparse.Namespace, res: dict[str, dict[str, float]]) -> None:
    p, d, s = res.get("porter", {}), res.get("daf", {}), res.get("s3", {})
    print(
        f"\nButler I/O benchmark (local files, SQLite registry; {args.dicts} dicts, {args.tables} x 1 MB tables)"
    )
    header = f"{'step':<44} {'porter s':>9} {'daf s':>9} {'porter/s':>10} {'daf/s':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for step, count in (
        ("put small dicts", args.dicts),
        ("get small dicts", args.dicts),
        ("put 1 MB tables", args.tables),
        ("get 1 MB tables", args.tables),
        ("get 1 MB tables again (page cache)", args.tables),
    ):
        ps, ds = p.get(step), d.get(step)

        def rate(t: float | None, count: int = count) -> str:
            return f"{count / t:,.0f}" if t else "-"

        ratio = f"{ds / ps:.1f}x" if ps and ds else "-"
        print(f"{step:<44} {ps or 0:9.3f} {ds or 0:9.3f} {rate(ps):>10} {rate(ds):>9} {ratio:>7}")
    if "put 100 MB image" in p:
        mb = IMAGE_SIDE * IMAGE_SIDE * 4 / 2**20
        copy = p[RAW_COPY]
        write_name = min(RAW_WRITES, key=lambda k: p[k])
        read_name = min(RAW_READS, key=lambda k: p[k])
        put, get = p["put 100 MB image"], p["get 100 MB image"]
        print(f"\n100 MB image ({mb:.0f} MiB float32; medians of {IMAGE_ROUNDS} rounds):")
        print(
            f"  put  {put:.3f} s = {copy / put:.0%} of the raw disk copy speed ({copy:.3f} s, shutil.copyfile); "
            f"{p[write_name] / put:.0%} of the faster raw write ({p[write_name]:.3f} s, {write_name[18:-1]})"
        )
        print(
            f"  get  {get:.3f} s = {copy / get:.0%} of the raw disk copy speed; "
            f"{p[read_name] / get:.0%} of the faster raw read ({p[read_name]:.3f} s, {read_name[17:-1]})"
        )
        cut = p["get 100x100 cut-out"]
        print(f"  100x100 cut-out {cut * 1e3:.2f} ms: {get / cut:.0f}x faster than the full read")
    for k, v in p.items():
        if k.startswith(("ingest", "bare")):
            print(f"{k:<44} {v:9.3f} s")
    if s:
        print(
            f"\nS3 emulator, {args.s3} x 1 MB tables (boto3: {s['s3 MB']:.0f} MB; porter: {s['porter s3 MB']:.0f} MB):"
        )
        for k, v in s.items():
            if not k.endswith("MB"):
                mb = s["porter s3 MB"] if k.startswith("porter") else s["s3 MB"]
                print(f"  {k:<50} {v:8.3f} s  {mb / v:8.1f} MB/s  {args.s3 / v:7.1f} objects/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dicts", type=int, default=10_000)
    parser.add_argument("--tables", type=int, default=10_000)
    parser.add_argument("--ingest", type=int, default=100_000)
    parser.add_argument("--s3", type=int, default=1_000, help="1 MB objects for the S3 step (0: skip)")
    parser.add_argument("--only", choices=["porter", "daf"])
    parser.add_argument("--workdir", help="directory for the repositories (default: the system temp dir)")
    parser.add_argument("--worker", choices=["porter", "daf", "s3"])
    parser.add_argument("--out", type=Path, help="write all figures as JSON here")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    argv = [
        "--dicts",
        str(args.dicts),
        "--tables",
        str(args.tables),
        "--ingest",
        str(args.ingest),
        "--s3",
        str(args.s3),
    ] + (["--workdir", args.workdir] if args.workdir else [])
    impls = [args.only] if args.only else ["porter", "daf"]
    res = {impl: spawn(impl, argv) for impl in impls}
    if args.s3 and args.only != "daf":
        res["s3"] = spawn("s3", argv)
    report(args, res)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
