"""Bad queries get clear errors that name the problem, and leave the repository unchanged."""

from __future__ import annotations

import pytest

from conftest import load
from porter import Butler
from porter.errors import (
    DataIdError,
    ExpressionSyntaxError,
    InvalidQueryError,
    MissingCollectionError,
    MissingDatasetTypeError,
)
from test_registry import snapshot


@pytest.fixture
def loaded(repo: Butler) -> Butler:
    return load(repo, "base.yaml", "datasets.yaml", "spatial.yaml")


def caret_column(message: str) -> int:
    return message.splitlines()[-1].index("^") - 4


@pytest.mark.parametrize(
    ("where", "exc", "fragment", "at"),
    [
        ("visit > 1 AND", ExpressionSyntaxError, "ended early", None),
        ("instrument = 'Cam1' AND detectr = 1", InvalidQueryError, "Did you mean 'detector'", "detectr"),
        (
            "instrument = 'Cam1' AND detector.rafft = 'A'",
            InvalidQueryError,
            "Did you mean 'raft'",
            "detector.rafft",
        ),
        (
            "instrument = 'Cam1' AND visit.exposure_tim > 2",
            InvalidQueryError,
            "Did you mean 'exposure_time'",
            "visit.exp",
        ),
        (
            "instrument = 'Cam1' AND detector = 'one'",
            InvalidQueryError,
            "do not agree (int, string)",
            "= 'one'",
        ),
        (
            "instrument = 'Cam1' AND visit.timespan OVERLAPS ('2021-01-01', NULL)",
            InvalidQueryError,
            "T prefix",
            "'2021",
        ),
        (
            "instrument = 'Cam1' AND visit.timespan.begin > '2021-01-01'",
            InvalidQueryError,
            "T'2021-09-09",
            ">",
        ),
        ("instrument = 'Cam1' AND visit = :vv", InvalidQueryError, "Did you mean 'v'", ":vv"),
        ("instrument = 'Cam1' AND FOO(visit) = 1", InvalidQueryError, "Unknown function FOO", "FOO"),
        (
            "instrument = 'Cam1' AND visit.region OVERLAPS 3",
            InvalidQueryError,
            "OVERLAPS compares two regions",
            "OVERLAPS",
        ),
        ("instrument = 'Cam1' AND visit + 1", InvalidQueryError, "not a condition", "visit"),
    ],
)
def test_where_errors(loaded: Butler, where: str, exc: type, fragment: str, at: str | None) -> None:
    before = snapshot(loaded)
    with pytest.raises(exc) as info:
        loaded.query_data_ids(["visit", "detector"], where=where, bind={"v": 1})
    message = str(info.value)
    assert fragment in message
    assert where in message
    expected = len(where) if at is None else where.index(at)
    assert caret_column(message) == expected, message
    assert snapshot(loaded) == before


def test_governor_error_says_which_governor_to_add(loaded: Butler) -> None:
    with pytest.raises(InvalidQueryError, match=r"add instrument = '…'"):
        loaded.query_data_ids(["detector"], where="detector = 1")
    with pytest.raises(InvalidQueryError, match="skymap"):
        loaded.query_data_ids(["patch"], where="tract = 0")


def test_unknown_names_outside_where(loaded: Butler) -> None:
    with pytest.raises(MissingDatasetTypeError, match="Did you mean 'bias'"):
        loaded.query_datasets("biass", "imported_g")
    with pytest.raises(MissingCollectionError, match="Did you mean 'imported_g'"):
        loaded.query_datasets("bias", "imported_gg")
    with pytest.raises(DataIdError, match="Did you mean 'visit'"):
        loaded.query_data_ids(["vist"])
    with pytest.raises(DataIdError, match="Did you mean 'detector'"):
        loaded.query_data_ids(["visit"], instrument="Cam1", detectr=1)
    with pytest.raises(DataIdError, match="must be an integer"):
        loaded.query_data_ids(["visit"], instrument="Cam1", visit="two")
    with pytest.raises(DataIdError, match="Did you mean 'visit'"):
        loaded.query_dimension_records("vist")
    with pytest.raises(InvalidQueryError, match="not a dimension of the results"):
        loaded.query_data_ids(["detector"], instrument="Cam1", order_by=["visit"])


def test_spatial_restrictions(loaded: Butler) -> None:
    with pytest.raises(InvalidQueryError, match="nested inside OR or NOT"):
        loaded.query_data_ids(["visit"], instrument="Cam1", where="NOT visit.region OVERLAPS POINT(0, 0)")
    with pytest.raises(InvalidQueryError, match="Cannot query htm7 on its own"):
        loaded.query_data_ids(["htm7"])
    with pytest.raises(InvalidQueryError, match="not necessary"):
        loaded.query_data_ids(
            ["visit", "detector"],
            instrument="Cam1",
            where="visit.region OVERLAPS visit_detector_region.region",
        )


@pytest.mark.parametrize(
    ("region", "fragment"),
    [
        (b"\x00garbage", "has an invalid region"),
        ("POLYGON(0 0, 1 0, 1 1)", "must be an lsst.sphgeom region, not str"),
    ],
)
def test_invalid_regions_name_the_record(loaded: Butler, region: object, fragment: str) -> None:
    before = snapshot(loaded)
    (visit,) = loaded.query_dimension_records("visit", instrument="Cam1", visit=1)
    records = [{**visit.to_dict(), "id": 1000 + i, "name": f"new{i}"} for i in range(3)]
    records[1]["region"] = region
    with pytest.raises(DataIdError, match=fragment) as error:
        loaded.insert_dimension_records("visit", records)
    if isinstance(region, bytes):
        assert "'id': 1001" in str(error.value) and "#1 of those given" in str(error.value)
    assert snapshot(loaded) == before
