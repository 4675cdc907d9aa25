"""Named moments where a process can be told to stop and wait to be killed, for crash-recovery tests.

Killing a writer "at a random moment" finds the interesting moments only by
luck; these points make them certain.  ``PORTER_STOP_AT=journaled`` (a
comma-separated list of names) makes a process that reaches `stop_point`
with one of those names print ``porter: stopped at <name> (pid <pid>)`` to
standard error and then wait forever, for the test to SIGKILL it.  The
variable is read once, at import, so an unset variable costs a put one
set look-up.  The points are in the datastore, so every writer passes them
(put, ingest, import with files, transfer), in this order:

``journaled``
    the write journal is committed (paths reserved, naming this process); no file is written yet;
``written``
    the file (of a put) or every file (of an ingest or import) is in place;
    the registry transaction has not started;
``registering``
    inside the registry transaction, the datasets' locations recorded, before the commit.
``verify-recording``
    inside the metric store's transaction, a batch of measurements (and its alerts) written,
    before the commit.
``outbox_sent``
    a forwarder's batch accepted by the InfluxDB sink (204), its outbox rows not yet deleted.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["STOP_AT", "stop_point"]

STOP_AT = frozenset(filter(None, os.environ.get("PORTER_STOP_AT", "").split(",")))


def stop_point(name: str) -> None:
    """Stop here for good if ``PORTER_STOP_AT`` names ``name``; otherwise return at once."""
    if name not in STOP_AT:
        return
    sys.stderr.write(f"porter: stopped at {name} (pid {os.getpid()})\n")
    sys.stderr.flush()
    while True:
        time.sleep(3600)
