"""Checks of a HiPS tree (IVOA HiPS 1.0): properties, tiles at every order, Allsky, MOC.

The coverage is the tree's MOC (``Moc.fits``, NUNIQ cells) when present,
else the tiles at the deepest order; every order down to 0 must then hold
the parent tile of every covered pixel.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..schema import FAIL, PASS, WARN, CheckResult

__all__ = ["REQUIRED_PROPERTIES", "check_hips", "read_properties"]

REQUIRED_PROPERTIES = (
    "creator_did",
    "obs_title",
    "dataproduct_type",
    "hips_version",
    "hips_release_date",
    "hips_status",
    "hips_tile_format",
    "hips_order",
    "hips_frame",
)
_TILE = re.compile(r"Norder(\d+)/Dir(\d+)/Npix(\d+)\.(\w+)$")
_EXT = {"jpeg": "jpg", "png": "png", "fits": "fits", "webp": "webp"}


def read_properties(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _moc_cells(path: Path, order: int) -> set[int]:
    """The MOC's cells expanded to pixels at ``order``."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        uniq = [int(u) for u in hdul[1].data.field(0)]
    out: set[int] = set()
    for u in uniq:
        k = (u.bit_length() - 3) // 2  # uniq = 4 * 4**k + npix
        npix = u - 4 * 4**k
        if k <= order:
            shift = 2 * (order - k)
            out.update(range(npix << shift, (npix + 1) << shift))
        else:
            out.add(npix >> (2 * (k - order)))
    return out


def check_hips(item: str, root: Path) -> list[CheckResult]:
    props_path = root / "properties"
    if not props_path.exists():
        return [CheckResult(item, "properties", FAIL, message=f"no properties file in {root}")]
    props = read_properties(props_path)
    missing = [k for k in REQUIRED_PROPERTIES if not props.get(k)]
    results = [
        CheckResult(
            item,
            "properties",
            FAIL if missing else PASS,
            value=f"{len(REQUIRED_PROPERTIES) - len(missing)}/{len(REQUIRED_PROPERTIES)} keys",
            expected="every required HiPS 1.0 keyword",
            message=f"missing {missing}" if missing else "",
            sample=missing,
        )
    ]
    tiles: dict[int, set[int]] = {}
    exts: set[str] = set()
    for f in root.glob("Norder*/Dir*/Npix*.*"):
        m = _TILE.search(f.as_posix())
        if m:
            tiles.setdefault(int(m[1]), set()).add(int(m[3]))
            exts.add(m[4])
    try:
        order = int(props.get("hips_order", ""))
    except ValueError:
        results.append(
            CheckResult(
                item,
                "hips_order",
                FAIL,
                value=props.get("hips_order"),
                message="hips_order is not an integer",
            )
        )
        return results
    deepest = max(tiles, default=-1)
    formats = {_EXT.get(x, x) for x in props.get("hips_tile_format", "").split()}
    bad = []
    if deepest != order:
        bad.append(f"hips_order is {order} but the deepest tiles are at order {deepest}")
    if exts - formats:
        bad.append(f"tiles in {sorted(exts - formats)} but hips_tile_format says {sorted(formats)}")
    results.append(
        CheckResult(
            item,
            "properties match tiles",
            FAIL if bad else PASS,
            value=f"order {deepest}, {sorted(exts)}",
            expected=f"order {order}, {sorted(formats)}",
            message="; ".join(bad),
        )
    )
    moc = root / "Moc.fits"
    coverage = _moc_cells(moc, order) if moc.exists() else set(tiles.get(order, set()))
    if moc.exists():
        at_order = tiles.get(order, set())
        extra, absent = sorted(at_order - coverage), sorted(coverage - at_order)
        results.append(
            CheckResult(
                item,
                "MOC matches tiles",
                FAIL if extra or absent else PASS,
                value=f"{len(coverage)} MOC cells, {len(at_order)} tiles",
                expected="the same pixels",
                message=(f"{len(absent)} MOC cells without a tile" if absent else "")
                + (f" {len(extra)} tiles outside the MOC" if extra else ""),
                sample=(absent or extra)[:10],
            )
        )
    else:
        results.append(CheckResult(item, "MOC matches tiles", WARN, message="no Moc.fits in the tree"))
    missing_tiles = []
    for k in range(order, -1, -1):
        want = {p >> (2 * (order - k)) for p in coverage}
        for p in sorted(want - tiles.get(k, set())):
            missing_tiles.append(f"Norder{k}/Dir{(p // 10000) * 10000}/Npix{p}")
    results.append(
        CheckResult(
            item,
            "tiles at every order",
            FAIL if missing_tiles else PASS,
            value=f"{len(missing_tiles)} missing",
            expected=f"orders 0..{order} cover the coverage",
            message=", ".join(missing_tiles[:5]),
            sample=missing_tiles[:10],
        )
    )
    if order >= 3:
        allsky = [root / "Norder3" / f"Allsky.{x}" for x in formats]
        present = [a for a in allsky if a.exists()]
        results.append(
            CheckResult(
                item,
                "Allsky",
                PASS if present else FAIL,
                value=[a.name for a in present],
                expected="Norder3/Allsky in every tile format",
                message="" if present else "no Norder3/Allsky file",
            )
        )
    return results
