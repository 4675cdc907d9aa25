"""Run state and provenance, kept in the repository's own database.

Whatever executed a quantum (this process, a local pool, a Parsl worker on a
cluster node) writes its outcome here, so ``porter pipeline restart`` and
``report`` work whichever executor ran the first attempt.

``pipeline_graph``
    every quantum graph submitted for a run (compressed), so a restart
    needs nothing but the repository and the run name.
``pipeline_quantum``
    one row per quantum that has started: ``running``, ``succeeded`` or
    ``failed``, attempts, host, times, CPU, peak memory, the error, the
    task's class, config hash, software versions and metric measurements.
    *Blocked* and *pending* are derived: a quantum without a success whose
    ancestor failed is blocked; one without a row is pending.
``pipeline_quantum_dataset``
    the provenance links: which datasets a succeeded quantum read and wrote.
``pipeline_process``
    the processes that executed each graph (submitter and workers: host, PID,
    start time), so a restart can tell a killed run from one still writing
    and a ``running`` quantum whose process is gone from one really running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, String, Table, Text

from ._processes import ProcessId

if TYPE_CHECKING:
    from ..registry import Database

__all__ = ["FAILED", "INTERRUPTED", "RUNNING", "SUCCEEDED", "ProcessRecord", "QuantumRecord", "RunState"]

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
INTERRUPTED = "interrupted"
"""Stored for a quantum that was running in a process now gone, its outputs incomplete: to be run again."""
BLOCKED, PENDING = "blocked", "pending"


@dataclass
class QuantumRecord:
    """What happened to one quantum (a row of ``pipeline_quantum`` plus its dataset links)."""

    quantum_id: str
    run: str
    task: str
    data_id: dict[str, Any]
    status: str
    attempts: int = 0
    host: str = ""
    started: float | None = None
    ended: float | None = None
    wall: float | None = None
    cpu: float | None = None
    max_rss_mb: float | None = None
    error_type: str | None = None
    message: str | None = None
    task_class: str = ""
    config_hash: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ProcessRecord:
    """A process that executed (part of) a graph: its role, identity and the submitter it worked for."""

    graph_id: int
    run: str
    role: str
    process: ProcessId
    submitter: ProcessId
    registered: float


class RunState:
    """The run-state tables of one repository database."""

    def __init__(self, db: Database):
        self.db = db
        md = db.metadata
        existing = md.tables.get(f"{md.schema}.pipeline_graph" if md.schema else "pipeline_graph")
        if existing is not None:  # another RunState on this database defined them already
            self.graph = existing
            self.quantum = md.tables[existing.fullname.replace("pipeline_graph", "pipeline_quantum")]
            self.link = md.tables[existing.fullname.replace("pipeline_graph", "pipeline_quantum_dataset")]
            self.process = md.tables[existing.fullname.replace("pipeline_graph", "pipeline_process")]
            self._created = False
            return
        self.graph = Table(
            "pipeline_graph",
            md,
            Column("graph_id", Integer, primary_key=True, autoincrement=True),
            Column("run", String(255), nullable=False, index=True),
            Column("created", BigInteger, nullable=False),
            Column("label", String(255), nullable=False),
            Column("n_quanta", Integer, nullable=False),
            Column("graph", LargeBinary, nullable=False),
            extend_existing=True,
        )
        self.quantum = Table(
            "pipeline_quantum",
            md,
            Column("quantum_id", String(32), primary_key=True),
            Column("run", String(255), nullable=False),
            Column("task", String(255), nullable=False),
            Column("data_id", Text, nullable=False),
            Column("status", String(16), nullable=False),
            Column("attempts", Integer, nullable=False),
            Column("host", String(255), nullable=False),
            Column("started", Float, nullable=True),
            Column("ended", Float, nullable=True),
            Column("wall", Float, nullable=True),
            Column("cpu", Float, nullable=True),
            Column("max_rss_mb", Float, nullable=True),
            Column("error_type", String(255), nullable=True),
            Column("message", Text, nullable=True),
            Column("task_class", String(255), nullable=False),
            Column("config_hash", String(32), nullable=False),
            Column("versions", Text, nullable=False),
            Column("measurements", Text, nullable=False),
            Index("pipeline_quantum_run_status", "run", "status"),
            extend_existing=True,
        )
        self.link = Table(
            "pipeline_quantum_dataset",
            md,
            Column("quantum_id", String(32), nullable=False),
            Column("dataset_id", String(32), nullable=False),
            Column("role", String(8), nullable=False),
            sqlalchemy.PrimaryKeyConstraint("quantum_id", "dataset_id", "role"),
            Index("pipeline_quantum_dataset_dataset", "dataset_id", "role"),
            extend_existing=True,
        )
        self.process = Table(
            "pipeline_process",
            md,
            Column("graph_id", Integer, nullable=False),
            Column("run", String(255), nullable=False),
            Column("role", String(16), nullable=False),
            Column("host", String(255), nullable=False),
            Column("pid", Integer, nullable=False),
            Column("start", String(64), nullable=False),
            Column("submitter_host", String(255), nullable=False),
            Column("submitter_pid", Integer, nullable=False),
            Column("submitter_start", String(64), nullable=False),
            Column("registered", Float, nullable=False),
            sqlalchemy.PrimaryKeyConstraint("graph_id", "host", "pid", "start", "role"),
            Index("pipeline_process_run", "run"),
            extend_existing=True,
        )
        self._created = False

    def ensure_tables(self) -> None:
        """Create the tables in a repository that has never run a pipeline."""
        if self._created:
            return
        created: set[str] = self.db.metadata.info.setdefault("porter_pipeline_tables", set())
        tables = (self.graph, self.quantum, self.link, self.process)
        if not all(t.name in created for t in tables):
            with self.db.reading() as conn:
                inspector = sqlalchemy.inspect(conn)
                missing = [t for t in tables if not inspector.has_table(t.name, schema=t.schema)]
            if missing:
                with self.db.transaction() as conn:
                    for t in tables:
                        t.create(conn, checkfirst=True)
            created.update(t.name for t in tables)
        self._created = True

    # --- graphs -----------------------------------------------------------------------------------

    def save_graph(self, run: str, label: str, n_quanta: int, blob: bytes) -> int:
        self.ensure_tables()
        with self.db.transaction() as conn:
            result = conn.execute(
                sqlalchemy.insert(self.graph).values(
                    run=run, created=time.time_ns(), label=label, n_quanta=n_quanta, graph=blob
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def graph_blob(self, graph_id: int) -> bytes:
        self.ensure_tables()
        with self.db.reading() as conn:
            blob = conn.execute(
                sqlalchemy.select(self.graph.c.graph).where(self.graph.c.graph_id == graph_id)
            ).scalar()
        if blob is None:
            raise KeyError(f"No quantum graph {graph_id} in this repository.")
        return bytes(blob)

    def graphs_of(self, run: str) -> list[tuple[int, str, bytes]]:
        """(graph ID, label, blob) of every graph submitted for ``run``, oldest first."""
        self.ensure_tables()
        with self.db.reading() as conn:
            rows = conn.execute(
                sqlalchemy.select(self.graph.c.graph_id, self.graph.c.label, self.graph.c.graph)
                .where(self.graph.c.run == run)
                .order_by(self.graph.c.graph_id)
            ).all()
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def runs(self) -> list[str]:
        self.ensure_tables()
        with self.db.reading() as conn:
            return list(
                conn.execute(
                    sqlalchemy.select(self.graph.c.run).distinct().order_by(self.graph.c.run)
                ).scalars()
            )

    # --- processes ------------------------------------------------------------------------------------

    def register_process(
        self, graph_id: int, run: str, role: str, process: ProcessId, submitter: ProcessId
    ) -> None:
        """Record that ``process`` executes graph ``graph_id`` for ``submitter`` (once; again is a no-op)."""
        self.ensure_tables()
        p = self.process.c
        key = (
            (p.graph_id == graph_id)
            & (p.host == process.host)
            & (p.pid == process.pid)
            & (p.start == process.start)
            & (p.role == role)
        )

        def write() -> None:
            with self.db.transaction() as conn:
                conn.execute(sqlalchemy.delete(self.process).where(key))
                conn.execute(
                    sqlalchemy.insert(self.process).values(
                        graph_id=graph_id,
                        run=run,
                        role=role,
                        host=process.host,
                        pid=process.pid,
                        start=process.start,
                        submitter_host=submitter.host,
                        submitter_pid=submitter.pid,
                        submitter_start=submitter.start,
                        registered=time.time(),
                    )
                )

        self.db.retrying(write)

    def processes(self, run: str) -> list[ProcessRecord]:
        """Every process recorded as executing a graph of ``run``, oldest first."""
        self.ensure_tables()
        p = self.process.c
        with self.db.reading() as conn:
            rows = conn.execute(
                sqlalchemy.select(self.process).where(p.run == run).order_by(p.registered)
            ).mappings()
            return [
                ProcessRecord(
                    int(r["graph_id"]),
                    str(r["run"]),
                    str(r["role"]),
                    ProcessId(str(r["host"]), int(r["pid"]), str(r["start"])),
                    ProcessId(str(r["submitter_host"]), int(r["submitter_pid"]), str(r["submitter_start"])),
                    float(r["registered"]),
                )
                for r in rows
            ]

    # --- quantum outcomes -------------------------------------------------------------------------------

    def start(self, records: Sequence[QuantumRecord]) -> None:
        """Record that these quanta are running (one more attempt each)."""
        self._replace(records, lambda r, before: (RUNNING, before + 1), links=False)

    def finish(self, records: Sequence[QuantumRecord]) -> None:
        """Record final outcomes (succeeded or failed) with their provenance links, in one transaction."""
        self._replace(records, lambda r, before: (r.status, max(before, r.attempts, 1)), links=True)

    def _replace(
        self,
        records: Sequence[QuantumRecord],
        outcome: Callable[[QuantumRecord, int], tuple[str, int]],
        links: bool,
    ) -> None:
        """Replace the rows (and links) of ``records``; ``outcome(record, attempts so far)`` gives status and attempts."""
        if not records:
            return
        self.ensure_tables()
        ids = [r.quantum_id for r in records]

        def write() -> None:
            with self.db.transaction() as conn:
                attempts = self._attempts(conn, ids)
                conn.execute(sqlalchemy.delete(self.quantum).where(self.quantum.c.quantum_id.in_(ids)))
                conn.execute(sqlalchemy.delete(self.link).where(self.link.c.quantum_id.in_(ids)))
                conn.execute(
                    sqlalchemy.insert(self.quantum),
                    [self._row(r, *outcome(r, attempts.get(r.quantum_id, 0))) for r in records],
                )
                rows = [
                    {"quantum_id": r.quantum_id, "dataset_id": d, "role": role}
                    for r in records
                    if links and r.status == SUCCEEDED
                    for role, ds in (("input", r.inputs), ("output", r.outputs))
                    for d in dict.fromkeys(ds)
                ]
                if rows:
                    conn.execute(sqlalchemy.insert(self.link), rows)

        self.db.retrying(write)

    def _attempts(self, conn: sqlalchemy.Connection, ids: Sequence[str]) -> dict[str, int]:
        q = self.quantum.c
        rows = conn.execute(sqlalchemy.select(q.quantum_id, q.attempts).where(q.quantum_id.in_(ids))).all()
        return {str(r[0]): int(r[1]) for r in rows}

    @staticmethod
    def _row(r: QuantumRecord, status: str, attempts: int) -> dict[str, Any]:
        return {
            "quantum_id": r.quantum_id,
            "run": r.run,
            "task": r.task,
            "data_id": json.dumps(r.data_id, sort_keys=True, default=str),
            "status": status,
            "attempts": attempts,
            "host": r.host,
            "started": r.started,
            "ended": r.ended,
            "wall": r.wall,
            "cpu": r.cpu,
            "max_rss_mb": r.max_rss_mb,
            "error_type": r.error_type,
            "message": (r.message or "")[:20000] or None,
            "task_class": r.task_class,
            "config_hash": r.config_hash,
            "versions": json.dumps(r.versions, sort_keys=True),
            "measurements": json.dumps(r.measurements),
        }

    # --- reading ----------------------------------------------------------------------------------------

    def records(
        self, run: str | None = None, quantum_ids: Iterable[str] | None = None
    ) -> list[QuantumRecord]:
        """Outcome rows (without links) of a run, or of the given quanta."""
        self.ensure_tables()
        q = self.quantum
        stmt = sqlalchemy.select(q)
        if run is not None:
            stmt = stmt.where(q.c.run == run)
        out = []
        with self.db.reading() as conn:
            if quantum_ids is not None:
                wanted = list(quantum_ids)
                rows: list[Any] = []
                for start in range(0, len(wanted), 5000):
                    rows += (
                        conn.execute(stmt.where(q.c.quantum_id.in_(wanted[start : start + 5000])))
                        .mappings()
                        .all()
                    )
            else:
                rows = list(conn.execute(stmt).mappings().all())
        for row in rows:
            d = dict(row)
            d["data_id"] = json.loads(d["data_id"])
            d["versions"] = json.loads(d["versions"])
            d["measurements"] = json.loads(d["measurements"])
            out.append(QuantumRecord(**d))
        return out

    def producer(self, dataset_id: str) -> str | None:
        """The quantum that wrote a dataset (by hex ID), if a pipeline made it."""
        self.ensure_tables()
        ln = self.link.c
        with self.db.reading() as conn:
            return conn.execute(
                sqlalchemy.select(ln.quantum_id).where(ln.dataset_id == dataset_id, ln.role == "output")
            ).scalar()

    def links(self, quantum_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """Quantum ID → {"input": [...], "output": [...]} dataset hex IDs."""
        self.ensure_tables()
        out: dict[str, dict[str, list[str]]] = {qid: {"input": [], "output": []} for qid in quantum_ids}
        ln = self.link.c
        with self.db.reading() as conn:
            for start in range(0, len(quantum_ids), 5000):
                chunk = list(quantum_ids[start : start + 5000])
                for qid, did, role in conn.execute(
                    sqlalchemy.select(ln.quantum_id, ln.dataset_id, ln.role).where(ln.quantum_id.in_(chunk))
                ):
                    out[qid][role].append(did)
        return out
