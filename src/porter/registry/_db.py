"""Connections and transactions for SQLite and PostgreSQL.

One `Database` per open repository.  Writes happen inside `transaction()`,
which nests (inner blocks join the outer transaction), takes SQLite's write
lock up front (``BEGIN IMMEDIATE``, so two writers queue instead of
deadlocking) and retries whole transactions that PostgreSQL aborted because of
a deadlock or serialization failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from .._mounts import mount_point
from ..errors import QueryTimeoutError, RepositoryError, StorageFullError

__all__ = ["Database", "is_retryable"]

_T = TypeVar("_T")

# Loads smaller than this keep their indexes up to date row by row (see `Database.deferred_indexes`).
_DEFER_INDEXES_AFTER = 50_000

# Bulk inserts into indexed tables want a larger page cache ...
_SQLITE_CACHE_PRAGMAS = ("cache_size = -65536", "temp_store = MEMORY")
# ... but SQLite sorts the entries of a new index ~3x faster with a small
# cache and a file-backed temp store (measured: 0.22 s instead of 0.63 s for
# 760k overlap rows), so CREATE INDEX runs with these.
_SQLITE_SORT_PRAGMAS = ("cache_size = -2000", "temp_store = FILE")


def _normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def is_retryable(exc: BaseException) -> bool:
    """True for errors after which re-running the whole transaction is safe and useful."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None)
    if code in ("40P01", "40001"):  # deadlock_detected, serialization_failure
        return True
    text = str(orig or exc).lower()
    return "database is locked" in text


_SQLITE_FULL = 13
"""SQLite's primary result code for "database or disk is full" (extended codes keep it in the low byte)."""
_PG_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE ``disk_full`` (class 53, insufficient resources)."""
_TARGET = re.compile(
    r"^\s*(INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM|CREATE\s+(?:UNIQUE\s+)?\w+(?:\s+IF\s+NOT\s+EXISTS)?)"
    r"\s+([\w.\"]+)",
    re.IGNORECASE,
)


def _statement_target(statement: str | None) -> str:
    """What a failed statement was writing, for people: ``inserting into dataset``, or ``committing``."""
    found = _TARGET.match(statement or "")
    if found is None:
        return "committing a transaction" if not statement else "writing to it"
    verb = found.group(1).split()[0].lower()
    table = found.group(2).replace('"', "")
    doing = {"insert": "inserting into", "update": "updating", "delete": "deleting from"}.get(
        verb, "creating"
    )
    return f"{doing} {table}"


def _set_pragmas(conn: Connection, pragmas: Sequence[str]) -> None:
    """Set SQLite pragmas inside a transaction; ``temp_store`` cannot change on a (pooled) connection
    that already used temporary storage, and then stays as it is."""
    for pragma in pragmas:
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(f"PRAGMA {pragma}")
        except sqlalchemy.exc.OperationalError:
            if not pragma.startswith("temp_store"):
                raise


def _dispose_in_forked_children(engine: Engine) -> None:
    """A forked child never reuses its parent's pooled connections (SQLAlchemy's recipe for pools and fork)."""

    @event.listens_for(engine, "connect")
    def _remember_pid(dbapi_conn: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _check_pid(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise sqlalchemy.exc.DisconnectionError("connection made in another process")


class Database:
    """An SQLAlchemy engine plus porter's transaction discipline.

    Parameters
    ----------
    url : `str`
        ``sqlite:///path/to/file.sqlite3`` or ``postgresql://user@host:port/db``.
    namespace : `str`, optional
        PostgreSQL schema holding this repository's tables (several
        repositories can share one database).  Ignored for SQLite.
    """

    def __init__(self, url: str, namespace: str | None = None):
        self.url = url
        self.engine: Engine = self._make_engine(_normalize_url(url))
        self.dialect: str = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise RepositoryError(f"Unsupported registry database {url!r}: use sqlite:/// or postgresql://.")
        self.namespace = namespace if self.dialect == "postgresql" else None
        self.metadata = sqlalchemy.MetaData(schema=self.namespace)
        self._local = threading.local()
        self._readers: list[tuple[int, Any]] = []  # (pid, connection) `fetch_raw` opened; `dispose` closes
        self._readers_lock = threading.Lock()

    def _make_engine(self, url: str) -> Engine:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # A small pool: opening a SQLite connection (and its pragmas) costs
            # ~0.5 ms, which a put (two short transactions) would pay twice.
            engine = sqlalchemy.create_engine(
                url,
                connect_args={"timeout": 60, "check_same_thread": False},
                poolclass=sqlalchemy.QueuePool,
                pool_size=4,
                max_overflow=8,
            )
            _dispose_in_forked_children(engine)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, record: Any) -> None:
                # Let SQLAlchemy's "begin" event issue BEGIN itself, so that
                # DDL is transactional and writers can take the lock up front.
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys = ON")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.execute("PRAGMA busy_timeout = 60000")
                # GLOB patterns are case-sensitive, as on PostgreSQL.
                cur.execute("PRAGMA case_sensitive_like = ON")
                for pragma in _SQLITE_CACHE_PRAGMAS:
                    cur.execute(f"PRAGMA {pragma}")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("porter_write") else "BEGIN")

            return engine
        engine = sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
        _dispose_in_forked_children(engine)
        return engine

    # --- connections ---------------------------------------------------------------------------

    @property
    def _current(self) -> Connection | None:
        return getattr(self._local, "conn", None)

    @contextlib.contextmanager
    def transaction(self, savepoint: bool = False) -> Iterator[Connection]:
        """A write transaction; nested calls join the outermost one.

        With ``savepoint=True`` a nested block can fail without aborting the
        outer transaction.
        """
        current = self._current
        if current is not None:
            if savepoint:
                with self._savepoint(current):
                    yield current
            else:
                yield current
            return
        with self.engine.connect() as conn:
            conn.info["porter_write"] = True
            self._local.conn = conn
            try:
                with conn.begin():
                    yield conn
            except sqlalchemy.exc.DBAPIError as exc:  # rolled back by now
                full = self.storage_full(exc)
                if full is None:
                    raise
                raise full from exc
            finally:
                self._local.conn = None
                conn.info["porter_write"] = False

    def storage_full(self, exc: sqlalchemy.exc.DBAPIError) -> StorageFullError | None:
        """``exc`` as a `StorageFullError` if the database ran out of space, else None.

        The one place the registry recognises a full disk: SQLite's
        ``SQLITE_FULL`` ("database or disk is full": the filesystem holding the
        database file or its WAL, or a page-count limit) and PostgreSQL's
        ``disk_full`` (SQLSTATE 53100, the server's disk).  `transaction` calls
        it after the transaction was rolled back, so the message can say that
        nothing was written.
        """
        orig = exc.orig
        what = _statement_target(exc.statement)
        if self.dialect == "sqlite":
            code = getattr(orig, "sqlite_errorcode", None)
            if (code is None or code & 0xFF != _SQLITE_FULL) and "database or disk is full" not in str(orig):
                return None
            path = self.engine.url.database or ""
            where = f"the filesystem mounted at {mount_point(path)} is full" if path else "it is full"
            problem = f"the registry database {path} cannot grow: {where} (SQLite: {orig})"
        else:
            if (getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)) != _PG_DISK_FULL:
                return None
            server = self.engine.url.render_as_string(hide_password=True)
            problem = (
                f"the PostgreSQL server of the registry ({server}) has no space left on its disk "
                f"(SQLSTATE {_PG_DISK_FULL} disk_full: {str(orig).strip()})"
            )
        return StorageFullError(
            f"Cannot write to the registry while {what}: {problem}. The transaction was rolled back, so "
            "nothing was written. Free space there and run the same command again."
        )

    @contextlib.contextmanager
    def _savepoint(self, conn: Connection) -> Iterator[None]:
        """A SAVEPOINT as plain SQL: SQLAlchemy's ``begin_nested`` costs ~0.5 ms to enter and leave,
        a sixth of a whole put, for the same two statements (both databases have the same syntax)."""
        depth = getattr(self._local, "savepoints", 0)
        name = f"porter_sp{depth}"
        conn.exec_driver_sql(f"SAVEPOINT {name}")
        self._local.savepoints = depth + 1
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlalchemy.exc.DBAPIError):  # a lost connection: the first error counts
                conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
                conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        finally:
            self._local.savepoints = depth

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for queries; inside a transaction, that transaction's connection."""
        current = self._current
        if current is not None:
            yield current
            return
        with self.engine.connect() as conn:
            # Pooled connections keep their info dict: one last used for a write must not take the write lock.
            conn.info["porter_write"] = False
            with conn.begin(), self.time_limited(conn.connection.dbapi_connection):
                yield conn

    @contextlib.contextmanager
    def time_limit(self, seconds: float) -> Iterator[None]:
        """Queries this thread starts inside the block are stopped after ``seconds`` (`QueryTimeoutError`).

        PostgreSQL enforces it (``statement_timeout``); SQLite checks the clock
        every thousand virtual-machine steps (~a few µs) and interrupts the statement.
        A server runs each client's query under its limit.
        """
        previous = getattr(self._local, "deadline", None), getattr(self._local, "limit", None)
        self._local.deadline = time.monotonic() + seconds
        self._local.limit = seconds
        try:
            yield
        finally:
            self._local.deadline, self._local.limit = previous

    def _timed_out(self) -> QueryTimeoutError:
        return QueryTimeoutError(
            f"The query ran longer than the limit of {self._local.limit:g} s and was stopped; narrow it "
            "(a tighter where, fewer collections) or fetch it in smaller pages."
        )

    @contextlib.contextmanager
    def time_limited(self, dbapi_connection: Any) -> Iterator[None]:
        """Apply this thread's `time_limit` (if any) to statements run on ``dbapi_connection`` in the block.

        The database's own interruption of an over-long statement comes out as `QueryTimeoutError`.
        On PostgreSQL the block must be inside a transaction (the limit is ``SET LOCAL``).
        """
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            yield
            return
        if time.monotonic() > deadline:  # a query of several statements stops at its next one
            raise self._timed_out()
        sqlite = self.dialect == "sqlite"
        if sqlite:
            dbapi_connection.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1_000)
        else:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(
                    f"SET LOCAL statement_timeout = {max(1, int((deadline - time.monotonic()) * 1000))}"
                )
            finally:
                cursor.close()
        try:
            yield
        except Exception as exc:
            text = str(exc)
            if "interrupted" in text or "statement timeout" in text:
                raise self._timed_out() from None
            raise
        finally:
            if sqlite:
                dbapi_connection.set_progress_handler(None, 0)

    def fetch_raw(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """Rows of one driver-level query, without SQLAlchemy's transaction machinery.

        For the hottest single-row look-ups (a get's file location): a pooled
        DBAPI connection in autocommit (SQLite) or rolled back after (PostgreSQL).
        ``sql`` uses the driver's parameter style (`param_mark`).
        """
        current = self._current
        if current is not None:
            return [tuple(r) for r in current.exec_driver_sql(sql, tuple(params)).all()]
        if self.dialect == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            cursor = self._sqlite_reader().cursor()
            try:
                cursor.execute(sql, tuple(params))
                return [tuple(r) for r in cursor.fetchall()]
            finally:
                cursor.close()
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, tuple(params))
                rows = [tuple(r) for r in cursor.fetchall()]
            finally:
                cursor.close()
            if self.dialect != "sqlite":
                raw.rollback()
            return rows
        finally:
            raw.close()

    def _sqlite_reader(self) -> Any:
        """This thread's own SQLite connection for `fetch_raw`, outside the pool.

        Checking a connection out of SQLAlchemy's pool and back costs ~0.1 ms,
        as much as the look-up itself (a dict's whole get is ~0.2 ms).  The
        connection stays in autocommit, so every statement reads the latest
        commit (WAL); a forked child opens its own.  (Not for an in-memory
        database, which another connection would not see.)
        """
        reader = getattr(self._local, "reader", None)
        if reader is not None and reader[0] == os.getpid():
            return reader[1]
        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        conn = dialect.loaded_dbapi.connect(*cargs, **{**cparams, "check_same_thread": False, "timeout": 60})
        conn.isolation_level = None
        conn.execute("PRAGMA busy_timeout = 60000")
        self._local.reader = (os.getpid(), conn)
        with self._readers_lock:
            self._readers.append(self._local.reader)
        return conn

    @property
    def param_mark(self) -> str:
        """The DBAPI driver's positional parameter marker."""
        return "?" if self.dialect == "sqlite" else "%s"

    def retrying(self, func: Callable[[], _T], attempts: int = 6) -> _T:
        """Run ``func`` (which opens its own transaction) again after deadlocks."""
        delay = 0.05
        for i in range(attempts):
            try:
                return func()
            except sqlalchemy.exc.DBAPIError as exc:
                if i == attempts - 1 or self._current is not None or not is_retryable(exc):
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # --- dialect helpers ----------------------------------------------------------------------

    def insert(self, table: sqlalchemy.Table, on_conflict: str = "error") -> Any:
        """An INSERT statement for ``table``; ``on_conflict`` is "error" or "ignore"."""
        if on_conflict == "error":
            return sqlalchemy.insert(table)
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()

    def upsert(self, table: sqlalchemy.Table, key_columns: list[str]) -> Any:
        """An INSERT that replaces the non-key columns of existing rows."""
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt: Any = sqlite_insert(table)
        else:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(table)
        others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key_columns}
        if not others:
            return stmt.on_conflict_do_nothing()
        return stmt.on_conflict_do_update(index_elements=key_columns, set_=others)

    def bulk_insert(
        self,
        conn: Connection,
        table: sqlalchemy.Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        on_conflict: str = "error",
    ) -> None:
        """Insert many rows (tuples in ``columns`` order) with set-based statements.

        This is the registry's hot path: it hands the rows straight to the
        driver (SQLite ``executemany``; PostgreSQL multi-row ``VALUES`` pages
        via psycopg2's ``execute_values``), skipping SQLAlchemy's per-row
        parameter processing.  Values must already be in database form
        (UUIDs as produced by `uuid_param`).  ``on_conflict`` is "error" or
        "ignore".
        """
        if not rows:
            return
        prep = conn.dialect.identifier_preparer
        name = prep.format_table(table)
        cols = ", ".join(prep.quote(c) for c in columns)
        if self.dialect == "sqlite":
            verb = "INSERT OR IGNORE" if on_conflict == "ignore" else "INSERT"
            marks = ", ".join("?" for _ in columns)
            conn.exec_driver_sql(f"{verb} INTO {name} ({cols}) VALUES ({marks})", list(rows))
            return
        # PostgreSQL: multi-row VALUES pages, rendered by psycopg2's own
        # quoting (mogrify) and sent through SQLAlchemy, so errors and events
        # are the same as for every other statement.
        suffix = " ON CONFLICT DO NOTHING" if on_conflict == "ignore" else ""
        prefix = f"INSERT INTO {name} ({cols}) VALUES "
        template = "(" + ", ".join("%s" for _ in columns) + ")"
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for start in range(0, len(rows), 5000):
                page = rows[start : start + 5000]
                values = b",".join(cursor.mogrify(template, tuple(r)) for r in page).decode()
                # No parameters follow, but the driver still formats: escape %.
                conn.exec_driver_sql((prefix + values + suffix).replace("%", "%%"))
        finally:
            cursor.close()

    @contextlib.contextmanager
    def deferred_indexes(self, conn: Connection, table: sqlalchemy.Table, n_incoming: int) -> Iterator[None]:
        """Build ``table``'s secondary (non-unique) indexes after a bulk load instead of during it.

        Inserting a million overlap rows in key order keeps the primary key
        append-only, but every row still lands at a random place in the
        secondary index; building that index once at the end is ~5x cheaper.
        Only done on SQLite (where DDL is transactional and the write lock is
        already exclusive), for loads of at least `_DEFER_INDEXES_AFTER` rows
        that are larger than what the table already holds.  Inside the
        caller's transaction: a failure restores the indexes with everything else.
        """
        indexes = [i for i in table.indexes if not i.unique]
        if (
            self.dialect != "sqlite"
            or not indexes
            or n_incoming < _DEFER_INDEXES_AFTER
            or self._count_up_to(conn, table, n_incoming) >= n_incoming
        ):
            yield
            return
        for index in indexes:
            index.drop(conn)
        yield
        _set_pragmas(conn, _SQLITE_SORT_PRAGMAS)
        try:
            for index in indexes:
                index.create(conn)
        finally:
            _set_pragmas(conn, _SQLITE_CACHE_PRAGMAS)

    def _count_up_to(self, conn: Connection, table: sqlalchemy.Table, limit: int) -> int:
        """``min(rows in table, limit)``, without counting a big table to the end."""
        name = conn.dialect.identifier_preparer.format_table(table)
        return int(
            conn.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT {int(limit)})"
            ).scalar_one()
        )

    def analyze(self, conn: Connection, table: sqlalchemy.Table, n_inserted: int) -> None:
        """Refresh the planner's statistics of ``table`` after a bulk load that grew it a lot.

        Without statistics SQLite picks plans that scan whole overlap or tags
        tables (seconds instead of milliseconds).  Sampled statistics are
        worse than none (they misjudge low-cardinality leading key columns),
        so this runs a full ANALYZE of the one table, and only when the load
        added at least a quarter of its previous size.
        """
        prep = conn.dialect.identifier_preparer
        name = prep.format_table(table)
        if self.dialect == "sqlite":
            has_stats = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
            ).first()
            before = None
            if has_stats:
                stat = conn.exec_driver_sql(
                    "SELECT stat FROM sqlite_stat1 WHERE tbl = ? LIMIT 1", (table.name,)
                ).first()
                before = int(stat[0].split()[0]) if stat and stat[0] else None
            if before is not None and n_inserted < before // 4:
                return
            conn.exec_driver_sql("PRAGMA analysis_limit = 0")
        else:
            row = conn.exec_driver_sql(
                f"SELECT reltuples FROM pg_class WHERE oid = '{name}'::regclass"
            ).first()
            before = int(row[0]) if row and row[0] and row[0] > 0 else None
            if before is not None and n_inserted < before // 4:
                return
        conn.exec_driver_sql(f"ANALYZE {name}")

    def lock_for_schema_change(self, conn: Connection) -> None:
        """Serialize DDL between processes (PostgreSQL advisory lock; SQLite's write lock suffices)."""
        if self.dialect == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7706170)")

    def dispose(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for pid, conn in readers:
            if pid == os.getpid():  # a forked child leaves its parent's connections alone
                conn.close()
        self._local = threading.local()
        self.engine.dispose()
