"""porter: a data-release system for sky surveys.

The public API follows daf_butler's modern names, so a Rubin user's script
needs little more than a changed import::

    from porter import Butler
    butler = Butler.create("repo/")
    butler.import_("export.yaml")
    refs = butler.query_datasets("calexp", collections=["run"], where="band = 'r'")
"""

from .butler import Butler, FileDataset
from .dimensions import DataCoordinate, DimensionRecord, DimensionUniverse, Timespan
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .registry import CollectionInfo, CollectionType, DatasetRef, DatasetType

__version__ = "0.1.0"

__all__ = [
    "Butler",
    "CollectionInfo",
    "CollectionType",
    "DataCoordinate",
    "DatasetRef",
    "DatasetType",
    "DimensionRecord",
    "DimensionUniverse",
    "FileDataset",
    "Timespan",
    *_errors_all,
]
