"""The dimension universe: every element a repository knows, read from YAML.

A repository records the universe it was created with, so the registry schema
and the meaning of data IDs never change under its users' feet.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from ..errors import DataIdError, did_you_mean
from ._elements import ColumnSpec, Dimension, DimensionElement, SkyPixDimension, natural_sort_key
from ._group import DimensionGroup

__all__ = ["DimensionUniverse"]


def _column(spec: Mapping[str, Any]) -> ColumnSpec:
    return ColumnSpec(
        name=spec["name"],
        type=spec["type"],
        length=spec.get("length"),
        nbytes=spec.get("nbytes"),
        nullable=spec.get("nullable", True),
        doc=" ".join(str(spec.get("doc", "")).split()),
    )


class NamedElements(tuple[Any, ...]):
    """Dimension elements in universe order, also looked up by name (daf_butler's NamedValueSet habits)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            for e in self:
                if e.name == key:
                    return e
            raise KeyError(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return key in self.names
        return super().__contains__(key)


class DimensionUniverse:
    """All dimension elements of a repository, with their relationships.

    Parameters
    ----------
    config : `dict`
        The parsed universe YAML (see ``porter/dimensions/config/universe.yaml``).
    """

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)
        self.namespace: str = config.get("namespace", "porter")
        self.version: int = int(config.get("version", 0))
        elements: dict[str, DimensionElement] = {}
        spatial_of: dict[str, str] = {}
        temporal_of: dict[str, str] = {}
        topology = config.get("topology", {})
        self.spatial_families: dict[str, tuple[str, ...]] = {
            fam: tuple(members) for fam, members in topology.get("spatial", {}).items()
        }
        self.temporal_families: dict[str, tuple[str, ...]] = {
            fam: tuple(members) for fam, members in topology.get("temporal", {}).items()
        }
        for fam, members in self.spatial_families.items():
            for m in members:
                spatial_of[m] = fam
        for fam, members in self.temporal_families.items():
            for m in members:
                temporal_of[m] = fam

        skypix = config.get("skypix", {})
        common = skypix.get("common")
        for system, spec in skypix.items():
            if system == "common":
                continue
            levels = []
            for level in range(1, int(spec["max_level"]) + 1):
                name = f"{system}{level}"
                elements[name] = SkyPixDimension(
                    name=name,
                    doc=f"Level {level} of the {system.upper()} sky pixelization.",
                    primary_key=ColumnSpec("id", "int"),
                    spatial=system,
                    system=system,
                    level=level,
                )
                levels.append(name)
            self.spatial_families[system] = tuple(reversed(levels))

        for name, spec in config["elements"].items():
            keys = [_column(k) for k in spec.get("keys", ())]
            common_args: dict[str, Any] = dict(
                name=name,
                doc=" ".join(str(spec.get("doc", "")).split()),
                direct_requires=tuple(spec.get("requires", ())),
                direct_implies=tuple(spec.get("implies", ())),
                metadata=tuple(_column(m) for m in spec.get("metadata", ())),
                is_governor=bool(spec.get("governor", False)),
                populated_by_name=spec.get("populated_by"),
                always_join=bool(spec.get("always_join", False)),
                spatial=spatial_of.get(name),
                temporal=temporal_of.get(name),
            )
            if keys:
                elements[name] = Dimension(primary_key=keys[0], alternate_keys=tuple(keys[1:]), **common_args)
            else:
                elements[name] = DimensionElement(**common_args)

        for e in elements.values():
            for dep in (*e.direct_requires, *e.direct_implies):
                if dep not in elements or not isinstance(elements[dep], Dimension):
                    raise ValueError(f"Universe element {e.name!r} depends on unknown dimension {dep!r}.")
            e.universe = self

        # Order: by dependency depth, then by name (with numeric suffixes in
        # numeric order).  This is the order daf_butler uses, so data IDs
        # print and export identically.
        depth: dict[str, int] = {}

        def _depth(n: str, seen: tuple[str, ...] = ()) -> int:
            if n in seen:
                raise ValueError(f"Dimension dependency cycle: {' -> '.join((*seen, n))}.")
            if n not in depth:
                e = elements[n]
                deps = (*e.direct_requires, *e.direct_implies)
                depth[n] = 0 if not deps else 1 + max(_depth(d, (*seen, n)) for d in deps)
            return depth[n]

        ordered = sorted(elements, key=lambda n: (_depth(n), natural_sort_key(n)))
        self.elements: dict[str, DimensionElement] = {n: elements[n] for n in ordered}
        for i, n in enumerate(ordered):
            self.elements[n].index = i
        self.dimensions: dict[str, Dimension] = {
            n: e for n, e in self.elements.items() if isinstance(e, Dimension)
        }
        self.governors: tuple[str, ...] = tuple(n for n, e in self.dimensions.items() if e.is_governor)
        if common is not None:
            if common not in self.dimensions:
                raise ValueError(f"Common skypix {common!r} is not a skypix dimension of this universe.")
            self.common_skypix: SkyPixDimension = self.dimensions[common]  # type: ignore[assignment]
        self._group_cache: dict[frozenset[str], DimensionGroup] = {}
        self.empty = self.conform(())

    # --- construction ------------------------------------------------------------------------

    @classmethod
    @functools.cache
    def default(cls) -> DimensionUniverse:
        """The universe porter ships (equivalent to daf_butler's version 8)."""
        return cls.from_yaml(cls.default_config_text())

    @staticmethod
    def default_config_text() -> str:
        """The text of the universe configuration porter ships."""
        return (
            importlib.resources.files("porter.dimensions")
            .joinpath("config/universe.yaml")
            .read_text(encoding="utf-8")
        )

    @classmethod
    def from_yaml(cls, text: str) -> DimensionUniverse:
        """Build a universe from the text of a universe YAML file."""
        # libyaml's loader when PyYAML has it: 7 ms instead of 26 for the universe porter ships, which
        # every command opening a repository reads.  Same safe constructor, same result.
        universe = cls(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
        universe.config_text = text
        return universe

    config_text: str = ""

    # --- lookups -----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> DimensionElement:
        try:
            return self.elements[name]
        except KeyError:
            raise DataIdError(
                f"Unknown dimension element {name!r}."
                + did_you_mean(name, [n for n in self.elements if not self._is_skypix_name(n)])
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.elements

    def _is_skypix_name(self, name: str) -> bool:
        return isinstance(self.elements.get(name), SkyPixDimension) and name != self.common_skypix.name

    def get_dimension(self, name: str) -> Dimension:
        """Return a dimension by name, with a helpful error for unknown names."""
        if name in self.dimensions:
            return self.dimensions[name]
        raise DataIdError(
            f"Unknown dimension {name!r}."
            + did_you_mean(name, [n for n in self.dimensions if not self._is_skypix_name(n)])
        )

    def getStaticDimensions(self) -> NamedElements:
        """Every dimension, in universe order (daf_butler's name; ``.names`` gives their names)."""
        return NamedElements(self.dimensions.values())

    def getStaticElements(self) -> NamedElements:
        """Every dimension element, dimensions and the others (``visit_detector_region`` …), in order."""
        return NamedElements(self.elements.values())

    def get_governor_dimensions(self) -> NamedElements:
        """The governor dimensions (``instrument``, ``skymap``)."""
        return NamedElements(self.dimensions[n] for n in self.governors)

    def sorted_names(self, names: Iterable[str]) -> list[str]:
        """Sort element names in universe order."""
        return sorted(set(names), key=lambda n: self.elements[n].index)

    def conform(self, names: Iterable[str] | DimensionGroup) -> DimensionGroup:
        """Return the (cached) group of the given dimensions and all they require and imply."""
        if isinstance(names, DimensionGroup):
            return names
        key = frozenset(names)
        group = self._group_cache.get(key)
        if group is None:
            for n in key:
                self.get_dimension(n)
            group = DimensionGroup(self, key)
            group = self._group_cache.setdefault(group.names_set, group)
            self._group_cache[key] = group
        return group

    @property
    def database_elements(self) -> list[DimensionElement]:
        """Elements whose records are stored in registry tables, in universe order."""
        return [e for e in self.elements.values() if e.has_own_table]

    def __repr__(self) -> str:
        return f"DimensionUniverse({self.namespace}, version={self.version})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DimensionUniverse):
            return NotImplemented
        return self.namespace == other.namespace and self.version == other.version

    def __hash__(self) -> int:
        return hash((self.namespace, self.version))
