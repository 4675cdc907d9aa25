"""InfluxDB 1.x side of the metric-store benchmark (issue 16): the same measurements, two ways in.

``influx_write_seconds`` writes n_metrics x n_data_ids measurements with InfluxDB's official Python
client (``InfluxDBClient.write_points``, batches of 10,000), the way Rubin's dispatch to Sasquatch
would; ``porter_forward_seconds`` sends the same measurements through porter's own path (encode to
line protocol, queue in the outbox of a SQLite repository database, `Outbox.forward`).
``temporary_influxd`` starts a throw-away server for either (`porter.verify._influxd`).

bench/verify.py imports these; run alone it prints both timings as JSON::

    .venv/bin/python bench/verify_influx.py [N_METRICS N_DATA_IDS]
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BANDS = ("g", "r", "i", "z", "y")
RUN = "bench/run1"
START = 1_700_000_000.0


def data_id(j: int) -> dict[str, Any]:
    """The j-th data ID of the benchmark: a tract and a band."""
    return {"tract": 9000 + j // len(BANDS), "band": BANDS[j % len(BANDS)]}


def measurements(n_metrics: int, n_data_ids: int) -> Iterator[tuple[str, dict[str, Any], float, float]]:
    """(metric, data ID, time in seconds, value) for every metric x data ID, metric by metric."""
    for m in range(n_metrics):
        metric = f"bench.metric{m:04d}"
        for j in range(n_data_ids):
            yield metric, data_id(j), START + j, 1.0 + (m * 7 + j) % 101 / 10


@contextlib.contextmanager
def temporary_influxd() -> Iterator[tuple[str, str]]:
    """A fresh ``influxd`` on loopback with an empty database: yields (url, database)."""
    from porter.verify._influxd import InfluxServer

    with (
        tempfile.TemporaryDirectory(prefix="porter-bench-influxd-") as root,
        InfluxServer(Path(root)) as server,
    ):
        server.create_database("bench")
        yield server.url, "bench"


def influx_write_seconds(n_metrics: int, n_data_ids: int, url: str, database: str) -> float:
    """Seconds to write n_metrics x n_data_ids points with ``InfluxDBClient.write_points`` (10,000 a batch).

    Points carry the same measurement name, tags (data ID and run), value and nanosecond time as
    porter's forwarding writes.  The points are built inside the timed section, as a dispatcher
    holding measurements would have to.
    """
    from urllib.parse import urlsplit

    from influxdb import InfluxDBClient

    where = urlsplit(url)
    client = InfluxDBClient(host=where.hostname or "127.0.0.1", port=where.port or 8086, database=database)
    try:
        started = time.perf_counter()
        points = [
            {
                "measurement": metric,
                "tags": {**{k: str(v) for k, v in did.items()}, "run": RUN},
                "fields": {"value": value},
                "time": round(t * 1_000_000_000),
            }
            for metric, did, t, value in measurements(n_metrics, n_data_ids)
        ]
        client.write_points(points, time_precision="n", batch_size=10_000)
        return time.perf_counter() - started
    finally:
        client.close()


def porter_forward_seconds(n_metrics: int, n_data_ids: int, url: str, database: str) -> dict[str, float]:
    """Seconds to encode and queue the same measurements in a SQLite outbox, and to forward them."""
    from porter.registry import Database
    from porter.verify import Outbox, Outcome, SinkConfig

    with tempfile.TemporaryDirectory(prefix="porter-bench-outbox-") as root:
        db = Database(f"sqlite:///{root}/registry.sqlite3")
        try:
            outbox = Outbox(db)
            started = time.perf_counter()
            outcomes = (
                Outcome(metric=metric, data_id=did, run=RUN, time=t, value=value, unit="mas")
                for metric, did, t, value in measurements(n_metrics, n_data_ids)
            )
            with db.transaction() as conn:
                queued = outbox.enqueue_outcomes(conn, ["bench"], outcomes)
            enqueue = time.perf_counter() - started
            started = time.perf_counter()
            result = outbox.forward(SinkConfig(url=url, database=database, name="bench"), batch=10_000)
            forward = time.perf_counter() - started
            if not result.ok or result.sent_lines != queued:
                raise RuntimeError(f"forwarding failed: {result}")
            return {"enqueue_s": enqueue, "forward_s": forward}
        finally:
            db.dispose()


def main(argv: list[str]) -> None:
    n_metrics, n_data_ids = (int(argv[0]), int(argv[1])) if len(argv) >= 2 else (1000, 1000)
    with temporary_influxd() as (url, database):
        client_s = influx_write_seconds(n_metrics, n_data_ids, url, database)
    with temporary_influxd() as (url, database):
        porter = porter_forward_seconds(n_metrics, n_data_ids, url, database)
    n = n_metrics * n_data_ids
    print(
        json.dumps(
            {
                "measurements": n,
                "influxdb_client_write_points_s": round(client_s, 3),
                "porter_enqueue_s": round(porter["enqueue_s"], 3),
                "porter_forward_s": round(porter["forward_s"], 3),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
