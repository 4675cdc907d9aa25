"""Completeness maps of a release checkpoint's ``datasets`` items: expected against delivered, cell by cell.

A ``datasets`` item expects the data IDs of a query and checks which of them
have a delivered dataset (`porter.release.run_checks`); every missing data ID
of the latest check run is in a Parquet file beside the plan (the result's
``details``).  The map draws, per cell:

- for products on the sky map (a ``patch`` among the dataset type's
  dimensions), one small map per band: the skymap's real patch polygons (the
  registry's patch regions) projected on a tangent plane, coloured by the
  fraction delivered; with more than `MAX_CELLS` polygons in all, the bands
  are merged into one map, then the patches into their tracts (the tracts'
  regions), then — more tracts than that — a grid of bands by tract ranges;
- otherwise a grid, visit by detector for image products (visits grouped into
  ranges when there are too many to draw one row each).

Counts are aggregated by the databases, never per data ID in Python: the
expected data IDs per cell were counted by the check itself, which had them
all in hand, and stored beside the missing ones (the result's ``cells``,
`porter.release.cell_keys`); for a check run from before that, the registry's
SQL groups the item's expected query.  The missing ones are grouped by DuckDB
over the stored Parquet.  A grid has at most about `MAX_CELLS` cells (ranges
of detectors as well as visits beyond), and only cells with something missing
are links, so the page stays small at any scale; a sky map draws at most
about as many polygons.  The per-cell counts of one check run are kept in
memory (they do not change until the next run), so a map is computed once per
check.  Each cell with something missing links to
the list of its missing data IDs (``…/completeness/missing?…``), read from
the Parquet.
"""

from __future__ import annotations

import itertools
import math
import threading
import urllib.parse
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import sqlalchemy
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from ..butler import DirectButler
from ..registry import CellAxis
from ..release import Item, Release, cell_keys, read_cells
from ._releases import open_release, parse_as_of
from ._render import dashboard_of, render
from ._session import Viewer, require_viewer

__all__ = ["router"]

router = APIRouter()

ViewerDep = Annotated[Viewer, Depends(require_viewer)]

MAX_CELLS = 1600
"""Cells of a grid at most (about): beyond, columns (then rows) are grouped into fewer ranges, so a map of
any number of data IDs stays a page of a few hundred kilobytes (80 visit ranges by 20 detector ranges).  The
polygons of a product's sky maps (all bands together) at most, likewise."""
SKY_COLUMNS = 200
"""Tract ranges of a sky product drawn as a grid (more tracts than `MAX_CELLS`) at most: its columns."""
PAGE = 200
"""Missing data IDs on one page of the list."""
BAND_ORDER = ("u", "g", "r", "i", "z", "y")


# --- which check run, which file -----------------------------------------------------------------------


def _datasets_item(release: Release, checkpoint: str, name: str) -> Item:
    cp = next((c for c in release.plan.checkpoints if c.name == checkpoint), None)
    if cp is None:
        raise HTTPException(404, f"Release {release.plan.release} has no checkpoint {checkpoint[:80]!r}.")
    item = next((i for i in cp.items if i.name == name), None)
    if item is None:
        raise HTTPException(404, f"Checkpoint {checkpoint} has no shipping-list item {name[:80]!r}.")
    if item.kind != "datasets":
        raise HTTPException(
            404, f"Item {name} is a {item.kind!r} item: only 'datasets' items have a completeness map."
        )
    return item


@dataclass
class _Run:
    """The latest check run of a checkpoint: its audit entry and its results of one item, by dataset type."""

    seq: int
    at: float
    results: dict[str, dict[str, Any]]


def _latest_run(release: Release, checkpoint: str, item: Item) -> _Run | None:
    state = release.state()
    event = state.checks.get(checkpoint)
    if event is None:
        return None
    results = {
        str(r["check"]).removeprefix("completeness "): r
        for r in event.payload.get("results", [])
        if r.get("item") == item.name and str(r.get("check", "")).startswith("completeness ")
    }
    return _Run(event.seq, event.at, results)


def _missing_file(release: Release, result: dict[str, Any]) -> Path | None:
    """The Parquet file of a result's missing data IDs (None: nothing missing), kept inside the plans' directory."""
    details = str(result.get("details") or "")
    if not details:
        return None
    plans = release.plan_path.parent.resolve()
    path = (plans / details).resolve()
    if not path.is_relative_to(plans) or path.suffix != ".parquet":
        raise HTTPException(
            500, "The check run names a missing-data-ID file outside the release's directory."
        )
    if not path.is_file():
        raise HTTPException(
            404,
            f"The missing data IDs of this check run ({details}) are no longer on disk; run the checks again.",
        )
    return path


# --- axes and cells ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Axis(CellAxis):
    """A cell key as the map shows it: the registry's binning (`CellAxis`), with labels and list-page filters."""

    def range_of(self, value: int) -> tuple[int, int]:
        """The values grouped into bin ``value``: first and last."""
        first = self.low + math.ceil(value * self.span / self.bins)
        last = self.low + math.ceil((value + 1) * self.span / self.bins) - 1
        return first, last

    def label(self, value: Any) -> str:
        if not self.bins:
            return str(value)
        first, last = self.range_of(int(value))
        return str(first) if first == last else f"{first}\u2013{last}"

    def filters(self, value: Any) -> dict[str, Any]:
        """The missing-list page's query parameters selecting this value (or range)."""
        if not self.bins:
            return {self.key: value}
        first, last = self.range_of(int(value))
        return {f"{self.key}_min": first, f"{self.key}_max": last}


@dataclass
class _Counts:
    """Per cell (a tuple of the axes' values): expected data IDs, missing ones."""

    axes: list[_Axis]
    expected: dict[tuple, int] = field(default_factory=dict)
    missing: dict[tuple, int] = field(default_factory=dict)
    n_expected: int = 0
    n_missing: int = 0


def _expected_statement(butler: DirectButler, item: Item, dataset_type: str) -> Any:
    """The item's expected data IDs as one SQL SELECT (columns ``d_<dimension>``), or None if it needs Python."""
    from ..registry.queries import DatasetSearch, QuerySpec

    registry = butler.registry
    spec = item.expected
    dims = list(spec.get("dimensions") or []) or list(
        registry.get_dataset_type(dataset_type).dimensions.names
    )
    datasets = spec.get("datasets")
    names = [datasets] if isinstance(datasets, str) else list(datasets or [])
    collections = spec.get("collections") or item.collections
    searches = []
    if names:
        path = registry.resolve_collections(collections)
        searches = [DatasetSearch(registry.dataset_types.get_record(n), path, False) for n in names]
    query = QuerySpec(
        "data_ids", registry.universe.conform(dims), searches=searches, where=spec.get("where", "")
    )
    return registry.engine.statement(query)


@dataclass(frozen=True)
class _Drawn:
    """What the page draws of one result: its counts, how a sky product is drawn, the cells worst off."""

    counts: _Counts
    sky: _SkyView | None
    worst: list[tuple]
    """The cells with most missing (at most 200, for the table under the map), worst first."""


class _CountsCache:
    """Per-cell counts of a check run's results, computed once (a check run's files and totals never change)."""

    def __init__(self, size: int = 64):
        self._data: OrderedDict[tuple, _Drawn] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple) -> _Drawn | None:
        with self._lock:
            found = self._data.get(key)
            if found is not None:
                self._data.move_to_end(key)
            return found

    def put(self, key: tuple, value: _Drawn) -> None:
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)


_cache = _CountsCache()


def _duck(path: Path) -> Any:
    import duckdb

    con = duckdb.connect()
    literal = "'" + str(path).replace("'", "''") + "'"  # a view's definition takes no parameters
    con.execute(f"CREATE VIEW missing AS SELECT * FROM read_parquet({literal})")
    return con


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cells_file(release: Release, result: dict[str, Any]) -> Path | None:
    """The check run's per-cell counts of expected data IDs (None: a run from before they were stored, or gone)."""
    name = str(result.get("cells") or "")
    if not name:
        return None
    plans = release.plan_path.parent.resolve()
    path = (plans / name).resolve()
    if not path.is_relative_to(plans) or path.suffix != ".parquet" or not path.is_file():
        return None  # counted again by the registry
    return path


def _stored_expected(path: Path, names: list[str]) -> tuple[list[_Axis], dict[tuple, int]] | None:
    """The expected data IDs per cell as the check stored them (None: not the cells the map draws)."""
    try:
        axes_def, table = read_cells(path)
    except (OSError, ValueError):
        return None
    axes = [_Axis(str(a["key"]), int(a["low"]), int(a["span"]), int(a["bins"])) for a in axes_def]
    if [a.key for a in axes] != names:
        return None
    columns = [table[a.key].to_pylist() for a in axes]
    counts = table["expected"].to_pylist()
    return axes, {tuple(c[i] for c in columns): int(n) for i, n in enumerate(counts)}


def _sql_expected(
    butler: DirectButler, item: Item, dataset_type: str, wanted: list[tuple[str, int | None]]
) -> tuple[list[_Axis], dict[tuple, int]]:
    """The expected data IDs per cell, grouped by the registry's database (check runs without stored cells)."""
    statement = _expected_statement(butler, item, dataset_type)
    if statement is None:
        raise HTTPException(
            400,
            f"The expected data IDs of {item.name} need exact region refinement, which cannot be counted in the "
            "database; the check's totals are on the checkpoint's page.",
        )
    sub = statement.subquery("expected")
    axes: list[_Axis] = []
    with butler.registry.db.reading() as conn:
        for k, limit in wanted:
            if f"d_{k}" not in sub.c:
                continue
            column = sub.c[f"d_{k}"]
            if limit is None or not isinstance(column.type, sqlalchemy.Integer):
                axes.append(_Axis(k))
                continue
            axes.append(_Axis.measured(conn, k, column, limit))
        columns = [a.sql(sub.c[f"d_{a.key}"]).label(a.key) for a in axes]
        rows = conn.execute(
            sqlalchemy.select(*columns, sqlalchemy.func.count()).select_from(sub).group_by(*columns)
        ).all()
    return axes, {tuple(r[:-1]): int(r[-1]) for r in rows}


def _coarser(axis: _Axis, values: set[Any], target: int) -> tuple[_Axis, Any] | None:
    """``axis`` grouped into at most ``target`` ranges, and how an old cell value maps to the new one.

    Values as they are: ``target`` equal ranges of them.  Already in ranges: ranges merged ``k`` at a time
    (``bins`` a multiple of ``k``), which counts each value in the same range as grouping it afresh would
    (``((v - low) * bins) // span // k == ((v - low) * (bins / k)) // span``).
    """
    if not axis.bins:
        if not values or not all(isinstance(v, int) for v in values) or len(values) <= target:
            return None
        low, high = min(values), max(values)
        new = _Axis(axis.key, low, high - low + 1, target)
        return new, new.python
    k = next((k for k in range(2, axis.bins + 1) if axis.bins % k == 0 and axis.bins // k <= target), None)
    if k is None:
        return None
    return _Axis(axis.key, axis.low, axis.span, axis.bins // k), lambda v: v // k


def _capped(axes: list[_Axis], expected: dict[tuple, int]) -> tuple[list[_Axis], dict[tuple, int]]:
    """At most about `MAX_CELLS` cells: a grid's columns (then rows) grouped into fewer ranges when too many."""
    if len(axes) != 2:
        return axes, expected
    for at in (1, 0):
        values = [{c[0] for c in expected}, {c[1] for c in expected}]
        if len(values[0]) * len(values[1]) <= MAX_CELLS:
            break
        other = len(values[1 - at])
        found = _coarser(axes[at], values[at], max(MAX_CELLS // max(other, 1), 1))
        if found is None:
            continue
        axes = list(axes)
        axes[at], rebin = found
        merged: Counter[tuple] = Counter()
        for cell, n in expected.items():
            new = list(cell)
            new[at] = rebin(cell[at])
            merged[tuple(new)] += n
        expected = dict(merged)
    return axes, expected


def _counts(
    butler: DirectButler,
    item: Item,
    dataset_type: str,
    keys: list[str],
    missing: Path | None,
    cells: Path | None = None,
) -> _Counts:
    """Expected and missing data IDs per cell.

    Expected ones from the check run's stored per-cell counts (``cells``), or for a run without them
    grouped by the registry's database; missing ones grouped by DuckDB over the stored Parquet.
    """
    wanted = cell_keys(keys)
    stored = _stored_expected(cells, [k for k, _ in wanted]) if cells is not None else None
    axes, expected = stored if stored is not None else _sql_expected(butler, item, dataset_type, wanted)
    axes, expected = _capped(axes, expected)
    counts = _Counts(axes)
    counts.expected = expected
    counts.n_expected = sum(counts.expected.values())
    if missing is not None:
        con = _duck(missing)
        try:
            cols = [f"{a.duck(_quote(a.key))} AS {_quote(a.key)}" for a in axes]
            group = ", ".join(str(i + 1) for i in range(len(axes)))
            sql = f"SELECT {', '.join(cols)}, count(*) FROM missing" + (f" GROUP BY {group}" if axes else "")
            counts.missing = {tuple(r[:-1]): int(r[-1]) for r in con.execute(sql).fetchall()}
        finally:
            con.close()
    counts.n_missing = sum(counts.missing.values())
    return counts


# --- drawing -----------------------------------------------------------------------------------------------

_STOPS = ((0.0, (165, 15, 21)), (0.5, (253, 174, 97)), (0.8, (171, 217, 233)), (1.0, (33, 102, 172)))
"""Delivered fraction → colour: dark red (none), orange (half), light then full blue (all): readable with
red-green colour blindness; a cell with anything missing also gets a heavy outline (not colour alone)."""


def _colour(fraction: float) -> str:
    for (f0, c0), (f1, c1) in itertools.pairwise(_STOPS):
        if fraction <= f1:
            t = (fraction - f0) / (f1 - f0)
            rgb = [round(a + (b - a) * t) for a, b in zip(c0, c1)]
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#{:02x}{:02x}{:02x}".format(*_STOPS[-1][1])


def _cell(counts: _Counts, key: tuple, query: dict[str, Any], label: str) -> dict[str, Any]:
    expected = counts.expected.get(key, 0)
    missing = counts.missing.get(key, 0)
    delivered = max(expected - missing, 0)
    fraction = delivered / expected if expected else 1.0
    return {
        "label": label,
        "expected": expected,
        "missing": missing,
        "delivered": delivered,
        "fraction": fraction,
        "colour": _colour(fraction) if expected else "#eeeeee",
        "query": urllib.parse.urlencode(query),
    }


def _band_key(band: Any) -> tuple:
    return (BAND_ORDER.index(band) if band in BAND_ORDER else len(BAND_ORDER), str(band))


def _tangent_plane(vertices: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Unit vectors (…, 3) projected on the plane tangent at their mean direction, east left and north up;
    and the centre's (RA, Dec) in degrees."""
    flat = vertices.reshape(-1, 3)
    centre = flat.mean(axis=0)
    centre /= np.linalg.norm(centre)
    pole = np.array([0.0, 0.0, 1.0])
    east = np.cross(pole, centre)
    if np.linalg.norm(east) < 1e-12:  # at a pole: any direction will do
        east = np.array([0.0, 1.0, 0.0])
    east /= np.linalg.norm(east)
    north = np.cross(centre, east)
    depth = np.clip(vertices @ centre, 1e-6, None)
    x = -(vertices @ east) / depth  # east to the left, as on the sky
    y = (vertices @ north) / depth
    ra = math.degrees(math.atan2(centre[1], centre[0])) % 360
    dec = math.degrees(math.asin(max(-1.0, min(1.0, centre[2]))))
    return np.stack([x, y], axis=-1), (ra, dec)


@dataclass(frozen=True)
class _Outline:
    """The shapes of a sky map, drawn: each cell's polygon as SVG points, and the drawing's size and centre."""

    points: dict[tuple, str]
    width: float
    height: float
    centre: tuple[float, float]


_outlines: OrderedDict[tuple, _Outline] = OrderedDict()
_outlines_lock = threading.Lock()
MAP_WIDTH = 260.0
"""Pixels across one sky map."""


def _regions(
    butler: DirectButler, shape: str, cells: list[tuple]
) -> dict[tuple, list[tuple[float, float, float]]]:
    """The registry's regions of ``cells``: (skymap, tract, patch) for patches, (skymap, tract) for tracts."""
    members = set(cells)
    regions: dict[tuple, list[tuple[float, float, float]]] = {}
    for skymap in sorted({c[0] for c in cells}, key=str):
        tracts = sorted({c[1] for c in cells if c[0] == skymap})
        for rec in butler.query_dimension_records(
            shape, skymap=skymap, where="tract IN (:tracts)", bind={"tracts": tracts}
        ):
            cell = (skymap, rec.tract, rec.id) if shape == "patch" else (skymap, rec.id)
            if rec.region is not None and cell in members:
                regions[cell] = [(v.x(), v.y(), v.z()) for v in rec.region.getVertices()]
    return regions


def _outline(butler: DirectButler, shape: str, cells: list[tuple]) -> _Outline:
    """The polygons of ``cells`` (patches or tracts) on a tangent plane, as SVG points: made once per set."""
    key = (shape, tuple(cells))
    with _outlines_lock:
        found = _outlines.get(key)
        if found is not None:
            _outlines.move_to_end(key)
            return found
    regions = _regions(butler, shape, cells)
    if not regions:
        return _Outline({}, MAP_WIDTH, 0.0, (0.0, 0.0))
    most = max(len(v) for v in regions.values())
    names = list(regions)
    padded = np.array([v + [v[-1]] * (most - len(v)) for v in regions.values()])
    plane, centre = _tangent_plane(padded)
    polygons = {name: np.degrees(plane[i, : len(regions[name])]) for i, name in enumerate(names)}
    allpts = np.concatenate(list(polygons.values()))
    xmin, ymin = allpts.min(axis=0)
    xmax, ymax = allpts.max(axis=0)
    size = max(xmax - xmin, ymax - ymin) or 1.0
    pad = size * 0.03
    scale = MAP_WIDTH / (size + 2 * pad)

    def points(vertices: np.ndarray) -> str:
        px = (vertices[:, 0] - xmin + pad) * scale
        py = (ymax + pad - vertices[:, 1]) * scale
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py))

    drawn = _Outline(
        {name: points(v) for name, v in polygons.items()},
        MAP_WIDTH,
        round(float((ymax - ymin + 2 * pad) * scale), 1),
        centre,
    )
    with _outlines_lock:
        _outlines[key] = drawn
        while len(_outlines) > 32:
            _outlines.popitem(last=False)
    return drawn


@dataclass(frozen=True)
class _SkyView:
    """How a sky product is drawn within `MAX_CELLS`: its counts merged to the cells drawn, and how."""

    counts: _Counts
    """Per drawn cell: by ``skymap, tract[, patch][, band]`` (a map), or ``[band,] tract`` ranges (a grid)."""
    shape: str
    """``patch`` or ``tract`` (maps), ``grid`` (too many tracts to draw)."""
    by_band: bool
    """One map per band (a product without bands: its one map), or rows by band (a grid); False: the bands
    merged."""


def _merged(counts: _Counts, keep: list[str], rebin: dict[str, Any] | None = None) -> _Counts:
    """``counts`` summed over every axis but ``keep`` (in that order), values of some axes regrouped by
    ``rebin`` (key → (new axis, old value → new value))."""
    rebin = rebin or {}
    at = [next(i for i, a in enumerate(counts.axes) if a.key == k) for k in keep]
    axes = [rebin[k][0] if k in rebin else counts.axes[i] for k, i in zip(keep, at)]
    maps = [rebin[k][1] if k in rebin else None for k in keep]

    def project(cells: dict[tuple, int]) -> dict[tuple, int]:
        out: Counter[tuple] = Counter()
        for cell, n in cells.items():
            out[tuple(m(cell[i]) if m is not None else cell[i] for i, m in zip(at, maps))] += n
        return dict(out)

    merged = _Counts(axes, project(counts.expected), project(counts.missing))
    merged.n_expected, merged.n_missing = counts.n_expected, counts.n_missing
    return merged


def _sky_view(counts: _Counts) -> _SkyView:
    """The finest drawing of a sky product within `MAX_CELLS` polygons in all: patches one map per band;
    patches, the bands merged into one map; tracts per band; tracts merged; beyond (more tracts than that:
    a map of them would be a page of megabytes, and a tangent plane cannot hold so much sky), a grid of
    bands by tract ranges, like the grids of image products."""
    keys = [a.key for a in counts.axes]
    cells = set(counts.expected) | set(counts.missing)
    band = "band" in keys and len({c[keys.index("band")] for c in cells}) > 1
    bands = len({c[keys.index("band")] for c in cells}) if band else 1
    for shape, names in (("patch", ["skymap", "tract", "patch"]), ("tract", ["skymap", "tract"])):
        if not all(k in keys for k in names):
            continue
        shapes = len({tuple(c[keys.index(k)] for k in names) for c in cells})
        with_band = names + (["band"] if "band" in keys else [])
        if shapes * bands <= MAX_CELLS:
            return _SkyView(counts if shape == "patch" else _merged(counts, with_band), shape, True)
        if band and shapes <= MAX_CELLS:
            return _SkyView(_merged(counts, names), shape, False)
    rows = ["band"] if band else []
    tract = next(a for a in counts.axes if a.key == "tract")
    tracts = {c[keys.index("tract")] for c in cells}
    found = _coarser(tract, tracts, max(1, min(SKY_COLUMNS, MAX_CELLS // bands)))
    return _SkyView(_merged(counts, [*rows, "tract"], {"tract": found} if found else None), "grid", band)


def _sky_maps(butler: DirectButler, view: _SkyView, base_query: dict[str, Any]) -> dict[str, Any]:
    """The maps of a sky product (one per band, or one): a polygon per patch or tract with its cell."""
    counts = view.counts
    keys = [a.key for a in counts.axes]
    names = ["skymap", "tract", "patch"] if view.shape == "patch" else ["skymap", "tract"]
    at = {k: keys.index(k) for k in keys}
    cells = set(counts.expected) | set(counts.missing)
    shapes = sorted({tuple(c[at[k]] for k in names) for c in cells}, key=str)
    outline = _outline(butler, view.shape, shapes)
    grouped = (["patches grouped by tract"] if view.shape == "tract" else []) + (
        ["the bands together"] if not view.by_band else []
    )
    about = {
        "shape": view.shape,
        "shapes": "Patches" if view.shape == "patch" else "Tracts",
        "scale_note": (
            f" ({' and '.join(grouped)}: one by one, there would be more than {MAX_CELLS} shapes to draw)"
            if grouped
            else ""
        ),
    }
    if not outline.points:
        return {"maps": [], "centre": outline.centre, **about}
    split = view.by_band and "band" in at
    bands = sorted({c[at["band"]] for c in cells}, key=_band_key) if split else [None]
    maps = []
    for band in bands:
        polys = []
        for shape in shapes:
            if shape not in outline.points:
                continue
            values = dict(zip(names, shape)) | ({"band": band} if split else {})
            key = tuple(values[k] for k in keys)
            label = " ".join(f"{k} {values[k]}" for k in names[1:]) + (f" band {band}" if split else "")
            query = {**base_query, **values}
            polys.append({**_cell(counts, key, query, label), "points": outline.points[shape]})
        missing = sum(p["missing"] for p in polys)
        maps.append({"band": band, "polygons": polys, "missing": missing})
    return {"maps": maps, "width": outline.width, "height": outline.height, "centre": outline.centre, **about}


def _grid(counts: _Counts, base_query: dict[str, Any]) -> dict[str, Any]:
    """Rows by the first axis, columns by the second (if any): cells with their counts."""
    axes = counts.axes
    cells = set(counts.expected) | set(counts.missing)
    row_axis = axes[0] if axes else None
    col_axis = axes[1] if len(axes) > 1 else None
    rows_v = sorted({c[0] for c in cells}, key=lambda v: (str(type(v)), v)) if row_axis else [None]
    cols_v = sorted({c[1] for c in cells}, key=lambda v: (str(type(v)), v)) if col_axis else [None]
    cell = 14 if len(cols_v) <= 60 else 8
    rows = []
    for r in rows_v:
        out: list[dict[str, Any] | None] = []
        for c in cols_v:
            key = tuple(v for v in (r, c) if v is not None) if axes else ()
            if key not in cells:
                out.append(None)
                continue
            query = dict(base_query)
            label = []
            if row_axis is not None:
                query.update(row_axis.filters(r))
                label.append(f"{row_axis.key} {row_axis.label(r)}")
            if col_axis is not None:
                query.update(col_axis.filters(c))
                label.append(f"{col_axis.key} {col_axis.label(c)}")
            out.append(_cell(counts, key, query, " ".join(label) or "all"))
        rows.append({"label": row_axis.label(r) if row_axis else "", "cells": out})
    return {
        "row_key": row_axis.key if row_axis else "",
        "row_binned": bool(row_axis and row_axis.bins),
        "col_binned": bool(col_axis and col_axis.bins),
        "col_key": col_axis.key if col_axis else "",
        "columns": [col_axis.label(c) if col_axis else "" for c in cols_v],
        "rows": rows,
        "cell": cell,
        "label_width": 90 if row_axis and row_axis.bins else 50,
    }


# --- pages -------------------------------------------------------------------------------------------------


def _open(
    request: Request, viewer: Viewer, name: str, checkpoint: str, item_name: str, as_of: str | None
) -> Any:
    release = open_release(dashboard_of(request), viewer, name, parse_as_of(as_of))
    item = _datasets_item(release, checkpoint, item_name)
    return release, item, _latest_run(release, checkpoint, item)


def _dataset_type_of(item: Item, raw: str | None) -> str:
    if raw is None or raw == "":
        return item.dataset_types[0]
    if raw not in item.dataset_types:
        raise HTTPException(
            400,
            f"type={raw[:80]!r} is not delivered by item {item.name}: give one of {', '.join(item.dataset_types)}.",
        )
    return raw


@router.get(
    "/releases/{name}/checkpoints/{checkpoint}/items/{item_name}/completeness", response_class=HTMLResponse
)
def completeness_page(
    request: Request,
    name: str,
    checkpoint: str,
    item_name: str,
    viewer: ViewerDep,
    as_of: str | None = None,
) -> HTMLResponse:
    """Expected against delivered data IDs of one item, drawn as maps (sky) or grids (visit by detector)."""
    release, item, run = _open(request, viewer, name, checkpoint, item_name, as_of)
    butler = dashboard_of(request).state.butler
    products = []
    for dataset_type in item.dataset_types:
        result = run.results.get(dataset_type) if run is not None else None
        entry: dict[str, Any] = {"dataset_type": dataset_type, "result": result, "problem": ""}
        products.append(entry)
        if run is None or result is None:
            continue
        if result.get("status") == "error":
            entry["problem"] = str(result.get("message") or "the check could not run")
            continue
        keys = list(butler.registry.get_dataset_type(dataset_type).dimensions.required)
        sky = "patch" in keys
        missing = _missing_file(release, result)
        cells = _cells_file(release, result)
        cache_key = (str(release.plan_path), checkpoint, item.name, dataset_type, run.seq, str(missing))
        drawn = _cache.get(cache_key)
        if drawn is None:
            counts = _counts(butler, item, dataset_type, keys, missing, cells)
            drawn = _Drawn(counts, _sky_view(counts) if sky else None, _worst(counts))
            _cache.put(cache_key, drawn)
        counts, view = drawn.counts, drawn.sky
        base_query = {"type": dataset_type} | ({"as_of": release.as_of} if release.as_of else {})
        entry.update(
            kind="sky" if view is not None and view.shape != "grid" else "grid",
            n_expected=counts.n_expected,
            n_missing=counts.n_missing,
            checked_expected=str(result.get("expected") or "").partition("/")[2],
            worst=[_cell_summary(counts, key, base_query) for key in drawn.worst],
        )
        if view is None:
            entry["grid"] = _grid(counts, base_query)
        elif view.shape == "grid":
            entry["grid"] = _grid(view.counts, base_query)
        else:
            entry.update(_sky_maps(butler, view, base_query))
    return render(
        request,
        "completeness.html",
        title=f"{name} · {checkpoint} · {item.name}: completeness",
        release=release.plan,
        as_of=release.as_of,
        checkpoint=checkpoint,
        item=item,
        run=run,
        products=products,
        legend=[{"fraction": f, "colour": _colour(f)} for f in (0.0, 0.25, 0.5, 0.75, 1.0)],
    )


def _cell_label(counts: _Counts, key: tuple) -> str:
    return " ".join(f"{axis.key} {axis.label(value)}" for axis, value in zip(counts.axes, key)) or "all"


def _cell_summary(counts: _Counts, key: tuple, base_query: dict[str, Any]) -> dict[str, Any]:
    query = dict(base_query)
    for axis, value in zip(counts.axes, key):
        query.update(axis.filters(value))
    return _cell(counts, key, query, _cell_label(counts, key))


def _worst(counts: _Counts, limit: int = 200) -> list[tuple]:
    """The cells with something missing, most missing first (then by label): the table under the map."""
    missing = [(key, n) for key, n in counts.missing.items() if n]
    return [key for key, _ in sorted(missing, key=lambda kn: (-kn[1], _cell_label(counts, kn[0])))[:limit]]


def _filters(request: Request, columns: dict[str, str]) -> tuple[list[str], list[Any], dict[str, str]]:
    """The missing list's filters from the query string: ``KEY=value`` and ``KEY_min``/``KEY_max`` ranges."""
    clauses: list[str] = []
    params: list[Any] = []
    shown: dict[str, str] = {}
    for raw_key, raw in request.query_params.items():
        if raw_key in ("type", "as_of", "page"):
            continue
        key, op = raw_key, "="
        if raw_key.endswith("_min") and raw_key[:-4] in columns:
            key, op = raw_key[:-4], ">="
        elif raw_key.endswith("_max") and raw_key[:-4] in columns:
            key, op = raw_key[:-4], "<="
        if key not in columns:
            raise HTTPException(
                400,
                f"{raw_key[:40]!r} is not a key of these data IDs: filter on {', '.join(columns)} "
                "(or KEY_min / KEY_max for a range).",
            )
        value: Any = raw
        if columns[key] == "int":
            try:
                value = int(raw)
            except ValueError:
                raise HTTPException(400, f"{raw_key}={raw[:40]!r}: {key} is a whole number.") from None
        clauses.append(f"{_quote(key)} {op} ?")
        params.append(value)
        shown[raw_key] = raw
    return clauses, params, shown


@router.get(
    "/releases/{name}/checkpoints/{checkpoint}/items/{item_name}/completeness/missing",
    response_class=HTMLResponse,
)
def missing_page(
    request: Request,
    name: str,
    checkpoint: str,
    item_name: str,
    viewer: ViewerDep,
    type: str | None = None,
    page: int = 1,
    as_of: str | None = None,
) -> HTMLResponse:
    """The missing data IDs of one item (of one dataset type), filtered to a cell of the map, a page at a time."""
    release, item, run = _open(request, viewer, name, checkpoint, item_name, as_of)
    dataset_type = _dataset_type_of(item, type)
    if page < 1:
        raise HTTPException(400, f"page={page}: pages are numbered from 1.")
    result = run.results.get(dataset_type) if run is not None else None
    rows: list[dict[str, Any]] = []
    keys: list[str] = []
    total = 0
    shown: dict[str, str] = {}
    path = _missing_file(release, result) if result is not None else None
    if path is not None:
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        columns = {f.name: "int" if str(f.type).startswith(("int", "uint")) else "str" for f in schema}
        keys = list(columns)
        clauses, params, shown = _filters(request, columns)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        con = _duck(path)
        try:
            total = int(con.execute(f"SELECT count(*) FROM missing{where}", params).fetchone()[0])
            order = ", ".join(_quote(k) for k in keys)
            found = con.execute(
                f"SELECT * FROM missing{where} ORDER BY {order} LIMIT {PAGE} OFFSET {(page - 1) * PAGE}",
                params,
            ).fetchall()
        finally:
            con.close()
        rows = [dict(zip(keys, r)) for r in found]
    else:
        clauses, params, shown = (
            [],
            [],
            {k: v for k, v in request.query_params.items() if k not in ("type", "as_of", "page")},
        )
    pages = max(1, math.ceil(total / PAGE))
    here = {k: v for k, v in request.query_params.items() if k != "page"}
    return render(
        request,
        "completeness_missing.html",
        title=f"{name} · {checkpoint} · {item.name}: missing {dataset_type}",
        release=release.plan,
        as_of=release.as_of,
        checkpoint=checkpoint,
        item=item,
        run=run,
        result=result,
        dataset_type=dataset_type,
        keys=keys,
        rows=rows,
        total=total,
        filters=shown,
        page=page,
        pages=pages,
        previous=urllib.parse.urlencode({**here, "page": page - 1}) if page > 1 else "",
        next=urllib.parse.urlencode({**here, "page": page + 1}) if page < pages else "",
    )
