"""Idempotency keys: a write retried with the same key is answered, not done again.

A client sends ``Idempotency-Key: <random>`` with every write and the same key
on every retry of it.  The first time, the server does the write and keeps its
answer under (user, key) in the repository's database; a retry (the answer
was lost to a dropped connection, or the client cannot tell whether it
arrived) gets the kept answer — so ``remove_runs`` retried does not fail on
the run it already removed, and nothing is done twice.  Answers are kept for a
day.  Puts need no key: the dataset's UUID, drawn by the client, plays that part.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy

from ..errors import PorterError
from ..registry import Database

__all__ = ["IdempotencyStore"]

KEEP_SECONDS = 86_400.0
MAX_KEY_LENGTH = 128


class IdempotencyStore:
    """Answers of keyed writes, by (user, key), in the repository's database."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock
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
        """``write()``'s answer; done only if no earlier request of ``user`` with ``key`` was answered."""
        if key is None:
            return write()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise PorterError(f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable characters.")
        t = self.table
        with self.db.reading() as conn:
            row = conn.execute(
                sqlalchemy.select(t.c.answer).where(t.c.user_name == user, t.c.idempotency_key == key)
            ).first()
        if row is not None:
            return dict(json.loads(row.answer))
        answer = write()
        now = self.clock()
        try:
            with self.db.transaction() as conn:
                conn.execute(sqlalchemy.delete(t).where(t.c.created < now - KEEP_SECONDS))
                conn.execute(
                    sqlalchemy.insert(t).values(
                        user_name=user, idempotency_key=key, answer=json.dumps(answer), created=now
                    )
                )
        except sqlalchemy.exc.IntegrityError:
            pass  # a concurrent retry answered first; both did the same idempotent-by-key write
        return answer
