"""The ``porter`` command against a server URL wherever it takes a repository.

Each command runs as a user runs it — ``python -m porter.cli …`` in its own
process, token in ``$PORTER_TOKEN`` — against a real server on loopback, and
its effect is checked on the repository (through a local butler or the
remote one).  Writes keep the server's rules: a token without a grant is
refused with the server's message, and what cannot be done through a server
says so in one line, not a traceback.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import _pg_url, drop_schema
from porter import Butler
from porter.butler import DirectButler, RemoteButler
from porter.datastore import StorageClassRegistry, checksum_file
from porter.dimensions import Timespan
from porter.errors import ArtifactMissingError
from porter.server import Accounts
from serving import serving, small_repository, token

RUN = "HSC/runs/a"


@dataclass
class Site:
    """A served repository: its root, URL and tokens."""

    root: Path
    url: str
    admin: str
    alice: str
    bob: str

    def porter(self, *args: str | Path, who: str | None = None) -> subprocess.CompletedProcess[str]:
        """``porter ARGS`` in a process of its own, with ``who``'s token (default alice's)."""
        env = {**os.environ, "PORTER_TOKEN": who or self.alice, "COLUMNS": "300"}
        return subprocess.run(
            [sys.executable, "-m", "porter.cli", *map(str, args)], env=env, capture_output=True, text=True
        )

    def remote(self, who: str | None = None) -> RemoteButler:
        butler = Butler(self.url, token=who or self.admin)
        assert isinstance(butler, RemoteButler)
        return butler


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    schema = None
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
        schema = f"t_{uuid.uuid4().hex[:12]}"
    root = tmp_path_factory.mktemp(f"cli-{request.param}") / "repo"
    small_repository(root, registry=_pg_url() if schema else None, namespace=schema)
    try:
        with serving(root, path_prefix="/repo") as served:
            accounts = served.accounts
            for user in ("admin", "alice", "bob"):
                accounts.add_user(user, by="test")
            accounts.add_group("survey", by="test")
            accounts.add_member("survey", "alice", by="test")
            accounts.add_member("survey", "bob", by="test")
            accounts.grant("survey", "read", "HSC/*", by="test")
            accounts.grant("survey", "read", "u/*", by="test")
            accounts.grant("survey", "write", "u/alice/*", by="test")
            yield Site(
                root,
                served.url + "/repo",
                token(accounts, "admin", "read", "write", "admin"),
                token(accounts, "alice", "read", "write"),
                token(accounts, "bob", "read", "write"),
            )
    finally:
        if schema:
            drop_schema(_pg_url(), schema)


def _refused(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0, result.stdout
    assert text in result.stderr + result.stdout, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_export_and_import(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    made = site.porter("export", site.url, out, "-c", RUN, "-d", "summary", who=site.admin)
    assert made.returncode == 0, made.stderr
    assert RUN in out.read_text() and "summary" in out.read_text()
    again = site.porter("import", site.url, out, "--skip-dimensions", "visit", "--json", who=site.admin)
    assert again.returncode == 0, again.stderr
    assert isinstance(json.loads(again.stdout)[0], dict)
    _refused(site.porter("export", site.url, tmp_path / "x.yaml", "-c", RUN), "admin scope")
    _refused(site.porter("import", site.url, out), "admin scope")
    _refused(
        site.porter(
            "export", site.url, tmp_path / "y.yaml", "-c", RUN, "--directory", tmp_path, who=site.admin
        ),
        "transfer-datasets",
    )
    _refused(site.porter("import", site.url, out, "--directory", tmp_path, who=site.admin), "transfer_from")


def test_ingest_files_uploads_local_files(site: Site, tmp_path: Path) -> None:
    visits = [r.data_id["visit"] for r in site.remote().query_datasets("summary", RUN)]
    formatter = StorageClassRegistry.default().get("StructuredDataDict").formatter
    table = tmp_path / "files.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "visit"])
        for v in visits[:3]:
            path = tmp_path / f"summary_{v}.yaml"
            formatter.write({"visit": v, "from": "ingest-files"}, path)
            writer.writerow([path, v])
    run = f"u/alice/ingested-{uuid.uuid4().hex[:6]}"
    done = site.porter(
        "ingest-files", site.url, "summary", run, table, "--data-id", "instrument=HSC", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 3
    remote = site.remote(site.alice)
    refs = remote.query_datasets("summary", run)
    assert sorted(remote.get(r)["visit"] for r in refs) == sorted(visits[:3])
    _refused(
        site.porter("ingest-files", site.url, "summary", "HSC/runs/b", table, "--data-id", "instrument=HSC"),
        "may not write",
    )


def test_ingest_files_direct_registers_files_in_the_servers_area(site: Site, tmp_path: Path) -> None:
    visit = site.remote().query_datasets("summary", RUN)[0].data_id["visit"]
    local = tmp_path / "incoming.yaml"
    StorageClassRegistry.default().get("StructuredDataDict").formatter.write({"placed": "by hand"}, local)
    relative = f"incoming/{uuid.uuid4().hex[:8]}.yaml"
    direct = DirectButler(site.root)
    try:
        direct.datastore.root.join(relative).upload(local)
    finally:
        direct.close()
    table = tmp_path / "files.csv"
    table.write_text(f"file,visit\n{relative},{visit}\n")
    run = f"u/alice/direct-{uuid.uuid4().hex[:6]}"
    done = site.porter(
        "ingest-files", site.url, "summary", run, table, "--data-id", "instrument=HSC", "--transfer", "direct"
    )
    assert done.returncode == 0, done.stderr
    (ref,) = site.remote().query_datasets("summary", run)
    assert site.remote().get(ref) == {"placed": "by hand"}
    table.write_text(f"file,visit\n../../etc/passwd,{visit}\n")
    _refused(
        site.porter(
            "ingest-files",
            site.url,
            "summary",
            run,
            table,
            "--data-id",
            "instrument=HSC",
            "--transfer",
            "direct",
        ),
        "Refused path",
    )


def test_register_dataset_type_and_query_it(site: Site) -> None:
    name = f"note_{uuid.uuid4().hex[:6]}"
    made = site.porter("register-dataset-type", site.url, name, "StructuredDataDict", "instrument", "visit")
    assert made.returncode == 0 and f"Registered {name}" in made.stdout, made.stderr
    listed = site.porter("query-dataset-types", site.url, name, "--json", who=site.bob)
    assert [t["name"] for t in json.loads(listed.stdout)] == [name]


def test_retrieve_artifacts_keeps_the_layout_a_local_retrieve_has(site: Site, tmp_path: Path) -> None:
    got = site.porter(
        "retrieve-artifacts", site.url, tmp_path / "remote", "-d", "summary", "-c", RUN, who=site.bob
    )
    assert got.returncode == 0, got.stderr
    direct = DirectButler(site.root)
    try:
        local = direct.retrieve_artifacts(direct.query_datasets("summary", RUN), tmp_path / "local")
    finally:
        direct.close()
    assert len(local) == 4

    def files(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): checksum_file(p) for p in root.rglob("*") if p.is_file()}

    assert files(tmp_path / "remote") == files(tmp_path / "local")
    _refused(
        site.porter("retrieve-artifacts", site.url, tmp_path / "remote", "-d", "summary", "-c", RUN),
        "already exist",
    )
    clobbered = site.porter(
        "retrieve-artifacts", site.url, tmp_path / "remote", "-d", "summary", "-c", RUN, "--clobber"
    )
    assert clobbered.returncode == 0, clobbered.stderr
    _refused(
        site.porter(
            "retrieve-artifacts", site.url, tmp_path / "s", "-d", "summary", "-c", RUN, "-t", "symlink"
        ),
        "only be copied",
    )


def test_transfer_datasets_from_and_to_a_server(site: Site, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    Butler.create(mine).close()
    down = site.porter("transfer-datasets", site.url, mine, "-d", "summary", "-c", RUN, who=site.bob)
    assert down.returncode == 0, down.stderr
    local = DirectButler(mine, writeable=True)
    run = f"u/alice/up-{uuid.uuid4().hex[:6]}"
    try:
        refs = local.query_datasets("summary", RUN)
        assert len(refs) == 4 and local.fsck(checksums=True).clean
        new = local.put(
            {"made": "here"}, "summary", instrument="HSC", visit=refs[0].data_id["visit"], run=run
        )
    finally:
        local.close()
    up = site.porter("transfer-datasets", mine, site.url, "-d", "summary", "-c", run)
    assert up.returncode == 0, up.stderr
    assert site.remote().get(new) == {"made": "here"}
    _refused(site.porter("transfer-datasets", mine, site.url, "-d", "summary", "-c", RUN), "may not write")


def test_prune_datasets_through_the_server(site: Site) -> None:
    alice = site.remote(site.alice)
    visits = [r.data_id["visit"] for r in alice.query_datasets("summary", RUN)]
    run = f"u/alice/prune-{uuid.uuid4().hex[:6]}"
    refs = [alice.put({"v": v}, "summary", instrument="HSC", visit=v, run=run) for v in visits[:3]]
    _refused(site.porter("prune-datasets", site.url, RUN, "--purge", RUN, "--no-confirm"), "may not write")
    unstored = site.porter(
        "prune-datasets", site.url, run, "--unstore", "--where", f"visit = {visits[0]}", "--no-confirm"
    )
    assert unstored.returncode == 0 and "Pruned 1 dataset(s)" in unstored.stdout, unstored.stderr
    assert alice.get_dataset(refs[0].id) is not None
    with pytest.raises(ArtifactMissingError):
        alice.get(refs[0])
    purged = site.porter("prune-datasets", site.url, run, "--purge", run, "--no-confirm")
    assert purged.returncode == 0 and "Pruned 3 dataset(s)" in purged.stdout, purged.stderr
    assert alice.query_datasets("summary", run, explain=False) == []
    direct = DirectButler(site.root)
    try:
        assert direct.fsck(checksums=True).clean
    finally:
        direct.close()


def test_a_retried_prune_with_its_key_is_answered_not_repeated(site: Site) -> None:
    alice = site.remote(site.alice)
    visit = alice.query_datasets("summary", RUN)[0].data_id["visit"]
    ref = alice.put(
        {"v": 1}, "summary", instrument="HSC", visit=visit, run=f"u/alice/p-{uuid.uuid4().hex[:6]}"
    )
    headers = {"Authorization": f"Bearer {site.alice}", "Idempotency-Key": uuid.uuid4().hex}
    body = {"dataset_ids": [ref.id_hex], "purge": True, "unstore": True}
    first = httpx.post(f"{site.url}/api/v1/prune-datasets", json=body, headers=headers)
    retry = httpx.post(f"{site.url}/api/v1/prune-datasets", json=body, headers=headers)
    assert first.status_code == retry.status_code == 200 and first.json() == retry.json() == {"pruned": 1}
    fresh = {**headers, "Idempotency-Key": uuid.uuid4().hex}  # a new request: the dataset is gone
    assert httpx.post(f"{site.url}/api/v1/prune-datasets", json=body, headers=fresh).status_code == 404
    direct = DirectButler(site.root)
    try:
        logged = Accounts(direct.registry.db).audit_log(action="prune_datasets", limit=1000)
    finally:
        direct.close()
    assert [e.actor for e in logged if ref.run in e.target] == ["alice"]  # done once, in the log once


def test_certify_calibrations_through_the_server(site: Site) -> None:
    alice = site.remote(site.alice)
    tag = uuid.uuid4().hex[:6]
    name = f"calib_{tag}"
    alice.register_dataset_type(name, ["instrument"], "StructuredDataDict", is_calibration=True)
    run, calib = f"u/alice/calib-run-{tag}", f"u/alice/calib-{tag}"
    ref = alice.put({"calib": tag}, name, instrument="HSC", run=run)
    done = site.porter(
        "certify-calibrations",
        site.url,
        run,
        calib,
        name,
        "--begin-date",
        "2013-01-01",
        "--end-date",
        "2014-01-01",
    )
    assert done.returncode == 0 and "Certified 1" in done.stdout, done.stderr
    assert alice.collections.get_info(calib).type.name == "CALIBRATION"
    inside = Timespan("2013-06-01T00:00:00", "2013-06-02T00:00:00")
    found = alice.find_dataset(name, instrument="HSC", collections=[calib], timespan=inside)
    assert found is not None and found.id == ref.id
    _refused(site.porter("certify-calibrations", site.url, run, "HSC/calib", name), "may not write")


def test_provenance_through_the_server_hides_unreadable_inputs(survey: tuple[Butler, Any]) -> None:
    from conftest import DRP_YAML, SURVEY_INPUTS
    from test_cli import run as porter_here

    butler, _ = survey
    root = butler.root  # type: ignore[attr-defined]
    made = "u/cli/drp"
    porter_here(
        "pipeline",
        "run",
        root,
        f"{DRP_YAML}#step1",
        "-i",
        ",".join(SURVEY_INPUTS),
        "--output-run",
        made,
        "-d",
        "band = 'g'",
    )
    calexp = butler.query_datasets("calexp", made)[0]
    local = json.loads(porter_here("provenance", root, str(calexp.id), "--json"))
    with serving(root) as served:
        accounts = served.accounts
        for user in ("ann", "ben"):
            accounts.add_user(user, by="test")
            accounts.add_group(user, by="test")
            accounts.add_member(user, user, by="test")
        accounts.grant("ann", "read", "*", by="test")
        accounts.grant("ben", "read", "u/cli/*", by="test")  # not the reference catalogs of SynthCam/truth
        site = Site(root, served.url, "", token(accounts, "ann", "read"), token(accounts, "ben", "read"))
        everything = site.porter("provenance", site.url, calexp.id, "--json")
        assert everything.returncode == 0, everything.stderr
        assert json.loads(everything.stdout) == json.loads(json.dumps(local, default=str))
        partial = json.loads(site.porter("provenance", site.url, calexp.id, "--json", who=site.bob).stdout)
        assert partial["made_by"]["task"] == "calibrate"
        assert [i["dataset_type"] for i in partial["inputs"]] == ["postISRCCD"]  # ref_cat's run is unreadable
        assert "SynthCam/truth" not in json.dumps(partial)
        _refused(site.porter("provenance", site.url, "--run", made, "--export", root / "p.json"), "--export")


@pytest.mark.parametrize(
    "command",
    [
        ["fsck", "{url}"],
        ["create", "{url}"],
        ["serve", "{url}"],
        ["admin", "user", "add", "{url}", "someone"],
        ["pipeline", "report", "{url}", "u/x"],
        ["release", "status", "DP1", "--repo", "{url}"],
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_local_only_commands_say_so(site: Site, command: list[str]) -> None:
    _refused(site.porter(*(c.format(url=site.url) for c in command)), "works on a local repository")
