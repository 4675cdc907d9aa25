"""porter tasks for bench/pipeline.py: a per-(visit, detector) task and a per-visit gather, and a no-op."""

from __future__ import annotations

from typing import Any

from porter.pipeline import Input, Output, Task

VD = ("instrument", "visit", "detector")


class PerDetectorTask(Task):
    dimensions = VD
    calexp = Input("calexp", VD, "StructuredDataDict", deferred=True)
    summary = Output("detSummary", VD, "StructuredDataDict")

    def run(self, calexp: Any) -> dict[str, Any]:
        return {"summary": {}}


class PerVisitTask(Task):
    dimensions = ("instrument", "visit")
    summaries = Input("detSummary", VD, "StructuredDataDict", multiple=True, deferred=True)
    table = Output("visitSummary", ("instrument", "visit"), "StructuredDataDict")

    def run(self, summaries: Any) -> dict[str, Any]:
        return {"table": {}}


class NoOpTask(Task):
    """Reads nothing (its input is a deferred handle), writes nothing: pure executor overhead."""

    dimensions = VD
    calexp = Input("calexp", VD, "StructuredDataDict", deferred=True)

    def run(self, calexp: Any) -> dict[str, Any]:
        return {}
