"""Every shell command of the README's examples, run as a new user would run it.

The README is parsed: each ```bash block outside "Quick start" (which
tests/test_project.py covers) is one test, its lines run in order through bash
from a fresh directory, so a command added to the README is tested without
touching this file.  Paths in the README that stand for the reader's own data are
substituted: ``../shared/`` is the shared data; in the pipeline and release
sections ``repo/`` and ``/repo/main`` are a copy of the demo survey's repository
(built once per test process by ``porter demo-survey``), ``pipelines/drp.yaml``
the demo's pipeline, DP1 the demo's release (DEMO1).  Each command must exit 0
and print something, with no traceback; the few exceptions are listed below,
each with its reason, and an exception that starts passing is an error too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"
DRP = ROOT / "src" / "porter" / "demo" / "pipelines" / "drp.yaml"
BIN = Path(sys.executable).parent


@dataclass
class Block:
    """One ```bash block of the README: its section and its command lines."""

    section: str
    commands: list[str]

    @property
    def id(self) -> str:
        return re.sub(r"\W+", "-", self.section.lower()).strip("-")


def readme_blocks() -> list[Block]:
    """The ```bash blocks outside Quick start, each line a command (comment lines dropped)."""
    blocks: list[Block] = []
    section = ""
    for m in re.finditer(r"^#{2,3} ([^\n]+)$|^```bash\n(.*?)^```", README.read_text(), flags=re.M | re.S):
        if m[1] is not None:
            section = m[1].strip()
        elif section != "Quick start":
            lines = [line.strip() for line in m[2].splitlines()]
            blocks.append(Block(section, [line for line in lines if line and not line.startswith("#")]))
    return blocks


# --- what the README's commands need that the reader brings -------------------------------------------


@dataclass
class Setting:
    """Where a block runs and how its placeholders become this test's paths."""

    cwd: Path
    substitutions: list[tuple[str, str]] = field(default_factory=list)

    def apply(self, command: str) -> str:
        for pattern, replacement in self.substitutions:
            command = re.sub(pattern, lambda _m, r=replacement: r, command)
        return command


def _hsc_raw_files(cwd: Path) -> None:
    """The reader's own raw files and their list (files.csv): three detectors of HSC exposure 903342."""
    from astropy.io import fits

    rows = ["file,exposure,detector"]
    for detector in (10, 11, 12):
        name = f"HSC-0903342-{detector:03d}.fits"
        fits.PrimaryHDU(np.full((8, 8), detector, dtype=np.float32)).writeto(cwd / name)
        rows.append(f"{name},903342,{detector}")
    (cwd / "files.csv").write_text("\n".join(rows) + "\n")


def _demo_copy(demo: Path, cwd: Path) -> Path:
    """A private copy of the demo repository (the blocks write to it); plans point at the copy."""
    repo = cwd / "demo-repo"
    shutil.copytree(demo, repo, symlinks=True)
    for plan in (repo / "releases").glob("*.yaml"):
        plan.write_text(plan.read_text().replace(str(demo.resolve()), str(repo.resolve())))
    return repo


def _porter(*args: object, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(BIN / "porter"), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=_env()
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def _env() -> dict[str, str]:
    """The caller's environment without porter's own settings, with this venv's porter first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_") and k != "COLUMNS"}
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


@pytest.fixture(scope="session")
def demo_survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo survey repository, processed and with its DEMO1 release rehearsed (small: 2x2 detectors)."""
    where = tmp_path_factory.mktemp("readme-demo")
    _porter("demo-survey", "--repo", "demo-survey-repo", "--detectors", 2, "--visits-per-band", 2, cwd=where)
    return where / "demo-survey-repo"


@contextlib.contextmanager
def _pipelines(cwd: Path, request: pytest.FixtureRequest) -> Iterator[Setting]:
    """The demo's repository as repo/, its pipeline, and a real dataset ID for the README's elided one."""
    repo = _demo_copy(request.getfixturevalue("demo_survey"), cwd)
    refs = json.loads(_porter("query-datasets", repo, "objectTable", "-c", "u/demo/drp", "--json"))
    yield Setting(
        cwd,
        [
            (r"(?<![\w/])repo/", f"{repo}/"),
            (r"pipelines/drp\.yaml", str(DRP)),
            (r"5f0c1e2a-…", refs[0]["id"]),  # the README's elided dataset ID: a real one
        ],
    )


@contextlib.contextmanager
def _release(cwd: Path, request: pytest.FixtureRequest) -> Iterator[Setting]:
    """The demo's repository as /repo/main; what DP2 draws from and what its pipelines delivered."""
    from catalogs import conforming, write  # tests/catalogs.py: Parquet conforming to real Felis tables

    repo = _demo_copy(request.getfixturevalue("demo_survey"), cwd)
    # The rubin template's default collection, DP2/runs: the demo's processing and its raws.
    _porter("collection-chain", repo, "DP2/runs", "u/demo/drp", "SynthCam/raw/all")
    # The pipelines team's delivery of DP2's catalogs (DP1 schema, as the rubin template expects).
    rng = np.random.default_rng(12)
    catalogs = repo / "releases" / "DP2" / "catalogs"
    visits = conforming("dp1", "Visit", 20, rng)
    write(conforming("dp1", "Object", 300, rng), catalogs / "Object")
    write(conforming("dp1", "Source", 600, rng), catalogs / "Source")
    # The live DP1 Visit table of `schema diff --postgres`: in the test database, a schema of its own.
    pg_url = request.getfixturevalue("pg_server")
    namespace = f"t_readme_{uuid.uuid4().hex[:8]}"
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{namespace}"')
    visits.to_pandas().to_sql("Visit", engine, schema=namespace, index=False)
    engine.dispose()
    try:
        yield Setting(
            cwd,
            [
                (r"/repo/main", str(repo)),
                (r"\bDP1\b", "DEMO1"),
                (r"catalogs/Source/", f"{catalogs}/Source/"),
                (
                    r"postgresql://postgres@127\.0\.0\.1/dp1 --namespace dp1",
                    f"{pg_url} --namespace {namespace}",
                ),
            ],
        )
    finally:
        from conftest import drop_schema

        drop_schema(pg_url, namespace)


@contextlib.contextmanager
def _storing(cwd: Path, request: pytest.FixtureRequest) -> Iterator[Setting]:
    """A new repository made by the README itself, from the shared export files; the reader's raws."""
    _hsc_raw_files(cwd)
    yield Setting(cwd, [(r"\.\./shared/", f"{SHARED}/")])


@contextlib.contextmanager
def _verify(cwd: Path, request: pytest.FixtureRequest) -> Iterator[Setting]:
    """The demo's processed repository as repo/ and the mini DRP's metrics package as verify_metrics/."""
    from porter.demo import VERIFY_METRICS

    repo = _demo_copy(request.getfixturevalue("demo_survey"), cwd)
    yield Setting(
        cwd, [(r"(?<![\w/])repo/", f"{repo}/"), (r"(?<![\w/])verify_metrics/", f"{VERIFY_METRICS}/")]
    )


SETTINGS: dict[str, Callable[[Path, pytest.FixtureRequest], AbstractContextManager[Setting]]] = {
    "Storing and reading data products": _storing,
    "Sharing a repository: `porter serve`": _storing,
    "Pipelines": _pipelines,
    "Quality metrics: `porter verify`": _verify,
    "Release management": _release,
}
"""README section → how its block's commands get their data.  A new section needs an entry."""


# --- the exceptions, each with its reason ------------------------------------------------------------


SKIP: dict[str, str] = {
    "porter serve shared/ --port 8080 --workers 2": (
        "serves until stopped; tests/test_server_workers.py starts `porter serve --workers 2` and kills it"
    ),
    "porter pipeline submit repo/ pipelines/drp.yaml -i SynthCam/defaults --output-run u/me/drp --site slurm.yaml": (
        "needs a Slurm cluster: slurm.yaml is a site file for one (tests/test_parsl_sites.py tests the site files)"
    ),
}
"""README commands not run, and why."""

REFUSED: dict[str, str] = {
    "porter release check DP2": "check(s) failed or could not run",
    "porter release promote DP2 --to production --by release-manager": "Promotion of DP2 to 'production' refused",
    "porter release ready DP2 --dry-run": "what blocks DP2 going public",
    "porter release ready DP2 --by decider": "is not ready",
}
"""README commands the README itself says are refused here (exit status 1 and this message):
the checks while some fail (manual items unconfirmed, no HiPS tree), and the go-public gate and
its dry run, and the promotion to production, while DP2's hand-overs are unsigned and its test
period has not run."""

KNOWN_FAILURES: dict[str, tuple[str, str]] = {}
"""README commands that fail because of a known bug elsewhere: (the bug, the message they fail with).
Like xfail(strict=True): once the bug is fixed the command passes, and this test says to remove it."""

EXPECT: dict[str, str] = {
    "porter query-datasets repo/ raw": "903342",
    "porter retrieve-artifacts": "Wrote 3 file(s)",
    "porter release status DP2 --html dp2.html": "Wrote dp2.html",
    "porter release diff": "DEMO1 → DP2",
    "porter release audit DP2 --verify": "chain intact",
    "porter pipeline report": "succeeded",
}
"""Output some commands must show (by the start of the README command), beyond exiting 0."""


def bare(command: str) -> str:
    """The command without its trailing shell comment (``drp.yaml#step1`` is not a comment)."""
    return re.sub(r"\s+#.*$", "", command)


def _run(command: str, settings: Setting) -> str | None:
    """Run one README command; what is wrong with its outcome, or None."""
    command = bare(command)
    run = settings.apply(command)
    result = subprocess.run(
        ["bash", "-c", run], capture_output=True, text=True, cwd=settings.cwd, env=_env(), timeout=900
    )
    output = result.stdout + result.stderr
    refused = REFUSED.get(command)
    if refused is not None:
        if result.returncode == 1 and refused in output:
            return None
        return f"$ {command}\n  ran as: {run}\n  expected a refusal with {refused!r}:\n{output}"
    known = KNOWN_FAILURES.get(command)
    if known is not None:
        if result.returncode != 0 and known[1] in output:
            return None
        return f"$ {command}\n  was a known failure ({known[0]}); now it does not fail so: remove it from KNOWN_FAILURES\n{output}"
    expected = next((text for start, text in EXPECT.items() if command.startswith(start)), "")
    if result.returncode == 0 and "Traceback" not in output and output.strip() and expected in output:
        return None
    return (
        f"$ {command}\n  ran as: {run}\n  exit status {result.returncode}"
        + (f", expected {expected!r} in the output" if expected else "")
        + f":\n{output}"
    )


@pytest.mark.parametrize("block", readme_blocks(), ids=lambda b: b.id)
def test_readme_commands(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    assert block.section in SETTINGS, (
        f"README section {block.section!r} has shell examples: say how to run them in SETTINGS"
    )
    problems: list[str] = []
    with SETTINGS[block.section](tmp_path, request) as settings:
        for command in block.commands:
            if bare(command) in SKIP:
                continue
            problem = _run(command, settings)
            if problem:
                problems.append(problem)
    assert not problems, f"{len(problems)} README command(s) of {block.section!r} failed:\n\n" + "\n\n".join(
        problems
    )


def test_every_exception_is_a_readme_command() -> None:
    """An exception whose command left the README would silently test nothing: it must go too."""
    commands = {bare(c) for b in readme_blocks() for c in b.commands}
    stale = sorted(c for c in [*SKIP, *REFUSED, *KNOWN_FAILURES] if c not in commands)
    assert not stale, f"not in the README any more, remove from tests/test_readme.py: {stale}"
    starts = sorted(s for s in EXPECT if not any(c.startswith(s) for c in commands))
    assert not starts, f"no README command starts so, remove from EXPECT: {starts}"
