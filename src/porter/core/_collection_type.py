"""Kinds of collection, as in daf_butler."""

from __future__ import annotations

import enum

from ..errors import CollectionTypeError

__all__ = ["CollectionType"]


class CollectionType(enum.IntEnum):
    """What a collection is and how datasets get into it.

    RUN
        Where datasets are written; every dataset belongs to exactly one run.
    TAGGED
        A hand-picked set of datasets from any runs (at most one per dataset
        type and data ID).
    CHAINED
        An ordered search path through other collections.
    CALIBRATION
        Datasets associated with validity time ranges; looked up by time.
    """

    RUN = 1
    TAGGED = 2
    CHAINED = 3
    CALIBRATION = 4

    @classmethod
    def from_name(cls, name: str | CollectionType) -> CollectionType:
        """Parse ``"RUN"``/``"run"``/`CollectionType.RUN`, with a clear error otherwise."""
        if isinstance(name, CollectionType):
            return name
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise CollectionTypeError(
                f"Unknown collection type {name!r}; use one of {', '.join(t.name for t in cls)}."
            ) from None

    @classmethod
    def all(cls) -> frozenset[CollectionType]:
        return frozenset(cls)
