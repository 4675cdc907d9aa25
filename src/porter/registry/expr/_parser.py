"""Recursive-descent parser of ``where`` expressions.

Grammar (lowest precedence first), as in daf_butler::

    expr         := and_expr (OR and_expr)*
    and_expr     := not_expr (AND not_expr)*
    not_expr     := NOT not_expr | comparison
    comparison   := predicate [(= | != | < | <= | > | >= | OVERLAPS) predicate]
    predicate    := bit_expr [[NOT] IN '(' item (',' item)* ')']
    bit_expr     := term ((+ | -) term)*
    term         := unary ((* | / | %) unary)*
    unary        := (+ | -) unary | primary
    primary      := literal | identifier | :bind | function '(' args ')'
                  | '(' expr ')' | '(' expr ',' expr ')'

Comparisons do not chain (``a = b = c`` is an error, as in SQL).

Limits (each an `ExpressionSyntaxError` that says how to simplify):

* nesting (parentheses, ``NOT``, signs, function calls and arithmetic
  chains) is at most `MAX_DEPTH` levels deep.  This parser, the resolver and
  SQLAlchemy's compiler all recurse over the tree, so a deeper expression
  (10,000 parentheses fit in 20 KB) would otherwise end in a
  ``RecursionError``.  How deeply the *SQL* may nest is a separate, smaller
  limit that the resolver applies (`porter.registry.queries._resolve`), as
  parentheses, double NOTs and chains of one operator resolve away;
* ``AND``/``OR`` chains are not nesting: ``a AND b AND c …`` is built as a
  balanced tree (depth log2 of its length), so long machine-written chains
  work however long they are.

astropy (~0.2 s) is imported when the first time literal is parsed
(`parse_time_literal`), not with the parser: most expressions name no time.
"""

from __future__ import annotations

import re
import uuid
import warnings
from typing import TYPE_CHECKING

from ...errors import ExpressionSyntaxError, InvalidQueryError
from ._ast import (
    BinaryOp,
    BindName,
    BoxNode,
    CircleNode,
    FunctionCall,
    GlobNode,
    Identifier,
    IsIn,
    Node,
    NumericLiteral,
    Parens,
    PointNode,
    PolygonNode,
    RangeLiteral,
    RegionNode,
    StringLiteral,
    TimeLiteral,
    TupleNode,
    UnaryOp,
    UuidLiteral,
)
from ._lexer import Token, tokenize

if TYPE_CHECKING:
    import astropy.time

__all__ = ["MAX_DEPTH", "parse_expression", "parse_time_literal"]

MAX_DEPTH = 64
"""How deeply an expression may nest.

Each level costs about ten Python frames in this recursive-descent parser
(``expr`` → … → ``primary`` → ``expr``) and a few more in the resolver and in
SQLAlchemy's compiler, so 64 levels stay well inside Python's default limit
of 1000 frames even when called from deep inside an application (every
stage was tested at this depth), while being far more than any hand-written
query needs.
"""

_COMPARISONS = {"=", "!=", "<", "<=", ">", ">="}

_TIME_RE = re.compile(
    r"""^((?P<format>\w+)/)?
    (?P<value>
        (?P<number>-?(\d+(\.\d*)|(\.\d+)))
        |(?P<iso>\d+-\d+-\d+([ T]\d+:\d+(:\d+([.]\d*)?)?)?)
        |(?P<fits>[+]\d+-\d+-\d+(T\d+:\d+:\d+([.]\d*)?)?)
        |(?P<yday>\d+:\d+(:\d+:\d+(:\d+([.]\d*)?)?)?)
    )
    (/(?P<scale>\w+))?$""",
    re.VERBOSE | re.IGNORECASE,
)


def parse_time_literal(text: str) -> astropy.time.Time:
    """Interpret the inside of ``T'…'``.

    ``[format/]value[/scale]``: ISO, ISOT and FITS strings default to UTC,
    bare numbers are MJD in TAI, as daf_butler reads them.
    """
    import astropy.time
    import astropy.utils.exceptions
    import erfa

    text = text.replace("+00:00", "")
    m = _TIME_RE.match(text)
    if m is None:
        raise ValueError(
            f"time {text!r} is not in a known format; write e.g. T'2021-09-09 03:00:00', "
            "T'2021-09-09T03:00:00/tai' or T'59466.125' (MJD)"
        )
    value: str | float = m.group("value")
    fmt, scale = m.group("format"), m.group("scale")
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in astropy.time.Time.FORMATS:
            raise ValueError(f"time {text!r} names unknown format {fmt!r}")
    if scale is not None:
        scale = scale.lower()
        if scale not in astropy.time.Time.SCALES:
            raise ValueError(
                f"time {text!r} names unknown scale {scale!r}; use one of {astropy.time.Time.SCALES}"
            )
    if m.group("number") is not None:
        value = float(value)
    if fmt is None:
        if m.group("number") is not None:
            fmt = "mjd"
        elif m.group("iso") is not None:
            fmt = "isot" if "t" in str(value).lower() else "iso"
        elif m.group("fits") is not None:
            fmt = "fits"
        else:
            fmt = "yday"
    if scale is None:
        scale = (
            "utc" if fmt in ("iso", "isot", "fits", "yday", "unix") else ("tt" if fmt == "cxcsec" else "tai")
        )
    if scale == "local":
        raise ValueError(
            f"time {text!r} is in scale 'local', a free-running clock with no relation to the TAI times "
            "the repository holds; use utc or tai"
        )
    with warnings.catch_warnings():
        # Dates far from the leap-second table ("dubious year") still parse; a
        # query naming T'0001-01-01' means "since ever", not a mistake to warn about.
        warnings.simplefilter("ignore", astropy.utils.exceptions.AstropyWarning)
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        try:
            time = astropy.time.Time(value, format=fmt, scale=scale)
        except Exception:
            raise ValueError(f"time {text!r} does not match format {fmt!r}") from None
        if scale in ("ut1",):
            # UT1 needs Earth-orientation tables: never download them in the middle of a query (a
            # hang without network), and answer a date outside the bundled ones with an error.
            from astropy.utils import iers

            try:
                with iers.conf.set_temp("auto_download", False):
                    time.tai  # noqa: B018 -- the conversion is the check
            except Exception as exc:
                raise ValueError(
                    f"time {text!r} cannot be converted to TAI ({type(exc).__name__}); use utc or tai"
                ) from None
        return time


class _Parser:
    def __init__(self, expression: str):
        self.expression = expression
        self.tokens = tokenize(expression)
        self.i = 0
        self.depth = 0
        """Current nesting level (see `MAX_DEPTH`)."""

    # --- token helpers -----------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.value in ops

    def error(self, reason: str, token: Token | None = None) -> ExpressionSyntaxError:
        token = token or self.tok
        return ExpressionSyntaxError(self.expression, token.pos, reason)

    def unexpected(self, expected: str) -> ExpressionSyntaxError:
        t = self.tok
        if t.kind == "EOF":
            return self.error(f"expression ended early; expected {expected}")
        return self.error(f"unexpected {t.text!r}; expected {expected}")

    def expect_op(self, op: str, expected: str) -> Token:
        if not self.at_op(op):
            raise self.unexpected(expected)
        return self.advance()

    def enter(self, token: Token, levels: int = 1) -> None:
        """Go ``levels`` deeper at ``token``; refuse to go past `MAX_DEPTH`."""
        self.depth += levels
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"expression nested deeper than {MAX_DEPTH} levels (parentheses, NOT, signs, function "
                "calls, arithmetic); simplify it, e.g. remove redundant parentheses or double NOTs, or "
                "use IN (…) lists instead of long arithmetic",
                token,
            )

    def leave(self, levels: int = 1) -> None:
        self.depth -= levels

    # --- grammar -----------------------------------------------------------------------------

    def parse(self) -> Node | None:
        if self.tok.kind == "EOF":
            return None
        node = self.expr()
        if self.tok.kind != "EOF":
            if self.tok.kind in ("SIMPLE_ID", "QUALIFIED_ID", "NUMBER", "STRING"):
                raise self.error(f"unexpected {self.tok.text!r}; did you forget AND or OR before it?")
            if self.at_op(")"):
                raise self.error("unbalanced ')': no '(' opens it")
            raise self.unexpected("AND, OR or the end of the expression")
        return node

    def expr(self) -> Node:
        operands = [self.and_expr()]
        positions: list[int] = []
        while self.tok.kind == "OR":
            positions.append(self.advance().pos)
            operands.append(self.and_expr())
        return _chain("OR", operands, positions)

    def and_expr(self) -> Node:
        operands = [self.not_expr()]
        positions: list[int] = []
        while self.tok.kind == "AND":
            positions.append(self.advance().pos)
            operands.append(self.not_expr())
        return _chain("AND", operands, positions)

    def not_expr(self) -> Node:
        if self.tok.kind == "NOT":
            t = self.advance()
            self.enter(t)
            node = UnaryOp("NOT", self.not_expr(), pos=t.pos)
            self.leave()
            return node
        return self.comparison()

    def comparison(self) -> Node:
        lhs = self.predicate()
        if (self.tok.kind == "OP" and self.tok.value in _COMPARISONS) or self.tok.kind == "OVERLAPS":
            t = self.advance()
            rhs = self.predicate()
            node: Node = BinaryOp(str(t.value), lhs, rhs, pos=t.pos)
            if (self.tok.kind == "OP" and self.tok.value in _COMPARISONS) or self.tok.kind == "OVERLAPS":
                raise self.error("comparisons cannot be chained; combine them with AND")
            return node
        return lhs

    def predicate(self) -> Node:
        lhs = self.bit_expr()
        not_in = False
        start = self.tok
        if self.tok.kind == "NOT" and self.tokens[self.i + 1].kind == "IN":
            self.advance()
            not_in = True
        if self.tok.kind == "IN":
            self.advance()
            self.expect_op("(", "'(' after IN, as in: visit IN (1, 2, 3)")
            items = [self.in_item()]
            while self.at_op(","):
                self.advance()
                items.append(self.in_item())
            self.expect_op(")", "',' or ')' in the IN list")
            return IsIn(lhs, tuple(items), not_in, pos=start.pos)
        return lhs

    def in_item(self) -> Node:
        t = self.tok
        if (
            t.kind == "SIMPLE_ID"
            and self.tokens[self.i + 1].kind == "OP"
            and self.tokens[self.i + 1].value == "("
        ):
            return self.function_call()
        if t.kind == "SIMPLE_ID":
            self.advance()
            return Identifier(str(t.value), pos=t.pos)
        if t.kind == "BIND":
            self.advance()
            return BindName(str(t.value), pos=t.pos)
        if self.at_op("-", "+") and self.tokens[self.i + 1].kind == "NUMBER":
            sign = self.advance()
            num = self.advance()
            text = num.text if sign.value == "+" else "-" + num.text
            return NumericLiteral(text, pos=sign.pos)
        lit = self.literal()
        if lit is None:
            raise self.unexpected("a literal, range (1..10) or :bind name in the IN list")
        return lit

    def bit_expr(self) -> Node:
        # Arithmetic is left-associative and not (in general) associative, so
        # a chain stays a left-deep tree: each operator is one more level.
        node = self.term()
        levels = 0
        while self.at_op("+", "-"):
            t = self.advance()
            self.enter(t)
            levels += 1
            node = BinaryOp(str(t.value), node, self.term(), pos=t.pos)
        self.leave(levels)
        return node

    def term(self) -> Node:
        node = self.unary()
        levels = 0
        while self.at_op("*", "/", "%"):
            t = self.advance()
            self.enter(t)
            levels += 1
            node = BinaryOp(str(t.value), node, self.unary(), pos=t.pos)
        self.leave(levels)
        return node

    def unary(self) -> Node:
        if self.at_op("-", "+"):
            t = self.advance()
            if self.tok.kind == "NUMBER":
                num = self.advance()
                text = num.text if t.value == "+" else "-" + num.text
                return NumericLiteral(text, pos=t.pos)
            self.enter(t)
            node = UnaryOp(str(t.value), self.unary(), pos=t.pos)
            self.leave()
            return node
        return self.primary()

    def literal(self) -> Node | None:
        t = self.tok
        if t.kind == "NUMBER":
            self.advance()
            return NumericLiteral(t.text, pos=t.pos)
        if t.kind == "STRING":
            self.advance()
            return StringLiteral(str(t.value), pos=t.pos)
        if t.kind == "TIME":
            self.advance()
            try:
                value = parse_time_literal(str(t.value))
            except ValueError as exc:
                raise self.error(str(exc), t) from None
            return TimeLiteral(str(t.value), value, pos=t.pos)
        if t.kind == "RANGE":
            self.advance()
            assert isinstance(t.value, tuple)
            start, stop, stride = t.value
            return RangeLiteral(int(start), int(stop), stride, pos=t.pos)
        return None

    def primary(self) -> Node:
        lit = self.literal()
        if lit is not None:
            return lit
        t = self.tok
        if t.kind == "SIMPLE_ID":
            if self.tokens[self.i + 1].kind == "OP" and self.tokens[self.i + 1].value == "(":
                return self.function_call()
            self.advance()
            return Identifier(str(t.value), pos=t.pos)
        if t.kind == "QUALIFIED_ID":
            self.advance()
            return Identifier(str(t.value), pos=t.pos)
        if t.kind == "BIND":
            self.advance()
            return BindName(str(t.value), pos=t.pos)
        if self.at_op("("):
            self.advance()
            if self.at_op(")"):
                raise self.error("empty parentheses")
            self.enter(t)
            first = self.expr()
            if self.at_op(","):
                self.advance()
                second = self.expr()
                if self.at_op(","):
                    raise self.error("a time range has two items: (begin, end)")
                self.expect_op(")", "')' closing the time range")
                self.leave()
                return TupleNode((first, second), pos=t.pos)
            self.expect_op(")", "')'")
            self.leave()
            return Parens(first, pos=t.pos)
        if t.kind in ("AND", "OR"):
            raise self.error(f"{t.kind} needs an expression on both sides")
        if t.kind == "IN":
            raise self.error("IN needs a column before it, as in: detector IN (1, 2)")
        raise self.unexpected("a column name, literal or '('")

    def function_call(self) -> Node:
        name_tok = self.advance()
        name = str(name_tok.value)
        self.expect_op("(", "'('")
        self.enter(name_tok)
        args: list[Node] = []
        if not self.at_op(")"):
            args.append(self.expr())
            while self.at_op(","):
                self.advance()
                args.append(self.expr())
        self.expect_op(")", f"',' or ')' in the arguments of {name}()")
        self.leave()
        try:
            return _make_function(name, args, name_tok.pos)
        except ValueError as exc:
            raise self.error(str(exc), name_tok) from None


def _chain(op: str, operands: list[Node], positions: list[int]) -> Node:
    """``operands`` joined by ``op`` (AND or OR) as a balanced tree.

    Both are associative, so the shape does not change the meaning; a
    balanced tree keeps a chain of thousands of terms a few dozen levels deep
    for everything that recurses over it.  The split puts the larger half on
    the left, so up to three operands give the same left-deep tree as a
    left-associative grammar.  ``positions[i]`` is where the operator between
    ``operands[i]`` and ``operands[i + 1]`` is.
    """
    if len(operands) == 1:
        return operands[0]
    mid = (len(operands) + 1) // 2
    return BinaryOp(
        op,
        _chain(op, operands[:mid], positions[: mid - 1]),
        _chain(op, operands[mid:], positions[mid:]),
        pos=positions[mid - 1],
    )


def _strip(node: Node) -> Node:
    while isinstance(node, Parens):
        node = node.expr
    return node


def _make_function(name: str, args: list[Node], pos: int) -> Node:
    upper = name.upper()
    if upper == "POINT":
        if len(args) != 2:
            raise ValueError("POINT takes two arguments: POINT(ra, dec) in degrees")
        return PointNode(args[0], args[1], pos=pos)
    if upper == "CIRCLE":
        if len(args) != 3:
            raise ValueError("CIRCLE takes three arguments: CIRCLE(ra, dec, radius) in degrees")
        return CircleNode(args[0], args[1], args[2], pos=pos)
    if upper == "BOX":
        if len(args) != 4:
            raise ValueError("BOX takes four arguments: BOX(ra, dec, width, height) in degrees")
        return BoxNode(args[0], args[1], args[2], args[3], pos=pos)
    if upper == "POLYGON":
        if len(args) % 2 != 0 or len(args) < 6:
            raise ValueError("POLYGON takes at least three (ra, dec) vertex pairs")
        return PolygonNode(tuple(zip(args[::2], args[1::2])), pos=pos)
    if upper == "REGION":
        if len(args) != 1:
            raise ValueError("REGION takes one argument: an IVOA POS string such as 'CIRCLE 10 20 0.5'")
        return RegionNode(args[0], pos=pos)
    if upper == "GLOB":
        if len(args) != 2:
            raise ValueError("GLOB takes two arguments: GLOB(column, 'pattern')")
        expression, pattern = (_strip(a) for a in args)
        if not isinstance(expression, Identifier):
            raise ValueError("the first argument of GLOB must be a column name")
        if not isinstance(pattern, StringLiteral | BindName):
            raise ValueError("the second argument of GLOB must be a quoted pattern or a :bind name")
        return GlobNode(expression, pattern, pos=pos)
    if upper == "UUID":
        if len(args) != 1 or not isinstance(_strip(args[0]), StringLiteral):
            raise ValueError("UUID takes one quoted string: UUID('e15ab039-bc8b-4135-87c5-90902a7c0b22')")
        text = _strip(args[0]).value  # type: ignore[attr-defined]
        try:
            return UuidLiteral(uuid.UUID(text), pos=pos)
        except ValueError:
            raise ValueError(f"{text!r} is not a valid UUID") from None
    return FunctionCall(name, tuple(args), pos=pos)


def parse_expression(expression: str) -> Node | None:
    """Parse a ``where`` expression; `None` for an empty one.

    Raises
    ------
    ExpressionSyntaxError
        With the position of the error and a caret under it; also for
        expressions nested deeper than `MAX_DEPTH` levels.
    InvalidQueryError
        If ``expression`` is not a string.
    """
    if not isinstance(expression, str):
        raise InvalidQueryError(
            f"A 'where' expression must be a string, not {type(expression).__name__} ({expression!r:.80})."
        )
    return _Parser(expression).parse()
