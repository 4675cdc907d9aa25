"""Per-user limits of the server: concurrent queries over all workers, requests per minute, bytes per day.

The slot reservation is tested on the repository's real database (SQLite and
PostgreSQL) with threads racing for the last slot; the HTTP behaviour (429
with Retry-After, the client's retry, a daily quota that is not waited out)
against a real server on loopback.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import _pg_url, drop_schema
from porter import Butler
from porter.butler import DirectButler
from porter.errors import QueryTimeoutError, RateLimitedError
from porter.server import Limits, UserLimits
from serving import serving, small_repository, token


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    schema = None
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        butler = Butler.create(tmp_path / "repo", registry=_pg_url(), namespace=schema)
    else:
        butler = Butler.create(tmp_path / "repo")
    yield butler.registry.db
    butler.close()
    if schema:
        drop_schema(_pg_url(), schema)


def test_query_slots_are_reserved_atomically(database) -> None:  # type: ignore[no-untyped-def]
    limits = Limits(database, UserLimits(concurrent_queries=3))
    other_worker = Limits(database, UserLimits(concurrent_queries=3))  # a second process's view of the table
    held: set[int] = set()
    most = 0
    refused = 0
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        nonlocal most, refused
        start.wait()
        for _ in range(5):
            try:
                with (limits if i % 2 else other_worker).query_slot("alice"):
                    with lock:
                        held.add(threading.get_ident())
                        most = max(most, len(held))
                    with lock:
                        held.discard(threading.get_ident())
            except RateLimitedError:
                with lock:
                    refused += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most <= 3
    with limits.query_slot("alice"), limits.query_slot("alice"), limits.query_slot("alice"):
        with pytest.raises(RateLimitedError, match="3 queries running"), other_worker.query_slot("alice"):
            pass
        with other_worker.query_slot("bob"):  # limits are per user
            pass
    with limits.query_slot("alice"):  # all released
        pass


def test_a_crashed_workers_slot_frees_itself(database) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    limits = Limits(database, UserLimits(concurrent_queries=1, query_timeout=60), clock=lambda: now[0])
    slot = limits.query_slot("alice")
    slot.__enter__()  # never left: the worker died
    with pytest.raises(RateLimitedError), limits.query_slot("alice"):
        pass
    now[0] += 61
    with limits.query_slot("alice"):
        pass


def test_download_bytes_per_day(database) -> None:  # type: ignore[no-untyped-def]
    now = [1_800_000_000.0]
    limits = Limits(database, UserLimits(download_bytes_per_day=1000), clock=lambda: now[0])
    limits.count_download("alice", 600)
    with pytest.raises(RateLimitedError, match="600 of 1000") as refused:
        limits.count_download("alice", 600)
    assert 0 < refused.value.retry_after <= 86_400  # type: ignore[attr-defined]
    limits.count_download("bob", 600)
    now[0] += 86_400
    limits.count_download("alice", 600)


def test_limits_over_http(tmp_path: Path) -> None:
    refs = small_repository(tmp_path / "repo")
    with serving(tmp_path / "repo", requests_per_minute=8, download_bytes_per_day=300) as served:
        served.accounts.add_user("alice", by="test")
        served.accounts.add_group("g", by="test")
        served.accounts.add_member("g", "alice", by="test")
        served.accounts.grant("g", "read", "HSC/*", by="test")
        secret = token(served.accounts, "alice")
        headers = {"Authorization": f"Bearer {secret}"}
        answers = [httpx.get(f"{served.url}/api/v1/collections", headers=headers) for _ in range(10)]
        statuses = [a.status_code for a in answers]
        assert statuses[:8] == [200] * 8 and statuses[8] == 429
        assert int(answers[8].headers["Retry-After"]) >= 1
        assert "requests a minute" in answers[8].json()["message"]

    with serving(tmp_path / "repo", download_bytes_per_day=300) as served:
        served.accounts.grant("g", "read", "HSC/*", by="test")
        alice = Butler(served.url, token=secret, collections="HSC/runs/a")
        assert alice.get(refs[0])["visit"] == refs[0].data_id["visit"]
        with pytest.raises(RateLimitedError, match="allowed today"):
            alice.get(refs[1])  # a daily quota: refused at once, not waited out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_query_over_its_time_limit_is_stopped(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A limit already passed stops the query at its next statement, or when the database next checks."""
    schema = None
    if backend == "postgresql":
        request.getfixturevalue("pg_server")
        schema = f"t_{uuid.uuid4().hex[:12]}"
    small_repository(tmp_path / "repo", registry=_pg_url() if schema else None, namespace=schema)
    butler = Butler(tmp_path / "repo")
    try:
        assert isinstance(butler, DirectButler)
        every = butler.query_data_ids(["visit", "detector"], instrument="HSC", explain=False)
        assert len(every) > 1000  # big enough that the database checks the clock while it runs
        with butler.registry.db.time_limit(0), pytest.raises(QueryTimeoutError, match="limit of 0 s"):
            butler.query_data_ids(["visit", "detector"], instrument="HSC", explain=False)
        assert len(butler.query_data_ids(["visit", "detector"], instrument="HSC", explain=False)) == len(
            every
        )
    finally:
        butler.close()
        if schema:
            drop_schema(_pg_url(), schema)


def test_a_server_query_timeout_reaches_the_client(tmp_path: Path) -> None:
    small_repository(tmp_path / "repo")
    with serving(tmp_path / "repo", query_timeout=0) as served:
        served.accounts.add_user("alice", by="test")
        served.accounts.add_group("g", by="test")
        served.accounts.add_member("g", "alice", by="test")
        served.accounts.grant("g", "read", "*", by="test")
        alice = Butler(served.url, token=token(served.accounts, "alice"))
        with pytest.raises(QueryTimeoutError, match="ran longer than the limit"):
            alice.query_data_ids(["visit", "detector"], instrument="HSC")


def test_file_lock_slots_on_sqlite(tmp_path: Path) -> None:
    """SQLite repositories (one host) hold query slots as flocks: the same guarantees, no database write."""
    butler = Butler.create(tmp_path / "repo")
    slots = tmp_path / "slots"
    try:
        limits = Limits(butler.registry.db, UserLimits(concurrent_queries=2), slot_dir=slots)
        other_worker = Limits(butler.registry.db, UserLimits(concurrent_queries=2), slot_dir=slots)
        held: set[int] = set()
        most = 0
        lock = threading.Lock()
        start = threading.Barrier(6)

        def worker(i: int) -> None:
            nonlocal most
            start.wait()
            for _ in range(20):
                try:
                    with (limits if i % 2 else other_worker).query_slot("alice"):
                        with lock:
                            held.add(threading.get_ident())
                            most = max(most, len(held))
                        with lock:
                            held.discard(threading.get_ident())
                except RateLimitedError:
                    pass

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert most <= 2
        # A worker killed while it holds a slot: the kernel frees the slot with the process.
        code = (
            "import sys, time; from porter import Butler; from porter.server import Limits, UserLimits; "
            f"b = Butler({str(tmp_path / 'repo')!r}); "
            f"l = Limits(b.registry.db, UserLimits(concurrent_queries=1), slot_dir=__import__('pathlib').Path({str(slots)!r})); "
            "s = l.query_slot('carol'); s.__enter__(); print('held', flush=True); time.sleep(600)"
        )
        holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        one = Limits(butler.registry.db, UserLimits(concurrent_queries=1), slot_dir=slots)
        with pytest.raises(RateLimitedError), one.query_slot("carol"):
            pass
        holder.kill()
        holder.wait()
        with one.query_slot("carol"):
            pass
    finally:
        butler.close()
