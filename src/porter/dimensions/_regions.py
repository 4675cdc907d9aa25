"""Sky regions (lsst.sphgeom) and their sky-pixel index.

lsst.sphgeom (with hpgeom and numpy, ~0.15 s) is imported when a region is
first decoded, not when a repository is opened: `is_region` answers without
it, since no region exists before it is imported.
"""

from __future__ import annotations

import math
import struct
import sys
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    import lsst.sphgeom

__all__ = [
    "decode_region",
    "encode_region",
    "is_region",
    "is_region_type",
    "pixel_envelope",
    "region_from_hex",
    "region_problem",
]


def is_region(value: object) -> TypeGuard[lsst.sphgeom.Region]:
    """True if ``value`` is an lsst.sphgeom region; never imports sphgeom."""
    module = sys.modules.get("lsst.sphgeom")
    return module is not None and isinstance(value, module.Region)


def is_region_type(t: type) -> bool:
    """True if ``t`` is an lsst.sphgeom region class; never imports sphgeom."""
    module = sys.modules.get("lsst.sphgeom")
    return module is not None and issubclass(t, module.Region)


def decode_region(data: bytes) -> lsst.sphgeom.Region:
    """Decode the binary form sphgeom writes (and Rubin export files hex-encode)."""
    import lsst.sphgeom

    return lsst.sphgeom.Region.decode(data)


def encode_region(region: lsst.sphgeom.Region) -> bytes:
    """Encode a region in sphgeom's binary form, as stored in the registry."""
    return region.encode()


def region_from_hex(text: str) -> lsst.sphgeom.Region:
    """Decode the ``encoded:`` hex string of a ``!<lsst.sphgeom.*>`` YAML tag."""
    import lsst.sphgeom

    try:
        return lsst.sphgeom.Region.decode(bytes.fromhex(text))
    except Exception as exc:
        raise ValueError(f"Invalid encoded sphgeom region {text[:40]!r}…: {exc}") from None


def pixel_envelope(pixelization: lsst.sphgeom.Pixelization, region: lsst.sphgeom.Region) -> list[int]:
    """All pixel indices whose pixels may overlap ``region`` (a superset, never missing one)."""
    out: list[int] = []
    for begin, end in pixelization.envelope(region):
        out.extend(range(begin, end))
    return out


_CONVEXITY_TOLERANCE = 1e-14
"""How far below zero a triple product of consecutive polygon vertices may be.

Real regions (skymap patches, detector footprints) have vertices along a
straight edge, whose triple product is zero up to rounding (-1.5e-20 in the
exports daf_butler writes); anything below this is a clockwise or concave
outline, not rounding.
"""


_UNPACKERS: dict[int, Any] = {}
"""struct unpackers of a polygon's encoding, by number of vertices (compiled once, not per region)."""


def region_problem(region: lsst.sphgeom.Region, encoded: bytes | None = None) -> str | None:
    """Why ``region`` cannot be stored and indexed, or `None`: finite, non-degenerate, convex where required.

    sphgeom decodes whatever doubles it is given: a polygon with a NaN vertex
    gets a NaN bounding circle, whose pixel envelope is the whole sky (every
    query then "overlaps" it), and a clockwise polygon is the complement of
    the intended one.  Polygons are checked on their encoding (``encoded``,
    or ``region.encode()``): unit vertices, at least three, every
    consecutive triple turning counter-clockwise (convex), and some area.
    Plain Python on the unpacked doubles: a few microseconds for a detector's
    polygon, less than sphgeom's envelope of it (numpy's per-call overhead
    would triple a spatial load).  Other regions must have a finite,
    non-empty bounding circle.
    """
    sphgeom = sys.modules[
        "lsst.sphgeom"
    ]  # imported: a region exists (a statement here costs 12% of the call)
    if isinstance(region, sphgeom.ConvexPolygon):
        data = encoded if encoded is not None else region.encode()
        if (len(data) - 1) % 24:
            return "its encoding is not a whole number of vertices"
        n = (len(data) - 1) // 24
        if n < 3:
            return f"a polygon needs at least 3 vertices, not {n}"
        unpack = _UNPACKERS.get(n)
        if unpack is None:
            unpack = _UNPACKERS[n] = struct.Struct(f"<{3 * n}d").unpack_from
        d = unpack(data, 1)
        if not math.isfinite(sum(d)):  # a NaN or an infinity anywhere makes the sum so
            return "a vertex is not finite (NaN or infinity)"
        # One pass: each vertex c checked as a unit vector, and the turn (a, b, c) of it and the two before.
        ax, ay, az, bx, by, bz = d[-6:]
        total = 0.0
        concave = False
        for i in range(0, 3 * n, 3):
            cx, cy, cz = d[i], d[i + 1], d[i + 2]
            if abs(cx * cx + cy * cy + cz * cz - 1.0) > 1e-6:
                return "a vertex is not a unit vector"
            turn = (ay * bz - az * by) * cx + (az * bx - ax * bz) * cy + (ax * by - ay * bx) * cz
            concave = concave or turn < -_CONVEXITY_TOLERANCE
            total += turn
            ax, ay, az, bx, by, bz = bx, by, bz, cx, cy, cz
        if concave:
            return "the vertices are not a convex polygon in counter-clockwise order"
        if total <= _CONVEXITY_TOLERANCE:
            return "the polygon is degenerate (its vertices lie on one great circle or coincide)"
        return None
    circle = region.getBoundingCircle()
    center = circle.getCenter()
    radius = circle.getOpeningAngle().asRadians()
    if not all(math.isfinite(c) for c in (center.x(), center.y(), center.z(), radius)):
        return "it is not finite (NaN or infinity in its definition)"
    if circle.isEmpty() or region.isEmpty():
        return "it is empty"
    return None
