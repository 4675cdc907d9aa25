"""The metric store: every measurement once, keyed by (metric, data ID, run), checked on arrival.

It lives in the repository's own database (SQLite, or PostgreSQL at scale), beside the registry,
in four tables:

- ``verify_metric`` and ``verify_data_id`` give each metric name and each data ID (as its
  canonical text, `data_id_key`) a small integer, so a measurement row is six numbers wide;
- ``verify_run`` holds each run's `Provenance` (collection, pipeline, task, configuration,
  software versions, inputs, time): the runs on either side of a change are explained from it;
- ``verify_measurement`` is the narrow table of values, clustered on its primary key (metric,
  data ID, run): one B-tree, so a million-row batch is one ordered pass, a series is one range
  and a baseline one grouped range.  Beside each value it keeps what the arrival check found:
  which spec levels applied and passed, the baseline it was compared with, whether it regressed;
- ``verify_metric_run`` lists which runs measured each metric, and when: the "last n runs" of a
  baseline and a metric's latest run are read from it, not from the million-row table;
- ``verify_chunk`` holds the same values once more, one row per (metric, run) with the run's data-ID
  ids and values as packed arrays: a trend of 100,000 points is 100 rows to read, not 100,000
  (SQLite steps rows at ~1 µs each; a trend read must take milliseconds).

Recording a run's measurements again (a re-run quantum, a re-imported job) replaces its rows:
nothing is ever stored twice.  A batch is validated whole before anything is written (unknown
metric, NaN, incompatible unit, a data ID missing the metric's dimensions) and written in one
transaction, so a bad batch or a killed writer leaves the store as it was.

Hooks (`ArrivalHook`: alerts, forwarding to InfluxDB) see the checked measurements inside that
same transaction, so an alert or an outbox row exists exactly when its measurement does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import sqlalchemy
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
)

from .._stop_points import stop_point
from ..errors import did_you_mean
from ._evaluate import LEVEL_BITS, check_specs, levels_from_bits, regressions
from ._metrics import Metric, MetricSet, UnknownMetricError
from ._outcome import DataIdValue, Outcome, Provenance, data_id_from_key, data_id_key
from ._problems import MeasurementValueError, UnitMismatchError, VerifyError
from ._specs import Specification, SpecificationSet
from ._tables import create_tables, define_table
from ._units import conversion_factor

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ..registry import Database

__all__ = ["ArrivalHook", "Batch", "MetricStore", "MetricSummary", "NewMeasurement", "RecordResult", "Series"]


@dataclass(frozen=True)
class NewMeasurement:
    """One measurement to record: a metric's value, in a unit, over a data ID (``{}``: the whole run)."""

    metric: str
    value: float
    unit: str
    data_id: Mapping[str, DataIdValue] = field(default_factory=dict)


@dataclass
class Batch:
    """Measurements of one run as columns: what `MetricStore.record` takes.

    Row ``i`` is metric ``metrics[metric_index[i]]`` over data ID ``data_ids[data_id_index[i]]``,
    valued ``values[i]`` in ``units[unit_index[i]]``.  Names, data IDs and units are given once and
    indexed, so a million rows over a thousand data IDs cost a thousand data-ID keys, not a million.
    """

    metrics: Sequence[str]
    metric_index: np.ndarray
    data_ids: Sequence[Mapping[str, DataIdValue]]
    data_id_index: np.ndarray
    values: np.ndarray
    units: Sequence[str]
    unit_index: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, measurements: Iterable[NewMeasurement]) -> Batch:
        """A batch of ``measurements`` (rows in the given order)."""
        metrics: dict[str, int] = {}
        keys: dict[str, int] = {}
        data_ids: list[Mapping[str, DataIdValue]] = []
        units: dict[str, int] = {}
        m_index, d_index, u_index, values = [], [], [], []
        for m in measurements:
            m_index.append(metrics.setdefault(m.metric, len(metrics)))
            key = data_id_key(m.data_id)
            if key not in keys:
                keys[key] = len(data_ids)
                data_ids.append(dict(m.data_id))
            d_index.append(keys[key])
            u_index.append(units.setdefault(m.unit, len(units)))
            values.append(m.value)
        return cls(
            list(metrics),
            np.asarray(m_index, dtype=np.int64),
            data_ids,
            np.asarray(d_index, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
            list(units),
            np.asarray(u_index, dtype=np.int64),
        )


@dataclass
class RecordResult:
    """What one `MetricStore.record` stored and what the arrival check found."""

    run: str
    stored: int
    replaced: int
    failed: dict[str, int]  # level → measurements that failed a spec at that level
    regressed: int
    outcomes: list[Outcome]  # the checked measurements the hooks asked for (alerting metrics …)


@dataclass(frozen=True)
class Series:
    """Measurements of one metric read back in time order, as columns (a trend).

    Point ``i`` is ``value[i]`` over data ID ``data_ids[data_id_index[i]]`` in run
    ``runs[run_index[i]]`` at ``time[i]``; `run` and `data_id` spell them out per point.
    """

    metric: str
    unit: str
    time: np.ndarray
    value: np.ndarray
    run_index: np.ndarray
    runs: list[str]
    data_id_index: np.ndarray
    data_ids: list[dict[str, DataIdValue]]

    def __len__(self) -> int:
        return len(self.value)

    @property
    def run(self) -> list[str]:
        """Each point's run name."""
        return [self.runs[i] for i in self.run_index.tolist()]

    @property
    def data_id(self) -> list[dict[str, DataIdValue]]:
        """Each point's data ID."""
        return [self.data_ids[i] for i in self.data_id_index.tolist()]


@dataclass(frozen=True)
class MetricSummary:
    """One metric's measurements in one run, summarised (`MetricStore.summary`)."""

    metric: str
    unit: str
    run: str
    count: int
    min: float
    mean: float
    max: float
    regressed: int
    failed: dict[str, int]  # level → data IDs that failed a spec at that level


class ArrivalHook(Protocol):
    """Something that must see checked measurements as they are stored (alerts, forwarding)."""

    def wants(self, metric: Metric) -> bool:
        """Whether measurements of ``metric`` should be handed to `arrived`."""
        ...

    def arrived(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Called inside the store's write transaction with the checked measurements it wants."""
        ...


class MetricStore:
    """The metric store of one repository database, checking against ``metrics`` and ``specs``.

    Reads need no declarations; recording does (an unknown metric is refused, not stored).
    """

    def __init__(
        self,
        db: Database,
        metrics: MetricSet | None = None,
        specs: SpecificationSet | None = None,
        hooks: Sequence[ArrivalHook] = (),
    ) -> None:
        self.db = db
        self.metrics = metrics if metrics is not None else MetricSet()
        self.specs = specs if specs is not None else SpecificationSet()
        self.hooks = list(hooks)
        self.metric_table = define_table(
            db,
            "verify_metric",
            Column("metric_id", Integer, primary_key=True, autoincrement=True),
            Column("name", String(255), nullable=False, unique=True),
            Column("unit", String(64), nullable=False),
        )
        self.data_id_table = define_table(
            db,
            "verify_data_id",
            Column("data_id_id", Integer, primary_key=True, autoincrement=True),
            Column("key", Text, nullable=False, unique=True),
        )
        self.run_table = define_table(
            db,
            "verify_run",
            Column("run_id", Integer, primary_key=True, autoincrement=True),
            Column("run", String(255), nullable=False, unique=True),
            Column("time", Float, nullable=False),
            Column("provenance", Text, nullable=False),
            Column("release", String(255), nullable=True),
        )
        self.table = define_table(
            db,
            "verify_measurement",
            Column("metric_id", Integer, primary_key=True, autoincrement=False),
            Column("data_id_id", BigInteger, primary_key=True, autoincrement=False),
            Column("run_id", Integer, primary_key=True, autoincrement=False),
            Column("value", Float, nullable=False),
            Column("flags", SmallInteger, nullable=False),  # see pack_flags
            Column("baseline", Float, nullable=True),
            sqlite_with_rowid=False,
        )
        self.metric_run_table = define_table(
            db,
            "verify_metric_run",
            Column("metric_id", Integer, primary_key=True, autoincrement=False),
            Column("run_id", Integer, primary_key=True, autoincrement=False),
            Column("time", Float, nullable=False),
            Index("verify_metric_run_time", "metric_id", "time"),
        )
        self.chunk_table = define_table(
            db,
            "verify_chunk",
            Column("metric_id", Integer, primary_key=True, autoincrement=False),
            Column("run_id", Integer, primary_key=True, autoincrement=False),
            Column("data_id_ids", LargeBinary, nullable=False),  # int64, ascending
            Column("vals", LargeBinary, nullable=False),  # float64, in data_id_ids' order
        )
        tables = (self.metric_table, self.data_id_table, self.run_table, self.table, self.metric_run_table)
        create_tables(db, (*tables, self.chunk_table))
        self._data_ids: dict[int, dict[str, DataIdValue]] = {}  # id → data ID: an id never changes meaning
        self._specs_of: dict[str, list[Specification]] = {}
        for spec in self.specs:
            self._specs_of.setdefault(spec.metric, []).append(spec)

    # --- writing ----------------------------------------------------------------------------------

    def record(
        self,
        measurements: Batch | Iterable[NewMeasurement],
        provenance: Provenance,
        metadata: Mapping[str, Any] | None = None,
    ) -> RecordResult:
        """Store one run's measurements, replacing any it had for the same metric and data ID.

        Each is checked on arrival against the specs that apply to it (``metadata``, the run's
        instrument, band … , is matched with each spec's ``metadata_query`` together with the
        data ID) and against its metric's baseline.  Validated whole first: a bad measurement
        raises `VerifyError` naming it and nothing is stored.
        """
        batch = measurements if isinstance(measurements, Batch) else Batch.of(measurements)
        batch = _last_of_each(batch)
        metrics, factors = self._validate(batch)
        values = batch.values * factors
        metadata = dict(metadata or {})
        data_meta = [{**metadata, **d} for d in batch.data_ids]
        order = np.argsort(batch.metric_index, kind="stable")
        bounds = np.searchsorted(batch.metric_index[order], np.arange(len(batch.metrics) + 1))
        n = len(batch)
        applicable = np.zeros(n, dtype=np.int8)
        passed = np.zeros(n, dtype=np.int8)
        for i, metric in enumerate(metrics):
            rows = order[bounds[i] : bounds[i + 1]]
            specs = self._specs_of.get(metric.name, [])
            if specs and len(rows):
                checked = check_specs(metric, specs, values[rows], batch.data_id_index[rows], data_meta)
                applicable[rows], passed[rows] = checked.applicable, checked.passed

        def write() -> RecordResult:
            with self.db.transaction() as conn:
                metric_ids = self._ids(conn, self.metric_table, "name", [m.name for m in metrics], metrics)
                keys = [data_id_key(d) for d in batch.data_ids]
                data_id_ids = self._ids(conn, self.data_id_table, "key", keys)
                run_id, existed = self._run(conn, provenance)
                m_ids = np.asarray(metric_ids, dtype=np.int64)[batch.metric_index]
                d_ids = np.asarray(data_id_ids, dtype=np.int64)[batch.data_id_index]
                self._note_metric_runs(conn, metric_ids, run_id, provenance.time)
                baseline = self._baselines(conn, metrics, metric_ids, run_id, provenance.time, m_ids, d_ids)
                regressed = np.zeros(n, dtype=bool)
                for i, metric in enumerate(metrics):
                    rows = order[bounds[i] : bounds[i + 1]]
                    if metric.baseline is not None and len(rows):
                        regressed[rows] = regressions(metric, values[rows], baseline[rows])
                replaced = self._remove(conn, run_id, m_ids, d_ids) if existed else 0
                flags = pack_flags(applicable, passed, regressed)
                self._insert(conn, run_id, m_ids, d_ids, values, flags, baseline)
                self._write_chunks(conn, run_id, metric_ids, order, bounds, d_ids, values, merge=existed)
                outcomes = self._outcomes(
                    conn,
                    batch,
                    metrics,
                    order,
                    bounds,
                    provenance,
                    values,
                    applicable,
                    passed,
                    baseline,
                    regressed,
                )
                stop_point("verify-recording")  # everything written, not committed: a kill here keeps nothing
                failed = {
                    level: int(np.count_nonzero((applicable & bit) & ~(passed & bit)))
                    for level, bit in LEVEL_BITS.items()
                }
                return RecordResult(provenance.run, n, replaced, failed, int(regressed.sum()), outcomes)

        for attempt in range(3):
            try:
                return self.db.retrying(write)
            except sqlalchemy.exc.IntegrityError:
                # Another writer recorded this run (or these measurements) between our read and our
                # insert: go again, now as a replacement of what it wrote.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _validate(self, batch: Batch) -> tuple[list[Metric], np.ndarray]:
        """The batch's metrics and each row's factor to its metric's unit, or the first problem."""
        metrics: list[Metric] = []
        for name in batch.metrics:
            metric = self.metrics.get(name)
            if metric is None:
                raise UnknownMetricError(
                    f"unknown metric {name!r}: no loaded metrics file defines it"
                    f"{did_you_mean(name, self.metrics.names)}; declare it in metrics/<package>.yaml"
                )
            metrics.append(metric)
        bad = np.flatnonzero(~np.isfinite(batch.values))
        if len(bad):
            i = int(bad[0])
            raise MeasurementValueError(
                f"{batch.metrics[batch.metric_index[i]]} over {dict(batch.data_ids[batch.data_id_index[i]])}: "
                f"the value is {batch.values[i]}; a NaN or infinite measurement cannot be stored "
                f"({len(bad)} such values in the batch; nothing was stored)"
            )
        pairs = np.unique(batch.metric_index * len(batch.units) + batch.unit_index)
        factor_of: dict[int, float] = {}
        for pair in pairs.tolist():
            metric, unit = metrics[pair // len(batch.units)], batch.units[pair % len(batch.units)]
            try:
                factor_of[pair] = conversion_factor(unit, metric.unit)
            except UnitMismatchError:
                raise UnitMismatchError(
                    f"{metric.name}: a measurement in {unit or 'no unit'!r} cannot be stored as the metric's "
                    f"unit {metric.unit or 'dimensionless'!r}; record it in a unit convertible to that one "
                    "(nothing was stored)"
                ) from None
        codes = batch.metric_index * len(batch.units) + batch.unit_index
        keys = np.fromiter(factor_of, dtype=np.int64, count=len(factor_of))
        table = np.fromiter(factor_of.values(), dtype=np.float64, count=len(factor_of))
        factors = table[np.searchsorted(keys, codes)]
        self._check_dimensions(batch, metrics)
        return metrics, factors

    @staticmethod
    def _check_dimensions(batch: Batch, metrics: Sequence[Metric]) -> None:
        """Every row's data ID has the dimensions its metric is declared to be measured over."""
        have = [frozenset(d) for d in batch.data_ids]
        for dims in {frozenset(m.dimensions) for m in metrics if m.dimensions}:
            lacking = np.fromiter((not dims <= h for h in have), dtype=bool, count=len(have))
            if not lacking.any():
                continue
            for i, metric in enumerate(metrics):
                if frozenset(metric.dimensions) != dims:
                    continue
                rows = np.flatnonzero((batch.metric_index == i) & lacking[batch.data_id_index])
                if len(rows):
                    data_id = dict(batch.data_ids[batch.data_id_index[rows[0]]])
                    raise VerifyError(
                        f"{metric.name} is measured over {', '.join(metric.dimensions)}, but a measurement's "
                        f"data ID {data_id} lacks {', '.join(sorted(dims - set(data_id)))} ({len(rows)} such "
                        "measurements; nothing was stored)"
                    )

    def _ids(
        self,
        conn: Connection,
        table: Table,
        column: str,
        names: Sequence[str],
        metrics: Sequence[Metric] | None = None,
    ) -> list[int]:
        """The integer id of each name (metric name, data-ID key), adding the names not seen before."""
        id_column = table.c[table.primary_key.columns.keys()[0]]
        wanted = set(names)
        found: dict[str, int] = {}
        listed = list(wanted)
        for start in range(0, len(listed), 5000):
            chunk = listed[start : start + 5000]
            for name, id_ in conn.execute(
                sqlalchemy.select(table.c[column], id_column).where(table.c[column].in_(chunk))
            ):
                found[name] = int(id_)
        missing = [name for name in names if name not in found]
        if missing:
            units = {m.name: m.unit for m in metrics or ()}
            rows = [
                {column: name, **({"unit": units[name]} if metrics else {})}
                for name in dict.fromkeys(missing)
            ]
            conn.execute(self.db.insert(table, on_conflict="ignore"), rows)
            for start in range(0, len(missing), 5000):
                chunk = missing[start : start + 5000]
                for name, id_ in conn.execute(
                    sqlalchemy.select(table.c[column], id_column).where(table.c[column].in_(chunk))
                ):
                    found[name] = int(id_)
        return [found[name] for name in names]

    def _run(self, conn: Connection, provenance: Provenance) -> tuple[int, bool]:
        """The run's id (adding it, or updating its provenance); whether it had been recorded before."""
        t = self.run_table
        text = json.dumps(_provenance_dict(provenance), sort_keys=True)
        row = conn.execute(sqlalchemy.select(t.c.run_id).where(t.c.run == provenance.run)).first()
        if row is not None:
            conn.execute(t.update().where(t.c.run_id == row[0]).values(time=provenance.time, provenance=text))
            return int(row[0]), True
        result = conn.execute(t.insert().values(run=provenance.run, time=provenance.time, provenance=text))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0]), False

    def _note_metric_runs(self, conn: Connection, metric_ids: Sequence[int], run_id: int, at: float) -> None:
        """Record that ``run_id`` measured these metrics at ``at`` (once per metric and run)."""
        t = self.metric_run_table
        conn.execute(t.delete().where(t.c.run_id == run_id, t.c.metric_id.in_(list(metric_ids))))
        conn.execute(t.insert(), [{"metric_id": m, "run_id": run_id, "time": at} for m in metric_ids])

    def _baselines(
        self,
        conn: Connection,
        metrics: Sequence[Metric],
        metric_ids: Sequence[int],
        run_id: int,
        at: float,
        m_ids: np.ndarray,
        d_ids: np.ndarray,
    ) -> np.ndarray:
        """Each row's baseline value (NaN where there is none), found with one query per set of runs.

        ``last_n``: the mean of the data ID's values in the last ``n`` runs before ``at`` that
        measured the metric; ``reference_run``: its value in that run; ``previous_release``: its
        value in the latest run marked as a release before ``at``.  Metrics that share the same
        runs (the usual case: one pipeline measured them all) share one grouped range query.
        """
        baseline = np.full(len(m_ids), np.nan)
        by_runs: dict[tuple[int, ...], list[int]] = {}
        for metric, metric_id in zip(metrics, metric_ids, strict=True):
            if metric.baseline is not None:
                runs = self._baseline_runs(conn, metric, metric_id, run_id, at)
                if runs:
                    by_runs.setdefault(runs, []).append(metric_id)
        if not by_runs:
            return baseline
        row_keys = (m_ids << 32) | d_ids
        row_order = np.argsort(row_keys, kind="stable")
        sorted_keys = row_keys[row_order]
        name = conn.dialect.identifier_preparer.format_table(self.table)
        mark = self.db.param_mark
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for runs, ids in by_runs.items():
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    cursor.execute(
                        f"SELECT metric_id, data_id_id, avg(value) FROM {name} "
                        f"WHERE metric_id IN ({', '.join([mark] * len(chunk))}) "
                        f"AND run_id IN ({', '.join([mark] * len(runs))}) GROUP BY metric_id, data_id_id",
                        (*chunk, *runs),
                    )
                    found = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 3)
                    keys = (found[:, 0].astype(np.int64) << 32) | found[:, 1].astype(np.int64)
                    at_rows = np.searchsorted(sorted_keys, keys)
                    hit = at_rows < len(sorted_keys)
                    hit[hit] = sorted_keys[at_rows[hit]] == keys[hit]
                    baseline[row_order[at_rows[hit]]] = found[hit, 2]
        finally:
            cursor.close()
        return baseline

    def _baseline_runs(
        self, conn: Connection, metric: Metric, metric_id: int, run_id: int, at: float
    ) -> tuple[int, ...]:
        """The run ids a metric's baseline is taken from, for a run at time ``at``."""
        assert metric.baseline is not None
        policy, r, mr = metric.baseline, self.run_table, self.metric_run_table
        if policy.kind == "last_n":
            query = (
                sqlalchemy.select(mr.c.run_id)
                .where(mr.c.metric_id == metric_id, mr.c.run_id != run_id, mr.c.time < at)
                .order_by(mr.c.time.desc())
                .limit(policy.n)
            )
            return tuple(sorted(int(x) for x in conn.execute(query).scalars()))
        if policy.kind == "reference_run":
            reference = conn.execute(sqlalchemy.select(r.c.run_id).where(r.c.run == policy.run)).scalar()
        else:
            reference = conn.execute(
                sqlalchemy.select(r.c.run_id)
                .where(r.c.release.is_not(None), r.c.time < at, r.c.run_id != run_id)
                .order_by(r.c.time.desc())
                .limit(1)
            ).scalar()
        return () if reference is None else (int(reference),)

    def _remove(self, conn: Connection, run_id: int, m_ids: np.ndarray, d_ids: np.ndarray) -> int:
        """Delete this run's earlier rows for these (metric, data ID) pairs; how many there were."""
        name = conn.dialect.identifier_preparer.format_table(self.table)
        mark = self.db.param_mark
        result = conn.exec_driver_sql(
            f"DELETE FROM {name} WHERE run_id = {mark} AND metric_id = {mark} AND data_id_id = {mark}",
            [(run_id, m, d) for m, d in zip(m_ids.tolist(), d_ids.tolist(), strict=True)],
        )
        return max(int(result.rowcount), 0)

    def _insert(
        self,
        conn: Connection,
        run_id: int,
        m_ids: np.ndarray,
        d_ids: np.ndarray,
        values: np.ndarray,
        flags: np.ndarray,
        baseline: np.ndarray,
    ) -> None:
        """Write the rows in primary-key order: one ordered pass down the table's B-tree."""
        order = np.lexsort((d_ids, m_ids))
        base = [None if b != b else b for b in baseline[order].tolist()]  # NaN → NULL
        rows = list(
            zip(
                m_ids[order].tolist(),
                d_ids[order].tolist(),
                [run_id] * len(values),
                values[order].tolist(),
                flags[order].tolist(),
                base,
                strict=True,
            )
        )
        columns = ["metric_id", "data_id_id", "run_id", "value", "flags", "baseline"]
        self.db.bulk_insert(conn, self.table, columns, rows)

    def _write_chunks(
        self,
        conn: Connection,
        run_id: int,
        metric_ids: Sequence[int],
        order: np.ndarray,
        bounds: np.ndarray,
        d_ids: np.ndarray,
        values: np.ndarray,
        merge: bool,
    ) -> None:
        """One packed row per metric of this run; merged with the run's earlier chunk when it is re-recorded."""
        t = self.chunk_table
        rows = []
        for i, metric_id in enumerate(metric_ids):
            members = order[bounds[i] : bounds[i + 1]]
            ids, vals = d_ids[members], values[members]
            if merge:
                old = conn.execute(
                    sqlalchemy.select(t.c.data_id_ids, t.c.vals).where(
                        t.c.metric_id == metric_id, t.c.run_id == run_id
                    )
                ).first()
                if old is not None:
                    old_ids, old_vals = (
                        np.frombuffer(old[0], dtype=np.int64),
                        np.frombuffer(old[1], dtype=np.float64),
                    )
                    kept = ~np.isin(old_ids, ids)
                    ids, vals = np.concatenate([old_ids[kept], ids]), np.concatenate([old_vals[kept], vals])
            sort = np.argsort(ids, kind="stable")
            rows.append(
                {
                    "metric_id": metric_id,
                    "run_id": run_id,
                    "data_id_ids": ids[sort].astype(np.int64).tobytes(),
                    "vals": vals[sort].astype(np.float64).tobytes(),
                }
            )
        if merge:
            conn.execute(t.delete().where(t.c.run_id == run_id, t.c.metric_id.in_(list(metric_ids))))
        conn.execute(t.insert(), rows)

    def _outcomes(
        self,
        conn: Connection,
        batch: Batch,
        metrics: Sequence[Metric],
        order: np.ndarray,
        bounds: np.ndarray,
        provenance: Provenance,
        values: np.ndarray,
        applicable: np.ndarray,
        passed: np.ndarray,
        baseline: np.ndarray,
        regressed: np.ndarray,
    ) -> list[Outcome]:
        """Checked measurements as `Outcome`s, built only for the metrics some hook wants."""
        everything: list[Outcome] = []
        for hook in self.hooks:
            wanted: list[Outcome] = []
            for i, metric in enumerate(metrics):
                if not hook.wants(metric):
                    continue
                for row in order[bounds[i] : bounds[i + 1]].tolist():
                    wanted.append(
                        Outcome(
                            metric.name,
                            batch.data_ids[batch.data_id_index[row]],
                            provenance.run,
                            provenance.time,
                            float(values[row]),
                            metric.unit,
                            levels_from_bits(int(applicable[row]), int(passed[row])),
                            None if np.isnan(baseline[row]) else float(baseline[row]),
                            bool(regressed[row]),
                        )
                    )
            if wanted:
                hook.arrived(conn, wanted)
                everything += wanted
        return everything

    def mark_release(self, run: str, release: str) -> None:
        """Record that ``run`` is the run of ``release``: the baseline of ``previous_release`` metrics."""
        t = self.run_table
        with self.db.transaction() as conn:
            updated = conn.execute(t.update().where(t.c.run == run).values(release=release)).rowcount
        if not updated:
            raise VerifyError(f"run {run!r} has no measurements in the metric store; record them first")

    # --- reading ----------------------------------------------------------------------------------

    def releases(self) -> list[tuple[str, float, str]]:
        """Every run marked as a release's (`mark_release`): (run, time, release), oldest first."""
        t = self.run_table
        with self.db.reading() as conn:
            rows = conn.execute(
                sqlalchemy.select(t.c.run, t.c.time, t.c.release)
                .where(t.c.release.is_not(None))
                .order_by(t.c.time, t.c.run)
            ).all()
        return [(str(run), float(at), str(release)) for run, at, release in rows]

    def runs(self) -> list[Provenance]:
        """Every recorded run's provenance, oldest first."""
        t = self.run_table
        with self.db.reading() as conn:
            rows = conn.execute(sqlalchemy.select(t.c.provenance).order_by(t.c.time, t.c.run)).all()
        return [_provenance_from(json.loads(text)) for (text,) in rows]

    def provenance(self, run: str) -> Provenance | None:
        """One run's provenance, or ``None`` if it has no measurements."""
        t = self.run_table
        with self.db.reading() as conn:
            text = conn.execute(sqlalchemy.select(t.c.provenance).where(t.c.run == run)).scalar()
        return None if text is None else _provenance_from(json.loads(text))

    def metric_names(self) -> list[str]:
        """The metrics that have measurements, sorted."""
        with self.db.reading() as conn:
            return sorted(conn.execute(sqlalchemy.select(self.metric_table.c.name)).scalars())

    def series_unit(self, metric: str) -> str:
        """The unit a metric's measurements are stored in (its declared unit when first recorded)."""
        with self.db.reading() as conn:
            unit = conn.execute(
                sqlalchemy.select(self.metric_table.c.unit).where(self.metric_table.c.name == metric)
            ).scalar()
        if unit is None:
            raise UnknownMetricError(f"metric {metric!r} has no measurements in this repository")
        return str(unit)

    def series(
        self,
        metric: str,
        data_id: Mapping[str, DataIdValue] | None = None,
        since: float | None = None,
    ) -> Series:
        """A metric's measurements in time order: every data ID, or one; all time, or ``since``.

        Read from ``verify_chunk``: one packed row per run, unpacked with numpy.
        """
        mt, dt, rt = self.metric_table, self.data_id_table, self.run_table
        with self.db.reading() as conn:
            found = conn.execute(
                sqlalchemy.select(mt.c.metric_id, mt.c.unit).where(mt.c.name == metric)
            ).first()
            if found is None:
                raise UnknownMetricError(
                    f"metric {metric!r} has no measurements in this repository"
                    f"{did_you_mean(metric, self.metric_names())}"
                )
            metric_id, unit = int(found[0]), str(found[1])
            ct = self.chunk_table
            query = (
                sqlalchemy.select(rt.c.run, rt.c.time, ct.c.data_id_ids, ct.c.vals)
                .join(rt, rt.c.run_id == ct.c.run_id)
                .where(ct.c.metric_id == metric_id)
                .order_by(rt.c.time, rt.c.run)
            )
            if since is not None:
                query = query.where(rt.c.time >= since)
            chunks = conn.execute(query).all()
            wanted = None
            if data_id is not None:
                found_id = conn.execute(
                    sqlalchemy.select(dt.c.data_id_id).where(dt.c.key == data_id_key(data_id))
                ).scalar()
                wanted = -1 if found_id is None else int(found_id)
            ids = [np.frombuffer(c[2], dtype=np.int64) for c in chunks]
            vals = [np.frombuffer(c[3], dtype=np.float64) for c in chunks]
            sizes = np.fromiter((len(v) for v in vals), dtype=np.int64, count=len(vals))
            all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
            value = np.concatenate(vals) if vals else np.zeros(0)
            run_index = np.repeat(np.arange(len(chunks)), sizes)
            when = np.repeat(np.array([float(c[1]) for c in chunks]), sizes)
            if wanted is not None:
                keep = all_ids == wanted
                all_ids, value, run_index, when = all_ids[keep], value[keep], run_index[keep], when[keep]
            distinct, data_id_index = np.unique(all_ids, return_inverse=True)
            unknown = [d for d in distinct.tolist() if d not in self._data_ids]
            for d, key in _names(conn, dt.c.data_id_id, dt.c.key, unknown).items():
                self._data_ids[d] = data_id_from_key(key)
        return Series(
            metric,
            unit,
            when,
            value,
            run_index,
            [str(c[0]) for c in chunks],
            data_id_index.reshape(-1),
            [self._data_ids[d] for d in distinct.tolist()],
        )

    def outcomes(self, run: str | None = None, metric: str | None = None) -> Iterator[Outcome]:
        """Stored measurements with their arrival checks, in time order (of one run or metric, or all)."""
        t, mt, dt, rt = self.table, self.metric_table, self.data_id_table, self.run_table
        query = (
            sqlalchemy.select(
                mt.c.name, dt.c.key, rt.c.run, rt.c.time, t.c.value, mt.c.unit, t.c.flags, t.c.baseline,
            )
            .join(mt, mt.c.metric_id == t.c.metric_id)
            .join(dt, dt.c.data_id_id == t.c.data_id_id)
            .join(rt, rt.c.run_id == t.c.run_id)
            .order_by(rt.c.time, t.c.run_id, t.c.metric_id, t.c.data_id_id)
        )  # fmt: skip
        if run is not None:
            query = query.where(rt.c.run == run)
        if metric is not None:
            query = query.where(mt.c.name == metric)
        with self.db.reading() as conn:
            rows = conn.execute(query).all()
        for name, key, run_name, at, value, unit, flags, baseline in rows:
            applicable, passed, regressed = unpack_flags(int(flags))
            yield Outcome(
                name,
                data_id_from_key(key),
                run_name,
                float(at),
                float(value),
                unit,
                levels_from_bits(applicable, passed),
                None if baseline is None else float(baseline),
                regressed,
            )

    def summary(self, run: str) -> list[MetricSummary]:
        """Per metric measured in ``run``: how many data IDs, the value range and what failed.

        Aggregated in the database (flags decoded with bit arithmetic), so a run of a million
        measurements is summarised without reading them.
        """
        t, mt, rt = self.table, self.metric_table, self.run_table
        f = t.c.flags
        counts = [
            sqlalchemy.func.sum(
                sqlalchemy.case(((f.op("&")(bit) != 0) & (f.op("&")(bit << 3) == 0), 1), else_=0)
            )
            for bit in LEVEL_BITS.values()
        ]
        query = (
            sqlalchemy.select(
                mt.c.name,
                mt.c.unit,
                sqlalchemy.func.count(),
                sqlalchemy.func.min(t.c.value),
                sqlalchemy.func.avg(t.c.value),
                sqlalchemy.func.max(t.c.value),
                sqlalchemy.func.sum(sqlalchemy.case((f.op("&")(64) != 0, 1), else_=0)),
                *counts,
            )
            .join(mt, mt.c.metric_id == t.c.metric_id)
            .join(rt, rt.c.run_id == t.c.run_id)
            .where(rt.c.run == run)
            .group_by(mt.c.name, mt.c.unit)
            .order_by(mt.c.name)
        )
        with self.db.reading() as conn:
            rows = conn.execute(query).all()
        return [
            MetricSummary(
                name, unit, run, int(n), float(lo), float(mean), float(hi), int(reg or 0),
                {level: int(c or 0) for level, c in zip(LEVEL_BITS, failed, strict=True)},
            )
            for name, unit, n, lo, mean, hi, reg, *failed in rows
        ]  # fmt: skip

    def compare(
        self, run_a: str, run_b: str
    ) -> list[tuple[str, dict[str, DataIdValue], float | None, float | None]]:
        """Each (metric, data ID) measured in either run, with its value in each (``None``: absent)."""
        t, mt, dt, rt = self.table, self.metric_table, self.data_id_table, self.run_table
        for run in (run_a, run_b):
            if self.provenance(run) is None:
                raise VerifyError(f"run {run!r} has no measurements in the metric store")
        query = (
            sqlalchemy.select(mt.c.name, dt.c.key, rt.c.run, t.c.value)
            .join(mt, mt.c.metric_id == t.c.metric_id)
            .join(dt, dt.c.data_id_id == t.c.data_id_id)
            .join(rt, rt.c.run_id == t.c.run_id)
            .where(rt.c.run.in_([run_a, run_b]))
        )
        pairs: dict[tuple[str, str], list[float | None]] = {}
        with self.db.reading() as conn:
            for name, key, run, value in conn.execute(query):
                pairs.setdefault((name, key), [None, None])[0 if run == run_a else 1] = float(value)
        return [(name, data_id_from_key(key), a, b) for (name, key), (a, b) in sorted(pairs.items())]

    def latest_runs(self) -> dict[str, str]:
        """Each measured metric's most recent run (by the run's time)."""
        mr, mt, rt = self.metric_run_table, self.metric_table, self.run_table
        latest = (
            sqlalchemy.select(mr.c.metric_id, sqlalchemy.func.max(mr.c.time).label("time"))
            .group_by(mr.c.metric_id)
            .subquery()
        )
        query = (
            sqlalchemy.select(mt.c.name, rt.c.run)
            .select_from(latest)
            .join(mt, mt.c.metric_id == latest.c.metric_id)
            .join(mr, (mr.c.metric_id == latest.c.metric_id) & (mr.c.time == latest.c.time))
            .join(rt, rt.c.run_id == mr.c.run_id)
            .order_by(mt.c.name, rt.c.run)
        )
        with self.db.reading() as conn:
            return {name: run for name, run in conn.execute(query)}


def pack_flags(applicable: np.ndarray, passed: np.ndarray, regressed: np.ndarray) -> np.ndarray:
    """One small integer per measurement for what its arrival check found.

    Bits 0-2: the levels a spec applied at (`LEVEL_BITS`); bits 3-5: the levels it passed; bit 6:
    regressed against its baseline.  One column instead of three keeps the row, and the million-row
    insert, narrow.
    """
    return applicable.astype(np.int16) | (passed.astype(np.int16) << 3) | (regressed.astype(np.int16) << 6)


def unpack_flags(flags: int) -> tuple[int, int, bool]:
    """(applicable levels, passed levels, regressed) from `pack_flags`' integer."""
    return flags & 7, (flags >> 3) & 7, bool(flags & 64)


def _names(conn: Connection, id_column: Any, name_column: Any, ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for id_, name in conn.execute(sqlalchemy.select(id_column, name_column).where(id_column.in_(chunk))):
            found[int(id_)] = str(name)
    return found


def _last_of_each(batch: Batch) -> Batch:
    """The batch with only the last measurement of each (metric, data ID): a later one replaces."""
    codes = batch.metric_index * max(len(batch.data_ids), 1) + batch.data_id_index
    _, last_from_end = np.unique(codes[::-1], return_index=True)
    if len(last_from_end) == len(batch):
        return batch
    keep = np.sort(len(batch) - 1 - last_from_end)
    return Batch(
        batch.metrics,
        batch.metric_index[keep],
        batch.data_ids,
        batch.data_id_index[keep],
        batch.values[keep],
        batch.units,
        batch.unit_index[keep],
    )


def _provenance_dict(p: Provenance) -> dict[str, Any]:
    return {
        "run": p.run,
        "time": p.time,
        "collection": p.collection,
        "pipeline": p.pipeline,
        "task": p.task,
        "config_hash": p.config_hash,
        "versions": dict(p.versions),
        "inputs": list(p.inputs),
    }


def _provenance_from(d: Mapping[str, Any]) -> Provenance:
    return Provenance(
        run=d["run"],
        time=float(d["time"]),
        collection=d.get("collection", ""),
        pipeline=d.get("pipeline", ""),
        task=d.get("task", ""),
        config_hash=d.get("config_hash", ""),
        versions=dict(d.get("versions", {})),
        inputs=tuple(d.get("inputs", ())),
    )
