"""Release management: plans, templates, completeness checks, sign-off gates, findings, schedule, audit log."""

from __future__ import annotations

import collections
import datetime
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy
import yaml

from conftest import DRP_YAML, SURVEY_INPUTS
from porter import Butler
from porter.errors import InvalidQueryError
from porter.pipeline import InProcessExecutor, Pipeline, build_quantum_graph, execute_graph
from porter.release import (
    GateError,
    PlanError,
    Release,
    ReleasePlan,
    dump_plan,
    like,
    load_plan,
    rubin_template,
)
from test_cli import run

RUN = "u/drp/step1"
START = datetime.date(2027, 1, 4)


def make_release(tmp_path: Path, butler: Butler, name: str = "DP2") -> Release:
    plan = rubin_template(name, str(butler.root), START, collections=[RUN])
    for cp in plan.checkpoints:  # keep the hand-overs whose checks this version runs
        if cp.name == "images":
            cp.items = [i for i in cp.items if i.name == "calexps"]
            cp.items[0].expected["collections"] = SURVEY_INPUTS
        elif cp.name != "hips":  # hips keeps its HiPS item, whose check this version cannot run yet
            cp.items = [i for i in cp.items if i.kind == "manual"]
    dump_plan(plan, tmp_path / "releases" / f"{name}.yaml")
    return Release.open(name, tmp_path / "releases")


@pytest.fixture
def processed(survey: tuple[Butler, Any]) -> Butler:
    """The small survey with step 1 run (calexps for every raw)."""
    butler, _ = survey
    graph = build_quantum_graph(
        butler, Pipeline.from_uri(f"{DRP_YAML}#step1"), collections=SURVEY_INPUTS, run=RUN
    )
    assert execute_graph(butler, graph, InProcessExecutor()).ok
    return butler


def test_rubin_template_and_like(tmp_path: Path) -> None:
    plan = rubin_template("DP2", "repo", START)
    assert [c.name for c in plan.checkpoints] == [
        "catalogs",
        "images",
        "hips",
        "data-engineering",
        "portal",
        "community",
    ]
    assert {c.deadline for c in plan.checkpoints[:3]} == {
        START + datetime.timedelta(days=21)
    }  # 1-3 in parallel
    assert plan.checkpoint("portal").depends_on == ["data-engineering", "images", "hips"]
    assert any(p.decider for p in plan.people)
    dump_plan(plan, tmp_path / "DP2.yaml")
    again = load_plan(tmp_path / "DP2.yaml")
    assert again == plan
    dp3, rewrites = like(again, "DP3", 182)
    assert dp3.release == "DP3"
    assert "catalogs.object-table.location: DP2/catalogs/Object/ → DP3/catalogs/Object/" in rewrites
    assert dp3.checkpoint("images").items[0].collections == ["DP3/runs"] and dp3.collections == ["DP3/runs"]
    assert [c.deadline - d.deadline for c, d in zip(dp3.checkpoints, plan.checkpoints)] == [
        datetime.timedelta(days=182)
    ] * 6
    assert dp3.checkpoint("catalogs").items[0].location.startswith("DP3/")


def test_like_renames_collections_inside_rules() -> None:
    """A row_count's per_dataset collections are read like an item's: ``--like`` renames them too."""
    data = rubin_template("DP2", "repo", START).model_dump()
    counted = {"dataset_type": "calexp", "dimensions": ["visit"], "collections": ["DP2/runs", "u/drp/step1"]}
    data["checkpoints"][0]["items"][1]["rules"] = [{"rule": "row_count", "per_dataset": counted}]
    plan = ReleasePlan.model_validate(data)
    with pytest.raises(
        PlanError, match=r"catalogs\.source-table\.rules\.0\.per_dataset\.collections u/drp/step1"
    ):
        like(plan, "DP3", 182)
    dp3, rewrites = like(plan, "DP3", 182, {"u/drp/step1": "u/drp/dp3-step1"})
    (rule,) = dp3.checkpoint("catalogs").items[1].rules
    assert rule["per_dataset"]["collections"] == ["DP3/runs", "u/drp/dp3-step1"]
    assert "catalogs.source-table.rules.0.per_dataset.collections: DP2/runs → DP3/runs" in rewrites


def test_equals_item_must_name_another_catalog_item(tmp_path: Path) -> None:
    data = rubin_template("DP2", "repo", START).model_dump(mode="json")
    data["checkpoints"][0]["items"][1]["rules"] = [{"rule": "row_count", "equals_item": "object-tabel"}]
    path = tmp_path / "DP2.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(
        PlanError,
        match=r"DP2.yaml:\d+: checkpoints.0.items.1.rules.0.equals_item: .*compares with 'object-tabel'.*"
        r"Did you mean 'object-table'",
    ):
        load_plan(path)
    data["checkpoints"][0]["items"][1]["rules"] = [{"rule": "row_count", "equals_item": "object-table"}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_plan(path).checkpoint("catalogs").items[1].rules == [
        {"rule": "row_count", "equals_item": "object-table"}
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("deadline: '2027-01-25'", "deadline: 25/01/2027", 1),
            r"DP2.yaml:\d+: checkpoints.0.deadline: .* — write dates as YYYY-MM-DD",
        ),
        (
            lambda t: t.replace("  from_team: Pipelines", "  from_teem: Pipelines", 1),
            r"DP2.yaml:\d+: checkpoints.0.from_teem: .* — remove it, or check its spelling",
        ),
        (
            lambda t: t.replace("- catalogs", "- catalogz", 1),
            r"depends on 'catalogz'.*Did you mean 'catalogs'",
        ),
        (lambda t: t.replace("kind: manual", "kind: manuel", 1), r"DP2.yaml:\d+: checkpoints.0.items.2.kind"),
        (lambda t: t + "\n  - [unclosed\n", r"DP2.yaml:\d+: not valid YAML"),
    ],
)
def test_bad_plans_name_file_line_and_fix(tmp_path: Path, edit: Any, message: str) -> None:
    dump_plan(rubin_template("DP2", "repo", START), tmp_path / "DP2.yaml")
    path = tmp_path / "DP2.yaml"
    text = path.read_text()
    changed = edit(text)
    assert changed != text
    path.write_text(changed)
    with pytest.raises(PlanError, match=message):
        load_plan(path)


def test_completeness_finds_missing_data_ids_grouped(processed: Butler, tmp_path: Path) -> None:
    rel = make_release(tmp_path, processed)
    try:
        (result,) = rel.check("images")
        n = len(processed.query_datasets("raw", "SynthCam/raw/all"))
        assert result.status == "pass" and result.value == f"{n}/{n} (100.0%)"
        victims = processed.query_datasets(
            "calexp", RUN, where="visit = 1001 AND detector IN (1, 2)", instrument="SynthCam"
        )
        processed.prune_datasets(victims, purge=True, unstore=True)
        (result,) = rel.check("images")
        assert result.status == "fail" and result.value == f"{n - 2}/{n} ({(n - 2) / n:.1%})"
        assert result.message == "2 missing in 1 visits"
        assert result.sample == [
            {"visit": 1001, "missing": 2, "example": {"instrument": "SynthCam", "detector": 1, "visit": 1001}}
        ]
        # Every missing data ID is stored beside the plan, named by the result.
        stored = pq.read_table(tmp_path / "releases" / result.details).to_pylist()
        assert result.details.startswith("DP2/missing/images/") and stored == [
            {"instrument": "SynthCam", "detector": d, "visit": 1001} for d in (1, 2)
        ]
        listed = json.loads(run("release", "missing", "DP2", "--plans", tmp_path / "releases", "--json"))
        assert listed == [
            {"checkpoint": "images", "check": "calexps:completeness calexp", **d} for d in stored
        ]
        # The gate: refused while failing; a waiver needs authority; then it passes.
        with pytest.raises(
            GateError, match=r"Sign-off of 'images' refused: check calexps:completeness calexp is fail"
        ):
            rel.signoff("images", "release-manager")
        with pytest.raises(GateError, match="pipelines-lead may not waive"):
            rel.waive(
                "images",
                "calexps:completeness calexp",
                "pipelines-lead",
                "two detectors lost to a shutter fault",
            )
        rel.waive(
            "images",
            "calexps:completeness calexp",
            "release-manager",
            "two detectors lost to a shutter fault",
        )
        rel.signoff("images", "release-manager")
        assert "images" in rel.state().signed
    finally:
        rel.close()


@pytest.mark.parametrize(
    ("dataset_type", "dimensions", "where", "datasets", "group_by", "method"),
    [
        ("calexp", ["visit", "detector"], "", "raw", "visit", "db"),
        (  # group by an implied dimension
            "calexp",
            ["visit", "detector"],
            "instrument = 'SynthCam' AND detector > 2",
            "raw",
            "band",
            "db",
        ),
        ("calexp", [], "band = 'g'", None, None, "db"),  # every (visit, detector) with a region
        ("deepCoadd", ["patch", "band"], "", "raw", "patch", "db"),  # spatial join, through the sky index
        (  # a region literal: rows refined by exact overlap in Python, then compared there
            "calexp",
            ["visit", "detector"],
            "instrument = 'SynthCam' AND visit_detector_region.region OVERLAPS CIRCLE(150.0, 2.2, 0.05)",
            "raw",
            "visit",
            "python",
        ),
    ],
)
def test_coverage_agrees_with_plain_queries(
    processed: Butler,
    dataset_type: str,
    dimensions: list[str],
    where: str,
    datasets: str | None,
    group_by: str | None,
    method: str,
    backend: str,
) -> None:
    """The comparison ("db": SQLite's anti-join, or PostgreSQL's COPY into DuckDB; or the Python fallback)
    finds exactly the set difference of two plain queries."""
    butler = processed
    victims = butler.query_datasets(
        "calexp", RUN, where="visit = 1002 AND detector < 3", instrument="SynthCam"
    )
    butler.prune_datasets(victims, purge=True, unstore=True)
    if dataset_type == "deepCoadd":  # step 3 has not run: every expected coadd is missing
        butler.register_dataset_type(dataset_type, ["skymap", "tract", "patch", "band"], "ExposureF")
    dt = butler.get_dataset_type(dataset_type)
    coverage = butler.registry.coverage(
        dataset_type,
        RUN,
        dimensions=dimensions,
        where=where,
        datasets=datasets,
        expected_collections=SURVEY_INPUTS,
        group_by=group_by,
    )
    assert coverage.method == {"db": "sql" if backend == "sqlite" else "copy"}.get(method, method)
    # counted per cell too, in the same pass: every key, integer ones in 3 ranges beyond 3 values
    cells = [(k, 3) for k in dt.dimensions.required]
    n_expected, batches = coverage.run(batch=7, cells=cells)
    missing = [row for batch in batches for row in batch]
    expected = {
        d.subset(dt.dimensions).required_values: d
        for d in butler.query_data_ids(
            dimensions or list(dt.dimensions.names),
            where=where,
            datasets=datasets,
            collections=SURVEY_INPUTS if datasets else None,
            explain=False,
        )
    }
    delivered = {
        r.data_id.required_values
        for r in butler.query_datasets(dataset_type, RUN, find_first=False, explain=False)
    }
    keys = list(dt.dimensions.required) + (
        [group_by] if group_by and group_by not in dt.dimensions.required else []
    )
    want = sorted(tuple(expected[k][x] for x in keys) for k in set(expected) - delivered)
    assert n_expected == len(expected) > 0 and missing == want and coverage.keys == keys
    # the cells: what grouping the expected data IDs here gives
    assert coverage.cells is not None and coverage.cells.total == n_expected
    bins: dict[str, Any] = {}
    for k in dt.dimensions.required:
        values = {d[k] for d in expected.values()}
        if isinstance(next(iter(values)), int) and len(values) > 3:
            low, span = min(values), max(values) - min(values) + 1
            bins[k] = lambda v, low=low, span=span: ((v - low) * 3) // span
    want_cells = collections.Counter(
        tuple(bins[k](d[k]) if k in bins else d[k] for k in dt.dimensions.required) for d in expected.values()
    )
    table = coverage.cells.table.to_pydict()
    got_cells = {
        tuple(table[k][i] for k in dt.dimensions.required): n for i, n in enumerate(table["expected"])
    }
    assert got_cells == dict(want_cells) and [a.key for a in coverage.cells.axes] == list(
        dt.dimensions.required
    )
    assert {a.key for a in coverage.cells.axes if a.bins} == set(bins)
    if (
        dataset_type == "calexp"
    ):  # only the pruned calexps are missing (all of them, when nothing is excluded)
        assert {m[keys.index("visit")] for m in missing} <= {1002}
        assert len(missing) == len(victims) > 0 or where


def test_coverage_errors_name_the_fix(processed: Butler) -> None:
    with pytest.raises(InvalidQueryError, match=r"lack \['visit'\].*add them to the expected dimensions"):
        processed.registry.coverage("calexp", RUN, dimensions=["exposure", "detector"])
    with pytest.raises(InvalidQueryError, match="Cannot group missing calexp data IDs by 'tract'"):
        processed.registry.coverage("calexp", RUN, group_by="tract")


def test_gates_findings_schedule_and_ready(processed: Butler, tmp_path: Path) -> None:
    rel = make_release(tmp_path, processed)
    try:
        with pytest.raises(GateError, match="dependency 'catalogs' is not signed off"):
            rel.signoff("data-engineering", "data-services-lead")
        with pytest.raises(GateError, match="checks have never been run"):
            rel.signoff("catalogs", "release-manager")
        rel.check("catalogs")
        with pytest.raises(
            GateError,
            match="ingest-config:manual is pending: awaiting confirmation: porter release confirm DP2 catalogs ingest-config",
        ):
            rel.signoff("catalogs", "release-manager")
        rel.confirm("catalogs", "ingest-config", "pipelines-lead", "partitioning agreed with Qserv")
        rel.check("catalogs")
        rel.signoff("catalogs", "release-manager")
        # The decider may override a gate, with a reason; nobody else may.
        rel.check("hips")
        with pytest.raises(GateError, match="Only the decider"):
            rel.signoff("hips", "release-manager", override="no time")
        rel.signoff("hips", "decider", override="HiPS deferred to the first update")
        # Findings: an open blocker stops its checkpoint's sign-off and the release.
        f = rel.add_finding("blocker", "portal", "TAP queries on Source time out", "decider")
        rel.check("images")
        rel.signoff("images", "release-manager")
        for name, item in (
            ("data-engineering", "qserv-row-counts"),
            ("portal", "tap-schema"),
            ("portal", "example-queries"),
            ("community", "tutorials"),
        ):
            rel.confirm(name, item, "data-services-lead")
        for name in ("data-engineering", "portal", "community"):
            rel.check(name)
        rel.signoff("data-engineering", "data-services-lead")
        with pytest.raises(GateError, match=f"blocker finding {f.id} is open"):
            rel.signoff("portal", "data-services-lead")
        with pytest.raises(GateError, match=f"blocker finding {f.id} is open.*test period runs until"):
            rel.mark_ready("decider")
        rel.close_finding(f.id, "data-services-lead", "index on Source.objectId")
        for name in ("portal", "community"):
            rel.signoff(name, "data-services-lead")
        # LDM-564 (the rubin template is rigorous): smoke tests on test, then promotion to production.
        assert [b.kind for b in rel.blockers()] == ["smoke", "promotion", "test-period"]
        with pytest.raises(GateError, match="smoke tests of 'test' have not run"):
            rel.promote("production", "release-manager")
        results = rel.smoke("test", "release-manager")
        assert [(r.name, r.status) for r in results] == [("smoke/test:read-back", "pass")]
        assert results[0].value == "20/20 read"
        with pytest.raises(GateError, match="pipelines-lead may not promote DP2 to 'production'"):
            rel.promote("production", "pipelines-lead")
        promoted = rel.promote("production", "release-manager")
        assert (
            promoted.payload["promoted_from"] == "test"
            and promoted.payload["smoke_run"] == rel.events()[-2].seq
        )
        assert [b.kind for b in rel.blockers()] == ["test-period"]
        with pytest.raises(GateError, match="test period runs until"):
            rel.mark_ready("decider")
        # The test period runs on the clock (a test may move it; the CLI has no date to pass).
        now = rel.clock()
        rel.clock = lambda: now + rel.plan.test_period_days * 86400 + 60
        event = rel.mark_ready("decider")
        verified = event.payload["checkpoints"]
        assert set(verified) == {c.name for c in rel.plan.checkpoints}
        assert verified["hips"]["override"] and verified["images"]["signed_by"] == "release-manager"
        assert event.payload["audit_head"]["seq"] == event.seq - 1
        later = datetime.date.today() + datetime.timedelta(days=rel.plan.test_period_days + 1)
        status = rel.status(today=later)
        assert status["ready"] and all(
            r["state"].startswith("done") for r in status["rows"] if r["kind"] == "checkpoint"
        )
    finally:
        rel.close()


def test_schedule_carries_slips_forward(processed: Butler, tmp_path: Path) -> None:
    rel = make_release(tmp_path, processed)
    try:
        catalogs = rel.plan.checkpoint("catalogs")
        today = catalogs.deadline + datetime.timedelta(
            days=10
        )  # catalogs not done, 10 days past its deadline
        rows = {r.name: r for r in rel.schedule(today)}
        assert rows["catalogs"].state == "late by 10 days"
        de = rel.plan.checkpoint("data-engineering")
        # data-engineering can finish no earlier than catalogs' new date plus its own duration.
        assert rows["data-engineering"].projected == max(
            de.deadline, today + datetime.timedelta(days=de.duration_days)
        )
        assert rows["go public"].projected > rows["go public"].deadline
        early = {r.name: r.state for r in rel.schedule(START)}
        assert early["catalogs"] == "on time"
        at_risk = {r.name: r.state for r in rel.schedule(catalogs.deadline - datetime.timedelta(days=1))}
        assert at_risk["catalogs"] == "at risk"
    finally:
        rel.close()


def test_audit_log_detects_tampering(processed: Butler, tmp_path: Path) -> None:
    rel = make_release(tmp_path, processed)
    try:
        rel.add_finding("minor", "images", "a typo in the release notes", "decider")
        rel.check("images")
        rel.add_finding("major", "", "coadd edges look noisy", "release-manager")
        assert rel.log.verify("DP2") == []
        table = rel.log.table
        with processed.registry.db.transaction() as conn:
            conn.execute(sqlalchemy.update(table).where(table.c.seq == 2).values(actor="someone-else"))
        assert rel.log.verify("DP2") == [
            "event 2 (check by someone-else) was altered: its hash does not match"
        ]
        with processed.registry.db.transaction() as conn:
            conn.execute(sqlalchemy.update(table).where(table.c.seq == 2).values(actor="porter"))
            conn.execute(sqlalchemy.delete(table).where(table.c.seq == 1))
        problems = rel.log.verify("DP2")
        assert any("missing" in p for p in problems) and any("chain broken" in p for p in problems)
    finally:
        rel.close()


def test_release_cli(processed: Butler, tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    run("release", "init", "DP2", "--repo", str(processed.root), "--start", str(START), "--plans", plans)
    out = run("release", "init", "DP2", "--repo", str(processed.root), "--plans", plans, ok=False)
    assert "exists" in out
    run("release", "init", "DP3", "--like", "DP2", "--shift-days", "180", "--plans", plans)
    assert load_plan(plans / "DP3.yaml").checkpoint("images").deadline == START + datetime.timedelta(
        days=21 + 180
    )
    checks = json.loads(
        run("release", "check", "DP2", "--checkpoint", "catalogs", "--plans", plans, "--json", ok=False)
    )  # exit status 1: checks failed
    assert {c["status"] for c in checks} == {
        "error",
        "pending",
    }  # catalog checks arrive later; the manual one awaits confirmation
    out = run("release", "signoff", "DP2", "catalogs", "--by", "release-manager", "--plans", plans, ok=False)
    assert "Sign-off of 'catalogs' refused" in out
    run(
        "release",
        "finding",
        "add",
        "DP2",
        "Object table lacks extendedness",
        "--severity",
        "blocker",
        "--checkpoint",
        "catalogs",
        "--by",
        "decider",
        "--plans",
        plans,
    )
    status = json.loads(run("release", "status", "DP2", "--plans", plans, "--json", "--today", str(START)))
    row = next(r for r in status["rows"] if r["name"] == "catalogs")
    assert row["open findings"] == 1 and row["failing"] == len(checks) and row["state"] == "on time"
    out = run("release", "ready", "DP2", "--by", "decider", "--plans", plans, ok=False)
    assert "is not ready" in out and "blocker finding 1 is open" in out
    out = run("release", "audit", "DP2", "--verify", "--plans", plans)
    assert "chain intact" in out
    out = run("release", "status", "NOPE", "--plans", plans, ok=False)
    assert "No release plan" in out and "DP2" in out


def test_html_report(processed: Butler, tmp_path: Path) -> None:
    rel = make_release(tmp_path, processed)
    try:
        victims = processed.query_datasets(
            "calexp", RUN, where="visit = 1001 AND detector = 3", instrument="SynthCam"
        )
        processed.prune_datasets(victims, purge=True, unstore=True)
        (result,) = rel.check("images")
        rel.add_finding("major", "images", "one calexp <missing>", "decider")
        rel.waive("images", result.name, "release-manager", "detector 3 lost to a shutter fault")
        rel.check("hips")
        rel.signoff("hips", "decider", override="HiPS follows in DP2.1")
    finally:
        rel.close()
    out = tmp_path / "report.html"
    run("release", "report", "DP2", "--html", out, "--plans", tmp_path / "releases")
    text = out.read_text()
    assert text.startswith("<!doctype html>") and "<script" not in text
    assert "src=" not in text and "href=" not in text  # self-contained: nothing fetched
    assert "calexps:completeness calexp" in text and "<svg" in text and "one calexp &lt;missing&gt;" in text
    assert "chain <span class='pass'>intact</span>" in text
    assert f"all of them: <code>{result.details}</code>" in text  # the file listing every missing data ID
    # It opens with what blocks going public, and names who waived and overrode what, and why.
    blocks = text.split("<h2>What blocks going public</h2>")[1].split("</div>")[0]
    assert "unsigned" in blocks and "porter release signoff DP2 catalogs" in blocks
    assert "(waived by release-manager: detector 3 lost to a shutter fault)" in text
    decisions = text.split("<h2>Waivers, overrides, reopenings and promotions</h2>")[1].split("<h2>")[0]
    assert (
        "override-signoff" in decisions and "HiPS follows in DP2.1" in decisions and ">decider<" in decisions
    )
