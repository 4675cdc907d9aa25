"""Imports that fail change nothing, and export files cannot reach outside their directory (issue 14).

The export is daf_butler's own: base.yaml and datasets.yaml from
``shared/data/butler-exports`` joined into one file, with a TAGGED, a
CALIBRATION and a CHAINED collection added and each dataset given its own
file below the export's directory (``--directory``).  Each test breaks one
thing — a record, a dataset type, a collection, a dataset, an association,
one of the files — and asserts the import is refused with a porter error
naming what was wrong, that every table of the registry holds exactly the
rows it held before (`fingerprint`), and that the repository's file tree is
unchanged.  The unbroken export then still imports: nothing half-written is
in the way.  Both backends run (the ``backend`` fixture).
"""

from __future__ import annotations

import datetime
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import RepoFactory
from peer import EXPORTS
from porter import Butler
from porter.butler._file_transfers import confined_source
from porter.datastore import ResourceURI
from porter.errors import ArtifactMissingError, ExportFormatError, PorterError
from test_query_fuzz import fingerprint

EXTRA = """\
  - type: collection
    collection_type: TAGGED
    name: tagged
  - type: collection
    collection_type: CALIBRATION
    name: calib
  - type: collection
    collection_type: CHAINED
    name: chain
    children: [calib, tagged, imported_g]
  - type: associations
    collection: tagged
    collection_type: TAGGED
    dataset_ids:
      - !uuid e15ab039-bc8b-4135-87c5-90902a7c0b22
  - type: associations
    collection: calib
    collection_type: CALIBRATION
    validity_ranges:
      - begin: 2020-01-01T00:00:00
        end: 2021-01-01T00:00:00
        dataset_ids:
          - !uuid e15ab039-bc8b-4135-87c5-90902a7c0b22
      - begin: 2021-01-01T00:00:00
        end: 2022-01-01T00:00:00
        dataset_ids:
          - !uuid 51352db4-a47a-447c-b12d-a50b206b17cd
"""

BIAS_1 = "e15ab039-bc8b-4135-87c5-90902a7c0b22"
"""The first bias of datasets.yaml (detector 1, run imported_g)."""


def base_text() -> str:
    """base.yaml with storage class ``Bytes`` for its dataset types (porter has no ``Exposure``)."""
    return (EXPORTS / "base.yaml").read_text().replace("storage_class: Exposure", "storage_class: Bytes")


def export_text() -> str:
    """base.yaml + datasets.yaml (+ collections and associations), each dataset with its own file.

    The storage class becomes ``Bytes`` (porter has no ``Exposure``); the
    files are small byte strings, which is all a copy needs.
    """
    base = base_text()
    datasets = (EXPORTS / "datasets.yaml").read_text()
    entries = datasets[datasets.index("data:\n") + len("data:\n") :]
    count = iter(range(1000))
    entries = re.sub(r"path: placeholder", lambda _: f"path: files/d{next(count):02d}.dat", entries)
    return base.rstrip("\n") + "\n" + entries.rstrip("\n") + "\n" + EXTRA


def write_export(directory: Path, text: str | None = None) -> Path:
    """The export file and the files it names in ``directory``; returns the directory."""
    text = export_text() if text is None else text
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "export.yaml").write_text(text)
    (directory / "files").mkdir(exist_ok=True)
    for name in set(re.findall(r"path: files/(d\d\d\.dat)", text)):
        (directory / "files" / name).write_bytes(f"contents of {name}\n".encode())
    return directory


def tree(root: Path) -> dict[str, int | None]:
    """Every file (size) and directory (None) below ``root``, the database's own files left out.

    The database is compared table by table (`fingerprint`); SQLite's file
    sizes change with a rolled-back transaction too.
    """
    out: dict[str, int | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("registry.sqlite3"):
            continue
        out[rel] = None if path.is_dir() and not path.is_symlink() else path.lstat().st_size
    return out


def state(butler: Butler) -> tuple[dict[str, str], dict[str, int | None]]:
    """What an import that fails must leave exactly as it was: every table's rows, every file."""
    return fingerprint(butler), tree(Path(butler.root))


@pytest.fixture
def repo_with(make_repo: RepoFactory, backend: str) -> Callable[[], Butler]:
    """A function giving a new empty repository on the test's backend."""
    count = iter(range(1000))
    return lambda: make_repo(f"repo{next(count)}")


def refused(butler: Butler, directory: Path, error: type[Exception], match: str) -> None:
    """Import ``directory`` into ``butler``: refused with ``error`` matching ``match``, nothing changed."""
    before = state(butler)
    with pytest.raises(error, match=match) as info:
        butler.import_(directory=str(directory), transfer="copy")
    assert isinstance(info.value, PorterError), f"not a porter error: {info.value!r}"
    assert state(butler) == before


def test_the_export_imports(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """The unbroken export imports everything, with its files (the baseline of every other test)."""
    butler = repo_with()
    out = write_export(tmp_path / "export")
    counts = butler.import_(directory=str(out), transfer="copy")
    assert counts["files"] == 13 and counts["datasets"] == 13
    ref = butler.get_dataset(BIAS_1)
    assert ref is not None
    assert butler.get(ref) == b"contents of d00.dat\n"
    assert len(butler.query_datasets("bias", "calib", find_first=False, explain=False)) == 2
    assert butler.fsck(checksums=True).ok


# --- failing at every stage ---------------------------------------------------------------------------


def _break_record(text: str, out: Path) -> str:
    return text.replace("    id: 4\n", "    id: four\n", 1)


def _break_dataset_type(text: str, out: Path) -> str:
    # flat (the first dataset type) as the repository does not define it: refused when written.
    return text.replace("storage_class: Bytes", "storage_class: ArrowTable", 1)


def _break_collection_against_repo(butler: Butler) -> None:
    butler.registry.collections.register("calib", "TAGGED")


def _break_dataset(text: str, out: Path) -> str:
    # A data ID naming a detector that exists neither in the file nor the repository.
    old = "          detector: 1\n        path: files/d00.dat"
    assert old in text
    return text.replace(old, "          detector: 9\n        path: files/d00.dat")


def _break_association(text: str, out: Path) -> str:
    return text.replace(
        "          - !uuid 51352db4-a47a-447c-b12d-a50b206b17cd\n",
        "          - !uuid 00000000-0000-4000-8000-000000000000\n",
    )


def _break_chain(text: str, out: Path) -> str:
    return text.replace("children: [calib, tagged, imported_g]", "children: [calib, tagged, nowhere]")


def _directory_file(text: str, out: Path) -> str:
    (out / "files" / "d07.dat").unlink()
    (out / "files" / "d07.dat").mkdir()
    return text


def _missing_file(text: str, out: Path) -> str:
    (out / "files" / "d12.dat").unlink()
    return text


def _fifo_file(text: str, out: Path) -> str:
    (out / "files" / "d03.dat").unlink()
    os.mkfifo(out / "files" / "d03.dat")
    return text


def _unreadable_file(text: str, out: Path) -> str:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    (out / "files" / "d09.dat").chmod(0)
    return text


def _dangling_link(text: str, out: Path) -> str:
    (out / "files" / "d10.dat").unlink()
    (out / "files" / "d10.dat").symlink_to(out / "files" / "gone.dat")
    return text


STAGES: dict[str, tuple[Callable[[str, Path], str] | None, Callable[[Butler], None] | None, type, str]] = {
    "record": (_break_record, None, ExportFormatError, r"detector"),
    "dataset type": (_break_dataset_type, None, PorterError, r"flat"),
    "collection": (None, _break_collection_against_repo, PorterError, r"calib"),
    "dataset": (_break_dataset, None, PorterError, r"detector"),
    "association": (_break_association, None, PorterError, r"00000000-0000-4000-8000-000000000000"),
    "chain": (_break_chain, None, PorterError, r"nowhere"),
    "file is a directory": (_directory_file, None, ExportFormatError, r"files/d07\.dat.* is a directory"),
    "file missing": (_missing_file, None, ArtifactMissingError, r"files/d12\.dat"),
    "file is a FIFO": (_fifo_file, None, ExportFormatError, r"files/d03\.dat.* not a regular file"),
    "file unreadable": (_unreadable_file, None, ExportFormatError, r"files/d09\.dat.* cannot be read"),
    "dangling symlink": (_dangling_link, None, ArtifactMissingError, r"files/d10\.dat"),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_failing_import_changes_nothing(
    stage: str, repo_with: Callable[[], Butler], tmp_path: Path
) -> None:
    """Refused at any stage, an import leaves every table and the file tree as they were; then it works."""
    edit_text, edit_repo, error, match = STAGES[stage]
    butler = repo_with()
    butler.import_(io.StringIO(base_text()))  # something already there, which must survive untouched
    butler.registry.collections.register("unrelated", "RUN")
    if edit_repo is not None:
        edit_repo(butler)
    out = tmp_path / "export"
    text = export_text()
    write_export(out, text)
    if edit_text is not None:
        (out / "export.yaml").write_text(edit_text(text, out))
    refused(butler, out, error, match)
    if edit_repo is None:
        # Nothing half-written is in the way: the unbroken export imports into the same repository.
        write_export(tmp_path / "fixed", text)
        assert butler.import_(directory=str(tmp_path / "fixed"), transfer="copy")["files"] == 13


# --- confinement: every path stays inside the export's directory ----------------------------------------


def _with_path(text: str, old: str, new: str) -> str:
    assert f"path: {old}\n" in text
    return text.replace(f"path: {old}\n", f"path: {new}\n", 1)


def test_absolute_path_is_refused(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """``/etc/hostname`` in an export is never copied into the repository."""
    butler = repo_with()
    out = write_export(tmp_path / "export")
    (out / "export.yaml").write_text(_with_path(export_text(), "files/d04.dat", "/etc/hostname"))
    refused(butler, out, ExportFormatError, r"flat .*detector.*'/etc/hostname'.* relative to the export's")


def test_uri_path_is_refused(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    butler = repo_with()
    out = write_export(tmp_path / "export")
    (out / "export.yaml").write_text(_with_path(export_text(), "files/d04.dat", "file:///etc/hostname"))
    refused(butler, out, ExportFormatError, r"absolute path 'file:///etc/hostname'")


@pytest.mark.parametrize("path", ["../outside.dat", "files/../../outside.dat", "files/..\\..\\outside.dat"])
def test_dotdot_path_is_refused(path: str, repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    butler = repo_with()
    out = write_export(tmp_path / "export")
    (tmp_path / "outside.dat").write_bytes(b"secret")
    (out / "export.yaml").write_text(_with_path(export_text(), "files/d00.dat", path))
    refused(butler, out, ExportFormatError, r"bias \{'instrument': 'Cam1', 'detector': 1\}.*'\.\.'")


def test_symlink_out_of_the_directory_is_refused(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """A link inside the directory to a file outside it is followed nowhere."""
    butler = repo_with()
    out = write_export(tmp_path / "export")
    (tmp_path / "secret.dat").write_bytes(b"secret")
    (out / "files" / "d02.dat").unlink()
    (out / "files" / "d02.dat").symlink_to(tmp_path / "secret.dat")
    refused(butler, out, ExportFormatError, r"'files/d02\.dat', a symbolic link .* outside")


def test_symlinked_directory_out_of_the_directory_is_refused(
    repo_with: Callable[[], Butler], tmp_path: Path
) -> None:
    butler = repo_with()
    out = write_export(tmp_path / "export")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "d01.dat").write_bytes(b"secret")
    (out / "linked").symlink_to(elsewhere)
    (out / "export.yaml").write_text(_with_path(export_text(), "files/d01.dat", "linked/d01.dat"))
    refused(butler, out, ExportFormatError, r"'linked/d01\.dat', a symbolic link .* outside")


def test_symlink_inside_the_directory_is_followed(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """A link that stays inside the directory is an ordinary file of the export."""
    butler = repo_with()
    out = write_export(tmp_path / "export")
    (out / "files" / "d02.dat").rename(out / "real.dat")
    (out / "files" / "d02.dat").symlink_to(out / "real.dat")
    assert butler.import_(directory=str(out), transfer="copy")["files"] == 13


def test_one_file_for_two_datasets_is_refused(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """Two entries naming one file: one dataset would read the other's content."""
    butler = repo_with()
    out = write_export(tmp_path / "export")
    (out / "export.yaml").write_text(_with_path(export_text(), "files/d01.dat", "files/d00.dat"))
    refused(butler, out, ExportFormatError, r"'files/d00\.dat' for dataset bias .* and again.* one entry")


SHARED = re.compile(
    r"      -\n        dataset_id: (!uuid \S+)\n        data_id:\n          instrument: Cam1\n"
    r"          detector: 1\n        path: files/d00.dat\n"
    r"      -\n        dataset_id: (!uuid \S+)\n        data_id:\n          instrument: Cam1\n"
    r"          detector: 2\n        path: files/d01.dat\n"
)


def shared_file_text() -> str:
    """The export with biases 1 and 2 of imported_g in one entry, sharing ``files/d00.dat``."""
    text, n = SHARED.subn(
        r"      -\n        dataset_id: [\1, \2]\n        data_id:\n"
        r"          - {instrument: Cam1, detector: 1}\n          - {instrument: Cam1, detector: 2}\n"
        r"        path: files/d00.dat\n",
        export_text(),
    )
    assert n == 1
    return text


def test_datasets_listed_in_one_entry_share_a_file(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """daf_butler's form for a file holding several datasets (lists of IDs and data IDs) is accepted."""
    butler = repo_with()
    out = write_export(tmp_path / "export", shared_file_text())
    assert butler.import_(directory=str(out), transfer="copy")["files"] == 12
    refs = butler.query_datasets(
        "bias", "imported_g", where="instrument = 'Cam1' AND detector IN (1, 2)", explain=False
    )
    assert [butler.get(r) for r in refs] == [b"contents of d00.dat\n"] * 2


def test_porter_export_of_a_shared_file_imports(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """porter writes datasets that share a file as one entry, so its own exports import again."""
    butler = repo_with()
    butler.import_(directory=str(write_export(tmp_path / "export", shared_file_text())), transfer="copy")
    again = tmp_path / "again"
    butler.export(directory=str(again), collections=["imported_g", "imported_r"], transfer="copy")
    target = repo_with()
    assert target.import_(directory=str(again), transfer="copy")["files"] == 12
    refs = target.query_datasets(
        "bias", "imported_g", where="instrument = 'Cam1' AND detector IN (1, 2)", explain=False
    )
    assert [target.get(r) for r in refs] == [b"contents of d00.dat\n"] * 2


# --- hypothesis: no path string escapes the directory ----------------------------------------------------

SEGMENTS = st.sampled_from(["..", ".", "", "a", "b.dat", "link", "dirlink", "~", "\\..", "..\\", "/", "a\\b"])


@given(
    parts=st.lists(st.one_of(SEGMENTS, st.text(min_size=1, max_size=6)), min_size=1, max_size=6),
    lead=st.sampled_from(["", "/", "./", "file://", "s3://bucket/", "C:"]),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_path_escapes_the_directory(tmp_path: Path, parts: list[str], lead: str) -> None:
    """Whatever string an export names, the file read is inside the export's directory, or it is refused."""
    root = tmp_path / "export"
    if not root.exists():
        root.mkdir()
        (root / "a").mkdir()
        (tmp_path / "outside").mkdir()
        (tmp_path / "outside" / "b.dat").write_bytes(b"secret")
        (root / "link").symlink_to(tmp_path / "outside" / "b.dat")
        (root / "dirlink").symlink_to(tmp_path / "outside")
    path = lead + "/".join(parts)
    try:
        source = confined_source(ResourceURI.from_string(str(root)), path, "dataset x", root)
    except ExportFormatError as exc:
        assert repr(path)[:20].strip("'\"") in str(exc) or "names no file" in str(exc)
        return
    real = os.path.realpath(source.ospath)
    assert os.path.commonpath([os.path.realpath(root), real]) == os.path.realpath(root)


# --- bad values: porter errors naming the entry, never tracebacks ---------------------------------------

SPATIAL = (EXPORTS / "spatial.yaml").read_text()
_FIRST = re.search(r"encoded: ([0-9a-f]+)", SPATIAL)
assert _FIRST is not None
REGION_LINE, REGION_HEX = _FIRST.group(0), _FIRST.group(1)
"""The first region of spatial.yaml (visit 1's): its ``encoded:`` line, and the hex alone."""


def _nan_vertex(hex_region: str) -> str:
    """The region with its first vertex's x replaced by NaN (little-endian double)."""
    return hex_region[:2] + "000000000000f87f" + hex_region[18:]


def _clockwise(hex_region: str) -> str:
    """The region's vertices in reverse order: a clockwise outline (the complement of the intended one)."""
    body = hex_region[2:]
    vertices = [body[i : i + 48] for i in range(0, len(body), 48)]
    return hex_region[:2] + "".join(reversed(vertices))


BAD_VALUES = {
    "universe_version a string": (
        "base.yaml",
        lambda t: t.replace("universe_version: 6", "universe_version: six"),
        r"universe_version 'six'.* integer",
    ),
    "record id beyond 64 bits": (
        "base.yaml",
        lambda t: t.replace("    id: 4\n", f"    id: {2**64}\n"),
        r"data\[2\] \(dimension detector\): records\[3\]\.id: .* 64 bits",
    ),
    "time beyond 2262": (
        "spatial.yaml",
        lambda t: t.replace("'2021-09-09 03:01:00.000000000'", "'9999-12-31 23:59:59.000000000'", 1),
        r"data\[1\] \(dimension visit\): records\[0\]\.datetime_end: .*outside the times porter stores",
    ),
    "time beyond year 9999": (
        "spatial.yaml",
        lambda t: t.replace("'2021-09-09 03:01:00.000000000'", "'10000-01-01 00:00:00.000000000'", 1),
        r"10000-01-01",
    ),
    "region an integer": (
        "spatial.yaml",
        lambda t: t.replace(REGION_LINE, "encoded: 12345", 1),
        r"region tag .*'encoded' hex string\n.*line 27",
    ),
    "region with a NaN vertex": (
        "spatial.yaml",
        lambda t: t.replace(REGION_HEX, _nan_vertex(REGION_HEX), 1),
        r"visit record \{'instrument': 'Cam1', 'id': 1\}.* invalid region \(a vertex is not finite",
    ),
    "region clockwise": (
        "spatial.yaml",
        lambda t: t.replace(REGION_HEX, _clockwise(REGION_HEX), 1),
        r"visit record \{'instrument': 'Cam1', 'id': 1\}.* not a convex polygon in counter-clockwise",
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_porter_errors(case: str, repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """Each value the hostile tester found gives an ExportFormatError naming its entry; nothing changes."""
    name, edit, match = BAD_VALUES[case]
    butler = repo_with()
    if name != "base.yaml":
        butler.import_(EXPORTS / "base.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(edit((EXPORTS / name).read_text()))
    before = state(butler)
    with pytest.raises(ExportFormatError, match=match):
        butler.import_(bad)
    assert state(butler) == before


@pytest.mark.parametrize("damage", [_nan_vertex, _clockwise])
def test_bad_regions_are_refused_by_the_registry(
    damage: Callable[[str], str], repo_with: Callable[[], Butler]
) -> None:
    """Inserting records through the registry validates regions as import does, naming the record."""
    from porter.errors import DataIdError

    butler = repo_with()
    butler.import_(EXPORTS / "base.yaml")
    butler.import_(EXPORTS / "spatial.yaml")
    record = butler.registry.query_dimension_records("visit", instrument="Cam1", visit=1)[0].to_dict()
    record.update(id=77, name="77", region=bytes.fromhex(damage(record["region"].encode().hex())))
    before = state(butler)
    with pytest.raises(
        DataIdError, match=r"visit record \{'instrument': 'Cam1', 'id': 77\}.* invalid region"
    ):
        butler.registry.insert_dimension_records("visit", [record])
    assert state(butler) == before
    # The undamaged region is accepted: real regions pass the checks.
    record["region"] = butler.registry.query_dimension_records("visit", instrument="Cam1", visit=1)[0].region
    butler.registry.insert_dimension_records("visit", [record])


# --- calibration validity ranges -----------------------------------------------------------------------


def test_overlapping_validity_ranges_are_refused_on_import(
    repo_with: Callable[[], Butler], tmp_path: Path
) -> None:
    """Two biases of one detector valid at once in one CALIBRATION collection: a look-up would have two answers."""
    butler = repo_with()
    text = export_text().replace(
        "      - begin: 2021-01-01T00:00:00\n        end: 2022-01-01T00:00:00\n        dataset_ids:\n"
        "          - !uuid 51352db4-a47a-447c-b12d-a50b206b17cd",
        "      - begin: 2020-06-01T00:00:00\n        end: 2022-01-01T00:00:00\n        dataset_ids:\n"
        f"          - !uuid {BIAS_1}",
    )
    out = write_export(tmp_path / "export", text)
    refused(
        butler, out, PorterError, r"bias dataset for \{'instrument': 'Cam1', 'detector': 1\}.* overlapping"
    )


def test_overlapping_validity_ranges_are_refused_by_certify(
    repo_with: Callable[[], Butler], tmp_path: Path
) -> None:
    from porter.dimensions import Timespan
    from porter.errors import ConflictingDefinitionError

    butler = repo_with()
    butler.import_(directory=str(write_export(tmp_path / "export")), transfer="copy")
    other = butler.query_datasets("bias", "imported_r", where="instrument = 'Cam1' AND detector = 2")[0]
    calib = butler.query_datasets("bias", "calib", where="instrument = 'Cam1' AND detector = 2")[0]
    assert other.id != calib.id
    before = state(butler)
    inside = Timespan(datetime.datetime(2021, 6, 1), datetime.datetime(2023, 1, 1))
    with pytest.raises(ConflictingDefinitionError, match=r"'detector': 2\}.* already certified in 'calib'"):
        butler.registry.certify("calib", [other], inside)
    assert state(butler) == before
    butler.registry.certify(
        "calib", [other], Timespan(datetime.datetime(2022, 1, 1), datetime.datetime(2023, 1, 1))
    )


# --- names --------------------------------------------------------------------------------------------

BAD_NAMES = {
    "collection with NUL": ("name: tagged\n", 'name: "tag\\0ged"\n', r"NUL character"),
    "collection with escape": ("name: tagged\n", 'name: "tag\\x1bged"\n', r"control character"),
    "collection too long": ("name: tagged\n", f"name: {'t' * 65}\n", r"65 characters.* at most 64"),
    "run too long": ("name: imported_g\n", f"name: {'g' * 65}\n", r"65 characters.* at most 64"),
    "dataset type characters": ("name: flat\n", "name: fl-at\n", r"Invalid dataset type name 'fl-at'"),
    "dataset type too long": ("name: flat\n", f"name: {'f' * 129}\n", r"129 characters.* at most 128"),
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_bad_names_are_refused_on_import(case: str, repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    old, new, match = BAD_NAMES[case]
    butler = repo_with()
    text = export_text()
    assert old in text
    out = write_export(tmp_path / "export", text.replace(old, new, 1))
    refused(butler, out, ExportFormatError, r"Bad export file at data\[\d+\] .*" + match)


def test_bad_names_are_refused_by_the_registry(repo_with: Callable[[], Butler]) -> None:
    """The same rules where collections and dataset types are made directly; the limits themselves pass."""
    from porter.errors import ConflictingDefinitionError, DatasetTypeError

    butler = repo_with()
    butler.import_(io.StringIO(base_text()))
    before = state(butler)
    for name in ["tag\x00ged", "line\nbreak", "t" * 65, "", " padded"]:
        with pytest.raises(ConflictingDefinitionError, match="Invalid collection name"):
            butler.registry.collections.register(name, "TAGGED")
    for name in ["fl-at", "flat\n", "f" * 129, "1flat"]:
        with pytest.raises(DatasetTypeError, match="Invalid dataset type name"):
            butler.register_dataset_type(name, ["instrument"], "Bytes")
    assert state(butler) == before
    butler.registry.collections.register("t" * 64, "TAGGED")
    butler.register_dataset_type("f" * 128, ["instrument"], "Bytes")


def test_a_failure_after_copying_removes_the_copies(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """A file already at one dataset's place stops the import while copying: the files copied go again.

    Everything before the copy passes (the rehearsal cannot see a stray file
    in the datastore), so this is the failure after files are in place: the
    copies, their journal entries and the directories made for them are
    removed, and the stray file, which is not the import's, stays.
    """
    out = write_export(tmp_path / "export")
    scratch = repo_with()
    scratch.import_(directory=str(out), transfer="copy")
    ref = scratch.get_dataset(BIAS_1)
    assert ref is not None
    stray_path = scratch.datastore.locations([ref.id])[ref.id].path
    butler = repo_with()
    butler.import_(io.StringIO(base_text()))
    stray = Path(butler.datastore.uri_of(stray_path).ospath)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not the import's")
    before = state(butler)
    with pytest.raises(PorterError, match="already exists"):
        butler.import_(directory=str(out), transfer="copy")
    assert state(butler) == before
    assert stray.read_bytes() == b"not the import's"


VERTEX = st.one_of(
    st.floats(min_value=-1.0, max_value=1.0, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, 1.0, -1.0]),
)


@given(vertices=st.lists(st.tuples(VERTEX, VERTEX, VERTEX), min_size=0, max_size=8), normalize=st.booleans())
@settings(max_examples=300, deadline=None)
def test_an_accepted_polygon_never_covers_the_sky(
    vertices: list[tuple[float, float, float]], normalize: bool
) -> None:
    """Whatever doubles a polygon's encoding holds, porter refuses it or indexes a part of the sky.

    A convex polygon lies within a hemisphere, so its pixel envelope is at
    most about half the pixels; the NaN polygon of issue 14 had all of them.
    """
    import math
    import struct

    from porter.registry._spatial_index import InvalidRegionError, envelopes

    if normalize:
        vertices = [
            (x / n, y / n, z / n)
            if (n := math.sqrt(x * x + y * y + z * z)) > 0 and math.isfinite(n)
            else (x, y, z)
            for x, y, z in vertices
        ]
    encoded = b"p" + b"".join(struct.pack("<3d", *v) for v in vertices)
    try:
        (chunk,) = list(envelopes("htm", 7, [encoded]))
    except InvalidRegionError as exc:
        assert exc.reason
        event("refused")
        return
    event("accepted")
    assert 0 < len(chunk.pixels) < 0.6 * 8 * 4**7


@given(
    lon=st.floats(0, 6.28),
    lat=st.floats(-1.5, 1.5),
    radius=st.floats(1e-4, 1.4),
    n=st.integers(3, 8),
    jitter=st.lists(st.floats(-0.4, 0.4), min_size=8, max_size=8),
    damage=st.sampled_from(["none", "nan", "inf", "reversed"]),
)
@settings(max_examples=300, deadline=None)
def test_real_polygons_pass_and_damaged_ones_do_not(
    lon: float, lat: float, radius: float, n: int, jitter: list[float], damage: str
) -> None:
    """Counter-clockwise polygons around a point pass, at any size; a NaN, infinity or reversal is refused."""
    import math

    import lsst.sphgeom

    from porter.registry._spatial_index import InvalidRegionError, envelopes

    center = lsst.sphgeom.UnitVector3d(lsst.sphgeom.LonLat.fromRadians(lon, lat))
    north = lsst.sphgeom.UnitVector3d.northFrom(center)
    east = lsst.sphgeom.UnitVector3d(north.cross(center))
    c, e, u = ((v.x(), v.y(), v.z()) for v in (center, east, north))
    points = []
    for k in range(n):
        a = 2 * math.pi * (k + jitter[k]) / n  # vertices in order around the centre, never crossing
        points.append(
            lsst.sphgeom.UnitVector3d(
                *(
                    math.cos(radius) * ci + math.sin(radius) * (math.cos(a) * ei + math.sin(a) * ui)
                    for ci, ei, ui in zip(c, e, u)
                )
            )
        )
    encoded = bytearray(lsst.sphgeom.ConvexPolygon(points).encode())
    if damage == "nan":
        encoded[9:17] = b"\x00\x00\x00\x00\x00\x00\xf8\x7f"
    elif damage == "inf":
        encoded[1:9] = b"\x00\x00\x00\x00\x00\x00\xf0\x7f"
    elif damage == "reversed":
        body = bytes(encoded[1:])
        encoded[1:] = b"".join(reversed([body[i : i + 24] for i in range(0, len(body), 24)]))
    event(damage)
    try:
        (chunk,) = list(envelopes("htm", 7, [bytes(encoded)]))
    except InvalidRegionError:
        assert damage != "none", "an undamaged polygon was refused"
        return
    assert damage == "none", f"a {damage} polygon was accepted"
    assert 0 < len(chunk.pixels) < 0.6 * 8 * 4**7


@pytest.mark.parametrize(
    ("element", "record", "match"),
    [
        (
            "detector",
            {"id": 2**64},
            r"detector record \{'instrument': 'Cam1', 'id': 18446744073709551616\}.* 64 bits",
        ),
        ("detector", {"id": 5, "full_name": "x\x00y"}, r"'id': 5\}: full_name = 'x\\x00y' contains a NUL"),
        (
            "day_obs",
            {"id": 20210101, "datetime_begin": datetime.datetime(9999, 1, 1)},
            r"day_obs record \{'instrument': 'Cam1', 'id': 20210101\}: its timespan is outside the times",
        ),
    ],
)
def test_unstorable_values_are_refused_by_the_registry(
    element: str, record: dict[str, object], match: str, repo_with: Callable[[], Butler]
) -> None:
    """Inserting records directly: a porter error naming the record, not the driver's OverflowError or DataError."""
    from porter.errors import DataIdError

    butler = repo_with()
    butler.import_(io.StringIO(base_text()))
    full: dict[str, object] = {"instrument": "Cam1"}
    if element == "detector":
        full.update(full_name="Zz", raft="Z", name_in_raft="z", purpose="SCIENCE")
    else:
        full.update(datetime_end=datetime.datetime(9999, 12, 31))
    full.update(record)
    before = state(butler)
    with pytest.raises(DataIdError, match=match):
        butler.registry.insert_dimension_records(element, [full])
    assert state(butler) == before


def test_progress_is_reported_once(repo_with: Callable[[], Butler], tmp_path: Path) -> None:
    """The rehearsal is silent: an import with files reports the same steps as one without."""
    out = write_export(tmp_path / "export")
    calls: dict[str, list[tuple[str, int]]] = {"files": [], "registry": []}
    repo_with().import_(
        directory=str(out), transfer="copy", progress=lambda d, n: calls["files"].append((d, n))
    )
    repo_with().import_(out / "export.yaml", progress=lambda d, n: calls["registry"].append((d, n)))
    assert calls["files"] == calls["registry"]
    assert len(calls["files"]) <= calls["files"][0][1]
