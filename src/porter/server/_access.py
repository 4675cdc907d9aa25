"""What a caller may see: collection expressions resolved to the collections they may read.

Every read goes through here before it reaches the registry.  A collection
the caller may not read behaves exactly as one that does not exist — in
listings, globs, chains (its children are left out of the search), find-first
searches, dataset-ID look-ups, counts and error messages — so a user cannot
learn that an embargoed collection exists.  Suggestions in error messages are
drawn from readable names only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..butler import DirectButler
from ..core import CollectionInfo, CollectionType, is_pattern
from ..errors import MissingCollectionError, did_you_mean

__all__ = ["Reader", "readable_collections", "readable_info", "require_readable"]


class Reader(Protocol):
    """What access decisions need of a caller (`porter.server.Principal` is one)."""

    def can_read(self, collection: str) -> bool: ...


def _missing(name: str, butler: DirectButler, reader: Reader) -> MissingCollectionError:
    readable = [n for n in butler.collections.query("*") if reader.can_read(n)]
    return MissingCollectionError(f"Collection {name!r} not found.{did_you_mean(name, readable)}")


def require_readable(butler: DirectButler, reader: Reader, name: str) -> CollectionInfo:
    """The collection ``name``, or the same `MissingCollectionError` whether it is missing or unreadable."""
    if not reader.can_read(name):
        raise _missing(name, butler, reader)
    try:
        return butler.collections.get_info(name)
    except MissingCollectionError:
        raise _missing(name, butler, reader) from None


def readable_info(butler: DirectButler, reader: Reader, info: CollectionInfo) -> dict[str, Any]:
    """A collection's description as JSON, its chain showing readable children only."""
    return {
        "name": info.name,
        "type": info.type.name,
        "doc": info.doc or "",
        "children": [c for c in info.children if reader.can_read(c)],
    }


def readable_collections(butler: DirectButler, reader: Reader, expression: Sequence[str] | str) -> list[str]:
    """The collections a search over ``expression`` covers for this caller, chains expanded, in search order.

    Exact names must be readable (else `MissingCollectionError`, the same as
    for a name that does not exist); globs match readable collections only;
    a readable chain contributes its readable children, in order.
    """
    names = [expression] if isinstance(expression, str) else list(expression)
    out: list[str] = []
    seen: set[str] = set()

    def add(name: str, depth: int = 0) -> None:
        if name in seen or depth > 100:
            return
        info = butler.collections.get_info(name)
        if info.type is CollectionType.CHAINED:
            for child in info.children:
                if reader.can_read(child):
                    add(child, depth + 1)
            return
        seen.add(name)
        out.append(name)

    for name in names:
        if is_pattern(name):
            for match in butler.collections.query(name):
                if reader.can_read(match):
                    add(match)
        else:
            require_readable(butler, reader, name)
            add(name)
    return out
