"""The server's outermost layer: its path prefix, request size limits and per-endpoint metrics, as a plain ASGI
middleware; and the memory cache of small files a get answers with.

Starlette's ``BaseHTTPMiddleware`` (what ``@app.middleware("http")`` makes)
runs every request through extra tasks and memory streams: about a fifth of a
small request's time here.  This one only wraps ``send`` to see the status.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse

from ._metrics import ServerMetrics
from ._paths import route_path

__all__ = ["ByteCache", "Gate"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Gate:
    """Refuses bodies over their limit (413; chunked JSON without a length: 411) and counts every answer."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        metrics: ServerMetrics,
        body_limit: int,
        bulk_limit: int,
        bulk_paths: tuple[str, ...],
        root_path: str = "",
    ):
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit
        self.bulk_limit = bulk_limit
        self.bulk_paths = bulk_paths
        self.root_path = root_path
        """The server's path prefix (`ServerConfig.path_prefix`), set as the ASGI root path of every request:
        routing then takes paths with or without it, and ``request.base_url`` (signed URLs) has it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        path = route_path(scope)
        bulky = path.startswith(self.bulk_paths)
        limit = self.bulk_limit if bulky else self.body_limit
        length = chunked = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
        refusal = None
        if length is None and chunked and not bulky:
            refusal = JSONResponse(
                {
                    "error": "LengthRequired",
                    "message": "Send JSON requests with a Content-Length (not chunked).",
                },
                status_code=411,
            )
        elif length is not None and (not length.isdigit() or int(length) > limit):
            refusal = JSONResponse(
                {"error": "RequestTooLarge", "message": f"Request bodies here are limited to {limit} bytes."},
                status_code=413,
            )
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        status = [500]

        async def watched(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, watched)
        finally:
            route = scope.get("route")
            self.metrics.observe(
                scope["method"], getattr(route, "path", "unmatched"), status[0], time.perf_counter() - start
            )


class ByteCache:
    """Small files' bytes by key, least recently used out first, at most ``capacity`` bytes in all."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._items: collections.OrderedDict[Any, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Any, value: bytes) -> None:
        if len(value) > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= len(old)
            self._items[key] = value
            self.used += len(value)
            while self.used > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self.used -= len(dropped)
