"""The dimension universe, data IDs, dimension records, regions and timespans.

This is the bottom layer of porter: it knows nothing about databases or files.
astropy and lsst.sphgeom are imported when a time or region is first made, not
with this package (`astropy_time`, `is_astropy_time`, `is_region`).
"""

from ._data_coordinate import DataCoordinate, DataIdValue, coerce_dimension_value
from ._elements import ColumnSpec, Dimension, DimensionElement, SkyPixDimension
from ._group import DimensionGroup
from ._records import DimensionRecord
from ._regions import (
    decode_region,
    encode_region,
    is_region,
    is_region_type,
    pixel_envelope,
    region_from_hex,
    region_problem,
)
from ._timespan import (
    MAX_NSEC,
    MIN_NSEC,
    Timespan,
    astropy_time,
    is_astropy_time,
    iso_from_tai_nsec,
    tai_now_nsec,
    tai_nsec_from_datetime,
    tai_nsec_from_iso,
    tai_nsec_from_time,
    time_from_tai_nsec,
)
from ._universe import DimensionUniverse

__all__ = [
    "MAX_NSEC",
    "MIN_NSEC",
    "ColumnSpec",
    "DataCoordinate",
    "DataIdValue",
    "Dimension",
    "DimensionElement",
    "DimensionGroup",
    "DimensionRecord",
    "DimensionUniverse",
    "SkyPixDimension",
    "Timespan",
    "astropy_time",
    "coerce_dimension_value",
    "decode_region",
    "encode_region",
    "is_astropy_time",
    "is_region",
    "is_region_type",
    "iso_from_tai_nsec",
    "pixel_envelope",
    "region_from_hex",
    "region_problem",
    "tai_now_nsec",
    "tai_nsec_from_datetime",
    "tai_nsec_from_iso",
    "tai_nsec_from_time",
    "time_from_tai_nsec",
]
