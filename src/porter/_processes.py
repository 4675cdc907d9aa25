"""Which process is which, and whether it still runs: identities that survive PID reuse.

Two parts of porter must decide whether a process they once saw is still
there: the datastore's sweeper (is the writer of this temporary file, or of
this journal row, gone?) and the pipeline's restart and watchdog (is the
process executing this quantum, or the submitter, gone?).  A PID alone
cannot answer that: PIDs are reused.  On Linux a process is pinned for good
by its PID, its start time (clock ticks after boot, field 22 of
``/proc/<pid>/stat``: a later process with the same PID started later) and
the boot ID (after a reboot every earlier process is gone).

This module reads those facts once, for both.  How each part writes an
identity down (the datastore's ``Writer`` token in file names and the write
journal, the pipeline's ``ProcessId`` in its state tables) stays with that
part: those are on-disk formats, and repositories already hold them.
"""

from __future__ import annotations

import os

__all__ = ["boot_id", "running_start", "start_ticks"]

_GONE_STATES = frozenset({"Z", "X", "x"})
"""``/proc/<pid>/stat`` states of a process that has exited (a zombie awaiting its parent, or dead)."""

_BOOT_ID: str | None = None


def boot_id() -> str:
    """This host's boot ID (``/proc/sys/kernel/random/boot_id``), or ``""`` where the system does not say.

    Read once per process: it changes only with a reboot, which no process survives.
    """
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:
                _BOOT_ID = f.read().decode("ascii", "replace").strip()
        except OSError:
            _BOOT_ID = ""
    return _BOOT_ID


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in ticks)`` from ``/proc/<pid>/stat``; None if its text cannot be parsed.

    Raises `OSError` (`FileNotFoundError` for no such process, or no ``/proc``)
    when the file cannot be read, so that callers can tell those cases apart.
    Read as bytes: the command name is the process's own choice, and need not
    be UTF-8.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read().decode("ascii", "replace")
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int:
    """When process ``pid`` started, in clock ticks after boot; 0 where ``/proc`` does not tell.

    With the boot ID, the start time tells this process from any later one
    that is given the same PID.
    """
    try:
        found = _stat(pid)
    except OSError:
        return 0
    return found[1] if found else 0


def running_start(pid: int) -> int | None:
    """Whether process ``pid`` of this host still runs: None if certainly not, else its start time in ticks.

    The start time is 0 where the process exists but ``/proc`` does not say
    when it started (no ``/proc``, or one that hides other users' processes):
    then whether it is the process the caller means cannot be told.  A zombie
    counts as gone: it runs nothing and writes nothing.  The caller compares a
    non-zero start time with the one it recorded (a different one means a
    later process reuses the PID).
    """
    try:
        os.kill(pid, 0)
        ours = True
    except ProcessLookupError:
        return None
    except PermissionError:
        ours = False  # another user's process: it exists
    try:
        found = _stat(pid)
    except FileNotFoundError:
        # A process we could signal, with /proc present but no entry for it, has exited
        # since the signal; another user's may just be hidden (mounted with hidepid).
        return None if ours and os.path.isdir("/proc/self") else 0
    except OSError:
        return 0
    if found is None:
        return 0
    state, started = found
    return None if state in _GONE_STATES else started
