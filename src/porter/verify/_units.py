"""Units as lsst/verify writes them: astropy unit strings, ``''`` for dimensionless.

Parsing goes through astropy so that ``marcsec``, ``milliarcsecond`` and ``mas`` are one unit
and a threshold in mas can be compared with a measurement in arcsec.  Conversions are cached
per pair of units: evaluating many measurements against the same specs should not pay for
astropy's unit algebra every time.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from ._problems import MeasurementValueError, UnitMismatchError

if TYPE_CHECKING:
    import astropy.units as u

__all__ = ["conversion_factor", "finite_value", "parse_unit", "quantity", "unit_string"]


def parse_unit(text: str) -> u.UnitBase:
    """The astropy unit of ``text`` (``''`` or ``'dimensionless'`` → dimensionless).

    Raises `ValueError` with astropy's reason when ``text`` is not a unit astropy knows.
    """
    if not isinstance(text, str):
        raise ValueError(f"a unit is written as a string, not {type(text).__name__} {text!r}")
    return _parse_unit(text)


@functools.lru_cache(maxsize=1024)
def _parse_unit(text: str) -> u.UnitBase:
    import astropy.units as u

    stripped = text.strip()
    if stripped in ("", "dimensionless", "dimensionless_unscaled"):
        return u.dimensionless_unscaled
    try:
        unit = u.Unit(stripped, parse_strict="raise")
    except ValueError as exc:
        # astropy's message ends with a paragraph on defining custom units: keep its first part
        reason = str(exc).split(" If this is meant to be a custom unit")[0]
        reason = reason.split(" did not parse as unit: ")[-1]
        raise ValueError(f"{text!r} is not an astropy unit ({reason})") from None
    return unit


def unit_string(unit: u.UnitBase) -> str:
    """A unit written back as lsst/verify writes it (``''`` for dimensionless)."""
    import astropy.units as u

    if unit == u.dimensionless_unscaled:
        return ""
    return str(unit.to_string())


@functools.lru_cache(maxsize=4096)
def conversion_factor(from_unit: str, to_unit: str) -> float:
    """The factor that turns a value in ``from_unit`` into one in ``to_unit``.

    Raises `UnitMismatchError` naming both units when they measure different things
    (a magnitude against an angle).
    """
    import astropy.units as u

    source, target = parse_unit(from_unit), parse_unit(to_unit)
    try:
        return float(source.to(target))
    except u.UnitConversionError:
        raise UnitMismatchError(f"unit {from_unit!r} cannot be converted to {to_unit!r}") from None


def quantity(value: float, unit: str) -> u.Quantity:
    """An astropy Quantity of ``value`` in ``unit`` (a unit string)."""
    return value * parse_unit(unit)


def finite_value(value: Any, what: str) -> float:
    """``value`` as a finite float, or `MeasurementValueError` naming ``what`` (NaN, inf, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MeasurementValueError(f"{what}: {value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        raise MeasurementValueError(f"{what}: the value is NaN; a NaN measurement cannot be evaluated")
    if math.isinf(number):
        raise MeasurementValueError(f"{what}: the value is infinite ({number})")
    return number
