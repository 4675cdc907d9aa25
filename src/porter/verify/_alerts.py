"""Alerts kept in the repository's own database: series state, alerts, silences and the outbox.

The rules are `_alert_rules.step`, run over a batch by `_alert_eval.Evaluation`; this module owns
the four tables, created on first use (like the release audit log and the pipeline's run state),
and what people do with alerts (acknowledge, silence) and the outbox's bookkeeping:

``verify_alert_series``
    one row per (metric, data ID, level) watched: the failing streak, the last run evaluated and the
    open alert, if any.  Its primary key is what makes alerts deduplicated: one open alert per series.
``verify_alert``
    one row per alert, from the run it opened (pending) to the run it resolved (or was cleared
    before firing): status, the runs, the last value, who acknowledged it and why.
``verify_alert_silence``
    silences: a metric glob and an optional data-ID subset, until a time, who and why.
``verify_alert_notification``
    the outbox: one row per (alert, fired/resolved, channel), written in the same transaction as
    the state change, so a transition is never lost and never queued twice (a unique key).
    `porter.verify.Notifier` delivers the rows and records each failure for a later retry.

`AlertBook.observe` takes an optional open connection so the metric store can evaluate alerts
inside the transaction that stores the measurements: both are committed, or neither.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Connection, RowMapping

from ._alert_eval import Evaluation
from ._alert_rules import OPEN, Silence, Transition, in_order, policies
from ._metrics import Metric, MetricSet
from ._outcome import DataIdValue, Outcome, data_id_from_key, data_id_key
from ._problems import VerifyError
from ._tables import create_tables, define_table

if TYPE_CHECKING:
    from ..registry import Database

__all__ = ["Alert", "AlertBook", "Notification", "UnknownAlertError"]


class UnknownAlertError(VerifyError, KeyError):
    """An alert or silence id the repository does not have, or one that cannot take the action."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Alert:
    """One alert as recorded: ``status`` is pending, firing, resolved or cleared (ended before firing).

    ``runs`` is the failing streak at ``last_run``; ``notified`` whether its firing was notified
    (false while silenced); ``acknowledged_by``/``ack_reason``/``ack_time`` once acknowledged.
    """

    alert_id: int
    metric: str
    data_id: Mapping[str, DataIdValue]
    level: str
    severity: str
    channels: tuple[str, ...]
    status: str
    first_run: str
    first_time: float
    last_run: str
    last_time: float
    last_value: float
    unit: str
    runs: int
    notified: bool
    fired_run: str | None = None
    fired_time: float | None = None
    resolved_run: str | None = None
    resolved_time: float | None = None
    acknowledged_by: str | None = None
    ack_reason: str | None = None
    ack_time: float | None = None

    @property
    def open(self) -> bool:
        """Pending or firing."""
        return self.status in OPEN

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "data_id": dict(self.data_id), "channels": list(self.channels)}


@dataclass(frozen=True)
class Notification:
    """One queued delivery: a transition to one channel, delivered or waiting for its next attempt."""

    notification_id: int
    alert_id: int
    kind: str
    channel: str
    transition: Transition
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None
    delivered_at: float | None

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None


class AlertBook:
    """The alerts of one repository: evaluate outcomes, acknowledge, silence, queue notifications.

    ``clock`` gives "now" for silences, acknowledgements and the outbox (tests pass their own).
    """

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        name = String(255)
        key = String(512)
        self.t_series = define_table(
            db,
            "verify_alert_series",
            Column("metric", name, primary_key=True),
            Column("data_id", key, primary_key=True),
            Column("level", String(16), primary_key=True),
            Column("streak", Integer, nullable=False),
            Column("before_streak", Integer, nullable=False),
            Column("last_run", name, nullable=True),
            Column("last_time", Float, nullable=True),
            Column("alert_id", Integer, nullable=True),
        )
        self.t_alert = define_table(
            db,
            "verify_alert",
            Column("alert_id", Integer, primary_key=True, autoincrement=True),
            Column("metric", name, nullable=False),
            Column("data_id", key, nullable=False),
            Column("level", String(16), nullable=False),
            Column("severity", String(16), nullable=False),
            Column("channels", Text, nullable=False),
            Column("status", String(16), nullable=False),
            Column("first_run", name, nullable=False),
            Column("first_time", Float, nullable=False),
            Column("last_run", name, nullable=False),
            Column("last_time", Float, nullable=False),
            Column("last_value", Float, nullable=False),
            Column("unit", String(64), nullable=False),
            Column("runs", Integer, nullable=False),
            Column("notified", Boolean, nullable=False),
            Column("fired_run", name, nullable=True),
            Column("fired_time", Float, nullable=True),
            Column("resolved_run", name, nullable=True),
            Column("resolved_time", Float, nullable=True),
            Column("ack_by", String(128), nullable=True),
            Column("ack_reason", Text, nullable=True),
            Column("ack_time", Float, nullable=True),
            Index("verify_alert_status", "status", "metric"),
        )
        self.t_silence = define_table(
            db,
            "verify_alert_silence",
            Column("silence_id", Integer, primary_key=True, autoincrement=True),
            Column("metric", name, nullable=False),
            Column("data_id", Text, nullable=False),
            Column("until", Float, nullable=False),
            Column("created", Float, nullable=False),
            Column("who", String(128), nullable=False),
            Column("reason", Text, nullable=False),
            Index("verify_alert_silence_until", "until"),
        )
        self.t_outbox = define_table(
            db,
            "verify_alert_notification",
            Column("notification_id", Integer, primary_key=True, autoincrement=True),
            Column("alert_id", Integer, nullable=False),
            Column("kind", String(16), nullable=False),
            Column("channel", String(320), nullable=False),
            Column("payload", Text, nullable=False),
            Column("created", Float, nullable=False),
            Column("attempts", Integer, nullable=False),
            Column("next_attempt", Float, nullable=False),
            Column("last_error", Text, nullable=True),
            Column("claimed_until", Float, nullable=True),
            Column("delivered_at", Float, nullable=True),
            UniqueConstraint("alert_id", "kind", "channel", name="verify_alert_notification_once"),
            Index("verify_alert_notification_due", "delivered_at", "next_attempt"),
        )
        create_tables(db, (self.t_series, self.t_alert, self.t_silence, self.t_outbox))

    # --- evaluation ---------------------------------------------------------------------------------

    def observe(
        self,
        outcomes: Iterable[Outcome],
        metrics: MetricSet | Mapping[str, Metric],
        conn: Connection | None = None,
        now: float | None = None,
    ) -> list[Transition]:
        """Run newly stored outcomes through each metric's alert rule; the alerts that fired or resolved.

        Every transition is recorded; those not ``silenced`` are also queued in the outbox, one row
        per channel, in the same transaction (``conn`` when the caller has one open, as the metric
        store does; otherwise a transaction of its own, retried after deadlocks).  Outcomes of
        metrics without an ``alert:`` policy are ignored.  ``now`` (default: the book's clock) is
        the time silences are checked at.
        """
        rules = policies(metrics)
        relevant = in_order(o for o in outcomes if o.metric in rules)
        if not relevant:
            return []
        at = self.clock() if now is None else now
        if conn is not None:
            return Evaluation(self, conn, rules, at).run(relevant)

        def write() -> list[Transition]:
            with self.db.transaction() as own:
                return Evaluation(self, own, rules, at).run(relevant)

        return self.db.retrying(write)

    # --- acknowledgements and silences --------------------------------------------------------------

    def acknowledge(self, alert_id: int, who: str, reason: str, now: float | None = None) -> Alert:
        """Record that ``who`` knows about an open alert and why it may stay open.

        It stays open (it resolves when the metric recovers), but an acknowledged alert is not
        notified again when a silence over it ends, and the release gate can accept it.
        """
        if not who or not reason:
            raise VerifyError("an acknowledgement needs who and a reason")
        at = self.clock() if now is None else now
        a = self.t_alert.c
        with self.db.transaction() as conn:
            found = self._alert(conn, alert_id)
            if not found.open:
                raise UnknownAlertError(
                    f"alert {alert_id} ({found.metric}) is {found.status}: only an open alert can be acknowledged"
                )
            conn.execute(
                sqlalchemy.update(self.t_alert)
                .where(a.alert_id == alert_id)
                .values(ack_by=who, ack_reason=reason, ack_time=at)
            )
            return self._alert(conn, alert_id)

    def silence(
        self,
        metric: str,
        until: float,
        who: str,
        reason: str,
        data_id: Mapping[str, DataIdValue] | None = None,
        now: float | None = None,
    ) -> Silence:
        """Stop notifying alerts of metrics matching ``metric`` (a glob), optionally only some data IDs.

        Alerts keep being recorded while silenced; a firing still open when the silence ends is
        notified at its series' next run (unless acknowledged).
        """
        if not who or not reason:
            raise VerifyError("a silence needs who and a reason")
        at = self.clock() if now is None else now
        if until <= at:
            raise VerifyError(f"a silence must end in the future (until {until} is not after {at})")
        subset = dict(data_id or {})
        with self.db.transaction() as conn:
            result = conn.execute(
                sqlalchemy.insert(self.t_silence).values(
                    metric=metric,
                    data_id=data_id_key(subset),
                    until=until,
                    created=at,
                    who=who,
                    reason=reason,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
        return Silence(metric, until, who, reason, subset, at, int(key[0]))

    def end_silence(self, silence_id: int, now: float | None = None) -> Silence:
        """End a silence now (its record stays)."""
        at = self.clock() if now is None else now
        s = self.t_silence.c
        with self.db.transaction() as conn:
            updated = conn.execute(
                sqlalchemy.update(self.t_silence)
                .where(s.silence_id == silence_id, s.until > at)
                .values(until=at)
            )
            row = conn.execute(sqlalchemy.select(self.t_silence).where(s.silence_id == silence_id)).first()
        if row is None:
            raise UnknownAlertError(f"no silence {silence_id} in this repository")
        if updated.rowcount == 0:
            raise UnknownAlertError(f"silence {silence_id} has already ended")
        return _silence(row._mapping)

    def silences(self, active_at: float | None = None, conn: Connection | None = None) -> list[Silence]:
        """Every silence, or only those in force at ``active_at``."""
        s = self.t_silence.c
        query = sqlalchemy.select(self.t_silence).order_by(s.silence_id)
        if active_at is not None:
            query = query.where(s.until > active_at, s.created <= active_at)
        if conn is not None:
            return [_silence(r._mapping) for r in conn.execute(query)]
        with self.db.reading() as own:
            return [_silence(r._mapping) for r in own.execute(query)]

    def covering(self, alert: Alert, now: float | None = None) -> list[Silence]:
        """The silences in force over ``alert``'s metric and data ID at ``now`` (for listing alerts)."""
        at = self.clock() if now is None else now
        return [s for s in self.silences(active_at=at) if s.covers(alert.metric, alert.data_id, at)]

    # --- reading ------------------------------------------------------------------------------------

    def alerts(
        self, status: Sequence[str] | None = OPEN, metric: str | None = None, conn: Connection | None = None
    ) -> list[Alert]:
        """Alerts by id: by default the open ones (pending and firing); ``status=None`` for all."""
        a = self.t_alert.c
        query = sqlalchemy.select(self.t_alert).order_by(a.alert_id)
        if status is not None:
            query = query.where(a.status.in_(list(status)))
        if metric is not None:
            query = query.where(a.metric == metric)
        if conn is not None:
            return [_alert(r._mapping) for r in conn.execute(query)]
        with self.db.reading() as own:
            return [_alert(r._mapping) for r in own.execute(query)]

    def as_of(
        self,
        at: float,
        metric: str | None = None,
        outcomes: Callable[[str], Iterable[Outcome]] | None = None,
    ) -> list[Alert]:
        """The alerts as they stood at time ``at`` (a past view: what was open, firing, acknowledged then).

        Each alert's row keeps the times it opened (``first_time``), fired, resolved (a cleared one:
        its ``last_time``) and was acknowledged, which give its status at any time: one opened after
        ``at`` is left out, one closed after ``at`` is open, one acknowledged after ``at`` is not.
        The last measurement and streak of an alert open at ``at`` whose series has moved on since
        are read from ``outcomes(metric)`` (that metric's stored measurements, as
        `MetricStore.outcomes` gives them; asked only for such alerts' metrics): its series from its
        first run up to ``at``.  Without it, the run it fired in (else opened in) stands for the
        last, with no value (NaN).
        """
        history: dict[str, dict[str, list[Outcome]]] = {}

        def series_of(a: Alert) -> list[Outcome]:
            if outcomes is None:
                return []
            if a.metric not in history:
                by_key: dict[str, list[Outcome]] = {}
                for o in outcomes(a.metric):
                    if o.time <= at:
                        by_key.setdefault(o.key, []).append(o)
                history[a.metric] = by_key
            found = history[a.metric].get(data_id_key(a.data_id), [])
            return sorted((o for o in found if o.time >= a.first_time), key=lambda o: (o.time, o.run))

        out: list[Alert] = []
        for a in self.alerts(status=None, metric=metric):
            if a.first_time > at:
                continue
            acked = a.ack_time is not None and a.ack_time <= at
            ack: dict[str, Any] = (
                {} if acked else {"acknowledged_by": None, "ack_reason": None, "ack_time": None}
            )
            closed_at = (
                a.resolved_time if a.status == "resolved" else a.last_time if a.status == "cleared" else None
            )
            if closed_at is not None and closed_at <= at:
                out.append(replace(a, **ack))
                continue
            fired = a.fired_time is not None and a.fired_time <= at
            past: dict[str, Any] = {
                "status": "firing" if fired else "pending",
                "resolved_run": None,
                "resolved_time": None,
                **({} if fired else {"fired_run": None, "fired_time": None}),
            }
            if a.last_time > at:
                series = series_of(a)
                if series:
                    last = series[-1]
                    past.update(
                        last_run=last.run,
                        last_time=last.time,
                        last_value=last.value,
                        runs=max(1, sum(1 for o in series if o.failed(a.level))),
                    )
                else:
                    run, when = (a.fired_run, a.fired_time) if fired else (a.first_run, a.first_time)
                    past.update(last_run=run, last_time=when, last_value=float("nan"), runs=1)
            out.append(replace(a, **past, **ack))
        return out

    def get(self, alert_id: int) -> Alert:
        """One alert by id."""
        with self.db.reading() as conn:
            return self._alert(conn, alert_id)

    def _alert(self, conn: Connection, alert_id: int) -> Alert:
        row = conn.execute(sqlalchemy.select(self.t_alert).where(self.t_alert.c.alert_id == alert_id)).first()
        if row is None:
            raise UnknownAlertError(f"no alert {alert_id} in this repository")
        return _alert(row._mapping)

    # --- the outbox (used by `Notifier`) ------------------------------------------------------------

    def notifications(self, undelivered: bool = False, alert_id: int | None = None) -> list[Notification]:
        """Queued notifications in the order they were queued; ``undelivered`` for those still waiting."""
        o = self.t_outbox.c
        query = sqlalchemy.select(self.t_outbox).order_by(o.notification_id)
        if undelivered:
            query = query.where(o.delivered_at.is_(None))
        if alert_id is not None:
            query = query.where(o.alert_id == alert_id)
        with self.db.reading() as conn:
            return [_notification(r._mapping) for r in conn.execute(query)]

    def due(self, now: float, limit: int = 100) -> list[Notification]:
        """Undelivered notifications whose next attempt is due and that no deliverer holds."""
        o = self.t_outbox.c
        query = (
            sqlalchemy.select(self.t_outbox)
            .where(
                o.delivered_at.is_(None),
                o.next_attempt <= now,
                sqlalchemy.or_(o.claimed_until.is_(None), o.claimed_until <= now),
            )
            .order_by(o.notification_id)
            .limit(limit)
        )
        with self.db.reading() as conn:
            return [_notification(r._mapping) for r in conn.execute(query)]

    def claim(self, notification_id: int, now: float, lease: float) -> bool:
        """Take a notification for delivery until ``now + lease``; False if delivered or held already.

        Two deliverers (two ``porter verify notify`` processes) never send the same row: only one
        UPDATE matches.  A deliverer killed mid-send leaves a lease that expires, so the row is
        sent again later (at least once: receivers can drop repeats by the notification's key).
        """
        o = self.t_outbox.c

        def write() -> bool:
            with self.db.transaction() as conn:
                result = conn.execute(
                    sqlalchemy.update(self.t_outbox)
                    .where(
                        o.notification_id == notification_id,
                        o.delivered_at.is_(None),
                        sqlalchemy.or_(o.claimed_until.is_(None), o.claimed_until <= now),
                    )
                    .values(claimed_until=now + lease)
                )
                return result.rowcount == 1

        return self.db.retrying(write)

    def mark_delivered(self, notification_id: int, now: float) -> None:
        """Record a successful delivery: the row is kept, with its time, and never sent again."""
        o = self.t_outbox.c

        def write() -> None:
            with self.db.transaction() as conn:
                conn.execute(
                    sqlalchemy.update(self.t_outbox)
                    .where(o.notification_id == notification_id)
                    .values(delivered_at=now, claimed_until=None, attempts=o.attempts + 1, last_error=None)
                )

        self.db.retrying(write)

    def mark_failed(self, notification_id: int, now: float, error: str, retry_at: float) -> None:
        """Record a failed attempt and when to try again; the notification stays queued."""
        o = self.t_outbox.c

        def write() -> None:
            with self.db.transaction() as conn:
                conn.execute(
                    sqlalchemy.update(self.t_outbox)
                    .where(o.notification_id == notification_id)
                    .values(
                        claimed_until=None,
                        attempts=o.attempts + 1,
                        last_error=error[:2000],
                        next_attempt=retry_at,
                    )
                )

        self.db.retrying(write)


def _alert(row: RowMapping) -> Alert:
    return Alert(
        alert_id=int(row["alert_id"]),
        metric=row["metric"],
        data_id=data_id_from_key(row["data_id"]),
        level=row["level"],
        severity=row["severity"],
        channels=tuple(json.loads(row["channels"])),
        status=row["status"],
        first_run=row["first_run"],
        first_time=float(row["first_time"]),
        last_run=row["last_run"],
        last_time=float(row["last_time"]),
        last_value=float(row["last_value"]),
        unit=row["unit"],
        runs=int(row["runs"]),
        notified=bool(row["notified"]),
        fired_run=row["fired_run"],
        fired_time=row["fired_time"],
        resolved_run=row["resolved_run"],
        resolved_time=row["resolved_time"],
        acknowledged_by=row["ack_by"],
        ack_reason=row["ack_reason"],
        ack_time=row["ack_time"],
    )


def _silence(row: RowMapping) -> Silence:
    return Silence(
        metric=row["metric"],
        until=float(row["until"]),
        who=row["who"],
        reason=row["reason"],
        data_id=data_id_from_key(row["data_id"]),
        created=float(row["created"]),
        silence_id=int(row["silence_id"]),
    )


def _notification(row: RowMapping) -> Notification:
    return Notification(
        notification_id=int(row["notification_id"]),
        alert_id=int(row["alert_id"]),
        kind=row["kind"],
        channel=row["channel"],
        transition=Transition.from_dict(json.loads(row["payload"])),
        created=float(row["created"]),
        attempts=int(row["attempts"]),
        next_attempt=float(row["next_attempt"]),
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
    )
