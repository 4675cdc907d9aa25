"""The `porter` command starts without importing the heavy libraries it does not need yet.

`porter --help` used to import scipy, astropy, SQLAlchemy, pyarrow and the demo before
printing a line (2-5 s); `porter query-collections repo/` imported astropy, lsst.sphgeom,
numpy, pyarrow and the whole query system to open the repository (1.2 s).  These tests hold
the line by looking at *which modules were imported*, in a fresh interpreter, never at elapsed
time (which depends on the machine's load).
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import porter
import porter.errors
from peer import EXPORTS

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

NOT_TO_LIST_COLLECTIONS = (
    "astropy",
    "erfa",
    "lsst.sphgeom",
    "hpgeom",
    "numpy",
    "pyarrow",
    "scipy",
    "duckdb",
    "parsl",
    "pandas",
    "sqlalchemy",  # a SQLite registry's collections are read with the standard library's sqlite3
    "pydantic",  # typer 0.29 coerces every parameter through it (60 ms): pyproject keeps typer < 0.29
    "porter.datastore.formatters._fits",
    "porter.datastore.formatters._simple",
    "porter.datastore.formatters._tables",
    "porter.registry.queries",
    "porter.butler.transfers",
    "porter.demo",
)
"""What listing the collections of a SQLite repository must not import (with their submodules):
times, regions, file formats, the query system and export files are imported when first used."""


def imported_after(code: str, watched: tuple[str, ...] = ()) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return what it printed (JSON) and the heavy modules it loaded.

    ``heavy``: the modules of `HEAVY` it loaded; ``watched``: those of ``watched`` (or their
    submodules) it loaded.
    """
    script = textwrap.dedent(
        """
        import json, sys
        __result = None
        {code}
        heavy = sorted({{m.split(".")[0] if not m.startswith(("lsst.", "porter.")) else ".".join(m.split(".")[:2])
                         for m in sys.modules}} & set({heavy!r}))
        watched = sorted(w for w in {watched!r} if any(m == w or m.startswith(w + ".") for m in sys.modules))
        print(json.dumps({{"heavy": heavy, "watched": watched, "result": __result}}))
        """
    ).format(code=textwrap.dedent(code), heavy=HEAVY, watched=watched)
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
        ["serve", "--help"],
        ["admin", "token", "issue", "--help"],
        ["verify", "lint", "--help"],
    ]
    found = imported_after(run_cli(*argvs))
    assert found["heavy"] == [], f"`porter --help` imported {found['heavy']}; import them inside the command"
    top = found["result"][0]  # type: ignore[index]
    assert "query-collections" in top and "release" in top and "demo-survey" in top


def test_a_command_imports_what_it_needs_when_it_runs() -> None:
    """The other side of laziness: a real command still works (and only then loads the butler)."""
    found = imported_after(
        """
        from porter.butler import DirectButler
        __result = DirectButler.__name__
        """
    )
    assert found["result"] == "DirectButler" and "sqlalchemy" in found["heavy"]


def test_the_butler_interface_loads_no_database_layer() -> None:
    """``Butler`` is the interface both implementations share: a remote client never pays for SQLAlchemy."""
    found = imported_after(
        """
        from porter import Butler
        __result = [Butler.__name__, sorted(Butler.__abstractmethods__)[:2]]
        """
    )
    assert found["result"][0] == "Butler" and "sqlalchemy" not in found["heavy"]


@pytest.fixture(scope="module")
def repo_with_collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite repository holding the real export files base.yaml and datasets.yaml (two RUNs), and a chain."""
    from porter import Butler

    root = tmp_path_factory.mktemp("startup") / "repo"
    butler = Butler.create(root)
    try:
        for name in ("base.yaml", "datasets.yaml"):
            butler.import_(EXPORTS / name)
        butler.collections.register("Cam1/defaults", porter.CollectionType.CHAINED)
        butler.collections.redefine_chain("Cam1/defaults", ["imported_r", "imported_g"])
    finally:
        butler.close()
    return root


def test_listing_collections_imports_neither_sql_times_regions_formats_nor_queries(
    repo_with_collections: Path,
) -> None:
    """`porter query-collections repo/` (table, --json, TREE and FLATTEN) lists a real SQLite repository
    without SQLAlchemy, astropy, lsst.sphgeom, numpy, pyarrow, the FITS/Parquet formatters or the query
    system: the collection tables are read through the standard library's sqlite3."""
    repo = str(repo_with_collections)
    found = imported_after(
        run_cli(
            ["query-collections", repo],
            ["query-collections", repo, "--json"],
            ["query-collections", repo, "Cam1/*", "--chains", "TREE"],
            ["query-collections", repo, "Cam1/defaults", "--chains", "FLATTEN", "--json"],
        ),
        NOT_TO_LIST_COLLECTIONS,
    )
    table, as_json, tree, flat = found["result"]  # type: ignore[misc]
    for name in ("imported_g", "imported_r", "Cam1/defaults"):
        assert name in table
    assert "imported_r, imported_g" in table  # the chain's children, in order
    assert json.loads(as_json) == [
        {"name": "Cam1/defaults", "type": "CHAINED", "children": ["imported_r", "imported_g"]},
        {"name": "imported_g", "type": "RUN"},
        {"name": "imported_r", "type": "RUN"},
    ]
    assert [line.split("│")[1].rstrip() for line in tree.splitlines() if "│" in line] == [
        " Cam1/defaults",
        "   imported_r",
        "   imported_g",
    ]
    assert [c["name"] for c in json.loads(flat)] == ["imported_r", "imported_g"]
    assert found["watched"] == [], f"listing collections imported {found['watched']}; import them where used"


def test_listing_collections_of_a_missing_repository_still_explains(tmp_path: Path) -> None:
    """Where the stdlib reader declines, the butler is opened and its error reaches the user."""
    found = imported_after(
        f"""
        import contextlib, io
        from porter.cli import main
        sys.argv = ["porter", "query-collections", {str(tmp_path / "nowhere")!r}]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                __result = [exc.code, err.getvalue()]
        """
    )
    code, message = found["result"]  # type: ignore[misc]
    assert code != 0 and "No porter repository" in message


def test_a_python_butler_is_ready_to_query_when_opened(repo_with_collections: Path) -> None:
    """`Butler(repo)` imports the query system and lsst.sphgeom while opening, so that the first query of
    a notebook or server is not also the one that pays for them; `preload=False` (the CLI) defers them."""
    code = f"""
        from porter import Butler
        butler = Butler({str(repo_with_collections)!r}{{}})
        before = set(sys.modules)
        butler.query_data_ids(["detector"], instrument="Cam1", explain=False)
        __result = sorted(m for m in set(sys.modules) - before if m.startswith(("porter.registry.queries", "lsst.sphgeom")))
    """
    preloaded = imported_after(code.format(""))
    assert preloaded["result"] == []  # nothing left to import at the first query
    deferred = imported_after(code.format(", preload=False"))
    assert "porter.registry.queries" in deferred["result"]  # type: ignore[operator]


def test_what_listing_collections_left_out_still_loads_when_used(repo_with_collections: Path) -> None:
    """The other side: a query, a time and a region in the same kind of process import what they need."""
    found = imported_after(
        f"""
        from porter import Butler
        from porter.dimensions import Timespan
        butler = Butler({str(repo_with_collections)!r})
        refs = butler.query_datasets("flat", collections="imported_g", where="instrument = 'Cam1' AND detector = 2")
        begin = Timespan("2021-09-09 03:00:00", None).begin
        skypix = butler.dimensions["htm7"].pixelization
        __result = [len(refs), type(begin).__module__, type(skypix).__module__]
        butler.close()
        """,
        NOT_TO_LIST_COLLECTIONS,
    )
    assert found["result"] == [1, "astropy.time.core", "lsst.sphgeom._sphgeom"]
    assert {"astropy", "lsst.sphgeom", "porter.registry.queries"} <= set(found["watched"])  # type: ignore[arg-type]


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
