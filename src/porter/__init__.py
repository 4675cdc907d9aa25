"""porter: a data-release system for sky surveys.

The public API follows daf_butler's modern names, so a Rubin user's script
needs little more than a changed import::

    from porter import Butler
    butler = Butler.create("repo/")
    butler.import_("export.yaml")
    refs = butler.query_datasets("calexp", collections=["run"], where="band = 'r'")

The names below are loaded on first use (PEP 562): ``import porter`` alone
costs nothing, so ``porter --help`` and every command that does not need a
butler start without importing SQLAlchemy, astropy, pyarrow or scipy.
``from porter import Butler`` and ``from porter import *`` work as before.
The exception family (``porter.errors``, light) is imported eagerly, so names
added there are re-exported without touching this file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them on demand
    from .butler import Butler, DeferredDatasetHandle, FileDataset
    from .dimensions import DataCoordinate, DimensionRecord, DimensionUniverse, Timespan
    from .registry import CollectionInfo, CollectionType, DatasetRef, DatasetType, RegistryDefaults

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Butler": ".butler",
    "FileDataset": ".butler",
    "DeferredDatasetHandle": ".butler",
    "DataCoordinate": ".dimensions",
    "DimensionRecord": ".dimensions",
    "DimensionUniverse": ".dimensions",
    "Timespan": ".dimensions",
    "CollectionInfo": ".registry",
    "CollectionType": ".registry",
    "DatasetRef": ".registry",
    "DatasetType": ".registry",
    "RegistryDefaults": ".registry",
}
"""Public name → the subpackage that defines it, imported when the name is first asked for."""

__all__ = [
    "Butler",
    "CollectionInfo",
    "CollectionType",
    "DataCoordinate",
    "DatasetRef",
    "DatasetType",
    "DeferredDatasetHandle",
    "DimensionRecord",
    "DimensionUniverse",
    "FileDataset",
    "RegistryDefaults",
    "Timespan",
    *_errors_all,
]


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
