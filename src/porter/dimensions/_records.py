"""Dimension records: the metadata rows of dimension elements (a visit's filter, region, times …).

Neither astropy nor lsst.sphgeom is imported here: a time or a region given
to a record was made by them already (`is_astropy_time`, `is_region`), and a
``datetime`` becomes an astropy time through `astropy_time` on first use.
"""

from __future__ import annotations

import datetime
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DataIdError, did_you_mean
from ._data_coordinate import DataCoordinate
from ._regions import decode_region, is_region
from ._timespan import Timespan, astropy_time, is_astropy_time

if TYPE_CHECKING:
    from ._elements import ColumnSpec, DimensionElement

__all__ = ["DimensionRecord"]


def _coerce_field(element: DimensionElement, spec: ColumnSpec, value: Any) -> Any:
    if value is None:
        if not spec.nullable:
            raise DataIdError(f"Field {element.name}.{spec.name} may not be null.")
        return None
    t = spec.type
    if t == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif t == "float":
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif t == "string":
        if isinstance(value, str):
            if spec.length is not None and len(value) > spec.length:
                raise DataIdError(
                    f"Value {value!r} for {element.name}.{spec.name} is longer than {spec.length} characters."
                )
            return value
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            # YAML reads unquoted digits as integers (e.g. group names).
            return str(value)
    elif t == "bool":
        if isinstance(value, bool | numbers.Integral):
            return bool(value)
    elif t == "hash" and isinstance(value, bytes | bytearray):
        return bytes(value)
    raise DataIdError(
        f"Value {value!r} ({type(value).__name__}) is not valid for {element.name}.{spec.name} "
        f"of type {spec.type}."
    )


def _coerce_time(value: Any, what: str) -> Any:
    if value is None or isinstance(value, int) or is_astropy_time(value):
        return value
    if isinstance(value, datetime.datetime):
        return astropy_time()(value, scale="utc")
    raise DataIdError(f"{what} must be an astropy.time.Time, not {type(value).__name__}.")


class DimensionRecord:
    """One record of a dimension element, with attribute access to its fields.

    ``record.region`` is an lsst.sphgeom region, ``record.timespan`` a
    `Timespan` whose bounds are TAI astropy times.
    """

    __slots__ = ("_values", "element")

    def __init__(self, element: DimensionElement, values: dict[str, Any]):
        object.__setattr__(self, "element", element)
        object.__setattr__(self, "_values", values)

    @classmethod
    def from_mapping(cls, element: DimensionElement, data: Mapping[str, Any]) -> DimensionRecord:
        """Validate user-supplied fields and build a record.

        Accepts the field names of ``element.schema``, plus ``datetime_begin``
        and ``datetime_end`` as an alternative to ``timespan`` (the split form
        export files use).  Unknown fields, missing keys and wrong types are
        errors that name the field.
        """
        data = dict(data)
        values: dict[str, Any] = {}
        if element.has_timespan:
            if "datetime_begin" in data or "datetime_end" in data:
                begin = _coerce_time(data.pop("datetime_begin", None), f"{element.name}.datetime_begin")
                end = _coerce_time(data.pop("datetime_end", None), f"{element.name}.datetime_end")
                if "timespan" in data and data["timespan"] is not None:
                    raise DataIdError(f"Record of {element.name} has both timespan and datetime_begin/end.")
                data.pop("timespan", None)
                values["timespan"] = Timespan(begin, end)
            else:
                ts = data.pop("timespan", None)
                if ts is not None and not isinstance(ts, Timespan):
                    raise DataIdError(
                        f"{element.name}.timespan must be a porter Timespan, not {type(ts).__name__}."
                    )
                values["timespan"] = ts
        if element.has_region:
            region = data.pop("region", None)
            if isinstance(region, bytes):
                region = decode_region(region)
            if region is not None and not is_region(region):
                raise DataIdError(
                    f"{element.name}.region must be an lsst.sphgeom region, not {type(region).__name__}."
                )
            values["region"] = region
        specs = element.field_by_name
        unknown = [k for k in data if k not in specs]
        if unknown:
            raise DataIdError(
                f"Unknown field(s) {unknown} for dimension element {element.name!r}."
                + did_you_mean(unknown[0], element.schema)
            )
        for key in element.key_columns:
            if data.get(key) is None:
                raise DataIdError(f"Record of {element.name!r} is missing its key field {key!r}: {data}.")
        for name, spec in specs.items():
            values[name] = _coerce_field(element, spec, data.get(name))
        ordered = {name: values.get(name) for name in element.schema}
        return cls(element, ordered)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"Dimension record of {self.element.name!r} has no field {name!r}."
                + did_you_mean(name, self.element.schema)
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Dimension records are immutable.")

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    @property
    def data_id(self) -> DataCoordinate:
        """The data ID this record describes (with the implied values it holds)."""
        e = self.element
        values = {d.name: self._values[k] for d, k in zip(e.required, e.key_columns)}
        for n in e.minimal_group.implied:
            if self._values.get(n) is not None:
                values[n] = self._values[n]
        return DataCoordinate.standardize(values, dimensions=e.minimal_group)

    @property
    def dataId(self) -> DataCoordinate:
        return self.data_id

    def to_dict(self, split_timespan: bool = False) -> dict[str, Any]:
        """The record's fields as a dict (``split_timespan`` gives datetime_begin/end)."""
        out = dict(self._values)
        if split_timespan and "timespan" in out:
            ts = out.pop("timespan")
            out["datetime_begin"] = ts.begin if ts is not None else None
            out["datetime_end"] = ts.end if ts is not None else None
        return out

    def toDict(self, splitTimespan: bool = False) -> dict[str, Any]:
        return self.to_dict(split_timespan=splitTimespan)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DimensionRecord):
            return NotImplemented
        if self.element.name != other.element.name:
            return False
        for k, v in self._values.items():
            w = other._values.get(k)
            if k == "region":
                if (v is None) != (w is None) or (v is not None and v.encode() != w.encode()):
                    return False
            elif v != w:
                return False
        return True

    def __hash__(self) -> int:
        return hash((self.element.name, *(self._values[k] for k in self.element.key_columns)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._values.items() if k != "region")
        return f"{self.element.name}.Record({fields})"

    @property
    def key_values(self) -> tuple[Any, ...]:
        """Values of the key columns (required dimensions), in order."""
        return tuple(self._values[k] for k in self.element.key_columns)
