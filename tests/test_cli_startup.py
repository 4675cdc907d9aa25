"""The `porter` command starts without importing the heavy libraries it does not need yet.

`porter --help` used to import scipy, astropy, SQLAlchemy, pyarrow and the demo before
printing a line (2-5 s).  These tests hold the line by looking at *which modules were
imported*, in a fresh interpreter, never at elapsed time (which depends on the machine's load).
"""

import json
import subprocess
import sys
import textwrap

import pytest

import porter
import porter.errors

HEAVY = (
    "scipy",
    "astropy",
    "sqlalchemy",
    "pyarrow",
    "duckdb",
    "parsl",
    "pandas",
    "numpy",
    "lsst.sphgeom",
    "porter.butler",
    "porter.registry",
    "porter.datastore",
    "porter.demo",
)
"""Libraries (and porter's own layers over them) that no --help may import."""


def imported_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return what it printed (JSON) and the heavy modules it loaded."""
    script = textwrap.dedent(
        """
        import json, sys
        __result = None
        {code}
        heavy = sorted({{m.split(".")[0] if not m.startswith(("lsst.", "porter.")) else ".".join(m.split(".")[:2])
                         for m in sys.modules}} & set({heavy!r}))
        print(json.dumps({{"heavy": heavy, "result": __result}}))
        """
    ).format(code=textwrap.dedent(code), heavy=HEAVY)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli(*argvs: list[str]) -> str:
    """Python code that runs `porter ARGV` for each argv in one process, as the console script does."""
    return f"""
        import contextlib, io
        from porter.cli import main
        __result = []
        for argv in {[list(a) for a in argvs]!r}:
            sys.argv = ["porter", *argv]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    main()
                except SystemExit as exc:
                    assert exc.code in (0, None), (argv, exc.code)
            __result.append(out.getvalue())
    """


def test_import_porter_is_light() -> None:
    assert imported_after("import porter")["heavy"] == []


def test_help_of_every_command_imports_nothing_heavy() -> None:
    argvs = [
        ["--help"],
        ["query-collections", "--help"],
        ["query-datasets", "--help"],
        ["retrieve-artifacts", "--help"],
        ["release", "--help"],
        ["release", "status", "--help"],
        ["pipeline", "submit", "--help"],
        ["schema", "diff", "--help"],
        ["demo-survey", "--help"],
    ]
    found = imported_after(run_cli(*argvs))
    assert found["heavy"] == [], f"`porter --help` imported {found['heavy']}; import them inside the command"
    top = found["result"][0]  # type: ignore[index]
    assert "query-collections" in top and "release" in top and "demo-survey" in top


def test_a_command_imports_what_it_needs_when_it_runs() -> None:
    """The other side of laziness: a real command still works (and only then loads the butler)."""
    found = imported_after(
        """
        from porter import Butler
        __result = Butler.__name__
        """
    )
    assert found["result"] == "Butler" and "sqlalchemy" in found["heavy"]


def test_public_names_still_importable() -> None:
    code = """
        from porter import *
        import porter
        __result = sorted(n for n in porter.__all__ if n not in globals())
    """
    assert imported_after(code)["result"] == []
    for name in porter.__all__:
        assert getattr(porter, name) is not None, name
    assert "Butler" in dir(porter)


def test_every_error_class_is_re_exported() -> None:
    """Names added to porter.errors later come along without touching porter/__init__.py."""
    assert set(porter.errors.__all__) <= set(porter.__all__)
    for name in porter.errors.__all__:
        assert getattr(porter, name) is getattr(porter.errors, name)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Buttler'"):
        porter.Buttler  # noqa: B018
