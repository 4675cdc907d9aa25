"""Dashboard at scale (issue 17, "Performance"): a 10-million-data-ID release's pages, rendered server-side.

    python bench/web_scale.py --keep /tmp/webscale           # build once (about 20 min), then reuse
    python bench/web_scale.py --visits 2000                  # 378,000 data IDs: a quick look

The repository is bench/release.py's completeness repository on PostgreSQL: a raw
for each (exposure, detector) of ``--visits`` visits x 189 detectors (53,000 visits:
10,017,000 data IDs) and a calexp for all but a few thousand.  A release plan SCALE
has one hand-over, ``calexps``, whose item is the rubin template's "a calexp for every
(visit, detector) with a raw"; its check runs once (timed), storing the missing data
IDs as Parquet.  Then the dashboard (porter.web, uvicorn in this process, loopback)
answers the release list, the release page, the checkpoint page, the completeness
map and one cell's missing list: the first (cold) answer and the median of
``--repeat`` more are printed for each.  Target: the release page under 1 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))

from release import COMPLETENESS_RAW, COMPLETENESS_RUN, build_completeness_repo

RELEASE = "SCALE"


def write_plan(root: Path) -> None:
    """Release SCALE over the completeness repository: one hand-over with the calexp completeness item."""
    from porter.release import Checkpoint, Item, Person, ReleasePlan, dump_plan

    plan = ReleasePlan(
        release=RELEASE,
        repository=str(root),
        collections=[COMPLETENESS_RAW, COMPLETENESS_RUN],
        people=[Person(name="release-manager", release_manager=True, can_waive=True)],
        checkpoints=[
            Checkpoint(
                name="calexps",
                from_team="pipelines",
                to_team="release",
                owner="release-manager",
                deadline=datetime.date.today() + datetime.timedelta(days=14),
                items=[
                    Item(
                        name="calexps",
                        kind="datasets",
                        dataset_types=["calexp"],
                        collections=[COMPLETENESS_RUN],
                        expected={
                            "dimensions": ["visit", "detector"],
                            "datasets": "raw",
                            "collections": [COMPLETENESS_RAW],
                        },
                        group_by="visit",
                    )
                ],
            )
        ],
    )
    (root / "releases").mkdir(exist_ok=True)
    dump_plan(plan, root / "releases" / f"{RELEASE}.yaml")


def run_check(root: Path) -> dict[str, Any]:
    from porter.release import Release, plans_dir_of

    release = Release.open(RELEASE, plans_dir_of(root))
    try:
        t = time.perf_counter()
        (result,) = release.check("calexps", by="release-manager")
        return {"seconds": time.perf_counter() - t, "value": result.value, "status": result.status}
    finally:
        release.close()


def serve(root: Path) -> tuple[str, str, uvicorn.Server, threading.Thread]:
    from porter.server import ServerConfig
    from porter.web import create_app

    app = create_app(ServerConfig(repository=root))
    accounts = app.state.porter.accounts
    if "bench" not in {u.name for u in accounts.users()}:
        accounts.add_user("bench", by="bench")
    token = accounts.issue_token("bench", scopes=("admin",), by="bench").secret_text
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}", token, server, thread


def measure(client: httpx.Client, url: str, repeat: int) -> dict[str, Any]:
    t = time.perf_counter()
    first = client.get(url)
    cold = time.perf_counter() - t
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        answer = client.get(url)
        samples.append(time.perf_counter() - t)
        answer.raise_for_status()
    return {
        "status": first.status_code,
        "bytes": len(first.content),
        "cold ms": cold * 1000,
        "median ms": statistics.median(samples) * 1000 if samples else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=53_000, help="x 189 detectors expected data IDs")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", help="build the repository here once and reuse it on later runs")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-web-scale-"))
    root = base / "repo"
    out: dict[str, Any] = {}
    if not (root / "porter.yaml").exists():
        print(
            f"building the completeness repository ({args.visits:,} visits x 189 detectors) …",
            file=sys.stderr,
        )
        out["build"] = build_completeness_repo(root, args.pg_url, f"webscale_{args.visits}", args.visits)
    write_plan(root)
    print("running the release check …", file=sys.stderr)
    out["check"] = run_check(root)
    url, token, server, thread = serve(root)
    ui = f"{url}/ui"
    pages = {
        "releases": f"{ui}/",
        "release page": f"{ui}/releases/{RELEASE}",
        "checkpoint page": f"{ui}/releases/{RELEASE}/checkpoints/calexps",
        "completeness map": f"{ui}/releases/{RELEASE}/checkpoints/calexps/items/calexps/completeness",
    }
    try:
        with httpx.Client(timeout=600) as client:
            client.post(f"{ui}/login", data={"token": token, "next": "/ui/"})
            out["pages"] = {name: measure(client, page, args.repeat) for name, page in pages.items()}
    finally:
        server.should_exit = True
        thread.join()
    if args.json:
        print(json.dumps(out, default=str, indent=1))
        return
    if "build" in out:
        print(f"built: {out['build']['expected']:,} expected data IDs, {out['build']['missing']:,} missing")
    print(
        f"release check: {out['check']['seconds']:.1f} s ({out['check']['status']}: {out['check']['value']})"
    )
    print(f"{'page':<20} {'status':>6} {'KB':>8} {'cold ms':>9} {'median ms':>10}")
    for name, m in out["pages"].items():
        median = f"{m['median ms']:.1f}" if m["median ms"] is not None else ""
        print(f"{name:<20} {m['status']:>6} {m['bytes'] / 1024:>8.1f} {m['cold ms']:>9.1f} {median:>10}")


if __name__ == "__main__":
    main()
