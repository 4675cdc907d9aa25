"""What a person may do from the dashboard, under the same rules as the CLI: sign off, waive, findings.

Each action is a form POST carrying the session's CSRF token; it is done by
the release's own methods (`Release.signoff`, `Release.waive` …), which check
the plan's roles and the gate and write the audit log, so the dashboard cannot
do anything ``porter release`` would refuse.  The person acting is the signed-in
user: their porter user name must be one of the plan's people.  A refusal is a
page saying why (403), the repository unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..errors import PorterError
from ..release import Release
from ._releases import open_release
from ._render import base_of, dashboard_of, error_page
from ._session import Viewer, require_viewer, require_writer

__all__ = ["router"]

router = APIRouter()

ViewerDep = Annotated[Viewer, Depends(require_viewer)]
Csrf = Annotated[str, Form()]


def _act(
    request: Request, viewer: Viewer, csrf: str, name: str, back: str, do: Callable[[Release, str], Any]
) -> Response:
    """Open release ``name``, check the form and the token, ``do(release, user)``, then back to ``back``."""
    release = open_release(dashboard_of(request), viewer, name, pinned=False)
    try:
        user = require_writer(request, viewer, csrf)
        do(release, user)
    except (PorterError, PermissionError) as exc:
        return error_page(request, 403, str(exc))
    return RedirectResponse(f"{base_of(request)}/releases/{name}{back}", status_code=303)


@router.post("/releases/{name}/checkpoints/{checkpoint}/signoff")
def signoff(
    request: Request,
    name: str,
    checkpoint: str,
    viewer: ViewerDep,
    csrf: Csrf = "",
    override: Annotated[str, Form()] = "",
) -> Response:
    return _act(
        request,
        viewer,
        csrf,
        name,
        f"/checkpoints/{checkpoint}",
        lambda r, user: r.signoff(checkpoint, user, override=override.strip() or None),
    )


@router.post("/releases/{name}/checkpoints/{checkpoint}/waive")
def waive(
    request: Request,
    name: str,
    checkpoint: str,
    viewer: ViewerDep,
    check: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    csrf: Csrf = "",
) -> Response:
    return _act(
        request,
        viewer,
        csrf,
        name,
        f"/checkpoints/{checkpoint}",
        lambda r, user: r.waive(checkpoint, check, user, reason),
    )


@router.post("/releases/{name}/findings")
def add_finding(
    request: Request,
    name: str,
    viewer: ViewerDep,
    checkpoint: Annotated[str, Form()],
    severity: Annotated[str, Form()],
    text: Annotated[str, Form()],
    csrf: Csrf = "",
) -> Response:
    return _act(
        request,
        viewer,
        csrf,
        name,
        "#findings",
        lambda r, user: r.add_finding(severity, checkpoint, text, user),
    )


@router.post("/releases/{name}/findings/{finding}/close")
def close_finding(
    request: Request,
    name: str,
    finding: int,
    viewer: ViewerDep,
    resolution: Annotated[str, Form()] = "",
    csrf: Csrf = "",
) -> Response:
    return _act(
        request, viewer, csrf, name, "#findings", lambda r, user: r.close_finding(finding, user, resolution)
    )


@router.post("/releases/{name}/checkpoints/{checkpoint}/check")
def run_checks(request: Request, name: str, checkpoint: str, viewer: ViewerDep, csrf: Csrf = "") -> Response:
    """Run the hand-over's checks now (recorded under the signed-in user, as ``porter release check --by``)."""
    return _act(
        request, viewer, csrf, name, f"/checkpoints/{checkpoint}", lambda r, user: r.check(checkpoint, user)
    )


@router.post("/releases/{name}/checkpoints/{checkpoint}/ship")
def ship(request: Request, name: str, checkpoint: str, viewer: ViewerDep, csrf: Csrf = "") -> Response:
    """Record the hand-over's delivery (its manifest: files, sizes, checksums), as ``porter release ship``."""
    return _act(
        request, viewer, csrf, name, f"/checkpoints/{checkpoint}", lambda r, user: r.ship(checkpoint, user)
    )


@router.post("/releases/{name}/checkpoints/{checkpoint}/confirm")
def confirm(
    request: Request,
    name: str,
    checkpoint: str,
    viewer: ViewerDep,
    item: Annotated[str, Form()],
    comment: Annotated[str, Form()] = "",
    csrf: Csrf = "",
) -> Response:
    """Confirm a manual item of the shipping list (a person did it), as ``porter release confirm``."""
    return _act(
        request,
        viewer,
        csrf,
        name,
        f"/checkpoints/{checkpoint}",
        lambda r, user: r.confirm(checkpoint, item, user, comment),
    )
