"""The types every layer and the remote client share, with no database or driver behind them.

Dataset types, dataset references, collection types and collection
information, and the query specifications a `RemoteButler` sends to the
server.  The registry stores them, the datastore files them, the server
serialises them; none of this package imports SQLAlchemy, so a remote client
never loads a database driver.  The exception family stays in `porter.errors`
(below the dimensions, which raise it too) and is re-exported here.

Names load on first use (PEP 562, `porter._lazy`): listing collections needs
neither the dimension universe nor lsst.sphgeom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them on demand
    from ._collection_info import (
        CollectionExpression,
        CollectionInfo,
        infos_from_rows,
        is_pattern,
        lookup,
        select_names,
    )
    from ._collection_type import CollectionType
    from ._dataset_ref import DatasetRef, new_dataset_id_hexes
    from ._dataset_type import DatasetType, StorageClassName
    from ._wire import (
        WireFormatError,
        data_id_to_json,
        dataset_type_from_json,
        dataset_type_to_json,
        decode_value,
        encode_value,
        record_from_json,
        record_to_json,
        ref_from_json,
        ref_to_json,
    )

_LAZY: dict[str, str] = {
    "CollectionExpression": "._collection_info",
    "CollectionInfo": "._collection_info",
    "infos_from_rows": "._collection_info",
    "is_pattern": "._collection_info",
    "lookup": "._collection_info",
    "select_names": "._collection_info",
    "CollectionType": "._collection_type",
    "DatasetRef": "._dataset_ref",
    "new_dataset_id_hexes": "._dataset_ref",
    "DatasetType": "._dataset_type",
    "StorageClassName": "._dataset_type",
    "WireFormatError": "._wire",
    "data_id_to_json": "._wire",
    "dataset_type_from_json": "._wire",
    "dataset_type_to_json": "._wire",
    "decode_value": "._wire",
    "encode_value": "._wire",
    "record_from_json": "._wire",
    "record_to_json": "._wire",
    "ref_from_json": "._wire",
    "ref_to_json": "._wire",
}
"""Public name → the module that defines it, imported when the name is first asked for."""

__all__ = [
    "CollectionExpression",
    "CollectionInfo",
    "CollectionType",
    "DatasetRef",
    "DatasetType",
    "StorageClassName",
    "WireFormatError",
    "data_id_to_json",
    "dataset_type_from_json",
    "dataset_type_to_json",
    "decode_value",
    "encode_value",
    "infos_from_rows",
    "is_pattern",
    "lookup",
    "new_dataset_id_hexes",
    "record_from_json",
    "record_to_json",
    "ref_from_json",
    "ref_to_json",
    "select_names",
]

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
