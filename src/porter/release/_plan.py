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
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from typing_extensions import TypedDict

from ..datastore import ResourceURI
from ..errors import PorterError, did_you_mean
from ..schema import RuleError, check_rules

__all__ = [
    "LEVELS",
    "Checkpoint",
    "Corpus",
    "Environment",
    "Feature",
    "Item",
    "Milestone",
    "Person",
    "PlanError",
    "ReleasePlan",
    "ReleasePlanError",
    "SmokeTest",
    "dump_plan",
    "load_plan",
]


REMOTE_SCHEMES = ("s3://", "postgresql://", "postgres://")
"""Locations that are not paths: S3 prefixes and live PostgreSQL tables."""

MAX_NAME = 64
"""Longest release, checkpoint, item or milestone name (the audit log's columns hold 64 characters)."""
MAX_PERSON = 128
"""Longest person's name (the audit log's actor column)."""
MAX_DAYS = 3650
"""Longest duration, test period or risk window a plan may give: ten years."""
MAX_TOTAL_DAYS = 36_525
"""The checkpoints' durations may add up to a century at most (beyond, dates cannot be computed)."""
FIRST_DAY, LAST_DAY = datetime.date(1900, 1, 1), datetime.date(2999, 12, 31)
"""The dates a plan may name."""
KINDS = ("datasets", "catalog", "files", "hips", "manual", "metrics")
"""The kinds of shipping-list items."""


class PlanError(PorterError, ValueError):
    """A release plan that cannot be used as written (the message names file, line and fix)."""


ReleasePlanError = PlanError
"""The same error, by the name that says what it is about."""


class _Problem(ValueError):
    """A problem found by a validator: what is wrong, the fix, and where below the validated value (``loc``)."""

    def __init__(self, message: str, fix: str = "", loc: Sequence[str | int] = ()):
        super().__init__(message + (f" — {fix}" if fix else ""))
        self.message = message
        self.fix = fix
        self.loc = tuple(loc)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _name(value: str) -> str:
    """A name that goes into file names and the audit log: no slashes, control characters or edge spaces."""
    if not value.strip():
        raise _Problem("a name cannot be empty", "give it a name")
    if value != value.strip():
        raise _Problem(f"{_show(value)} begins or ends with spaces", "remove them")
    if value in (".", "..") or any(c in "/\\" or unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise _Problem(
            f"{_show(value)} is not a usable name (it names files)",
            "use letters, digits, spaces, '-', '_' and '.', without slashes or control characters",
        )
    return value


def _text(value: str) -> str:
    """A path, URL or free text: anything but NUL and other control characters besides tab and newline."""
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n" for c in value):
        raise _Problem(f"{_show(value)} holds control characters", "remove them")
    return value


def _path(value: str) -> str:
    """A path or URL: text (see `_text`) whose parts a file system can hold (255 bytes each, 4096 in all)."""
    _text(value)
    if len(value.encode()) > 4096 or any(len(part.encode()) > 255 for part in value.split("/")):
        raise _Problem(
            f"{_show(value)} is too long for a path", "check the value (each part of a path ≤ 255 bytes)"
        )
    return value


def _date(value: Any) -> Any:
    """A date written YYYY-MM-DD (or a `datetime.date`), from 1900 to 2999; no numbers, no times."""
    fix = "write dates as YYYY-MM-DD, e.g. 2027-01-25"
    if isinstance(value, datetime.datetime):
        raise _Problem(f"{_show(value)} is a date and time, not a date", fix)
    if isinstance(value, datetime.date):
        day = value
    elif isinstance(value, str) and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", value):
        try:
            day = datetime.date.fromisoformat(value.strip())
        except ValueError as exc:
            raise _Problem(f"{_show(value)} is not a date ({exc})", fix) from None
    else:
        raise _Problem(f"{_show(value)} is not a date", fix)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _Problem(f"{day} is not between {FIRST_DAY.year} and {LAST_DAY.year}", "check the year")
    return day


def _pattern(value: str) -> str:
    if not value.strip() or value.startswith("/") or ".." in Path(value).parts:
        raise _Problem(
            f"{_show(value)} is not a pattern of files under the item's location",
            "write a relative glob such as '*.md' or 'Norder*/**/*.fits'",
        )
    return _text(value)


def _rule(value: dict[str, Any]) -> dict[str, Any]:
    try:
        check_rules("", None, [value])
    except RuleError as exc:
        message, _, fix = str(exc).partition(" — ")
        raise _Problem(message, fix.rstrip(".")) from None
    return value


Name = Annotated[str, pydantic.StringConstraints(max_length=MAX_NAME), pydantic.AfterValidator(_name)]
PersonName = Annotated[str, pydantic.StringConstraints(max_length=MAX_PERSON), pydantic.AfterValidator(_name)]
Text = Annotated[str, pydantic.AfterValidator(_text)]
Location = Annotated[str, pydantic.StringConstraints(min_length=1), pydantic.AfterValidator(_path)]
PlanDate = Annotated[datetime.date, pydantic.BeforeValidator(_date)]
Days = Annotated[int, pydantic.Strict(), pydantic.Field(ge=0, le=MAX_DAYS)]
Rule = Annotated[dict[str, Any], pydantic.AfterValidator(_rule)]
Pattern = Annotated[str, pydantic.AfterValidator(_pattern)]
Count = Annotated[int, pydantic.Strict(), pydantic.Field(ge=0)]


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class Person(_Model):
    """Someone who acts on the release.  Any of the plan's people may run checks, ship, confirm manual items,
    record findings and reopen a checkpoint; the flags below, a checkpoint's ``signers`` and an environment's
    ``promoters`` say who may do the rest."""

    name: PersonName
    """How the person is named everywhere else: in the ``--by`` of commands (recorded as the actor in the
    audit log), and in a checkpoint's ``owner`` and ``signers`` and an environment's ``promoters``."""
    role: Text = ""
    """Their role in words (``Pipelines lead``), for people reading the plan; it grants nothing: what they
    may do comes from ``can_waive``, ``decider`` and ``release_manager``."""
    team: Text = ""
    """Their team, for people reading the plan; porter does not match it with a checkpoint's ``from_team``
    or ``to_team``."""
    can_waive: bool = False
    """May record a waiver for a failed check (a team lead, the release manager)."""
    decider: bool = False
    """The decider of last resort: may override a gate, with a recorded reason; may sign any hand-over."""
    release_manager: bool = False
    """May mark the release ready (as may the decider), and signs the hand-overs that name no signers."""


@pydantic.with_config(pydantic.ConfigDict(extra="forbid"))
class Expected(TypedDict, total=False):
    """A ``datasets`` item's expected data IDs: those of a query (all keys optional)."""

    dimensions: list[Text]
    """The data IDs' dimensions (default: the dataset type's)."""
    datasets: Text | list[Text] | None
    """Only data IDs that have a dataset of this type (``raw``) …"""
    collections: list[Text]
    """… in these collections (default: the item's)."""
    where: Text
    """A ``where`` expression restricting them."""


_KIND_FIELDS = {
    "datasets": ("dataset_types", "collections", "expected", "group_by"),
    "catalog": ("location", "schema_file", "table", "rules"),
    "files": ("location", "patterns"),
    "hips": ("location",),
    "manual": ("check",),
    "metrics": ("package", "tags", "level", "collections", "runs", "baseline"),
}
"""The fields each kind of item uses (besides name, kind and description)."""
_KIND_NEEDS = {
    "datasets": "dataset_types",
    "catalog": "location",
    "files": "location",
    "hips": "location",
    "manual": "check",
    "metrics": "package",
}
_KIND_EXAMPLES = {
    "dataset_types": "dataset_types: [calexp]",
    "location": "location: DP2/catalogs/Source/",
    "check": "check: what a person must confirm",
    "package": "package: metrics (a metrics package: metrics/*.yaml and specs/, beside the plan)",
}


class Item(_Model):
    """One entry of a shipping list.  ``kind`` says which other fields apply."""

    name: Name
    """The item's name, unique in its checkpoint: its results are named ``ITEM:CHECK``, a manual item is
    confirmed by it, and ``equals_item`` rules and features' ``verified_by`` refer to the item by it."""
    kind: Literal["datasets", "catalog", "files", "hips", "manual", "metrics"]
    """What the item is, and so how it is checked: datasets' completeness in the butler, a catalog's
    schema conformance and content rules, counts of files, a HiPS tree's structure, or a person's
    confirmation (see Item kinds)."""
    description: Text = ""
    """What the item is, in words, for people reading the plan; porter does not check it."""
    # datasets: dataset types in collections, expected data IDs from a query
    dataset_types: list[
        Annotated[str, pydantic.StringConstraints(min_length=1), pydantic.AfterValidator(_text)]
    ] = []
    """The dataset types delivered: each gets a completeness check against the expected data IDs, and its
    datasets in the item's collections are listed in the checkpoint's manifest when it is shipped."""
    collections: list[Text] = []
    """The collections the delivered datasets are looked for in, by the completeness checks and the
    manifest.  The plan's ``collections`` do not stand in for them: without any, the item's checks cannot
    run (an error result).  For a ``metrics`` item: the collections whose runs' measurements are the
    release's (default: the plan's ``collections``); a CHAINED collection stands for the RUN
    collections in it, and a pipeline run's measurements are stored under its output RUN collection."""
    expected: Expected = {}
    """The data IDs each dataset type must cover, as a query (see Expected), e.g.
    ``{dimensions: [visit, detector], datasets: raw}``: a dataset for every (visit, detector) that has a
    raw.  Left empty: every data ID of the dataset type's dimensions the repository holds."""
    group_by: Text | None = None
    """A dimension of the expected data IDs (``visit``, ``tract`` …, or one they imply, such as a visit's
    ``band``) to count the missing ones by: the result then shows the groups with the most missing first,
    rather than the first missing data IDs."""
    # catalog: Parquet files or a SQL table, with its Felis schema
    location: Location | None = None
    """Where the content is: for a catalog, its Parquet files (a file, a directory or an ``s3://`` prefix)
    or a live table (``postgresql://HOST/DB#schema.Table``); for ``files`` and ``hips``, the directory of
    the tree.  A relative path is taken from the plan's directory; everything under it is checksummed into
    the manifest when the checkpoint is shipped."""
    schema_file: Location | None = None
    """The Felis schema the catalog must conform to: a schema file, or the name of one published in
    lsst-sdm-schemas (``dp1``).  Needs ``table``."""
    table: Location | None = None
    """The table of ``schema_file`` whose columns, types, non-null columns, primary and foreign keys and
    units the catalog is checked against (``Object``); other catalogs' foreign keys find this one by it."""
    rules: list[Rule] = []
    """Content rules run on the catalog's rows (see Content rules), each one check; a
    rule naming a column the catalog lacks is an error result."""
    # files / hips: a tree under a URI prefix
    patterns: dict[Pattern, Count] = {}
    """Glob patterns relative to ``location`` (``'*.md'``, ``'Norder*/**/*.fits'``), each with the
    number of files it must match exactly; each pattern is one check."""
    # manual: a human check
    check: Text = ""
    """What a person must confirm.  The check is ``pending`` until someone records it with
    ``porter release confirm``, and then passes."""
    # metrics: quality metrics in the repository's metric store (porter.verify)
    package: Location | None = None
    """A metrics package (lsst/verify's layout: ``metrics/*.yaml`` and ``specs/``), relative to the plan's
    directory: the metrics the gate checks are its metrics carrying ``tags``, their specifications say what
    ``level`` means, their ``direction`` and ``baseline.tolerance`` what a regression is."""
    tags: list[Annotated[str, pydantic.StringConstraints(min_length=1), pydantic.AfterValidator(_text)]] = [
        "kpm"
    ]
    """The tags a metric of ``package`` must carry (all of them) to be gated: ``[kpm]``, the key
    performance metrics."""
    level: Literal["minimum", "design", "stretch"] = "minimum"
    """The specification level every measurement must meet, as checked when it was stored."""
    runs: list[Text] = []
    """The stored runs whose measurements are the release's, by name, instead of those of ``collections``
    (e.g. a CI job imported as ``job/validate_drp_hsc``)."""
    baseline: Literal["previous_release", "none"] = "previous_release"
    """What no measurement may have regressed against: ``previous_release``, the runs marked as the last
    release before this one (``porter release ready`` marks a release's runs), per metric and data ID;
    ``none`` checks levels only."""

    @pydantic.model_validator(mode="after")
    def _kind_fields(self) -> Item:
        need = _KIND_NEEDS[self.kind]
        if not getattr(self, need):
            raise _Problem(
                f"a {self.kind!r} item needs {need!r}", f"add it, e.g. {_KIND_EXAMPLES[need]}", (need,)
            )
        uses = _KIND_FIELDS[self.kind]
        for field, info in type(self).model_fields.items():
            if field in ("name", "kind", "description") or field in uses:
                continue
            if getattr(self, field) != info.get_default(call_default_factory=True):
                users = [k for k, fields in _KIND_FIELDS.items() if field in fields]
                raise _Problem(
                    f"a {self.kind!r} item does not use {field!r} (a {' or '.join(map(repr, users))} item does)",
                    "remove it, or correct the item's kind",
                    (field,),
                )
        if self.kind == "metrics" and self.runs and self.collections:
            raise _Problem(
                "a 'metrics' item names its runs either by runs: or by collections:, not both",
                "keep one of them",
                ("runs",),
            )
        if self.schema_file and not self.table:
            raise _Problem(
                "an item with a schema_file needs the schema's table",
                "add table: NAME (Object, Source …)",
                (),
            )
        return self

    def resolved_schema_file(self, base: Path) -> str | None:
        """The item's Felis schema: a relative path taken from ``base`` (the plan's directory) when a file is
        there, like ``location``; otherwise the name as given (a path from the current directory, or a schema
        of lsst-sdm-schemas such as ``dp1``)."""
        if self.schema_file is None:
            return None
        name = str(self.schema_file)
        if name.startswith(REMOTE_SCHEMES) or Path(name).is_absolute():
            return name
        beside_plan = base / name
        return str(beside_plan) if beside_plan.is_file() else name

    def resolved_package(self, base: Path) -> Path:
        """A ``metrics`` item's package directory: a relative path is taken from ``base`` (the plan's directory)."""
        package = Path(str(self.package))
        return package if package.is_absolute() else base / package

    def resolved_location(self, base: Path) -> str:
        """The item's location, a relative path taken from ``base`` (the plan's directory); URLs as they are."""
        location = str(self.location)
        if location.startswith(REMOTE_SCHEMES):
            return location
        path = Path(location) if Path(location).is_absolute() else base / location
        try:  # a tree that holds the plan holds the repository too, or the whole machine: never scan it
            holds_plan = base.resolve().is_relative_to(path.resolve())
        except (OSError, RuntimeError):  # a link loop: the check that opens it names it
            holds_plan = False
        if holds_plan:
            raise PlanError(
                f"Item {self.name!r}: its location {location} ({path.resolve()}) holds the plan's own directory"
                f"{' (it is the root of the file system)' if path.resolve() == Path(path.resolve().anchor) else ''}"
                ", so checking or shipping it would read everything below — name the item's own directory."
            )
        return str(path)


class Checkpoint(_Model):
    """A hand-over: who passes the bucket to whom, by when, after what, and what is in it."""

    name: Name
    """The checkpoint's name, unique in the plan: commands name it (``porter release check DP2 NAME``),
    ``depends_on`` and features' ``verified_by`` refer to it, and its shipment manifests are named after it."""
    title: Text = ""
    """A heading for the hand-over (``Pipelines → Catalogs (Qserv)``); the report shows it, or
    ``FROM_TEAM → TO_TEAM`` when there is none."""
    from_team: Text
    """The team handing the content over (the one that produced it); status shows the hand-over as
    ``FROM_TEAM → TO_TEAM``."""
    to_team: Text
    """The team receiving it, to build on it."""
    owner: Text = ""
    """The person who answers for getting the hand-over done (one of the plan's people, when it names any),
    shown by ``porter release status``.  Owning gives no right to sign it off: that is ``signers``."""
    deadline: PlanDate
    """The day the hand-over is due.  The schedule compares it with the projected finish: at risk within
    ``at_risk_days`` of it, late by N days when the hand-over or its dependencies slip past it."""
    duration_days: Days = 7
    """How long the hand-over takes once its dependencies are done (for rescheduling after a slip)."""
    depends_on: list[Text] = []
    """Checkpoints of this plan that must be signed off before this one may be (no cycles).  The schedule
    counts this one's ``duration_days`` from when they finish, so their slips move it too."""
    signers: list[Text] = []
    """Who may sign this hand-over off (people of the plan); none named: the release managers.
    The decider may always sign."""
    required_at: Level = "minimal"
    """The lowest validation level at which this hand-over must be signed before the release is ready."""
    items: list[Item] = []
    """The shipping list: what the hand-over delivers.  ``porter release check`` runs each item's checks
    and ``porter release ship`` freezes what they cover in a manifest; a checkpoint with items cannot be
    signed off before its checks have run."""

    @pydantic.model_validator(mode="after")
    def _unique_items(self) -> Checkpoint:
        seen: dict[str, int] = {}
        for i, item in enumerate(self.items):
            if item.name in seen:
                raise _Problem(
                    f"item name {item.name!r} is used twice in checkpoint {self.name!r} (also items.{seen[item.name]})",
                    "give each item of a checkpoint its own name",
                    ("items", i, "name"),
                )
            seen[item.name] = i
        return self


LEVELS = ("minimal", "standard", "rigorous")
"""LDM-564's levels of operational validation, in increasing order (see `ReleasePlan.validation`)."""
Level = Literal["minimal", "standard", "rigorous"]


class Feature(_Model):
    """One entry of a milestone's feature list (LDM-564 section 3), e.g. DM-DAX-2."""

    id: Annotated[
        str,
        pydantic.StringConstraints(
            pattern=r"^[A-Za-z][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)+$", max_length=MAX_NAME
        ),
    ]
    """The feature's identifier, such as DM-DAX-2."""
    description: Text = ""
    """What the feature provides, in words; ``porter release status`` lists it with the feature's status."""
    due: PlanDate
    """When the feature is due."""
    completed: PlanDate | None = None
    """When it was completed (absent: incomplete)."""
    verified_by: list[Text] = []
    """Checks that verify it, as CHECKPOINT/CHECK (e.g. portal/example-queries:manual) or smoke/ENV/TEST; a
    completed feature counts as done only once every one of them passed in its latest run."""


class Milestone(_Model):
    """A dated step after the hand-overs (red-team testing, go public), scheduled from the checkpoints it
    follows; it gates nothing itself, but its features must be verified at rigorous validation."""

    name: Name
    """The milestone's name, unique and not that of a checkpoint; the schedule and status show it."""
    date: PlanDate
    """The day it is planned for; the schedule projects it from its dependencies, and calls it on time, at
    risk or late as it does a checkpoint."""
    depends_on: list[Text] = []
    """Checkpoints the milestone follows: one that slips past its deadline moves the milestone by as much,
    and the milestone is done once they are all signed off and its projected date has come."""
    features: list[Feature] = []
    """The milestone's feature list; the milestone is complete only when every feature is done and verified."""


class SmokeTest(_Model):
    """A smoke test run on an environment before the release is promoted from it (LDM-564 section 2.2).

    Exactly one of ``command`` (a shell command run in the plan's directory, with $PORTER_RELEASE,
    $PORTER_ENVIRONMENT and $PORTER_REPO set; exit status 0 passes) or ``read_back`` (read this many
    datasets of the release's collections back through the butler, spread over every dataset type).
    """

    name: Name
    """The test's name, unique in its environment: its result is named ``smoke/ENV:NAME``, and a feature's
    ``verified_by`` refers to it as ``smoke/ENV/NAME``."""
    command: Text = ""
    """A shell command (run by ``bash -c``) in the plan's directory, with ``$PORTER_RELEASE``,
    ``$PORTER_ENVIRONMENT`` and ``$PORTER_REPO`` set: exit status 0 passes; otherwise the result keeps the
    end of its output."""
    read_back: Annotated[int, pydantic.Strict(), pydantic.Field(ge=0, le=100_000)] = 0
    """How many datasets of the plan's ``collections`` to read back through the butler, taken in turn from
    each dataset type: passes if at least one is found and all of them read without error.  Needs the
    plan's ``collections``."""
    timeout_s: Annotated[int, pydantic.Strict(), pydantic.Field(ge=1, le=86_400)] = 3600
    """Seconds a ``command`` may run before it is stopped and the test fails; ``read_back`` is not timed."""

    @pydantic.model_validator(mode="after")
    def _one_kind(self) -> SmokeTest:
        if bool(self.command.strip()) == bool(self.read_back):
            raise _Problem(
                f"smoke test {self.name!r} needs exactly one of command: or read_back:",
                "e.g. command: porter demo-survey, or read_back: 20",
            )
        return self


class Environment(_Model):
    """Where a release is installed: a test system, production (LDM-564: smoke tested on test first)."""

    name: Name
    """The environment's name (``test``, ``production``): ``--env`` and ``--to`` name it, ``promote_from`` and
    ``verified_by`` (``smoke/ENV/TEST``) refer to it, and smoke-test commands get it as
    ``$PORTER_ENVIRONMENT``."""
    description: Text = ""
    """What and where the environment is, for people reading the plan; porter does not use it."""
    smoke_tests: list[SmokeTest] = []
    """What must run green here before the release is promoted from here."""
    promote_from: Text | None = None
    """The environment whose green smoke tests, on the same shipped content, a promotion here needs."""
    promoters: list[Text] = []
    """Who may promote to this environment (none named: the release managers); the decider always may."""


def _inside(value: str) -> str:
    """A relative path that stays below the plan's directory: no leading '/', no '..' part."""
    _path(value)
    if value.startswith(("/", "~")) or ".." in Path(value).parts or "://" in value:
        raise _Problem(
            f"{_show(value)} leaves the plan's directory",
            "write a relative path below it, such as 'corpus' (a corpus shared with other plans goes beside them)",
        )
    return value


InsidePath = Annotated[str, pydantic.StringConstraints(min_length=1), pydantic.AfterValidator(_inside)]


class Corpus(_Model):
    """The regression corpus: checks that every release runs, so a mistake caught once is caught again.

    Written as ``corpus: DIR`` or ``corpus: {path: DIR, python: true}``."""

    path: InsidePath = "corpus"
    """The corpus directory, relative to the plan's directory and below it: ``finding to-check`` writes
    there, and ``release check`` reads its YAML rule files (and, if ``python``, its Python checks)."""
    python: bool = False
    """Whether the corpus's Python checks (``*.py``) run.  They run arbitrary code with the rights of
    whoever runs ``release check``, so they run only where the plan says so; otherwise each one is
    reported as not run, naming this setting."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


class ReleasePlan(_Model):
    """A whole release: what, from where, who, which hand-overs, by when."""

    release: Annotated[
        str,
        pydantic.StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$", max_length=MAX_NAME),
    ]
    """The release's name (``DP2``): the plan's file is NAME.yaml, the audit log records the release's
    events under it, and its manifests and audit anchors are kept in the directory NAME beside the plan."""
    description: Text = ""
    """What the release is, in a sentence; the report shows it under the release's name."""
    repository: Location
    """The butler repository the release draws from (a path or URL; a relative path is taken from the
    plan's directory if it exists there).  Datasets are checked and shipped from it, and the release's
    audit log is kept in its database."""
    collections: list[Text] = []
    """The release's collections: where ``read_back`` smoke tests read datasets, and where a row_count
    rule's ``per_dataset`` counts them unless it names its own.  A ``datasets`` item names its own
    collections; these are not its default."""
    people: list[Person] = []
    """Everyone who acts on the release: each ``--by`` names one of them, as must a checkpoint's owner and
    signers and an environment's promoters; their flags say who may waive, sign, mark ready or override."""
    checkpoints: list[Checkpoint]
    """The hand-overs, in any order (``depends_on`` orders them).  Each one required at the plan's
    ``validation`` level must be signed off before the release may go public."""
    milestones: list[Milestone] = []
    """Dated steps after the hand-overs (red-team testing, go public), scheduled from the checkpoints they
    follow, with the feature lists that rigorous validation needs verified."""
    test_period_days: Days = 28
    """Days of testing that must pass after the last sign-off before the release may go public."""
    at_risk_days: Days = 3
    """A step not done this close to its deadline is at risk."""
    corpus: Corpus = Corpus()
    """The regression corpus, shared by the releases whose plans sit in one directory."""
    warnings_block: bool = False
    """Whether a check that warns blocks sign-off like one that fails (default: it is shown and recorded)."""
    validation: Level = "standard"
    """LDM-564's level of operational validation.  minimal (notebook containers, development systems: hours,
    not days): the checkpoints required at minimal are signed; standard: every checkpoint required at
    standard, the test period, green smoke tests on each environment that declares them; rigorous (prompt or
    batch production): every checkpoint, the features of the milestones due verified, and the release
    promoted to each environment that is promoted into."""
    environments: list[Environment] = []
    """Where the release is installed: at standard validation every environment's smoke tests must have
    passed on the content shipped now, and at rigorous the release must have been promoted into each
    environment that names ``promote_from``."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ReleasePlan:
        _unique("checkpoint", [c.name for c in self.checkpoints], "checkpoints")
        _unique("person", [p.name for p in self.people], "people")
        _unique("milestone", [m.name for m in self.milestones], "milestones")
        names = [c.name for c in self.checkpoints]
        known = set(names)
        steps: list[tuple[str, Sequence[Checkpoint | Milestone]]] = [
            ("checkpoints", self.checkpoints),
            ("milestones", self.milestones),
        ]
        for field, group in steps:
            for i, c in enumerate(group):
                if field == "milestones" and c.name in known:
                    raise _Problem(
                        f"milestone {c.name!r} has the name of a checkpoint",
                        "give it a name of its own",
                        (field, i, "name"),
                    )
                for j, d in enumerate(c.depends_on):
                    if d not in known:
                        raise _Problem(
                            f"{c.name!r} depends on {d!r}, which is not a checkpoint."
                            + did_you_mean(d, known, "checkpoints"),
                            "name a checkpoint of this plan",
                            (field, i, "depends_on", j),
                        )
        _check_acyclic(self.checkpoints)
        people = {p.name for p in self.people}
        for i, c in enumerate(self.checkpoints):
            if c.owner and people and c.owner not in people:
                raise _Problem(
                    f"checkpoint {c.name!r} has owner {c.owner!r}, who is not among the plan's people."
                    + did_you_mean(c.owner, people),
                    "add them to people:, or name one of the people",
                    ("checkpoints", i, "owner"),
                )
            _among_people(
                c.signers, people, f"checkpoint {c.name!r} names signer", ("checkpoints", i, "signers")
            )
        _unique("environment", [e.name for e in self.environments], "environments")
        envs = {e.name for e in self.environments}
        for i, e in enumerate(self.environments):
            _unique("smoke test", [t.name for t in e.smoke_tests], f"environments.{i}.smoke_tests")
            if e.promote_from is not None and (e.promote_from not in envs or e.promote_from == e.name):
                raise _Problem(
                    f"environment {e.name!r} is promoted from {e.promote_from!r}, which is not another environment."
                    + did_you_mean(e.promote_from, envs - {e.name}, "environments"),
                    "name an environment of this plan (e.g. test)",
                    ("environments", i, "promote_from"),
                )
            _among_people(
                e.promoters,
                people,
                f"environment {e.name!r} names promoter",
                ("environments", i, "promoters"),
            )
        for i, m in enumerate(self.milestones):
            _unique("feature", [f.id for f in m.features], f"milestones.{i}.features")
            for j, f in enumerate(m.features):
                for k, ref in enumerate(f.verified_by):
                    head, _, rest = ref.partition("/")
                    ok = (head in known and bool(rest)) or (
                        head == "smoke" and rest.partition("/")[0] in envs and bool(rest.partition("/")[2])
                    )
                    if not ok:
                        raise _Problem(
                            f"feature {f.id} is verified by {ref!r}, which names no checkpoint's check or smoke test",
                            "write CHECKPOINT/CHECK (e.g. portal/example-queries:manual) or smoke/ENVIRONMENT/TEST",
                            ("milestones", i, "features", j, "verified_by", k),
                        )
        catalogs = {item.name for c in self.checkpoints for item in c.items if item.kind == "catalog"}
        for i, c in enumerate(self.checkpoints):
            for j, item in enumerate(c.items):
                for k, rule in enumerate(item.rules):
                    other = rule.get("equals_item")
                    if other is not None and (other not in catalogs or other == item.name):
                        raise _Problem(
                            f"{item.name!r}'s row_count compares with {other!r}, which is not another catalog item."
                            + did_you_mean(str(other), catalogs - {item.name}, "catalog items"),
                            "name a catalog item of this plan (any checkpoint's)",
                            ("checkpoints", i, "items", j, "rules", k, "equals_item"),
                        )
        total = sum(c.duration_days for c in self.checkpoints)
        if total > MAX_TOTAL_DAYS:
            raise _Problem(
                f"the checkpoints' durations add up to {total} days, more than a century",
                "check the duration_days values",
                ("checkpoints",),
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

    def signers_of(self, checkpoint: Checkpoint) -> list[str]:
        """Who may sign ``checkpoint`` off: its signers (else the release managers), and the decider."""
        named = list(checkpoint.signers) or [p.name for p in self.people if p.release_manager]
        return named + [p.name for p in self.people if p.decider and p.name not in named]

    def environment(self, name: str) -> Environment:
        for e in self.environments:
            if e.name == name:
                return e
        raise PlanError(
            f"Release {self.release} has no environment {name!r}."
            + did_you_mean(name, [e.name for e in self.environments], "environments")
            + " Environments are declared under environments: in the plan."
        )

    def required(self, checkpoint: Checkpoint) -> bool:
        """Whether ``checkpoint`` must be signed off at the plan's validation level."""
        return LEVELS.index(checkpoint.required_at) <= LEVELS.index(self.validation)

    def person(self, name: str) -> Person:
        for p in self.people:
            if p.name == name:
                return p
        raise PlanError(
            f"{name!r} is not among the people of release {self.release}; add them to the plan's people: section."
            + did_you_mean(name, [p.name for p in self.people], "people")
        )


def _among_people(names: list[str], people: set[str], what: str, loc: tuple[str | int, ...]) -> None:
    """Each of ``names`` is a person of the plan; else a problem at ``loc`` + index, worded ``what NAME``."""
    for j, name in enumerate(names):
        if name not in people:
            raise _Problem(
                f"{what} {name!r}, who is not among the plan's people." + did_you_mean(name, people),
                "add them to people:, or name one of the people",
                (*loc, j),
            )


def _unique(what: str, names: list[str], field: str) -> None:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise _Problem(
                f"{what} name {n!r} is used twice (also {field}.{seen[n]})",
                f"give each {what} its own name",
                (field, i, "name"),
            )
        seen[n] = i


def _check_acyclic(checkpoints: list[Checkpoint]) -> None:
    deps = {c.name: set(c.depends_on) for c in checkpoints}
    done: set[str] = set()
    while deps:
        ready = [n for n, d in deps.items() if d <= done]
        if not ready:
            # Walk from any stuck checkpoint along unfinished dependencies until a name repeats: the cycle.
            path = [next(iter(deps))]
            while True:
                following = sorted(d for d in deps[path[-1]] if d in deps)[0]
                if following in path:
                    cycle = [*path[path.index(following) :], following]
                    break
                path.append(following)
            index = next(i for i, c in enumerate(checkpoints) if c.name == cycle[0])
            raise _Problem(
                f"checkpoint dependencies form a cycle: {' → '.join(cycle)}",
                "remove one of these dependencies",
                ("checkpoints", index, "depends_on"),
            )
        for n in ready:
            done.add(n)
            del deps[n]


# --- files ------------------------------------------------------------------------------------------------


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping (YAML keeps the last silently; a plan refuses it)."""


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when there is one


class _PlanLoader(_SafeLoader):
    """YAML as a plan is read: dates stay text (pydantic checks them, with the field's line), a key given
    twice is an error, and a scalar that cannot be converted (``!!int x``) is a YAML error with its line.

    The parser is libyaml's if PyYAML has it (fast on big files, and it refuses absurd nesting itself)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                first = seen.setdefault((key.tag, key.value), key)
                if first is not key:
                    raise _DuplicateKey(
                        "while reading a mapping",
                        node.start_mark,
                        f"found the key {key.value!r} twice (first at line {first.start_mark.line + 1})",
                        key.start_mark,
                    )
        return super().construct_mapping(node, deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {_show(node.value)} as {node.tag} ({exc})", node.start_mark
            ) from None


_PlanLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}


def _as_text(loader: _PlanLoader, node: yaml.Node) -> str:
    """An explicit ``!!timestamp`` is read as text too (pydantic parses the date)."""
    return str(loader.construct_scalar(node))


_PlanLoader.add_constructor("tag:yaml.org,2002:timestamp", _as_text)


def _parse(text: str) -> tuple[Any, yaml.Node | None]:
    """A plan's text as data, and its YAML node tree (where the lines of errors are found)."""
    loader = _PlanLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at pydantic's error location (or of its nearest parent)."""
    node = root
    line = None
    for key in loc:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
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
    "date_type": "write dates as YYYY-MM-DD",
    "extra_forbidden": "remove it, or check its spelling",
    "missing": "add it",
    "literal_error": "use one of the allowed values",
    "int_type": "write a whole number",
    "int_parsing": "write a whole number",
    "int_from_float": "write a whole number",
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
    "string_type": "write text (quote it if it looks like a number, a date or true/false)",
    "list_type": "write a YAML list: [a, b], or one '- a' line per entry",
    "dict_type": "write a YAML mapping (key: value)",
    "model_type": "write a YAML mapping of its fields (name: …)",
    "model_attributes_type": "write a YAML mapping of its fields (name: …)",
    "string_pattern_mismatch": "start with a letter and use only letters, digits, '_', '.' and '-'",
    "string_too_short": "give a value",
    "too_short": "give at least one",
}
_GENERIC_FIX = "compare with a plan written by `porter release init`"


def _model_at(loc: tuple[Any, ...]) -> type[pydantic.BaseModel] | None:
    """The plan model whose field ``loc``'s last key would be (to suggest the field meant by a typo)."""
    model: Any = ReleasePlan
    nested = {("ReleasePlan", "checkpoints"): Checkpoint, ("ReleasePlan", "people"): Person}
    nested |= {("ReleasePlan", "milestones"): Milestone, ("Checkpoint", "items"): Item}
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        model = nested.get((model.__name__, key))
        if model is None:
            return None
    return model


def _explain(error: Any) -> tuple[tuple[Any, ...], str, str]:
    """(location, what is wrong, the fix) of one pydantic error."""
    loc = tuple(error["loc"])
    kind = error["type"]
    problem = error.get("ctx", {}).get("error")
    if kind in ("value_error", "assertion_error") and isinstance(problem, _Problem):
        return loc + problem.loc, problem.message, problem.fix or _GENERIC_FIX
    if kind in ("value_error", "assertion_error") and problem is not None:
        text = str(problem)
        message, _, fix = text.partition(" — ")
        return loc, message, fix or _GENERIC_FIX
    message = error["msg"]
    fix = _FIXES.get(kind, _GENERIC_FIX)
    ctx = error.get("ctx", {})
    if kind in ("less_than_equal", "less_than"):
        fix = f"use a number ≤ {ctx.get('le', ctx.get('lt'))}"
    elif kind in ("greater_than_equal", "greater_than"):
        fix = f"use a number ≥ {ctx.get('ge', ctx.get('gt'))}"
    elif kind == "string_too_long":
        fix = f"shorten it to at most {ctx.get('max_length')} characters"
    elif kind == "literal_error" and loc and loc[-1] == "kind" and isinstance(error.get("input"), str):
        fix += "." + did_you_mean(error["input"], KINDS)
    elif kind == "extra_forbidden" and isinstance(loc[-1], str):
        model = _model_at(loc)
        if model is not None:
            fix += "." + did_you_mean(loc[-1], model.model_fields, "fields")
    return loc, message, fix


_MAX_ERRORS = 20


def _key(key: Any) -> str:
    """One step of a field's path as the message shows it: a plain key as it is, anything else quoted."""
    text = str(key)
    if isinstance(key, int) or re.fullmatch(r"[\w.-]{1,64}", text):
        return text
    return _show(text, 40)


def _describe(exc: pydantic.ValidationError, root: yaml.Node | None, path: Path) -> str:
    lines = []
    errors = exc.errors()
    for e in errors[:_MAX_ERRORS]:
        loc, message, fix = _explain(e)
        line = _line_of(root, loc)
        dotted = ".".join(_key(x) for x in loc) or "(plan)"
        lines.append(f"{path}:{line or 1}: {dotted}: {message} — {fix}")
    if len(errors) > _MAX_ERRORS:
        lines.append(f"… and {len(errors) - _MAX_ERRORS} more problems")
    return "Invalid release plan:\n  " + "\n  ".join(lines)


_TOO_DEEP = "nested too deeply to be a release plan — compare with a plan written by `porter release init`."


def _yaml_error(exc: yaml.YAMLError, text: str, path: Path) -> PlanError:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        line = mark.line + 1
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
    else:
        line = None
    where = f"{path}:{line}" if line else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    if "nesting depth" in problem:  # libyaml's limit (PyYAML's own parser runs out of stack instead)
        return PlanError(f"{where}: {_TOO_DEEP}")
    if isinstance(exc, _DuplicateKey):
        fix = "keep one of them"
    elif isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        problem = f"the character U+{ord(char):04X} is not allowed in YAML"
        fix = "remove it (or write it as an escape such as \\u0000 inside double quotes)"
    elif isinstance(exc, yaml.constructor.ConstructorError):
        fix = "write a plain value there, without a !!tag"
    else:
        fix = "fix the YAML there: indentation, a missing ':', an unclosed quote or bracket"
    return PlanError(f"{where}: not valid YAML ({problem}) — {fix}.")


def load_plan(path: str | Path) -> ReleasePlan:
    """Read and validate a plan file.

    Anything wrong — the file unreadable or not UTF-8, YAML syntax, a key given twice, a plan that is not
    a mapping, a missing or misspelled field, a value of the wrong type, a bad date, an unknown item kind,
    a malformed content rule, duplicate names, dependencies on unknown checkpoints or in a cycle — is a
    `PlanError` whose message names the file, the line and the field, and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise PlanError(f"Release plan {path} does not exist; create one with `porter release init`.")
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise PlanError(f"{path} is a directory, not a release plan — name the plan's YAML file.") from None
    except OSError as exc:
        raise PlanError(
            f"{path}: cannot be read ({exc.strerror or exc}) — check the file's permissions."
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PlanError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}) — save the plan as UTF-8."
        ) from None
    try:
        data, root = _parse(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, path) from None
    except RecursionError:
        raise PlanError(f"{path}: {_TOO_DEEP}") from None
    if data is None:
        raise PlanError(f"{path}: the file is empty — write a plan, e.g. with `porter release init`.")
    if not isinstance(data, dict):
        raise PlanError(
            f"{path}:1: a release plan is a YAML mapping, not a {type(data).__name__} — "
            "start it with release:, repository:, checkpoints: … (see `porter release init`)."
        )
    try:
        plan = ReleasePlan.model_validate(data)
    except pydantic.ValidationError as exc:
        raise PlanError(_describe(exc, root, path)) from None
    _check_packages(plan, root, path)
    return plan


def _check_packages(plan: ReleasePlan, root: yaml.Node | None, path: Path) -> None:
    """Every ``metrics`` item's package is a metrics package beside the plan (its checks would only error)."""
    for i, cp in enumerate(plan.checkpoints):
        for j, item in enumerate(cp.items):
            if item.kind != "metrics":
                continue
            package = item.resolved_package(path.parent)
            if not (package / "metrics").is_dir():
                loc = ("checkpoints", i, "items", j, "package")
                what = "does not exist" if not package.exists() else "has no metrics/ directory"
                raise PlanError(
                    f"Invalid release plan:\n  {path}:{_line_of(root, loc) or 1}: {'.'.join(map(str, loc))}: "
                    f"the metrics package {item.package} ({package}) {what} — name a metrics package "
                    "(a directory with metrics/*.yaml and specs/), relative to the plan's directory"
                )


def dump_plan(plan: ReleasePlan, path: str | Path) -> None:
    """Write a plan as YAML (atomically)."""
    data = plan.model_dump(mode="json", exclude_defaults=True)
    data = {"release": data.pop("release"), **data}
    ResourceURI.from_string(str(path)).write(yaml.safe_dump(data, sort_keys=False, width=100).encode())
