"""`SignedHttpURI`: a dataset's file as a server hands it out — a signed, expiring, read-only HTTP URL.

What ``RemoteButler.get_uri`` returns, so code that inspects a ``get_uri()``
result (its name, extension, size, bytes) runs against a server as it does
locally.  It can be read while the signature is valid; it cannot be written.
"""

from __future__ import annotations

import io
import urllib.parse
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import DatastoreError
from ._uri import ResourceURI

__all__ = ["SignedHttpURI"]


class SignedHttpURI(ResourceURI):
    """A read-only file behind a signed URL; ``name`` is the stored file's name, ``size`` its recorded size."""

    scheme = "https"

    def __init__(self, url: str, name: str, size: int | None, client: Any = None):
        self.url = url
        self._name = name
        self._size = size
        self._client = client  # an httpx.Client to fetch with (None: a new connection per read)

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        return self._name

    @property
    def netloc(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def ospath(self) -> str:
        return urllib.parse.urlsplit(self.url).path

    def getExtension(self) -> str:
        suffixes = PurePosixPath(self._name).suffixes
        return (
            "".join(suffixes[-2:])
            if len(suffixes) > 1 and suffixes[-1] in (".gz", ".fz")
            else "".join(suffixes[-1:])
        )

    def join(self, relative: str) -> ResourceURI:
        raise DatastoreError(f"{self} is one signed file, not a directory.")

    def relative_to(self, root: ResourceURI) -> str | None:
        return None

    def _with_path(self, relative_to_root: str) -> str:
        raise DatastoreError(f"{self} is one signed file; it has no directory to name.")

    def exists(self) -> bool:
        return True  # the server signed it a moment ago; a read says otherwise if it is gone

    def size(self) -> int:
        if self._size is None:
            return len(self.read())
        return self._size

    def read(self) -> bytes:
        import httpx

        response = (self._client or httpx).get(self.url)
        if response.status_code == 404:
            raise FileNotFoundError(f"{self.url}: not found")
        if response.status_code >= 400:
            raise DatastoreError(
                f"Reading {self._name} failed ({response.status_code}): {response.text[:200]}"
            )
        return bytes(response.content)

    def open_read(self) -> IO[bytes]:
        return io.BytesIO(self.read())

    def write(self, data: bytes, *, exclusive: bool = False) -> None:
        raise DatastoreError(
            f"{self._name} behind a signed URL is read-only; write through the butler (put)."
        )

    def upload(self, source: Path, *, exclusive: bool = False, move: bool = False) -> None:
        self.write(b"")

    def remove(self) -> bool:
        self.write(b"")
        return False

    def walk(self) -> Iterator[tuple[ResourceURI, int]]:
        yield self, self.size()

    def signed_url(self, expires: int = 3600, *, method: str = "GET") -> str:
        if method != "GET":
            self.write(b"")
        return self.url
