"""The htm7 spatial index at scale: parallel envelopes, deferred index builds, failed loads.

Inserts of 40,000+ regions take the worker-process path and (on SQLite) build
the overlap table's pixel index after the load.  The regions are the real
HSC RC2 visit-detector footprints, repeated around the sky by rotating them
in right ascension; the expected pixels come from lsst.sphgeom directly.
"""

from __future__ import annotations

import functools
from typing import Any

import lsst.sphgeom
import pytest
import sqlalchemy

from conftest import load
from porter import Butler
from porter.errors import DataIdError
from porter.registry._spatial_index import PARALLEL_THRESHOLD

COPIES = 37  # x 1132 real footprints = 41,884 regions
STEP_DEG = 10.0
HTM7 = lsst.sphgeom.HtmPixelization(7)


def _rotated(region: lsst.sphgeom.ConvexPolygon, degrees: float) -> lsst.sphgeom.ConvexPolygon:
    axis, angle = lsst.sphgeom.UnitVector3d.Z(), lsst.sphgeom.Angle.fromDegrees(degrees)
    return lsst.sphgeom.ConvexPolygon([v.rotatedAround(axis, angle) for v in region.getVertices()])


@functools.cache
def _real_footprints() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The HSC RC2 subset's visits and visit-detector regions, as record dicts."""
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as tmp:
        butler = load(Butler.create(tmp), "hsc-rc2-subset.yaml")
        visits = [r.to_dict() for r in butler.query_dimension_records("visit", instrument="HSC")]
        regions = [
            r.to_dict() for r in butler.query_dimension_records("visit_detector_region", instrument="HSC")
        ]
        butler.close()
    return visits, regions


@functools.cache
def _copies(first: int, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Visits and visit-detector regions of ``count`` rotated copies of the real footprints."""
    visits, regions = _real_footprints()
    new_visits, new_regions = [], []
    for k in range(first, first + count):
        offset, degrees = 100_000 * k, STEP_DEG * k
        for v in visits:
            new_visits.append(
                {
                    **v,
                    "id": v["id"] + offset,
                    "name": f"{v['name']}-{k}",
                    "region": _rotated(v["region"], degrees),
                }
            )
        for r in regions:
            new_regions.append({**r, "visit": r["visit"] + offset, "region": _rotated(r["region"], degrees)})
    return new_visits, new_regions


def _overlap_rows(repo: Butler) -> set[tuple[int, int, int]]:
    """(visit, detector, htm7) rows of the stored spatial index."""
    table = repo.registry.schema.overlaps["visit_detector_region"]
    with repo.registry.db.reading() as conn:
        return {(r.visit, r.detector, r.htm7) for r in conn.execute(sqlalchemy.select(table))}


def _pixel_index_exists(repo: Butler) -> bool:
    table = repo.registry.schema.overlaps["visit_detector_region"]
    with repo.registry.db.reading() as conn:
        indexes = sqlalchemy.inspect(conn).get_indexes(table.name, schema=table.schema)
    return any(i["column_names"] == ["htm7"] for i in indexes)


def _expected(regions: list[dict[str, Any]]) -> set[tuple[int, int, int]]:
    return {
        (r["visit"], r["detector"], pix)
        for r in regions
        for begin, end in HTM7.envelope(r["region"]).ranges()
        for pix in range(begin, end)
    }


@pytest.fixture
def hsc(repo: Butler) -> Butler:
    load(repo, "hsc-rc2-subset.yaml")
    visits, _ = _copies(1, COPIES)
    repo.insert_dimension_records("visit", visits)
    return repo


def test_large_insert_indexes_every_region_like_sphgeom(hsc: Butler) -> None:
    before = _overlap_rows(hsc)
    _, regions = _copies(1, COPIES)
    assert len(regions) >= PARALLEL_THRESHOLD  # the worker-process path
    assert hsc.insert_dimension_records("visit_detector_region", regions) == len(regions)
    assert _overlap_rows(hsc) == before | _expected(regions)
    assert _pixel_index_exists(hsc)
    # The index answers spatial queries: the detectors of one rotated copy
    # overlapping a point at the centre of one of its footprints.
    probe = regions[len(regions) // 2]
    centre = lsst.sphgeom.LonLat(probe["region"].getCentroid())
    ra, dec = centre.getLon().asDegrees(), centre.getLat().asDegrees()
    found = hsc.query_data_ids(
        ["visit", "detector"],
        instrument="HSC",
        where=f"visit = {probe['visit']} AND visit_detector_region.region OVERLAPS POINT({ra}, {dec})",
    )
    expected = {
        r["detector"]
        for r in regions
        if r["visit"] == probe["visit"] and r["region"].contains(lsst.sphgeom.UnitVector3d(centre))
    }
    assert {d["detector"] for d in found} == expected and probe["detector"] in expected


def test_duplicate_in_a_large_insert_indexes_only_the_record_kept(hsc: Butler) -> None:
    _, regions = _copies(1, COPIES)
    first = regions[100]
    duplicate = {**first, "region": _rotated(first["region"], 180.0)}  # same key, other side of the sky
    n = hsc.insert_dimension_records(
        "visit_detector_region", [*regions[:101], duplicate, *regions[101:]], skip_existing=True
    )
    assert n == len(regions)
    stored = {pix for v, d, pix in _overlap_rows(hsc) if (v, d) == (first["visit"], first["detector"])}
    assert stored == {pix for _, _, pix in _expected([first])}


def test_failed_large_insert_leaves_repository_and_indexes_unchanged(hsc: Butler) -> None:
    _, regions = _copies(1, COPIES)
    hsc.insert_dimension_records("visit_detector_region", regions[:1000])
    before = _overlap_rows(hsc)
    broken = [dict(r) for r in regions[1000:]]
    assert len(broken) >= PARALLEL_THRESHOLD
    broken[-10]["region"] = b"not an sphgeom region"  # found by a worker, after rows were written
    with pytest.raises(DataIdError, match="has an invalid region") as error:
        hsc.insert_dimension_records("visit_detector_region", broken)
    bad = broken[-10]
    assert f"'visit': {bad['visit']}" in str(error.value) and f"'detector': {bad['detector']}" in str(
        error.value
    )
    assert f"#{len(broken) - 10} of those given" in str(error.value)
    assert _overlap_rows(hsc) == before
    assert len(hsc.query_dimension_records("visit_detector_region", instrument="HSC")) == 1132 + 1000
    assert _pixel_index_exists(hsc)
    # The repository still takes the same load once it is fixed.
    hsc.insert_dimension_records("visit_detector_region", regions[1000:])
    assert _overlap_rows(hsc) == before | _expected(regions[1000:])
