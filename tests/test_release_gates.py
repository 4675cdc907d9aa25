# ruff: noqa: F811  (the delivery fixture, imported from test_release_delivery, is every test's argument)
"""Release gates tried as a determined person would: each walk-through is refused and changes nothing.

Runs on SQLite and PostgreSQL (the ``delivery`` fixture's repository takes the ``backend`` parameter):
a waiver on a passing check, a waiver outliving the result or delivery it waived, a delivery changed
or re-shipped after its sign-off, a sign-off or ``ready`` by someone without the role, a sign-off with
an open blocker, a date passed to ``ready``, and the audit log's last events deleted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy
from typer.testing import CliRunner

from hips import COVERAGE, tile_path
from porter import Butler
from porter.cli import app
from porter.release import GateError, Item, Person, PlanError, Release, dump_plan, load_plan, rubin_template
from test_release_delivery import delivery  # noqa: F401  (the fixture: catalogs, HiPS and docs of DP2)


def open_release(releases: Path, add_people: tuple[Person, ...] = ()) -> Release:
    if add_people:
        plan = load_plan(releases / "DP2.yaml")
        plan.people.extend(add_people)
        dump_plan(plan, releases / "DP2.yaml")
    return Release.open("DP2", releases)


def refused(rel: Release, call: object, match: str) -> None:
    """``call()`` raises GateError matching ``match`` and appends nothing to the audit log."""
    before = rel.events()
    with pytest.raises(GateError, match=match):
        call()  # type: ignore[operator]
    assert rel.events() == before


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_waivers_bind_to_the_failing_result_and_the_shipment(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    rel = open_release(releases)
    try:
        results = rel.check("hips")
        passing = next(r for r in results if r.status == "pass")
        refused(rel, lambda: rel.waive("hips", passing.name, "lead", "fine anyway"), "nothing to waive")
        # A real failure: one tile gone; waived on the shipment as it is.
        tile_path(releases / "DP2" / "hips", 2, COVERAGE[0] >> 2).unlink()
        rel.ship("hips", "lead")
        failing = next(r for r in rel.check("hips") if r.status == "fail")
        waiver = rel.waive("hips", failing.name, "lead", "tile regenerated in the first update")
        assert waiver.payload["status"] == "fail" and waiver.payload["value"] == failing.value
        assert waiver.payload["content_hash"] == rel.state().shipments["hips"].payload["content_hash"]
        assert not rel.signoff_problems("hips")
        # The delivery changes (another tile lost) and is shipped again: the waiver stops covering.
        tile_path(releases / "DP2" / "hips", 2, COVERAGE[-1] >> 2).unlink()
        rel.ship("hips", "lead")
        rel.check("hips")
        refused(
            rel, lambda: rel.signoff("hips", "lead"), "no longer applies: the checkpoint was shipped again"
        )
        assert any(b.kind == "stale-waiver" and b.checkpoint == "hips" for b in rel.blockers())
    finally:
        rel.close()


def test_a_changed_or_reshipped_delivery_reopens_its_signoff(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    rel = open_release(releases)
    try:
        rel.ship("catalogs", "lead")
        rel.check("catalogs")
        signed = rel.signoff("catalogs", "lead")
        assert signed.payload["content_hash"] == rel.state().content_hash("catalogs")
        assert signed.payload["check_run"] == rel.state().checks["catalogs"].seq
        refused(
            rel,
            lambda: rel.signoff("catalogs", "lead"),
            "already signed off by lead; to sign it again, reopen",
        )
        # A file rewritten after the sign-off: ready's dry run sees it without writing anything …
        source = releases / "DP2" / "catalogs" / "Source"
        original = (source / "part-1.parquet").read_bytes()
        shutil.copy(source / "part-0.parquet", source / "part-1.parquet")
        before = rel.events()
        kinds = {(b.kind, b.checkpoint) for b in rel.blockers()}
        assert ("delivery-changed", "catalogs") in kinds and rel.events() == before
        # … and the next check run reopens the checkpoint, saying who and why.
        rel.check("catalogs", by="lead")
        reopen = rel.events()[-1]
        assert (
            reopen.action == "reopen"
            and reopen.actor == "lead"
            and "manifest unchanged" in reopen.payload["reason"]
        )
        assert "catalogs" not in rel.state().signed
        # Repaired, shipped, checked and signed again; then a re-ship with other content reopens it by itself.
        (source / "part-1.parquet").write_bytes(original)
        rel.ship("catalogs", "lead")
        rel.check("catalogs")
        rel.signoff("catalogs", "lead")
        shutil.copy(source / "part-0.parquet", source / "part-2.parquet")
        rel.ship("catalogs", "lead")
        assert rel.events()[-1].action == "reopen" and "re-shipped" in rel.events()[-1].payload["reason"]
        assert "catalogs" not in rel.state().signed
    finally:
        rel.close()
    # Reopening by hand, from the command line, needs a signed checkpoint and a reason.
    code, out = cli(
        "release", "reopen", "DP2", "catalogs", "--by", "lead", "--reason", "x", "--plans", releases
    )
    assert code == 1 and "not signed off; there is nothing to reopen" in out


def test_roles_decide_who_signs_waives_overrides_and_marks_ready(delivery: tuple[Path, Butler]) -> None:
    releases, butler = delivery
    rel = open_release(releases, (Person(name="engineer", role="Data Engineering"),))
    try:
        rel.check("catalogs")
        refused(
            rel,
            lambda: rel.signoff("catalogs", "engineer"),
            r"engineer may not sign off 'catalogs'.*signers: lead, decider",
        )
        refused(rel, lambda: rel.signoff("catalogs", "engineer", override="trust me"), "may not sign off")
        refused(
            rel,
            lambda: rel.mark_ready("engineer"),
            "may not mark the release ready; a release manager or the decider",
        )
        refused(
            rel,
            lambda: rel.waive("catalogs", "visit:types", "engineer", "x"),
            "engineer may not waive checks",
        )
    finally:
        rel.close()
    # The rubin template's roles: hand-overs 1-3 by the release manager, 4-6 by the Data Services lead.
    plan = rubin_template("DP9", str(butler.root), rel.plan.checkpoints[0].deadline)
    dump_plan(plan, releases / "DP9.yaml")
    rubin = Release.open("DP9", releases)
    try:
        refused(
            rubin,
            lambda: rubin.signoff("images", "data-engineering-lead"),
            r"signers: release-manager, decider",
        )
        refused(
            rubin, lambda: rubin.signoff("portal", "release-manager"), r"signers: data-services-lead, decider"
        )
        refused(rubin, lambda: rubin.mark_ready("pipelines-lead"), "may not mark the release ready")
    finally:
        rubin.close()


def test_an_open_blocker_blocks_its_checkpoints_signoff(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    rel = open_release(releases)
    try:
        rel.check("hips")
        finding = rel.add_finding("blocker", "hips", "colour balance wrong in the g band", "lead")
        refused(rel, lambda: rel.signoff("hips", "lead"), f"blocker finding {finding.id} is open")
        rel.close_finding(finding.id, "lead", "re-rendered")
        assert rel.signoff("hips", "lead").action == "signoff"
    finally:
        rel.close()


def test_ready_takes_no_date_and_lists_its_blockers(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    code, out = cli("release", "ready", "DP2", "--by", "lead", "--today", "2027-03-10", "--plans", releases)
    assert code == 2 and "No such option" in out  # the test period cannot be skipped by naming a date
    code, out = cli("release", "ready", "DP2", "--dry-run", "--json", "--plans", releases)
    assert code == 1
    report = json.loads(out)
    assert not report["ready"]
    unsigned = {b["checkpoint"] for b in report["blockers"] if b["kind"] == "unsigned"}
    assert unsigned == {"catalogs", "hips", "docs"}
    assert all(b["fix"].startswith("porter release signoff DP2") for b in report["blockers"])
    # `release check` says by its exit status when anything fails: a tile lost fails the HiPS checks.
    tile = tile_path(releases / "DP2" / "hips", 2, COVERAGE[0] >> 2)
    saved = tile.read_bytes()
    tile.unlink()
    code, out = cli("release", "check", "DP2", "--checkpoint", "hips", "--plans", releases)
    assert code == 1 and "failed or could not run" in out
    tile.write_bytes(saved)
    code, out = cli("release", "check", "DP2", "--checkpoint", "hips", "--plans", releases)
    assert code == 0, out


def test_deleting_the_last_audit_events_is_detected(delivery: tuple[Path, Butler], backend: str) -> None:
    releases, butler = delivery
    rel = open_release(releases)
    try:
        rel.check("catalogs")
        rel.ship("catalogs", "lead")
        rel.check("catalogs")
        rel.signoff("catalogs", "lead")
        assert rel.verify_audit() == []
        # Delete the sign-off, the last event: the hash chain alone is still intact …
        table = rel.log.table
        with butler.registry.db.transaction() as conn:
            last = conn.execute(sqlalchemy.select(sqlalchemy.func.max(table.c.seq))).scalar_one()
            conn.execute(sqlalchemy.delete(table).where(table.c.seq == last))
        assert rel.log.verify("DP2") == []
        # … but its anchor outside the database is not.
        problems = rel.verify_audit()
        assert any(f"event {last} (signoff)" in p and "missing from the log" in p for p in problems), problems
    finally:
        rel.close()
    code, out = cli("release", "audit", "DP2", "--verify", "--plans", releases)
    assert code == 1 and "missing from the log" in " ".join(out.split())


def test_like_renames_the_old_releases_collections_or_refuses(delivery: tuple[Path, Butler]) -> None:
    releases, butler = delivery
    plan = rubin_template("DP2", str(butler.root), load_plan(releases / "DP2.yaml").checkpoints[0].deadline)
    plan.collections = ["u/drp/step1"]
    plan.checkpoint("images").items[0].collections = ["u/drp/step1"]
    dump_plan(plan, releases / "DP2.yaml")
    code, out = cli("release", "init", "DP3", "--like", "DP2", "--plans", releases)
    assert (
        code == 1
        and "DP3 would still read DP2's collections" in out
        and "images.calexps.collections u/drp/step1" in out
    )
    assert not (releases / "DP3.yaml").exists()
    code, out = cli(
        "release",
        "init",
        "DP3",
        "--like",
        "DP2",
        "--collection",
        "u/drp/step1=u/drp/dp3",
        "--plans",
        releases,
    )
    assert code == 0, out
    assert "rewrote images.calexps.collections: u/drp/step1 → u/drp/dp3" in " ".join(out.split())
    dp3 = load_plan(releases / "DP3.yaml")
    assert dp3.collections == ["u/drp/dp3"] and dp3.checkpoint("images").items[0].collections == ["u/drp/dp3"]
    assert dp3.checkpoint("catalogs").items[0].location == "DP3/catalogs/Object/"
    code, out = cli("release", "init", "DP4", "--like", "DP2", "--keep", "--plans", releases)
    assert code == 0 and load_plan(releases / "DP4.yaml").collections == ["u/drp/step1"]


def test_a_malformed_corpus_rule_is_refused_before_it_is_written(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    rel = open_release(releases)
    try:
        finding = rel.add_finding("major", "catalogs", "psfFlux out of range", "lead")
        before = rel.events()
        with pytest.raises(PlanError, match=r"unknown rule 'rang'.*Did you mean 'range'"):
            rel.finding_to_check(finding.id, "lead", [{"rule": "rang", "column": "x"}], {"table": "Source"})
        assert rel.events() == before and not (releases / rel.plan.corpus.path).exists()
    finally:
        rel.close()


def test_confirming_a_manual_item_counts_without_rerunning_the_checks(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    plan = load_plan(releases / "DP2.yaml")
    plan.checkpoints[2].items.append(Item(name="qserv", kind="manual", check="row counts in Qserv match"))
    dump_plan(plan, releases / "DP2.yaml")
    rel = Release.open("DP2", releases)
    try:
        for cp in ("catalogs", "hips"):
            rel.check(cp)
            rel.signoff(cp, "lead")
        rel.check("docs")
        refused(
            rel,
            lambda: rel.signoff("docs", "lead"),
            "qserv:manual is pending: awaiting confirmation: porter release confirm DP2 docs qserv",
        )
        refused(
            rel,
            lambda: rel.waive("docs", "qserv:manual", "lead", "no time"),
            "awaits a person's confirmation, it has not failed",
        )  # a pending item is confirmed, not waived
        runs = sum(e.action == "check" for e in rel.events())
        rel.confirm("docs", "qserv", "lead", "12,345,678 rows on both sides")
        assert [r["status"] for r in rel.state().results("docs")] == ["pass", "pass"]
        assert rel.signoff("docs", "lead").payload["results"] == {
            "docs:files *.md": "pass",
            "qserv:manual": "pass",
        }
        assert sum(e.action == "check" for e in rel.events()) == runs  # nothing was re-run
    finally:
        rel.close()
