"""Smoke tests of an environment (LDM-564 section 2.2): what must run green on the test system
against the shipped content before the release is promoted to production.

Two kinds: a shell ``command`` (the team's own script: re-run a pipeline subset on a CI data set
with its science checks, answer the documented catalog queries …) run in the plan's directory with
the release, environment and repository in its environment, exit status 0 passing; and
``read_back``, which reads a sample of the release's datasets back through the butler, spread over
every dataset type of its collections, so a datastore that lost or damaged files fails.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schema import FAIL, PASS, CheckResult
from ._plan import Environment, ReleasePlan, SmokeTest

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["run_smoke_tests"]

_OUTPUT_TAIL = 2000
"""Characters of a failed command's output kept in its result."""


def run_smoke_tests(
    butler: DirectButler, plan: ReleasePlan, env: Environment, base: Path
) -> list[CheckResult]:
    """Run every smoke test of ``env``; each result is named ``smoke/ENV/TEST``."""
    results = []
    for test in env.smoke_tests:
        started = time.perf_counter()
        result = _command(test, plan, env, base) if test.command.strip() else _read_back(test, butler, plan)
        result.item = f"smoke/{env.name}"
        result.seconds = time.perf_counter() - started
        results.append(result)
    return results


def _command(test: SmokeTest, plan: ReleasePlan, env: Environment, base: Path) -> CheckResult:
    environ = dict(os.environ)
    environ.update(PORTER_RELEASE=plan.release, PORTER_ENVIRONMENT=env.name, PORTER_REPO=str(plan.repository))
    try:
        proc = subprocess.run(
            ["bash", "-c", test.command],
            cwd=base,
            env=environ,
            capture_output=True,
            text=True,
            timeout=test.timeout_s,
        )
    except subprocess.TimeoutExpired:
        return CheckResult(
            "", test.name, FAIL, message=f"did not finish in {test.timeout_s} s: {test.command}"
        )
    output = (proc.stdout + proc.stderr).strip()
    return CheckResult(
        "",
        test.name,
        PASS if proc.returncode == 0 else FAIL,
        value=proc.returncode,
        expected=0,
        message="" if proc.returncode == 0 else f"exit status {proc.returncode}: {output[-_OUTPUT_TAIL:]}",
    )


def _read_back(test: SmokeTest, butler: DirectButler, plan: ReleasePlan) -> CheckResult:
    """Read ``test.read_back`` datasets of the plan's collections, round-robin over dataset types."""
    collections = list(plan.collections)
    if not collections:
        return CheckResult("", test.name, FAIL, message="the plan names no collections: nothing to read back")
    by_type: list[list[Any]] = []
    for dataset_type in butler.query_dataset_types():
        refs = butler.query_datasets(dataset_type.name, collections, explain=False, limit=test.read_back)
        if refs:
            by_type.append(refs)
    sample: list[Any] = []
    while len(sample) < test.read_back and any(by_type):
        for refs in by_type:
            if refs and len(sample) < test.read_back:
                sample.append(refs.pop(0))
    failures = []
    for ref in sample:
        try:
            butler.get(ref)
        except Exception as exc:  # any failure to read a dataset back is what this test is for
            failures.append(
                {"dataset": f"{ref.datasetType.name} {dict(ref.dataId.mapping)}", "error": str(exc)[:200]}
            )
    return CheckResult(
        "",
        test.name,
        PASS if sample and not failures else FAIL,
        value=f"{len(sample) - len(failures)}/{len(sample)} read",
        expected=f"{test.read_back} datasets read back",
        message=""
        if sample and not failures
        else (f"{len(failures)} unreadable" if failures else "no datasets found"),
        sample=failures[:20],
    )
