"""The file datastore: artifacts under one root (a directory or an S3 prefix), tracked in the registry database.

The butler drives it in three steps so that a crash at any point leaves
the repository consistent (see `_records` for the journal):

1. `reserve` — journal the paths about to be written (its own committed transaction);
2. `write` — write the files (exclusively: an existing file is never replaced);
3. `record` — inside the transaction that registers the datasets, mark the
   artifacts stored and record each dataset's location.

If step 2 or 3 fails, `abandon` deletes what was written and the journal rows.
If the writer is killed instead, its journal rows stay, naming it (host, PID,
start time): the next `reserve` of the same paths — the re-run of the killed
command — finds its writer gone and finishes the abandonment itself
(`recover_interrupted`, see `_recovery`); a live writer's rows are a conflict.

Files are formatted into a temporary first, named for the writing process
(`porter.datastore._uri.Writer`).  A writer killed there leaves the
temporary behind: garbage, not damage (no dataset refers to it).  The first
write of each `Datastore` sweeps the temporaries of writers that are gone
(`sweep_temporaries`: one directory listing), and ``porter fsck`` reports
and ``--repair`` removes them wherever they are; a running writer's
temporary is never touched.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy

from .._stop_points import stop_point
from ..errors import (
    ArtifactMissingError,
    ConflictingDefinitionError,
    CorruptArtifactError,
    DatastoreError,
    UnknownComponentError,
)
from ._checksum import checksum_local_file
from ._records import WRITING, ArtifactRow, DatastoreTables, LocationRow
from ._recovery import IN_FLIGHT, judge, leftover_uri
from ._single_file import check_read_parameters, formatter_class, formatter_named
from ._space import full_filesystem
from ._storage_classes import StorageClass, StorageClassRegistry
from ._templates import DEFAULT_TEMPLATE, PathTemplate
from ._transfer import IN_PLACE, Adoption, resolve_transfer, transfer_file
from ._uri import ArtifactExistsError, LocalURI, ResourceURI, classify_temporary, my_token, temporary_name
from .formatters import Formatter, ReadParameterError

__all__ = ["STALE_AFTER", "TEMP_AREA", "Datastore", "WritePlan", "WriterBusyError"]

_TAKEN_BLOCK = 10_000
"""Paths checked per query when reserving (bounds the ``IN`` list)."""

TEMP_AREA = ".porter-tmp"
"""Directory below a local datastore root where files are formatted before they are moved into place."""

STALE_AFTER = 3600.0
"""Seconds without a change after which a temporary whose writer cannot be checked (another host) is garbage.

A writer on this host is checked directly (`porter.datastore._uri.Writer`);
this bound is for the others, and is ``porter fsck``'s default grace too."""


class WriterBusyError(ConflictingDefinitionError):
    """The path is journaled by a writer that may still be running: not (yet) a dataset that exists.

    Apart from the plain conflict so that the butler does not tell a person
    to remove a dataset that another process is still writing.
    """


@dataclass
class WritePlan:
    """One artifact about to be written for one dataset."""

    dataset_id: uuid.UUID
    dataset_type: str
    path: str  # relative to the root
    uri: ResourceURI
    storage_class: StorageClass
    formatter: Formatter
    size: int = 0
    checksum: str = ""
    written: bool = False


class Datastore:
    """Stores and reads dataset artifacts below ``root``.

    Parameters
    ----------
    root : `ResourceURI`
        The datastore root (local directory or S3 prefix).
    db : `porter.registry._db.Database`
        The registry's database, which also holds the datastore's tables.
    tables : `DatastoreTables`
    storage_classes : `StorageClassRegistry`
    templates : mapping of `str` to `str`
        Path templates by dataset type name; ``"default"`` for the rest.
    """

    def __init__(
        self,
        root: ResourceURI,
        db: Any,
        tables: DatastoreTables,
        storage_classes: StorageClassRegistry,
        templates: Mapping[str, str] | None = None,
    ):
        self.root = root
        self.db = db
        self.tables = tables
        self.storage_classes = storage_classes
        templates = dict(templates or {})
        self._default_template = PathTemplate(templates.pop("default", DEFAULT_TEMPLATE))
        self._default_is_builtin = self._default_template.text == DEFAULT_TEMPLATE
        self._templates = {name: PathTemplate(text) for name, text in templates.items()}
        self._formatters: dict[str, Formatter] = {}
        self._checked: dict[Any, PathTemplate] = {}  # template by dataset type, once checked
        self._swept = False  # whether this instance has swept dead writers' temporaries yet
        self._scratch_area: Path | None = None
        self._root_key = str(root)  # this datastore's paths in `IN_FLIGHT`

    # --- naming ------------------------------------------------------------------------------------

    def template_for(self, dataset_type: Any) -> PathTemplate:
        """The path template of ``dataset_type``, checked to give unique paths."""
        found = self._checked.get(dataset_type)
        if found is None:
            found = self._checked[dataset_type] = self._template_for(dataset_type)
        return found

    def _template_for(self, dataset_type: Any) -> PathTemplate:
        own = self._templates.get(dataset_type.name)
        if own is not None:
            own.check(dataset_type, shared=False)
            return own
        try:
            self._default_template.check(dataset_type)
        except Exception:
            if not self._default_is_builtin:
                raise
            # The built-in default names the usual dimensions; others get the dataset ID.
            return PathTemplate(DEFAULT_TEMPLATE + "_{id}")
        return self._default_template

    def uri_of(self, path: str) -> ResourceURI:
        """The URI of a stored path (relative to the root, or absolute for direct ingests)."""
        if "://" in path or path.startswith("/"):
            return ResourceURI.from_string(path)
        return self.root.join(path)

    def formatter(self, name: str | type, storage_class: StorageClass | None = None) -> Formatter:
        """The formatter class ``name`` (an import path or a class).

        A name that is not a porter formatter (an export from daf_butler names
        ``lsst.daf.butler.formatters.…``) is replaced by ``storage_class``'s
        default formatter when one is given.
        """
        key = name if isinstance(name, str) else f"{name.__module__}.{name.__qualname__}"
        f = self._formatters.get(key)
        if f is None:
            cls = formatter_class(name)
            if cls is None:
                return formatter_named(name, storage_class)  # a stand-in (not cached), or the error
            f = self._formatters[key] = cls()
        return f

    # --- writing -----------------------------------------------------------------------------------

    def plan(
        self,
        dataset_type: Any,
        data_id: Mapping[str, Any],
        run: str,
        dataset_id: uuid.UUID,
        records: Mapping[str, Any] | None = None,
    ) -> WritePlan:
        """Decide where and how a new dataset will be written (nothing is written yet)."""
        storage_class = self.storage_classes.get(
            dataset_type.storage_class_name, dataset_type=dataset_type.name
        )
        formatter = storage_class.formatter
        path = self.path_for(dataset_type, data_id, run, dataset_id, records, formatter.extension)
        return WritePlan(dataset_id, dataset_type.name, path, self.root.join(path), storage_class, formatter)

    def path_for(
        self,
        dataset_type: Any,
        data_id: Mapping[str, Any],
        run: str,
        dataset_id: uuid.UUID,
        records: Mapping[str, Any] | None,
        extension: str,
    ) -> str:
        """The templated path (relative to the root) of a dataset's artifact."""
        return (
            self.template_for(dataset_type).format(
                run=run,
                dataset_type=dataset_type.name,
                dataset_id=dataset_id.hex,
                data_id=data_id,
                records=records,
            )
            + extension
        )

    def plan_adoption(
        self,
        source: ResourceURI,
        mode: str,
        refs: Sequence[Any],
        formatter: str | type | None,
        records: Mapping[str, Any] | None = None,
    ) -> Adoption:
        """Decide how an existing file becomes the artifact of ``refs`` (all of one storage class).

        ``mode`` is a transfer mode (see `porter.datastore._transfer`); the
        templated path is that of the first ref, with the source's extension.
        """
        first = refs[0]
        storage_class = self.storage_classes.get(
            first.dataset_type.storage_class_name, dataset_type=first.dataset_type.name
        )
        fmt = storage_class.formatter if formatter is None else self.formatter(formatter, storage_class)
        resolved, inside = resolve_transfer(mode, source, self.root)
        if resolved == IN_PLACE:
            path = inside if inside is not None else str(source)
            uri = source
        else:
            path = self.path_for(
                first.dataset_type,
                first.data_id.mapping,
                first.run,
                first.id,
                records,
                _extension(source.name),
            )
            uri = self.root.join(path)
        return Adoption(source, resolved, path, uri, fmt, storage_class, [r.id for r in refs])

    def reserve(self, plans: Sequence[WritePlan | Adoption]) -> None:
        """Journal the paths (committed now); a path already in use is a `ConflictingDefinitionError`.

        The first call of each instance also sweeps the temporaries that
        killed writers left (`sweep_temporaries`), so that garbage does not
        pile up between runs of ``porter fsck --repair``.
        """
        if not self._swept:
            self._swept = True
            with contextlib.suppress(OSError):  # housekeeping: never a reason to fail a write
                self.sweep_temporaries()
        paths = [p.path for p in plans]
        states = [p.journal_state if isinstance(p, Adoption) else WRITING for p in plans]
        if len(set(paths)) != len(paths):
            dup = next(p for p, n in Counter(paths).items() if n > 1)  # linear: 10⁵ paths in an ingest
            raise ConflictingDefinitionError(
                f"Two datasets would be stored at {dup!r}; give each file its own datasets (one FileDataset "
                "per file) or use a path template that tells them apart."
            )
        try:
            self._journal(paths, states)
        except sqlalchemy.exc.IntegrityError:
            # The path is the primary key: someone stored, is storing, or was storing a file there.
            # A writer that was killed will not finish: finish its step for it, then try once more.
            if not self.recover_interrupted(paths):
                raise self._conflict(paths) from None
            try:
                self._journal(paths, states)
            except sqlalchemy.exc.IntegrityError:
                raise self._conflict(paths) from None
        stop_point("journaled")

    def _journal(self, paths: Sequence[str], states: Sequence[str]) -> None:
        with self.db.transaction() as conn:
            self.tables.reserve(conn, paths, states, writer=my_token())
        IN_FLIGHT.add(self._root_key, paths)

    def in_flight(self, path: str) -> bool:
        """Whether this process is writing ``path`` now (reserved, not yet recorded or abandoned)."""
        return IN_FLIGHT.holds(self._root_key, path)

    def recover_interrupted(self, paths: Sequence[str], grace: float = STALE_AFTER) -> int:
        """Finish the steps that dead writers left journaled at ``paths``; return how many were finished.

        A row whose writer is gone (see `_recovery.judge`; a writer that cannot
        be checked counts as gone once the row is ``grace`` seconds old) is
        claimed, its file deleted (unless adopted in place), and the row
        dropped, in one transaction: the claim locks the row, so two processes
        recovering the same path do not both act, and no new writer can take
        the path while the leftover file is deleted.  A live writer's row is
        never touched.
        """
        with self.db.reading() as conn:
            rows = self._journaled(conn, paths)
        now = time.time_ns()
        dead = [r for r in rows if judge(r, grace, now, self.in_flight).recoverable]
        if not dead:
            return 0
        finished: list[str] = []
        me = my_token()
        with self.db.transaction() as conn:
            for row in dead:
                if not self.tables.claim(conn, row, me):
                    continue  # changed since read: another process recovered it (or it was stored)
                self._remove_leftover(row)
                finished.append(row.path)
            self.tables.forget(conn, finished)
        return len(finished)

    def _journaled(self, conn: sqlalchemy.Connection, paths: Sequence[str]) -> list[ArtifactRow]:
        out: list[ArtifactRow] = []
        for start in range(0, len(paths), _TAKEN_BLOCK):
            out += self.tables.journaled(conn, paths[start : start + _TAKEN_BLOCK])
        return out

    def _remove_leftover(self, row: ArtifactRow) -> None:
        """Delete the file a dead writer's step left at ``row.path`` (none for adopted or direct files)."""
        uri = self.uri_of(row.path)
        leftover = leftover_uri(row, uri, direct=_is_direct(row.path))
        if leftover is not None:
            leftover.remove()
            if isinstance(leftover, LocalURI) and isinstance(self.root, LocalURI):
                _prune_empty_parents(leftover.path.parent, self.root.path)

    def _conflict(self, paths: Sequence[str]) -> ConflictingDefinitionError:
        """The error for paths that stay taken: by a stored dataset, a running writer, or an unchecked one."""
        with self.db.reading() as conn:
            taken: set[str] = set()
            for start in range(0, len(paths), _TAKEN_BLOCK):
                taken |= self.tables.taken(conn, paths[start : start + _TAKEN_BLOCK])
            example = sorted(taken)[0] if taken else paths[0]
            journal = {r.path: r for r in self.tables.journaled(conn, [example])}
        row = journal.get(example)
        if row is None:
            return ConflictingDefinitionError(
                f"The datastore already has a file at {example!r}: a dataset with the same type, data ID "
                "and run exists. porter never overwrites a dataset: remove it first or put into another run."
            )
        verdict = judge(row, STALE_AFTER, in_flight=self.in_flight)
        if verdict.live:
            fix = "wait for it to finish, or put into another run"
        else:
            fix = (
                "if that writer is gone, the next write (or `porter fsck --repair`) finishes its step once "
                f"the journal row is {STALE_AFTER / 3600:.0f} h old; or put into another run"
            )
        return WriterBusyError(
            f"Another process is writing {example!r} ({verdict.reason}); porter never lets two writers "
            f"share a path: {fix}."
        )

    def write(self, plan: WritePlan, native: Any) -> None:
        """Format ``native`` (an object of the formatter's native storage class) into the planned place.

        A full filesystem (the temporary area's or the root's) is a `StorageFullError`; the temporary
        is gone by then, and the caller's failure path (`abandon`) drops the journal row.
        """
        what = f"the {plan.dataset_type} dataset {plan.dataset_id} (to {plan.path})"
        with full_filesystem(self.temporary_area(), what), self._scratch(plan) as tmp:
            computed = plan.formatter.write(native, tmp)
            if computed:
                plan.size, plan.checksum = tmp.stat().st_size, computed
            else:
                plan.size, plan.checksum = checksum_local_file(str(tmp))
            try:
                plan.uri.upload(tmp, exclusive=True, move=True)
            except ArtifactExistsError:
                raise ConflictingDefinitionError(
                    f"{plan.uri} already exists (a file the registry does not know of; `porter fsck` lists "
                    "such files). porter never overwrites it."
                ) from None
            plan.written = True
        stop_point("written")

    @contextlib.contextmanager
    def _scratch(self, plan: WritePlan) -> Iterator[Path]:
        """A temporary local file to format into, named for this process (so a sweeper can tell whether its
        writer still runs): in the root's temp area when the root is local (so moving it into place is a
        rename), in this user's scratch directory in the system's temp directory otherwise."""
        area = self.temporary_area()
        if isinstance(self.root, LocalURI):
            area.mkdir(parents=True, exist_ok=True)
        tmp = area / temporary_name(plan.dataset_id.hex, plan.formatter.extension)
        try:
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def temporary_area(self) -> Path:
        """The local directory where this datastore formats files before moving or uploading them.

        ``<root>/.porter-tmp`` for a local root.  For S3, a directory private
        to this user in the system's temp directory, shared by all of the
        user's repositories: the writers' tokens in the names, not the
        repository, tell the sweeper what it may delete.
        """
        if isinstance(self.root, LocalURI):
            return self.root.path / TEMP_AREA
        if self._scratch_area is None:
            self._scratch_area = _private_scratch_area()
        return self._scratch_area

    def sweep_temporaries(self, grace: float = STALE_AFTER) -> list[str]:
        """Delete the temporaries in `temporary_area` that no running writer will finish; return their names.

        One directory listing, and for each file a check of its writer (a
        signal-0 ``kill`` and a read of ``/proc``): a temporary of a process
        of this host that has exited, or of a writer that cannot be checked
        from here and untouched for ``grace`` seconds (see
        `porter.datastore._uri.classify_temporary`).  A live writer's
        temporary stays, whatever ``grace``.  Files next to artifacts (copies
        in progress) are not in this area; ``porter fsck --repair`` finds those.
        """
        area = self.temporary_area()
        if area == Path(tempfile.gettempdir()):
            return []  # no private scratch area (see _private_scratch_area): not porter's alone to sweep
        try:
            entries = list(os.scandir(area))
        except (FileNotFoundError, NotADirectoryError):
            return []
        now = time.time()
        removed: list[str] = []
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    continue
                stale, _ = classify_temporary(entry.name, info.st_mtime, grace, now)
                if stale:
                    os.unlink(entry.path)
                    removed.append(entry.name)
            except FileNotFoundError:  # another sweeper (or its writer) was first
                continue
        return removed

    def record(self, conn: sqlalchemy.Connection, plans: Sequence[WritePlan | Adoption]) -> None:
        """Inside the registering transaction: the artifacts are stored, here is where each dataset is."""
        locations: list[tuple[uuid.UUID, str, str, str]] = []
        names: dict[type, str] = {}
        for p in plans:
            ids = p.dataset_ids if isinstance(p, Adoption) else [p.dataset_id]
            kind = type(p.formatter)
            name = names.get(kind) or names.setdefault(kind, p.formatter.import_path())
            locations += [(i, p.path, name, p.storage_class.name) for i in ids]
        self.tables.store(conn, [(p.path, p.size, p.checksum) for p in plans], locations)
        IN_FLIGHT.discard(self._root_key, [p.path for p in plans])
        stop_point("registering")

    def clear_interrupted_writes(self, paths: Sequence[str]) -> int:
        """Finish the abandonment of writes to ``paths`` that a killed process left journaled as ``writing``.

        For a caller that knows no one else is writing them (a quantum being
        re-run owns its outputs); otherwise `porter fsck --repair` does this.
        Returns how many paths were cleared.
        """
        with self.db.reading() as conn:  # the usual answer is "none": no write lock for that
            if not self.tables.writing(conn, paths):
                return 0
        with self.db.transaction() as conn:
            stale = self.tables.writing(conn, paths)
            for path in stale:
                with contextlib.suppress(FileNotFoundError):
                    self.root.join(path).remove()
            self.tables.forget(conn, stale)
        return len(stale)

    def abandon(self, plans: Sequence[WritePlan | Adoption]) -> None:
        """Undo `reserve` and `write` after a failure: delete written files, drop the journal rows.

        If the rows cannot be dropped (a full disk refuses that too), they stay naming this process,
        no longer in flight: the next write of the same paths, in this process or another, recovers them.
        """
        IN_FLIGHT.discard(self._root_key, [p.path for p in plans])
        for p in plans:
            if p.written:
                with contextlib.suppress(Exception):
                    p.uri.remove()
        with contextlib.suppress(Exception), self.db.transaction() as conn:
            self.tables.forget(conn, [p.path for p in plans])

    def adopt(self, adoptions: Sequence[Adoption], progress: Callable[[int], None] | None = None) -> None:
        """Transfer (or measure, for in-place files) every adopted file; ``progress(n)`` after each.

        Copies and anything on S3 run on a thread pool (the time goes to
        I/O and requests, which release the GIL); links and in-place files
        are a few system calls each, where threads only add contention.
        """
        made_dirs: set[Path] = set()
        workers = min(8, len(adoptions)) if any(a.moves_data for a in adoptions) else 1

        def one(a: Adoption) -> None:
            where = a.uri.path if isinstance(a.uri, LocalURI) else self.temporary_area()
            with full_filesystem(where, f"{a.source} (to {a.path})"):
                transfer_file(a, made_dirs)

        if workers <= 1:
            for a in adoptions:
                one(a)
                if progress:
                    progress(1)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(one, adoptions):
                    if progress:
                        progress(1)
        stop_point("written")

    # --- reading -----------------------------------------------------------------------------------

    def locations(self, dataset_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, LocationRow]:
        if len(dataset_ids) == 1:
            found = self.tables.location_of(dataset_ids[0])
            return {} if found is None else {dataset_ids[0]: found}
        with self.db.reading() as conn:
            return self.tables.locations(conn, dataset_ids)

    def read(
        self,
        location: LocationRow,
        *,
        what: str,
        parameters: Mapping[str, Any] | None = None,
        storage_class: StorageClass | None = None,
        component: str | None = None,
    ) -> Any:
        """The object stored at ``location``, as ``storage_class`` (default: the one it was written as).

        ``component`` reads one part (``wcs`` of an exposure, ``columns`` of
        a table), as the formatter's `~Formatter.components` list them.
        ``what`` names the dataset in error messages.
        """
        formatter = self.formatter(location.formatter)
        if component is not None and component not in formatter.components:
            known = ", ".join(sorted(formatter.components)) or "none"
            raise UnknownComponentError(
                f"{what}: a {location.storage_class} has no component {component!r}; its components: {known}."
            )
        parameters = dict(parameters or {})
        check_read_parameters(formatter, parameters, what)
        uri = self.uri_of(location.path)
        try:
            if component is not None:
                return formatter.read_component(uri, component, parameters)
            native = formatter.read(uri, parameters)
        except FileNotFoundError:
            raise ArtifactMissingError(
                f"{what}: its file {uri} is missing. Run `porter fsck` to list damaged datasets, then remove "
                "the dataset or restore the file."
            ) from None
        except ReadParameterError as exc:
            raise DatastoreError(f"{what}: {exc}") from None
        except Exception as exc:
            raise self._corruption(location, uri, what, exc) from None
        target = storage_class or self.storage_classes.get(location.storage_class)
        return target.coerce(native)

    def _corruption(self, location: LocationRow, uri: ResourceURI, what: str, exc: Exception) -> Exception:
        try:
            size = uri.size()
        except FileNotFoundError:
            return ArtifactMissingError(f"{what}: its file {uri} is missing.")
        detail = (
            f"it is {size} bytes but {location.size} were written (truncated?)"
            if location.size is not None and size != location.size
            else f"it cannot be read ({type(exc).__name__}: {exc})"
        )
        return CorruptArtifactError(
            f"{what}: the file {uri} is damaged: {detail}. Run `porter fsck` to check every artifact."
        )

    # --- removal -----------------------------------------------------------------------------------

    def release(self, conn: sqlalchemy.Connection, dataset_ids: Sequence[uuid.UUID]) -> list[str]:
        """In the transaction removing the datasets: journal their now-unused artifacts for deletion
        (naming this process, so that a killed removal can be told from a running one)."""
        return self.tables.release(conn, dataset_ids, writer=my_token())

    def delete(self, paths: Sequence[str]) -> None:
        """Delete released artifacts, then drop their journal rows (after the removal committed)."""
        for path in paths:
            if not _is_direct(path):
                uri = self.uri_of(path)
                uri.remove()
                if isinstance(uri, LocalURI) and isinstance(self.root, LocalURI):
                    _prune_empty_parents(uri.path.parent, self.root.path)
        with self.db.transaction() as conn:
            self.tables.forget(conn, paths)


def _private_scratch_area() -> Path:
    """``porter-scratch-<uid>`` in the system's temp directory, created private to this user.

    Falls back to the temp directory itself if that name is taken by something
    this user does not own (then the next writer cannot sweep, but nothing
    is written where another user controls it).
    """
    base = Path(tempfile.gettempdir())
    uid = os.getuid()
    area = base / f"porter-scratch-{uid}"
    try:
        area.mkdir(mode=0o700, exist_ok=True)
        info = area.lstat()
    except OSError:
        return base
    return area if stat.S_ISDIR(info.st_mode) and info.st_uid == uid else base


def _extension(name: str) -> str:
    """A file's extension as the datastore keeps it: ``.fits``, ``.fits.fz``, ``.parquet`` …"""
    parts = name.split(".")
    if len(parts) < 2:
        return ""
    ext = "." + parts[-1]
    if parts[-1].lower() in ("gz", "fz", "bz2", "xz", "zst") and len(parts) > 2:
        ext = "." + parts[-2] + ext
    return ext if all(c.isalnum() or c in "._-" for c in ext) else ""


def _is_direct(path: str) -> bool:
    """A file ingested with ``transfer="direct"`` lives outside the datastore; porter never deletes it."""
    return "://" in path or os.path.isabs(path)


def _prune_empty_parents(directory: Path, root: Path) -> None:
    """Remove directories emptied by a deletion, up to (not including) the datastore root."""
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty (or already gone)
            return
        directory = directory.parent
