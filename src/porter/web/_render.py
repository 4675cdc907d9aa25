"""Pages from Jinja2 templates: the environment, the shared state the pages read, and the error page."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any, Protocol

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from ..butler import DirectButler
from ..datastore import SERVER_AREA
from ..server import Accounts, Principal, ServerConfig, Signer, load_or_create_key

__all__ = ["STATIC", "Dashboard", "ServerState", "dashboard_of", "error_page", "render"]

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


class ServerState(Protocol):
    """What the dashboard uses of the server's shared state (``app.state.porter``)."""

    config: ServerConfig
    butler: DirectButler
    accounts: Accounts
    signer: Signer

    def trusted_peer(self, host: str | None) -> bool:
        """Whether a request from ``host`` is from a reverse proxy trusted for identity headers."""
        ...

    def count_download(self, who: Principal, size: int) -> None:
        """Count a download against ``who``'s bytes of the day (the API's limit); `RateLimitedError` beyond."""
        ...


def _when(at: float | None) -> str:
    """An event time as people read it: UTC, to the second."""
    if at is None:
        return ""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: Any) -> str:
    """A value for a table cell: floats to 4 significant digits, everything else as it prints."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if value is None:
        return ""
    return str(value)


class Dashboard:
    """The dashboard's share of the application: templates, the session key, the server's state."""

    def __init__(self, state: ServerState):
        self.state = state
        self.root = Path(state.config.repository)
        self.key = load_or_create_key(self.root / SERVER_AREA / "server.key")
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(default=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = _when
        self.templates.filters["number"] = _number


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def base_of(request: Request) -> str:
    """The URL path of the dashboard's root (``/ui``, under the server's path prefix if it has one)."""
    return f"{request.scope.get('root_path', '')}/ui"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context`` and what every page needs (its base URL, who is looking)."""
    dashboard = dashboard_of(request)
    viewer = getattr(request.state, "viewer", None)
    page = dashboard.templates.get_template(template).render(
        base=base_of(request), viewer=viewer, path=request.url.path, **context
    )
    return HTMLResponse(
        page,
        status_code=status_code,
        headers={
            # Pages are the viewer's own (access rules apply): no shared cache keeps them; no framing (clickjacking)
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


_TITLES = {
    400: "Bad request",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    429: "Limit reached",
}


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    """A plain page saying what was wrong (never a stack trace), with the status code it stands for."""
    return render(
        request,
        "error.html",
        status_code=status_code,
        title=_TITLES.get(status_code, "Error"),
        message=message,
        code=status_code,
    )
