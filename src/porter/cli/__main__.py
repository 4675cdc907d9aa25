"""``python -m porter.cli``: the same as the ``porter`` command."""

from . import main

main()
