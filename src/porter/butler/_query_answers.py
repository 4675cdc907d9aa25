"""daf_butler's conventions for what a butler query hands back: negative limits and ``explain``.

``butler.query_datasets(..., limit=-100)`` means "at most 100, and tell me if
there were more"; ``explain=True`` (the default) turns an empty answer into an
`EmptyQueryResultError` listing why it may be empty, while ``explain=False``
returns ``[]``.  Real scripts rely on both, so the rule lives in one place for
every query method.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

from ..errors import EmptyQueryResultError

__all__ = ["answer_query"]

T = TypeVar("T")


def answer_query(
    run: Callable[[int | None], list[T]],
    limit: int | None,
    explain: bool,
    reasons: Callable[[], list[str]],
    what: str,
) -> list[T]:
    """Run a query (``run(limit)``) under daf_butler's limit and explain rules.

    ``limit=-n`` asks for one row more than ``n`` to learn whether the cap cut
    anything (a warning says so); ``limit=0`` validates the query and returns
    nothing, never raising for emptiness.  ``reasons`` is called only for an
    empty answer.
    """
    if limit is not None and limit < 0:
        cap = -limit
        rows = run(cap + 1)
        if len(rows) > cap:
            warnings.warn(
                f"More {what} exist than the limit of {cap}; only the first {cap} are returned. "
                "Pass a larger limit, or limit=None for all of them.",
                UserWarning,
                stacklevel=3,
            )
            rows = rows[:cap]
    else:
        rows = run(limit)
    if not rows and explain and limit != 0:
        raise EmptyQueryResultError(reasons())
    return rows
