"""Release deliveries: HiPS trees, file trees, catalogs against Felis, manifests with content hashes, diffs."""

from __future__ import annotations

import datetime
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs import (
    LEAD,
    catalogs_checkpoint,
    dp2_catalogs,
    opened,
    pg_schema,
    to_postgresql,
    upload,
    visit_and_source_items,
    write_plan,
)
from conftest import TEST_BUCKET
from hips import COVERAGE, ORDER, make_hips, tile_path
from porter import Butler
from porter.release import Checkpoint, GateError, Item, Person
from porter.release._hips import check_hips
from test_cli import run


def statuses(results: list[Any]) -> dict[str, str]:
    return {r.check: r.status for r in results}


def test_clean_hips_tree_passes(tmp_path: Path) -> None:
    root = make_hips(tmp_path / "hips")
    assert set(statuses(check_hips("hips", root)).values()) == {"pass"}


def test_hips_defects_are_caught(tmp_path: Path) -> None:
    root = make_hips(tmp_path / "hips")
    missing = tile_path(root, 2, COVERAGE[0] >> 2)
    missing.unlink()
    got = check_hips("hips", root)
    assert statuses(got)["tiles at every order"] == "fail"
    assert (
        f"Norder2/Dir0/Npix{COVERAGE[0] >> 2}"
        in next(r for r in got if r.check == "tiles at every order").message
    )
    deepest = tile_path(root, ORDER, COVERAGE[-1])
    deepest.unlink()
    assert statuses(check_hips("hips", root))["MOC matches tiles"] == "fail"
    fresh = make_hips(tmp_path / "hips2")
    text = (fresh / "properties").read_text()
    (fresh / "properties").write_text(
        text.replace(f"hips_order = {ORDER}", "hips_order = 4").replace("obs_title = SynthCam color\n", "")
    )
    got = statuses(check_hips("hips", fresh))
    assert got["properties"] == "fail" and got["properties match tiles"] == "fail"
    (fresh / "Norder3" / "Allsky.fits").unlink()
    (fresh / "properties").write_text(text)
    assert statuses(check_hips("hips", fresh))["Allsky"] == "fail"


@pytest.fixture
def delivery(tmp_path: Path, make_repo: Any) -> tuple[Path, Butler]:
    butler = make_repo("repo")
    releases = tmp_path / "releases"
    dp2_catalogs(releases, n_sources=5000)
    make_hips(releases / "DP2" / "hips")
    (releases / "DP2" / "docs").mkdir(parents=True)
    for name in ("README.md", "schema.md"):
        (releases / "DP2" / "docs" / name).write_text(f"# {name}\n")
    write_plan(
        releases,
        str(butler.root),
        [
            catalogs_checkpoint(visit_and_source_items()),
            Checkpoint(
                name="hips",
                from_team="Pipelines",
                to_team="Data Services",
                deadline=datetime.date(2027, 2, 1),
                items=[Item(name="color", kind="hips", location="DP2/hips")],
            ),
            Checkpoint(
                name="docs",
                from_team="Data Services",
                to_team="Community",
                deadline=datetime.date(2027, 3, 1),
                depends_on=["catalogs", "hips"],
                items=[Item(name="docs", kind="files", location="DP2/docs", patterns={"*.md": 2})],
            ),
        ],
        people=[LEAD, Person(name="decider", decider=True)],
    )
    return releases, butler


def test_checks_ship_and_diff(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    with opened(releases) as rel:
        for cp in ("catalogs", "hips", "docs"):
            results = rel.check(cp)
            bad = [(r.name, r.status, r.message) for r in results if r.status not in ("pass", "warn")]
            assert not bad, bad
        event = rel.ship("catalogs", "lead")
        assert event.payload["entries"] == 3  # Visit in one file, Source in two
        # The same delivery, checked again: it matches its manifest.
        results = rel.check("catalogs")
        assert statuses(results)["manifest unchanged"] == "pass"
        # Someone rewrites a file after shipping: the check says which.
        part = releases / "DP2" / "catalogs" / "Source" / "part-1.parquet"
        shutil.copy(releases / "DP2" / "catalogs" / "Source" / "part-0.parquet", part)
        results = rel.check("catalogs")
        changed = next(r for r in results if r.check == "manifest unchanged")
        assert changed.status == "fail" and changed.sample[0]["key"] == "part-1.parquet"
    # A second release like the first, shipped with one more file: diff names it.
    run("release", "init", "DP3", "--like", "DP2", "--shift-days", "90", "--plans", releases)
    shutil.copytree(releases / "DP2", releases / "DP3", ignore=shutil.ignore_patterns("manifests"))
    (releases / "DP3" / "catalogs" / "Source" / "part-2.parquet").write_bytes(part.read_bytes())
    run("release", "ship", "DP3", "catalogs", "--by", "lead", "--plans", releases)
    run("release", "check", "DP3", "--checkpoint", "docs", "--plans", releases)
    report = releases / "dp3.html"
    run("release", "report", "DP3", "--html", report, "--plans", releases)
    across = report.read_text().split("<h2>Across releases</h2>")[1].split("<h2>")[0]
    assert ">DP2<" in across and ">DP3<" in across  # both releases' latest results, side by side
    out = json.loads(run("release", "diff", "DP2", "DP3", "--plans", releases, "--json"))
    assert out["catalogs"]["added"] == [{"item": "source", "key": "part-2.parquet"}]
    assert out["hips"] == {"note": "not shipped in DP2"}


def test_warnings_are_accepted_by_the_signoff_and_failures_block(delivery: tuple[Path, Butler]) -> None:
    """Warnings (here: a Visit column the dp1 schema does not have) are shown and recorded by the
    sign-off that accepts them; a failing check still refuses it."""
    releases, _ = delivery
    visit = releases / "DP2" / "catalogs" / "Visit" / "part-0.parquet"
    table = pq.read_table(visit)
    pq.write_table(table.append_column("seeing", pa.array([0.7] * table.num_rows)), visit)
    with opened(releases) as rel:
        results = rel.check("catalogs")
        warned = [r for r in results if r.status == "warn"]
        assert warned and all(r.status in ("pass", "warn") for r in results)
        event = rel.signoff("catalogs", "lead")
        assert event.action == "signoff"
        assert event.payload["warnings"] == [f"{r.name}: {r.message or r.value}" for r in warned]
        # A HiPS tile gone is a failure, and the gate holds.
        tile_path(releases / "DP2" / "hips", 2, COVERAGE[0] >> 2).unlink()
        results = rel.check("hips")
        assert any(r.status == "fail" for r in results)
        with pytest.raises(GateError, match="Sign-off of 'hips' refused"):
            rel.signoff("hips", "lead")
    out = run("release", "audit", "DP2", "--plans", releases, "--json")
    assert "warnings" in out


def test_catalog_delivery_in_s3(delivery: tuple[Path, Butler], s3_server: str) -> None:
    """Catalog items in S3 are checked, shipped and compared with their manifest like local ones."""
    releases, _ = delivery
    prefix = f"DP2-{uuid.uuid4().hex[:8]}"
    s3 = upload(releases / "DP2" / "catalogs", prefix)
    plan_file = releases / "DP2.yaml"
    plan_file.write_text(plan_file.read_text().replace("location: DP2/catalogs/", f"location: {s3}/"))
    with opened(releases) as rel:
        results = rel.check("catalogs")
        bad = [(r.name, r.status, r.message) for r in results if r.status not in ("pass", "warn")]
        assert not bad and "foreign key visit → Visit" in statuses(results), bad
        assert rel.ship("catalogs", "lead").payload["entries"] == 3
        assert statuses(rel.check("catalogs"))["manifest unchanged"] == "pass"
        local = releases / "DP2" / "catalogs" / "Source"
        boto3.client("s3", endpoint_url=s3_server).upload_file(
            str(local / "part-0.parquet"), TEST_BUCKET, f"{prefix}/Source/part-1.parquet"
        )
        changed = next(r for r in rel.check("catalogs") if r.check == "manifest unchanged")
        assert changed.status == "fail" and changed.sample[0]["key"] == "part-1.parquet"


def test_catalog_delivery_in_postgresql(delivery: tuple[Path, Butler], pg_server: str) -> None:
    """Catalog items that are live PostgreSQL tables: checked, shipped as (rows, fingerprint), and a row
    changed afterwards is caught by the manifest check."""
    releases, _ = delivery
    with pg_schema(pg_server) as (engine, schema):
        for table in ("Visit", "Source"):
            to_postgresql(releases / "DP2" / "catalogs" / table, table, engine, schema)
        plan_file = releases / "DP2.yaml"
        text = plan_file.read_text()
        for table in ("Visit", "Source"):
            text = text.replace(f"location: DP2/catalogs/{table}", f"location: {pg_server}#{schema}.{table}")
        plan_file.write_text(text)
        with opened(releases) as rel:
            results = rel.check("catalogs")
            bad = [(r.name, r.status, r.message) for r in results if r.status not in ("pass", "warn")]
            assert not bad and "foreign key visit → Visit" in statuses(results), bad
            assert rel.ship("catalogs", "lead").payload["entries"] == 2  # one row per table
            assert statuses(rel.check("catalogs"))["manifest unchanged"] == "pass"
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    f'UPDATE "{schema}"."Source" SET "psfFlux" = "psfFlux" + 1 WHERE "sourceId" = '
                    f'(SELECT min("sourceId") FROM "{schema}"."Source")'
                )
            changed = next(r for r in rel.check("catalogs") if r.check == "manifest unchanged")
            assert changed.status == "fail" and changed.sample[0]["key"] == f"{schema}.Source"


def test_files_check_counts(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    (releases / "DP2" / "docs" / "schema.md").unlink()
    with opened(releases) as rel:
        (result,) = rel.check("docs")
        assert result.status == "fail" and result.value == 1 and result.expected == 2


def test_finding_becomes_a_corpus_check_every_release_runs(delivery: tuple[Path, Butler]) -> None:
    releases, _ = delivery
    run(
        "release",
        "finding",
        "add",
        "DP2",
        "detector 7 sources are flagged everywhere",
        "--severity",
        "major",
        "--checkpoint",
        "catalogs",
        "--by",
        "lead",
        "--plans",
        releases,
    )
    run(
        "release",
        "finding",
        "to-check",
        "DP2",
        "1",
        "--by",
        "lead",
        "--table",
        "Source",
        "--rule",
        "{rule: range, column: detector, min: 0, max: 100}",
        "--plans",
        releases,
    )
    corpus = releases / "corpus" / "DP2-finding-1.yaml"
    assert "detector 7 sources" in corpus.read_text()
    (releases / "corpus" / "visit_ids.py").write_text(
        "from porter.schema import CheckResult\nAPPLIES_TO = {'table': 'Visit'}\n"
        "def check(source):\n    (n,) = source.one(f'SELECT count(*) FROM {source.sql} WHERE visit <= 0')\n"
        "    return CheckResult('visit', 'positive visit ids', 'fail' if n else 'pass', value=n)\n"
    )
    # A later release made like this one runs the corpus on its own catalogs.
    run("release", "init", "DP3", "--like", "DP2", "--shift-days", "90", "--plans", releases)
    shutil.copytree(releases / "DP2", releases / "DP3")

    def corpus_results() -> dict[str, str]:
        checks = json.loads(
            run(
                "release", "check", "DP3", "--checkpoint", "catalogs", "--plans", releases, "--json", ok=False
            )
        )  # exit status 1: the corpus check fails
        return {c["check"]: c["status"] for c in checks if c["check"].startswith("corpus/")}

    # The generated detectors run 0..188, so the finding's rule catches the same defect again.  The
    # Python check is code: it runs only once the plan says so, and until then it says it did not run.
    assert corpus_results() == {
        "corpus/DP2-finding-1: range detector": "fail",
        "corpus/visit_ids": "warn",
    }
    plan = releases / "DP3.yaml"
    plan.write_text(plan.read_text() + "corpus: {python: true}\n")
    assert corpus_results() == {
        "corpus/DP2-finding-1: range detector": "fail",
        "corpus/visit_ids: positive visit ids": "pass",
    }
    out = run(
        "release",
        "finding",
        "to-check",
        "DP2",
        "9",
        "--by",
        "lead",
        "--table",
        "Source",
        "--rule",
        "{rule: finite, columns: [x]}",
        "--plans",
        releases,
        ok=False,
    )
    assert "has no finding 9" in out


def test_killed_release_commands_leave_state_consistent(delivery: tuple[Path, Butler]) -> None:
    """SIGKILL `release check` and `release ship` at random moments: the audit log stays intact and usable."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    releases, _ = delivery
    rng = random.Random(11)
    env = {**os.environ, "PORTER_RELEASES": str(releases)}
    for round_ in range(6):
        command = ["check", "DP2"] if round_ % 2 == 0 else ["ship", "DP2", "catalogs", "--by", "lead"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "porter.cli", "release", *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with opened(releases) as rel:
            assert rel.log.verify("DP2") == []
            rel.state()  # every event folds
    # After all that, the release works as if nothing happened.
    with opened(releases) as rel:
        rel.ship("catalogs", "lead")
        results = rel.check("catalogs")
        assert {r.status for r in results} <= {"pass", "warn"}, [(r.name, r.status) for r in results]
        assert rel.log.verify("DP2") == []
