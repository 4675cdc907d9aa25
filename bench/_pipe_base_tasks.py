"""The same tasks for lsst-pipe-base (PipelineTask with connections), for bench/pipeline.py."""

from __future__ import annotations

from typing import Any

import lsst.pipe.base.connectionTypes as cT
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct


class PerDetectorConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    calexp = cT.Input(
        "calexp",
        storageClass="StructuredDataDict",
        dimensions=("instrument", "visit", "detector"),
        deferLoad=True,
    )
    summary = cT.Output(
        "detSummary", storageClass="StructuredDataDict", dimensions=("instrument", "visit", "detector")
    )


class PerDetectorConfig(PipelineTaskConfig, pipelineConnections=PerDetectorConnections):
    dummy = Field[int](doc="unused", default=0)


class PerDetectorTask(PipelineTask):
    ConfigClass = PerDetectorConfig
    _DefaultName = "perDetector"

    def run(self, calexp: Any) -> Struct:
        return Struct(summary={})


class PerVisitConnections(PipelineTaskConnections, dimensions=("instrument", "visit")):
    summaries = cT.Input(
        "detSummary",
        storageClass="StructuredDataDict",
        dimensions=("instrument", "visit", "detector"),
        multiple=True,
        deferLoad=True,
    )
    table = cT.Output("visitSummary", storageClass="StructuredDataDict", dimensions=("instrument", "visit"))


class PerVisitConfig(PipelineTaskConfig, pipelineConnections=PerVisitConnections):
    dummy = Field[int](doc="unused", default=0)


class PerVisitTask(PipelineTask):
    ConfigClass = PerVisitConfig
    _DefaultName = "perVisit"

    def run(self, summaries: Any) -> Struct:
        return Struct(table={})


class NoOpConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    calexp = cT.Input(
        "calexp",
        storageClass="StructuredDataDict",
        dimensions=("instrument", "visit", "detector"),
        deferLoad=True,
    )
    out = cT.Output(
        "noopOut", storageClass="StructuredDataDict", dimensions=("instrument", "visit", "detector")
    )


class NoOpConfig(PipelineTaskConfig, pipelineConnections=NoOpConnections):
    dummy = Field[int](doc="unused", default=0)


class NoOpTask(PipelineTask):
    """pipe_base needs an output to run a quantum; it writes an empty dict (plus its own metadata and log)."""

    ConfigClass = NoOpConfig
    _DefaultName = "noop"

    def run(self, calexp: Any) -> Struct:
        return Struct(out={})
