"""Sky-pixel envelopes of many regions, computed in parallel worker processes.

Every spatial dimension record (visit, visit_detector_region, tract, patch)
is indexed by the common-skypix (htm7) pixels its region may overlap.
Computing an envelope takes ~12 µs in lsst.sphgeom and holds the GIL, so for
large inserts (a night of visit-detector regions is 10^5 to 10^6 of them) the
work is split across forked worker processes, which inherit the encoded
regions instead of receiving them through pipes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import lsst.sphgeom

from ..errors import DataIdError

__all__ = ["PARALLEL_THRESHOLD", "envelopes"]

PARALLEL_THRESHOLD = 40_000
"""Below this many regions the envelopes are computed in-process."""

_WORK: Sequence[bytes] = ()
_PIXELIZATION: tuple[str, int] = ("htm", 7)


def _make(system: str, level: int) -> Any:
    if system == "htm":
        return lsst.sphgeom.HtmPixelization(level)
    return lsst.sphgeom.HealpixPixelization(level)


def _chunk(bounds: tuple[int, int]) -> list[list[tuple[int, int]]]:
    start, stop = bounds
    pix = _make(*_PIXELIZATION)
    decode = lsst.sphgeom.Region.decode
    out = []
    for i in range(start, stop):
        try:
            region = decode(_WORK[i])
        except Exception as exc:
            raise ValueError(f"region #{i} cannot be decoded: {exc}") from None
        out.append([(b, e) for b, e in pix.envelope(region)])
    return out


def _workers() -> int:
    configured = os.environ.get("PORTER_WORKERS")
    if configured:
        return max(1, int(configured))
    return min(os.cpu_count() or 1, 8)


def envelopes(system: str, level: int, encoded: Sequence[bytes]) -> list[list[tuple[int, int]]]:
    """Pixel ranges ``[begin, end)`` overlapped by each encoded region, in order.

    Raises
    ------
    DataIdError
        If a region's encoding is invalid.
    """
    global _WORK, _PIXELIZATION
    n = len(encoded)
    workers = _workers()
    _WORK = encoded
    _PIXELIZATION = (system, level)
    try:
        if n < PARALLEL_THRESHOLD or workers < 2 or not sys.platform.startswith("linux"):
            return _chunk((0, n))
        step = -(-n // (workers * 4))
        bounds = [(i, min(i + step, n)) for i in range(0, n, step)]
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            out: list[list[tuple[int, int]]] = []
            for part in pool.map(_chunk, bounds):
                out.extend(part)
        return out
    except ValueError as exc:
        raise DataIdError(f"Invalid region: {exc}") from None
    finally:
        _WORK = ()
