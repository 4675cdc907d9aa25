"""Comparisons of the mini DRP's outputs with the generator's truth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._measure import match_sky
from ._survey import COLLECTIONS, SKYMAP

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["astrometric_residuals"]


def astrometric_residuals(butler: DirectButler, run: str, min_snr: float = 50.0) -> np.ndarray:
    """Separations (arcsec) between the calibrated positions of bright sources in ``run`` and the true stars."""
    truth = butler.get("truth_catalog", skymap=SKYMAP, tract=0, collections=COLLECTIONS["truth"])
    stars = truth.filter(truth["is_star"])
    star_ra, star_dec = np.asarray(stars["ra"]), np.asarray(stars["dec"])
    out: list[np.ndarray] = []
    for ref in butler.query_datasets("src", run, explain=False):
        src: pa.Table = butler.get(ref, parameters={"columns": ["ra", "dec", "snr"]})
        bright = src.filter(pc.greater(src["snr"], min_snr))
        _, _, sep = match_sky(np.asarray(bright["ra"]), np.asarray(bright["dec"]), star_ra, star_dec, 1.0)
        out.append(sep)
    return np.concatenate(out) if out else np.empty(0)
