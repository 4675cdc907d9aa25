"""Fuzzing the query entry points: bad input gets a porter error, never a traceback, and changes nothing.

A repository is built from the real export files (base, datasets, spatial:
one instrument, detectors, visits with real sphgeom regions, a skymap with
tracts and patches, two runs of bias/flat datasets), plus a CALIBRATION and
a CHAINED collection over them.  Hypothesis then throws at every query entry
point (the butler's ``query_datasets`` / ``query_data_ids`` /
``query_dimension_records``, the registry's, and a registry coverage):

(a) random expressions from the ``where`` grammar over the real dimension and
    field names, with literals of every kind (ints up to and past 64 bits,
    strings with NUL and surrogates, times, UUIDs, ranges, binds, regions);
(b) mutations of valid expressions (characters inserted, deleted, swapped,
    truncated, random unicode, NUL bytes, keywords, huge numbers);
(c) deep nesting (up to 20,000 parentheses, NOTs, signs, function calls) and
    long AND/OR chains;
(d) inputs of about 100 KB;
(e) IN lists of thousands of values and ranges (strided, near the 64-bit
    ends, negated, as OR chains), whose answers are checked against Python,
    and NUL or lone surrogates anywhere, which the lexer must refuse where
    they are;

with ``bind=`` values and keyword data-ID constraints of wrong and extreme
types.  Each call must either succeed or raise a `porter.errors.PorterError`
with a message, and the database must be exactly as before: every table's
rows are fingerprinted before and after each example.

Both backends run; PostgreSQL with fewer examples.  No time bounds anywhere:
``deadline=None``, as CI is a busy 2-core machine.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import uuid
from collections.abc import Callable
from typing import Any

import astropy.time
import lsst.sphgeom
import numpy as np
import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RepoFactory, load
from porter import Butler
from porter.dimensions import Timespan
from porter.errors import ExpressionSyntaxError, InvalidQueryError, PorterError
from porter.registry.expr import MAX_DEPTH, parse_expression
from porter.registry.queries._resolve import MAX_RESOLVED_DEPTH
from porter.registry.queries._sql import MAX_RANGES

# --- the repository and its fingerprint ------------------------------------------------------------------

BIAS_G = "e15ab039-bc8b-4135-87c5-90902a7c0b22"
"""A real dataset ID from datasets.yaml (bias, detector 1, run imported_g)."""


@pytest.fixture
def butler(make_repo: RepoFactory) -> Butler:
    """The real export files, plus a CALIBRATION collection certifying the biases and a chain over all."""
    b = load(make_repo(), "base.yaml", "datasets.yaml", "spatial.yaml")
    b.collections.register("calib", "CALIBRATION")
    biases = b.query_datasets("bias", "imported_g")
    b.registry.certify("calib", biases, Timespan(None, astropy.time.Time("2021-09-09T03:01:30", scale="tai")))
    b.collections.redefine_chain("chain", ["imported_r", "calib", "imported_g"])
    return b


_TABLES: dict[tuple[int, str, str | None, str], sqlalchemy.Table] = {}


def fingerprint(butler: Butler) -> dict[str, str]:
    """A digest of every table's rows in the repository's database (its schema, on PostgreSQL).

    Tables are listed by inspecting the database itself, not porter's
    metadata, so a table porter does not know about (or one it created by
    mistake) counts too; each is reflected once.  It reads through the
    registry's own connection pool, so a connection left in a failed
    transaction would show up here as an error.
    """
    db = butler.registry.db
    out: dict[str, str] = {}
    with db.reading() as conn:
        for name in sorted(sqlalchemy.inspect(conn).get_table_names(schema=db.namespace)):
            key = (id(db), db.url, db.namespace, name)  # id() alone is reused once a Database is collected
            if key not in _TABLES:
                _TABLES[key] = sqlalchemy.Table(
                    name, sqlalchemy.MetaData(schema=db.namespace), autoload_with=conn
                )
            rows = sorted(repr(tuple(r)) for r in conn.execute(sqlalchemy.select(_TABLES[key])))
            out[name] = f"{len(rows)}:" + hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return out


EntryPoint = Callable[[Butler, str, dict[str, Any], dict[str, Any]], Any]


def _coverage(b: Butler, where: str, bind: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """A registry coverage (it takes no keyword data-ID constraints), read to the end."""
    n, batches = b.registry.coverage(
        "bias", ["imported_g", "imported_r"], dimensions=["instrument", "detector"], where=where, bind=bind
    ).run(batch=1000)
    return n, [list(batch) for batch in batches]


def _builder(b: Butler, where: str, bind: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """daf_butler's query builder: a second constraint makes the engine resolve a combined syntax tree."""
    with b.query() as q:
        results = q.data_ids(["visit", "detector"]).where("visit.exposure_time >= 0.0")
        return list(results.where(where, bind=bind, **kwargs))


ENTRY_POINTS: dict[str, EntryPoint] = {
    "butler.query_data_ids(visit, detector)": lambda b, w, bind, kw: b.query_data_ids(
        ["visit", "detector"], where=w, bind=bind, explain=False, **kw
    ),
    "butler.query_data_ids(visit, detector) [explain]": lambda b, w, bind, kw: b.query_data_ids(
        ["visit", "detector"], where=w, bind=bind, explain=True, **kw
    ),
    "butler.query_data_ids(patch, visit) [spatial join]": lambda b, w, bind, kw: b.query_data_ids(
        ["patch", "visit"], where=w, bind=bind, limit=50, explain=False, **kw
    ),
    "butler.query_data_ids(detector, datasets=flat)": lambda b, w, bind, kw: b.query_data_ids(
        ["detector"], where=w, bind=bind, datasets="flat", collections="chain", explain=False, **kw
    ),
    "butler.query_datasets(bias, find_first)": lambda b, w, bind, kw: b.query_datasets(
        "bias", ["imported_r", "imported_g"], where=w, bind=bind, explain=False, **kw
    ),
    "butler.query_datasets(bias, calib)": lambda b, w, bind, kw: b.query_datasets(
        "bias", "calib", find_first=False, where=w, bind=bind, order_by=["detector"], explain=False, **kw
    ),
    "butler.query_dimension_records(visit)": lambda b, w, bind, kw: b.query_dimension_records(
        "visit", where=w, bind=bind, explain=False, **kw
    ),
    "butler.query_dimension_records(detector)": lambda b, w, bind, kw: b.query_dimension_records(
        "detector", where=w, bind=bind, order_by="-detector.raft", explain=False, **kw
    ),
    "butler.query() builder": _builder,
    "registry.query_data_ids(tract) [default instrument]": lambda b, w, bind, kw: b.registry.query_data_ids(
        ["tract", "detector"], where=w, bind=bind, default_data_id={"instrument": "Cam1"}, **kw
    ),
    "registry.query_datasets(flat, chain)": lambda b, w, bind, kw: b.registry.query_datasets(
        "flat", "chain", where=w, bind=bind, **kw
    ),
    "registry.coverage(bias)": _coverage,
}
"""Every way to run a ``where`` expression, each called as (butler, where, bind, keyword constraints)."""

EMPTY_IS_AN_ERROR = {"butler.query_data_ids(visit, detector) [explain]"}
"""Entry points that answer an empty result with EmptyQueryResultError (explain=True, as in daf_butler)."""


def run_everywhere(
    butler: Butler, where: str, bind: dict[str, Any] | None = None, kwargs: dict[str, Any] | None = None
) -> dict[str, str]:
    """Run one input through every entry point; return which error class each raised ('' for none).

    Any exception that is not a `PorterError` propagates and fails the test
    with its traceback, which is the point.  A porter error must explain
    itself: an empty message fails.
    """
    outcomes: dict[str, str] = {}
    for name, call in ENTRY_POINTS.items():
        try:
            call(butler, where, dict(bind or {}), dict(kwargs or {}))
        except PorterError as exc:
            message = str(exc)
            assert message.strip(), f"{name}: {type(exc).__name__} with an empty message for {where[:200]!r}"
            if isinstance(exc, ExpressionSyntaxError):
                assert 0 <= exc.position <= len(where)
                assert "^" in message
            outcomes[name] = type(exc).__name__
        else:
            outcomes[name] = ""
    return outcomes


def check_unchanged(
    butler: Butler, where: str, bind: dict[str, Any] | None = None, kwargs: dict[str, Any] | None = None
) -> dict[str, str]:
    """`run_everywhere`, asserting the database is exactly as it was."""
    before = fingerprint(butler)
    outcomes = run_everywhere(butler, where, bind, kwargs)
    assert fingerprint(butler) == before, f"the repository changed after {where[:200]!r}"
    return outcomes


def examples(backend: str, sqlite: int, postgresql: int) -> Callable[[Any], Any]:
    """Hypothesis settings: ``sqlite`` or ``postgresql`` examples (the latter costs a round trip a call)."""
    return settings(
        max_examples=postgresql if backend == "postgresql" else sqlite,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def fuzz(backend: str, sqlite: int, postgresql: int, strategy: Any, body: Callable[..., None]) -> None:
    """Run ``body`` over ``strategy`` with the number of examples for ``backend``."""
    examples(backend, sqlite, postgresql)(given(strategy)(body))()


# --- (a) the grammar, over real names and literals ---------------------------------------------------------

DIMENSIONS = [
    "instrument",
    "detector",
    "physical_filter",
    "band",
    "visit",
    "day_obs",
    "skymap",
    "tract",
    "patch",
]
FIELDS = [
    "detector.raft",
    "detector.full_name",
    "detector.purpose",
    "detector.name_in_raft",
    "visit.exposure_time",
    "visit.zenith_angle",
    "visit.target_name",
    "visit.science_program",
    "visit.name",
    "visit.day_obs",
    "visit.physical_filter",
    "visit.timespan",
    "visit.timespan.begin",
    "visit.timespan.end",
    "visit.region",
    "visit_detector_region.region",
    "patch.region",
    "tract.region",
    "patch.cell_x",
    "instrument.visit_max",
    "instrument.class_name",
    "physical_filter.band",
    "day_obs.timespan",
    "exposure_time",
    "raft",
    "dataset_id",
    "ingest_date",
    "run",
    "collection",
    "bias.run",
    "bias.timespan",
    "flat.dataset_id",
    "htm7",
    "htm7.region",
    "timespan.begin",
    "nosuchfield",
    "visit.nosuchfield",
    "nosuch.element.begin",
]
BIND_NAMES = ["a", "b", "vals", "t", "r", "ts", "missing"]

INT_EDGES = [0, 1, 2, 3, 4, -1, 1024, 2**31, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**30]
ints = st.one_of(st.integers(-5, 30), st.sampled_from(INT_EDGES), st.integers())
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda f: repr(abs(f))),
    st.sampled_from(["0.0", "60.0", "1e999", "1e308", "1.5e-320", ".5", "45.", "2e3"]),
)
EVIL_CHARS = "\x00\ud800\udfff\u202e\ufeff\n\t'\"\\%_*?é漢😀"
string_bodies = st.one_of(
    st.sampled_from(
        [
            "Cam1",
            "Cam1-G",
            "r",
            "g",
            "A",
            "Aa",
            "SCIENCE",
            "SkyMap1",
            "imported_g",
            "chain",
            "calib",
            "",
            "%",
            "_",
        ]
    ),
    st.text(alphabet=st.sampled_from("ABab_*?%.-/ " + EVIL_CHARS.replace("'", "")), max_size=12),
    st.text(max_size=8).map(lambda s: s.replace("'", "")),
)
TIMES = [
    "2021-09-09 03:00:00",
    "2021-09-09T03:00:30",
    "2021-09-09T03:00:00/tai",
    "59466.125",
    "mjd/59466.125/utc",
    "0001-01-01",
    "9999-12-31 23:59:59",
    "1677-09-21",
    "2262-04-12",
    "2021-02-30",
    "2021-13-01 25:61:61",
    "-99999999999.0",
    "99999999999999999999.5",
    "jd/2459466.5",
    "unix/1e20",
    "cxcsec/1.0",
    "2021-09-09/nosuchscale",
    "nosuchformat/1.0",
    "garbage",
    "",
]
UUIDS = [BIAS_G, "00000000-0000-0000-0000-000000000000", "not-a-uuid", "", BIAS_G.upper(), "{" + BIAS_G + "}"]


@st.composite
def literals(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return str(draw(ints))
    if kind == 1:
        return draw(floats)
    if kind == 2:
        return f"'{draw(string_bodies)}'"
    if kind == 3:
        return f"T'{draw(st.sampled_from(TIMES))}'"
    if kind == 4:
        return f"UUID('{draw(st.sampled_from(UUIDS))}')"
    if kind == 5:
        return ":" + draw(st.sampled_from(BIND_NAMES))
    return draw(st.sampled_from(["NULL", "null", "TRUE"]))


ranges = st.tuples(ints, ints, st.one_of(st.none(), st.integers(1, 5), st.sampled_from([2**63, 10**20]))).map(
    lambda t: f"{t[0]}..{t[1]}" + (f":{t[2]}" if t[2] else "")
)
names = st.one_of(st.sampled_from(DIMENSIONS), st.sampled_from(FIELDS))


@st.composite
def values(draw: st.DrawFn, depth: int = 2) -> str:
    """A value: a name, a literal, arithmetic on values, a sign."""
    kind = draw(st.integers(0, 4 if depth > 0 else 1))
    if kind == 0:
        return draw(names)
    if kind == 1:
        return draw(literals())
    if kind == 2:
        op = draw(st.sampled_from(["+", "-", "*", "/", "%"]))
        return f"{draw(values(depth - 1))} {op} {draw(values(depth - 1))}"
    if kind == 3:
        return f"-{draw(values(depth - 1))}"
    return f"({draw(values(depth - 1))})"


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-400, 400).map(str),
        st.floats(-400, 400, allow_nan=False).map(repr),
        st.sampled_from(["1e999", "-1e999", "0", "90", "-90", "90.0000001", "180", "360", ":a", ":b", "'x'"]),
    )


@st.composite
def regions(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 5))
    n = _number()
    if kind == 0:
        return f"POINT({draw(n)}, {draw(n)})"
    if kind == 1:
        return f"CIRCLE({draw(n)}, {draw(n)}, {draw(n)})"
    if kind == 2:
        return f"BOX({draw(n)}, {draw(n)}, {draw(n)}, {draw(n)})"
    if kind == 3:
        count = draw(st.integers(1, 6))
        return "POLYGON(" + ", ".join(draw(n) for _ in range(2 * count)) + ")"
    if kind == 4:
        pos = draw(
            st.sampled_from(
                [
                    "CIRCLE 0.5 0.5 1",
                    "CIRCLE nan 0 1",
                    "CIRCLE 1 100 1",
                    "CIRCLE 0 0 1e400",
                    "RANGE 0 360 -90 90",
                    "RANGE nan 1 2 3",
                    "POLYGON 0 0 1 0 1 1",
                    "POLYGON 0 0 0 0 0 0",
                    "BOX 1 2 3 4",
                    "",
                ]
            )
        )
        return f"REGION('{pos}')"
    return draw(
        st.sampled_from([":r", "visit.region", "patch.region", "htm7.region", "POINT(1)", "CIRCLE()"])
    )


@st.composite
def predicates(draw: st.DrawFn, depth: int = 3) -> str:
    """A condition in the ``where`` grammar (and some near misses, like a bare value)."""
    kind = draw(st.integers(0, 9 if depth > 0 else 4))
    if kind == 0:
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        return f"{draw(values())} {op} {draw(values())}"
    if kind == 1:
        items = draw(st.lists(st.one_of(literals(), ranges, names), min_size=1, max_size=5))
        neg = draw(st.booleans())
        return f"{draw(names)} {'NOT IN' if neg else 'IN'} ({', '.join(items)})"
    if kind == 2:
        pattern = draw(st.one_of(string_bodies.map(lambda s: f"'{s}'"), st.just(":a"), literals()))
        return f"GLOB({draw(names)}, {pattern})"
    if kind == 3:
        side = draw(
            st.sampled_from(["visit.region", "patch.region", "visit_detector_region.region", "tract.region"])
        )
        return f"{side} OVERLAPS {draw(regions())}"
    if kind == 4:
        lhs = draw(
            st.sampled_from(["visit.timespan", "day_obs.timespan", "bias.timespan", ":ts", "ingest_date"])
        )
        rhs = draw(
            st.one_of(
                st.tuples(literals(), literals()).map(lambda t: f"({t[0]}, {t[1]})"),
                literals(),
                st.sampled_from(["visit.timespan", ":t", "(NULL, NULL)"]),
            )
        )
        return f"{lhs} OVERLAPS {rhs}"
    if kind == 5:
        return f"NOT {draw(predicates(depth - 1))}"
    if kind == 6:
        return f"({draw(predicates(depth - 1))})"
    if kind == 7:
        return draw(values(1))  # a value where a condition belongs
    joiner = draw(st.sampled_from(["AND", "OR", "and", "Or"]))
    return f"{draw(predicates(depth - 1))} {joiner} {draw(predicates(depth - 1))}"


GOVERNORS = ["instrument = 'Cam1'", "skymap = 'SkyMap1'", "instrument = 'Cam1' AND skymap = 'SkyMap1'"]


@st.composite
def where_expressions(draw: st.DrawFn) -> str:
    """A grammar expression, usually with the governors that let it reach SQL."""
    expr = draw(predicates())
    prefix = draw(st.sampled_from(["", *GOVERNORS, GOVERNORS[2]]))
    return f"{prefix} AND ({expr})" if prefix else expr


class _Weird:
    def __repr__(self) -> str:
        return "<weird object>"


SCALAR_BIND_VALUES = [
    0,
    3,
    -1,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    10**40,
    np.int64(2),
    np.uint64(2**64 - 1),
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    np.float32("nan"),
    True,
    None,
    "Cam1",
    "r",
    "A*",
    "",
    "A\x00",
    "\ud800",
    "x" * 10_000,
    b"bytes",
    uuid.UUID(BIAS_G),
    astropy.time.Time("2021-09-09T03:00:30", scale="tai"),
    astropy.time.Time("0001-01-01", scale="utc"),
    astropy.time.Time(["2021-01-01", "2021-01-02"]),
    datetime.datetime(2021, 9, 9, 3, 0, 30),
    datetime.datetime(1, 1, 1),
    Timespan(None, None),
    Timespan.make_empty(),
    Timespan.from_nsec(-(2**70), 2**70),
    lsst.sphgeom.Circle(lsst.sphgeom.UnitVector3d(1, 0, 0), lsst.sphgeom.Angle.fromDegrees(1)),
    lsst.sphgeom.Circle(lsst.sphgeom.UnitVector3d(1, 0, 0), lsst.sphgeom.Angle(math.nan)),
    lsst.sphgeom.Region.from_ivoa_pos("CIRCLE nan 0 1"),
    lsst.sphgeom.LonLat.fromDegrees(0.5, 0.5),
    lsst.sphgeom.Box(),
    _Weird(),
    {"a": 1},
    object,
]
bind_values = st.one_of(
    st.sampled_from(SCALAR_BIND_VALUES),
    st.lists(st.sampled_from([1, 2, 3, 2**64, "r", None, math.nan, "a\x00", [1]]), max_size=4).flatmap(
        lambda xs: st.sampled_from([xs, tuple(xs), frozenset(x for x in xs if not isinstance(x, list))])
    ),
    st.lists(st.integers(0, 5), min_size=1000, max_size=1000).map(tuple),
)
binds = st.dictionaries(
    st.sampled_from([*BIND_NAMES, "visit", "instrument", "1", ""]), bind_values, max_size=4
)

KWARG_VALUES = [
    "Cam1",
    "SkyMap1",
    1,
    "1",
    " 2 ",
    "-3",
    "9" * 30,
    2**63,
    -(2**64),
    np.int64(1),
    1.0,
    math.nan,
    True,
    None,
    "",
    "Cam1\x00",
    "\ud800",
    b"Cam1",
    [1, 2],
    {"id": 1},
    uuid.UUID(BIAS_G),
    _Weird(),
]
kwargs = st.dictionaries(
    st.sampled_from([*DIMENSIONS, "exposure", "htm7", "visit_detector_region", "nosuch", "Instrument"]),
    st.sampled_from(KWARG_VALUES),
    max_size=3,
)


def test_grammar(butler: Butler, backend: str) -> None:
    """(a) Random expressions over the real names, with random bind values and keyword constraints."""

    def body(case: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
        where, bind, kw = case
        check_unchanged(butler, where, bind, kw)

    fuzz(backend, 150, 40, st.tuples(where_expressions(), binds, kwargs), body)


# --- (b) mutations of valid expressions ---------------------------------------------------------------------

VALID = [
    "instrument = 'Cam1' AND visit > 1 AND band = 'r'",
    "instrument = 'Cam1' AND detector IN (1..4:2, 3) AND NOT visit = 2",
    "instrument = 'Cam1' AND detector.raft = 'A' OR detector.purpose != 'SCIENCE'",
    "instrument = 'Cam1' AND visit.timespan OVERLAPS (T'2021-09-09 03:00:00', T'2021-09-09 03:02:30')",
    "instrument = 'Cam1' AND visit.timespan.begin < T'2021-09-09T03:01:00/tai'",
    "instrument = 'Cam1' AND visit.region OVERLAPS POINT(0.5, 0.5)",
    "instrument = 'Cam1' AND visit_detector_region.region OVERLAPS CIRCLE(0.5, 0.5, 0.01)",
    "skymap = 'SkyMap1' AND patch.region OVERLAPS BOX(0.5, 0.5, 1, 1)",
    "skymap = 'SkyMap1' AND tract.region OVERLAPS POLYGON(0, 0, 1, 0, 1, 1)",
    "instrument = 'Cam1' AND GLOB(detector.full_name, 'A?') AND visit.exposure_time * 2.0 > 60.0",
    "instrument = 'Cam1' AND dataset_id = UUID('e15ab039-bc8b-4135-87c5-90902a7c0b22')",
    "instrument = 'Cam1' AND visit IN (:vals) AND detector = :a",
    "instrument = 'Cam1' AND (visit = 1 OR (visit = 2 AND detector != 3)) AND visit.zenith_angle >= -1.5e1",
    "instrument = 'Cam1' AND visit.region OVERLAPS REGION('CIRCLE 0.5 0.5 1') AND ingest_date > T'59000.5'",
    "instrument = 'Cam1' AND bias.timespan OVERLAPS T'2021-09-09 03:00:30' AND run = 'imported_g'",
]
GOOD_BIND = {"vals": [1, 2], "a": 2}
INSERTS = [
    "(",
    ")",
    "'",
    '"',
    ",",
    ".",
    "..",
    ":",
    "=",
    "!",
    "<",
    "-",
    "*",
    "/",
    "%",
    " AND ",
    " OR ",
    " NOT ",
    " IN ",
    " OVERLAPS ",
    "T'",
    "UUID(",
    "POINT(",
    "\x00",
    "\ud800",
    "\n",
    "99999999999999999999999",
    "-9223372036854775809",
    "1e999",
    "0",
    "/ 0",
    "% 0",
    ":missing",
    "NULL",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid expression after 1 to 6 random edits."""
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 6))
        i = draw(st.integers(0, len(text)))
        if kind == 0:
            text = text[:i] + draw(st.one_of(st.sampled_from(INSERTS), st.characters())) + text[i:]
        elif kind == 1:
            text = text[:i] + text[i + 1 :]
        elif kind == 2 and i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        elif kind == 3:
            text = text[:i]
        elif kind == 4:
            j = draw(st.integers(i, len(text)))
            text = text[:j] + text[i:j] + text[j:]
        elif kind == 5:
            text = text[:i] + draw(st.text(max_size=5)) + text[i:]
        else:
            text = text.replace(
                draw(st.sampled_from(["1", "0.5", "'", "AND", "(", "Cam1"])),
                draw(st.sampled_from(INSERTS)),
                1,
            )
    return text


def test_valid_expressions_work(butler: Butler) -> None:
    """The seeds of the mutations are valid, so mutating them explores near-valid input."""
    for where in VALID:
        outcomes = run_everywhere(butler, where, GOOD_BIND)
        # Each seed must be accepted by at least one entry point (others may not search datasets, say).
        assert "" in outcomes.values(), (where, outcomes)


def test_mutations(butler: Butler, backend: str) -> None:
    """(b) Near-valid expressions: every edit gives a result or a porter error, and changes nothing."""

    def body(where: str) -> None:
        check_unchanged(butler, where, GOOD_BIND)

    fuzz(backend, 200, 50, mutated(), body)


# --- (c) deep nesting and long chains --------------------------------------------------------------------------


def _nest(kind: str, depth: int) -> str:
    """An expression ``depth`` levels deep (as the parser counts them) in one construct, true for some visits."""
    gov = "instrument = 'Cam1' AND "
    if kind == "parens":
        return gov + "(" * depth + "visit = 1" + ")" * depth
    if kind == "not":
        return gov + "NOT " * depth + ("visit = 1" if depth % 2 == 0 else "visit = 2")
    if kind == "not-parens":  # "NOT (" is two levels
        pairs, extra = divmod(depth, 2)
        core = "visit = 1" if (pairs + extra) % 2 == 0 else "visit = 2"
        return gov + "NOT (" * pairs + "NOT " * extra + core + ")" * pairs
    if kind == "minus":
        return gov + "-" * depth + "visit = " + ("1" if depth % 2 == 0 else "-1")
    if kind == "plus-chain":  # each operator is a level: ((visit + 0) + 0) …
        return gov + "visit = " + " + ".join(["visit"] + ["0"] * depth)
    if kind == "mul-chain":
        return gov + " * ".join(["visit.exposure_time"] + ["1.0"] * depth) + " > 0.0"

    if kind == "and-or":  # (a OR (b AND (c OR …))): what SQL must render with parentheses
        opens = "".join("(visit < 100 OR " if i % 2 else "(visit = 1 AND " for i in range(depth))
        return gov + opens + "visit = 1" + ")" * depth
    if kind == "functions":
        return gov + "visit.region OVERLAPS " + "POINT(" * depth + "1, 2" + ")" * depth
    if kind == "in-parens":
        return gov + "visit IN (" + "(" * depth + "1" + ")" * depth + ")"
    raise AssertionError(kind)


NEST_KINDS = [
    "parens",
    "not",
    "not-parens",
    "minus",
    "plus-chain",
    "mul-chain",
    "and-or",
    "functions",
    "in-parens",
]


@pytest.mark.parametrize("kind", NEST_KINDS)
def test_deep_nesting_is_refused_clearly(butler: Butler, kind: str) -> None:
    """10,000 levels of anything: an ExpressionSyntaxError saying how deep is too deep, not a RecursionError."""
    where = _nest(kind, 10_000)
    before = fingerprint(butler)
    for name, call in ENTRY_POINTS.items():
        with pytest.raises(InvalidQueryError) as info:
            call(butler, where, {}, {})
        message = str(info.value)
        if kind != "in-parens":  # IN lists take no parentheses: that is refused first
            assert f"nested deeper than {MAX_DEPTH} levels" in message, (name, message)
            assert "simplify it" in message
    assert fingerprint(butler) == before


SYNTAX_ONLY = ["parens", "not", "not-parens", "minus"]
"""Nesting that resolves away (parentheses, NOT NOT, - -): only the parser's `MAX_DEPTH` bounds it."""
NESTS_IN_SQL = ["and-or", "plus-chain", "mul-chain"]
"""Nesting the SQL keeps: bounded by the resolver's `MAX_RESOLVED_DEPTH` (SQLite's parser stack)."""


@pytest.mark.parametrize("kind", SYNTAX_ONLY + NESTS_IN_SQL)
def test_nesting_up_to_the_limit_works(butler: Butler, kind: str) -> None:
    """At the limit every entry point parses, resolves, compiles and runs the query; past it, a clear refusal.

    Run on both backends: SQLite's parser stack (100 entries) is what fixes
    `MAX_RESOLVED_DEPTH`, and Python's recursion limit what fixes `MAX_DEPTH`.
    """
    limit = MAX_DEPTH if kind in SYNTAX_ONLY else MAX_RESOLVED_DEPTH
    # The governor's AND around an arithmetic chain is one more level of the resolved predicate.
    depth = limit - 1 if kind in ("plus-chain", "mul-chain") else limit
    where = _nest(kind, depth)
    outcomes = run_everywhere(butler, where)
    assert set(outcomes.values()) == {""}, outcomes
    visits = {d["visit"] for d in butler.query_data_ids(["visit"], where=where)}
    assert visits == ({1, 2} if kind in ("plus-chain", "mul-chain") else {1})
    with pytest.raises(InvalidQueryError, match=f"nested deeper than {limit} levels") as info:
        butler.query_data_ids(["visit"], where=_nest(kind, depth + 1))
    assert "simplify it" in str(info.value)


@pytest.mark.parametrize("joiner", ["AND", "OR"])
@pytest.mark.parametrize("length", [50, 900])
def test_long_chains(butler: Butler, joiner: str, length: int) -> None:
    """AND/OR chains are not nesting: long ones work on every entry point and give the right answer."""
    terms = [f"visit = {1 + i % 2}" if joiner == "OR" else f"visit != {3 + i}" for i in range(length)]
    where = f"instrument = 'Cam1' AND ({f' {joiner} '.join(terms)})"
    before = fingerprint(butler)
    outcomes = run_everywhere(butler, where)
    assert set(outcomes.values()) == {""}, outcomes
    assert len(butler.query_data_ids(["visit"], where=where)) == 2
    assert fingerprint(butler) == before


@pytest.mark.parametrize("joiner", ["AND", "OR"])
def test_very_long_chains(butler: Butler, joiner: str) -> None:
    """10,000-term chains (a machine-written query): parser, resolver and SQL all cope.

    SQLite refused the flat SQL ('Expression tree is too large (maximum depth 1000)'); it is now
    written in nested groups, and an OR of equalities on one column is one look-up.
    """
    terms = [f"visit = {1 + i % 2}" if joiner == "OR" else f"visit != {3 + i}" for i in range(10_000)]
    where = f"instrument = 'Cam1' AND ({f' {joiner} '.join(terms)})"
    before = fingerprint(butler)
    try:
        assert len(butler.query_data_ids(["visit"], where=where)) == 2
    finally:
        assert fingerprint(butler) == before


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Random mixtures of nesting constructs, from shallow to 20,000 levels, around a random condition."""
    depth = draw(st.one_of(st.integers(0, 2 * MAX_DEPTH), st.integers(0, 20_000)))
    openers = st.sampled_from(
        ["(", "NOT ", "NOT (", "-", "+", "((", "POINT(", "GLOB(", "1 + (", "visit IN ("]
    )
    parts = (
        draw(st.lists(openers, min_size=depth, max_size=depth)) if depth < 200 else [draw(openers)] * depth
    )
    core = draw(predicates(1))
    closers = "".join(")" * p.count("(") for p in reversed(parts))
    return draw(st.sampled_from(["", "instrument = 'Cam1' AND "])) + "".join(parts) + core + closers


def test_random_nesting(butler: Butler, backend: str) -> None:
    """(c) Deep and shallow mixtures of nesting: results or porter errors, nothing changed."""

    def body(where: str) -> None:
        check_unchanged(butler, where, GOOD_BIND)

    fuzz(backend, 100, 25, nested(), body)


# --- (d) 100 KB inputs -------------------------------------------------------------------------------------------

SIZE = 100_000


@st.composite
def huge(draw: st.DrawFn) -> str:
    """An input of about 100 KB.

    Valid AND/OR chains long enough to pass SQLite's expression-depth limit
    are `test_very_long_chains` (an xfail for now); chains here are built
    from few, long terms, or are broken somewhere.
    """
    kind = draw(st.integers(0, 7))
    gov = "instrument = 'Cam1' AND "
    if kind == 0:  # one long string literal
        return gov + f"detector.raft = '{draw(st.characters()) * SIZE}'".replace("''", "'")
    if kind == 1:  # a long identifier
        return gov + "visit." + "x" * SIZE + " = 1"
    if kind == 2:  # a long IN list
        items = draw(st.lists(st.integers(-(2**70), 2**70), min_size=10, max_size=10))
        return gov + "visit IN (" + ", ".join(str(items[i % 10]) for i in range(SIZE // 20)) + ")"
    if kind == 3:  # a long IN list of ranges and strings
        return gov + "detector IN (" + ", ".join(["1..4:2", "'A'", ":vals"] * (SIZE // 16)) + ")"
    if kind == 4:  # a chain of few, long terms
        pad = "A" * 900
        return gov + " OR ".join([f"detector.raft = '{pad}{i}'" for i in range(SIZE // 930)] + ["visit = 1"])
    if kind == 5:  # random text
        unit = draw(st.text(min_size=1, max_size=50))
        return (unit * (SIZE // len(unit) + 1))[:SIZE]
    if kind == 6:  # a valid expression repeated, so broken where the copies meet
        unit = draw(where_expressions())
        return (unit * (SIZE // max(len(unit), 1) + 1))[:SIZE]
    # a mutated long chain
    chain = " AND ".join(draw(st.sampled_from(VALID)) for _ in range(SIZE // 60))
    i = draw(st.integers(0, len(chain) - 1))
    return chain[:i] + draw(st.sampled_from(INSERTS)) + chain[i + 1 :]


def test_huge_inputs(butler: Butler, backend: str) -> None:
    """(d) 100 KB inputs: results or porter errors whose messages stay readable, nothing changed."""

    def body(where: str) -> None:
        try:
            butler.query_data_ids(["visit"], where=where, bind=GOOD_BIND, explain=False)
        except PorterError as exc:
            assert len(str(exc)) < 3 * SIZE, "the error message should not multiply a huge input"
        check_unchanged(butler, where, GOOD_BIND)

    fuzz(backend, 30, 8, huge(), body)


# --- targeted regressions: what the fuzzing found --------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("visit = 99999999999999999999999", "must fit in 64 bits"),
        ("visit = -9223372036854775809", "must fit in 64 bits"),
        ("visit IN (1..99999999999999999999)", "range"),
        ("detector IN (1..5:99999999999999999999)", "stride of the range"),
        ("visit > 1e999", "not a finite number"),
        ("visit = 9223372036854775807 + 1", "must fit in 64 bits"),
        ("visit = -(-9223372036854775807 - 1)", "must fit in 64 bits"),
        ("visit / 0 > 1", "Division by zero"),
        ("visit % 0 > 1", "Division by zero"),
        ("visit.exposure_time % 2.0 > 1.0", "'%' needs integers"),
        ("detector.raft = 'A\x00'", "NUL character"),
        ("GLOB(detector.raft, 'A\x00*')", "NUL character"),
        ("detector.raft = '\ud800'", "not valid Unicode"),
        ("visit.region OVERLAPS POINT(0, 100)", "POINT dec is 100 degrees, outside [-90, 90]"),
        ("visit.region OVERLAPS POINT(1e999, 0)", "not a finite number"),
        ("visit.region OVERLAPS CIRCLE(0, 0, -1)", "CIRCLE radius is -1"),
        ("visit.region OVERLAPS BOX(0, 0, 1, 200)", "BOX height"),
        ("visit.region OVERLAPS POLYGON(0, 0, 0, 0, 0, 0)", "Invalid POLYGON"),
        ("visit.region OVERLAPS REGION('CIRCLE nan 0 1')", "NaN or infinite"),
        ("visit.region OVERLAPS REGION('CIRCLE 1 100 1')", "Invalid IVOA POS string"),
    ],
)
def test_values_the_database_cannot_hold(butler: Butler, where: str, fragment: str) -> None:
    """Found by the fuzzing: each was an OverflowError, ValueError or driver error; now a clear error."""
    where = "instrument = 'Cam1' AND " + where
    before = fingerprint(butler)
    for name, call in ENTRY_POINTS.items():
        with pytest.raises(InvalidQueryError, match=None) as info:
            call(butler, where, {}, {})
        assert fragment in str(info.value), (name, str(info.value))
    assert fingerprint(butler) == before


@pytest.mark.parametrize(
    ("bind", "fragment"),
    [
        ({"a": 2**64}, "bind value 'a' (18446744073709551616) is out of range"),
        ({"a": math.nan}, "not a finite number"),
        ({"a": "Cam1\x00"}, "NUL character"),
        ({"a": [1, 2**64]}, "out of range"),
        ({"a": lsst.sphgeom.Region.from_ivoa_pos("CIRCLE nan 0 1")}, "NaN or infinite"),
    ],
)
def test_bind_values_the_database_cannot_hold(butler: Butler, bind: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidQueryError) as info:
        butler.query_data_ids(["visit"], where="instrument = 'Cam1' AND visit IN (:a)", bind=bind)
    assert fragment in str(info.value)


def test_times_outside_64_bit_nanoseconds_are_clamped(butler: Butler) -> None:
    """T'0001-01-01' means 'before everything', as an unbounded timespan begin is stored."""
    base = "instrument = 'Cam1' AND "
    assert len(butler.query_data_ids(["visit"], where=base + "visit.timespan.begin > T'0001-01-01'")) == 2
    assert (
        butler.query_data_ids(["visit"], where=base + "visit.timespan.end > T'9999-12-31'", explain=False)
        == []
    )
    during = base + "visit.timespan OVERLAPS (T'0001-01-01', T'9999-12-31')"
    assert len(butler.query_data_ids(["visit"], where=during)) == 2
    bound = {"t": astropy.time.Time("0001-01-01", scale="utc")}
    assert len(butler.query_data_ids(["visit"], where=base + "visit.timespan.begin > :t", bind=bound)) == 2


def test_folded_arithmetic_follows_sql(butler: Butler) -> None:
    """Literal arithmetic is computed by porter now, with SQL's truncating division and remainder."""
    base = "instrument = 'Cam1' AND "
    for where, expected in [("visit = -3 / 2 + 3", 2), ("visit = -3 % 2 + 3", 2), ("visit = 7 / 2 - 2", 1)]:
        got = butler.query_data_ids(["visit"], where=base + where)
        assert [d["visit"] for d in got] == [expected], where


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"visit": 2**63}, "for visit is out of range"),
        ({"instrument": "Cam1\x00"}, "NUL character"),
        ({"instrument": "\ud800"}, "not valid Unicode"),
        ({"visit": "9" * 30}, "for visit is out of range"),
    ],
)
def test_data_id_constraints_the_database_cannot_hold(
    butler: Butler, kwargs: dict[str, Any], fragment: str
) -> None:
    """Keyword data-ID constraints skip the ``where`` resolver; the analysis step checks them."""
    before = fingerprint(butler)
    for name, call in ENTRY_POINTS.items():
        if name == "registry.coverage(bias)":
            continue  # takes no data-ID constraints
        with pytest.raises(InvalidQueryError) as info:
            call(butler, "", {}, {"instrument": "Cam1", **kwargs})
        assert fragment in str(info.value), (name, str(info.value))
    assert fingerprint(butler) == before


def test_where_must_be_a_string(butler: Butler) -> None:
    with pytest.raises(InvalidQueryError, match="visit = 1"):
        butler.query_data_ids(["visit"], where=b"visit = 1")  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError, match="must be a string, not int"):
        parse_expression(12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("where", "visits"),
    [
        ("visit / (detector - detector) > 1", None),  # NULL, as SQLite answers: no rows
        ("visit % (visit - visit) = 0", None),
        ("visit * 9223372036854775807 > 1", "overflow"),
        ("visit + 9223372036854775807 > 1", "overflow"),
        ("visit.exposure_time * 1e308 * 1e308 > 1", "overflow"),
        ("visit IN (-9223372036854775808..9223372036854775807:9223372036854775807)", set()),
        ("visit IN (-9223372036854775806..9223372036854775807:9223372036854775807)", {1}),
        ("visit IN (-9..9:3)", set()),
        ("visit IN (-10..9:3)", {2}),
        ("visit IN (-3..3:2)", {1}),
    ],
)
def test_data_dependent_arithmetic_errors(butler: Butler, backend: str, where: str, visits: Any) -> None:
    """Division by a column that is zero, or overflow of column arithmetic, cannot be caught before SQL.

    PostgreSQL raised DataError (division by zero, bigint out of range, float overflow) through the
    engine; SQLite gives NULL or a float.  A computed divisor of zero is NULL on both now; what still
    overflows in the database is an InvalidQueryError.  A strided range near -2**63 no longer computes
    ``visit - start`` (which overflowed on PostgreSQL).
    """
    where = "instrument = 'Cam1' AND " + where
    before = fingerprint(butler)
    for call in ENTRY_POINTS.values():
        try:
            call(butler, where, {}, {})
        except PorterError as exc:
            assert str(exc)
    if visits is None:
        assert butler.query_data_ids(["visit"], where=where, explain=False) == []
    elif visits == "overflow":
        if backend == "postgresql":
            with pytest.raises(InvalidQueryError, match="could not evaluate the where expression"):
                butler.query_data_ids(["visit"], where=where, explain=False)
    else:
        assert {d["visit"] for d in butler.query_data_ids(["visit"], where=where, explain=False)} == visits
    assert fingerprint(butler) == before


def test_dataset_timespan_in_run_collections(butler: Butler) -> None:
    """Found by the fuzzing (and fixed by the engine rewrite): a RUN's datasets have no timespan, so none match."""
    where = "instrument = 'Cam1' AND bias.timespan OVERLAPS T'2021-09-09 03:00:30'"
    assert butler.query_datasets("bias", ["imported_r", "imported_g"], where=where, explain=False) == []


@pytest.mark.parametrize(
    "where",
    [
        "instrument = 'Cam1' AND GLOB(detector.full_name, '*a') AND detector.full_name != '%'",
        "instrument = 'Cam1' AND detector IN (1..4:2)",
        "instrument = 'Cam1' AND detector % 2 = 1",
    ],
)
def test_coverage_renders_percent_signs(butler: Butler, where: str) -> None:
    """A coverage counts what the same query finds, whatever its SQL holds ('%' in literals, modulo).

    On PostgreSQL its rows are copied out with COPY, which takes no parameters: SQLAlchemy's
    literal_binds wrote the modulo operator as psycopg2's escaped '%%' (UndefinedFunction).
    """
    expected = {d["detector"] for d in butler.query_data_ids(["detector"], where=where)}
    n, batches = butler.registry.coverage(
        "bias", ["imported_g", "imported_r"], dimensions=["instrument", "detector"], where=where
    ).run()
    assert n == len(expected) and n > 0
    assert [row for batch in batches for row in batch] == []  # every detector has a bias in one of the runs


@pytest.mark.parametrize("data_id", ["Cam1", 1, ["instrument", "Cam1"]])
def test_data_id_that_is_not_a_mapping(butler: Butler, data_id: Any) -> None:
    with pytest.raises(PorterError, match="mapping"):
        butler.query_data_ids(["detector"], data_id=data_id)


def test_errors_show_a_window_of_a_huge_expression(butler: Butler) -> None:
    """A name error at the end of a 100 KB expression shows the text around the caret, not all 100 KB."""
    where = "instrument = 'Cam1' AND " + " AND ".join(["visit > 0"] * 8000) + " AND detectr = 1"
    with pytest.raises(InvalidQueryError) as info:
        butler.query_data_ids(["visit", "detector"], where=where, explain=False)
    message = str(info.value)
    assert len(message) < 500, message
    assert "Did you mean 'detector'" in message
    line, caret = message.splitlines()[-2:]
    assert line.startswith("    …") and line.endswith("detectr = 1")
    assert line[caret.index("^") :].startswith("detectr")


# --- issue 14, "Queries under fuzzing": what a second campaign still found ---------------------------------


@pytest.mark.parametrize(
    ("where", "position", "fragment"),
    [
        ("visit\ud800 = 1", 6, "lone surrogate"),
        ("visit = 1 AND \udfff", 15, "not valid Unicode"),
        ("visit.timespan OVERLAPS T'2021-09-09\ud800'", 37, "lone surrogate"),
        ("visit\x00 = 1", 6, "NUL character"),
        ("dataset_id = UUID('\x00')", 20, "NUL character"),
        ("visit IN (1.." + "9" * 5000 + ")", 14, "the end of the range has 5000 digits"),
        ("detector IN (1..5:" + "9" * 5000 + ")", 19, "the stride of the range has 5000 digits"),
        ("visit = " + "9" * 5000, 9, "the integer has 5000 digits"),
        ("visit.timespan OVERLAPS T'2021-09-09/local'", 25, "scale 'local'"),
    ],
)
def test_text_no_database_takes_is_refused_by_the_lexer(
    butler: Butler, where: str, position: int, fragment: str
) -> None:
    """A surrogate or NUL anywhere, a 5,000-digit integer (Python's int() refuses 4,300: a ValueError),
    a time in astropy's 'local' scale (ScaleValueError): a syntax error at the position, printable."""
    where = "instrument = 'Cam1' AND " + where
    offset = len("instrument = 'Cam1' AND ")
    before = fingerprint(butler)
    for name, call in ENTRY_POINTS.items():
        with pytest.raises(ExpressionSyntaxError) as info:
            call(butler, where, {}, {})
        exc = info.value
        assert exc.position == offset + position - 1, (name, exc.position)
        message = str(exc)
        assert fragment in message, (name, message)
        message.encode("utf-8")  # printing the message cannot fail
        assert len(message) < 700, "a window of the expression, not all of it"
        assert message.splitlines()[-1].endswith("^")
    assert fingerprint(butler) == before


def test_bound_times_without_a_tai_value(butler: Butler) -> None:
    """An astropy Time in the 'local' scale was a ScaleValueError from deep inside the resolver."""
    local = astropy.time.Time(59466.125, format="mjd", scale="local")
    with pytest.raises(InvalidQueryError, match="cannot be converted to a TAI time"):
        butler.query_data_ids(
            ["visit"], where="instrument = 'Cam1' AND visit.timespan OVERLAPS :t", bind={"t": local}
        )


DETECTORS = (1, 2, 3, 4)
"""The detectors of Cam1 in base.yaml."""

range_items = st.one_of(
    st.integers(-5, 10).map(lambda v: ((v, v, 1), str(v))),
    st.tuples(st.integers(-20, 20), st.integers(-20, 20), st.integers(1, 7)).map(
        lambda t: ((t[0], t[1], t[2]), f"{t[0]}..{t[1]}" + (f":{t[2]}" if t[2] != 1 else ""))
    ),
    st.tuples(st.integers(-(2**63), 2**63 - 2), st.integers(1, 2**62), st.integers(1, 2**62)).map(
        lambda t: ((t[0], min(t[0] + t[1], 2**63 - 1), t[2]), f"{t[0]}..{min(t[0] + t[1], 2**63 - 1)}:{t[2]}")
    ),
)


def _members(items: list[tuple[int, int, int]]) -> set[int]:
    """The detectors an IN list of (start, stop, stride) items selects, computed in Python."""
    return {d for d in DETECTORS for a, b, s in items if a <= d <= b and (d - a) % s == 0}


@st.composite
def in_lists(draw: st.DrawFn) -> tuple[str, set[int]]:
    """``detector [NOT] IN (…)`` with up to a few thousand values and ranges, or an OR chain of them."""
    n = draw(st.one_of(st.integers(1, 20), st.integers(200, 400), st.sampled_from([3000])))
    if n > 400:  # many items, few distinct: built, not drawn one by one
        items = [draw(range_items) for _ in range(20)] * (n // 20)
    else:
        items = draw(st.lists(range_items, min_size=n, max_size=n))
    texts = [t for _, t in items]
    selected = _members([r for r, _ in items])
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return f"detector IN ({', '.join(texts)})", selected
    if kind == 1:
        return f"detector NOT IN ({', '.join(texts)})", set(DETECTORS) - selected
    return " OR ".join(f"detector IN ({t})" for t in texts), selected


def test_many_in_ranges(butler: Butler, backend: str) -> None:
    """IN lists of thousands of values and ranges (strided, near the 64-bit ends, as OR chains): the
    right detectors on every entry point, bounded SQL (one array, guarded ranges), nothing changed.

    A few hundred ranges were a few hundred BETWEENs per row (seconds on a real registry), 1,000 an
    'Expression tree is too large' from SQLite, and a stride near -2**63 a bigint overflow on PostgreSQL.
    """

    def body(case: tuple[str, set[int]]) -> None:
        where, expected = case
        where = f"instrument = 'Cam1' AND ({where})"
        outcomes = check_unchanged(butler, where)
        assert set(outcomes.values()) <= {"", "EmptyQueryResultError"}, outcomes
        got = {d["detector"] for d in butler.query_data_ids(["detector"], where=where, explain=False)}
        assert got == expected, where[:300]

    fuzz(backend, 60, 15, in_lists(), body)


def test_a_thousand_term_or_chain(butler: Butler) -> None:
    """A 1,000-term OR chain of equalities (330 was a RecursionError once) is one look-up."""
    where = "instrument = 'Cam1' AND (" + " OR ".join(f"detector = {i}" for i in range(3, 1003)) + ")"
    assert {d["detector"] for d in butler.query_data_ids(["detector"], where=where)} == {3, 4}


def test_bound_lists_beyond_the_parameter_limit(butler: Butler) -> None:
    """40,000 bound values (SQLite takes at most 32,766 parameters a statement) are one array."""
    values = list(range(2, 40_002))
    for call in ENTRY_POINTS.values():
        call(butler, "instrument = 'Cam1' AND detector IN (:vals)", {"vals": values}, {})
    got = butler.query_data_ids(
        ["detector"], where="instrument = 'Cam1' AND detector IN (:vals)", bind={"vals": values}
    )
    assert {d["detector"] for d in got} == {2, 3, 4}
    strings = [f"name{i}" for i in range(40_000)] + ["A"]
    got = butler.query_dimension_records(
        "detector", where="instrument = 'Cam1' AND detector.raft IN (:s)", bind={"s": strings}
    )
    assert {r.raft for r in got} == {"A"}


def test_too_many_wide_ranges_are_refused(butler: Butler) -> None:
    """Ranges too wide to list are tested one by one: more than MAX_RANGES is a clear refusal."""
    wide = ", ".join(f"{i * 10**12}..{i * 10**12 + 10**11}" for i in range(1, MAX_RANGES + 2))
    before = fingerprint(butler)
    for call in ENTRY_POINTS.values():
        with pytest.raises(InvalidQueryError, match=f"at most {MAX_RANGES} are tested one by one"):
            call(butler, f"instrument = 'Cam1' AND visit IN ({wide})", {}, {})
    assert fingerprint(butler) == before
    fewer = ", ".join(f"{i * 10**12}..{i * 10**12 + 10**11}" for i in range(1, MAX_RANGES + 1))
    got = butler.query_data_ids(["visit"], where=f"instrument = 'Cam1' AND (visit IN ({fewer}) OR visit = 2)")
    assert [d["visit"] for d in got] == [2]


@st.composite
def invalid_text(draw: st.DrawFn) -> tuple[str, int]:
    """A valid expression with NUL or a lone surrogate put anywhere (in a string, a name, between
    tokens), and where the first one is."""
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"])) + text[i:]
    first = min(i for i, ch in enumerate(text) if ch == "\x00" or "\ud800" <= ch <= "\udfff")
    return text, first


def test_invalid_text_anywhere(butler: Butler, backend: str) -> None:
    """The lexer refuses NUL and lone surrogates wherever they are, at the first one, with a message
    that prints; before, a surrogate in a string literal reached the driver (UnicodeEncodeError)."""

    def body(case: tuple[str, int]) -> None:
        where, first = case
        with pytest.raises(ExpressionSyntaxError) as info:
            parse_expression(where)
        assert info.value.position == first
        str(info.value).encode("utf-8")
        outcomes = check_unchanged(butler, where, GOOD_BIND)
        assert set(outcomes.values()) == {"ExpressionSyntaxError"}, outcomes

    fuzz(backend, 40, 10, invalid_text(), body)
