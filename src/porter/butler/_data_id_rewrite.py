"""Data IDs the way observers write them: record fields, alternate keys, and the exposure of a calibration.

Observatory code reads ``butler.get("raw", day_obs=20240303, seq_num=42,
detector=3)``, ``get("raw", {"exposure.obs_id": "MC_O_20240303_000042"}, …)``,
``get("calexp", visit=…, detector="R22_S11")`` (a detector's full name), and
``get("bias", exposure=…, detector=…)`` for a calibration valid when that
exposure was taken.  daf_butler rewrites such data IDs before its look-up;
this module does the same, with daf_butler's rules:

* ``element.field`` keys, and keys that are no dimension but a field of one
  of the dataset type's dimensions (``seq_num`` → ``exposure.seq_num``), are
  resolved to that dimension's primary key by a record query that must match
  exactly one record (``exposure`` wins over ``visit`` for a shared field).
* A string where a dimension's key is an integer is looked up through its
  alternate key (``detector.full_name``, ``exposure.obs_id``, ``visit.name``).
* Dimensions beyond the dataset type's (an exposure for a flat) fill its
  implied values (``physical_filter``, ``band``) and, for a calibration,
  give the time its validity range must cover.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import DimensionValueError
from ..registry import DatasetType
from ..registry.expr import ExpressionFactory, Predicate

if TYPE_CHECKING:
    from ..dimensions import Timespan
    from ..registry import Registry

__all__ = ["RewrittenDataId", "rewrite_data_id"]

_PYTHON_TYPES = {"int": int, "string": str, "float": float, "bool": bool}


class RewrittenDataId:
    """A data ID with dimension values only, and the time a calibration look-up must cover (if implied)."""

    __slots__ = ("data_id", "timespan")

    def __init__(self, data_id: dict[str, Any], timespan: Timespan | None):
        self.data_id = data_id
        self.timespan = timespan


def _key_type(registry: Registry, name: str) -> type | None:
    return _PYTHON_TYPES.get(registry.universe.dimensions[name].primary_key.type)


def rewrite_data_id(
    registry: Registry, dataset_type: DatasetType, given: Mapping[str, Any]
) -> RewrittenDataId:
    """Dimension values for ``dataset_type`` from a data ID that may use record fields and extra dimensions.

    Cheap when there is nothing to rewrite (every key a dimension of the
    type, of its key's type): no query at all.
    """
    universe = registry.universe
    values: dict[str, Any] = {}
    by_record: dict[str, dict[str, Any]] = defaultdict(dict)
    loose: dict[str, Any] = {}
    for key, value in given.items():
        if "." in key:
            element, field = key.split(".", 1)
            universe.get_dimension(element)  # an unknown element: a clear error with a suggestion
            by_record[element][field] = value
        elif key in universe.dimensions:
            values[key] = value
        else:
            loose[key] = value
    for name, value in list(values.items()):
        expected = _key_type(registry, name)
        if expected is None or value is None or isinstance(value, expected) or not isinstance(value, str):
            continue
        alternates = [k for k in universe.dimensions[name].alternate_keys if k.type == "string"]
        if alternates:  # detector="R22_S11" means detector.full_name
            by_record[name][alternates[0].name] = values.pop(name)
    if loose:
        _assign_loose_fields(registry, dataset_type, loose, by_record)
    for element, fields in by_record.items():
        values[element] = _primary_key_from_fields(registry, element, fields, values)
    extra = set(values) - set(dataset_type.dimensions.names)
    if not extra:
        return RewrittenDataId(values, None)
    return _through_extra_dimensions(registry, dataset_type, values)


def _assign_loose_fields(
    registry: Registry,
    dataset_type: DatasetType,
    loose: Mapping[str, Any],
    by_record: dict[str, dict[str, Any]],
) -> None:
    """Give each non-dimension key to the dimension whose records have that field (daf_butler's rules)."""
    universe = registry.universe
    mandatory = set(dataset_type.dimensions.names)
    candidates = set(mandatory)
    if dataset_type.is_calibration:
        candidates |= {n for n, d in universe.dimensions.items() if d.temporal}
    owners: dict[str, set[str]] = defaultdict(set)
    for name in candidates:
        dimension = universe.dimensions[name]
        fields = {c.name for c in dimension.metadata} | {k.name for k in dimension.alternate_keys}
        for key in loose:
            if key in fields:
                owners[key].add(name)
    unknown = sorted(set(loose) - set(owners))
    if unknown:
        raise DimensionValueError(
            f"Data ID keys {unknown} are neither dimensions nor fields of the records of "
            f"{sorted(candidates)} (the dimensions of {dataset_type.name!r}); check the spelling, or write "
            "them as 'element.field'."
        )
    for key, names in owners.items():
        if len(names) > 1:
            preferred = names & mandatory or names
            if preferred == {"exposure", "visit"}:
                preferred = {"exposure"}  # visits are defined from exposures
            names = {sorted(preferred)[0]}
        by_record[next(iter(names))][key] = loose[key]


def _primary_key_from_fields(
    registry: Registry, element: str, fields: Mapping[str, Any], values: Mapping[str, Any]
) -> Any:
    """The one record of ``element`` with these field values (within the data ID's other values)."""
    dimension = registry.universe.get_dimension(element)
    x = ExpressionFactory()
    predicates: list[Predicate] = [getattr(x[element], field) == value for field, value in fields.items()]
    where = ExpressionFactory.all(*predicates)
    relevant = {k: v for k, v in values.items() if k in dimension.minimal_group.names and k != element}
    records = registry.query_dimension_records(element, where=where.node, bind=where.bind, data_id=relevant)
    key_name = dimension.primary_key.name
    if len(records) != 1:
        what = ", ".join(f"{element}.{k} = {v!r}" for k, v in fields.items())
        within = f" with {relevant}" if relevant else ""
        if not records:
            raise DimensionValueError(f"No {element} record has {what}{within}; check the values.")
        found = ", ".join(str(getattr(r, key_name)) for r in records[:10])
        raise DimensionValueError(
            f"{len(records)} {element} records have {what}{within} ({found}); add a constraint that picks one."
        )
    explicit = values.get(element)
    value = getattr(records[0], key_name)
    if explicit is not None and explicit != value:
        raise DimensionValueError(
            f"The data ID gives {element} = {explicit!r} but its fields {dict(fields)} name {element} {value!r}."
        )
    return value


def _through_extra_dimensions(
    registry: Registry, dataset_type: DatasetType, values: dict[str, Any]
) -> RewrittenDataId:
    """Fill the type's implied values from extra dimensions, and the look-up time of a calibration."""
    found = registry.query_data_ids(
        sorted(set(values)), data_id=values, with_dimension_records=dataset_type.is_calibration, limit=2
    )
    if not found:
        raise DimensionValueError(f"No dimension records match the data ID {values}; check its values.")
    full = found[0]
    data_id = {k: v for k, v in full.mapping.items() if k in dataset_type.dimensions.names}
    data_id.update({k: v for k, v in values.items() if k in dataset_type.dimensions.names})
    timespan = full.timespan if dataset_type.is_calibration else None
    return RewrittenDataId(data_id, timespan)
