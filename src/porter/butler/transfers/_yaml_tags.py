"""YAML tags used by Rubin export files, for reading and writing.

Reading uses libyaml (``CSafeLoader``) when available, with constructors for
``!uuid``, ``!butler_time/tai/iso``, ``!<lsst.sphgeom.*>`` regions and
``!lsst.daf.butler.Timespan``.  Times are turned into integer TAI
nanoseconds straight from their ISO text, which is exact and much faster than
building astropy objects.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

import yaml

from ...dimensions import MAX_NSEC, MIN_NSEC, Timespan, iso_from_tai_nsec, tai_nsec_from_iso

__all__ = ["ExportLoader", "TaiTime", "yaml_scalar"]

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TaiTime(int):
    """Integer TAI nanoseconds read from a ``!butler_time/tai/iso`` tag."""


class RegionBytes(bytes):
    """The binary encoding of an lsst.sphgeom region read from an export file."""


class ExportLoader(_BaseLoader):
    """A safe YAML loader that understands the tags of butler export files."""


def _bad(node: yaml.Node, message: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, message, node.start_mark)


def _uuid(loader: Any, node: yaml.Node) -> uuid.UUID | None:
    value = loader.construct_scalar(node)
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        raise _bad(node, f"{value!r} is not a valid UUID") from None


def _tai_time(loader: Any, node: yaml.Node) -> TaiTime | None:
    value = loader.construct_scalar(node)
    if value in (None, "", "null"):
        return None
    try:
        return TaiTime(tai_nsec_from_iso(value))
    except ValueError as exc:
        raise _bad(node, str(exc)) from None


def _region(loader: Any, suffix: str, node: yaml.Node) -> RegionBytes:
    data = loader.construct_mapping(node)
    try:
        return RegionBytes(bytes.fromhex(data["encoded"]))
    except (KeyError, ValueError, TypeError):
        raise yaml.constructor.ConstructorError(
            None, None, f"region tag lsst.sphgeom.{suffix} needs an 'encoded' hex string", node.start_mark
        ) from None


def _timespan(loader: Any, node: yaml.Node) -> Timespan | None:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if value == "EMPTY":
            return Timespan.make_empty()
        return None
    data = loader.construct_mapping(node, deep=True)
    try:
        return Timespan(_nsec(data.get("begin")), _nsec(data.get("end")))
    except (ValueError, TypeError) as exc:
        raise _bad(node, f"bad timespan: {exc}") from None


def _nsec(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, str):
        return tai_nsec_from_iso(value)
    raise ValueError(f"Bad time {value!r} in timespan.")


ExportLoader.add_constructor("!uuid", _uuid)
ExportLoader.add_constructor("!butler_time/tai/iso", _tai_time)
ExportLoader.add_constructor("!lsst.daf.butler.Timespan", _timespan)
ExportLoader.add_multi_constructor("lsst.sphgeom.", _region)
ExportLoader.add_multi_constructor("!lsst.sphgeom.", _region)


# --- writing ----------------------------------------------------------------------------------------

_PLAIN_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_SPECIAL = {
    "y",
    "n",
    "yes",
    "no",
    "on",
    "off",
    "true",
    "false",
    "null",
    "~",
}


def yaml_scalar(value: Any) -> str:
    """One scalar in YAML flow syntax that PyYAML and libyaml read back exactly."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, TaiTime):
        return f"!butler_time/tai/iso '{iso_from_tai_nsec(value)}'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value).lower()
        if text in ("inf", "-inf", "nan"):
            return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
        if "." not in text and "e" in text:
            # YAML 1.1 floats need a dot ("1e-05" would read back as a string).
            text = text.replace("e", ".0e", 1)
        return text
    if isinstance(value, uuid.UUID):
        return f"!uuid '{value}'"
    if isinstance(value, str):
        if _PLAIN_OK.match(value) and value.lower() not in _YAML_SPECIAL:
            return value
        if "'" not in value and "\n" not in value and "\\" not in value and value.isprintable():
            return f"'{value}'"
        return json.dumps(value)
    if isinstance(value, bytes):
        return "!!binary " + json.dumps(base64.b64encode(value).decode("ascii"))
    raise TypeError(f"Cannot write {value!r} as a YAML scalar.")


def timespan_yaml(ts: Timespan | None) -> str:
    """A ``!lsst.daf.butler.Timespan`` flow mapping (as daf_butler writes it)."""
    if ts is None:
        return "null"
    if ts.is_empty():
        return "!lsst.daf.butler.Timespan EMPTY"
    b, e = ts.nsec
    begin = "null" if b == MIN_NSEC else yaml_scalar(TaiTime(b))
    end = "null" if e == MAX_NSEC else yaml_scalar(TaiTime(e))
    return f"!lsst.daf.butler.Timespan {{begin: {begin}, end: {end}}}"
