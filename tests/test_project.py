"""The project's own promises: the README's two commands, CI running the same one after lint and type
checks."""

from __future__ import annotations

import re
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
