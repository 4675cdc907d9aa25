"""Realistic data products for datastore tests: HSC-like calibrated exposures and Rubin-like source catalogs.

Deterministic for a seed.  The exposure is an HSC CCD (2048 x 4176 pixels at
0.168"/pixel, cut down for speed unless asked) with a rotated TAN WCS on the
HSC RC2 COSMOS field, Gaussian sky + stars + cosmic rays, Poisson variance,
and LSST's mask bits; the catalog has the column names, types and units of
an LSST ``sourceTable``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from astropy.wcs import WCS

from porter.images import Exposure

MASK_BITS = {"BAD": 1, "SAT": 2, "INTRP": 4, "CR": 8, "EDGE": 16, "DETECTED": 32}


def hsc_wcs(ra: float = 150.1, dec: float = 2.2, rotation_deg: float = 30.0, crpix=(1024.5, 2088.5)) -> WCS:
    scale = 0.168 / 3600.0
    theta = np.radians(rotation_deg)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.cd = scale * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    wcs.wcs.radesys = "ICRS"
    return wcs


def calexp(width: int = 512, height: int = 1024, seed: int = 1, xy0: tuple[int, int] = (0, 0)) -> Exposure:
    rng = np.random.default_rng(seed)
    gain, read_noise, sky = 3.0, 4.5, 850.0
    y, x = np.mgrid[0:height, 0:width]
    image = np.full((height, width), sky, dtype=np.float64)
    for _ in range(max(3, width * height // 20000)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        flux, sigma = rng.lognormal(9, 1.2), rng.uniform(1.4, 2.2)
        r2 = (x - x0) ** 2 + (y - y0) ** 2
        near = r2 < (6 * sigma) ** 2
        image[near] += flux / (2 * np.pi * sigma**2) * np.exp(-r2[near] / (2 * sigma**2))
    electrons = rng.poisson(np.clip(image, 0, None) * gain) / gain + rng.normal(
        0, read_noise / gain, image.shape
    )
    variance = (np.clip(image, 0, None) / gain + (read_noise / gain) ** 2).astype(np.float32)
    mask = np.zeros((height, width), dtype=np.int32)
    mask[:, :4] |= MASK_BITS["EDGE"]
    mask[:, -4:] |= MASK_BITS["EDGE"]
    mask[electrons > 5 * sky] |= MASK_BITS["DETECTED"]
    saturated = electrons > 60000
    mask[saturated] |= MASK_BITS["SAT"]
    for _ in range(5):  # cosmic rays
        cx, cy = int(rng.integers(4, width - 4)), int(rng.integers(4, height - 4))
        electrons[cy, cx : cx + 3] += 4000.0
        mask[cy, cx : cx + 3] |= MASK_BITS["CR"]
    metadata = {
        "EXPTIME": 270.0,
        "FILTER": "HSC-I",
        "MJD-OBS": 56741.53524,
        "AIRMASS": 1.124,
        "BUNIT": "nJy",
        "CCDNUM": 50,
        "DETNAME": "1_53",
        "GAINEFF": gain,
        "OBJECT": "COSMOS",
    }
    wcs = hsc_wcs(crpix=(width / 2 + 0.5 - xy0[0], height / 2 + 0.5 - xy0[1]))
    return Exposure(electrons.astype(np.float32), mask, variance, metadata, wcs, xy0)


def source_table(n: int = 2000, seed: int = 1, visit: int = 1228, detector: int = 50) -> pa.Table:
    """An LSST ``sourceTable``-like catalog (a subset of its columns), with units in the field metadata."""
    rng = np.random.default_rng(seed)
    ra = np.radians(150.1 + rng.normal(0, 0.05, n))
    dec = np.radians(2.2 + rng.normal(0, 0.05, n))
    flux = rng.lognormal(8, 1.5, n)
    columns = {
        "sourceId": (np.arange(n, dtype=np.int64) + (visit * 200 + detector) * 10**6, None),
        "visit": (np.full(n, visit, dtype=np.int64), None),
        "detector": (np.full(n, detector, dtype=np.int32), None),
        "parentSourceId": (
            np.where(rng.random(n) < 0.1, rng.integers(1, 10**6, n), 0).astype(np.int64),
            None,
        ),
        "coord_ra": (ra, "rad"),
        "coord_dec": (dec, "rad"),
        "x": (rng.uniform(0, 2048, n), "pixel"),
        "y": (rng.uniform(0, 4176, n), "pixel"),
        "psfFlux": (flux, "nJy"),
        "psfFluxErr": (np.sqrt(flux) * 2.1, "nJy"),
        "ixx": (rng.uniform(2, 6, n).astype(np.float32), "pixel**2"),
        "pixelFlags_saturated": (rng.random(n) < 0.01, None),
        "pixelFlags_cr": (rng.random(n) < 0.005, None),
        "band": (np.array(["i"] * n), None),
    }
    fields = [
        pa.field(name, pa.array(values).type, metadata={"unit": unit} if unit else None)
        for name, (values, unit) in columns.items()
    ]
    return pa.Table.from_arrays([pa.array(v) for v, _ in columns.values()], schema=pa.schema(fields))
