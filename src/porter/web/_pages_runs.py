"""The Runs pages: pipeline submissions, their progress live, their failures, and how a dataset was made.

``/ui/runs``
    every run a pipeline was submitted to that the viewer may read, newest
    submission first: per step and task, how many quanta succeeded, failed,
    are blocked, running or pending, and the most common errors.
``/ui/runs/{run}``
    one run: a progress bar per step and task, failures grouped by error
    message with example data IDs; while the run executes, ``runs.js``
    follows ``/ui/runs/{run}/events`` (server-sent events) to keep the
    counts current.  Without JavaScript the page shows the counts as of load.
    Then the report notebooks published for the run (`report_outcomes_of`:
    each linked to its dataset's page, or the error that stopped it) and the
    run's metrics as the metric store summarises them, linked to their pages.
``/ui/provenance/{dataset_id}``
    how a dataset was made, back to the raws, drawn as a graph (SVG, layered
    left to right): datasets and the quanta that made them.

Everything comes from the same library calls as ``porter pipeline report``
and ``porter provenance`` (`report_run`, `dataset_provenance`), so a page
and the command line always agree.  A run is a collection: a viewer who may
not read it gets the same 404 as for a run that does not exist, and a
dataset of the provenance graph in a collection the viewer may not read is
drawn as "hidden", without its name, and the graph stops there.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from ..butler import DirectButler
from ..core import CollectionType
from ..errors import MissingCollectionError
from ..pipeline import (
    ProvenanceNode,
    QuantumGraph,
    ReportOutcome,
    RunReport,
    RunState,
    dataset_provenance,
    report_outcomes_of,
    report_run,
)
from ..verify import LEVELS
from ._pages_metrics import run_metrics
from ._render import base_of, dashboard_of, render
from ._session import Viewer, require_viewer

__all__ = ["router"]

router = APIRouter()

ViewerDep = Annotated[Viewer, Depends(require_viewer)]

STATUSES = ("succeeded", "failed", "blocked", "running", "pending")
"""A quantum's states, in the order bars and tables show them (`porter pipeline report`'s)."""

POLL_SECONDS = 1.0
"""How often the event stream looks at the run's state."""
SETTLE_POLLS = 3
"""Looks in a row with nothing running or pending before the stream says the run finished (a submission
builds the next step's graph between steps, with nothing running for a moment)."""
IDLE_SECONDS = 120.0
"""A stream of a run with quanta pending but none running (a killed or stalled submission) ends after this."""
STREAM_SECONDS = 900.0
"""No stream lasts longer than this; the page's script opens a new one if the run is still going."""
KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""
MAX_RUNS = 100
"""Runs listed on /ui/runs (newest submissions first)."""


# --- progress of a run ------------------------------------------------------------------------------------------


_STEP_CACHE: dict[tuple[str, int, str, int], dict[str, str]] = {}
"""(repository root, graph ID, label, size) → {task label: step}: a stored graph never changes, so it is decoded once."""


def _steps_of(butler: DirectButler, root: str, run: str) -> tuple[dict[str, str], list[str], int]:
    """Each task's step (from the stored graphs' step definitions), the steps in submission order, and the
    latest graph's ID (to order runs by their newest submission)."""
    step_of: dict[str, str] = {}
    order: list[str] = []
    latest = 0
    for graph_id, label, blob in RunState(butler.registry.db).graphs_of(run):
        latest = max(latest, graph_id)
        key = (root, graph_id, label, len(blob))  # an ID a removed run's graph had may be given again
        mapping = _STEP_CACHE.get(key)
        if mapping is None:
            graph = QuantumGraph.from_bytes(blob, butler.dimensions)
            mapping = {
                t: s.label for s in graph.pipeline.steps() for t in s.tasks if t in graph.pipeline.tasks
            }
            if not mapping and "#" in label:  # submit_steps labels a step's graphs "step#group"
                step = label.split("#", 1)[0]
                mapping = dict.fromkeys(graph.pipeline.tasks, step)
            if len(_STEP_CACHE) > 10_000:
                _STEP_CACHE.clear()
            _STEP_CACHE[key] = mapping
        for task, step in mapping.items():
            step_of.setdefault(task, step)
            if step not in order:
                order.append(step)
    return step_of, order, latest


def _bar(counts: dict[str, int]) -> list[dict[str, Any]]:
    """A stacked bar's segments (percent of the whole), one per status."""
    total = sum(counts.get(s, 0) for s in STATUSES)
    x = 0.0
    out = []
    for s in STATUSES:
        width = 100.0 * counts.get(s, 0) / total if total else 0.0
        out.append({"status": s, "x": round(x, 3), "width": round(width, 3)})
        x += width
    return out


def _counts(counter: Any) -> dict[str, int]:
    return {s: int(counter.get(s, 0)) for s in STATUSES}


def _state(totals: dict[str, int]) -> str:
    """A run's state in one word: running, failed, incomplete, succeeded (or empty)."""
    if totals["running"]:
        return "running"
    if totals["failed"] or totals["blocked"]:
        return "failed"
    if totals["pending"]:
        return "incomplete"
    return "succeeded" if totals["succeeded"] else "empty"


_DIMENSION_ORDER = (
    "instrument",
    "skymap",
    "tract",
    "patch",
    "band",
    "physical_filter",
    "day_obs",
    "group",
    "exposure",
    "visit",
    "detector",
)


def data_id_text(data_id: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """A data ID as people write it, coarse dimensions first: ``instrument=SynthCam, exposure=1000, detector=2``."""
    rank = {d: i for i, d in enumerate(_DIMENSION_ORDER)}
    keys = sorted(data_id, key=lambda k: (rank.get(k, len(rank)), k))
    return ", ".join(f"{k}={data_id[k]}" for k in keys if k not in skip)


@dataclass
class RunProgress:
    """What the Runs pages show of one run: counts per step and task, the common errors, times."""

    run: str
    latest_graph: int
    totals: dict[str, int]
    steps: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    elapsed: float | None
    state: str = field(init=False)

    def __post_init__(self) -> None:
        self.state = _state(self.totals)

    @property
    def totals_bar(self) -> list[dict[str, Any]]:
        return _bar(self.totals)

    @property
    def live(self) -> bool:
        """Whether the run may still change (something running or still to run)."""
        return bool(self.totals["running"] or self.totals["pending"])

    def snapshot(self) -> dict[str, Any]:
        """The counts the event stream sends (and the page's script applies)."""
        return {
            "state": self.state,
            "totals": self.totals,
            "steps": {s["name"]: s["counts"] for s in self.steps},
            "tasks": {t["label"]: t["counts"] for s in self.steps for t in s["tasks"]},
            "times": {
                t["label"]: [round(t["wall"], 1), round(t["cpu"], 1)] for s in self.steps for t in s["tasks"]
            },
        }


def run_progress(butler: DirectButler, root: str, run: str, max_errors: int = 10) -> RunProgress:
    """The run's progress from `report_run` (what ``porter pipeline report`` prints), grouped by step."""
    report: RunReport = report_run(butler, run, max_errors=max_errors)
    step_of, order, latest = _steps_of(butler, root, run)
    wall, cpu = report.wall, report.cpu
    by_step: dict[str, list[dict[str, Any]]] = {s: [] for s in order}
    for label, counter in report.tasks.items():
        counts = _counts(counter)
        by_step.setdefault(step_of.get(label, ""), []).append(
            {
                "label": label,
                "counts": counts,
                "total": sum(counts.values()),
                "bar": _bar(counts),
                "wall": wall.get(label, 0.0),
                "cpu": cpu.get(label, 0.0),
            }
        )
    steps = []
    for name, tasks in by_step.items():
        if not tasks:
            continue
        counts = {s: sum(t["counts"][s] for t in tasks) for s in STATUSES}
        steps.append(
            {
                "name": name,
                "counts": counts,
                "total": sum(counts.values()),
                "bar": _bar(counts),
                "tasks": tasks,
            }
        )
    totals = _counts(report.totals())
    errors = [
        {**e, "examples": [data_id_text(d) for d in e["examples"]], "step": step_of.get(e["task"], "")}
        for e in report.errors
    ]
    return RunProgress(run, latest, totals, steps, errors, report.to_dict()["elapsed_seconds"])


def _not_found(run: str) -> HTTPException:
    """The one answer for a run that does not exist, has no pipeline, or that the viewer may not read."""
    return HTTPException(404, f"No pipeline run {run[:200]!r} that you may read.")


def _readable_progress(request: Request, viewer: Viewer, run: str, max_errors: int = 10) -> RunProgress:
    if not viewer.principal.can_read(run):
        raise _not_found(run)
    dashboard = dashboard_of(request)
    try:
        return run_progress(dashboard.state.butler, str(dashboard.root), run, max_errors)
    except MissingCollectionError:
        raise _not_found(run) from None


def _run_url(request: Request, run: str) -> str:
    return f"{base_of(request)}/runs/{quote(run, safe='/')}"


def _notebook_name(notebook: str) -> str:
    """A notebook as the pipeline names it, shortened to its file name (``metrics_report.ipynb``)."""
    return notebook.rstrip("/").rsplit("/", 1)[-1] or notebook


def _report_rows(
    request: Request, butler: DirectButler, outcomes: list[ReportOutcome]
) -> list[dict[str, Any]]:
    """The run page's reports: each published one linked to its dataset's page (if the dataset is still there)."""
    base = base_of(request)
    rows = []
    for o in outcomes:
        dataset = ""
        if o.ok and o.dataset_id:
            try:
                found = butler.get_dataset(uuid.UUID(o.dataset_id))
            except (ValueError, TypeError):
                found = None
            dataset = str(found.id) if found is not None else ""
        rows.append(
            {
                "name": _notebook_name(o.notebook),
                "notebook": o.notebook,
                "dataset_type": o.dataset_type,
                "status": o.status,
                "ok": o.ok,
                "message": o.message,
                "dataset_id": dataset,
                "url": f"{base}/repository/datasets/{dataset}" if dataset else "",
                "gone": o.ok and not dataset,
                "recorded": o.recorded,
            }
        )
    return rows


def _report_badge(outcomes: list[ReportOutcome]) -> dict[str, int]:
    """For the runs list: how many of a run's reports are published and how many failed."""
    published = sum(1 for o in outcomes if o.ok)
    return {"published": published, "failed": len(outcomes) - published}


_LIST_TTL = 2.0
"""Seconds a run's progress on the runs list may be reused: the list is a summary of every run, and summing each
run's graph and records again for every viewer's every load made it the dashboard's slowest page under load (a
run followed live has its own page and event stream, which are never cached)."""
_list_cache: dict[tuple[str, str], tuple[float, RunProgress]] = {}
_list_lock = threading.Lock()


def _listed_progress(butler: DirectButler, root: str, run: str) -> RunProgress:
    """`run_progress` for the runs list, reused for `_LIST_TTL` seconds (access is decided before, per viewer)."""
    now = time.monotonic()
    with _list_lock:
        hit = _list_cache.get((root, run))
    if hit is not None and now - hit[0] < _LIST_TTL:
        return hit[1]
    progress = run_progress(butler, root, run, max_errors=3)
    with _list_lock:
        if len(_list_cache) > 4096:
            _list_cache.clear()
        _list_cache[(root, run)] = (now, progress)
    return progress


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """Every pipeline run the viewer may read, newest submission first, with per-step and per-task progress."""
    dashboard = dashboard_of(request)
    butler = dashboard.state.butler
    names = [r for r in RunState(butler.registry.db).runs() if viewer.principal.can_read(r)]
    runs = []
    for name in names:
        try:
            runs.append(_listed_progress(butler, str(dashboard.root), name))
        except MissingCollectionError:  # removed while we looked
            continue
    runs.sort(key=lambda p: -p.latest_graph)
    shown = runs[:MAX_RUNS]
    reports = report_outcomes_of(butler, [p.run for p in shown])  # one query for every listed run
    return render(
        request,
        "runs.html",
        title="Runs",
        runs=shown,
        more=max(0, len(runs) - MAX_RUNS),
        statuses=STATUSES,
        run_url=lambda r: _run_url(request, r),
        reports={run: _report_badge(o) for run, o in reports.items()},
    )


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/runs/{run:path}/events")
async def run_events(request: Request, run: str, viewer: ViewerDep) -> StreamingResponse:
    """Server-sent events: ``counts`` whenever the run's counts change (looked at every second), then one
    ``end`` (reason ``finished``, ``idle`` or ``limit``) when the run is done or the stream has lasted long enough."""
    first = await asyncio.to_thread(_readable_progress, request, viewer, run)
    dashboard = dashboard_of(request)
    butler, root = dashboard.state.butler, str(dashboard.root)

    async def stream() -> AsyncIterator[str]:
        progress = first
        started = last_change = last_sent = time.monotonic()
        last: dict[str, Any] | None = None
        settled = 0
        yield "retry: 5000\n\n"
        while True:
            snap = progress.snapshot()
            now = time.monotonic()
            if snap != last:
                yield _event("counts", snap)
                last, last_change, last_sent = snap, now, now
            elif now - last_sent >= KEEPALIVE_SECONDS:
                yield ": still here\n\n"
                last_sent = now
            totals = snap["totals"]
            settled = 0 if progress.live else settled + 1
            reason = None
            if settled >= SETTLE_POLLS:
                reason = "finished"
            elif not totals["running"] and now - last_change >= IDLE_SECONDS:
                reason = "idle"
            elif now - started >= STREAM_SECONDS:
                reason = "limit"
            if reason is not None:
                yield _event("end", {"reason": reason, **snap})
                return
            await asyncio.sleep(POLL_SECONDS)
            if await request.is_disconnected():
                return
            try:
                progress = await asyncio.to_thread(run_progress, butler, root, run, 0)
            except MissingCollectionError:  # the run was removed
                yield _event("end", {"reason": "removed", **snap})
                return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"},
    )


def _latest_run_of_chain(butler: DirectButler, viewer: Viewer, name: str) -> str | None:
    """For an output CHAINED collection (``pipetask -o``, ``porter pipeline submit -o``), its first RUN child
    with a pipeline: the latest run made under it, as ``porter pipeline report`` reads it."""
    if not viewer.principal.can_read(name):
        return None
    try:
        info = butler.collections.get_info(name)
        if info.type != CollectionType.CHAINED:
            return None
        pipelined = set(RunState(butler.registry.db).runs())
        for child in info.children:
            if child in pipelined and viewer.principal.can_read(child):
                return str(child)
    except MissingCollectionError:
        pass
    return None


@router.get("/runs/{run:path}", response_class=HTMLResponse, response_model=None)
def run_page(request: Request, run: str, viewer: ViewerDep) -> HTMLResponse | RedirectResponse:
    """One run: progress per step and task, failures grouped by error message, live while it executes.

    The name of an output chain leads to its latest run (as ``porter pipeline report CHAIN`` does).
    """
    try:
        progress = _readable_progress(request, viewer, run, max_errors=50)
    except HTTPException:
        latest = _latest_run_of_chain(dashboard_of(request).state.butler, viewer, run)
        if latest is None:
            raise
        return RedirectResponse(_run_url(request, latest), status_code=303)
    url = _run_url(request, run)
    dashboard = dashboard_of(request)
    butler = dashboard.state.butler
    return render(
        request,
        "runs_run.html",
        title=f"Run {run}",
        progress=progress,
        statuses=STATUSES,
        events_url=f"{url}/events",
        snapshot=progress.snapshot(),
        reports=_report_rows(request, butler, report_outcomes_of(butler, [run]).get(run, [])),
        metrics=run_metrics(dashboard, run),
        levels=LEVELS,
    )


# --- provenance graph -------------------------------------------------------------------------------------------

NODE_W, NODE_H = 196, 40
COL_GAP, ROW_GAP, PAD = 64, 14, 16
SHOWN_PER_GROUP = 5
"""In one column, at most this many nodes of the same dataset type or task are drawn; the rest are one
"+N more" node (every dataset is still listed in the table under the graph)."""


@dataclass
class _Node:
    key: str
    kind: str  # dataset, quantum, more
    name: str
    detail: str = ""
    title: str = ""
    href: str = ""
    classes: list[str] = field(default_factory=list)
    order: int = 0
    depth: int = 0
    column: int = 0
    row: float = 0.0
    members: int = 1


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _dataset_uuid(hex_id: str) -> str:
    return str(uuid.UUID(hex_id))


@dataclass
class ProvenanceGraph:
    """The provenance of one dataset as nodes and edges, laid out in columns (raws left, the dataset right)."""

    nodes: dict[str, _Node] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)
    """(producer, consumer): a dataset into the quantum that read it, a quantum to the dataset it wrote."""
    datasets: list[dict[str, Any]] = field(default_factory=list)
    """Every dataset of the graph (readable ones with their names), for the table under the picture."""
    hidden: int = 0
    quanta: int = 0
    columns: dict[int, list[_Node]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        tree: ProvenanceNode,
        can_read: Callable[[str], bool],
        dataset_url: Callable[[str], str],
        run_url: Callable[[str], str],
    ) -> ProvenanceGraph:
        graph = cls()
        counter = iter(range(1_000_000))

        def visit(node: ProvenanceNode) -> str:
            key = f"d:{node.dataset_id}"
            if key in graph.nodes:
                return key
            if not can_read(node.run):
                graph.hidden += 1
                graph.nodes[key] = _Node(
                    key, "dataset", "hidden", "", "A dataset in a collection you may not read", "", ["hidden"]
                )
                graph.nodes[key].order = next(counter)
                return key
            ident = data_id_text(node.data_id)
            uid = _dataset_uuid(node.dataset_id)
            made = node.quantum is not None
            graph.nodes[key] = _Node(
                key,
                "dataset",
                node.dataset_type,
                _short(data_id_text(node.data_id, skip=("instrument", "skymap")) or ident),
                f"{node.dataset_type} {ident} in {node.run} ({uid})",
                dataset_url(uid),
                ["dataset", "made" if made else "source"],
            )
            graph.nodes[key].order = next(counter)
            graph.datasets.append(
                {
                    "uuid": uid,
                    "type": node.dataset_type,
                    "data_id": ident,
                    "run": node.run,
                    "source": not made,
                }
            )
            q = node.quantum
            if q is not None:
                qkey = f"q:{q.quantum_id}"
                if qkey not in graph.nodes:
                    graph.quanta += 1
                    graph.nodes[qkey] = _Node(
                        qkey,
                        "quantum",
                        q.task,
                        _short(data_id_text(q.data_id, skip=("instrument", "skymap"))),
                        f"quantum of {q.task} ({q.task_class}, config {q.config_hash}) on {q.host}, "
                        f"run {q.run}, {data_id_text(q.data_id)}",
                        f"{run_url(q.run)}#task-{q.task}",
                        ["quantum"],
                    )
                    graph.nodes[qkey].order = next(counter)
                graph.edges.add((qkey, key))
                for i in node.inputs:
                    graph.edges.add((visit(i), qkey))
            return key

        root = visit(tree)
        graph.nodes[root].classes.append("root")
        graph._layout(root)
        return graph

    def _layout(self, root: str) -> None:
        """Columns by depth (the longest path to the dataset asked about, which is the rightmost), rows by the
        mean row of each node's consumers (fewer crossings), big groups folded into a "+N more" node."""
        producers: dict[str, list[str]] = {k: [] for k in self.nodes}
        consumers: dict[str, list[str]] = {k: [] for k in self.nodes}
        for a, b in self.edges:
            producers[b].append(a)
            consumers[a].append(b)
        # Topological order from the root back to the raws: a node after all of its consumers.
        post: list[str] = []
        seen: set[str] = set()

        def walk(key: str) -> None:
            stack = [(key, iter(sorted(producers[key], key=lambda k: self.nodes[k].order)))]
            seen.add(key)
            while stack:
                current, children = stack[-1]
                child = next(children, None)
                if child is None:
                    post.append(current)
                    stack.pop()
                elif child not in seen:
                    seen.add(child)
                    stack.append((child, iter(sorted(producers[child], key=lambda k: self.nodes[k].order))))

        walk(root)
        hops = {root: 0}  # the fewest edges from each node to the dataset asked about
        queue = [root]
        for key in queue:
            for p in producers[key]:
                if p not in hops:
                    hops[p] = hops[key] + 1
                    queue.append(p)
        for key in reversed(post):  # consumers before producers
            for p in producers[key]:
                self.nodes[p].depth = max(self.nodes[p].depth, self.nodes[key].depth + 1)
        deepest = max(n.depth for n in self.nodes.values())
        columns: dict[int, list[_Node]] = {}
        for n in self.nodes.values():
            n.column = deepest - n.depth
            columns.setdefault(n.column, []).append(n)
        alias: dict[str, str] = {}
        row_of: dict[str, float] = {}
        for col in sorted(columns, reverse=True):
            members = columns[col]

            def centre(n: _Node) -> tuple[float, int]:
                rows = [row_of[alias.get(c, c)] for c in consumers[n.key]]
                return (sum(rows) / len(rows) if rows else 0.0, n.order)

            members.sort(key=centre)
            groups: dict[tuple[str, str], list[_Node]] = {}
            for n in members:
                groups.setdefault((n.kind, n.name), []).append(n)
            shown: set[str] = set()
            for (
                group
            ) in groups.values():  # of a big group, the nodes nearest the dataset asked about are drawn
                ranked = sorted(enumerate(group), key=lambda iv: (hops[iv[1].key], iv[0]))
                limit = len(group) if len(group) <= SHOWN_PER_GROUP + 1 else SHOWN_PER_GROUP
                shown.update(n.key for _, n in ranked[:limit])
            kept = [n for n in members if n.key in shown]
            for (kind, name), group in groups.items():
                rest = [n for n in group if n.key not in shown]
                if not rest:
                    continue
                what = "datasets" if kind == "dataset" else "quanta"
                more = _Node(
                    f"more:{col}:{kind}:{name}",
                    "more",
                    f"+{len(rest)} more",
                    f"{name} {what}",
                    f"{len(rest)} more {name} {what}, listed in the table below",
                    "#datasets",
                    ["more"],
                    column=col,
                    members=len(rest),
                )
                kept.append(more)
                alias.update((n.key, more.key) for n in rest)
            for i, n in enumerate(kept):
                n.row = row_of[n.key] = float(i)
            columns[col] = kept
        for key in list(alias):
            del self.nodes[key]
        for drawn in columns.values():
            for n in drawn:
                self.nodes[n.key] = n
        self.edges = {(alias.get(a, a), alias.get(b, b)) for a, b in self.edges}
        self.edges = {(a, b) for a, b in self.edges if a != b}
        self.columns = columns

    def svg(self) -> dict[str, Any]:
        """Positions for the template: nodes as boxes, edges as curves from a producer's right to a consumer's left."""
        tallest = max(len(c) for c in self.columns.values())
        height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP
        width = PAD * 2 + len(self.columns) * NODE_W + (len(self.columns) - 1) * COL_GAP
        where: dict[str, tuple[float, float]] = {}
        nodes = []
        for col, members in sorted(self.columns.items()):
            top = PAD  # columns aligned at the top: a chain of one-to-one steps draws as straight lines
            x = PAD + col * (NODE_W + COL_GAP)
            for i, n in enumerate(members):
                y = top + i * (NODE_H + ROW_GAP)
                where[n.key] = (x, y)
                nodes.append(
                    {
                        "kind": n.kind,
                        "x": round(x, 1),
                        "y": round(y, 1),
                        "name": _short(n.name, 26),
                        "detail": n.detail,
                        "title": n.title,
                        "href": n.href,
                        "classes": " ".join(["node", n.kind, *n.classes]),
                    }
                )
        edges = []
        for a, b in sorted(self.edges):
            (x1, y1), (x2, y2) = where[a], where[b]
            x1, y1, x2, y2 = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            bend = min(COL_GAP * 0.8, (x2 - x1) / 2)
            edges.append(
                f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            )
        return {"width": width, "height": height, "w": NODE_W, "h": NODE_H, "nodes": nodes, "edges": edges}


@router.get("/provenance/{dataset_id}", response_class=HTMLResponse)
def provenance_page(request: Request, dataset_id: str, viewer: ViewerDep) -> HTMLResponse:
    """How a dataset was made, back to the raws: datasets and quanta as a graph, every dataset linked."""
    dashboard = dashboard_of(request)
    butler = dashboard.state.butler
    missing = HTTPException(404, f"No dataset with ID {dataset_id[:80]!r} that you may read.")
    try:
        ref = butler.get_dataset(dataset_id)
    except (ValueError, TypeError):
        ref = None
    if ref is None or not viewer.principal.can_read(ref.run):
        raise missing
    tree = dataset_provenance(butler, str(ref.id))
    base = base_of(request)
    graph = ProvenanceGraph.build(
        tree,
        viewer.principal.can_read,
        lambda uid: f"{base}/repository/datasets/{uid}",
        lambda run: _run_url(request, run),
    )
    has_pipeline = tree.quantum is not None
    datasets = sorted(graph.datasets, key=lambda d: (not d["source"], d["type"], d["data_id"]))
    return render(
        request,
        "provenance.html",
        title=f"Provenance of {ref.dataset_type.name}",
        ref={
            "uuid": str(ref.id),
            "type": ref.dataset_type.name,
            "data_id": data_id_text(dict(ref.data_id.required)),
            "run": ref.run,
        },
        made_by=tree.quantum,
        has_pipeline=has_pipeline,
        run_url=_run_url(request, ref.run),
        svg=graph.svg(),
        datasets=datasets,
        hidden=graph.hidden,
        quanta=graph.quanta,
    )
