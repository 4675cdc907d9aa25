"""Keyset pagination: page after page of one query, in one order, every row exactly once, never OFFSET.

A page is the query with its order completed to a total one (the caller's
``order_by`` terms, then the result's required dimensions, then the dataset
ID where one data ID can have several datasets), a ``LIMIT`` of one more row
than the page (to know whether another page follows), and — after the first
page — a constraint that starts strictly after the previous page's last row:
``(k1 > v1) OR (k1 = v1 AND k2 > v2) OR …``.  The constraint is ``where``
text whose values are bind parameters, so it goes through the same parser and
checks as the caller's own expression and never splices a value into SQL.

The cursor is the last row's key values plus a fingerprint of the query, so a
cursor handed to another query is refused instead of silently skipping rows.
Because each page is a fresh statement, a client whose connection dropped
resumes from the last cursor it received, on any worker.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import DatasetRef, decode_value, encode_value
from ..dimensions import DataCoordinate, DimensionRecord, DimensionUniverse
from ..errors import InvalidQueryError

__all__ = [
    "CURSOR_BIND_PREFIX",
    "KeyTerm",
    "decode_cursor",
    "encode_cursor",
    "keyset_where",
    "order_terms",
]

CURSOR_BIND_PREFIX = "porter_cursor_"
"""Bind names the keyset constraint uses; a caller's own bind may not start with it."""


@dataclass(frozen=True)
class KeyTerm:
    """One term of a page order: the ``where`` identifier, its direction, and how to read it off a result."""

    identifier: str
    descending: bool
    value_of: Callable[[Any], Any]

    @property
    def order_by(self) -> str:
        return f"-{self.identifier}" if self.descending else self.identifier


def _data_id_of(row: Any) -> DataCoordinate:
    if isinstance(row, DatasetRef):
        return row.data_id
    if isinstance(row, DimensionRecord):
        return row.data_id
    return row


def _dimension_value(name: str) -> Callable[[Any], Any]:
    def value_of(row: Any) -> Any:
        if isinstance(row, DimensionRecord) and name in row.element.minimal_group.names:
            return row.data_id[name]
        return _data_id_of(row)[name]

    return value_of


def _record_value(element: str, field: str) -> Callable[[Any], Any]:
    def value_of(row: Any) -> Any:
        if isinstance(row, DimensionRecord) and row.element.name == element:
            return getattr(row, field)
        return getattr(_data_id_of(row).records[element], field)

    return value_of


def order_terms(
    universe: DimensionUniverse,
    order_by: Sequence[str],
    required: Sequence[str],
    *,
    element: str | None = None,
    dataset_id: bool = False,
) -> tuple[list[KeyTerm], bool]:
    """The total order of a paged query, and whether its results need their dimension records attached.

    ``required`` are the result's required dimensions (a record's own key
    comes from its element); ``dataset_id`` adds the dataset ID as the last
    tie-break (queries where one data ID may have several datasets).
    """
    terms: list[KeyTerm] = []
    needs_records = False
    named: set[str] = set()
    for raw in order_by:
        text = raw.strip()
        descending = text.startswith("-")
        name = text[1:].strip() if descending else text
        if name in universe.getStaticDimensions().names or name in required:
            terms.append(KeyTerm(name, descending, _dimension_value(name)))
            named.add(name)
        elif "." in name and name.split(".", 1)[0] in universe:
            owner, field = name.split(".", 1)
            if element is None or owner != element:
                needs_records = True
            terms.append(KeyTerm(name, descending, _record_value(owner, field)))
        elif element is not None and name in universe[element].schema:
            terms.append(KeyTerm(f"{element}.{name}", descending, _record_value(element, name)))
        else:
            raise InvalidQueryError(
                f"A paged query orders by dimensions and record fields (element.field): {raw!r} is neither. "
                "Use, e.g., order_by=['visit', '-visit.exposure_time']."
            )
    for name in required:
        if name not in named:
            terms.append(KeyTerm(name, False, _dimension_value(name)))
    if dataset_id:
        terms.append(KeyTerm("dataset_id", False, lambda ref: ref.id))
    return terms, needs_records


def by_row_value(terms: Sequence[KeyTerm]) -> bool:
    """Whether the page boundary can be one row-value comparison: every term ascending, and each a dimension key or
    the dataset ID (record fields are compared through the ``where`` expression instead)."""
    return all(not t.descending and "." not in t.identifier for t in terms)


def data_id_rows(data_ids: Sequence[DataCoordinate], dimensions: Any) -> tuple[list[str], list[list[Any]]]:
    """Data IDs as one header and rows of values (a page's compact form): full values when every data ID has
    them, required ones otherwise.  Dimension values are ints and strings, plain JSON."""
    if data_ids and all(d.has_full for d in data_ids):
        return list(dimensions.data_coordinate_keys), [list(d.full_values) for d in data_ids]
    return list(dimensions.required), [list(d.required_values) for d in data_ids]


def keyset_where(terms: Sequence[KeyTerm], values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """The ``where`` text (and its binds) selecting rows strictly after ``values`` in ``terms``' order."""
    if len(values) != len(terms):
        raise InvalidQueryError("The cursor does not belong to this query: start again without a cursor.")
    bind: dict[str, Any] = {}
    disjuncts = []
    for i, term in enumerate(terms):
        parts = []
        for j in range(i):
            bind[f"{CURSOR_BIND_PREFIX}{j}"] = values[j]
            parts.append(f"{terms[j].identifier} = :{CURSOR_BIND_PREFIX}{j}")
        bind[f"{CURSOR_BIND_PREFIX}{i}"] = values[i]
        parts.append(f"{term.identifier} {'<' if term.descending else '>'} :{CURSOR_BIND_PREFIX}{i}")
        disjuncts.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(disjuncts) + ")", bind


def fingerprint(request: Mapping[str, Any]) -> str:
    """A short hash of everything that defines a query's rows and order (not the page size, cursor, remaining limit or explain)."""
    text = json.dumps(
        {k: v for k, v in request.items() if k not in ("cursor", "page_size", "limit", "explain")},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(values: Sequence[Any], query: str) -> str:
    """The opaque cursor of the row with these key values."""
    payload = json.dumps({"q": query, "k": [encode_value(v) for v in values]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, query: str) -> list[Any]:
    """The key values `encode_cursor` put in ``cursor``; `InvalidQueryError` if it is not this query's."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values = [decode_value(v) for v in data["k"]]
        owner = data["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidQueryError(
            "Malformed cursor: pass back the next_cursor of the previous page unchanged."
        ) from None
    if owner != query:
        raise InvalidQueryError(
            "This cursor belongs to another query (different arguments): resume with the same arguments, "
            "or start again without a cursor."
        )
    return values
