"""Telling a dead writer's journal rows from a live one's, and finishing the dead one's step.

Every journal row (see `porter.datastore._records`) names the process that
made it (`porter.datastore._uri.Writer`: host, PID, process start time).
When a put, ingest or import finds its path taken by a journal row, or
``porter fsck`` looks at one, this module answers whether that writer can
still finish:

- a writer of this host whose PID is gone, or whose PID now belongs to a
  process that started later, or that ran before the host last booted, is
  *dead*: its step is recoverable now, whatever the row's age;
- a running writer of this host is *live*: its row and file are never
  touched, whatever ``grace``;
- a writer that cannot be checked from here (another host or PID namespace,
  or a row from an older porter that named no writer) is judged by age, as a
  lease: recoverable once the row is ``grace`` seconds old.

`finish` completes what the dead writer left: deletes its file (a path it
was writing or removing; never a file adopted in place, which was there
before porter) and drops the row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ._records import ADOPTING, DELETING, ArtifactRow
from ._uri import _HOST_DIGITS, DEAD, LIVE, ResourceURI, Writer, _machine

__all__ = ["Verdict", "judge", "leftover_uri"]


@dataclass(frozen=True)
class Verdict:
    """What may be done with one journal row, and why (for people)."""

    recoverable: bool
    """True when its writer will not finish: the next writer or ``fsck --repair`` may finish its step."""
    live: bool
    """True when its writer is known to be running (never touched, whatever the grace)."""
    reason: str


def judge(row: ArtifactRow, grace: float, now_ns: int | None = None) -> Verdict:
    """Whether ``row``'s writer is gone (recoverable), running, or unknown and too young to tell."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    age = max(0.0, (now_ns - row.created) / 1e9)
    writer = Writer.parse(row.writer + ".") if row.writer else None
    step = "removal" if row.state == DELETING else "write"
    if writer is not None:
        state = writer.state()
        if state == DEAD:
            return Verdict(
                True,
                False,
                f"recoverable (writer gone): process {writer.pid} of this host, which journaled this "
                f"{step} {_duration(age)} ago, has exited",
            )
        if state == LIVE:
            return Verdict(
                False, True, f"{step} in progress: process {writer.pid} of this host is still running"
            )
        if writer.machine[:_HOST_DIGITS] != _machine()[:_HOST_DIGITS]:
            whose = f"process {writer.pid} on another host"
        else:
            whose = f"process {writer.pid}, which cannot be checked here"
    elif row.state == DELETING:
        # An older porter's removal: the registry side committed, so finishing it loses nothing.
        return Verdict(True, False, f"recoverable (writer gone): a removal journaled {_duration(age)} ago")
    else:
        whose = "a writer it does not name (an older porter)"
    if age >= grace:
        return Verdict(True, False, f"recoverable (writer gone): {whose}, journaled {_duration(age)} ago")
    return Verdict(
        False,
        False,
        f"{step} of {whose}, journaled {_duration(age)} ago (may still be running; recoverable after "
        f"{_duration(grace)})",
    )


def leftover_uri(row: ArtifactRow, uri: ResourceURI, direct: bool) -> ResourceURI | None:
    """The file a dead writer's step leaves to delete: none for an adopted or a direct file (not porter's)."""
    if direct or row.state == ADOPTING:
        return None
    return uri


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"
