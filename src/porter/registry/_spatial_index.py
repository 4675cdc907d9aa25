"""Sky-pixel envelopes of many regions, computed in parallel worker processes.

Every spatial dimension record (visit, visit_detector_region, tract, patch)
is indexed by the common-skypix (htm7) pixels its region may overlap.
Computing an envelope takes ~12 µs in lsst.sphgeom and holds the GIL, so for
large inserts (a night of visit-detector regions is 10^5 to 10^6 of them) the
work is split across forked worker processes, which inherit the encoded
regions instead of receiving them through pipes.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
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
        out.append(pix.envelope(region).ranges())
    return out


def _init_worker() -> None:
    """Prepare a forked worker: no cyclic GC, lower priority.

    The worker inherits the parent's whole heap (every record being
    inserted); a full collection would walk all of it, and copy each page it
    touches.  The worker only builds short-lived lists, which reference
    counting frees.  It also yields the CPU to the parent, whose inserts are
    the critical path.
    """
    gc.disable()
    with contextlib.suppress(OSError):  # not permitted: run at normal priority
        os.nice(10)


def _workers() -> int:
    configured = os.environ.get("PORTER_WORKERS")
    if configured:
        return max(1, int(configured))
    return min(os.cpu_count() or 1, 8)


def envelopes(system: str, level: int, encoded: Sequence[bytes]) -> Iterator[list[list[tuple[int, int]]]]:
    """Pixel ranges ``[begin, end)`` overlapped by each encoded region, in order, in chunks.

    Large inputs are computed by forked worker processes, which start at
    once: the caller can write other rows while they work and consume the
    chunks as they arrive.

    Raises
    ------
    DataIdError
        If a region's encoding is invalid.
    """
    global _WORK, _PIXELIZATION
    n = len(encoded)
    workers = _workers()
    _PIXELIZATION = (system, level)
    if n < PARALLEL_THRESHOLD or workers < 2 or not sys.platform.startswith("linux"):
        _WORK = encoded
        try:
            return iter([_chunk((0, n))])
        except ValueError as exc:
            raise DataIdError(f"Invalid region: {exc}") from None
        finally:
            _WORK = ()
    step = -(-n // (workers * 4))
    bounds = [(i, min(i + step, n)) for i in range(0, n, step)]
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker
    )
    _WORK = encoded
    try:
        futures = [pool.submit(_chunk, b) for b in bounds]
    finally:
        _WORK = ()  # the forked workers keep their copy

    def results() -> Iterator[list[list[tuple[int, int]]]]:
        try:
            for future in futures:
                try:
                    yield future.result()
                except ValueError as exc:
                    raise DataIdError(f"Invalid region: {exc}") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return results()
