"""Exceptions raised by porter.

Every error a user can provoke with bad input is one of these, and its message
names what was wrong and how to fix it.  They all derive from `PorterError`
so scripts can catch porter's errors without catching programming errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ArtifactMissingError",
    "CollectionCycleError",
    "CollectionTypeError",
    "ConflictingDefinitionError",
    "CorruptArtifactError",
    "DataIdError",
    "DatasetTypeError",
    "DatastoreError",
    "ExportFormatError",
    "ExpressionSyntaxError",
    "InUseError",
    "InvalidQueryError",
    "MissingCollectionError",
    "MissingDatasetError",
    "MissingDatasetTypeError",
    "PathTemplateError",
    "PipelineDefinitionError",
    "PorterError",
    "QuantumGraphBuildError",
    "RepositoryError",
    "StorageClassError",
    "did_you_mean",
]


def did_you_mean(name: str, candidates: Iterable[str], what: str = "") -> str:
    """Return a " Did you mean 'x'?" suffix for an unknown ``name``, or ``""``.

    Used by every "unknown X" message so that a typo is answered with the
    closest valid spelling rather than just a refusal.
    """
    names = sorted(set(candidates))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in names}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    if close:
        quoted = " or ".join(repr(c) for c in close)
        return f" Did you mean {quoted}?"
    if what and names and len(names) <= 12:
        return f" Known {what}: {', '.join(names)}."
    return ""


class PorterError(Exception):
    """Base class of all errors porter raises for bad input or bad state."""


class RepositoryError(PorterError):
    """The repository is missing, unreadable, or already exists."""


class InvalidQueryError(PorterError):
    """A query is malformed: unknown names, mismatched types, missing governors."""


class ExpressionSyntaxError(InvalidQueryError):
    """A ``where`` expression does not parse.

    The message shows the expression with a caret under the offending
    position, as a user would want to see it in a terminal.
    """

    def __init__(self, expression: str, position: int, reason: str):
        self.expression = expression
        self.position = position
        self.reason = reason
        line_start = expression.rfind("\n", 0, position) + 1
        line_end = expression.find("\n", position)
        if line_end == -1:
            line_end = len(expression)
        line = expression[line_start:line_end]
        column = position - line_start
        super().__init__(
            f"Syntax error in 'where' expression at position {position + 1}: {reason}\n"
            f"    {line}\n    {' ' * column}^"
        )


class DataIdError(InvalidQueryError):
    """A data ID is incomplete, has unknown keys, or refers to missing records."""


class MissingDatasetTypeError(PorterError, KeyError):
    """A dataset type is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetTypeError(PorterError):
    """A dataset type definition is invalid."""


class MissingDatasetError(PorterError, KeyError):
    """A dataset (by UUID) does not exist in the repository."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingCollectionError(PorterError, KeyError):
    """A collection does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CollectionTypeError(PorterError):
    """An operation was attempted on a collection of the wrong type."""


class CollectionCycleError(PorterError):
    """A CHAINED collection would (directly or indirectly) contain itself."""


class ConflictingDefinitionError(PorterError):
    """Something already exists with a different definition or content."""


class InUseError(PorterError):
    """Removal refused because other things still refer to the object."""


class ExportFormatError(PorterError):
    """An export file is malformed or of an unsupported version."""


class StorageClassError(PorterError, TypeError):
    """An unknown storage class, or an object that is not of (or convertible to) a dataset type's storage class."""


class DatastoreError(PorterError):
    """A problem with a stored artifact (file or S3 object)."""


class ArtifactMissingError(DatastoreError, FileNotFoundError):
    """The registry knows a dataset whose file is gone."""


class CorruptArtifactError(DatastoreError):
    """A stored file's size or checksum no longer matches what was recorded, or it cannot be parsed."""


class PathTemplateError(PorterError, ValueError):
    """A file path template that cannot give every dataset its own, safe path."""


class PipelineDefinitionError(PorterError, ValueError):
    """A pipeline or task that cannot be run as written: a YAML typo, an unknown task class,
    a bad config value, inconsistent dataset types, a cycle, an output made twice."""


class QuantumGraphBuildError(PorterError):
    """A quantum graph that cannot be built: a missing input or prerequisite, an output run in the way."""
