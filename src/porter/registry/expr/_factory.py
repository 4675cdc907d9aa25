"""Typed query constraints: daf_butler's ``query.expression_factory``, built on the ``where`` syntax tree.

``x.visit.exposure_time > 30``, ``x.band.in_iterable(["g", "r"])`` and
``x.visit.region.overlaps(circle)`` build the same syntax tree the ``where``
parser would build from text, so a typed constraint is resolved, checked and
compiled to SQL by exactly the code a ``where`` string goes through.  Python
values never become text: each is carried as a bind value under a name no user
can write (``__v12``), so a string with quotes, a region, a time or a list
arrives in the query as the object it is.  porter's own code uses these
instead of building ``where`` text to be parsed again.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._ast import BinaryOp, BindName, Identifier, IsIn, Node, Parens, RangeLiteral, UnaryOp

__all__ = ["ExpressionFactory", "Predicate", "ScalarExpression", "combine_where", "describe_where"]

_names = itertools.count()


def _bound(value: Any, bind: dict[str, Any]) -> Node:
    """A bind reference carrying ``value`` (a fresh name each time, so combined predicates never clash)."""
    if isinstance(value, ScalarExpression):
        bind.update(value.bind)
        return value.node
    name = f"__v{next(_names)}"
    bind[name] = value
    return BindName(name)


class Predicate:
    """A boolean constraint: a syntax tree and the values it binds.  Combine with ``&``, ``|`` and ``~``."""

    __slots__ = ("bind", "node")

    def __init__(self, node: Node, bind: Mapping[str, Any] | None = None):
        self.node = node
        self.bind: dict[str, Any] = dict(bind or {})

    def _join(self, op: str, other: Predicate) -> Predicate:
        if not isinstance(other, Predicate):
            return NotImplemented
        return Predicate(BinaryOp(op, Parens(self.node), Parens(other.node)), {**self.bind, **other.bind})

    def __and__(self, other: Predicate) -> Predicate:
        return self._join("AND", other)

    def __or__(self, other: Predicate) -> Predicate:
        return self._join("OR", other)

    def __invert__(self) -> Predicate:
        return Predicate(UnaryOp("NOT", Parens(self.node)), self.bind)

    def __bool__(self) -> bool:
        raise TypeError(
            "A query predicate has no truth value; combine predicates with & (and), | (or) and ~ (not), "
            "not with Python's and/or/not."
        )

    def __repr__(self) -> str:
        return f"Predicate({self.node})"


class ScalarExpression:
    """A column or value in a typed constraint: a dimension key, a record field, a timespan bound."""

    __slots__ = ("bind", "name", "node")

    def __init__(self, name: str, node: Node | None = None, bind: Mapping[str, Any] | None = None):
        self.name = name
        self.node: Node = node if node is not None else Identifier(name)
        self.bind: dict[str, Any] = dict(bind or {})

    def _compare(self, op: str, other: Any) -> Predicate:
        bind = dict(self.bind)
        return Predicate(BinaryOp(op, self.node, _bound(other, bind)), bind)

    def __eq__(self, other: Any) -> Predicate:  # type: ignore[override]
        return self._compare("=", other)

    def __ne__(self, other: Any) -> Predicate:  # type: ignore[override]
        return self._compare("!=", other)

    def __lt__(self, other: Any) -> Predicate:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Predicate:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Predicate:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Predicate:
        return self._compare(">=", other)

    __hash__ = None  # type: ignore[assignment]

    def in_iterable(self, values: Iterable[Any]) -> Predicate:
        """The column is one of ``values`` (one bound list, however long)."""
        bind = dict(self.bind)
        return Predicate(IsIn(self.node, (_bound(list(values), bind),)), bind)

    def in_range(self, start: int = 0, stop: int | None = None, step: int = 1) -> Predicate:
        """Python's ``range(start, stop, step)`` (``stop`` excluded), as the ``where`` language's ``start..stop:step``."""
        if stop is None:
            raise ValueError("in_range needs a stop: in_range(start, stop[, step]).")
        if stop <= start:
            raise ValueError(f"in_range({start}, {stop}) is empty; a constraint on nothing selects nothing.")
        return Predicate(
            IsIn(self.node, (RangeLiteral(start, stop - 1, step if step != 1 else None),)), self.bind
        )

    def overlaps(self, other: Any) -> Predicate:
        """A region (``x.visit.region``) overlapping a region or point, or a timespan overlapping a timespan."""
        return self._compare("OVERLAPS", other)

    @property
    def desc(self) -> str:
        """Descending order by this column, for ``order_by``."""
        return f"-{self.name}"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"ScalarExpression({self.name})"


class _TimespanExpression(ScalarExpression):
    """``x.visit.timespan``: ``.begin``, ``.end`` and ``.overlaps(…)``."""

    __slots__ = ()

    @property
    def begin(self) -> ScalarExpression:
        return ScalarExpression(f"{self.name}.begin")

    @property
    def end(self) -> ScalarExpression:
        return ScalarExpression(f"{self.name}.end")


class ElementExpression(ScalarExpression):
    """``x.visit``: the dimension's key in comparisons, and its record fields as attributes."""

    __slots__ = ()

    def __getattr__(self, field: str) -> ScalarExpression:
        if field.startswith("_"):
            raise AttributeError(field)
        if field == "timespan":
            return _TimespanExpression(f"{self.name}.timespan")
        return ScalarExpression(f"{self.name}.{field}")

    def __getitem__(self, field: str) -> ScalarExpression:
        return self.__getattr__(field)


class ExpressionFactory:
    """Builds typed constraints: ``x = query.expression_factory; x.visit.exposure_time > 30``.

    Names are checked when the query runs (with a suggestion for a typo),
    exactly as in a ``where`` string.
    """

    def __getattr__(self, name: str) -> ElementExpression:
        if name.startswith("_"):
            raise AttributeError(name)
        return ElementExpression(name)

    def __getitem__(self, name: str) -> ElementExpression:
        return ElementExpression(name)

    @staticmethod
    def literal(value: Any) -> ScalarExpression:
        """A value to compare columns with, or to compare with another value."""
        bind: dict[str, Any] = {}
        node = _bound(value, bind)
        return ScalarExpression(repr(value), node, bind)

    @staticmethod
    def all(first: Predicate, *others: Predicate) -> Predicate:
        """Every predicate holds."""
        out = first
        for p in others:
            out = out & p
        return out

    @staticmethod
    def any(first: Predicate, *others: Predicate) -> Predicate:
        """At least one predicate holds."""
        out = first
        for p in others:
            out = out | p
        return out

    @staticmethod
    def not_(operand: Predicate) -> Predicate:
        return ~operand


def combine_where(terms: Iterable[Node | None]) -> Node | None:
    """One tree AND-ing the given ones (``None`` for no constraint at all)."""
    nodes = [t for t in terms if t is not None]
    if not nodes:
        return None
    out = nodes[0]
    for n in nodes[1:]:
        out = BinaryOp("AND", Parens(out), Parens(n))
    return out


_BIND_REF = re.compile(r":(__v\d+)\b")


def describe_where(where: str | Node | None, bind: Mapping[str, Any]) -> str:
    """A constraint as a person would read it: typed constraints' bound values shown in place."""
    if where is None or isinstance(where, str):
        return where or ""
    return _BIND_REF.sub(lambda m: repr(bind[m.group(1)]) if m.group(1) in bind else m.group(0), str(where))
