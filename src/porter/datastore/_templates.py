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

import functools
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
    return _escape_text(str(value), keep_slash)


@functools.lru_cache(maxsize=1 << 16)
def _escape_text(text: str, keep_slash: bool) -> str:
    """`_escape` of a string; cached, since a run, band or visit recurs in thousands of paths."""
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
        self._layouts: dict[tuple[bool, ...], tuple[str, list[tuple[int, str, bool, str]]]] = {}
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
        values = [
            None if f.name is None else self._value(f.name, run, dataset_type, dataset_id, data_id, records)
            for f in self._fields
        ]
        present = tuple(v is not None for v in values)
        layout = self._layouts.get(present)
        if layout is None:
            layout = self._layout(present, dataset_type, data_id)
        head, pieces = layout
        out = [head]
        for i, spec, keep_slash, literal_after in pieces:
            value = values[i]
            out.append(_escape(format(value, spec) if spec else value, keep_slash))
            out.append(literal_after)
        path = "".join(out)
        # Absent fields can leave empty directory levels behind.
        return (re.sub(r"/{2,}", "/", path) if "//" in path else path).strip("/")

    def _layout(
        self, present: tuple[bool, ...], dataset_type: str, data_id: Mapping[str, Any]
    ) -> tuple[str, list[tuple[int, str, bool, str]]]:
        """The literal text around the values, for one pattern of present and absent fields.

        Which separators survive depends only on which fields are present (an
        escaped value is never empty and never ends in '/'), so a layout is
        worked out once per pattern and a path is then a join: an ingest of
        10⁵ files formats 10⁵ paths.  Returns the leading text and, for each
        present field, (field index, format spec, keep '/', text after it).
        """
        head: list[str] = []
        pieces: list[tuple[int, str, bool, list[str]]] = []
        text = head  # where literal text goes: before the first value, or after the last one
        level_start = True  # nothing written yet, or what was written ends a directory level
        wrote_any = False
        for i, (field, here) in enumerate(zip(self._fields, present)):
            literal = field.literal
            # At the start of a directory level (an absent field left it empty), a
            # separator from the template has nothing to separate.
            if level_start and literal[:1] in ("_", "-", "."):
                literal = literal[1:]
            if field.name is None:
                piece = literal
            elif not here:
                if not field.optional:
                    raise PathTemplateError(
                        f"Path template {self.text!r} needs {{{field.name}}}, which the {dataset_type} "
                        f"data ID {dict(data_id)} does not have; make it optional ({{{field.name}:?}}) "
                        "or use a template for this dataset type."
                    )
                # An absent optional field takes the separator before it along, but
                # not a directory break.
                piece = "/" if literal.endswith("/") else literal[:-1] if literal[-1:] in "_-." else literal
            else:
                text.append(literal)
                text = []
                pieces.append((i, field.spec, field.name == "run", text))
                level_start, wrote_any = False, True
                continue
            text.append(piece)
            if piece:
                level_start = piece.endswith("/")
            elif not wrote_any:
                level_start = False  # as "".endswith("/"): only an empty output counts as a level start
            wrote_any = True
        layout = ("".join(head), [(i, spec, keep, "".join(after)) for i, spec, keep, after in pieces])
        self._layouts[present] = layout
        return layout

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
