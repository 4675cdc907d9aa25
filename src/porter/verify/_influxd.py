"""A throw-away InfluxDB 1.x server on loopback, for the forwarding tests and the benchmark.

Forwarding to InfluxDB is tested against the real server (Debian's ``influxdb`` package, 1.6), not
a stand-in, because what matters is what *it* accepts: its line-protocol parser, its answers (204,
400, refused connections) and its overwrite of a point re-sent with the same series and timestamp.
`InfluxServer` runs ``influxd`` with every directory under one temporary root, HTTP and RPC bound to
free ports on 127.0.0.1, and everything else (reporting, the ``_internal`` store, subscribers,
continuous queries, UDP/Graphite/…) off.  It can be stopped and started again on the same port, so a
test can take the sink away and bring it back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["InfluxServer", "find_influxd"]

_DEBIAN_PATHS = ("/usr/bin/influxd", "/usr/sbin/influxd")


def find_influxd() -> str | None:
    """The ``influxd`` executable (``$PATH``, then Debian's location), or None if it is not installed."""
    found = shutil.which("influxd")
    if found:
        return found
    return next((p for p in _DEBIAN_PATHS if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CONFIG = """\
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  index-version = "inmem"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false
  max-body-size = 0

[logging]
  level = "warn"
  suppress-logo = true
"""


class InfluxServer:
    """``influxd`` with its data under ``root``, answering on ``url`` while started.

    Use as a context manager (started on entry, stopped on exit) or call `start` / `stop`.  The port
    is chosen once, so a restarted server answers at the same ``url``.
    """

    def __init__(self, root: Path, executable: str | None = None):
        found = executable or find_influxd()
        if found is None:
            raise FileNotFoundError("influxd is not installed (Debian: apt-get install influxdb)")
        self.executable = found
        self.root = Path(root)
        self.http_port = _free_port()
        self.rpc_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = self.root / "influxdb.conf"
        self.log = self.root / "influxd.log"
        self.http = httpx.Client(timeout=60.0)
        """A kept-alive client for `query` and `write` (a new client per request costs ~50 ms)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers ``/ping``."""
        if self.process is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            _CONFIG.format(root=self.root, rpc_port=self.rpc_port, http_port=self.http_port),
            encoding="utf-8",
        )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "-config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.process = None
                raise RuntimeError(f"influxd exited at start-up; its log ends with:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"influxd did not answer on {self.url} within {timeout:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers); its data stays under ``root``."""
        process, self.process = self.process, None
        self.http.close()  # connections to the stopped process are dead; a new client for the next start
        self.http = httpx.Client(timeout=60.0)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def query(self, q: str, database: str | None = None) -> dict[str, Any]:
        """Run an InfluxQL statement; the JSON answer, with times as integer nanoseconds."""
        params = {"q": q, "epoch": "ns"}
        if database:
            params["db"] = database
        response = self.http.post(f"{self.url}/query", params=params)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        for result in answer.get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxDB refused {q!r}: {result['error']}")
        return answer

    def write(self, lines: str, database: str) -> httpx.Response:
        """POST line protocol (nanosecond times) to ``/write``; the server's answer."""
        return self.http.post(
            f"{self.url}/write", params={"db": database, "precision": "ns"}, content=lines.encode()
        )

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def points_written(self) -> int:
        """How many points this server process accepted over HTTP since it started (``SHOW STATS``).

        A re-sent point that overwrote itself counts again here, so this tells a point sent once from
        one sent twice, which the stored data cannot.
        """
        answer = self.query("SHOW STATS FOR 'httpd'")
        total = 0
        for series in answer["results"][0].get("series", []):
            columns = series["columns"]
            if "pointsWrittenOK" in columns:
                total += int(series["values"][0][columns.index("pointsWrittenOK")])
        return total

    def __enter__(self) -> InfluxServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
