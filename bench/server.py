"""Server benchmark (issue 15, "Performance"): ``porter serve`` and Rubin's butler server side by side.

    python bench/server.py                      # build both repositories, serve both, compare (a few minutes)
    python bench/server.py --keep /tmp/srvbench # keep the repositories there, and reuse them next time
    python bench/server.py --no-peer            # porter only
    python bench/server.py --load               # 32 clients for 30 s against porter serve --workers 2
    python bench/server.py --rows 1000000       # a 1,000,000-row query through pagination: rows/s, server RSS

Both repositories hold the same content: the real HSC RC2 dimension records
(../shared/data/butler-exports/hsc-rc2-subset.yaml, 160 visits, 1,132
visit-detector pairs), a dataset type ``src`` (ArrowTable; instrument, visit,
detector), ``--stream-runs`` RUN collections of one ``src`` per visit-detector
pair registered without files (36 runs: 40,752 datasets, chained as
``bench/stream``), and ``--files`` small stored tables (100 rows each) in the
run ``bench/files``.  Every dataset has the same UUID in both repositories, so
answers are compared as sets of (dataset type, data ID, run, UUID).

Both datastores are S3 on one ``moto_server`` on 127.0.0.1 (Rubin's server
hands out presigned S3 URLs and has no file back end; porter's datastore can be
``--porter-datastore file`` instead, whose bytes porter's server serves itself
behind HMAC-signed URLs).  Both registries are SQLite.  Both servers run one
uvicorn worker on loopback; each side's client runs in its own process (porter's
in this one, Rubin's under its own Python, bench/server_peer.py), one after the
other, never at once, in ``--rounds`` rounds that alternate which side goes first
(a shared machine's load then falls on both alike).  In each round every
operation runs once to warm up, then its share of ``--repeat`` times (or until
its share of ``--budget`` seconds passes); the median of the pooled samples counts.

Rubin's side needs lsst-daf-butler[remote,server], which needs Python >= 3.13:

    ~/.pyenv/versions/3.13.0/bin/python -m venv /tmp/rubin-venv
    /tmp/rubin-venv/bin/pip install 'lsst-daf-butler[remote,server]' uvicorn

(``--peer-python`` names that interpreter; if it is missing or fails, the run
goes on without Rubin's side and says why).  Rubin's server is started as
``uvicorn lsst.daf.butler.remote_butler.server:create_app --factory`` with
``DAF_BUTLER_SERVER_REPOSITORIES`` naming the repository, and
``DAF_BUTLER_SERVER_GAFAELFAWR_URL=DISABLED`` (no authentication service).

Issue 15 measured Rubin's server here at 75 ms for a 100-ref query_datasets,
41 ms per find_dataset, 40 ms per small get and 7-11 s for 40,000 streamed
refs; porter's targets are >= 5x faster on each, with identical answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from server_peer import table_digest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent
EXPORT = ROOT.parent / "shared" / "data" / "butler-exports" / "hsc-rc2-subset.yaml"
DEFAULT_PEER_PYTHON = Path("/tmp/rubin-venv/bin/python")
INSTRUMENT = "HSC"
DATASET_TYPE = "src"
FILES_RUN = "bench/files"
CHAIN = "bench/stream"
DATA_ID_WHERE = "band = 'r'"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
OPS = [
    ("query_datasets", "query_datasets, 100 refs"),
    ("find_dataset", "find_dataset"),
    ("get", "get(ref), one small table"),
    ("get_data_id", "get(type, data ID), one small table"),
    ("query_dimension_records", "query_dimension_records visit (160)"),
    ("query_data_ids", f"query_data_ids visit,detector ({DATA_ID_WHERE})"),
    ("stream", "query_datasets streamed, all refs of the chain"),
]
ISSUE_RUBIN_MS = {"query_datasets": 75.0, "find_dataset": 41.0, "get": 40.0, "stream": 9000.0}
"""Rubin's figures as issue 15 measured them on this machine kind (the stream: 7-11 s, its middle here).

Rubin's server measured in the same run is the comparison that counts; these show how far that run's
conditions (machine load) are from the issue's."""
TARGETED = {"query_datasets", "find_dataset", "get", "stream"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- processes --------------------------------------------------------------------------------------------


class Service:
    """A subprocess serving HTTP on loopback, ended (its whole process group) when the benchmark ends."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code < 500:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:.0f} s: {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


@contextlib.contextmanager
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            service.stop()


def start_moto(workdir: Path, started: list[Service]) -> str:
    port = free_port()
    moto = Service(
        "moto_server",
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        {**os.environ, **S3_ENV},
        workdir / "moto.log",
    )
    started.append(moto)
    endpoint = f"http://127.0.0.1:{port}"
    moto.wait_http(endpoint + "/moto-api/")
    return endpoint


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    )


def s3_snapshot(endpoint: str, bucket: str, into: Path) -> int:
    """Copy a bucket's objects to disk (moto keeps them in memory only): ``--keep`` restores them next run."""
    client = s3_client(endpoint)
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            path = into / bucket / item["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            n += 1
    return n


def s3_restore(endpoint: str, bucket: str, source: Path) -> int:
    client = s3_client(endpoint)
    with contextlib.suppress(Exception):
        client.create_bucket(Bucket=bucket)
    n = 0
    base = source / bucket
    if base.exists():
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            client.put_object(Bucket=bucket, Key=str(path.relative_to(base)), Body=path.read_bytes())
            n += 1
    return n


def porter_butler(*args: Any, **kwargs: Any) -> Any:
    """porter's ``Butler(...)``: a DirectButler for a path, a RemoteButler for a URL (typed loosely here)."""
    from porter import Butler

    factory: Any = Butler
    return factory(*args, **kwargs)


def porter_create(root: Path, **kwargs: Any) -> Any:
    """porter's ``Butler.create``: a new repository's DirectButler."""
    from porter import Butler

    factory: Any = Butler
    return factory.create(root, **kwargs)


# --- repositories -----------------------------------------------------------------------------------------


def make_plan(pairs: list[tuple[int, int]], args: argparse.Namespace, s3: str) -> dict[str, Any]:
    """Which datasets both repositories hold (with their UUIDs) and what each side measures."""
    rng = uuid.UUID(int=0x5E4E4)  # a fixed namespace: the same plan, run after run
    stream_runs = [f"bench/stream/{k:03d}" for k in range(args.stream_runs)]
    registry_only = [
        [str(uuid.uuid5(rng, f"{run}/{v}/{d}")), run, v, d] for run in stream_runs for v, d in pairs
    ]
    step = max(1, len(pairs) // args.files)
    chosen = pairs[::step][: args.files]
    return {
        "export": str(EXPORT),
        "instrument": INSTRUMENT,
        "dataset_type": DATASET_TYPE,
        "runs": [*stream_runs, FILES_RUN],
        "stream_runs": stream_runs,
        "chain": CHAIN,
        "files_run": FILES_RUN,
        "registry_only": registry_only,
        "files": [[str(uuid.uuid5(rng, f"{FILES_RUN}/{v}/{d}")), FILES_RUN, v, d] for v, d in chosen],
        "data_id_where": DATA_ID_WHERE,
        "s3_root_rubin": f"s3://{s3}/rubin",
        "repeat": args.repeat,
        "stream_repeat": args.stream_repeat,
        "budget_s": args.budget,
        "ops": [op for op, _ in OPS],
    }


def hsc_pairs(butler: Any) -> list[tuple[int, int]]:
    """Every (visit, detector) of the export's visit_detector_region records, sorted."""
    return sorted(
        (int(r.visit), int(r.detector))
        for r in butler.query_dimension_records("visit_detector_region", instrument=INSTRUMENT)
    )


def build_porter(
    root: Path, args: argparse.Namespace, s3_bucket: str, plan: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """porter's repository, and the plan (made from its records unless given: Rubin's gets the same datasets)."""
    import pyarrow  # noqa: F401  (the tables' library, loaded before timing)

    from porter.core import DatasetRef
    from server_peer import small_table

    t0 = time.perf_counter()
    # A fresh prefix per build: a rebuilt repository never meets an older one's objects (--keep restores them).
    datastore = f"s3://{s3_bucket}/porter-{uuid.uuid4().hex[:8]}" if args.porter_datastore == "s3" else None
    butler = porter_create(root, datastore=datastore)
    butler.import_(EXPORT)
    t_import = time.perf_counter() - t0
    if plan is None:
        plan = make_plan(hsc_pairs(butler), args, s3_bucket)
    butler.register_dataset_type(DATASET_TYPE, ["instrument", "visit", "detector"], "ArrowTable")
    for run in plan["runs"]:
        butler.collections.register(run)
    butler.collections.register(CHAIN, "CHAINED")
    butler.collections.redefine_chain(CHAIN, plan["stream_runs"])
    t1 = time.perf_counter()
    by_run: dict[str, list[list[Any]]] = {}
    for row in plan["registry_only"]:
        by_run.setdefault(row[1], []).append(row)
    for run, rows in by_run.items():
        butler.registry.insert_datasets(
            DATASET_TYPE,
            [{"instrument": INSTRUMENT, "visit": v, "detector": d} for _, _, v, d in rows],
            run,
            ids=[uuid.UUID(i) for i, _, _, _ in rows],
        )
    t_refs = time.perf_counter() - t1
    t2 = time.perf_counter()
    dataset_type = butler.get_dataset_type(DATASET_TYPE)
    for k, (ident, run, v, d) in enumerate(plan["files"]):
        ref = DatasetRef(
            dataset_type, {"instrument": INSTRUMENT, "visit": v, "detector": d}, run, uuid.UUID(ident)
        )
        butler.put(small_table(k), ref)
    t_puts = time.perf_counter() - t2
    stats = {
        "import_s": t_import,
        "registry_refs": len(plan["registry_only"]),
        "registry_refs_s": t_refs,
        "files": len(plan["files"]),
        "puts_s": t_puts,
        "total_s": time.perf_counter() - t0,
    }
    return plan, stats


def porter_tokens(root: Path, n: int) -> list[str]:
    """Read tokens of ``n`` users (bench00, bench01, ...), all in one group that may read everything.

    Kept in ``root``/bench-tokens.json (tokens are shown once); users are added when more are asked for.
    """
    from porter.server import Accounts

    path = root / "bench-tokens.json"
    tokens: list[str] = json.loads(path.read_text()) if path.exists() else []
    if len(tokens) >= n:
        return tokens[:n]
    accounts = Accounts(porter_butler(root).registry.db)
    if not tokens:
        accounts.add_group("bench", by="bench")
        accounts.grant("bench", "read", "*", by="bench")
    for k in range(len(tokens), n):
        user = f"bench{k:02d}"
        accounts.add_user(user, by="bench")
        accounts.add_member("bench", user, by="bench")
        tokens.append(str(accounts.issue_token(user, scopes=["read"], by="bench").secret_text))
    path.write_text(json.dumps(tokens))
    return tokens


def peer_run(
    python: Path, command: str, plan_path: Path, target: str, env: dict[str, str], timeout: float
) -> Any:
    """Run bench/server_peer.py under Rubin's Python; its last stdout line is JSON."""
    proc = subprocess.run(
        [str(python), str(HERE / "server_peer.py"), command, str(plan_path), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    sys.stderr.write(proc.stderr if proc.returncode == 0 else "")
    if proc.returncode != 0:
        raise RuntimeError(f"server_peer.py {command} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer_available(python: Path) -> str | None:
    """Why Rubin's side cannot run, or None."""
    if not python.exists():
        return (
            f"{python} does not exist: make a Python >= 3.13 venv there and pip install "
            "'lsst-daf-butler[remote,server]' uvicorn (see this script's docstring)"
        )
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import lsst.daf.butler.remote_butler.server, uvicorn, lsst.daf.butler as b; print(b.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        return f"{python} cannot import Rubin's server: {probe.stderr.strip()[-500:]}"
    return None


def peer_version(python: Path) -> str:
    probe = subprocess.run(
        [str(python), "-c", "import lsst.daf.butler as b; print(b.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return probe.stdout.strip()


# --- porter's measurements --------------------------------------------------------------------------------


def ref_key(ref: Any) -> list[Any]:
    """(dataset type, data ID's required values, run, UUID) of a porter DatasetRef: server_peer's format."""
    required = ref.data_id.required
    return [ref.dataset_type.name, sorted([k, v] for k, v in dict(required).items()), ref.run, str(ref.id)]


def timed(call: Callable[[], Any], repeat: int, budget: float) -> tuple[list[float], Any]:
    value = call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < repeat and (not samples or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        value = call()
        samples.append(time.perf_counter() - t0)
    return samples, value


def measure_porter(plan: dict[str, Any], url: str, token: str, page_size: int | None) -> dict[str, Any]:
    """The same operations as server_peer.measure, through porter's RemoteButler."""

    t0 = time.perf_counter()
    butler: Any = porter_butler(url, token=token, page_size=page_size)
    open_s = time.perf_counter() - t0
    files, files_run, name = plan["files"], plan["files_run"], plan["dataset_type"]
    counter = {"find": 0, "get": 0, "get_data_id": 0}

    def q100() -> list[Any]:
        return butler.query_datasets(name, collections=files_run)

    by_id = {str(r.id): r for r in q100()}
    ordered = [by_id[f[0]] for f in files if f[0] in by_id]

    def find() -> Any:
        _, _, visit, detector = files[counter["find"] % len(files)]
        counter["find"] += 1
        return butler.find_dataset(
            name, instrument=INSTRUMENT, visit=visit, detector=detector, collections=files_run
        )

    def get() -> Any:
        ref = ordered[counter["get"] % len(ordered)]
        counter["get"] += 1
        return ref, butler.get(ref)

    def get_data_id() -> Any:
        _, _, visit, detector = files[counter["get_data_id"] % len(files)]
        counter["get_data_id"] += 1
        return butler.get(name, instrument=INSTRUMENT, visit=visit, detector=detector, collections=files_run)

    def stream() -> list[Any]:
        return butler.query_datasets(name, collections=plan["chain"], find_first=False)

    def records() -> list[Any]:
        return butler.query_dimension_records("visit", instrument=INSTRUMENT)

    def data_ids() -> list[Any]:
        return butler.query_data_ids(
            ["visit", "detector"], where=plan["data_id_where"], instrument=INSTRUMENT
        )

    calls = {
        "query_datasets": (q100, plan["repeat"]),
        "find_dataset": (find, plan["repeat"]),
        "get": (get, plan["repeat"]),
        "get_data_id": (get_data_id, plan["repeat"]),
        "query_dimension_records": (records, plan["repeat"]),
        "query_data_ids": (data_ids, plan["repeat"]),
        "stream": (stream, plan["stream_repeat"]),
    }
    out: dict[str, Any] = {"open_s": open_s, "ops": {}}
    for op in plan["ops"]:
        call, n = calls[op]
        samples, value = timed(call, n, plan["budget_s"])
        entry: dict[str, Any] = {"samples": samples, "median": statistics.median(samples)}
        if op in ("query_datasets", "stream"):
            entry["answer"] = sorted(ref_key(r) for r in value)
        elif op == "find_dataset":
            entry["answer"] = sorted(
                ref_key(
                    butler.find_dataset(
                        name, instrument=INSTRUMENT, visit=v, detector=d, collections=files_run
                    )
                )
                for _, _, v, d in files
            )
        elif op == "get":
            ref, table = value
            entry["answer"] = [str(ref.id), table_digest(table)]
        elif op == "get_data_id":
            entry["answer"] = [table_digest(value)]
        elif op == "query_dimension_records":
            entry["answer"] = sorted([r.id, r.physical_filter, r.day_obs] for r in value)
        elif op == "query_data_ids":
            entry["answer"] = sorted(sorted([k, v] for k, v in dict(d.required).items()) for d in value)
        out["ops"][op] = entry
        log(f"  porter {op:<24} median {entry['median'] * 1e3:9.1f} ms")
    butler.close()
    return out


def answer_size(entry: dict[str, Any]) -> str:
    answer = entry.get("answer")
    if isinstance(answer, list) and answer and isinstance(answer[0], list):
        return f"{len(answer):,}"
    return "1"


def pool(results: dict[str, Any], side: str, got: dict[str, Any]) -> None:
    """Add one round's samples to ``results[side]``; a round whose answer differs from the first is flagged."""
    into = results.setdefault(side, {"ops": {}, "rounds": 0})
    into["rounds"] += 1
    for op, entry in got["ops"].items():
        have = into["ops"].get(op)
        if have is None:
            into["ops"][op] = {**entry, "unstable": False}
            continue
        have["samples"] += entry["samples"]
        have["median"] = statistics.median(have["samples"])
        if entry["answer"] != have["answer"]:
            have["unstable"] = True


def print_comparison(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    porter, rubin = results["porter"], results.get("rubin")
    table = Table(
        title=f"porter serve vs Rubin's butler server (lsst-daf-butler {results.get('rubin_version', '-')}), "
        f"loopback, 1 worker each, medians over {porter.get('rounds', 1)} alternating rounds",
        title_justify="left",
    )
    for col, justify in [
        ("operation", "left"),
        ("rows", "right"),
        ("porter ms", "right"),
        ("Rubin ms", "right"),
        ("Rubin/porter", "right"),
        ("target 5x", "center"),
        ("same answer", "center"),
        ("Rubin ms (issue 15)", "right"),
        ("vs issue 15", "right"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for op, label in OPS:
        p = porter["ops"].get(op)
        r = rubin["ops"].get(op) if rubin else None
        if p is None:
            continue
        pm = p["median"] * 1e3
        rm = r["median"] * 1e3 if r else None
        ratio = rm / pm if rm is not None and pm > 0 else None
        same = "-" if r is None else ("yes" if p["answer"] == r["answer"] else "[red]NO[/red]")
        if p.get("unstable") or (r is not None and r.get("unstable")):
            same += " [red](changed between rounds)[/red]"
        target = "-" if op not in TARGETED or ratio is None else ("ok" if ratio >= 5 else "[red]missed[/red]")
        issue = f"{ISSUE_RUBIN_MS[op]:.0f}" if op in ISSUE_RUBIN_MS else ""
        vs_issue = f"{ISSUE_RUBIN_MS[op] / pm:.1f}x" if op in ISSUE_RUBIN_MS and pm > 0 else ""
        table.add_row(
            label,
            answer_size(p),
            f"{pm:,.1f}",
            f"{rm:,.1f}" if rm is not None else "-",
            f"{ratio:.1f}x" if ratio is not None else "-",
            target,
            same,
            issue,
            vs_issue,
        )
    Console(width=200).print(table)
    if rubin:
        for op, _ in OPS:
            p, r = porter["ops"].get(op), rubin["ops"].get(op)
            if p and r and p["answer"] != r["answer"]:
                pa, ra = p["answer"], r["answer"]
                if isinstance(pa, list) and pa and isinstance(pa[0], list):
                    ps = {json.dumps(x) for x in pa}
                    rs = {json.dumps(x) for x in ra}
                    print(
                        f"!! {op}: answers differ: {len(ps - rs)} only porter's, {len(rs - ps)} only Rubin's; "
                        f"e.g. porter {sorted(ps - rs)[:2]} Rubin {sorted(rs - ps)[:2]}"
                    )
                else:
                    print(f"!! {op}: answers differ: porter {pa} Rubin {ra}")
    stream = porter["ops"].get("stream")
    if stream:
        n = len(stream["answer"])
        print(f"streamed refs: porter {n / stream['median']:,.0f} refs/s", end="")
        if rubin and rubin["ops"].get("stream"):
            print(f", Rubin {n / rubin['ops']['stream']['median']:,.0f} refs/s", end="")
        print()


# --- the load test ----------------------------------------------------------------------------------------


def load_worker(url: str, tokens: list[str], duration: float, files_run: str, seed: int) -> None:
    """One client process: one client per token (its own user), each alternating a 100-row query_datasets and a small get."""

    results: list[list[Any]] = []
    lock = threading.Lock()
    threads = len(tokens)
    start = threading.Barrier(threads + 1)

    def client(k: int) -> None:
        mine: list[list[Any]] = []
        try:
            butler: Any = porter_butler(url, token=tokens[k], page_size=100, timeout=30.0)
            refs = butler.query_datasets(DATASET_TYPE, collections=files_run)
        except Exception as exc:
            start.wait()
            with lock:
                results.append(["setup", 0.0, f"{type(exc).__name__}: {exc}"])
            return
        start.wait()
        deadline = time.perf_counter() + duration
        i = seed * 1000 + k
        while time.perf_counter() < deadline:
            op = "query_datasets" if i % 2 == 0 else "get"
            t0 = time.perf_counter()
            error = None
            try:
                if op == "query_datasets":
                    got = butler.query_datasets(DATASET_TYPE, collections=files_run)
                    if len(got) != len(refs):
                        error = f"{len(got)} refs instead of {len(refs)}"
                else:
                    butler.get(refs[i % len(refs)])
            except Exception as exc:
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
            mine.append([op, time.perf_counter() - t0, error])
            i += 1
        butler.close()
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    for w in workers:
        w.join(duration + 120)
    print(json.dumps(results))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def run_load(url: str, tokens: list[str], args: argparse.Namespace, server: Service) -> dict[str, Any]:
    import psutil

    procs = max(1, min(args.client_procs, args.clients))
    per = [args.clients // procs + (1 if k < args.clients % procs else 0) for k in range(procs)]
    log(f"load: {args.clients} clients in {procs} processes for {args.duration:.0f} s against {url}")
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--load-worker",
                json.dumps([url, tokens[sum(per[:k]) : sum(per[: k + 1])], args.duration, FILES_RUN, k]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k, n in enumerate(per)
    ]
    server_proc = psutil.Process(server.proc.pid)
    cpu_samples: list[float] = []
    rss_samples: list[float] = []
    t_end = time.monotonic() + args.duration + 5
    tree = [server_proc, *server_proc.children(recursive=True)]
    clients = [psutil.Process(c.pid) for c in children]
    client_cpu: list[float] = []
    for p in tree + clients:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    while time.monotonic() < t_end and any(c.poll() is None for c in children):
        time.sleep(1.0)
        cpu, rss, ccpu = 0.0, 0.0, 0.0
        for p in tree:
            with contextlib.suppress(psutil.Error):
                cpu += p.cpu_percent(None)
                rss += p.memory_info().rss
        for p in clients:
            with contextlib.suppress(psutil.Error):
                ccpu += p.cpu_percent(None)
        cpu_samples.append(cpu)
        rss_samples.append(rss / 1e6)
        client_cpu.append(ccpu)
    rows: list[list[Any]] = []
    for child in children:
        out, err = child.communicate(timeout=args.duration + 180)
        if child.returncode != 0:
            raise RuntimeError(f"a load client failed: {err[-2000:]}")
        rows.extend(json.loads(out.strip().splitlines()[-1]))
    summary: dict[str, Any] = {"clients": args.clients, "duration_s": args.duration, "workers": args.workers}
    for op in ("query_datasets", "get", "setup"):
        mine = [r for r in rows if r[0] == op]
        if not mine:
            continue
        ok = [r[1] for r in mine if r[2] is None]
        errors = [r[2] for r in mine if r[2] is not None]
        summary[op] = {
            "requests": len(mine),
            "per_s": len(ok) / args.duration,
            "p50_ms": percentile(ok, 50) * 1e3,
            "p99_ms": percentile(ok, 99) * 1e3,
            "max_ms": max(ok) * 1e3 if ok else float("nan"),
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:3],
        }
    all_ok = [r[1] for r in rows if r[2] is None and r[0] != "setup"]
    summary["all"] = {
        "per_s": len(all_ok) / args.duration,
        "p50_ms": percentile(all_ok, 50) * 1e3,
        "p99_ms": percentile(all_ok, 99) * 1e3,
        "errors": sum(1 for r in rows if r[2] is not None),
    }
    summary["server_cpu_percent_mean"] = statistics.mean(cpu_samples) if cpu_samples else None
    summary["server_rss_mb_max"] = max(rss_samples) if rss_samples else None
    summary["client_cpu_percent_mean"] = statistics.mean(client_cpu) if client_cpu else None
    return summary


def print_load(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"porter serve --workers {summary['workers']}: {summary['clients']} concurrent clients for "
        f"{summary['duration_s']:.0f} s (target: zero errors, p99 < 250 ms)",
        title_justify="left",
    )
    for col in ("operation", "requests", "per s", "p50 ms", "p99 ms", "max ms", "errors"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    for op, label in [("query_datasets", "query_datasets (100-row page)"), ("get", "get (small table)")]:
        s = summary.get(op)
        if s:
            table.add_row(
                label,
                f"{s['requests']:,}",
                f"{s['per_s']:,.0f}",
                f"{s['p50_ms']:.1f}",
                f"{s['p99_ms']:.1f}",
                f"{s['max_ms']:.1f}",
                str(s["errors"]),
            )
    a = summary["all"]
    table.add_row(
        "both", "", f"{a['per_s']:,.0f}", f"{a['p50_ms']:.1f}", f"{a['p99_ms']:.1f}", "", str(a["errors"])
    )
    Console(width=200).print(table)
    for op in ("query_datasets", "get", "setup"):
        s = summary.get(op)
        if s and s["errors"]:
            print(f"!! {op} errors, e.g.: {s['error_examples']}")
    print(
        f"server (all workers): mean CPU {summary['server_cpu_percent_mean'] or 0:.0f}% "
        f"(200% = both cores), peak RSS {summary['server_rss_mb_max'] or 0:.0f} MB; the client processes "
        f"{summary['client_cpu_percent_mean'] or 0:.0f}% on the same {os.cpu_count()} cores"
    )


# --- the 1,000,000-row query ------------------------------------------------------------------------------


def build_rows_repo(root: Path, rows: int) -> float:
    """A porter repository with ``rows`` datasets in one run (a synthetic camera, 189 detectors)."""

    t0 = time.perf_counter()
    butler = porter_create(root)
    detectors = 189
    n_visits = -(-rows // detectors)
    butler.insert_dimension_records(
        "instrument", [{"name": "Cam", "detector_max": 200, "visit_max": 10**7, "class_name": "bench.Cam"}]
    )
    butler.insert_dimension_records("physical_filter", [{"instrument": "Cam", "name": "r_01", "band": "r"}])
    butler.insert_dimension_records(
        "detector", [{"instrument": "Cam", "id": d, "full_name": f"D{d:03d}"} for d in range(detectors)]
    )
    butler.insert_dimension_records("day_obs", [{"instrument": "Cam", "id": 20250101}])
    butler.insert_dimension_records(
        "visit",
        [
            {"instrument": "Cam", "id": v, "physical_filter": "r_01", "day_obs": 20250101, "name": f"V{v}"}
            for v in range(n_visits)
        ],
    )
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    butler.collections.register("rows")
    data_ids = (
        {"instrument": "Cam", "visit": k // detectors, "detector": k % detectors} for k in range(rows)
    )
    batch: list[dict[str, Any]] = []
    for data_id in data_ids:
        batch.append(data_id)
        if len(batch) == 100_000:
            butler.registry.insert_datasets("calexp", batch, "rows")
            batch = []
    if batch:
        butler.registry.insert_datasets("calexp", batch, "rows")
    return time.perf_counter() - t0


def run_rows(root: Path, url: str, token: str, server: Service, args: argparse.Namespace) -> dict[str, Any]:
    """Page through every row of the run; sample the server's RSS meanwhile."""
    import psutil

    proc = psutil.Process(server.proc.pid)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                samples.append((time.perf_counter() - t0, rss / 1e6))
            stop.wait(0.1)

    page_size = args.page_size or 10_000
    butler: Any = porter_butler(url, token=token, page_size=page_size, timeout=args.timeout)
    rss_before = proc.memory_info().rss / 1e6
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    page_s: list[float] = []
    t0 = time.perf_counter()
    n = 0
    last: Any = None
    if args.rows_stream:
        # The client's own page loop (RemoteButler._pages' requests), timed page by page and counted,
        # never held: porter's query_datasets builds a list of every ref.
        body = {
            "dataset_type": "calexp",
            "collections": ["rows"],
            "find_first": True,
            "defaults": butler._defaults,
            "data_id": {},
            "where": "",
            "bind": {},
            "order_by": [],
            "explain": True,
            "with_dimension_records": False,
            "limit": None,
            "page_size": page_size,
            "cursor": None,
        }
        while time.perf_counter() - t0 < args.timeout:
            tp = time.perf_counter()
            page = butler._call("POST", "/query/datasets", json=body)
            page_s.append(time.perf_counter() - tp)
            n += len(page["rows"])
            last = page["rows"][-1] if page["rows"] else last
            body["cursor"], body["explain"] = page["next_cursor"], False
            if body["cursor"] is None:
                break
    else:
        refs = butler.query_datasets("calexp", collections="rows")
        n = len(refs)
        last = refs[-1] if refs else None
    elapsed = time.perf_counter() - t0
    stop.set()
    sampler.join()
    rss = [s[1] for s in samples]
    # "Flat" memory: the RSS in the last half of the query is no higher than in its first quarter plus a margin.
    quarter = rss[: max(1, len(rss) // 4)]
    second_half = rss[len(rss) // 2 :] or rss
    return {
        "rows": n,
        "seconds": elapsed,
        "rows_per_s": n / elapsed if elapsed > 0 else float("nan"),
        "page_size": page_size,
        "pages": len(page_s),
        "page_s_first": page_s[0] if page_s else None,
        "page_s_median": statistics.median(page_s) if page_s else None,
        "page_s_last": page_s[-1] if page_s else None,
        "page_s_max": max(page_s) if page_s else None,
        "mode": "pages as JSON, counted" if args.rows_stream else "query_datasets (a list of refs)",
        "server_rss_before_mb": rss_before,
        "server_rss_first_quarter_max_mb": max(quarter) if quarter else None,
        "server_rss_second_half_max_mb": max(second_half) if second_half else None,
        "server_rss_max_mb": max(rss) if rss else None,
        "server_rss_after_mb": proc.memory_info().rss / 1e6,
        "rss_samples": len(rss),
        "last": str(last)[:120],
    }


def print_rows(result: dict[str, Any], build_s: float | None) -> None:
    built = f" (repository built in {build_s:.1f} s)" if build_s is not None else ""
    print(
        f"\n{result['rows']:,}-row dataset query through pagination{built}, {result['mode']}, page size {result['page_size']:,}:"
    )
    print(
        f"  {result['seconds']:.1f} s, {result['rows_per_s']:,.0f} rows/s to the client (target >= 100,000)"
    )
    if result["pages"]:
        print(
            f"  {result['pages']} pages: first {result['page_s_first'] * 1e3:.0f} ms, median "
            f"{result['page_s_median'] * 1e3:.0f} ms, last {result['page_s_last'] * 1e3:.0f} ms, max "
            f"{result['page_s_max'] * 1e3:.0f} ms"
        )
    print(
        f"  server RSS: before {result['server_rss_before_mb']:.0f} MB, max in the first quarter "
        f"{result['server_rss_first_quarter_max_mb']:.0f} MB, max in the second half "
        f"{result['server_rss_second_half_max_mb']:.0f} MB, max {result['server_rss_max_mb']:.0f} MB, "
        f"after {result['server_rss_after_mb']:.0f} MB ({result['rss_samples']} samples)"
    )


# --- driver -----------------------------------------------------------------------------------------------


def start_porter(
    root: Path, workers: int, env: dict[str, str], workdir: Path, started: list[Service], tag: str
) -> tuple[str, Service]:
    port = free_port()
    server = Service(
        f"porter serve ({tag})",
        [
            str(VENV_BIN / "porter"),
            "serve",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env,
        workdir / f"porter-serve-{tag}.log",
    )
    started.append(server)
    url = f"http://127.0.0.1:{port}"
    server.wait_http(url + "/healthz", timeout=90)
    return url, server


def start_rubin(
    python: Path, root: Path, env: dict[str, str], workdir: Path, started: list[Service]
) -> tuple[str, Service]:
    port = free_port()
    renv = {
        **env,
        "DAF_BUTLER_SERVER_REPOSITORIES": json.dumps(
            {"bench": {"config_uri": str(root / "butler.yaml"), "authorized_groups": ["*"]}}
        ),
        "DAF_BUTLER_SERVER_GAFAELFAWR_URL": "DISABLED",
        "DAF_BUTLER_SERVER_AUTHENTICATION": "rubin_science_platform",
    }
    server = Service(
        "Rubin's butler server",
        [
            str(python),
            "-m",
            "uvicorn",
            "lsst.daf.butler.remote_butler.server:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        renv,
        workdir / "rubin-server.log",
    )
    started.append(server)
    url = f"http://127.0.0.1:{port}/api/butler/repo/bench"
    server.wait_http(url + "/butler.json", timeout=120)
    return url, server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="keep the repositories here (reused when they exist)")
    parser.add_argument("--no-peer", action="store_true", help="porter only (no Rubin server)")
    parser.add_argument(
        "--peer-python", type=Path, default=DEFAULT_PEER_PYTHON, help="Rubin's Python (>= 3.13)"
    )
    parser.add_argument("--porter-datastore", choices=["s3", "file"], default="s3")
    parser.add_argument("--stream-runs", type=int, default=36, help="runs of 1,132 registry-only refs each")
    parser.add_argument("--files", type=int, default=100, help="stored small tables (the 100-ref query)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per operation (after a warm-up)")
    parser.add_argument("--stream-repeat", type=int, default=3, help="timed calls of the streamed query")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds porter/Rubin (the repeats are split)"
    )
    parser.add_argument(
        "--budget", type=float, default=30.0, help="seconds per operation at most (one call at least)"
    )
    parser.add_argument("--page-size", type=int, help="porter's client page size (default: the server's)")
    parser.add_argument("--load", action="store_true", help="the load test instead of the comparison")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client-procs", type=int, default=4, help="processes the load clients run in")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="porter serve --workers in --load")
    parser.add_argument("--rows", type=int, help="the N-row paginated query instead of the comparison")
    parser.add_argument(
        "--rows-list",
        dest="rows_stream",
        action="store_false",
        help="with --rows: through query_datasets (a list of N refs) instead of counting the row stream",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the --rows query at most")
    parser.add_argument("--out", type=Path, help="write all figures as JSON here")
    parser.add_argument("--load-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_worker:
        load_worker(*json.loads(args.load_worker))
        return

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="porter-bench-server-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    try:
        with services() as started:
            if args.rows:
                rows_root = workdir / f"porter-rows-{args.rows}"
                build_s = None
                if not (rows_root / "porter.yaml").exists():
                    log(f"building a porter repository with {args.rows:,} datasets in {rows_root} ...")
                    build_s = build_rows_repo(rows_root, args.rows)
                    log(f"  built in {build_s:.1f} s")
                token = porter_tokens(rows_root, 1)[0]
                url, server = start_porter(rows_root, 1, dict(os.environ), workdir, started, "rows")
                results["rows"] = run_rows(rows_root, url, token, server, args)
                print_rows(results["rows"], build_s)
                return
            endpoint = start_moto(workdir, started)
            env = {
                **os.environ,
                **S3_ENV,
                "PORTER_S3_ENDPOINT_URL": endpoint,
                "S3_ENDPOINT_URL": endpoint,  # lsst-resources' name for it
                "LSST_DISABLE_BUCKET_VALIDATION": "1",
            }
            os.environ.update({k: v for k, v in env.items() if k in S3_ENV or "ENDPOINT" in k})
            bucket = "bench"
            snapshot = workdir / "s3-snapshot"
            restored = s3_restore(endpoint, bucket, snapshot)
            porter_root = workdir / f"porter-repo-{args.porter_datastore}"
            rubin_root = workdir / "rubin-repo"
            plan_path = workdir / "plan.json"
            peer_why = None if not args.no_peer else "--no-peer"
            if peer_why is None:
                peer_why = peer_available(args.peer_python)
                if peer_why:
                    print(f"Rubin's side skipped: {peer_why}")
            plan = json.loads(plan_path.read_text()) if plan_path.exists() else None
            if plan is None:  # a new plan: every repository made for an older one goes
                for stale in workdir.glob("*-repo*"):
                    if stale.name.startswith(("porter-repo-", "rubin-repo")):
                        shutil.rmtree(stale, ignore_errors=True)
            else:
                log(f"reusing {workdir}'s plan (restored {restored} S3 objects)")
            if not (porter_root / "porter.yaml").exists():
                shutil.rmtree(porter_root, ignore_errors=True)
                log(f"building porter's repository in {porter_root} ...")
                plan, stats = build_porter(porter_root, args, bucket, plan)
                plan_path.write_text(json.dumps(plan))
                results["porter_build"] = stats
                log(
                    f"  porter: import {stats['import_s']:.1f} s, {stats['registry_refs']:,} refs "
                    f"{stats['registry_refs_s']:.1f} s, {stats['files']} puts {stats['puts_s']:.1f} s, "
                    f"total {stats['total_s']:.1f} s"
                )
            assert plan is not None
            tokens = porter_tokens(porter_root, max(1, args.clients if args.load else 1))
            token = tokens[0]
            plan.update(
                repeat=args.repeat,
                stream_repeat=args.stream_repeat,
                budget_s=args.budget,
            )
            plan_path.write_text(json.dumps(plan))
            if peer_why is None and not (rubin_root / "butler.yaml").exists():
                log(f"building Rubin's repository in {rubin_root} ...")
                plan["s3_root_rubin"] = f"s3://{bucket}/rubin-{uuid.uuid4().hex[:8]}"
                plan_path.write_text(json.dumps(plan))
                try:
                    stats = peer_run(args.peer_python, "build", plan_path, str(rubin_root), env, timeout=1800)
                    results["rubin_build"] = stats
                    log(
                        f"  Rubin: import {stats['import_s']:.1f} s, {stats['registry_refs']:,} refs "
                        f"{stats['registry_refs_s']:.1f} s, {stats['files']} puts {stats['puts_s']:.1f} s, "
                        f"total {stats['total_s']:.1f} s"
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    peer_why = f"building Rubin's repository failed: {exc}"
                    print(f"Rubin's side skipped: {peer_why}")
                    shutil.rmtree(rubin_root, ignore_errors=True)
            if args.keep:
                s3_snapshot(endpoint, bucket, snapshot)

            if args.load:
                url, server = start_porter(porter_root, args.workers, env, workdir, started, "load")
                results["load"] = run_load(url, tokens, args, server)
                print_load(results["load"])
                return

            url, _ = start_porter(porter_root, 1, env, workdir, started, "porter")
            log(f"porter serve at {url}")
            rurl = None
            if peer_why is None:
                try:
                    rurl, _ = start_rubin(args.peer_python, rubin_root, env, workdir, started)
                    log(f"Rubin's server at {rurl}")
                    results["rubin_version"] = peer_version(args.peer_python)
                except RuntimeError as exc:
                    print(f"Rubin's side failed: {exc}")
            # Rounds, alternating which side goes first, so a change in the machine's load (a shared
            # machine) falls on both sides alike; each side's samples are pooled over the rounds.
            rounds = max(1, args.rounds)
            plan.update(
                repeat=max(1, -(-args.repeat // rounds)),
                stream_repeat=max(1, -(-args.stream_repeat // rounds)),
                budget_s=args.budget / rounds,
            )
            plan_path.write_text(json.dumps(plan))
            for r in range(rounds):
                sides = ["porter", "rubin"] if r % 2 == 0 else ["rubin", "porter"]
                for side in sides:
                    if side == "porter":
                        log(f"round {r + 1}/{rounds}: porter")
                        pool(results, "porter", measure_porter(plan, url, token, args.page_size))
                    elif rurl is not None:
                        log(f"round {r + 1}/{rounds}: Rubin")
                        try:
                            got = peer_run(args.peer_python, "measure", plan_path, rurl, env, timeout=1800)
                        except (RuntimeError, subprocess.TimeoutExpired) as exc:
                            print(f"Rubin's side failed: {exc}")
                            rurl = None
                            continue
                        pool(results, "rubin", got)
            print()
            print(
                f"repository: HSC RC2 records, {len(plan['registry_only']):,} registry-only refs in "
                f"{len(plan['stream_runs'])} runs, {len(plan['files'])} stored small tables; porter datastore "
                f"{args.porter_datastore}, Rubin's S3 (moto_server)"
            )
            print_comparison(results)
    finally:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            slim = json.loads(json.dumps(results))
            for side in ("porter", "rubin"):
                for entry in slim.get(side, {}).get("ops", {}).values():
                    if isinstance(entry.get("answer"), list) and len(entry["answer"]) > 5:
                        entry["answer"] = f"{len(entry['answer'])} rows"
            args.out.write_text(json.dumps(slim, indent=2))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
