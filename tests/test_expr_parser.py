"""The `where` parser: structure, precedence, error positions, and round trips."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from porter.errors import ExpressionSyntaxError
from porter.registry.expr import (
    BinaryOp,
    BindName,
    CircleNode,
    GlobNode,
    Identifier,
    IsIn,
    NumericLiteral,
    Parens,
    PointNode,
    RangeLiteral,
    StringLiteral,
    TimeLiteral,
    TupleNode,
    UnaryOp,
    UuidLiteral,
    parse_expression,
    tokenize,
)


def test_empty_expression_is_none() -> None:
    assert parse_expression("") is None
    assert parse_expression("   \n ") is None


def test_precedence_not_and_or() -> None:
    tree = parse_expression("NOT a = 1 AND b = 2 OR c = 3")
    assert isinstance(tree, BinaryOp) and tree.op == "OR"
    left = tree.lhs
    assert isinstance(left, BinaryOp) and left.op == "AND"
    assert isinstance(left.lhs, UnaryOp) and left.lhs.op == "NOT"
    assert left.lhs.operand == BinaryOp("=", Identifier("a"), NumericLiteral("1"))


def test_arithmetic_precedence() -> None:
    tree = parse_expression("a + b * c > 4")
    assert tree == BinaryOp(
        ">",
        BinaryOp("+", Identifier("a"), BinaryOp("*", Identifier("b"), Identifier("c"))),
        NumericLiteral("4"),
    )


def test_keywords_case_insensitive() -> None:
    assert parse_expression("a = 1 and not b = 2 or c in (1)") == parse_expression(
        "a = 1 AND NOT b = 2 OR c IN (1)"
    )


def test_literals() -> None:
    tree = parse_expression(
        "x IN (1, -2, 3.5, 'r', :b, y, 1..10, 2..20:3, UUID('e15ab039-bc8b-4135-87c5-90902a7c0b22'))"
    )
    assert isinstance(tree, IsIn)
    assert tree.values == (
        NumericLiteral("1"),
        NumericLiteral("-2"),
        NumericLiteral("3.5"),
        StringLiteral("r"),
        BindName("b"),
        Identifier("y"),
        RangeLiteral(1, 10, None),
        RangeLiteral(2, 20, 3),
        UuidLiteral(uuid.UUID("e15ab039-bc8b-4135-87c5-90902a7c0b22")),
    )


def test_not_in() -> None:
    tree = parse_expression("detector NOT IN (1..5)")
    assert tree == IsIn(Identifier("detector"), (RangeLiteral(1, 5),), not_in=True)


def test_qualified_identifiers_and_bounds() -> None:
    assert parse_expression("visit.timespan.begin < T'2020-01-01'").lhs == Identifier("visit.timespan.begin")  # type: ignore[union-attr]


def test_time_literals_formats_and_scales() -> None:
    t = parse_expression("x = T'2021-09-09 03:00:00'").rhs  # type: ignore[union-attr]
    assert isinstance(t, TimeLiteral) and t.value.scale == "utc"
    t = parse_expression("x = T'2021-09-09T03:00:00/tai'").rhs  # type: ignore[union-attr]
    assert t.value.scale == "tai"
    t = parse_expression("x = T'59466.125'").rhs  # type: ignore[union-attr]
    assert t.value.format == "mjd" and t.value.scale == "tai"
    t = parse_expression("x = T'mjd/59466.125/utc'").rhs  # type: ignore[union-attr]
    assert t.value.scale == "utc"


def test_time_range_tuple() -> None:
    tree = parse_expression("visit.timespan OVERLAPS (T'2021-01-01', NULL)")
    assert isinstance(tree, BinaryOp) and tree.op == "OVERLAPS"
    assert isinstance(tree.rhs, TupleNode)


def test_functions() -> None:
    assert isinstance(parse_expression("r OVERLAPS POINT(1, 2)").rhs, PointNode)  # type: ignore[union-attr]
    assert isinstance(parse_expression("r OVERLAPS circle(1, -2, 0.5)").rhs, CircleNode)  # type: ignore[union-attr]
    assert isinstance(parse_expression("GLOB(detector.full_name, 'R22_*')"), GlobNode)


@pytest.mark.parametrize(
    ("expression", "position", "fragment"),
    [
        ("detector = = 1", 11, "unexpected '='"),
        ("a AND", 5, "ended early"),
        ("(a = 1", 6, "ended early"),
        ("a = 1)", 5, "unbalanced ')'"),
        ("a = 'x", 4, "unterminated string"),
        ('a = "x"', 4, "single quotes"),
        ("a = b = c", 6, "cannot be chained"),
        ("visit = 1 detector = 2", 10, "forget AND or OR"),
        ("x = T'yesterday'", 4, "not in a known format"),
        ("a IN 1", 5, "'(' after IN"),
        ("CIRCLE(1, 2) OVERLAPS x", 0, "three arguments"),
        ("UUID('nope') = dataset_id", 0, "not a valid UUID"),
        ("a = 1 AND ", 10, "ended early"),
        ("a = 1 # comment", 6, "unexpected character '#'"),
        ("(a, b, c) OVERLAPS x", 5, "two items"),
    ],
)
def test_syntax_errors_point_at_the_problem(expression: str, position: int, fragment: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse_expression(expression)
    err = info.value
    assert err.position == position, str(err)
    assert fragment in str(err)
    lines = str(err).splitlines()
    caret_line = lines[-1]
    assert caret_line.index("^") - 4 == position  # the caret sits under the offending character


def test_multiline_caret_uses_the_right_line() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse_expression("visit = 1\nAND detector = = 2")
    lines = str(info.value).splitlines()
    assert lines[-2].strip() == "AND detector = = 2"
    assert lines[-1].index("^") - 4 == len("AND detector = ")


def test_tokenizer_ranges_before_numbers() -> None:
    kinds = [t.kind for t in tokenize("x IN (1..5, 1.5, -3..-1:2)")]
    assert kinds == ["SIMPLE_ID", "IN", "OP", "RANGE", "OP", "NUMBER", "OP", "RANGE", "OP", "EOF"]


# --- property-based: random expressions round-trip through str() --------------------------------

identifiers = st.sampled_from(
    [
        "visit",
        "detector",
        "band",
        "visit.exposure_time",
        "detector.raft",
        "exposure.obs_id",
        "instrument",
        "tract",
    ]
)
numbers = st.one_of(
    st.integers(min_value=0, max_value=10**9).map(str),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False).map(
        lambda f: repr(float(f))
    ),
)
strings = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789_-/ .*", max_size=12).map(
    lambda s: f"'{s}'"
)
binds = st.sampled_from([":a", ":visits", ":b2"])
ranges = st.tuples(st.integers(-50, 50), st.integers(-50, 50), st.one_of(st.none(), st.integers(1, 9))).map(
    lambda t: f"{t[0]}..{t[1]}" + (f":{t[2]}" if t[2] else "")
)
atoms = st.one_of(identifiers, numbers, strings, binds)


@st.composite
def values(draw: st.DrawFn, depth: int = 2) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(atoms)
    op = draw(st.sampled_from(["+", "-", "*", "/", "%"]))
    return f"({draw(values(depth - 1))} {op} {draw(values(depth - 1))})"


@st.composite
def predicates(draw: st.DrawFn, depth: int = 3) -> str:
    kind = draw(st.integers(0, 5 if depth > 0 else 2))
    if kind == 0:
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        return f"{draw(values())} {op} {draw(values())}"
    if kind == 1:
        items = draw(st.lists(st.one_of(numbers, strings, binds, ranges), min_size=1, max_size=4))
        neg = draw(st.booleans())
        return f"{draw(identifiers)} {'NOT IN' if neg else 'IN'} ({', '.join(items)})"
    if kind == 2:
        return f"GLOB({draw(identifiers)}, {draw(strings)})"
    if kind == 3:
        return f"NOT {draw(predicates(depth - 1))}"
    if kind == 4:
        return f"({draw(predicates(depth - 1))})"
    joiner = draw(st.sampled_from(["AND", "OR"]))
    return f"{draw(predicates(depth - 1))} {joiner} {draw(predicates(depth - 1))}"


@settings(max_examples=300, deadline=None)
@given(predicates())
def test_round_trip_through_str(expression: str) -> None:
    tree = parse_expression(expression)
    assert tree is not None
    again = parse_expression(str(tree))
    assert again == tree


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_a_positioned_error(text: str) -> None:
    try:
        parse_expression(text)
    except ExpressionSyntaxError as exc:
        assert 0 <= exc.position <= len(text)
        assert "^" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=8))
def test_in_lists_keep_values(ints: list[int]) -> None:
    tree = parse_expression(f"visit IN ({', '.join(map(str, ints))})")
    assert isinstance(tree, IsIn)
    assert [v.value for v in tree.values] == ints  # type: ignore[attr-defined]


def test_parens_are_kept() -> None:
    tree = parse_expression("(a = 1 OR b = 2) AND c = 3")
    assert isinstance(tree, BinaryOp) and isinstance(tree.lhs, Parens)
