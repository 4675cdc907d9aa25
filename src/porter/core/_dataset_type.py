"""Dataset types: a name, the dimensions of its data IDs, and a storage class."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..dimensions import DimensionGroup, DimensionUniverse
from ..errors import DatasetTypeError

__all__ = ["DatasetType", "StorageClassName"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
"""daf_butler's rule for dataset type names (``\\Z``, not ``$``: a trailing newline is no part of a name)."""

DATASET_TYPE_NAME_LENGTH = 128
"""daf_butler's limit (``DATASET_TYPE_NAME_LENGTH``), components included."""


class StorageClassName(str):
    """A storage class as a dataset type names it: a string that also answers ``.name``.

    daf_butler's ``DatasetType.storageClass`` is a StorageClass object and
    scripts read ``datasetType.storageClass.name``; the registry knows only
    the name (the datastore owns the classes), so this string stands in.
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        return str(self)


class DatasetType:
    """The kind of a dataset, such as ``calexp`` or ``bias``.

    Parameters
    ----------
    name : `str`
        Letters, digits and underscores; dots separate components.
    dimensions : `DimensionGroup` or iterable of `str`
        The dimensions of its data IDs (implied ones are added).
    storage_class : `str`
        Name of the Python type its datasets are read as (``ExposureF``,
        ``ArrowTable`` …).
    universe : `DimensionUniverse`, optional
        Needed when ``dimensions`` are names.
    is_calibration : `bool`
        True if datasets of this type may be certified into CALIBRATION
        collections with validity ranges.
    """

    __slots__ = ("_is_calibration", "dimensions", "name", "storage_class_name")

    def __init__(
        self,
        name: str,
        dimensions: DimensionGroup | Iterable[str],
        storage_class: str | Any = None,
        universe: DimensionUniverse | None = None,
        is_calibration: bool = False,
        *,
        storageClass: str | Any = None,
        isCalibration: bool | None = None,
    ):
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise DatasetTypeError(
                f"Invalid dataset type name {name!r}: use letters, digits and underscores, "
                "starting with a letter (dots separate components)."
            )
        if len(name) > DATASET_TYPE_NAME_LENGTH:
            raise DatasetTypeError(
                f"Invalid dataset type name {name[:40]!r}… ({len(name)} characters): dataset type names have "
                f"at most {DATASET_TYPE_NAME_LENGTH} characters (as in daf_butler); choose a shorter one."
            )
        if not isinstance(dimensions, DimensionGroup):
            if universe is None:
                raise DatasetTypeError("A universe is needed to build a dataset type from dimension names.")
            dimensions = universe.conform(list(dimensions))
        storage_class = storage_class if storage_class is not None else storageClass
        if storage_class is not None and not isinstance(storage_class, str):
            storage_class = getattr(storage_class, "name", storage_class)  # a StorageClass object
        if isCalibration is not None:
            is_calibration = isCalibration
        if not storage_class or not isinstance(storage_class, str):
            raise DatasetTypeError(f"Dataset type {name!r} needs a storage class name (e.g. 'ExposureF').")
        self.name = name
        self.dimensions: DimensionGroup = dimensions
        self.storage_class_name = storage_class
        self._is_calibration = bool(is_calibration)

    @property
    def is_calibration(self) -> bool:
        return self._is_calibration

    def isCalibration(self) -> bool:
        return self._is_calibration

    @property
    def storageClass_name(self) -> str:
        return self.storage_class_name

    # --- components (``calexp.wcs``): a part of a dataset read on its own --------------------

    def nameAndComponent(self) -> tuple[str, str | None]:
        """``("calexp", "wcs")`` for ``calexp.wcs``; ``("calexp", None)`` for a whole dataset."""
        parent, _, component = self.name.partition(".")
        return parent, component or None

    def component(self) -> str | None:
        """The component this dataset type names, or None."""
        return self.nameAndComponent()[1]

    def isComponent(self) -> bool:
        return "." in self.name

    def makeComponentDatasetType(self, component: str, storage_class: str | None = None) -> DatasetType:
        """The dataset type of one component (``calexp`` → ``calexp.wcs``)."""
        return DatasetType(
            f"{self.name}.{component}",
            self.dimensions,
            storage_class or self.storage_class_name,
            is_calibration=self._is_calibration,
        )

    def makeCompositeDatasetType(self) -> DatasetType:
        """The whole dataset's type (``calexp.wcs`` → ``calexp``); the storage class is the parent's name only."""
        return DatasetType(
            self.nameAndComponent()[0],
            self.dimensions,
            self.storage_class_name,
            is_calibration=self._is_calibration,
        )

    @property
    def storageClass(self) -> StorageClassName:
        """The storage class, with ``.name`` as daf_butler's StorageClass has."""
        return StorageClassName(self.storage_class_name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dimensions": list(self.dimensions.names),
            "storage_class": self.storage_class_name,
            "is_calibration": self._is_calibration,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetType):
            return NotImplemented
        return (
            self.name == other.name
            and self.dimensions == other.dimensions
            and self.storage_class_name == other.storage_class_name
            and self._is_calibration == other._is_calibration
        )

    def __hash__(self) -> int:
        return hash((self.name, self.dimensions, self.storage_class_name, self._is_calibration))

    def __repr__(self) -> str:
        calib = ", is_calibration=True" if self._is_calibration else ""
        return f"DatasetType({self.name!r}, {self.dimensions}, {self.storage_class_name}{calib})"
