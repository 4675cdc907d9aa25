"""The outcome of one check: shared by schema conformance, content rules and release checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ERROR", "FAIL", "PASS", "PENDING", "WARN", "CheckResult"]

PASS, FAIL, WARN, ERROR = "pass", "fail", "warn", "error"
PENDING = "pending"
"""Awaiting a person (a manual item not confirmed yet): nothing is wrong, but it blocks sign-off like a failure."""


@dataclass
class CheckResult:
    """A check's status, the measured value against the expectation, a sample of offenders, and its duration."""

    item: str
    check: str
    status: str
    value: Any = None
    expected: Any = None
    message: str = ""
    sample: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    details: str = ""
    """A file holding every offender when the sample is not all of them (relative to the plan's directory)."""
    cells: str = ""
    """A file of what was checked, counted per cell of a map (a completeness check's expected data IDs per
    visit range and detector, or per patch and band), relative to the plan's directory."""

    @property
    def name(self) -> str:
        return f"{self.item}:{self.check}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "name": self.name}
