"""The URI layer on local files and on S3 (emulator): atomic and exclusive writes, ranged reads, listing, signed URLs."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

import pytest

from porter.datastore import S3URI, ArtifactExistsError, LocalURI, ResourceURI


@pytest.fixture
def base(tmp_path: Path, datastore_root: str | None) -> ResourceURI:
    return ResourceURI.from_string(datastore_root or tmp_path / "store")


def test_write_read_and_exclusive(base: ResourceURI) -> None:
    uri = base.join("a/b/c.bin")
    assert not uri.exists()
    uri.write(b"first")
    assert uri.read() == b"first" and uri.size() == 5
    with pytest.raises(ArtifactExistsError, match="does not overwrite"):
        uri.write(b"second", exclusive=True)
    assert uri.read() == b"first"
    uri.write(b"replaced")  # non-exclusive writes replace atomically
    assert uri.read() == b"replaced"
    assert uri.remove() and not uri.exists() and not uri.remove()


def test_ranged_reads_through_a_seekable_stream(base: ResourceURI) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    uri = base.join("big.bin")
    uri.write(data)
    with uri.open_read() as f:
        f.seek(300_000)
        assert f.read(10) == data[300_000:300_010]
        f.seek(-5, 2)
        assert f.read() == data[-5:]
        assert f.tell() == len(data)


def test_upload_walk_and_relative_paths(base: ResourceURI, tmp_path: Path) -> None:
    source = tmp_path / "local.txt"
    source.write_text("payload")
    for rel in ["x/1.txt", "x/y/2.txt", "3.txt"]:
        base.join(rel).upload(source)
    with pytest.raises(ArtifactExistsError):
        base.join("3.txt").upload(source, exclusive=True)
    found = {u.relative_to(base): size for u, size in base.walk()}
    assert found == {"x/1.txt": 7, "x/y/2.txt": 7, "3.txt": 7}
    assert source.exists()
    base.join("moved.txt").upload(source, move=True)
    assert not source.exists() and base.join("moved.txt").read() == b"payload"


def test_signed_url_reads_without_credentials(base: ResourceURI) -> None:
    uri = base.join(f"signed/{uuid.uuid4().hex}.txt")
    uri.write(b"hello sky")
    url = uri.signed_url(expires=60)
    if isinstance(uri, S3URI):
        assert url.startswith("http") and ("Signature" in url or "X-Amz-Signature" in url)
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"hello sky"


@pytest.mark.parametrize("bad", ["../escape", "/absolute", "a/../../b", ""])
def test_paths_cannot_leave_the_root(base: ResourceURI, bad: str) -> None:
    with pytest.raises(ValueError, match="relative path below the root"):
        base.join(bad)


def test_parsing() -> None:
    assert ResourceURI.from_string("s3://bucket/some/key") == S3URI("bucket", "some/key")
    assert isinstance(ResourceURI.from_string("/tmp/x"), LocalURI)
    assert ResourceURI.from_string("file:///tmp/a%20b").path == Path("/tmp/a b")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no bucket"):
        ResourceURI.from_string("s3:///key")
    with pytest.raises(ValueError, match="Unsupported URI scheme"):
        ResourceURI.from_string("gs://bucket/key")
