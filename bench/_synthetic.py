"""Synthetic survey metadata shared by the registry benchmark's two implementations.

One instrument with 189 detectors in a square focal plane (an LSSTCam-like
14x14 grid without its corners), N visits pointed at random positions in a
6x6 degree field, a skymap of 4x4 tracts with 10x10 patches each.  Regions
are real lsst.sphgeom polygons, so spatial joins do real work.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import lsst.sphgeom as sg

INSTRUMENT = "Cam"
SKYMAP = "bench_rings"
BANDS = ["u", "g", "r", "i", "z", "y"]
GRID = 14
DETECTOR_SIZE = 0.22  # degrees
FIELD = (147.0, 153.0, -1.0, 5.0)  # ra_min, ra_max, dec_min, dec_max
TRACT_SIZE = 2.0
PATCHES = 10


def box(ra: float, dec: float, half_w: float, half_h: float) -> sg.ConvexPolygon:
    cos_dec = max(math.cos(math.radians(dec)), 1e-6)
    corners = [
        (ra - half_w / cos_dec, dec - half_h),
        (ra + half_w / cos_dec, dec - half_h),
        (ra + half_w / cos_dec, dec + half_h),
        (ra - half_w / cos_dec, dec + half_h),
    ]
    return sg.ConvexPolygon([sg.UnitVector3d(sg.LonLat.fromDegrees(a, d)) for a, d in corners])


def detector_offsets() -> list[tuple[int, float, float]]:
    out = []
    det = 0
    for i in range(GRID):
        for j in range(GRID):
            corner = (i in (0, GRID - 1)) and (j in (0, GRID - 1))
            if corner or len(out) >= 189:
                continue
            out.append((det, (i - (GRID - 1) / 2) * DETECTOR_SIZE, (j - (GRID - 1) / 2) * DETECTOR_SIZE))
            det += 1
    assert len(out) == 189, len(out)
    return out


@dataclass
class Visit:
    id: int
    band: str
    day_obs: int
    ra: float
    dec: float
    begin_iso: str
    end_iso: str
    region: sg.ConvexPolygon


def visits(n: int, seed: int = 42) -> list[Visit]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        ra = rng.uniform(FIELD[0] + 1.6, FIELD[1] - 1.6)
        dec = rng.uniform(FIELD[2] + 1.6, FIELD[3] - 1.6)
        night = k // 100
        day = 1 + night % 28
        month = 1 + (night // 28) % 12
        year = 2025 + night // 336
        seconds = (k % 100) * 40
        begin = f"{year:04d}-{month:02d}-{day:02d} 0{seconds // 3600}:{(seconds // 60) % 60:02d}:{seconds % 60:02d}.000000000"
        end_s = seconds + 30
        end = f"{year:04d}-{month:02d}-{day:02d} 0{end_s // 3600}:{(end_s // 60) % 60:02d}:{end_s % 60:02d}.000000000"
        half = GRID * DETECTOR_SIZE / 2
        out.append(
            Visit(
                id=1000 + k,
                band=BANDS[k % len(BANDS)],
                day_obs=year * 10000 + month * 100 + day,
                ra=ra,
                dec=dec,
                begin_iso=begin,
                end_iso=end,
                region=box(ra, dec, half, half),
            )
        )
    return out


def detector_regions(v: Visit) -> Iterator[tuple[int, sg.ConvexPolygon]]:
    for det, dx, dy in detector_offsets():
        yield (
            det,
            box(
                v.ra + dx / max(math.cos(math.radians(v.dec)), 1e-6),
                v.dec + dy,
                DETECTOR_SIZE / 2,
                DETECTOR_SIZE / 2,
            ),
        )


def tracts() -> Iterator[tuple[int, sg.ConvexPolygon, list[tuple[int, int, int, sg.ConvexPolygon]]]]:
    """(tract id, region, [(patch id, cell_x, cell_y, region)])."""
    tract = 0
    ra0, ra1, dec0, dec1 = FIELD
    ny = int((dec1 - dec0) / TRACT_SIZE)
    nx = int((ra1 - ra0) / TRACT_SIZE)
    for ty in range(ny):
        for tx in range(nx):
            cra = ra0 + (tx + 0.5) * TRACT_SIZE
            cdec = dec0 + (ty + 0.5) * TRACT_SIZE
            patches = []
            step = TRACT_SIZE / PATCHES
            for py in range(PATCHES):
                for px in range(PATCHES):
                    pra = ra0 + tx * TRACT_SIZE + (px + 0.5) * step
                    pdec = dec0 + ty * TRACT_SIZE + (py + 0.5) * step
                    patches.append(
                        (py * PATCHES + px, px, py, box(pra, pdec, step / 2 + 0.01, step / 2 + 0.01))
                    )
            yield tract, box(cra, cdec, TRACT_SIZE / 2 + 0.05, TRACT_SIZE / 2 + 0.05), patches
            tract += 1


def records(vis: list[Visit], timespan: Callable[[str, str], Any]) -> dict[str, list[dict[str, Any]]]:
    """Dimension records for the visits, as dicts both butlers accept.

    ``timespan(begin_iso, end_iso)`` builds each implementation's timespan object.
    """
    dets = detector_offsets()
    out: dict[str, list[dict[str, Any]]] = {
        "instrument": [
            {"name": INSTRUMENT, "detector_max": 200, "visit_max": 10**6, "class_name": "bench.Cam"}
        ],
        "physical_filter": [{"instrument": INSTRUMENT, "name": f"{b}_01", "band": b} for b in BANDS],
        "detector": [
            {
                "instrument": INSTRUMENT,
                "id": d,
                "full_name": f"R{d // 9:02d}_S{d % 9}",
                "raft": f"R{d // 9:02d}",
                "purpose": "SCIENCE",
            }
            for d, _, _ in dets
        ],
        "day_obs": [{"instrument": INSTRUMENT, "id": d} for d in sorted({v.day_obs for v in vis})],
        "visit": [
            {
                "instrument": INSTRUMENT,
                "id": v.id,
                "physical_filter": f"{v.band}_01",
                "day_obs": v.day_obs,
                "name": f"V{v.id}",
                "exposure_time": 30.0,
                "region": v.region,
                "timespan": timespan(v.begin_iso, v.end_iso),
            }
            for v in vis
        ],
        "visit_detector_region": [
            {"instrument": INSTRUMENT, "visit": v.id, "detector": d, "region": r}
            for v in vis
            for d, r in detector_regions(v)
        ],
        "skymap": [
            {"name": SKYMAP, "hash": b"0123456789", "tract_max": 100, "patch_nx_max": 10, "patch_ny_max": 10}
        ],
        "tract": [],
        "patch": [],
    }
    for t, region, patches in tracts():
        out["tract"].append({"skymap": SKYMAP, "id": t, "region": region})
        for p, cx, cy, pregion in patches:
            out["patch"].append(
                {"skymap": SKYMAP, "tract": t, "id": p, "cell_x": cx, "cell_y": cy, "region": pregion}
            )
    return out


def data_ids(vis: list[Visit]) -> list[dict[str, Any]]:
    """(instrument, visit, detector) data IDs of every visit-detector pair."""
    dets = detector_offsets()
    return [{"instrument": INSTRUMENT, "visit": v.id, "detector": d} for v in vis for d, _, _ in dets]
