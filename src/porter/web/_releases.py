"""The releases a viewer may see, and a release opened on the server's own butler.

A release is as visible as its data: a viewer sees it only if they may read
every collection its plan names (an embargoed release's collections are
unreadable until the embargo ends, so the release, its checks and its audit
trail are too).  A release the viewer may not see is answered exactly like one
that does not exist (404), as the API does for collections.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from ..release import Release, ReleasePlan, load_plan, plans_dir_of
from ._render import Dashboard
from ._session import Viewer

__all__ = ["PlanFile", "open_release", "parse_as_of", "visible_plans"]


@dataclass(frozen=True)
class PlanFile:
    path: Path
    plan: ReleasePlan


_cache: dict[Path, tuple[float, PlanFile | None]] = {}
_lock = threading.Lock()


def _load(path: Path) -> PlanFile | None:
    """The plan in ``path``, parsed once per change of the file (None: not a valid plan, left off the list)."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    with _lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        entry: PlanFile | None = PlanFile(path, load_plan(path))
    except Exception:
        entry = None
    with _lock:
        _cache[path] = (mtime, entry)
    return entry


def may_see(viewer: Viewer, plan: ReleasePlan) -> bool:
    """Whether ``viewer`` may see release ``plan``: every collection it names is readable to them."""
    if not plan.collections:
        return viewer.user is not None  # a plan over no collections: for signed-in users, not the public
    return all(viewer.principal.can_read(c) for c in plan.collections)


def visible_plans(dashboard: Dashboard, viewer: Viewer) -> list[PlanFile]:
    """The release plans of the repository that ``viewer`` may see, by release name."""
    directory = plans_dir_of(dashboard.root)
    files = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    entries = [e for e in (_load(p) for p in files) if e is not None and e.plan.release == e.path.stem]
    return [e for e in entries if may_see(viewer, e.plan)]


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


def open_release(dashboard: Dashboard, viewer: Viewer, name: str, as_of: int | None = None) -> Release:
    """Release ``name`` over the server's butler as ``viewer`` may see it (404 when it may not, or is not there)."""
    entry = next((e for e in visible_plans(dashboard, viewer) if e.plan.release == name), None)
    if entry is None:
        raise HTTPException(404, f"There is no release {name[:80]!r} here (or you may not see it).")
    release = Release(entry.plan, entry.path, dashboard.state.butler)
    if as_of is not None:
        last = release.log.events(name)
        if not last or as_of > last[-1].seq:
            raise HTTPException(
                400,
                f"as_of={as_of}: release {name} has no audit entry {as_of} "
                f"(its entries are 1 to {last[-1].seq if last else 0}).",
            )
        release.as_of = as_of
    return release
