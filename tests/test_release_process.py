# ruff: noqa: F811  (the delivery fixture, imported from test_release_delivery, is every test's argument)
"""LDM-564's release process in a plan: feature lists per milestone, levels of operational validation,
and smoke tests on a test environment before promotion to production (on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from porter import Butler
from porter.cli import app
from porter.release import (
    Environment,
    Feature,
    GateError,
    Milestone,
    PlanError,
    Release,
    SmokeTest,
    dump_plan,
    load_plan,
)
from test_release_delivery import delivery  # noqa: F401  (the fixture: catalogs, HiPS and docs of DP2)


def edit_plan(releases: Path, **changes: Any) -> Release:
    plan = load_plan(releases / "DP2.yaml")
    for key, value in changes.items():
        setattr(plan, key, value)
    dump_plan(load_plan_from(plan.model_dump(mode="json"), releases), releases / "DP2.yaml")
    return Release.open("DP2", releases)


def load_plan_from(data: dict[str, Any], releases: Path) -> Any:
    """Validate ``data`` as a plan file would be (through YAML), so validators run on the edit."""
    path = releases / "edited.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        return load_plan(path)
    finally:
        path.unlink()


def sign_everything(rel: Release) -> None:
    for cp in ("catalogs", "hips", "docs"):
        rel.ship(cp, "lead")
        rel.check(cp)
        if rel.signoff_problems(cp):  # the HiPS tree has warnings only; anything else is waived here
            for r in rel.state().failing(cp):
                rel.waive(cp, r["name"], "lead", "accepted for this test")
        rel.signoff(cp, "lead")


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


ENVIRONMENTS = [
    Environment(
        name="test",
        smoke_tests=[
            SmokeTest(name="catalogs readable", command="test -s DP2/catalogs/Source/part-0.parquet"),
        ],
    ),
    Environment(name="production", promote_from="test"),
]


def test_levels_select_what_ready_needs(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    plan = load_plan(releases / "DP2.yaml")
    plan.checkpoints[2].required_at = "standard"  # docs: not needed for a minimal (development) release
    plan.environments = ENVIRONMENTS
    for level, expected in [
        ("minimal", {"unsigned"}),
        ("standard", {"unsigned", "smoke"}),
        ("rigorous", {"unsigned", "smoke", "promotion"}),
    ]:
        plan.validation = level  # type: ignore[assignment]
        dump_plan(plan, releases / "DP2.yaml")
        rel = Release.open("DP2", releases)
        try:
            blockers = rel.blockers()
            assert {b.kind for b in blockers} == expected, level
            unsigned = {b.checkpoint for b in blockers if b.kind == "unsigned"}
            assert unsigned == ({"catalogs", "hips"} if level == "minimal" else {"catalogs", "hips", "docs"})
        finally:
            rel.close()
    # A minimal release needs its minimal hand-overs signed, and no test period.
    plan.validation = "minimal"
    plan.test_period_days = 28
    dump_plan(plan, releases / "DP2.yaml")
    rel = Release.open("DP2", releases)
    try:
        for cp in ("catalogs", "hips"):
            rel.check(cp)
            rel.signoff(cp, "lead")
        event = rel.mark_ready("lead")
        assert event.payload["validation"] == "minimal" and set(event.payload["checkpoints"]) == {
            "catalogs",
            "hips",
        }
    finally:
        rel.close()


def test_promotion_needs_green_smoke_tests_on_the_same_content(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    rel = edit_plan(releases, environments=ENVIRONMENTS, validation="rigorous", test_period_days=0)
    try:
        sign_everything(rel)
        with pytest.raises(GateError, match="smoke tests of 'test' have not run"):
            rel.promote("production", "lead")
        with pytest.raises(GateError, match="not promoted into"):
            rel.promote("test", "lead")
        assert [r.status for r in rel.smoke("test", "lead")] == ["pass"]
        # Content shipped after the smoke run: the smoke tests must run again on it.
        source = releases / "DP2" / "catalogs" / "Source"
        shutil.copy(source / "part-1.parquet", source / "part-9.parquet")
        rel.ship("catalogs", "lead")
        before = rel.events()
        with pytest.raises(GateError, match="ran on other content than is shipped now"):
            rel.promote("production", "lead")
        assert rel.events() == before
        (source / "part-9.parquet").unlink()
        rel.ship("catalogs", "lead")  # the content the sign-off and the smoke run saw, again
        rel.check("catalogs")
        if "catalogs" not in rel.state().signed:
            rel.signoff("catalogs", "lead")
        rel.smoke("test", "lead")
        promoted = rel.promote("production", "lead")
        assert promoted.payload["content_hashes"] == rel.state().content_hashes()
        event = rel.mark_ready("lead")
        assert event.payload["promotions"] == {"production": promoted.seq}
    finally:
        rel.close()


def test_a_failing_smoke_test_blocks_and_exits_non_zero(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    envs = [
        Environment(
            name="test", smoke_tests=[SmokeTest(name="queries", command="echo 'no TAP service' >&2; exit 3")]
        ),
        Environment(name="production", promote_from="test"),
    ]
    edit_plan(releases, environments=envs).close()
    code, out = cli("release", "smoke", "DP2", "--env", "test", "--by", "lead", "--plans", releases, "--json")
    assert code == 1
    (result,) = json.loads(out)
    assert (
        result["name"] == "smoke/test:queries"
        and result["status"] == "fail"
        and "no TAP service" in result["message"]
    )
    code, out = cli("release", "ready", "DP2", "--dry-run", "--json", "--plans", releases)
    assert any(
        b["kind"] == "smoke" and "failed: smoke/test:queries" in b["what"]
        for b in json.loads(out)["blockers"]
    )


def test_features_are_done_only_when_verified(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    today = datetime.date.today()
    milestone = Milestone(
        name="go public",
        date=today + datetime.timedelta(days=30),
        features=[
            Feature(id="DM-DAX-2", description="TAP", due=today - datetime.timedelta(days=1)),
            Feature(
                id="DM-DAX-3",
                description="docs",
                due=today + datetime.timedelta(days=5),
                completed=today,
                verified_by=["docs/docs:files *.md"],
            ),
            Feature(id="DM-DAX-4", description="later", due=today + datetime.timedelta(days=20)),
        ],
    )
    rel = edit_plan(releases, milestones=[milestone], validation="rigorous")
    try:
        assert [f["status"] for f in rel.features()] == ["late", "unverified", "open"]
        (result,) = rel.check("docs")
        assert result.name == "docs:files *.md" and result.status == "pass"
        assert [f["status"] for f in rel.features()] == ["late", "done", "open"]
        status = rel.status()
        row = next(r for r in status["rows"] if r["name"] == "go public")
        assert (row["features_done"], row["features_total"], row["features_late"]) == (1, 3, 1)
        assert row["features"] == "1/3 done, 1 late"
        feature_blockers = [b.what for b in rel.blockers() if b.kind == "feature"]
        assert feature_blockers == [
            f"feature DM-DAX-2 of 'go public' (due {today - datetime.timedelta(days=1)}) is late"
        ]
    finally:
        rel.close()
    code, out = cli("release", "status", "DP2", "--json", "--plans", releases)
    data = json.loads(out)
    assert code == 0 and data["validation"] == "rigorous" and data["today"] == today.isoformat()
    docs = next(r for r in data["rows"] if r["name"] == "docs")
    assert docs["checks_passed"] == 1 and docs["checks_total"] == 1 and docs["signed_at"] is None
    assert {b["kind"] for b in data["blockers"]} >= {"unsigned", "feature"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"environments": [{"name": "production", "promote_from": "tst"}]},
            "is promoted from 'tst', which is not another environment",
        ),
        (
            {"environments": [{"name": "test", "smoke_tests": [{"name": "x"}]}]},
            "needs exactly one of command: or read_back:",
        ),
        (
            {
                "milestones": [
                    {
                        "name": "m",
                        "date": "2027-01-01",
                        "features": [{"id": "DM-1", "due": "2027-01-01", "verified_by": ["nowhere/x"]}],
                    }
                ]
            },
            "names no checkpoint's check or smoke test",
        ),
        ({"validation": "thorough"}, "validation"),
    ],
)
def test_process_fields_are_validated(
    delivery: tuple[Path, Butler], change: dict[str, Any], message: str
) -> None:
    releases, _ = delivery
    data = yaml.safe_load((releases / "DP2.yaml").read_text())
    data.update(change)
    (releases / "DP2.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PlanError, match=message):
        load_plan(releases / "DP2.yaml")
