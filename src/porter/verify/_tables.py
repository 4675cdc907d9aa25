"""How porter.verify's modules define their tables on a repository's database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table

if TYPE_CHECKING:
    from ..registry import Database

__all__ = ["create_tables", "define_table"]


def define_table(db: Database, name: str, *columns: Any, **options: Any) -> Table:
    """The table ``name`` on ``db``'s metadata: defined once per database, however many stores open it.

    SQLAlchemy refuses a second definition of a table on one MetaData, and a repository's database
    is shared by every store, alert book and outbox opened on it.
    """
    md = db.metadata
    existing = md.tables.get(f"{md.schema}.{name}" if md.schema else name)
    return existing if existing is not None else Table(name, md, *columns, **options)


def create_tables(db: Database, tables: Iterable[Table]) -> None:
    """Create those of ``tables`` the database lacks, one process at a time.

    Two processes opening a new repository at once would otherwise both find a table missing and
    both create it (PostgreSQL: a unique violation in its catalogue); the schema-change lock
    serialises them, and the second finds the tables there.
    """
    tables = list(tables)
    created: set[str] = db.metadata.info.setdefault("porter_verify_tables", set())
    if all(t.name in created for t in tables):
        return
    import sqlalchemy

    with db.reading() as conn:  # the usual case: every table there, no write lock needed
        inspector = sqlalchemy.inspect(conn)
        missing = [t for t in tables if not inspector.has_table(t.name, schema=t.schema)]
    if missing:
        with db.transaction() as conn:
            db.lock_for_schema_change(conn)
            for t in tables:
                t.create(conn, checkfirst=True)
    created.update(t.name for t in tables)
