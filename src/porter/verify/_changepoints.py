"""Change-point detection over a metric series: where did this metric, for this data ID, shift?

A series is one metric x one data ID ordered by run time.  A regression that arrives gradually, or
that a baseline of "the last N runs" has already absorbed, still shows as a *level shift* in the
series; this module finds those shifts and names the two runs on either side of each and what
changed between them (`Provenance.differences`: software versions, configuration, inputs).

The statistics are ruptures' (`ruptures.KernelCPD` with the linear kernel: exactly the ``l2``
cost, a change in mean, solved optimally by PELT in ruptures' C code), not written here.  What is
chosen here, and why:

Noise scale.  A penalised segmentation needs the noise variance sigma², and the series' own standard
deviation is inflated by the very shifts we look for.  sigma is estimated from the *first
differences*: a level shift moves one difference, so the median absolute deviation of the
differences (scipy's ``median_abs_deviation(scale="normal")``, divided by √2 because a difference
of two independent points has variance 2sigma²) ignores it.  Series that are constant between jumps
(MAD 0, e.g. integer counts) fall back to the standard deviation of the differences; a constant
series has no change points.

Penalty.  The series is standardised, ``z = (x - median) / sigma``, and PELT is run with
``pen = 2 β ln n`` per change point: β = 1 is the BIC of a change in mean with known variance (two
parameters per change: where, and the new level).  The default β = 3 (`DEFAULT_BETA`) because sigma is
estimated from the same, often short, series and a false change sends a person looking for a
cause.  Measured on Gaussian noise, the share of series in which a change is reported at β = 3 is
0.7 % at n = 30, 0 in 2,000 at n = 100 and 0 in 300 at n = 1,000 (β = 1 gives 22 %, 11 %, 2 %).
Because it works on ``z``, the indices found do not depend on the series' offset or scale (or
unit).  ``min_size`` (default 2) is the shortest level that counts, so one wild point cannot be a
level by itself; the l2 cost is not robust, though, so a single point far beyond the penalty
(about 10sigma at n = 60) still shows as a ``min_size``-point level with a change on each side.

Speed.  Kernel PELT is O(n²) on a series with no change (nothing can be pruned), about 5 ms at
n = 1,000.  `detect_many` therefore first runs an *exact* screen, vectorised over all series
(`_certified_flat`), that proves for most flat series that PELT would find nothing; only the rest
go to ruptures.  The screen never changes an answer, only skips work; `detect_many(xs)` equals
``[detect(x) for x in xs]``, which the tests check.  It cannot help a series that does shift: a
batch in which every series shifts costs a PELT run each (``bench/verify_peers.py --shifted 1``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._outcome import DataIdValue, Outcome, Provenance, data_id_key
from ._problems import MeasurementValueError

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_MIN_SIZE",
    "ChangePoint",
    "change_points",
    "change_points_many",
    "detect",
    "detect_many",
    "group_series",
    "noise_sigma",
]

DEFAULT_BETA = 3.0
"""Multiple of the BIC penalty (``2 ln n`` per change on the standardised series); see the module."""

DEFAULT_MIN_SIZE = 2
"""The fewest points a level must last to count as one."""

_SCREEN_MARGIN = 1e-9
"""Relative slack in the screen's comparison, so floating-point rounding can only make it skip less."""


@dataclass(frozen=True)
class ChangePoint:
    """A level shift in one metric's series for one data ID, and what changed where it happened.

    ``index`` is the position in the (time-ordered) series of the first measurement at the new
    level; ``run_before``/``run_after`` are the runs of the measurements at ``index - 1`` and
    ``index``.  ``mean_before``/``mean_after`` are the means of the levels on either side (from the
    previous change point, to the next one), in ``unit``, the metric's unit.  ``changed`` is
    `Provenance.differences` between the two runs — ``{}`` when their recorded provenance is the
    same, ``None`` when either run's provenance is unknown.
    """

    metric: str
    data_id: Mapping[str, DataIdValue]
    index: int
    run_before: str
    run_after: str
    time_before: float
    time_after: float
    mean_before: float
    mean_after: float
    unit: str
    changed: Mapping[str, tuple[object, object]] | None

    @property
    def shift(self) -> float:
        """``mean_after - mean_before``, in ``unit``."""
        return self.mean_after - self.mean_before

    @property
    def key(self) -> str:
        """The data ID's canonical text (`data_id_key`)."""
        return data_id_key(self.data_id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``changed`` values as two-item lists), for ``--json`` and reports."""
        return {
            "metric": self.metric,
            "data_id": dict(self.data_id),
            "index": self.index,
            "run_before": self.run_before,
            "run_after": self.run_after,
            "time_before": self.time_before,
            "time_after": self.time_after,
            "mean_before": self.mean_before,
            "mean_after": self.mean_after,
            "shift": self.shift,
            "unit": self.unit,
            "changed": None
            if self.changed is None
            else {k: [_plain(a), _plain(b)] for k, (a, b) in self.changed.items()},
        }

    def describe(self) -> str:
        """One line for a person: the metric, where, by how much, between which runs, and why."""
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.data_id.items())) or "whole run"
        if self.changed is None:
            why = "provenance of a run unknown"
        elif not self.changed:
            why = "no recorded provenance change"
        else:
            why = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in self.changed.items())
        return (
            f"{self.metric} [{where}]: {self.mean_before:.6g} -> {self.mean_after:.6g} {self.unit} "
            f"({self.shift:+.6g}) between runs {self.run_before!r} and {self.run_after!r}; {why}"
        )


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def noise_sigma(values: npt.ArrayLike) -> float:
    """Robust noise scale of a series: MAD of its first differences / √2 (see the module).

    Falls back to the standard deviation of the differences when the MAD is 0; 0 for a constant
    series (or one with fewer than two points).
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return 0.0
    return float(_sigmas(x.reshape(1, -1))[0])


def _sigmas(X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`noise_sigma` of each row of ``X`` (at least two columns), in one vectorised call."""
    from scipy.stats import median_abs_deviation

    D = np.diff(X, axis=1)
    sigma = np.asarray(median_abs_deviation(D, axis=1, scale="normal"), dtype=float)
    zero = sigma == 0.0
    if zero.any():
        sigma[zero] = np.std(D[zero], axis=1)
    return sigma / math.sqrt(2)


def penalty(n: int, beta: float = DEFAULT_BETA) -> float:
    """PELT's penalty per change point on a standardised series of ``n`` points: ``2 β ln n``."""
    return 2.0 * beta * math.log(n)


def _as_series(values: npt.ArrayLike, what: str = "series") -> npt.NDArray[np.float64]:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise MeasurementValueError(
            f"{what} has {bad.size} non-finite value{'s' if bad.size != 1 else ''} "
            f"(first {x[bad[0]]!r} at index {int(bad[0])}); change-point detection needs every "
            "measurement to be a finite number — NaN and infinities are refused when stored"
        )
    return x


def _standardise(X: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Rows of ``X`` as ``(x - median) / sigma``, and which rows are usable (sigma > 0; a constant row
    has nothing to detect)."""
    sigma = _sigmas(X)
    usable = sigma > 0.0
    Z = (X - np.median(X, axis=1, keepdims=True)) / np.where(usable, sigma, 1.0)[:, None]
    return Z, usable


def _pelt(z: npt.NDArray[np.float64], beta: float, min_size: int) -> list[int]:
    import ruptures

    algo = ruptures.KernelCPD(kernel="linear", min_size=min_size).fit(z)
    return [int(b) for b in algo.predict(pen=penalty(len(z), beta))[:-1]]


def _check_parameters(beta: float, min_size: int) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1, got {min_size!r}")


def detect(
    values: npt.ArrayLike, *, beta: float = DEFAULT_BETA, min_size: int = DEFAULT_MIN_SIZE
) -> list[int]:
    """Indices where the level of ``values`` shifts: each is the first point of a new level.

    ``values`` is one series in time order; it must be finite (`MeasurementValueError` names the
    first NaN or infinity).  A series shorter than ``2 * min_size`` has no change points.
    """
    _check_parameters(beta, min_size)
    x = _as_series(values)
    if x.size < 2 * min_size:
        return []
    Z, usable = _standardise(x.reshape(1, -1))
    return _pelt(Z[0], beta, min_size) if usable[0] else []


def detect_many(
    series: Iterable[npt.ArrayLike],
    *,
    beta: float = DEFAULT_BETA,
    min_size: int = DEFAULT_MIN_SIZE,
) -> list[list[int]]:
    """`detect` over many series (any lengths), the same answers, fast.

    Series of equal length are standardised and screened together (`_certified_flat`); only the
    ones the screen cannot prove flat are handed to ruptures.  Every series is checked for
    non-finite values first, so a bad one fails the call before any work is done.
    """
    _check_parameters(beta, min_size)
    xs = [_as_series(v, f"series {i}") for i, v in enumerate(series)]
    results: list[list[int]] = [[] for _ in xs]
    by_length: dict[int, list[int]] = {}
    for i, x in enumerate(xs):
        if x.size >= 2 * min_size:
            by_length.setdefault(x.size, []).append(i)
    for n, members in by_length.items():
        Z, usable = _standardise(np.vstack([xs[i] for i in members]))
        flat = _certified_flat(Z, penalty(n, beta)) | ~usable
        for row in np.flatnonzero(~flat):
            results[members[row]] = _pelt(Z[row], beta, min_size)
    return results


def _certified_flat(Z: npt.NDArray[np.float64], pen: float) -> npt.NDArray[np.bool_]:
    """For each row of ``Z``, whether it is *proved* that PELT with ``pen`` finds no change in it.

    Why it is exact.  Let ``y`` be a row minus its mean and ``C`` its cumulative sums (``C₀ = Cₙ =
    0``).  For a segment ``[s, e)`` of length ``len`` (not the whole row) let
    ``g(s, e) = (C_e - C_s)² · n / (len (n - len))`` — the cost saved by cutting that segment out of the
    row.  If the optimal segmentation had k ≥ 1 changes, its segments ``A₀…A_k`` would save
    ``G = Σ len_j m_j² > k·pen`` over no change (the l2 cost splits by the analysis-of-variance
    identity; ``m_j`` is the segment's mean of ``y``), and each term is at most ``g`` of its
    segment.  With k = 1, ``G`` *is* ``g`` of either segment, so some ``g > pen``; with k ≥ 2,
    some ``g ≥ G/(k+1) > 2·pen/3``.  So ``max g < 2·pen/3`` proves no change (also under
    ``min_size``, which only removes segmentations).

    How it is fast.  ``g`` for every segment shorter than ``L`` (and every segment whose
    complement is shorter than ``L``) is computed exactly, one length at a time over all rows at
    once; for the lengths in between, ``(max C - min C)² · n / (L (n - L))`` bounds ``g``, and
    ``L`` is chosen per row just large enough for that bound to pass.  On flat noise of 1,000
    points ``L`` is 29 to 113 for four rows in five (median 56), so the screen costs O(n·L) vectorised operations per row instead of
    PELT's O(n²) interpreted-in-C steps, and rows it cannot prove flat are simply not skipped.
    """
    k, n = Z.shape
    limit = 2.0 * pen / 3.0 * (1.0 - _SCREEN_MARGIN)
    y = Z - Z.mean(axis=1, keepdims=True)
    C = np.zeros((k, n + 1))
    np.cumsum(y, axis=1, out=C[:, 1:])
    spread = C.max(axis=1) - C.min(axis=1)
    # Smallest L with spread² · n / (L (n - L)) < limit, i.e. L (n - L) > need.
    need = spread**2 * n / limit
    disc = float(n) * n - 4.0 * need
    with np.errstate(invalid="ignore"):
        L = np.where(disc > 0, np.floor((n - np.sqrt(np.maximum(disc, 0.0))) / 2.0) + 1.0, n)
    L = np.maximum(L, 1.0).astype(np.int64)
    # Rows whose L reaches the middle gain nothing from the bound: leave them to PELT.
    candidates = np.flatnonzero(n >= 2 * L)
    flat = np.zeros(k, dtype=bool)
    if candidates.size == 0:
        return flat
    order = candidates[np.argsort(-L[candidates], kind="stable")]  # longest scans first
    Cs, Ls = C[order], L[order]
    alive = np.ones(order.size, dtype=bool)
    for length in range(1, int(Ls[0])):
        rows = int(np.searchsorted(-Ls, -length, side="left"))  # rows with L > length: a prefix
        if rows == 0:
            break
        block = Cs[:rows]
        weight = n / (length * (n - length))
        inner = block[:, length:] - block[:, :-length]  # segments of this length
        outer = block[:, n - length :] - block[:, : length + 1]  # segments of length n - length
        worst = np.maximum(np.square(inner).max(axis=1), np.square(outer).max(axis=1))
        alive[:rows] &= worst * weight < limit
    flat[order[alive]] = True
    return flat


def group_series(outcomes: Iterable[Outcome]) -> dict[tuple[str, str], list[Outcome]]:
    """Outcomes split into series, keyed by (metric, `data_id_key`), each ordered by (time, run)."""
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.metric, outcome.key), []).append(outcome)
    for members in groups.values():
        members.sort(key=lambda o: (o.time, o.run))
    return groups


def _ordered(series: Sequence[Outcome]) -> list[Outcome]:
    """The series in (time, run) order, after checking it is one metric, one data ID, one unit."""
    first = series[0]
    for o in series:
        if (o.metric, o.key, o.unit) != (first.metric, first.key, first.unit):
            raise ValueError(
                "a change-point series is one metric for one data ID in one unit: "
                f"{first.metric} {first.key} [{first.unit}] and {o.metric} {o.key} [{o.unit}] "
                f"(run {o.run!r}) are mixed; split them with group_series"
            )
    return sorted(series, key=lambda o: (o.time, o.run))


def _values(ordered: Sequence[Outcome]) -> npt.NDArray[np.float64]:
    values = np.fromiter((o.value for o in ordered), dtype=float, count=len(ordered))
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        o = ordered[int(bad[0])]
        raise MeasurementValueError(
            f"{o.metric} {o.key}: measurement of run {o.run!r} is {o.value!r}; change-point "
            "detection needs finite values (the store refuses NaN and infinities on arrival)"
        )
    return values


def _points(
    ordered: Sequence[Outcome],
    values: npt.NDArray[np.float64],
    indices: Sequence[int],
    provenance: Mapping[str, Provenance],
) -> list[ChangePoint]:
    bounds = [0, *indices, len(ordered)]
    found: list[ChangePoint] = []
    for j, index in enumerate(indices):
        before, after = ordered[index - 1], ordered[index]
        p_before, p_after = provenance.get(before.run), provenance.get(after.run)
        changed = None if p_before is None or p_after is None else p_before.differences(p_after)
        found.append(
            ChangePoint(
                metric=after.metric,
                data_id=dict(after.data_id),
                index=index,
                run_before=before.run,
                run_after=after.run,
                time_before=before.time,
                time_after=after.time,
                mean_before=float(values[bounds[j] : index].mean()),
                mean_after=float(values[index : bounds[j + 2]].mean()),
                unit=after.unit,
                changed=changed,
            )
        )
    return found


def change_points(
    series: Sequence[Outcome],
    provenance: Mapping[str, Provenance],
    *,
    beta: float = DEFAULT_BETA,
    min_size: int = DEFAULT_MIN_SIZE,
) -> list[ChangePoint]:
    """The level shifts in one series (one metric x one data ID), each attributed to its runs.

    ``series`` is put in (time, run) order; mixing metrics, data IDs or units is a `ValueError`,
    a non-finite value a `MeasurementValueError` naming the run.  ``provenance`` maps a run name to
    its `Provenance`; runs missing from it give a `ChangePoint` whose ``changed`` is ``None``.
    """
    if not series:
        return []
    ordered = _ordered(series)
    values = _values(ordered)
    return _points(ordered, values, detect(values, beta=beta, min_size=min_size), provenance)


def change_points_many(
    series: Iterable[Sequence[Outcome]],
    provenance: Mapping[str, Provenance],
    *,
    beta: float = DEFAULT_BETA,
    min_size: int = DEFAULT_MIN_SIZE,
) -> list[ChangePoint]:
    """`change_points` over many series at once (through `detect_many`), in the order given.

    Pass ``group_series(outcomes).values()`` to go from a flat read of the store to series.
    """
    prepared = [(ordered, _values(ordered)) for ordered in (_ordered(s) for s in series if s)]
    indices = detect_many((v for _, v in prepared), beta=beta, min_size=min_size)
    found: list[ChangePoint] = []
    for (ordered, values), idx in zip(prepared, indices, strict=True):
        found.extend(_points(ordered, values, idx, provenance))
    return found
