"""``butler.collections``: register, query, chain and remove collections."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..core import CollectionInfo, CollectionType
from ..errors import CollectionTypeError

if TYPE_CHECKING:
    from ._direct_butler import DirectButler

__all__ = ["ButlerCollections"]


def _list(names: str | Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


class ButlerCollections:
    """Collection operations, named as in daf_butler's ``butler.collections``."""

    def __init__(self, butler: DirectButler):
        self._butler = butler
        self._manager = butler.registry.collections

    @property
    def defaults(self) -> list[str]:
        """The collections searched when a call names none."""
        return list(self._butler._default_collections)

    def register(
        self, name: str, type: CollectionType | str = CollectionType.RUN, doc: str | None = None
    ) -> bool:
        """Create a collection (RUN by default); `False` if it already exists with that type."""
        return self._manager.register(name, type, doc)

    def query(
        self,
        expression: Any = "*",
        collection_types: Any = None,
        flatten_chains: bool = False,
        include_chains: bool | None = None,
    ) -> list[str]:
        """Names of collections matching globs (``"u/me/*"``), regexes or exact names."""
        return self._manager.query(expression, collection_types, flatten_chains, include_chains)

    def query_info(
        self,
        expression: Any = "*",
        collection_types: Any = None,
        flatten_chains: bool = False,
        include_chains: bool | None = None,
    ) -> list[CollectionInfo]:
        """Like `query`, with type, doc and children of each collection."""
        return [
            self._manager.get(n)
            for n in self.query(expression, collection_types, flatten_chains, include_chains)
        ]

    def get_info(self, name: str) -> CollectionInfo:
        return self._manager.get(name)

    def _chain(self, parent: str) -> list[str]:
        info = self._manager.get(parent)
        if info.type is not CollectionType.CHAINED:
            raise CollectionTypeError(f"Collection {parent!r} is {info.type.name}, not CHAINED.")
        return list(info.children)

    def redefine_chain(self, parent: str, children: str | Sequence[str]) -> None:
        """Set a chain's children (creating the chain if it does not exist).

        The children are looked up first, so a misspelt child creates no empty chain.
        """
        child_names = _list(children)
        for child in child_names:
            self._manager.get(child)
        if self._manager.find(parent) is None:
            self._manager.register(parent, CollectionType.CHAINED)
        self._manager.set_chain(parent, child_names)

    def extend_chain(self, parent: str, children: str | Sequence[str]) -> None:
        """Append children to the end of a chain (moving any already in it)."""
        new = _list(children)
        current = [c for c in self._chain(parent) if c not in new]
        self._manager.set_chain(parent, current + new)

    def prepend_chain(self, parent: str, children: str | Sequence[str]) -> None:
        """Put children at the front of a chain (moving any already in it)."""
        new = _list(children)
        current = [c for c in self._chain(parent) if c not in new]
        self._manager.set_chain(parent, new + current)

    def remove_from_chain(self, parent: str, children: str | Sequence[str]) -> None:
        """Remove children from a chain."""
        drop = set(_list(children))
        self._manager.set_chain(parent, [c for c in self._chain(parent) if c not in drop])

    def x_remove(self, name: str) -> None:
        """Remove a collection (refused while it is in a chain or a run holds datasets)."""
        self._manager.remove(name)

    remove = x_remove
