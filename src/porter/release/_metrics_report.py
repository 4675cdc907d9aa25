"""The release report's metrics section: each gated metric's latest values against its levels, its
values across the releases marked in the metric store, and its open alerts.

Read from the metric store when the report is written (the check results above it show what the gate
saw at its last run).  Server-side HTML like the rest of the report: tables and inline SVG sparklines,
no scripts.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..errors import PorterError

if TYPE_CHECKING:
    from ..verify import Alert, Metric, MetricStore, SpecificationSet
    from ._plan import Item
    from ._release import Release

__all__ = ["metrics_section"]

MAX_ROWS = 50
"""Data IDs shown per metric (the worst first); the rest are counted."""


def _sparkline(values: list[float | None]) -> str:
    """The values (None: not measured) as a small inline SVG line, oldest left."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) < 2:
        return ""
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span = (hi - lo) or 1.0
    step = 100 / max(len(values) - 1, 1)
    coords = " ".join(f"{i * step:.1f},{18 - (v - lo) / span * 16:.1f}" for i, v in points)
    return (
        '<svg width="104" height="20" viewBox="-2 0 104 20" xmlns="http://www.w3.org/2000/svg">'
        f'<polyline fill="none" stroke="#3b6ea5" stroke-width="1.5" points="{coords}"/></svg>'
    )


def _levels_text(specs: SpecificationSet, metric: Metric) -> str:
    from ..verify import LEVELS

    parts = []
    for level in LEVELS:
        shown = {
            f"{s.threshold.operator} {s.threshold.value:g} {s.threshold.unit}".strip()
            + (f" ({', '.join(f'{k}={v}' for k, v in s.metadata_query.items())})" if s.metadata_query else "")
            for s in specs.for_metric(metric.name)
            if s.level == level
        }
        if shown:
            parts.append(f"{level} {'; '.join(sorted(shown))}")
    return " · ".join(parts) or "no specifications"


def _fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:.4g} {unit}".strip()


def _metric_block(
    rel: Release,
    item: Item,
    metric: Metric,
    specs: SpecificationSet,
    store: MetricStore,
    runs: list[str],
    releases: list[tuple[str, list[str]]],
    alerts: list[Alert],
) -> list[str]:
    from ..verify import LEVELS
    from ._metrics import latest_outcomes
    from ._report import _table

    out = [
        f"<h4>{html.escape(metric.name)} <span class='muted'>({html.escape(metric.unit or 'dimensionless')}"
        f"{', ' + metric.direction + ' is better' if metric.direction else ''})</span></h4>",
        f"<p class='muted'>{html.escape(metric.description.strip())}</p>",
        f"<p>Levels: {html.escape(_levels_text(specs, metric))}</p>",
    ]
    now = latest_outcomes(store, metric.name, runs)
    past = [(name, latest_outcomes(store, metric.name, r)) for name, r in releases]
    keys = sorted(set(now) | {k for _, values in past for k in values})
    if not keys:
        out.append(f"<p class='fail'>not measured in {html.escape(rel.plan.release)}'s runs</p>")
    reverse = metric.direction != "higher"
    keys.sort(key=lambda k: now[k].value if k in now else float("-inf"), reverse=reverse)
    rows: list[dict[str, Any]] = []
    for key in keys[:MAX_ROWS]:
        o = now.get(key)
        data_id = o.data_id if o is not None else next(v[key].data_id for _, v in past if key in v)
        row: dict[str, Any] = {
            "data ID": " ".join(f"{k}={v}" for k, v in sorted(data_id.items())) or "(whole run)",
            "run": o.run if o is not None else "—",
            f"{rel.plan.release} (this release)": _fmt(o.value if o else None, metric.unit),
        }
        for level in LEVELS:
            passed = o.levels.get(level) if o is not None else None
            row[level] = "—" if passed is None else "pass" if passed else "fail"
        for name, values in past:
            row[name] = _fmt(values[key].value if key in values else None, metric.unit)
        series = [values[key].value if key in values else None for _, values in past]
        row["across releases"] = (series, o.value if o is not None else None)
        rows.append(row)
    for r in rows:
        series, latest = r["across releases"]
        r["across releases"] = _Raw(_sparkline([*series, latest]))
    out.append(_html_table(rows))
    if len(keys) > MAX_ROWS:
        out.append(f"<p class='muted'>… and {len(keys) - MAX_ROWS} more data IDs</p>")
    mine = [a for a in alerts if a.metric == metric.name]
    out.append("<p>Open alerts:</p>")
    out.append(
        _table(
            [
                {
                    "alert": a.alert_id,
                    "status": a.status,
                    "severity": a.severity,
                    "data ID": " ".join(f"{k}={v}" for k, v in sorted(a.data_id.items())) or "(whole run)",
                    "level": a.level,
                    "runs failing": a.runs,
                    "last": _fmt(a.last_value, a.unit),
                    "since": a.first_run,
                    "acknowledged": f"{a.acknowledged_by}: {a.ack_reason}" if a.acknowledged_by else "no",
                }
                for a in mine
            ]
        )
    )
    return out


class _Raw(str):
    """A cell that is HTML already (a sparkline), not text to escape."""


def _html_table(rows: list[dict[str, Any]]) -> str:
    """Like the report's tables, with `_Raw` cells left as they are and pass/fail cells coloured."""
    if not rows:
        return '<p class="muted">none</p>'
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            text = v if isinstance(v, _Raw) else html.escape(str(v))
            cls = v if v in ("pass", "fail") else ""
            cells.append(f'<td class="{cls}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def metrics_section(rel: Release) -> str:
    """The report's "Quality metrics" section: one block per ``metrics`` item of the plan."""
    items = [(c, i) for c in rel.plan.checkpoints for i in c.items if i.kind == "metrics"]
    if not items:
        return ""
    from ..verify import AlertBook, MetricStore
    from ._metrics import gated_metrics, marked_releases, release_runs

    out = ["<h2>Quality metrics</h2>"]
    db = rel.butler.registry.db
    store = MetricStore(db)
    alerts = AlertBook(db).alerts(status=("pending", "firing"))
    marked = marked_releases(store)
    for cp, item in items:
        out.append(f"<h3>{html.escape(cp.name)}: {html.escape(item.name)}</h3>")
        try:
            metrics, specs = gated_metrics(item, rel.plan_path.parent)
            where = release_runs(rel.butler, rel.plan, item, store)
        except PorterError as exc:
            out.append(f"<p class='error'>{html.escape(str(exc))}</p>")
            continue
        out.append(
            f"<p>Metrics of <code>{html.escape(str(item.package))}</code> tagged "
            f"{html.escape(', '.join(item.tags))}, gated at <b>{item.level}</b>; the release's runs: "
            f"{html.escape(', '.join(where.runs) or 'none found')}; previous release: "
            f"{html.escape(where.previous or 'none marked')}.</p>"
        )
        names = list(dict.fromkeys(rel_name for _, _, rel_name in marked if rel_name != rel.plan.release))
        releases = [(n, [r for r, _, m in marked if m == n]) for n in names]
        for metric in metrics:
            out += _metric_block(rel, item, metric, specs, store, where.runs, releases, alerts)
    return "\n".join(out)
