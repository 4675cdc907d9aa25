"""The ``porter`` command line (Typer + Rich)."""

from . import (  # noqa: F401 - register their commands
    _admin_commands,
    _datastore_commands,
    _demo,
    _demo_survey,
    _pipeline_commands,
    _release_commands,
    _schema_commands,
    _serve_command,
    _verify_commands,
)
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``porter`` console script."""
    app()
