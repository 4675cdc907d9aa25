"""File path templates: where in the datastore each dataset's file goes.

The syntax is daf_butler's::

    {run}/{datasetType}/{band}/{day_obs}/{visit}/{datasetType}_{band}_{visit}_{detector}_{instrument}_{run}

Fields are ``run``, ``datasetType``, ``id`` (the dataset UUID), any
dimension of the data ID (implied ones such as ``band`` included) and
record fields as ``element.field`` (``{exposure.obs_id}``).  A field
written ``{name:?}`` is optional: it and the separator before it vanish
when the data ID has no such value.  A format spec is allowed
(``{visit:08d}``).

A template must make paths unique: it has to name the run and every
required dimension of the dataset type (or the dataset ``id``), and
``datasetType`` unless it is only used for one dataset type.  Values are
escaped so that a path never leaves the datastore root and two different
values never give the same path: characters outside ``[A-Za-z0-9._-]``
become ``%XX`` (``/`` is kept in run names, which are hierarchical).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import PathTemplateError

__all__ = ["DEFAULT_TEMPLATE", "PathTemplate"]

DEFAULT_TEMPLATE = (
    "{run}/{datasetType}/{day_obs:?}/{visit:?}/{tract:?}/{patch:?}/"
    "{datasetType}_{instrument:?}_{band:?}_{physical_filter:?}_{day_obs:?}_{exposure:?}_{visit:?}_{detector:?}"
    "_{skymap:?}_{tract:?}_{patch:?}"
)

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_SPECIAL = {"run", "datasetType", "id"}


def _escape(value: Any, keep_slash: bool = False) -> str:
    text = str(value)
    escaped = _SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text.replace("%", "%25"))
    if keep_slash:
        escaped = escaped.replace("%2F", "/")
        parts = [
            p if p not in ("", ".", "..") else p.replace(".", "%2E") or "%00" for p in escaped.split("/")
        ]
        return "/".join(parts)
    return escaped if escaped not in ("", ".", "..") else escaped.replace(".", "%2E") or "%00"


@dataclass(frozen=True)
class _Field:
    literal: str  # text before the field
    name: str | None
    spec: str
    optional: bool


class PathTemplate:
    """A parsed file path template."""

    def __init__(self, text: str):
        self.text = text
        self._fields: list[_Field] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise PathTemplateError(f"Malformed path template {text!r}: {exc}.") from None
        for literal, name, spec, conversion in parsed:
            if conversion:
                raise PathTemplateError(
                    f"Path template {text!r}: conversions like '!{conversion}' are not supported."
                )
            spec = spec or ""
            optional = spec.endswith("?")
            spec = spec[:-1].rstrip(":") if optional else spec
            if name == "":
                raise PathTemplateError(f"Path template {text!r} has an empty field '{{}}'; name a field.")
            self._fields.append(_Field(literal, name, spec, optional))
        if text.startswith("/") or ".." in text.split("/"):
            raise PathTemplateError(
                f"Path template {text!r} must be relative to the datastore root, without '..'."
            )

    def __repr__(self) -> str:
        return f"PathTemplate({self.text!r})"

    @property
    def names(self) -> set[str]:
        """Every field the template mentions."""
        return {f.name for f in self._fields if f.name}

    def check(self, dataset_type: Any, *, shared: bool = True) -> None:
        """Refuse a template that could give two datasets of ``dataset_type`` the same path.

        ``shared`` templates serve several dataset types, so they must also name ``datasetType``.
        """
        names = {n.split(".", 1)[0] for n in self.names}
        if "id" in names:
            return
        missing = [d for d in dataset_type.dimensions.required if d not in names]
        if "run" not in names:
            missing.insert(0, "run")
        if shared and "datasetType" not in names:
            missing.insert(0, "datasetType")
        if missing:
            raise PathTemplateError(
                f"Path template {self.text!r} does not make {dataset_type.name} paths unique: add "
                + ", ".join("{" + m + "}" for m in missing)
                + " (or {id})."
            )

    def format(
        self,
        *,
        run: str,
        dataset_type: str,
        dataset_id: str,
        data_id: Mapping[str, Any],
        records: Mapping[str, Any] | None = None,
    ) -> str:
        """The relative path for one dataset (without the formatter's extension)."""
        out: list[str] = []
        for field in self._fields:
            literal = field.literal
            # At the start of a directory level (an absent field left it empty), a
            # separator from the template has nothing to separate.
            if literal[:1] in ("_", "-", ".") and (not out or "".join(out).endswith("/")):
                literal = literal[1:]
            if field.name is None:
                out.append(literal)
                continue
            value = self._value(field.name, run, dataset_type, dataset_id, data_id, records)
            if value is None:
                if not field.optional:
                    raise PathTemplateError(
                        f"Path template {self.text!r} needs {{{field.name}}}, which the {dataset_type} "
                        f"data ID {dict(data_id)} does not have; make it optional ({{{field.name}:?}}) "
                        "or use a template for this dataset type."
                    )
                # An absent optional field takes the separator before it along, but
                # not a directory break.
                out.append(
                    "/" if literal.endswith("/") else literal[:-1] if literal[-1:] in "_-." else literal
                )
                continue
            text = format(value, field.spec) if field.spec else value
            out.append(literal + _escape(text, keep_slash=field.name == "run"))
        # Absent fields can leave empty directory levels behind.
        return re.sub(r"/{2,}", "/", "".join(out)).strip("/")

    @staticmethod
    def _value(
        name: str,
        run: str,
        dataset_type: str,
        dataset_id: str,
        data_id: Mapping[str, Any],
        records: Mapping[str, Any] | None,
    ) -> Any:
        if name == "run":
            return run
        if name == "datasetType":
            return dataset_type
        if name == "id":
            return dataset_id
        if "." in name:
            element, attribute = name.split(".", 1)
            record = (records or {}).get(element)
            return None if record is None else getattr(record, attribute, None)
        return data_id.get(name)
