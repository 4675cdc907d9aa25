"""``porter verify publish``: run a report notebook against a run and store its HTML in the run.

A module of its own (registered on `verify_app` when ``_verify_commands`` imports it) so the
notebook machinery (nbclient, nbconvert) is imported only when a report is published.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import JsonOpt, RepoArg, _open
from ._output import console, handle_errors
from ._verify_commands import verify_app


@verify_app.command("publish")
@handle_errors
def publish_command(
    repo: RepoArg,
    notebook: Annotated[
        Path, typer.Argument(help="The Jupyter notebook (.ipynb) with a cell tagged 'parameters'.")
    ],
    run: Annotated[str, typer.Option("--run", help="The RUN collection the report is about and stored in.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="NAME=VALUE injected after the parameters cell (VALUE as JSON, else text)."
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the run's existing report of this notebook.")
    ] = False,
    instrument: Annotated[
        str | None,
        typer.Option("--instrument", help="The report's instrument (default: the run's only one)."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds each cell may take.")] = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Execute NOTEBOOK for RUN (papermill-style parameters) and store its HTML as verifyReport_<name> in RUN.

    The notebook gets ``repo`` and ``run`` (and each -p NAME=VALUE) in a cell injected after its
    parameters cell, runs in this environment's python3 kernel, and is stored with its source,
    checksum and parameters so the report can be made again from its run. A failing cell stores
    nothing and is named; an existing report is refused unless --replace.

    Examples:

        porter verify publish repo/ metrics_report.ipynb --run u/demo/drp

        porter verify publish repo/ report.ipynb --run u/me/run -p band=r -p max_points=50 --replace --json
    """
    from rich.progress import Progress

    from ..verify import parse_parameter, publish

    parameters = dict(parse_parameter(p) for p in param or [])
    with _open(repo) as butler, Progress(console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"executing {notebook.name}", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        ref = publish(
            butler,
            notebook,
            run,
            parameters,
            replace=replace,
            instrument=instrument,
            timeout=timeout,
            progress=advance,
        )
    result = {
        "notebook": notebook.name,
        "run": ref.run,
        "dataset_type": ref.dataset_type.name,
        "instrument": ref.data_id["instrument"],
        "id": str(ref.id),
        "parameters": parameters,
    }
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"published {ref.dataset_type.name} in {ref.run} ({ref.id})")
