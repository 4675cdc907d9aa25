"""Data IDs: mappings from dimension name to value, with a known shape."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DataIdError, did_you_mean
from ._group import DimensionGroup

if TYPE_CHECKING:
    from ._records import DimensionRecord
    from ._timespan import Timespan
    from ._universe import DimensionUniverse

__all__ = ["DataCoordinate", "DataIdValue", "coerce_dimension_value"]

DataIdValue = int | str


def coerce_dimension_value(universe: DimensionUniverse, name: str, value: Any) -> DataIdValue:
    """Convert ``value`` to the Python type of dimension ``name``'s key, or explain why not."""
    pk_type = universe.dimensions[name].primary_key.type
    if pk_type == "int":
        if isinstance(value, bool):
            raise DataIdError(f"Value {value!r} for dimension {name!r} must be an integer, not a bool.")
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise DataIdError(
            f"Value {value!r} for dimension {name!r} must be an integer (got {type(value).__name__})."
        )
    if pk_type == "string":
        if isinstance(value, str):
            return value
        raise DataIdError(
            f"Value {value!r} for dimension {name!r} must be a string (got {type(value).__name__})."
        )
    if pk_type == "hash" and isinstance(value, bytes):
        return value  # type: ignore[return-value]
    raise DataIdError(f"Value {value!r} is not valid for dimension {name!r}.")


class DataCoordinate(Mapping[str, DataIdValue]):
    """A data ID: values for the required (and possibly implied) dimensions of a group.

    It behaves as a read-only mapping.  Two data IDs are equal when they have
    the same dimensions and the same required values; implied values (band,
    given physical_filter) are carried along when known but never change
    identity.
    """

    __slots__ = ("_values", "dimensions")

    _records: Mapping[str, DimensionRecord | None] | None = None
    """Attached dimension records; only `_ExpandedDataCoordinate` instances have them."""

    def __init__(self, dimensions: DimensionGroup, values: tuple[DataIdValue, ...], has_full: bool = False):
        """``values`` are for ``dimensions.required`` (then ``.implied`` when the data ID is full).

        Whether a data ID is full is told by the number of values, so it is
        not stored; ``has_full`` documents the caller's intent.
        """
        self.dimensions = dimensions
        self._values = values

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_required_values(
        cls, dimensions: DimensionGroup, values: tuple[DataIdValue, ...]
    ) -> DataCoordinate:
        """Make a data ID from values for ``dimensions.required``, in order."""
        return cls(dimensions, values, False)

    @classmethod
    def from_full_values(cls, dimensions: DimensionGroup, values: tuple[DataIdValue, ...]) -> DataCoordinate:
        """Make a data ID from values for ``dimensions.required + dimensions.implied``, in order."""
        return cls(dimensions, values, True)

    @staticmethod
    def many_from_full_values(
        dimensions: DimensionGroup, rows: Iterable[tuple[DataIdValue, ...]]
    ) -> list[DataCoordinate]:
        """Many data IDs from full-value tuples: the query engine's hot path.

        Sets the slots directly rather than through ``__init__``; the values
        must be complete and already of the right types (as a query returns them).
        """
        new = object.__new__
        out = []
        for values in rows:
            d = new(DataCoordinate)
            d.dimensions = dimensions
            d._values = values
            out.append(d)
        return out

    @classmethod
    def make_empty(cls, universe: DimensionUniverse) -> DataCoordinate:
        """The data ID with no dimensions."""
        return cls(universe.empty, (), True)

    @classmethod
    def standardize(
        cls,
        data_id: Mapping[str, Any] | None = None,
        *,
        universe: DimensionUniverse | None = None,
        dimensions: DimensionGroup | None = None,
        allow_extra: bool = False,
        **kwargs: Any,
    ) -> DataCoordinate:
        """Make a data ID from a mapping and/or keyword arguments.

        Parameters
        ----------
        data_id : `~collections.abc.Mapping`, optional
            Dimension names to values (a `DataCoordinate` or a plain dict).
        universe : `DimensionUniverse`, optional
            Required unless ``dimensions`` or a `DataCoordinate` gives it.
        dimensions : `DimensionGroup`, optional
            The shape the result must have; all its required dimensions must
            be given.  Without it, the shape is that of the keys given.
        allow_extra : `bool`
            Ignore keys outside ``dimensions`` instead of rejecting them.
        **kwargs
            More dimension values; they override ``data_id``.
        """
        merged: dict[str, Any] = {}
        if data_id is not None:
            if isinstance(data_id, DataCoordinate):
                universe = universe or data_id.dimensions.universe
                if dimensions is None and not kwargs:
                    return data_id
                merged.update(data_id.mapping)
            else:
                merged.update(data_id)
        merged.update(kwargs)
        if dimensions is not None:
            universe = dimensions.universe
        if universe is None:
            raise TypeError("DataCoordinate.standardize needs a universe or dimensions.")
        for k in merged:
            if k not in universe.dimensions:
                raise DataIdError(
                    f"Data ID key {k!r} is not a dimension." + did_you_mean(k, universe.dimensions)
                )
        if dimensions is None:
            dimensions = universe.conform(merged.keys())
        elif not allow_extra:
            extra = set(merged) - dimensions.names_set
            if extra:
                raise DataIdError(
                    f"Data ID keys {sorted(extra)} are not dimensions of {dimensions}; remove them."
                )
        missing = [n for n in dimensions.required if n not in merged]
        if missing:
            raise DataIdError(
                f"Data ID {dict(merged)} is missing required dimension(s) {missing} of {dimensions}."
            )
        required = tuple(coerce_dimension_value(universe, n, merged[n]) for n in dimensions.required)
        if dimensions.implied and all(n in merged for n in dimensions.implied):
            implied = tuple(
                None if merged[n] is None else coerce_dimension_value(universe, n, merged[n])
                for n in dimensions.implied
            )
            return cls(dimensions, required + implied, True)  # type: ignore[operator]
        return cls(dimensions, required, False)

    # --- mapping interface --------------------------------------------------------------------

    @property
    def universe(self) -> DimensionUniverse:
        return self.dimensions.universe

    @property
    def _full(self) -> bool:
        return len(self._values) == len(self.dimensions.data_coordinate_keys)

    @property
    def has_full(self) -> bool:
        """True if values for implied dimensions are known too."""
        return self._full

    def hasFull(self) -> bool:
        return self._full

    @property
    def required(self) -> dict[str, DataIdValue]:
        """Values of the required dimensions only."""
        return dict(zip(self.dimensions.required, self._values))

    @property
    def required_values(self) -> tuple[DataIdValue, ...]:
        return self._values[: len(self.dimensions.required)]

    @property
    def full_values(self) -> tuple[DataIdValue, ...]:
        if not self._full:
            raise DataIdError(f"Data ID {self} does not know its implied dimensions' values.")
        return self._values

    @property
    def mapping(self) -> dict[str, DataIdValue]:
        """All known values: required, and implied when known."""
        keys = self.dimensions.data_coordinate_keys if self._full else self.dimensions.required
        return dict(zip(keys, self._values))

    def __getitem__(self, key: str) -> DataIdValue:
        keys = self.dimensions.data_coordinate_keys if self._full else self.dimensions.required
        try:
            return self._values[keys.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        keys = self.dimensions.data_coordinate_keys if self._full else self.dimensions.required
        return iter(keys)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataCoordinate):
            return self.dimensions == other.dimensions and self.required_values == other.required_values
        if isinstance(other, Mapping):
            other_dict = dict(other)
            return other_dict == self.required or other_dict == self.mapping
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.dimensions.names_set, self.required_values))

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in self.mapping.items()) + "}"

    def __lt__(self, other: DataCoordinate) -> bool:
        return _sort_key(self) < _sort_key(other)

    # --- derived data IDs --------------------------------------------------------------------

    def subset(self, dimensions: DimensionGroup | list[str]) -> DataCoordinate:
        """Return the data ID restricted to a subset of its dimensions."""
        group = self.universe.conform(dimensions)
        if group == self.dimensions:
            return self
        source = self.mapping
        missing = [n for n in group.required if n not in source]
        if missing:
            raise DataIdError(f"Cannot take {group} from data ID {self}: {missing} unknown.")
        if all(n in source for n in group.implied):
            return DataCoordinate(group, tuple(source[n] for n in group.data_coordinate_keys), True)
        return DataCoordinate(group, tuple(source[n] for n in group.required), False)

    def to_dict(self) -> dict[str, DataIdValue]:
        """A plain dict of all known values (for JSON, YAML and printing)."""
        return self.mapping

    @property
    def records(self) -> Mapping[str, DimensionRecord | None]:
        """Dimension records attached by a query with records, if any."""
        if self._records is None:
            raise DataIdError(f"Data ID {self} has no dimension records attached.")
        return self._records

    @property
    def timespan(self) -> Timespan | None:
        """When the data ID's observations happened: where the timespans of its temporal records overlap.

        An exposure's time within its night (``day_obs``), as daf_butler's
        ``dataId.timespan`` gives it; None when no record has a timespan.
        Needs the records (``expandDataId`` or ``with_dimension_records``).
        """
        from ._timespan import Timespan

        spans = [
            r.timespan
            for r in self.records.values()
            if r is not None and r.element.temporal and getattr(r, "timespan", None) is not None
        ]
        if not spans:
            return None
        begin = max(t.nsec[0] for t in spans)
        end = min(t.nsec[1] for t in spans)
        return Timespan.from_nsec(begin, max(begin, end))

    @property
    def has_records(self) -> bool:
        return self._records is not None

    def hasRecords(self) -> bool:
        """daf_butler's spelling of `has_records` (a method there)."""
        return self._records is not None

    def with_records(self, records: Mapping[str, DimensionRecord | None]) -> DataCoordinate:
        """This data ID with dimension records attached (as a query with records returns it)."""
        expanded = _ExpandedDataCoordinate(self.dimensions, self._values)
        expanded._records = records
        return expanded


class _ExpandedDataCoordinate(DataCoordinate):
    """A data ID carrying its dimension records."""

    __slots__ = ("_records",)


def _sort_key(d: DataCoordinate) -> tuple:
    return tuple((0, v) if isinstance(v, int) else (1, str(v)) for v in d.required_values)
