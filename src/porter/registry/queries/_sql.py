"""Compilation of typed predicates to SQLAlchemy expressions.

Every literal becomes a bound parameter; nothing the user typed is ever
pasted into SQL text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy import BigInteger, Uuid

from ...dimensions import Timespan
from ...errors import InvalidQueryError
from ._ir import (
    And,
    Arith,
    BoolColumn,
    Bound,
    ColumnExpr,
    Compare,
    Const,
    DatasetField,
    DimField,
    DimKey,
    Glob,
    InRange,
    InValues,
    IsNull,
    Lit,
    Neg,
    Not,
    Or,
    Overlaps,
    Predicate,
)

__all__ = ["SqlCompiler", "glob_to_like"]

ColumnLookup = Callable[[DimKey | DimField | DatasetField], Any]


def glob_to_like(pattern: str) -> str:
    """Translate a shell glob (``*``, ``?``) to a LIKE pattern with ``\\`` escapes."""
    out = []
    for ch in pattern:
        if ch in "\\%_":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


class SqlCompiler:
    """Turns predicates into SQL, looking columns up through ``lookup``.

    ``lookup`` returns a column for scalar references and a ``(begin, end)``
    pair of columns for timespan references.
    """

    def __init__(self, lookup: ColumnLookup):
        self.lookup = lookup

    # --- values ------------------------------------------------------------------------------------

    def value(self, x: ColumnExpr) -> Any:
        if isinstance(x, Lit):
            if x.type == "timespan":
                ts: Timespan = x.value
                b, e = ts.nsec
                return (sqlalchemy.literal(b, BigInteger), sqlalchemy.literal(e, BigInteger))
            if x.type == "datetime":
                return sqlalchemy.literal(x.value, BigInteger)
            if x.type == "uuid":
                return sqlalchemy.literal(x.value, Uuid)
            if x.type == "region":
                raise InvalidQueryError("A region literal can only be used with OVERLAPS on a region column.")
            return sqlalchemy.literal(x.value)
        if isinstance(x, DimKey | DimField | DatasetField):
            return self.lookup(x)
        if isinstance(x, Arith):
            a, b = self.value(x.a), self.value(x.b)
            match x.op:
                case "+":
                    return a + b
                case "-":
                    return a - b
                case "*":
                    return a * b
                case "/":
                    return a / b
                case "%":
                    return a % b
        if isinstance(x, Neg):
            return -self.value(x.a)
        if isinstance(x, Bound):
            begin, end = self.value(x.operand)
            return begin if x.which == "begin" else end
        raise InvalidQueryError(f"Cannot compile {x!r} to SQL.")

    # --- predicates -----------------------------------------------------------------------------------

    def predicate(self, p: Predicate) -> Any:
        if isinstance(p, Const):
            return sqlalchemy.true() if p.value else sqlalchemy.false()
        if isinstance(p, And):
            return sqlalchemy.and_(*[self.predicate(i) for i in p.items])
        if isinstance(p, Or):
            return sqlalchemy.or_(*[self.predicate(i) for i in p.items])
        if isinstance(p, Not):
            return sqlalchemy.not_(self.predicate(p.item))
        if isinstance(p, Compare):
            return self._compare(p)
        if isinstance(p, InValues):
            if p.a.type == "timespan":
                raise InvalidQueryError("IN does not apply to timespans.")
            return self.value(p.a).in_([v.value for v in p.values])
        if isinstance(p, InRange):
            col = self.value(p.a)
            cond = col.between(p.start, p.stop)
            if p.stride != 1:
                cond = sqlalchemy.and_(cond, (col - p.start) % p.stride == 0)
            return cond
        if isinstance(p, IsNull):
            v = self.value(p.a)
            return (v[0] if isinstance(v, tuple) else v).is_(None)
        if isinstance(p, Glob):
            return self.value(p.a).like(glob_to_like(p.pattern), escape="\\")
        if isinstance(p, BoolColumn):
            return self.value(p.a) == sqlalchemy.true()
        if isinstance(p, Overlaps):
            return self._overlaps(p)
        raise InvalidQueryError(f"Cannot compile predicate {p!r}.")

    def _compare(self, p: Compare) -> Any:
        a, b = self.value(p.a), self.value(p.b)
        match p.op:
            case "==":
                return a == b
            case "!=":
                return a != b
            case "<":
                return a < b
            case "<=":
                return a <= b
            case ">":
                return a > b
            case ">=":
                return a >= b
        raise InvalidQueryError(f"Unknown comparison {p.op!r}.")

    def _overlaps(self, p: Overlaps) -> Any:
        ta, tb = p.a.type, p.b.type
        if ta == "region" or tb == "region":
            raise InvalidQueryError("Spatial OVERLAPS must be a top-level condition (not under OR or NOT).")
        a, b = self.value(p.a), self.value(p.b)
        if ta == "timespan" and tb == "timespan":
            for lit in (p.a, p.b):
                if isinstance(lit, Lit) and lit.value.is_empty():
                    return sqlalchemy.false()
            conds = [a[0] < b[1], b[0] < a[1]]
            if not isinstance(p.a, Lit):
                conds.append(a[0] < a[1])
            if not isinstance(p.b, Lit):
                conds.append(b[0] < b[1])
            return sqlalchemy.and_(*conds)
        ts, t = (a, b) if ta == "timespan" else (b, a)
        return sqlalchemy.and_(ts[0] <= t, t < ts[1])
