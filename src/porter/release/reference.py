"""Regenerate the release plan's reference page: ``python -m porter.release.reference [PATH]``.

Without PATH the page is printed; with it (``docs/release-plan.md``) the file is written.  The page is
generated from the pydantic models of the release plan (see `porter.release._plan_reference`), so after
a change to the plan's fields this command is all the documentation needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._plan_reference import plan_reference

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m porter.release.reference",
        description="Print the release plan's reference page (Markdown), or write it to PATH.",
    )
    parser.add_argument("path", nargs="?", type=Path, help="the file to write, e.g. docs/release-plan.md")
    args = parser.parse_args(argv)
    text = plan_reference()
    if args.path is None:
        sys.stdout.write(text)
    else:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
