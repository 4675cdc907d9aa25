"""A real porter server on loopback for tests: uvicorn in a thread of the test process, on a free port.

Requests cross a real TCP connection and the whole HTTP stack (uvicorn,
FastAPI, httpx); only the process is shared, so a test can also look at the
repository directly.  `porter serve` itself (workers, the CLI) is tested in
its own subprocess by the tests that need it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from porter.server import Accounts, ServerConfig, create_app


@dataclass
class Served:
    """A running server: its URL and the repository's accounts (to add users and tokens)."""

    url: str
    accounts: Accounts
    app: Any


@contextlib.contextmanager
def serving(root: Path, factory: Any = create_app, **config: Any) -> Iterator[Served]:
    """Serve the repository at ``root`` until the block ends (``factory``: `porter.web.create_app` adds the dashboard)."""
    app = factory(ServerConfig(repository=root, **config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="porter-test-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("The test server did not start (see the log above).")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}", app.state.porter.accounts, app)
    finally:
        server.should_exit = True
        thread.join()


def token(accounts: Accounts, user: str, *scopes: str) -> str:
    """A new token's text for ``user`` (who must exist)."""
    return accounts.issue_token(user, scopes=scopes or ("read",), by="test").secret_text


def small_repository(root: Path, registry: str | None = None, namespace: str | None = None) -> list[Any]:
    """A repository at ``root`` with the real HSC RC2 records and a ``summary`` dict for each of 4 visits
    in run ``HSC/runs/a``; returns the refs."""
    from conftest import load
    from porter import Butler

    butler = Butler.create(root, registry=registry, namespace=namespace)
    try:
        load(butler, "hsc-rc2-subset.yaml")
        butler.register_dataset_type("summary", ["instrument", "visit"], "StructuredDataDict")
        visits = sorted(r.id for r in butler.query_dimension_records("visit", instrument="HSC"))[:4]
        return [
            butler.put(
                {"visit": v, "payload": "x" * 200}, "summary", instrument="HSC", visit=v, run="HSC/runs/a"
            )
            for v in visits
        ]
    finally:
        butler.close()
