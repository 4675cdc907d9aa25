"""Who is executing a run: process identities that survive PID reuse, liveness, and dying with the submitter.

A killed submitter must not leave pool workers behind still writing to the
run, and a restart must be able to tell a quantum that is really running
from one whose process died.  Both need the same thing: a process named by
host, PID *and* start time (a PID alone is reused; on Linux the start time
in clock ticks since boot, with the boot ID, pins one process for good).
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


_BOOT_ID: str | None = None


def _boot_id() -> str:
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _BOOT_ID = f.read().strip()[:8]
        except OSError:
            _BOOT_ID = ""
    return _BOOT_ID


def _stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) from ``/proc/<pid>/stat``; None if there is no such process or no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except FileNotFoundError:
        return ("", "") if not os.path.isdir("/proc/self") else None
    except OSError:
        return ("", "")
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
    return fields[0], fields[19]


def process_start(pid: int) -> str:
    """A string that differs between two processes that had the same PID ("" where it cannot be known)."""
    found = _stat(pid)
    if not found or not found[1]:
        return ""
    return f"{_boot_id()}-{found[1]}"


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
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    found = _stat(proc.pid)
    if found is None:
        return False
    state, ticks = found
    if state in ("Z", "X", "x"):
        return False
    return not (proc.start and ticks and proc.start != f"{_boot_id()}-{ticks}")


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
