"""``porter pipeline …`` and ``porter provenance``: build, run, submit, restart, report, trace.

Options follow Rubin's ``pipetask`` where they overlap: ``-p`` is implied by
the PIPELINE argument (``drp.yaml#step1``), ``-i`` input collections,
``--output-run`` the RUN to write, ``-o`` an output CHAINED collection
(``OUTPUT`` → [a new timestamped run, inputs…]), ``-d`` the data query,
``-j`` processes, ``--skip-existing-in``, ``--extend-run``, ``--clobber-outputs``.
"""

import contextlib
import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import PipelineDefinitionError, PorterError
from ._app import (
    BindOpt,
    JsonOpt,
    RepoArg,
    RepoOrServerArg,
    _bind,
    _is_url,
    _open,
    _open_any,
    _progress,
    _remote_class,
    _split,
    app,
)
from ._output import console, err_console, handle_errors, print_rows

if TYPE_CHECKING:  # the pipeline machinery is imported inside the commands, so `porter --help` stays fast
    from rich.progress import Progress, TaskID

    from ..butler import DirectButler
    from ..pipeline import (
        ExecutionOptions,
        Executor,
        MetricsOutcome,
        Pipeline,
        QuantumGraph,
        ReportOutcome,
        RunReport,
        RunSummary,
        StepResult,
    )

pipeline_app = typer.Typer(
    name="pipeline",
    help="Build quantum graphs and run pipelines: qgraph, run, submit, restart, report.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(pipeline_app)

PipelineArg = Annotated[
    str, typer.Argument(help="Pipeline YAML, optionally with a subset: `drp.yaml#step1`.")
]
InputOpt = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="Input collection(s), searched in order; repeat or comma-separate."),
]
OutputRunOpt = Annotated[str | None, typer.Option("--output-run", help="The RUN collection to write.")]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="A CHAINED collection to (re)define as [new run, inputs…]; the run is OUTPUT/<timestamp>.",
    ),
]
QueryOpt = Annotated[str, typer.Option("--data-query", "-d", help="A `where` expression selecting the data.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Worker processes (1: run in this process).")]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor", help="in-process, pool (warm worker processes) or parsl (default: pool if -j > 1)."
    ),
]
SiteOpt = Annotated[
    str | None,
    typer.Option(
        "--site",
        help="Parsl site file (slurm.yaml, pbs.yaml, condor.yaml, kubernetes.yaml …); implies --executor parsl.",
    ),
]
RetriesOpt = Annotated[
    int, typer.Option("--retries", help="Retries per quantum for transient errors (with backoff).")
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Seconds a quantum may run before it fails.")
]
MemoryOpt = Annotated[
    float | None, typer.Option("--memory-limit", help="MB of resident memory a quantum may use.")
]
ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster-by", help="Dimensions whose quanta run as one job (default visit,exposure,tract)."
    ),
]
NoReportsOpt = Annotated[
    bool,
    typer.Option(
        "--no-reports",
        help="Do not publish the pipeline's `reports:` notebooks when the run's quanta are all done.",
    ),
]
NoMetricsOpt = Annotated[
    bool,
    typer.Option(
        "--no-metrics",
        help="Do not record the run's measurements against the pipeline's `metrics:` package "
        "(`porter verify ingest-run` can do it later).",
    ),
]


def _executor(jobs: int, executor: str | None, site: str | None) -> "Executor":
    from ..pipeline import InProcessExecutor, LocalPoolExecutor, ParslExecutor, site_config

    kind = "parsl" if site else executor or ("pool" if jobs > 1 else "in-process")
    if kind == "in-process":
        return InProcessExecutor()
    if kind == "pool":
        return LocalPoolExecutor(max(jobs, 1))
    if kind == "parsl":
        return ParslExecutor(site_config(site) if site else None, workers=max(jobs, 1))
    raise typer.BadParameter(f"--executor {kind!r}: choose in-process, pool or parsl.")


def _options(retries: int, timeout: float | None, memory: float | None) -> "ExecutionOptions":
    from ..pipeline import ExecutionOptions

    if retries < 0:
        raise typer.BadParameter("--retries must be 0 or more.")
    return ExecutionOptions(retries=retries, timeout=timeout, memory_limit_mb=memory)


def _outputs(butler: "DirectButler", inputs: list[str], output_run: str | None, output: str | None) -> str:
    """The RUN to write; with ``--output``, a new timestamped run chained in front of the inputs."""
    from ..registry import CollectionType

    if output_run:
        if output:
            butler.registry.collections.register(output_run, CollectionType.RUN)
            butler.collections.redefine_chain(output, [output_run, *[c for c in inputs if c != output]])
        return output_run
    if not output:
        raise typer.BadParameter(
            "Give --output-run RUN, or --output CHAIN (a timestamped run is made under it)."
        )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    run = f"{output}/{stamp}"
    butler.registry.collections.register(run, CollectionType.RUN)
    butler.collections.redefine_chain(output, [run, *[c for c in inputs if c != output]])
    return run


def _run_of(butler: "DirectButler", name: str) -> str:
    """The RUN a command about a pipeline's run should read, given a RUN or an output CHAINED collection.

    ``submit -o u/me/drp`` writes to a new timestamped run chained in front of
    the inputs, and ``u/me/drp`` is the name the user knows (as with pipetask's
    ``-o``): for a chain, its first child that is a RUN — the latest one made.
    Anything else is passed on unchanged, for the command's own error.
    """
    from ..errors import PorterError
    from ..registry import CollectionType

    try:
        info = butler.collections.get_info(name)
        if info.type != CollectionType.CHAINED:
            return name
        for child in info.children:
            if butler.collections.get_info(child).type == CollectionType.RUN:
                err_console.print(f"[dim]{name} is a chain; its latest run is {child}.[/]", highlight=False)
                return child
    except PorterError:
        pass
    return name


@contextlib.contextmanager
def _quanta_progress(total: int, title: str) -> Iterator[Callable[[str, int], None]]:
    """A Rich bar over quanta whose description counts each status."""
    counts: dict[str, int] = {}
    with _progress() as progress:
        task = progress.add_task(title, total=total)

        def update(status: str, n: int) -> None:
            counts[status] = counts.get(status, 0) + n
            text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            progress.update(task, advance=n, description=f"{title} [dim]({text})[/]")

        yield update


def _summary_rows(summary: "RunSummary") -> list[dict[str, Any]]:
    return [{"status": k, "quanta": v} for k, v in sorted(summary.counts.items())]


# --- qgraph -------------------------------------------------------------------------------------------------------


@pipeline_app.command("qgraph")
@handle_errors
def qgraph(
    repo: RepoArg,
    pipeline: PipelineArg,
    inputs: InputOpt = None,
    output_run: OutputRunOpt = None,
    data_query: QueryOpt = "",
    bind: BindOpt = None,
    skip_existing_in: Annotated[
        list[str] | None,
        typer.Option("--skip-existing-in", help="Leave out quanta whose outputs all exist here."),
    ] = None,
    extend_run: Annotated[
        bool, typer.Option("--extend-run", help="The output run may exist already.")
    ] = False,
    clobber_outputs: Annotated[
        bool, typer.Option("--clobber-outputs", help="Replace outputs an earlier attempt left in the run.")
    ] = False,
    save: Annotated[
        Path | None, typer.Option("--save-qgraph", "-q", help="Write the graph to this file.")
    ] = None,
    mermaid: Annotated[
        Path | None, typer.Option("--mermaid", help="Write the task graph as Mermaid.")
    ] = None,
    dot: Annotated[Path | None, typer.Option("--dot", help="Write the task graph as Graphviz DOT.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a quantum graph and print how many quanta per task and datasets per type it holds.

    Examples:

        porter pipeline qgraph repo pipelines/drp.yaml#step1 -i SynthCam/defaults --output-run u/me/drp -d "band = 'r'"

        porter pipeline qgraph repo pipelines/drp.yaml -i SynthCam/defaults --output-run u/me/drp --mermaid drp.mmd -q drp.qgraph
    """
    from ..pipeline import Pipeline

    pipe = Pipeline.from_uri(pipeline)
    if mermaid:
        mermaid.write_text(pipe.mermaid())
    if dot:
        dot.write_text(pipe.graphviz())
    with _open(repo, writeable=False) as butler:
        graph = _build(
            butler,
            pipe,
            _split(inputs),
            output_run,
            data_query,
            _bind(bind),
            _split(skip_existing_in),
            extend_run,
            clobber_outputs,
        )
    if save:
        graph.save(save)
    _print_graph(graph, as_json, save)


def _build(
    butler: "DirectButler",
    pipe: "Pipeline",
    inputs: list[str],
    run: str | None,
    where: str,
    bind: dict[str, Any],
    skip: list[str],
    extend_run: bool,
    clobber: bool,
) -> "QuantumGraph":
    from ..pipeline import build_quantum_graph

    if not inputs:
        raise typer.BadParameter("Give the input collections with -i/--input.")
    if not run:
        raise typer.BadParameter("Give the output run with --output-run.")
    with _progress() as progress:
        task = progress.add_task("building quantum graph", total=None)
        return build_quantum_graph(
            butler,
            pipe,
            collections=inputs,
            run=run,
            where=where,
            bind=bind,
            skip_existing_in=skip,
            extend_run=extend_run,
            clobber_outputs=clobber,
            progress=lambda msg: progress.update(task, description=f"building quantum graph: {msg}"),
        )


def _print_graph(graph: "QuantumGraph", as_json: bool, saved: Path | None) -> None:
    summary = graph.summary()
    if as_json:
        console.print_json(json.dumps({**summary, "saved": str(saved) if saved else None}))
        return
    print_rows([{"task": k, "quanta": v} for k, v in summary["tasks"].items()], title="quanta per task")
    rows = [
        {"dataset type": k, "existing inputs": v, "outputs": ""}
        for k, v in summary["existing_inputs"].items()
    ]
    rows += [{"dataset type": k, "existing inputs": "", "outputs": v} for k, v in summary["outputs"].items()]
    print_rows(rows, title="datasets per type")
    extra = []
    if summary.get("skipped"):
        extra.append(f"skipped (outputs exist): {summary['skipped']}")
    if summary.get("pruned"):
        extra.append(f"pruned (inputs missing): {summary['pruned']}")
    console.print(
        f"[bold]{summary['quanta']}[/] quanta writing to [bold]{graph.run}[/] "
        f"(built in {graph.metadata.get('build_seconds', 0):.2f} s)"
        + (f"; saved to {saved}" if saved else "")
    )
    for line in extra:
        console.print(f"[dim]{line}[/]")


# --- run --------------------------------------------------------------------------------------------------------------


@pipeline_app.command("run")
@handle_errors
def run(
    repo: RepoArg,
    pipeline: Annotated[
        str | None, typer.Argument(help="Pipeline YAML (`drp.yaml#step1`); omit with --qgraph.")
    ] = None,
    inputs: InputOpt = None,
    output_run: OutputRunOpt = None,
    output: OutputOpt = None,
    data_query: QueryOpt = "",
    bind: BindOpt = None,
    qgraph_file: Annotated[
        Path | None, typer.Option("--qgraph", "-g", help="Run a saved graph instead of building one.")
    ] = None,
    skip_existing_in: Annotated[list[str] | None, typer.Option("--skip-existing-in")] = None,
    extend_run: Annotated[bool, typer.Option("--extend-run")] = False,
    clobber_outputs: Annotated[bool, typer.Option("--clobber-outputs")] = False,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = None,
    site: SiteOpt = None,
    retries: RetriesOpt = 2,
    timeout: TimeoutOpt = None,
    memory_limit: MemoryOpt = None,
    cluster_by: ClusterOpt = None,
    no_reports: NoReportsOpt = False,
    no_metrics: NoMetricsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build (or load) a quantum graph and execute it; outcomes are kept in the repository.

    With a `metrics:` package in the pipeline, the run's measurements are stored in the metric
    store afterwards, checked on arrival against its specs and baselines, and the alerts that fire
    are delivered (as `porter verify ingest-run`); a refused measurement exits 1, outputs kept.

    When every quantum of the run has succeeded, the notebooks the pipeline names under
    `reports:` are published for the run (as `porter verify publish --replace`); a failing
    notebook is named with its cell's error and the exit status is 1, the run's outputs kept.

    Examples:

        porter pipeline run repo pipelines/drp.yaml#step1 -i SynthCam/defaults -o u/me/drp -j 4

        porter pipeline run repo --qgraph drp.qgraph -j 8 --retries 3 --timeout 600

        porter pipeline run repo pipelines/drp.yaml -i SynthCam/defaults --output-run u/me/drp --site slurm.yaml
    """
    from ..pipeline import Pipeline, QuantumGraph, execute_graph

    # Read (and check) the pipeline before the repository is touched: a bad `reports:` entry or task
    # config must not leave an --output chain or run behind.
    pipe = Pipeline.from_uri(pipeline) if qgraph_file is None and pipeline is not None else None
    with _open(repo) as butler:
        if qgraph_file is not None:
            graph = QuantumGraph.load(qgraph_file, butler.dimensions)
        else:
            if pipe is None:
                raise typer.BadParameter("Give a PIPELINE or --qgraph FILE.")
            ins = _split(inputs)
            run_name = _outputs(butler, ins, output_run, output)
            graph = _build(
                butler,
                pipe,
                ins,
                run_name,
                data_query,
                _bind(bind),
                _split(skip_existing_in),
                extend_run or output is not None,
                clobber_outputs,
            )
        with (
            _executor(jobs, executor, site) as ex,
            _quanta_progress(len(graph), f"running {graph.run}") as update,
        ):
            summary = execute_graph(
                butler,
                graph,
                ex,
                options=_options(retries, timeout, memory_limit),
                cluster_by=_split([cluster_by]) if cluster_by else None,
                on_progress=update,
                reports=not no_reports,
                metrics=not no_metrics,
            )
    _print_summary(summary, as_json)
    if _run_failed(summary):
        raise typer.Exit(1)


def _run_failed(summary: "RunSummary") -> bool:
    """Whether a quantum, a report or the recording of the run's measurements failed."""
    metrics_failed = summary.metrics is not None and not summary.metrics.ok
    return not summary.ok or any(not r.ok for r in summary.reports) or metrics_failed


def _print_metrics(outcome: "MetricsOutcome | None") -> None:
    """The run's measurements recorded: how many, how they fared, the alerts; or why none were."""
    if outcome is None:
        return
    if not outcome.ok:
        err_console.print(
            f"[bold red]measurements not recorded[/] for {outcome.run} ({outcome.package}): {outcome.error}\n"
            f"  the run's outputs are kept; fix the task or the declarations, then "
            f"`porter verify ingest-run REPO {outcome.run} --metrics {outcome.package}`.",
            highlight=False,
            soft_wrap=True,
        )
        return
    if not outcome.stored and not outcome.undeclared:
        return
    failed = ", ".join(f"{n} below {level}" for level, n in outcome.failed.items() if n) or "all specs met"
    console.print(
        f"recorded {outcome.stored} measurements of {outcome.run} against {outcome.package}: {failed}; "
        f"{outcome.regressed} regressed",
        highlight=False,
        markup=False,
        soft_wrap=True,  # paths stay whole, to copy
    )
    if outcome.undeclared:
        console.print(
            f"  not declared in the package, so not stored: {', '.join(outcome.undeclared)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for line in outcome.alerts:
        err_console.print(f"  [bold yellow]alert[/] {line}", highlight=False)
    for line in outcome.undelivered:
        err_console.print(
            f"  [red]not delivered[/] {line} (kept queued: `porter verify notify`)", highlight=False
        )


def _print_reports(outcomes: "list[ReportOutcome]", run: str) -> None:
    """One line per published report; a failed one with its error and how to publish it again."""
    for o in outcomes:
        if o.ok:
            console.print(
                f"published report {o.dataset_type} ({o.notebook}) in {run} ({o.dataset_id})", highlight=False
            )
        else:
            err_console.print(
                f"[bold red]report failed[/] {o.dataset_type} ({o.notebook}): {o.message}\n"
                f"  the run's outputs are kept; fix the notebook, then `porter pipeline restart REPO {run}` "
                "publishes the reports still missing (or `porter verify publish REPO NOTEBOOK "
                f"--run {run} --replace`).",
                highlight=False,
                soft_wrap=True,
            )


def _print_summary(summary: "RunSummary", as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(summary.to_dict()))
        return
    _print_metrics(summary.metrics)
    _print_reports(summary.reports, summary.run)
    print_rows(_summary_rows(summary), title=f"run {summary.run}")
    for f in summary.failures[:10]:
        err_console.print(
            f"[red]{f['status']}[/] {f['task']} {f['data_id']}: {f.get('message', '')}", markup=True
        )
    console.print(
        f"{sum(summary.counts.values())} quanta in {summary.seconds:.1f} s"
        + (
            ""
            if summary.ok
            else f"; see `porter pipeline report REPO {summary.run}`, then `porter pipeline restart`"
        ),
        soft_wrap=True,
    )


# --- submit ---------------------------------------------------------------------------------------------------------


@pipeline_app.command("submit")
@handle_errors
def submit(
    repo: RepoArg,
    pipeline: PipelineArg,
    steps: Annotated[
        str | None, typer.Option("--steps", help="Steps to run, in order (default: all).")
    ] = None,
    inputs: InputOpt = None,
    output_run: OutputRunOpt = None,
    output: OutputOpt = None,
    data_query: QueryOpt = "",
    bind: BindOpt = None,
    group_by: Annotated[
        str, typer.Option("--group-by", help="Dimensions that define groups, in preference order.")
    ] = "visit,tract",
    group_size: Annotated[
        int, typer.Option("--group-size", help="Values of the group dimension per group.")
    ] = 50,
    max_failure_rate: Annotated[
        float,
        typer.Option(
            "--max-failure-rate", help="Stop after a step whose failed+blocked fraction is above this."
        ),
    ] = 0.1,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = None,
    site: SiteOpt = None,
    retries: RetriesOpt = 2,
    timeout: TimeoutOpt = None,
    memory_limit: MemoryOpt = None,
    cluster_by: ClusterOpt = None,
    no_reports: NoReportsOpt = False,
    no_metrics: NoMetricsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline step by step, each step in groups, waiting at the sequence point between steps.

    Submitting again resumes: finished quanta are skipped, interrupted ones redone. When every
    quantum of the run has succeeded, the pipeline's `reports:` notebooks are published for it.
    With a `metrics:` package, the run's measurements are recorded and checked after each step.

    Examples:

        porter pipeline submit repo pipelines/drp.yaml --steps step1,step2,step3 --group-by visit --group-size 50 -i SynthCam/defaults --output-run u/me/drp -j 4

        porter pipeline submit repo pipelines/drp.yaml -i SynthCam/defaults --output-run u/me/drp --site slurm.yaml
    """
    from ..pipeline import Pipeline, report_run

    pipe = Pipeline.from_uri(pipeline)
    wanted = _split([steps]) if steps else [s.label for s in pipe.steps()]
    if not wanted:
        raise PipelineDefinitionError(
            f"{pipeline} defines no steps (subsets named step…, or a steps: section)."
        )
    ins = _split(inputs)
    if not ins:
        raise typer.BadParameter("Give the input collections with -i/--input.")
    with _open(repo) as butler:
        run_name = _outputs(butler, ins, output_run, output)
        results = _submit(
            butler,
            pipe,
            wanted,
            ins,
            run_name,
            data_query,
            _bind(bind),
            group_by,
            group_size,
            max_failure_rate,
            _executor(jobs, executor, site),
            _options(retries, timeout, memory_limit),
            cluster_by,
            reports=not no_reports,
            metrics=not no_metrics,
        )
        report = report_run(butler, run_name)
    _print_submission(results, report, as_json)
    failed_reports = any(not o.ok for r in results for o in r.reports)
    failed_reports |= any(r.metrics is not None and not r.metrics.ok for r in results)
    if any(r.stopped for r in results) or report.totals().get("failed", 0) or failed_reports:
        raise typer.Exit(1)


def _submit(
    butler: "DirectButler",
    pipe: "Pipeline",
    steps: list[str],
    inputs: list[str],
    run_name: str,
    where: str,
    bind: dict[str, Any],
    group_by: str,
    group_size: int,
    max_failure_rate: float,
    ex: "Executor",
    options: "ExecutionOptions",
    cluster_by: str | None,
    reports: bool = True,
    metrics: bool = True,
) -> list["StepResult"]:
    from ..pipeline import submit_steps

    with ex, _progress() as progress:
        bars: dict[str, TaskID] = {}

        def on_group(step: str, index: int, n: int, graph: "QuantumGraph") -> Callable[[str, int], None]:
            if step not in bars:
                bars[step] = progress.add_task(f"{step}", total=0)
            bar = bars[step]
            progress.update(
                bar,
                total=(progress.tasks[bar].total or 0) + len(graph),
                description=f"{step} group {index + 1}/{n}",
            )
            return lambda status, count: _advance(progress, bar, status, count)

        return submit_steps(
            butler,
            pipe,
            steps,
            ex,
            collections=inputs,
            run=run_name,
            where=where,
            bind=bind,
            group_by=_split([group_by]),
            group_size=group_size,
            max_failure_rate=max_failure_rate,
            options=options,
            cluster_by=_split([cluster_by]) if cluster_by else None,
            on_group=on_group,
            reports=reports,
            metrics=metrics,
        )


def _advance(progress: "Progress", bar: "TaskID", status: str, n: int) -> None:
    progress.update(bar, advance=n)
    if status != "succeeded":
        task = progress.tasks[bar]
        progress.update(bar, description=f"{task.description.split(' [')[0]} [red]{status}[/]")


def _step_row(data: dict[str, Any]) -> dict[str, Any]:
    """A step's row for the table: counts as columns."""
    counts = data.pop("counts")
    data.pop("reports", None)  # printed after the table
    data.pop("metrics", None)
    return {**data, **{k: counts.get(k, 0) for k in ("succeeded", "failed", "blocked", "lost")}}


def _print_submission(results: list["StepResult"], report: "RunReport", as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({"steps": [r.to_dict() for r in results], "report": report.to_dict()}))
        return
    print_rows([_step_row(r.to_dict()) for r in results], title="steps")
    for r in results:
        if r.stopped:
            err_console.print(
                f"[bold red]stopped[/] after {r.step}: failure rate {r.failure_rate:.1%} is above the threshold."
            )
        _print_metrics(r.metrics)
        _print_reports(r.reports, report.run)
    _print_report(report)


# --- restart and report ---------------------------------------------------------------------------------------------


@pipeline_app.command("restart")
@handle_errors
def restart(
    repo: RepoArg,
    run_name: Annotated[
        str, typer.Argument(metavar="RUN", help="The run to finish (or the -o chain: its latest run).")
    ],
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = None,
    site: SiteOpt = None,
    retries: RetriesOpt = 2,
    timeout: TimeoutOpt = None,
    memory_limit: MemoryOpt = None,
    cluster_by: ClusterOpt = None,
    no_reports: NoReportsOpt = False,
    no_metrics: NoMetricsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run again only the failed, blocked, interrupted and pending quanta of RUN (any executor ran it first).

    A restart that completes the run publishes the pipeline's `reports:` notebooks; on a finished
    run it publishes those not yet published (a report that failed, once its notebook is fixed).

    The run state is first reconciled with the repository (quanta whose outputs
    all exist are done; ones left running by a dead process are redone), and the
    restart is refused, naming the PIDs, while processes of an earlier
    execution of RUN are alive (they may still be writing).

    Example:

        porter pipeline restart repo u/me/drp -j 4
    """
    from ..pipeline import restart_run
    from ..pipeline._report import unfinished

    with _open(repo) as butler:
        run_name = _run_of(butler, run_name)
        todo = unfinished(butler, run_name)
        with (
            _executor(jobs, executor, site) as ex,
            _quanta_progress(len(todo), f"restarting {run_name}") as update,
        ):
            summary = restart_run(
                butler,
                run_name,
                ex,
                todo=todo,
                options=_options(retries, timeout, memory_limit),
                cluster_by=_split([cluster_by]) if cluster_by else None,
                on_progress=update,
                reports=not no_reports,
                metrics=not no_metrics,
            )
    _print_summary(summary, as_json)
    if _run_failed(summary):
        raise typer.Exit(1)


@pipeline_app.command("report")
@handle_errors
def report(
    repo: RepoArg,
    run_name: Annotated[
        str, typer.Argument(metavar="RUN", help="The run to report on (or the -o chain: its latest run).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Per task: succeeded / failed / blocked / running / pending, wall and CPU time; the most common errors.

    Also the outcome of each `reports:` notebook published for the run (published, or failed and why).

    Example:

        porter pipeline report repo u/me/drp --json
    """
    from ..pipeline import report_outcomes, report_run

    with _open(repo, writeable=False) as butler:
        name = _run_of(butler, run_name)
        result = report_run(butler, name)
        outcomes = report_outcomes(butler, name)
    if as_json:
        data = result.to_dict()
        if outcomes:
            data["reports"] = [o.to_dict() for o in outcomes]
        console.print_json(json.dumps(data, default=str))
        return
    _print_report(result)
    if outcomes:
        print_rows(
            [
                {"report": o.dataset_type, "notebook": o.notebook, "status": o.status, "error": o.message}
                for o in outcomes
            ],
            title=f"reports of {name}",
        )


def _print_report(result: "RunReport") -> None:
    data = result.to_dict()
    rows = [{"task": label, **values} for label, values in data["tasks"].items()]
    rows.append({"task": "[bold]total[/]", **data["totals"]})
    print_rows(rows, title=f"run {result.run}")
    for e in data["errors"]:
        console.print(f"[red]{e['count']} x[/] {e['task']}: {e['message']}", markup=True, highlight=False)
        console.print(f"    e.g. {e['examples']}", markup=False, highlight=False)


# --- provenance ---------------------------------------------------------------------------------------------------------


@app.command()
@handle_errors
def provenance(
    repo: RepoOrServerArg,
    dataset_id: Annotated[str | None, typer.Argument(help="UUID of the dataset to trace.")] = None,
    run_name: Annotated[str | None, typer.Option("--run", help="With --export: the run to describe.")] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write W3C PROV-JSON for --run to this file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """How a dataset was made, back to the raws; or a run's provenance as W3C PROV-JSON.

    Examples:

        porter provenance repo 5f0c1e2a-…            # the chain of tasks that made it

        porter provenance repo --run u/me/drp --export prov.json

        porter provenance https://host/repo 5f0c1e2a-…   # through a server: inputs you may not read are left out
    """
    if _is_url(repo):
        if export is not None:
            raise PorterError(
                "--export (a run's W3C PROV-JSON) reads the repository's own database: run it where the "
                "repository is; through a server, trace one dataset at a time (porter provenance URL DATASET_ID)."
            )
        if dataset_id is None:
            raise typer.BadParameter("Give a DATASET_ID.")
        with _open_any(repo) as remote:
            assert isinstance(remote, _remote_class())
            found = remote.dataset_provenance(dataset_id)
        if as_json:
            console.print_json(json.dumps(found, default=str))
        else:
            _print_tree(found, 0, set())
        return
    from ..pipeline import dataset_provenance, run_prov_json

    with _open(Path(repo), writeable=False) as butler:
        if export is not None:
            if not run_name:
                raise typer.BadParameter("--export needs --run RUN.")
            doc = run_prov_json(butler, _run_of(butler, run_name))
            export.write_text(json.dumps(doc, indent=1, default=str))
            console.print(
                f"Wrote {export}: {len(doc['activity'])} activities, {len(doc['entity'])} entities."
            )
            return
        if dataset_id is None:
            raise typer.BadParameter("Give a DATASET_ID, or --run RUN --export FILE.")
        tree = dataset_provenance(butler, dataset_id)
    if as_json:
        console.print_json(json.dumps(tree.to_dict(), default=str))
        return
    _print_tree(tree.to_dict(), 0, set())


def _print_tree(node: dict[str, Any], depth: int, seen: set[str]) -> None:
    pad = "  " * depth
    label = (
        f"{pad}[bold]{node['dataset_type']}[/] {node['data_id']} [dim]{node['run']} {node['dataset_id']}[/]"
    )
    console.print(label, highlight=False)
    made = node.get("made_by")
    if node["dataset_id"] in seen:
        return
    seen.add(node["dataset_id"])
    if made is None:
        return
    console.print(
        f"{pad}  ← {made['task']} ({made['task_class']}, config {made['config_hash']}) on {made['host']} "
        f"at {made['started']}; porter {made['versions'].get('porter', '?')}",
        style="cyan",
        highlight=False,
    )
    for child in node.get("inputs", []):
        _print_tree(child, depth + 2, seen)
