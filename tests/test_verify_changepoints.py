"""Change-point detection over metric series (porter.verify._changepoints).

What is checked: a planted shift is found where it was planted and attributed to the provenance
change between the runs on either side; flat noise gives nothing; non-finite values are refused
with a message naming them; the answer does not depend on the series' offset, scale or sign; the
batch path (`detect_many`, with its screen) gives exactly the single-series answers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from porter.verify import (
    ChangePoint,
    MeasurementValueError,
    Outcome,
    Provenance,
    change_points,
    change_points_many,
    detect,
    detect_many,
    group_series,
)
from porter.verify._changepoints import _certified_flat, _standardise, penalty

DATA_ID = {"tract": 9813, "band": "r"}


def series_of(
    values: np.ndarray, metric: str = "validate_drp.AM1", data_id: dict | None = None
) -> list[Outcome]:
    return [
        Outcome(
            metric=metric,
            data_id=dict(DATA_ID if data_id is None else data_id),
            run=f"run{i:03d}",
            time=1000.0 + i,
            value=float(v),
            unit="mas",
        )
        for i, v in enumerate(values)
    ]


def provenance_for(n: int, changed_at: int) -> dict[str, Provenance]:
    """Runs share software and inputs; the configuration changes at run ``changed_at``."""
    return {
        f"run{i:03d}": Provenance(
            run=f"run{i:03d}",
            time=1000.0 + i,
            collection="HSC/runs/RC2",
            pipeline="DRP.yaml",
            task="matchedVisitMetrics",
            config_hash="cfg-good" if i < changed_at else "cfg-degraded",
            versions={"porter": "1.4.0", "lsst-pipe-tasks": "w.2026.48"},
            inputs=("HSC/raw/all",),
        )
        for i in range(n)
    }


def noise(n: int, seed: int, sigma: float = 0.5, level: float = 10.0) -> np.ndarray:
    return level + sigma * np.random.default_rng(seed).standard_normal(n)


# ---------------------------------------------------------------- planted shift, attributed


def test_planted_step_is_found_at_its_run_and_attributed_to_the_config_change() -> None:
    values = noise(40, seed=1)
    values[25:] += 3.0  # AM1 degrades by 3 mas from run 25 on
    series = series_of(values)
    found = change_points(series, provenance_for(40, changed_at=25))
    assert len(found) == 1
    cp = found[0]
    assert isinstance(cp, ChangePoint)
    assert (cp.metric, dict(cp.data_id), cp.unit) == ("validate_drp.AM1", DATA_ID, "mas")
    assert (cp.index, cp.run_before, cp.run_after) == (25, "run024", "run025")
    assert (cp.time_before, cp.time_after) == (1024.0, 1025.0)
    assert cp.changed == {"config_hash": ("cfg-good", "cfg-degraded")}
    assert cp.mean_before == pytest.approx(values[:25].mean())
    assert cp.mean_after == pytest.approx(values[25:].mean())
    assert cp.shift == pytest.approx(3.0, abs=0.5)
    text = cp.describe()
    assert "run024" in text and "run025" in text and "cfg-degraded" in text and "mas" in text
    as_json = json.loads(json.dumps(cp.to_dict()))
    assert as_json["changed"] == {"config_hash": ["cfg-good", "cfg-degraded"]}
    assert as_json["shift"] == pytest.approx(cp.shift)


def test_two_shifts_each_get_the_means_of_their_own_levels() -> None:
    values = noise(90, seed=2)
    values[30:60] += 4.0
    found = change_points(series_of(values), provenance_for(90, changed_at=30))
    assert [cp.index for cp in found] == [30, 60]
    assert found[0].mean_after == pytest.approx(values[30:60].mean())
    assert found[1].mean_before == pytest.approx(values[30:60].mean())
    assert found[1].mean_after == pytest.approx(values[60:].mean())
    assert found[0].changed == {"config_hash": ("cfg-good", "cfg-degraded")}
    assert found[1].changed == {}  # the recovery at run 60 has no recorded cause


def test_a_software_version_change_is_named_by_package() -> None:
    values = noise(30, seed=3)
    values[12:] -= 2.0
    prov = provenance_for(30, changed_at=100)  # config never changes
    for i in range(12, 30):
        p = prov[f"run{i:03d}"]
        prov[p.run] = Provenance(
            run=p.run, time=p.time, collection=p.collection, pipeline=p.pipeline, task=p.task,
            config_hash=p.config_hash, versions={**p.versions, "lsst-pipe-tasks": "w.2026.49"},
            inputs=p.inputs,
        )  # fmt: skip
    (cp,) = change_points(series_of(values), prov)
    assert cp.changed == {"versions.lsst-pipe-tasks": ("w.2026.48", "w.2026.49")}


def test_unknown_provenance_is_none_not_an_empty_change() -> None:
    values = noise(30, seed=4)
    values[15:] += 5.0
    prov = provenance_for(30, changed_at=15)
    del prov["run014"]
    (cp,) = change_points(series_of(values), prov)
    assert (cp.run_before, cp.changed) == ("run014", None)
    assert "unknown" in cp.describe()


def test_series_is_ordered_by_time_whatever_order_it_arrives_in() -> None:
    values = noise(40, seed=5)
    values[20:] += 3.0
    series = series_of(values)
    shuffled = [series[i] for i in np.random.default_rng(0).permutation(len(series))]
    prov = provenance_for(40, changed_at=20)
    assert change_points(shuffled, prov) == change_points(series, prov)


# ---------------------------------------------------------------- nothing to find


def test_flat_noisy_series_has_no_change_points() -> None:
    for seed in range(20):
        assert change_points(series_of(noise(300, seed=seed)), provenance_for(300, 150)) == []
        assert detect(noise(1000, seed=100 + seed, sigma=5.0)) == []


def test_one_wild_point_is_an_outlier_not_a_shift() -> None:
    values = noise(60, seed=6, sigma=0.5)
    values[30] += 3.0  # 6 sigma
    assert detect(values) == []


def test_an_extreme_single_point_shows_as_a_short_level_not_a_lasting_shift() -> None:
    """The l2 cost is not robust: a 100-sigma glitch is a level of ``min_size`` points, closed again."""
    values = noise(60, seed=6, sigma=0.5)
    values[30] += 50.0
    found = detect(values)
    assert len(found) == 2 and found[0] <= 30 < found[1] and found[1] - found[0] == 2


def test_short_constant_and_empty_series_have_none() -> None:
    assert detect([1.0, 5.0, 9.0]) == []  # fewer than 2 * min_size points
    assert detect(np.full(50, 7.25)) == []
    assert change_points([], {}) == []
    assert detect_many([]) == []


def test_steps_in_an_otherwise_constant_series_are_found() -> None:
    """Integer-valued metrics (counts) are often constant between jumps: MAD 0, still a scale."""
    values = np.array([4] * 20 + [9] * 20 + [4] * 20, dtype=float)
    assert detect(values) == [20, 40]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_naming_where(bad: float) -> None:
    values = noise(20, seed=7)
    values[13] = bad
    with pytest.raises(MeasurementValueError, match="index 13"):
        detect(values)
    with pytest.raises(MeasurementValueError, match=r"series 1 .*index 13"):
        detect_many([noise(20, seed=8), values])
    with pytest.raises(MeasurementValueError, match="run013"):
        change_points(series_of(values), {})
    with pytest.raises(MeasurementValueError, match="run013"):
        change_points_many([series_of(noise(20, seed=9)), series_of(values)], {})


def test_a_series_mixing_metrics_data_ids_or_units_is_refused() -> None:
    a = series_of(noise(10, seed=10))
    b = series_of(noise(10, seed=11), data_id={"tract": 9813, "band": "i"})
    with pytest.raises(ValueError, match="group_series"):
        change_points(a + b, {})
    other_unit = [Outcome(o.metric, o.data_id, o.run + "x", o.time, o.value, "arcsec") for o in a[:2]]
    with pytest.raises(ValueError, match="arcsec"):
        change_points(a + other_unit, {})


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="beta"):
        detect(noise(20, seed=12), beta=0)
    with pytest.raises(ValueError, match="min_size"):
        detect(noise(20, seed=12), min_size=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        detect(np.zeros((3, 4)))


# ---------------------------------------------------------------- many series


def test_change_points_many_groups_and_matches_one_by_one() -> None:
    outcomes: list[Outcome] = []
    for band, shift_at in [("g", 10), ("r", None), ("i", 35)]:
        values = noise(50, seed=ord(band))
        if shift_at is not None:
            values[shift_at:] += 4.0
        outcomes += series_of(values, data_id={"tract": 9813, "band": band})
    outcomes += series_of(noise(50, seed=13), metric="validate_drp.PA1")
    prov = provenance_for(50, changed_at=10)
    groups = group_series(reversed(outcomes))
    assert len(groups) == 4
    assert all([o.time for o in s] == sorted(o.time for o in s) for s in groups.values())
    many = change_points_many(groups.values(), prov)
    one_by_one = [cp for s in groups.values() for cp in change_points(s, prov)]
    assert many == one_by_one
    assert {(cp.data_id["band"], cp.index) for cp in many} == {("g", 10), ("i", 35)}


def test_detect_many_equals_detect_on_a_mixed_batch() -> None:
    rng = np.random.default_rng(14)
    batch: list[np.ndarray] = []
    for i in range(120):
        x = rng.normal(size=[300, 300, 80, 7][i % 4]) * (1 + i % 5)
        if i % 3 == 0:
            x[len(x) // 3 :] += 6 * (1 + i % 5)
        if i % 7 == 0:  # a short excursion that a single split would not see
            x[100:110] += 3.5 * (1 + i % 5)
        batch.append(x)
    batch.append(np.full(300, 2.0))
    assert detect_many(batch) == [detect(x) for x in batch]


# ---------------------------------------------------------------- properties (hypothesis)


@settings(deadline=None, max_examples=60)
@given(
    n=st.integers(min_value=8, max_value=400),
    where=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.floats(min_value=12.0, max_value=100.0),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_a_large_step_planted_anywhere_is_found_within_one(
    n: int, where: float, seed: int, size: float, sign: float
) -> None:
    at = 2 + round(where * (n - 4))  # at least min_size points on each side
    values = noise(n, seed=seed, sigma=1.0)
    values[at:] += sign * size
    found = detect(values)
    assert any(abs(i - at) <= 1 for i in found), (at, found)


integer_series = st.lists(st.integers(min_value=-1000, max_value=1000), min_size=0, max_size=120)


@settings(deadline=None, max_examples=150)
@given(
    values=integer_series,
    step_at=st.integers(min_value=0, max_value=120),
    step=st.integers(min_value=-5000, max_value=5000),
    offset=st.integers(min_value=-(10**9), max_value=10**9),
    power=st.integers(min_value=-20, max_value=20),
    sign=st.sampled_from([-1, 1]),
)
def test_indices_do_not_depend_on_offset_scale_or_sign(
    values: list[int], step_at: int, step: int, offset: int, power: int, sign: int
) -> None:
    """Exact on data where the affine map is exact in floating point (integers, powers of two)."""
    x = np.array(values, dtype=float)
    x[min(step_at, len(x)) :] += step
    moved = sign * 2.0**power * (x + offset)
    assert detect(moved) == detect(x)


@settings(deadline=None, max_examples=60)
@given(
    n=st.integers(min_value=10, max_value=300),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    scale=st.floats(min_value=1e-6, max_value=1e6),
    offset=st.floats(min_value=-1e6, max_value=1e6),
)
def test_a_clear_shift_is_found_at_the_same_place_in_any_unit(
    n: int, seed: int, scale: float, offset: float
) -> None:
    values = noise(n, seed=seed, sigma=1.0)
    values[n // 2 :] += 25.0
    expected = detect(values)
    assert n // 2 in expected
    assert detect(values * scale + offset) == expected


def shapes(draw: st.DrawFn) -> np.ndarray:
    """Noise with a few level segments of random length and height: steps, blips, plateaus."""
    n = draw(st.integers(min_value=4, max_value=250))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    x = rng.standard_normal(n)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        start = draw(st.integers(min_value=0, max_value=n - 1))
        length = draw(st.integers(min_value=1, max_value=n))
        x[start : start + length] += draw(st.floats(min_value=-6.0, max_value=6.0))
    return x


series_shapes = st.composite(shapes)()


@settings(deadline=None, max_examples=100)
@given(batch=st.lists(series_shapes, min_size=1, max_size=12))
def test_detect_many_gives_the_single_series_answers(batch: list[np.ndarray]) -> None:
    assert detect_many(batch) == [detect(x) for x in batch]


@settings(deadline=None, max_examples=150)
@given(x=series_shapes, beta=st.sampled_from([0.5, 1.0, 3.0, 6.0]))
def test_the_screen_only_skips_series_where_pelt_finds_nothing(x: np.ndarray, beta: float) -> None:
    """The batch path's shortcut is a proof, not a heuristic: whatever it skips has no change."""
    if len(x) < 4:
        return
    Z, usable = _standardise(x.reshape(1, -1))
    if usable[0] and _certified_flat(Z, penalty(len(x), beta))[0]:
        assert detect(x, beta=beta) == []


def test_the_screen_skips_most_flat_noise() -> None:
    """Not correctness but the reason for the screen: flat series rarely reach ruptures."""
    rng = np.random.default_rng(15)
    Z, usable = _standardise(rng.standard_normal((200, 1000)))
    assert usable.all()
    assert _certified_flat(Z, penalty(1000, 3.0)).mean() > 0.9
