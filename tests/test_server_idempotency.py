"""Concurrent requests with one idempotency key run the write once; the others get its answer.

First on the repository's real database (SQLite and PostgreSQL), with two
stores (two workers' views) and threads: a request arriving while the first
is still writing waits for the first's answer; a failed write releases its key
so the retry runs; a dead worker's reservation is taken over.  Then over HTTP:
eight simultaneous requests with one key to a real server on loopback, every
answer the same and the write in the audit log once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import _pg_url, drop_schema
from porter import Butler
from porter.errors import MissingCollectionError
from porter.registry import Database
from porter.server import Accounts
from porter.server._idempotency import IdempotencyStore, KeyInUseError
from serving import serving, small_repository, token


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    schema = None
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        butler = Butler.create(tmp_path / "repo", registry=_pg_url(), namespace=schema)
    else:
        butler = Butler.create(tmp_path / "repo")
    yield butler.registry.db  # type: ignore[attr-defined]
    butler.close()
    if schema:
        drop_schema(_pg_url(), schema)


def test_a_request_arriving_during_the_write_waits_for_its_answer(database: Database) -> None:
    first, second = IdempotencyStore(database), IdempotencyStore(database)  # two workers
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []
    answers: dict[str, dict[str, Any]] = {}

    def slow() -> dict[str, Any]:
        runs.append("first")
        started.set()
        release.wait()
        return {"removed": 7}

    def again() -> dict[str, Any]:
        runs.append("second")
        return {"removed": 0}

    one = threading.Thread(target=lambda: answers.__setitem__("one", first.once("alice", "k1", slow)))
    one.start()
    started.wait()
    two = threading.Thread(target=lambda: answers.__setitem__("two", second.once("alice", "k1", again)))
    two.start()
    two.join(0.3)
    assert two.is_alive()  # waiting on the first, not running its own write
    release.set()
    one.join()
    two.join()
    assert runs == ["first"] and answers == {"one": {"removed": 7}, "two": {"removed": 7}}
    assert second.once("bob", "k1", again) == {"removed": 0}  # keys are per user


def test_many_threads_one_key_one_write(database: Database) -> None:
    stores = [IdempotencyStore(database) for _ in range(2)]
    count = [0]
    lock = threading.Lock()
    gate = threading.Barrier(8)
    answers: list[dict[str, Any]] = []

    def write() -> dict[str, Any]:
        with lock:
            count[0] += 1
            return {"n": count[0]}

    def request(i: int) -> None:
        gate.wait()
        answer = stores[i % 2].once("alice", "same", write)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count[0] == 1 and answers == [{"n": 1}] * 8


def test_a_failed_write_releases_its_key(database: Database) -> None:
    store = IdempotencyStore(database)

    def fails() -> dict[str, Any]:
        raise MissingCollectionError("no such run")

    with pytest.raises(MissingCollectionError):
        store.once("alice", "k", fails)
    assert store.once("alice", "k", lambda: {"ok": True}) == {"ok": True}  # the retry runs
    assert store.once("alice", "k", lambda: {"ok": False}) == {"ok": True}  # and is kept


def test_a_dead_workers_reservation_is_waited_for_then_taken_over(database: Database) -> None:
    now = [1000.0]
    dead = IdempotencyStore(database, clock=lambda: now[0])
    assert dead._reserve("alice", "k")  # reserved, then the worker died before answering
    impatient = IdempotencyStore(database, clock=lambda: now[0], wait=0.1, abandoned_after=60)
    with pytest.raises(KeyInUseError, match="still running"):
        impatient.once("alice", "k", lambda: {"ran": True})
    now[0] += 61
    assert impatient.once("alice", "k", lambda: {"ran": True}) == {"ran": True}


def test_simultaneous_http_requests_with_one_key_run_once(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    small_repository(root)
    with serving(root) as served:
        accounts: Accounts = served.accounts
        accounts.add_user("alice", by="test")
        accounts.add_group("g", by="test")
        accounts.add_member("g", "alice", by="test")
        accounts.grant("g", "write", "u/alice/*", by="test")
        secret = token(accounts, "alice", "read", "write")
        name = f"u/alice/once-{uuid.uuid4().hex[:6]}"
        headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": uuid.uuid4().hex}
        gate = threading.Barrier(8)
        answers: list[tuple[int, Any]] = []
        lock = threading.Lock()

        def post() -> None:
            with httpx.Client() as client:
                gate.wait()
                r = client.post(f"{served.url}/api/v1/collections", json={"name": name}, headers=headers)
            with lock:
                answers.append((r.status_code, r.json()))

        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [(200, {"created": True})] * 8  # without the reservation, 7 would say False
        logged = accounts.audit_log(action="register_collection", limit=1000)
        assert [e.target for e in logged].count(name) == 1
