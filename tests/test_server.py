"""One behavioural suite for the local and the remote butler, against a real server on loopback.

The repository holds the real HSC RC2 subset's dimension records and, in two
runs and an embargoed one, ``src`` tables and ``summary`` dicts.  Every test
in the first part takes the ``butler`` fixture, which is a `DirectButler` on
the repository or a `RemoteButler` on a server serving it (with a small page
size, so that every query crosses pages): both must give the same answers and
raise the same exceptions.  The rest is the server's own: access control,
pagination under dropped connections, signed URLs, bad requests.

Runs on SQLite and PostgreSQL registries, and on file and S3 (emulator) datastores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet
import pytest

from conftest import _pg_url, drop_schema, load
from porter import Butler
from porter.butler import DirectButler, FileDataset, RemoteButler
from porter.core import DatasetRef
from porter.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictingDefinitionError,
    DatastoreError,
    EmptyQueryResultError,
    InvalidQueryError,
    MissingCollectionError,
    MissingDatasetTypeError,
)
from serving import Served, serving, token

RUN_A, RUN_B, EMBARGO, SCRATCH = "HSC/runs/a", "HSC/runs/b", "embargo/DP2/run", "u/alice/scratch"
CHAIN = "HSC/defaults"
DETECTORS = (57, 65, 73, 80, 86, 92)
"""Detectors the RC2 subset has regions for in several visits (records attach to their data IDs)."""


def table(visit: int, detector: int, run: str) -> pa.Table:
    """The src table put for one data ID: its rows say where they came from."""
    n = detector % 7 + 2
    return pa.table({"row": list(range(n)), "visit": [visit] * n, "run": [run] * n})


class World:
    """The repository, its server, and what was put where (the expected answers)."""

    def __init__(self, root: Path, served: Served, visits: list[int]):
        self.root = root
        self.served = served
        self.url = served.url
        self.visits = visits
        self.visits_a = visits[:5]
        self.visits_b = visits[3:6]  # two visits also in a: run b wins them through the chain
        self.embargoed = visits[6:8]
        accounts = served.accounts
        for user in ("admin", "alice", "bob", "carol"):
            accounts.add_user(user, by="test")
        accounts.add_group("survey", by="test")
        accounts.add_group("guests", by="test")
        accounts.add_member("survey", "alice", by="test")
        accounts.add_member("guests", "bob", by="test")
        accounts.grant("survey", "read", "HSC/*", by="test")
        accounts.grant("survey", "write", "u/alice/*", by="test")
        accounts.grant("guests", "read", RUN_A, by="test")
        accounts.grant("guests", "read", CHAIN, by="test")
        self.admin = token(accounts, "admin", "read", "write", "admin")
        self.alice = token(accounts, "alice", "read", "write")
        self.alice_read_only = token(accounts, "alice", "read")
        self.bob = token(accounts, "bob", "read")

    def expected_run(self, visit: int) -> str:
        """The run whose src a find-first search of the chain finds for ``visit``."""
        return RUN_B if visit in self.visits_b else RUN_A

    def remote(self, token: str | None = None, **kwargs: Any) -> RemoteButler:
        butler = Butler(self.url, token=token or self.admin, **kwargs)
        assert isinstance(butler, RemoteButler)
        return butler


@pytest.fixture(
    scope="module",
    params=[("sqlite", "file"), ("postgresql", "file"), ("sqlite", "s3"), ("postgresql", "s3")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    backend, store = request.param
    root = tmp_path_factory.mktemp(f"served-{backend}-{store}") / "repo"
    schema = f"t_{uuid.uuid4().hex[:12]}" if backend == "postgresql" else None
    if schema:
        request.getfixturevalue("pg_server")
    datastore = None
    if store == "s3":
        request.getfixturevalue("s3_server")
        datastore = f"s3://porter-test/{uuid.uuid4().hex[:12]}"
    butler = Butler.create(
        root, registry=_pg_url() if schema else None, namespace=schema, datastore=datastore
    )
    try:
        load(butler, "hsc-rc2-subset.yaml")
        butler.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
        butler.register_dataset_type("summary", ["instrument", "visit"], "StructuredDataDict")
        regions: dict[int, set[int]] = {}
        for r in butler.query_dimension_records("visit_detector_region", instrument="HSC"):
            regions.setdefault(r.data_id["visit"], set()).add(r.data_id["detector"])
        visits = sorted(v for v, ds in regions.items() if set(DETECTORS) <= ds)[:8]
        assert len(visits) == 8
        for run, vs in ((RUN_A, visits[:5]), (RUN_B, visits[3:6]), (EMBARGO, visits[6:8])):
            for v in vs:
                for d in DETECTORS:
                    butler.put(table(v, d, run), "src", instrument="HSC", visit=v, detector=d, run=run)
                butler.put({"visit": v, "run": run}, "summary", instrument="HSC", visit=v, run=run)
        butler.collections.register(SCRATCH)
        butler.collections.redefine_chain(CHAIN, [RUN_B, RUN_A])
        butler.close()
        with serving(root) as served:
            yield World(root, served, visits)
    finally:
        if schema:
            drop_schema(_pg_url(), schema)


@pytest.fixture(params=["direct", "remote"])
def butler(request: pytest.FixtureRequest, world: World) -> Iterator[Butler]:
    """The same repository through either implementation, default collection the chain."""
    if request.param == "direct":
        opened: Butler = Butler(world.root, collections=CHAIN)
        assert isinstance(opened, DirectButler)
    else:
        opened = world.remote(collections=CHAIN, page_size=7)
    yield opened
    opened.close()


# --- one suite, both butlers ------------------------------------------------------------------------


def test_find_first_through_a_chain(butler: Butler, world: World) -> None:
    refs = butler.query_datasets("src")
    assert len(refs) == len(set(world.visits_a) | set(world.visits_b)) * len(DETECTORS)
    assert len({r.id for r in refs}) == len(refs)
    for ref in refs:
        assert ref.run == world.expected_run(ref.data_id["visit"])
        assert ref.data_id["band"]  # implied values come with the refs


def test_all_datasets_without_find_first(butler: Butler, world: World) -> None:
    refs = butler.query_datasets("src", [RUN_A, RUN_B], find_first=False)
    assert len(refs) == (len(world.visits_a) + len(world.visits_b)) * len(DETECTORS)
    assert len({r.id for r in refs}) == len(refs)


def test_where_bind_and_keyword_constraints(butler: Butler, world: World) -> None:
    v = world.visits_b[0]
    wanted = list(DETECTORS[1::2])
    refs = butler.query_datasets("src", where="visit = :v AND detector IN (:ds)", bind={"v": v, "ds": wanted})
    assert sorted(r.data_id["detector"] for r in refs) == wanted
    assert {r.run for r in refs} == {RUN_B}
    refs = butler.query_datasets(
        "src", detector=DETECTORS[2], where="visit >= :low", bind={"low": world.visits_a[2]}
    )
    assert sorted(r.data_id["visit"] for r in refs) == sorted(
        v for v in set(world.visits_a) | set(world.visits_b) if v >= world.visits_a[2]
    )


def test_order_by_and_limit(butler: Butler, world: World) -> None:
    refs = butler.query_datasets("src", order_by=["-visit", "detector"])
    keys = [(r.data_id["visit"], r.data_id["detector"]) for r in refs]
    assert keys == sorted(keys, key=lambda k: (-k[0], k[1]))
    first = butler.query_datasets("src", order_by=["-visit", "detector"], limit=10)
    assert [r.id for r in first] == [r.id for r in refs[:10]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        capped = butler.query_datasets("src", order_by=["-visit", "detector"], limit=-4)
    assert [r.id for r in capped] == [r.id for r in refs[:4]]
    assert any("4" in str(w.message) for w in caught)
    assert butler.query_datasets("src", limit=0) == []


def test_data_ids_and_dimension_records(butler: Butler, world: World) -> None:
    ids = butler.query_data_ids(["visit"], datasets="summary", collections=[RUN_A], instrument="HSC")
    assert sorted(d["visit"] for d in ids) == sorted(world.visits_a)
    assert all(d["band"] for d in ids)
    records = butler.query_dimension_records("detector", instrument="HSC", order_by="-detector", limit=9)
    assert [r.id for r in records] == sorted((r.id for r in records), reverse=True)
    assert len(records) == 9 and all(r.full_name for r in records)
    visits = butler.query_dimension_records(
        "visit", instrument="HSC", where="visit IN (:vs)", bind={"vs": world.visits[:3]}
    )
    assert sorted(r.id for r in visits) == world.visits[:3]
    assert all(r.region is not None and r.timespan is not None for r in visits)


def test_records_attached_to_refs(butler: Butler, world: World) -> None:
    refs = butler.query_datasets(
        "src", with_dimension_records=True, where="detector = :d", bind={"d": DETECTORS[0]}
    )
    for ref in refs:
        assert ref.data_id.records["visit"].id == ref.data_id["visit"]
        assert ref.data_id.records["detector"].full_name


def test_find_dataset_get_and_partial_reads(butler: Butler, world: World) -> None:
    v = world.visits_b[-1]
    ref = butler.find_dataset("src", instrument="HSC", visit=v, detector=DETECTORS[4])
    assert ref is not None and ref.run == RUN_B
    assert (
        butler.find_dataset("src", instrument="HSC", visit=world.embargoed[0], detector=DETECTORS[4]) is None
    )
    got = butler.get(ref)
    assert got.equals(table(v, DETECTORS[4], RUN_B))
    assert butler.get(
        "src", instrument="HSC", visit=v, detector=DETECTORS[4], parameters={"columns": ["run"]}
    ).column_names == ["run"]
    assert butler.get("summary", visit=v, instrument="HSC") == {"visit": v, "run": RUN_B}
    again = butler.get_dataset(ref.id)
    assert again is not None and again.run == RUN_B and again.data_id["detector"] == DETECTORS[4]
    assert butler.get_dataset(uuid.uuid4()) is None
    assert butler.exists(ref) and not butler.exists(
        "src", instrument="HSC", visit=world.embargoed[0], detector=0
    )


def test_collections_and_dataset_types(butler: Butler, world: World) -> None:
    assert set(butler.collections.query("HSC/*")) == {RUN_A, RUN_B, CHAIN}
    assert list(butler.collections.get_info(CHAIN).children) == [RUN_B, RUN_A]
    assert {t.name for t in butler.query_dataset_types()} == {"src", "summary"}
    assert butler.get_dataset_type("src").storage_class_name == "ArrowTable"


def test_the_same_exceptions(butler: Butler, world: World) -> None:
    with pytest.raises(MissingDatasetTypeError, match="Did you mean 'src'"):
        butler.query_datasets("srcc")
    with pytest.raises(MissingCollectionError):
        butler.query_datasets("src", ["HSC/runs/zzz"])
    with pytest.raises(InvalidQueryError):
        butler.query_datasets("src", where="visit = = 3")
    with pytest.raises(InvalidQueryError):
        butler.query_datasets("src", where="no_such_thing = 3")
    with pytest.raises(EmptyQueryResultError):
        butler.query_datasets("src", where="detector = 99")
    assert butler.query_datasets("src", where="detector = 99", explain=False) == []


def test_sql_looking_input_is_data(butler: Butler, world: World) -> None:
    with pytest.raises(InvalidQueryError):
        butler.query_datasets("src", where="visit = 1; DROP TABLE dataset")
    assert butler.query_datasets("src", where="band = :b", bind={"b": "r' OR '1'='1"}, explain=False) == []
    assert len(butler.query_datasets("src")) > 0  # nothing was dropped


# --- pagination ---------------------------------------------------------------------------------------


class DroppingTransport(httpx.HTTPTransport):
    """Loses every ``every``-th response after the server answered it (a connection dropped mid-reply)."""

    def __init__(self, every: int):
        super().__init__()
        self.every = every
        self.calls = 0
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        response = super().handle_request(request)
        if self.calls % self.every == 0:
            response.close()
            self.dropped += 1
            raise httpx.ReadError("connection reset by peer (test)", request=request)
        return response


def test_pages_resume_after_dropped_connections_exactly_once(world: World) -> None:
    expected = world.remote(collections=CHAIN, page_size=1000).query_datasets("src", order_by=["visit"])
    transport = DroppingTransport(every=3)
    flaky = Butler(world.url, token=world.admin, collections=CHAIN, page_size=4, transport=transport)
    got = flaky.query_datasets("src", order_by=["visit"])
    assert transport.dropped >= 3
    assert [r.id for r in got] == [r.id for r in expected]


def test_a_cursor_belongs_to_its_query(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.admin}"}
    body = {"dataset_type": "src", "collections": [CHAIN], "page_size": 5}
    first = httpx.post(f"{world.url}/api/v1/query/datasets", json=body, headers=headers).json()
    assert len(first["rows"]) == 5 and first["next_cursor"]
    other = {**body, "where": "detector = 1", "cursor": first["next_cursor"]}
    answer = httpx.post(f"{world.url}/api/v1/query/datasets", json=other, headers=headers)
    assert answer.status_code == 422 and "another query" in answer.json()["message"]
    junk = httpx.post(f"{world.url}/api/v1/query/datasets", json={**body, "cursor": "!!"}, headers=headers)
    assert junk.status_code == 422 and "Malformed cursor" in junk.json()["message"]
    big = httpx.post(f"{world.url}/api/v1/query/datasets", json={**body, "page_size": 10**9}, headers=headers)
    assert big.status_code == 200 and len(big.json()["rows"]) <= 10_000


# --- access -------------------------------------------------------------------------------------------


def test_tokens_are_required_and_checked(world: World) -> None:
    api = f"{world.url}/api/v1/collections"
    assert httpx.get(api).status_code == 401
    assert httpx.get(api, headers={"Authorization": "Bearer porter_nope_nope"}).status_code == 401
    assert httpx.get(api, headers={"Authorization": f"Basic {world.alice}"}).status_code == 401
    with pytest.raises(AuthenticationError):
        world.remote(token="porter_0000_1111")


def test_a_read_only_token_cannot_write(world: World) -> None:
    with pytest.raises(AccessDeniedError):
        world.remote(token=world.alice_read_only).collections.register("u/alice/new")
    assert world.remote(token=world.alice).collections.register("u/alice/new2") is True
    with pytest.raises(AccessDeniedError):
        world.remote(token=world.alice).collections.register("HSC/runs/c")


def test_unreadable_collections_do_not_exist(world: World) -> None:
    bob = world.remote(token=world.bob)
    assert set(bob.collections.query("*")) == {RUN_A, CHAIN}
    assert bob.collections.query("embargo/*") == []
    assert list(bob.collections.get_info(CHAIN).children) == [RUN_A]  # run b is hidden inside the chain
    with pytest.raises(MissingCollectionError) as hidden:
        bob.query_datasets("src", [EMBARGO])
    with pytest.raises(MissingCollectionError) as missing:
        bob.query_datasets("src", ["embargo/DP3/run"])
    assert str(hidden.value).replace(EMBARGO, "X") == str(missing.value).replace("embargo/DP3/run", "X")
    assert "embargo" not in str(hidden.value).replace(EMBARGO, "")
    with pytest.raises(MissingCollectionError):
        bob.collections.get_info(EMBARGO)
    # through the chain bob finds run a's datasets only, for every visit a has
    refs = bob.query_datasets("src", [CHAIN])
    assert {r.run for r in refs} == {RUN_A} and len(refs) == len(world.visits_a) * len(DETECTORS)
    # a dataset ID of the embargoed run reads as unknown; so does its download
    direct = Butler(world.root)
    hidden_ref = direct.query_datasets("src", [EMBARGO], instrument="HSC")[0]
    direct.close()
    assert bob.get_dataset(hidden_ref.id) is None
    answer = httpx.post(
        f"{world.url}/api/v1/get",
        json={"dataset_id": hidden_ref.id.hex},
        headers={"Authorization": f"Bearer {world.bob}"},
    )
    assert answer.status_code == 404 and EMBARGO not in answer.text
    assert world.remote().get_dataset(hidden_ref.id) is not None  # the admin sees it


def test_spoofed_identity_headers_are_ignored(world: World) -> None:
    headers = {"X-Auth-Request-User": "admin", "X-Auth-Request-Groups": "survey"}
    assert httpx.get(f"{world.url}/api/v1/collections", headers=headers).status_code == 401


def _signed_download(world: World, token_text: str) -> str:
    bob = world.remote(token=token_text)
    ref = bob.query_datasets("src", [RUN_A], limit=1)[0]
    answer = httpx.post(
        f"{world.url}/api/v1/get",
        json={"dataset_id": ref.id.hex},
        headers={"Authorization": f"Bearer {token_text}"},
    )
    assert answer.status_code == 200
    return str(answer.json()["url"])


def test_signed_urls_refuse_forgery(world: World) -> None:
    url = _signed_download(world, world.bob)
    if not url.startswith(world.url):  # S3: S3's own presigned URL, fetched without porter's token
        assert "Signature=" in url and "Expires=" in url
        assert httpx.get(url).status_code == 200
        return
    assert httpx.get(url).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Bearer {world.bob}"}).status_code == 200
    assert (
        httpx.get(url, headers={"Authorization": f"Bearer {world.alice}"}).status_code == 403
    )  # another user
    parts = httpx.URL(url)
    params = dict(parts.params)
    altered_user = parts.copy_merge_params({"user": "alice"})
    assert httpx.get(str(altered_user)).status_code == 403
    later = parts.copy_merge_params({"expires": str(int(params["expires"]) + 10_000)})
    assert httpx.get(str(later)).status_code == 403
    expired = parts.copy_merge_params({"expires": "1000"})
    assert httpx.get(str(expired)).status_code == 403
    other = str(parts).replace(parts.path.rsplit("/", 1)[1], uuid.uuid4().hex)
    assert httpx.get(other).status_code == 403
    assert httpx.get(f"{world.url}/files/..%2F..%2Fetc%2Fpasswd?user=&expires=1&signature=x").status_code in (
        403,
        404,
    )


def test_oversized_and_malformed_requests(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.admin}", "Content-Type": "application/json"}
    huge = b'{"dataset_type": "src", "where": "' + b"x" * (2 << 20) + b'"}'
    assert httpx.post(f"{world.url}/api/v1/query/datasets", content=huge, headers=headers).status_code == 413
    bad = httpx.post(f"{world.url}/api/v1/query/datasets", content=b"{not json", headers=headers)
    assert bad.status_code == 422 and "Malformed request" in bad.json()["message"]
    unknown = httpx.post(
        f"{world.url}/api/v1/query/datasets", json={"dataset_type": "src", "nope": 1}, headers=headers
    )
    assert unknown.status_code == 422
    assert httpx.get(f"{world.url}/api/v1/collections/..%2F..%2Fetc", headers=headers).status_code == 404


def test_service_endpoints(world: World) -> None:
    assert httpx.get(f"{world.url}/healthz").json() == {"status": "ok"}
    spec = httpx.get(f"{world.url}/openapi.json").json()
    assert "/api/v1/query/datasets" in spec["paths"]
    world.remote().query_datasets("src", CHAIN, limit=1)
    metrics = httpx.get(f"{world.url}/metrics").text
    assert 'porter_requests_total{endpoint="/api/v1/query/datasets",method="POST",status="200"}' in metrics
    assert "porter_active_queries" in metrics


# --- writes -------------------------------------------------------------------------------------------


def test_put_through_the_server(world: World) -> None:
    alice = world.remote(token=world.alice, run=SCRATCH + "/puts")
    v = world.visits[0]
    ref = alice.put(table(v, DETECTORS[0], "remote"), "src", instrument="HSC", visit=v, detector=DETECTORS[0])
    assert ref.run == SCRATCH + "/puts" and ref.data_id["band"]
    assert alice.get(ref).equals(table(v, DETECTORS[0], "remote"))
    direct = Butler(world.root)
    try:
        assert direct.get(ref).equals(table(v, DETECTORS[0], "remote"))  # stored like a local put
        assert direct.fsck(checksums=True).ok
    finally:
        direct.close()
    with pytest.raises(ConflictingDefinitionError):
        alice.put(table(v, 1, "again"), "src", instrument="HSC", visit=v, detector=DETECTORS[0])
    # the same ref again (a retried put) gives the same dataset, not a second one
    assert alice.put(table(v, DETECTORS[0], "remote"), ref) == ref
    assert len(alice.query_datasets("src", [SCRATCH + "/puts"])) == 1
    with pytest.raises(AccessDeniedError):
        world.remote(token=world.alice, run=RUN_A).put(
            table(v, 1, "x"), "src", instrument="HSC", visit=v, detector=DETECTORS[1]
        )
    with pytest.raises(AccessDeniedError):
        world.remote(token=world.alice_read_only).put(
            table(v, 1, "x"), "src", instrument="HSC", visit=v, detector=DETECTORS[1], run=SCRATCH + "/puts"
        )


def test_upload_tickets_refuse_tampering(world: World) -> None:
    alice = world.remote(token=world.alice)
    headers = {"Authorization": f"Bearer {world.alice}"}
    v = world.visits[1]
    body = {
        "dataset_id": uuid.uuid4().hex,
        "dataset_type": "summary",
        "data_id": {"instrument": "HSC", "visit": v},
        "run": SCRATCH + "/tickets",
        "formatter": "porter.datastore.formatters.JsonFormatter",
        "size": 2,
        "checksum": "xxh3_128:0",
    }
    answer = httpx.post(f"{world.url}/api/v1/uploads", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    url = answer.json()["upload_url"]
    assert httpx.put(url, content=b"{}", headers={"Authorization": f"Bearer {world.bob}"}).status_code in (
        403,
        401,
    )
    ticket = url.rsplit("/", 1)[1]
    forged = url.replace(ticket, ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB"))
    assert httpx.put(forged, content=b"{}", headers=headers).status_code == 403
    wrong = httpx.put(url, content=b"{}", headers=headers)  # the checksum in the ticket is not this body's
    assert wrong.status_code == 422 and "checksum" in wrong.json()["message"]
    assert alice.get_dataset(body["dataset_id"]) is None  # nothing was stored
    assert httpx.put(url, content=b"{}}", headers=headers).status_code == 422  # longer than announced


def test_collection_writes_and_remove_runs(butler: Butler, world: World) -> None:
    tag = uuid.uuid4().hex[:8]
    run, chain = f"u/alice/{tag}/run", f"u/alice/{tag}/chain"
    assert butler.collections.register(run) is True
    v = world.visits[2]
    butler.put({"visit": v, "tag": tag}, "summary", instrument="HSC", visit=v, run=run)
    butler.collections.redefine_chain(chain, [run, RUN_A])
    assert list(butler.collections.get_info(chain).children) == [run, RUN_A]
    butler.collections.remove_from_chain(chain, [RUN_A])
    butler.collections.extend_chain(chain, [RUN_B])
    butler.collections.prepend_chain(chain, RUN_A)
    assert list(butler.collections.get_info(chain).children) == [RUN_A, run, RUN_B]
    with pytest.raises(ConflictingDefinitionError, match="remove it from those chains"):
        butler.remove_runs([run])  # still in the chain: nothing removed
    assert butler.get("summary", instrument="HSC", visit=v, collections=[run]) == {"visit": v, "tag": tag}
    butler.collections.x_remove(chain)
    assert butler.remove_runs([run]) == 1
    assert butler.collections.query(f"u/alice/{tag}/*") == []
    butler.collections.register(run)  # daf_butler's camel-case names work on both butlers
    butler.put({"visit": v, "tag": tag}, "summary", instrument="HSC", visit=v, run=run)
    butler.pruneDatasets(butler.query_datasets("summary", run), purge=True, unstore=True)
    assert butler.query_datasets("summary", run, explain=False) == []
    butler.removeRuns([run])
    assert butler.collections.query(f"u/alice/{tag}/*") == []


def test_writes_need_write_grants(world: World) -> None:
    bob = world.remote(token=world.bob)
    with pytest.raises(AccessDeniedError):
        bob.remove_runs([RUN_A])
    with pytest.raises(AccessDeniedError):
        bob.collections.redefine_chain(CHAIN, [RUN_A])
    alice = world.remote(token=world.alice)
    with pytest.raises(AccessDeniedError):
        alice.collections.x_remove(CHAIN)
    with pytest.raises(MissingCollectionError):  # a chain may only hold what its writer can read
        alice.collections.redefine_chain("u/alice/sneaky", [EMBARGO])
    assert "u/alice/sneaky" not in world.remote().collections.query("u/alice/*")
    name = f"u/alice/audited-{uuid.uuid4().hex[:6]}"
    alice.collections.register(name)
    entries = world.served.accounts.audit_log(limit=20, action="register_collection")
    assert any(e.actor == "alice" and e.target == name for e in entries)


def test_the_remote_client_loads_no_database_layer(world: World) -> None:
    code = f"""
import sys
from porter import Butler
b = Butler({world.url!r}, token={world.admin!r}, collections={CHAIN!r})
refs = b.query_datasets("src", limit=3)
b.get(refs[0])
b.query_dimension_records("visit", instrument="HSC", limit=2)
heavy = sorted(m for m in ("sqlalchemy", "psycopg2", "porter.registry._db", "porter.datastore._datastore") if m in sys.modules)
print(len(refs), heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["3", "[]"]


def test_the_cli_queries_a_server(world: World) -> None:
    env = {**os.environ, "PORTER_TOKEN": world.bob}
    run = [sys.executable, "-m", "porter.cli"]
    remote = subprocess.run(
        [*run, "query-datasets", world.url, "src", "-c", CHAIN, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert remote.returncode == 0, remote.stderr
    rows = json.loads(remote.stdout)
    assert {r["run"] for r in rows} == {RUN_A} and len(rows) == len(world.visits_a) * len(DETECTORS)
    listing = subprocess.run(
        [*run, "query-collections", world.url, "--json"], env=env, capture_output=True, text=True, check=True
    )
    assert {r["name"] for r in json.loads(listing.stdout)} == {RUN_A, CHAIN}
    hidden = subprocess.run(
        [*run, "query-datasets", world.url, "src", "-c", EMBARGO], env=env, capture_output=True, text=True
    )
    assert hidden.returncode != 0 and "not found" in hidden.stderr


def test_public_collections_and_embargo_dates(world: World) -> None:
    import datetime

    accounts = world.served.accounts
    assert httpx.get(f"{world.url}/api/v1/collections").status_code == 401  # nothing public yet
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    accounts.set_public(RUN_A, by="test")
    accounts.set_public("embargo/*", after=later, by="test")  # public once the embargo ends, not before
    try:
        anonymous = Butler(world.url, token=None)
        assert set(anonymous.collections.query("*")) == {RUN_A}
        assert len(anonymous.query_datasets("src", [RUN_A])) == len(world.visits_a) * len(DETECTORS)
        with pytest.raises(MissingCollectionError):
            anonymous.query_datasets("src", [EMBARGO])
        with pytest.raises(AuthenticationError):
            anonymous.collections.register("u/anyone")
    finally:
        accounts.remove_public(RUN_A, by="test")
        accounts.remove_public("embargo/*", by="test")
        accounts.invalidate()


def test_trusted_proxy_headers(world: World, tmp_path: Path) -> None:
    headers = {"X-Auth-Request-User": "alice", "X-Auth-Request-Groups": "survey"}
    with serving(world.root, trusted_proxies=["127.0.0.1/32"]) as proxied:
        answer = httpx.get(f"{proxied.url}/api/v1/collections", headers=headers)
        assert answer.status_code == 200
        assert {c["name"] for c in answer.json()} >= {RUN_A, RUN_B, CHAIN} and EMBARGO not in answer.text
    with serving(world.root, trusted_proxies=["10.0.0.0/8"]) as elsewhere:  # our address is not trusted
        assert httpx.get(f"{elsewhere.url}/api/v1/collections", headers=headers).status_code == 401


def test_transfer_from_a_local_repository(world: World, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    run = f"u/alice/transfer-{tag}"
    source = Butler.create(tmp_path / "local")
    try:
        load(source, "hsc-rc2-subset.yaml")
        source.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
        source.register_dataset_type("calexp_summary", ["instrument", "visit"], "StructuredDataDict")
        refs = [
            source.put(table(v, d, run), "src", instrument="HSC", visit=v, detector=d, run=run)
            for v in world.visits[:2]
            for d in DETECTORS[:2]
        ]
        refs.append(
            source.put({"new": "type"}, "calexp_summary", instrument="HSC", visit=world.visits[0], run=run)
        )
        alice = world.remote(token=world.alice)
        moved = alice.transfer_from(source, refs)
        assert sorted(r.id for r in moved) == sorted(r.id for r in refs)  # UUIDs kept
        assert alice.get_dataset_type("calexp_summary").storage_class_name == "StructuredDataDict"
        for ref in refs[:4]:
            assert alice.get(ref).equals(source.get(ref))
        again = alice.transfer_from(source, refs)  # finished already: nothing is stored twice
        assert sorted(r.id for r in again) == sorted(r.id for r in refs)
        assert len(alice.query_datasets("src", [run])) == 4
        with pytest.raises(AccessDeniedError):
            world.remote(token=world.bob).transfer_from(source, refs)
    finally:
        source.close()


def test_a_retried_write_with_its_idempotency_key_is_done_once(world: World) -> None:
    alice = world.remote(token=world.alice)
    run = f"u/alice/once-{uuid.uuid4().hex[:6]}"
    alice.put({"x": 1}, "summary", instrument="HSC", visit=world.visits[0], run=run)
    headers = {"Authorization": f"Bearer {world.alice}", "Idempotency-Key": uuid.uuid4().hex}
    first = httpx.post(f"{world.url}/api/v1/remove-runs", json={"names": [run]}, headers=headers)
    retry = httpx.post(f"{world.url}/api/v1/remove-runs", json={"names": [run]}, headers=headers)
    assert first.status_code == retry.status_code == 200 and first.json() == retry.json() == {"removed": 1}
    fresh = {**headers, "Idempotency-Key": uuid.uuid4().hex}  # a new request, not a retry: the run is gone
    assert (
        httpx.post(f"{world.url}/api/v1/remove-runs", json={"names": [run]}, headers=fresh).status_code == 404
    )
    other = {"Authorization": f"Bearer {world.admin}", "Idempotency-Key": headers["Idempotency-Key"]}
    assert (
        httpx.post(f"{world.url}/api/v1/remove-runs", json={"names": [run]}, headers=other).status_code == 404
    )


def test_ingest_files_in_the_datastore_area(world: World) -> None:
    direct = Butler(world.root)
    try:
        root = direct.datastore.root
        run = f"u/alice/ingest-{uuid.uuid4().hex[:6]}"
        v = world.visits[3]
        data = table(v, DETECTORS[5], run)
        scratch = Path(world.root) / "scratch.parq"
        pa.parquet.write_table(data, scratch)
        relative = f"incoming/{uuid.uuid4().hex[:8]}.parq"
        root.join(relative).upload(scratch)
        scratch.unlink()
        src = direct.get_dataset_type("src")
        ref = DatasetRef(src, {"instrument": "HSC", "visit": v, "detector": DETECTORS[5]}, run)
    finally:
        direct.close()
    alice = world.remote(token=world.alice)
    (stored,) = alice.ingest(FileDataset(relative, ref))
    assert stored.id == ref.id and alice.get(stored).equals(data)
    for bad in ("../../../etc/passwd", "/etc/passwd", "incoming/../../x.parq"):
        other = DatasetRef(src, {"instrument": "HSC", "visit": v, "detector": DETECTORS[4]}, run)
        with pytest.raises(DatastoreError, match="Refused path"):
            alice.ingest(FileDataset(bad, other))
    with pytest.raises(AccessDeniedError):
        world.remote(token=world.bob).ingest(
            FileDataset(relative, DatasetRef(src, dict(ref.data_id.required), "u/bob/x"))
        )


def test_export_and_import_are_for_admins(world: World, tmp_path: Path) -> None:
    admin = world.remote()
    path = admin.export(tmp_path / "a.yaml", collections=[RUN_A], dataset_types=["summary"])
    text = path.read_text()
    assert "summary" in text and RUN_A in text
    with pytest.raises(AccessDeniedError):
        world.remote(token=world.alice).export(tmp_path / "b.yaml", collections=[RUN_A])
    with pytest.raises(AccessDeniedError):
        world.remote(token=world.alice).import_(path)
    counts = admin.import_(path)  # everything in it is there already: nothing changes, nothing fails
    assert isinstance(counts, dict)
    assert len(admin.query_datasets("summary", [RUN_A])) == len(world.visits_a)


def test_transfer_from_a_server_into_a_local_repository(world: World, tmp_path: Path) -> None:
    bob = world.remote(token=world.bob)
    refs = bob.query_datasets(
        "src", [RUN_A], where="detector = :d", bind={"d": DETECTORS[1]}, instrument="HSC"
    )
    mine = Butler.create(tmp_path / "mine")
    try:
        moved = mine.transfer_from(bob, refs)
        assert sorted(r.id for r in moved) == sorted(r.id for r in refs)
        for ref in refs:
            assert mine.get(ref).equals(bob.get(ref))
        assert mine.transfer_from(bob, refs) == refs  # already here: nothing copied twice
        assert len(mine.query_datasets("src", [RUN_A])) == len(refs)
        assert mine.fsck(checksums=True).clean
    finally:
        mine.close()


def test_get_uri(butler: Butler, world: World) -> None:
    ref = butler.find_dataset("src", instrument="HSC", visit=world.visits_a[0], detector=DETECTORS[0])
    assert ref is not None
    uri = butler.get_uri(ref)
    assert uri.getExtension() == ".parq" and str(ref.data_id["visit"]) in uri.basename()
    data = uri.read()
    assert len(data) == uri.size() and pa.parquet.read_table(pa.BufferReader(data)).equals(butler.get(ref))
    refs = butler.query_datasets("src", RUN_A, instrument="HSC")[:3]
    many = butler.get_many_uris(refs)  # both butlers, daf_butler's name
    assert set(many) == set(refs) and all(many[r].read() == butler.get_uri(r).read() for r in refs)


def test_small_files_come_inline_large_ones_by_signed_url(world: World) -> None:
    alice = world.remote(token=world.alice, run=f"u/alice/big-{uuid.uuid4().hex[:6]}")
    v = world.visits[4]
    big = pa.table(
        {"x": list(range(200_000)), "y": [float(i) for i in range(200_000)]}
    )  # > 256 KiB as Parquet
    ref = alice.put(big, "src", instrument="HSC", visit=v, detector=DETECTORS[3])
    small = alice.put(
        table(v, DETECTORS[2], "small"), "src", instrument="HSC", visit=v, detector=DETECTORS[2]
    )
    headers = {"Authorization": f"Bearer {world.alice}"}
    answers = [
        httpx.post(
            f"{world.url}/api/v1/get", json={"dataset_id": r.id_hex, "inline": True}, headers=headers
        ).json()
        for r in (ref, small)
    ]
    assert "content" not in answers[0] and "content" in answers[1]
    assert alice.get(ref).equals(big) and alice.get(small).equals(table(v, DETECTORS[2], "small"))
    assert alice.get(ref, parameters={"columns": ["y"]}).column_names == ["y"]


def test_the_cli_writes_through_a_server(world: World) -> None:
    env = {**os.environ, "PORTER_TOKEN": world.alice}
    run = [sys.executable, "-m", "porter.cli"]
    tag = uuid.uuid4().hex[:6]
    chain, scratch = f"u/alice/cli-{tag}", f"u/alice/cli-{tag}-run"
    alice = world.remote(token=world.alice)
    alice.put({"cli": tag}, "summary", instrument="HSC", visit=world.visits[0], run=scratch)
    made = subprocess.run(
        [*run, "collection-chain", world.url, chain, scratch, RUN_A], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert list(alice.collections.get_info(chain).children) == [scratch, RUN_A]
    subprocess.run(
        [*run, "collection-chain", world.url, chain, "--mode", "pop"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert list(alice.collections.get_info(chain).children) == [RUN_A]
    gone = subprocess.run(
        [*run, "remove-runs", world.url, scratch, "--no-confirm"], env=env, capture_output=True, text=True
    )
    assert gone.returncode == 0 and "Removed 1 run(s) and 1 dataset(s)" in gone.stdout, (
        gone.stdout + gone.stderr
    )
    refused = subprocess.run(
        [*run, "remove-runs", world.url, RUN_A, "--no-confirm"], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "may not write" in refused.stderr


def test_deferred_reads(butler: Butler, world: World) -> None:
    v = world.visits_b[0]
    handle = butler.getDeferred(
        "src", instrument="HSC", visit=v, detector=DETECTORS[1], parameters={"columns": ["row"]}
    )
    assert handle.ref.run == RUN_B
    assert handle.get().column_names == ["row"]
    assert handle.get(parameters={"columns": ["visit", "run"]}).column_names == ["visit", "run"]


def test_default_collections_that_do_not_exist_are_ignored_for_defaults(butler: Butler, world: World) -> None:
    """As daf_butler: governor defaults come from the default collections that exist; the others are ignored."""
    if isinstance(butler, RemoteButler):
        again = world.remote(collections=[CHAIN, "no/such/run"])
    else:
        again = Butler(world.root, collections=[CHAIN, "no/such/run"])
    try:
        assert again.find_dataset("src", visit=world.visits_a[0], detector=DETECTORS[0], collections=[CHAIN])
    finally:
        again.close()
