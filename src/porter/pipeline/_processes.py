"""Who is executing a run: process identities that survive PID reuse, liveness, and dying with the submitter.

A killed submitter must not leave pool workers behind still writing to the
run, and a restart must be able to tell a quantum that is really running
from one whose process died.  Both need the same thing: a process named by
host, PID *and* start time (a PID alone is reused; on Linux the start time
in clock ticks since boot, with the boot ID, pins one process for good).
`porter._processes` reads those facts, for the datastore's sweeper too;
what is the pipeline's own is how it writes them down (`ProcessId`, whose
form the run state tables hold) and how a worker dies with its submitter.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

from .._processes import boot_id, running_start, start_ticks

__all__ = ["ProcessId", "die_with_submitter", "is_alive", "this_process"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_SECONDS = 1.0
"""How often a worker's watchdog looks at its submitter (the fallback where the parent-death signal is missing)."""


@dataclass(frozen=True)
class ProcessId:
    """A process: host, PID and start time (``""`` where the system does not say)."""

    host: str
    pid: int
    start: str = ""

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"


def process_start(pid: int) -> str:
    """A string that differs between two processes that had the same PID ("" where it cannot be known).

    ``<boot ID, 8 characters>-<start time in ticks>``: the form the run state tables hold.
    """
    ticks = start_ticks(pid)
    return _start_text(ticks) if ticks else ""


def _start_text(ticks: int) -> str:
    """`ProcessId.start` for a process of this boot started at ``ticks``: the boot ID is shortened to 8
    characters, as rows already written hold it."""
    return f"{boot_id()[:8]}-{ticks}"


_THIS: ProcessId | None = None


def this_process() -> ProcessId:
    """This process's identity (recomputed after a fork: the PID changes)."""
    global _THIS
    if _THIS is None or _THIS.pid != os.getpid():
        _THIS = ProcessId(socket.gethostname(), os.getpid(), process_start(os.getpid()))
    return _THIS


def is_alive(proc: ProcessId) -> bool | None:
    """Whether ``proc`` still runs: True, False, or None when it ran on another host (this one cannot tell).

    A zombie counts as gone (it runs nothing and writes nothing), and so
    does a process with the same PID but a different start time.
    """
    if proc.host != socket.gethostname():
        return None
    started = running_start(proc.pid)
    if started is None:
        return False
    return not (proc.start and started and proc.start != _start_text(started))


def die_with_submitter(submitter: ProcessId) -> None:
    """Make this (worker) process end when ``submitter`` does, however the submitter ends (even SIGKILL).

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``);
    the parent may have died before the call, so the parent is looked at again
    right after it.  With the ``forkserver`` start method the parent is the fork
    server, which itself exits when the submitter's end of its pipe closes; a
    watchdog thread looking at the submitter itself covers that hop, systems
    without ``prctl``, and a submitter that is not the parent at all.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died between the fork and prctl: then nobody will send the signal.
    if os.getppid() != parent or is_alive(submitter) is False:
        os._exit(1)
    threading.Thread(target=_watch, args=(submitter,), name="porter-submitter-watchdog", daemon=True).start()


def _watch(submitter: ProcessId) -> None:
    """Exit the process as soon as the submitter is gone (the outputs of a quantum cut short are redone by the next attempt)."""
    while is_alive(submitter) is not False:
        time.sleep(WATCHDOG_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)
