"""Syntax tree of ``where`` expressions.

Every node remembers where it starts in the expression text (``pos``) so that
errors found later, when names are resolved, can still point at the text.
``str(node)`` renders the node back to expression syntax: parsing that string
gives an equal tree (a property the tests check with hypothesis).

astropy is named in annotations only: a `TimeLiteral`'s time is made by the
parser, which imports astropy when a ``T'…'`` literal is first parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    import astropy.time

__all__ = [
    "BinaryOp",
    "BindName",
    "BoxNode",
    "CircleNode",
    "FunctionCall",
    "GlobNode",
    "Identifier",
    "IsIn",
    "Node",
    "NumericLiteral",
    "Parens",
    "PointNode",
    "PolygonNode",
    "RangeLiteral",
    "RegionNode",
    "StringLiteral",
    "TimeLiteral",
    "TupleNode",
    "UnaryOp",
    "UuidLiteral",
]


@dataclass(frozen=True)
class Node:
    """Base of all syntax-tree nodes."""

    pos: int = field(default=0, compare=False, kw_only=True)


@dataclass(frozen=True)
class NumericLiteral(Node):
    """A number, kept as the text the user wrote (``1``, ``-2.5``, ``1e3``)."""

    text: str

    @property
    def value(self) -> int | float:
        try:
            return int(self.text)
        except ValueError:
            return float(self.text)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class StringLiteral(Node):
    value: str

    def __str__(self) -> str:
        return f"'{self.value}'"


@dataclass(frozen=True)
class TimeLiteral(Node):
    """``T'2021-09-09 03:00:00'``: the text and the astropy time it denotes."""

    text: str
    value: astropy.time.Time = field(compare=False)

    def __str__(self) -> str:
        return f"T'{self.text}'"


@dataclass(frozen=True)
class RangeLiteral(Node):
    """``start..stop[:stride]``, inclusive of ``stop``."""

    start: int
    stop: int
    stride: int | None = None

    def __str__(self) -> str:
        s = f"{self.start}..{self.stop}"
        return s if self.stride is None else f"{s}:{self.stride}"


@dataclass(frozen=True)
class UuidLiteral(Node):
    value: UUID

    def __str__(self) -> str:
        return f"UUID('{self.value}')"


@dataclass(frozen=True)
class Identifier(Node):
    """A name: ``visit``, ``visit.exposure_time``, ``visit.timespan.begin``."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class BindName(Node):
    """``:name``, replaced by the value bound to ``name`` in ``bind=``."""

    name: str

    def __str__(self) -> str:
        return f":{self.name}"


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # "NOT", "-", "+"
    operand: Node

    def __str__(self) -> str:
        if self.op == "NOT":
            return f"NOT {self.operand}"
        return f"{self.op}{self.operand}"


@dataclass(frozen=True)
class BinaryOp(Node):
    op: str  # "OR", "AND", "=", "!=", "<", "<=", ">", ">=", "OVERLAPS", "+", "-", "*", "/", "%"
    lhs: Node
    rhs: Node

    def __str__(self) -> str:
        return f"{self.lhs} {self.op} {self.rhs}"


@dataclass(frozen=True)
class IsIn(Node):
    lhs: Node
    values: tuple[Node, ...]
    not_in: bool = False

    def __str__(self) -> str:
        op = "NOT IN" if self.not_in else "IN"
        return f"{self.lhs} {op} ({', '.join(str(v) for v in self.values)})"


@dataclass(frozen=True)
class Parens(Node):
    expr: Node

    def __str__(self) -> str:
        return f"({self.expr})"


@dataclass(frozen=True)
class TupleNode(Node):
    """``(begin, end)``: a time range."""

    items: tuple[Node, Node]

    def __str__(self) -> str:
        return f"({self.items[0]}, {self.items[1]})"


@dataclass(frozen=True)
class FunctionCall(Node):
    """A call of a function porter does not know (rejected when resolved)."""

    name: str
    args: tuple[Node, ...]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class PointNode(Node):
    ra: Node
    dec: Node

    def __str__(self) -> str:
        return f"POINT({self.ra}, {self.dec})"


@dataclass(frozen=True)
class CircleNode(Node):
    ra: Node
    dec: Node
    radius: Node

    def __str__(self) -> str:
        return f"CIRCLE({self.ra}, {self.dec}, {self.radius})"


@dataclass(frozen=True)
class BoxNode(Node):
    ra: Node
    dec: Node
    width: Node
    height: Node

    def __str__(self) -> str:
        return f"BOX({self.ra}, {self.dec}, {self.width}, {self.height})"


@dataclass(frozen=True)
class PolygonNode(Node):
    vertices: tuple[tuple[Node, Node], ...]

    def __str__(self) -> str:
        return "POLYGON(" + ", ".join(f"{a}, {b}" for a, b in self.vertices) + ")"


@dataclass(frozen=True)
class RegionNode(Node):
    """``REGION('CIRCLE 1 2 0.5')``: an IVOA POS string."""

    pos_text: Node

    def __str__(self) -> str:
        return f"REGION({self.pos_text})"


@dataclass(frozen=True)
class GlobNode(Node):
    """``GLOB(column, 'pattern')`` with ``*`` and ``?`` wildcards."""

    expression: Node
    pattern: Node

    def __str__(self) -> str:
        return f"GLOB({self.expression}, {self.pattern})"
