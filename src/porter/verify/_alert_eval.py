"""One evaluation of outcomes against the alert rules, inside one transaction of the repository.

`AlertBook.observe` hands each batch here: the series it touches are loaded (and locked, on
PostgreSQL, so two importers of the same job take turns), `_alert_rules.step` runs over them in
memory, and the alerts, series and outbox rows are written back with a few ``executemany``
statements per batch, not a few per outcome: the metric store evaluates whole imports at once.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy.engine import Connection

from ._alert_rules import OPEN, SeriesState, Step, Transition, step
from ._metrics import AlertPolicy
from ._outcome import Outcome

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._alerts import AlertBook

__all__ = ["Evaluation"]

_CHUNK = 500
"""Keys per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits."""

_MUTABLE = (
    "status",
    "last_run",
    "last_time",
    "last_value",
    "runs",
    "notified",
    "fired_run",
    "fired_time",
    "resolved_run",
    "resolved_time",
)
"""The columns of an alert row evaluation changes (acknowledgements are written by `acknowledge`)."""

_Key = tuple[str, str, str]
_Ref = tuple[bool, int]
"""An alert during one evaluation: (True, index among the alerts it opened) or (False, its id)."""


class Evaluation:
    """One `AlertBook.observe` call inside one transaction: load the series, step them, store them.

    The rules run over plain dicts in memory; the database sees a few statements per batch (each an
    ``executemany``), not a few per outcome: the store evaluates whole imports at once.
    """

    def __init__(self, book: AlertBook, conn: Connection, rules: Mapping[str, Any], now: float) -> None:
        self.book = book
        self.conn = conn
        self.rules = rules
        self.now = now

    def run(self, outcomes: list[Outcome]) -> list[Transition]:
        book, conn = self.book, self.conn
        keyed = [(o, (o.metric, o.key, self.rules[o.metric].level)) for o in outcomes]
        keys = sorted({key for _, key in keyed})
        conn.execute(
            book.db.insert(book.t_series, on_conflict="ignore"),
            [{"metric": m, "data_id": k, "level": lv, "streak": 0, "before_streak": 0} for m, k, lv in keys],
        )
        states, current, old_rows = self._load(keys)
        silences = book.silences(active_at=self.now, conn=conn)
        new_rows: list[dict[str, Any]] = []
        touched: set[int] = set()
        changed: set[_Key] = set()
        found: list[tuple[Transition, _Ref]] = []
        for outcome, key in keyed:
            policy = self.rules[outcome.metric]
            silenced = any(s.covers(outcome.metric, outcome.data_id, self.now) for s in silences)
            result = step(states[key], outcome, policy, silenced)
            if result is None:
                continue
            changed.add(key)
            states[key] = result.state
            if result.opened:
                new_rows.append(_new_alert(outcome, policy))
                current[key] = (True, len(new_rows) - 1)
            ref = current.get(key)
            if ref is None:
                continue
            new, index = ref
            if not new:
                touched.add(index)
            _apply(new_rows[index] if new else old_rows[index], outcome, result)
            found += [(t, ref) for t in result.transitions]
            if result.state.status == "inactive":
                del current[key]
        new_ids = self._insert_alerts(new_rows)

        def alert_id(ref: _Ref) -> int:
            return new_ids[ref[1]] if ref[0] else ref[1]

        self._update_alerts([old_rows[i] for i in sorted(touched)])
        out = [replace(t, alert_id=alert_id(ref)) for t, ref in found]
        self._queue([t for t in out if not t.silenced])
        self._update_series(
            [
                (key, states[key], alert_id(current[key]) if key in current else None)
                for key in sorted(changed)
            ]
        )
        return out

    def _load(
        self, keys: list[_Key]
    ) -> tuple[dict[_Key, SeriesState], dict[_Key, _Ref], dict[int, dict[str, Any]]]:
        """The series' states (locked for this transaction on PostgreSQL) and their open alerts' rows."""
        book, conn = self.book, self.conn
        s, a = book.t_series.c, book.t_alert.c
        wanted = set(keys)
        rows: list[Any] = []
        by_metric: dict[str, list[str]] = {}
        for metric, data_id, _level in keys:
            by_metric.setdefault(metric, []).append(data_id)
        for metric, ids in by_metric.items():
            for i in range(0, len(ids), _CHUNK):
                query = (
                    sqlalchemy.select(book.t_series)
                    .where(s.metric == metric, s.data_id.in_(ids[i : i + _CHUNK]))
                    .order_by(s.data_id, s.level)
                )
                if book.db.dialect == "postgresql":
                    query = query.with_for_update()
                rows += [r._mapping for r in conn.execute(query)]
        rows = [r for r in rows if (r["metric"], r["data_id"], r["level"]) in wanted]
        open_ids = [int(r["alert_id"]) for r in rows if r["alert_id"] is not None]
        alerts: dict[int, dict[str, Any]] = {}
        for i in range(0, len(open_ids), _CHUNK):
            query = sqlalchemy.select(book.t_alert).where(
                a.alert_id.in_(open_ids[i : i + _CHUNK]), a.status.in_(OPEN)
            )
            for row in conn.execute(query):
                alerts[int(row.alert_id)] = dict(row._mapping)
        states: dict[_Key, SeriesState] = {}
        current: dict[_Key, _Ref] = {}
        for r in rows:
            key = (r["metric"], r["data_id"], r["level"])
            state = SeriesState(
                streak=int(r["streak"]),
                before=int(r["before_streak"]),
                last_run=r["last_run"],
                last_time=r["last_time"],
            )
            alert = alerts.get(int(r["alert_id"])) if r["alert_id"] is not None else None
            if alert is not None:
                current[key] = (False, int(alert["alert_id"]))
                state = replace(
                    state,
                    status=alert["status"],
                    first_run=alert["first_run"],
                    first_time=alert["first_time"],
                    notified=bool(alert["notified"]),
                    acknowledged=alert["ack_by"] is not None,
                )
            states[key] = state
        return states, current, alerts

    def _insert_alerts(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert the alerts this batch opened, in order; their ids."""
        if not rows:
            return []
        table = self.book.t_alert
        result = self.conn.execute(
            sqlalchemy.insert(table).returning(table.c.alert_id, sort_by_parameter_order=True), rows
        )
        return [int(r[0]) for r in result]

    def _update_alerts(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = self.book.t_alert
        statement = (
            sqlalchemy.update(table)
            .where(table.c.alert_id == sqlalchemy.bindparam("b_alert_id"))
            .values({name: sqlalchemy.bindparam(f"b_{name}") for name in _MUTABLE})
        )
        self.conn.execute(
            statement,
            [{"b_alert_id": r["alert_id"], **{f"b_{name}": r[name] for name in _MUTABLE}} for r in rows],
        )

    def _update_series(self, changes: list[tuple[_Key, SeriesState, int | None]]) -> None:
        if not changes:
            return
        table = self.book.t_series
        c = table.c
        statement = (
            sqlalchemy.update(table)
            .where(
                c.metric == sqlalchemy.bindparam("b_metric"),
                c.data_id == sqlalchemy.bindparam("b_data_id"),
                c.level == sqlalchemy.bindparam("b_level"),
            )
            .values(
                streak=sqlalchemy.bindparam("b_streak"),
                before_streak=sqlalchemy.bindparam("b_before"),
                last_run=sqlalchemy.bindparam("b_last_run"),
                last_time=sqlalchemy.bindparam("b_last_time"),
                alert_id=sqlalchemy.bindparam("b_alert_id"),
            )
        )
        self.conn.execute(
            statement,
            [
                {
                    "b_metric": key[0],
                    "b_data_id": key[1],
                    "b_level": key[2],
                    "b_streak": state.streak,
                    "b_before": state.before,
                    "b_last_run": state.last_run,
                    "b_last_time": state.last_time,
                    "b_alert_id": alert_id,
                }
                for key, state, alert_id in changes
            ],
        )

    def _queue(self, transitions: list[Transition]) -> None:
        rows = [
            {
                "alert_id": t.alert_id,
                "kind": t.kind,
                "channel": channel,
                "payload": json.dumps(t.to_dict(), sort_keys=True),
                "created": self.now,
                "attempts": 0,
                "next_attempt": self.now,
            }
            for t in transitions
            for channel in t.channels
        ]
        if rows:
            self.conn.execute(self.book.db.insert(self.book.t_outbox, on_conflict="ignore"), rows)


def _new_alert(outcome: Outcome, policy: AlertPolicy) -> dict[str, Any]:
    """The row of an alert opened by ``outcome`` (its evaluation then fills in status and runs)."""
    return {
        "metric": outcome.metric,
        "data_id": outcome.key,
        "level": policy.level,
        "severity": policy.severity,
        "channels": json.dumps(list(policy.channels)),
        "status": "pending",
        "first_run": outcome.run,
        "first_time": outcome.time,
        "last_run": outcome.run,
        "last_time": outcome.time,
        "last_value": outcome.value,
        "unit": outcome.unit,
        "runs": 0,
        "notified": False,
        "fired_run": None,
        "fired_time": None,
        "resolved_run": None,
        "resolved_time": None,
    }


def _apply(row: dict[str, Any], outcome: Outcome, result: Step) -> None:
    """What one step did to its alert's row: the last measurement, status, streak, fired/resolved runs."""
    row.update(last_run=outcome.run, last_time=outcome.time, last_value=outcome.value)
    state = result.state
    if state.status != "inactive":
        row.update(status=state.status, runs=state.streak, notified=state.notified)
    elif result.cleared:
        row["status"] = "cleared"
    for transition in result.transitions:
        if transition.kind == "fired" and not transition.late:
            row.update(fired_run=outcome.run, fired_time=outcome.time)
        if transition.kind == "resolved":
            row.update(status="resolved", resolved_run=outcome.run, resolved_time=outcome.time)
