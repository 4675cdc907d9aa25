"""Dimension elements: the kinds of thing a data ID can name.

A *dimension* (instrument, visit, detector, tract …) has a primary key and
possibly alternate keys; its value is part of data IDs.  A *dimension element*
may also be a join of dimensions with no key of its own
(visit_detector_region, visit_definition) that carries metadata about a
combination.  Sky pixelizations (htm7, healpix11 …) are dimensions whose
records are computed, not stored; a sky pixelization's lsst.sphgeom object is
made (and sphgeom imported) when it is first used, not when the universe is
read, so opening a repository does not import sphgeom, hpgeom and numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._group import DimensionGroup
    from ._universe import DimensionUniverse

__all__ = ["ColumnSpec", "Dimension", "DimensionElement", "SkyPixDimension"]

COLUMN_TYPES = ("string", "int", "float", "bool", "hash", "region", "timespan")


@dataclass(frozen=True)
class ColumnSpec:
    """One field of a dimension record: its name, type and documentation."""

    name: str
    type: str
    length: int | None = None
    nbytes: int | None = None
    nullable: bool = True
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(
                f"Column {self.name!r} has unknown type {self.type!r}; use one of {COLUMN_TYPES}."
            )


def natural_sort_key(name: str) -> tuple[str, int]:
    """Sort ``htm2`` before ``htm10``: split a trailing integer off a name."""
    m = re.match(r"^(.*?)(\d+)$", name)
    if m:
        return (m.group(1), int(m.group(2)))
    return (name, -1)


@dataclass(eq=False)
class DimensionElement:
    """An element of the dimension universe; a table of records in the registry.

    Attributes are filled in by `DimensionUniverse` once all elements are known.
    """

    name: str
    doc: str = ""
    direct_requires: tuple[str, ...] = ()
    direct_implies: tuple[str, ...] = ()
    metadata: tuple[ColumnSpec, ...] = ()
    is_governor: bool = False
    populated_by_name: str | None = None
    always_join: bool = False
    spatial: str | None = None
    """Name of the spatial family this element belongs to, if it has a region."""
    temporal: str | None = None
    """Name of the temporal family this element belongs to, if it has a timespan."""
    universe: DimensionUniverse = field(init=False, repr=False)
    index: int = field(init=False, default=-1)

    # --- structure derived from the universe -------------------------------------------------

    @cached_property
    def required(self) -> tuple[Dimension, ...]:
        """All dimensions whose values identify a record, in universe order.

        For a dimension this includes the dimension itself (last among equals).
        """
        names: set[str] = set()
        stack = list(self.direct_requires)
        while stack:
            n = stack.pop()
            if n not in names:
                names.add(n)
                stack.extend(self.universe.dimensions[n].direct_requires)
        if isinstance(self, Dimension):
            names.add(self.name)
        return tuple(self.universe.dimensions[n] for n in self.universe.sorted_names(names))

    @cached_property
    def implied(self) -> tuple[Dimension, ...]:
        """Dimensions whose values this element's records determine, in universe order."""
        return tuple(self.universe.dimensions[n] for n in self.universe.sorted_names(self.direct_implies))

    @cached_property
    def minimal_group(self) -> DimensionGroup:
        """The dimensions needed to identify a record, plus everything they imply."""
        return self.universe.conform([d.name for d in self.required] + list(self.direct_implies))

    @cached_property
    def governor(self) -> Dimension | None:
        """The governor dimension (instrument, skymap) this element lives under, if any."""
        for d in self.required:
            if d.is_governor:
                return d
        return None

    @property
    def populated_by(self) -> Dimension | None:
        """The dimension whose records are inserted together with this element's."""
        if self.populated_by_name is None:
            return self if isinstance(self, Dimension) else None
        return self.universe.dimensions[self.populated_by_name]

    @property
    def has_own_table(self) -> bool:
        """False for elements whose records are computed rather than stored."""
        return True

    @property
    def has_region(self) -> bool:
        return self.spatial is not None

    @property
    def has_timespan(self) -> bool:
        return self.temporal is not None

    # --- record schema ---------------------------------------------------------------------------

    @cached_property
    def key_columns(self) -> tuple[str, ...]:
        """Record field names that hold the required dimension values (own key last)."""
        names = []
        for d in self.required:
            if d is self:
                names.append(d.primary_key.name)
            else:
                names.append(d.name)
        return tuple(names)

    @cached_property
    def field_specs(self) -> tuple[ColumnSpec, ...]:
        """Every stored field of a record except region and timespan, in schema order."""
        specs: list[ColumnSpec] = []
        for d in self.required:
            if d is self:
                specs.append(d.primary_key)
            else:
                specs.append(_dimension_column(d, nullable=False))
        for d in self.implied:
            specs.append(_dimension_column(d, nullable=True))
        if isinstance(self, Dimension):
            specs.extend(self.alternate_keys)
        specs.extend(self.metadata)
        return tuple(specs)

    @cached_property
    def schema(self) -> tuple[str, ...]:
        """Names of all record fields, in the order daf_butler uses."""
        names = [s.name for s in self.field_specs]
        if self.has_region:
            names.append("region")
        if self.has_timespan:
            names.append("timespan")
        return tuple(names)

    @cached_property
    def field_by_name(self) -> dict[str, ColumnSpec]:
        """Field specs (without region/timespan) keyed by name."""
        return {s.name: s for s in self.field_specs}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def __str__(self) -> str:
        return self.name

    def __lt__(self, other: DimensionElement) -> bool:
        return self.index < other.index


def _dimension_column(d: Dimension, nullable: bool) -> ColumnSpec:
    pk = d.primary_key
    return ColumnSpec(name=d.name, type=pk.type, length=pk.length, nbytes=pk.nbytes, nullable=nullable)


@dataclass(eq=False, repr=False)
class Dimension(DimensionElement):
    """A dimension: an element whose primary-key value appears in data IDs."""

    primary_key: ColumnSpec = field(default_factory=lambda: ColumnSpec("id", "int"))
    alternate_keys: tuple[ColumnSpec, ...] = ()


@dataclass(eq=False, repr=False)
class SkyPixDimension(Dimension):
    """A level of a hierarchical sky pixelization (HTM or HEALPix).

    Its records (a pixel ID and its region) are computed from the
    pixelization; nothing is stored.
    """

    system: str = "htm"
    level: int = 0

    @cached_property
    def pixelization(self) -> Any:
        """The lsst.sphgeom pixelization object for this level (made, and sphgeom imported, on first use)."""
        import lsst.sphgeom

        if self.system == "htm":
            return lsst.sphgeom.HtmPixelization(self.level)
        if self.system == "healpix":
            return lsst.sphgeom.HealpixPixelization(self.level)
        raise ValueError(f"Unknown sky pixelization system {self.system!r}.")

    @property
    def has_own_table(self) -> bool:
        return False

    @property
    def has_region(self) -> bool:
        return True
