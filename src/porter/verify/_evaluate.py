"""On-arrival evaluation of a batch of measurements of one metric, in numpy.

The store checks every measurement as it arrives: against each applicable specification (pass or
fail per level, units converted) and against its baseline (regressed or not).  A batch of a
million measurements must be checked in about a second, so nothing here loops over measurements
in Python: a metric's rows are one array, a spec is one vectorised comparison, and a spec's
``metadata_query`` is evaluated once per distinct data ID, not once per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._metrics import LEVELS, Metric
from ._specs import OPERATORS, Specification
from ._units import conversion_factor

LEVEL_BITS: dict[str, int] = {level: 1 << i for i, level in enumerate(LEVELS)}
"""Each level's bit in the stored ``applicable`` and ``passed`` masks (minimum 1, design 2, stretch 4)."""


def levels_from_bits(applicable: int, passed: int) -> dict[str, bool]:
    """``{level: passed}`` for each level whose bit is set in ``applicable``."""
    return {level: bool(passed & bit) for level, bit in LEVEL_BITS.items() if applicable & bit}


@dataclass(frozen=True)
class Checked:
    """The specification part of a metric's batch: level masks per row."""

    applicable: np.ndarray  # int8 per row: the levels some spec applies at
    passed: np.ndarray  # int8 per row: the applicable levels every spec at that level passed


def check_specs(
    metric: Metric,
    specs: Sequence[Specification],
    values: np.ndarray,
    data_id_index: np.ndarray,
    metadata: Sequence[Mapping[str, Any]],
) -> Checked:
    """Evaluate ``values`` (in the metric's unit) against ``specs`` of one metric.

    ``data_id_index[i]`` is row ``i``'s position in ``metadata`` (the distinct data IDs of the batch,
    each merged with the run's metadata), which a spec's ``metadata_query`` is matched against.
    Several specs at one level (``design`` for r and for i, scoped by band) combine with *and*.
    A spec without a level (neither declared nor in its name) is not a level and is left out.
    """
    n = len(values)
    applicable = np.zeros(n, dtype=np.int8)
    failed = np.zeros(n, dtype=np.int8)
    for spec in specs:
        if spec.level is None:
            continue
        bit = LEVEL_BITS[spec.level]
        threshold = spec.threshold.value * conversion_factor(spec.threshold.unit, metric.unit)
        meets = OPERATORS[spec.threshold.operator](values, threshold)
        if spec.metadata_query:
            scope = np.fromiter((spec.applies_to(m) for m in metadata), dtype=bool, count=len(metadata))
            rows = scope[data_id_index]
        else:
            rows = np.ones(n, dtype=bool)
        applicable[rows] |= bit
        failed[rows & ~meets] |= bit
    return Checked(applicable, applicable & ~failed)


def regressions(metric: Metric, values: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Which ``values`` are worse than ``baseline`` (NaN: no baseline) beyond the metric's tolerance.

    Without a ``direction`` nothing is worse than anything, so nothing regresses.
    """
    if metric.direction is None or metric.baseline is None:
        return np.zeros(len(values), dtype=bool)
    margin = metric.baseline.tolerance * np.abs(baseline)
    with np.errstate(invalid="ignore"):
        if metric.direction == "lower":
            worse = values > baseline + margin
        else:
            worse = values < baseline - margin
    return worse & ~np.isnan(baseline)
