"""``porter`` subcommands about stored files: fsck, ingest-files, retrieve-artifacts, transfer-datasets, prune-datasets."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import (
    CollectionsOpt,
    JsonOpt,
    RepoArg,
    RepoOrServerArg,
    WhereOpt,
    _is_url,
    _open,
    _open_any,
    _progress,
    _split,
    app,
    query_refs,
)
from ._output import console, handle_errors, print_rows, refs_rows

if TYPE_CHECKING:
    from ..datastore import FsckReport


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
        typer.Option(
            help="For writers that cannot be checked from here (another host): leave their journal entries "
            "and temporaries alone until this many seconds old. A gone writer of this host is recoverable at "
            "once; a running one is never touched."
        ),
    ] = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """Check the files of a repository against its registry.

    Finds interrupted writes and removals, files no dataset uses, orphan
    files, missing files, size (and with --checksums, content) mismatches,
    and datasets registered without files.  What killed writers left (their
    journal entries, reported as "recoverable (writer gone)", and their
    temporaries) is listed apart as garbage: not damage (status 0 if nothing
    else is wrong), finished by --repair or simply by re-running the killed
    command; a running writer's are left alone.  --repair never deletes a
    file the registry refers to; orphan files are moved to .porter-orphans/.
    Exits with status 1 if unrepaired damage remains.

    Examples:

        porter fsck repo/
        porter fsck repo/ --checksums --json
        porter fsck repo/ --repair
    """
    with _open(repo) as butler, console.status("checking files") as status:
        report = butler.fsck(
            repair=repair, checksums=checksums, grace=grace, progress=lambda s: status.update(s)
        )
    rows = [
        {"finding": f.kind, "path": f.path, "detail": f.detail, "repaired": f.repaired, "garbage": f.garbage}
        for f in report.findings
    ]
    if as_json:
        print_rows(rows, as_json=True)
    else:
        _print_fsck(report, rows)
    if any(not (f.repaired or f.garbage) and f.kind != "datasets without files" for f in report.findings):
        raise typer.Exit(1)


def _print_fsck(report: "FsckReport", rows: list[dict[str, Any]]) -> None:
    """fsck's tables and summary: damage first, then the garbage of interrupted writes (which is no damage)."""
    damage = [{k: v for k, v in r.items() if k != "garbage"} for r in rows if not r["garbage"]]
    garbage = [{k: v for k, v in r.items() if k != "garbage"} for r in rows if r["garbage"]]
    if damage:
        print_rows(damage, title=f"{len(damage)} finding(s)")
    if garbage:
        print_rows(garbage, title=f"{len(garbage)} left by interrupted writes (garbage, not damage)")

    def tally(found: list[dict[str, Any]]) -> str:
        counts: dict[str, int] = {}
        for r in found:
            counts[r["finding"]] = counts.get(r["finding"], 0) + 1
        return ", ".join(f"{n} {k}" for k, n in counts.items())

    console.print(
        f"Checked {report.artifacts_checked} artifact(s) and {report.files_seen} file(s): "
        + (tally(damage) or "no problems")
        + "."
    )
    if garbage:
        done = all(r["repaired"] for r in garbage)
        console.print(
            f"Garbage from interrupted writes: {tally(garbage)}"
            + (", removed." if done else " (not damage; `porter fsck --repair` removes it).")
        )
    if report.in_progress:
        console.print(f"Left alone: {report.in_progress} temporary file(s) of writes still running.")
    if report.journal_in_progress:
        console.print(
            f"Left alone: {report.journal_in_progress} journal row(s) of writes or removals still running "
            "(or of writers on another host, not yet old enough to count as gone)."
        )


# --- ingest-files ---------------------------------------------------------------------------------------

TransferOpt = Annotated[
    str,
    typer.Option(
        "--transfer",
        "-t",
        help="auto, copy, move, link, symlink, relsymlink, hardlink or direct (the file stays where it is).",
    ),
]
DatasetTypeOpt = Annotated[
    list[str] | None,
    typer.Option("--dataset-type", "-d", help="Dataset types (names or globs; default all)."),
]
FindFirstOpt = Annotated[
    bool,
    typer.Option(
        "--find-first/--find-all", help="Only the first dataset per data ID in the collection order."
    ),
]


@app.command("ingest-files")
@handle_errors
def ingest_files(
    repo: RepoOrServerArg,
    dataset_type: Annotated[str, typer.Argument(help="Registered dataset type of every file.")],
    run: Annotated[str, typer.Argument(help="RUN collection to ingest into (created if needed).")],
    table_file: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet table: the first column is the file (path or s3:// URI), "
            "the other columns are data ID values named by dimension."
        ),
    ],
    data_id: Annotated[
        list[str] | None,
        typer.Option("--data-id", help="Data ID values shared by every row, as key=value (instrument=HSC)."),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Prefix for relative file paths in the table.")
    ] = None,
    formatter: Annotated[
        str | None, typer.Option("--formatter", help="Formatter class (import path) that reads the files.")
    ] = None,
    transfer: TransferOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Ingest files listed in a table as datasets of one type, all or none.

    Examples:

        porter ingest-files repo/ raw HSC/raw/all files.csv --data-id instrument=HSC --transfer symlink
        porter ingest-files repo/ calexp u/me/calexps calexps.parquet --prefix /data/calexps --transfer direct
        porter ingest-files https://host/repo raw u/me/raw files.csv --data-id instrument=HSC

    Against a server each file is uploaded (checked by size and checksum, stored atomically, one write per
    file: a rerun skips what arrived); with --transfer direct the paths name files already in the server's
    datastore area, registered where they are, all or none.
    """
    from ..butler import FileDataset
    from ..core import DatasetRef
    from ._ingest_table import read_ingest_table

    fixed = _key_values(data_id)
    remote_direct = _is_url(repo) and transfer == "direct"  # paths in the server's area: it resolves them
    rows = read_ingest_table(table_file, prefix, keep_relative=remote_direct)
    if _is_url(repo):
        from ..butler import RemoteButler

        with _open_any(repo) as remote:
            assert isinstance(remote, RemoteButler)
            dt = remote.get_dataset_type(dataset_type)
            remote.collections.register(run)
            datasets = [
                FileDataset(path, DatasetRef(dt, {**fixed, **values}, run), formatter)
                for path, values in rows
            ]
            if transfer == "direct":
                refs = remote.ingest(*datasets, transfer="direct")
            else:
                with console.status(f"uploading {len(datasets)} file(s)"):
                    refs = remote.upload_files(*datasets)
        if as_json:
            print_rows(refs_rows(refs), as_json=True)
        else:
            console.print(f"Ingested {len(refs)} file(s) into {run!r} as {dataset_type} on {repo}.")
        return
    with _open(Path(repo)) as butler, _progress() as progress:
        dt = butler.get_dataset_type(dataset_type)
        datasets = [
            FileDataset(path, DatasetRef(dt, {**fixed, **values}, run), formatter) for path, values in rows
        ]

        def bar(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        refs = butler.ingest(*datasets, transfer=transfer, progress=bar)
    if as_json:
        print_rows(refs_rows(refs), as_json=True)
    else:
        console.print(f"Ingested {len(refs)} file(s) into {run!r} as {dataset_type} (transfer={transfer}).")


def _key_values(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise typer.BadParameter(f"{part!r} is not key=value (e.g. instrument=HSC).")
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return out


# --- retrieve-artifacts, transfer-datasets, prune-datasets ----------------------------------------------


@app.command("retrieve-artifacts")
@handle_errors
def retrieve_artifacts(
    repo: RepoOrServerArg,
    destination: Annotated[str, typer.Argument(help="Directory (or s3:// prefix) to copy the files into.")],
    dataset_type: DatasetTypeOpt = None,
    collections: CollectionsOpt = None,
    where: WhereOpt = "",
    find_first: FindFirstOpt = True,
    transfer: Annotated[
        str, typer.Option("--transfer", "-t", help="copy, link, symlink or hardlink.")
    ] = "copy",
    preserve_path: Annotated[
        bool,
        typer.Option("--preserve-path/--no-preserve-path", help="Keep the datastore's directory layout."),
    ] = True,
    clobber: Annotated[
        bool, typer.Option("--clobber", help="Overwrite files already at the destination.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy the files of matching datasets out of the repository.

    Examples:

        porter retrieve-artifacts repo/ ./calexps -d calexp -c HSC/runs/RC2 --where "visit = 1228"
        porter retrieve-artifacts https://host/repo ./calexps -d calexp -c HSC/runs/RC2   # downloads, checked
    """
    with _open_any(repo, collections=_split(collections) or None) as butler:
        refs = query_refs(butler, _split(dataset_type), _split(collections), where, find_first)
        with console.status(f"retrieving {len(refs)} dataset(s)"):
            written = butler.retrieve_artifacts(
                refs, destination, transfer=transfer, preserve_path=preserve_path, overwrite=clobber
            )
    if as_json:
        print_rows([{"uri": str(u)} for u in written], as_json=True)
    else:
        console.print(f"Wrote {len(written)} file(s) for {len(refs)} dataset(s) to {destination}.")


@app.command("transfer-datasets")
@handle_errors
def transfer_datasets(
    source: Annotated[
        str, typer.Argument(help="Repository (or server URL) to transfer from.", metavar="SOURCE")
    ],
    dest: Annotated[str, typer.Argument(help="Repository (or server URL) to transfer to.", metavar="DEST")],
    dataset_type: DatasetTypeOpt = None,
    collections: CollectionsOpt = None,
    where: WhereOpt = "",
    find_first: FindFirstOpt = True,
    transfer: TransferOpt = "auto",
    register_dataset_types: Annotated[
        bool, typer.Option("--register-dataset-types/--no-register-dataset-types")
    ] = True,
    transfer_dimensions: Annotated[
        bool, typer.Option("--transfer-dimensions/--no-transfer-dimensions")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Transfer datasets and their files between repositories (files or S3 on either side).

    Dataset types, runs and dimension records come along; datasets already in
    DEST are skipped; UUIDs are kept.

    Examples:

        porter transfer-datasets main/ mine/ -d calexp -c HSC/runs/RC2 --where "visit = 1228"
        porter transfer-datasets https://host/repo mine/ -d calexp -c HSC/runs/RC2   # download, checked
        porter transfer-datasets mine/ https://host/repo -d calexp -c u/me/run       # upload, checked

    Through a server, files are copied (downloaded or uploaded, checked by size and checksum), whatever
    --transfer says.
    """
    with _open_any(source, collections=_split(collections) or None) as src, _open_any(dest) as dst:
        refs = query_refs(src, _split(dataset_type), _split(collections), where, find_first)
        with console.status(f"transferring {len(refs)} dataset(s)"):
            moved = dst.transfer_from(
                src,
                refs,
                transfer=transfer,
                register_dataset_types=register_dataset_types,
                transfer_dimensions=transfer_dimensions,
            )
    if as_json:
        print_rows(refs_rows(moved), as_json=True)
    else:
        console.print(f"Transferred {len(moved)} of {len(refs)} dataset(s) (the rest were already there).")


@app.command("prune-datasets")
@handle_errors
def prune_datasets(
    repo: RepoOrServerArg,
    collections: Annotated[
        list[str] | None, typer.Argument(help="Collections to find the datasets in.")
    ] = None,
    dataset_type: Annotated[
        list[str] | None,
        typer.Option("--datasets", "-d", help="Dataset types (names or globs; default all)."),
    ] = None,
    where: WhereOpt = "",
    find_all: Annotated[
        bool, typer.Option("--find-all", help="All matches, not only the first per data ID.")
    ] = False,
    unstore: Annotated[
        bool, typer.Option("--unstore", help="Delete the files; keep the datasets registered.")
    ] = False,
    purge: Annotated[
        str | None,
        typer.Option("--purge", help="Delete the datasets of this RUN entirely (registry and files)."),
    ] = None,
    disassociate_tags: Annotated[
        list[str] | None,
        typer.Option("--disassociate-tags", help="Remove the datasets from these TAGGED collections."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    no_confirm: Annotated[bool, typer.Option("--no-confirm", help="Do not ask before removing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove datasets from TAGGED collections, delete their files, or delete them entirely.

    Examples:

        porter prune-datasets repo/ u/me/scratch --purge u/me/scratch --no-confirm
        porter prune-datasets repo/ best -d calexp --disassociate-tags best --where "visit = 1228"
        porter prune-datasets repo/ HSC/runs/RC2 -d src --unstore --dry-run
        porter prune-datasets https://host/repo u/me/scratch --purge u/me/scratch --no-confirm
    """
    colls = _split(collections) or ([purge] if purge else [])
    tags = _split(disassociate_tags)
    if not (purge or unstore or tags):
        raise typer.BadParameter("Say what to do: --purge RUN, --unstore and/or --disassociate-tags TAG.")
    with _open_any(repo, collections=colls or None) as butler:
        refs = query_refs(butler, _split(dataset_type), colls, where, not find_all)
        if purge:
            refs = [r for r in refs if r.run == purge]
        rows = refs_rows(refs)
        if dry_run or not no_confirm:
            print_rows(rows, title=f"{len(refs)} dataset(s) to prune", as_json=as_json)
        if dry_run or not refs:
            return
        if not no_confirm and not typer.confirm(f"Prune these {len(refs)} dataset(s)?"):
            raise typer.Exit(1)
        n = butler.prune_datasets(
            refs,
            disassociate=bool(tags) or purge is not None,
            unstore=unstore or purge is not None,
            tags=tags,
            purge=purge is not None,
        )
    if not as_json:
        console.print(f"Pruned {n} dataset(s).")
    elif no_confirm:
        print_rows(rows, as_json=True)
