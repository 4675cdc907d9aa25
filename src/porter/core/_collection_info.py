"""What a registry knows about its collections, and searches over that knowledge, without SQL.

Kept apart from `CollectionManager` (which reads and writes the tables through
SQLAlchemy) so that a reader that gets the same rows another way — the CLI's
listing through the standard library's sqlite3 — builds the same
`CollectionInfo` objects and answers a collection expression exactly as the
registry does, without importing SQLAlchemy.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MissingCollectionError, did_you_mean
from ._collection_type import CollectionType

__all__ = [
    "CollectionExpression",
    "CollectionInfo",
    "infos_from_rows",
    "is_pattern",
    "lookup",
    "select_names",
]

CollectionExpression = str | re.Pattern | Iterable[str | re.Pattern]


@dataclass(frozen=True)
class CollectionInfo:
    """What the registry knows about one collection."""

    name: str
    type: CollectionType
    doc: str | None = None
    children: tuple[str, ...] = ()
    """Children of a CHAINED collection, in search order."""
    id: int = 0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "type": self.type.name}
        if self.doc:
            out["doc"] = self.doc
        if self.type is CollectionType.CHAINED:
            out["children"] = list(self.children)
        return out


def is_pattern(text: str) -> bool:
    """True if a collection name contains glob wildcards."""
    return any(c in text for c in "*?[")


def infos_from_rows(rows: Iterable[Any], chain_rows: Iterable[tuple[int, int]]) -> dict[str, CollectionInfo]:
    """Collections by name from the rows of the ``collection`` and ``collection_chain`` tables.

    ``rows`` are ``(collection_id, name, type, doc)``; ``chain_rows`` are
    ``(parent, child)`` ids in search order within each parent.
    """
    rows = list(rows)
    names = {r[0]: r[1] for r in rows}
    children: dict[int, list[str]] = {}
    for parent, child in chain_rows:
        children.setdefault(parent, []).append(names[child])
    return {
        name: CollectionInfo(
            name=name,
            type=CollectionType(ctype),
            doc=doc,
            children=tuple(children.get(cid, ())),
            id=cid,
        )
        for cid, name, ctype, doc in rows
    }


def _split_expression(expression: CollectionExpression) -> tuple[list[str], list[re.Pattern]]:
    """Split an expression into exact names and compiled patterns."""
    items: list[str | re.Pattern] = (
        [expression] if isinstance(expression, str | re.Pattern) else list(expression)
    )
    names: list[str] = []
    patterns: list[re.Pattern] = []
    for item in items:
        if isinstance(item, re.Pattern):
            patterns.append(item)
        elif item in ("*", "...") or is_pattern(item):
            patterns.append(re.compile(fnmatch.translate("*" if item == "..." else item)))
        else:
            names.append(item)
    return names, patterns


def lookup(by_name: Mapping[str, CollectionInfo], name: str) -> CollectionInfo:
    """``by_name[name]``, or `MissingCollectionError` naming the closest names."""
    info = by_name.get(name) if isinstance(name, str) else None
    if info is None:
        if not isinstance(name, str):
            raise MissingCollectionError(
                f"Collection names are strings, not {type(name).__name__} ({name!r})."
            )
        raise MissingCollectionError(
            f"Collection {name!r} does not exist." + did_you_mean(name, by_name, "collections")
        )
    return info


def select_names(
    by_name: Mapping[str, CollectionInfo],
    expression: CollectionExpression = "*",
    collection_types: Iterable[CollectionType | str] | CollectionType | str | None = None,
    flatten_chains: bool = False,
    include_chains: bool | None = None,
) -> list[str]:
    """Names of the collections in ``by_name`` matching glob patterns, regexes or exact names.

    Exact names that do not exist are errors (a typo should not look like
    an empty result); patterns may match nothing.  With ``flatten_chains``
    the children of matching chains are included too (and the chains
    themselves only if ``include_chains``).
    """
    if collection_types is None:
        types = CollectionType.all()
    elif isinstance(collection_types, CollectionType | str):
        types = frozenset({CollectionType.from_name(collection_types)})
    else:
        types = frozenset(CollectionType.from_name(t) for t in collection_types)
    if include_chains is None:
        include_chains = not flatten_chains
    names, patterns = _split_expression(expression)
    matched: list[CollectionInfo] = [lookup(by_name, n) for n in names]
    for info in sorted(by_name.values(), key=lambda i: i.name):
        if any(p.fullmatch(info.name) for p in patterns) and info not in matched:
            matched.append(info)
    out: list[str] = []

    def add(info: CollectionInfo) -> None:
        if info.name in out:
            return
        if info.type is CollectionType.CHAINED:
            if include_chains and info.type in types:
                out.append(info.name)
            if flatten_chains:
                for child in info.children:
                    add(lookup(by_name, child))
        elif info.type in types:
            out.append(info.name)

    for info in matched:
        add(info)
    return out
