"""What the benchmark scripts share: one step in a fresh interpreter, and a process's peak memory.

Each step runs as ``python SCRIPT --worker STEP ARGS…`` so that peak-memory
figures of different steps and implementations do not mix; the worker prints
its results as one JSON line, last.  Only the standard library here: a worker
may run in another environment (Great Expectations has its own venv).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def peak_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(
    script: str,
    step: str,
    argv: list[str],
    *,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``script --worker step argv`` in ``python`` (bench/ on its path); the JSON its last line holds."""
    environment = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [python, script, "--worker", step, *argv],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
