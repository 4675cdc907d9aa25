"""Turning pydantic's validation errors and stray keys into located `Problem` s.

pydantic says *what* is wrong with a field; the declaration's author also needs to know
*where* (file and line) and *how to fix it*, in the words of the file they wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import did_you_mean
from ._problems import Problem, display_path
from ._yaml import SourceDocument

__all__ = ["dotted", "problems_from_validation", "unknown_key_problems"]


def dotted(path: Iterable[str | int]) -> str:
    """A key path as written in messages: ``threshold.unit``, ``channels[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from_validation(
    exc: ValidationError,
    *,
    file: str,
    document: str,
    line_of: Callable[[tuple[str | int, ...]], int | None],
    prefix: tuple[str | int, ...] = (),
    at: tuple[str | int, ...] = (),
    aliases: Mapping[str, str] | None = None,
    file_of: Callable[[tuple[str | int, ...]], str] | None = None,
) -> list[Problem]:
    """One `Problem` per pydantic error, located by ``line_of`` (key path → line).

    ``at`` is where the document itself sits in the file (a metric's key): used to find lines,
    not part of the field name.  ``aliases`` maps a model field name back to the key the file uses (``for_runs`` → ``for``);
    ``file_of`` names the file a key path came from when it differs by field (an inherited
    threshold unit is in the partial's file).
    """
    problems = []
    aliases = aliases or {}
    for err in exc.errors():
        loc = tuple(aliases.get(p, p) if isinstance(p, str) else p for p in err["loc"])
        path = (*prefix, *loc)
        message = str(err["msg"])
        if err["type"] == "missing":
            message, fix = "is required but missing", f"add {dotted(path)}: to the document"
        elif err["type"] == "extra_forbidden":
            message, fix = "is not a known key", "remove it or correct its spelling"
        else:
            message = message[0].lower() + message[1:]
            fix = ""
            if message.startswith("value error, "):
                message = message[len("value error, ") :]
            if "input" in err and repr(err["input"]) not in message:
                message += f" (got {err['input']!r})"
        where = file_of((*at, *path)) if file_of is not None else file
        problems.append(Problem(where, line_of((*at, *path)), document, dotted(path) or None, message, fix))
    return problems


def unknown_key_problems(
    doc: SourceDocument,
    data: Mapping[str, Any],
    known: Iterable[str],
    *,
    document: str,
    prefix: tuple[str | int, ...] = (),
    at: tuple[str | int, ...] = (),
    only_typos: bool = False,
) -> list[Problem]:
    """Problems for keys of ``data`` outside ``known``.

    ``at`` locates the document in the file (for lines only); ``prefix`` is part of the field name.
    With ``only_typos``, a key is flagged only when it is close to a known one (``treshold``):
    lsst/verify readers ignore keys they do not know, so other tools' extra keys stay legal.
    """
    known = sorted(known)
    problems = []
    for key in data:
        if key in known:
            continue
        hint = did_you_mean(str(key), known)
        if only_typos and not hint:
            continue
        problems.append(
            Problem(
                display_path(doc.file),
                doc.line_of(*at, *prefix, str(key)),
                document,
                dotted((*prefix, str(key))),
                "is not a known key",
                (hint.strip() if hint else f"known keys: {', '.join(known)}"),
            )
        )
    return problems
