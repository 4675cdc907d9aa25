"""``porter`` subcommands about stored files: fsck (and, as they land, ingest-files, retrieve-artifacts …)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import JsonOpt, RepoArg, _open, app
from ._output import console, handle_errors, print_rows


@app.command()
@handle_errors
def fsck(
    repo: RepoArg,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix what is safe: finish interrupted writes/removals, clean temp files, move orphans aside.",
        ),
    ] = False,
    checksums: Annotated[
        bool, typer.Option("--checksums", help="Also verify every file's checksum (reads all data).")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(help="Leave journal entries younger than this many seconds alone (writes in progress)."),
    ] = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """Check the files of a repository against its registry.

    Finds interrupted writes and removals, files no dataset uses, temporary
    files, orphan files, missing files, size (and with --checksums, content)
    mismatches, and datasets registered without files.  --repair never deletes
    a file the registry refers to; orphan files are moved to .porter-orphans/.
    Exits with status 1 if anything unrepaired remains.

    Examples:

        porter fsck repo/
        porter fsck repo/ --checksums --json
        porter fsck repo/ --repair --grace 0
    """
    with _open(repo) as butler, console.status("checking files") as status:
        report = butler.fsck(
            repair=repair, checksums=checksums, grace=grace, progress=lambda s: status.update(s)
        )
    rows = [
        {"finding": f.kind, "path": f.path, "detail": f.detail, "repaired": f.repaired}
        for f in report.findings
    ]
    if as_json:
        print_rows(rows, as_json=True)
    elif rows:
        print_rows(rows, title=f"{len(rows)} finding(s)")
    if not as_json:
        console.print(
            f"Checked {report.artifacts_checked} artifact(s) and {report.files_seen} file(s): "
            + (", ".join(f"{n} {k}" for k, n in report.counts().items()) or "no problems")
            + "."
        )
    if any(not f.repaired and f.kind != "datasets without files" for f in report.findings):
        raise typer.Exit(1)
