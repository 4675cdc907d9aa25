"""Connections: what a task reads and writes, declared on the task class.

A connection names a dataset type with its dimensions and storage class, so
the quantum-graph builder can find the datasets without running the task.
``multiple=True`` means the task gathers many datasets into one call (all
detectors of a visit for a per-visit task); otherwise exactly one dataset
matches each quantum.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["Connection", "Input", "Output", "PrerequisiteInput"]


@dataclass(frozen=True)
class Connection:
    """One dataset-type slot of a task (the attribute name is the connection name)."""

    dataset_type: str
    dimensions: tuple[str, ...]
    storage_class: str
    multiple: bool = False
    doc: str = ""
    deferred: bool = False
    """Give the task a `DeferredDatasetHandle` to read (part of) the dataset itself, instead of the object."""
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))

    def renamed(self, dataset_type: str) -> Connection:
        """This connection reading or writing another dataset type (a pipeline's override)."""
        return replace(self, dataset_type=dataset_type)

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Input(Connection):
    """A dataset the task reads, made by an earlier task or found in the input collections."""


@dataclass(frozen=True)
class PrerequisiteInput(Connection):
    """A dataset that must already exist before the graph is built (calibrations, reference catalogs).

    Prerequisites are never produced by the pipeline.  A calibration dataset
    type is looked up by validity range: the one certified for the time of the
    quantum's visit or exposure.  A prerequisite with a sky-pixel dimension
    (``htm7``) is looked up by the quantum's region: every pixel it touches.
    """


@dataclass(frozen=True)
class Output(Connection):
    """A dataset the task writes; its dimensions must be among the task's."""
