"""The release plan: a YAML file versioned with the release, validated with pydantic.

A plan names the release, the repository and collections it draws from, the
people (with their roles, and who may waive a failed check or decide as the
*decider of last resort*), the hand-over checkpoints with their shipping
lists, deadlines and dependencies, milestones, and the test period that must
run before the release may go public.  Errors name the file, the line and
the fix.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml

from ..datastore import ResourceURI
from ..errors import PorterError, did_you_mean

__all__ = ["Checkpoint", "Item", "Milestone", "Person", "PlanError", "ReleasePlan", "dump_plan", "load_plan"]


REMOTE_SCHEMES = ("s3://", "postgresql://", "postgres://")
"""Locations that are not paths: S3 prefixes and live PostgreSQL tables."""


class PlanError(PorterError, ValueError):
    """A release plan that cannot be used as written (the message names file, line and fix)."""


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class Person(_Model):
    name: str
    role: str = ""
    team: str = ""
    can_waive: bool = False
    """May record a waiver for a failed check (a team lead, the release manager)."""
    decider: bool = False
    """The decider of last resort: may override a gate, with a recorded reason."""


class Item(_Model):
    """One entry of a shipping list.  ``kind`` says which other fields apply."""

    name: str
    kind: Literal["datasets", "catalog", "files", "hips", "manual"]
    description: str = ""
    # datasets: dataset types in collections, expected data IDs from a query
    dataset_types: list[str] = []
    collections: list[str] = []
    expected: dict[str, Any] = {}
    """``{"dimensions": [visit, detector], "datasets": raw, "collections": [...], "where": "..."}``"""
    group_by: str | None = None
    # catalog: Parquet files or a SQL table, with its Felis schema
    location: str | None = None
    schema_file: str | None = None
    table: str | None = None
    rules: list[dict[str, Any]] = []
    # files / hips: a tree under a URI prefix
    patterns: dict[str, int] = {}
    # manual: a human check
    check: str = ""

    @pydantic.model_validator(mode="after")
    def _kind_fields(self) -> Item:
        need = {
            "datasets": ("dataset_types",),
            "catalog": ("location",),
            "files": ("location",),
            "hips": ("location",),
            "manual": ("check",),
        }[self.kind]
        for name in need:
            if not getattr(self, name):
                raise ValueError(f"a {self.kind!r} item needs {name!r}")
        return self

    def resolved_location(self, base: Path) -> str:
        """The item's location, a relative path taken from ``base`` (the plan's directory); URLs as they are."""
        location = str(self.location)
        if location.startswith(REMOTE_SCHEMES) or Path(location).is_absolute():
            return location
        return str(base / location)


class Checkpoint(_Model):
    """A hand-over: who passes the bucket to whom, by when, after what, and what is in it."""

    name: str
    title: str = ""
    from_team: str
    to_team: str
    owner: str = ""
    deadline: datetime.date
    duration_days: int = pydantic.Field(default=7, ge=0)
    """How long the hand-over takes once its dependencies are done (for rescheduling after a slip)."""
    depends_on: list[str] = []
    items: list[Item] = []


class Milestone(_Model):
    name: str
    date: datetime.date
    depends_on: list[str] = []


class ReleasePlan(_Model):
    """A whole release: what, from where, who, which hand-overs, by when."""

    release: Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]
    description: str = ""
    repository: str
    collections: list[str] = []
    people: list[Person] = []
    checkpoints: list[Checkpoint]
    milestones: list[Milestone] = []
    test_period_days: int = pydantic.Field(default=28, ge=0)
    """Days of testing that must pass after the last sign-off before the release may go public."""
    at_risk_days: int = pydantic.Field(default=3, ge=0)
    """A step not done this close to its deadline is at risk."""
    corpus: str = "corpus"
    """The regression corpus directory (relative to the plan's directory), shared by every release."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ReleasePlan:
        names = [c.name for c in self.checkpoints]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"checkpoint names must be unique; repeated: {sorted(dupes)}")
        known = set(names)
        steps: list[Checkpoint | Milestone] = [*self.checkpoints, *self.milestones]
        for c in steps:
            for d in c.depends_on:
                if d not in known:
                    raise ValueError(
                        f"{c.name!r} depends on {d!r}, which is not a checkpoint."
                        + did_you_mean(d, known, "checkpoints")
                    )
        _check_acyclic(self.checkpoints)
        people = {p.name for p in self.people}
        for c in self.checkpoints:
            if c.owner and people and c.owner not in people:
                raise ValueError(
                    f"checkpoint {c.name!r} has owner {c.owner!r}, who is not among the plan's people."
                )
        return self

    def checkpoint(self, name: str) -> Checkpoint:
        for c in self.checkpoints:
            if c.name == name:
                return c
        raise PlanError(
            f"Release {self.release} has no checkpoint {name!r}."
            + did_you_mean(name, [c.name for c in self.checkpoints], "checkpoints")
        )

    def person(self, name: str) -> Person:
        for p in self.people:
            if p.name == name:
                return p
        raise PlanError(
            f"{name!r} is not among the people of release {self.release}; add them to the plan's people: section."
            + did_you_mean(name, [p.name for p in self.people], "people")
        )


def _check_acyclic(checkpoints: list[Checkpoint]) -> None:
    deps = {c.name: set(c.depends_on) for c in checkpoints}
    done: set[str] = set()
    while deps:
        ready = [n for n, d in deps.items() if d <= done]
        if not ready:
            raise ValueError(f"checkpoint dependencies form a cycle among {sorted(deps)}")
        for n in ready:
            done.add(n)
            del deps[n]


# --- files ------------------------------------------------------------------------------------------------


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line in ``text`` of the YAML node at pydantic's error location."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == key), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


_FIXES = {
    "date_from_datetime_parsing": "write dates as YYYY-MM-DD",
    "date_parsing": "write dates as YYYY-MM-DD",
    "extra_forbidden": "remove it, or check its spelling",
    "missing": "add it",
    "literal_error": "use one of the allowed values",
    "greater_than_equal": "use a number ≥ 0",
}


def load_plan(path: str | Path) -> ReleasePlan:
    """Read and validate a plan file."""
    path = Path(path)
    if not path.exists():
        raise PlanError(f"Release plan {path} does not exist; create one with `porter release init`.")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise PlanError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a release plan is a YAML mapping (release:, repository:, checkpoints: …).")
    try:
        return ReleasePlan.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = tuple(
                x
                for x in e["loc"]
                if not (isinstance(x, str) and x in ("datasets", "catalog", "files", "hips", "manual"))
            )
            line = _line_of(text, loc)
            dotted = ".".join(str(x) for x in loc) or "(plan)"
            fix = _FIXES.get(e["type"], "")
            lines.append(f"{path}:{line or '?'}: {dotted}: {e['msg']}" + (f" — {fix}" if fix else ""))
        raise PlanError("Invalid release plan:\n  " + "\n  ".join(lines)) from None


def dump_plan(plan: ReleasePlan, path: str | Path) -> None:
    """Write a plan as YAML (atomically)."""
    data = plan.model_dump(mode="json", exclude_defaults=True)
    data = {"release": data.pop("release"), **data}
    ResourceURI.from_string(str(path)).write(yaml.safe_dump(data, sort_keys=False, width=100).encode())
