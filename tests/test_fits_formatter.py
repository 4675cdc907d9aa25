"""porter writes FITS pixels itself (block by block, hashed on the way): the files must be astropy's, byte for byte.

A file astropy (and so every other FITS reader) would write differently is
a file someone else may read differently; the checksum handed to the
datastore must be that of the bytes on disk, or fsck would call every image
damaged.  Reads (whole planes swapped block by block, cut-outs) must give
back exactly what was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from porter.datastore._checksum import checksum_file
from porter.datastore._uri import LocalURI
from porter.datastore.formatters import _fits
from porter.datastore.formatters._fits import FitsExposureFormatter, FitsImageFormatter
from porter.images import BBox
from realistic import calexp

# Every BITPIX type, both byte orders, plus uint16 (which FITS stores with a BZERO offset, left to astropy).
DTYPES = ["<f4", ">f4", "<f8", ">f8", "<i2", ">i2", "<i4", ">i4", "<i8", ">i8", "u1", "<u2"]


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = (draw(st.integers(1, 70)), draw(st.integers(1, 70)))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).normal(0, 3000, size=shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(values, info.min, info.max)
    image = values.astype(dtype)
    if draw(st.booleans()):  # a strided view, not a contiguous array
        image = np.asarray(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1))[::2, ::2]
    return image


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few rows, so that small images cross many block boundaries (the default is 1 MiB),
    and planes over 3,000 bytes converted on the worker thread (the default: over 8 MiB)."""
    monkeypatch.setattr(_fits, "_BLOCK_BYTES", 1000)
    monkeypatch.setattr(_fits, "_PIPELINED_BYTES", 3000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=images())
def test_images_are_written_as_astropy_writes_them(
    tmp_path_factory: pytest.TempPathFactory, image: np.ndarray
) -> None:
    d = tmp_path_factory.mktemp("fits")
    ours, theirs = d / "ours.fits", d / "theirs.fits"
    checksum = FitsImageFormatter().write(image, ours)
    fits.PrimaryHDU(image).writeto(theirs)
    assert ours.read_bytes() == theirs.read_bytes()
    # The checksum is the file's (uint16 goes through astropy and leaves hashing to the datastore).
    assert checksum == (None if image.dtype.kind == "u" and image.dtype.itemsize > 1 else checksum_file(ours))
    back = FitsImageFormatter().read(LocalURI(ours), {})
    assert back.dtype.isnative and np.array_equal(back, image)
    h, w = image.shape
    box = BBox(w // 3, h // 4, max(1, w // 2), max(1, h // 2))
    cut = FitsImageFormatter().read(LocalURI(ours), {"bbox": box})
    assert np.array_equal(cut, image[box.y0 : box.y1, box.x0 : box.x1])


def test_exposures_are_written_as_astropy_writes_them(tmp_path: Path) -> None:
    exposure = calexp(width=300, height=170, seed=9, xy0=(40, 2000))
    exposure.metadata.update({"EXPTIME": 30.0, "FILTER": "HSC-R", "VISIT": 1228})
    ours, theirs = tmp_path / "ours.fits", tmp_path / "theirs.fits"
    checksum = FitsExposureFormatter().write(exposure, ours)
    primary = fits.PrimaryHDU()
    for key, value in exposure.metadata.items():
        primary.header[key] = value
    planes = zip(("IMAGE", "MASK", "VARIANCE"), (exposure.image, exposure.mask, exposure.variance))
    hdus = [fits.ImageHDU(plane, header=_fits._plane_header(exposure, name)) for name, plane in planes]
    fits.HDUList([primary, *hdus]).writeto(theirs)
    assert ours.read_bytes() == theirs.read_bytes()
    assert checksum == checksum_file(ours)
    assert FitsExposureFormatter().read(LocalURI(ours), {}) == exposure
    with fits.open(ours) as hdul:  # and astropy reads it back as porter wrote it
        assert np.array_equal(hdul["VARIANCE"].data, exposure.variance)
        assert hdul[0].header["FILTER"] == "HSC-R"


def test_a_header_astropy_refuses_writes_no_file(tmp_path: Path) -> None:
    exposure = calexp(width=20, height=10)
    exposure.metadata["BADVALUE"] = object()  # no FITS card can hold it
    with pytest.raises(Exception):  # noqa: B017 - astropy's own error, whatever its class
        FitsExposureFormatter().write(exposure, tmp_path / "bad.fits")
    assert not (tmp_path / "bad.fits").exists()


def test_a_truncated_plane_is_an_error_not_a_short_image(tmp_path: Path) -> None:
    image = np.arange(200 * 30, dtype=np.float32).reshape(200, 30)
    path = tmp_path / "img.fits"
    FitsImageFormatter().write(image, path)
    data = path.read_bytes()
    path.write_bytes(data[: 2880 + 4 * 30 * 150])  # the header and 150 of 200 rows
    with pytest.raises(OSError, match="truncated"):
        FitsImageFormatter().read(LocalURI(path), {})
