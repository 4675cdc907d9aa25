"""The forwarding outbox: measurements on their way to InfluxDB, kept in the repository's database.

Rubin's dispatch to its metric store today logs a warning and drops the measurement when the
store is down.  Here a measurement bound for a sink is written to the ``verify_outbox`` table by
`Outbox.enqueue` *inside the store's own write transaction*: either the measurement and its
outbox lines are both committed, or neither is, so a process killed mid-import leaves nothing
half-queued.  `Outbox.forward` later sends the queued lines to the sink in sequence order and
deletes each batch only after InfluxDB answered ``204 No Content``; at the first failure it stops,
keeping that batch and everything after it for the next call.  Nothing is lost.

Nothing is stored twice either: a forwarder killed after the server accepted a batch but before
the delete committed sends that batch again, and each line carries its measurement's time, so
InfluxDB overwrites each point with itself (see `porter.verify._influx`).

Only one forwarder per sink sends at a time, so batches reach the sink in order: on PostgreSQL a
session-level advisory lock (released by the server when the holder's connection closes, also
when it is killed), on SQLite an exclusive ``flock`` on a file next to the database (released by
the kernel when the process dies).  A forwarder that finds the lock taken returns at once with
``busy=True``.  No lease with an expiry is used, so a killed forwarder never blocks the next one.

Ordering caveat on PostgreSQL: sequence numbers are handed out before commit, so a row of a
transaction that commits late may become visible after a later-numbered row was already sent;
it is then sent in a later batch.  Rows are deleted by their own numbers, never by range, so it
is never skipped.  On SQLite writers are serialized and sequence order is commit order.

Sink configuration
------------------
Sinks are named; the outbox keeps each sink's queue apart (``sink`` column).  `load_sinks` reads
them from the YAML file named by ``$PORTER_VERIFY_SINKS``, else from ``verify-sinks.yaml`` at the
repository root (no file: no forwarding)::

    sinks:
      - name: sasquatch                 # the queue's name (default "influxdb")
        url: https://example.org/influxdb   # InfluxDB 1.x HTTP API; a path prefix is kept
        database: lsst.verify
        retention_policy: autogen       # optional (the database's default otherwise)
        username: porter                # optional
        password_env: SASQUATCH_PASSWORD  # optional: the password is read from this variable
        timeout: 30                     # optional, seconds per request

Passwords are never read from the file itself, so it can be committed with the repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy
import yaml
from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text
from sqlalchemy.engine import Connection

from .._stop_points import stop_point
from ._influx import encode_outcomes
from ._outcome import Outcome
from ._problems import VerifyError

if TYPE_CHECKING:
    from ..registry import Database

__all__ = [
    "ROW_LINES",
    "SINKS_ENV",
    "SINKS_FILE",
    "ForwardResult",
    "Outbox",
    "SinkConfig",
    "SinkConfigError",
    "load_sinks",
]

ROW_LINES = 5000
"""At most this many lines per outbox row: `Outbox.enqueue` splits larger sets, so a batch sent to
the sink is made of whole rows and a bulk import of a million measurements is 200 rows, not a million."""

SINKS_ENV = "PORTER_VERIFY_SINKS"
SINKS_FILE = "verify-sinks.yaml"


class SinkConfigError(VerifyError, ValueError):
    """A sink configuration file that cannot be used (names the file and the entry)."""


@dataclass(frozen=True)
class SinkConfig:
    """Where one sink's lines go: an InfluxDB 1.x server's HTTP API and a database on it."""

    url: str
    database: str
    name: str = "influxdb"
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    @property
    def write_url(self) -> str:
        return self.url.rstrip("/") + "/write"

    def write_params(self) -> dict[str, str]:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return params

    def auth(self) -> httpx.BasicAuth | None:
        """HTTP basic credentials, which InfluxDB 1.x accepts in place of ``u``/``p`` parameters."""
        if self.username is None:
            return None
        return httpx.BasicAuth(self.username, self.password or "")

    def __repr__(self) -> str:  # never print the password
        return f"SinkConfig(name={self.name!r}, url={self.url!r}, database={self.database!r})"

    @classmethod
    def from_mapping(
        cls, entry: Mapping[str, Any], environ: Mapping[str, str] = os.environ, where: str = "sink"
    ) -> SinkConfig:
        """One entry of the ``sinks:`` list (see the module's documentation)."""
        known = {"name", "url", "database", "retention_policy", "username", "password_env", "timeout"}
        unknown = sorted(set(entry) - known)
        if unknown:
            hint = " (put the password in an environment variable named by password_env)" * (
                "password" in unknown
            )
            raise SinkConfigError(f"{where}: unknown keys {unknown}{hint}")
        for required in ("url", "database"):
            if not entry.get(required):
                raise SinkConfigError(f"{where}: {required!r} is required")
        password = None
        if entry.get("password_env"):
            variable = str(entry["password_env"])
            if variable not in environ:
                raise SinkConfigError(f"{where}: password_env names ${variable}, which is not set")
            password = environ[variable]
        return cls(
            url=str(entry["url"]),
            database=str(entry["database"]),
            name=str(entry.get("name") or "influxdb"),
            retention_policy=entry.get("retention_policy"),
            username=entry.get("username"),
            password=password,
            timeout=float(entry.get("timeout", 30.0)),
        )


def load_sinks(
    repo_root: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ
) -> list[SinkConfig]:
    """The configured sinks: ``$PORTER_VERIFY_SINKS``'s file, else ``<repo_root>/verify-sinks.yaml``.

    No file means no forwarding (an empty list).  Names must be unique.
    """
    if environ.get(SINKS_ENV):
        path = Path(environ[SINKS_ENV])
        if not path.exists():
            raise SinkConfigError(f"${SINKS_ENV} names {path}, which does not exist")
    elif repo_root is not None and (Path(repo_root) / SINKS_FILE).exists():
        path = Path(repo_root) / SINKS_FILE
    else:
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SinkConfigError(f"{path}: not valid YAML: {exc}") from None
    entries = data.get("sinks") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SinkConfigError(f"{path}: expected a mapping with a 'sinks' list")
    sinks = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SinkConfigError(f"{path}: sinks[{i}] is not a mapping")
        sinks.append(SinkConfig.from_mapping(entry, environ, where=f"{path}: sinks[{i}]"))
    names = [s.name for s in sinks]
    if len(set(names)) != len(names):
        raise SinkConfigError(f"{path}: sink names must be unique, got {names}")
    return sinks


@dataclass(frozen=True)
class ForwardResult:
    """What one `Outbox.forward` call did.

    ``sent_lines`` / ``sent_rows`` / ``batches`` were accepted by the sink and deleted from the
    outbox; ``remaining_lines`` are still queued; ``error`` says why it stopped early (the sink
    unreachable, or its answer), ``None`` when the queue was drained; ``busy`` is true when another
    forwarder held the sink's lock and this call sent nothing.
    """

    sink: str
    sent_lines: int = 0
    sent_rows: int = 0
    batches: int = 0
    remaining_lines: int = 0
    error: str | None = None
    busy: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.busy


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class Outbox:
    """The ``verify_outbox`` table of one repository database."""

    def __init__(self, db: Database):
        self.db = db
        md = db.metadata
        existing = md.tables.get(f"{md.schema}.verify_outbox" if md.schema else "verify_outbox")
        self.table = (
            existing
            if existing is not None
            else Table(
                "verify_outbox",
                md,
                Column(
                    "seq",
                    BigInteger().with_variant(Integer, "sqlite"),
                    primary_key=True,
                    autoincrement=True,
                ),
                Column("sink", String(128), nullable=False),
                Column("n_lines", Integer, nullable=False),
                Column("lines", Text, nullable=False),
                Column("queued", Float, nullable=False),
                Index("verify_outbox_sink_seq", "sink", "seq"),
                sqlite_autoincrement=True,  # numbers never reused, even after the queue drained
            )
        )
        with db.transaction() as conn:
            db.lock_for_schema_change(conn)  # two processes opening a new PostgreSQL repository at once
            self.table.create(conn, checkfirst=True)

    # --- queueing (inside the caller's transaction) ---------------------------------------------

    def enqueue(self, conn: Connection, sink: str, lines: Iterable[str]) -> int:
        """Queue ``lines`` for ``sink`` on ``conn``, inside the caller's open transaction.

        Called by the store in the transaction that writes the measurements, so both commit or
        neither does.  Lines are stored in order, ``ROW_LINES`` per row.  Returns how many were queued.
        """
        now = time.time()
        rows: list[dict[str, Any]] = []
        chunk: list[str] = []
        total = 0

        def flush() -> None:
            rows.append({"sink": sink, "n_lines": len(chunk), "lines": "\n".join(chunk), "queued": now})
            chunk.clear()

        for line in lines:
            chunk.append(line)
            if len(chunk) == ROW_LINES:
                total += ROW_LINES
                flush()
        total += len(chunk)
        if chunk:
            flush()
        if rows:
            # One statement per row keeps sequence numbers in list order on both databases.
            for row in rows:
                conn.execute(sqlalchemy.insert(self.table).values(**row))
        return total

    def enqueue_outcomes(self, conn: Connection, sinks: Sequence[str], outcomes: Iterable[Outcome]) -> int:
        """Encode ``outcomes`` once (`encode_outcome`) and queue them for each sink in ``sinks``."""
        if not sinks:
            return 0
        lines = list(encode_outcomes(outcomes))
        for sink in sinks:
            self.enqueue(conn, sink, lines)
        return len(lines)

    # --- reading ----------------------------------------------------------------------------------

    def pending(self, sink: str) -> int:
        """How many lines are queued for ``sink``."""
        t = self.table.c
        with self.db.reading() as conn:
            return int(
                conn.execute(
                    sqlalchemy.select(sqlalchemy.func.coalesce(sqlalchemy.func.sum(t.n_lines), 0)).where(
                        t.sink == sink
                    )
                ).scalar_one()
            )

    def queued_lines(self, sink: str) -> list[str]:
        """Every queued line of ``sink``, in the order it will be sent (for reports and tests)."""
        t = self.table.c
        with self.db.reading() as conn:
            texts = conn.execute(sqlalchemy.select(t.lines).where(t.sink == sink).order_by(t.seq)).scalars()
            return [line for text in texts for line in text.split("\n")]

    # --- forwarding -------------------------------------------------------------------------------

    def forward(
        self, sink: SinkConfig, batch: int = 5000, client: httpx.Client | None = None
    ) -> ForwardResult:
        """Send ``sink``'s queue in sequence order, ``batch`` lines (whole rows, at least one) per POST.

        Each batch is deleted only after the sink answered 204.  Stops at the first failure
        (unreachable, timeout, or any other answer), keeping that batch and all later ones; the
        next call starts again from it.  Returns at once with ``busy=True`` if another forwarder
        of this sink holds its lock.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if getattr(self.db._local, "conn", None) is not None:
            raise RuntimeError("Outbox.forward runs its own transactions: call it outside db.transaction()")
        with self._sink_lock(sink.name) as held:
            if not held:
                return ForwardResult(sink.name, remaining_lines=self.pending(sink.name), busy=True)
            owns_client = client is None
            http = client or httpx.Client(timeout=sink.timeout)
            try:
                return self._drain(sink, batch, http)
            finally:
                if owns_client:
                    http.close()

    def _drain(self, sink: SinkConfig, batch: int, http: httpx.Client) -> ForwardResult:
        t = self.table.c
        sent_lines = sent_rows = batches = 0
        error: str | None = None
        while True:
            with self.db.reading() as conn:
                heads = conn.execute(
                    sqlalchemy.select(t.seq, t.n_lines)
                    .where(t.sink == sink.name)
                    .order_by(t.seq)
                    .limit(batch)
                ).all()
                chosen: list[int] = []
                count = 0
                for seq, n in heads:
                    if chosen and count + n > batch:
                        break
                    chosen.append(int(seq))
                    count += int(n)
                if not chosen:
                    break
                texts = conn.execute(
                    sqlalchemy.select(t.lines).where(t.seq.in_(chosen)).order_by(t.seq)
                ).scalars()
                body = "\n".join(texts).encode("utf-8")
            try:
                response = http.post(
                    sink.write_url,
                    params=sink.write_params(),
                    content=body,
                    auth=sink.auth() or httpx.USE_CLIENT_DEFAULT,
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                )
            except httpx.HTTPError as exc:
                error = f"{sink.name} ({sink.url}) unreachable: {type(exc).__name__}: {exc}"
                break
            if response.status_code != 204:
                error = (
                    f"{sink.name} ({sink.url}) answered HTTP {response.status_code}: "
                    f"{response.text.strip()[:500]}"
                )
                break
            # Accepted by the sink.  A process killed from here until the delete commits sends this
            # batch again; its points carry their own timestamps and overwrite themselves.
            stop_point("outbox_sent")
            self.db.retrying(functools.partial(self._delete, chosen))
            sent_lines += count
            sent_rows += len(chosen)
            batches += 1
        return ForwardResult(
            sink.name,
            sent_lines=sent_lines,
            sent_rows=sent_rows,
            batches=batches,
            remaining_lines=self.pending(sink.name),
            error=error,
        )

    def _delete(self, seqs: Sequence[int]) -> None:
        with self.db.transaction() as conn:
            for start in range(0, len(seqs), 500):
                conn.execute(
                    sqlalchemy.delete(self.table).where(self.table.c.seq.in_(seqs[start : start + 500]))
                )

    # --- one forwarder per sink ---------------------------------------------------------------------

    def _lock_name(self, sink: str) -> str:
        return f"porter.verify.outbox:{self.db.namespace or ''}:{sink}"

    @contextlib.contextmanager
    def _sink_lock(self, sink: str) -> Iterator[bool]:
        """Hold the sink's forwarding lock for the block; yields False (at once) if someone else has it."""
        if self.db.dialect == "postgresql":
            key = int.from_bytes(
                hashlib.sha256(self._lock_name(sink).encode()).digest()[:8], "big", signed=True
            )
            with self.db.engine.connect() as conn:
                auto = conn.execution_options(isolation_level="AUTOCOMMIT")
                held = bool(auto.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar())
                try:
                    yield held
                finally:
                    if held:
                        auto.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
            return
        path = self.db.engine.url.database
        if not path or path == ":memory:":  # only this process can see the database
            with _process_locks_guard:
                lock = _process_locks.setdefault(f"{id(self.db)}:{sink}", threading.Lock())
            held = lock.acquire(blocking=False)
            try:
                yield held
            finally:
                if held:
                    lock.release()
            return
        digest = hashlib.sha256(sink.encode()).hexdigest()[:16]
        lock_path = f"{path}.outbox-{digest}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
