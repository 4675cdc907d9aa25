"""A package's public names imported on first use (PEP 562), for packages whose modules are costly.

``porter`` itself (so ``porter --help`` imports no SQLAlchemy or astropy) and
``porter.datastore.formatters`` (so opening a repository imports no astropy or
pyarrow) define their names this way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    namespace: dict[str, Any], lazy: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is ``namespace``.

    ``lazy`` maps a public name to the module (relative to the package) that
    defines it; that module is imported when the name is first asked for, and
    the name is then cached in the package, so later look-ups are plain.
    ``__dir__`` lists the lazy names too (tab completion, ``dir()``).
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace["__all__"]))

    return __getattr__, __dir__
