"""The schedule: each checkpoint on time, at risk, or late by N days, and slips carried to what depends on it.

A checkpoint signed off is done on its sign-off date.  One not yet done
cannot finish before today, nor before its dependencies finish plus its own
duration; if that is after its deadline it is late by the difference, and
everything depending on it moves too.  Milestones follow their dependencies.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ._plan import ReleasePlan

__all__ = ["ScheduleRow", "schedule"]


@dataclass
class ScheduleRow:
    name: str
    kind: str
    """"checkpoint" or "milestone"."""
    deadline: datetime.date
    projected: datetime.date
    done: bool
    state: str
    """"done", "done late by N days", "on time", "at risk", "late by N days"."""

    @property
    def slip_days(self) -> int:
        return max(0, (self.projected - self.deadline).days)


def schedule(plan: ReleasePlan, signed: dict[str, datetime.date], today: datetime.date) -> list[ScheduleRow]:
    """Rows in dependency order (checkpoints first, then milestones)."""
    finish: dict[str, datetime.date] = {}
    rows: list[ScheduleRow] = []
    pending = list(plan.checkpoints)
    while pending:
        for c in list(pending):
            if not all(d in finish for d in c.depends_on):
                continue
            pending.remove(c)
            if c.name in signed:
                end = signed[c.name]
                late = (end - c.deadline).days
                state = f"done late by {late} days" if late > 0 else "done"
                rows.append(ScheduleRow(c.name, "checkpoint", c.deadline, end, True, state))
            else:
                after_deps = max(
                    (
                        finish[d] + datetime.timedelta(days=c.duration_days)
                        for d in c.depends_on
                        if d not in signed
                    ),
                    default=c.deadline,
                )
                end = max(c.deadline, after_deps, today)
                rows.append(
                    ScheduleRow(
                        c.name,
                        "checkpoint",
                        c.deadline,
                        end,
                        False,
                        _state(c.deadline, end, today, plan.at_risk_days),
                    )
                )
            finish[c.name] = end
    for m in plan.milestones:
        end = max(
            [
                m.date,
                *(
                    finish[d] + datetime.timedelta(days=(m.date - _deadline(plan, d)).days)
                    for d in m.depends_on
                ),
            ]
        )
        done = all(d in signed for d in m.depends_on) and today >= end
        rows.append(
            ScheduleRow(m.name, "milestone", m.date, end, done, _state(m.date, end, today, plan.at_risk_days))
        )
    return rows


def _deadline(plan: ReleasePlan, name: str) -> datetime.date:
    return plan.checkpoint(name).deadline


def _state(deadline: datetime.date, projected: datetime.date, today: datetime.date, at_risk_days: int) -> str:
    late = (projected - deadline).days
    if late > 0:
        return f"late by {late} days"
    if (deadline - today).days <= at_risk_days:
        return "at risk"
    return "on time"
