"""The dashboard mounted beside the API: one application, one repository, one set of accounts.

`create_app` builds the server's FastAPI application (`porter.server`) and adds
the dashboard's pages under ``/ui``; ``porter serve`` runs it.  The pages read
the server's own butler and accounts (``app.state.porter``), so a grant, an
embargo or a revoked token means the same thing on a page as in the API.
"""

from __future__ import annotations

import asyncio
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
from starlette.middleware import Middleware

from .. import errors
from ..server import ServerConfig, route_path
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
from ._releases import read_plans
from ._render import STATIC, Dashboard, error_page
from ._session import LoginRequired, login_url

__all__ = [
    "PAGE_SLOTS",
    "UI",
    "WARM_MODULES",
    "PageSlots",
    "app_from_environment",
    "create_app",
    "mount_dashboard",
    "warm",
]

UI = "/ui"
"""The path the dashboard's pages live under (after the server's own path prefix)."""


PAGE_SLOTS = 3
"""Pages one worker makes at once; the others wait their turn, in the order they came."""
SLOT_HOLD = 1.0
"""Seconds a page keeps its slot: one still being made after that (a cold map of millions of data IDs, a large
delivery re-verified) gives it up and finishes beside the others, so it cannot hold the rest back."""


class PageSlots:
    """At most `PAGE_SLOTS` dashboard pages in the making at once in a worker, first come first served.

    A page is made in a thread of the worker's pool, and the threads of a worker share one interpreter: ten
    pages at once finish no sooner than one after another, but each takes as long as all of them together,
    and longer — at every database call a thread lets go of the interpreter and then waits its turn to get it
    back (up to 5 ms each time) while the others run.  Pages waiting their turn on the event loop instead are
    each made at full speed (bench/web.py, 20 clients on 2 workers: p99 150-180 ms instead of 450-700 ms,
    and a third more pages a second).  A slot is held until the page's answer starts (an event stream lets go as it
    opens) or for `SLOT_HOLD` seconds, whichever is first; static files and the API take none.  Innermost of
    the server's middleware: the server's metrics (request latencies) include the wait.
    """

    def __init__(self, app: Any, slots: int = PAGE_SLOTS, hold: float = SLOT_HOLD):
        self.app = app
        self.slots = slots
        self.hold = hold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free = asyncio.Semaphore(slots)  # made again for another event loop (tests run several)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if not (path == UI or path.startswith(UI + "/")) or path.startswith(f"{UI}/static/"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._free = loop, asyncio.Semaphore(self.slots)
        free = self._free
        await free.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                free.release()

        timer = loop.call_later(self.hold, give_back)

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                give_back()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            timer.cancel()
            give_back()


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
    app.user_middleware.append(Middleware(PageSlots))  # last in the list: the innermost
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
        if isinstance(
            exc, errors.RateLimitedError
        ):  # a per-user limit of the server's, as the API answers it
            page = error_page(request, 429, str(exc))
            page.headers["Retry-After"] = str(getattr(exc, "retry_after", 1))
            return page
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


WARM_MODULES = (
    "duckdb",  # completeness maps
    "pyarrow.parquet",  # manifests, missing data IDs, table previews
    "pyarrow.dataset",  # what pyarrow.parquet.read_table imports on its first call (a quarter of a second)
    "astropy.units",  # metric units (release and metrics pages)
    "astropy.time",  # times in queries and records
    "astropy.coordinates",  # pipelines' task modules (runs pages); looked up, not imported, by the query engine
    "porter.pipeline",
    "porter.release",
    "porter.verify",
)
"""What the pages import on first use (porter keeps its command line's start light), imported by a server
worker before it takes requests instead."""


def warm(app: FastAPI) -> None:
    """Do at a worker's start what its first requests would otherwise do while others wait on it.

    A cold worker's first pages import about a second of modules and compile every template, holding the
    interpreter for the requests beside them (seconds-long pages under load); and a module imported in one
    thread is visible half-made to the others until it is done.  uvicorn gives a worker connections only
    once its application is made, so a warmed worker is never seen cold.

    (Not `gc.freeze`: the registry's queries ask `gc.get_freeze_count`, which walks every frozen object.)
    """
    import contextlib
    import importlib

    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):  # an optional dependency: its pages say so when asked
            importlib.import_module(name)
    dashboard: Dashboard = app.state.dashboard
    for template in dashboard.templates.list_templates(extensions=["html"]):
        dashboard.templates.get_template(template)
    read_plans(dashboard)


def app_from_environment() -> FastAPI:
    """uvicorn's ``--factory`` target of ``porter serve``: `create_app` for ``$PORTER_SERVER_CONFIG``, `warm`."""
    raw: dict[str, Any] = json.loads(os.environ["PORTER_SERVER_CONFIG"])
    raw["repository"] = Path(raw["repository"])
    app = create_app(ServerConfig(**raw))
    warm(app)
    return app
