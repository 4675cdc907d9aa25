"""Groups of dimensions: the "shape" of a data ID.

A group is closed: it holds every dimension its members require and imply.
Members implied by another member (band, given physical_filter) are *implied*;
the rest are *required* and identify a data ID on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._elements import DimensionElement
    from ._universe import DimensionUniverse

__all__ = ["DimensionGroup"]


class DimensionGroup:
    """An immutable, closed set of dimensions of one universe.

    Build one with `DimensionUniverse.conform`; groups are cached, so two
    equal groups are usually the same object.
    """

    def __init__(self, universe: DimensionUniverse, names: Iterable[str]):
        self.universe = universe
        closure: set[str] = set()
        stack = list(names)
        while stack:
            n = stack.pop()
            if n in closure:
                continue
            closure.add(n)
            d = universe.dimensions[n]
            stack.extend(d.direct_requires)
            stack.extend(d.direct_implies)
        required_by_someone: set[str] = set()
        implied_by_someone: set[str] = set()
        for n in closure:
            d = universe.dimensions[n]
            required_by_someone.update(x.name for x in d.required if x.name != n)
            implied_by_someone.update(d.direct_implies)
        implied = implied_by_someone - required_by_someone
        self.names_set: frozenset[str] = frozenset(closure)
        self.required: tuple[str, ...] = tuple(universe.sorted_names(closure - implied))
        self.implied: tuple[str, ...] = tuple(universe.sorted_names(implied))
        self.names: tuple[str, ...] = tuple(universe.sorted_names(closure))
        self.data_coordinate_keys: tuple[str, ...] = self.required + self.implied

    @cached_property
    def elements(self) -> tuple[str, ...]:
        """All elements whose required dimensions lie in this group (dimensions included)."""
        out = [
            e.name
            for e in self.universe.elements.values()
            if e.name in self.names_set
            or (e.name not in self.universe.dimensions and all(d.name in self.names_set for d in e.required))
        ]
        return tuple(out)

    @cached_property
    def governors(self) -> tuple[str, ...]:
        """Governor dimensions in this group (instrument, skymap)."""
        return tuple(n for n in self.names if self.universe.dimensions[n].is_governor)

    @cached_property
    def spatial(self) -> tuple[str, ...]:
        """Names of the spatial families with at least one member element in the group."""
        fams = []
        for fam, members in self.universe.spatial_families.items():
            if any(m in self.elements for m in members):
                fams.append(fam)
        return tuple(fams)

    @cached_property
    def temporal(self) -> tuple[str, ...]:
        """Names of the temporal families with at least one member element in the group."""
        fams = []
        for fam, members in self.universe.temporal_families.items():
            if any(m in self.elements for m in members):
                fams.append(fam)
        return tuple(fams)

    def choose_family_member(self, family: str) -> DimensionElement:
        """Return the finest-grained element of a spatial or temporal family in this group."""
        members = self.universe.spatial_families.get(family) or self.universe.temporal_families[family]
        for m in members:
            if m in self.elements:
                return self.universe[m]
        raise KeyError(family)

    def union(self, *others: DimensionGroup | Iterable[str]) -> DimensionGroup:
        """The smallest group containing this one and all ``others``."""
        names = set(self.names)
        for o in others:
            names.update(o.names if isinstance(o, DimensionGroup) else o)
        return self.universe.conform(names)

    def __or__(self, other: DimensionGroup) -> DimensionGroup:
        return self.union(other)

    def issubset(self, other: DimensionGroup) -> bool:
        return self.names_set <= other.names_set

    def issuperset(self, other: DimensionGroup) -> bool:
        return self.names_set >= other.names_set

    def __contains__(self, name: object) -> bool:
        return name in self.names_set

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DimensionGroup):
            return self.names_set == other.names_set
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.names_set)

    def __repr__(self) -> str:
        return "{" + ", ".join(self.names) + "}"
