"""The release report: one self-contained HTML file (no scripts, no external assets).

It holds the status table, every checkpoint's latest checks with their
samples, completeness per dataset type as a bar chart, the history of the
release's check runs, the latest results of every release planned beside it
on the same repository, open and closed findings, and the audit log's integrity.
"""

from __future__ import annotations

import datetime
import html
from typing import TYPE_CHECKING, Any

from ._metrics_report import metrics_section
from ._release import waiver_covers

if TYPE_CHECKING:
    from ._events import Event
    from ._release import Release

__all__ = ["html_report"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f8}.pass{color:#17803d;font-weight:600}.fail,.error,.late{color:#b42318;font-weight:600}
.warn,.risk{color:#b26b00;font-weight:600}.muted{color:#777}code{font-size:.85em}details{margin:.3em 0}
"""


def _cls(text: str) -> str:
    t = str(text)
    if t.startswith("late") or t in ("fail", "error"):
        return "fail"
    if t in ("warn", "at risk", "pending"):
        return "warn"
    if t in ("pass", "on time") or t.startswith("done"):
        return "pass"
    return ""


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{_cls(r.get(c, ""))}">{html.escape(str(r.get(c, "")))}</td>' for c in cols)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(values: list[tuple[str, float]], unit: str = "%") -> str:
    """A horizontal bar chart as inline SVG (values 0..100)."""
    if not values:
        return '<p class="muted">no data</p>'
    height = 22 * len(values) + 10
    parts = [f'<svg width="640" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="12">']
    for i, (label, v) in enumerate(values):
        y = 5 + 22 * i
        w = max(0.0, min(100.0, v)) * 4
        color = "#17803d" if v >= 100 else "#b26b00" if v >= 95 else "#b42318"
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(label[:28])}</text>')
        parts.append(f'<rect x="200" y="{y}" width="{w:.1f}" height="16" fill="{color}"/>')
        parts.append(f'<text x="{205 + w:.1f}" y="{y + 13}">{v:.1f}{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _waiver_note(waiver: Event | None, result: dict[str, Any], shipped: str | None) -> str:
    """How a result's waiver stands, with its author and reason (nothing if it has none, or it passes)."""
    if waiver is None or result["status"] == "pass":
        return ""
    state = "waived" if waiver_covers(waiver, result, shipped) else "waiver no longer applies"
    return f" ({state} by {waiver.actor}: {waiver.payload.get('reason', '')})"


def html_report(rel: Release, today: datetime.date | None = None) -> str:
    status = rel.status(today)
    state = rel.state()
    events = rel.events()
    problems = rel.verify_audit()
    blockers = status["blockers"]  # computed once: it re-reads every shipped delivery's checksums
    head = rel.audit_head()
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(rel.plan.release)} release report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Release {html.escape(rel.plan.release)}</h1><p>{html.escape(rel.plan.description)}</p>",
        f"<p class='muted'>Generated {datetime.datetime.now().isoformat(timespec='seconds')} from {html.escape(str(rel.plan_path))};"
        f" repository {html.escape(rel.plan.repository)}.</p>",
        "<p><b>" + ("Ready to go public." if status["ready"] else "Not yet ready to go public.") + "</b></p>",
        "<div class='blockers'><h2>What blocks going public</h2>"
        + (
            _table(blockers)
            if blockers
            else "<p>Nothing: <code>porter release ready</code> would succeed.</p>"
        )
        + "</div>",
        f"<p class='muted'>Audit log head at this report: event {head['seq']}, hash <code>{head['hash']}</code>.</p>",
        "<h2>Checkpoints and milestones</h2>",
        _table(status["rows"]),
    ]
    completeness: list[tuple[str, float]] = []
    out.append("<h2>Checks</h2>")
    for cp in rel.plan.checkpoints:
        run = state.checks.get(cp.name)
        out.append(
            f"<h3>{html.escape(cp.name)}: {html.escape(cp.title or cp.from_team + ' → ' + cp.to_team)}</h3>"
        )
        if run is None:
            out.append('<p class="muted">checks not run yet</p>')
            continue
        waived = state.waivers.get(cp.name, {})
        rows = []
        for r in state.results(cp.name):
            rows.append(
                {
                    "check": r["name"],
                    "status": r["status"]
                    + _waiver_note(waived.get(r["name"]), r, state.content_hash(cp.name)),
                    "value": r.get("value"),
                    "expected": r.get("expected"),
                    "message": r.get("message"),
                    "seconds": round(r.get("seconds") or 0, 3),
                }
            )
            if (
                str(r.get("check", "")).startswith("completeness")
                and isinstance(r.get("value"), str)
                and "(" in r["value"]
            ):
                pct = float(r["value"].split("(")[1].rstrip("%)"))
                completeness.append((r["check"].removeprefix("completeness "), pct))
        out.append(_table(rows))
        for r in run.payload["results"]:
            if r.get("sample") and r["status"] != "pass":
                every = (
                    f"<br>all of them: <code>{html.escape(r['details'])}</code>" if r.get("details") else ""
                )
                out.append(
                    f"<details><summary>{html.escape(r['name'])}: sample</summary><code>"
                    f"{html.escape(str(r['sample'][:20]))}</code>{every}</details>"
                )
    out += ["<h2>Completeness per dataset type</h2>", _bars(completeness)]
    history = []
    for e in events:
        if e.action == "check":
            results = e.payload["results"]
            n = len(results)
            history.append(
                {
                    "when": datetime.datetime.fromtimestamp(e.at).isoformat(timespec="minutes"),
                    "checkpoint": e.checkpoint,
                    "passed": sum(r["status"] == "pass" for r in results),
                    "of": n,
                }
            )
    out += ["<h2>Check history</h2>", _table(history)]
    out += ["<h2>Across releases</h2>", _table(_across_releases(rel))]
    out.append(metrics_section(rel))
    out += [
        "<h2>Findings</h2>",
        _table(
            [
                {
                    k: f[k]
                    for k in ("id", "severity", "checkpoint", "text", "opened_by", "closed_by", "resolution")
                }
                for f in status["findings"]
            ]
        ),
    ]
    decisions = [
        {
            "when": datetime.datetime.fromtimestamp(e.at).isoformat(timespec="minutes"),
            "what": e.action,
            "checkpoint": e.checkpoint,
            "check": e.payload.get("check", "")
            or (f"alert {e.payload['alert']} on {e.payload.get('metric')}" if "alert" in e.payload else ""),
            "by": e.actor,
            "reason": e.payload.get("reason", ""),
            "overridden": "; ".join(e.payload.get("overridden", [])),
        }
        for e in events
        if e.action in ("waive", "acknowledge", "override-signoff", "reopen", "promote")
    ]
    out += ["<h2>Waivers, overrides, reopenings and promotions</h2>", _table(decisions)]
    out.append("<h2>Audit log</h2>")
    out.append(
        f"<p>{len(events)} events; chain "
        + (
            "<span class='pass'>intact</span>"
            if not problems
            else "<span class='fail'>BROKEN: " + html.escape("; ".join(problems)) + "</span>"
        )
        + ".</p>"
    )
    out.append(
        _table(
            [
                {
                    "seq": e.seq,
                    "at": datetime.datetime.fromtimestamp(e.at).isoformat(timespec="seconds"),
                    "actor": e.actor,
                    "action": e.action,
                    "checkpoint": e.checkpoint,
                }
                for e in events[-200:]
            ]
        )
    )
    out.append("</body></html>")
    return "\n".join(out)


def _across_releases(rel: Release) -> list[dict[str, Any]]:
    """Each release planned beside this one (same directory, same repository): its latest check results per checkpoint."""
    from ._events import EventLog
    from ._plan import PlanError, load_plan

    rows = []
    log = EventLog(rel.butler.registry.db)
    for path in sorted(rel.plan_path.parent.glob("*.yaml")):
        try:
            plan = load_plan(path)
        except PlanError:
            continue
        if plan.repository != rel.plan.repository:
            continue
        latest: dict[str, list[dict[str, Any]]] = {}
        for e in log.events(plan.release):
            if e.action == "check":
                latest[e.checkpoint] = e.payload["results"]
        row: dict[str, Any] = {"release": plan.release}
        for cp in rel.plan.checkpoints:
            results = latest.get(cp.name)
            row[cp.name] = f"{sum(r['status'] == 'pass' for r in results)}/{len(results)}" if results else "—"
        rows.append(row)
    return rows
