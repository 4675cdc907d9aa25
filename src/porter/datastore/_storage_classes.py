"""Storage classes: which Python type a dataset type holds, which formatter stores it, what converts to it.

Read from porter's ``config/storage_classes.yaml`` plus any files a
repository names, so a user can add a storage class for their own type and
formatter without changing porter.  Types and functions are named by dotted
import paths and imported on first use (pandas is only imported by someone
who stores DataFrames).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..errors import StorageClassError, did_you_mean
from .formatters import Formatter

__all__ = ["StorageClass", "StorageClassRegistry", "import_object"]

_DEFAULT_CONFIG = Path(__file__).parent / "config" / "storage_classes.yaml"


def import_object(dotted: str) -> Any:
    """The object named ``package.module.name`` (``builtins.dict`` for built-ins)."""
    module_name, _, name = dotted.rpartition(".")
    if not module_name:
        raise StorageClassError(f"{dotted!r} is not a dotted import path such as 'package.module.Name'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StorageClassError(f"Cannot import {module_name!r} (for {dotted!r}): {exc}.") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise StorageClassError(f"Module {module_name!r} has no {name!r} (for {dotted!r}).") from None


def type_name(t: type) -> str:
    return "builtins." + t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class StorageClass:
    """One storage class: its Python type, its formatter and the types it converts from."""

    def __init__(self, name: str, pytype: str, formatter: str, converters: Mapping[str, str] | None = None):
        self.name = name
        self.pytype_name = pytype
        self.formatter_name = formatter
        self.converters = dict(converters or {})

    def __repr__(self) -> str:
        return f"StorageClass({self.name!r}, {self.pytype_name}, {self.formatter_name})"

    @cached_property
    def pytype(self) -> type:
        t = import_object(self.pytype_name)
        if not isinstance(t, type):
            raise StorageClassError(f"Storage class {self.name}: {self.pytype_name!r} is not a type.")
        return t

    @cached_property
    def formatter(self) -> Formatter:
        cls = import_object(self.formatter_name)
        if not (isinstance(cls, type) and issubclass(cls, Formatter)):
            raise StorageClassError(
                f"Storage class {self.name}: {self.formatter_name!r} is not a porter Formatter subclass."
            )
        return cls()

    def _converter_for(self, obj: Any) -> Any:
        for source, function in self.converters.items():
            # An object can only be of a type whose package is already imported.
            if source.split(".", 1)[0] not in sys.modules:
                continue
            source_type = import_object(source)
            if isinstance(source_type, type) and isinstance(obj, source_type):
                return import_object(function)
        return None

    def can_convert(self, obj: Any) -> bool:
        return isinstance(obj, self.pytype) or self._converter_for(obj) is not None

    def coerce(self, obj: Any) -> Any:
        """``obj`` as this storage class's Python type, converting if a converter is configured."""
        if isinstance(obj, self.pytype):
            return obj
        converter = self._converter_for(obj)
        if converter is None:
            accepted = ", ".join([self.pytype_name, *self.converters]) or self.pytype_name
            raise StorageClassError(
                f"a {type_name(type(obj))} cannot be stored as {self.name} (it takes {accepted})."
            )
        return converter(obj)


class StorageClassRegistry:
    """All storage classes known to a repository, by name."""

    def __init__(self, classes: Iterable[StorageClass] = ()):
        self._classes = {c.name: c for c in classes}

    @classmethod
    def default(cls, extra_files: Iterable[str | Path] = ()) -> StorageClassRegistry:
        registry = cls()
        registry.load(_DEFAULT_CONFIG)
        for f in extra_files:
            registry.load(Path(f))
        return registry

    def load(self, path: Path) -> None:
        """Add (or redefine) the storage classes defined in the YAML file ``path``."""
        try:
            # libyaml's loader when PyYAML has it (a repository reads this file whenever it is opened).
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise StorageClassError(f"Cannot read storage classes from {path}: {exc}") from None
        if not isinstance(data, dict):
            raise StorageClassError(f"{path} must map storage class names to definitions.")
        for name, spec in data.items():
            if not isinstance(spec, dict) or "pytype" not in spec or "formatter" not in spec:
                raise StorageClassError(
                    f"Storage class {name!r} in {path} needs 'pytype' and 'formatter' entries."
                )
            self._classes[name] = StorageClass(
                name, spec["pytype"], spec["formatter"], spec.get("converters")
            )

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Any:
        return iter(self._classes.values())

    def get(self, name: str, *, dataset_type: str | None = None) -> StorageClass:
        """The storage class ``name``; a `StorageClassError` naming the known ones if it is not defined."""
        try:
            return self._classes[name]
        except KeyError:
            hint = did_you_mean(name, self._classes)
            where = f" (dataset type {dataset_type!r})" if dataset_type else ""
            raise StorageClassError(
                f"Unknown storage class {name!r}{where}.{hint} Known: {', '.join(sorted(self._classes))}; "
                "define new ones in a storage-class YAML file listed in porter.yaml (datastore: storage_classes)."
            ) from None
