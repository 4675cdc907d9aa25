"""Idempotency keys: a write retried with the same key is answered, not done again — even when the retry
arrives while the first attempt is still running.

A client sends ``Idempotency-Key: <random>`` with every write and the same key
on every retry of it.  Before the write runs, its key is *reserved*: a row
(user, key) with no answer yet is inserted in the repository's database, and
the primary key lets only one request — on any worker or replica — insert it.
The request that reserved the key does the write and stores its answer in the
row; a concurrent request with the same key finds the reservation and waits
for that answer (or, after `IdempotencyStore.wait` seconds, is told to retry
later: 503 with Retry-After, which the client honours with the same key).  A
retry after the answer was stored gets the stored answer — so ``remove_runs``
retried does not fail on the run it already removed, and nothing is done twice.

A write that fails releases its reservation (the write is atomic: it did
nothing), so a retry runs it again.  A reservation whose request died with its
worker is taken over once it is `IdempotencyStore.abandoned_after` seconds
old.  Answers are kept for a day.  Puts need no key: the dataset's UUID, drawn
by the client, plays that part.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy

from ..errors import PorterError
from ..registry import Database

__all__ = ["IdempotencyStore", "KeyInUseError"]

KEEP_SECONDS = 86_400.0
MAX_KEY_LENGTH = 128
RESERVED = ""
"""The answer column of a reserved key whose write is still running (a real answer is a JSON object)."""


class KeyInUseError(PorterError):
    """Another request with this idempotency key is still running (the server answers 503 with Retry-After)."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class IdempotencyStore:
    """Answers of keyed writes, by (user, key), in the repository's database."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], float] = time.time,
        *,
        wait: float = 30.0,
        abandoned_after: float = 600.0,
        poll: float = 0.02,
    ):
        self.db = db
        self.clock = clock
        self.wait = wait
        """Seconds a request waits for the answer of a concurrent one with its key before it is told to retry."""
        self.abandoned_after = abandoned_after
        """Seconds after which a reservation with no answer is taken to be a dead worker's, and taken over."""
        self.poll = poll
        metadata = sqlalchemy.MetaData(schema=db.namespace)
        self.table = sqlalchemy.Table(
            "porter_server_idempotency",
            metadata,
            sqlalchemy.Column("user_name", sqlalchemy.String(64), primary_key=True),
            sqlalchemy.Column("idempotency_key", sqlalchemy.String(MAX_KEY_LENGTH), primary_key=True),
            sqlalchemy.Column("answer", sqlalchemy.Text, nullable=False),
            sqlalchemy.Column("created", sqlalchemy.Float, nullable=False),
        )
        metadata.create_all(db.engine, checkfirst=True)

    def once(self, user: str, key: str | None, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``write()``'s answer; done only if no other request of ``user`` with ``key`` did it or is doing it."""
        if key is None:
            return write()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise PorterError(f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable characters.")
        deadline = time.monotonic() + self.wait
        while True:
            if self._reserve(user, key):
                return self._run(user, key, write)
            answer = self._answer(user, key)
            if answer is not None:
                return answer
            if time.monotonic() > deadline:
                raise KeyInUseError(
                    "A request with this Idempotency-Key is still running; retry with the same key to get its answer.",
                    retry_after=1,
                )
            time.sleep(self.poll)

    def _reserve(self, user: str, key: str) -> bool:
        """Whether this request reserved the key (inserted its row, or took over an abandoned reservation)."""
        t = self.table
        now = self.clock()
        try:
            with self.db.transaction() as conn:
                conn.execute(sqlalchemy.delete(t).where(t.c.created < now - KEEP_SECONDS))
                conn.execute(
                    sqlalchemy.insert(t).values(
                        user_name=user, idempotency_key=key, answer=RESERVED, created=now
                    )
                )
            return True
        except sqlalchemy.exc.IntegrityError:
            pass
        with self.db.transaction() as conn:  # one UPDATE: of two takers, one changes the row, the other none
            taken = conn.execute(
                sqlalchemy.update(t)
                .where(
                    t.c.user_name == user,
                    t.c.idempotency_key == key,
                    t.c.answer == RESERVED,
                    t.c.created < now - self.abandoned_after,
                )
                .values(created=now)
            )
        return bool(taken.rowcount == 1)

    def _answer(self, user: str, key: str) -> dict[str, Any] | None:
        """The stored answer for the key; None while it is reserved (or if its reservation was released)."""
        t = self.table
        with self.db.reading() as conn:
            row = conn.execute(
                sqlalchemy.select(t.c.answer).where(t.c.user_name == user, t.c.idempotency_key == key)
            ).first()
        if row is None or row.answer == RESERVED:
            return None
        return dict(json.loads(row.answer))

    def _run(self, user: str, key: str, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Do the write under the reservation: store its answer, or release the key if it fails."""
        t = self.table
        mine = (t.c.user_name == user) & (t.c.idempotency_key == key)
        try:
            answer = write()
        except BaseException:
            with self.db.transaction() as conn:
                conn.execute(sqlalchemy.delete(t).where(mine, t.c.answer == RESERVED))
            raise
        with self.db.transaction() as conn:
            conn.execute(
                sqlalchemy.update(t).where(mine).values(answer=json.dumps(answer), created=self.clock())
            )
        return answer
