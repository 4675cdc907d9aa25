"""Integrity check of a datastore against the registry: ``porter fsck``.

Finds, and with ``repair=True`` fixes what is safe to fix:

============================  ==========================================  ==============================
finding                       meaning                                     repair
============================  ==========================================  ==============================
interrupted write             a put/ingest/transfer died after            delete its file (if any) and
(garbage)                     journaling its path                         the journal row
interrupted removal           a removal died after the registry commit    delete the file, drop the row
(garbage)
unreferenced artifact         stored file no dataset points to any more   delete the file, drop the row
                              (datasets removed through the registry)
temporary file (garbage)      a temporary left by a writer that is gone   delete it
                              (killed mid-write)
orphan file                   a file below the root porter has no         move it to .porter-orphans/
                              record of                                   (never deleted)
missing file                  a dataset's file is gone                    none: report (prune or restore)
size mismatch                 file size differs from what was written     none: report
checksum mismatch             (with ``checksums=True``) content changed   none: report
datasets without files        registered without a file (an import        none: report (one line per
                              without files)                              dataset type)
============================  ==========================================  ==============================

Journal rows name their writer (host, PID, process start time; see
`porter.datastore._recovery`).  A row whose writer is gone — a process of
this host that exited, or whose PID now belongs to a later process — is
reported as recoverable ("writer gone") at once, whatever ``grace``, and
``--repair`` finishes its step.  A running writer's row is never touched,
whatever ``grace``.  Only a row whose writer cannot be checked from here
(another host, or an older porter that named none) waits ``grace`` seconds
before it counts as abandoned.  Both kinds of interrupted step are garbage,
not damage: no dataset refers to their files.  A file the registry refers
to is never deleted.

Temporaries are *garbage*, not damage: no dataset refers to them, so the
repository is consistent with them there.  They are reported apart
(`Finding.garbage`, `FsckReport.garbage`) and do not make `FsckReport.ok`
false.  Each temporary is named for the process that made it, so a
temporary of a writer still running on this host is left alone, whatever
``grace`` (counted in `FsckReport.in_progress`); one of a writer on another
host counts as garbage once untouched for ``grace`` seconds (see
`porter.datastore._uri.classify_temporary`).  The registry's own files, ``.porter-orphans/`` and
``releases/`` (release plans, manifests and reports) are porter's, not
orphans.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy

from ._checksum import checksum_stream
from ._records import ADOPTING, DELETING, STORED, WRITING
from ._recovery import judge
from ._uri import LocalURI, ResourceURI, classify_temporary

if TYPE_CHECKING:
    from ._datastore import Datastore

__all__ = ["ORPHANS_AREA", "SERVER_AREA", "Finding", "FsckReport", "fsck"]

ORPHANS_AREA = ".porter-orphans"
SERVER_AREA = ".porter-server"
"""Where ``porter serve`` keeps its signing key and the uploads it is receiving: not datastore artifacts."""
_NOT_ARTIFACTS = ("porter.yaml", "registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm")
_NOT_ARTIFACT_AREAS = (ORPHANS_AREA + "/", SERVER_AREA + "/", "releases/")
"""Areas below the root that hold porter's own files: quarantined orphans, and release plans,
manifests and reports (``porter release`` keeps them in ``releases/``, often inside the
repository).  A file there that is no artifact is no orphan: moving it would break the release."""


@dataclass
class Finding:
    """One thing fsck found: its kind (see the module docstring), the path it concerns, and what was done."""

    kind: str
    path: str
    detail: str = ""
    repaired: bool = False
    garbage: bool = False
    """Leftovers of an interrupted write that no dataset refers to: the repository is consistent with them
    there, so they are not damage; ``--repair`` removes them."""


@dataclass
class FsckReport:
    """What `fsck` found: damage, garbage from interrupted writes, and how much it looked at."""

    findings: list[Finding] = field(default_factory=list)
    artifacts_checked: int = 0
    files_seen: int = 0
    in_progress: int = 0
    """Temporaries of writes still running, left alone."""
    journal_in_progress: int = 0
    """Journal rows of writes or removals still running (or, from a writer that cannot be checked here,
    younger than the grace), left alone."""

    @property
    def damage(self) -> list[Finding]:
        """The findings that are not garbage: something the registry and the files disagree on."""
        return [f for f in self.findings if not f.garbage]

    @property
    def garbage(self) -> list[Finding]:
        """Leftovers of interrupted writes (a consistent repository may have them; ``--repair`` removes them)."""
        return [f for f in self.findings if f.garbage]

    @property
    def ok(self) -> bool:
        """True when nothing is damaged; garbage from interrupted writes does not count (see `clean`)."""
        return not self.damage

    @property
    def clean(self) -> bool:
        """True when fsck found nothing at all, garbage included."""
        return not self.findings

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out


def _is_temporary(relative: str) -> bool:
    return relative.startswith(".porter-tmp/") or relative.endswith(".porter-tmp")


def fsck(
    datastore: Datastore,
    *,
    repair: bool = False,
    checksums: bool = False,
    grace: float = 3600.0,
    progress: Callable[[str], None] | None = None,
    type_name: Callable[[int], str] = str,
) -> FsckReport:
    """Compare the datastore's records with its files; see the module docstring for what is found and fixed."""
    step = progress or (lambda _: None)
    report = FsckReport()
    tables, root = datastore.tables, datastore.root
    now = time.time_ns()
    step("reading the datastore records")
    with datastore.db.reading() as conn:
        artifacts = {a.path: a for a in tables.artifacts(conn)}
        unreferenced = set(tables.unreferenced_stored(conn))
        without_file = _datasets_without_files(conn, datastore)
    step("listing files")
    files: dict[str, int] = {}
    for uri, size in root.walk():
        relative = uri.relative_to(root)
        if relative is None or relative in _NOT_ARTIFACTS:
            continue
        if relative.startswith(_NOT_ARTIFACT_AREAS) and relative not in artifacts:
            continue
        files[relative] = size
    report.files_seen = len(files)
    step(f"checking {len(artifacts)} artifacts against {len(files)} files")
    to_forget: list[str] = []
    for path, artifact in artifacts.items():
        report.artifacts_checked += 1
        uri = datastore.uri_of(path)
        direct = path != _relative_or_none(uri, root)
        present = (path in files) if not direct else uri.exists()
        if artifact.state in (WRITING, ADOPTING, DELETING):
            verdict = judge(artifact, grace, now, datastore.in_flight)
            if not verdict.recoverable:
                report.journal_in_progress += (
                    1  # a running writer's (or one too young to tell): never touched
                )
                continue
            kind = "interrupted removal" if artifact.state == DELETING else "interrupted write"
            finding = Finding(kind, path, verdict.reason, garbage=True)
            if repair:
                datastore.recover_interrupted([path], grace=grace)
                finding.repaired = True
            report.findings.append(finding)
            continue
        if path in unreferenced:
            finding = Finding("unreferenced artifact", path, "no dataset refers to it")
            if repair:
                with datastore.db.transaction() as conn:
                    conn.execute(
                        sqlalchemy.update(tables.artifact)
                        .where(tables.artifact.c.path == path, tables.artifact.c.state == STORED)
                        .values(state=DELETING)
                    )
                if not direct:
                    uri.remove()
                to_forget.append(path)
                finding.repaired = True
            report.findings.append(finding)
            continue
        if not present:
            report.findings.append(
                Finding("missing file", path, "the registry refers to it; prune or restore")
            )
            continue
        size = files[path] if not direct else uri.size()
        if artifact.size is not None and size != artifact.size:
            report.findings.append(Finding("size mismatch", path, f"{size} bytes, {artifact.size} written"))
            continue
        if checksums and artifact.checksum:
            with uri.open_read() as f:
                actual = checksum_stream(f)
            if actual != artifact.checksum:
                report.findings.append(Finding("checksum mismatch", path, f"{actual} != {artifact.checksum}"))
    known = set(artifacts)
    wall_clock = time.time()
    for relative in sorted(set(files) - known):
        if _is_temporary(relative):
            uri = root.join(relative)
            try:
                stale, why = classify_temporary(
                    relative.rsplit("/", 1)[-1], uri.modified(), grace, wall_clock
                )
            except FileNotFoundError:  # its writer finished (or gave up) since the listing
                continue
            if not stale:
                report.in_progress += 1
                continue
            finding = Finding("temporary file", relative, why, garbage=True)
            if repair:
                uri.remove()
                finding.repaired = True
        else:
            finding = Finding("orphan file", relative, f"moved to {ORPHANS_AREA}/" if repair else "")
            if repair:
                _quarantine(root, relative)
                finding.repaired = True
        report.findings.append(finding)
    for type_id, count in without_file:
        report.findings.append(
            Finding("datasets without files", type_name(type_id), f"{count} registered without a file")
        )
    if to_forget:
        with datastore.db.transaction() as conn:
            tables.forget(conn, to_forget)
    return report


def _relative_or_none(uri: ResourceURI, root: ResourceURI) -> str | None:
    return uri.relative_to(root)


def _age(now: int, created: int) -> str:
    seconds = max(0.0, (now - created) / 1e9)
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def _quarantine(root: ResourceURI, relative: str) -> None:
    source = root.join(relative)
    target = root.join(f"{ORPHANS_AREA}/{relative}")
    if isinstance(source, LocalURI):
        target.upload(source.path, move=True)
    else:
        target.write(source.read())
        source.remove()


def _datasets_without_files(conn: sqlalchemy.Connection, datastore: Datastore) -> list[tuple[int, int]]:
    """``(dataset_type_id, count)`` of registered datasets that have no file."""
    loc, dataset = datastore.tables.location, datastore.tables.dataset
    stmt = (
        sqlalchemy.select(dataset.c.dataset_type_id, sqlalchemy.func.count())
        .where(~sqlalchemy.exists().where(loc.c.dataset_id == dataset.c.dataset_id))
        .group_by(dataset.c.dataset_type_id)
    )
    return [(int(r[0]), int(r[1])) for r in conn.execute(stmt)]
