"""The metrics pages: every metric against its specification levels, one metric's trend, the alerts.

Everything is read through `porter.verify`'s public API, the same calls as ``porter verify
status/trend/changes/alerts/ack``: the repository's `MetricStore` (values, and the pass/fail of each
spec level as checked when the measurement arrived), its `AlertBook`, and `change_points_many` over
the stored series.  The thresholds drawn on the charts come from the metrics packages the
repository's release plans name (``kind: metrics`` items): the store keeps what a measurement met,
not the declarations; a metric no package declares is shown with its stored pass/fail only.

Access: a measurement belongs to its run, a collection.  A viewer sees only the measurements of
runs they may read; a metric with none is not listed and its page answers 404 like a metric that
does not exist; an alert is shown only when every run it names is readable.

A past view: a release page read ``?as_of=N`` (just after its audit entry N) shows its metrics
section as of that entry's time, and links its metrics as ``/ui/metrics/NAME?release=R&as_of=N``:
measurements of runs recorded after that time are left out, alerts are shown as they stood then
(`AlertBook.as_of`), and nothing can be acted on.  Audit entries are numbered per release, so the
page needs the release too, and the viewer must be able to see it (otherwise 404, as the release).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..release import EventLog, ReleasePlan, plans_dir_of
from ..verify import (
    LEVELS,
    Alert,
    AlertBook,
    ChangePoint,
    Metric,
    MetricStore,
    MetricSummary,
    Outcome,
    Provenance,
    Series,
    Specification,
    VerifyError,
    change_points_many,
    conversion_factor,
    detect_many,
    load_package,
)
from ._releases import _load as load_plan_file
from ._releases import open_release, parse_as_of
from ._render import Dashboard, base_of, dashboard_of, error_page, render
from ._session import Viewer, require_viewer, require_writer

__all__ = ["release_metrics", "router", "run_metrics"]


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At start-up: give the release page's metrics section (``_release_metrics.html``) its callable."""
    dashboard = getattr(app.state, "dashboard", None)
    if dashboard is not None:
        _register(dashboard)
    yield


router = APIRouter(lifespan=_lifespan)

ViewerDep = Annotated[Viewer, Depends(require_viewer)]

MANY = 8
"""Up to this many data IDs, a trend draws one line per data ID; beyond, the mean and range per run."""
PREFIXES = 50
"""Change-points are looked for in each series as it stood after each of its last this-many runs."""
TABLE_RUNS = 200
"""The most runs the value table under a chart lists (the latest)."""
OPTIONS = 500
"""The most data IDs the data-ID select offers (any other is reached with ``?data_id=``)."""


def _register(dashboard: Dashboard) -> None:
    dashboard.templates.globals["release_metrics"] = lambda plan, viewer, as_of=None: release_metrics(
        dashboard, plan, viewer, as_of
    )


# --- the store, the declarations, what a viewer may read --------------------------------------------------

_lock = threading.Lock()
_stores: dict[int, tuple[Any, MetricStore, AlertBook]] = {}


def _store(dashboard: Dashboard) -> tuple[MetricStore, AlertBook]:
    """The repository's metric store and alert book (opened once: they create their tables on first use)."""
    db = dashboard.state.butler.registry.db
    with _lock:
        found = _stores.get(id(db))
        if found is None or found[0] is not db:
            found = (db, MetricStore(db), AlertBook(db))
            _stores[id(db)] = found
    return found[1], found[2]


@dataclass(frozen=True)
class Declared:
    """A metric's declaration and specifications, from a metrics package a release plan names."""

    metric: Metric
    specs: list[Specification]
    package: str


_packages: dict[Path, tuple[tuple[tuple[str, int], ...], dict[str, Declared]]] = {}


def _package(path: Path) -> dict[str, Declared]:
    """A metrics package's declarations by metric name, read again only when one of its files changes."""
    try:
        files = tuple(sorted((str(f), f.stat().st_mtime_ns) for f in path.rglob("*.yaml")))
    except OSError:
        return {}
    with _lock:
        cached = _packages.get(path)
    if cached is not None and cached[0] == files:
        return cached[1]
    try:
        metrics, specs = load_package(path)
    except Exception:  # a broken package is the release check's to report; the pages show stored results only
        declared: dict[str, Declared] = {}
    else:
        declared = {m.name: Declared(m, specs.for_metric(m.name), str(path)) for m in metrics}
    with _lock:
        _packages[path] = (files, declared)
    return declared


def _plans(dashboard: Dashboard) -> list[tuple[Path, ReleasePlan]]:
    directory = plans_dir_of(dashboard.root)
    files = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    return [(e.path, e.plan) for e in (load_plan_file(p) for p in files) if e is not None]


def declarations(dashboard: Dashboard) -> dict[str, Declared]:
    """Every metric declared by a metrics package that a release plan of the repository names.

    Declarations are not data (no grant covers them): every plan's packages are read, whoever looks.
    """
    found: dict[str, Declared] = {}
    seen: set[Path] = set()
    for path, plan in _plans(dashboard):
        for cp in plan.checkpoints:
            for item in cp.items:
                if item.kind != "metrics" or item.package is None:
                    continue
                package = item.resolved_package(path.parent)
                if package in seen:
                    continue
                seen.add(package)
                for name, d in _package(package).items():
                    found.setdefault(name, d)
    return found


class Readable:
    """Which runs a viewer may read, each asked once per page."""

    def __init__(self, viewer: Viewer) -> None:
        self.principal = viewer.principal
        self._known: dict[str, bool] = {}

    def __call__(self, run: str | None) -> bool:
        if run is None:
            return True
        known = self._known.get(run)
        if known is None:
            known = self._known[run] = bool(self.principal.can_read(run))
        return known

    def alert(self, a: Alert) -> bool:
        """Whether every run the alert names is readable (its values come from them)."""
        return all(self(r) for r in (a.first_run, a.last_run, a.fired_run, a.resolved_run))


def readable_series(
    store: MetricStore, metric: str, can_read: Readable, data_id: Mapping[str, Any] | None = None
) -> Series:
    """``store.series(metric)`` with only the points of readable runs (runs renumbered, data IDs kept)."""
    try:
        s = store.series(metric, data_id=data_id)
    except VerifyError:
        return Series(
            metric,
            "",
            np.zeros(0),
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            [],
            np.zeros(0, dtype=np.int64),
            [],
        )
    keep_run = np.fromiter((can_read(r) for r in s.runs), dtype=bool, count=len(s.runs))
    if keep_run.all():
        return s
    new_index = np.cumsum(keep_run) - 1
    points = keep_run[s.run_index] if len(s) else np.zeros(0, dtype=bool)
    return Series(
        s.metric,
        s.unit,
        s.time[points],
        s.value[points],
        new_index[s.run_index[points]],
        [r for r, k in zip(s.runs, keep_run, strict=True) if k],
        s.data_id_index[points],
        s.data_ids,
    )


def until(s: Series, at: float | None) -> Series:
    """``s`` without the points recorded after time ``at`` (a past view; ``None``: all of it)."""
    if at is None:
        return s
    keep = s.time <= at
    return s if keep.all() else _points(s, keep)


def _points(s: Series, keep: np.ndarray) -> Series:
    """The points of ``s`` where ``keep`` is true (its runs and data IDs tables kept whole)."""
    return Series(
        s.metric,
        s.unit,
        s.time[keep],
        s.value[keep],
        s.run_index[keep],
        s.runs,
        s.data_id_index[keep],
        s.data_ids,
    )


@dataclass(frozen=True)
class PastView:
    """A metrics page read as of a release's audit entry: the entry, its time, the query string that says so."""

    release: str
    as_of: int
    at: float

    @property
    def query(self) -> str:
        return "?" + urlencode({"release": self.release, "as_of": self.as_of})


def _entry_time(dashboard: Dashboard, release: str, as_of: int) -> float | None:
    """The time of audit entry ``as_of`` of ``release`` (None when there is no such entry)."""
    events = EventLog(dashboard.state.butler.registry.db).events(release)
    return next((e.at for e in events if e.seq == as_of), None)


def past_view(request: Request, viewer: Viewer, release: str | None, as_of: str | None) -> PastView | None:
    """``?release=R&as_of=N`` as a past view: the clear 400 of the release pages for a malformed or unknown
    entry, their 404 for a release the viewer may not see; None without ``as_of``."""
    seq = parse_as_of(as_of)
    if seq is None:
        return None
    if not release:
        raise HTTPException(
            400,
            f"as_of={seq}: say which release's audit entry this is (?release=NAME&as_of={seq}): "
            "each release numbers its own audit trail; the links of a release page read as of an entry carry both.",
        )
    dashboard = dashboard_of(request)
    opened = open_release(dashboard, viewer, release, seq)  # 404 unless visible; 400 unless the entry exists
    at = next((e.at for e in reversed(opened.events()) if e.seq == seq), None)
    if at is None:  # a gap in the log (its verification names it): there is no such entry to stand at
        raise HTTPException(400, f"as_of={seq}: release {release[:80]} has no audit entry {seq}.")
    return PastView(opened.plan.release, seq, at)


def data_id_text(data_id: Mapping[str, Any]) -> str:
    """A data ID as people write it (``patch=2, skymap=synth, tract=0``); ``(whole run)`` for ``{}``."""
    return ", ".join(f"{k}={v}" for k, v in sorted(data_id.items())) or "(whole run)"


def _distinct_labels(data_ids: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short names for data IDs shown side by side: only the dimensions whose values differ (``patch=2``)."""
    if len(data_ids) < 2:
        return [data_id_text(d) for d in data_ids]
    keys = sorted({k for d in data_ids for k in d})
    varying = [k for k in keys if len({str(d.get(k)) for d in data_ids}) > 1]
    return [data_id_text({k: d[k] for k in varying if k in d}) for d in data_ids]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:.4g}"
    return f"{text} {unit}".strip()


def _levels(
    declared: Declared | None, unit: str, data_id: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The metric's spec levels in its own unit, least demanding first.

    Without ``data_id`` only specs that apply to every measurement (no ``metadata_query``); with one,
    those whose query the data ID does not contradict (``band`` read as ``filter_name`` too).
    """
    if declared is None:
        return []
    known = dict(data_id or {})
    if "band" in known:
        known.setdefault("filter_name", known["band"])
    out: dict[str, dict[str, Any]] = {}
    for spec in declared.specs:
        if not spec.level or spec.level in out:
            continue
        if spec.metadata_query and (
            data_id is None or any(k in known and known[k] != v for k, v in spec.metadata_query.items())
        ):
            continue
        try:
            value = spec.threshold.value * conversion_factor(spec.threshold.unit, unit)
        except VerifyError:
            continue
        op = spec.threshold.operator
        out[spec.level] = {
            "level": spec.level,
            "operator": op,
            "value": value,
            "text": f"{op} {_fmt(value, unit)}",
            "scoped": bool(spec.metadata_query),
        }
    return [out[level] for level in LEVELS if level in out]


def _latest_runs(store: MetricStore, names: Iterable[str], can_read: Readable) -> dict[str, str]:
    """Each metric's latest readable run (its latest run when readable; otherwise looked for in its series)."""
    latest = store.latest_runs()
    out: dict[str, str] = {}
    for name in names:
        run = latest.get(name)
        if run is not None and can_read(run):
            out[name] = run
            continue
        runs = readable_series(store, name, can_read).runs
        if runs:
            out[name] = runs[-1]
    return out


class Summaries:
    """`MetricStore.summary` per run, read once per page."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self._runs: dict[str, dict[str, MetricSummary]] = {}

    def __call__(self, run: str, metric: str) -> MetricSummary | None:
        if run not in self._runs:
            self._runs[run] = {s.metric: s for s in self.store.summary(run)}
        return self._runs[run].get(metric)


def _status(levels: list[dict[str, Any]], summary: MetricSummary) -> list[dict[str, Any]]:
    """Per spec level: the threshold (if declared) and what the run's arrival checks found."""
    by_level = {lv["level"]: lv for lv in levels}
    out = []
    for level in LEVELS:
        failed = summary.failed.get(level, 0)
        declared = by_level.get(level)
        if failed:
            state, words = "fail", f"fail {failed} of {summary.count}"
        elif declared is not None:
            state, words = "pass", "pass"
        else:
            state, words = "none", "no spec"
        out.append(
            {
                "level": level,
                "threshold": declared["text"] if declared else "",
                "state": state,
                "words": words,
            }
        )
    return out


def _alerts(
    book: AlertBook,
    can_read: Readable,
    metric: str | None = None,
    everything: bool = False,
    at: float | None = None,
    store: MetricStore | None = None,
) -> list[Alert]:
    """The readable alerts (open ones, or ``everything``), as they stand or as they stood at time ``at``."""
    if at is None:
        found = book.alerts(status=None if everything else ("pending", "firing"), metric=metric)
    else:
        history = None if store is None else (lambda m: store.outcomes(metric=m))
        found = [a for a in book.as_of(at, metric, history) if everything or a.open]
    return [a for a in found if can_read.alert(a)]


def _alert_row(a: Alert) -> dict[str, Any]:
    return {
        "id": a.alert_id,
        "metric": a.metric,
        "data_id": data_id_text(a.data_id),
        "level": a.level,
        "severity": a.severity,
        "status": a.status,
        "open": a.open,
        "runs": a.runs,
        "last": _fmt(a.last_value, a.unit),
        "first_run": a.first_run,
        "last_run": a.last_run,
        "resolved_run": a.resolved_run or "",
        "acknowledged_by": a.acknowledged_by or "",
        "ack_reason": a.ack_reason or "",
        "ack_time": a.ack_time,
        "first_time": a.first_time,
    }


# --- the list of metrics -----------------------------------------------------------------------------------


def metric_rows(dashboard: Dashboard, viewer: Viewer) -> list[dict[str, Any]]:
    """Every metric with a readable measurement: its latest readable run against each spec level."""
    store, book = _store(dashboard)
    can_read = Readable(viewer)
    declared = declarations(dashboard)
    latest = _latest_runs(store, store.metric_names(), can_read)
    summaries = Summaries(store)
    open_alerts: dict[str, list[Alert]] = {}
    for a in _alerts(book, can_read):
        open_alerts.setdefault(a.metric, []).append(a)
    rows = []
    for name, run in sorted(latest.items()):
        s = summaries(run, name)
        if s is None:
            continue
        d = declared.get(name)
        levels = _levels(d, s.unit)
        alerts = open_alerts.get(name, [])
        rows.append(
            {
                "name": name,
                "description": d.metric.description if d else "",
                "direction": d.metric.direction if d else None,
                "unit": s.unit,
                "run": run,
                "count": s.count,
                "mean": _fmt(s.mean),
                "range": f"{_fmt(s.min)} to {_fmt(s.max)}" if s.count > 1 else "",
                "status": _status(levels, s),
                "failing": any(x["state"] == "fail" for x in _status(levels, s)),
                "regressed": s.regressed,
                "alerts": len(alerts),
                "acknowledged": sum(1 for a in alerts if a.acknowledged),
            }
        )
    return rows


@router.get("/metrics", response_class=HTMLResponse)
def metrics_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """Every metric the viewer may see: latest value against minimum/design/stretch, open alerts."""
    dashboard = dashboard_of(request)
    _register(dashboard)
    rows = metric_rows(dashboard, viewer)
    _, book = _store(dashboard)
    can_read = Readable(viewer)
    alerts = [_alert_row(a) for a in _alerts(book, can_read)]
    return render(request, "metrics.html", title="Metrics", metrics=rows, levels=LEVELS, alerts=alerts)


@router.get("/metrics/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """Open alerts (acknowledged or not), with the acknowledge action; the latest resolved ones after."""
    dashboard = dashboard_of(request)
    _, book = _store(dashboard)
    every = _alerts(book, Readable(viewer), everything=True)
    open_ = [_alert_row(a) for a in every if a.open]
    closed = [_alert_row(a) for a in reversed(every) if not a.open][:50]
    return render(request, "metrics_alerts.html", title="Metric alerts", alerts=open_, closed=closed)


@router.post("/metrics/alerts/{alert_id}/acknowledge")
def acknowledge(
    request: Request,
    alert_id: int,
    viewer: ViewerDep,
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Acknowledge an open alert, as ``porter verify ack`` does, under the signed-in user's name."""
    dashboard = dashboard_of(request)
    _, book = _store(dashboard)
    can_read = Readable(viewer)
    try:
        alert = book.get(alert_id)
    except VerifyError:
        alert = None
    if alert is None or not can_read.alert(alert):
        raise HTTPException(404, f"There is no alert {alert_id} here (or you may not see it).")
    try:
        user = require_writer(request, viewer, csrf)
        if not viewer.principal.can_write(alert.last_run):
            raise PermissionError(
                f"You may not write run {alert.last_run}, so you may not acknowledge its alerts "
                "(porter admin grant gives write access)."
            )
        if not reason.strip():
            raise PermissionError("An acknowledgement needs a reason: say why the alert may stay open.")
        book.acknowledge(alert_id, user, reason.strip())
    except (VerifyError, PermissionError) as exc:
        return error_page(request, 403, str(exc))
    where = f"/metrics/{alert.metric}" if back == "metric" else "/metrics/alerts"
    return RedirectResponse(f"{base_of(request)}{where}#alert-{alert_id}", status_code=303)


# --- one metric ----------------------------------------------------------------------------------------------


def _outcomes(s: Series) -> list[Outcome]:
    runs, data_ids = s.runs, s.data_ids
    return [
        Outcome(s.metric, data_ids[d], runs[r], t, v, s.unit)
        for t, v, r, d in zip(
            s.time.tolist(), s.value.tolist(), s.run_index.tolist(), s.data_id_index.tolist(), strict=True
        )
    ]


def _changed_text(changed: Mapping[str, tuple[object, object]] | None) -> list[dict[str, str]]:
    if changed is None:
        return [{"what": "provenance", "before": "unknown", "after": "unknown"}]

    def show(v: object) -> str:
        if isinstance(v, list | tuple):
            return ", ".join(map(str, v)) or "(none)"
        return "(none)" if v in (None, "") else str(v)

    return [{"what": k, "before": show(a), "after": show(b)} for k, (a, b) in changed.items()]


def change_points(s: Series, provenance: Mapping[str, Provenance]) -> list[dict[str, Any]]:
    """The level shifts of the series' data IDs, grouped by the pair of runs they happened between.

    Each series is searched as it stood after each of its latest `PREFIXES` runs, so a shift stays
    shown after the metric recovers (the fix is a shift too, once it has lasted two runs).
    """
    groups: dict[int, list[Outcome]] = {}
    for o, d in zip(_outcomes(s), s.data_id_index.tolist(), strict=True):
        groups.setdefault(d, []).append(o)
    prefixes: list[list[Outcome]] = []
    for members in groups.values():
        members.sort(key=lambda o: (o.time, o.run))
        n = len(members)
        prefixes += [members[:end] for end in range(max(4, n - PREFIXES + 1), n + 1)]
    # the cheap screen over every prefix at once; only those with a shift are attributed to their runs
    shifted = detect_many([[o.value for o in p] for p in prefixes])
    found: dict[tuple[str, str, str], ChangePoint] = {}
    seen_at: dict[tuple[str, str, str], str] = {}
    for prefix, indices in zip(prefixes, shifted, strict=True):
        if not indices:
            continue
        for cp in change_points_many([prefix], provenance):
            k = (cp.key, cp.run_before, cp.run_after)
            found[k] = cp  # the longest prefix's: its means cover the most runs
            seen_at.setdefault(k, prefix[-1].run)
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for (key, before, after), cp in found.items():
        pair = pairs.setdefault(
            (before, after),
            {
                "run_before": before,
                "run_after": after,
                "time_after": cp.time_after,
                "changed": _changed_text(cp.changed),
                "shifts": [],
                "seen_at": seen_at[(key, before, after)],
            },
        )
        pair["shifts"].append(
            {
                "data_id": data_id_text(cp.data_id),
                "before": _fmt(cp.mean_before, cp.unit),
                "after": _fmt(cp.mean_after, cp.unit),
                "shift": f"{cp.shift:+.4g}",
            }
        )
    return sorted(pairs.values(), key=lambda p: (p["time_after"], p["run_after"]))


def _per_run(s: Series) -> list[dict[str, Any]]:
    """Per run of the series (in time order): its time, how many data IDs, min, mean, max, values by data ID."""
    rows: list[dict[str, Any]] = []
    order = np.argsort(s.run_index, kind="stable")
    bounds = np.searchsorted(s.run_index[order], np.arange(len(s.runs) + 1))
    for i, run in enumerate(s.runs):
        rows_i = order[bounds[i] : bounds[i + 1]]
        values = s.value[rows_i]
        rows.append(
            {
                "run": run,
                "time": float(s.time[rows_i[0]]) if len(rows_i) else None,
                "count": len(values),
                "min": float(values.min()) if len(values) else None,
                "mean": float(values.mean()) if len(values) else None,
                "max": float(values.max()) if len(values) else None,
                "by_data_id": {
                    int(d): float(v)
                    for d, v in zip(s.data_id_index[rows_i].tolist(), values.tolist(), strict=True)
                },
            }
        )
    return rows


def _releases(
    store: MetricStore, can_read: Readable, per_run: list[dict[str, Any]], unit: str
) -> list[dict[str, Any]]:
    """Release over release: the metric in the runs marked as each release's (readable ones), oldest first."""
    by_run = {r["run"]: r for r in per_run}
    grouped: dict[str, list[str]] = {}
    for run, _at, release in store.releases():
        if can_read(run) and run in by_run:
            grouped.setdefault(release, []).append(run)
    rows: list[dict[str, Any]] = []
    previous: float | None = None
    for release, runs in grouped.items():
        values = [v for r in runs for v in by_run[r]["by_data_id"].values()]
        mean = float(np.mean(values))
        rows.append(
            {
                "release": release,
                "runs": runs,
                "count": len(values),
                "mean": _fmt(mean, unit),
                "range": f"{_fmt(min(values))} to {_fmt(max(values))}" if len(values) > 1 else "",
                "change": "" if previous is None else f"{mean - previous:+.4g}",
            }
        )
        previous = mean
    return rows


def _short_labels(runs: Sequence[str]) -> list[str]:
    """Run names without the prefix they all share (``u/demo/drp/nightly/3`` → ``nightly/3``)."""
    if len(runs) < 2:
        return list(runs)
    parts = [r.split("/") for r in runs]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return ["/".join(p[common:]) for p in parts]


def _chart(
    metric: str,
    unit: str,
    per_run: list[dict[str, Any]],
    lines: list[tuple[str, list[float | None]]],
    levels: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    releases: list[dict[str, Any]],
) -> str:
    """The chart's data for metrics.js, as JSON text (put in a ``<script type="application/json">`` block)."""
    index = {r["run"]: i for i, r in enumerate(per_run)}
    data = {
        "metric": metric,
        "unit": unit,
        "runs": [r["run"] for r in per_run],
        "labels": _short_labels([r["run"] for r in per_run]),
        "lines": [{"label": label, "values": values} for label, values in lines],
        "levels": [{k: lv[k] for k in ("level", "operator", "value")} for lv in levels],
        "changes": [
            {"index": index[c["run_after"]], "label": f"{c['run_before']} → {c['run_after']}"}
            for c in changes
            if c["run_after"] in index
        ],
        "releases": [
            {"index": index[run], "release": r["release"]}
            for r in releases
            for run in r["runs"]
            if run in index
        ],
    }
    # "</" cannot end the block early: JSON allows "\/" for "/"
    return json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")


def _parse_data_id(raw: str | None, s: Series, used: Sequence[int]) -> int | None:
    """``?data_id=`` (as written in the select: ``patch=2, skymap=synth, tract=0``) as an index in ``s.data_ids``."""
    if raw is None or raw.strip() in ("", "all"):
        return None
    wanted = ", ".join(t.strip() for t in raw.split(",") if t.strip())
    for i in used:  # only data IDs measured in readable runs: the others are not there for this viewer
        if data_id_text(s.data_ids[i]) == wanted:
            return i
    raise HTTPException(
        400,
        f"{s.metric} has no measurement over the data ID {raw[:120]!r}: choose one from the page's list, "
        "written as dimension=value pairs separated by commas (patch=2, skymap=synth_skymap, tract=0).",
    )


@router.get("/metrics/{metric}", response_class=HTMLResponse)
def metric_page(
    request: Request,
    metric: str,
    viewer: ViewerDep,
    data_id: str | None = None,
    release: str | None = None,
    as_of: str | None = None,
) -> HTMLResponse:
    """One metric over runs: chart and table, spec levels, change-points, releases compared, alerts.

    ``?release=R&as_of=N``: as it stood just after audit entry N of release R (see the module's notes).
    """
    dashboard = dashboard_of(request)
    past = past_view(request, viewer, release, as_of)
    at = past.at if past is not None else None
    store, book = _store(dashboard)
    can_read = Readable(viewer)
    s = until(readable_series(store, metric, can_read), at)
    if not len(s):
        raise HTTPException(
            404,
            f"There is no metric {metric[:120]!r} here (or you may not see its measurements)"
            + (f", nor was there by audit entry {past.as_of} of release {past.release}." if past else "."),
        )
    used = sorted(set(s.data_id_index.tolist()), key=lambda i: data_id_text(s.data_ids[i]))
    selected = _parse_data_id(data_id, s, used)
    if selected is not None:
        s = _points(s, s.data_id_index == selected)
    declared = declarations(dashboard).get(metric)
    unit = s.unit
    per_run = [r for r in _per_run(s) if r["count"]]
    levels = _levels(declared, unit, s.data_ids[selected] if selected is not None else None)
    provenance = {p.run: p for p in store.runs() if can_read(p.run) and (at is None or p.time <= at)}
    changes = change_points(s, provenance)
    releases = _releases(store, can_read, per_run, unit)
    marked = {run: r["release"] for r in releases for run in r["runs"]}

    shown = [selected] if selected is not None else [i for i in used if i in set(s.data_id_index.tolist())]
    per_data_id = selected is not None or len(shown) <= MANY
    if per_data_id:
        names = _distinct_labels([s.data_ids[i] for i in shown])
        lines = [
            (name, [r["by_data_id"].get(i) for r in per_run]) for name, i in zip(names, shown, strict=True)
        ]
    else:
        lines = [
            ("mean", [r["mean"] for r in per_run]),
            ("min", [r["min"] for r in per_run]),
            ("max", [r["max"] for r in per_run]),
        ]
    summaries = Summaries(store)
    declared_levels = {lv["level"] for lv in levels}
    table = []
    outcomes: dict[str, Outcome] = {}
    if selected is not None:
        key = data_id_text(s.data_ids[selected])
        outcomes = {
            o.run: o
            for o in store.outcomes(metric=metric)
            if data_id_text(o.data_id) == key and can_read(o.run) and (at is None or o.time <= at)
        }
    for r in per_run[-TABLE_RUNS:]:
        row: dict[str, Any] = {
            "run": r["run"],
            "time": r["time"],
            "release": marked.get(r["run"], ""),
            "count": r["count"],
            "min": _fmt(r["min"]),
            "mean": _fmt(r["mean"]),
            "max": _fmt(r["max"]),
            "values": [_fmt(r["by_data_id"].get(i)) for i in shown] if per_data_id else [],
        }
        if selected is not None:
            o = outcomes.get(r["run"])
            row["levels"] = [
                {
                    "level": lv,
                    "state": "none"
                    if o is None or lv not in o.levels
                    else ("pass" if o.levels[lv] else "fail"),
                    "failed": 0,
                }
                for lv in LEVELS
            ]
            row["regressed"] = bool(o and o.regressed)
            row["baseline"] = _fmt(o.baseline if o else None)
        else:
            summary = summaries(r["run"], metric)
            row["levels"] = [
                {
                    "level": lv,
                    "state": "fail"
                    if summary and summary.failed.get(lv)
                    else ("pass" if lv in declared_levels else "none"),
                    "failed": summary.failed.get(lv, 0) if summary else 0,
                }
                for lv in LEVELS
            ]
            row["regressed"] = summary.regressed if summary else 0
        table.append(row)

    every = _alerts(book, can_read, metric=metric, everything=True, at=at, store=store)
    options = [data_id_text(s.data_ids[i]) for i in used][:OPTIONS]
    return render(
        request,
        "metrics_metric.html",
        title=metric if past is None else f"{metric} as of {past.release} #{past.as_of}",
        metric=metric,
        past=past,
        as_of=past.as_of if past else None,
        unit=unit,
        declared=declared,
        levels=levels,
        scoped=[sp for sp in (declared.specs if declared else []) if sp.metadata_query and sp.level],
        data_ids=options,
        more_data_ids=max(0, len(used) - OPTIONS),
        n_data_ids=len(used),
        selected=data_id_text(s.data_ids[selected]) if selected is not None else "",
        per_data_id=per_data_id,
        columns=[
            {"label": label, "full": data_id_text(s.data_ids[i])}
            for label, i in zip(_distinct_labels([s.data_ids[i] for i in shown]), shown, strict=True)
        ]
        if per_data_id
        else [],
        chart=_chart(metric, unit, per_run, lines, levels, changes, releases),
        table=table,
        table_cut=max(0, len(per_run) - TABLE_RUNS),
        changes=changes,
        releases=releases,
        alerts=[_alert_row(a) for a in every if a.open],
        closed=[_alert_row(a) for a in reversed(every) if not a.open][:20],
        levels_all=LEVELS,
    )


# --- one run's metrics (the run page's section) -------------------------------------------------------------


def run_metrics(dashboard: Dashboard, run: str) -> list[dict[str, Any]]:
    """What ``run`` measured, per metric (`MetricStore.summary`): count, range, mean, each spec level's
    pass/fail as checked on arrival, regressions.  The caller has checked that the viewer may read the run."""
    store, _ = _store(dashboard)
    declared = declarations(dashboard)
    rows = []
    for s in store.summary(run):
        d = declared.get(s.metric)
        status = _status(_levels(d, s.unit), s)
        rows.append(
            {
                "name": s.metric,
                "unit": s.unit,
                "count": s.count,
                "min": _fmt(s.min),
                "mean": _fmt(s.mean),
                "max": _fmt(s.max),
                "status": status,
                "failing": any(x["state"] == "fail" for x in status),
                "regressed": s.regressed,
            }
        )
    return rows


# --- the release page's metrics section ----------------------------------------------------------------------


def release_metrics(
    dashboard: Dashboard, plan: ReleasePlan, viewer: Viewer, as_of: int | None = None
) -> dict[str, Any]:
    """For ``_release_metrics.html``: each ``metrics`` item of the plan with its gated metrics' latest
    readable value in the release's runs against the item's level, the metric at each marked release,
    and its open alerts.

    ``as_of`` (an audit entry of the release, checked by the release page): as they stood at that
    entry's time, runs recorded after it left out, alerts in their state then; ``query`` is what the
    links to the metric pages carry to show them as of the same entry.
    """
    items = [(cp.name, i) for cp in plan.checkpoints for i in cp.items if i.kind == "metrics"]
    past = None
    if as_of is not None:
        at = _entry_time(dashboard, plan.release, as_of)
        past = PastView(plan.release, as_of, at) if at is not None else None
    query = past.query if past is not None else ""
    if not items:
        return {"items": [], "query": query, "past": past}
    at = past.at if past is not None else None
    store, book = _store(dashboard)
    can_read = Readable(viewer)
    butler = dashboard.state.butler
    base = plans_dir_of(dashboard.root)
    stored = [p for p in store.runs() if can_read(p.run) and (at is None or p.time <= at)]
    summaries = Summaries(store)
    open_alerts: dict[str, list[Alert]] = {}
    for a in _alerts(book, can_read, at=at, store=store):
        open_alerts.setdefault(a.metric, []).append(a)
    marked = [
        (run, release)
        for run, when, release in store.releases()
        if can_read(run) and (at is None or when <= at)
    ]
    out = []
    for checkpoint, item in items:
        package = item.resolved_package(base) if item.package is not None else None
        declared = _package(package) if package is not None else {}
        gated = sorted(n for n, d in declared.items() if set(item.tags) <= set(d.metric.tags))
        names = list(item.runs) or list(item.collections or plan.collections)
        wanted = set(names)
        if not item.runs:
            for name in names:
                with contextlib.suppress(
                    Exception
                ):  # a collection not (yet) in the repository stands for itself
                    wanted.update(i.name for i in butler.collections.query_info(name, flatten_chains=True))
        runs = [p.run for p in stored if p.run in wanted or (p.collection and p.collection in wanted)]
        rows = []
        for name in gated:
            d = declared[name]
            latest = next(((r, sm) for r in reversed(runs) if (sm := summaries(r, name)) is not None), None)
            history = []
            for run, release in marked:
                sm = summaries(run, name)
                if sm is not None:
                    history.append({"release": release, "mean": _fmt(sm.mean, sm.unit)})
            level = next(
                (
                    lv
                    for lv in _levels(d, latest[1].unit if latest else d.metric.unit)
                    if lv["level"] == item.level
                ),
                None,
            )
            alerts = open_alerts.get(name, [])
            row: dict[str, Any] = {
                "name": name,
                "threshold": level["text"] if level else f"no {item.level} spec",
                "history": history,
                "alerts": len(alerts),
                "unacknowledged": sum(1 for a in alerts if not a.acknowledged),
            }
            if latest is None:
                row.update(run="", value="not measured", state="fail", words="not measured")
            else:
                run, sm = latest
                failed = sm.failed.get(item.level, 0)
                row.update(
                    run=run,
                    value=_fmt(sm.mean, sm.unit) + (f" (mean of {sm.count})" if sm.count > 1 else ""),
                    state="fail" if failed else "pass",
                    words=f"fail {failed} of {sm.count}" if failed else "pass",
                )
            rows.append(row)
        out.append(
            {
                "checkpoint": checkpoint,
                "item": item.name,
                "tags": list(item.tags),
                "level": item.level,
                "metrics": rows,
                "runs": len(runs),
            }
        )
    return {"items": out, "query": query, "past": past}
