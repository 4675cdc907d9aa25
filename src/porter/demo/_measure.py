"""Image-processing building blocks of the mini DRP: background, detection, centroids, apertures, matching.

Real if simple algorithms on numpy/scipy, sized for the synthetic survey:
a box-median background, detection on the PSF-smoothed image, Gaussian-
weighted centroids, circular-aperture fluxes with their errors, and sky
matching with a k-d tree on unit vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["Detections", "aperture_flux", "background", "detect", "match_sky", "robust_sigma"]


def robust_sigma(values: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (insensitive to sources)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def background(image: np.ndarray, box: int) -> np.ndarray:
    """A smooth background: clipped medians in ``box``-pixel cells, interpolated bilinearly."""
    ny, nx = image.shape
    cy, cx = max(1, ny // box), max(1, nx // box)
    cells = np.empty((cy, cx))
    for j in range(cy):
        for i in range(cx):
            cell = image[j * ny // cy : (j + 1) * ny // cy, i * nx // cx : (i + 1) * nx // cx]
            med = np.median(cell)
            sig = robust_sigma(cell)
            good = cell[np.abs(cell - med) < 3 * sig] if sig > 0 else cell
            cells[j, i] = np.median(good) if good.size else med
    if cells.size == 1:
        return np.full(image.shape, cells[0, 0], dtype=np.float32)
    yc = (np.arange(cy) + 0.5) * ny / cy - 0.5
    xc = (np.arange(cx) + 0.5) * nx / cx - 0.5
    yi = np.clip(np.interp(np.arange(ny), yc, np.arange(cy)), 0, cy - 1)
    xi = np.clip(np.interp(np.arange(nx), xc, np.arange(cx)), 0, cx - 1)
    yy, xx = np.meshgrid(yi, xi, indexing="ij")
    return ndimage.map_coordinates(cells, [yy, xx], order=1, mode="nearest").astype(np.float32)


@dataclass
class Detections:
    """Sources found on an image: centroids (pixels), aperture fluxes and errors, peak significance."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    significance: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)


def detect(
    image: np.ndarray,
    variance: np.ndarray,
    psf_sigma: float,
    threshold: float,
    aperture: float,
    edge: int = 4,
) -> Detections:
    """Peaks of the PSF-smoothed image above ``threshold`` times its noise, measured with centroids and apertures."""
    smooth = ndimage.gaussian_filter(image.astype(np.float64), psf_sigma)
    noise = robust_sigma(smooth)
    above = smooth > threshold * noise
    labels, n = ndimage.label(above)
    if n == 0:
        empty = np.empty(0)
        return Detections(empty, empty, empty, empty, empty)
    peaks = np.array(ndimage.maximum_position(smooth, labels, np.arange(1, n + 1)), dtype=float)
    ny, nx = image.shape
    keep = (
        (peaks[:, 0] >= edge) & (peaks[:, 0] < ny - edge) & (peaks[:, 1] >= edge) & (peaks[:, 1] < nx - edge)
    )
    peaks = peaks[keep]
    xs, ys = [], []
    for py, px in peaks:
        x, y = centroid(image, px, py, psf_sigma)
        xs.append(x)
        ys.append(y)
    xa, ya = np.array(xs), np.array(ys)
    flux, err = aperture_flux(image, variance, xa, ya, aperture)
    sig = np.array([smooth[int(py), int(px)] / noise for py, px in peaks])
    good = np.isfinite(xa) & np.isfinite(flux)
    return Detections(xa[good], ya[good], flux[good], err[good], sig[good])


def centroid(
    image: np.ndarray, x0: float, y0: float, sigma: float, iterations: int = 5
) -> tuple[float, float]:
    """A Gaussian-weighted centroid, iterated from a peak (accurate to a few hundredths of a pixel)."""
    ny, nx = image.shape
    r = math.ceil(3 * sigma) + 1
    x, y = float(x0), float(y0)
    for _ in range(iterations):
        ix, iy = round(x), round(y)
        xa, xb, ya, yb = max(ix - r, 0), min(ix + r + 1, nx), max(iy - r, 0), min(iy + r + 1, ny)
        if xa >= xb or ya >= yb:
            return float("nan"), float("nan")
        gy, gx = np.mgrid[ya:yb, xa:xb]
        w = np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * sigma**2)) * image[ya:yb, xa:xb]
        total = w.sum()
        if total <= 0:
            return float("nan"), float("nan")
        nxp, nyp = float((w * gx).sum() / total), float((w * gy).sum() / total)
        # A Gaussian-weighted first moment of a Gaussian is biased towards the weight's centre by a
        # factor sigma_w^2 / (sigma_w^2 + sigma_psf^2) = 1/2 for equal widths: step by twice the shift.
        nxp, nyp = x + 2 * (nxp - x), y + 2 * (nyp - y)
        if abs(nxp - x) < 1e-4 and abs(nyp - y) < 1e-4:
            return nxp, nyp
        x, y = nxp, nyp
        if abs(x - x0) > r or abs(y - y0) > r:
            return float("nan"), float("nan")
    return x, y


def aperture_flux(
    image: np.ndarray, variance: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sums (and their errors) in circles of ``radius`` pixels; NaN where the circle leaves the image."""
    ny, nx = image.shape
    r = math.ceil(radius) + 1
    flux = np.full(len(x), np.nan)
    err = np.full(len(x), np.nan)
    for k, (xc, yc) in enumerate(zip(x, y)):
        if not (np.isfinite(xc) and np.isfinite(yc)):
            continue
        ix, iy = round(xc), round(yc)
        if ix - r < 0 or iy - r < 0 or ix + r + 1 > nx or iy + r + 1 > ny:
            continue
        gy, gx = np.mgrid[iy - r : iy + r + 1, ix - r : ix + r + 1]
        inside = (gx - xc) ** 2 + (gy - yc) ** 2 <= radius**2
        flux[k] = image[gy[inside], gx[inside]].sum()
        err[k] = math.sqrt(max(float(variance[gy[inside], gx[inside]].sum()), 0.0))
    return flux, err


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def match_sky(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest neighbours of catalog 1 in catalog 2 within a radius: (index1, index2, separation in arcsec)."""
    if len(ra1) == 0 or len(ra2) == 0:
        empty = np.empty(0, dtype=int)
        return empty, empty, np.empty(0)
    tree = cKDTree(_unit(np.asarray(ra2), np.asarray(dec2)))
    chord = 2 * math.sin(math.radians(radius_arcsec / 3600) / 2)
    dist, idx = tree.query(_unit(np.asarray(ra1), np.asarray(dec1)), distance_upper_bound=chord)
    ok = np.isfinite(dist)
    sep = np.degrees(2 * np.arcsin(dist[ok] / 2)) * 3600
    return np.nonzero(ok)[0], idx[ok], sep
