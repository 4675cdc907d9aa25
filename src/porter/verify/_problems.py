"""Problems found in metric, specification and Job files, and the errors that carry them.

A declaration is written by a person and read by a machine much later, often in CI: an error
that only says "KeyError: 'unit'" sends that person hunting.  Every problem here therefore
names where it is (file and line), which document (metric, spec, partial or measurement), which
field, what is wrong and how to fix it; `porter verify lint` prints them as a table and the
loaders raise them together, so one run shows every problem rather than the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import PorterError

__all__ = [
    "DeclarationError",
    "JobFormatError",
    "MeasurementValueError",
    "Problem",
    "UnitMismatchError",
    "VerifyError",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one document.

    ``document`` names the document as a person would look for it: a metric's full name
    (``validate_drp.AM1``), a specification's (``validate_drp.AM1.design``), a partial's
    (``validate_drp:AM1#AM1-base-srd``) or a path inside a Job JSON (``measurements[3]``).
    """

    file: str
    line: int | None
    document: str
    field: str | None
    problem: str
    fix: str = ""

    @property
    def where(self) -> str:
        """``file:line`` (or just the file when the line is unknown)."""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def to_dict(self) -> dict[str, Any]:
        """The problem as a JSON-ready mapping (for ``--json`` output)."""
        return asdict(self)

    def __str__(self) -> str:
        field = f" field {self.field!r}:" if self.field else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.where}: {self.document}:{field} {self.problem.rstrip('.')}.{fix}"


class VerifyError(PorterError):
    """Base of porter.verify's errors."""


class DeclarationError(VerifyError, ValueError):
    """Metric or specification files that cannot be used as they are.

    ``problems`` lists every problem found, each with file, line, document and field.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in metric/specification files:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class JobFormatError(VerifyError, ValueError):
    """A Job JSON file that cannot be imported: missing fields, unknown metrics, bad units, NaN.

    ``problems`` lists every problem, each naming the file, the document path
    (``measurements[2]``) and the field.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in a Job JSON file:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class UnitMismatchError(VerifyError, ValueError):
    """A measurement whose unit cannot be converted to a threshold's or a metric's unit."""


class MeasurementValueError(VerifyError, ValueError):
    """A measurement that cannot be evaluated: NaN, infinite, or not a quantity."""


def display_path(path: str | Path) -> str:
    """A path as it appears in messages: relative to the working directory when below it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
