"""``porter demo-survey``: generate a synthetic survey, run the mini DRP step by step, report and check it.

The README's main job.  It shows the whole pipeline machinery on honest
data: raw FITS images with noise, bias and a pointing error; calibrations
certified by validity time; a sharded reference catalog; four steps run
as groups by warm worker processes; the run report from the repository; and
the science check — the measured zero points and astrometry against the
truth the generator put in.
"""

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import _progress, app
from ._output import console, handle_errors, print_rows
from ._pipeline_commands import _executor, _options, _print_report, _step_row, _submit

if TYPE_CHECKING:
    from ..butler import DirectButler

DRP = Path(__file__).resolve().parent.parent / "demo" / "pipelines" / "drp.yaml"
RUN = "u/demo/drp"


@app.command("demo-survey")
@handle_errors
def demo_survey(
    repo: Annotated[Path, typer.Option(help="Repository to (re)create.")] = Path("demo-survey-repo"),
    registry: Annotated[
        str | None, typer.Option(help="Registry URL (default SQLite in the repository).")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = 2,
    executor: Annotated[str | None, typer.Option(help="in-process, pool or parsl.")] = None,
    detectors: Annotated[int, typer.Option(help="Detectors per side of the square mosaic.")] = 3,
    visits_per_band: Annotated[int, typer.Option(help="Visits in each of g, r, i.")] = 4,
    group_size: Annotated[int, typer.Option(help="Visits (or tracts) per submission group.")] = 4,
    release: Annotated[
        bool, typer.Option("--release/--no-release", help="Rehearse a release over the outputs.")
    ] = True,
    quality: Annotated[
        bool,
        typer.Option(
            "--quality/--no-quality",
            help="Store the run's metrics, then reprocess truth matching nightly with a planted regression.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report and checks as JSON.")] = False,
) -> None:
    """Generate a synthetic survey, process it with the mini DRP (4 steps), print the report and science checks.

    Example:

        porter demo-survey --repo /tmp/survey -j 4
    """
    # The demo's generator and checks pull in scipy, astropy and the pipeline machinery: imported
    # here, not at the top, so that other commands (and --help) do not pay for them.
    from ..butler import DirectButler
    from ..demo import COLLECTIONS, SurveySpec, generate_survey
    from ..demo._rehearsal import rehearse_release
    from ..pipeline import Pipeline, report_run

    if (repo / "porter.yaml").exists():
        shutil.rmtree(repo)
    elif repo.exists() and any(repo.iterdir()):
        raise typer.BadParameter(f"{repo} exists and is not a porter repository; choose another --repo.")
    spec = SurveySpec(detectors_x=detectors, detectors_y=detectors, visits_per_band=visits_per_band)
    t0 = time.perf_counter()
    butler = DirectButler.create(repo, registry=registry)
    with _progress() as progress:
        bar = progress.add_task("generating survey", total=spec.n_visits * detectors * detectors)
        truth = generate_survey(
            butler, spec, lambda what, i, n: progress.update(bar, completed=i, description=f"writing {what}")
        )
    t_gen = time.perf_counter() - t0
    if not as_json:
        console.print(
            f"Generated [bold]{spec.n_visits}[/] visits x {detectors * detectors} detectors of SynthCam "
            f"in {'/'.join(spec.bands)} ({spec.n_stars} stars, {spec.n_galaxies} galaxies) into {repo} in {t_gen:.1f} s."
        )
    pipe = Pipeline.from_uri(DRP)
    inputs = [COLLECTIONS["defaults"], COLLECTIONS["truth"]]
    t1 = time.perf_counter()
    results = _submit(
        butler,
        pipe,
        [s.label for s in pipe.steps()],
        inputs,
        RUN,
        "",
        {},
        "visit,tract",
        group_size,
        0.1,
        _executor(jobs, executor, None),
        _options(2, None, None),
        None,
    )
    t_run = time.perf_counter() - t1
    report = report_run(butler, RUN)
    checks = science_checks(butler, truth.to_dict())
    if not as_json:
        print_rows([_step_row(r.to_dict()) for r in results], title="steps")
        _print_report(report)
        print_rows(checks, title="science checks against the generator's truth")
        _show_provenance(butler)
        console.print(
            f"Processed in {t_run:.1f} s with {jobs} worker(s). Explore: porter pipeline report {repo} {RUN}"
        )
    rehearsal = None
    if release:
        plans = repo / "releases"

        def say(message: str) -> None:
            if not as_json:
                console.print(f"[cyan]release:[/] {message}", highlight=False, soft_wrap=True)

        rehearsal = rehearse_release(butler, RUN, plans, say=say)
        if not as_json:
            rows = [
                {k: r.get(k, "") for k in ("name", "hand-over", "deadline", "state", "checks", "signed by")}
                for r in rehearsal["status"]["rows"]
            ]
            print_rows(rows, title=f"release {rehearsal['release']} (plan {rehearsal['plan']})")
            console.print(
                f"Release report: {rehearsal['report']}; audit log "
                + ("verified intact." if rehearsal["audit_ok"] else "[red]BROKEN[/].")
            )
    quality_story = None
    if quality:

        def tell(message: str) -> None:
            if not as_json:
                console.print(f"[magenta]quality:[/] {escape(message)}", highlight=False, soft_wrap=True)

        from rich.markup import escape

        from ..demo import nightly_quality

        quality_story = nightly_quality(butler, RUN, inputs, say=tell)
        if not as_json:
            rows = [
                {k: v for k, v in night.items() if k != "alerts"} | {"alerts fired": len(night["alerts"])}
                for night in quality_story["nights"]
            ]
            print_rows(rows, title="metrics checked on arrival (porter verify)")
            for text in quality_story["webhook_messages"]:
                console.print(f"webhook received: {text}", markup=False, highlight=False, soft_wrap=True)
            console.print(
                f"Explore: porter verify status {repo}; porter verify trend {repo} truthMatch.completeness "
                f"--by patch; porter verify alerts {repo}; porter verify changes {repo}",
                highlight=False,
                soft_wrap=True,
            )
    dashboard = _dashboard_account(butler, repo)
    if not as_json:
        console.print(
            f"Dashboard: [bold]porter serve {repo}[/], then open {dashboard['url']} and sign in as "
            f"{dashboard['user']} with the token {dashboard['token']} (porter admin token issue {repo} USER makes "
            "more; porter admin grant gives access).",
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        payload = {
            "dashboard": dashboard,
            "steps": [r.to_dict() for r in results],
            "report": report.to_dict(),
            "checks": checks,
            "seconds": {"generate": t_gen, "process": t_run},
            "release": rehearsal,
            "quality": quality_story,
        }
        console.print_json(json.dumps(payload, default=str))
    butler.close()
    if not all(c["ok"] for c in checks) or report.totals().get("failed", 0):
        raise typer.Exit(1)


def _dashboard_account(butler: "DirectButler", repo: Path) -> dict[str, str]:
    """A release manager who may read and act on everything, with a token to sign in to the dashboard."""
    from ..server import Accounts

    accounts = Accounts(butler.registry.db)
    accounts.add_group("release-team", by="demo-survey")
    accounts.grant("release-team", "write", "*", by="demo-survey")
    accounts.add_user("release-manager", by="demo-survey")
    accounts.add_member("release-team", "release-manager", by="demo-survey")
    issued = accounts.issue_token(
        "release-manager", scopes=("write",), note="porter demo-survey: the dashboard", by="demo-survey"
    )
    return {
        "command": f"porter serve {repo}",
        "url": "http://127.0.0.1:8080/ui/",
        "user": "release-manager",
        "token": issued.secret_text,
    }


def science_checks(butler: "DirectButler", truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Step-1 zero points and astrometry compared with what the generator put in (and later-step metrics)."""
    import numpy as np

    from ..demo._checks import astrometric_residuals
    from ..pipeline import RunState

    visits = {v["id"]: v for v in truth["visits"]}
    state = RunState(butler.registry.db)
    zp_offsets, zp_errors = [], []
    for r in state.records(RUN):
        if r.task == "calibrate" and r.status == "succeeded":
            by_metric = {x["metric"]: x for x in r.measurements}
            zp_offsets.append(by_metric["zeropoint"]["value"] - visits[r.data_id["visit"]]["zeropoint"])
            zp_errors.append(by_metric["zeropoint"]["extras"]["error"])
    seps = astrometric_residuals(butler, RUN)
    pointing_error = truth["spec"]["pointing_error"] * 1000
    rms = float(np.sqrt(np.mean(np.square(seps))) * 1000) if seps.size else float("nan")
    zp_rms = float(np.sqrt(np.mean(np.square(zp_offsets))) * 1000) if zp_offsets else float("nan")
    zp_err = float(np.median(zp_errors) * 1000) if zp_errors else float("nan")
    checks = [
        {
            "check": "astrometric scatter vs truth (bright stars)",
            "value": f"{rms:.1f} mas",
            "expectation": f"< 60 mas (header WCS was off by sigma={pointing_error:.0f} mas)",
            "ok": rms < 60,
        },
        {
            "check": "zero point vs truth (rms over detectors)",
            "value": f"{zp_rms:.1f} mmag",
            "expectation": f"< max(4 x fit error {zp_err:.1f}, 10) mmag",
            "ok": zp_rms < max(4 * zp_err, 10),
        },
    ]
    for r in state.records(RUN):
        if r.task in ("truthMatch", "repeatability") and r.status == "succeeded":
            for m in r.measurements:
                if m["metric"] == "completeness":
                    checks.append(
                        {
                            "check": f"completeness r<{m['extras']['mag_limit']} patch {r.data_id['patch']}",
                            "value": f"{m['value']:.2f}",
                            "expectation": "> 0.7",
                            "ok": m["value"] > 0.7,
                        }
                    )
                if m["metric"].startswith("photometric_repeatability"):
                    checks.append(
                        {
                            "check": m["metric"].replace("_", " "),
                            "value": f"{m['value']:.1f} mmag",
                            "expectation": "< 30 mmag",
                            "ok": m["value"] < 30,
                        }
                    )
    return checks


def _show_provenance(butler: "DirectButler") -> None:
    """One line tracing an objectTable back to its raw, through the quanta that made each dataset."""
    from ..pipeline import dataset_provenance

    refs = butler.query_datasets("objectTable", RUN, limit=1, explain=False)
    if not refs:
        return
    node = dataset_provenance(butler, str(refs[0].id))
    chain = [node.dataset_type]
    while node.quantum is not None and node.inputs:
        chain.append(f"[cyan]{node.quantum.task}[/]")
        node = next((i for i in node.inputs if i.quantum is not None), node.inputs[0])
        chain.append(node.dataset_type)
    console.print("Provenance of an objectTable: " + " ← ".join(chain), highlight=False)
