"""Compilation of typed predicates to SQLAlchemy expressions.

Every literal becomes a bound parameter; nothing the user typed is ever
pasted into SQL text.

The SQL stays small and shallow however long the expression (issue 14):

* an AND/OR of more than `GROUP` items is written as nested groups of at
  most `GROUP` (SQLite refuses an expression tree deeper than 1,000, and
  ``a OR b OR …`` is as deep as it is long);
* an IN list, and the equality terms and ranges of one column under one OR,
  become one membership test (`SqlCompiler._member`): ranges are merged and,
  up to `MAX_EXPANDED` values in all, listed; a list of more than
  `IN_LIST_MAX` values is one bound array (SQLite: ``IN (SELECT value FROM
  json_each(?))``, PostgreSQL: ``= ANY(%s)``), which the database looks rows
  up in instead of testing every row against every item of an OR tree (and
  which no limit on the number of parameters applies to).  What cannot be
  listed stays a ``BETWEEN`` per range, at most `MAX_RANGES` of them.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy
from sqlalchemy import BigInteger, Uuid
from sqlalchemy.ext.compiler import compiles

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

__all__ = [
    "GROUP",
    "IN_LIST_MAX",
    "MAX_EXPANDED",
    "MAX_RANGES",
    "SA_KIT",
    "SAKit",
    "SqlCompiler",
    "TextKit",
    "TextStatement",
    "Unsupported",
    "glob_to_like",
    "member_sql",
    "membership",
]

GROUP = 64
"""Most items written in one flat AND/OR; longer ones nest in groups of this size (log-depth)."""

IN_LIST_MAX = 100
"""Most values an IN list is written with as one parameter each; more are one bound array."""

MAX_EXPANDED = 100_000
"""Most values ranges are listed as in one membership test (`membership`)."""

FEW_RANGES = 16
"""Ranges left as BETWEEN without listing any of their values: a few comparisons cost less than a look-up."""

MAX_RANGES = 1_000
"""Most ranges too wide to list that one IN may hold: each is a BETWEEN every candidate row is tested
against, so this bounds the database's work per row."""

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


def membership(
    values: Sequence[Any], ranges: Sequence[tuple[int, int, int]]
) -> tuple[list[Any], list[tuple[int, int, int]]]:
    """The values and ranges (start, inclusive stop, stride) of an IN, as few tests as possible.

    Returns distinct values to look up and the ranges left to test one by
    one.  Empty ranges go; overlapping and adjacent ranges of stride 1 are
    merged; if more than `FEW_RANGES` remain, the smallest are listed as
    values (up to `MAX_EXPANDED` values in all) until `FEW_RANGES` are left.
    More than `MAX_RANGES` ranges that cannot be listed is an
    `InvalidQueryError`, so that no input costs more than that many
    comparisons a row.
    """
    unit: list[tuple[int, int]] = []
    left: list[tuple[int, int, int]] = []
    for start, stop, stride in ranges:
        if start > stop:
            continue
        if stride == 1 or start == stop:
            unit.append((start, stop))
        else:
            left.append((start, stop - (stop - start) % stride, stride))
    unit.sort()
    merged: list[list[int]] = []
    for start, stop in unit:
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    left.extend((start, stop, 1) for start, stop in merged)
    out = list(dict.fromkeys(values))
    if len(left) > FEW_RANGES:
        left.sort(key=lambda r: (r[1] - r[0]) // r[2])
        budget = MAX_EXPANDED - len(out)
        listed = 0
        while len(left) - listed > FEW_RANGES:
            start, stop, stride = left[listed]
            count = (stop - start) // stride + 1
            if count > budget:
                break
            out.extend(range(start, stop + 1, stride))
            budget -= count
            listed += 1
        left = left[listed:]
        out = list(dict.fromkeys(out))
    if len(left) > MAX_RANGES:
        raise InvalidQueryError(
            f"An IN list holds {len(left)} ranges too wide to list as values (more than {MAX_EXPANDED} "
            f"values together); at most {MAX_RANGES} are tested one by one. Merge them into fewer, wider "
            "ranges, or split the query."
        )
    left.sort()
    return out, left


def member_sql(kit: Any, col: Any, values: Sequence[Any], ranges: Sequence[tuple[int, int, int]]) -> Any:
    """SQL (through ``kit``) for: ``col`` among ``values`` or in one of ``ranges`` (see `membership`)."""
    listed, left = membership(values, ranges)
    conds = []
    if listed:
        conds.append(kit.in_values(col, listed))
    if left:
        conds.append(_in_ranges(kit, col, left))
    return kit.or_(*conds)


def _in_ranges(kit: Any, col: Any, ranges: list[tuple[int, int, int]]) -> Any:
    """``col`` in one of ``ranges`` (sorted by start), in about 2 √n comparisons a row, not n.

    More than `FEW_RANGES` ranges are split into √n consecutive groups, each
    guarded by the span of its ranges (``col BETWEEN first start AND last
    stop AND (its ranges)``): a row is tested against every guard and the
    ranges of the groups whose span holds it.  Two levels of nesting at most.
    """
    if len(ranges) > FEW_RANGES:
        size = math.isqrt(len(ranges) - 1) + 1
        groups = [ranges[i : i + size] for i in range(0, len(ranges), size)]
        return kit.or_(
            *[
                kit.and_(col.between(g[0][0], max(r[1] for r in g)), _each_range(kit, col, g))
                if len(g) > 1
                else _each_range(kit, col, g)
                for g in groups
            ]
        )
    return _each_range(kit, col, ranges)


def _each_range(kit: Any, col: Any, ranges: list[tuple[int, int, int]]) -> Any:
    """``col`` in one of ``ranges``: an OR of one test per range."""
    conds = []
    for start, stop, stride in ranges:
        cond = col.between(start, stop)
        if stride != 1:
            # col = start (mod stride), without computing col - start, which overflows 64 bits for
            # a start near -2**63 (PostgreSQL: bigint out of range).  SQL's remainder takes the sign
            # of the dividend, so a negative col leaves r - stride where a positive one leaves r.
            r = start % stride
            rem = col % stride
            cond = kit.and_(cond, kit.or_(rem == r, rem == r - stride) if r else rem == 0)
        conds.append(cond)
    return kit.or_(*conds)


def _member_column(p: Predicate) -> Any:
    """The plain column ``p`` tests membership of (an IN list, a range, ``= literal``), or None."""
    if not isinstance(p, InValues | InRange | Compare) or not isinstance(
        p.a, DimKey | DimField | DatasetField
    ):
        return None
    if isinstance(p, Compare) and not (
        p.op == "==" and isinstance(p.b, Lit) and p.b.type in ("int", "float", "string", "uuid")
    ):
        return None
    return p.a


class SqlCompiler:
    """Turns predicates into SQL, looking columns up through ``lookup``.

    ``lookup`` returns a column for scalar references and a ``(begin, end)``
    pair of columns for timespan references.
    """

    def __init__(self, lookup: ColumnLookup, kit: Any = None):
        self.lookup = lookup
        self.kit = kit if kit is not None else SA_KIT

    # --- values ------------------------------------------------------------------------------------

    def value(self, x: ColumnExpr) -> Any:
        if isinstance(x, Lit):
            kit = self.kit
            if x.type == "timespan":
                ts: Timespan = x.value
                b, e = ts.nsec
                return (kit.literal(b, "bigint"), kit.literal(e, "bigint"))
            if x.type == "datetime":
                return kit.literal(x.value, "bigint")
            if x.type == "uuid":
                return kit.literal(x.value, "uuid")
            if x.type == "region":
                raise InvalidQueryError("A region literal can only be used with OVERLAPS on a region column.")
            return kit.literal(x.value)
        if isinstance(x, DimKey | DimField | DatasetField):
            return self.lookup(x)
        if isinstance(x, Arith):
            a, b = self.value(x.a), self.value(x.b)
            if x.op in ("/", "%") and not isinstance(x.b, Lit):
                # A divisor the database computes may be zero: NULL then, as SQLite answers, where
                # PostgreSQL would stop the query (a literal zero was refused by the resolver).
                b = self.kit.nullif_zero(b)
            match x.op:
                case "+":
                    return a + b
                case "-":
                    return a - b
                case "*":
                    return a * b
                case "/":
                    return self.kit.divide(a, b)
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
        kit = self.kit
        if isinstance(p, Const):
            return kit.true() if p.value else kit.false()
        if isinstance(p, And):
            return kit.and_(*[self.predicate(i) for i in p.items])
        if isinstance(p, Or):
            return self._or(p)
        if isinstance(p, Not):
            return kit.not_(self.predicate(p.item))
        if isinstance(p, Compare):
            return self._compare(p)
        if isinstance(p, InValues):
            if p.a.type == "timespan":
                raise InvalidQueryError("IN does not apply to timespans.")
            return self._member(p.a, [v.value for v in p.values], [])
        if isinstance(p, InRange):
            return self._member(p.a, [], [(p.start, p.stop, p.stride)])
        if isinstance(p, IsNull):
            v = self.value(p.a)
            return (v[0] if isinstance(v, tuple) else v).is_(None)
        if isinstance(p, Glob):
            return self.value(p.a).like(glob_to_like(p.pattern), escape="\\")
        if isinstance(p, BoolColumn):
            return self.value(p.a) == kit.true()
        if isinstance(p, Overlaps):
            return self._overlaps(p)
        raise InvalidQueryError(f"Cannot compile predicate {p!r}.")

    def _or(self, p: Or) -> Any:
        """An OR, with its IN lists, ranges and ``=`` literals on one column made one membership test.

        ``visit = 1 OR visit = 2 OR …`` (machine-written) and ``visit IN (1..5, 9..12)`` (an OR of
        ranges after resolution) then cost a look-up a row, not one comparison per term.  Only
        plain columns are grouped; SQL gives the same answer either way (NULL for a NULL column).
        """
        groups: dict[Any, tuple[list[Any], list[tuple[int, int, int]]]] = {}
        rest: list[Predicate] = []
        for item in p.items:
            col = _member_column(item)
            if col is None or col.type == "timespan":
                rest.append(item)
                continue
            values, ranges = groups.setdefault(col, ([], []))
            if isinstance(item, InValues):
                values.extend(v.value for v in item.values)
            elif isinstance(item, InRange):
                ranges.append((item.start, item.stop, item.stride))
            else:
                assert isinstance(item, Compare) and isinstance(item.b, Lit)
                values.append(item.b.value)
        conds = [self._member(col, values, ranges) for col, (values, ranges) in groups.items()]
        return self.kit.or_(*conds, *[self.predicate(i) for i in rest])

    def _member(self, a: ColumnExpr, values: list[Any], ranges: list[tuple[int, int, int]]) -> Any:
        """``a`` among ``values`` or in one of ``ranges`` (see `membership`)."""
        return member_sql(self.kit, self.value(a), values, ranges)

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
                    return self.kit.false()
            conds = [a[0] < b[1], b[0] < a[1]]
            if not isinstance(p.a, Lit):
                conds.append(a[0] < a[1])
            if not isinstance(p.b, Lit):
                conds.append(b[0] < b[1])
            return self.kit.and_(*conds)
        ts, t = (a, b) if ta == "timespan" else (b, a)
        return self.kit.and_(ts[0] <= t, t < ts[1])


# --- SQL construction kits ------------------------------------------------------------------------------
#
# The planner builds its statements through a kit: `SAKit` makes SQLAlchemy Core objects (for statements
# the database composes further, `QueryEngine.statement`), `TextKit` writes the same SQL as text with
# positional parameters directly.  Building and compiling SQLAlchemy constructs costs milliseconds per
# statement, most of a small query the first time it runs; the text kit costs a few tens of
# microseconds.  It covers the constructs the planner uses (`TextKit.unsupported` names what it leaves to
# SQLAlchemy: true division, whose typing rules differ per database).


class Unsupported(Exception):
    """The text kit does not write this construct; plan the query with SQLAlchemy instead."""


class SAKit:
    """The planner's SQL constructors, as SQLAlchemy Core."""

    text = False

    def table(self, table: Any) -> Any:
        return table

    def alias(self, table: Any, name: str) -> Any:
        return table.alias(name)

    def select(self, *columns: Any) -> Any:
        return sqlalchemy.select(*columns)

    def union_all(self, *parts: Any) -> Any:
        return sqlalchemy.union_all(*parts)

    def and_(self, *items: Any) -> Any:
        if len(items) > GROUP:
            return self.and_(*[sqlalchemy.and_(*c).self_group() for c in _chunks(items)])
        return sqlalchemy.and_(*items)

    def or_(self, *items: Any) -> Any:
        if not items:
            return sqlalchemy.false()
        if len(items) > GROUP:
            return self.or_(*[sqlalchemy.or_(*c).self_group() for c in _chunks(items)])
        return sqlalchemy.or_(*items)

    def in_values(self, column: Any, values: list[Any]) -> Any:
        """``column IN (values)``; more than `IN_LIST_MAX` values are one bound array (`_InArray`)."""
        if len(values) <= IN_LIST_MAX or not _arrayable(values):
            return column.in_(values)
        return _InArray(column, values)

    def not_(self, item: Any) -> Any:
        return sqlalchemy.not_(item)

    def true(self) -> Any:
        return sqlalchemy.true()

    def false(self) -> Any:
        return sqlalchemy.false()

    def null(self) -> Any:
        return sqlalchemy.null()

    def null_bigint(self) -> Any:
        return sqlalchemy.null().cast(BigInteger)

    def row_after(self, columns: list[Any], values: list[Any]) -> Any:
        """``(c1, c2, …) > (v1, v2, …)``: a row value comparison, which an index on those columns serves."""
        return sqlalchemy.tuple_(*columns) > sqlalchemy.tuple_(
            *[sqlalchemy.literal(v, type_=c.type) for c, v in zip(columns, values)]
        )

    def literal(self, value: Any, type_: str | None = None) -> Any:
        if type_ == "bigint":
            return sqlalchemy.literal(value, BigInteger)
        if type_ == "uuid":
            return sqlalchemy.literal(value, Uuid)
        return sqlalchemy.literal(value)

    def bindparam(self, name: str, expanding: bool = False) -> Any:
        return sqlalchemy.bindparam(name, expanding=expanding)

    def case(self, whens: dict[Any, Any], value: Any) -> Any:
        return sqlalchemy.case(whens, value=value)

    def row_number(self, partition_by: list[Any], order_by: Any) -> Any:
        return sqlalchemy.func.row_number().over(partition_by=partition_by, order_by=order_by)

    def count_over(self, partition_by: list[Any]) -> Any:
        return sqlalchemy.func.count().over(partition_by=partition_by)

    def divide(self, a: Any, b: Any) -> Any:
        return a / b

    def nullif_zero(self, value: Any) -> Any:
        return sqlalchemy.func.nullif(value, 0)

    def in_select(self, columns: list[Any], select: Any) -> Any:
        """``(a, b) IN (SELECT …)``: the rows whose ``columns`` are among the select's rows."""
        return (columns[0] if len(columns) == 1 else sqlalchemy.tuple_(*columns)).in_(select)


SA_KIT = SAKit()


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    """``items`` in consecutive groups of at most `GROUP`."""
    return [items[i : i + GROUP] for i in range(0, len(items), GROUP)]


def _arrayable(values: list[Any]) -> bool:
    """Can ``values`` travel as one array (JSON on SQLite, an ARRAY on PostgreSQL)?"""
    kinds = {type(v) for v in values}
    return kinds <= {int, float} or kinds == {str} or kinds == {uuid.UUID}


class _InArray(sqlalchemy.sql.expression.ColumnElement[bool]):
    """``column IN (values)`` with the values as one bound array, written per database (`_in_array_*`)."""

    type = sqlalchemy.Boolean()
    inherit_cache = False

    def __init__(self, column: Any, values: list[Any]):
        self.column = column
        self.values = values


@compiles(_InArray, "sqlite")
def _in_array_sqlite(element: _InArray, compiler: Any, **kw: Any) -> str:
    values = [v.hex if isinstance(v, uuid.UUID) else v for v in element.values]
    array = compiler.process(sqlalchemy.bindparam(None, json.dumps(values), sqlalchemy.String()), **kw)
    return f"({compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({array})))"


@compiles(_InArray)
def _in_array_default(element: _InArray, compiler: Any, **kw: Any) -> str:
    if isinstance(element.values[0], uuid.UUID):
        values: list[Any] = [str(v) for v in element.values]
        cast = " AS UUID[]"
    else:
        values, cast = list(element.values), ""
    array = compiler.process(sqlalchemy.bindparam(None, values, sqlalchemy.types.NullType()), **kw)
    array = f"CAST({array}{cast})" if cast else array
    return f"({compiler.process(element.column, **kw)} = ANY({array}))"


_EXPAND = "\x00expand\x00"


class _Named:
    """A parameter given a value when the statement is rendered (`TextStatement.__call__`)."""

    __slots__ = ("expanding", "name")

    def __init__(self, name: str, expanding: bool):
        self.name = name
        self.expanding = expanding


class TextExpr:
    """A SQL expression as text, with its positional parameters and the FROM items it refers to."""

    __slots__ = ("kit", "name", "params", "sql", "tables")

    def __init__(
        self, kit: TextKit, sql: str, params: tuple = (), tables: tuple = (), name: str | None = None
    ):
        self.kit = kit
        self.sql = sql
        self.params = params
        self.tables = tables
        self.name = name
        """The column name it has in a select list (a table column's, or a label)."""

    __hash__ = object.__hash__

    def _binary(self, op: str, other: Any, reflected: bool = False) -> TextExpr:
        o = self.kit.coerce(other)
        a, b = (o, self) if reflected else (self, o)
        return TextExpr(self.kit, f"({a.sql} {op} {b.sql})", a.params + b.params, a.tables + b.tables)

    def __eq__(self, other: Any) -> TextExpr:  # type: ignore[override]
        return self._binary("=", other)

    def __ne__(self, other: Any) -> TextExpr:  # type: ignore[override]
        return self._binary("!=", other)

    def __lt__(self, other: Any) -> TextExpr:
        return self._binary("<", other)

    def __le__(self, other: Any) -> TextExpr:
        return self._binary("<=", other)

    def __gt__(self, other: Any) -> TextExpr:
        return self._binary(">", other)

    def __ge__(self, other: Any) -> TextExpr:
        return self._binary(">=", other)

    def __add__(self, other: Any) -> TextExpr:
        return self._binary("+", other)

    def __radd__(self, other: Any) -> TextExpr:
        return self._binary("+", other, True)

    def __sub__(self, other: Any) -> TextExpr:
        return self._binary("-", other)

    def __rsub__(self, other: Any) -> TextExpr:
        return self._binary("-", other, True)

    def __mul__(self, other: Any) -> TextExpr:
        return self._binary("*", other)

    def __rmul__(self, other: Any) -> TextExpr:
        return self._binary("*", other, True)

    def __mod__(self, other: Any) -> TextExpr:
        return self._binary(self.kit.percent, other)

    def __rmod__(self, other: Any) -> TextExpr:
        return self._binary(self.kit.percent, other, True)

    def __truediv__(self, other: Any) -> TextExpr:
        raise Unsupported("division")

    def __neg__(self) -> TextExpr:
        return TextExpr(self.kit, f"(-{self.sql})", self.params, self.tables)

    def in_(self, values: Any) -> TextExpr:
        if isinstance(values, TextExpr):  # an expanding parameter
            return TextExpr(
                self.kit, f"({self.sql} IN ({values.sql}))", self.params + values.params, self.tables
            )
        values = list(values)
        if not values:
            return self.kit.false()
        marks, params = self.kit.params(values)
        return TextExpr(self.kit, f"({self.sql} IN ({marks}))", self.params + params, self.tables)

    def between(self, low: Any, high: Any) -> TextExpr:
        lo, hi = self.kit.coerce(low), self.kit.coerce(high)
        return TextExpr(
            self.kit,
            f"({self.sql} BETWEEN {lo.sql} AND {hi.sql})",
            self.params + lo.params + hi.params,
            self.tables + lo.tables + hi.tables,
        )

    def like(self, pattern: str, escape: str) -> TextExpr:
        if escape != "\\":
            raise Unsupported("escape character")
        p = self.kit.coerce(pattern)
        return TextExpr(
            self.kit, f"({self.sql} LIKE {p.sql} ESCAPE '\\')", self.params + p.params, self.tables
        )

    def is_(self, value: None) -> TextExpr:
        if value is not None:
            raise Unsupported("IS with a value")
        return TextExpr(self.kit, f"({self.sql} IS NULL)", self.params, self.tables)

    def label(self, name: str) -> TextExpr:
        return TextExpr(self.kit, self.sql, self.params, self.tables, name)

    def desc(self) -> TextExpr:
        return TextExpr(self.kit, f"{self.sql} DESC", self.params, self.tables)


class _Columns:
    """The columns of a FROM item, by name (``c["id"]``, ``c.id``) and in order."""

    def __init__(self, source: TextFrom, names: list[str]):
        kit = source.kit
        prefix = source.ref + "."
        self._by_name = {n: TextExpr(kit, prefix + kit.quote(n), (), (source,), n) for n in names}

    def __getitem__(self, name: str) -> TextExpr:
        return self._by_name[name]

    def __getattr__(self, name: str) -> TextExpr:
        try:
            return self._by_name[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[TextExpr]:
        return iter(self._by_name.values())


class TextFrom:
    """A table, an aliased table, a subquery or a join, as it appears in a FROM clause."""

    def __init__(
        self,
        kit: TextKit,
        sql: str,
        params: tuple = (),
        ref: str = "",
        columns: list[str] | None = None,
        members: tuple = (),
    ):
        self.kit = kit
        self.sql = sql
        self.params = params
        self.ref = ref
        self.members: tuple = members or (self,)
        """The FROM items this one brings into a query (a join: those it joins)."""
        self._names = columns
        self._c: _Columns | None = None

    @property
    def c(self) -> _Columns:
        if self._c is None:
            self._c = _Columns(self, self._names or [])
        return self._c

    def join(self, other: TextFrom, onclause: Any) -> TextFrom:
        on = self.kit.coerce(onclause)
        right = f"({other.sql})" if len(other.members) > 1 else other.sql  # a join joined: nested
        return TextFrom(
            self.kit,
            f"{self.sql} JOIN {right} ON {on.sql}",
            self.params + other.params + on.params,
            members=self.members + other.members,
        )


class _SelectedColumns:
    def __init__(self, kit: TextKit):
        self.kit = kit

    def __getitem__(self, label: str) -> TextExpr:
        return TextExpr(self.kit, self.kit.quote(label))


class TextSelect:
    """A SELECT being built; like SQLAlchemy's, each method returns a new one."""

    def __init__(self, kit: TextKit, columns: tuple):
        self.kit = kit
        self.columns = [kit.coerce(c) for c in columns]
        self.froms: list[TextFrom] = []
        self.wheres: list[TextExpr] = []
        self.is_distinct = False
        self.orders: list[TextExpr] = []
        self.limit_value: int | None = None

    def _copy(self) -> TextSelect:
        new = TextSelect.__new__(TextSelect)
        new.__dict__.update(self.__dict__)
        new.columns = list(self.columns)
        new.froms = list(self.froms)
        new.wheres = list(self.wheres)
        new.orders = list(self.orders)
        return new

    def select_from(self, *froms: TextFrom) -> TextSelect:
        new = self._copy()
        new.froms += froms
        return new

    def where(self, *conditions: Any) -> TextSelect:
        new = self._copy()
        new.wheres += [self.kit.coerce(c) for c in conditions]
        return new

    def distinct(self) -> TextSelect:
        new = self._copy()
        new.is_distinct = True
        return new

    def add_columns(self, *columns: Any) -> TextSelect:
        new = self._copy()
        new.columns += [self.kit.coerce(c) for c in columns]
        return new

    def order_by(self, *items: TextExpr) -> TextSelect:
        new = self._copy()
        new.orders += items
        return new

    def limit(self, n: int) -> TextSelect:
        new = self._copy()
        new.limit_value = n
        return new

    @property
    def selected_columns(self) -> _SelectedColumns:
        return _SelectedColumns(self.kit)

    def names(self) -> list[str]:
        return [c.name or f"anon_{i}" for i, c in enumerate(self.columns, 1)]

    def _render(self, correlate: bool = False) -> tuple[str, tuple, tuple]:
        """SQL, parameters, and (``correlate``) the enclosing query's FROM items it refers to."""
        kit = self.kit
        parts = []
        params: tuple = ()
        items = []
        for c in self.columns:
            if c.name is not None and not (
                c.sql.endswith("." + kit.quote(c.name)) or c.sql == kit.quote(c.name)
            ):
                items.append(f"{c.sql} AS {kit.quote(c.name)}")
            else:
                items.append(c.sql)
            params += c.params
        parts.append(("SELECT DISTINCT " if self.is_distinct else "SELECT ") + ", ".join(items))
        covered = {id(m) for f in self.froms for m in f.members}
        froms = list(self.froms)
        outer: list[Any] = []
        for e in [*self.columns, *self.wheres, *self.orders]:
            for t in e.tables:
                if id(t) not in covered:
                    covered.add(id(t))
                    (outer if correlate else froms).append(t)
        if froms:
            parts.append("FROM " + ", ".join(f.sql for f in froms))
            for f in froms:
                params += f.params
        if self.wheres:
            parts.append("WHERE " + " AND ".join(w.sql for w in self.wheres))
            for w in self.wheres:
                params += w.params
        if self.orders:
            parts.append("ORDER BY " + ", ".join(o.sql for o in self.orders))
            for o in self.orders:
                params += o.params
        if self.limit_value is not None:
            parts.append(f"LIMIT {kit.mark}")
            params += (self.limit_value,)
        return "\n".join(parts), params, tuple(outer)

    def subquery(self, name: str) -> TextFrom:
        sql, params, _ = self._render()
        q = self.kit.quote(name)
        return TextFrom(self.kit, f"({sql}) AS {q}", params, q, self.names())

    def scalar_subquery(self) -> TextExpr:
        sql, params, outer = self._render(correlate=True)
        return TextExpr(self.kit, f"({sql})", params, outer)

    def statement(self) -> TextStatement:
        sql, params, _ = self._render()
        return TextStatement(sql, params, self.kit.mark)


class TextUnion:
    def __init__(self, kit: TextKit, parts: tuple[TextSelect, ...]):
        self.kit = kit
        self.parts = parts

    def subquery(self, name: str) -> TextFrom:
        sqls = []
        params: tuple = ()
        for p in self.parts:
            sql, ps, _ = p._render()
            sqls.append(sql)
            params += ps
        q = self.kit.quote(name)
        return TextFrom(
            self.kit, "(" + "\nUNION ALL\n".join(sqls) + f") AS {q}", params, q, self.parts[0].names()
        )


class TextStatement:
    """SQL text with positional parameters, some of which may be named (`TextKit.bindparam`)."""

    def __init__(self, sql: str, params: tuple, mark: str):
        self.sql = sql
        self.params = params
        self.mark = mark
        self.named = any(isinstance(p, _Named) for p in params)

    def __call__(self, parameters: Mapping[str, Any] | None = None) -> tuple[str, tuple]:
        if not self.named:
            return self.sql, self.params
        assert parameters is not None
        values: list[Any] = []
        sql = self.sql
        for p in self.params:
            if not isinstance(p, _Named):
                values.append(p)
            elif p.expanding:
                expanded = list(parameters[p.name])
                sql = sql.replace(_EXPAND, ", ".join([self.mark] * len(expanded)), 1)
                values.extend(expanded)
            else:
                values.append(parameters[p.name])
        return sql, tuple(values)


class TextKit:
    """The planner's SQL constructors, writing SQL text for one database (`SAKit` has the same methods)."""

    text = True

    def __init__(self, dialect: Any):
        self.sqlite = dialect.name == "sqlite"
        if dialect.paramstyle == "qmark":
            self.mark = "?"
        elif dialect.paramstyle in ("format", "pyformat"):
            self.mark = "%s"  # the driver then reads "%%" as "%"
        else:
            raise Unsupported(f"parameter style {dialect.paramstyle}")
        self.percent = "%%" if self.mark == "%s" else "%"
        self._preparer = dialect.identifier_preparer
        self._quoted: dict[str, str] = {}
        self._tables: dict[int, tuple[Any, TextFrom]] = {}

    def quote(self, name: str) -> str:
        q = self._quoted.get(name)
        if q is None:
            q = self._quoted[name] = self._preparer.quote(name)
        return q

    def table(self, table: Any) -> TextFrom:
        """A table of the schema (a SQLAlchemy `Table`), under its own name."""
        cached = self._tables.get(id(table))
        if cached is None or cached[0] is not table:
            sql = self._preparer.format_table(table)
            cached = self._tables[id(table)] = (
                table,
                TextFrom(self, sql, (), sql, [c.name for c in table.columns]),
            )
        return cached[1]

    def alias(self, table: Any, name: str) -> TextFrom:
        """A table of the schema under another name (``dim_visit AS t_visit_3``)."""
        plain = self.table(table)
        q = self.quote(name)
        return TextFrom(self, f"{plain.sql} AS {q}", (), q, plain._names)

    def select(self, *columns: Any) -> TextSelect:
        return TextSelect(self, columns)

    def union_all(self, *parts: TextSelect) -> TextUnion:
        return TextUnion(self, parts)

    def process(self, value: Any) -> tuple[str, Any]:
        """A parameter's placeholder and the value the driver gets (a UUID as SQLAlchemy would bind it)."""
        if isinstance(value, uuid.UUID):
            return (self.mark, value.hex) if self.sqlite else (f"CAST({self.mark} AS UUID)", str(value))
        return self.mark, value

    def params(self, values: list[Any]) -> tuple[str, tuple]:
        marks = []
        out = []
        for v in values:
            m, p = self.process(v)
            marks.append(m)
            out.append(p)
        return ", ".join(marks), tuple(out)

    def coerce(self, value: Any) -> TextExpr:
        if isinstance(value, TextExpr):
            return value
        if value is None:
            return self.null()
        if isinstance(value, bool | int | float | str | bytes | uuid.UUID):
            return self.literal(value)
        raise Unsupported(f"value {value!r:.40}")

    def and_(self, *items: Any) -> TextExpr:
        if not items:
            return self.true()
        es = [self.coerce(i) for i in items]
        if len(es) == 1:
            return es[0]
        return self._join(" AND ", es)

    def or_(self, *items: Any) -> TextExpr:
        if not items:
            return self.false()
        es = [self.coerce(i) for i in items]
        if len(es) == 1:
            return es[0]
        return self._join(" OR ", es)

    def _join(self, op: str, es: list[TextExpr]) -> TextExpr:
        """``es`` joined by ``op``, in nested groups of at most `GROUP` (SQLite's expression depth)."""
        while len(es) > GROUP:
            es = [self._join(op, list(c)) for c in _chunks(es)]
        params: list[Any] = []
        tables: list[Any] = []
        for e in es:
            params.extend(e.params)
            tables.extend(e.tables)
        return TextExpr(self, "(" + op.join(e.sql for e in es) + ")", tuple(params), tuple(tables))

    def in_values(self, column: TextExpr, values: list[Any]) -> TextExpr:
        """``column IN (values)``; more than `IN_LIST_MAX` values are one bound array.

        SQLite: ``IN (SELECT value FROM json_each(?))`` with the values as a JSON
        text; PostgreSQL: ``= ANY(%s)`` with a list, which psycopg2 sends as an
        ARRAY.  Either way the database builds one look-up for the list, and the
        statement holds one parameter however long it is.
        """
        if len(values) <= IN_LIST_MAX or not _arrayable(values):
            return column.in_(values)
        data: Any
        if self.sqlite:
            data = json.dumps([v.hex if isinstance(v, uuid.UUID) else v for v in values])
            sql = f"({column.sql} IN (SELECT value FROM json_each({self.mark})))"
        elif isinstance(values[0], uuid.UUID):
            data = [str(v) for v in values]
            sql = f"({column.sql} = ANY(CAST({self.mark} AS UUID[])))"
        else:
            data = list(values)
            sql = f"({column.sql} = ANY({self.mark}))"
        return TextExpr(self, sql, (*column.params, data), column.tables)

    def in_select(self, columns: list[TextExpr], select: TextSelect) -> TextExpr:
        """``(a, b) IN (SELECT …)``: the rows whose ``columns`` are among the select's rows."""
        sql, params, _ = select._render()
        lhs = columns[0].sql if len(columns) == 1 else "(" + ", ".join(c.sql for c in columns) + ")"
        col_params: tuple = ()
        tables: tuple = ()
        for c in columns:
            col_params += c.params
            tables += c.tables
        return TextExpr(self, f"({lhs} IN ({sql}))", col_params + params, tables)

    def not_(self, item: Any) -> TextExpr:
        e = self.coerce(item)
        return TextExpr(self, f"(NOT {e.sql})", e.params, e.tables)

    def true(self) -> TextExpr:
        return TextExpr(self, "1" if self.sqlite else "true")

    def false(self) -> TextExpr:
        return TextExpr(self, "0" if self.sqlite else "false")

    def null(self) -> TextExpr:
        return TextExpr(self, "NULL")

    def null_bigint(self) -> TextExpr:
        return TextExpr(self, "CAST(NULL AS BIGINT)")

    def row_after(self, columns: list[Any], values: list[Any]) -> Any:
        raise Unsupported("row value comparison")

    def literal(self, value: Any, type_: str | None = None) -> TextExpr:
        mark, v = self.process(value)
        return TextExpr(self, mark, (v,))

    def bindparam(self, name: str, expanding: bool = False) -> TextExpr:
        return TextExpr(self, _EXPAND if expanding else self.mark, (_Named(name, expanding),))

    def case(self, whens: dict[Any, Any], value: TextExpr) -> TextExpr:
        sql = [f"CASE {value.sql}"]
        params = value.params
        for k, v in whens.items():
            sql.append(f"WHEN {self.mark} THEN {self.mark}")
            params += (k, v)
        return TextExpr(self, " ".join(sql) + " END", params, value.tables)

    def _over(self, func: str, partition_by: list[TextExpr], order_by: TextExpr | None) -> TextExpr:
        params: tuple = ()
        tables: tuple = ()
        for p in partition_by:
            params += p.params
            tables += p.tables
        sql = f"{func} OVER (PARTITION BY " + ", ".join(p.sql for p in partition_by)
        if order_by is not None:
            sql += f" ORDER BY {order_by.sql}"
            params += order_by.params
            tables += order_by.tables
        return TextExpr(self, sql + ")", params, tables)

    def row_number(self, partition_by: list[TextExpr], order_by: TextExpr) -> TextExpr:
        return self._over("row_number()", partition_by, order_by)

    def count_over(self, partition_by: list[TextExpr]) -> TextExpr:
        return self._over("count(*)", partition_by, None)

    def divide(self, a: Any, b: Any) -> Any:
        raise Unsupported("division")

    def nullif_zero(self, value: TextExpr) -> TextExpr:
        return TextExpr(self, f"NULLIF({value.sql}, 0)", value.params, value.tables)
