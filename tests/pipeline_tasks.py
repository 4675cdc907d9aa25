"""Small tasks for testing the pipeline machinery on the synthetic survey's raws.

Each reads real raw FITS images; their behaviour (fail, be flaky, sleep,
allocate, wait at a gate) is switched by config so one pipeline file can
exercise each path.  Marker files make a failure happen a set number of times
across processes, and a gate file holds a quantum mid-run until the test has
done what it needed to (killed its worker) or for ever (until a limit fires):
tests synchronise on files, not on how long something takes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from porter.images import Exposure
from porter.pipeline import Input, Output, Task, TaskConfig, TransientError

ED = ("instrument", "exposure", "detector")


class StatsConfig(TaskConfig):
    fail_detector: int | None = None
    """Raise for this detector (a permanent error) ..."""
    fail_marker: str | None = None
    """... but only while this file exists (so a test can fix the cause and restart)."""
    flaky_dir: str | None = None
    """Raise TransientError once per data ID, remembered by a marker file in this directory."""
    sleep: float = 0.0
    allocate_mb: int = 0
    """Hold this much memory while waiting at the gate (released at once if there is none)."""
    gate: str | None = None
    """Wait until this file exists, after touching ``<gate>.<pid>`` so a test knows the quantum is there."""
    gate_detector: int | None = None
    """Only this detector's quanta wait at the gate (None: every quantum)."""


GATE_GIVES_UP = 600.0
"""Seconds a quantum waits at a gate nobody opens before failing: a broken test fails instead of hanging."""


def wait_at_gate(gate: Path) -> None:
    """Announce this process at ``gate`` and block until the file exists (a limit may interrupt the wait)."""
    gate.with_name(f"{gate.name}.{os.getpid()}").touch()
    gives_up = time.monotonic() + GATE_GIVES_UP
    while not gate.exists():
        if time.monotonic() > gives_up:
            raise RuntimeError(f"nobody opened the gate {gate} (a test forgot to, or a limit never fired)")
        time.sleep(0.02)


class ImageStatsTask(Task):
    """Median and robust noise of a raw image (a dict)."""

    dimensions = ED
    config_class = StatsConfig
    raw = Input("raw", ED, "ExposureF")
    stats = Output("rawStats", ED, "StructuredDataDict")

    def run(self, raw: Exposure, data_id: Any = None) -> dict[str, Any]:
        config: Any = self.config
        broken = config.fail_marker is None or Path(config.fail_marker).exists()
        if config.fail_detector is not None and data_id["detector"] == config.fail_detector and broken:
            raise ValueError(f"detector {config.fail_detector} is broken (test failure)")
        if config.flaky_dir:
            marker = Path(config.flaky_dir) / f"{data_id['exposure']}_{data_id['detector']}"
            if not marker.exists():
                marker.touch()
                raise TransientError("the file system hiccupped (test)")
        if config.sleep:
            time.sleep(config.sleep)
        block = np.ones(config.allocate_mb * 2**20 // 8) if config.allocate_mb else None
        if config.gate and config.gate_detector in (None, data_id["detector"]):
            wait_at_gate(Path(config.gate))
        del block
        image = raw.image
        med = float(np.median(image))
        self.measure("median", med, "count")
        return {"stats": {"median": med, "mad": float(np.median(np.abs(image - med)))}}


class VisitStatsTask(Task):
    """Gathers every detector's stats of a visit (a per-visit gather over per-exposure datasets)."""

    dimensions = ("instrument", "visit")
    stats = Input("rawStats", ED, "StructuredDataDict", multiple=True)
    summary = Output("visitStats", ("instrument", "visit"), "StructuredDataDict")

    def run(self, stats: list[dict[str, Any]]) -> dict[str, Any]:
        return {"summary": {"n": len(stats), "median": float(np.median([s["median"] for s in stats]))}}


class CutoutTask(Task):
    """Reads only a 16x16 corner of its raw through a deferred handle."""

    dimensions = ED
    raw = Input("raw", ED, "ExposureF", deferred=True)
    corner = Output("rawCorner", ED, "NumpyArray")

    def run(self, raw: Any) -> dict[str, Any]:
        from porter.images import BBox

        return {"corner": raw.get(parameters={"bbox": BBox(0, 0, 16, 16)}).image}
