"""Formatters: how each storage class is written to and read from files.

Records name formatters by their path in this package
(``porter.datastore.formatters.ParquetFormatter``); a user's own formatter
is any `Formatter` subclass importable by its dotted name.

The base class is imported with the package; each concrete formatter's module
is imported when the formatter is first asked for (PEP 562), because they pull
in what they format with: the FITS formatters astropy (~0.3 s with its units
and coordinates), the table formatter pyarrow, the simple ones numpy.  Opening
a repository or listing its collections reads no file and imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_names
from ._base import Formatter, ReadParameterError

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them on demand
    from ._fits import FitsExposureFormatter, FitsImageFormatter
    from ._simple import BytesFormatter, JsonFormatter, NpyFormatter, TextFormatter, YamlFormatter
    from ._tables import ParquetFormatter

_LAZY: dict[str, str] = {
    "FitsExposureFormatter": "._fits",
    "FitsImageFormatter": "._fits",
    "BytesFormatter": "._simple",
    "JsonFormatter": "._simple",
    "NpyFormatter": "._simple",
    "TextFormatter": "._simple",
    "YamlFormatter": "._simple",
    "ParquetFormatter": "._tables",
}
"""Formatter name → the module of this package that defines it, imported when the name is first asked for."""

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


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
