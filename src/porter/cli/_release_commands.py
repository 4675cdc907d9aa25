"""``porter release …``: plans, checks, confirmations, waivers, sign-offs, findings, the go-public gate, the audit log."""

import contextlib
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import JsonOpt, _local_repository, _progress, app
from ._output import console, err_console, handle_errors, print_json, print_rows

if TYPE_CHECKING:  # porter.release pulls in the butler, DuckDB and pyarrow: imported inside the commands
    from ..release import Release

release_app = typer.Typer(
    name="release",
    help="Data-release management: hand-over checkpoints with shipping lists, checks, sign-off gates, "
    "red-team findings, schedule and an audit log.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
finding_app = typer.Typer(name="finding", help="Red-team findings: add, close, list.", no_args_is_help=True)
release_app.add_typer(finding_app)
app.add_typer(release_app)

NameArg = Annotated[
    str, typer.Argument(help="The release (its plan is NAME.yaml in the repository's releases/ directory).")
]
PlansOpt = Annotated[
    Path | None,
    typer.Option(
        "--plans",
        help="Directory of the release plans (default: the repository's releases/; see --repo).",
        envvar="PORTER_RELEASES",
    ),
]
RepoOpt = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        help="Repository whose releases/ holds the plan (default: ./releases, then the releases/ "
        "of each porter repository in the current directory).",
        envvar="PORTER_REPO",
        callback=_local_repository,
    ),
]
ByOpt = Annotated[str, typer.Option("--by", help="Who does this (a person of the plan).")]
TodayOpt = Annotated[
    str | None, typer.Option("--today", help="Evaluate the schedule as of this date (YYYY-MM-DD).")
]


def _plan_path(name: str, plans: Path | None, repo: Path | None) -> Path:
    """Where release ``name``'s plan is: --plans, else --repo's releases/, else searched for from here."""
    from ..release import find_plan

    return find_plan(name, plans, repo)


@contextlib.contextmanager
def _release(name: str, plans: Path | None, repo: Path | None) -> Iterator["Release"]:
    from ..release import Release

    rel = Release.open(name, _plan_path(name, plans, repo).parent)
    try:
        yield rel
    finally:
        rel.close()


def _date(text: str | None) -> datetime.date | None:
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date; write YYYY-MM-DD.") from None


@release_app.command("init")
@handle_errors
def init(
    name: NameArg,
    repo: Annotated[
        str,
        typer.Option(
            "--repo",
            help="The repository the release draws from; the plan is written to its releases/.",
            envvar="PORTER_REPO",
        ),
    ] = "",
    template: Annotated[
        str, typer.Option("--template", help="Plan template: rubin (the six hand-overs).")
    ] = "rubin",
    like_release: Annotated[
        str | None,
        typer.Option("--like", help="Copy this earlier release's plan (the new one is written beside it)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="First day of release work (default today).")
    ] = None,
    shift_days: Annotated[
        int | None,
        typer.Option(
            "--shift-days",
            help="With --like: move every date by this many days (default: so the first deadline is as far from --start as it was from its own start).",
        ),
    ] = None,
    collection: Annotated[
        list[str] | None,
        typer.Option(
            "--collection",
            help="With --like: OLD=NEW renames a collection of the earlier release (repeatable); names holding "
            "the earlier release's name are renamed by themselves.",
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="With --like: keep collections of the earlier release (refused otherwise)."
        ),
    ] = False,
    plans: PlansOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing plan file.")] = False,
) -> None:
    """Write a new release plan: the six Rubin hand-overs, or a copy of an earlier release with dates shifted.

    The plan goes to the repository's releases/ directory (REPO/releases/NAME.yaml), where
    every `porter release` command finds it; with --like, beside the earlier plan; --plans DIR
    puts it elsewhere.

    Every field of the plan (item kinds, rules, roles, validation levels, features, environments)
    is described, with a complete example, in docs/release-plan.md (print it with
    `python -m porter.release.reference`).

    Examples:

        porter release init DP2 --template rubin --repo /repo/main --start 2027-01-04

        porter release init DP3 --like DP2 --shift-days 182
    """
    from ..release import PlanError, dump_plan, like, load_plan, plans_dir_of, rubin_template

    start_day = _date(start) or datetime.date.today()
    rewrites: list[str] = []
    if like_release:
        previous_path = _plan_path(like_release, plans, Path(repo) if repo else None)
        previous = load_plan(previous_path)
        if shift_days is None:
            first = min(c.deadline for c in previous.checkpoints)
            shift_days = (start_day - first).days + 21
        renames: dict[str, str] = {}
        for pair in collection or []:
            old_name, sep, new_name = pair.partition("=")
            if not sep or not old_name.strip() or not new_name.strip():
                raise typer.BadParameter(f"--collection {pair!r}: use OLD=NEW, e.g. u/drp/dp2=u/drp/dp3.")
            renames[old_name.strip()] = new_name.strip()
        plan, rewrites = like(previous, name, shift_days, renames, keep)
        directory = plans if plans is not None else previous_path.parent
    else:
        if template != "rubin":
            raise typer.BadParameter(f"--template {template!r}: the available template is 'rubin'.")
        if not repo:
            raise typer.BadParameter("Give the repository the release draws from with --repo REPO.")
        directory = plans if plans is not None else plans_dir_of(repo)
        local = Path(repo)
        plan = rubin_template(name, str(local.resolve()) if local.exists() else repo, start_day)
    path = directory / f"{name}.yaml"
    if path.exists() and not force:
        raise PlanError(f"{path} exists; edit it, or pass --force to replace it.")
    directory.mkdir(parents=True, exist_ok=True)
    dump_plan(plan, path)
    for line in rewrites:
        console.print(f"  rewrote {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"Wrote [bold]{path}[/]: {len(plan.checkpoints)} checkpoints "
        f"({', '.join(c.name for c in plan.checkpoints)}), first deadline {min(c.deadline for c in plan.checkpoints)}.",
        soft_wrap=True,
    )


@release_app.command("status")
@handle_errors
def status(
    name: NameArg,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the full report as one self-contained HTML file here."),
    ] = None,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Checkpoints with hand-over, owner, deadline, projected date (slips carried forward), checks, sign-off; findings.

    With --html FILE, also the full report: status, every check with samples,
    completeness chart, check history, findings and audit log, in one file.

    Examples:

        porter release status DP2

        porter release status DP2 --html dp2.html

        porter release status DEMO1 --repo demo-survey-repo --json
    """
    with _release(name, plans, repo) as rel:
        data = rel.status(_date(today))
        if html_file is not None:
            _write_report(rel, html_file, today)
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    machine = {"checks_passed", "checks_total", "signed_at", "required"}
    machine |= {
        "features_done",
        "features_total",
        "features_late",
    }  # --json has them; the table shows "features"
    print_rows(
        [{k: v for k, v in r.items() if k not in machine} for r in data["rows"]], title=f"release {name}"
    )
    if data["features"]:
        print_rows(
            [
                {k: f[k] for k in ("milestone", "id", "due", "completed", "status", "description")}
                for f in data["features"]
            ],
            title=f"features ({data['validation']} validation)",
        )
    open_findings = [f for f in data["findings"] if f["open"]]
    if open_findings:
        print_rows(
            [{k: f[k] for k in ("id", "severity", "checkpoint", "text", "opened_by")} for f in open_findings],
            title="open findings",
        )
    if data["ready"]:
        console.print("[bold green]ready to go public[/]")
    else:
        blockers = data["blockers"]
        console.print(
            f"not yet marked ready; {len(blockers)} blocker(s)"
            + (f": see porter release ready {name} --dry-run" if blockers else "")
        )
    if html_file is not None:
        console.print(f"Wrote {html_file} ({html_file.stat().st_size / 1024:.0f} kB).")


def _write_report(rel: "Release", html_file: Path, today: str | None) -> None:
    """The release's HTML report, written whole or not at all."""
    from ..release._report import html_report

    text = html_report(rel, _date(today))
    tmp = html_file.with_name(f".{html_file.name}.tmp")
    tmp.write_text(text)
    tmp.replace(html_file)


@release_app.command("report")
@handle_errors
def report(
    name: NameArg,
    html_file: Annotated[Path, typer.Option("--html", help="Where to write the report.")] = Path(
        "report.html"
    ),
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    today: TodayOpt = None,
) -> None:
    """The release's HTML report alone: the same as `porter release status NAME --html FILE`, without the table.

    Example:

        porter release report DP2 --html dp2-report.html
    """
    with _release(name, plans, repo) as rel:
        _write_report(rel, html_file, today)
    console.print(f"Wrote {html_file} ({html_file.stat().st_size / 1024:.0f} kB).")


@release_app.command("check")
@handle_errors
def check(
    name: NameArg,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Only this checkpoint (default: all).")
    ] = None,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    by: Annotated[str, typer.Option("--by", help="Who runs the checks.")] = "porter",
    as_json: JsonOpt = False,
) -> None:
    """Run the checks of a checkpoint's shipping list (or of all) and record the results.

    Exits 1 when any check fails or cannot run (error), so a script or CI job stops there. A signed-off
    checkpoint whose checks now fail is reopened (recorded in the audit log). Manual items not yet
    confirmed are shown as pending: they block sign-off, but do not change the exit status.

    Example:

        porter release check DP2 --checkpoint images
    """
    out = []
    with _release(name, plans, repo) as rel, _progress() as progress:
        names = [checkpoint] if checkpoint else [c.name for c in rel.plan.checkpoints]
        task = progress.add_task("checks", total=sum(len(rel.plan.checkpoint(cp).items) for cp in names))
        for cp in names:

            def starting(item: str, cp: str = cp) -> None:
                progress.update(task, description=f"{cp}: {item}")

            results = rel.check(cp, by, starting)
            progress.update(task, advance=len(rel.plan.checkpoint(cp).items))
            out += [{"checkpoint": cp, **r.to_dict()} for r in results]
    bad = [r for r in out if r["status"] in ("fail", "error")]
    if as_json:
        console.print_json(json.dumps(out, default=str))
        if bad:
            raise typer.Exit(1)
        return
    print_rows(
        [
            {k: r[k] for k in ("checkpoint", "name", "status", "value", "expected", "message")}
            | {"seconds": round(r["seconds"], 3)}
            for r in out
        ],
        title=f"checks of {name}",
    )
    for r in out:
        if r["status"] != "pass" and r["sample"]:
            console.print(f"[red]{r['name']}[/] e.g. {r['sample'][:3]}", highlight=False)
        if r.get("details"):
            console.print(f"  all of them: {rel.plan_path.parent / r['details']}", highlight=False)
    for r in out:
        if r["status"] == "pending":
            console.print(f"[yellow]{r['checkpoint']}: {r['item']}[/] {r['message']}", highlight=False)
    if bad:
        err_console.print(f"{len(bad)} check(s) failed or could not run.", highlight=False)
        raise typer.Exit(1)


@release_app.command("missing")
@handle_errors
def missing(
    name: NameArg,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Only this checkpoint (default: all).")
    ] = None,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show in the table (--json gives all).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Every data ID the latest completeness checks found missing (all of them, not the sample).

    The check run stores them as Parquet beside the plan; this reads them back.

    Example:

        porter release missing DP2 --checkpoint images --json > missing.json
    """
    rows: list[dict[str, Any]] = []
    with _release(name, plans, repo) as rel:
        state = rel.state()
        for cp in [checkpoint] if checkpoint else [c.name for c in rel.plan.checkpoints]:
            rel.plan.checkpoint(cp)  # an unknown name is an error naming the known ones
            run = state.checks.get(cp)
            for r in run.payload["results"] if run else []:
                if r.get("details"):
                    stored = _read_missing(rel.plan_path.parent / r["details"])
                    rows += [{"checkpoint": cp, "check": r["name"], **d} for d in stored]
    if as_json:
        print_json(rows)
        return
    print_rows(rows[:limit], title=f"missing data IDs of {name} ({len(rows)})")
    if len(rows) > limit:
        console.print(f"… and {len(rows) - limit} more (--limit, or --json for all).")


def _read_missing(path: Path) -> list[dict[str, Any]]:
    """The missing data IDs a check run stored, or a clear error if the file is gone or damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..errors import PorterError

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        problem = " ".join(str(exc).split())
        raise PorterError(
            f"The missing data IDs of the last check, {path}, cannot be read ({problem}); "
            "run `porter release check` again to write them anew."
        ) from None


@release_app.command("confirm")
@handle_errors
def confirm(
    name: NameArg,
    checkpoint: Annotated[str, typer.Argument(help="The checkpoint.")],
    item: Annotated[str, typer.Argument(help="The manual item done.")],
    by: ByOpt,
    comment: Annotated[str, typer.Option("--comment", help="What was checked, how.")] = "",
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Record that a manual shipping-list item was checked by a person."""
    with _release(name, plans, repo) as rel:
        rel.confirm(checkpoint, item, by, comment)
    console.print(f"Recorded: {item} of {checkpoint} confirmed by {by}.")


@release_app.command("waive")
@handle_errors
def waive(
    name: NameArg,
    checkpoint: Annotated[str, typer.Argument(help="The checkpoint.")],
    check_name: Annotated[str, typer.Argument(metavar="CHECK", help="The failed check's name (item:check).")],
    by: ByOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why the release may go ahead regardless.")],
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Waive a failed check, with a reason (people with can_waive, or the decider)."""
    with _release(name, plans, repo) as rel:
        rel.waive(checkpoint, check_name, by, reason)
    console.print(f"Waived {check_name} of {checkpoint} ({by}: {reason}).")


@release_app.command("ack")
@handle_errors
def ack(
    name: NameArg,
    checkpoint: Annotated[
        str, typer.Argument(help="The checkpoint whose metrics item gates the alert's metric.")
    ],
    alert_id: Annotated[int, typer.Argument(metavar="ALERT", help="The alert's id (porter verify alerts).")],
    by: ByOpt,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the release may go ahead with the alert open.")
    ],
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Acknowledge a firing metric alert for the release gate, with a reason (people with can_waive, or the decider).

    Recorded in the alert book and in the release's audit log; the checkpoint's next check run accepts it.
    """
    with _release(name, plans, repo) as rel:
        rel.acknowledge(checkpoint, alert_id, by, reason)
    console.print(f"Acknowledged alert {alert_id} for {checkpoint} ({by}: {reason}).", highlight=False)


@release_app.command("signoff")
@handle_errors
def signoff(
    name: NameArg,
    checkpoint: Annotated[str, typer.Argument(help="The hand-over to sign off.")],
    by: ByOpt,
    override: Annotated[
        str | None,
        typer.Option(
            "--override", help="Decider of last resort only: sign off despite the gate, for this reason."
        ),
    ] = None,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Sign off a hand-over; refused while a dependency is unsigned or a check fails without a waiver.

    Examples:

        porter release signoff DP2 images --by release-manager

        porter release signoff DP2 hips --by decider --override "HiPS coverage map deferred to DP2.1"
    """
    with _release(name, plans, repo) as rel:
        event = rel.signoff(checkpoint, by, override)
    word = "Overrode the gate and signed" if event.action == "override-signoff" else "Signed"
    warnings = event.payload.get("warnings", [])
    accepted = f", accepting {len(warnings)} warning(s):" if warnings else "."
    console.print(f"{word} off {checkpoint} ({by}){accepted}", markup=False, highlight=False)
    for w in warnings:
        console.print(f"  - {w}", markup=False, highlight=False, soft_wrap=True)


@release_app.command("ready")
@handle_errors
def ready(
    name: NameArg,
    by: Annotated[
        str | None, typer.Option("--by", help="A release manager or the decider (not needed with --dry-run).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List what blocks going public, and the fix of each; record nothing."),
    ] = False,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The go-public gate, on today's date: every checkpoint signed (by its signers), every delivery unchanged
    since its manifest, the latest checks passing or validly waived, no open blocker, the test period run.
    Then the date may be announced.

    Examples:

        porter release ready DP2 --dry-run

        porter release ready DP2 --by release-manager
    """
    with _release(name, plans, repo) as rel:
        if dry_run:
            blockers = rel.blockers()
            if as_json:
                console.print_json(
                    json.dumps(
                        {"release": name, "ready": not blockers, "blockers": [b.to_dict() for b in blockers]}
                    )
                )
            elif blockers:
                print_rows([b.to_dict() for b in blockers], title=f"what blocks {name} going public")
            else:
                console.print(f"Nothing blocks {name}: `porter release ready {name} --by …` would succeed.")
            if blockers:
                raise typer.Exit(1)
            return
        if by is None:
            raise typer.BadParameter("--by is needed to mark the release ready (or use --dry-run).")
        event = rel.mark_ready(by)
    if as_json:
        console.print_json(json.dumps(event.to_dict(), default=str))
        return
    console.print(
        f"[bold green]{name} is ready to go public[/] (marked by {by}, audit event {event.seq}); the date may now be announced."
    )


@release_app.command("smoke")
@handle_errors
def smoke(
    name: NameArg,
    env: Annotated[str, typer.Option("--env", help="The environment whose smoke tests to run (e.g. test).")],
    by: ByOpt,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run an environment's smoke tests against the content shipped now, and record the run (LDM-564).

    Exits 1 if any fails. A promotion from this environment needs its latest run green on the same
    content (the same manifest hashes).

    Example:

        porter release smoke DP2 --env test --by release-manager
    """
    with _release(name, plans, repo) as rel:
        results = rel.smoke(env, by)
    out = [r.to_dict() for r in results]
    if as_json:
        console.print_json(json.dumps(out, default=str))
    else:
        print_rows(
            [
                {k: r[k] for k in ("name", "status", "value", "message")}
                | {"seconds": round(r["seconds"], 2)}
                for r in out
            ],
            title=f"smoke tests of {name} on {env}",
        )
    if any(r.status != "pass" for r in results):
        raise typer.Exit(1)


@release_app.command("promote")
@handle_errors
def promote(
    name: NameArg,
    to: Annotated[str, typer.Option("--to", help="The environment to promote to (e.g. production).")],
    by: ByOpt,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Promote a release to an environment: refused unless its sign-offs stand, its deliveries match their
    manifests and the smoke tests of the environment it is promoted from ran green on the same content.

    Example:

        porter release promote DP2 --to production --by release-manager
    """
    with _release(name, plans, repo) as rel:
        event = rel.promote(to, by)
    console.print(
        f"Promoted {name} to {to} from {event.payload['promoted_from']} ({by}, audit event {event.seq}).",
        markup=False,
        highlight=False,
    )


@release_app.command("reopen")
@handle_errors
def reopen(
    name: NameArg,
    checkpoint: Annotated[str, typer.Argument(help="The signed-off hand-over to reopen.")],
    by: ByOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why the sign-off no longer holds.")],
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Withdraw a checkpoint's sign-off, with a reason (recorded); it must be signed again before `ready`.

    A re-ship with other content and a check run that fails after the sign-off reopen it by themselves.

    Example:

        porter release reopen DP2 catalogs --by release-manager --reason "Object.parquet regenerated"
    """
    with _release(name, plans, repo) as rel:
        rel.reopen(checkpoint, by, reason)
    console.print(f"Reopened {checkpoint} ({by}: {reason}).", markup=False, highlight=False)


@release_app.command("ship")
@handle_errors
def ship(
    name: NameArg,
    checkpoint: Annotated[str, typer.Argument(help="The hand-over whose delivery to freeze.")],
    by: ByOpt,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Freeze a delivery as a Parquet manifest (every dataset and file with size and checksum) and its content hash.

    Example:

        porter release ship DP2 catalogs --by pipelines-lead
    """
    with _release(name, plans, repo) as rel:
        event = rel.ship(checkpoint, by)
    p = event.payload
    console.print(
        f"Shipped {checkpoint}: {p['entries']} entries, {p['bytes'] / 1e6:.1f} MB, content hash {p['content_hash'][:16]}; manifest {p['manifest']}."
    )


@release_app.command("diff")
@handle_errors
def diff(
    old: Annotated[str, typer.Argument(help="The earlier release.")],
    new: Annotated[str, typer.Argument(help="The later release.")],
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two releases' latest manifests, checkpoint by checkpoint (added, removed, changed)."""
    from ..release._manifest import diff_manifests

    out: dict[str, dict[str, Any]] = {}
    with _release(old, plans, repo) as a, _release(new, plans, repo) as b:
        for cp in b.plan.checkpoints:
            sa, sb = (
                a.shipped(cp.name) if cp.name in {c.name for c in a.plan.checkpoints} else None,
                b.shipped(cp.name),
            )
            if sa is None or sb is None:
                out[cp.name] = {"note": f"not shipped in {old if sa is None else new}"}
                continue
            out[cp.name] = diff_manifests(sa[1], sb[1])
    if as_json:
        console.print_json(json.dumps(out, default=str))
        return
    rows: list[dict[str, Any]] = []
    for name, d in out.items():
        if "note" in d:
            rows.append({"checkpoint": name, "added": "", "removed": "", "changed": "", "note": d["note"]})
        else:
            rows.append(
                {
                    "checkpoint": name,
                    "added": len(d["added"]),
                    "removed": len(d["removed"]),
                    "changed": len(d["changed"]),
                    "note": "",
                }
            )
    print_rows(rows, title=f"{old} → {new}")


@release_app.command("audit")
@handle_errors
def audit(
    name: NameArg,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Check the hash chain and its anchors; exit 1 if it was altered or truncated."
        ),
    ] = False,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The release's audit log (every check run, waiver, sign-off, override and finding), hash-chained."""
    with _release(name, plans, repo) as rel:
        events = rel.events()
        problems = rel.verify_audit() if verify else []
    if as_json:
        console.print_json(
            json.dumps({"events": [e.to_dict() for e in events], "problems": problems}, default=str)
        )
    else:
        print_rows(
            [
                {
                    "seq": e.seq,
                    "at": datetime.datetime.fromtimestamp(e.at).isoformat(timespec="seconds"),
                    "actor": e.actor,
                    "action": e.action,
                    "checkpoint": e.checkpoint,
                    "hash": e.hash[:12],
                }
                for e in events
            ],
            title=f"audit log of {name}",
        )
    if verify:
        if problems:
            for p in problems:
                err_console.print(f"[bold red]tampered:[/] {p}")
            raise typer.Exit(1)
        console.print(f"[green]verified[/]: {len(events)} events, chain intact.")


@finding_app.command("add")
@handle_errors
def finding_add(
    name: NameArg,
    text: Annotated[str, typer.Argument(help="What is wrong.")],
    severity: Annotated[str, typer.Option("--severity", help="blocker, major or minor.")],
    by: ByOpt,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="The hand-over it concerns.")] = "",
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Record a red-team finding (a blocker stops the release from going public until closed)."""
    with _release(name, plans, repo) as rel:
        f = rel.add_finding(severity, checkpoint, text, by)
    console.print(f"Finding {f.id} ({severity}) recorded.")


@finding_app.command("close")
@handle_errors
def finding_close(
    name: NameArg,
    finding_id: Annotated[int, typer.Argument(metavar="ID")],
    by: ByOpt,
    resolution: Annotated[str, typer.Option("--resolution", help="How it was resolved.")] = "",
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Close a finding with its resolution."""
    with _release(name, plans, repo) as rel:
        rel.close_finding(finding_id, by, resolution)
    console.print(f"Finding {finding_id} closed.")


@finding_app.command("to-check")
@handle_errors
def finding_to_check(
    name: NameArg,
    finding_id: Annotated[int, typer.Argument(metavar="ID")],
    by: ByOpt,
    rule: Annotated[
        list[str],
        typer.Option(
            "--rule",
            help="A content rule as JSON/YAML, e.g. '{rule: range, column: psfFlux, min: 0}'; repeatable.",
        ),
    ],
    table: Annotated[
        str | None, typer.Option("--table", help="Apply to catalogs of this schema table.")
    ] = None,
    item: Annotated[
        str | None, typer.Option("--item", help="Apply to the shipping-list item of this name.")
    ] = None,
    check_name: Annotated[
        str | None, typer.Option("--name", help="Name of the corpus check (default RELEASE-finding-ID).")
    ] = None,
    plans: PlansOpt = None,
    repo: RepoOpt = None,
) -> None:
    """Turn a finding into a regression-corpus check, so every later release runs it.

    Example:

        porter release finding to-check DP1 7 --by release-manager --table Source --rule '{rule: range, column: psfFlux, min: 0}'
    """
    import yaml

    rules = []
    for text in rule:
        try:
            parsed = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, TypeError, KeyError, RecursionError) as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise typer.BadParameter(
                f"--rule {text!r} is not valid YAML ({problem}); write a mapping such as "
                "'{rule: range, column: psfFlux, min: 0}'."
            ) from None
        if not isinstance(parsed, dict) or "rule" not in parsed:
            raise typer.BadParameter(
                f"--rule {text!r}: give a mapping with a 'rule' key, e.g. '{{rule: finite, columns: [ra]}}'."
            )
        rules.append(parsed)
    applies = {k: v for k, v in (("table", table), ("item", item)) if v}
    with _release(name, plans, repo) as rel:
        path = rel.finding_to_check(finding_id, by, rules, applies, check_name)
    console.print(f"Wrote corpus check {path}; every release's catalog checks now run it.")


@finding_app.command("list")
@handle_errors
def finding_list(
    name: NameArg, plans: PlansOpt = None, repo: RepoOpt = None, as_json: JsonOpt = False
) -> None:
    """Every finding, open and closed."""
    with _release(name, plans, repo) as rel:
        findings = [f.to_dict() for f in rel.state().findings.values()]
    print_rows(findings, title=f"findings of {name}", as_json=as_json)


__all__ = ["release_app"]
