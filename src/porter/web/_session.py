"""Who is looking at a page: a session cookie holding the user's own porter token, and CSRF protection.

The dashboard has no passwords of its own: a person signs in with a token
issued by ``porter admin token issue`` (the same one their scripts use), which
the browser keeps in an HttpOnly, SameSite=Strict cookie scoped to the
dashboard's path.  Every request checks it again through the server's
`Accounts`, so a revoked token or a removed membership ends the session within
the seconds the server's own decisions are cached.  Forms that act carry a
CSRF token derived (HMAC) from the session's token with the server's key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request

from ..server import AuthenticationError, Principal
from ._render import base_of, dashboard_of

__all__ = ["COOKIE", "LoginRequired", "Viewer", "csrf_token", "require_viewer", "require_writer"]

COOKIE = "porter_session"


class LoginRequired(Exception):
    """The page needs a signed-in user (answered by a redirect to the sign-in page, coming back after)."""


@dataclass(frozen=True)
class Viewer:
    """A person looking at the dashboard."""

    principal: Principal
    csrf: str
    """The value forms must send back (empty for an anonymous viewer, who cannot act)."""

    @property
    def user(self) -> str | None:
        return self.principal.user

    @property
    def name(self) -> str:
        return self.principal.actor

    @property
    def may_act(self) -> bool:
        """Signed in with a token that may write (the ``write`` or ``admin`` scope)."""
        return self.principal.user is not None and bool(self.principal.scopes & {"write", "admin"})


def csrf_token(key: bytes, session_token: str) -> str:
    return hmac.new(key, b"porter-csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:40]


def current_viewer(request: Request) -> Viewer | None:
    """The viewer of this request: the signed-in user, anonymous where the server allows public reading, or None."""
    dashboard = dashboard_of(request)
    accounts = dashboard.state.accounts
    user = request.headers.get("x-auth-request-user")
    if user and dashboard.state.trusted_peer(request.client.host if request.client else None):
        # Behind Rubin's Gafaelfawr (or another proxy named with --trusted-proxy): the proxy signed the person
        # in; the same headers and the same trust rule as the API's.
        groups = [g.strip() for g in request.headers.get("x-auth-request-groups", "").split(",") if g.strip()]
        return Viewer(accounts.from_proxy(user, groups), csrf_token(dashboard.key, f"proxy:{user}"))
    token = request.cookies.get(COOKIE)
    if token:
        try:
            return Viewer(accounts.authenticate(token), csrf_token(dashboard.key, token))
        except AuthenticationError:
            pass  # expired or revoked: treated as signed out
    anonymous = accounts.anonymous()
    if anonymous.read_patterns is None:
        return None
    return Viewer(anonymous, "")


async def require_viewer(request: Request) -> Viewer:
    """FastAPI dependency: the viewer, or a redirect to sign in when nothing here is public.

    A coroutine, as the API's own caller check, so that FastAPI does not send it to the thread pool: the
    server's accounts cache their decisions (at most 2 s), so this is a dictionary look-up nearly always,
    cheaper than a hop to a thread and back (and one thread fewer contending for the interpreter).
    """
    viewer = current_viewer(request)
    if viewer is None:
        raise LoginRequired()
    request.state.viewer = viewer
    return viewer


def require_writer(request: Request, viewer: Viewer, csrf: str) -> str:
    """The user name an action is recorded under, after checking the form's CSRF token and the token's scope."""
    if viewer.user is None:
        raise LoginRequired()
    if not csrf or not hmac.compare_digest(csrf, viewer.csrf):
        raise PermissionError(
            "This form is out of date or did not come from this dashboard (its CSRF token does not match your "
            "session); reload the page and try again."
        )
    if not viewer.may_act:
        raise PermissionError(
            f"Your token ({viewer.user}) may only read: actions need a token with the 'write' scope "
            "(porter admin token issue USER --scope write)."
        )
    return viewer.user


def login_url(request: Request) -> str:
    """The sign-in page, coming back to this page after."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    from urllib.parse import quote

    return f"{base_of(request)}/login?next={quote(here, safe='')}"
