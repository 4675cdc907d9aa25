"""Coverage: which of the data IDs a query expects have a dataset — answered by the database.

A release's completeness check asks, for millions of expected data IDs,
which have no delivered dataset.  Bringing both sets into Python costs
seconds per million rows (driver tuples, then set arithmetic); the database
answers the same question with one hash anti-join and sends back only the
count and the missing rows.  When a side of the comparison cannot be one SQL
statement (exact region refinement of a spatial join, an ambiguous
calibration check), both sides are evaluated by the query engine and
compared as plain tuples.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy

from ...errors import InvalidQueryError
from ._spec import QuerySpec

if TYPE_CHECKING:
    from .._db import Database
    from ._engine import QueryEngine

__all__ = ["Coverage"]

BATCH = 100_000
WORK_MEM = "512MB"
"""PostgreSQL's per-hash memory for the comparison: 10 million data IDs hash in about 400 MB."""


class Coverage:
    """Expected data IDs (a data-ID query) against delivered datasets (a dataset query) of one type.

    ``keys`` are the dataset type's required dimensions, then ``group_by``
    if it is another dimension of the expected data IDs (a visit's band, say):
    the columns of every missing row.
    """

    def __init__(
        self,
        db: Database,
        engine: QueryEngine,
        expected: QuerySpec,
        delivered: QuerySpec,
        group_by: str | None = None,
    ):
        self._db = db
        self._engine = engine
        self._expected_spec = expected
        self._delivered_spec = delivered
        dt = delivered.searches[0].record.dataset_type
        self.keys: list[str] = list(dt.dimensions.required)
        available = list(expected.dimensions.data_coordinate_keys)
        lacking = [k for k in self.keys if k not in available]
        if lacking:
            raise InvalidQueryError(
                f"The expected data IDs ({expected.dimensions}) lack {lacking}, which {dt.name} is identified "
                f"by; add them to the expected dimensions."
            )
        if group_by and group_by not in self.keys:
            if group_by not in available:
                raise InvalidQueryError(
                    f"Cannot group missing {dt.name} data IDs by {group_by!r}: it is not a dimension of the "
                    f"expected data IDs ({available})."
                )
            self.keys.append(group_by)
        self._key_count = len(dt.dimensions.required)
        self._sql = self._anti_join()

    def _anti_join(self) -> Any | None:
        """One statement: the number of expected data IDs on every row, then the missing ones (or NULLs).

        None if either side needs Python.  The expected data IDs are a common table expression read
        twice (counted, and anti-joined with the delivered datasets), so the database builds them once.
        """
        expected = self._engine.statement(self._expected_spec)
        delivered = self._engine.statement(self._delivered_spec)
        if expected is None or delivered is None:
            return None
        ex = expected.subquery("expected")
        # Already distinct data IDs: implied values (a group_by band) depend on the keys, adding no rows.
        e = sqlalchemy.select(*[ex.c[f"d_{k}"].label(k) for k in self.keys]).cte("expected_ids")
        d = delivered.subquery("delivered")
        found = sqlalchemy.select(sqlalchemy.literal(1)).where(
            *[d.c[f"d_{k}"] == e.c[k] for k in self.keys[: self._key_count]]
        )
        missing = sqlalchemy.select(*e.c).where(~found.exists()).subquery("missing")
        total = sqlalchemy.select(sqlalchemy.func.count()).select_from(e).scalar_subquery()
        one = sqlalchemy.select(sqlalchemy.literal(1).label("one")).subquery("one")
        return (
            sqlalchemy.select(total.label("n_expected"), *missing.c)
            .select_from(one.outerjoin(missing, sqlalchemy.true()))
            .order_by(*missing.c)
        )

    @property
    def in_database(self) -> bool:
        """Is the comparison made by the database (rather than in Python)?"""
        return self._sql is not None

    def run(self, batch: int = BATCH) -> tuple[int, Iterator[Sequence[tuple]]]:
        """The number of expected data IDs, and the missing ones in sorted batches of up to ``batch`` rows.

        Read the batches before asking anything else of the registry: in the database case they stream
        from an open cursor.
        """
        if self._sql is None:
            return self._in_python(batch)
        rows = self._stream(self._sql, batch)
        first = next(rows)
        n_expected = int(first[0][0]) if first else 0

        def batches() -> Iterator[Sequence[tuple]]:
            for part in itertools.chain([first], rows):
                missing = [r[1:] for r in part if r[1] is not None]
                if missing:
                    yield missing

        return n_expected, batches()

    def _stream(self, stmt: Any, batch: int) -> Iterator[Sequence[tuple]]:
        with self._db.reading() as conn:
            if conn.dialect.name == "postgresql":
                # For this transaction only: hash the millions of data IDs in memory rather than in spilled
                # batches, and compare two unordered sets by hashing rather than by sorting both (a merge
                # join sorts the text instrument column with collation rules: three times slower here).
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
                conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
            yield from result.partitions()

    def _in_python(self, batch: int) -> tuple[int, Iterator[Sequence[tuple]]]:
        n = self._key_count
        expected: dict[tuple, tuple] = {}
        for d in self._engine.run(self._expected_spec):
            row = tuple(d[k] for k in self.keys)
            expected.setdefault(row[:n], row)
        delivered = {r.data_id.required_values for r in self._engine.run(self._delivered_spec)}
        missing = sorted(row for key, row in expected.items() if key not in delivered)
        return len(expected), iter([missing[i : i + batch] for i in range(0, len(missing), batch)])
