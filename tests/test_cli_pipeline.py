"""``porter pipeline …``, ``porter provenance`` and ``porter demo-survey`` run as a user would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from conftest import DRP_YAML, SURVEY_INPUTS
from porter import Butler
from test_cli import run

RUN = "u/cli/drp"
INPUTS = ",".join(SURVEY_INPUTS)


def test_qgraph_run_report_provenance(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    repo = butler.root
    out = run(
        "pipeline",
        "qgraph",
        repo,
        f"{DRP_YAML}#step1",
        "-i",
        INPUTS,
        "--output-run",
        RUN,
        "-d",
        "band = 'g'",
        "--json",
        "-q",
        tmp_path / "g.qgraph",
        "--mermaid",
        tmp_path / "drp.mmd",
    )
    summary = json.loads(out)
    raws_g = butler.query_datasets("raw", "SynthCam/raw/all", where="band = 'g'", instrument="SynthCam")
    assert summary["tasks"] == {"isr": len(raws_g), "calibrate": len(raws_g)}
    assert (tmp_path / "drp.mmd").read_text().startswith("flowchart TD")
    run("pipeline", "run", repo, "--qgraph", tmp_path / "g.qgraph", "-j", "2")
    report = json.loads(run("pipeline", "report", repo, RUN, "--json"))
    assert report["totals"]["succeeded"] == 2 * len(raws_g)
    assert report["tasks"]["calibrate"]["cpu_seconds"] > 0
    calexp = butler.query_datasets("calexp", RUN)[0]
    tree = json.loads(run("provenance", repo, str(calexp.id), "--json"))
    assert tree["made_by"]["task"] == "calibrate"
    made = {i["dataset_type"]: i.get("made_by", {}).get("task") for i in tree["inputs"]}
    assert made == {"postISRCCD": "isr", "ref_cat": None}
    text = run("provenance", repo, str(calexp.id))
    assert "← calibrate" in text and "raw" in text
    run("provenance", repo, "--run", RUN, "--export", tmp_path / "prov.json")
    doc = json.loads((tmp_path / "prov.json").read_text())
    assert len(doc["activity"]) == 2 * len(raws_g)


def test_submit_steps_then_report_errors(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    repo = butler.root
    data = json.loads(
        run(
            "pipeline",
            "submit",
            repo,
            DRP_YAML,
            "--steps",
            "step1,step2",
            "-i",
            INPUTS,
            "-o",
            "u/cli/chain",
            "--group-size",
            "2",
            "-j",
            "2",
            "--json",
        )
    )
    assert [s["step"] for s in data["steps"]] == ["step1", "step2"]
    assert data["report"]["totals"]["failed"] == 0 and data["report"]["totals"]["succeeded"] > 0
    # -o made a timestamped run and chained it in front of the inputs.
    chain = butler.registry.collections.get("u/cli/chain")
    assert chain.children[1:] == tuple(SURVEY_INPUTS) and chain.children[0].startswith("u/cli/chain/")
    # A broken config value is refused before anything runs, naming task and field.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"imports: [{DRP_YAML}]\ntasks:\n  calibrate:\n    config: {{detection_threshold: high}}\n"
    )
    out = run("pipeline", "submit", repo, bad, "-i", INPUTS, "--output-run", "u/cli/bad", ok=False)
    assert "Bad config for task 'calibrate'" in out and "detection_threshold" in out
    out = run(
        "pipeline",
        "submit",
        repo,
        DRP_YAML,
        "--steps",
        "step9",
        "-i",
        INPUTS,
        "--output-run",
        "u/cli/x",
        ok=False,
    )
    assert "no step 'step9'" in out
    out = run("pipeline", "report", repo, "u/cli/never", ok=False)
    assert "No pipeline was ever submitted to run 'u/cli/never'" in out


def test_failures_reported_then_restart(survey: tuple[Butler, Any], tmp_path: Path) -> None:
    butler, _ = survey
    repo = butler.root
    marker = tmp_path / "broken"
    marker.touch()
    pipe = tmp_path / "stats.yaml"
    pipe.write_text(
        "instrument: SynthCam\ntasks:\n  stats:\n    class: pipeline_tasks.ImageStatsTask\n"
        f"    config: {{fail_detector: 2, fail_marker: '{marker}'}}\n  visitStats: pipeline_tasks.VisitStatsTask\n"
    )
    out = run("pipeline", "run", repo, pipe, "-i", INPUTS, "--output-run", RUN, "--retries", "0", ok=False)
    assert "failed" in out and "porter pipeline restart" in out
    report = json.loads(run("pipeline", "report", repo, RUN, "--json"))
    assert report["totals"]["failed"] > 0 and report["totals"]["blocked"] == report["totals"]["failed"]
    assert "detector 2 is broken" in report["errors"][0]["message"]
    marker.unlink()
    run("pipeline", "restart", repo, RUN, "-j", "2")
    report = json.loads(run("pipeline", "report", repo, RUN, "--json"))
    assert report["totals"]["failed"] == report["totals"]["blocked"] == 0


def test_demo_survey_main_job(tmp_path: Path) -> None:
    out = run(
        "demo-survey", "--repo", tmp_path / "demo", "--detectors", "2", "--visits-per-band", "2", "--json"
    )
    data = json.loads(out[out.index("{") :])
    assert all(c["ok"] for c in data["checks"]), data["checks"]
    assert data["report"]["totals"]["failed"] == 0
    assert {s["step"] for s in data["steps"]} == {"step1", "step2", "step3", "step4"}
    # The release rehearsal: the planted duplicate is caught, recorded, fixed; every hand-over signed; audit intact.
    release = data["release"]
    assert any(m.startswith("check caught: object-table:primary key") for m in release["log"])
    assert all(r["state"] == "done" for r in release["status"]["rows"] if r["kind"] == "checkpoint")
    assert release["audit_ok"] and not release["status"]["ready"]  # the test period has not run yet
    assert [f["open"] for f in release["status"]["findings"]] == [False]
    assert Path(release["report"]).read_text().startswith("<!doctype html>")
    # Quality: metrics checked on arrival; the planted regression (nights 4-6 match with 0.05") is caught on
    # night 4, its alerts delivered to the demo's webhook receiver, and the shift attributed to the config.
    quality = data["quality"]
    nights = {n["run"]: n for n in quality["nights"]}
    assert [nights[f"u/demo/drp/nightly/{k}"]["failed minimum"] for k in (1, 2, 3)] == [0, 0, 0]
    degraded = nights["u/demo/drp/nightly/4"]
    assert degraded["failed minimum"] > 0 and degraded["alerts"]
    fixed = nights["u/demo/drp/nightly/7"]  # the configuration fixed: every alert resolves
    assert fixed["failed minimum"] == 0 and all(a.startswith("RESOLVED") for a in fixed["alerts"])
    assert len(fixed["alerts"]) == len(degraded["alerts"]) == degraded["delivered"]
    assert quality["webhook_messages"] == degraded["alerts"] + fixed["alerts"]
    assert all(a.startswith("FIRING") for a in degraded["alerts"])
    assert not nights["u/demo/drp/nightly/5"]["alerts"]  # one alert per series, not one per night
    assert quality["change_points"]
    for change in quality["change_points"]:
        assert (change["run_before"], change["run_after"]) == ("u/demo/drp/nightly/3", "u/demo/drp/nightly/4")
        assert list(change["changed"]) == ["config_hash"] and change["shift"] < 0
    # The nightly release gate refuses the degraded night (its failing patches and firing alerts), then
    # passes and is signed once the fixed night is the latest.
    gate = quality["gate"]
    assert gate["before_fix"] == {
        "failing": ["nightly-metrics:metric truthMatch.completeness"],
        "signed": False,
    }
    assert gate["after_fix"] == {"failing": [], "signed": True}
    # The main job ends with the dashboard: its command, URL and a token that signs the release manager in.
    dashboard = data["dashboard"]
    assert dashboard["command"] == f"porter serve {tmp_path / 'demo'}" and dashboard["url"].endswith("/ui/")
    from porter.web import create_app
    from serving import serving

    with serving(tmp_path / "demo", factory=create_app) as served, httpx.Client() as client:
        client.post(f"{served.url}/ui/login", data={"token": dashboard["token"], "next": "/ui/"})
        page = client.get(f"{served.url}/ui/releases/DEMO1")
        assert page.status_code == 200 and "Signed in as" in page.text and dashboard["user"] in page.text
