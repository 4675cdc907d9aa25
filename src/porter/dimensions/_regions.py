"""Sky regions (lsst.sphgeom) and their sky-pixel index.

lsst.sphgeom (with hpgeom and numpy, ~0.15 s) is imported when a region is
first decoded, not when a repository is opened: `is_region` answers without
it, since no region exists before it is imported.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:
    import lsst.sphgeom

__all__ = [
    "decode_region",
    "encode_region",
    "is_region",
    "is_region_type",
    "pixel_envelope",
    "region_from_hex",
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
