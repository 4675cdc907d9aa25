"""Collection patterns of access grants: validated once, compiled into one regular expression per set.

A pattern follows `fnmatch` (shell-glob) rules on the whole collection name:
``*`` matches any run of characters *including* ``/`` (so ``u/alice/*``
matches ``u/alice/run1`` and ``u/alice/a/b`` but not ``u/alice2``), ``?`` one
character, ``[abc]`` a set; a name without glob characters matches only
itself.  Matching is case-sensitive, as collection names are.

`Principal.can_read` is called once per collection of a listing, so a set
of patterns becomes one compiled alternation (`compile_patterns`) and a check
is one ``re.match``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable

from ..errors import PorterError

__all__ = ["MAX_PATTERN_LENGTH", "PatternError", "check_pattern", "compile_patterns", "matches"]

MAX_PATTERN_LENGTH = 1024
"""Longest pattern accepted (collection names are at most 1024 characters, as in daf_butler)."""


class PatternError(PorterError):
    """A collection pattern of a grant is empty or cannot be a pattern of collection names."""


def check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it can be a grant's collection pattern, else raise `PatternError` saying why."""
    if not isinstance(pattern, str) or not pattern:
        raise PatternError(
            f"Invalid collection pattern {pattern!r}: give a non-empty collection name or glob such as "
            "'DP1/*' or 'u/alice/*'."
        )
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"Invalid collection pattern {pattern[:40]!r}… ({len(pattern)} characters): patterns have at most "
            f"{MAX_PATTERN_LENGTH} characters."
        )
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in pattern):
        raise PatternError(
            f"Invalid collection pattern {pattern!r}: it contains a control character; use printable "
            "characters only."
        )
    if pattern != pattern.strip():
        raise PatternError(
            f"Invalid collection pattern {pattern!r}: remove the surrounding spaces (collection names "
            "have none)."
        )
    return pattern


@functools.lru_cache(maxsize=4096)
def _translated(pattern: str) -> str:
    return fnmatch.translate(pattern)


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression matching a name iff one of ``patterns`` matches it (None for no patterns).

    Same answers as ``any(fnmatch.fnmatchcase(name, p) for p in patterns)``, in one ``re.match``.
    """
    unique = sorted(set(patterns))
    if not unique:
        return None
    return re.compile("|".join(f"(?:{_translated(p)})" for p in unique))


def matches(compiled: re.Pattern[str] | None, name: str) -> bool:
    """Whether ``name`` matches a set compiled by `compile_patterns`."""
    return compiled is not None and compiled.match(name) is not None
