"""The ``porter`` command: repository subcommands named as in Rubin's ``butler``.

Start-up time matters (``porter --help`` is what a new user runs first), so
this module and every command module import only Typer, Rich and the standard
library at the top; the butler (SQLAlchemy, astropy, pyarrow …) is imported
inside the command functions that need it.  ``tests/test_cli_startup.py``
holds that line.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import PorterError
from ._output import (
    console,
    data_id_rows,
    handle_errors,
    print_json,
    print_rows,
    records_rows,
    refs_rows,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..butler import Butler, DirectButler, RemoteButler

app = typer.Typer(
    name="porter",
    help="porter: a data-release system for sky surveys.\n\n"
    "Repository commands mirror Rubin's `butler` command: create, import, export, "
    "query-datasets, query-data-ids, query-dimension-records, query-collections, "
    "query-dataset-types, register-dataset-type, collection-chain, remove-runs, "
    "certify-calibrations.  Add --json to query commands for machine-readable output.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def _local_repository(ctx: typer.Context, value: Path | None) -> Path | None:
    """A REPO argument of a command that works on a local repository only: a server URL is refused clearly.

    (The value is already a `Path`, which folds ``http://`` into ``http:/``, hence the test.)
    """
    if value is not None and str(value).startswith(("http:/", "https:/")):
        raise typer.BadParameter(
            f"`{ctx.command_path}` works on a local repository (a directory holding porter.yaml), not a server "
            "URL: run it where the repository is."
        )
    return value


RepoArg = Annotated[
    Path, typer.Argument(help="Repository directory (holding porter.yaml).", callback=_local_repository)
]
RepoOrServerArg = Annotated[
    str,
    typer.Argument(
        help="Repository directory (holding porter.yaml), or a server URL (http://host:port or "
        "https://host/path; token from $PORTER_TOKEN or ~/.config/porter/tokens.yaml).",
        metavar="REPO",
    ),
]
WhereOpt = Annotated[
    str, typer.Option("--where", "-w", help="A `where` expression, e.g. \"visit > 100 AND band = 'r'\".")
]
CollectionsOpt = Annotated[
    list[str] | None,
    typer.Option("--collections", "-c", help="Collection(s) to search, in order; repeat or comma-separate."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="At most this many results.")]
OrderOpt = Annotated[
    list[str] | None, typer.Option("--order-by", "-o", help="Sort keys, '-' for descending; repeatable.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
BindOpt = Annotated[
    list[str] | None,
    typer.Option("--bind", "-b", help="NAME=VALUE for a :NAME in --where (numbers are numbers); repeatable."),
]


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _bind(values: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            raise typer.BadParameter(f"--bind {item!r}: use NAME=VALUE.")
        name, value = item.split("=", 1)
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        out[name.strip()] = parsed
    return out


@contextlib.contextmanager
def _open(repo: Path, **kwargs: Any) -> Iterator["DirectButler"]:
    """The repository's butler, closed when the command is done (imported here: see the module's doc).

    ``preload=False``: a command imports the query system and lsst.sphgeom only if it queries.
    """
    from ..butler import DirectButler

    butler = DirectButler(repo, preload=False, **kwargs)
    try:
        yield butler
    finally:
        butler.close()


def _is_url(repo: str | Path) -> bool:
    return str(repo).startswith(("http://", "https://"))


@contextlib.contextmanager
def _open_any(repo: str, **kwargs: Any) -> Iterator["Butler"]:
    """A local repository's butler, or a server's (``http(s)://…``, token from $PORTER_TOKEN or the token file)."""
    if not _is_url(repo):
        with _open(Path(repo), **kwargs) as butler:
            yield butler
        return
    from ..butler import Butler

    remote = Butler.from_config(repo, **kwargs)
    try:
        yield remote
    finally:
        remote.close()


def _remote_class() -> type["RemoteButler"]:
    """`RemoteButler`, imported when a command talks to a server (see the module's doc)."""
    from ..butler import RemoteButler

    return RemoteButler


def _check_collections(butler: "Butler", names: list[str]) -> None:
    """Unknown collections are errors, even when nothing else would look them up."""
    from ..butler import DirectButler

    if isinstance(butler, DirectButler):
        butler.registry.resolve_collections(names)
        return
    for name in names:
        if not any(c in name for c in "*?["):
            butler.collections.get_info(name)


def _progress() -> "Progress":
    """A transient Rich progress bar for long operations (on the console, so --json output stays clean)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# --- repository lifecycle ------------------------------------------------------------------------------


@app.command()
@handle_errors
def create(
    repo: RepoArg,
    registry: Annotated[
        str | None,
        typer.Option(
            help="Registry database URL (default: SQLite in REPO), e.g. postgresql://user@host:5432/db."
        ),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="PostgreSQL schema for this repository's tables.")
    ] = None,
    datastore: Annotated[str | None, typer.Option(help="Where files are stored (default: REPO).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing SQLite repository at REPO.")] = False,
) -> None:
    """Create an empty data repository.

    Examples:

        porter create repo/
        porter create repo/ --registry postgresql://postgres@127.0.0.1:5432/porter --namespace dr1
    """
    from ..butler import DirectButler

    butler = DirectButler.create(
        repo, registry=registry, namespace=namespace, datastore=datastore, overwrite=overwrite
    )
    console.print(f"Created repository [bold]{repo}[/] (registry {butler.registry.db.dialect}).")
    butler.close()


@app.command("import")
@handle_errors
def import_(
    repo: RepoOrServerArg,
    export_file: Annotated[Path, typer.Argument(help="Export YAML written by porter or daf_butler.")],
    skip_dimensions: Annotated[
        list[str] | None, typer.Option("--skip-dimensions", "-s", help="Dimension elements not to import.")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--directory", help="Also ingest the datasets' files, found relative to this directory."
        ),
    ] = None,
    transfer: Annotated[
        str | None,
        typer.Option(
            "--transfer", "-t", help="How files come in with --directory: auto, copy, move, link, symlink …"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a butler export file (format versions 0 and 1.0.x) in one transaction.

    A bad file imports nothing. Dimension records already present are kept; datasets keep their UUIDs.
    With --directory, the datasets' files are ingested too (all of them, or none).

    Against a server (REPO = http(s)://…, an admin token) the file's records and registry entries are
    imported; files come with `porter transfer-datasets LOCAL URL` instead.

    Examples:

        porter import repo/ ../shared/data/butler-exports/hsc-rc2-subset.yaml
        porter import repo/ /data/handover/export.yaml --directory /data/handover --transfer copy
        porter import https://host/repo export.yaml
    """
    if _is_url(repo):
        with _open_any(repo) as remote:
            assert isinstance(remote, _remote_class())
            counts = remote.import_(
                export_file,
                skip_dimensions=_split(skip_dimensions),
                directory=str(directory) if directory is not None else None,
                transfer=transfer,
            )
        if as_json:
            print_json([counts])
        else:
            rows = [{"what": k, "count": v} for k, v in counts.items()]
            print_rows(rows, title=f"Imported {export_file.name} into {repo}")
        return
    with _open(Path(repo)) as butler, _progress() as progress:
        task = progress.add_task("Reading export file", total=None)

        def step(description: str, total: int) -> None:
            progress.update(task, total=total, description=f"Importing {description}")
            progress.advance(task)

        counts = butler.import_(
            export_file,
            skip_dimensions=_split(skip_dimensions),
            progress=step,
            directory=str(directory) if directory is not None else None,
            transfer=transfer,
        )
    if as_json:
        print_json([counts])
    else:
        print_rows([{"what": k, "count": v} for k, v in counts.items()], title=f"Imported {export_file.name}")


@app.command()
@handle_errors
def export(
    repo: RepoOrServerArg,
    export_file: Annotated[Path, typer.Argument(help="Export YAML to write (atomically).")],
    collections: CollectionsOpt = None,
    dataset_type: Annotated[
        list[str] | None, typer.Option("--dataset-type", "-d", help="Dataset types to export (default all).")
    ] = None,
    where: WhereOpt = "",
    all_dimensions: Annotated[
        bool, typer.Option("--all-dimensions", help="Also export every dimension record in the repository.")
    ] = False,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--directory", help="Copy the datasets' files here too (EXPORT_FILE is then relative to it)."
        ),
    ] = None,
    transfer: Annotated[
        str | None,
        typer.Option(
            "--transfer", "-t", help="How files go to --directory: copy (default), link, symlink, hardlink."
        ),
    ] = None,
) -> None:
    """Export datasets of collections, with the records and collections they need, as Rubin export YAML.

    The file is readable by `porter import` and by daf_butler's `butler import`.
    With --directory the files come too, so another repository can import
    the whole thing (`porter import NEW export.yaml --directory DIR`).

    Examples:

        porter export repo/ out.yaml --collections HSC/runs/ci_hsc
        porter export repo/ dims.yaml --all-dimensions
        porter export repo/ export.yaml -c HSC/runs/ci_hsc --directory /data/handover --transfer copy
        porter export https://host/repo out.yaml -c HSC/runs/ci_hsc      # an admin token; no files
    """
    if _is_url(repo):
        if directory is not None or transfer is not None:
            raise PorterError(
                "export from a server writes the export file only (no --directory/--transfer): bring the "
                "datasets with their files into a local repository (porter transfer-datasets URL LOCAL) and "
                "export from there."
            )
        with _open_any(repo) as remote:
            assert isinstance(remote, _remote_class())
            remote.export(
                export_file,
                collections=_split(collections) or None,
                dataset_types=_split(dataset_type) or None,
                where=where,
                include_all_dimensions=all_dimensions,
            )
        console.print(f"Wrote {export_file} (from {repo}).")
        return
    with _open(Path(repo), collections=_split(collections) or None) as butler, _progress() as progress:
        task = progress.add_task("Exporting", total=None)

        def step(description: str, total: int) -> None:
            progress.update(task, total=total, description=f"Exporting: {description}")
            progress.advance(task)

        counts = butler.export(
            export_file,
            collections=_split(collections) or None,
            dataset_types=_split(dataset_type) or None,
            where=where,
            include_all_dimensions=all_dimensions,
            progress=step,
            directory=str(directory) if directory is not None else None,
            transfer=transfer,
        )
    print_rows([{"what": k, "count": v} for k, v in counts.items()], title=f"Wrote {export_file}")


# --- queries ----------------------------------------------------------------------------------------------


@app.command("query-datasets")
@handle_errors
def query_datasets(
    repo: RepoOrServerArg,
    dataset_types: Annotated[
        list[str] | None, typer.Argument(help="Dataset type names or globs (default: all).")
    ] = None,
    collections: CollectionsOpt = None,
    where: WhereOpt = "",
    bind: BindOpt = None,
    find_first: Annotated[
        bool,
        typer.Option(
            "--find-first/--no-find-first", help="Only the first match per data ID in the search order."
        ),
    ] = True,
    order_by: OrderOpt = None,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List datasets.

    Examples:

        porter query-datasets repo/ bias -c imported_g -c imported_r
        porter query-datasets repo/ 'calexp*' -c HSC/runs/ci_hsc --where "visit = 903334 AND detector < 30" --json
    """
    colls = _split(collections)
    if not colls:
        raise typer.BadParameter("Give the collections to search with --collections/-c.")
    with _open_any(repo, collections=colls) as butler:
        _check_collections(butler, colls)
        types = butler.query_dataset_types(_split(dataset_types) or "*")
        rows: list[dict[str, Any]] = []
        for dt in types:
            refs = butler.query_datasets(
                dt,
                colls,
                find_first=find_first,
                where=where,
                bind=_bind(bind),
                order_by=_split(order_by) or None,
                limit=limit,
                explain=False,
            )
            if not order_by:
                refs.sort()
            rows.extend(refs_rows(refs))
    print_rows(rows, title="datasets", as_json=as_json)


def query_refs(
    butler: "Butler",
    dataset_types: list[str] | None,
    collections: list[str],
    where: str,
    find_first: bool,
) -> list[Any]:
    """Datasets of the named types (globs; default all) in ``collections`` matching ``where`` (local or server)."""
    if not collections:
        raise typer.BadParameter("Give the collections to search with --collections/-c.")
    _check_collections(butler, collections)
    refs: list[Any] = []
    for dt in butler.query_dataset_types(dataset_types or "*"):
        refs += sorted(
            butler.query_datasets(dt, collections, find_first=find_first, where=where, explain=False)
        )
    return refs


@app.command("query-data-ids")
@handle_errors
def query_data_ids(
    repo: RepoOrServerArg,
    dimensions: Annotated[
        list[str], typer.Argument(help="Dimensions of the data IDs (e.g. visit detector).")
    ],
    collections: CollectionsOpt = None,
    datasets: Annotated[
        list[str] | None,
        typer.Option("--datasets", "-d", help="Only data IDs with these datasets in --collections."),
    ] = None,
    where: WhereOpt = "",
    bind: BindOpt = None,
    order_by: OrderOpt = None,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List data IDs, with implied values (band, day_obs …) filled in.

    Spatial dimensions of different kinds are joined by region overlap.

    Examples:

        porter query-data-ids repo/ visit detector --where "instrument = 'HSC' AND band = 'r'"
        porter query-data-ids repo/ tract patch visit --where "instrument = 'HSC' AND skymap = 'hsc_rings_v1'"
        porter query-data-ids repo/ visit --where "instrument = 'HSC' AND visit.region OVERLAPS POINT(150.1, 2.2)"
    """
    with _open_any(repo, collections=_split(collections) or None) as butler:
        ids = butler.query_data_ids(
            _split(dimensions),
            where=where,
            bind=_bind(bind),
            datasets=_split(datasets) or None,
            collections=_split(collections) or None,
            order_by=_split(order_by) or None,
            limit=limit,
            explain=False,
        )
    if not order_by:
        ids.sort()
    print_rows(data_id_rows(ids), title="data IDs", as_json=as_json)


@app.command("query-dimension-records")
@handle_errors
def query_dimension_records(
    repo: RepoOrServerArg,
    element: Annotated[str, typer.Argument(help="Dimension element (visit, detector, patch …).")],
    collections: CollectionsOpt = None,
    datasets: Annotated[
        list[str] | None,
        typer.Option("--datasets", "-d", help="Only records of data IDs with these datasets."),
    ] = None,
    where: WhereOpt = "",
    bind: BindOpt = None,
    order_by: OrderOpt = None,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List dimension records.

    Examples:

        porter query-dimension-records repo/ detector --where "instrument = 'HSC' AND detector.purpose = 'SCIENCE'"
        porter query-dimension-records repo/ visit --where "instrument='HSC'" --order-by -visit.exposure_time --limit 5
    """
    with _open_any(repo, collections=_split(collections) or None) as butler:
        records = butler.query_dimension_records(
            element,
            where=where,
            bind=_bind(bind),
            datasets=_split(datasets) or None,
            collections=_split(collections) or None,
            order_by=_split(order_by) or None,
            limit=limit,
            explain=False,
        )
    if not order_by:
        records.sort(key=lambda r: tuple(str(v) for v in r.key_values))
    print_rows(records_rows(records), title=f"{element} records", as_json=as_json)


@app.command("query-collections")
@handle_errors
def query_collections(
    repo: RepoOrServerArg,
    globs: Annotated[
        list[str] | None, typer.Argument(help="Collection names or globs (default: all).")
    ] = None,
    collection_type: Annotated[
        list[str] | None, typer.Option("--collection-type", "-t", help="RUN, TAGGED, CHAINED or CALIBRATION.")
    ] = None,
    chains: Annotated[
        str,
        typer.Option(help="TABLE (children listed), TREE (indented), FLATTEN (expand chains), NO-CHILDREN."),
    ] = "TABLE",
    as_json: JsonOpt = False,
) -> None:
    """List collections.

    Examples:

        porter query-collections repo/
        porter query-collections repo/ 'HSC/runs/*' --collection-type RUN
    """
    from ..butler import read_collection_infos
    from ..registry import CollectionType, select_names

    mode = chains.upper()
    if mode not in ("TABLE", "TREE", "FLATTEN", "NO-CHILDREN"):
        raise typer.BadParameter(f"--chains {chains!r}: use TABLE, TREE, FLATTEN or NO-CHILDREN.")
    types = [CollectionType.from_name(t) for t in _split(collection_type)] or None
    # A SQLite repository's collections are read without SQLAlchemy (0.13-0.2 s of import saved);
    # anything else opens the butler, which also explains a missing or damaged repository.
    by_name = None if _is_url(repo) else read_collection_infos(Path(repo))
    if by_name is None:
        with _open_any(repo) as butler:
            by_name = {i.name: i for i in butler.collections.query_info("*")}
    names = select_names(by_name, _split(globs) or "*", types, flatten_chains=mode == "FLATTEN")
    infos = [by_name[n] for n in names]
    rows: list[dict[str, Any]] = []
    if mode == "TREE":

        def add(info: Any, depth: int) -> None:
            rows.append({"name": "  " * depth + info.name, "type": info.type.name})
            for child in info.children:
                add(by_name[child], depth + 1)

        for info in infos:
            add(info, 0)
    else:
        for info in infos:
            row: dict[str, Any] = {"name": info.name, "type": info.type.name}
            if mode == "TABLE":
                row["children"] = ", ".join(info.children)
            rows.append(row)
    if as_json:
        print_json([i.to_dict() for i in infos])
    else:
        print_rows(rows, title="collections")


@app.command("query-dataset-types")
@handle_errors
def query_dataset_types(
    repo: RepoOrServerArg,
    globs: Annotated[list[str] | None, typer.Argument(help="Names or globs (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered dataset types.

    Example:

        porter query-dataset-types repo/ 'calexp*'
    """
    with _open_any(repo) as butler:
        types = butler.query_dataset_types(_split(globs) or "*")
    rows = [
        {
            "name": t.name,
            "dimensions": " ".join(t.dimensions.required),
            "storage_class": t.storage_class_name,
            "is_calibration": t.is_calibration,
        }
        for t in types
    ]
    print_rows(rows, title="dataset types", as_json=as_json)


# --- writes ------------------------------------------------------------------------------------------------


@app.command("register-dataset-type")
@handle_errors
def register_dataset_type(
    repo: RepoOrServerArg,
    name: Annotated[str, typer.Argument(help="Dataset type name.")],
    storage_class: Annotated[str, typer.Argument(help="Storage class (ExposureF, ArrowTable, …).")],
    dimensions: Annotated[list[str], typer.Argument(help="Its dimensions.")],
    is_calibration: Annotated[
        bool, typer.Option("--is-calibration", help="A calibration dataset type.")
    ] = False,
) -> None:
    """Register a dataset type.

    Example:

        porter register-dataset-type repo/ calexp ExposureF instrument visit detector
    """
    with _open_any(repo) as butler:
        created = butler.register_dataset_type(
            name, _split(dimensions), storage_class, is_calibration=is_calibration
        )
    console.print(f"{'Registered' if created else 'Already registered:'} {name}.")


@app.command("collection-chain")
@handle_errors
def collection_chain(
    repo: RepoOrServerArg,
    parent: Annotated[str, typer.Argument(help="The CHAINED collection.")],
    children: Annotated[list[str] | None, typer.Argument(help="Child collections, in search order.")] = None,
    mode: Annotated[str, typer.Option(help="redefine, extend, prepend, remove or pop.")] = "redefine",
    doc: Annotated[str | None, typer.Option(help="Documentation string for a new chain.")] = None,
) -> None:
    """Define or modify a CHAINED collection (created if needed with --mode redefine).

    Examples:

        porter collection-chain repo/ HSC/defaults HSC/raw/all HSC/calib
        porter collection-chain repo/ HSC/defaults u/me/run2 --mode prepend
        porter collection-chain repo/ HSC/defaults 0 --mode pop
    """
    from ..butler import DirectButler

    kids = _split(children)
    m = mode.lower()
    with _open_any(repo) as butler:
        cols = butler.collections
        if m == "redefine":
            cols.redefine_chain(parent, kids)
            if doc and isinstance(butler, DirectButler):
                butler.registry.collections.set_doc(parent, doc)
            elif doc:
                raise typer.BadParameter("--doc sets a chain's documentation in a local repository only.")
        elif m == "extend":
            cols.extend_chain(parent, kids)
        elif m == "prepend":
            cols.prepend_chain(parent, kids)
        elif m == "remove":
            cols.remove_from_chain(parent, kids)
        elif m == "pop":
            current = list(cols.get_info(parent).children)
            indexes = [int(k) for k in kids] or [0]
            drop = {current[i] for i in indexes}
            cols.remove_from_chain(parent, sorted(drop))
        else:
            raise typer.BadParameter(f"--mode {mode!r}: use redefine, extend, prepend, remove or pop.")
        final = cols.get_info(parent).children
    console.print(f"{parent}: [{', '.join(final)}]")


@app.command("remove-runs")
@handle_errors
def remove_runs(
    repo: RepoOrServerArg,
    collections: Annotated[list[str], typer.Argument(help="RUN collections (names or globs) to delete.")],
    no_confirm: Annotated[bool, typer.Option("--no-confirm", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete RUN collections and all their datasets (refused while a run is in a chain).

    Example:

        porter remove-runs repo/ 'u/me/test*' --no-confirm
    """
    from ..butler import DirectButler
    from ..core import CollectionType

    with _open_any(repo) as butler:
        runs = butler.collections.query(_split(collections), CollectionType.RUN)
        if not runs:
            console.print("No matching RUN collections.")
            return
        counts = (
            {r: butler.registry.count_datasets(r) for r in runs} if isinstance(butler, DirectButler) else {}
        )
        print_rows([{"run": r, "datasets": counts.get(r, "?")} for r in runs], title="runs to remove")
        if not no_confirm and not typer.confirm("Remove these runs and their datasets?"):
            raise typer.Exit(1)
        n = butler.remove_runs(runs)
    console.print(f"Removed {len(runs)} run(s) and {n} dataset(s).")


@app.command("certify-calibrations")
@handle_errors
def certify_calibrations(
    repo: RepoOrServerArg,
    input_collection: Annotated[str, typer.Argument(help="Collection holding the calibrations to certify.")],
    output_collection: Annotated[str, typer.Argument(help="CALIBRATION collection (created if needed).")],
    dataset_type: Annotated[str, typer.Argument(help="Calibration dataset type (bias, flat, …).")],
    begin_date: Annotated[
        str | None, typer.Option(help="Start of validity, e.g. 2020-01-01T00:00:00 (UTC; /tai for TAI).")
    ] = None,
    end_date: Annotated[str | None, typer.Option(help="End of validity (exclusive).")] = None,
    where: WhereOpt = "",
) -> None:
    """Certify calibration datasets into a CALIBRATION collection for a validity range.

    Example:

        porter certify-calibrations repo/ u/me/bias-run HSC/calib bias --begin-date 2013-01-01 --end-date 2014-01-01
    """
    from ..dimensions import Timespan, tai_nsec_from_time
    from ..registry import CollectionType
    from ..registry.expr import parse_time_literal

    def to_nsec(text: str | None) -> int | None:
        if text is None:
            return None
        try:
            return tai_nsec_from_time(parse_time_literal(text))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    from ..butler import DirectButler

    timespan = Timespan(to_nsec(begin_date), to_nsec(end_date))
    with _open_any(repo) as butler:
        refs = butler.query_datasets(dataset_type, [input_collection], where=where, explain=False)
        if not refs:
            raise PorterError(f"No {dataset_type} datasets in {input_collection!r} to certify.")
        butler.collections.register(output_collection, CollectionType.CALIBRATION)
        if isinstance(butler, DirectButler):
            butler.registry.certify(output_collection, refs, timespan)
        else:
            assert isinstance(butler, _remote_class())
            butler.certify(output_collection, refs, timespan)
    console.print(f"Certified {len(refs)} {dataset_type} dataset(s) into {output_collection} for {timespan}.")
