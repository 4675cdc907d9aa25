"""The URL path prefix a server answers under (``porter serve --path-prefix /repo``).

A repository is often published at a path of a shared host — ``https://host/repo``
behind a reverse proxy, or ``http://host:8080/repo`` directly — so the server
must answer there and hand out signed URLs that carry the prefix.  The prefix
becomes the ASGI ``root_path``: Starlette routes a request whether or not a
proxy stripped the prefix, and ``request.base_url`` (from which signed URLs
are made) includes it.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from ..errors import PorterError

__all__ = ["check_path_prefix", "route_path"]

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def check_path_prefix(prefix: str) -> str:
    """``prefix`` in its one accepted form (``/a/b``, or ``""`` for none); a clear error for anything else."""
    text = prefix.strip()
    if text in ("", "/"):
        return ""
    if not text.startswith("/"):
        raise PorterError(f"The path prefix {prefix!r} must start with '/', e.g. /repo.")
    segments = text.strip("/").split("/")
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            raise PorterError(
                f"The path prefix {prefix!r} has a bad segment {segment!r}: use letters, digits and . _ ~ - "
                "between slashes (no '.' or '..' segments)."
            )
    return "/" + "/".join(segments)


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The request's path below the server's prefix (the prefix removed if the request still has it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path
