"""How the shared types cross HTTP: JSON for dataset types, refs, data IDs, records and query values.

The server and `RemoteButler` both use these functions, so an object sent one
way comes back equal.  Plain JSON values stay plain; the few values JSON has
no type for are tagged objects with one ``$`` key: a UUID, a region
(lsst.sphgeom's own encoding, hex), a timespan (TAI nanoseconds, as the
registry stores them), an astropy time (TAI nanoseconds), a datetime (ISO
8601) and bytes (hex).  Nothing here is evaluated: a tag names a constructor
from a fixed list, so a request cannot make the server build anything else.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..dimensions import (
    DataCoordinate,
    DimensionRecord,
    DimensionUniverse,
    Timespan,
    decode_region,
    is_astropy_time,
    is_region,
    tai_nsec_from_time,
    time_from_tai_nsec,
)
from ..errors import PorterError
from ._dataset_ref import DatasetRef
from ._dataset_type import DatasetType

__all__ = [
    "WireFormatError",
    "data_id_to_json",
    "dataset_type_from_json",
    "dataset_type_to_json",
    "decode_value",
    "encode_value",
    "record_from_json",
    "record_to_json",
    "ref_from_json",
    "ref_to_json",
]


class WireFormatError(PorterError, ValueError):
    """A JSON document that is not what the other side of the connection sends."""


def encode_value(value: Any) -> Any:
    """``value`` as JSON: plain values as they are, UUIDs, regions, times and bytes as tagged objects."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID):
        return {"$uuid": value.hex}
    if isinstance(value, Timespan):
        begin, end = value.nsec
        return {"$timespan": [begin, end]}
    if is_region(value):
        return {"$region": value.encode().hex()}
    if is_astropy_time(value):
        return {"$time": tai_nsec_from_time(value)}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, bytes | bytearray):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode_value(v) for k, v in value.items()}}
    if isinstance(value, Sequence | set | frozenset):
        return [encode_value(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return encode_value(value.item())
    raise WireFormatError(
        f"Cannot send a {type(value).__name__} ({value!r}) to the server: use a plain value."
    )


_DECODERS: dict[str, Any] = {
    "$uuid": lambda v: uuid.UUID(hex=v),
    "$timespan": lambda v: Timespan.from_nsec(int(v[0]), int(v[1])),
    "$region": lambda v: decode_region(bytes.fromhex(v)),
    "$time": lambda v: time_from_tai_nsec(int(v)),
    "$datetime": datetime.datetime.fromisoformat,
    "$bytes": bytes.fromhex,
    "$map": lambda v: {k: decode_value(x) for k, x in v.items()},
}


def decode_value(value: Any) -> Any:
    """The value `encode_value` encoded; `WireFormatError` for an unknown tag or a malformed payload."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise WireFormatError(f"A tagged value has exactly one key ($uuid, $region …), not {sorted(value)}.")
    ((tag, payload),) = value.items()
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise WireFormatError(f"Unknown value tag {tag!r}; known: {', '.join(sorted(_DECODERS))}.")
    try:
        return decoder(payload)
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise WireFormatError(f"Malformed {tag} value {payload!r}: {exc}") from None


def dataset_type_to_json(dataset_type: DatasetType) -> dict[str, Any]:
    """A dataset type as JSON (its `~DatasetType.to_dict`)."""
    return dataset_type.to_dict()


def dataset_type_from_json(data: Mapping[str, Any], universe: DimensionUniverse) -> DatasetType:
    """The dataset type `dataset_type_to_json` gave."""
    return DatasetType(
        data["name"],
        data["dimensions"],
        data["storage_class"],
        universe=universe,
        is_calibration=bool(data.get("is_calibration", False)),
    )


def data_id_to_json(data_id: DataCoordinate) -> dict[str, Any]:
    """A data ID's known values (required, and implied where known) as JSON."""
    return {k: encode_value(v) for k, v in data_id.mapping.items()}


def ref_to_json(ref: DatasetRef) -> dict[str, Any]:
    """A dataset reference as JSON: UUID, dataset type name, run and data ID (implied values included)."""
    return {
        "id": ref.id_hex,
        "dataset_type": ref.dataset_type.name,
        "run": ref.run,
        "data_id": data_id_to_json(ref.data_id),
    }


def ref_from_json(data: Mapping[str, Any], dataset_types: Mapping[str, DatasetType]) -> DatasetRef:
    """The reference `ref_to_json` gave, its dataset type looked up in ``dataset_types``."""
    dataset_type = dataset_types[data["dataset_type"]]
    values = {k: decode_value(v) for k, v in data["data_id"].items()}
    data_id = DataCoordinate.standardize(values, dimensions=dataset_type.dimensions)
    return DatasetRef(dataset_type, data_id, data["run"], id=data["id"])


def record_to_json(record: DimensionRecord) -> dict[str, Any]:
    """A dimension record's fields as JSON."""
    return {k: encode_value(v) for k, v in record.to_dict().items()}


def record_from_json(element: str, data: Mapping[str, Any], universe: DimensionUniverse) -> DimensionRecord:
    """The record `record_to_json` gave, of ``element``."""
    return DimensionRecord(universe[element], {k: decode_value(v) for k, v in data.items()})
