"""Path templates: unique, safe paths for any values (property-based), and clear refusals."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from porter.datastore import DEFAULT_TEMPLATE, PathTemplate
from porter.dimensions import DimensionUniverse
from porter.errors import PathTemplateError
from porter.registry import DatasetType

UNIVERSE = DimensionUniverse.default()
CALEXP = DatasetType("calexp", UNIVERSE.conform(["instrument", "visit", "detector"]), "ExposureF")

values = st.one_of(st.integers(min_value=-(10**12), max_value=10**12), st.text(min_size=0, max_size=12))
data_ids = st.fixed_dictionaries(
    {"instrument": st.text(min_size=1, max_size=8), "visit": values, "detector": values},
    optional={"band": st.text(max_size=4), "day_obs": st.integers(0, 99999999)},
)
runs = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3).map("/".join)


def _path(template: PathTemplate, run: str, data_id: dict) -> str:
    return template.format(run=run, dataset_type="calexp", dataset_id="0" * 32, data_id=data_id)


@settings(max_examples=300, deadline=None)
@given(runs, data_ids, runs, data_ids)
def test_default_template_paths_are_unique_and_stay_below_the_root(run1, id1, run2, id2) -> None:  # type: ignore[no-untyped-def]
    template = PathTemplate(DEFAULT_TEMPLATE)
    template.check(CALEXP)
    p1, p2 = _path(template, run1, id1), _path(template, run2, id2)
    for p in (p1, p2):
        parts = PurePosixPath(p).parts
        assert p and not p.startswith("/") and ".." not in parts and "." not in parts and "" not in parts
    key1 = (run1, id1["instrument"], str(id1["visit"]), str(id1["detector"]))
    key2 = (run2, id2["instrument"], str(id2["visit"]), str(id2["detector"]))
    same_type = (type(id1["visit"]), type(id1["detector"])) == (type(id2["visit"]), type(id2["detector"]))
    if key1 != key2 and same_type:
        assert p1 != p2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(runs, data_ids), min_size=2, max_size=8))
def test_a_template_gives_the_same_paths_whatever_it_formatted_before(calls) -> None:  # type: ignore[no-untyped-def]
    """A template keeps one layout per pattern of present fields: a data ID with a band after one
    without (and back) must get the path a fresh template would give it."""
    shared = PathTemplate(DEFAULT_TEMPLATE)
    for run, data_id in calls:
        assert _path(shared, run, data_id) == _path(PathTemplate(DEFAULT_TEMPLATE), run, data_id)


def test_optional_fields_vanish_with_their_separator() -> None:
    t = PathTemplate("{run}/{datasetType}/{band:?}/{datasetType}_{band:?}_{visit}_{detector:?}")
    assert _path(t, "r", {"visit": 5, "band": "i"}) == "r/calexp/i/calexp_i_5"
    assert _path(t, "r", {"visit": 5}) == "r/calexp/calexp_5"
    assert (
        PathTemplate("{run}/{visit:08d}").format(
            run="a/b", dataset_type="x", dataset_id="i", data_id={"visit": 42}
        )
        == "a/b/00000042"
    )


def test_refusals() -> None:
    with pytest.raises(
        PathTemplateError,
        match="does not make calexp paths unique: add \\{datasetType\\}, \\{run\\}, \\{detector\\}",
    ):
        PathTemplate("{instrument}/{visit}").check(CALEXP)
    PathTemplate("{id}").check(CALEXP)  # the dataset ID alone is unique
    PathTemplate("{run}/{instrument}_{visit}_{detector}").check(CALEXP, shared=False)
    with pytest.raises(PathTemplateError, match=r"needs \{band\}.*make it optional"):
        _path(PathTemplate("{run}/{band}/{visit}"), "r", {"visit": 1})
    for bad in ["/{run}", "{run}/../{visit}"]:
        with pytest.raises(PathTemplateError, match="relative to the datastore root"):
            PathTemplate(bad)
    with pytest.raises(PathTemplateError, match="Malformed"):
        PathTemplate("{run")
