"""The dimension universe, data IDs, records and times."""

from __future__ import annotations

import astropy.time
import lsst.sphgeom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from porter.dimensions import (
    DataCoordinate,
    DimensionRecord,
    DimensionUniverse,
    Timespan,
    iso_from_tai_nsec,
    tai_nsec_from_iso,
    tai_nsec_from_time,
    time_from_tai_nsec,
)
from porter.errors import DataIdError


@pytest.fixture(scope="module")
def universe() -> DimensionUniverse:
    return DimensionUniverse.default()


def test_universe_matches_daf_butler(universe: DimensionUniverse) -> None:
    """Same elements, order, keys, dependencies and record schemas as daf_butler's default universe."""
    from lsst.daf.butler import DimensionUniverse as DafUniverse

    daf = DafUniverse()
    assert universe.version == daf.version and universe.namespace == daf.namespace
    assert list(universe.elements) == list(daf.getStaticElements().names)
    for element in daf.getStaticElements():
        ours = universe[element.name]
        assert list(ours.schema) == list(element.schema.names), element.name
        assert [d.name for d in ours.required] == list(element.required.names), element.name
        assert [d.name for d in ours.implied] == list(element.implied.names), element.name
        assert list(ours.minimal_group.names) == list(element.minimal_group.names), element.name
        assert (ours.spatial is not None) == (element.spatial is not None), element.name
        assert (ours.temporal is not None) == (element.temporal is not None), element.name
    assert universe.common_skypix.name == daf.commonSkyPix.name


def test_groups(universe: DimensionUniverse) -> None:
    g = universe.conform(["visit", "detector", "patch"])
    assert g.required == ("instrument", "skymap", "detector", "tract", "patch", "visit")
    assert g.implied == ("band", "day_obs", "physical_filter")
    assert "visit_detector_region" in g.elements
    assert set(g.spatial) == {"observation_regions", "skymap_regions"}
    assert universe.conform(["physical_filter", "band"]).required == ("instrument", "physical_filter")
    assert universe.conform(["band"]).required == ("band",)
    assert universe.conform(["visit"]) is universe.conform(["visit", "instrument"])


def test_unknown_dimension_suggests(universe: DimensionUniverse) -> None:
    with pytest.raises(DataIdError, match="Did you mean 'detector'"):
        universe.conform(["detecter"])


def test_data_coordinate_semantics(universe: DimensionUniverse) -> None:
    d = DataCoordinate.standardize(
        {"instrument": "HSC", "visit": 903342, "detector": "10"}, universe=universe
    )
    assert d["detector"] == 10  # coerced to the key type
    assert d.required == {"instrument": "HSC", "detector": 10, "visit": 903342}
    assert not d.has_full
    full = DataCoordinate.standardize(
        {"instrument": "HSC", "physical_filter": "HSC-R", "band": "r"}, universe=universe
    )
    assert full.has_full and full["band"] == "r"
    assert full == {"instrument": "HSC", "physical_filter": "HSC-R"}
    assert full == {"instrument": "HSC", "physical_filter": "HSC-R", "band": "r"}
    assert hash(full) == hash(
        DataCoordinate.standardize({"instrument": "HSC", "physical_filter": "HSC-R"}, universe=universe)
    )
    assert full.subset(["instrument"]) == {"instrument": "HSC"}
    with pytest.raises(DataIdError, match="missing required"):
        DataCoordinate.standardize({"visit": 1}, universe=universe)
    with pytest.raises(DataIdError, match="must be an integer"):
        DataCoordinate.standardize({"instrument": "HSC", "visit": "ten"}, universe=universe)
    with pytest.raises(DataIdError, match="not a dimension"):
        DataCoordinate.standardize({"instrument": "HSC", "vist": 1}, universe=universe)


def test_records(universe: DimensionUniverse) -> None:
    region = lsst.sphgeom.Circle(lsst.sphgeom.UnitVector3d(1, 0, 0), lsst.sphgeom.Angle.fromDegrees(1))
    begin = astropy.time.Time("2021-09-09 03:00:00", scale="tai")
    rec = DimensionRecord.from_mapping(
        universe["visit"],
        {
            "instrument": "Cam1",
            "id": 1,
            "physical_filter": "Cam1-G",
            "day_obs": 20210909,
            "name": "1",
            "exposure_time": 60,
            "region": region,
            "datetime_begin": begin,
            "datetime_end": astropy.time.Time("2021-09-09 03:01:00", scale="tai"),
        },
    )
    assert rec.exposure_time == 60.0 and isinstance(rec.exposure_time, float)
    assert rec.region.encode() == region.encode()
    assert rec.timespan.begin == begin
    assert rec.data_id == {"instrument": "Cam1", "visit": 1}
    assert set(rec.to_dict()) == set(universe["visit"].schema)
    assert set(rec.to_dict(split_timespan=True)) >= {"datetime_begin", "datetime_end"}
    with pytest.raises(AttributeError, match="Did you mean 'exposure_time'"):
        rec.exposure_tim  # noqa: B018
    with pytest.raises(DataIdError, match="Unknown field"):
        DimensionRecord.from_mapping(universe["detector"], {"instrument": "X", "id": 1, "raftt": "A"})
    with pytest.raises(DataIdError, match="missing its key"):
        DimensionRecord.from_mapping(universe["detector"], {"instrument": "X"})
    with pytest.raises(DataIdError, match="not valid"):
        DimensionRecord.from_mapping(universe["detector"], {"instrument": "X", "id": "one"})


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**18), max_value=4 * 10**18))
def test_nsec_iso_round_trip(nsec: int) -> None:
    assert tai_nsec_from_iso(iso_from_tai_nsec(nsec)) == nsec


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=4 * 10**18))
def test_nsec_astropy_round_trip(nsec: int) -> None:
    t = time_from_tai_nsec(nsec)
    assert t.scale == "tai"
    assert abs(tai_nsec_from_time(t) - nsec) <= 1
    assert t.isot.replace("T", " ")[:19] == iso_from_tai_nsec(nsec)[:19]


def test_iso_parsing_matches_astropy() -> None:
    text = "2013-06-17 13:34:45.775000000"
    assert tai_nsec_from_iso(text) == tai_nsec_from_time(astropy.time.Time(text, format="iso", scale="tai"))
    utc = astropy.time.Time("2017-01-01T00:00:00", scale="utc")
    # 37 leap seconds between TAI and UTC then.
    assert tai_nsec_from_time(utc) - tai_nsec_from_iso("2017-01-01 00:00:00") == 37_000_000_000


def test_timespans() -> None:
    a = Timespan("2021-01-01 00:00:00", "2021-01-02 00:00:00")
    b = Timespan("2021-01-01 12:00:00", None)
    assert a.overlaps(b) and b.overlaps(a)
    assert not a.overlaps(Timespan("2021-01-02 00:00:00", None))  # half-open
    assert Timespan(None, None).overlaps(a)
    assert not Timespan.make_empty().overlaps(Timespan(None, None))
    assert b.end is None and a.begin.scale == "tai"
    assert a.contains(astropy.time.Time("2021-01-01T06:00:00", scale="tai"))
    assert Timespan.from_day_obs(20210101) == Timespan("2021-01-01 00:00:00", "2021-01-02 00:00:00")
