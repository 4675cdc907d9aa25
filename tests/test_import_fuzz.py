"""Fuzzing ``Butler.import_`` with malformed export files: a porter error naming the problem, nothing written.

Hypothesis mutates the real export files in ``shared/data/butler-exports``
(base, datasets, spatial, the HSC RC2 v0 subset, LSSTCam, the ci_hsc skymap)
the ways a hand-edited, truncated or badly generated file goes wrong: lines
and whole records dropped, values of the wrong type, records duplicated,
files truncated, UUIDs, names, regions, times and timespans garbled, NUL
bytes, tabs and stray YAML syntax, version fields broken, deep nesting.
Each mutated file is imported into a fresh repository holding base.yaml.
The import must either succeed or raise a `porter.errors.PorterError` with a
message; after a failure every table of the database is exactly as before,
and the unmutated file still imports (nothing half-written is in the way).

Both backends run, PostgreSQL with fewer examples; no time bounds.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RepoFactory, load
from peer import EXPORTS
from porter import Butler
from porter.errors import ExportFormatError, PorterError
from test_query_fuzz import fingerprint

FILES = [
    "datasets.yaml",
    "spatial.yaml",
    "base.yaml",
    "hsc-rc2-subset-v0.yaml",
    "lsstcam-subset.yaml",
    "ci_hsc-subset-skymap.yaml",
]
"""The real export files small enough to import once per example (all but the 784 KB RC2 file)."""

TEXTS = {name: (EXPORTS / name).read_text() for name in FILES}


@pytest.fixture
def fresh(make_repo: RepoFactory, backend: str, tmp_path: Path) -> Callable[[], Butler]:
    """A function giving a new repository holding base.yaml for each example.

    On SQLite a template repository is copied (milliseconds); on PostgreSQL
    each is a new schema, which is why that backend runs fewer examples.
    """
    count = iter(range(1_000_000))
    opened: list[Butler] = []
    template = None
    if backend == "sqlite":
        template = tmp_path / "template"
        load(Butler.create(template), "base.yaml").close()

    def make() -> Butler:
        n = next(count)
        if template is not None:
            shutil.copytree(template, tmp_path / f"r{n}")
            butler = Butler(tmp_path / f"r{n}")
            opened.append(butler)
            return butler
        return load(make_repo(f"r{n}"), "base.yaml")

    yield make
    for butler in opened:
        butler.close()


def import_text(butler: Butler, text: str, as_file: bool, tmp_path: Path) -> dict[str, int]:
    """Import ``text`` from a stream or from a file (the two ways ``import_`` reads)."""
    if as_file:
        path = tmp_path / "mutated.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return butler.import_(path)
    return butler.import_(io.StringIO(text))


def check_import(butler: Butler, name: str, text: str, as_file: bool, tmp_path: Path) -> str:
    """Import a (mutated) file; on failure, check the message and that nothing changed. Returns the error class."""
    before = fingerprint(butler)
    try:
        import_text(butler, text, as_file, tmp_path)
    except PorterError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} with an empty message"
        assert fingerprint(butler) == before, f"a failed import of {name} changed the repository: {exc}"
        # Nothing half-written is left in the way: the real file still imports.
        if name != "base.yaml":  # base.yaml is in the repository already
            butler.import_(EXPORTS / name)
        return type(exc).__name__
    return ""


# --- mutations ----------------------------------------------------------------------------------------------

WRONG_VALUES = [
    "[1, 2]",
    "{a: 1}",
    "null",
    "~",
    "-1",
    "0",
    "99999999999999999999999",
    "-9223372036854775809",
    "9223372036854775807",
    "1.5",
    ".nan",
    ".inf",
    "true",
    "''",
    "'x'",
    "'\x00'",
    '"\\0"',
    '"\\ud800"',
    "2021-01-01",
    "2021-13-45",
    "0x1F",
    "!uuid 'not-a-uuid'",
    "!uuid ''",
    "!uuid",
    "!butler_time/tai/iso '2021-13-45 00:00:00'",
    "!butler_time/tai/iso '0001-01-01 00:00:00'",
    "!butler_time/tai/iso '9999-12-31 23:59:59'",
    "!butler_time/tai/iso 12",
    "!lsst.daf.butler.Timespan {begin: null, end: garbage}",
    "!lsst.daf.butler.Timespan {begin: '2021-01-02 00:00:00', end: '2021-01-01 00:00:00'}",
    "!lsst.daf.butler.Timespan EMPTY",
    "!lsst.daf.butler.Timespan [1, 2]",
    "!<lsst.sphgeom.ConvexPolygon> {encoded: 70zz}",
    "!<lsst.sphgeom.ConvexPolygon> {encoded: '00'}",
    "!<lsst.sphgeom.ConvexPolygon> {encoded: 12}",
    "!<lsst.sphgeom.Circle> {}",
    "!!binary 'zz'",
    "!!python/object:os.system 'echo hi'",
    "!nosuchtag x",
    "&anchor x",
    "*alias",
    "[",
    "{",
    "'",
    '"',
    "|",
    ">",
    "x: y: z",
]
TOKENS = [
    "visit",
    "detector",
    "exposure",
    "instrument",
    "physical_filter",
    "Cam1",
    "HSC",
    "LSSTCam",
    "bias",
    "flat",
    "imported_g",
    "dimension",
    "dataset",
    "run",
    "collection",
    "RUN",
    "CALIBRATION",
    "records",
    "data_id",
    "dataset_id",
    "encoded",
    "-",
    "1",
    "e",
    ":",
    "'",
]
REPLACEMENTS = [
    "nosuch",
    "",
    "htm7",
    "visit",
    "Cam2",
    "0",
    "9" * 25,
    "TAGGED",
    "CHAINED",
    "\x00",
    "é",
    "dataset_type",
]
CHARS = ["\x00", "\t", "#", ":", "'", '"', "é", "漢", "\ufeff", " - ", "!", "&", "*", "\r", "\\", "{", "["]


def _blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) of every sequence item ("- …" and its more-indented lines): records, data entries."""
    out = []
    for i, line in enumerate(lines):
        stripped = line.lstrip(" ")
        if stripped.startswith("-"):
            indent = len(line) - len(stripped)
            j = i + 1
            while j < len(lines) and (
                len(lines[j]) - len(lines[j].lstrip(" ")) > indent or not lines[j].strip()
            ):
                j += 1
            out.append((i, j))
    return out


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, str]:
    """A real export file after one to four edits; returns (file name, text)."""
    name = draw(st.sampled_from(FILES))
    lines = TEXTS[name].splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        kind = draw(st.integers(0, 10))
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if kind == 0:  # drop a line (a key, a record's field, a header)
            del lines[i]
        elif kind == 1 and ":" in line:  # a value of the wrong type or form
            key = line.split(":", 1)[0]
            lines[i] = f"{key}: {draw(st.sampled_from(WRONG_VALUES))}"
        elif kind == 2:  # drop a whole record / data entry
            blocks = _blocks(lines)
            if blocks:
                start, end = draw(st.sampled_from(blocks))
                del lines[start:end]
        elif kind == 3:  # duplicate a record / data entry (same keys, maybe edited later)
            blocks = _blocks(lines)
            if blocks:
                start, end = draw(st.sampled_from(blocks))
                lines[end:end] = lines[start:end]
        elif kind == 4:  # truncate the file
            lines = [*lines[:i], line[: draw(st.integers(0, len(line)))]]
        elif kind == 5:  # replace a name or token
            token = draw(st.sampled_from(TOKENS))
            lines[i] = line.replace(token, draw(st.sampled_from(REPLACEMENTS)), 1)
        elif kind == 6:  # a stray character
            p = draw(st.integers(0, len(line)))
            lines[i] = line[:p] + draw(st.one_of(st.sampled_from(CHARS), st.characters())) + line[p:]
        elif kind == 7:  # garble a hex region or UUID: drop, flip or add characters
            p = draw(st.integers(0, len(line)))
            lines[i] = line[:p] + draw(st.sampled_from(["", "0", "g", "00", "-"])) + line[p + 1 :]
        elif kind == 8:  # re-indent a line
            lines[i] = " " * draw(st.integers(0, 12)) + line.lstrip(" ")
        elif kind == 9:  # break a header field
            field = draw(st.sampled_from(["version", "universe_version", "universe_namespace", "data"]))
            value = draw(
                st.sampled_from(["2.0", "0.9", "1.1.0", "x", "-1", ".nan", "[]", "{}", "null", "99" * 20])
            )
            lines = [f"{field}: {value}" if ln.startswith(f"{field}:") else ln for ln in lines]
        else:  # move a line elsewhere
            moved = lines.pop(i)
            lines.insert(draw(st.integers(0, len(lines))), moved)
    return name, "\n".join(lines) + "\n"


def _budget(backend: str, sqlite: int, postgresql: int) -> dict[str, Any]:
    """Hypothesis settings other than the deadline: examples per backend, health checks off for fixtures."""
    return {
        "max_examples": postgresql if backend == "postgresql" else sqlite,
        "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    }


def test_mutated_exports(fresh: Callable[[], Butler], backend: str, tmp_path: Path) -> None:
    """Mutated real export files: imported, or refused with a porter error and nothing written."""

    @settings(deadline=None, **_budget(backend, 200, 30))
    @given(mutated_files(), st.booleans())
    def body(case: tuple[str, str], as_file: bool) -> None:
        name, text = case
        check_import(fresh(), name, text, as_file, tmp_path)

    body()


@st.composite
def broken_documents(draw: st.DrawFn) -> str:
    """Whole files that are not export files: garbage, other YAML, deep nesting, huge or binary text."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.text(max_size=200))
    if kind == 1:
        depth = draw(st.integers(1, 20_000))
        return "data: " + "[" * depth + "]" * depth + "\nversion: 1.0.0\n"
    if kind == 2:
        depth = draw(st.integers(1, 5_000))
        return "".join("  " * i + "- \n" for i in range(depth))
    if kind == 3:
        return (
            draw(st.sampled_from(["", "---\n", "null\n", "[]\n", "42\n", "version: 1\n", "data: []\n"])) + ""
        )
    if kind == 4:
        return "version: 1.0.0\ndata:\n" + "- {type: run, name: r}\n" * draw(st.integers(1, 2000))
    if kind == 5:
        return "description: x\nversion: 1.0.2\ndata:\n- " + draw(st.text(max_size=100)) + "\n"
    return draw(st.binary(max_size=200)).decode("latin-1")


def test_broken_documents(fresh: Callable[[], Butler], backend: str, tmp_path: Path) -> None:
    """Files that are not export files at all: a porter error and nothing written, never a traceback."""
    butler = fresh()

    @settings(deadline=None, **_budget(backend, 150, 30))
    @given(broken_documents(), st.booleans())
    def body(text: str, as_file: bool) -> None:
        before = fingerprint(butler)
        try:
            import_text(butler, text, as_file, tmp_path)
        except PorterError as exc:
            assert str(exc).strip()
            assert fingerprint(butler) == before
        else:
            butler.registry.reset_caches()

    body()


# --- what the fuzzing found -------------------------------------------------------------------------------------


def _replace(name: str, old: str, new: str, count: int = 1) -> str:
    text = TEXTS[name]
    assert old in text, old
    return text.replace(old, new, count)


FOUND = [
    pytest.param(
        "spatial.yaml",
        ("    id: 1\n    name: '1'", "    id: 99999999999999999999999\n    name: '1'"),
        "is out of range",
        id="integer beyond 64 bits",
    ),
    pytest.param(
        "datasets.yaml",
        ("          detector: 1\n", "          detector: !butler_time/tai/iso '0001-01-01 00:00:00'\n"),
        "outside the times porter stores",
        id="time beyond 64-bit nanoseconds",
    ),
    pytest.param(
        "spatial.yaml",
        ("    target_name: test_target", '    target_name: "test\\0target"'),
        "NUL character",
        id="NUL in a string",
    ),
    pytest.param(
        "spatial.yaml",
        ("      encoded: 704d", "      encoded: [1, 2]\n      x: 704d"),
        "encoded",
        id="region 'encoded' not a string",
    ),
    pytest.param(
        "spatial.yaml",
        ("universe_version: 7", "universe_version: .nan"),
        "universe_version",
        id="universe_version not a number",
    ),
    pytest.param(
        "base.yaml",
        ("        name: Cam1\n", "        9999999999999999999999999: Cam1\n"),
        "9999999999999999999999999",
        id="a number as a field name",
    ),
]


@pytest.mark.parametrize(("name", "edit", "fragment"), FOUND)
def test_found_by_fuzzing(
    fresh: Callable[[], Butler], name: str, edit: tuple[str, str], fragment: str, tmp_path: Path
) -> None:
    """Each was a TypeError, ValueError, OverflowError or driver error; now an ExportFormatError saying what."""
    butler = fresh()
    text = _replace(name, *edit)
    for as_file in (False, True):
        before = fingerprint(butler)
        with pytest.raises(ExportFormatError) as info:
            import_text(butler, text, as_file, tmp_path)
        assert fragment in str(info.value), str(info.value)
        assert fingerprint(butler) == before
