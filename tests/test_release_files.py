"""Release files a hostile or careless person controls (issue 14): the corpus path, Python corpus checks,
catalog directories with link loops and FIFOs, a location that holds everything, and catalogs whose
columns are all text.  Each is refused or reported by name, never a hang, a traceback or a write
outside the plan's directory."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from catalogs import (
    catalogs_checkpoint,
    checked,
    dp1_item,
    dp2_catalogs,
    opened,
    visit_and_source_items,
    write_plan,
)
from porter import Butler
from porter.release import Item, PlanError, load_plan


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    """releases/: the DP2 plan over the Visit and Source catalogs, and an empty repository."""
    Butler.create(tmp_path / "repo").close()
    releases = tmp_path / "releases"
    dp2_catalogs(releases)
    write_plan(releases, str(tmp_path / "repo"), [catalogs_checkpoint(visit_and_source_items())])
    return releases


def _set(releases: Path, key: str, value: object) -> None:
    path = releases / "DP2.yaml"
    data = yaml.safe_load(path.read_text())
    data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(
    "corpus", ["../../elsewhere", "/tmp/corpus", {"path": "a/../../b"}, "s3://bucket/corpus"]
)
def test_a_corpus_outside_the_plans_directory_is_refused(releases: Path, corpus: object) -> None:
    _set(releases, "corpus", corpus)
    with pytest.raises(
        PlanError, match=r"DP2.yaml:\d+: corpus.*leaves the plan's directory — write a relative"
    ):
        load_plan(releases / "DP2.yaml")


def test_a_corpus_link_out_of_the_plans_directory_is_neither_written_nor_read(
    releases: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.yaml").write_text(
        yaml.safe_dump(
            {"name": "evil", "applies_to": {"table": "Source"}, "rules": [{"rule": "row_count", "max": 0}]}
        )
    )
    os.symlink(outside, releases / "corpus")
    with opened(releases) as rel:
        finding = rel.add_finding("major", "catalogs", "Source has negative fluxes", "lead")
        before = rel.events()
        with pytest.raises(PlanError, match=r"leads to .*outside, outside the plan's directory"):
            rel.finding_to_check(
                finding.id, "lead", [{"rule": "range", "column": "psfFlux", "min": 0}], {"table": "Source"}
            )
        assert rel.events() == before
    assert sorted(p.name for p in outside.iterdir()) == ["evil.yaml"]  # nothing written there
    results = checked(releases)
    (corpus,) = [r for (item, check), r in results.items() if item == "source" and check == "corpus"]
    assert corpus.status == "error" and "outside the plan's directory" in corpus.message
    assert not any(check.startswith("corpus/evil") for _, check in results)  # and nothing read from there


def test_python_corpus_checks_run_only_when_the_plan_says_so(releases: Path) -> None:
    corpus = releases / "corpus"
    corpus.mkdir()
    marker = releases.parent / "ran"
    (corpus / "sources.py").write_text(
        "from pathlib import Path\nfrom porter.schema import CheckResult\nAPPLIES_TO = {'table': 'Source'}\n"
        f"def check(source):\n    Path({str(marker)!r}).write_text('ran')\n"
        "    return CheckResult('source', 'ran', 'pass')\n"
    )
    skipped = checked(releases)[("source", "corpus/sources")]
    assert skipped.status == "warn" and skipped.value == "not run"
    assert "set corpus: {python: true} in the plan" in skipped.message and not marker.exists()
    _set(releases, "corpus", {"python": True})
    assert checked(releases)[("source", "corpus/sources: ran")].status == "pass" and marker.exists()


def test_link_loops_and_fifos_in_a_catalog_are_named_by_the_check_and_stop_the_ship(releases: Path) -> None:
    source = releases / "DP2" / "catalogs" / "Source"
    os.symlink(".", source / "again")  # a directory link back up: a recursive glob would go round 40 times
    results = checked(releases)
    (files,) = [r for (item, _), r in results.items() if item == "source"]
    assert files.status == "error" and files.sample == [
        {"file": str(source / "again"), "problem": f"is a link back to {source.resolve()} (a loop)"}
    ]
    with opened(releases) as rel:
        before = rel.events()
        with pytest.raises(PlanError, match=r"Cannot ship .*again: is a link back to .* \(a loop\)"):
            rel.ship("catalogs", "lead")
        assert rel.events() == before
    (source / "again").unlink()
    os.symlink("itself.parquet", source / "itself.parquet")
    os.mkfifo(source / "pipe.parquet")
    results = checked(releases)
    (files,) = [r for (item, _), r in results.items() if item == "source"]
    assert files.status == "error"
    assert {p["file"]: p["problem"] for p in files.sample} == {
        str(source / "itself.parquet"): "is a symbolic-link loop (to itself.parquet)",
        str(source / "pipe.parquet"): "is not a regular file (a FIFO, socket or device)",
    }
    with opened(releases) as rel:  # reading the FIFO would wait for ever: refused before it is opened
        with pytest.raises(
            PlanError, match=r"2 entries cannot be read as files.*pipe.parquet: not a regular file"
        ):
            rel.ship("catalogs", "lead")
        assert not rel.state().shipments


@pytest.mark.parametrize("location", ["/", "..", "."])
def test_a_location_that_holds_the_plan_is_refused(releases: Path, location: str) -> None:
    plan = load_plan(releases / "DP2.yaml")
    plan.checkpoints[0].items.append(
        Item(name="everything", kind="files", location=location, patterns={"*": 1})
    )
    write_plan(releases, plan.repository, plan.checkpoints)
    results = checked(releases)
    (everything,) = [r for (item, _), r in results.items() if item == "everything"]
    assert everything.status == "error" and "holds the plan's own directory" in everything.message
    with opened(releases) as rel, pytest.raises(PlanError, match="name the item's own directory"):
        rel.ship("catalogs", "lead")


def test_rules_on_text_columns_say_so_once_instead_of_an_engine_error(releases: Path) -> None:
    source = releases / "DP2" / "catalogs" / "Source"
    for part in source.glob("*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.cast(pa.schema([pa.field(f.name, pa.string()) for f in table.schema])), part)
    results = checked(releases)
    footprint = results[("source", "footprint")]
    assert footprint.status == "error"
    assert footprint.message == (
        "not run: column 'coord_ra' is VARCHAR in the catalog, and footprint compares numbers — write the "
        "column with a numeric type (the types check lists every mismatch)."
    )
    assert results[("source", "row_count")].status == "pass"  # counting rows needs no numbers
    assert results[("source", "types")].status == "fail"
    assert not any("Binder" in r.message for r in results.values())


def test_a_catalog_item_may_still_name_its_files_anywhere_else(releases: Path, tmp_path: Path) -> None:
    """Confinement is for what porter writes (corpus, manifests): catalogs are read where they are."""
    elsewhere = tmp_path / "elsewhere" / "Visit"
    (releases / "DP2" / "catalogs" / "Visit").rename(elsewhere.parent.mkdir() or elsewhere)
    plan = load_plan(releases / "DP2.yaml")
    plan.checkpoints[0].items[:] = [dp1_item("visit", "Visit", location=str(elsewhere))]
    write_plan(releases, plan.repository, plan.checkpoints)
    assert {r.status for r in checked(releases).values()} <= {"pass", "warn"}
