"""How porter.verify's modules define their tables on a repository's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Table

if TYPE_CHECKING:
    from ..registry import Database

__all__ = ["define_table"]


def define_table(db: Database, name: str, *columns: Any, **options: Any) -> Table:
    """The table ``name`` on ``db``'s metadata: defined once per database, however many stores open it.

    SQLAlchemy refuses a second definition of a table on one MetaData, and a repository's database
    is shared by every store, alert book and outbox opened on it.
    """
    md = db.metadata
    existing = md.tables.get(f"{md.schema}.{name}" if md.schema else name)
    return existing if existing is not None else Table(name, md, *columns, **options)
