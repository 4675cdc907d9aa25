"""What the metric store hands to everything downstream of it: a measurement as checked on arrival.

The store (``_store``) keeps each measurement once, keyed by (metric, data ID, run), and evaluates it
against the metric's specifications and baseline as it arrives.  Alerts, change-point detection,
forwarding to InfluxDB and the reports all read the same two records, so they are defined here, in a
module of plain dataclasses with no database in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

DataIdValue = str | int
"""One value of a data ID (``band='r'``, ``tract=9813``)."""


def data_id_key(data_id: Mapping[str, DataIdValue]) -> str:
    """The canonical text of a data ID: its items sorted by dimension, as compact JSON.

    ``{}`` for a metric measured over the whole run.  Two data IDs with the same items give the same
    key whatever order they were written in, so it can be a column of the store's unique key.
    """
    return json.dumps(dict(sorted(data_id.items())), separators=(",", ":"))


def data_id_from_key(key: str) -> dict[str, DataIdValue]:
    """The data ID a `data_id_key` was made from."""
    return dict(json.loads(key))


@dataclass(frozen=True)
class Provenance:
    """Where a run's measurements came from: enough to say what changed between two runs.

    ``versions`` maps a package (``porter``, ``lsst-daf-butler``, ``git``) to its version or SHA;
    ``config_hash`` identifies the task configuration; ``inputs`` are the input collections.
    """

    run: str
    time: float
    collection: str = ""
    pipeline: str = ""
    task: str = ""
    config_hash: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()

    def differences(self, other: Provenance) -> dict[str, tuple[object, object]]:
        """What differs from ``other``, field by field (a package's version as ``versions.NAME``).

        The run and time always differ and are left out; the answer names what a person would look
        at to explain a change: software, configuration, pipeline, inputs.
        """
        changed: dict[str, tuple[object, object]] = {}
        for name in ("collection", "pipeline", "task", "config_hash", "inputs"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                changed[name] = (a, b)
        for package in sorted(set(self.versions) | set(other.versions)):
            a_version, b_version = self.versions.get(package), other.versions.get(package)
            if a_version != b_version:
                changed[f"versions.{package}"] = (a_version, b_version)
        return changed


@dataclass(frozen=True)
class Outcome:
    """One stored measurement and what its arrival check found.

    ``levels`` maps each specification level that applies to this measurement (``minimum``,
    ``design``, ``stretch``) to whether it passed; a metric with no applicable spec has none.
    ``baseline`` is the value it was compared with (``None`` when there is no baseline yet) and
    ``regressed`` whether it is worse than that baseline in the metric's direction beyond its
    tolerance.  ``value`` is in ``unit``, the metric's declared unit.
    """

    metric: str
    data_id: Mapping[str, DataIdValue]
    run: str
    time: float
    value: float
    unit: str
    levels: Mapping[str, bool] = field(default_factory=dict)
    baseline: float | None = None
    regressed: bool = False

    @property
    def key(self) -> str:
        """The data ID's canonical text (`data_id_key`)."""
        return data_id_key(self.data_id)

    def failed(self, level: str) -> bool:
        """Whether the measurement failed the spec at ``level`` (``False`` when none applies)."""
        return self.levels.get(level) is False
