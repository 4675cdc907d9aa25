"""Default collections, run and governor values: daf_butler's ``RegistryDefaults``.

Rubin scripts build a butler with ``collections="HSC/runs/RC2"`` and then ask
for ``get("calexp", visit=1228, detector=50)`` or ``where="visit = 1228"``
without naming the instrument anywhere: when the default collections hold
data of exactly one instrument (one skymap …), that value is the default for
the governor.  This module keeps that rule in one place, for the butler and
for its ``registry`` alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..dimensions import DataCoordinate, DimensionGroup, DimensionUniverse
from ..errors import DataIdError

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["GovernorDefaults", "RegistryDefaults", "merge_data_id", "pop_data_id"]


def pop_data_id(data_id: Any, kwargs: dict[str, Any]) -> Any:
    """The data ID of a call that may spell it ``dataId=`` (daf_butler) or pass it positionally.

    Removes ``dataId`` from ``kwargs``; giving it twice is refused rather
    than silently preferring one.
    """
    if "dataId" in kwargs:
        if data_id is not None:
            raise DataIdError("Pass the data ID once: positionally, or as data_id= or dataId=, not both.")
        return kwargs.pop("dataId")
    return data_id


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class GovernorDefaults(dict[str, Any]):
    """Governor values to use when a call leaves a governor open.

    A plain mapping of governor name to value, which also remembers the
    governors for which the default collections hold several values
    (`ambiguous`), so an error can name them instead of only saying that
    the governor is missing.
    """

    def __init__(self, values: Mapping[str, Any] = {}, ambiguous: Mapping[str, Sequence[Any]] = {}):
        super().__init__(values)
        self.ambiguous: dict[str, list[Any]] = {k: sorted(v, key=str) for k, v in ambiguous.items()}

    @property
    def mapping(self) -> dict[str, Any]:
        """The values as a plain dict (daf_butler's ``DataCoordinate.mapping``)."""
        return dict(self)

    def missing_message(self, governor: str) -> str:
        """Why ``governor`` has no default, or ``""`` if there is nothing more to say than that it is missing."""
        values = self.ambiguous.get(governor)
        if not values:
            return ""
        shown = ", ".join(repr(v) for v in values)
        return (
            f"the default collections hold data of {len(values)} {governor}s ({shown}), so none is the "
            f"default; pass {governor}=… (one of {shown}) or give the butler {governor}=…"
        )

    def require(self, governors: Iterable[str], given: Mapping[str, Any]) -> None:
        """Refuse, naming the candidates, a data ID that leaves an ambiguous governor open."""
        for governor in governors:
            if governor not in given and governor not in self:
                message = self.missing_message(governor)
                if message:
                    raise DataIdError(f"The data ID {dict(given)} has no {governor}: {message}.")


class RegistryDefaults:
    """The collections searched and the run written when a call names none, and governor defaults.

    Parameters
    ----------
    collections : `str` or iterable of `str`, optional
        Collections to search, in order.  Without them, ``[run]``.
    run : `str`, optional
        The RUN collection written to by default.
    infer : `bool`
        Take as default, for each governor dimension not given in
        ``**kwargs``, its value when the datasets in ``collections`` have
        exactly one (daf_butler's ``inferDefaults``).  Nonexistent
        collections are ignored.
    **kwargs
        Explicit governor values (``instrument="HSC"``, ``skymap="…"``).
    """

    def __init__(
        self,
        collections: str | Iterable[str] | None = None,
        run: str | None = None,
        infer: bool = True,
        **kwargs: Any,
    ):
        names = _names(collections)
        self.collections: tuple[str, ...] = names if names or run is None else (run,)
        self.run = run
        self.infer = infer
        self.explicit: dict[str, Any] = dict(kwargs)
        self._data_id: GovernorDefaults | None = None
        self._registry: Registry | None = None

    def attach(self, registry: Registry) -> None:
        """Bind to the registry whose collections the inferred values come from."""
        self._registry = registry
        self._data_id = None

    @property
    def dataId(self) -> GovernorDefaults:
        """daf_butler's name: the governor defaults of the registry these defaults are attached to."""
        if self._registry is None:
            raise DataIdError(
                "These RegistryDefaults are not attached to a registry yet; assign registry.defaults."
            )
        return self.data_id(self._registry)

    def __repr__(self) -> str:
        parts = [f"collections={list(self.collections)!r}"] if self.collections else []
        if self.run:
            parts.append(f"run={self.run!r}")
        parts += [f"{k}={v!r}" for k, v in self.explicit.items()]
        return f"RegistryDefaults({', '.join(parts)})"

    def check(self, registry: Registry) -> None:
        """Refuse explicit defaults that are not governor dimensions (a typo, or ``visit=``)."""
        governors = set(registry.universe.governors)
        for key in self.explicit:
            registry.universe.get_dimension(key)  # an unknown name: DataIdError with a suggestion
            if key not in governors:
                raise DataIdError(
                    f"Only governor dimensions ({', '.join(sorted(governors))}) can have butler-wide "
                    f"defaults, not {key!r}; pass {key}=… to each call instead."
                )

    def data_id(self, registry: Registry) -> GovernorDefaults:
        """The governor defaults: the explicit ones, and those inferred from the collections' datasets.

        Worked out on first use (one query) and kept: like daf_butler, a
        butler's defaults do not change under it as datasets arrive.
        """
        if self._data_id is None:
            inferred: dict[str, Any] = {}
            ambiguous: dict[str, list[Any]] = {}
            if self.infer and self.collections:
                open_governors = set(registry.universe.governors) - self.explicit.keys()
                for governor, values in registry.governor_values(self.collections).items():
                    if governor not in open_governors:
                        continue
                    if len(values) == 1:
                        inferred[governor] = next(iter(values))
                    elif len(values) > 1:
                        ambiguous[governor] = sorted(values, key=str)
            self._data_id = GovernorDefaults({**inferred, **self.explicit}, ambiguous)
        return self._data_id

    def forget(self) -> None:
        """Work the inferred values out again on next use (after ``registry.refresh()``)."""
        self._data_id = None


def merge_data_id(
    universe: DimensionUniverse,
    defaults: GovernorDefaults,
    data_id: Mapping[str, Any] | DataCoordinate | None,
    kwargs: Mapping[str, Any],
    dimensions: DimensionGroup | None = None,
) -> dict[str, Any]:
    """One mapping from a data ID, keyword constraints and the governor defaults, in that priority.

    Keywords win over the data ID; defaults fill only the governors the
    data ID's dimensions need (``dimensions``, or those of the keys given),
    as daf_butler's ``DataCoordinate.standardize(defaults=…)`` does: a
    default instrument is not forced onto a tract/patch data ID.
    """
    merged: dict[str, Any] = {}
    if isinstance(data_id, DataCoordinate):
        merged.update(data_id.mapping)
    elif data_id is not None:
        if not isinstance(data_id, Mapping):
            raise DataIdError(
                f"A data ID is a mapping of dimension names to values (or a DataCoordinate), not "
                f"{type(data_id).__name__} ({data_id!r})."
            )
        merged.update(data_id)
    merged.update(kwargs)
    if not defaults and not defaults.ambiguous:
        return merged
    group = dimensions or universe.conform([k for k in merged if k in universe.dimensions])
    governors = group.governors
    defaults.require(governors, merged)
    for governor in governors:
        if governor not in merged and governor in defaults:
            merged[governor] = defaults[governor]
    return merged
