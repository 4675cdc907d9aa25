"""Per-quantum time and memory limits, enforced inside whatever process runs the quantum.

The timeout is a real-time interval timer; the memory limit is a watchdog
thread sampling the process's resident set and interrupting the main thread
when it passes the limit.  Both raise in the task's own code, so the
quantum fails cleanly (outputs removed, error recorded) and the worker goes
on with the next one.  The limit's error is also kept on the `Usage`: the
interrupt lands wherever the quantum happens to be, and code it passes
through (a datastore read reporting any decoding failure as a damaged file)
may turn it into another error; the run records the limit, not that.
They need the main thread (signals are delivered there); elsewhere they are
not enforced and the peak memory is still reported.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["MemoryLimitError", "QuantumTimeoutError", "Usage", "limits"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class QuantumTimeoutError(TimeoutError):
    """A quantum ran longer than its timeout."""


class MemoryLimitError(MemoryError):
    """A quantum's process grew past its memory limit."""


@dataclass
class Usage:
    """CPU seconds and peak resident memory of one quantum."""

    cpu: float = 0.0
    max_rss_mb: float = 0.0
    exceeded: QuantumTimeoutError | MemoryLimitError | None = None
    """The error a limit raised into the quantum, if one fired."""


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def limits(timeout: float | None, memory_mb: float | None, what: str) -> Iterator[Usage]:
    """Run the body under a timeout and a resident-memory limit; fills the yielded `Usage`."""
    usage = Usage()
    main = threading.current_thread() is threading.main_thread()
    cpu0 = _cpu()
    peak = [_rss_bytes()]
    stop = threading.Event()
    tripped = threading.Event()
    limit = int(memory_mb * 2**20) if memory_mb else None

    def watch() -> None:
        while not stop.wait(0.05):
            rss = _rss_bytes()
            peak[0] = max(peak[0], rss)
            if limit is not None and main and rss > limit and not tripped.is_set():
                tripped.set()
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    def on_alarm(signum: int, frame: object) -> None:
        usage.exceeded = QuantumTimeoutError(f"{what} ran longer than its timeout of {timeout:g} s.")
        raise usage.exceeded

    def on_memory(signum: int, frame: object) -> None:
        usage.exceeded = MemoryLimitError(
            f"{what} used {peak[0] / 2**20:.0f} MB, more than its memory limit of {memory_mb:g} MB."
        )
        raise usage.exceeded

    old_alarm = old_usr1 = None
    if main and timeout:
        old_alarm = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    if main and limit is not None:
        old_usr1 = signal.signal(signal.SIGUSR1, on_memory)
    watcher = threading.Thread(target=watch, daemon=True) if limit is not None else None
    if watcher:
        watcher.start()
    try:
        yield usage
    finally:
        stop.set()
        if watcher:
            watcher.join()
        if old_alarm is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_alarm)
        if old_usr1 is not None:
            signal.signal(signal.SIGUSR1, old_usr1)
        usage.cpu = _cpu() - cpu0
        usage.max_rss_mb = max(peak[0], _rss_bytes()) / 2**20
