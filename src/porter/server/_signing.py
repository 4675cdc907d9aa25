"""HMAC-signed, expiring download URLs for a file datastore's bytes.

An S3 datastore hands out S3's own presigned URLs.  A file datastore has no
such service, so the server serves the bytes itself, behind a URL that names
the dataset, the user it was issued to (a leaked URL is traceable) and an
expiry, signed with the server's secret key.  The signature covers all three,
so altering any of them, or presenting the URL after it expired, is refused;
a URL carries no path, so it cannot be bent into reading another file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import PorterError

__all__ = ["SignedURLError", "Signer", "load_or_create_key"]

KEY_BYTES = 32


class SignedURLError(PorterError):
    """A signed URL that is forged, altered, expired or presented by another user (the server answers 403)."""


def load_or_create_key(path: Path) -> bytes:
    """The server's signing key, kept in ``path`` (created once, readable by its owner only).

    Every worker and replica of one repository reads the same file, so a URL
    signed by one is honoured by the others; `PORTER_SERVER_KEY` (hex) wins.
    """
    env = os.environ.get("PORTER_SERVER_KEY")
    if env:
        try:
            key = bytes.fromhex(env)
        except ValueError:
            raise PorterError(
                "PORTER_SERVER_KEY must be hex (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)."
            ) from None
        if len(key) < 16:
            raise PorterError("PORTER_SERVER_KEY is too short: use at least 16 bytes (32 hex digits).")
        return key
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(tmp, path)  # the first worker's key wins; the others read it
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


@dataclass(frozen=True)
class Signer:
    """Signs and checks download URLs with one key."""

    key: bytes
    lifetime: float = 3600.0
    """Seconds a URL stays valid."""

    def mac(self, *parts: str) -> str:
        """The signature of ``parts`` (joined unambiguously: no part may hold a newline)."""
        if any("\n" in p for p in parts):
            raise SignedURLError("A signed field may not hold a newline.")
        digest = hmac.new(self.key, "\n".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def verify(self, signature: str, *parts: str) -> bool:
        """Whether ``signature`` is this key's signature of ``parts`` (compared in constant time)."""
        try:
            expected = self.mac(*parts)
        except SignedURLError:
            return False
        return hmac.compare_digest(
            expected.encode(), signature.encode("utf-8", "replace")
        )  # any text: no TypeError

    def query(self, dataset_id: uuid.UUID, user: str | None, now: float | None = None) -> str:
        """The query string that signs a download of ``dataset_id`` for ``user`` (``""`` = anonymous)."""
        expires = int((time.time() if now is None else now) + self.lifetime)
        who = user or ""
        return f"user={who}&expires={expires}&signature={self.mac('download', dataset_id.hex, who, str(expires))}"

    def check(
        self,
        dataset_id: str,
        user: str,
        expires: str,
        signature: str,
        presenter: str | None,
        now: float | None = None,
    ) -> uuid.UUID:
        """The dataset a presented URL is good for; `SignedURLError` if it is not good at all.

        ``presenter`` is the user whose token came with the request (`None`
        without one): a URL issued to a user is honoured for that user only.
        """
        try:
            parsed = uuid.UUID(hex=dataset_id)
            expiry = int(expires)
        except ValueError:
            raise SignedURLError(
                "Malformed signed URL: ask the server for a new one (butler.get_uri)."
            ) from None
        if not self.verify(signature, "download", parsed.hex, user, str(expiry)):
            raise SignedURLError(
                "The URL's signature does not match: it was altered or not issued by this server."
            )
        if (time.time() if now is None else now) > expiry:
            raise SignedURLError("The signed URL has expired: ask the server for a new one.")
        if user and presenter is not None and presenter != user:
            raise SignedURLError("This signed URL was issued to another user.")
        return parsed
