"""References to datasets: what a query returns and what I/O takes."""

from __future__ import annotations

import uuid
from typing import Any

from ..dimensions import DataCoordinate
from ._dataset_type import DatasetType

__all__ = ["DatasetRef"]


class DatasetRef:
    """A dataset in a repository: its UUID, type, data ID and run.

    Two references are equal when they have the same UUID.
    """

    __slots__ = ("data_id", "dataset_type", "id", "run")

    def __init__(self, dataset_type: DatasetType, data_id: DataCoordinate, run: str, id: uuid.UUID):
        self.dataset_type = dataset_type
        self.data_id = data_id
        self.run = run
        self.id = id

    @property
    def dataId(self) -> DataCoordinate:
        return self.data_id

    @property
    def datasetType(self) -> DatasetType:
        return self.dataset_type

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (used by ``--json`` output)."""
        return {
            "id": str(self.id),
            "dataset_type": self.dataset_type.name,
            "run": self.run,
            "data_id": self.data_id.to_dict(),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetRef):
            return NotImplemented
        return self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __lt__(self, other: DatasetRef) -> bool:
        return (self.dataset_type.name, self.run, self.data_id) < (
            other.dataset_type.name,
            other.run,
            other.data_id,
        )

    def __repr__(self) -> str:
        return f"DatasetRef({self.dataset_type.name!r}, {self.data_id}, run={self.run!r}, id={self.id})"
