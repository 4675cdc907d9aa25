"""The server's audit log: one append-only table of who changed what, when.

Every permission change `Accounts` makes is written here in the same
transaction as the change itself (so the log never misses a change, nor
records one that was rolled back); the server adds one entry per write.
Nothing in porter updates or deletes these rows.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Connection

__all__ = ["AuditEntry", "audit_table", "read_audit", "write_audit"]


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    """Position in the log (increasing)."""
    time: datetime.datetime
    """When (UTC)."""
    actor: str | None
    """Who (a user name, an operator's login; None: anonymous)."""
    action: str
    """What, as ``noun.verb``: ``user.add``, ``token.revoke``, ``grant.add``, ``put`` …"""
    target: str
    """What it was done to: a user, group, token id, ``GROUP read PATTERN``, a collection …"""
    detail: dict[str, Any] = field(default_factory=dict)
    """Everything else worth keeping (JSON)."""

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready values (time in ISO 8601)."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


def audit_table(metadata: MetaData) -> Table:
    """The ``porter_auth_audit`` table in ``metadata``."""
    return Table(
        "porter_auth_audit",
        metadata,
        Column("audit_id", Integer, primary_key=True, autoincrement=True),
        Column("at", Float, nullable=False),
        Column("actor", String(128), nullable=True),
        Column("action", String(64), nullable=False, index=True),
        Column("target", Text, nullable=False),
        Column("detail", Text, nullable=False),
    )


def write_audit(
    conn: Connection,
    table: Table,
    at: float,
    actor: str | None,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None,
) -> None:
    """Append one entry, in the caller's transaction."""
    conn.execute(
        sqlalchemy.insert(table).values(
            at=at,
            actor=actor,
            action=action,
            target=target,
            detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
        )
    )


def read_audit(conn: Connection, table: Table, limit: int, action: str | None) -> list[AuditEntry]:
    """The newest ``limit`` entries (of ``action`` only, if given), newest first."""
    query = sqlalchemy.select(table).order_by(table.c.audit_id.desc()).limit(limit)
    if action is not None:
        query = query.where(table.c.action == action)
    return [
        AuditEntry(
            id=int(r.audit_id),
            time=datetime.datetime.fromtimestamp(r.at, datetime.UTC),
            actor=r.actor,
            action=r.action,
            target=r.target,
            detail=json.loads(r.detail),
        )
        for r in conn.execute(query)
    ]
