"""The releases a viewer may see, and a release opened on the server's own butler.

A release is as visible as its data: a viewer sees it only if they may read
every collection its plan names (an embargoed release's collections are
unreadable until the embargo ends, so the release, its checks and its audit
trail are too).  A release the viewer may not see is answered exactly like one
that does not exist (404), as the API does for collections.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from ..release import Release, ReleasePlan, load_plan, plans_dir_of
from ._render import Dashboard
from ._session import Viewer

__all__ = ["PlanFile", "open_release", "parse_as_of", "read_plans", "visible_plans"]


@dataclass(frozen=True)
class PlanFile:
    path: Path
    plan: ReleasePlan


_cache: dict[Path, tuple[tuple[int, int], PlanFile | None]] = {}
_lock = threading.Lock()
_SETTLED = 2.0
"""Seconds after its last change a file's (or directory's) modification time is trusted to tell the next change:
the clock the kernel stamps files with moves in steps of milliseconds, so two changes within one step leave the
same time; what was read in that step is read again until the time is this old."""


def _settled(mtime_ns: int) -> bool:
    return time.time_ns() - mtime_ns > _SETTLED * 1e9


def _load(path: Path) -> PlanFile | None:
    """The plan in ``path``, parsed once per change of the file (None: not a valid plan, left off the list)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    with _lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        entry: PlanFile | None = PlanFile(path, load_plan(path))
    except Exception:
        entry = None
    if _settled(st.st_mtime_ns):
        with _lock:
            _cache[path] = (stamp, entry)
    return entry


def may_see(viewer: Viewer, plan: ReleasePlan) -> bool:
    """Whether ``viewer`` may see release ``plan``: every collection it names is readable to them."""
    if not plan.collections:
        return viewer.user is not None  # a plan over no collections: for signed-in users, not the public
    return all(viewer.principal.can_read(c) for c in plan.collections)


_listings: dict[Path, tuple[int, list[Path]]] = {}


def _plan_files(directory: Path) -> list[Path]:
    """The ``*.yaml`` files of the plans' directory, listed again only when the directory changes (a file
    added, removed or renamed there moves its modification time; an edited plan is `_load`'s to notice)."""
    try:
        stamp = directory.stat().st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return []
    with _lock:
        cached = _listings.get(directory)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    files = sorted(p for p in directory.glob("*.yaml") if p.is_file())
    if _settled(stamp):
        with _lock:
            _listings[directory] = (stamp, files)
    return files


def read_plans(dashboard: Dashboard) -> list[PlanFile]:
    """Every valid release plan of the repository (named as its file), by release name."""
    files = _plan_files(plans_dir_of(dashboard.root))
    return [e for e in (_load(p) for p in files) if e is not None and e.plan.release == e.path.stem]


def visible_plans(dashboard: Dashboard, viewer: Viewer) -> list[PlanFile]:
    """The release plans of the repository that ``viewer`` may see, by release name."""
    return [e for e in read_plans(dashboard) if may_see(viewer, e.plan)]


def parse_as_of(raw: str | None) -> int | None:
    """``?as_of=`` as an audit-log entry number; a clear 400 for anything else."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        raise HTTPException(
            400,
            f"as_of={raw[:40]!r} is not an audit-log entry: give the entry's number (the # column of the release's "
            "audit trail), e.g. ?as_of=12.",
        )
    return int(raw)


def open_release(
    dashboard: Dashboard, viewer: Viewer, name: str, as_of: int | None = None, *, pinned: bool = True
) -> Release:
    """Release ``name`` over the server's butler as ``viewer`` may see it (404 when it may not, or is not there).

    ``pinned`` (a page): its audit log is read once, however many questions the page asks of it
    (`Release.pin`); an action opens it unpinned, to act on it as it stands.
    """
    entry = next((e for e in visible_plans(dashboard, viewer) if e.plan.release == name), None)
    if entry is None:
        raise HTTPException(404, f"There is no release {name[:80]!r} here (or you may not see it).")
    release = Release(entry.plan, entry.path, dashboard.state.butler)
    if pinned:
        release.pin()
    if as_of is not None:
        last, _ = release.log.head(name)
        if as_of > last:
            raise HTTPException(
                400,
                f"as_of={as_of}: release {name} has no audit entry {as_of} (its entries are 1 to {last}).",
            )
        release.as_of = as_of
    return release
