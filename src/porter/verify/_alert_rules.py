"""The alert rule state machine, with no database in it: what `AlertBook` persists and `replay` runs.

A *series* is one metric at one data ID, watched at the level its ``alert:`` policy names.  Each run
that measures the series either *fails* that level (``Outcome.failed(level)``), *passes* it, or has
no spec at that level (the measurement is then ignored: it neither counts nor breaks a streak).

- a failing run extends the streak of consecutive failing runs; the first one opens an alert
  *pending*; when the streak reaches the policy's ``for:`` the alert is *firing* (``fired``);
- a passing run ends the streak: a firing alert is *resolved*, a pending one *cleared* (nobody was
  told about it, so nobody is told it went away);
- an alert that fired stays firing while the series keeps failing, whatever ``for:`` becomes, and
  repeated failures change nothing (one open alert per metric, data ID and level);
- the same run arriving again (a re-run quantum, a re-imported job: the store replaces the
  measurement) is evaluated again from the streak before it, so it is never counted twice;
- a run older than the last one evaluated for the series (a late import of old history) is stored
  but does not move the alert: alerting is about the present.

Why regressions alone do not fire: an alert is an *excursion* past a declared level (the seed's
"alerts on excursions"), which someone must act on.  A measurement worse than its baseline but
still within the level is shown by ``porter verify status``, the change-point report and the
release gate, not paged about; a planted regression bad enough to fail the level fires as usual.
``porter verify lint`` already refuses an alert whose level has no spec, which could never fire.

Notification is decided here too, so that the live book and the offline replay agree: a firing is
notified unless a silence covers the series at that moment; a resolution is notified only if its
firing was (whoever was paged is told it is over, nobody else).  An alert that fired while silenced
and is still firing when the silence has ended is notified at its next run, unless acknowledged.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ._metrics import AlertPolicy, Metric, MetricSet, metrics_by_name
from ._outcome import DataIdValue, Outcome

__all__ = ["AlertStatus", "SeriesState", "Silence", "Transition", "TransitionKind", "replay", "step"]

AlertStatus = Literal["inactive", "pending", "firing"]
OPEN = ("pending", "firing")
"""The statuses of an open alert (one per series at most); a closed one is resolved or cleared."""
TransitionKind = Literal["fired", "resolved"]


@dataclass(frozen=True)
class Silence:
    """A person's instruction not to notify alerts of some metrics until a time.

    ``metric`` is a glob on full metric names (``validate_drp.*``, ``validate_drp.AM1``);
    ``data_id`` restricts it to data IDs having every one of these items (``{band: r}``: every
    tract in band r); empty means every data ID.  Alerts it covers are still recorded.
    """

    metric: str
    until: float
    who: str
    reason: str
    data_id: Mapping[str, DataIdValue] = field(default_factory=dict)
    created: float = 0.0
    silence_id: int | None = None

    def covers(self, metric: str, data_id: Mapping[str, DataIdValue], now: float) -> bool:
        """Whether this silence applies to the series at ``now`` (from ``created``, up to ``until``)."""
        if not self.created <= now < self.until or not fnmatch.fnmatchcase(metric, self.metric):
            return False
        return all(key in data_id and str(data_id[key]) == str(value) for key, value in self.data_id.items())


@dataclass(frozen=True)
class SeriesState:
    """What the rules remember of one series between runs.

    ``streak`` counts the consecutive failing runs up to and including ``last_run``; ``before`` is
    the streak before ``last_run``, so that run can be evaluated again when it is replaced.
    ``first_run``/``first_time``: the run that started the streak of the open alert.
    ``notified``: the open alert's firing was notified; ``acknowledged``: someone acknowledged it.
    """

    streak: int = 0
    before: int = 0
    last_run: str | None = None
    last_time: float | None = None
    status: AlertStatus = "inactive"
    first_run: str | None = None
    first_time: float | None = None
    notified: bool = False
    acknowledged: bool = False


@dataclass(frozen=True)
class Transition:
    """An alert firing or resolving, as notified (or, with ``silenced``, recorded without notice).

    ``run``/``time``/``value`` are the measurement that caused it; ``runs`` the failing streak at
    that point and ``first_run`` where it started.  ``alert_id`` is the `AlertBook`'s id (a
    counter from 1 in `replay`).  ``late`` marks a firing notified after its silence ended.
    """

    kind: TransitionKind
    metric: str
    data_id: Mapping[str, DataIdValue]
    level: str
    severity: str
    channels: tuple[str, ...]
    run: str
    time: float
    value: float
    unit: str
    runs: int
    first_run: str | None
    silenced: bool = False
    late: bool = False
    alert_id: int | None = None

    @property
    def summary(self) -> str:
        """One line for a person: what, where, how bad, since when."""
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.data_id.items())) or "whole run"
        unit = f" {self.unit}" if self.unit else ""
        if self.kind == "fired":
            return (
                f"FIRING [{self.severity}] {self.metric} ({where}) failed {self.level} for {self.runs} "
                f"consecutive run{'s' if self.runs != 1 else ''} since {self.first_run}: "
                f"{self.value:g}{unit} in {self.run}"
            )
        return (
            f"RESOLVED {self.metric} ({where}) meets {self.level} again: {self.value:g}{unit} in {self.run}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what the notification outbox stores and ``test-rules --json`` prints)."""
        return {
            "kind": self.kind,
            "alert_id": self.alert_id,
            "metric": self.metric,
            "data_id": dict(self.data_id),
            "level": self.level,
            "severity": self.severity,
            "channels": list(self.channels),
            "run": self.run,
            "time": self.time,
            "value": self.value,
            "unit": self.unit,
            "runs": self.runs,
            "first_run": self.first_run,
            "silenced": self.silenced,
            "late": self.late,
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        """The transition `to_dict` wrote."""
        return cls(
            kind=data["kind"],
            metric=data["metric"],
            data_id=dict(data["data_id"]),
            level=data["level"],
            severity=data["severity"],
            channels=tuple(data["channels"]),
            run=data["run"],
            time=float(data["time"]),
            value=float(data["value"]),
            unit=data["unit"],
            runs=int(data["runs"]),
            first_run=data["first_run"],
            silenced=bool(data["silenced"]),
            late=bool(data["late"]),
            alert_id=data["alert_id"],
        )


@dataclass(frozen=True)
class Step:
    """What one outcome did to a series: its new state and what happened to its alert.

    ``opened``: a new alert begins (pending, or firing at once when ``for: 1``); ``cleared``: a
    pending alert ended without firing; ``transitions``: the fired/resolved records.
    """

    state: SeriesState
    opened: bool = False
    cleared: bool = False
    transitions: tuple[Transition, ...] = ()


def step(state: SeriesState, outcome: Outcome, policy: AlertPolicy, silenced: bool = False) -> Step | None:
    """Evaluate one outcome against the series' state; ``None`` when it leaves the series untouched.

    ``silenced``: whether a silence covers the series now (decided by the caller, which knows
    the silences and the clock).  The one rule code both `AlertBook.observe` and `replay` use.
    """
    verdict = outcome.levels.get(policy.level)
    if verdict is None:
        return None  # no spec at the alert's level applies to this data ID
    failed = verdict is False
    late = state.last_time is not None and outcome.time < state.last_time
    if late and outcome.run != state.last_run:
        return None  # an older run arriving late: history, not the present
    before = state.before if outcome.run == state.last_run else state.streak
    streak = before + 1 if failed else 0

    def transition(
        kind: TransitionKind, first_run: str | None, silent: bool, late: bool = False
    ) -> Transition:
        return Transition(
            kind=kind,
            metric=outcome.metric,
            data_id=dict(outcome.data_id),
            level=policy.level,
            severity=policy.severity,
            channels=tuple(policy.channels),
            run=outcome.run,
            time=outcome.time,
            value=outcome.value,
            unit=outcome.unit,
            runs=streak,
            first_run=first_run,
            silenced=silent,
            late=late,
        )

    if not failed:
        closed = SeriesState(streak, before, outcome.run, outcome.time)
        if state.status == "firing":
            resolved = transition("resolved", state.first_run, silent=not state.notified)
            return Step(closed, transitions=(resolved,))
        return Step(closed, cleared=state.status == "pending")
    opened = state.status == "inactive"
    status: AlertStatus = "pending" if opened else state.status
    first_run, first_time = (outcome.run, outcome.time) if opened else (state.first_run, state.first_time)
    notified, acknowledged = (False, False) if opened else (state.notified, state.acknowledged)
    transitions: tuple[Transition, ...] = ()
    if status == "pending" and streak >= policy.for_runs:
        status, notified = "firing", not silenced
        transitions = (transition("fired", first_run, silent=silenced),)
    elif status == "firing" and not notified and not acknowledged and not silenced:
        notified = True  # it fired under a silence that has ended since
        transitions = (transition("fired", first_run, silent=False, late=True),)
    new = SeriesState(
        streak, before, outcome.run, outcome.time, status, first_run, first_time, notified, acknowledged
    )
    return Step(new, opened=opened, transitions=transitions)


def policies(metrics: MetricSet | Mapping[str, Metric]) -> dict[str, AlertPolicy]:
    """The alert policy of every metric that declares one, by full metric name."""
    return {name: m.alert for name, m in metrics_by_name(metrics).items() if m.alert is not None}


def in_order(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """Outcomes in the order runs happened (time, then run name), as the rules must see them."""
    return sorted(outcomes, key=lambda o: (o.time, o.run))


def replay(
    outcomes: Iterable[Outcome],
    metrics: MetricSet | Mapping[str, Metric],
    silences: Sequence[Silence] = (),
) -> list[Transition]:
    """Every alert that would have fired or resolved over a recorded history, offline.

    What ``porter verify test-rules`` prints (as ``promtool test rules``): the outcomes are taken
    in time order through `step`, with ``silences`` evaluated at each outcome's time.  Silenced
    firings are in the list with ``silenced=True``.  Alert ids count from 1 in order of opening.

    Given the outcomes in the order they arrived, it gives exactly what `AlertBook.observe` gave.
    Given the stored history (a run's last value only) it differs only where a re-imported run
    changed its verdict after a transition had been notified, which live evaluation cannot undo.
    """
    rules = policies(metrics)
    states: dict[tuple[str, str, str], SeriesState] = {}
    ids: dict[tuple[str, str, str], int] = {}
    opened = 0
    out: list[Transition] = []
    for outcome in in_order(outcomes):
        policy = rules.get(outcome.metric)
        if policy is None:
            continue
        key = (outcome.metric, outcome.key, policy.level)
        silenced = any(s.covers(outcome.metric, outcome.data_id, outcome.time) for s in silences)
        result = step(states.get(key, SeriesState()), outcome, policy, silenced)
        if result is None:
            continue
        states[key] = result.state
        if result.opened:
            opened += 1
            ids[key] = opened
        out += [replace(t, alert_id=ids[key]) for t in result.transitions]
    return out
