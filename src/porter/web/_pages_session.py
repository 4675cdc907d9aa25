"""Signing in (with a porter token) and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..server import AuthenticationError
from ._render import base_of, dashboard_of, render
from ._session import COOKIE, current_viewer

__all__ = ["router"]

router = APIRouter()


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a page of this dashboard only (never another site: no open redirect)."""
    base = base_of(request)
    if target and target.startswith(base + "/") and "//" not in target and "\\" not in target:
        return target
    return base + "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    request.state.viewer = current_viewer(request)
    return render(request, "login.html", title="Sign in", next=_safe_next(request, next), problem="")


@router.post("/login")
def login(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:
    dashboard = dashboard_of(request)
    target = _safe_next(request, next)
    try:
        dashboard.state.accounts.authenticate(token.strip())
    except AuthenticationError as exc:
        return render(request, "login.html", status_code=401, title="Sign in", next=target, problem=str(exc))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=base_of(request) + "/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Sign out (no CSRF token needed: the worst a forged sign-out does is sign a person out)."""
    response = RedirectResponse(base_of(request) + "/login", status_code=303)
    response.delete_cookie(COOKIE, path=base_of(request) + "/")
    return response
