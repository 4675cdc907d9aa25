"""Sky regions (lsst.sphgeom) and their sky-pixel index."""

from __future__ import annotations

import lsst.sphgeom

__all__ = ["decode_region", "encode_region", "pixel_envelope", "region_from_hex"]


def decode_region(data: bytes) -> lsst.sphgeom.Region:
    """Decode the binary form sphgeom writes (and Rubin export files hex-encode)."""
    return lsst.sphgeom.Region.decode(data)


def encode_region(region: lsst.sphgeom.Region) -> bytes:
    """Encode a region in sphgeom's binary form, as stored in the registry."""
    return region.encode()


def region_from_hex(text: str) -> lsst.sphgeom.Region:
    """Decode the ``encoded:`` hex string of a ``!<lsst.sphgeom.*>`` YAML tag."""
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
