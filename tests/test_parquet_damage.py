"""Broken Parquet in a delivery: the check of that item is an ``error`` naming the file and what is wrong.

A release's catalogs checkpoint ships DP1's Visit and Source tables (the real Felis schema from
lsst-sdm-schemas, tables built by tests/catalogs.py, Source in two files).  One file is then damaged
the ways deliveries get damaged — cut short, emptied, replaced by something that is not Parquet, a
corrupt footer or footer length, corrupt data pages, a schema that differs from the other file's, a
link to nothing, no read permission — and:

- ``release check`` records one ``error`` result for the damaged item that names the file and what is
  wrong with it (never a traceback, never DuckDB's message about an anonymous file, never a file
  silently left out), while the other items are still checked;
- ``porter schema diff … --parquet`` and ``porter schema check`` exit 1 with that message.

The unreadable-file case needs a process that file permissions apply to: as root, the command runs
without the capabilities that bypass them (``setpriv``).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from catalogs import (
    catalogs_checkpoint,
    checked,
    dp2_catalogs,
    opened,
    upload,
    visit_and_source_items,
    write_plan,
)
from porter import Butler
from porter.cli import app
from porter.errors import PorterError
from porter.release import Checkpoint, Item, Person
from porter.schema import CatalogSource

runner = CliRunner()


def cli(*args: object) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def delivery(tmp_path: Path) -> Path:
    """releases/: the DP2 plan (Visit and Source catalogs with rules), its catalogs, and a repository."""
    butler = Butler.create(tmp_path / "repo")
    butler.close()
    releases = tmp_path / "releases"
    dp2_catalogs(releases)
    write_plan(
        releases,
        str(tmp_path / "repo"),
        [
            catalogs_checkpoint(
                [*visit_and_source_items(), Item(name="qserv", kind="manual", check="ingested into Qserv")]
            )
        ],
        people=[Person(name="lead", can_waive=True)],
    )
    return releases


def _flip(data: bytes, start: int, stop: int, step: int) -> bytes:
    raw = bytearray(data)
    for i in range(start, stop, step):
        raw[i] ^= 0x5A
    return bytes(raw)


def _zeroed(data: bytes) -> bytes:
    """Every column chunk (page headers and data) zeroed; the footer intact."""
    footer = int.from_bytes(data[-8:-4], "little") + 8
    return data[:4] + bytes(len(data) - 4 - footer) + data[-footer:]


def _footer(data: bytes) -> bytes:
    """The Thrift footer scrambled; the magic bytes and the length field intact."""
    n = int.from_bytes(data[-8:-4], "little")
    return _flip(data, len(data) - 8 - n, len(data) - 8, 3)


def _retyped(path: Path, column: str, to: pa.DataType) -> None:
    table = pq.read_table(path)
    i = table.schema.get_field_index(column)
    pq.write_table(table.set_column(i, column, table[column].cast(to)), path)


def _dangling(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("moved-away.parquet"))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "is truncated"),
    "zero-length": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "not-parquet": (
        lambda p: p.write_text("visit,ra,dec\n1,150.1,2.2\n" * 50),
        "is not a Parquet file (it begins with b'visi'",
    ),
    "corrupt-footer": (lambda p: p.write_bytes(_footer(p.read_bytes())), "has a damaged footer"),
    "footer-length": (
        lambda p: p.write_bytes(p.read_bytes()[:-8] + (2**31 - 1).to_bytes(4, "little") + b"PAR1"),
        "has a damaged footer (it claims 2147483647 bytes",
    ),
    "corrupt-data": (
        lambda p: p.write_bytes(_zeroed(p.read_bytes())),
        "has damaged data in row group 0",
    ),
    "other-type": (
        lambda p: _retyped(p, "coord_ra", pa.string()),
        "has another schema than part-0.parquet: column coord_ra is VARCHAR, not DOUBLE",
    ),
    "narrower-int": (
        lambda p: _retyped(p, "visit", pa.int32()),
        "has another schema than part-0.parquet: column visit is INTEGER, not BIGINT",
    ),
    "missing-column": (
        lambda p: pq.write_table(pq.read_table(p).drop_columns(["psfFlux"]), p),
        "has another schema than part-0.parquet: lacks ['psfFlux']",
    ),
    "dangling-link": (_dangling, "is a broken link (to "),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_release_check_names_the_damaged_file(delivery: Path, kind: str) -> None:
    damage, problem = DAMAGE[kind]
    victim = delivery / "DP2" / "catalogs" / "Source" / "part-1.parquet"
    damage(victim)
    with opened(delivery) as rel:
        results = rel.check("catalogs")
        logged = rel.state().checks["catalogs"].payload["results"]
    by_item: dict[str, list[Any]] = {}
    for r in results:
        by_item.setdefault(r.item, []).append(r)
    if kind in ("other-type", "narrower-int", "missing-column"):  # files that differ: a fail, not an error
        (r,) = by_item["source"]
        assert (r.check, r.status) == ("files", "fail") and str(victim) in r.message, r.message
        return
    errors = [r for r in by_item["source"] if r.status == "error"]
    assert errors, [(r.check, r.status, r.message) for r in by_item["source"]]
    for r in errors:
        assert str(victim) in r.message and problem in r.message, r.message
        assert " — " in r.message  # and the fix
        assert r.message.startswith(f"Catalog {victim.parent}: "), r.message  # porter's words, not DuckDB's
    assert {"file": str(victim), "problem": errors[0].sample[0]["problem"]} == errors[0].sample[0]
    # The damage stops the damaged catalog's checks, not the other items'.
    assert {r.check for r in by_item["visit"]} >= {"columns", "types", "not-null", "primary key"}
    assert all(r.status in ("pass", "warn") for r in by_item["visit"]), [
        (r.check, r.message) for r in by_item["visit"]
    ]
    assert [r.status for r in by_item["qserv"]] == ["pending"]  # not confirmed yet: checked all the same
    assert [r["status"] for r in logged] == [r.status for r in results]  # and the run was recorded
    if kind != "corrupt-data":  # the footers already tell: the catalog's checks stop at its files
        assert [(r.check, r.status) for r in by_item["source"]] == [("files", "error")]

    out = cli("release", "check", "DP2", "--plans", delivery, "--json")
    assert out.exit_code == 1, out.output
    # exit status 1: a check failed or could not run
    rows = json.loads(out.output)
    assert any(r["item"] == "source" and r["status"] == "error" and str(victim) in r["message"] for r in rows)


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_schema_commands_name_the_damaged_file(delivery: Path, kind: str) -> None:
    damage, problem = DAMAGE[kind]
    source = delivery / "DP2" / "catalogs" / "Source"
    victim = source / "part-1.parquet"
    damage(victim)
    commands = [("schema", "check", "dp1", "Source", "--parquet", source)]
    if kind != "corrupt-data":  # a diff reads the footers only, and they are intact
        commands.append(("schema", "diff", "dp1", "Source", "--parquet", source))
    for args in commands:
        out = cli(*args)
        assert out.exit_code == 1, out.output
        assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
        text = " ".join(out.output.replace("│", " ").split())
        assert str(victim) in text and problem in text and "Traceback" not in text, out.output
        if kind != "corrupt-data":  # the footers tell before any check: one error, not a table
            assert "error: CatalogFileError" in text, out.output
    with pytest.raises(PorterError, match="cannot be used"):
        catalog = CatalogSource(str(source))
        catalog.one(f"SELECT count(*), sum(coord_ra), max(sourceId) FROM {catalog.sql}")


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root keeps them only without these capabilities)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_an_unreadable_file_is_named(delivery: Path) -> None:
    """Checks, diffs and shipments of a catalog with a file no one may read: each names the file, no traceback.

    The delivery was shipped while readable, so the check also compares it with its manifest: that
    comparison is an error naming the file too."""
    with opened(delivery) as rel:
        rel.ship("catalogs", "lead")
    source = delivery / "DP2" / "catalogs" / "Source"
    victim = source / "part-1.parquet"
    victim.chmod(0)
    porter = [*_unprivileged(), sys.executable, "-m", "porter.cli"]
    env = {**os.environ, "COLUMNS": "400"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*porter, *args], capture_output=True, text=True, env=env)
        assert "Traceback" not in done.stdout + done.stderr, done
        return done

    diff = run("schema", "diff", "dp1", "Source", "--parquet", str(source))
    assert diff.returncode == 1, diff
    err = " ".join(diff.stderr.split())
    assert f"{victim} cannot be read: permission denied" in err and "make the file readable" in err, (
        diff.stderr
    )
    check = run("release", "check", "DP2", "--plans", str(delivery), "--json")
    assert check.returncode == 1, check  # a check could not run: release check says so by its exit status
    rows = json.loads(check.stdout)
    errors = {r["item"]: r["message"] for r in rows if r["status"] == "error"}
    assert errors.keys() == {"source", "shipment"}, rows
    assert f"{victim} cannot be read: permission denied" in errors["source"]
    assert f"{victim}: cannot be read (Permission denied)" in errors["shipment"]
    assert {r["item"] for r in rows} == {"visit", "source", "qserv", "shipment"}
    ship = run("release", "ship", "DP2", "catalogs", "--by", "lead", "--plans", str(delivery))
    assert ship.returncode == 1, ship
    err = " ".join(ship.stderr.split())
    assert f"error: PorterError: {victim}: cannot be read (Permission denied) — make" in err, ship.stderr


def test_a_damaged_reference_catalog_is_named_by_the_foreign_key_check(delivery: Path) -> None:
    """Source's foreign key into Visit: with Visit's file damaged, that check is an error naming Visit's file
    (and Visit's own item says the same); Source's other checks pass."""
    victim = delivery / "DP2" / "catalogs" / "Visit" / "part-0.parquet"
    victim.write_bytes(victim.read_bytes()[:100])
    results = checked(delivery)
    fk = results[("source", "foreign key visit → Visit")]
    assert fk.status == "error" and str(victim) in fk.message and "is truncated" in fk.message, fk.message
    assert results[("visit", "files")].status == "error"
    others = [r for (item, check), r in results.items() if item == "source" and check != fk.check]
    assert others and all(r.status in ("pass", "warn") for r in others), [
        (r.check, r.message) for r in others
    ]


def test_many_damaged_files_are_all_named(delivery: Path) -> None:
    source = delivery / "DP2" / "catalogs" / "Source"
    table = pq.read_table(source)
    for i in range(12):
        pq.write_table(table.slice(i * 10, 10), source / f"extra-{i:02}.parquet")
    (source / "extra-03.parquet").write_bytes(b"")
    (source / "extra-07.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(PorterError) as damaged:
        CatalogSource(str(source)).columns()
    message = str(damaged.value)
    assert "2 files cannot be used" in message
    assert f"{source / 'extra-03.parquet'} is empty" in message
    assert f"{source / 'extra-07.parquet'} is not a Parquet file" in message or "is truncated" in message


def test_a_damaged_catalog_in_s3_is_named(delivery: Path, s3_server: str) -> None:
    source = delivery / "DP2" / "catalogs" / "Source"
    (source / "part-1.parquet").write_bytes(b"")
    location = upload(source, f"damaged-{os.getpid()}")
    with pytest.raises(PorterError, match=rf"{location}/part-1.parquet is empty \(0 bytes\)"):
        CatalogSource(location).columns()
    out = cli("schema", "diff", "dp1", "Source", "--parquet", location)
    assert out.exit_code == 1 and "is empty (0 bytes)" in " ".join(out.output.split()), out.output


def test_a_location_with_a_quote_is_read(tmp_path: Path, delivery: Path) -> None:
    """A catalog directory whose name holds a quote: its files are read (the location is a SQL string)."""
    odd = tmp_path / "Source's catalog"
    shutil.copytree(delivery / "DP2" / "catalogs" / "Source", odd)
    assert "coord_ra" in CatalogSource(str(odd)).columns()
    (odd / "part-0.parquet").write_bytes(b"")
    with pytest.raises(PorterError, match="is empty"):
        CatalogSource(str(odd)).columns()


def test_release_missing_with_a_damaged_list_is_a_clear_error(tmp_path: Path) -> None:
    """`release missing` reads back the Parquet list of missing data IDs a check wrote; damaged, it says so."""
    from conftest import SMALL_SURVEY
    from porter.demo import SurveySpec, generate_survey

    butler = Butler.create(tmp_path / "repo")
    generate_survey(butler, SurveySpec(**SMALL_SURVEY))  # type: ignore[arg-type]
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    butler.close()
    releases = tmp_path / "repo" / "releases"
    write_plan(
        releases,
        str(tmp_path / "repo"),
        [
            Checkpoint(
                name="images",
                from_team="Pipelines",
                to_team="Middleware",
                deadline=datetime.date(2027, 2, 1),
                items=[
                    Item(
                        name="calexps",
                        kind="datasets",
                        dataset_types=["calexp"],
                        collections=["SynthCam/raw/all"],
                        expected={"dimensions": ["visit", "detector"], "datasets": "raw"},
                    )
                ],
            )
        ],
        people=[],
    )
    with opened(releases) as rel:
        (result,) = rel.check("images")
    assert result.status == "fail" and result.details
    assert json.loads(cli("release", "missing", "DP2", "--plans", releases, "--json").output)
    stored = releases / result.details
    stored.write_bytes(stored.read_bytes()[:-20])
    out = cli("release", "missing", "DP2", "--plans", releases)
    assert out.exit_code == 1 and (out.exception is None or isinstance(out.exception, SystemExit)), out.output
    text = " ".join(out.output.split())
    assert str(stored) in text and "run `porter release check` again" in text, out.output
