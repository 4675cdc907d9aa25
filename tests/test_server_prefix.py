"""A server under a URL path prefix: ``porter serve REPO --path-prefix /repo``, ``Butler("http://host:port/repo")``.

The client resolves every request — queries and their later pages, signed
download and upload URLs — below the base URL, and sends its token to no URL
outside it.  A request whose prefix a reverse proxy stripped is answered too,
and the URLs it is handed still carry the prefix (the address the client
sees).  Against real servers on loopback: one in this process, and ``porter
serve`` in its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from porter import Butler
from porter.butler import DirectButler, RemoteButler
from porter.butler._remote_butler import server_base, within
from porter.errors import PorterError, RepositoryError, ServerError
from porter.server import Accounts, ServerConfig
from serving import serving, small_repository, token
from test_server_workers import Server

PREFIX = "/survey/dr1"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(base URL with the prefix, alice's read/write token, repository root); files never come inline."""
    root = tmp_path_factory.mktemp("prefix") / "repo"
    small_repository(root)
    with serving(root, path_prefix=PREFIX + "/", inline_bytes=0) as server:
        accounts = server.accounts
        accounts.add_user("alice", by="test")
        accounts.add_group("g", by="test")
        accounts.add_member("g", "alice", by="test")
        accounts.grant("g", "read", "*", by="test")
        accounts.grant("g", "write", "u/alice/*", by="test")
        yield server.url + PREFIX, token(accounts, "alice", "read", "write"), root


def test_queries_pages_downloads_and_uploads_go_below_the_prefix(served: tuple[str, str, Path]) -> None:
    base, secret, _ = served
    butler = Butler(base + "/", token=secret, collections="HSC/runs/a", page_size=1)
    assert isinstance(butler, RemoteButler) and butler.url == base
    refs = butler.query_datasets("summary")  # four pages of one row
    assert len(refs) == 4
    assert butler.get(refs[0])["visit"] == refs[0].data_id["visit"]  # through the signed URL
    uri = butler.get_uri(refs[1])
    assert str(uri).startswith(f"{base}/files/") and uri.read()
    ref = butler.put(
        {"visit": 0, "via": "prefix"},
        "summary",
        instrument="HSC",
        visit=refs[0].data_id["visit"],
        run="u/alice/prefixed",
    )
    assert butler.get(ref) == {"visit": 0, "via": "prefix"}
    butler.close()


def test_a_request_whose_prefix_a_proxy_stripped_is_answered_with_prefixed_urls(
    served: tuple[str, str, Path],
) -> None:
    base, secret, _ = served
    origin = base[: -len(PREFIX)]
    headers = {"Authorization": f"Bearer {secret}"}
    stripped = httpx.get(f"{origin}/api/v1/datasets/0", headers=headers)
    assert stripped.status_code == 404 and stripped.json()["error"] == "DatasetNotFoundError"
    ref = Butler(base, token=secret).query_datasets("summary", "HSC/runs/a", limit=1)[0]
    answer = httpx.post(f"{origin}/api/v1/get", json={"dataset_id": ref.id_hex}, headers=headers).json()
    assert answer["url"].startswith(f"{base}/files/{ref.id.hex}?")
    assert httpx.get(answer["url"], headers=headers).status_code == 200
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/openapi.json").status_code == 200


def test_the_token_goes_only_below_the_base_url() -> None:
    base = server_base("HTTP://Host:8080/repo/")
    assert base == "http://host:8080/repo"
    assert within("http://host:8080/repo/files/x?sig=1", base) and within("http://HOST:8080/repo", base)
    for elsewhere in (
        "http://host:8080/repository/files/x",  # a sibling path that only starts with the same letters
        "http://host:8080/other/files/x",
        "http://host:8080/repo/../other/x",
        "http://host:8080/repo/%2e%2e/other/x",
        "https://host:8080/repo/files/x",  # another scheme
        "http://host:8081/repo/files/x",  # another port
        "http://evil.example/repo/files/x",
        "http://host:8080@evil.example/repo/files/x",
    ):
        assert not within(elsewhere, base), elsewhere


def test_a_write_url_outside_the_base_is_refused(served: tuple[str, str, Path]) -> None:
    base, secret, _ = served
    butler = Butler(base, token=secret)
    assert isinstance(butler, RemoteButler)
    origin = base[: -len(PREFIX)]
    with pytest.raises(ServerError, match="outside it"):
        butler._call("PUT", f"{origin}/uploads/anything", content=b"x")
    butler.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://host:8080/repo?x=1",
        "http://host:8080/repo#top",
        "http://user:pw@host/repo",
        "http:///repo",
        "http://host/a/../b",
    ],
)
def test_bad_server_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(RepositoryError, match="is not a server URL"):
        Butler(url, token="x")


@pytest.mark.parametrize("prefix", ["repo", "/a/../b", "/a b", "/a?x"])
def test_bad_prefixes_are_refused_clearly(prefix: str, tmp_path: Path) -> None:
    with pytest.raises(PorterError, match="path prefix"):
        ServerConfig(repository=tmp_path, path_prefix=prefix)


def test_the_token_file_is_read_by_url_then_origin(
    served: tuple[str, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, secret, _ = served
    origin = base[: -len(PREFIX)]
    tokens = tmp_path / "tokens.yaml"
    monkeypatch.delenv("PORTER_TOKEN", raising=False)
    monkeypatch.setenv("PORTER_TOKEN_FILE", str(tokens))
    tokens.write_text(json.dumps({base: secret, origin: "porter_wrong"}))
    assert Butler(base).query_datasets("summary", "HSC/runs/a", limit=1)


def test_porter_serve_with_a_prefix_and_the_cli_against_it(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    small_repository(root)
    direct = DirectButler(root)
    accounts = Accounts(direct.registry.db)
    accounts.add_user("bob", by="test")
    accounts.set_public("HSC/*", by="test")
    secret = token(accounts, "bob", "read")
    direct.close()
    refused = subprocess.run(
        [sys.executable, "-m", "porter.cli", "serve", str(root), "--path-prefix", "../x"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "path prefix" in refused.stderr and "Traceback" not in refused.stderr
    server = Server(root, workers=1, extra=["--path-prefix", PREFIX])
    try:
        env = {**os.environ, "PORTER_TOKEN": secret}
        cli = [sys.executable, "-m", "porter.cli"]
        url = server.url + PREFIX
        found = subprocess.run(
            [*cli, "query-datasets", url, "summary", "-c", "HSC/runs/a", "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert found.returncode == 0, found.stderr
        assert len(json.loads(found.stdout)) == 4
        for command in (
            ["query-collections", url],
            ["query-dimension-records", url, "instrument"],
            ["query-dataset-types", url],
            ["query-data-ids", url, "instrument"],
        ):
            answer = subprocess.run([*cli, *command, "--json"], env=env, capture_output=True, text=True)
            assert answer.returncode == 0 and json.loads(answer.stdout), answer.stderr
    finally:
        server.kill()
