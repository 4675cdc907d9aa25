"""The ``porter`` command line (Typer + Rich)."""

from . import _datastore_commands, _demo, _demo_survey, _pipeline_commands, _release_commands  # noqa: F401 - register their commands
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``porter`` console script."""
    app()
