"""Dashboard benchmark (issue 17, "Performance"): the demo survey's pages, one at a time and under load.

    python bench/web.py                        # build the demo survey (about 20 s), then both parts
    python bench/web.py --keep /tmp/webbench   # keep the demo repository there, and reuse it next time
    python bench/web.py --no-load              # the per-page medians only
    python bench/web.py --json                 # the figures as JSON (the table goes to stderr's log only)
    python bench/web.py --profile /ui/releases/DEMO1   # where one page's time goes (pyinstrument)

The repository is ``porter demo-survey --repo``'s: the mini DRP, the DEMO1 release
worked through to its go-public gate (every hand-over signed, waivers, an
override, findings, a long audit trail) and the NIGHTLY metrics story.  The
demo's release manager (``write`` on every collection) gets a fresh token and
signs in through the dashboard's form, as a person would.

``porter serve --workers 2`` runs in its own process on loopback.  First each
page is fetched once (its status and size; 404s are listed and left out: the
metrics, repository and runs pages exist only once their work has landed),
then ``--repeat`` more times one after the other: the median is the time a
person waits for a page rendered server-side (target: under 200 ms each).  The
pages: the releases list, every release page and each of its checkpoint pages,
the completeness map of every ``datasets`` item, and /ui/metrics, /ui/repository
and /ui/runs.  Then the load test: ``--clients`` concurrent clients (asyncio
and httpx in one process, each with its own session) load those pages round
the list for ``--duration`` seconds: pages/s, p50/p99 latency and errors
(target: zero errors, p99 under 500 ms).

Run it on a quiet machine: the client shares the cores with the server, and
other work on the machine shows in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

VENV_BIN = Path(sys.executable).parent
USER = "release-manager"
"""The demo's own dashboard user (``write`` on every collection: sees every release)."""
OPTIONAL = ("/ui/metrics", "/ui/repository", "/ui/runs")
PAGE_TARGET_MS = 200.0
P99_TARGET_MS = 500.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_demo(root: Path) -> float:
    """``porter demo-survey --repo root``; its seconds."""
    t = time.perf_counter()
    subprocess.run(
        [str(VENV_BIN / "porter"), "demo-survey", "--repo", str(root), "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    return time.perf_counter() - t


def issue_token(root: Path) -> str:
    """A fresh ``write`` token for the demo's release manager (made by the demo with its grants)."""
    from porter.butler import DirectButler
    from porter.server import Accounts

    butler = DirectButler(root, writeable=True)
    try:
        accounts = Accounts(butler.registry.db, cache_seconds=0)
        if USER not in {u.name for u in accounts.users()}:
            raise SystemExit(f"{root} has no user {USER}: is it a porter demo-survey repository?")
        return accounts.issue_token(USER, scopes=("write",), note="bench/web.py", by="bench").secret_text
    finally:
        butler.close()


@contextlib.contextmanager
def porter_serve(root: Path, workers: int, log_path: Path) -> Iterator[tuple[str, int]]:
    """``porter serve root --workers N`` on a free loopback port until the block ends: (URL, its pid)."""
    port = free_port()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
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
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"porter serve exited ({proc.returncode}): see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"porter serve did not answer within 90 s: see {log_path}")
                time.sleep(0.2)
            yield url, proc.pid
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


def sign_in(client: httpx.Client, url: str, token: str) -> None:
    answer = client.post(f"{url}/ui/login", data={"token": token, "next": "/ui/"})
    if answer.status_code != 303 or "porter_session" not in client.cookies:
        raise RuntimeError(f"signing in failed ({answer.status_code}): {answer.text[:300]}")


def discover_pages(client: httpx.Client, url: str, root: Path) -> list[str]:
    """The pages to measure: releases list, each release, its checkpoints and completeness maps, the others."""
    from porter.release import load_plan, plans_dir_of

    pages = ["/ui/"]
    listing = client.get(f"{url}/ui/").text
    for plan_file in sorted(plans_dir_of(root).glob("*.yaml")):
        plan = load_plan(plan_file)
        if f'/ui/releases/{plan.release}"' not in listing:
            continue  # not a release the user may see (or not a valid plan)
        base = f"/ui/releases/{plan.release}"
        pages.append(base)
        for cp in plan.checkpoints:
            pages.append(f"{base}/checkpoints/{cp.name}")
            pages += [
                f"{base}/checkpoints/{cp.name}/items/{item.name}/completeness"
                for item in cp.items
                if item.kind == "datasets"
            ]
    return pages + list(OPTIONAL)


def get(client: httpx.Client, url: str) -> httpx.Response:
    """GET ``url``, once more on a new connection if the kept-alive one was closed under it (the server
    closes a connection after a page that crashed: uvicorn, after the 500 page is sent)."""
    try:
        return client.get(url)
    except httpx.TransportError:
        return client.get(url)


def measure_pages(client: httpx.Client, url: str, pages: list[str], repeat: int) -> dict[str, Any]:
    """Each page once (cold), then ``repeat`` times in a row: status, size, cold and median milliseconds."""
    out: dict[str, Any] = {}
    for path in pages:
        t = time.perf_counter()
        first = get(client, url + path)
        cold = time.perf_counter() - t
        entry: dict[str, Any] = {
            "status": first.status_code,
            "kb": len(first.content) / 1024,
            "cold_ms": cold * 1e3,
        }
        if first.status_code == 200:
            samples = []
            for _ in range(repeat):
                t = time.perf_counter()
                answer = get(client, url + path)
                samples.append(time.perf_counter() - t)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path} answered {answer.status_code} after 200: {answer.text[:300]}")
            entry["median_ms"] = statistics.median(samples) * 1e3
            entry["max_ms"] = max(samples) * 1e3
        else:
            entry["problem"] = re.sub(r"<[^>]+>", "", first.text)[-300:].strip()
        out[path] = entry
        log(f"  {path}: {first.status_code} {entry.get('median_ms', float('nan')):.1f} ms")
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def _load(
    url: str, token: str, pages: list[str], clients: int, duration: float, new_connections: bool
) -> list[tuple[str, float, str | None]]:
    """``clients`` concurrent sessions fetching ``pages`` round the list for ``duration`` seconds."""
    rows: list[tuple[str, float, str | None]] = []
    # one connection per client, kept alive like a browser's (or a new one for every page: --new-connections)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=0 if new_connections else 1)

    async def client(k: int, start: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as session:
            answer = await session.post(f"{url}/ui/login", data={"token": token, "next": "/ui/"})
            if answer.status_code != 303:
                rows.append(("sign-in", 0.0, f"sign-in answered {answer.status_code}"))
                return
            await start.wait()
            deadline = time.perf_counter() + duration
            i = k  # each client starts at its own page
            while time.perf_counter() < deadline:
                path = pages[i % len(pages)]
                t = time.perf_counter()
                error = None
                try:
                    got = await session.get(url + path)
                    if got.status_code != 200:
                        error = f"{path}: HTTP {got.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{path}: {type(exc).__name__}: {str(exc)[:200]}"
                rows.append((path, time.perf_counter() - t, error))
                i += 1

    start = asyncio.Event()
    tasks = [asyncio.create_task(client(k, start)) for k in range(clients)]
    await asyncio.sleep(0.5)  # every client signed in before the clock starts
    start.set()
    await asyncio.gather(*tasks)
    return rows


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds used so far by process ``pid`` and each of its children (the server's workers), by pid."""
    import psutil

    out: dict[int, float] = {}
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                out[p.pid] = times.user + times.system
    return out


def run_load(url: str, token: str, pages: list[str], args: argparse.Namespace, pid: int) -> dict[str, Any]:
    log(f"load: {args.clients} concurrent clients over {len(pages)} pages for {args.duration:.0f} s")
    cpu0, own0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
    rows = asyncio.run(_load(url, token, pages, args.clients, args.duration, args.new_connections))
    wall = time.perf_counter() - t0
    cpu1, own = cpu_seconds(pid), time.process_time() - own0
    per_process = {k: 100 * (cpu1[k] - cpu0.get(k, 0.0)) / wall for k in cpu1}
    ok = [r[1] for r in rows if r[2] is None]
    errors = [r[2] for r in rows if r[2] is not None]
    per_page = {
        path: {
            "requests": len(mine := [r for r in rows if r[0] == path]),
            "p50_ms": percentile([r[1] for r in mine if r[2] is None], 50) * 1e3,
            "p99_ms": percentile([r[1] for r in mine if r[2] is None], 99) * 1e3,
            "errors": sum(1 for r in mine if r[2] is not None),
        }
        for path in pages
    }
    return {
        "clients": args.clients,
        "duration_s": args.duration,
        "workers": args.workers,
        "new_connections": args.new_connections,
        "requests": len(rows),
        "per_s": len(ok) / args.duration,
        "p50_ms": percentile(ok, 50) * 1e3,
        "p99_ms": percentile(ok, 99) * 1e3,
        "max_ms": max(ok) * 1e3 if ok else float("nan"),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "server_cpu_percent": sum(per_process.values()),
        "server_cpu_percent_by_process": sorted(per_process.values(), reverse=True),
        "client_cpu_percent": 100 * own / wall,
        "pages": per_page,
    }


def profile(root: Path, token: str, path: str, repeat: int) -> None:
    """Where the time of page ``path`` goes: ``repeat`` requests through the application in this thread
    under pyinstrument (handlers that would run in a worker thread are run inline, in the profiler's sight)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install pyinstrument") from None
    import anyio.to_thread

    from porter.server import ServerConfig
    from porter.web import create_app

    async def inline(func: Any, *args: Any, **_: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    app = create_app(ServerConfig(repository=root))

    async def requests() -> Profiler:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            await client.post("/ui/login", data={"token": token, "next": "/ui/"})
            (await client.get(path)).raise_for_status()  # warm: templates compiled, plans parsed
            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            for _ in range(repeat):
                (await client.get(path)).raise_for_status()
            profiler.stop()
            return profiler

    profiler = asyncio.run(requests())
    print(f"{path}: {repeat} requests")
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def print_pages(pages: dict[str, Any], repeat: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"pages of the demo survey, rendered server-side: median of {repeat} requests each "
        f"(target < {PAGE_TARGET_MS:.0f} ms)",
        title_justify="left",
    )
    for col in ("page", "status", "KB", "cold ms", "median ms", "max ms", ""):
        table.add_column(col, justify="left" if col in ("page", "") else "right")
    for path, m in pages.items():
        if m["status"] != 200:
            continue
        over = "OVER" if m["median_ms"] > PAGE_TARGET_MS else ""
        table.add_row(
            path,
            str(m["status"]),
            f"{m['kb']:.1f}",
            f"{m['cold_ms']:.1f}",
            f"{m['median_ms']:.1f}",
            f"{m['max_ms']:.1f}",
            over,
        )
    Console(width=200).print(table)
    skipped = [f"{path} ({m['status']})" for path, m in pages.items() if m["status"] != 200]
    if skipped:
        print("not measured (not there yet, or not a page): " + ", ".join(skipped))


def print_load(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"porter serve --workers {s['workers']}: {s['clients']} concurrent clients for {s['duration_s']:.0f} s, "
        f"{'a new connection per page' if s['new_connections'] else 'kept-alive connections'} "
        f"(target: zero errors, p99 < {P99_TARGET_MS:.0f} ms)",
        title_justify="left",
    )
    for col in ("page", "requests", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for path, p in s["pages"].items():
        table.add_row(
            path, f"{p['requests']:,}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}", str(p["errors"])
        )
    table.add_row(
        f"all ({s['per_s']:,.1f} pages/s, max {s['max_ms']:.0f} ms)",
        f"{s['requests']:,}",
        f"{s['p50_ms']:.1f}",
        f"{s['p99_ms']:.1f}",
        str(s["errors"]),
    )
    Console(width=200).print(table)
    if s["errors"]:
        print(f"!! errors, e.g.: {s['error_examples']}")
    by_process = ", ".join(f"{c:.0f}%" for c in s["server_cpu_percent_by_process"])
    print(
        f"server: {s['server_cpu_percent']:.0f}% CPU on average ({by_process} by process; 100% = one core of "
        f"{os.cpu_count()}); the clients, in this process on the same cores: {s['client_cpu_percent']:.0f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="keep the demo repository here (reused when it exists)")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per page (after one cold)")
    parser.add_argument("--no-load", action="store_true", help="the per-page medians only")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="porter serve --workers")
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="a new connection for every page in the load test (kept-alive connections stay with the worker "
        "that accepted them; new ones spread over the workers)",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="profile this page (e.g. /ui/releases/DEMO1) instead"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-web-"))
    root = base / "repo"
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    try:
        if not (root / "porter.yaml").exists():
            log(f"building the demo survey in {root} …")
            out["build_s"] = build_demo(root)
        token = issue_token(root)
        if args.profile:
            profile(root, token, args.profile, args.repeat)
            return
        with (
            porter_serve(root, args.workers, base / "porter-serve.log") as (url, pid),
            httpx.Client(timeout=120) as client,
        ):
            sign_in(client, url, token)
            pages = discover_pages(client, url, root)
            log(f"{len(pages)} pages, {args.repeat} requests each, one at a time")
            out["pages"] = measure_pages(client, url, pages, args.repeat)
            served = [p for p, m in out["pages"].items() if m["status"] == 200]
            if not args.no_load:
                out["load"] = run_load(url, token, served, args, pid)
        out["load_average_after"] = os.getloadavg()
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return
    print(
        f"{out['cpus']} CPUs; load average {out['load_average'][0]:.1f} before, "
        f"{out['load_average_after'][0]:.1f} after (other work on the machine shows in the figures)"
    )
    print_pages(out["pages"], args.repeat)
    if "load" in out:
        print_load(out["load"])


if __name__ == "__main__":
    main()
