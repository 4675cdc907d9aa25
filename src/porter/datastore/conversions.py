"""Conversions between the Python types of compatible storage classes.

Named in the storage-class configuration (``converters:``), so getting an
ArrowTable dataset as a DataFrame, or putting an astropy Table into an
ArrowTable dataset type, needs no code from the user.  Units and
descriptions of astropy columns travel in the Arrow field metadata.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from ..images import Exposure

__all__ = [
    "arrow_to_astropy",
    "arrow_to_pandas",
    "astropy_to_arrow",
    "exposure_to_image",
    "image_to_exposure",
    "pandas_to_arrow",
]


def pandas_to_arrow(df: Any) -> pa.Table:
    return pa.Table.from_pandas(df)


def arrow_to_pandas(table: pa.Table) -> Any:
    return table.to_pandas()


def astropy_to_arrow(table: Any) -> pa.Table:
    fields = []
    arrays = []
    for name in table.colnames:
        column = table[name]
        data = np.asarray(column)
        metadata = {}
        if getattr(column, "unit", None) is not None:
            metadata["unit"] = column.unit.to_string()
        if getattr(column, "description", None):
            metadata["description"] = column.description
        array = pa.array(data) if data.ndim == 1 else pa.array(list(data))
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata=metadata or None))
    meta = {"astropy_meta": json.dumps(dict(table.meta), default=str)} if table.meta else None
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def arrow_to_astropy(table: pa.Table) -> Any:
    from astropy.table import Table

    out = Table()
    for field, column in zip(table.schema, table.columns):
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        values = column.to_numpy(zero_copy_only=False)
        out[field.name] = values
        if "unit" in meta:
            out[field.name].unit = meta["unit"]
        if "description" in meta:
            out[field.name].description = meta["description"]
    schema_meta = table.schema.metadata or {}
    if b"astropy_meta" in schema_meta:
        out.meta.update(json.loads(schema_meta[b"astropy_meta"]))
    return out


def pandas_to_astropy(df: Any) -> Any:
    return arrow_to_astropy(pandas_to_arrow(df))


def astropy_to_pandas(table: Any) -> Any:
    return arrow_to_pandas(astropy_to_arrow(table))


def exposure_to_image(exposure: Exposure) -> np.ndarray:
    return exposure.image


def image_to_exposure(image: np.ndarray) -> Exposure:
    return Exposure(np.asarray(image))
