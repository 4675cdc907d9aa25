"""The project's own promises: the README's two commands, CI running the same one after lint and type
checks, DESIGN.md's import arrows, and tests that assert behaviour rather than elapsed time."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [b.strip() for b in blocks]


def test_readme_has_exactly_two_one_line_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "porter demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci.splitlines()


def test_ci_checks_lint_format_and_types_before_the_tests() -> None:
    """.ci/run fails on ruff, the formatter or mypy, and runs them first: CI reads pytest's closing line."""
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    assert "set -euo pipefail" in commands  # a failing check stops the run, red
    checks = [
        ".venv/bin/ruff check src tests bench",
        ".venv/bin/ruff format --check src tests bench",
        ".venv/bin/mypy",
    ]
    tests = commands.index(quick_start_commands()[1])
    assert all(commands.index(c) < tests for c in checks)
    assert tests == len(commands) - 1  # nothing prints after pytest


# --- The import arrows -------------------------------------------------------------------------

SRC = ROOT / "src"

LAYERS: dict[str, float] = {
    # Bottom: porter's top-level modules, which every layer may use: the exception family, the GC and
    # lazy-name helpers and the image types (numpy only), and the names the facade defines itself.
    "porter.errors": 0,
    "porter._gc": 0,
    "porter._lazy": 0,
    "porter._stop_points": 0,  # named moments a test may stop a writer at (PORTER_STOP_AT), for kill tests
    "porter._mounts": 0,  # which filesystem a path is on, for naming the full one (StorageFullError)
    "porter._processes": 0,  # process identities that survive PID reuse (datastore writers, pipeline workers)
    "porter.images": 0,
    "porter": 0,
    "porter.dimensions": 1,
    # core: the types the registry, the datastore, the server and the remote client share (dataset types
    # and refs, collection types and info, their wire format).  It sits above the dimensions, not below:
    # a DatasetRef's data ID is a DataCoordinate, a DatasetType's dimensions a DimensionGroup.  It imports
    # no SQLAlchemy, so RemoteButler (butler) can use it without the database layer.
    "porter.core": 1.5,
    "porter.registry": 2,
    "porter.datastore": 2,
    "porter.butler": 3,
    "porter.verify": 4,
    "porter.schema": 4,
    "porter.pipeline": 4,
    # The server wraps a DirectButler (above the butler, whose RemoteButler only speaks HTTP to it)
    # and is served by the CLI (below it).
    "porter.server": 4,
    "porter.release": 5,
    "porter.cli": 6,
    "porter.web": 6,
    "porter.demo": 6,  # the demo survey and its rehearsal are run by `porter demo-survey`
}
"""Each part of porter (a package under ``porter``, or one of its top-level modules) and its layer.

DESIGN.md's arrows: cli/web → release → verify/schema/pipeline → butler → registry/datastore →
core → dimensions → porter's top-level modules.  A module may import its own layer or any below it.  A new package has no layer
until it is added here: the test fails and says so, so each one is placed on purpose.
"""

KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    # (importing module, imported module) → why it is still here.  Each is a private module of another
    # package whose owner is changing these files; the fix is to export the name from the package
    # (or use the export that already exists) and import it from there.  Remove an entry with its fix:
    # the test fails on entries that no longer happen, so this list only shrinks.
    ("porter.cli._demo_survey", "porter.demo._rehearsal"): "rehearse_release: not exported by porter.demo",
    ("porter.cli._demo_survey", "porter.demo._checks"): "astrometric_residuals: not exported by porter.demo",
    ("porter.cli._pipeline_commands", "porter.pipeline._report"): "unfinished: not exported",
    ("porter.cli._release_commands", "porter.release._report"): "html_report: not exported",
    ("porter.cli._release_commands", "porter.release._manifest"): "diff_manifests: not exported",
    ("porter.demo._rehearsal", "porter.release._report"): "html_report: not exported by porter.release",
    ("porter.release._manifest", "porter.datastore._checksum"): "checksum_stream: not exported",
    ("porter.release._manifest", "porter.schema._postgres_source"): "table fingerprints: not exported",
    ("porter.schema._conformance", "porter.datastore._uri"): "s3_endpoint_url: not exported",
}


@dataclass(frozen=True)
class Import:
    """One module's import of another porter module (or of a name the facade ``porter`` defines)."""

    path: Path
    line: int
    importer: str
    target: str

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}: {self.importer} imports {self.target}"


def _module_of(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, src: Path) -> bool:
    base = src.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _facade_lazy_names(src: Path) -> dict[str, str]:
    """``porter/__init__.py``'s ``_LAZY`` table: public name → the package that defines it."""
    tree = ast.parse((src / "porter" / "__init__.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign) and "_LAZY" in ast.unparse(node).split("=")[0]:
            assert node.value is not None
            table = ast.literal_eval(node.value)
            return {name: "porter" + module for name, module in table.items()}
    raise AssertionError("porter/__init__.py has no _LAZY table")


def _targets(node: ast.ImportFrom, module: str, facade: dict[str, str], src: Path) -> set[str]:
    """What ``from module import a, b`` reaches: submodules, private names, or the module itself."""
    out: set[str] = set()
    for alias in node.names:
        full = f"{module}.{alias.name}"
        if _is_module(full, src) or (alias.name.startswith("_") and not alias.name.startswith("__")):
            out.add(full)
        elif module == "porter":
            out.add(facade.get(alias.name, "porter"))  # a lazy name's package, else the facade's own
        else:
            out.add(module)
    return out


def porter_imports(src: Path = SRC) -> Iterator[Import]:
    """Every import of porter by a module of porter, wherever it is in the module (functions too)."""
    facade = _facade_lazy_names(src)
    for path in sorted((src / "porter").rglob("*.py")):
        importer = _module_of(path, src)
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: set[str] = set()
            if isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                if module.split(".")[0] == "porter":
                    targets = _targets(node, module, facade, src)
            elif (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in {"importlib.import_module", "import_module"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                targets = {node.args[0].value}
            for target in sorted(t for t in targets if t.split(".")[0] == "porter"):
                yield Import(path, node.lineno, importer, target)


def part_of(module: str) -> str:
    """The part (key of LAYERS) a porter module belongs to: ``porter.X`` for everything under it."""
    return ".".join(module.split(".")[:2])


@functools.cache  # the real tree is scanned once for the tests below
def arrow_violations(src: Path = SRC) -> dict[tuple[str, str], list[str]]:
    """(importer, imported) → what is wrong with it, for every import that breaks DESIGN.md's arrows."""
    found: dict[tuple[str, str], list[str]] = {}
    for imp in porter_imports(src):
        if imp.importer == "porter":
            continue  # the facade re-exports the public API from every layer
        mine, theirs = part_of(imp.importer), part_of(imp.target)
        problems = []
        for part in (mine, theirs):
            if part not in LAYERS:
                problems.append(f"{part} has no layer: add it to LAYERS in tests/test_project.py")
        if not problems and LAYERS[theirs] > LAYERS[mine]:
            problems.append(f"{mine} (layer {LAYERS[mine]}) imports {theirs}, a layer above it")
        inner = imp.target.split(".")[len(theirs.split(".")) :]
        if theirs != mine and any(p.startswith("_") and not p.startswith("__") for p in inner):
            problems.append(f"a private module of {theirs}")
        if problems:
            found.setdefault((imp.importer, imp.target), []).append(f"{imp} — {'; '.join(problems)}")
    return found


def test_imports_follow_the_design_arrows() -> None:
    """No part of porter imports a layer above it, nor another package's ``_private`` modules.

    Every import counts: at module level, inside functions (lazy imports are still dependencies)
    and under ``if TYPE_CHECKING:`` (an annotation naming an upper layer's type, or a private
    module's, couples the two as much as a call does; mypy follows it).  ``from porter import X``
    counts as an import of the package the facade loads X from.  Privacy is per package: anything
    under ``porter.registry`` (``porter.registry.queries`` included) may use ``porter.registry._db``;
    no other package may.  porter's top-level modules (``porter._gc`` too) are the core layer's
    shared modules, not a package's private ones.  The facade ``porter/__init__.py`` may import
    anything.  Known violations, each waiting for its owner's fix, are in KNOWN_VIOLATIONS.
    """
    found = arrow_violations()
    new = [msg for key, msgs in sorted(found.items()) if key not in KNOWN_VIOLATIONS for msg in msgs]
    assert not new, "imports against DESIGN.md's arrows:\n" + "\n".join(new)


def test_known_arrow_violations_are_still_there() -> None:
    """An entry whose import is gone (fixed) leaves the list, so the list never hides a new one."""
    fixed = sorted(set(KNOWN_VIOLATIONS) - set(arrow_violations()))
    assert not fixed, f"fixed, remove from KNOWN_VIOLATIONS in tests/test_project.py: {fixed}"


def test_the_arrow_check_sees_what_it_must(tmp_path: Path) -> None:
    """On a small tree: imports in functions, under TYPE_CHECKING, through the facade, unknown parts."""
    files = {
        "porter/__init__.py": '_LAZY: dict[str, str] = {"Butler": ".butler"}\n',
        "porter/errors.py": "",
        "porter/butler/__init__.py": "from porter.registry import Registry\n",  # down: fine
        "porter/registry/__init__.py": "def f():\n    from ..butler import Butler\n",  # up, in a function
        "porter/registry/_db.py": "from porter import errors\n",
        "porter/registry/queries/__init__.py": "from .._db import Database\n",  # own package: fine
        "porter/pipeline/__init__.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from porter.registry._db import Database\n"
        ),
        "porter/dimensions/__init__.py": "from porter import Butler\n",  # up, through the facade
        "porter/gizmo/__init__.py": "import importlib\nimportlib.import_module('porter.cli')\n",
        "porter/cli/__init__.py": "from porter.registry import _db\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = arrow_violations(tmp_path)
    assert set(found) == {
        ("porter.registry", "porter.butler"),
        ("porter.pipeline", "porter.registry._db"),
        ("porter.dimensions", "porter.butler"),
        ("porter.gizmo", "porter.cli"),
        ("porter.cli", "porter.registry._db"),
    }, found
    assert (
        "layer 2) imports porter.butler, a layer above it" in found[("porter.registry", "porter.butler")][0]
    )
    assert found[("porter.registry", "porter.butler")][0].endswith(
        "registry/__init__.py:2: porter.registry imports porter.butler — porter.registry (layer 2) imports "
        "porter.butler, a layer above it"
    )
    assert "a private module of porter.registry" in found[("porter.cli", "porter.registry._db")][0]
    assert "porter.gizmo has no layer" in found[("porter.gizmo", "porter.cli")][0]
    # And on the real tree it sees lazy and type-checking imports too.
    imports = {(i.importer, i.target) for i in porter_imports()}
    assert ("porter.pipeline._execution", "porter") in imports  # `from .. import __version__` in a function
    assert ("porter.pipeline._state", "porter.registry") in imports  # under TYPE_CHECKING


# --- Tests assert behaviour, never elapsed time (DESIGN.md) --------------------------------------

CLOCKS = {
    f"time.{c}{ns}" for c in ("time", "perf_counter", "monotonic", "process_time") for ns in ("", "_ns")
}


def _reads_clock(node: ast.AST, elapsed: set[str]) -> bool:
    return any(
        (isinstance(n, ast.Call) and ast.unparse(n.func) in CLOCKS)
        or (isinstance(n, ast.Name) and n.id in elapsed)
        for n in ast.walk(node)
    )


def elapsed_time_problems(directory: Path) -> list[str]:
    """Asserts in ``directory``'s test files that read a clock, and Hypothesis tests with a deadline.

    An assert reading a clock directly, or a variable assigned a clock difference, bounds elapsed
    time; so does Hypothesis's default 200 ms per-example deadline.  Waiting loops with a deadline
    that only stops a hang are fine: they assert what happened, not when.
    """
    problems = []
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        elapsed = {
            t.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.BinOp)
            and isinstance(n.value.op, ast.Sub)
            and _reads_clock(n.value, set())
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Assert) and _reads_clock(node.test, elapsed):
                problems.append(f"{where}: asserts on elapsed time: {ast.unparse(node.test)}")
            if isinstance(node, ast.FunctionDef) and any(
                "given" in ast.unparse(d) for d in node.decorator_list
            ):
                settings = [
                    ast.unparse(d) for d in node.decorator_list if ast.unparse(d).startswith("settings(")
                ]
                if not any("deadline=None" in s for s in settings):
                    problems.append(
                        f"{where}: Hypothesis test {node.name} keeps the 200 ms per-example deadline"
                    )
    return problems


def test_tests_do_not_bound_elapsed_time() -> None:
    """A test that passes on a quiet machine and fails on a busy one blocks a correct change (DESIGN.md)."""
    problems = elapsed_time_problems(ROOT / "tests")
    assert not problems, "\n".join(problems)


def test_the_elapsed_time_check_sees_what_it_must(tmp_path: Path) -> None:
    """It catches a clock in an assert, an elapsed variable and a Hypothesis deadline; not a hang guard."""
    (tmp_path / "test_x.py").write_text(
        "import time\n"
        "def test_bound():\n"
        "    started = time.perf_counter()\n"
        "    assert time.perf_counter() - started < 4\n"
        "def test_elapsed():\n"
        "    t0 = time.monotonic()\n"
        "    elapsed = time.monotonic() - t0\n"
        "    assert elapsed < 4\n"
        "@settings(max_examples=5)\n"
        "@given(st.integers())\n"
        "def test_property(n):\n"
        "    assert n == n\n"
        "@settings(deadline=None)\n"
        "@given(st.integers())\n"
        "def test_fine_property(n):\n"
        "    assert n == n\n"
        "def test_hang_guard(proc):\n"
        "    give_up = time.monotonic() + 600\n"
        "    while proc.poll() is None and time.monotonic() < give_up:\n"
        "        time.sleep(0.1)\n"
        "    assert proc.poll() == 0\n"
    )
    assert sorted(int(p.split(":")[1]) for p in elapsed_time_problems(tmp_path)) == [4, 8, 11]
