"""Artifact checksums: every way porter hashes a file (whole, streamed, while writing) must agree.

fsck compares a file's checksum now with the one recorded when it was
stored; two code paths that disagreed by a byte would make every such
artifact look damaged.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from porter.datastore import _checksum
from porter.datastore._checksum import (
    Hasher,
    checksum_bytes,
    checksum_file,
    checksum_local_file,
    checksum_stream,
)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 64 bytes, so that small files cross the whole-file / streamed boundary (the default is 8 MiB)."""
    monkeypatch.setattr(_checksum, "_BLOCK", 64)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=5))
def test_every_way_of_hashing_a_file_agrees(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, cuts: list[int]
) -> None:
    path = tmp_path_factory.mktemp("sum") / "artifact.bin"
    path.write_bytes(data)
    expected = checksum_bytes(data)
    assert checksum_local_file(str(path)) == (len(data), expected)
    assert checksum_file(path) == expected
    assert checksum_stream(io.BytesIO(data)) == expected
    hasher = Hasher()  # in pieces, as a formatter hashes the blocks it writes
    start = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        hasher.update(memoryview(data)[start:cut])
        start = cut
    hasher.update(data[start:])
    assert hasher.checksum() == expected


def test_checksums_name_their_algorithm(tmp_path: Path) -> None:
    assert checksum_bytes(b"") != checksum_bytes(b"\0")
    assert checksum_bytes(b"porter").startswith("xxh3_128:") and len(checksum_bytes(b"porter")) == 9 + 32


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        checksum_local_file(str(tmp_path / "gone.fits"))
