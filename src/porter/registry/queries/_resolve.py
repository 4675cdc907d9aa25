"""Resolution of ``where`` syntax trees into typed predicates.

Identifiers are interpreted as daf_butler interprets them:

* a dimension name (``visit``) is that dimension's value;
* ``element.field`` is a field of that element's records (``visit.exposure_time``),
  where ``element.<dimension>`` and ``element.<primary key>`` mean the dimension;
* a bare field name (``exposure_time``) is allowed when exactly one element of
  the query (or the dataset being searched) has it;
* ``dataset_id``, ``ingest_date``, ``run``, ``collection``, ``timespan`` are
  fields of the searched dataset (or ``<dataset type>.<field>``);
* ``x.timespan.begin`` / ``.end`` are timespan bounds;
* names in ``bind`` (with or without a colon) are literal values.

Errors name the problem, point at it with a caret and suggest the closest
valid name.

Literals are checked here, before any SQL exists, so that a value no database
column can hold is answered with the value and a fix rather than a driver
error: integers must fit in 64 bits, numbers must be finite, strings may not
hold NUL characters (PostgreSQL cannot store them) or unpaired surrogates (no
driver can encode them), arithmetic on literals is computed here (with SQL's
integer semantics) so that an overflow or a division by zero is caught, and
times outside the range of TAI nanoseconds in 64 bits (about 1677 to 2262) are
clamped to its ends, which are how unbounded timespans are stored.
"""

from __future__ import annotations

import datetime
import math
import numbers
import sys
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import lsst.sphgeom

from ...dimensions import (
    MAX_NSEC,
    MIN_NSEC,
    Dimension,
    DimensionGroup,
    DimensionUniverse,
    SkyPixDimension,
    Timespan,
    is_astropy_time,
    tai_nsec_from_datetime,
    tai_nsec_from_time,
)
from ...errors import InvalidQueryError, did_you_mean
from .. import expr as ast
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
    "DATASET_FIELDS",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_RESOLVED_DEPTH",
    "ResolveContext",
    "check_value",
    "literal_from_value",
    "nesting_depth",
    "region_problem",
    "resolve_identifier",
    "resolve_predicate",
]

DATASET_FIELDS: dict[str, str] = {
    "dataset_id": "uuid",
    "ingest_date": "datetime",
    "run": "string",
    "collection": "string",
    "timespan": "timespan",
}

_NUMERIC = {"int", "float"}

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def check_value(value: Any, type_: str, what: str) -> str | None:
    """Why ``value`` (of porter type ``type_``) cannot be sent to the database, or `None` if it can.

    ``what`` names the value in the message (``"bind value 'v'"``, ``"integer 1e99"``).
    Both SQLite and PostgreSQL store integers in 64 bits (SQLite's driver
    raises ``OverflowError`` beyond, PostgreSQL's ``bigint`` arithmetic
    fails), PostgreSQL rejects NUL characters in text, and neither driver can
    encode a lone surrogate.
    """
    if type_ == "int" and not INT64_MIN <= value <= INT64_MAX:
        return (
            f"{what} is out of range: integers must fit in 64 bits "
            f"({INT64_MIN} to {INT64_MAX}); use a smaller value."
        )
    if type_ == "float" and not math.isfinite(value):
        return f"{what} is not a finite number ({value!r}); use a finite value."
    if type_ == "string":
        if "\x00" in value:
            return f"{what} contains a NUL character (\\x00), which databases cannot store; remove it."
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (
                f"{what} is not valid Unicode text ({exc.reason} at position {exc.start}); fix its encoding."
            )
    return None


def region_problem(region: lsst.sphgeom.Region, what: str) -> str | None:
    """Why ``region`` cannot constrain a query (NaN or infinite coordinates), or `None`.

    lsst.sphgeom builds regions from NaN without complaint (``REGION('CIRCLE
    nan 0 1')``, a bound ``Circle`` of a NaN vector); their pixel envelopes
    are arbitrary pixels and their overlaps meaningless, so such a query
    would silently return wrong rows.  Empty regions are fine: they match
    nothing.
    """
    if region.isEmpty():
        return None
    center = region.getBoundingCircle().getCenter()
    box = region.getBoundingBox()
    values = (
        center.x(),
        center.y(),
        center.z(),
        box.getLon().getA().asRadians(),
        box.getLon().getB().asRadians(),
        box.getLat().getA().asRadians(),
        box.getLat().getB().asRadians(),
    )
    if all(math.isfinite(v) for v in values):
        return None
    return f"{what} has undefined (NaN or infinite) coordinates; give finite ra, dec and sizes in degrees."


def _clamp_nsec(nsec: int) -> int:
    """Clamp TAI nanoseconds to what a 64-bit column holds (the ends mean 'unbounded')."""
    return min(max(nsec, MIN_NSEC), MAX_NSEC)


@dataclass(frozen=True)
class _Null:
    type: str = "null"


@dataclass(frozen=True)
class _Range:
    node: ast.RangeLiteral
    type: str = "range"


@dataclass(frozen=True)
class _Seq:
    values: tuple[Lit, ...]
    type: str = "sequence"


@dataclass
class ResolveContext:
    """What a ``where`` expression is resolved against."""

    universe: DimensionUniverse
    dimensions: DimensionGroup
    """Dimensions of the query before the expression adds any (for bare field names)."""
    datasets: Mapping[str, DimensionGroup]
    """Dataset types searched by the query, with their dimensions."""
    bind: Mapping[str, Any]
    expression: str = ""

    CONTEXT: ClassVar[int] = 100
    """Characters of the expression shown either side of an error's caret."""

    def error(self, node: ast.Node | None, message: str) -> InvalidQueryError:
        """An `InvalidQueryError`, with a caret under ``node`` in the expression when known.

        Only the ``CONTEXT`` characters either side of the caret are shown: a
        machine-written expression can be one 100 KB line, which would bury
        the message (and be repeated by every layer that reports it).
        """
        if node is not None and self.expression:
            pos = node.pos
            line_start = self.expression.rfind("\n", 0, pos) + 1
            line_end = self.expression.find("\n", pos)
            if line_end == -1:
                line_end = len(self.expression)
            start = max(line_start, pos - self.CONTEXT)
            end = min(line_end, pos + self.CONTEXT)
            before = "…" if start > line_start else ""
            after = "…" if end < line_end else ""
            line = before + self.expression[start:end] + after
            message = f"{message}\n    {line}\n    {' ' * (pos - start + len(before))}^"
        return InvalidQueryError(message)


def literal_from_value(value: Any, what: str = "value") -> Lit | _Seq | _Null:
    """Turn a Python value (from ``bind=`` or keyword arguments) into a typed, checked literal.

    Raises `InvalidQueryError` naming ``what`` for values no query can use
    (see `check_value`), rather than letting the database driver fail later.
    """
    lit = _literal_from_value(value, what)
    if isinstance(lit, Lit):
        problem = check_value(lit.value, lit.type, f"{what} ({_short(value)})")
        if problem:
            raise InvalidQueryError(problem)
    return lit


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters so a 100 KB value does not become a 100 KB message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def _astropy_value(value: Any, what: str) -> Lit | None:
    """A SkyCoord as a point region (as daf_butler binds it), an angle as its degrees; else None.

    astropy.coordinates is slow to import; a value can only be one of its
    types if the caller imported it already, so it is looked up, not imported.
    """
    coordinates = sys.modules.get("astropy.coordinates")
    if coordinates is None:
        return None
    skycoord = getattr(coordinates, "SkyCoord", None)  # None while another thread is still importing it
    if skycoord is not None and isinstance(value, skycoord):
        icrs = value.transform_to("icrs")
        if not icrs.isscalar:
            raise InvalidQueryError(f"{what} is a SkyCoord of {len(icrs)} points; bind a single point.")
        return _literal_from_value(lsst.sphgeom.LonLat.fromDegrees(icrs.ra.degree, icrs.dec.degree), what)  # type: ignore[return-value]
    units = sys.modules.get("astropy.units")
    quantity = getattr(units, "Quantity", None) if units is not None else None
    if (
        units is not None
        and quantity is not None
        and isinstance(value, quantity)
        and value.unit.physical_type == "angle"
    ):
        if not value.isscalar:
            raise InvalidQueryError(f"{what} is an array of angles; bind a single angle.")
        return Lit(float(value.to_value(units.deg)), "float")
    return None


def _literal_from_value(value: Any, what: str) -> Lit | _Seq | _Null:
    if value is None:
        return _Null()
    if isinstance(value, bool):
        return Lit(value, "bool")
    if isinstance(value, numbers.Integral):
        return Lit(int(value), "int")
    if isinstance(value, numbers.Real):
        return Lit(float(value), "float")
    if isinstance(value, str):
        return Lit(value, "string")
    # astropy.time is imported only when there is a time to convert (a query without times should not
    # pay its import, 0.1-0.2 s): is_astropy_time never imports it, astropy_time does on first use.
    if is_astropy_time(value):
        if not value.isscalar:
            raise InvalidQueryError(f"{what} is an array of times; bind a single astropy Time.")
        return Lit(_clamp_nsec(_tai_nsec(tai_nsec_from_time, value, what)), "datetime")
    if isinstance(value, datetime.datetime):
        return Lit(_clamp_nsec(_tai_nsec(tai_nsec_from_datetime, value, what)), "datetime")
    if isinstance(value, Timespan):
        b, e = value.nsec
        if (b, e) != (_clamp_nsec(b), _clamp_nsec(e)):
            value = Timespan.from_nsec(_clamp_nsec(b), _clamp_nsec(e))
        return Lit(value, "timespan")
    if isinstance(value, lsst.sphgeom.Region):
        problem = region_problem(value, what)
        if problem:
            raise InvalidQueryError(problem)
        return Lit(value, "region")
    if isinstance(value, lsst.sphgeom.LonLat):
        region = lsst.sphgeom.Circle(lsst.sphgeom.UnitVector3d(value))
        problem = region_problem(region, what)
        if problem:
            raise InvalidQueryError(problem)
        return Lit(region, "region")
    astro = _astropy_value(value, what)
    if astro is not None:
        return astro
    if isinstance(value, uuid.UUID):
        return Lit(value, "uuid")
    if isinstance(value, bytes):
        return Lit(value, "hash")
    if isinstance(value, list | tuple | set | frozenset):
        items = []
        for v in value:
            lit = literal_from_value(v, what)
            if not isinstance(lit, Lit):
                raise InvalidQueryError(f"{what} contains {_short(v)}, which cannot be one value of a list.")
            items.append(lit)
        types = {i.type for i in items}
        if len(types - _NUMERIC) + (1 if types & _NUMERIC else 0) > 1:
            raise InvalidQueryError(f"{what} mixes values of types {sorted(types)}; use one type.")
        return _Seq(tuple(items))
    raise InvalidQueryError(f"{what} has unsupported type {type(value).__name__} ({_short(value)}).")


def _tai_nsec(convert: Any, value: Any, what: str) -> int:
    """``convert(value)``: a time as TAI nanoseconds, or `InvalidQueryError` if it has none.

    A time in astropy's 'local' scale cannot be converted to TAI (astropy's
    ``ScaleValueError``), nor can a NaN one; the driver must never see either.
    """
    try:
        nsec = convert(value)
    except Exception as exc:  # astropy's ScaleValueError is no ValueError
        raise InvalidQueryError(
            f"{what} ({_short(value)}) cannot be converted to a TAI time ({exc}); bind a UTC or TAI time."
        ) from None
    if not isinstance(nsec, numbers.Integral):
        raise InvalidQueryError(f"{what} ({_short(value)}) is not a finite time; bind a UTC or TAI time.")
    return int(nsec)


def _field_type(universe: DimensionUniverse, element_name: str, field: str) -> str:
    element = universe[element_name]
    if field == "region":
        return "region"
    if field == "timespan":
        return "timespan"
    return element.field_by_name[field].type


def _dimension_valued_fields(element: Any) -> dict[str, str]:
    """Fields of an element's records whose value is a dimension's value: field name -> dimension."""
    out: dict[str, str] = {}
    for d in element.required:
        out[d.primary_key.name if d is element else d.name] = d.name
    for d in element.implied:
        out[d.name] = d.name
    return out


def resolve_identifier(ctx: ResolveContext, name: str, node: ast.Node | None = None) -> ColumnExpr:
    """Interpret a (possibly dotted) identifier as a column reference."""
    universe = ctx.universe
    terms = name.split(".")
    if len(terms) == 1:
        if name in universe.dimensions:
            d = universe.dimensions[name]
            return DimKey(name, d.primary_key.type)
        element_matches = [
            e
            for e in ctx.dimensions.elements
            if name in universe[e].schema and name not in universe.dimensions
        ]
        dataset_matches = list(ctx.datasets) if name in DATASET_FIELDS else []
        if len(element_matches) + len(dataset_matches) > 1:
            options = ", ".join(f"'{x}.{name}'" for x in sorted([*element_matches, *dataset_matches]))
            raise ctx.error(
                node, f"Ambiguous identifier {name!r} matches several fields: {options}; qualify it."
            )
        if element_matches:
            element = universe[element_matches[0]]
            if isinstance(element, Dimension) and name == element.primary_key.name:
                return DimKey(element.name, element.primary_key.type)
            dims = _dimension_valued_fields(element)
            if name in dims:
                dim = universe.dimensions[dims[name]]
                return DimKey(dim.name, dim.primary_key.type)
            return DimField(element.name, name, _field_type(universe, element.name, name))
        if dataset_matches:
            return DatasetField(dataset_matches[0], name, DATASET_FIELDS[name])
        candidates = [
            n for n in universe.dimensions if not isinstance(universe.dimensions[n], SkyPixDimension)
        ]
        candidates.append(universe.common_skypix.name)
        for e in ctx.dimensions.elements:
            candidates.extend(universe[e].schema)
        if ctx.datasets:
            candidates.extend(DATASET_FIELDS)
        candidates.extend(ctx.bind)
        raise ctx.error(node, f"Unrecognized identifier {name!r}." + did_you_mean(name, candidates))
    if len(terms) == 2:
        first, second = terms
        if first in universe.elements:
            element = universe[first]
            dims = _dimension_valued_fields(element)
            if second in dims:
                dim = universe.dimensions[dims[second]]
                return DimKey(dim.name, dim.primary_key.type)
            if second in element.schema:
                return DimField(element.name, second, _field_type(universe, element.name, second))
            if isinstance(element, SkyPixDimension) and second == "region":
                return DimField(element.name, "region", "region")
            raise ctx.error(
                node,
                f"Unrecognized field {second!r} for {first}."
                + did_you_mean(second, element.schema, "fields"),
            )
        if second in DATASET_FIELDS:
            return DatasetField(first, second, DATASET_FIELDS[second])
        if first == "timespan" and second in ("begin", "end") and ctx.datasets:
            return Bound(resolve_identifier(ctx, "timespan", node), second)
        if first in ctx.datasets:
            raise ctx.error(
                node,
                f"{name!r}: {second!r} is not a dataset field; datasets have {', '.join(DATASET_FIELDS)}.",
            )
        raise ctx.error(
            node,
            f"Unrecognized identifier {name!r}: {first!r} is not a dimension element."
            + did_you_mean(first, [*universe.elements, *ctx.datasets]),
        )
    if len(terms) == 3 and terms[2] in ("begin", "end"):
        base = resolve_identifier(ctx, ".".join(terms[:2]), node)
        if base.type != "timespan":
            raise ctx.error(node, f"{name!r}: .begin/.end apply to timespans, and {base} is {base.type}.")
        return Bound(base, terms[2])
    raise ctx.error(node, f"Unrecognized identifier {name!r}.")


def _fold(op: str, a: Lit, b: Lit) -> Lit:
    """``a op b`` for two literals of one numeric type, as SQL computes it.

    Computed here so the result can be range-checked: in the database an
    integer overflow is an error on PostgreSQL and a silent switch to floating
    point on SQLite.  Integer ``/`` truncates toward zero and ``%`` takes the
    sign of the dividend, as in both databases (Python's ``//`` and ``%``
    floor instead).  The divisor is known not to be zero.
    """
    x, y = a.value, b.value
    if a.type == "int":
        if op == "+":
            return Lit(x + y, "int")
        if op == "-":
            return Lit(x - y, "int")
        if op == "*":
            return Lit(x * y, "int")
        q = abs(x) // abs(y)
        q = q if (x >= 0) == (y >= 0) else -q
        return Lit(q if op == "/" else x - y * q, "int")
    try:
        value = {"+": x + y, "-": x - y, "*": x * y}[op] if op != "/" else x / y
    except OverflowError:
        value = math.inf
    return Lit(value, "float")


def _compatible(a: str, b: str) -> bool:
    return a == b or (a in _NUMERIC and b in _NUMERIC)


def _type_hint(a: Any, b: Any) -> str:
    types = {a.type, b.type}
    if types == {"datetime", "string"}:
        return " Write times as T'2021-09-09 03:00:00' (the T prefix makes it a time)."
    if types == {"int", "string"}:
        return " Quote strings and leave numbers unquoted (e.g. detector = 10, band = 'r')."
    return ""


class _Resolver:
    def __init__(self, ctx: ResolveContext):
        self.ctx = ctx

    def err(self, node: ast.Node, msg: str) -> InvalidQueryError:
        return self.ctx.error(node, msg)

    def predicate(self, node: ast.Node) -> Predicate:
        r = self.visit(node)
        if isinstance(r, _PREDICATE_TYPES):
            return r
        start = node
        while isinstance(start, ast.BinaryOp | ast.IsIn):
            start = start.lhs
        raise self.err(
            start,
            f"{node} is a value ({getattr(r, 'type', '?')}), not a condition; compare it with something.",
        )

    def column(self, node: ast.Node, r: Any) -> ColumnExpr:
        if isinstance(r, _PREDICATE_TYPES):
            if isinstance(r, BoolColumn):
                return r.a
            raise self.err(node, f"{node} is a condition, not a value.")
        if isinstance(r, _Null | _Range | _Seq):
            raise self.err(node, f"{node} cannot be used as a single value here.")
        return r

    def visit(self, node: ast.Node) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.err(node, f"Unsupported expression {node}.")
        return method(node)

    # --- leaves ----------------------------------------------------------------------------------

    def checked(self, node: ast.Node, lit: Lit, what: str) -> Lit:
        """``lit`` if the database can hold its value; otherwise an error pointing at ``node``."""
        problem = check_value(lit.value, lit.type, what)
        if problem:
            raise self.err(node, problem)
        return lit

    def visit_NumericLiteral(self, node: ast.NumericLiteral) -> Lit:
        v = node.value
        kind = "int" if isinstance(v, int) else "float"
        return self.checked(node, Lit(v, kind), f"The number {_short(node.text, 40)}")

    def visit_StringLiteral(self, node: ast.StringLiteral) -> Lit:
        return self.checked(node, Lit(node.value, "string"), f"The string {_short(node.value, 40)}")

    def visit_TimeLiteral(self, node: ast.TimeLiteral) -> Lit:
        import erfa  # astropy's, already imported: the parser made node.value an astropy Time

        with warnings.catch_warnings():
            # Converting a date far from the leap-second table warns ("dubious year")
            # and gives the best conversion known, which is all a comparison needs.
            warnings.simplefilter("ignore", erfa.ErfaWarning)
            return Lit(_clamp_nsec(tai_nsec_from_time(node.value)), "datetime")

    def visit_UuidLiteral(self, node: ast.UuidLiteral) -> Lit:
        return Lit(node.value, "uuid")

    def visit_RangeLiteral(self, node: ast.RangeLiteral) -> _Range:
        for what, value in (("start", node.start), ("end", node.stop), ("stride", node.stride)):
            if value is not None:
                self.checked(node, Lit(value, "int"), f"The {what} of the range {node}")
        return _Range(node)

    def visit_Parens(self, node: ast.Parens) -> Any:
        return self.visit(node.expr)

    def visit_BindName(self, node: ast.BindName) -> Any:
        if node.name not in self.ctx.bind:
            raise self.err(
                node,
                f"Bind name {node.name!r} has no value in bind=."
                + did_you_mean(node.name, self.ctx.bind, "bind names"),
            )
        return self._bound(node.name, node)

    def _bound(self, name: str, node: ast.Node) -> Any:
        value = self.ctx.bind[name]
        try:
            return literal_from_value(value, f"bind value {name!r}")
        except InvalidQueryError as exc:
            raise self.err(node, str(exc)) from None

    def visit_Identifier(self, node: ast.Identifier) -> Any:
        if node.name in self.ctx.bind:
            return self._bound(node.name, node)
        if node.name.upper() == "NULL":
            return _Null()
        ref = resolve_identifier(self.ctx, node.name, node)
        if ref.type == "bool":
            return BoolColumn(ref)
        return ref

    # --- operators ---------------------------------------------------------------------------------

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        # NOT NOT x is x (also in SQL's three-valued logic), and - -x is x:
        # cancelling them keeps the SQL as shallow as the meaning.
        if node.op == "NOT":
            p = self.predicate(node.operand)
            return p.item if isinstance(p, Not) else Not(p)
        operand = self.column(node.operand, self.visit(node.operand))
        if operand.type not in _NUMERIC:
            raise self.err(node, f"Unary {node.op!r} needs a number, and {node.operand} is {operand.type}.")
        if node.op == "+":
            return operand
        if isinstance(operand, Lit):
            return self.checked(
                node, Lit(-operand.value, operand.type), f"The value of {_short(str(node), 60)}"
            )
        if isinstance(operand, Neg):
            return operand.a
        return Neg(operand, operand.type)

    def visit_BinaryOp(self, node: ast.BinaryOp) -> Any:
        op = node.op
        if op in ("AND", "OR"):
            # A chain of one operator is flattened with a loop, not by recursion:
            # a machine-written chain may have thousands of terms.
            cls = And if op == "AND" else Or
            items: list[Predicate] = []
            stack: list[ast.Node] = [node]
            while stack:
                n = stack.pop()
                if isinstance(n, ast.BinaryOp) and n.op == op:
                    stack.append(n.rhs)
                    stack.append(n.lhs)
                    continue
                p = self.predicate(n)
                items.extend(p.items if isinstance(p, cls) else [p])
            return cls(tuple(items))
        a = self.visit(node.lhs)
        b = self.visit(node.rhs)
        if isinstance(a, _Range) or isinstance(b, _Range):
            raise self.err(
                node,
                f"A range like {node.rhs if isinstance(b, _Range) else node.lhs} only works with IN: write x IN (1..10).",
            )
        if op in ("=", "!=") and (isinstance(b, _Null) or isinstance(a, _Null)):
            other_node, other = (node.lhs, a) if isinstance(b, _Null) else (node.rhs, b)
            if isinstance(other, _Null):
                raise self.err(node, "Comparing NULL with NULL is always unknown.")
            col = self.column(other_node, other)
            return IsNull(col) if op == "=" else Not(IsNull(col))
        if op in ("=", "!=", "<", "<=", ">", ">="):
            ca = self.column(node.lhs, a)
            cb = self.column(node.rhs, b)
            sql_op = "==" if op == "=" else op
            if "timespan" in (ca.type, cb.type):
                # As daf_butler: timespans only compare with OVERLAPS.
                raise self.err(
                    node,
                    f"Invalid column type timespan for operator {op!r}: compare timespans with OVERLAPS, "
                    "or compare their bounds (visit.timespan.begin < T'…').",
                )
            if not _compatible(ca.type, cb.type):
                raise self.err(
                    node,
                    f"Column types for comparison {node} do not agree ({ca.type}, {cb.type})."
                    + _type_hint(ca, cb),
                )
            if ca.type in ("region",) or cb.type in ("region",):
                raise self.err(node, "Regions compare with OVERLAPS only.")
            # Dataset IDs order as their 16 bytes (hex text on SQLite, uuid on PostgreSQL: the same order),
            # which is what a keyset page boundary on dataset_id needs.
            return Compare(sql_op, ca, cb)
        if op == "OVERLAPS":
            ca = self.column(node.lhs, a)
            cb = self.column(node.rhs, b)
            types = {ca.type, cb.type}
            if types == {"region"} or types == {"timespan"} or types == {"timespan", "datetime"}:
                if isinstance(ca, DimField) and isinstance(cb, DimField) and types == {"timespan"}:
                    fa = self.ctx.universe[ca.element].temporal
                    if fa is not None and fa == self.ctx.universe[cb.element].temporal:
                        raise self.err(
                            node, f"Temporal join between {ca.element} and {cb.element} is not necessary."
                        )
                return Overlaps(ca, cb)
            raise self.err(
                node,
                f"OVERLAPS compares two regions or two timespans (or a timespan and a time), "
                f"not {ca.type} and {cb.type}.",
            )
        if op in ("+", "-", "*", "/", "%"):
            ca = self.column(node.lhs, a)
            cb = self.column(node.rhs, b)
            if ca.type not in _NUMERIC or cb.type not in _NUMERIC:
                raise self.err(node, f"Arithmetic {op!r} needs numbers, not {ca.type} and {cb.type}.")
            if ca.type != cb.type:
                # As in daf_butler: no silent int/float mixing in arithmetic.
                raise self.err(
                    node,
                    f"Column types for operator {op!r} do not agree ({ca.type}, {cb.type}); "
                    "write float literals with a decimal point (2.0, not 2).",
                )
            if op == "%" and ca.type != "int":
                # PostgreSQL has no % for floating point; SQLite would truncate silently.
                raise self.err(node, f"'%' needs integers, and {node.lhs} and {node.rhs} are {ca.type}.")
            if op in ("/", "%") and isinstance(cb, Lit) and cb.value == 0:
                raise self.err(node.rhs, f"Division by zero in {_short(str(node), 60)}.")
            if isinstance(ca, Lit) and isinstance(cb, Lit):
                return self.checked(node, _fold(op, ca, cb), f"The value of {_short(str(node), 60)}")
            return Arith(op, ca, cb, ca.type)
        raise self.err(node, f"Unknown operator {op!r}.")

    def visit_IsIn(self, node: ast.IsIn) -> Predicate:
        lhs = self.column(node.lhs, self.visit(node.lhs))
        literals: list[Lit] = []
        preds: list[Predicate] = []
        for item in node.values:
            r = self.visit(item)
            if isinstance(r, _Range):
                if lhs.type != "int":
                    raise self.err(item, f"A range needs an integer column, and {node.lhs} is {lhs.type}.")
                rn = r.node
                preds.append(InRange(lhs, rn.start, rn.stop, rn.stride or 1))
            elif isinstance(r, _Seq):
                for v in r.values:
                    self._check_member(item, lhs, v)
                literals.extend(r.values)
            elif isinstance(r, _Null):
                preds.append(IsNull(lhs))
            elif isinstance(r, Lit):
                self._check_member(item, lhs, r)
                literals.append(r)
            else:
                raise self.err(item, f"IN lists hold literals, ranges and bind names; {item} is a column.")
        if literals:
            preds.insert(0, InValues(lhs, tuple(literals)))
        result: Predicate
        if not preds:
            result = Const(False)
        elif len(preds) == 1:
            result = preds[0]
        else:
            result = Or(tuple(preds))
        return Not(result) if node.not_in else result

    def _check_member(self, item: ast.Node, lhs: ColumnExpr, v: Lit) -> None:
        if not _compatible(lhs.type, v.type):
            raise self.err(
                item,
                f"{v.value!r} ({v.type}) cannot be compared with {lhs} ({lhs.type})." + _type_hint(lhs, v),
            )

    def visit_TupleNode(self, node: ast.TupleNode) -> Lit:
        bounds: list[int | None] = []
        for item in node.items:
            r = self.visit(item)
            if isinstance(r, _Null):
                bounds.append(None)
            elif isinstance(r, Lit) and r.type == "datetime":
                bounds.append(r.value)
            else:
                raise self.err(
                    item,
                    f"Invalid item {item} in time range {node}: use T'…' times or NULL "
                    "(time strings need the T prefix).",
                )
        return Lit(Timespan(bounds[0], bounds[1]), "timespan")

    # --- functions ---------------------------------------------------------------------------------

    def _number(self, node: ast.Node, what: str, low: float = -math.inf, high: float = math.inf) -> float:
        """A finite literal (or bound) number in ``[low, high]``, for the arguments of region functions.

        Checked here because lsst.sphgeom answers an out-of-range latitude
        with a bare ``ValueError`` and NaN or infinity with meaningless regions.
        """
        r = self.visit(node)
        if not (isinstance(r, Lit) and r.type in _NUMERIC):
            raise self.err(node, f"{what} must be a literal number or a bound number, not {node}.")
        value = float(r.value)
        if not math.isfinite(value):
            raise self.err(node, f"{what} must be a finite number of degrees, not {value}.")
        if not low <= value <= high:
            raise self.err(node, f"{what} is {r.value} degrees, outside [{low:g}, {high:g}].")
        return value

    def _lonlat(self, ra: ast.Node, dec: ast.Node, what: str) -> lsst.sphgeom.LonLat:
        return lsst.sphgeom.LonLat.fromDegrees(
            self._number(ra, f"{what} ra"), self._number(dec, f"{what} dec", -90.0, 90.0)
        )

    def visit_PointNode(self, node: ast.PointNode) -> Lit:
        point = self._lonlat(node.ra, node.dec, "POINT")
        return Lit(lsst.sphgeom.Circle(lsst.sphgeom.UnitVector3d(point)), "region")

    def visit_CircleNode(self, node: ast.CircleNode) -> Lit:
        center = lsst.sphgeom.UnitVector3d(self._lonlat(node.ra, node.dec, "CIRCLE"))
        radius = self._number(node.radius, "CIRCLE radius", 0.0, 180.0)
        # daf_butler (through version 30) builds this circle with an opening
        # angle of twice the given value; porter does the same so that the
        # same query gives the same answer in both systems.
        return Lit(lsst.sphgeom.Circle(center, lsst.sphgeom.Angle.fromDegrees(radius * 2)), "region")

    def visit_BoxNode(self, node: ast.BoxNode) -> Lit:
        center = self._lonlat(node.ra, node.dec, "BOX")
        w = self._number(node.width, "BOX width", 0.0, 360.0)
        h = self._number(node.height, "BOX height", 0.0, 180.0)
        box = lsst.sphgeom.Box(
            center, lsst.sphgeom.Angle.fromDegrees(w / 2), lsst.sphgeom.Angle.fromDegrees(h / 2)
        )
        return Lit(box, "region")

    def visit_PolygonNode(self, node: ast.PolygonNode) -> Lit:
        vertices = [lsst.sphgeom.UnitVector3d(self._lonlat(a, b, "POLYGON")) for a, b in node.vertices]
        try:
            return Lit(lsst.sphgeom.ConvexPolygon(vertices), "region")
        except (ValueError, RuntimeError) as exc:
            raise self.err(
                node, f"Invalid POLYGON: {exc}; give at least three distinct vertices of a convex polygon."
            ) from None

    def visit_RegionNode(self, node: ast.RegionNode) -> Lit:
        r = self.visit(node.pos_text)
        if not (isinstance(r, Lit) and r.type == "string"):
            raise self.err(node, "REGION takes an IVOA POS string, e.g. REGION('CIRCLE 10 20 0.5').")
        try:
            region = lsst.sphgeom.Region.from_ivoa_pos(r.value)
        except (ValueError, RuntimeError) as exc:
            raise self.err(
                node, f"Invalid IVOA POS string {_short(r.value)}: {exc}; e.g. REGION('CIRCLE 10 20 0.5')."
            ) from None
        problem = region_problem(region, f"REGION({_short(r.value)})")
        if problem:
            raise self.err(node, problem)
        return Lit(region, "region")

    def visit_GlobNode(self, node: ast.GlobNode) -> Glob:
        col = self.column(node.expression, self.visit(node.expression))
        if col.type != "string" or isinstance(col, Lit):
            raise self.err(node, f"GLOB needs a string column first, and {node.expression} is {col.type}.")
        pat = self.visit(node.pattern)
        if not (isinstance(pat, Lit) and pat.type == "string"):
            raise self.err(
                node, "GLOB needs a string pattern second, e.g. GLOB(detector.full_name, 'R22_*')."
            )
        return Glob(col, pat.value)

    def visit_FunctionCall(self, node: ast.FunctionCall) -> Any:
        raise self.err(
            node,
            f"Unknown function {node.name}(); known functions are POINT, CIRCLE, BOX, POLYGON, REGION, GLOB, UUID."
            + did_you_mean(
                node.name.upper(), ["POINT", "CIRCLE", "BOX", "POLYGON", "REGION", "GLOB", "UUID"]
            ),
        )


_PREDICATE_TYPES = (Const, Compare, InValues, InRange, IsNull, Glob, Overlaps, BoolColumn, And, Or, Not)


MAX_RESOLVED_DEPTH = 24
"""How deeply a resolved predicate may nest (AND inside OR inside AND …, NOT, signs, arithmetic).

The SQL the predicate becomes nests as deeply, and SQLite's parser has a
stack of 100 entries: a query whose predicate nests 33 levels already
overflowed it ("parser stack overflow") in the deepest statement porter
builds (coverage's anti-join), so 24 leaves room for callers that wrap
porter's statements in a few more subqueries.  Nesting that resolves away
(parentheses, chains of one operator, NOT NOT) does not count; the parser's
own `~porter.registry.expr.MAX_DEPTH` bounds that.
"""


def resolve_predicate(ctx: ResolveContext, tree: ast.Node | None) -> Predicate:
    """Resolve a parsed ``where`` tree (or `None`) into a predicate.

    Raises
    ------
    InvalidQueryError
        For unknown names, mismatched types, values no database can hold,
        and predicates nested deeper than `MAX_RESOLVED_DEPTH`.
    """
    if tree is None:
        return Const(True)
    pred = _Resolver(ctx).predicate(tree)
    depth = nesting_depth(pred)
    if depth > MAX_RESOLVED_DEPTH:
        raise ctx.error(
            tree,
            f"Expression nested deeper than {MAX_RESOLVED_DEPTH} levels ({depth} levels of alternating "
            "AND/OR, NOT, signs and arithmetic), more than databases evaluate; simplify it, e.g. "
            "write a list of alternatives as one IN (…) or distribute AND over OR.",
        )
    return pred


def nesting_depth(p: Predicate | ColumnExpr) -> int:
    """Levels of And, Or, Not, arithmetic and negation in a predicate: how deeply its SQL nests.

    Iterative, so it can measure any predicate without recursing.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(p, 0)]
    while stack:
        x, depth = stack.pop()
        if isinstance(x, And | Or | Not | Arith | Neg):
            depth += 1
            deepest = max(deepest, depth)
        if isinstance(x, And | Or):
            stack.extend((i, depth) for i in x.items)
        elif isinstance(x, Not):
            stack.append((x.item, depth))
        elif isinstance(x, Compare | Overlaps | Arith):
            stack.extend(((x.a, depth), (x.b, depth)))
        elif isinstance(x, Bound):
            stack.append((x.operand, depth))
        elif isinstance(x, Neg | InValues | InRange | IsNull | Glob | BoolColumn):
            stack.append((x.a, depth))
    return deepest


def resolve_order_by(ctx: ResolveContext, term: str) -> tuple[ColumnExpr, bool]:
    """Resolve one ``order_by`` term; a leading ``-`` means descending."""
    text = term.strip()
    descending = text.startswith("-")
    name = text[1:].strip() if descending else text
    if not name:
        raise InvalidQueryError(f"Empty order_by term {term!r}.")
    ref = resolve_identifier(ctx, name)
    if ref.type in ("region",):
        raise InvalidQueryError(f"Cannot order by {name!r}: regions have no order.")
    return ref, descending
