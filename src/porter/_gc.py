"""Pausing Python's cyclic garbage collector around bulk object construction.

Building 10^5 to 10^6 small objects (query results, dataset references, parsed
export entries) triggers many collections, and each full collection walks
every live object in the process: in a long-running process holding a large
heap this can cost more than the work itself.  The objects built in these
sections form no reference cycles, so reference counting frees them anyway;
the collector is resumed (if it was running) when the section ends.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["paused_gc"]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic GC for the duration of a bulk-construction block."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
