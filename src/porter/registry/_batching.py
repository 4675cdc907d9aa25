"""Batch sizes for set-based statements, and the helper that slices work into them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

__all__ = ["ID_BATCH", "ROW_BATCH", "batches"]

_T = TypeVar("_T")

ROW_BATCH = 20_000
"""Rows per bulk INSERT (bounds memory; the driver pages further on PostgreSQL)."""

ID_BATCH = 5_000
"""Values per ``IN (…)`` list: under SQLite's and PostgreSQL's parameter limits."""


def batches(items: Sequence[_T], size: int = ROW_BATCH) -> Iterator[Sequence[_T]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
