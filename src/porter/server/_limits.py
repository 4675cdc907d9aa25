"""Per-user limits: concurrent queries, requests per minute, download bytes per day.

Concurrent queries are counted across every worker and replica: a query takes
one of the user's numbered slots before it is admitted, atomically, so two
workers cannot both admit the last query (no check-then-act race).  With a
PostgreSQL repository (replicas on several hosts) a slot is a row of a table
keyed by (user, slot) — the database lets exactly one insert of it succeed —
with an expiry (the query timeout), so a worker killed mid-query does not hold
it for ever.  With SQLite (one host by nature) a slot is an exclusive ``flock``
on a file: no database write per query, and the kernel frees it when its
holder dies.  Download bytes per day are a counter row per
(user, day) in the same database, bumped when a URL is handed out.  Requests
per minute are counted per worker process (each answers at most its share);
they protect a worker from a runaway client, not the repository.

Every refusal is a `RateLimitedError` naming the limit, with the seconds after
which to retry; the server answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

from ..errors import RateLimitedError
from ..registry import Database

__all__ = ["Limits", "UserLimits"]


@dataclass(frozen=True)
class UserLimits:
    """What one user may do; `None` means no limit."""

    concurrent_queries: int | None = 8
    requests_per_minute: int | None = None
    download_bytes_per_day: int | None = None
    query_timeout: float = 300.0
    """Seconds a query may run; also how long a crashed worker's slot stays taken."""


class RetryLater(RateLimitedError):
    """A limit was reached; ``retry_after`` seconds is when trying again may succeed."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class Limits:
    """The limits of one server, kept in the repository's database (and, for request rates, in this process)."""

    def __init__(
        self,
        db: Database,
        limits: UserLimits,
        clock: Callable[[], float] = time.time,
        slot_dir: Path | None = None,
    ):
        self.db = db
        self.slot_dir = slot_dir if db.dialect == "sqlite" else None
        """SQLite (one host): query slots are file locks here; PostgreSQL (replicas anywhere): rows of a table."""
        self.limits = limits
        self.clock = clock
        metadata = sqlalchemy.MetaData(schema=db.namespace)
        self.slots = sqlalchemy.Table(
            "porter_server_query_slot",
            metadata,
            sqlalchemy.Column("user_name", sqlalchemy.String(64), primary_key=True),
            sqlalchemy.Column("slot", sqlalchemy.Integer, primary_key=True),
            sqlalchemy.Column("expires", sqlalchemy.Float, nullable=False),
        )
        self.usage = sqlalchemy.Table(
            "porter_server_download_usage",
            metadata,
            sqlalchemy.Column("user_name", sqlalchemy.String(64), primary_key=True),
            sqlalchemy.Column("day", sqlalchemy.String(10), primary_key=True),
            sqlalchemy.Column("bytes", sqlalchemy.BigInteger, nullable=False),
        )
        metadata.create_all(db.engine, checkfirst=True)
        self._recent: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    # --- requests per minute (this process) -----------------------------------------------------

    def count_request(self, user: str) -> None:
        """Count one request of ``user``; `RetryLater` beyond the per-minute limit."""
        limit = self.limits.requests_per_minute
        if limit is None:
            return
        now = self.clock()
        with self._lock:
            recent = self._recent.setdefault(user, collections.deque())
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= limit:
                raise RetryLater(
                    f"More than {limit} requests a minute from {user!r}: slow down.",
                    int(recent[0] + 60 - now) + 1,
                )
            recent.append(now)

    # --- concurrent queries (all workers) -------------------------------------------------------

    @contextlib.contextmanager
    def query_slot(self, user: str) -> Iterator[None]:
        """Hold one of ``user``'s query slots while the block runs; `RetryLater` if all are taken."""
        limit = self.limits.concurrent_queries
        if limit is None:
            yield
            return
        if self.slot_dir is not None:
            descriptor = self._lock_slot(user, limit)
            try:
                yield
            finally:
                os.close(descriptor)  # the lock goes with it
            return
        slot = self._take_slot(user, limit)
        try:
            yield
        finally:
            with self.db.transaction() as conn:
                conn.execute(
                    sqlalchemy.delete(self.slots).where(
                        self.slots.c.user_name == user, self.slots.c.slot == slot
                    )
                )

    def _lock_slot(self, user: str, limit: int) -> int:
        """Take one of ``user``'s numbered slot files with an exclusive ``flock``; the open descriptor holds it.

        The kernel grants each lock to one open file at a time, across processes and threads, and drops it
        when its holder dies: no write to the database, no expiry to wait for.
        """
        assert self.slot_dir is not None
        folder = self.slot_dir / hashlib.sha256(user.encode()).hexdigest()[:24]
        folder.mkdir(parents=True, exist_ok=True)
        for slot in range(limit):
            descriptor = os.open(folder / str(slot), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            return descriptor
        raise RetryLater(
            f"{user!r} already has {limit} queries running (the limit): wait for one to finish.", 1
        )

    def _take_slot(self, user: str, limit: int) -> int:
        now = self.clock()
        table = self.slots
        with self.db.transaction() as conn:
            conn.execute(sqlalchemy.delete(table).where(table.c.user_name == user, table.c.expires < now))
            taken = {
                r.slot for r in conn.execute(sqlalchemy.select(table.c.slot).where(table.c.user_name == user))
            }
        for slot in range(limit):
            if slot in taken:
                continue
            try:
                with self.db.transaction() as conn:
                    conn.execute(
                        sqlalchemy.insert(table).values(
                            user_name=user, slot=slot, expires=now + self.limits.query_timeout
                        )
                    )
                return slot
            except sqlalchemy.exc.IntegrityError:
                continue  # another worker took this slot first
        raise RetryLater(
            f"{user!r} already has {limit} queries running (the limit): wait for one to finish.", 1
        )

    # --- download bytes per day (all workers) ---------------------------------------------------

    def count_download(self, user: str, size: int) -> None:
        """Add ``size`` bytes to ``user``'s downloads today; `RetryLater` (until midnight UTC) beyond the limit."""
        limit = self.limits.download_bytes_per_day
        if limit is None:
            return
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        day = now.date().isoformat()
        table = self.usage
        with self.db.transaction() as conn:
            row = conn.execute(
                sqlalchemy.select(table.c.bytes)
                .where(table.c.user_name == user, table.c.day == day)
                .with_for_update()  # PostgreSQL: one worker at a time per (user, day); SQLite's write lock does it
            ).first()
            used = row.bytes if row is not None else 0
            if used + size > limit:
                tomorrow = datetime.datetime.combine(
                    now.date() + datetime.timedelta(days=1), datetime.time(), datetime.UTC
                )
                raise RetryLater(
                    f"{user!r} has downloaded {used} of {limit} bytes allowed today (UTC); this file is {size} bytes.",
                    int((tomorrow - now).total_seconds()) + 1,
                )
            if row is None:
                conn.execute(sqlalchemy.insert(table).values(user_name=user, day=day, bytes=size))
            else:
                conn.execute(
                    sqlalchemy.update(table)
                    .where(table.c.user_name == user, table.c.day == day)
                    .values(bytes=table.c.bytes + size)
                )
