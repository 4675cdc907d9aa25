"""The dashboard mounted beside the API: one application, one repository, one set of accounts.

`create_app` builds the server's FastAPI application (`porter.server`) and adds
the dashboard's pages under ``/ui``; ``porter serve`` runs it.  The pages read
the server's own butler and accounts (``app.state.porter``), so a grant, an
embargo or a revoked token means the same thing on a page as in the API.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors
from ..server import ServerConfig
from ..server import create_app as create_server_app
from . import (
    _actions,
    _pages_completeness,
    _pages_metrics,
    _pages_releases,
    _pages_repository,
    _pages_runs,
    _pages_session,
)
from ._render import STATIC, Dashboard, error_page
from ._session import LoginRequired, login_url

__all__ = ["UI", "app_from_environment", "create_app", "mount_dashboard"]

UI = "/ui"
"""The path the dashboard's pages live under (after the server's own path prefix)."""


def _is_page(request: Request) -> bool:
    return request.url.path.removeprefix(request.scope.get("root_path", "")).startswith(UI)


async def _answer(handler: Any, request: Request, exc: Exception) -> Response:
    """The API's own answer to ``exc`` (its handlers may be plain functions or coroutines)."""
    answer = handler(request, exc)
    if inspect.isawaitable(answer):
        answer = await answer
    assert isinstance(answer, Response)
    return answer


def mount_dashboard(app: FastAPI) -> None:
    """Add the dashboard's pages, its static files and its HTML error pages to the server's ``app``."""
    app.state.dashboard = Dashboard(app.state.porter)
    app.mount(f"{UI}/static", StaticFiles(directory=STATIC), name="ui-static")
    for module in (
        _pages_session,
        _pages_releases,
        _actions,
        _pages_completeness,
        _pages_metrics,
        _pages_runs,
        _pages_repository,
    ):
        app.include_router(module.router, prefix=UI, include_in_schema=False)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{UI}/", status_code=303)

    # The API answers errors as JSON; a person on a page gets a page saying what went wrong instead.
    api_http, api_porter = (
        app.exception_handlers[StarletteHTTPException],
        app.exception_handlers[errors.PorterError],
    )
    api_invalid = app.exception_handlers[RequestValidationError]

    async def http_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            return await _answer(api_http, request, exc)
        assert isinstance(exc, StarletteHTTPException)
        return error_page(request, exc.status_code, str(exc.detail))

    async def porter_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            return await _answer(api_porter, request, exc)
        return error_page(request, 404 if isinstance(exc, errors.MissingCollectionError) else 400, str(exc))

    async def invalid(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            return await _answer(api_invalid, request, exc)
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return error_page(request, 400, f"Malformed request: {problems}")

    async def crash(request: Request, exc: Exception) -> Response:
        """Never a stack trace on a page: the error is logged by uvicorn, the person gets a plain page."""
        if not _is_page(request):
            raise exc
        return error_page(request, 500, "The page could not be made; the server's log says why.")

    async def sign_in(request: Request, exc: Exception) -> Response:
        return RedirectResponse(login_url(request), status_code=303)

    app.add_exception_handler(LoginRequired, sign_in)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(errors.PorterError, porter_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crash)


def create_app(config: ServerConfig) -> FastAPI:
    """The server's application for ``config.repository`` with the dashboard under ``/ui``."""
    app = create_server_app(config)
    mount_dashboard(app)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's ``--factory`` target of ``porter serve``: `create_app` for ``$PORTER_SERVER_CONFIG``."""
    raw: dict[str, Any] = json.loads(os.environ["PORTER_SERVER_CONFIG"])
    raw["repository"] = Path(raw["repository"])
    return create_app(ServerConfig(**raw))
