"""Output helpers: Rich tables for people, JSON for scripts, errors without tracebacks."""

import functools
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.table import Table

from ..errors import PorterError

if TYPE_CHECKING:  # porter.dimensions pulls in astropy and sphgeom; output helpers must stay light
    from ..dimensions import DataCoordinate, DimensionRecord
    from ..registry import DatasetRef

__all__ = ["console", "err_console", "handle_errors", "print_json", "print_rows", "records_rows", "refs_rows"]

NOT_A_TERMINAL_WIDTH = 10_000
"""Width of the console when the output is a pipe or a file and COLUMNS is not set: tables get
the width their content needs, so a collection name or dataset type is never broken across
lines for ``grep`` or ``awk`` (Rich's default of 80 columns folded them mid-word)."""


class _Console(Console):
    """A Rich console that does not wrap output going to a pipe or a file, unless ``COLUMNS`` says to.

    In a terminal, the terminal's width applies as usual.
    """

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size; for a pipe or file without ``COLUMNS``, wide enough not to wrap."""
        size = super().size
        if (
            self._width is None
            and not self.is_terminal
            and not os.environ.get("COLUMNS", "").strip().isdigit()
        ):
            return ConsoleDimensions(NOT_A_TERMINAL_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console = _Console()
err_console = _Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn porter errors into a one-line red message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PorterError as exc:
            # soft_wrap keeps the caret under a bad `where` expression aligned.
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: ", end="", soft_wrap=True)
            err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _is_timespan(value: Any) -> bool:
    """Whether ``value`` is a porter Timespan, without importing porter.dimensions to find out.

    A Timespan can only exist once its module was imported, so its absence from
    ``sys.modules`` answers the question for free.
    """
    module = sys.modules.get("porter.dimensions")
    return module is not None and isinstance(value, module.Timespan)


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if _is_timespan(value):
        b, e = value.begin, value.end
        return {"begin": None if b is None else b.isot, "end": None if e is None else e.isot}
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "encode") and type(value).__module__.startswith("lsst.sphgeom"):
        return {"type": type(value).__name__, "encoded": value.encode().hex()}
    return value


def print_json(rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as a JSON list on stdout."""
    data = [{k: _jsonable(v) for k, v in r.items()} for r in rows]
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if _is_timespan(value):
        return str(value)
    if type(value).__module__.startswith("lsst.sphgeom"):
        return type(value).__name__
    return str(value)


def print_rows(rows: Sequence[dict[str, Any]], title: str | None = None, as_json: bool = False) -> None:
    """Print rows as a table (or JSON); columns are the union of keys, in order of appearance."""
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"[dim]No results{' for ' + title if title else ''}.[/]")
        return
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = _fit(columns, cells, console.width)
    notes = _move_long_words_to_notes(cells, widths)
    if notes:  # the cells are shorter now: the other columns may have room again
        widths = _fit(columns, cells, console.width)
    table = Table(title=title, show_lines=False, header_style="bold")
    for c, width in zip(columns, widths):
        table.add_column(c, overflow="fold", width=width)
    for row in cells:
        table.add_row(*row)
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] ", end="", markup=False, highlight=False)
        console.print(note, markup=False, highlight=False, soft_wrap=True)


def _move_long_words_to_notes(cells: list[list[str]], widths: list[int | None]) -> list[str]:
    """Replace each cell holding a word wider than its column by ``see [n]``; return the texts, in order.

    A file path or URI in a message would otherwise be folded mid-word across
    lines, which neither a person copying it nor ``grep`` can use; printed
    below the table on its own line (``soft_wrap``), it stays whole.
    """
    from rich.cells import cell_len

    notes: list[str] = []
    for row in cells:
        for i, width in enumerate(widths):
            if width is not None and any(cell_len(word) > width for word in row[i].split()):
                notes.append(row[i])
                row[i] = f"see [{len(notes)}]"
    return notes


def _fit(columns: list[str], cells: list[list[str]], width: int) -> list[int | None]:
    """Column widths for a table that must fit ``width`` (None: as wide as its content).

    Names, IDs and numbers (cells without inner spaces) are kept whole: when the
    table is too wide for the terminal, the columns of free text (messages, lists
    of children, dimension lists) share the room that is left and wrap at their
    spaces.  Only when even that cannot work do all columns fold evenly (Rich's
    own fallback) — values are then broken, never cut off.
    """
    from rich.cells import cell_len

    n = len(columns)
    natural = [max(cell_len(c), *(cell_len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    room = width - (n + 1) - 2 * n  # vertical borders, one space of padding each side of a cell
    if sum(natural) <= room:
        return [None] * n
    free = [i for i in range(n) if any(" " in row[i].strip() for row in cells)]
    left = room - sum(w for i, w in enumerate(natural) if i not in free)
    minimum = 8
    if not free or left < minimum * len(free):
        return [None] * n
    total = sum(natural[i] for i in free)
    widths: list[int | None] = [None] * n
    for i in free:
        widths[i] = max(minimum, left * natural[i] // total)
    while sum(w or natural[i] for i, w in enumerate(widths)) > room:  # the minimum may have overshot
        widest = max(free, key=lambda i: widths[i] or 0)
        widths[widest] = (widths[widest] or minimum) - 1
    return widths


def data_id_rows(data_ids: Iterable["DataCoordinate"]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in data_ids]


def refs_rows(refs: Iterable["DatasetRef"]) -> list[dict[str, Any]]:
    return [{"type": r.dataset_type.name, "run": r.run, "id": r.id, **r.data_id.to_dict()} for r in refs]


def records_rows(records: Iterable["DimensionRecord"]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in records]
