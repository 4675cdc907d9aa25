"""Repository labels: ``Butler("dp1")`` through a repository index, as daf_butler does.

A data facility publishes one YAML or JSON file mapping short labels to
repository locations and points ``DAF_BUTLER_REPOSITORY_INDEX`` at it, so
notebooks say ``Butler("dp1")`` instead of a path.  porter reads the same file
(``PORTER_REPOSITORY_INDEX`` wins when both are set).  A location may name
the repository directory or its configuration file (``…/porter.yaml``, or a
daf_butler-style ``…/butler.yaml`` next to which porter's file lives).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from ..errors import RepositoryError

__all__ = ["INDEX_VARIABLES", "known_repos", "resolve_label", "unknown_repository_message"]

INDEX_VARIABLES = ("PORTER_REPOSITORY_INDEX", "DAF_BUTLER_REPOSITORY_INDEX")
"""Environment variables naming the index file, in the order they are consulted."""


def _index_file() -> tuple[str, Path] | None:
    for variable in INDEX_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return variable, Path(value.removeprefix("file://"))
    return None


def _read_index() -> tuple[str, Path, dict[str, str]] | None:
    found = _index_file()
    if found is None:
        return None
    variable, path = found
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RepositoryError(
            f"The repository index {path} (from ${variable}) cannot be read: {exc.strerror}; "
            f"fix ${variable} or unset it."
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RepositoryError(
            f"The repository index {path} (from ${variable}) is not valid {path.suffix.lstrip('.') or 'YAML'}: "
            f"{exc}"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise RepositoryError(
            f"The repository index {path} (from ${variable}) must map labels to repository locations, "
            "e.g. 'dp1: /repo/dp1'."
        )
    return variable, path, {str(k): v for k, v in data.items()}


def known_repos() -> set[str]:
    """The labels the repository index defines (empty without an index)."""
    found = _read_index()
    return set(found[2]) if found is not None else set()


def resolve_label(config: str) -> str | None:
    """The repository location a label stands for, or `None` if ``config`` is no label of the index.

    A location relative to nothing is taken relative to the index file, so an
    index can travel with the repositories it names.
    """
    found = _read_index()
    if found is None:
        return None
    _, path, labels = found
    location = labels.get(config)
    if location is None:
        return None
    if "://" in location and not location.startswith("file://"):
        return location
    target = Path(location.removeprefix("file://"))
    if not target.is_absolute():
        target = path.parent / target
    if target.name in ("butler.yaml", "porter.yaml"):
        target = target.parent
    return str(target)


def unknown_repository_message(config: str) -> str:
    """What to say when ``config`` is neither a repository nor a label."""
    found = _read_index()
    if found is None:
        return (
            f"No porter repository at {config!r}, and it is no repository label: no index is set "
            f"(${INDEX_VARIABLES[1]} or ${INDEX_VARIABLES[0]} names a YAML file of 'label: location' lines)."
        )
    variable, path, labels = found
    return (
        f"No porter repository at {config!r}, and the repository index {path} (from ${variable}) has no label "
        f"{config!r}; its labels: {', '.join(sorted(labels)) or 'none'}."
    )
