"""Image data products: an exposure (image, mask and variance planes with metadata and WCS) and boxes.

A deliberately small stand-in for ``lsst.afw.image.ExposureF`` built on numpy
and astropy, so that porter can store and cut out real calibrated images
without the LSST science pipelines.  Coordinates follow the LSST convention:
an image covers parent pixels ``x0 .. x0 + width - 1`` and
``y0 .. y0 + height - 1``; a cut-out keeps its parent coordinates (``xy0``)
and a WCS shifted to match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BBox", "Exposure"]


@dataclass(frozen=True)
class BBox:
    """An integer pixel box: ``x0, y0`` (inclusive minimum corner) and its size, in parent pixels."""

    x0: int
    y0: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"A BBox needs a positive width and height, not {self.width} x {self.height}.")

    @classmethod
    def coerce(cls, value: Any) -> BBox:
        """A BBox from a BBox, a ``(x0, y0, width, height)`` tuple, or an object with
        ``minX``/``minY``/``width``/``height`` (an ``lsst.geom.Box2I``)."""
        if isinstance(value, BBox):
            return value
        if all(hasattr(value, a) for a in ("minX", "minY", "width", "height")):
            return cls(int(value.minX), int(value.minY), int(value.width), int(value.height))
        try:
            x0, y0, w, h = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"bbox must be a porter.images.BBox or (x0, y0, width, height), not {value!r}."
            ) from None
        return cls(x0, y0, w, h)

    @property
    def x1(self) -> int:
        """One past the last column."""
        return self.x0 + self.width

    @property
    def y1(self) -> int:
        """One past the last row."""
        return self.y0 + self.height

    def contains(self, other: BBox) -> bool:
        return self.x0 <= other.x0 and self.y0 <= other.y0 and other.x1 <= self.x1 and other.y1 <= self.y1


@dataclass
class Exposure:
    """A calibrated image: science, mask and variance planes plus FITS metadata and a WCS.

    ``image`` and ``variance`` are float32 arrays, ``mask`` an int32 array of
    bit flags, all of shape ``(height, width)``; ``metadata`` holds FITS
    header cards (``{"EXPTIME": 30.0, ...}``); ``wcs`` is an
    `astropy.wcs.WCS` or None; ``xy0`` is the parent-pixel position of
    ``image[0, 0]``.
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    variance: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    wcs: Any = None
    xy0: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        if self.image.ndim != 2:
            raise ValueError(f"An Exposure image must be 2-d, not of shape {self.image.shape}.")
        if self.mask is None:
            self.mask = np.zeros(self.image.shape, dtype=np.int32)
        if self.variance is None:
            self.variance = np.zeros(self.image.shape, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=np.int32)
        self.variance = np.asarray(self.variance, dtype=np.float32)
        for name, plane in (("mask", self.mask), ("variance", self.variance)):
            if plane.shape != self.image.shape:
                raise ValueError(
                    f"The {name} plane has shape {plane.shape} but the image has {self.image.shape}."
                )
        self.xy0 = (int(self.xy0[0]), int(self.xy0[1]))

    @property
    def bbox(self) -> BBox:
        height, width = self.image.shape
        return BBox(self.xy0[0], self.xy0[1], width, height)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Exposure):
            return NotImplemented
        same_wcs = (self.wcs is None and other.wcs is None) or (
            self.wcs is not None
            and other.wcs is not None
            and self.wcs.to_header(relax=True) == other.wcs.to_header(relax=True)
        )
        assert self.mask is not None and other.mask is not None
        assert self.variance is not None and other.variance is not None
        return (
            self.xy0 == other.xy0
            and np.array_equal(self.image, other.image, equal_nan=True)
            and np.array_equal(self.mask, other.mask)
            and np.array_equal(self.variance, other.variance, equal_nan=True)
            and dict(self.metadata) == dict(other.metadata)
            and same_wcs
        )

    def cutout(self, bbox: BBox | Any) -> Exposure:
        """The part of this exposure inside ``bbox`` (parent pixels), with its WCS shifted."""
        box = BBox.coerce(bbox)
        if not self.bbox.contains(box):
            raise ValueError(f"{box} is not inside this exposure's {self.bbox}.")
        ys = slice(box.y0 - self.xy0[1], box.y1 - self.xy0[1])
        xs = slice(box.x0 - self.xy0[0], box.x1 - self.xy0[0])
        assert self.mask is not None and self.variance is not None
        return Exposure(
            self.image[ys, xs].copy(),
            self.mask[ys, xs].copy(),
            self.variance[ys, xs].copy(),
            dict(self.metadata),
            shifted_wcs(self.wcs, box.x0 - self.xy0[0], box.y0 - self.xy0[1]),
            (box.x0, box.y0),
        )


def shifted_wcs(wcs: Any, dx: int, dy: int) -> Any:
    """``wcs`` for an array whose pixel (0, 0) was pixel (dx, dy) of the original."""
    if wcs is None or (dx == 0 and dy == 0):
        return wcs
    shifted = wcs.deepcopy()
    shifted.wcs.crpix = [wcs.wcs.crpix[0] - dx, wcs.wcs.crpix[1] - dy]
    return shifted
