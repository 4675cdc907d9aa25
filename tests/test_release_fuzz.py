"""Fuzzing release plans: a malformed plan gets a porter error naming the file, line, field and fix, never a
traceback, and changes nothing.

The plans are real: ``porter release init DP2 --template rubin`` writes the six Rubin hand-overs into a
repository holding a small generated survey, with DP1-schema Object, Source and Visit catalogs (from
lsst-sdm-schemas, as tests/catalogs.py builds them) and a HiPS tree where the plan expects them.
Hypothesis then mutates the plan's YAML — keys dropped, values of the wrong type (a string where a list
is, a number where a date is), misspelt and unknown keys, impossible and far-away dates, duplicate
checkpoint names, dependencies on unknown checkpoints and in cycles, unknown item kinds, malformed
content rules, huge values, unicode and control characters, duplicated and deleted lines, truncated
text, bytes that are not UTF-8, YAML that is not a mapping — and every ``porter release`` entry point
that reads the plan (the Python API behind status, check, ship, signoff, ready, waive, confirm, the
findings and the HTML report, and the CLI) must either work or raise a `porter.errors.PorterError`.
When the plan is refused, every entry point refuses it with the same `PlanError`, the CLI prints that
message and exits 1 without a traceback, and the repository's database and every file beside the plan
are exactly as before.  Any command that refuses, on a valid plan too, changes nothing either.

A malformed content rule is refused when a finding is turned into a corpus check, before anything is
written, not accepted and then an error in every later release.

No time bounds: ``deadline=None``, moderate example counts (CI is a busy 2-core machine).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from catalogs import conforming, visit_and_source, write
from conftest import SMALL_SURVEY
from hips import make_hips
from porter import Butler
from porter.cli import app
from porter.errors import PorterError
from porter.release import PlanError, Release, load_plan
from porter.release._report import html_report
from porter.schema import load_schema, table_of

RELEASE = "DP2"
runner = CliRunner()

# --- the release: a real plan over a real repository ---------------------------------------------------


class Setup:
    """The repository, its releases/ directory, the valid plan's text, and what each example may mutate."""

    def __init__(self, root: Path):
        self.root = root
        self.repo = root / "repo"
        self.releases = self.repo / "releases"
        self.plan_path = self.releases / f"{RELEASE}.yaml"
        self.text = ""

    def restore(self) -> None:
        self.plan_path.write_text(self.text)


def cli(*args: object) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from porter.demo import SurveySpec, generate_survey

    s = Setup(tmp_path_factory.mktemp("release-fuzz"))
    butler = Butler.create(s.repo)
    generate_survey(butler, SurveySpec(**SMALL_SURVEY))  # type: ignore[arg-type]
    butler.close()
    result = cli("release", "init", RELEASE, "--template", "rubin", "--repo", s.repo, "--start", "2027-01-04")
    assert result.exit_code == 0, result.output
    s.text = s.plan_path.read_text()
    # The deliveries the plan names, where it names them: DP1-schema catalogs and a HiPS tree.
    rng = np.random.default_rng(12)
    catalogs = s.releases / RELEASE / "catalogs"
    visit_and_source(catalogs, rng, n_visits=10, n_sources=800)
    write(conforming("dp1", "Object", 300, rng), catalogs / "Object", parts=2)
    make_hips(s.releases / RELEASE / "hips" / "color")
    rel = Release.open(RELEASE, s.releases)
    try:
        rel.add_finding("major", "catalogs", "negative PSF fluxes in Source", "release-manager")
        rel.check("catalogs")
    finally:
        rel.close()
    yield s


def fingerprint(s: Setup) -> dict[str, str]:
    """Every table of the repository's database (a logical dump) and every file under the repository but the
    plan being mutated (and SQLite's own journal files), each as a digest."""
    out: dict[str, str] = {}
    con = sqlite3.connect(f"file:{s.repo / 'registry.sqlite3'}?mode=ro", uri=True)
    try:
        out["database"] = hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()
    for path in sorted(s.root.rglob("*")):
        if path == s.plan_path or not path.is_file() or path.name.startswith("registry.sqlite3"):
            continue
        out[str(path.relative_to(s.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# --- mutations ----------------------------------------------------------------------------------------------

WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
    st.dates(),
    st.datetimes(),
    st.sampled_from(
        [
            "2027-13-45",
            "2027-02-30",
            "9999-12-31",
            "0001-01-01",
            "25/01/2027",
            20270125,
            86400,
            1.5,
            "x" * 100_000,
            "../../outside",
            "a/b",
            "",
            " ",
            "a\x00b",
            "\u202e\u0301",
            "🚀",
            10**30,
            -1,
            "yes",
            [[[[[]]]]],
        ]
    ),
)
"""Values of the wrong type, range or shape for wherever they land."""

RULE_NAMES = ["row_count", "range", "finite", "not_null", "unique", "footprint", "band_coverage"]
RULE_KEYS = ["rule", "column", "columns", "min", "max", "ra", "dec", "circle", "bands", "min_fraction"]
RULE_KEYS += ["ra_min", "ra_max", "dec_min", "dec_max"]


def _typo(text: str) -> st.SearchStrategy[str]:
    """``text`` with one character inserted, deleted, replaced or two swapped."""
    if not text:
        return st.just("x")
    return st.tuples(
        st.sampled_from(["insert", "delete", "replace", "swap"]),
        st.integers(0, len(text) - 1),
        st.characters(),
    ).map(
        lambda t: (
            text[: t[1]] + t[2] + text[t[1] :]
            if t[0] == "insert"
            else text[: t[1]] + text[t[1] + 1 :]
            if t[0] == "delete"
            else text[: t[1]] + t[2] + text[t[1] + 1 :]
            if t[0] == "replace"
            else text[: t[1]] + text[t[1] + 1 : t[1] + 2] + text[t[1]] + text[t[1] + 2 :]
        )
    )


@st.composite
def rules(draw: st.DrawFn, columns: list[str] | None = None) -> Any:
    """Content rules, well-formed and not: known and misspelt rule names, keys the rule takes and does not,
    values of every type, columns of the catalog and not."""
    cols = columns or ["psfFlux", "coord_ra", "coord_dec", "visit", "detector", "band", "x"]
    column = st.one_of(st.sampled_from(cols), st.text(max_size=8), WEIRD)
    number = st.one_of(st.integers(-5, 10_000), st.floats(-1e3, 1e3), WEIRD)
    kind = draw(st.one_of(st.sampled_from(RULE_NAMES), st.sampled_from(RULE_NAMES).flatmap(_typo), WEIRD))
    rule: dict[Any, Any] = {"rule": kind}
    for key in draw(st.lists(st.sampled_from(RULE_KEYS[1:]), max_size=4, unique=True)):
        if key == "column":
            rule[key] = draw(st.one_of(column, st.just("{band}_psfFlux")))
        elif key == "columns":
            rule[key] = draw(st.one_of(st.lists(st.sampled_from(cols), min_size=1, max_size=3), WEIRD))
        elif key in ("ra", "dec"):
            rule[key] = draw(column)
        elif key == "circle":
            rule[key] = draw(st.one_of(st.lists(number, min_size=3, max_size=3), WEIRD))
        elif key == "bands":
            rule[key] = draw(st.one_of(st.lists(st.sampled_from("ugrizy"), min_size=1, max_size=3), WEIRD))
        else:
            rule[key] = draw(number)
    if draw(st.booleans()):
        rule[draw(st.one_of(st.sampled_from(RULE_KEYS).flatmap(_typo), st.text(max_size=6)))] = draw(WEIRD)
    return draw(st.one_of(st.just(rule), st.just(rule), st.just(rule), WEIRD))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


@st.composite
def structural(draw: st.DrawFn, data: dict[str, Any]) -> Any:
    """The plan's data with one or two structural mutations."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 2))):
        if not isinstance(data, dict):
            break
        paths = [p for p in _paths(data) if p]
        op = draw(
            st.sampled_from(
                [
                    "drop",
                    "replace",
                    "typo-key",
                    "unknown-key",
                    "date",
                    "duplicate-checkpoint",
                    "depends-unknown",
                    "cycle",
                    "kind",
                    "rule",
                    "huge",
                    "not-a-mapping",
                ]
            )
        )
        checkpoints = data.get("checkpoints") if isinstance(data.get("checkpoints"), list) else None
        cps = [c for c in checkpoints or [] if isinstance(c, dict)]
        items = [
            i for c in cps if isinstance(c.get("items"), list) for i in c["items"] if isinstance(i, dict)
        ]
        if op == "drop":
            path = draw(st.sampled_from(paths))
            del _at(data, path[:-1])[path[-1]]
        elif op == "replace":
            path = draw(st.sampled_from(paths))
            _at(data, path[:-1])[path[-1]] = draw(WEIRD)
        elif op in ("typo-key", "unknown-key"):
            mappings = [p for p in _paths(data) if isinstance(_at(data, p), dict) and _at(data, p)]
            node = _at(data, draw(st.sampled_from(mappings)))
            key = draw(st.sampled_from(sorted(map(str, node))))
            new = draw(_typo(key)) if op == "typo-key" else draw(st.text(min_size=1, max_size=12))
            node[new] = node.pop(key) if op == "typo-key" and draw(st.booleans()) else draw(WEIRD)
        elif op == "date" and cps:
            c = draw(st.sampled_from(cps))
            c["deadline"] = draw(WEIRD)
        elif op == "duplicate-checkpoint" and len(cps) > 1:
            a, b = draw(st.permutations(cps))[:2]
            a["name"] = b.get("name")
        elif op == "depends-unknown" and cps:
            c = draw(st.sampled_from(cps))
            name = draw(st.one_of(st.sampled_from(["catalog", "image", "portal "]), st.text(max_size=10)))
            c["depends_on"] = [*(c.get("depends_on") or []), name]
        elif op == "cycle" and len(cps) > 1:
            c = draw(st.sampled_from(cps))
            last = cps[-1].get("name")
            c["depends_on"] = [*(c.get("depends_on") or []), last]
        elif op == "kind" and items:
            i = draw(st.sampled_from(items))
            i["kind"] = draw(
                st.one_of(st.sampled_from(["catalogue", "manuel", "dataset", "Files", "hips "]), WEIRD)
            )
        elif op == "rule" and items:
            i = draw(st.sampled_from(items))
            i["rules"] = draw(st.one_of(st.lists(rules(), min_size=1, max_size=2), WEIRD))
        elif op == "huge":
            path = draw(st.sampled_from(paths))
            _at(data, path[:-1])[path[-1]] = draw(
                st.sampled_from(["€" * 200_000, 10**40, list(range(50_000)), {"k" * 500: "v" * 500}])
            )
        elif op == "not-a-mapping":
            data = draw(
                st.one_of(st.lists(st.text(max_size=5), max_size=3), st.text(max_size=20), st.integers())
            )
    return data


PLAIN_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=64,
).filter(lambda n: n == n.strip() and n not in (".", ".."))
VALID_RULES = [
    {"rule": "row_count", "min": 1},
    {"rule": "range", "column": "psfFlux", "min": -1e12},
    {"rule": "finite", "columns": ["coord_ra", "coord_dec"]},
    {"rule": "unique", "columns": ["sourceId"]},
    {"rule": "footprint", "ra_min": 149.0, "ra_max": 151.0, "dec_min": 1.0, "dec_max": 3.0},
    {"rule": "range", "column": "nosuchcolumn", "min": 0},
]


@st.composite
def gentle(draw: st.DrawFn, data: dict[str, Any]) -> Any:
    """The plan's data changed in ways a plan may be changed: it should still load, and every command work."""
    data = copy.deepcopy(data)
    cps = data["checkpoints"]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(
                [
                    "drop",
                    "text",
                    "date",
                    "duration",
                    "rename",
                    "remove",
                    "reorder",
                    "rule",
                    "location",
                    "item",
                ]
            )
        )
        optional = [
            p
            for p in _paths(data)
            if p
            and p[-1]
            in ("description", "title", "owner", "duration_days", "milestones", "group_by", "expected")
        ]
        if op == "drop" and optional:
            path = draw(st.sampled_from(optional))
            del _at(data, path[:-1])[path[-1]]
        elif op == "text":
            texts = [
                p for p in _paths(data) if p and p[-1] in ("description", "title", "role", "team", "check")
            ]
            path = draw(st.sampled_from(texts))
            _at(data, path[:-1])[path[-1]] = (
                draw(PLAIN_TEXT.filter(str.strip)) if path[-1] == "check" else draw(PLAIN_TEXT)
            )
        elif op == "date" and cps:
            draw(st.sampled_from(cps))["deadline"] = draw(
                st.dates(datetime.date(1900, 1, 1), datetime.date(2999, 12, 31))
            ).isoformat()
        elif op == "duration" and cps:
            draw(st.sampled_from(cps))["duration_days"] = draw(st.integers(0, 3650))
        elif op == "rename" and cps:
            c = draw(st.sampled_from(cps))
            old, new = c["name"], draw(NAMES)
            if new in [x["name"] for x in cps] + [m["name"] for m in data.get("milestones", [])]:
                continue
            c["name"] = new
            for step in cps + data.get("milestones", []):
                step["depends_on"] = [new if d == old else d for d in step.get("depends_on", [])]
        elif op == "remove" and len(cps) > 1:
            gone = cps.pop(draw(st.integers(0, len(cps) - 1)))["name"]
            for step in cps + data.get("milestones", []):
                step["depends_on"] = [d for d in step.get("depends_on", []) if d != gone]
        elif op == "reorder":
            data["checkpoints"] = cps = draw(st.permutations(cps))
        elif op == "rule":
            catalog = [i for c in cps for i in c.get("items", []) if i["kind"] == "catalog"]
            if catalog:
                draw(st.sampled_from(catalog))["rules"] = draw(
                    st.lists(st.sampled_from(VALID_RULES), max_size=3)
                )
        elif op == "location":
            located = [i for c in cps for i in c.get("items", []) if i.get("location")]
            if located:
                draw(st.sampled_from(located))["location"] = draw(
                    st.sampled_from(
                        ["DP2/catalogs/Visit/", "DP2/nowhere/", "DP2/hips/color/", "DP2/catalogs/"]
                    )
                )
        elif op == "item" and cps:
            c = draw(st.sampled_from(cps))
            c.setdefault("items", []).append(
                draw(
                    st.sampled_from(
                        [
                            {
                                "name": "docs",
                                "kind": "files",
                                "location": "DP2/hips/color",
                                "patterns": {"**/*.fits": 3},
                            },
                            {
                                "name": "visits",
                                "kind": "catalog",
                                "location": "DP2/catalogs/Visit",
                                "schema_file": "dp1",
                                "table": "Visit",
                            },
                            {
                                "name": "raws",
                                "kind": "datasets",
                                "dataset_types": ["raw"],
                                "collections": ["SynthCam/raw/all"],
                            },
                            {"name": "look", "kind": "manual", "check": "someone looked"},
                        ]
                    )
                )
            )
            names = [i["name"] for i in c["items"]]
            if len(names) != len(set(names)):
                c["items"].pop()
    return data


@st.composite
def textual(draw: st.DrawFn, text: str) -> bytes:
    """The plan's text with one mutation of the text itself."""
    op = draw(st.sampled_from(["truncate", "insert", "delete-line", "duplicate-line", "bytes", "none"]))
    lines = text.splitlines(keepends=True)
    if op == "truncate":
        return text[: draw(st.integers(0, len(text)))].encode()
    if op == "insert":
        at = draw(st.integers(0, len(text)))
        junk = draw(
            st.one_of(st.text(max_size=12), st.text(alphabet=":-[]{}'\"\t\n#&*!|>%@`\\ ?,", max_size=8))
        )
        return (text[:at] + junk + text[at:]).encode("utf-8", "surrogatepass")
    if op == "delete-line" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        return "".join(lines[:i] + lines[i + 1 :]).encode()
    if op == "duplicate-line" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        return "".join(lines[: i + 1] + lines[i:]).encode()
    if op == "bytes":
        raw = bytearray(text.encode())
        at = draw(st.integers(0, len(raw) - 1))
        raw[at] = draw(st.sampled_from([0xFF, 0xFE, 0xC3, 0x00, 0x80, 0xED]))
        return bytes(raw)
    return text.encode()


@st.composite
def mutated_plans(draw: st.DrawFn, text: str) -> bytes:
    """A real plan mutated in its structure, its text, or both."""
    how = draw(st.sampled_from(["gentle", "gentle", "gentle", "structure", "text", "both"]))
    if how == "text":
        return draw(textual(text))
    if how == "gentle":
        return yaml.safe_dump(
            draw(gentle(yaml.safe_load(text))), sort_keys=False, allow_unicode=True
        ).encode()
    data = draw(structural(yaml.safe_load(text)))
    dumped = yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()), width=100)
    return draw(textual(dumped)) if how == "both" else dumped.encode()


# --- what a refusal must look like ------------------------------------------------------------------------------


def assert_clear(message: str, path: Path) -> None:
    """The message names the file (and, for each problem, the line and the fix)."""
    assert str(path) in message, message
    assert "Traceback" not in message
    lines = message.splitlines()
    if lines[0] == "Invalid release plan:":
        for line in lines[1:]:
            if line.strip().startswith("… and"):
                continue
            assert re.match(rf"\s+{re.escape(str(path))}:\d+: \S.* — \S", line), line
    else:
        assert " — " in message, message


def _ops(rel: Release) -> list[tuple[str, Callable[[], Any]]]:
    """Every entry point of a release that the CLI's commands call, with plausible arguments."""
    cps = [c.name for c in rel.plan.checkpoints] or ["catalogs"]
    first = cps[0]
    people = [p.name for p in rel.plan.people] or ["release-manager"]
    return [
        ("status", lambda: rel.status(datetime.date(2027, 2, 1))),
        ("report", lambda: html_report(rel, datetime.date(2027, 2, 1))),
        ("schedule", lambda: rel.schedule(datetime.date(2027, 2, 1))),
        ("check", lambda: rel.check(first)),
        ("confirm", lambda: rel.confirm(first, "ingest-config", people[0], "agreed")),
        ("waive", lambda: rel.waive(first, "object-table:types", people[0], "fuzz")),
        ("signoff", lambda: rel.signoff(first, people[-1])),
        ("ship", lambda: rel.ship(first, people[0])),
        ("ready", lambda: rel.mark_ready(people[-1])),
        ("ready --dry-run", lambda: rel.blockers()),
        ("reopen", lambda: rel.reopen(first, people[0], "fuzz")),
        ("finding add", lambda: rel.add_finding("minor", first, "found by fuzzing", people[0])),
        (
            "finding to-check",
            lambda: rel.finding_to_check(
                1,
                people[0],
                [{"rule": "range", "column": "psfFlux", "min": -1e9}],
                {"table": "Source"},
                "fuzz",
            ),
        ),
        ("finding close", lambda: rel.close_finding(99, people[0], "done")),
    ]


# --- the tests ---------------------------------------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_mutated_plans_load_or_are_refused_clearly(setup: Setup, data: st.DataObject) -> None:
    """load_plan on any mutation: a valid plan, or a PlanError naming the file, each problem's line and fix."""
    raw = data.draw(mutated_plans(setup.text))
    path = setup.root / "load" / f"{RELEASE}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    try:
        plan = load_plan(path)
    except PlanError as exc:
        assert_clear(str(exc), path)
    else:
        assert plan.release  # a plan that loads is one the release commands can use


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_every_entry_point_refuses_a_malformed_plan_and_changes_nothing(
    setup: Setup, data: st.DataObject
) -> None:
    raw = data.draw(mutated_plans(setup.text))
    before = fingerprint(setup)
    setup.plan_path.write_bytes(raw)
    try:
        try:
            load_plan(setup.plan_path)
        except PlanError as exc:
            refusal: str | None = str(exc)
        else:
            refusal = None
        event("plan refused" if refusal is not None else "plan loads")
        if refusal is not None:
            # Every way in refuses the same plan with the same message, and nothing changes.
            with pytest.raises(PlanError) as opened:
                Release.open(RELEASE, setup.releases)
            assert str(opened.value) == refusal
            for args in (
                ("release", "status", RELEASE),
                ("release", "check", RELEASE, "--checkpoint", "catalogs"),
                ("release", "signoff", RELEASE, "catalogs", "--by", "release-manager"),
                (
                    "release",
                    "finding",
                    "to-check",
                    RELEASE,
                    "1",
                    "--by",
                    "release-manager",
                    "--table",
                    "Source",
                    "--rule",
                    "{rule: range, column: psfFlux, min: 0}",
                ),
            ):
                result = cli(*args, "--plans", setup.releases)
                assert result.exit_code == 1, (args, result.output)
                assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
                out = " ".join(result.output.split())
                assert "PlanError" in out and str(setup.plan_path) in out, result.output
                assert "Traceback" not in result.output
            assert fingerprint(setup) == before
            return
        # A plan that loads: each entry point works or refuses with a porter error, and a refusal changes nothing.
        try:
            rel = Release.open(RELEASE, setup.releases)
        except PorterError as exc:  # e.g. a repository: that is no repository
            event(f"open: {type(exc).__name__}")
            assert fingerprint(setup) == before, exc
            return
        try:
            for name, op in _ops(rel):
                state = fingerprint(setup)
                try:
                    op()
                except PorterError as exc:
                    event(f"{name}: {type(exc).__name__}")
                    assert str(exc), name
                    assert fingerprint(setup) == state, (name, exc)
        finally:
            rel.close()
            (setup.releases / "corpus" / "fuzz.yaml").unlink(missing_ok=True)
    finally:
        setup.restore()


# --- what the fuzzing found, each pinned down ---------------------------------------------------------------


def _edit(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


CASES: list[tuple[str, Callable[[str], str | bytes], str]] = [
    # PyYAML builds dates itself and raised a bare ValueError for an impossible one.
    (
        "impossible date",
        lambda t: _edit(t, "deadline: '2027-01-25'", "deadline: 2027-13-45"),
        r":\d+: checkpoints.0.deadline: '2027-13-45' is not a date \(month must be in 1..12\) — write dates as YYYY-MM-DD",
    ),
    # pydantic took a number as seconds since 1970: 86400 was 1970-01-02.
    (
        "number for a date",
        lambda t: _edit(t, "deadline: '2027-01-25'", "deadline: 86400"),
        r":\d+: checkpoints.0.deadline: 86400 is not a date — write dates as YYYY-MM-DD",
    ),
    # Far dates overflowed datetime in the schedule (status, ready) instead of being refused.
    (
        "far future",
        lambda t: _edit(t, "deadline: '2027-01-25'", "deadline: '9999-12-31'"),
        r"checkpoints.0.deadline: 9999-12-31 is not between 1900 and 2999 — check the year",
    ),
    (
        "huge duration",
        lambda t: _edit(t, "duration_days: 14", "duration_days: 100000000000000000000"),
        r"checkpoints.0.duration_days: .* — use a number ≤ 3650",
    ),
    (
        "true for a number",
        lambda t: _edit(t, "duration_days: 14", "duration_days: yes"),
        r"checkpoints.0.duration_days: Input should be a valid integer — write a whole number",
    ),
    # YAML keeps the last of two equal keys without a word.
    (
        "duplicate key",
        lambda t: _edit(t, "  from_team: Pipelines\n", "  from_team: Pipelines\n  from_team: Catalogs\n"),
        r":\d+: not valid YAML \(found the key 'from_team' twice \(first at line \d+\)\) — keep one of them",
    ),
    (
        "typo of a field",
        lambda t: _edit(t, "  to_team: Catalogs", "  to_tean: Catalogs"),
        r"checkpoints.0.to_tean: Extra inputs are not permitted — remove it, or check its spelling. Did you mean 'to_team'",
    ),
    (
        "string for a list",
        lambda t: _edit(t, "collections:\n- DP2/runs\npeople", "collections: DP2/runs\npeople"),
        r":4: collections: Input should be a valid list — write a YAML list",
    ),
    (
        "unknown kind",
        lambda t: _edit(t, "kind: manual", "kind: manuel"),
        r"checkpoints.0.items.2.kind: .* — use one of the allowed values. Did you mean 'manual'",
    ),
    # Names go into file names and the audit log's 64-character columns.
    (
        "slash in a name",
        lambda t: t.replace("name: catalogs", "name: ../catalogs").replace("- catalogs", "- ../catalogs"),
        r"checkpoints.0.name: '../catalogs' is not a usable name",
    ),
    (
        "long name",
        lambda t: t.replace("name: catalogs", "name: " + "c" * 65).replace("- catalogs", "- " + "c" * 65),
        r"checkpoints.0.name: String should have at most 64 characters — shorten it to at most 64 characters",
    ),
    (
        "duplicate checkpoint",
        lambda t: _edit(t, "- name: images", "- name: catalogs"),
        r":\d+: checkpoints.1.name: checkpoint name 'catalogs' is used twice \(also checkpoints.0\) — give each checkpoint its own name",
    ),
    (
        "unknown dependency",
        lambda t: _edit(t, "  - catalogs\n", "  - catalog\n"),
        r"checkpoints.3.depends_on.0: 'data-engineering' depends on 'catalog', which is not a checkpoint. Did you mean 'catalogs'",
    ),
    (
        "cycle",
        lambda t: _edit(
            t, "  duration_days: 14\n  signers:", "  duration_days: 14\n  depends_on: [community]\n  signers:"
        ),
        r"checkpoints.0.depends_on: checkpoint dependencies form a cycle: catalogs → community → portal → data-engineering → catalogs — remove one",
    ),
    # Rules were taken as written and failed in every check afterwards.
    (
        "misspelt rule",
        lambda t: _edit(
            t, "    table: Source\n", "    table: Source\n    rules: [{rule: rang, column: x}]\n"
        ),
        r"checkpoints.0.items.1.rules.0: unknown rule 'rang'. Did you mean 'range'\? — use one of",
    ),
    (
        "rule without its column",
        lambda t: _edit(t, "    table: Source\n", "    table: Source\n    rules: [{rule: range, min: 0}]\n"),
        r"rules.0: rule \{rule: 'range', min: 0\}: range needs 'column' — add it, e.g. \{rule: range",
    ),
    (
        "a field of another kind",
        lambda t: _edit(t, "    table: Source\n", "    table: Source\n    patterns: {'*.parquet': 2}\n"),
        r"checkpoints.0.items.1.patterns: a 'catalog' item does not use 'patterns' \(a 'files' item does\) — remove it",
    ),
    (
        "nested too deeply",
        lambda t: t + "extra: " + "[" * 20_000 + "]" * 20_000 + "\n",
        r"nested too deeply to be a release plan — ",
    ),
    (
        "not UTF-8",
        lambda t: t.encode().replace(b"Pipelines", b"Pipe\xfflines", 1),
        r":\d+: not UTF-8 text \(byte 0xff\) — save the plan as UTF-8",
    ),
    (
        "NUL",
        lambda t: _edit(t, "Pipelines", "Pipe\x00lines"),
        r":\d+: not valid YAML \(the character U\+0000 is not allowed in YAML\) — remove it",
    ),
    (
        "escaped NUL",
        lambda t: _edit(t, "repository: ", 'repository: "a\\0b" #'),
        r"repository: 'a\\x00b' holds control characters — remove them",
    ),
    (
        "a list",
        lambda t: "- release: DP2\n",
        r":1: a release plan is a YAML mapping, not a list — start it with release:",
    ),
    ("empty", lambda t: "", r": the file is empty — write a plan"),
    (
        "truncated",
        lambda t: t[: t.index("- name: hips")] + "- name: hi",
        r"checkpoints.2.from_team: Field required — add it",
    ),
    (
        "a tag",
        lambda t: _edit(t, "duration_days: 14", "duration_days: !!int fourteen"),
        r":\d+: not valid YAML \(cannot read 'fourteen' as tag:yaml.org,2002:int",
    ),
]


@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_what_fuzzing_found(setup: Setup, edit: Callable[[str], str | bytes], message: str) -> None:
    path = setup.root / "cases" / f"{RELEASE}.yaml"
    path.parent.mkdir(exist_ok=True)
    changed = edit(setup.text)
    path.write_bytes(changed if isinstance(changed, bytes) else changed.encode())
    with pytest.raises(PlanError) as refused:
        load_plan(path)
    assert_clear(str(refused.value), path)
    assert re.search(message, str(refused.value)), str(refused.value)


@pytest.mark.parametrize(
    ("command", "edit"),
    [
        (["status", RELEASE], lambda t: _edit(t, "deadline: '2027-01-25'", "deadline: 2027-13-45")),
        (
            ["check", RELEASE],
            lambda t: _edit(t, "  from_team: Pipelines\n", "  from_team: Pipelines\n  from_team: X\n"),
        ),
        (["signoff", RELEASE, "catalogs", "--by", "release-manager"], lambda t: t[: len(t) // 3]),
        (
            ["ready", RELEASE, "--by", "decider"],
            lambda t: _edit(t, "release: DP2\n", "release: DP2\ntest_period_days: 1e400\n"),
        ),
        (["ship", RELEASE, "catalogs", "--by", "pipelines-lead"], lambda t: "just text\n"),
        (["waive", RELEASE, "images", "x:y", "--by", "decider", "--reason", "r"], lambda t: t + "\x85\x00"),
        (["init", "DP3", "--like", RELEASE], lambda t: _edit(t, "kind: manual", "kind: [manual]")),
    ],
    ids=["status", "check", "signoff", "ready", "ship", "waive", "init --like"],
)
def test_cli_prints_the_error_without_a_traceback(
    setup: Setup, command: list[str], edit: Callable[[str], str]
) -> None:
    """Through the real command in its own process: exit status 1, the error on stderr naming the plan file."""
    before = fingerprint(setup)
    setup.plan_path.write_text(edit(setup.text))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "porter.cli", "release", *command, "--plans", str(setup.releases)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
        )
    finally:
        setup.restore()
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    err = " ".join(result.stderr.split())
    assert "error: PlanError" in err and str(setup.plan_path) in err, result.stderr
    assert " — " in err
    assert fingerprint(setup) == before
    assert not (setup.releases / "DP3.yaml").exists()


def test_a_broken_plan_beside_a_release_does_not_break_its_report(setup: Setup) -> None:
    """The HTML report compares every plan in the directory; one that cannot be read is left out."""
    other = setup.releases / "BROKEN.yaml"
    for text in (
        b"release: [",
        b"\xff\xfe",
        b"release: X\ncheckpoints: []\nrepository: r\ndeadline: 2027-13-45\n",
    ):
        other.write_bytes(text)
        rel = Release.open(RELEASE, setup.releases)
        try:
            assert "<html" in html_report(rel)
        finally:
            rel.close()
    other.unlink()


# --- malformed rules are refused when a finding becomes a corpus check ----------------------------------------


SOURCE_COLUMNS = [c.name for c in table_of(load_schema("dp1"), "Source").columns]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rule=rules([*SOURCE_COLUMNS[:40], "x", "psfFlux "]), table=st.sampled_from(["Source", "Sourc", "Object"])
)
def test_a_corpus_rule_is_refused_when_added_or_runs(setup: Setup, rule: Any, table: str) -> None:
    """Either the rule is refused with nothing written (the corpus and the audit log as they were), or every
    later check runs it without an error result."""
    corpus = setup.releases / "corpus"
    before = fingerprint(setup)
    rel = Release.open(RELEASE, setup.releases)
    try:
        try:
            path = rel.finding_to_check(1, "release-manager", [rule], {"table": table}, "fuzz-rule")
        except PorterError as exc:
            assert " — " in str(exc) or "Did you mean" in str(exc) or "Name a" in str(exc), str(exc)
            assert fingerprint(setup) == before
            return
        try:
            results = rel.check("catalogs")
            ran = [r for r in results if r.check.startswith("corpus/fuzz-rule")]
            assert ran and all(r.status != "error" for r in ran), [
                (r.check, r.status, r.message) for r in ran
            ]
        finally:
            path.unlink()
    finally:
        rel.close()
        for leftover in corpus.glob("fuzz-rule*"):
            leftover.unlink()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{rule: rang, column: x}", "unknown rule 'rang'. Did you mean 'range'?"),
        ("{rule: range, column: psfFlux}", "range needs min, max or both"),
        ("{rule: range, column: psfFlx, min: 0}", "names column 'psfFlx'"),
        ("{rule: range, column: band, min: 0}", "needs a number column, and 'band' is char"),
        ("{rule: finite, columns: ra}", "columns must be a non-empty list of column names"),
        ("{rule: footprint, ra_min: 1, ra_max: 0, dec_min: 0, dec_max: 1}", "a minimum is above its maximum"),
        ("{rule: band_coverage, column: psfFlux, bands: [g]}", "column must contain {band}"),
        ("{rule: range, column: psfFlux, min: .nan}", "min must be a finite number"),
        ("{rule: range, column: psfFlux, min: 0, colour: red}", "range takes no 'colour'"),
        ("{rule: range, column: psfFlux, min: 0", "is not valid YAML"),
        ("[range, psfFlux]", "give a mapping with a 'rule' key"),
    ],
)
def test_finding_to_check_refuses_a_malformed_rule(setup: Setup, rule: str, message: str) -> None:
    before = fingerprint(setup)
    result = cli(
        "release",
        "finding",
        "to-check",
        RELEASE,
        "1",
        "--by",
        "release-manager",
        "--table",
        "Source",
        "--rule",
        rule,
        "--plans",
        setup.releases,
    )
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    out = " ".join(result.output.replace("│", " ").split())
    assert message in out, result.output
    assert fingerprint(setup) == before
    assert not list((setup.releases / "corpus").glob(f"{RELEASE}-finding-1*"))


def test_finding_to_check_refuses_what_matches_no_catalog(setup: Setup) -> None:
    rel = Release.open(RELEASE, setup.releases)
    try:
        with pytest.raises(
            PlanError, match=r"No catalog item of release DP2 matches table 'Sourse'.*Did you mean 'Source'"
        ):
            rel.finding_to_check(1, "release-manager", [{"rule": "row_count", "min": 1}], {"table": "Sourse"})
        with pytest.raises(PlanError, match=r"Corpus check name: '\.\./x' is not a usable name"):
            rel.finding_to_check(
                1, "release-manager", [{"rule": "row_count", "min": 1}], {"table": "Source"}, "../x"
            )
    finally:
        rel.close()
