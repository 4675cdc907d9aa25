"""Sky-pixel envelopes of many regions, computed in parallel worker processes.

Every spatial dimension record (visit, visit_detector_region, tract, patch)
is indexed by the common-skypix (htm7) pixels its region may overlap.
Computing an envelope takes ~12 µs in lsst.sphgeom and holds the GIL, so for
large inserts (a night of visit-detector regions is 10^5 to 10^6 of them) the
work is split across forked worker processes, which inherit the
regions instead of receiving them through pipes.

lsst.sphgeom is imported by `envelopes` (in the parent, before any fork, so
workers inherit it), not with the module: the registry imports this module
whenever it opens a repository, and most commands index no region.
"""

from __future__ import annotations

import array
import contextlib
import gc
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from ..dimensions import region_problem

if TYPE_CHECKING:
    import lsst.sphgeom

__all__ = ["PARALLEL_THRESHOLD", "InvalidRegionError", "PixelChunk", "envelopes"]

PARALLEL_THRESHOLD = 40_000
"""Below this many regions the envelopes are computed in-process."""


class InvalidRegionError(ValueError):
    """Region number ``index`` of the input is not an sphgeom region or its encoding, or not a valid one."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"region #{index} is invalid: {reason}")
        self.index = index
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # raised in worker processes, re-raised in the parent
        return (InvalidRegionError, (self.index, self.reason))


_WORK: Sequence[bytes | lsst.sphgeom.Region] = ()
_PIXELIZATION: tuple[str, int] = ("htm", 7)


def _make(system: str, level: int) -> Any:
    import lsst.sphgeom

    if system == "htm":
        return lsst.sphgeom.HtmPixelization(level)
    return lsst.sphgeom.HealpixPixelization(level)


class PixelChunk(NamedTuple):
    """The pixels of consecutive regions, flattened: cheap to send between processes.

    ``pixels[sum(counts[:i]) : sum(counts[:i + 1])]`` are the pixels region
    ``i`` of the chunk may overlap, in increasing order.
    """

    counts: array.array
    pixels: array.array


def _chunk(bounds: tuple[int, int]) -> PixelChunk:
    start, stop = bounds
    import lsst.sphgeom

    pix = _make(*_PIXELIZATION)
    decode = lsst.sphgeom.Region.decode
    counts = array.array("q")
    pixels = array.array("q")
    for i in range(start, stop):
        region = _WORK[i]
        encoded = None
        if not isinstance(region, lsst.sphgeom.Region):
            encoded = region
            try:
                region = decode(region)
            except Exception as exc:
                raise InvalidRegionError(i, str(exc)) from None
        problem = region_problem(region, encoded)
        if problem is not None:  # a NaN vertex would index the region on every pixel of the sky
            raise InvalidRegionError(i, problem)
        before = len(pixels)
        for begin, end in pix.envelope(region).ranges():
            pixels.extend(range(begin, end))
        counts.append(len(pixels) - before)
    return PixelChunk(counts, pixels)


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


def envelopes(
    system: str, level: int, regions: Sequence[bytes | lsst.sphgeom.Region]
) -> Iterator[PixelChunk]:
    """The pixels each region (an lsst.sphgeom region or its encoding) may overlap, in order, in chunks.

    Large inputs are computed by forked worker processes, which start at
    once: the caller can write other rows while they work and consume the
    chunks as they arrive.

    Raises
    ------
    InvalidRegionError
        If a region's encoding is invalid (when computed in-process, from
        this call; otherwise when its chunk is reached).
    """
    global _WORK, _PIXELIZATION
    import lsst.sphgeom  # noqa: F401  (here, before workers are forked: they inherit it)

    n = len(regions)
    workers = _workers()
    _PIXELIZATION = (system, level)
    if n < PARALLEL_THRESHOLD or workers < 2 or not sys.platform.startswith("linux"):
        _WORK = regions
        try:
            return iter([_chunk((0, n))])
        finally:
            _WORK = ()
    step = -(-n // (workers * 4))
    bounds = [(i, min(i + step, n)) for i in range(0, n, step)]
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker
    )
    _WORK = regions
    try:
        futures = [pool.submit(_chunk, b) for b in bounds]
    finally:
        _WORK = ()  # the forked workers keep their copy

    return _PoolResults(pool, futures)


class _PoolResults(Iterator[PixelChunk]):
    """The chunks of a worker pool, in order; closing (or exhausting) it shuts the pool down.

    A class rather than a generator: a generator closed before its first
    ``next`` never runs its ``finally``, which would leave the workers running.
    """

    def __init__(self, pool: ProcessPoolExecutor, futures: list[Future[PixelChunk]]):
        self._pool = pool
        self._futures = futures
        self._next = 0

    def __next__(self) -> PixelChunk:
        if self._next >= len(self._futures):
            self.close()
            raise StopIteration
        future = self._futures[self._next]
        self._next += 1
        try:
            return future.result()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Cancel what has not started and wait for the workers to exit."""
        self._pool.shutdown(wait=True, cancel_futures=True)
