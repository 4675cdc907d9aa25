"""``porter verify …``: quality metrics in lsst/verify's formats (issue 16).

This slice has ``porter verify lint``; storing, evaluating and alerting come later.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ._app import JsonOpt, app
from ._output import console, handle_errors, print_rows

verify_app = typer.Typer(
    name="verify",
    help="Quality metrics: lsst/verify metric, specification and Job files.",
    no_args_is_help=True,
)
app.add_typer(verify_app)


@verify_app.command("lint")
@handle_errors
def lint_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="A metrics package (a directory with metrics/ and specs/), a metrics or spec YAML file, "
            "a specs/ directory, or an lsst/verify Job JSON file. Several may be given.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Check metric and specification declarations (and Job JSON files) without storing anything.

    Reads lsst/verify's formats as they are: metrics/PACKAGE.yaml (description, unit as an
    astropy unit string, reference, tags) and multi-document spec files under
    specs/PACKAGE/ (partials with id, specs with name, base inheritance, thresholds,
    metadata_query), plus porter's keys (direction, dimensions, baseline, alert, level).

    Reports, with file:line, document and a fix: bad units, unknown keys (typos), missing or
    cyclic bases, specs of unknown metrics, thresholds whose unit does not fit the metric's,
    alerts at a level no spec defines. Exit status 1 when anything is wrong.

    Examples:

        porter verify lint verify_metrics/

        porter verify lint specs/validate_drp/AM1.yaml --json

        porter verify lint output/job.verify.json
    """
    from ..verify import lint  # astropy, pydantic: only when linting

    report = lint(paths)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "ok": report.ok,
                    "metrics": report.metrics,
                    "specifications": report.specifications,
                    "jobs": report.jobs,
                    "problems": [p.to_dict() for p in report.problems],
                },
                indent=2,
            )
            + "\n"
        )
    elif report.ok:
        console.print(report.summary(), markup=False, highlight=False)
    else:
        print_rows(
            [
                {
                    "where": p.where,
                    "document": p.document,
                    "field": p.field,
                    "problem": p.problem,
                    "fix": p.fix,
                }
                for p in report.problems
            ],
            title=report.summary(),
        )
    if not report.ok:
        raise typer.Exit(1)
