"""``porter verify …``: quality metrics in lsst/verify's formats (issue 16).

``lint`` checks declarations; ``ingest``/``ingest-run`` store measurements, checked on arrival
against specs, baselines and alert rules; ``status``/``trend``/``compare`` read them back;
``alerts``/``ack``/``silence``/``notify``/``test-rules`` handle the alerts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._app import JsonOpt, RepoArg, _open, app
from ._output import console, handle_errors, print_rows

if TYPE_CHECKING:
    from ..verify import RecordResult, Transition

verify_app = typer.Typer(
    name="verify",
    help="Quality metrics: lsst/verify declarations, measurements stored and checked on arrival, alerts, trends.",
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


# --- the metric store: measurements in, checked on arrival, read back --------------------------------

MetricsOpt = Annotated[
    Path,
    typer.Option(
        "--metrics",
        help="The metrics package (metrics/, specs/, alerts.yaml) the measurements are checked against.",
    ),
]
JobsArg = Annotated[list[Path], typer.Argument(help="lsst/verify Job JSON files (one run each).")]


def _since(text: str | None, option: str = "--since", ahead: bool = False) -> float | None:
    """A time option: an ISO date or time (``2026-11-01``), or a duration (``30d``, ``12h``) before
    now (``--since``) or, with ``ahead``, after now (``--until``)."""
    import datetime
    import time

    if text is None:
        return None
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        span = float(text[:-1]) * units[text[-1]]
        return time.time() + (span if ahead else -span)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO date/time (2026-11-01) nor a duration (30d, 12h)", param_hint=option
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _stored(result: RecordResult, source: str) -> dict[str, object]:
    return {
        "source": source,
        "run": result.run,
        "stored": result.stored,
        "replaced": result.replaced,
        **{f"failed {level}": n for level, n in result.failed.items()},
        "regressed": result.regressed,
    }


def _print_transitions(transitions: list[Transition], as_json: bool) -> None:
    if as_json:
        return
    for t in transitions:
        console.print(
            ("(silenced) " if t.silenced else "") + t.summary, markup=False, highlight=False, soft_wrap=True
        )


@verify_app.command("ingest")
@handle_errors
def ingest_command(
    repo: RepoArg,
    jobs: JobsArg,
    metrics: MetricsOpt,
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Record under this run (default: the job's CI build, else job/<file name>)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store lsst/verify Job JSON files' measurements, checking each on arrival.

    Every measurement is checked against the specs that apply to it (pass/fail per level, units
    converted) and its metric's baseline, and run through the alert rules. Importing the same
    job again replaces its measurements. A job with any bad measurement (unknown metric, NaN,
    incompatible unit) is refused whole, naming the file and field; nothing of it is stored.

    Example:

        porter verify ingest repo/ ci/validate_drp.verify.json --metrics verify_metrics/
    """
    from ..verify import import_job, open_store

    rows, transitions = [], []
    with _open(repo) as butler:
        store, hook = open_store(butler.registry.db, metrics, butler.root)
        for job in jobs:
            rows.append(_stored(import_job(store, job, run), str(job)))
        transitions = hook.transitions if hook else []
    print_rows(rows, title="measurements stored", as_json=as_json)
    if as_json:
        return
    _print_transitions(transitions, as_json)


@verify_app.command("ingest-run")
@handle_errors
def ingest_run_command(
    repo: RepoArg,
    run: Annotated[str, typer.Argument(help="The pipeline run.")],
    metrics: MetricsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Store the measurements a pipeline run's tasks recorded (``self.measure``), checking each on arrival.

    A task's metric ``name`` is stored as ``TASK.name`` (``calibrate.astrometric_scatter``) unless it
    already names its package; its data ID is the quantum's. Only the metrics the package declares
    are stored (a task may measure counts nobody specifies); the others are listed. The run's provenance (software
    versions, task configurations, input collections) comes from the run's quanta. Running it
    again replaces the run's measurements.

    Example:

        porter verify ingest-run repo/ u/alice/drp/run1 --metrics verify_metrics/
    """
    from ..pipeline import RunState
    from ..verify import open_store, pipeline_run_measurements

    with _open(repo) as butler:
        records = [r for r in RunState(butler.registry.db).records(run) if r.status == "succeeded"]
        if not records:
            raise typer.BadParameter(
                f"run {run!r} has no succeeded quanta in this repository", param_hint="RUN"
            )
        store, hook = open_store(butler.registry.db, metrics, butler.root)
        measured, provenance = pipeline_run_measurements(run, records)
        declared = [m for m in measured if m.metric in store.metrics]
        undeclared = sorted({m.metric for m in measured} - {m.metric for m in declared})
        result = store.record(declared, provenance)
        transitions = hook.transitions if hook else []
    print_rows([_stored(result, run)], title="measurements stored", as_json=as_json)
    if undeclared and not as_json:
        console.print(
            f"Not declared in {metrics}, so not stored: {', '.join(undeclared)}",
            markup=False,
            highlight=False,
        )
    _print_transitions(transitions, as_json)


@verify_app.command("status")
@handle_errors
def status_command(repo: RepoArg, as_json: JsonOpt = False) -> None:
    """Each metric's latest run: how many data IDs, the value range (in the metric's unit), what failed.

    "failed LEVEL" counts data IDs whose measurement failed a spec at that level; "regressed"
    those worse than their baseline beyond its tolerance.

    Example:

        porter verify status repo/
    """
    from ..verify import MetricStore

    with _open(repo) as butler:
        store = MetricStore(butler.registry.db)
        rows = []
        latest = store.latest_runs()
        for run in sorted(set(latest.values())):
            for s in store.summary(run):
                if latest.get(s.metric) != run:
                    continue
                rows.append(
                    {
                        "metric": s.metric,
                        "run": s.run,
                        "n": s.count,
                        "min": f"{s.min:.4g}",
                        "mean": f"{s.mean:.4g}",
                        "max": f"{s.max:.4g}",
                        "unit": s.unit,
                        **{f"failed {level}": n for level, n in s.failed.items()},
                        "regressed": s.regressed,
                    }
                )
    rows.sort(key=lambda r: str(r["metric"]))
    print_rows(rows, title="latest measurements", as_json=as_json)


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """The values as a line of block characters, lowest ▁ to highest █."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(_BARS[min(int((v - lo) / span * len(_BARS)), len(_BARS) - 1)] for v in values)


@verify_app.command("trend")
@handle_errors
def trend_command(
    repo: RepoArg,
    metric: Annotated[str, typer.Argument(help="The metric's full name (validate_drp.AM1).")],
    by: Annotated[
        str | None, typer.Option("--by", help="One line per value of this data-ID dimension (band, tract).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only runs since (2026-11-01, 30d).")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Also draw the trend to this PNG file.")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also draw the trend to this SVG file.")] = None,
    metrics: Annotated[
        Path | None,
        typer.Option("--metrics", help="A metrics package: draw the metric's spec levels on the chart."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A metric over runs: per run the mean over data IDs (per --by value), with a sparkline.

    With --png/--svg the same lines are drawn to a chart file, with the spec levels of the
    metrics package given by --metrics as horizontal lines in the metric's unit.

    Example:

        porter verify trend repo/ validate_drp.AM1 --by band --since 90d --svg am1.svg --metrics verify_metrics/
    """
    import numpy as np

    from ..verify import MetricStore

    with _open(repo) as butler:
        series = MetricStore(butler.registry.db).series(metric, since=_since(since))
    groups: dict[str, dict[str, list[float]]] = {}
    times: dict[str, float] = {}
    for at, value, run, data_id in zip(
        series.time.tolist(), series.value.tolist(), series.run, series.data_id, strict=True
    ):
        if by is not None and by not in data_id:
            raise typer.BadParameter(
                f"{metric}'s data IDs have no {by!r} (they have {', '.join(data_id) or 'none'})",
                param_hint="--by",
            )
        key = str(data_id[by]) if by is not None else "all"
        groups.setdefault(key, {}).setdefault(run, []).append(value)
        times[run] = at
    rows = []
    for key, runs in sorted(groups.items()):
        ordered = sorted(runs, key=lambda r: times[r])
        means = [float(np.mean(runs[r])) for r in ordered]
        rows.append(
            {
                **({by: key} if by else {}),
                "runs": len(ordered),
                "first": f"{means[0]:.4g}",
                "last": f"{means[-1]:.4g}",
                "min": f"{min(means):.4g}",
                "max": f"{max(means):.4g}",
                "unit": series.unit,
                "trend": sparkline(means),
                "last run": ordered[-1],
                **({"values": means, "run names": ordered} if as_json else {}),
            }
        )
    print_rows(rows, title=f"{metric} ({len(series)} measurements)", as_json=as_json)
    if png or svg:
        _draw(metric, series.unit, groups, times, by, metrics, [p for p in (png, svg) if p], as_json)


def _draw(
    metric: str,
    unit: str,
    groups: dict[str, dict[str, list[float]]],
    times: dict[str, float],
    by: str | None,
    metrics: Path | None,
    paths: list[Path],
    as_json: bool,
) -> None:
    """The trend's chart files: one line per group (its per-run means), the spec levels as horizontal lines."""
    import numpy as np

    from ..verify import conversion_factor, load_package, trend_chart

    levels: dict[str, tuple[str, float]] = {}
    if metrics is not None:
        _declared, specs = load_package(metrics)
        for spec in specs.for_metric(metric):
            if spec.level and not spec.metadata_query:
                factor = conversion_factor(spec.threshold.unit, unit)
                levels[spec.level] = (spec.threshold.operator, spec.threshold.value * factor)
    lines = {}
    for key, runs in sorted(groups.items()):
        ordered = sorted(runs, key=lambda r: times[r])
        label = f"{by}={key}" if by else metric
        lines[label] = ([times[r] for r in ordered], [float(np.mean(runs[r])) for r in ordered])
    for path in paths:
        trend_chart(path, metric, unit, lines, levels)
        if not as_json:
            console.print(f"chart: {path}", markup=False, highlight=False)


@verify_app.command("compare")
@handle_errors
def compare_command(
    repo: RepoArg,
    run_a: Annotated[str, typer.Argument(help="The earlier run.")],
    run_b: Annotated[str, typer.Argument(help="The later run.")],
    as_json: JsonOpt = False,
) -> None:
    """Two runs side by side: per metric the mean of each and the change, and what differs between them.

    Example:

        porter verify compare repo/ DP1/run1 DP1/run2
    """
    import numpy as np

    from ..verify import MetricStore

    with _open(repo) as butler:
        store = MetricStore(butler.registry.db)
        pairs = store.compare(run_a, run_b)
        a_prov, b_prov = store.provenance(run_a), store.provenance(run_b)
        units = {m: store.series_unit(m) for m in {p[0] for p in pairs}}
    by_metric: dict[str, list[tuple[float | None, float | None]]] = {}
    for name, _data_id, a, b in pairs:
        by_metric.setdefault(name, []).append((a, b))
    rows = []
    for name, values in sorted(by_metric.items()):
        a_values = [a for a, _ in values if a is not None]
        b_values = [b for _, b in values if b is not None]
        a_mean = float(np.mean(a_values)) if a_values else None
        b_mean = float(np.mean(b_values)) if b_values else None
        rows.append(
            {
                "metric": name,
                run_a: "—" if a_mean is None else f"{a_mean:.4g}",
                run_b: "—" if b_mean is None else f"{b_mean:.4g}",
                "change": "—" if a_mean is None or b_mean is None else f"{b_mean - a_mean:+.4g}",
                "unit": units[name],
                "data IDs": f"{len(a_values)} / {len(b_values)}",
            }
        )
    assert a_prov is not None and b_prov is not None
    changed = a_prov.differences(b_prov)
    if as_json:
        print_rows(rows, as_json=True)
        return
    print_rows(rows, title=f"{run_a} → {run_b}")
    if changed:
        console.print("What changed between them:", highlight=False)
        for field_name, (before, after) in changed.items():
            console.print(f"  {field_name}: {before} → {after}", markup=False, highlight=False)
    else:
        console.print("Their recorded provenance is the same.", highlight=False)


@verify_app.command("mark-release")
@handle_errors
def mark_release_command(
    repo: RepoArg,
    run: Annotated[str, typer.Argument(help="The run whose measurements are the release's.")],
    release: Annotated[str, typer.Argument(help="The release's name (DP1).")],
) -> None:
    """Mark a run as a release's: the baseline of metrics declared with ``baseline: {kind: previous_release}``."""
    from ..verify import MetricStore

    with _open(repo) as butler:
        MetricStore(butler.registry.db).mark_release(run, release)
    console.print(f"{run} is the run of release {release}", highlight=False)


# --- alerts and change-points -------------------------------------------------------------------------


def _who(by: str | None) -> str:
    import getpass

    return by or getpass.getuser()


ByOpt = Annotated[str | None, typer.Option("--by", help="Who is acting (default: your login name).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: kept with the record, shown with the alert.")]


@verify_app.command("alerts")
@handle_errors
def alerts_command(
    repo: RepoArg,
    all_: Annotated[bool, typer.Option("--all", help="Resolved and cleared alerts too.")] = False,
    metric: Annotated[str | None, typer.Option("--metric", help="Only this metric's.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open alerts (pending and firing), newest first, with who acknowledged them and why.

    Example:

        porter verify alerts repo/
    """
    from ..verify import AlertBook

    with _open(repo) as butler:
        alerts = AlertBook(butler.registry.db).alerts(
            status=None if all_ else ("pending", "firing"), metric=metric
        )
    if as_json:
        print_rows([a.to_dict() for a in alerts], as_json=True)
        return
    print_rows(
        [
            {
                "id": a.alert_id,
                "status": a.status,
                "severity": a.severity,
                "metric": a.metric,
                "data ID": ", ".join(f"{k}={v}" for k, v in sorted(a.data_id.items())) or "—",
                "level": a.level,
                "runs": a.runs,
                "last": f"{a.last_value:.4g} {a.unit}".strip(),
                "since": a.first_run,
                "acknowledged": f"{a.acknowledged_by}: {a.ack_reason}" if a.acknowledged_by else "",
            }
            for a in alerts
        ],
        title="alerts",
    )


@verify_app.command("ack")
@handle_errors
def ack_command(
    repo: RepoArg,
    alert_id: Annotated[int, typer.Argument(help="The alert's id (porter verify alerts).")],
    reason: ReasonOpt,
    by: ByOpt = None,
) -> None:
    """Acknowledge an open alert: it stays open until the metric recovers, but the release gate accepts it."""
    from ..verify import AlertBook

    with _open(repo) as butler:
        alert = AlertBook(butler.registry.db).acknowledge(alert_id, _who(by), reason)
    console.print(
        f"alert {alert.alert_id} ({alert.metric}) acknowledged by {alert.acknowledged_by}", highlight=False
    )


@verify_app.command("silence")
@handle_errors
def silence_command(
    repo: RepoArg,
    metric: Annotated[str, typer.Argument(help="A metric name or glob (validate_drp.*).")],
    until: Annotated[
        str, typer.Option("--until", help="When the silence ends (2026-12-31, or 7d from now).")
    ],
    reason: ReasonOpt,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="Only data IDs with DIM=VALUE (band=r); repeatable.")
    ] = None,
    by: ByOpt = None,
) -> None:
    """Record alerts of matching metrics without notifying anyone, until a time (a known, accepted problem)."""
    from ..verify import AlertBook

    data_id: dict[str, str | int] = {}
    for term in where or []:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{term!r} is not DIM=VALUE", param_hint="--where")
        data_id[key] = int(value) if value.lstrip("-").isdigit() else value
    ends = _since(until, "--until", ahead=True)
    assert ends is not None
    with _open(repo) as butler:
        s = AlertBook(butler.registry.db).silence(metric, ends, _who(by), reason, data_id=data_id or None)
    console.print(f"silence {s.silence_id}: {metric} until {until} ({reason})", markup=False, highlight=False)


@verify_app.command("notify")
@handle_errors
def notify_command(repo: RepoArg, metrics: MetricsOpt, as_json: JsonOpt = False) -> None:
    """Deliver queued alert notifications through the channels in the package's alerts.yaml.

    Failed deliveries stay queued and are retried with back-off on the next call; each is sent once.
    """
    from ..verify import AlertBook, AlertConfig, Notifier

    with _open(repo) as butler:
        report = Notifier(AlertBook(butler.registry.db), AlertConfig.load(metrics)).deliver()
    rows = [{"delivered": len(report.delivered), "failed": len(report.failed)}]
    print_rows(rows, title="notifications", as_json=as_json)
    if report.failed and not as_json:
        for notification, error in report.failed:
            console.print(f"  {notification.channel}: {error}", markup=False, highlight=False)


@verify_app.command("test-rules")
@handle_errors
def test_rules_command(repo: RepoArg, metrics: MetricsOpt, as_json: JsonOpt = False) -> None:
    """Replay the recorded measurements through the package's alert rules, offline: which alerts would have fired.

    Nothing is stored or sent: use it to try a new level, ``for:`` or silence on the real history
    before committing it (as ``promtool test rules`` does).
    """
    from ..verify import AlertBook, MetricStore, load_package, replay

    declared, _specs = load_package(metrics)
    with _open(repo) as butler:
        history = list(MetricStore(butler.registry.db).outcomes())
        silences = AlertBook(butler.registry.db).silences()
    transitions = replay(history, declared, silences)
    if as_json:
        print_rows([t.to_dict() for t in transitions], as_json=True)
        return
    console.print(
        f"{len(history)} recorded measurements replayed: {sum(t.kind == 'fired' for t in transitions)} alerts "
        f"would have fired, {sum(t.kind == 'resolved' for t in transitions)} resolved",
        highlight=False,
    )
    _print_transitions(transitions, as_json)


@verify_app.command("changes")
@handle_errors
def changes_command(
    repo: RepoArg,
    metric: Annotated[str | None, typer.Option("--metric", help="Only this metric (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change-points: where each series (metric x data ID) shifted, the runs either side and what changed.

    Detected with ruptures (PELT) over every stored series; a shift is attributed to the
    difference in recorded provenance (software versions, configuration, inputs) between the
    last run before it and the first after.

    Example:

        porter verify changes repo/ --metric validate_drp.AM1
    """
    from ..verify import MetricStore, change_points_many, group_series

    with _open(repo) as butler:
        store = MetricStore(butler.registry.db)
        outcomes = list(store.outcomes(metric=metric))
        provenance = {p.run: p for p in store.runs()}
    found = change_points_many(group_series(outcomes).values(), provenance)
    if as_json:
        print_rows([c.to_dict() for c in found], as_json=True)
        return
    if not found:
        console.print(f"No change-points in {len(outcomes)} measurements.", highlight=False)
    for c in found:
        console.print(c.describe(), markup=False, highlight=False, soft_wrap=True)


@verify_app.command("forward")
@handle_errors
def forward_command(repo: RepoArg, as_json: JsonOpt = False) -> None:
    """Send queued measurements to the InfluxDB sinks, in order, resuming where the last attempt stopped.

    Sinks are configured in ``verify-sinks.yaml`` in the repository (or the file named by
    ``$PORTER_VERIFY_SINKS``): name, url, database, optional retention policy and credentials
    (``password_env``). Measurements are queued as they are stored; a sink that is down keeps
    its queue, and nothing is lost or written twice.
    """
    from ..verify import Outbox, load_sinks

    with _open(repo) as butler:
        sinks = load_sinks(butler.root)
        if not sinks:
            raise typer.BadParameter(
                f"no sinks configured: write {butler.root}/verify-sinks.yaml or set $PORTER_VERIFY_SINKS",
                param_hint="REPO",
            )
        outbox = Outbox(butler.registry.db)
        results = [outbox.forward(sink) for sink in sinks]
    rows = [
        {
            "sink": r.sink,
            "sent": r.sent_lines,
            "batches": r.batches,
            "still queued": r.remaining_lines,
            "error": r.error or ("another forwarder is sending" if r.busy else ""),
        }
        for r in results
    ]
    print_rows(rows, title="forwarded", as_json=as_json)
    if any(r.error for r in results):
        raise typer.Exit(1)


from . import _verify_publish_command  # noqa: E402,F401
