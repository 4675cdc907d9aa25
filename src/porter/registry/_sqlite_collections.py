"""A SQLite registry's collections read through the standard library's sqlite3, without SQLAlchemy.

Importing SQLAlchemy costs 0.13-0.2 s, half of a short CLI command: listing
the collections of a local repository (``porter query-collections``) is what
people type most and should answer at once.  This module reads the two
collection tables read-only and hands the rows to the same builder the
registry uses (`infos_from_rows`), so both paths give the same answer.
Anything unexpected (not SQLite, no such file, a schema this reader does not
know, a locked database) returns `None` and the caller opens the registry
the ordinary way, which explains the problem properly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..core import CollectionInfo, infos_from_rows

__all__ = ["read_sqlite_collections"]

_SQLITE_PREFIX = "sqlite:///"

_CHAINS = "SELECT parent, child FROM collection_chain ORDER BY parent, position"
_COLLECTIONS = "SELECT collection_id, name, type, doc FROM collection"
# The same statements CollectionManager.refresh issues through SQLAlchemy (chains first, as there).


def read_sqlite_collections(registry_url: str) -> dict[str, CollectionInfo] | None:
    """The collections by name of the SQLite registry at ``registry_url``, or `None` if not readable here."""
    if not registry_url.startswith(_SQLITE_PREFIX):
        return None
    path = Path(registry_url[len(_SQLITE_PREFIX) :])
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        chain_rows = conn.execute(_CHAINS).fetchall()
        rows = conn.execute(_COLLECTIONS).fetchall()
        return infos_from_rows(rows, chain_rows)
    except (sqlite3.Error, KeyError, ValueError):
        return None
    finally:
        conn.close()
