"""The release pages: all releases side by side, one release, one checkpoint (hand-over).

Every page takes ``?as_of=N``: the release as it stood just after audit entry
N, so what was known at a sign-off can be shown later with the same URL.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from ..release import Event, Release, ReleaseState
from ._releases import open_release, parse_as_of, visible_plans
from ._render import dashboard_of, render
from ._session import Viewer, require_viewer

__all__ = ["router"]

router = APIRouter()

ViewerDep = Annotated[Viewer, Depends(require_viewer)]

_ACTION_WORDS = {
    "check": "ran the checks",
    "ship": "shipped",
    "signoff": "signed off",
    "override-signoff": "overrode the gate and signed off",
    "waive": "waived a check",
    "reopen": "reopened",
    "finding": "recorded a finding",
    "finding-close": "closed a finding",
    "confirm": "confirmed an item",
    "smoke": "ran smoke tests",
    "promote": "promoted",
    "ready": "marked the release ready",
    "acknowledge": "acknowledged an alert",
}


def _gate(state: ReleaseState, blockers: list[dict[str, str]]) -> dict[str, Any]:
    """The gate at the top of a release page: ready, or blocked and by what (``blockers``: `Release.status`'s)."""
    return {
        "ready": state.ready is not None,
        "ready_by": state.ready.actor if state.ready is not None else "",
        "blockers": blockers,
        "open": not blockers,
    }


def _summary(event: Event) -> str:
    """One line of the audit trail: what the entry did, in words."""
    p = event.payload
    words = _ACTION_WORDS.get(event.action, event.action)
    if event.action == "check":
        results = p.get("results", [])
        passed = sum(r.get("status") == "pass" for r in results)
        return f"{words}: {passed}/{len(results)} pass"
    if event.action in ("waive", "reopen", "override-signoff"):
        what = p.get("check", "")
        return f"{words} {what}: {p.get('reason', '')}".replace("  ", " ")
    if event.action == "finding":
        return f"{words} ({p.get('severity')}) #{p.get('id')}: {p.get('text')}"
    if event.action == "finding-close":
        return f"{words} #{p.get('id')}: {p.get('resolution', '')}"
    if event.action == "confirm":
        return f"{words} {p.get('item')}" + (f": {p['comment']}" if p.get("comment") else "")
    if event.action in ("smoke", "promote"):
        return f"{words} ({p.get('environment', '')})"
    return words


def _audit(release: Release, events: list[Event]) -> dict[str, Any]:
    problems = release.verify_audit() if release.as_of is None else []
    return {
        "entries": [
            {
                "seq": e.seq,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "checkpoint": e.checkpoint,
                "summary": _summary(e),
                "hash": e.hash[:12],
            }
            for e in reversed(events)
        ],
        "problems": problems,
        "verified": release.as_of is None and not problems,
    }


def _waivers(events: list[Event]) -> list[dict[str, Any]]:
    """Waivers and overridden gates, with who and why."""
    return [
        {
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "checkpoint": e.checkpoint,
            "kind": "override" if e.action == "override-signoff" else "waiver",
            "what": e.payload.get("check") or "; ".join(e.payload.get("overridden", [])),
            "reason": e.payload.get("reason", ""),
        }
        for e in events
        if e.action in ("waive", "override-signoff")
    ]


_ROW_TTL = 2.0
"""Seconds a release's row on the releases list may be reused while its plan and audit log have not moved: the
row's blockers re-verify every shipped delivery against its manifest (datastore look-ups, Parquet reads), most
of the list's time; the release's own page always re-verifies."""
_rows: dict[tuple[str, int, int, str], tuple[float, dict[str, Any]]] = {}
_rows_lock = threading.Lock()


def _summary_row(release: Release) -> dict[str, Any]:
    """A release at a glance: gate, hand-overs signed, the next one due, late items, open findings."""
    status = release.status()
    checkpoints = [r for r in status["rows"] if r["kind"] == "checkpoint"]
    upcoming = [r for r in checkpoints if not r["signed by"]]
    return {
        "name": release.plan.release,
        "description": release.plan.description,
        "validation": status["validation"],
        "ready": status["ready"],
        "blockers": len(status["blockers"]),
        "signed": sum(1 for r in checkpoints if r["signed by"]),
        "checkpoints": len(checkpoints),
        "next": upcoming[0] if upcoming else None,
        "late": sum(1 for r in status["rows"] if r["state"] == "late"),
        "open_findings": sum(1 for f in status["findings"] if not f.get("closed_by")),
    }


def _release_row(release: Release) -> dict[str, Any]:
    """One release's row of the list, reused for `_ROW_TTL` seconds while its plan file and audit log stay put
    (the log's head, its last entry's number and hash, one indexed look-up: not the whole log)."""
    seq, digest = release.log.head(release.plan.release)
    key = (str(release.plan_path), release.plan_path.stat().st_mtime_ns, seq, digest)
    now = time.monotonic()
    with _rows_lock:
        hit = _rows.get(key)
    if hit is not None and now - hit[0] < _ROW_TTL:
        return hit[1]
    row = _summary_row(release)
    with _rows_lock:
        if len(_rows) > 1024:
            _rows.clear()
        _rows[key] = (now, row)
    return row


@router.get("/", response_class=HTMLResponse)
def releases(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """Every release the viewer may see, side by side: gate, hand-overs signed, next deadline, findings."""
    dashboard = dashboard_of(request)
    rows = [
        _release_row(Release(e.plan, e.path, dashboard.state.butler).pin())
        for e in visible_plans(dashboard, viewer)
    ]
    return render(request, "releases.html", title="Releases", releases=rows)


@router.get("/releases/{name}", response_class=HTMLResponse)
def release_page(request: Request, name: str, viewer: ViewerDep, as_of: str | None = None) -> HTMLResponse:
    """One release: gate, hand-over timeline, checkpoints, findings, waivers and overrides, audit trail."""
    release = open_release(dashboard_of(request), viewer, name, parse_as_of(as_of))
    events = release.events()
    state = ReleaseState.fold(events, release.plan.warnings_block)
    status = release.status()
    return render(
        request,
        "release.html",
        title=f"Release {name}",
        release=release.plan,
        as_of=release.as_of,
        gate=_gate(state, status["blockers"]),
        status=status,
        waivers=_waivers(events),
        audit=_audit(release, events),
        people={p.name: p for p in release.plan.people},
    )


@router.get("/releases/{name}/checkpoints/{checkpoint}", response_class=HTMLResponse)
def checkpoint_page(
    request: Request, name: str, checkpoint: str, viewer: ViewerDep, as_of: str | None = None
) -> HTMLResponse:
    """One hand-over: its shipping list with every item's latest check (samples included), history, actions."""
    release = open_release(dashboard_of(request), viewer, name, parse_as_of(as_of))
    cp = next((c for c in release.plan.checkpoints if c.name == checkpoint), None)
    if cp is None:
        raise HTTPException(404, f"Release {name} has no checkpoint {checkpoint[:80]!r}.")
    events = release.events()
    state = ReleaseState.fold(events, release.plan.warnings_block)
    waived = state.waivers.get(cp.name, {})
    failing = {r["name"] for r in state.failing(cp.name)}
    results = [
        {
            **r,
            "waived_by": waived[r["name"]].actor if r["name"] in waived else "",
            "blocking": r["name"] in failing,
        }
        for r in state.results(cp.name)
    ]
    history = [
        {
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "statuses": {r["name"]: r["status"] for r in e.payload.get("results", [])},
        }
        for e in events
        if e.action == "check" and e.checkpoint == cp.name
    ]
    sign = state.signed.get(cp.name)
    return render(
        request,
        "checkpoint.html",
        title=f"{name} · {cp.name}",
        release=release.plan,
        as_of=release.as_of,
        checkpoint=cp,
        results=results,
        history=history[-20:],
        signers=release.plan.signers_of(cp),
        deciders=[p.name for p in release.plan.people if p.decider],
        confirmed={  # confirmations that still count: made after the latest check run
            item: c
            for item, c in state.confirmations.get(cp.name, {}).items()
            if cp.name not in state.checks or c["seq"] > state.checks[cp.name].seq
        },
        signed=sign,
        problems=release.signoff_problems(cp.name, state) if sign is None else [],
        findings=[f for f in state.findings.values() if f.checkpoint == cp.name],
        shipped=state.shipments.get(cp.name),
        waivers=[w for w in _waivers(events) if w["checkpoint"] == cp.name],
    )
