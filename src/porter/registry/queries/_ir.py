"""Typed predicates: the ``where`` tree after names have been resolved.

Column references name dimension keys, fields of dimension records, or fields
of a dataset search; literals carry their type.  The SQL compiler only sees
these, never user text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "And",
    "Arith",
    "BoolColumn",
    "Bound",
    "ColumnExpr",
    "Compare",
    "Const",
    "DatasetField",
    "DimField",
    "DimKey",
    "Glob",
    "InRange",
    "InValues",
    "IsNull",
    "Lit",
    "Neg",
    "Not",
    "Or",
    "Overlaps",
    "Predicate",
    "column_type",
]


# --- column expressions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DimKey:
    """The value of a dimension in a data ID (``visit``, ``instrument``)."""

    dimension: str
    type: str

    def __str__(self) -> str:
        return self.dimension


@dataclass(frozen=True)
class DimField:
    """A field of a dimension record (``visit.exposure_time``, ``patch.region``)."""

    element: str
    field: str
    type: str

    def __str__(self) -> str:
        return f"{self.element}.{self.field}"


@dataclass(frozen=True)
class DatasetField:
    """A field of a dataset search: dataset_id, ingest_date, run, collection, timespan."""

    dataset_type: str
    field: str
    type: str

    def __str__(self) -> str:
        return f"{self.dataset_type}.{self.field}"


@dataclass(frozen=True)
class Lit:
    """A literal value; ``type`` is int, float, string, bool, datetime (TAI ns), timespan, region, uuid."""

    value: Any
    type: str

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Arith:
    op: str
    a: ColumnExpr
    b: ColumnExpr
    type: str

    def __str__(self) -> str:
        return f"({self.a} {self.op} {self.b})"


@dataclass(frozen=True)
class Neg:
    a: ColumnExpr
    type: str

    def __str__(self) -> str:
        return f"-{self.a}"


@dataclass(frozen=True)
class Bound:
    """``x.timespan.begin`` / ``.end``: a bound of a timespan, as a datetime."""

    operand: ColumnExpr
    which: str
    type: str = "datetime"

    def __str__(self) -> str:
        return f"{self.operand}.{self.which}"


ColumnExpr = DimKey | DimField | DatasetField | Lit | Arith | Neg | Bound


def column_type(expr: ColumnExpr) -> str:
    return expr.type


# --- predicates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class Compare:
    op: str  # ==, !=, <, <=, >, >=
    a: ColumnExpr
    b: ColumnExpr


@dataclass(frozen=True)
class InValues:
    a: ColumnExpr
    values: tuple[Lit, ...]


@dataclass(frozen=True)
class InRange:
    a: ColumnExpr
    start: int
    stop: int  # inclusive
    stride: int


@dataclass(frozen=True)
class IsNull:
    a: ColumnExpr


@dataclass(frozen=True)
class Glob:
    a: ColumnExpr
    pattern: str


@dataclass(frozen=True)
class Overlaps:
    a: ColumnExpr
    b: ColumnExpr


@dataclass(frozen=True)
class BoolColumn:
    a: ColumnExpr


@dataclass(frozen=True)
class And:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not:
    item: Predicate


Predicate = Const | Compare | InValues | InRange | IsNull | Glob | Overlaps | BoolColumn | And | Or | Not


def conjoin(*items: Predicate) -> Predicate:
    """AND predicates, flattening nested ANDs and dropping TRUE."""
    flat: list[Predicate] = []
    for p in items:
        if isinstance(p, And):
            flat.extend(p.items)
        elif isinstance(p, Const) and p.value:
            continue
        else:
            flat.append(p)
    if not flat:
        return Const(True)
    if len(flat) == 1:
        return flat[0]
    return And(tuple(flat))


def top_level_terms(p: Predicate) -> list[Predicate]:
    """The terms of a top-level AND (or the predicate itself)."""
    return list(p.items) if isinstance(p, And) else [p]


def iter_columns(p: Predicate | ColumnExpr) -> list[ColumnExpr]:
    """Every column reference inside a predicate or expression."""
    out: list[ColumnExpr] = []

    def visit(x: Any) -> None:
        if isinstance(x, DimKey | DimField | DatasetField):
            out.append(x)
        elif isinstance(x, Arith):
            visit(x.a)
            visit(x.b)
        elif isinstance(x, Neg | Bound):
            visit(x.a if isinstance(x, Neg) else x.operand)
        elif isinstance(x, Compare | Overlaps):
            visit(x.a)
            visit(x.b)
        elif isinstance(x, InValues | InRange | IsNull | Glob | BoolColumn):
            visit(x.a)
        elif isinstance(x, And | Or):
            for i in x.items:
                visit(i)
        elif isinstance(x, Not):
            visit(x.item)

    visit(p)
    return out
