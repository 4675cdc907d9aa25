"""Where a release's plan is kept, found the way a release manager would look for it.

Plans live in the repository they draw from, under ``REPO/releases/`` (as
``porter demo-survey`` and ``porter release init --repo REPO`` write them), so
that everyone who has the repository finds them, and ``porter fsck`` knows them
as release files.  A command names the release; the plan is then looked for

1. in ``--plans DIR`` (or ``$PORTER_RELEASES``) if given — there and nowhere else;
2. in ``--repo REPO`` (or ``$PORTER_REPO``): ``REPO/releases/``;
3. otherwise in ``./releases/``, then in the ``releases/`` of every porter
   repository directly under the current directory — so that
   ``porter release status DEMO1`` works from the clone root after the demo.

When it is nowhere, the error lists every place looked in and how to say where.
This module uses only the standard library: the CLI calls it before it needs a butler.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PorterError

__all__ = ["PLANS_ENV", "REPO_ENV", "PlanNotFoundError", "find_plan", "plans_dir_of"]

PLANS_ENV = "PORTER_RELEASES"
"""Environment variable naming the directory of release plans (what ``--plans`` says)."""
REPO_ENV = "PORTER_REPO"
"""Environment variable naming the repository whose ``releases/`` holds the plans (what ``--repo`` says)."""
RELEASES = "releases"
"""The directory of a repository that holds its release plans, manifests and reports."""


class PlanNotFoundError(PorterError, FileNotFoundError):
    """No plan of that name where it was looked for (the message lists the places, and the fix)."""


def plans_dir_of(repo: str | Path) -> Path:
    """The directory of release plans of a repository (``REPO/releases``); the repository must exist."""
    root = Path(repo)
    if not (root / "porter.yaml").is_file():
        raise PlanNotFoundError(
            f"--repo {repo}: not a porter repository (no {root / 'porter.yaml'}); "
            "give the repository's directory, or the plans' directory with --plans DIR."
        )
    return root / RELEASES


def _candidates(cwd: Path) -> list[Path]:
    """``./releases``, then the ``releases/`` of each porter repository directly under ``cwd``."""
    dirs = [cwd / RELEASES]
    try:
        children = sorted(p for p in cwd.iterdir() if p.is_dir())
    except OSError:
        children = []
    dirs += [p / RELEASES for p in children if (p / "porter.yaml").is_file()]
    return dirs


def _show(path: Path, cwd: Path) -> str:
    try:
        return f"./{path.relative_to(cwd)}"
    except ValueError:
        return str(path)


def find_plan(
    name: str, plans: str | Path | None = None, repo: str | Path | None = None, cwd: Path | None = None
) -> Path:
    """The plan file ``NAME.yaml`` of release ``name`` (see the module's doc for the search order)."""
    cwd = cwd or Path.cwd()
    if plans is not None:
        dirs, how = [Path(plans)], "--plans"
    elif repo is not None:
        dirs, how = [plans_dir_of(repo)], "--repo"
    else:
        dirs, how = _candidates(cwd), ""
    found = [d / f"{name}.yaml" for d in dirs if (d / f"{name}.yaml").is_file()]
    if how and found:
        return found[0]
    if not how and found:
        if found[0].parent == cwd / RELEASES or len(found) == 1:
            return found[0]
        raise PlanNotFoundError(
            f"Release {name!r} has plans in several repositories here: "
            + ", ".join(_show(p, cwd) for p in found)
            + "; say which with --repo REPO (or --plans DIR)."
        )
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})
    looked = ", ".join(_show(d, cwd) for d in dirs)
    raise PlanNotFoundError(
        f"No release plan {name}.yaml; looked in {looked}"
        + (f" (plans there: {', '.join(known)})" if known else "")
        + f". Say where it is with --repo REPO (its {RELEASES}/ directory; or ${REPO_ENV}) or --plans DIR"
        + f" (or ${PLANS_ENV}), or create it: porter release init {name} --template rubin --repo REPO."
    )
