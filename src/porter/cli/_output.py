"""Output helpers: Rich tables for people, JSON for scripts, errors without tracebacks."""

import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ..errors import PorterError

if TYPE_CHECKING:  # porter.dimensions pulls in astropy and sphgeom; output helpers must stay light
    from ..dimensions import DataCoordinate, DimensionRecord
    from ..registry import DatasetRef

__all__ = ["console", "err_console", "handle_errors", "print_json", "print_rows", "records_rows", "refs_rows"]

console = Console()
err_console = Console(stderr=True)

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
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in columns])
    console.print(table)


def data_id_rows(data_ids: Iterable["DataCoordinate"]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in data_ids]


def refs_rows(refs: Iterable["DatasetRef"]) -> list[dict[str, Any]]:
    return [{"type": r.dataset_type.name, "run": r.run, "id": r.id, **r.data_id.to_dict()} for r in refs]


def records_rows(records: Iterable["DimensionRecord"]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in records]
