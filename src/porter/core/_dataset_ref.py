"""References to datasets: what a query returns and what I/O takes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

from ..dimensions import DataCoordinate
from ._dataset_type import DatasetType

__all__ = ["DatasetRef", "new_dataset_id_hexes"]


def new_dataset_id_hexes(n: int) -> list[str]:
    """``n`` new random (version 4) UUIDs as 32-digit hex strings.

    Generated in one batch from ``os.urandom``; building 10⁵ `uuid.UUID`
    objects one by one costs more than inserting them.
    """
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


class DatasetRef:
    """A dataset in a repository: its UUID, type, data ID and run.

    Two references are equal when they have the same UUID.  The `uuid.UUID`
    object is made on first access to `id`; bulk operations carry the hex
    form (`id_hex`).
    """

    __slots__ = ("_hex", "_id", "data_id", "dataset_type", "run")

    def __init__(
        self,
        dataset_type: DatasetType,
        data_id: DataCoordinate | Mapping[str, Any],
        run: str,
        id: uuid.UUID | str | None = None,
    ):
        self.dataset_type = dataset_type
        if not isinstance(data_id, DataCoordinate):
            data_id = DataCoordinate.standardize(data_id, dimensions=dataset_type.dimensions)
        self.data_id = data_id
        self.run = run
        if id is None:  # a new dataset (to ingest or put): a new random UUID
            id = new_dataset_id_hexes(1)[0]
        if isinstance(id, uuid.UUID):
            self._id: uuid.UUID | None = id
            self._hex = id.hex
        else:
            self._id = None
            self._hex = id.replace("-", "").lower() if len(id) != 32 else id

    @property
    def id(self) -> uuid.UUID:
        """The dataset's UUID."""
        if self._id is None:
            self._id = uuid.UUID(hex=self._hex)
        return self._id

    @property
    def id_hex(self) -> str:
        """The UUID as 32 lower-case hex digits (no dashes)."""
        return self._hex

    def expanded(self, data_id: DataCoordinate) -> DatasetRef:
        """This reference with ``data_id`` (the same values, with records attached) in place of its own."""
        if data_id != self.data_id:
            raise ValueError(f"{data_id} is not the data ID of {self}.")
        ref = DatasetRef(self.dataset_type, data_id, self.run, self._hex)
        ref._id = self._id
        return ref

    def makeComponentRef(self, component: str) -> DatasetRef:
        """A reference to one component of this dataset (same UUID, ``calexp.wcs``); `Butler.get` reads only it."""
        ref = DatasetRef(
            self.dataset_type.makeComponentDatasetType(component), self.data_id, self.run, self._hex
        )
        ref._id = self._id
        return ref

    def makeCompositeRef(self) -> DatasetRef:
        """The whole dataset a component reference belongs to."""
        ref = DatasetRef(self.dataset_type.makeCompositeDatasetType(), self.data_id, self.run, self._hex)
        ref._id = self._id
        return ref

    def isComponent(self) -> bool:
        return self.dataset_type.isComponent()

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
        return self._hex == other._hex

    def __hash__(self) -> int:
        return hash(self._hex)

    def __lt__(self, other: DatasetRef) -> bool:
        return (self.dataset_type.name, self.run, self.data_id) < (
            other.dataset_type.name,
            other.run,
            other.data_id,
        )

    def __repr__(self) -> str:
        return f"DatasetRef({self.dataset_type.name!r}, {self.data_id}, run={self.run!r}, id={self.id})"
