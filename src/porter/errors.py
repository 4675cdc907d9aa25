"""Exceptions raised by porter.

Every error a user can provoke with bad input is one of these, and its message
names what was wrong and how to fix it.  They all derive from `PorterError`
so scripts can catch porter's errors without catching programming errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AccessDeniedError",
    "ArtifactMissingError",
    "AuthenticationError",
    "ButlerUserError",
    "CalibrationLookupError",
    "CollectionCycleError",
    "CollectionError",
    "CollectionTypeError",
    "ConflictingDefinitionError",
    "CorruptArtifactError",
    "DataIdError",
    "DataIdValueError",
    "DatasetNotFoundError",
    "DatasetTypeError",
    "DatastoreError",
    "DimensionNameError",
    "DimensionValueError",
    "EmptyQueryResultError",
    "ExportFormatError",
    "ExpressionSyntaxError",
    "InUseError",
    "InvalidQueryError",
    "MissingCollectionError",
    "MissingDatasetError",
    "MissingDatasetTypeError",
    "NoDefaultCollectionError",
    "PathTemplateError",
    "PipelineDefinitionError",
    "PorterError",
    "QuantumGraphBuildError",
    "QueryTimeoutError",
    "RateLimitedError",
    "RegistryError",
    "RepositoryError",
    "ServerError",
    "StorageClassError",
    "StorageFullError",
    "UnknownComponentError",
    "UserExpressionError",
    "UserExpressionSyntaxError",
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
    position, as a user would want to see it in a terminal: only `CONTEXT`
    characters either side of it (a machine-written expression can be one
    100 KB line), with characters a terminal cannot show (NUL, lone
    surrogates, other controls) written as escapes, so that printing the
    message cannot itself fail with a ``UnicodeEncodeError``.
    """

    CONTEXT = 100
    """Characters of the expression shown either side of the caret."""

    def __init__(self, expression: str, position: int, reason: str):
        self.expression = expression
        self.position = position
        self.reason = reason
        line_start = expression.rfind("\n", 0, position) + 1
        line_end = expression.find("\n", position)
        if line_end == -1:
            line_end = len(expression)
        start = max(line_start, position - self.CONTEXT)
        end = min(line_end, position + self.CONTEXT)
        before = _printable(expression[start:position])
        line = ("…" if start > line_start else "") + before
        line_rest = _printable(expression[position:end]) + ("…" if end < line_end else "")
        super().__init__(
            f"Syntax error in 'where' expression at position {position + 1}: {reason}\n"
            f"    {line}{line_rest}\n    {' ' * len(line)}^"
        )


def _printable(text: str) -> str:
    """``text`` with control characters and lone surrogates as Python escapes (``\\x00``, ``\\ud800``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


class DataIdError(InvalidQueryError):
    """A data ID is incomplete, has unknown keys, or refers to missing records."""


class DataIdValueError(DataIdError, ValueError):
    """A data ID value that names no dimension record (a visit the instrument never took)."""


class DimensionNameError(DataIdError, KeyError):
    """A data ID key that is not a dimension (or dimension record field)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DimensionValueError(DataIdError, ValueError):
    """A dimension value of the wrong type or out of range."""


class CalibrationLookupError(PorterError, LookupError):
    """A calibration dataset could not be found for a data ID's time (none, or more than one, valid)."""


class UnknownComponentError(PorterError, KeyError):
    """A dataset type component (``calexp.wcs``) its storage class does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EmptyQueryResultError(PorterError):
    """A query with ``explain=True`` (the default, as in daf_butler) found nothing; ``reasons`` say why."""

    def __init__(self, reasons: list[str]):
        super().__init__(reasons)
        self.reasons = list(reasons)

    def __str__(self) -> str:
        return "Possible reasons for empty result:\n" + "\n".join(self.reasons)


class DatasetTypeError(PorterError):
    """A dataset type definition is invalid."""


class MissingDatasetTypeError(DatasetTypeError, KeyError):
    """A dataset type is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetNotFoundError(PorterError, LookupError):
    """No dataset matches a type and data ID in the collections searched (daf_butler's name)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingDatasetError(DatasetNotFoundError, KeyError):
    """A dataset (by UUID) does not exist in the repository."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CollectionError(PorterError):
    """Something is wrong with a collection: missing, of the wrong type, or a cycle (daf_butler's base)."""


class MissingCollectionError(CollectionError, KeyError):
    """A collection does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NoDefaultCollectionError(MissingCollectionError):
    """A call named no collections and the butler has no default ones."""


class CollectionTypeError(CollectionError):
    """An operation was attempted on a collection of the wrong type."""


class CollectionCycleError(CollectionError, ValueError):
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


class StorageFullError(PorterError, OSError):
    """A write ran out of space (or quota) on a filesystem: the datastore's, the registry's or the
    temporary area's.  The message names the filesystem and what was being written; the write was
    rolled back, so nothing is half-written and the same command can simply be re-run once space is freed."""


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


class AuthenticationError(PorterError, PermissionError):
    """A server did not accept the credentials: no token, or a malformed, unknown, expired or revoked one (401)."""


class AccessDeniedError(PorterError, PermissionError):
    """A server knows the caller, who may not do this: a read-only token writing, a write outside one's grants (403)."""


class ServerError(PorterError):
    """A server failed to answer, or answered with something the client cannot understand."""


class QueryTimeoutError(PorterError):
    """A query ran longer than the limit set for it (a server's query timeout) and was stopped."""


class RateLimitedError(PorterError):
    """A server refused a request for a limit (429) after the client's retries; the message names the limit."""


# daf_butler's other names for the same errors, so ``except RegistryError:`` and
# ``from lsst.daf.butler.registry import UserExpressionError`` lines keep working.
ButlerUserError = PorterError
RegistryError = PorterError
UserExpressionError = InvalidQueryError
UserExpressionSyntaxError = ExpressionSyntaxError
