"""Signed upload tickets: a put through the server in two requests, with no state kept between them.

``POST /api/v1/uploads`` checks everything that can be checked before any
byte moves (write access to the run, the dataset type, the data ID, that no
other dataset holds that data ID) and answers with an upload URL whose path is
a ticket: the dataset's UUID, type, data ID, run, formatter, size and checksum,
the user and an expiry, signed with the server key.  ``PUT`` to that URL
streams the bytes to a scratch file, verifies size and checksum against the
ticket, and files the dataset away with an atomic ingest.  Any worker can take
either request; a client that retries a PUT whose answer it lost gets the same
dataset back (its UUID is in the ticket), never a second one.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from ._signing import SignedURLError, Signer

__all__ = ["UploadTicket", "open_ticket", "seal_ticket"]


@dataclass(frozen=True)
class UploadTicket:
    """What one upload may deliver, and for whom."""

    dataset_id: str
    dataset_type: str
    data_id: dict[str, Any]
    run: str
    formatter: str
    size: int
    checksum: str
    user: str
    expires: int


def seal_ticket(signer: Signer, ticket: UploadTicket) -> str:
    """The ticket as URL-safe text, signed."""
    body = base64.urlsafe_b64encode(json.dumps(asdict(ticket), separators=(",", ":")).encode()).decode()
    return f"{body.rstrip('=')}.{signer.mac('upload', body.rstrip('='))}"


def open_ticket(signer: Signer, text: str, presenter: str | None, now: float | None = None) -> UploadTicket:
    """The ticket in ``text``; `SignedURLError` if it is forged, altered, expired or another user's."""
    body, _, mac = text.partition(".")
    if not body or not mac or not signer.verify(mac, "upload", body):
        raise SignedURLError("The upload URL's signature does not match: ask the server for a new one.")
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        ticket = UploadTicket(**data)
    except (ValueError, TypeError, binascii.Error):
        raise SignedURLError("Malformed upload URL: ask the server for a new one.") from None
    if (time.time() if now is None else now) > ticket.expires:
        raise SignedURLError("The upload URL has expired: ask the server for a new one.")
    if presenter != ticket.user:
        raise SignedURLError("This upload URL was issued to another user.")
    return ticket
