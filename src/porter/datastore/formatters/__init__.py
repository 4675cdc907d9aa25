"""Formatters: how each storage class is written to and read from files.

Records name formatters by their path in this package
(``porter.datastore.formatters.ParquetFormatter``); a user's own formatter
is any `Formatter` subclass importable by its dotted name.
"""

from ._base import Formatter, ReadParameterError
from ._fits import FitsExposureFormatter, FitsImageFormatter
from ._simple import BytesFormatter, JsonFormatter, NpyFormatter, TextFormatter, YamlFormatter
from ._tables import ParquetFormatter

__all__ = [
    "BytesFormatter",
    "FitsExposureFormatter",
    "FitsImageFormatter",
    "Formatter",
    "JsonFormatter",
    "NpyFormatter",
    "ParquetFormatter",
    "ReadParameterError",
    "TextFormatter",
    "YamlFormatter",
]
