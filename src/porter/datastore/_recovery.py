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

One more case counts as gone: a row of *this* process that no write of
this process has in flight (`IN_FLIGHT`) — left when a failed write could
not drop its own rows (a full disk refuses the clean-up too), so that the
same process can simply try again.

`Datastore.recover_interrupted` completes what the dead writer left: deletes
its file (a path it was writing or removing; never a file adopted in place,
which was there before porter) and drops the row.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._records import ADOPTING, DELETING, ArtifactRow
from ._uri import _HOST_DIGITS, DEAD, LIVE, ResourceURI, Writer, _machine, my_token

__all__ = ["IN_FLIGHT", "InFlight", "Verdict", "judge", "leftover_uri"]


class InFlight:
    """The paths (per datastore root) this process has journaled and not yet recorded or abandoned.

    What tells this process's own running writes (threads included) from
    rows its earlier, failed writes could not drop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: Counter[tuple[str, str]] = Counter()

    def add(self, root: str, paths: Iterable[str]) -> None:
        with self._lock:
            self._paths.update((root, p) for p in paths)

    def discard(self, root: str, paths: Iterable[str]) -> None:
        with self._lock:
            for p in paths:
                key = (root, p)
                if self._paths[key] <= 1:
                    self._paths.pop(key, None)
                else:
                    self._paths[key] -= 1

    def holds(self, root: str, path: str) -> bool:
        with self._lock:
            return (root, path) in self._paths


IN_FLIGHT = InFlight()


@dataclass(frozen=True)
class Verdict:
    """What may be done with one journal row, and why (for people)."""

    recoverable: bool
    """True when its writer will not finish: the next writer or ``fsck --repair`` may finish its step."""
    live: bool
    """True when its writer is known to be running (never touched, whatever the grace)."""
    reason: str


def judge(
    row: ArtifactRow,
    grace: float,
    now_ns: int | None = None,
    in_flight: Callable[[str], bool] | None = None,
) -> Verdict:
    """Whether ``row``'s writer is gone (recoverable), running, or unknown and too young to tell.

    ``in_flight(path)``, when given, says whether this process is writing
    ``path`` now; a row of this process that it is not writing is a failed
    write's leftover.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    age = max(0.0, (now_ns - row.created) / 1e9)
    writer = Writer.parse(row.writer + ".") if row.writer else None
    step = "removal" if row.state == DELETING else "write"
    if in_flight is not None and row.writer == my_token() and not in_flight(row.path):
        return Verdict(
            True, False, f"recoverable (writer gone): left by an earlier, failed {step} of this process"
        )
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
