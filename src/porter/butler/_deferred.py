"""``butler.getDeferred(...)``: a dataset found now and read later, perhaps only in part.

Pipeline tasks and notebooks take handles to many large datasets (every
calexp overlapping a patch) and read each one only as far as they need —
a cut-out, a few columns, the WCS — or not at all.  The handle carries the
resolved reference, so reading it costs no further registry look-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core import DatasetRef
from ..dimensions import DataCoordinate

if TYPE_CHECKING:
    from ._butler import Butler

__all__ = ["DeferredDatasetHandle"]


class DeferredDatasetHandle:
    """A resolved dataset, read with `get` (daf_butler's ``DeferredDatasetHandle``).

    Parameters given when the handle was made (``parameters``) apply to
    every `get`; those given to `get` add to or override them.
    """

    __slots__ = ("butler", "parameters", "ref", "storageClass")

    def __init__(
        self,
        butler: Butler,
        ref: DatasetRef,
        parameters: Mapping[str, Any] | None = None,
        storage_class: str | None = None,
    ):
        self.butler = butler
        self.ref = ref
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.storageClass = storage_class

    def get(
        self,
        *,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        storageClass: str | None = None,
    ) -> Any:
        """Read the dataset, or one ``component`` of it, with the merged read ``parameters``."""
        ref = self.ref.makeComponentRef(component) if component is not None else self.ref
        merged = {**self.parameters, **(parameters or {})}
        return self.butler.get(
            ref, parameters=merged or None, storage_class=storageClass or self.storageClass
        )

    @property
    def dataId(self) -> DataCoordinate:
        return self.ref.data_id

    def __repr__(self) -> str:
        return f"DeferredDatasetHandle({self.ref!r}, parameters={self.parameters!r})"
