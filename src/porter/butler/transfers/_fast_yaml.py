"""A fast reader for the YAML subset that butler export files use.

Export files are large (hundreds of thousands of dataset and record entries)
and regular: block mappings and sequences, plain or quoted scalars, a few
tags (``!uuid``, ``!butler_time/tai/iso``, ``!<lsst.sphgeom.*>``, ``!!binary``,
``!lsst.daf.butler.Timespan``) and small flow collections.  PyYAML (even with
libyaml) spends most of its time constructing Python objects node by node;
this line-oriented reader is an order of magnitude faster on such files.

Anything outside the subset (anchors, multi-line plain scalars, complex
keys …) raises `Unsupported`, and the caller falls back to PyYAML, so
correctness never depends on this module understanding a file.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

from ...dimensions import Timespan, tai_nsec_from_iso

__all__ = ["Unsupported", "load"]


class Unsupported(Exception):
    """The text uses YAML this reader does not handle; use PyYAML instead."""


# These follow PyYAML's YAML 1.1 resolvers exactly (e.g. "1e5" is a string there).
_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_OTHER_INT = re.compile(r"^[-+]?(0[0-7_]+|0b[0-1_]+|0x[0-9a-fA-F_]+|[1-9][0-9_]*(:[0-5]?[0-9])+)$")
_FLOAT = re.compile(r"^([-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?|\.[0-9][0-9_]*([eE][-+][0-9]+)?)$")
_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?$"
)
_BOOL = {
    "yes": True,
    "Yes": True,
    "YES": True,
    "no": False,
    "No": False,
    "NO": False,
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
    "on": True,
    "On": True,
    "ON": True,
    "off": False,
    "Off": False,
    "OFF": False,
}
_NULL = {"", "~", "null", "Null", "NULL"}
_SPECIAL_START = set("&*|>%@`\"'[{!")


def _plain(text: str) -> Any:
    """Resolve a plain scalar as YAML 1.1 (PyYAML's SafeLoader) does."""
    if text in _NULL:
        return None
    b = _BOOL.get(text)
    if b is not None:
        return b
    c = text[0]
    if c.isdigit() or c in "-+.":
        if _INT.match(text):
            return int(text.replace("_", ""))
        if _OTHER_INT.match(text):
            raise Unsupported("octal, binary, hex or sexagesimal integer")
        if _FLOAT.match(text):
            return float(text.replace("_", ""))
        if text in (".inf", ".Inf", ".INF", "+.inf"):
            return float("inf")
        if text in ("-.inf", "-.Inf", "-.INF"):
            return float("-inf")
        if text in (".nan", ".NaN", ".NAN"):
            return float("nan")
        if _TIMESTAMP.match(text):
            raise Unsupported("timestamp")  # let PyYAML build datetimes exactly as it does
        if ":" in text:
            raise Unsupported("sexagesimal number")
    if c in _SPECIAL_START or text.startswith(("- ", "? ", ": ", "#")):
        raise Unsupported(f"plain scalar {text!r}")
    if " #" in text:
        text = text.split(" #", 1)[0].rstrip()
    return text


def _quoted(text: str) -> tuple[str, str]:
    """Parse a quoted scalar at the start of ``text``; return (value, rest)."""
    q = text[0]
    if q == "'":
        i = 1
        out = []
        while True:
            j = text.find("'", i)
            if j == -1:
                raise Unsupported("multi-line single-quoted scalar")
            out.append(text[i:j])
            if text[j + 1 : j + 2] == "'":
                out.append("'")
                i = j + 2
                continue
            return "".join(out), text[j + 1 :]
    # Double quotes: find the closing quote not escaped, then let JSON unescape.
    i = 1
    while True:
        j = text.find('"', i)
        if j == -1:
            raise Unsupported("multi-line double-quoted scalar")
        k = j - 1
        backslashes = 0
        while k >= 1 and text[k] == "\\":
            backslashes += 1
            k -= 1
        if backslashes % 2 == 0:
            break
        i = j + 1
    try:
        return json.loads(text[: j + 1]), text[j + 1 :]
    except ValueError:
        raise Unsupported("YAML-only escape in double-quoted scalar") from None


def _scalar(text: str) -> Any:
    """A complete scalar value (possibly quoted or tagged), with nothing after it but a comment."""
    if not text:
        return None
    c = text[0]
    if c in "'\"":
        value, rest = _quoted(text)
        rest = rest.strip()
        if rest and not rest.startswith("#"):
            raise Unsupported(f"text after quoted scalar: {rest!r}")
        return value
    if c == "!":
        return _tagged_inline(text)
    if c == "[" or c == "{":
        value, rest = _flow(text)
        rest = rest.strip()
        if rest and not rest.startswith("#"):
            raise Unsupported("text after flow collection")
        return value
    return _plain(text.rstrip())


def _split_tag(text: str) -> tuple[str, str]:
    if text.startswith("!<"):
        end = text.index(">")
        return text[2:end], text[end + 1 :].strip()
    parts = text.split(None, 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _apply_tag(tag: str, value: Any) -> Any:
    if tag == "!uuid":
        return None if value in (None, "") else uuid.UUID(str(value))
    if tag == "!butler_time/tai/iso":
        from ._yaml_tags import TaiTime

        return None if value in (None, "", "null") else TaiTime(tai_nsec_from_iso(str(value)))
    if tag.startswith("lsst.sphgeom.") or tag.startswith("!lsst.sphgeom."):
        from ._yaml_tags import RegionBytes

        if not isinstance(value, dict) or "encoded" not in value:
            raise Unsupported("sphgeom tag without 'encoded'")
        try:
            return RegionBytes(bytes.fromhex(value["encoded"]))
        except (TypeError, ValueError):
            # PyYAML's reader reports it with the line and column, which this one does not know.
            raise Unsupported("sphgeom tag with a bad 'encoded' value") from None
    if tag == "!lsst.daf.butler.Timespan":
        if value == "EMPTY":
            return Timespan.make_empty()
        if value is None:
            return None
        if not isinstance(value, dict):
            raise Unsupported("timespan tag")
        return Timespan(_nsec(value.get("begin")), _nsec(value.get("end")))
    if tag == "!!binary":
        if not isinstance(value, str):
            raise Unsupported("binary tag")
        return base64.b64decode("".join(value.split()))
    if tag in ("!!str", "tag:yaml.org,2002:str"):
        return str(value)
    raise Unsupported(f"tag {tag}")


def _nsec(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return tai_nsec_from_iso(str(value))


def _tagged_inline(text: str) -> Any:
    tag, rest = _split_tag(text)
    if rest.startswith("|") or rest.startswith(">"):
        raise Unsupported("block scalar needs following lines")
    return _apply_tag(tag, _scalar(rest) if rest else None)


def _flow(text: str) -> tuple[Any, str]:
    """Parse a flow sequence or mapping of scalars at the start of ``text``."""
    opener = text[0]
    closer = "]" if opener == "[" else "}"
    pos = 1
    items: list[Any] = []
    mapping: dict[str, Any] = {}
    n = len(text)
    while True:
        while pos < n and text[pos] == " ":
            pos += 1
        if pos >= n:
            raise Unsupported("multi-line flow collection")
        if text[pos] == closer:
            pos += 1
            break
        key = None
        if opener == "{":
            colon = text.find(":", pos)
            if colon == -1:
                raise Unsupported("flow mapping without ':'")
            key = text[pos:colon].strip()
            if not key or key[0] in "'\"[{!&*":
                raise Unsupported("complex flow key")
            pos = colon + 1
            while pos < n and text[pos] == " ":
                pos += 1
        # one value, up to ',' or closer at this level
        if pos < n and text[pos] in "[{":
            raise Unsupported("nested flow collection")
        value: Any
        if pos < n and text[pos] in "'\"":
            value, rest = _quoted(text[pos:])
            pos = n - len(rest)
        else:
            end = pos
            while end < n and text[end] not in ",]}":
                end += 1
            raw = text[pos:end].strip()
            if raw.startswith("!"):
                tag, rest_text = _split_tag(raw)
                value = _apply_tag(tag, _scalar(rest_text) if rest_text else None)
            else:
                value = _plain(raw) if raw else None
            pos = end
        if opener == "{":
            mapping[key] = value  # type: ignore[index]
        else:
            items.append(value)
        while pos < n and text[pos] == " ":
            pos += 1
        if pos < n and text[pos] == ",":
            pos += 1
    return (mapping if opener == "{" else items), text[pos:]


class _Lines:
    __slots__ = ("indents", "n", "texts")

    def __init__(self, text: str):
        indents: list[int] = []
        texts: list[str] = []
        for raw in text.splitlines():
            stripped = raw.lstrip(" ")
            if not stripped or stripped[0] == "#":
                continue
            if "\t" in raw[: len(raw) - len(stripped) + 1]:
                raise Unsupported("tab indentation")
            if stripped.startswith(("---", "...")) and len(raw) == len(stripped):
                if stripped.rstrip() in ("---", "..."):
                    if texts:
                        raise Unsupported("multiple documents")
                    continue
                raise Unsupported("document marker with content")
            indents.append(len(raw) - len(stripped))
            texts.append(stripped.rstrip())
        self.indents = indents
        self.texts = texts
        self.n = len(texts)


def _key_value(text: str) -> tuple[str, str]:
    """Split ``key: value`` (key plain); raise Unsupported otherwise."""
    if text[0] in "'\"?[{&*!|>" or text[0].isdigit() or text.startswith("<<"):
        raise Unsupported("complex, numeric or merge mapping key")
    i = text.find(": ")
    if i == -1:
        if text.endswith(":"):
            return text[:-1], ""
        raise Unsupported(f"not a mapping entry: {text[:40]!r}")
    return text[:i], text[i + 2 :].lstrip()


class _Parser:
    def __init__(self, lines: _Lines):
        self.L = lines

    def block(self, i: int, indent: int) -> tuple[Any, int]:
        """Parse the block node starting at line ``i`` (whose indent is ``indent``)."""
        if self.L.texts[i].startswith("- ") or self.L.texts[i] == "-":
            return self.sequence(i, indent)
        return self.mapping(i, indent, None)

    def value_after(
        self, rest: str, i: int, parent_indent: int, allow_indentless_seq: bool
    ) -> tuple[Any, int]:
        """The value of a ``key:`` (or ``- ``) whose inline text is ``rest``; next line is ``i``."""
        L = self.L
        if rest == "":
            if i < L.n:
                ind = L.indents[i]
                if ind > parent_indent:
                    return self.block(i, ind)
                if (
                    allow_indentless_seq
                    and ind == parent_indent
                    and (L.texts[i].startswith("- ") or L.texts[i] == "-")
                ):
                    return self.sequence(i, ind)
            return None, i
        if rest[0] == "!":
            tag, after = _split_tag(rest)
            if after.startswith("|") or after.startswith(">"):
                if after[0] == ">" or after.strip() not in ("|", "|-", "|+"):
                    raise Unsupported("folded or indented block scalar")
                lines = []
                while i < L.n and L.indents[i] > parent_indent:
                    lines.append(L.texts[i])
                    i += 1
                return _apply_tag(tag, "\n".join(lines) + "\n"), i
            if after == "":
                inner, i = self.value_after("", i, parent_indent, allow_indentless_seq)
                return _apply_tag(tag, inner), i
            return _apply_tag(tag, _scalar(after)), i
        if rest[0] in "|>":
            raise Unsupported("untagged block scalar")
        if rest[0] in "&*":
            raise Unsupported("anchor or alias")
        return _scalar(rest), i

    def mapping(self, i: int, indent: int, first: tuple[str, str] | None) -> tuple[dict[str, Any], int]:
        L = self.L
        out: dict[str, Any] = {}
        if first is not None:
            key, rest = first
            out[key], i = self.value_after(rest, i, indent, True)
        while i < L.n and L.indents[i] == indent:
            text = L.texts[i]
            if text.startswith("- ") or text == "-":
                break
            key, rest = _key_value(text)
            if key in out:
                raise Unsupported("duplicate key")
            out[key], i = self.value_after(rest, i + 1, indent, True)
        if i < L.n and L.indents[i] > indent:
            raise Unsupported(f"unexpected indentation at {L.texts[i][:40]!r}")
        return out, i

    def sequence(self, i: int, indent: int) -> tuple[list[Any], int]:
        L = self.L
        out: list[Any] = []
        while i < L.n and L.indents[i] == indent and (L.texts[i].startswith("- ") or L.texts[i] == "-"):
            text = L.texts[i]
            rest = text[2:].lstrip() if len(text) > 1 else ""
            item_indent = indent + (len(text) - len(rest) if rest else 2)
            if rest == "" or rest[0] in "!'\"[{" or (": " not in rest and not rest.endswith(":")):
                if rest.startswith("- "):
                    raise Unsupported("nested inline sequence")
                value, i = self.value_after(rest, i + 1, indent, False)
                out.append(value)
                continue
            # "- key: value" starts a mapping whose keys sit at item_indent.
            key, vrest = _key_value(rest)
            value_map, i = self.mapping(i + 1, item_indent, (key, vrest))
            out.append(value_map)
        return out, i


def load(text: str) -> Any:
    """Parse export-file YAML; raise `Unsupported` for anything outside the subset."""
    lines = _Lines(text)
    if lines.n == 0:
        return None
    if lines.indents[0] != 0:
        raise Unsupported("indented top level")
    value, i = _Parser(lines).block(0, 0)
    if i != lines.n:
        raise Unsupported(f"unparsed text at {lines.texts[i][:40]!r}")
    return value
