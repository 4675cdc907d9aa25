"""A small HiPS tree in the real format (FITS tiles, properties, Allsky, a FITS MOC), for the release checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

ORDER = 3
COVERAGE = [300, 301, 302, 303, 520]  # pixels at order 3


def tile_path(root: Path, order: int, npix: int) -> Path:
    return root / f"Norder{order}" / f"Dir{(npix // 10000) * 10000}" / f"Npix{npix}.fits"


def make_hips(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "properties").write_text(
        "creator_did = ivo://porter.test/hips/color\nobs_title = SynthCam color\ndataproduct_type = image\n"
        "hips_version = 1.4\nhips_release_date = 2027-01-04T00:00Z\nhips_status = public master clonableOnce\n"
        f"hips_tile_format = fits\nhips_order = {ORDER}\nhips_frame = equatorial\nhips_tile_width = 8\n"
    )
    for k in range(ORDER + 1):
        for p in sorted({c >> (2 * (ORDER - k)) for c in COVERAGE}):
            path = tile_path(root, k, p)
            path.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(np.full((8, 8), p, dtype=np.float32)).writeto(path)
    fits.PrimaryHDU(np.zeros((8, 8), dtype=np.float32)).writeto(root / "Norder3" / "Allsky.fits")
    uniq = np.array([4 * 4**ORDER + p for p in COVERAGE], dtype=np.int64)
    moc = fits.BinTableHDU.from_columns([fits.Column(name="UNIQ", format="K", array=uniq)])
    moc.header["MOCORDER"] = ORDER
    fits.HDUList([fits.PrimaryHDU(), moc]).writeto(root / "Moc.fits")
    return root
