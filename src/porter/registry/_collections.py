"""Collections: RUN, TAGGED, CHAINED and CALIBRATION, and searches through them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy

from ..core import (
    CollectionExpression,
    CollectionInfo,
    CollectionType,
    infos_from_rows,
    is_pattern,
    lookup,
    select_names,
)
from ..dimensions import Timespan
from ..errors import (
    CollectionCycleError,
    CollectionTypeError,
    ConflictingDefinitionError,
    InUseError,
)
from ._db import Database
from ._schema import RegistrySchema

__all__ = [
    "COLLECTION_NAME_MAX_LENGTH",
    "CollectionExpression",
    "CollectionInfo",
    "CollectionManager",
    "check_collection_name",
    "is_pattern",
]

COLLECTION_NAME_MAX_LENGTH = 64
"""daf_butler's limit (``COLLECTION_NAME_MAX_LENGTH``): its schema holds no longer names, so a longer
name here could never be exported to a daf_butler repository."""


def check_collection_name(name: object) -> None:
    """Refuse a name no collection can have: daf_butler's rules, checked wherever a collection is made.

    Non-empty, at most `COLLECTION_NAME_MAX_LENGTH` characters, no control
    characters (a NUL cannot be stored by PostgreSQL; a newline or escape
    corrupts every listing that prints the name), no surrounding spaces and
    no glob characters (``*``, ``?``, ``[``), which would make the name a
    pattern wherever collections are searched.
    """
    if not isinstance(name, str) or not name:
        raise ConflictingDefinitionError(f"Invalid collection name {name!r}: give a non-empty string.")
    if len(name) > COLLECTION_NAME_MAX_LENGTH:
        raise ConflictingDefinitionError(
            f"Invalid collection name {name[:40]!r}… ({len(name)} characters): collection names have at most "
            f"{COLLECTION_NAME_MAX_LENGTH} characters (as in daf_butler); choose a shorter one."
        )
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise ConflictingDefinitionError(
            f"Invalid collection name {name!r}: it contains a control character (NUL, newline, tab, escape…); "
            "use printable characters only."
        )
    if name != name.strip() or is_pattern(name):
        raise ConflictingDefinitionError(
            f"Invalid collection name {name!r}: names are without surrounding spaces or glob characters "
            "(*, ?, [)."
        )


class CollectionManager:
    """Registers, removes, chains and searches collections."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self._db = db
        self._schema = schema
        self._by_name: dict[str, CollectionInfo] = {}
        self._by_id: dict[int, CollectionInfo] = {}

    # --- cache ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload all collections (cheap: the collection tables are small)."""
        t = self._schema.collection
        c = self._schema.collection_chain
        with self._db.reading() as conn:
            # Chains first: under READ COMMITTED, collections read after them include every member they name.
            chain_rows = conn.execute(
                sqlalchemy.select(c.c.parent, c.c.child).order_by(c.c.parent, c.c.position)
            ).all()
            rows = conn.execute(sqlalchemy.select(t.c.collection_id, t.c.name, t.c.type, t.c.doc)).all()
        self._by_name = infos_from_rows(rows, chain_rows)
        self._by_id = {info.id: info for info in self._by_name.values()}

    def find(self, name: str) -> CollectionInfo | None:
        """Return a collection's info, or `None` if it does not exist."""
        info = self._by_name.get(name)
        if info is None:
            self.refresh()
            info = self._by_name.get(name)
        return info

    def get(self, name: str) -> CollectionInfo:
        """Return a collection's info, or raise `MissingCollectionError` with the closest names."""
        if isinstance(name, str):
            self.find(name)  # reloads on a miss
        return lookup(self._by_name, name)

    def get_by_id(self, collection_id: int) -> CollectionInfo:
        info = self._by_id.get(collection_id)
        if info is None:
            self.refresh()
            info = self._by_id[collection_id]
        return info

    # --- registration ------------------------------------------------------------------------

    def register(
        self, name: str, type: CollectionType | str = CollectionType.RUN, doc: str | None = None
    ) -> bool:
        """Create a collection; `False` if it already exists with the same type.

        Raises
        ------
        ConflictingDefinitionError
            If it exists with a different type.
        """
        ctype = CollectionType.from_name(type)
        check_collection_name(name)
        existing = self.find(name)
        if existing is not None:
            if existing.type is not ctype:
                raise ConflictingDefinitionError(
                    f"Collection {name!r} already exists as {existing.type.name}, not {ctype.name}."
                )
            return False
        t = self._schema.collection
        with self._db.transaction() as conn:
            res = conn.execute(
                self._db.insert(t, on_conflict="ignore").values(name=name, type=int(ctype), doc=doc)
            )
            created = res.rowcount == 1
            if created and ctype is CollectionType.RUN:
                cid = conn.execute(sqlalchemy.select(t.c.collection_id).where(t.c.name == name)).scalar_one()
                conn.execute(sqlalchemy.insert(self._schema.run).values(collection_id=cid))
        self.refresh()
        info = self._by_name[name]
        if info.type is not ctype:
            raise ConflictingDefinitionError(
                f"Collection {name!r} already exists as {info.type.name}, not {ctype.name}."
            )
        return created

    def set_doc(self, name: str, doc: str | None) -> None:
        info = self.get(name)
        t = self._schema.collection
        with self._db.transaction() as conn:
            conn.execute(sqlalchemy.update(t).where(t.c.collection_id == info.id).values(doc=doc))
        self.refresh()

    def run_timespan(self, name: str) -> tuple[str | None, Timespan]:
        """Host and timespan recorded for a RUN collection."""
        info = self.get(name)
        r = self._schema.run
        with self._db.reading() as conn:
            row = conn.execute(sqlalchemy.select(r).where(r.c.collection_id == info.id)).one_or_none()
        if row is None or row.timespan_begin is None:
            return (row.host if row else None), Timespan(None, None)
        return row.host, Timespan.from_nsec(row.timespan_begin, row.timespan_end)

    # --- chains --------------------------------------------------------------------------------

    def set_chain(self, parent: str, children: Sequence[str], flatten: bool = False) -> None:
        """Define the children of a CHAINED collection, in search order.

        Raises
        ------
        CollectionTypeError
            If ``parent`` is not CHAINED.
        CollectionCycleError
            If the chain would contain itself, directly or through other chains.
        """
        if isinstance(children, str):
            children = [children]
        info = self.get(parent)
        if info.type is not CollectionType.CHAINED:
            raise CollectionTypeError(
                f"Collection {parent!r} is {info.type.name}, not CHAINED; only chains have children."
            )
        child_infos = [self.get(c) for c in children]
        if flatten:
            flat: list[str] = []
            for c in child_infos:
                for leaf in self.flatten([c.name]):
                    if leaf.name not in flat:
                        flat.append(leaf.name)
            child_infos = [self.get(n) for n in flat]
        seen: list[str] = []
        for c in child_infos:
            if c.name in seen:
                raise ConflictingDefinitionError(f"Collection {c.name!r} appears twice in chain {parent!r}.")
            seen.append(c.name)
        for c in child_infos:
            path = self._path_to(c.name, parent)
            if path is not None:
                raise CollectionCycleError(
                    f"Adding {c.name!r} to chain {parent!r} would make a cycle: "
                    + " -> ".join([parent, *path])
                )
        t = self._schema.collection_chain
        with self._db.transaction() as conn:
            conn.execute(sqlalchemy.delete(t).where(t.c.parent == info.id))
            if child_infos:
                conn.execute(
                    sqlalchemy.insert(t),
                    [{"parent": info.id, "position": i, "child": c.id} for i, c in enumerate(child_infos)],
                )
        self.refresh()

    def _path_to(self, start: str, target: str) -> list[str] | None:
        """If ``target`` is reachable from ``start`` through chains, the path; else `None`."""
        if start == target:
            return [start]
        info = self.get(start)
        for child in info.children:
            sub = self._path_to(child, target)
            if sub is not None:
                return [start, *sub]
        return None

    def parents_of(self, name: str) -> list[str]:
        """CHAINED collections that list ``name`` as a direct child."""
        self.refresh()
        return sorted(i.name for i in self._by_name.values() if name in i.children)

    def flatten(self, names: Iterable[str]) -> list[CollectionInfo]:
        """Expand chains depth-first into the ordered, de-duplicated search path."""
        out: list[CollectionInfo] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            info = self.get(n)
            if info.type is CollectionType.CHAINED:
                for child in info.children:
                    visit(child)
            elif n not in seen:
                seen.add(n)
                out.append(info)

        for n in names:
            visit(n)
        return out

    # --- removal -------------------------------------------------------------------------------

    def remove(self, name: str, *, allow_datasets: bool = False) -> None:
        """Remove a collection.

        Refused while it is a child of a chain, or (for RUN collections) while
        it holds datasets unless ``allow_datasets`` (used by ``remove_runs``,
        which deletes those datasets in the same transaction).
        """
        info = self.get(name)
        parents = self.parents_of(name)
        if parents:
            raise InUseError(
                f"Collection {name!r} is a child of chained collection(s) {parents}; "
                "remove it from those chains first (porter collection-chain … --mode remove)."
            )
        with self._db.transaction() as conn:
            if info.type is CollectionType.RUN and not allow_datasets:
                d = self._schema.dataset
                n = conn.execute(
                    sqlalchemy.select(sqlalchemy.func.count()).select_from(d).where(d.c.run_id == info.id)
                ).scalar_one()
                if n:
                    raise InUseError(
                        f"RUN collection {name!r} still holds {n} dataset(s); use remove_runs "
                        "(porter remove-runs) to delete a run with its datasets."
                    )
            conn.execute(
                sqlalchemy.delete(self._schema.collection).where(
                    self._schema.collection.c.collection_id == info.id
                )
            )
        self.refresh()

    # --- queries -------------------------------------------------------------------------------

    def query(
        self,
        expression: CollectionExpression = "*",
        collection_types: Iterable[CollectionType | str] | CollectionType | str | None = None,
        flatten_chains: bool = False,
        include_chains: bool | None = None,
    ) -> list[str]:
        """Names of collections matching glob patterns, regexes or exact names (see `select_names`)."""
        self.refresh()
        return select_names(self._by_name, expression, collection_types, flatten_chains, include_chains)
