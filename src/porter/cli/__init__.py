"""The ``porter`` command line (Typer + Rich)."""

from . import _demo  # noqa: F401 - registers the demo command
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``porter`` console script."""
    app()
