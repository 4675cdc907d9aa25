"""Forwarding measurements to InfluxDB 1.x through the outbox, against a real ``influxd`` on loopback.

The server is Debian's ``influxdb`` package (1.6), started by these tests with every directory in a
temporary folder (`porter.verify._influxd`).  The outbox lives in a real repository database, SQLite
and PostgreSQL.  What is checked is what the server holds afterwards (queried back) and how many
points it accepted (``SHOW STATS``: a point re-sent and overwritten counts twice there, once in the
data), so "nothing lost, nothing sent twice" is observed rather than assumed.

Under ``CI=true`` a missing ``influxd`` fails these tests; elsewhere they are skipped with a loud
reason (``apt-get install influxdb``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import drop_schema
from porter.registry import Database
from porter.verify import (
    SINKS_ENV,
    ForwardResult,
    LineProtocolError,
    Outbox,
    Outcome,
    SinkConfig,
    SinkConfigError,
    encode_outcome,
    load_sinks,
    timestamp_ns,
)
from porter.verify._influx import RESERVED_FIELDS
from porter.verify._influxd import InfluxServer, find_influxd

ROOT = Path(__file__).resolve().parent.parent


# --- servers and databases ------------------------------------------------------------------------


def _influxd() -> str:
    found = find_influxd()
    if found is None:
        message = (
            "influxd is NOT INSTALLED: the InfluxDB forwarding tests cannot run "
            "(Debian: apt-get install -y influxdb; .ci/run installs it)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true requires these tests to run)")
        warnings.warn(message, stacklevel=2)
        sys.stderr.write(f"\n*** {message} ***\n")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One server for the tests that never stop it (per xdist worker)."""
    with InfluxServer(tmp_path_factory.mktemp("influxd"), executable=_influxd()) as server:
        yield server


@pytest.fixture
def own_influx(tmp_path: Path) -> Iterator[InfluxServer]:
    """A server of this test alone, which it may stop and start."""
    server = InfluxServer(tmp_path / "influxd", executable=_influxd())
    server.start()
    yield server
    server.stop()


def _new_database(server: InfluxServer) -> str:
    name = f"porter_{uuid.uuid4().hex[:10]}"
    server.create_database(name)
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A repository database (the outbox's home) on SQLite or on the PostgreSQL server."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
        yield database
        database.dispose()
        return
    url = request.getfixturevalue("pg_server")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    database = Database(url, namespace=schema)
    yield database
    database.dispose()
    drop_schema(url, schema)


# --- helpers --------------------------------------------------------------------------------------

BANDS = ("g", "r", "i", "z", "y")


def outcomes(n: int, run: str = "run/1", start: float = 1_700_000_000.0) -> list[Outcome]:
    """``n`` measurements of three metrics over tracts and bands, each with its own time."""
    made = []
    for i in range(n):
        metric = ("validate_drp.AM1", "validate_drp.PA1", "pipe tasks,zp=ok")[i % 3]
        levels = {"minimum": True, "design": i % 2 == 0} if i % 3 != 2 else {}
        made.append(
            Outcome(
                metric=metric,
                data_id={"tract": 9000 + i % 7, "band": BANDS[i % 5], "skymap": "hsc rings, v1"},
                run=run,
                time=start + i * 0.001,
                value=0.5 + i / 7,
                unit="mas" if i % 3 != 2 else 'mag "AB"',
                levels=levels,
                baseline=None if i % 4 == 0 else 0.25 * i,
                regressed=i % 5 == 0,
            )
        )
    return made


def read_back(server: InfluxServer, database: str, where: str = "") -> list[dict[str, Any]]:
    """Every point of the database (or those ``where`` selects), as {measurement, tags, fields, time}."""
    answer = server.query(f"SELECT * FROM /.*/ {where} GROUP BY *", database)
    points = []
    for series in answer["results"][0].get("series", []):
        columns = series["columns"]
        for row in series["values"]:
            record = dict(zip(columns, row))
            points.append(
                {
                    "measurement": series["name"],
                    "tags": {k: v for k, v in series.get("tags", {}).items() if v != ""},
                    "time": record.pop("time"),
                    "fields": {k: v for k, v in record.items() if v is not None},
                }
            )
    return points


def expected_point(o: Outcome) -> dict[str, Any]:
    fields: dict[str, Any] = {"value": o.value, "unit": o.unit, "regressed": o.regressed}
    if o.baseline is not None:
        fields["baseline"] = o.baseline
    fields.update({f"pass_{level}": passed for level, passed in o.levels.items()})
    tags = {str(k): str(v) for k, v in o.data_id.items() if str(v) != ""}
    if o.run:
        tags["run"] = o.run
    return {"measurement": o.metric, "tags": tags, "time": timestamp_ns(o.time), "fields": fields}


def _same_point(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Equal measurement, tags, time and fields (numbers compared exactly, as floats: InfluxDB's JSON
    writes 3.952154521862889e16 as 39521545218628890, the same float)."""
    fields = {
        k: float(v) if isinstance(want["fields"].get(k), float) and not isinstance(v, bool) else v
        for k, v in got["fields"].items()
    }
    return {**got, "fields": fields} == want


def enqueue(db: Database, outbox: Outbox, sink: str, batch: list[Outcome]) -> None:
    with db.transaction() as conn:
        outbox.enqueue_outcomes(conn, [sink], batch)


def count_points(server: InfluxServer, database: str) -> int:
    return len(read_back(server, database))


def sink_of(server: InfluxServer, database: str, name: str = "influxdb") -> SinkConfig:
    return SinkConfig(url=server.url, database=database, name=name)


# --- line protocol --------------------------------------------------------------------------------


def test_line_format_is_documented_one() -> None:
    o = Outcome(
        metric="validate_drp.AM1",
        data_id={"tract": 9813, "band": "r"},
        run="HSC/runs/RC2 w_2024",
        time=1.5,
        value=7.25,
        unit="mas",
        levels={"minimum": True, "design": False},
        baseline=7.0,
        regressed=True,
    )
    assert encode_outcome(o) == (
        r"validate_drp.AM1,band=r,run=HSC/runs/RC2\ w_2024,tract=9813 "
        'value=7.25,unit="mas",baseline=7.0,pass_design=false,pass_minimum=true,regressed=true '
        "1500000000"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"value": float("nan")},
        {"value": float("inf")},
        {"baseline": float("-inf")},
        {"metric": "m\\"},
        {"metric": "#comment"},
        {"metric": ""},
        {"data_id": {"band": "r\n"}},
        {"data_id": {"run": "x"}},
        {"data_id": {"value": "x"}},
        {"run": "trailing\\"},
    ],
)
def test_unwritable_measurements_are_refused_by_name(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "metric": "m",
        "data_id": {"band": "r"},
        "run": "run",
        "time": 1.0,
        "value": 1.0,
        "unit": "",
    }
    fields.update(bad)
    with pytest.raises(LineProtocolError, match="Cannot forward the measurement of"):
        encode_outcome(Outcome(**fields))


_TEXT = st.text(min_size=0, max_size=12)


def _representable(text: str) -> bool:
    return bool(text) and "\n" not in text and "\x00" not in text and not text.endswith("\\")


def _refused(o: Outcome) -> bool:
    """The documented cases InfluxDB's line protocol cannot carry (see porter.verify._influx)."""
    items = [(str(k), str(v)) for k, v in o.data_id.items() if str(v)]  # empty values: no tag
    keys = [k for k, _ in items]
    values = [v for v in (*(v for _, v in items), o.run) if v]
    return (
        not all(_representable(t) for t in [o.metric, *keys, *values])
        or "\\" in o.metric
        or o.metric[:1] == "#"
        or o.metric[:1].isspace()
        or any(k in ("run", "time", *RESERVED_FIELDS) or k.startswith("pass_") for k in keys)
    )


@st.composite
def arbitrary_outcomes(draw: st.DrawFn) -> Outcome:
    keys = draw(st.lists(_TEXT, max_size=3, unique=True))
    data_id = {k: draw(st.one_of(_TEXT, st.integers(-(2**40), 2**40))) for k in keys}
    levels = draw(st.dictionaries(st.sampled_from(["minimum", "design", "stretch"]), st.booleans()))
    return Outcome(
        metric=draw(_TEXT),
        data_id=data_id,
        run=draw(_TEXT),
        time=draw(st.floats(0, 4e9)),
        value=draw(st.floats(allow_nan=False, allow_infinity=False)),
        unit=draw(st.text(max_size=12)),
        levels=levels,
        baseline=draw(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))),
        regressed=draw(st.booleans()),
    )


_round_trips: dict[str, str] = {}
"""The database of the round-trip test on each server (one for all examples: creating one costs ~0.3 s)."""
_example_times = iter(range(1, 10**9))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcome=arbitrary_outcomes())
def test_round_trip_through_influxdb(influx: InfluxServer, outcome: Outcome) -> None:
    """Encode → write → read back from InfluxDB gives the same measurement, for arbitrary text.

    `encode_outcome` refuses exactly the documented unwritable cases.  Each example gets a time of
    its own (whole seconds, so it is exact), which is how it is told from the others on read-back.
    """
    if _refused(outcome):
        with pytest.raises(LineProtocolError):
            encode_outcome(outcome)
        return
    outcome = dataclasses.replace(outcome, time=float(next(_example_times)))
    line = encode_outcome(outcome)
    database = _round_trips.get(influx.url) or _round_trips.setdefault(influx.url, _new_database(influx))
    response = influx.write(line, database)
    assert response.status_code == 204, (line, response.text)
    points = read_back(influx, database, f"WHERE time = {timestamp_ns(outcome.time)}")
    want = expected_point(outcome)
    assert len(points) == 1 and _same_point(points[0], want), (line, points, want)


# --- forwarding -----------------------------------------------------------------------------------


def test_all_points_arrive_with_tags_values_and_times(influx: InfluxServer, db: Database) -> None:
    database = _new_database(influx)
    outbox = Outbox(db)
    made = outcomes(250)
    enqueue(db, outbox, "influxdb", made[:100])
    enqueue(db, outbox, "influxdb", made[100:])
    assert outbox.pending("influxdb") == 250
    before = influx.points_written()

    result = outbox.forward(sink_of(influx, database), batch=60)

    assert result == ForwardResult("influxdb", sent_lines=250, sent_rows=2, batches=2, remaining_lines=0)
    assert outbox.pending("influxdb") == 0
    assert influx.points_written() - before == 250  # each sent exactly once
    got = sorted(read_back(influx, database), key=lambda p: (p["time"], p["measurement"]))
    want = sorted((expected_point(o) for o in made), key=lambda p: (p["time"], p["measurement"]))
    assert len(got) == len(want) == 250
    for g, w in zip(got, want):
        assert _same_point(g, w), (g, w)


def test_rolled_back_transaction_queues_nothing(db: Database) -> None:
    outbox = Outbox(db)
    with pytest.raises(RuntimeError, match="store failed"), db.transaction() as conn:
        outbox.enqueue_outcomes(conn, ["influxdb"], outcomes(10))
        raise RuntimeError("store failed after queueing")
    assert outbox.pending("influxdb") == 0


def test_sink_down_queues_in_order_and_replays_once(own_influx: InfluxServer, db: Database) -> None:
    database = _new_database(own_influx)
    outbox = Outbox(db)
    sink = sink_of(own_influx, database)
    first = outcomes(12_000, run="run/1")
    enqueue(db, outbox, "influxdb", first)  # 3 rows of 5000, 5000, 2000 lines
    lines_in_order = outbox.queued_lines("influxdb")
    assert lines_in_order == [encode_outcome(o) for o in first]

    own_influx.stop()
    down = outbox.forward(sink)
    assert down.sent_lines == 0 and down.remaining_lines == 12_000
    assert down.error is not None and "unreachable" in down.error
    second = outcomes(3_000, run="run/2", start=1_800_000_000.0)
    enqueue(db, outbox, "influxdb", second)  # the store keeps going while the sink is down
    assert outbox.forward(sink).error is not None
    assert outbox.queued_lines("influxdb") == lines_in_order + [encode_outcome(o) for o in second]

    own_influx.start()  # same port, same data directory
    before = own_influx.points_written()  # 0: a new server process
    back = outbox.forward(sink, batch=5000)

    assert back.ok and back.sent_lines == 15_000 and back.remaining_lines == 0
    assert back.batches == 3  # whole rows, up to 5000 lines: 5000 | 5000 | 2000 + 3000
    assert own_influx.points_written() - before == 15_000  # sent once each
    assert count_points(own_influx, database) == 15_000  # none lost, none stored twice
    assert outbox.forward(sink) == ForwardResult("influxdb")  # nothing left to send


def test_rejected_batch_stays_queued(influx: InfluxServer, db: Database) -> None:
    """A sink answering an error (here: no such database) keeps the batch, in order, and says why."""
    outbox = Outbox(db)
    enqueue(db, outbox, "influxdb", outcomes(20))
    result = outbox.forward(SinkConfig(url=influx.url, database="no_such_database"))
    assert result.sent_lines == 0 and result.remaining_lines == 20
    assert result.error is not None and "HTTP 404" in result.error and "database not found" in result.error
    database = _new_database(influx)
    assert outbox.forward(sink_of(influx, database)).sent_lines == 20
    assert count_points(influx, database) == 20


def test_sinks_have_separate_queues(influx: InfluxServer, db: Database) -> None:
    a, b = _new_database(influx), _new_database(influx)
    outbox = Outbox(db)
    with db.transaction() as conn:
        outbox.enqueue_outcomes(conn, ["a", "b"], outcomes(30))
    assert outbox.forward(sink_of(influx, a, name="a")).sent_lines == 30
    assert outbox.pending("b") == 30
    assert outbox.forward(sink_of(influx, b, name="b")).sent_lines == 30
    assert count_points(influx, a) == count_points(influx, b) == 30


_FORWARDER = """
import json, sys
from porter.registry import Database
from porter.verify import Outbox, SinkConfig
url, namespace, sink_url, database, batch = sys.argv[1:6]
db = Database(url, namespace=namespace or None)
result = Outbox(db).forward(SinkConfig(url=sink_url, database=database), batch=int(batch))
print(json.dumps(result.__dict__))
"""


def _start_forwarder(db: Database, server: InfluxServer, database: str, batch: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PORTER_STOP_AT": "outbox_sent"}
    return subprocess.Popen(
        [sys.executable, "-c", _FORWARDER, db.url, db.namespace or "", server.url, database, str(batch)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _wait_stopped(process: subprocess.Popen[str]) -> None:
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "stopped at outbox_sent" in line:
            return
    out, _ = process.communicate()
    pytest.fail(f"the forwarder ended before its stop point: {''.join(seen)}{out}")


def _forward_when_free(outbox: Outbox, sink: SinkConfig, batch: int) -> ForwardResult:
    """Forward once the killed holder's lock is gone (PostgreSQL notices the closed connection soon after)."""
    for _ in range(2400):
        result = outbox.forward(sink, batch=batch)
        if not result.busy:
            return result
        time.sleep(0.025)
    pytest.fail("the killed forwarder's lock was never released")


def test_forwarder_killed_after_the_sink_accepted_resumes_without_loss_or_duplicates(
    influx: InfluxServer, db: Database
) -> None:
    """SIGKILL after InfluxDB answered 204 but before the batch left the outbox: it is sent again, and
    overwrites itself there (same series, same timestamp), so every measurement is stored once."""
    database = _new_database(influx)
    outbox = Outbox(db)
    sink = sink_of(influx, database)
    made = outcomes(7_000)
    for start in range(0, 7_000, 1_000):
        enqueue(db, outbox, "influxdb", made[start : start + 1_000])  # 7 rows of 1000 lines
    before = influx.points_written()

    forwarder = _start_forwarder(db, influx, database, batch=2_000)
    try:
        _wait_stopped(forwarder)
        # The first batch (2 rows) is in InfluxDB; the forwarder holds the sink: no one else sends.
        assert count_points(influx, database) == 2_000
        busy = outbox.forward(sink)
        assert busy.busy and busy.sent_lines == 0
    finally:
        forwarder.send_signal(signal.SIGKILL)
        forwarder.wait()
    assert forwarder.returncode == -signal.SIGKILL
    assert outbox.pending("influxdb") == 7_000  # killed before the delete: still queued

    resumed = _forward_when_free(outbox, sink, batch=2_000)

    assert resumed.ok and resumed.sent_lines == 7_000 and resumed.remaining_lines == 0
    assert influx.points_written() - before == 9_000  # the first batch went twice ...
    got = read_back(influx, database)
    assert len(got) == 7_000  # ... and is stored once: nothing lost, nothing duplicated
    assert sorted(p["time"] for p in got) == sorted(timestamp_ns(o.time) for o in made)


def test_forwarder_killed_while_the_sink_is_down_loses_nothing(
    own_influx: InfluxServer, db: Database
) -> None:
    """A forwarder killed mid-queue with the sink gone leaves the queue whole, in order."""
    database = _new_database(own_influx)
    outbox = Outbox(db)
    made = outcomes(4_000)
    for start in range(0, 4_000, 1_000):
        enqueue(db, outbox, "influxdb", made[start : start + 1_000])
    forwarder = _start_forwarder(db, own_influx, database, batch=1_000)
    try:
        _wait_stopped(forwarder)  # first row accepted
        own_influx.stop()
    finally:
        forwarder.send_signal(signal.SIGKILL)
        forwarder.wait()
    sink = sink_of(own_influx, database)
    down = _forward_when_free(outbox, sink, batch=1_000)
    assert down.error is not None and down.remaining_lines == 4_000
    assert outbox.queued_lines("influxdb") == [encode_outcome(o) for o in made]
    own_influx.start()
    assert outbox.forward(sink, batch=1_000).sent_lines == 4_000
    assert count_points(own_influx, database) == 4_000


# --- configuration --------------------------------------------------------------------------------


def test_sinks_come_from_the_repository_or_the_environment(tmp_path: Path) -> None:
    assert load_sinks(tmp_path, environ={}) == []
    (tmp_path / "verify-sinks.yaml").write_text(
        "sinks:\n"
        "  - name: sasquatch\n"
        "    url: http://127.0.0.1:8086/influxdb\n"
        "    database: lsst.verify\n"
        "    username: porter\n"
        "    password_env: SASQUATCH_PASSWORD\n"
        "    retention_policy: autogen\n",
        encoding="utf-8",
    )
    (sink,) = load_sinks(tmp_path, environ={"SASQUATCH_PASSWORD": "s3cret"})
    assert (sink.name, sink.database, sink.username, sink.password) == (
        "sasquatch",
        "lsst.verify",
        "porter",
        "s3cret",
    )
    assert sink.write_url == "http://127.0.0.1:8086/influxdb/write"
    assert sink.write_params() == {"db": "lsst.verify", "precision": "ns", "rp": "autogen"}
    assert "s3cret" not in repr(sink)
    with pytest.raises(SinkConfigError, match="SASQUATCH_PASSWORD, which is not set"):
        load_sinks(tmp_path, environ={})

    other = tmp_path / "elsewhere.yaml"
    other.write_text("sinks:\n  - {url: 'http://h:1', database: d, password: x}\n", encoding="utf-8")
    with pytest.raises(SinkConfigError, match=r"sinks\[0\]: unknown keys \['password'\].*password_env"):
        load_sinks(tmp_path, environ={SINKS_ENV: str(other)})
    other.write_text("sinks:\n  - {url: 'http://h:1', database: d}\n", encoding="utf-8")
    (sink,) = load_sinks(None, environ={SINKS_ENV: str(other)})
    assert (sink.name, sink.url, sink.auth()) == ("influxdb", "http://h:1", None)


def test_forwarder_result_is_json_ready() -> None:
    assert json.loads(json.dumps(ForwardResult("x").__dict__))["sink"] == "x"


# --- the store forwards what it records ----------------------------------------------------------


def test_measurements_stored_through_the_cli_are_forwarded(influx: InfluxServer, tmp_path: Path) -> None:
    """verify ingest with a verify-sinks.yaml queues every stored measurement; verify forward sends them once."""
    import json as json_module

    from typer.testing import CliRunner

    from porter.butler import DirectButler
    from porter.cli import app

    data = Path(__file__).parent / "data" / "verify"
    repo = tmp_path / "repo"
    DirectButler.create(repo).close()
    database = _new_database(influx)
    sinks = {"sinks": [{"name": "sasquatch", "url": influx.url, "database": database}]}
    (repo / "verify-sinks.yaml").write_text(json_module.dumps(sinks))  # YAML is a superset of JSON
    job = json_module.loads((data / "jobs" / "validate_drp_hsc.verify.json").read_text())
    job["meta"]["tract"] = 9813
    path = tmp_path / "job.verify.json"
    path.write_text(json_module.dumps(job))
    runner = CliRunner()
    result = runner.invoke(
        app, ["verify", "ingest", str(repo), str(path), "--metrics", str(data / "validate_drp"), "--json"]
    )
    assert result.exit_code == 0, result.output
    stored = json_module.loads(result.output)[0]["stored"]
    assert count_points(influx, database) == 0  # queued, not yet sent
    result = runner.invoke(app, ["verify", "forward", str(repo), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json_module.loads(result.output)
    assert (row["sink"], row["sent"], row["still queued"]) == ("sasquatch", stored, 0)
    points = read_back(influx, database)
    assert len(points) == stored
    am1 = next(p for p in points if p["measurement"] == "validate_drp.AM1")
    assert am1["tags"]["band"] == "r" and am1["tags"]["tract"] == "9813" and am1["fields"]["value"] == 12.84
    result = runner.invoke(app, ["verify", "forward", str(repo), "--json"])
    assert json_module.loads(result.output)[0]["sent"] == 0  # nothing twice
