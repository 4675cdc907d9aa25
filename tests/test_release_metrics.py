"""The release gate on quality metrics: a plan item of kind ``metrics`` (issue 16).

"Every metric tagged kpm meets minimum on the release's collections, none regressed against the
previous release": against real repositories (SQLite and PostgreSQL), with the lsst/verify-format
declarations of tests/data/verify/validate_drp (AM1 and PA1 tagged kpm; AM1 minimum 20 mas and an
alert after 2 failing runs; PA1 minimum 8 mmag in r, scoped by ``metadata_query``) copied beside the
plan, and measurements recorded through the metric store as a pipeline or a job import stores them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from porter import Butler, CollectionType
from porter.release import GateError, PlanError, Release, load_plan
from porter.release._metrics import marked_releases
from porter.release._report import html_report
from porter.verify import AlertBook, MetricStore, NewMeasurement, Provenance, open_store

PACKAGE = Path(__file__).parent / "data" / "verify" / "validate_drp"
AM1, PA1 = "validate_drp.AM1", "validate_drp.PA1"
R = {"tract": 9813, "band": "r"}
I = {"tract": 9813, "band": "i"}  # noqa: E741
HSC_R = {"instrument": "HSC", "filter_name": "r"}  # the metadata PA1's r-band specs are scoped by
T0 = 1_800_000_000.0
DAY = 86400.0


def plan_dict(release: str, repo: Butler, **item: Any) -> dict[str, Any]:
    """A release whose one hand-over gates the kpm metrics of the package beside the plan."""
    return {
        "release": release,
        "repository": str(repo.root),
        "collections": [f"{release}/runs"],
        "validation": "minimal",
        "people": [
            {"name": "lead", "can_waive": True, "release_manager": True},
            {"name": "pipelines", "role": "Pipelines developer"},
        ],
        "checkpoints": [
            {
                "name": "quality",
                "from_team": "Pipelines",
                "to_team": "Release",
                "deadline": "2027-01-25",
                "items": [{"name": "kpm", "kind": "metrics", "package": "metrics", **item}],
            }
        ],
    }


def write_plan(releases: Path, data: dict[str, Any]) -> Path:
    releases.mkdir(exist_ok=True)
    if not (releases / "metrics").exists():
        shutil.copytree(PACKAGE, releases / "metrics")
    path = releases / f"{data['release']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def runs_of(repo: Butler, release: str, *runs: str) -> None:
    """The release's RUN collections, chained under RELEASE/runs as a pipeline campaign leaves them."""
    for run in runs:
        repo.registry.registerRun(run)
    repo.registry.registerCollection(f"{release}/runs", CollectionType.CHAINED)
    repo.registry.setCollectionChain(f"{release}/runs", list(runs))


def record(
    store: MetricStore, run: str, at: float, am1: dict[str, float], pa1_r: float | None = None
) -> None:
    """AM1 per band (mas) and PA1 in r (mmag), as one run of the pipeline stores them."""
    rows = [NewMeasurement(AM1, v, "mas", {"tract": 9813, "band": b}) for b, v in am1.items()]
    if pa1_r is not None:
        rows.append(NewMeasurement(PA1, pa1_r, "mmag", R))
    store.record(rows, Provenance(run=run, time=at), metadata=HSC_R)


def results(rel: Release) -> dict[str, Any]:
    return {r.name: r for r in rel.check("quality", by="lead")}


@pytest.fixture
def store(repo: Butler) -> MetricStore:
    return open_store(repo.registry.db, PACKAGE)[0]


def published_dp1(repo: Butler, store: MetricStore, releases: Path) -> None:
    """DP1, gated on the same metrics and published: ``ready`` marks its run in the metric store."""
    runs_of(repo, "DP1", "DP1/runs/step1")
    record(store, "DP1/runs/step1", T0, {"r": 12.0, "i": 13.0}, pa1_r=5.0)
    write_plan(releases, plan_dict("DP1", repo))
    dp1 = Release.open("DP1", releases)
    try:
        got = results(dp1)
        assert {n: r.status for n, r in got.items()} == {
            "kpm:metric validate_drp.AM1": "pass",
            "kpm:metric validate_drp.PA1": "pass",
        }
        assert "no earlier release is marked" in got["kpm:metric validate_drp.AM1"].message
        dp1.signoff("quality", "lead")
        ready = dp1.mark_ready("lead")
        assert ready.payload["metric_runs"] == ["DP1/runs/step1"]
    finally:
        dp1.close()
    assert [(run, rel) for run, _, rel in marked_releases(store)] == [("DP1/runs/step1", "DP1")]


def test_the_gate_refuses_failing_levels_missing_metrics_and_regressions_until_fixed_or_waived(
    repo: Butler, store: MetricStore, tmp_path: Path
) -> None:
    releases = tmp_path / "releases"
    published_dp1(repo, store, releases)
    runs_of(repo, "DP2", "DP2/runs/step1")
    write_plan(releases, plan_dict("DP2", repo))
    rel = Release.open("DP2", releases)
    try:
        # AM1 in r fails minimum (25 > 20 mas) and PA1 was not measured at all.
        record(store, "DP2/runs/step1", T0 + 30 * DAY, {"r": 25.0, "i": 13.0})
        got = results(rel)
        am1, pa1 = got["kpm:metric validate_drp.AM1"], got["kpm:metric validate_drp.PA1"]
        assert am1.status == "fail" and pa1.status == "fail"
        (failure,) = [s for s in am1.sample if s["problem"] == "fails minimum"]
        assert failure["data_id"] == R and failure["value"] == 25.0 and failure["unit"] == "marcsec"
        assert failure["threshold"] == "<= 20 milliarcsecond" and failure["run"] == "DP2/runs/step1"
        assert "validate_drp.AM1 fails minimum in band=r tract=9813: 25 marcsec" in am1.message
        assert pa1.value == "not measured" and "validate_drp.PA1 has no measurements" in pa1.message
        with pytest.raises(
            GateError, match=r"metric validate_drp.AM1 is fail.*metric validate_drp.PA1 is fail"
        ):
            rel.signoff("quality", "lead")
        # Re-run: AM1 meets minimum but is worse than DP1's 12 mas beyond the 5% tolerance; PA1 is there.
        record(store, "DP2/runs/step1", T0 + 31 * DAY, {"r": 15.0, "i": 13.0}, pa1_r=5.1)
        got = results(rel)
        am1 = got["kpm:metric validate_drp.AM1"]
        assert got["kpm:metric validate_drp.PA1"].status == "pass"
        assert am1.status == "fail" and am1.value.startswith("1 regressed against DP1 of 2 data IDs")
        (regression,) = am1.sample
        assert (regression["value"], regression["baseline"], regression["baseline_run"]) == (
            15.0,
            12.0,
            "DP1/runs/step1",
        )
        assert regression["data_id"] == R and regression["direction"] == "lower is better"
        with pytest.raises(GateError, match="regressed against DP1"):
            rel.signoff("quality", "lead")
        # Fixed: within the tolerance of DP1 (12.3 ≤ 12.6), the gate passes.
        record(store, "DP2/runs/step1", T0 + 32 * DAY, {"r": 12.3, "i": 13.0}, pa1_r=5.1)
        assert {r.status for r in results(rel).values()} == {"pass"}
        assert rel.signoff_problems("quality") == []
        # Regressed again; this time the lead waives it, with a reason, and the sign-off goes through.
        record(store, "DP2/runs/step1", T0 + 33 * DAY, {"r": 15.0, "i": 13.0}, pa1_r=5.1)
        results(rel)
        with pytest.raises(GateError, match="pipelines may not waive"):
            rel.waive("quality", "kpm:metric validate_drp.AM1", "pipelines", "fine")
        waiver = rel.waive(
            "quality", "kpm:metric validate_drp.AM1", "lead", "new reference catalog in r; accepted for DP2"
        )
        signed = rel.signoff("quality", "lead")
        assert signed.payload["waivers"] == ["kpm:metric validate_drp.AM1"]
        logged = [e for e in rel.events() if e.action == "waive"]
        assert (
            logged == [waiver]
            and logged[0].payload["reason"] == "new reference catalog in r; accepted for DP2"
        )
        assert not rel.verify_audit()
        # The report's metrics section: levels, this release against DP1, the sparkline, the waiver.
        report = html_report(rel)
        section = report[report.index("<h2>Quality metrics</h2>") :]
        assert "previous release: DP1" in section and "DP2/runs/step1" in section
        assert "minimum &lt;= 20 milliarcsecond" in section and "design &lt;= 10 milliarcsecond" in section
        assert "<th>DP2 (this release)</th>" in section and "<th>DP1</th>" in section
        assert "15 marcsec" in section and "12 marcsec" in section and "<polyline" in section
        assert "new reference catalog in r; accepted for DP2" in report
        # The next change to AM1 is another result: the waiver no longer covers it.
        record(store, "DP2/runs/step1", T0 + 34 * DAY, {"r": 16.0, "i": 13.0}, pa1_r=5.1)
        (drift,) = [b for b in rel.blockers() if b.kind == "metrics-changed"]  # seen before any re-check
        assert "kpm:metric validate_drp.AM1 of 'quality' is now fail" in drift.what
        with pytest.raises(GateError, match="measurements or alerts changed since"):
            rel.mark_ready("lead")
        rel.check("quality", by="lead")
        assert "quality" not in rel.state().signed  # reopened by the failing run
        assert any("no longer applies" in p for p in rel.signoff_problems("quality"))
    finally:
        rel.close()


def test_an_unacknowledged_firing_alert_holds_the_gate_until_acknowledged(
    repo: Butler, store: MetricStore, tmp_path: Path
) -> None:
    releases = tmp_path / "releases"
    runs_of(repo, "DP2", "DP2/runs/step1")
    record(store, "DP2/runs/step1", T0, {"r": 12.0, "i": 13.0}, pa1_r=5.0)
    # Two nightly runs since fail AM1's minimum in r: its alert (for: 2) fires.
    record(store, "nightly/1", T0 + DAY, {"r": 24.0})
    record(store, "nightly/2", T0 + 2 * DAY, {"r": 26.0})
    (alert,) = AlertBook(repo.registry.db).alerts(status=("firing",))
    assert alert.metric == AM1 and alert.data_id == R
    write_plan(releases, plan_dict("DP2", repo))
    rel = Release.open("DP2", releases)
    try:
        am1 = results(rel)["kpm:metric validate_drp.AM1"]
        assert am1.status == "fail"
        (firing,) = am1.sample
        assert firing["problem"] == f"alert {alert.alert_id} firing (critical, minimum)"
        assert (firing["value"], firing["run"], firing["since"]) == (26.0, "nightly/2", "nightly/1")
        with pytest.raises(GateError, match=f"AM1 alert {alert.alert_id} firing"):
            rel.signoff("quality", "lead")
        with pytest.raises(GateError, match="pipelines may not acknowledge"):
            rel.acknowledge("quality", alert.alert_id, "pipelines", "known")
        before = rel.events()
        with pytest.raises(GateError, match="needs a reason"):
            rel.acknowledge("quality", alert.alert_id, "lead", " ")
        assert rel.events() == before
        event = rel.acknowledge("quality", alert.alert_id, "lead", "nightly config experiment, not in DP2")
        assert event.action == "acknowledge" and event.payload["metric"] == AM1
        assert AlertBook(repo.registry.db).get(alert.alert_id).acknowledged_by == "lead"
        am1 = results(rel)["kpm:metric validate_drp.AM1"]
        assert am1.status == "pass"
        assert "acknowledged by lead: nightly config experiment, not in DP2" in am1.message
        rel.signoff("quality", "lead")
        report = html_report(rel)
        assert "nightly config experiment, not in DP2" in report and "firing" in report
    finally:
        rel.close()


def test_runs_named_by_the_item_and_a_package_without_the_tags(
    repo: Butler, store: MetricStore, tmp_path: Path
) -> None:
    releases = tmp_path / "releases"
    record(store, "job/validate_drp_hsc", T0, {"r": 12.0}, pa1_r=5.0)
    write_plan(releases, plan_dict("DP2", repo, runs=["job/validate_drp_hsc"]))
    rel = Release.open("DP2", releases)
    try:
        assert {r.status for r in results(rel).values()} == {"pass"}
    finally:
        rel.close()
    write_plan(releases, plan_dict("DP2", repo, tags=["kmp"]))
    rel = Release.open("DP2", releases)
    try:
        (error,) = results(rel).values()
        assert error.status == "error" and "no metric of metrics carries the tags ['kmp']" in error.message
        assert "kpm" in error.message
    finally:
        rel.close()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"tag": ["kpm"]}, r"items\.0\.tag: .*Did you mean 'tags'"),
        (
            {"package": None},
            r"items\.0\.package: a 'metrics' item needs 'package' — add it, e\.g\. package: metrics",
        ),
        (
            {"package": "no-such-package"},
            r"items\.0\.package: the metrics package no-such-package .* does not exist",
        ),
        (
            {"check": "looks fine"},
            r"items\.0\.check: a 'metrics' item does not use 'check' \(a 'manual' item does\)",
        ),
        ({"level": "minimal"}, r"items\.0\.level: .*'minimum', 'design' or 'stretch'"),
        ({"baseline": "last_release"}, r"items\.0\.baseline: .*'previous_release' or 'none'"),
        ({"runs": ["a"], "collections": ["b"]}, r"items\.0\.runs: .*either by runs: or by collections:"),
    ],
)
def test_a_bad_metrics_item_names_file_line_and_fix(
    repo: Butler, tmp_path: Path, item: dict[str, Any], message: str
) -> None:
    data = plan_dict("DP2", repo)
    fields = data["checkpoints"][0]["items"][0]
    fields.update(item)
    for key in [k for k, v in fields.items() if v is None]:
        del fields[key]
    path = write_plan(tmp_path / "releases", data)
    with pytest.raises(PlanError, match=r"DP2\.yaml:\d+: checkpoints\.0\." + message):
        load_plan(path)


def test_a_plan_made_like_the_previous_one_renames_the_items_runs(repo: Butler, tmp_path: Path) -> None:
    """``release init --like``: a metrics item's runs are collections of the release like any other."""
    from porter.release import like

    path = write_plan(tmp_path / "releases", plan_dict("DP2", repo, runs=["DP2/job", "ci/1234"]))
    with pytest.raises(PlanError, match=r"quality\.kpm\.runs ci/1234"):
        like(load_plan(path), "DP3", 182)
    dp3, rewrites = like(load_plan(path), "DP3", 182, {"ci/1234": "ci/2345"})
    assert dp3.checkpoint("quality").items[0].runs == ["DP3/job", "ci/2345"]
    assert "quality.kpm.runs: DP2/job → DP3/job" in rewrites


def test_the_cli_acknowledges_an_alert_for_the_gate(repo: Butler, store: MetricStore, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from porter.cli import app

    releases = tmp_path / "releases"
    runs_of(repo, "DP2", "DP2/runs/step1")
    record(store, "DP2/runs/step1", T0, {"r": 12.0, "i": 13.0}, pa1_r=5.0)
    record(store, "nightly/1", T0 + DAY, {"r": 24.0})
    record(store, "nightly/2", T0 + 2 * DAY, {"r": 26.0})
    (alert,) = AlertBook(repo.registry.db).alerts(status=("firing",))
    write_plan(releases, plan_dict("DP2", repo))
    runner = CliRunner()
    args = ["release", "ack", "DP2", "quality", str(alert.alert_id), "--plans", str(releases)]
    refused = runner.invoke(app, [*args, "--by", "pipelines", "--reason", "known"])
    assert refused.exit_code != 0 and "may not acknowledge" in refused.output
    done = runner.invoke(app, [*args, "--by", "lead", "--reason", "nightly config experiment"])
    assert done.exit_code == 0, done.output
    rel = Release.open("DP2", releases)
    try:
        assert [e.action for e in rel.events()][-1] == "acknowledge"
        assert results(rel)["kpm:metric validate_drp.AM1"].status == "pass"
    finally:
        rel.close()
