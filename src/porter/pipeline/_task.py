"""The `Task` base class: plain Python with declared connections and a pydantic config.

A task's ``run(**inputs)`` receives in-memory objects and returns a mapping
of output connection name to object.  It never sees the butler, so a task is
tested by calling ``run`` directly; the executors do the reading and writing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pydantic

from ..errors import PipelineDefinitionError
from ._connections import Connection

__all__ = ["Measurement", "Task", "TaskConfig"]


class TaskConfig(pydantic.BaseModel):
    """Base of every task config: unknown fields are errors, so a typo in a pipeline is caught."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)


@dataclass
class Measurement:
    """One metric value a task measured (astrometric scatter, photometric zero point …).

    Kept with the quantum's provenance; the verify package checks them
    against specifications.
    """

    metric: str
    value: float
    unit: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "unit": self.unit, "extras": self.extras}


class Task:
    """A unit of processing, run once per quantum (one data ID of the task's dimensions).

    Subclasses set ``dimensions``, ``config_class`` and declare connections
    as class attributes::

        class Detect(Task):
            dimensions = ("instrument", "visit", "detector")
            config_class = DetectConfig
            exposure = Input("calexp", ("instrument", "visit", "detector"), "Exposure")
            sources = Output("src", ("instrument", "visit", "detector"), "ArrowTable")

            def run(self, exposure):
                ...
                self.measure("n_sources", len(table))
                return {"sources": table}

    ``run`` may also take ``data_id`` to receive the quantum's data ID.
    """

    dimensions: ClassVar[tuple[str, ...]] = ()
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    connections: ClassVar[dict[str, Connection]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Connection] = {}
        for base in reversed(cls.__mro__):
            for name, value in vars(base).items():
                if isinstance(value, Connection):
                    found[name] = value if value.name == name else replace(value, name=name)
        cls.connections = found
        cls.dimensions = tuple(cls.dimensions)

    def __init__(self, config: TaskConfig | None = None, label: str | None = None):
        self.config = config if config is not None else self.config_class()
        self.label = label or type(self).__name__
        self.measurements: list[Measurement] = []

    # --- what subclasses use -------------------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Process one quantum's inputs and return its outputs by connection name."""
        raise NotImplementedError(f"{type(self).__name__} does not implement run().")

    def measure(self, metric: str, value: float, unit: str = "", **extras: Any) -> None:
        """Record a metric measurement for this quantum (the hook the verify package reads)."""
        self.measurements.append(Measurement(metric, float(value), unit, extras))

    # --- what the framework uses -----------------------------------------------------------------

    @classmethod
    def make_config(cls, overrides: dict[str, Any], label: str) -> TaskConfig:
        """The task's config with ``overrides`` applied; a bad value is an error naming the task and field."""
        try:
            return cls.config_class(**overrides)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
            )
            fields = ", ".join(cls.config_class.model_fields) or "none"
            raise PipelineDefinitionError(
                f"Bad config for task {label!r} ({cls.__module__}.{cls.__qualname__}): {problems}. "
                f"Its config fields are: {fields}."
            ) from None


def config_hash(task_class: type[Task], config: TaskConfig) -> str:
    """A short, stable digest of a task's class and config (recorded in provenance)."""
    text = json.dumps(
        {
            "class": f"{task_class.__module__}.{task_class.__qualname__}",
            "config": config.model_dump(mode="json"),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]
