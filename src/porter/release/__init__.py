"""Release management: plans with hand-over checkpoints, checks, sign-off gates, findings, schedule, audit log."""

from ..schema import CheckResult
from ._cells import cell_keys, read_cells
from ._checks import run_checks
from ._events import Event, EventLog
from ._find import PlanNotFoundError, find_plan, plans_dir_of
from ._plan import (
    LEVELS,
    Checkpoint,
    Corpus,
    Environment,
    Feature,
    Item,
    Milestone,
    Person,
    PlanError,
    ReleasePlan,
    ReleasePlanError,
    SmokeTest,
    dump_plan,
    load_plan,
)
from ._release import Blocker, Finding, GateError, Release, ReleaseState
from ._schedule import ScheduleRow, schedule
from ._templates import like, rubin_template

__all__ = [
    "LEVELS",
    "Blocker",
    "CheckResult",
    "Checkpoint",
    "Corpus",
    "Environment",
    "Event",
    "EventLog",
    "Feature",
    "Finding",
    "GateError",
    "Item",
    "Milestone",
    "Person",
    "PlanError",
    "PlanNotFoundError",
    "Release",
    "ReleasePlan",
    "ReleasePlanError",
    "ReleaseState",
    "ScheduleRow",
    "SmokeTest",
    "cell_keys",
    "dump_plan",
    "find_plan",
    "like",
    "load_plan",
    "plans_dir_of",
    "read_cells",
    "rubin_template",
    "run_checks",
    "schedule",
]
