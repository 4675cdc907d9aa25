"""Completeness maps: a checkpoint's datasets items drawn expected against delivered, against the butler's own answer.

Some of the demo's deepCoadds and calexps are removed from a copy of the
repository, the checks run (they store the missing data IDs in Parquet), and
the map must show exactly those patches, bands, visits and detectors missing.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from web_site import EMBARGOED, Site, screenshot, signed_in

ITEMS = "/releases/DEMO1/checkpoints/images/items"
GONE_COADDS = "(patch = 1 AND band = 'r') OR (patch = 2 AND band IN ('g', 'i'))"
GONE_CALEXPS = "visit = 1003 AND detector IN (2, 5)"


@contextlib.contextmanager
def _client(site: Site, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=60) as client:
        answer = client.post(site.ui("/login"), data={"token": site.tokens[user], "next": "/ui/"})
        assert answer.status_code == 303, answer.text
        yield client


def _remove_and_check(repo: Path) -> None:
    """Remove some coadds and calexps for good, then run the images checks (which store the missing IDs)."""
    from porter.butler import DirectButler
    from porter.release import Release, load_plan

    butler = DirectButler(repo, writeable=True)
    try:
        coadds = butler.query_datasets(
            "deepCoadd", collections=["u/demo/drp"], skymap="synth_skymap", where=GONE_COADDS
        )
        calexps = butler.query_datasets(
            "calexp", collections=["u/demo/drp"], instrument="SynthCam", where=GONE_CALEXPS
        )
        assert len(coadds) == 3 and len(calexps) == 2
        butler.prune_datasets([*coadds, *calexps], purge=True, unstore=True)
        plan_path = repo / "releases" / "DEMO1.yaml"
        Release(load_plan(plan_path), plan_path, butler).check("images")
    finally:
        butler.close()


def _missing_by_butler(repo: Path) -> tuple[set[tuple[int, str]], set[tuple[int, int]]]:
    """What the butler says is expected and not delivered: (patch, band) coadds and (visit, detector) calexps."""
    from porter.butler import DirectButler

    butler = DirectButler(repo)
    try:
        raws = {"datasets": "raw", "collections": ["SynthCam/raw/all"]}
        expected_coadds = {(d["patch"], d["band"]) for d in butler.query_data_ids(["patch", "band"], **raws)}
        coadds = {
            (r.data_id["patch"], r.data_id["band"]) for r in butler.query_datasets("deepCoadd", "u/demo/drp")
        }
        expected_calexps = {
            (d["visit"], d["detector"]) for d in butler.query_data_ids(["visit", "detector"], **raws)
        }
        calexps = {
            (r.data_id["visit"], r.data_id["detector"]) for r in butler.query_datasets("calexp", "u/demo/drp")
        }
        return expected_coadds - coadds, expected_calexps - calexps
    finally:
        butler.close()


def _cells(html: str) -> list[dict[str, Any]]:
    """The map's cells with missing data: their link's query as a dict of single values."""
    out = []
    for href in re.findall(r'<a href="([^"]*/completeness/missing\?[^"]*)" class="cell"', html):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(href.replace("&amp;", "&")).query)
        out.append({k: v[0] for k, v in query.items()} | {"href": href.replace("&amp;", "&")})
    return out


@pytest.fixture
def gapped(site: Site) -> Site:
    _remove_and_check(site.repo)
    return site


def test_map_shows_exactly_the_missing_patches_and_bands(gapped: Site) -> None:
    site = gapped
    gone_coadds, gone_calexps = _missing_by_butler(site.repo)
    assert gone_coadds == {(1, "r"), (2, "g"), (2, "i")}
    with _client(site, "reader") as client:
        page = client.get(site.ui(f"{ITEMS}/coadds/completeness"))
        assert page.status_code == 200, page.text
        assert "9 of 12 expected data IDs delivered" in page.text
        cells = _cells(page.text)
        assert {(int(c["patch"]), c["band"]) for c in cells} == gone_coadds
        assert all(c["type"] == "deepCoadd" and c["tract"] == "0" for c in cells)
        # one map per band, each patch a polygon of the skymap's
        for band in ("g", "r", "i"):
            assert f'data-testid="map-{band}"' in page.text
        assert page.text.count("<polygon ") == 12
        grid = client.get(site.ui(f"{ITEMS}/calexps/completeness"))
        assert grid.status_code == 200
        assert {(int(c["visit"]), int(c["detector"])) for c in _cells(grid.text)} == gone_calexps
        # the checkpoint page links each datasets item to its map
        cp = client.get(site.ui("/releases/DEMO1/checkpoints/images"))
        assert f"{ITEMS}/coadds/completeness" in cp.text and f"{ITEMS}/calexps/completeness" in cp.text


def test_missing_list_reads_the_stored_parquet(gapped: Site) -> None:
    site = gapped
    with _client(site, "reader") as client:
        listing = client.get(site.ui(f"{ITEMS}/coadds/completeness/missing"), params={"type": "deepCoadd"})
        assert listing.status_code == 200
        rows = re.findall(r'<tr data-testid="missing-row">(.*?)</tr>', listing.text, flags=re.S)
        found = {tuple(re.findall(r"<td>(.*?)</td>", r)) for r in rows}
        # columns: band, skymap, tract, patch (the dataset type's dimensions)
        assert found == {
            ("r", "synth_skymap", "0", "1"),
            ("g", "synth_skymap", "0", "2"),
            ("i", "synth_skymap", "0", "2"),
        }
        one = client.get(site.ui(f"{ITEMS}/coadds/completeness/missing"), params={"patch": "2", "band": "i"})
        assert '<strong data-testid="missing-total">1</strong>' in one.text
        visit = client.get(site.ui(f"{ITEMS}/calexps/completeness/missing"), params={"visit": "1003"})
        assert '<strong data-testid="missing-total">2</strong>' in visit.text
        ranged = client.get(
            site.ui(f"{ITEMS}/calexps/completeness/missing"),
            params={"visit_min": "1004", "visit_max": "1011"},
        )
        assert '<strong data-testid="missing-total">0</strong>' in ranged.text
        bad = client.get(site.ui(f"{ITEMS}/coadds/completeness/missing"), params={"colour": "red"})
        assert bad.status_code == 400 and "band" in bad.text
        worse = client.get(site.ui(f"{ITEMS}/coadds/completeness/missing"), params={"patch": "two"})
        assert worse.status_code == 400 and "whole number" in worse.text
        other = client.get(site.ui(f"{ITEMS}/coadds/completeness/missing"), params={"type": "calexp"})
        assert other.status_code == 400
        assert (
            client.get(
                site.ui("/releases/DEMO1/checkpoints/catalogs/items/object-table/completeness")
            ).status_code
            == 404
        )


def test_complete_item_and_unseen_releases(site: Site) -> None:
    with _client(site, "reader") as client:
        page = client.get(site.ui(f"{ITEMS}/coadds/completeness"))
        assert page.status_code == 200
        assert _cells(page.text) == []  # the demo delivers everything it expects
    with _client(site, "outsider") as client:
        assert client.get(site.ui(f"{ITEMS}/coadds/completeness")).status_code == 404
        assert client.get(site.ui(f"{ITEMS}/coadds/completeness/missing")).status_code == 404
    with _client(site, "reader") as client:
        hidden = client.get(site.ui(f"/releases/{EMBARGOED}/checkpoints/images/items/coadds/completeness"))
        assert hidden.status_code == 404


def test_browser_click_a_cell_lists_its_missing_ids(gapped: Site, browser: Any) -> None:
    page = signed_in(browser, gapped, "reader")
    try:
        page.goto(gapped.ui(f"{ITEMS}/coadds/completeness"))
        page.click("[data-testid=map-r] a.cell")
        panel = page.locator("[data-testid=missing-panel]")
        panel.locator("[data-testid=missing-row]").first.wait_for()
        assert panel.locator("[data-testid=missing-row]").count() == 1
        row = panel.locator("[data-testid=missing-row]").inner_text()
        assert row.split() == ["r", "synth_skymap", "0", "1"]
        assert page.url.endswith("/completeness")  # shown beside the map, not a new page
        screenshot(page, "completeness-map")
    finally:
        page.close()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_binned_axis_is_integer_on_every_database(backend: str, request: pytest.FixtureRequest) -> None:
    """A binned visit axis groups by whole bins on PostgreSQL too (its `/` of integers is not SQLite's)."""
    import sqlalchemy

    from porter.web._pages_completeness import _Axis

    url = request.getfixturevalue("pg_server") if backend == "postgresql" else "sqlite://"
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    axis = _Axis("visit", low=1000, span=53_000, bins=80)
    table = sqlalchemy.Table(
        "t", sqlalchemy.MetaData(), sqlalchemy.Column("v", sqlalchemy.Integer), prefixes=["TEMPORARY"]
    )
    with engine.connect() as conn:
        table.create(conn)
        conn.execute(table.insert(), [{"v": v} for v in (1000, 1662, 1663, 53_999)])
        got = [r[0] for r in conn.execute(sqlalchemy.select(axis.sql(table.c.v)).order_by(table.c.v))]
    engine.dispose()
    assert got == [0, 0, 1, 79] and all(isinstance(v, int) for v in got)


def _latest_results(repo: Path, butler: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The DEMO1 release over ``butler`` and the latest images check run's results by dataset type."""
    from porter.release import Release, load_plan

    plan_path = repo / "releases" / "DEMO1.yaml"
    release = Release(load_plan(plan_path), plan_path, butler)
    event = release.state().checks["images"]
    results = {
        str(r["check"]).removeprefix("completeness "): r
        for r in event.payload["results"]
        if str(r.get("check", "")).startswith("completeness ")
    }
    return release, results


def test_stored_cells_give_the_map_the_registry_gives(gapped: Site) -> None:
    """The check stores the expected data IDs per cell; the map from them equals the one the registry groups."""
    from porter.butler import DirectButler
    from porter.web._pages_completeness import _cells_file, _counts, _missing_file

    butler = DirectButler(gapped.repo)
    release, results = _latest_results(gapped.repo, butler)
    try:
        plan = release.plan
        items = {i.name: i for cp in plan.checkpoints if cp.name == "images" for i in cp.items}
        for item_name, dataset_type in (("coadds", "deepCoadd"), ("calexps", "calexp")):
            result = results[dataset_type]
            assert result["cells"].endswith(".cells.parquet")  # recorded like the missing data IDs' file
            cells = _cells_file(release, result)
            assert cells is not None and cells.is_file()
            missing = _missing_file(release, result)
            assert missing is not None, result
            keys = list(butler.registry.get_dataset_type(dataset_type).dimensions.required)
            item = items[item_name]
            stored = _counts(butler, item, dataset_type, keys, missing, cells)
            grouped = _counts(butler, item, dataset_type, keys, missing, None)
            assert stored.axes == grouped.axes
            assert stored.expected == grouped.expected and stored.missing == grouped.missing
            assert stored.n_expected == grouped.n_expected == int(str(result["expected"]).partition("/")[2])
            assert stored.n_missing == grouped.n_missing > 0
    finally:
        butler.close()


def test_check_run_without_stored_cells_still_renders(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A check run from before the cells were stored (no ``cells`` in its results): the registry counts them."""
    from porter.butler import DirectButler
    from porter.schema import CheckResult

    plain = CheckResult.to_dict
    monkeypatch.setattr(
        CheckResult, "to_dict", lambda self: {k: v for k, v in plain(self).items() if k != "cells"}
    )
    _remove_and_check(site.repo)
    butler = DirectButler(site.repo)
    try:
        _, results = _latest_results(site.repo, butler)
    finally:
        butler.close()
    assert len(results) == 2 and all("cells" not in r for r in results.values())
    gone_coadds, gone_calexps = _missing_by_butler(site.repo)
    with _client(site, "reader") as client:
        page = client.get(site.ui(f"{ITEMS}/coadds/completeness"))
        assert page.status_code == 200 and "9 of 12 expected data IDs delivered" in page.text
        assert {(int(c["patch"]), c["band"]) for c in _cells(page.text)} == gone_coadds
        grid = client.get(site.ui(f"{ITEMS}/calexps/completeness"))
        assert grid.status_code == 200
        assert {(int(c["visit"]), int(c["detector"])) for c in _cells(grid.text)} == gone_calexps


def test_many_cells_are_grouped_into_fewer_ranges() -> None:
    """80 visit ranges by 189 detectors: the detectors are grouped so the grid stays at most MAX_CELLS cells,
    each data ID counted in the cell its range says (so the missing ones, grouped afresh, fall in the same)."""
    from porter.web._pages_completeness import MAX_CELLS, _Axis, _capped

    visits = _Axis("visit", low=1000, span=53_000, bins=80)
    expected = {(v, d): 100 + d for v in range(80) for d in range(189)}
    axes, capped = _capped([visits, _Axis("detector")], expected)
    assert axes[0] == visits and axes[1].bins and len(capped) <= MAX_CELLS
    assert sum(capped.values()) == sum(expected.values())
    column = axes[1]
    for d in (0, 7, 188):
        first, last = column.range_of(((d - column.low) * column.bins) // column.span)
        assert first <= d <= last
        assert capped[0, ((d - column.low) * column.bins) // column.span] == sum(
            100 + x for x in range(first, last + 1)
        )
    # ranges already: merged k at a time, each value in the range grouping it afresh gives
    detectors = _Axis("detector", low=0, span=4000, bins=200)
    axes, capped = _capped([visits, detectors], {(v, b): 1 for v in range(80) for b in range(200)})
    merged = axes[1]
    assert 200 % merged.bins == 0 and len(capped) <= MAX_CELLS
    for value in (0, 19, 20, 1234, 3999):
        old = (value * 200) // 4000
        assert (value * merged.bins) // 4000 == old // (200 // merged.bins)


WIDE = "wide_skymap"
BIG_TRACTS, SMALL_TRACTS = 18, 1700
"""The wide skymap: 18 tracts of 100 patches each, then 1700 tracts of one patch."""


def _box(ra: float, dec: float, size: float) -> Any:
    from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

    corners = ((0, 0), (size, 0), (size, size), (0, size))
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(ra + x, dec + y)) for x, y in corners])


def _wide_release(repo: Path) -> None:
    """A skymap of 3500 patches in 1718 tracts, and release WIDE whose images hand-over expects a deepCoadd of
    every patch and band of some of it (none delivered): 700 patches; 1800 patches in 18 tracts; all of it."""
    from porter.butler import DirectButler
    from porter.release import Release, dump_plan, load_plan

    tracts, patches = [], []
    for tract in range(BIG_TRACTS + SMALL_TRACTS):
        ra, dec = 20 + (tract % 60) * 0.6, -30 + (tract // 60) * 0.6
        tracts.append({"skymap": WIDE, "id": tract, "region": _box(ra, dec, 0.5)})
        for p in range(100 if tract < BIG_TRACTS else 1):
            corner = (ra + (p % 10) * 0.05, dec + (p // 10) * 0.05)
            patches.append(
                {
                    "skymap": WIDE,
                    "tract": tract,
                    "id": p,
                    "cell_x": p % 10,
                    "cell_y": p // 10,
                    "region": _box(*corner, 0.05),
                }
            )
    butler = DirectButler(repo, writeable=True)
    try:
        skymap = {
            "name": WIDE,
            "hash": bytes(40),
            "tract_max": len(tracts),
            "patch_nx_max": 10,
            "patch_ny_max": 10,
        }
        butler.insert_dimension_records("skymap", [skymap])
        butler.insert_dimension_records("tract", tracts)
        butler.insert_dimension_records("patch", patches)
        plans = repo / "releases"
        plan = load_plan(plans / "DEMO1.yaml")
        images = next(c for c in plan.checkpoints if c.name == "images")
        coadds = next(i for i in images.items if i.name == "coadds")
        items = [
            coadds.model_copy(
                update={
                    "name": name,
                    "description": "",
                    "expected": {"dimensions": ["patch", "band"], "where": f"skymap = '{WIDE}' AND {where}"},
                }
            )
            for name, where in (
                ("some-patches", "tract < 7"),
                ("more-patches", f"tract < {BIG_TRACTS}"),
                ("many-tracts", "tract >= 0"),
            )
        ]
        wide = plan.model_copy(
            update={
                "release": "WIDE",
                "description": "A release over many patches and tracts.",
                "checkpoints": [images.model_copy(update={"items": items})],
                "milestones": [],
                "features": [],
            }
        )
        dump_plan(wide, plans / "WIDE.yaml")
        Release(load_plan(plans / "WIDE.yaml"), plans / "WIDE.yaml", butler).check("images")
    finally:
        butler.close()


def _query(href: str) -> dict[str, str]:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(href.replace("&amp;", "&")).query)
    return {k: v[0] for k, v in query.items()}


def test_sky_maps_of_many_patches_are_capped(site: Site) -> None:
    """A sky product draws at most about MAX_CELLS polygons, as a grid draws at most that many cells: the bands
    merged into one map, then the patches into their tracts, then (too many tracts for a map) a grid of bands
    by tract ranges; each cell's link lists exactly the missing data IDs it counts."""
    from porter.web._pages_completeness import MAX_CELLS, SKY_COLUMNS

    _wide_release(site.repo)
    items = "/releases/WIDE/checkpoints/images/items"
    with _client(site, "reader") as client:
        # 700 patches by 3 bands: one map of the 700 patches, each counting its 3 bands
        some = client.get(site.ui(f"{items}/some-patches/completeness"))
        assert some.status_code == 200, some.text
        assert "0 of 2100 expected data IDs delivered" in some.text
        assert re.findall(r'data-testid="(map-[^"]+)"', some.text) == ["map-all"]
        assert some.text.count("<polygon ") == 700 and "the bands together" in some.text
        cells = _cells(some.text)
        assert len(cells) == 700 and all("band" not in c and c["skymap"] == WIDE for c in cells)
        assert {(int(c["tract"]), int(c["patch"])) for c in cells} == {
            (t, p) for t in range(7) for p in range(100)
        }
        assert re.search(r'data-label="tract 3 patch 42" data-missing="3"', some.text)
        one = client.get(site.url + cells[0]["href"])
        assert '<strong data-testid="missing-total">3</strong>' in one.text  # its 3 bands
        # 1800 patches by 3 bands, 1800 patches too: the 18 tracts, one map per band
        more = client.get(site.ui(f"{items}/more-patches/completeness"))
        assert more.status_code == 200
        assert re.findall(r'data-testid="(map-[^"]+)"', more.text) == ["map-g", "map-r", "map-i"]
        assert more.text.count("<polygon ") == 3 * BIG_TRACTS and "patches grouped by tract" in more.text
        cells = _cells(more.text)
        assert {(int(c["tract"]), c["band"]) for c in cells} == {(t, b) for t in range(18) for b in "gri"}
        assert all("patch" not in c for c in cells)
        assert re.search(r'data-label="tract 5 band r" data-missing="100"', more.text)
        # 1718 tracts: no map holds them; a grid of bands by tract ranges
        many = client.get(site.ui(f"{items}/many-tracts/completeness"))
        assert many.status_code == 200
        assert "<polygon " not in many.text and 'data-testid="grid"' in many.text
        grid = [_query(href) for href in re.findall(r'href="([^"]*missing\?[^"]*)" class="cell"', many.text)]
        assert 3 < len(grid) <= min(MAX_CELLS, 3 * SKY_COLUMNS)
        assert {c["band"] for c in grid} == {"g", "r", "i"}
        ranges = sorted({(int(c["tract_min"]), int(c["tract_max"])) for c in grid})
        assert ranges[0][0] == 0 and ranges[-1][1] == BIG_TRACTS + SMALL_TRACTS - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))  # every tract in one range
        for cell in (grid[0], grid[-1]):
            first, last = int(cell["tract_min"]), int(cell["tract_max"])
            patches = sum(100 if t < BIG_TRACTS else 1 for t in range(first, last + 1))
            listed = client.get(site.ui(f"{items}/many-tracts/completeness/missing"), params=cell)
            assert f'<strong data-testid="missing-total">{patches}</strong>' in listed.text
        # the demo's own map, small, is drawn patch by patch and band by band as before
        demo = client.get(site.ui(f"{ITEMS}/coadds/completeness"))
        assert demo.text.count("<polygon ") == 12 and "grouped" not in demo.text
