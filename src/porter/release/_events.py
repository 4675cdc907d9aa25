"""The release audit log: append-only and hash-chained, in the repository's registry database.

Every action — a check run, a shipment, a sign-off, a waiver, an override, a
finding — is one event.  Each event's hash covers its content and the hash
of the event before it, so changing or deleting any event breaks the chain
from there on, which `verify` reports.  Release state (who signed what,
which findings are open) is computed from the events, so there is nothing
else to keep consistent: an interrupted command either appended its event or
did not.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import Column, Float, Integer, String, Table, Text, UniqueConstraint

if TYPE_CHECKING:
    from ..registry import Database

__all__ = ["Event", "EventLog"]

GENESIS = "0" * 64


@dataclass(frozen=True)
class Event:
    seq: int
    release: str
    at: float
    actor: str
    action: str
    checkpoint: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _digest(
    prev: str, release: str, seq: int, at: float, actor: str, action: str, checkpoint: str, payload: str
) -> str:
    body = json.dumps(
        [prev, release, seq, repr(at), actor, action, checkpoint, payload], separators=(",", ":")
    )
    return hashlib.sha256(body.encode()).hexdigest()


class EventLog:
    """The ``release_event`` table of one repository."""

    def __init__(self, db: Database):
        self.db = db
        md = db.metadata
        key = f"{md.schema}.release_event" if md.schema else "release_event"
        existing = md.tables.get(key)
        self.table = (
            existing
            if existing is not None
            else Table(
                "release_event",
                md,
                Column("event_id", Integer, primary_key=True, autoincrement=True),
                Column("release", String(64), nullable=False),
                Column("seq", Integer, nullable=False),
                Column("at", Float, nullable=False),
                Column("actor", String(128), nullable=False),
                Column("action", String(32), nullable=False),
                Column("checkpoint", String(64), nullable=False),
                Column("payload", Text, nullable=False),
                Column("prev_hash", String(64), nullable=False),
                Column("hash", String(64), nullable=False),
                UniqueConstraint("release", "seq", name="release_event_seq"),
            )
        )
        self._ensure_table()

    def _ensure_table(self) -> None:
        """Create the table in a repository that has none yet, once per database per process.

        Looked for on a reading connection first: taking the write lock (SQLite's ``BEGIN IMMEDIATE``)
        for a table that is there would make every `Release` opened — every dashboard page — queue
        behind every other one, in every worker, for a no-op.
        """
        created: set[str] = self.db.metadata.info.setdefault("porter_release_tables", set())
        if self.table.name in created:
            return
        with self.db.reading() as conn:
            there = sqlalchemy.inspect(conn).has_table(self.table.name, schema=self.table.schema)
        if not there:
            with self.db.transaction() as conn:
                self.db.lock_for_schema_change(conn)
                self.table.create(conn, checkfirst=True)
        created.add(self.table.name)

    def append(
        self,
        release: str,
        actor: str,
        action: str,
        checkpoint: str = "",
        payload: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Event:
        """Add one event at the end of the release's chain (atomically; concurrent appends retry).

        ``clock`` gives the event's time (tests move it forward to pass a test period; users cannot).
        """
        text = json.dumps(payload or {}, sort_keys=True, default=str)
        t = self.table.c

        def write() -> Event:
            with self.db.transaction() as conn:
                last = conn.execute(
                    sqlalchemy.select(t.seq, t.hash)
                    .where(t.release == release)
                    .order_by(t.seq.desc())
                    .limit(1)
                ).first()
                seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
                at = clock()
                digest = _digest(prev, release, seq, at, actor, action, checkpoint, text)
                conn.execute(
                    sqlalchemy.insert(self.table).values(
                        release=release,
                        seq=seq,
                        at=at,
                        actor=actor,
                        action=action,
                        checkpoint=checkpoint,
                        payload=text,
                        prev_hash=prev,
                        hash=digest,
                    )
                )
                return Event(seq, release, at, actor, action, checkpoint, json.loads(text), prev, digest)

        for attempt in range(10):
            try:
                return self.db.retrying(write)
            except sqlalchemy.exc.IntegrityError:  # another writer took this seq: go again on top of it
                if attempt == 9:
                    raise
        raise AssertionError("unreachable")

    def _rows(self, release: str) -> list[Any]:
        t = self.table.c
        with self.db.reading() as conn:
            return list(
                conn.execute(
                    sqlalchemy.select(self.table).where(t.release == release).order_by(t.seq)
                ).mappings()
            )

    def events(self, release: str) -> list[Event]:
        return [
            Event(
                int(r["seq"]),
                r["release"],
                float(r["at"]),
                r["actor"],
                r["action"],
                r["checkpoint"],
                json.loads(r["payload"]),
                r["prev_hash"],
                r["hash"],
            )
            for r in self._rows(release)
        ]

    def head(self, release: str) -> tuple[int, str]:
        """The last event's (seq, hash): ``(0, GENESIS)`` for an empty log."""
        t = self.table.c
        with self.db.reading() as conn:
            last = conn.execute(
                sqlalchemy.select(t.seq, t.hash).where(t.release == release).order_by(t.seq.desc()).limit(1)
            ).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def verify(self, release: str) -> list[str]:
        """Problems with the chain (an empty list means it is intact)."""
        rows = self._rows(release)
        problems = []
        prev = GENESIS
        for expected_seq, r in enumerate(rows, start=1):
            if int(r["seq"]) != expected_seq:
                problems.append(f"event {expected_seq} is missing (the next is {r['seq']})")
            if r["prev_hash"] != prev:
                problems.append(f"event {r['seq']} does not follow the event before it (chain broken)")
            digest = _digest(
                r["prev_hash"],
                r["release"],
                int(r["seq"]),
                float(r["at"]),
                r["actor"],
                r["action"],
                r["checkpoint"],
                r["payload"],
            )
            if digest != r["hash"]:
                problems.append(
                    f"event {r['seq']} ({r['action']} by {r['actor']}) was altered: its hash does not match"
                )
            prev = r["hash"]
        return problems
