"""Manifests: a frozen, standard representation of what a hand-over delivered.

``ship`` lists every dataset (type, data ID, UUID, run, path, size,
checksum, from the datastore's records) and every file of the checkpoint's
catalog, file-tree and HiPS items (path, size, xxh3 checksum) and every live
PostgreSQL table (rows and an order-independent content fingerprint), writes them
as one Parquet file and computes a content hash over the sorted rows.  Later
checks compare the delivery with its manifest, and ``diff`` compares two
releases' manifests.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..datastore import LocalURI, ResourceURI
from ..datastore._checksum import checksum_stream
from ..schema import directory_loops
from ..schema._postgres_source import is_postgres_location, table_fingerprint
from ._plan import Checkpoint, PlanError

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = [
    "MANIFEST_COLUMNS",
    "build_manifest",
    "content_hash",
    "diff_manifests",
    "read_manifest",
    "write_manifest",
]

MANIFEST_COLUMNS = ("item", "key", "dataset_id", "run", "path", "size", "checksum")


def _files(root: ResourceURI) -> Iterable[tuple[str, ResourceURI, int]]:
    """(key relative to ``root``, file, size) of one file or of every file below a directory or S3 prefix."""
    if root.is_local:
        path = Path(root.path if isinstance(root, LocalURI) else str(root))
        for key, file, size in _local_files(path):
            yield key, LocalURI(file), size
        return
    for uri, size in root.walk():
        yield uri.relative_to(root) or uri.name, uri, size


def _local_files(root: Path) -> list[tuple[str, Path, int]]:
    """(key, path, size) of a local file or of every file below a directory, links to directories followed.

    Shipping hashes every byte, so what cannot be read as a plain file stops it before anything is
    recorded, naming each such entry: a link loop or one to nothing (`os.stat` fails), a directory link
    back to a directory above it (the tree would never end), a FIFO, socket or device (reading a FIFO
    waits forever for a writer).
    """
    problems: list[str] = []
    out: list[tuple[str, Path, int]] = []

    def regular(path: Path, key: str) -> None:
        try:
            st = path.stat()
        except OSError as exc:
            problems.append(
                f"{path}: {exc.strerror or exc}" + (" (a symbolic link)" if path.is_symlink() else "")
            )
            return
        if stat.S_ISREG(st.st_mode):
            out.append((key, path, st.st_size))
        elif not stat.S_ISDIR(st.st_mode):
            problems.append(
                f"{path}: not a regular file ({_KINDS.get(stat.S_IFMT(st.st_mode), 'special file')})"
            )

    if not root.is_dir():
        regular(root, root.name)
    else:
        problems += [f"{loop['file']}: {loop['problem']}" for loop in directory_loops(root)]
        if not problems:  # no link goes round: following them ends
            for dirpath, _, filenames in os.walk(root, followlinks=True):
                for f in filenames:
                    path = Path(dirpath) / f
                    regular(path, path.relative_to(root).as_posix())
    if problems:
        raise PlanError(
            f"Cannot ship {root}: {len(problems)} entr{'y' if len(problems) == 1 else 'ies'} cannot be read as "
            f"files — {'; '.join(problems[:10])}{f'; and {len(problems) - 10} more' if len(problems) > 10 else ''}. "
            "Fix or remove them, then ship again."
        )
    return sorted(out)


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def _entry(
    item: str,
    key: str,
    path: str,
    size: int | None,
    checksum: str | None,
    dataset_id: str | None = None,
    run: str | None = None,
) -> dict[str, Any]:
    """One manifest row (`MANIFEST_COLUMNS`); files and tables have no dataset ID or run."""
    return {
        "item": item,
        "key": key,
        "dataset_id": dataset_id,
        "run": run,
        "path": path,
        "size": size,
        "checksum": checksum,
    }


def build_manifest(butler: DirectButler, checkpoint: Checkpoint, base: Path) -> pa.Table:
    """Every delivered dataset and file of a checkpoint, one row each, sorted by (item, key)."""
    rows: list[dict[str, Any]] = []
    for item in checkpoint.items:
        if item.kind == "datasets":
            for name in item.dataset_types:
                refs = butler.query_datasets(name, item.collections, explain=False)
                where = butler.datastore.locations([r.id for r in refs]) if refs else {}
                for r in refs:
                    loc = where.get(r.id)
                    key = f"{name}/" + "/".join(f"{k}={v}" for k, v in r.data_id.required.items())
                    rows.append(
                        _entry(
                            item.name,
                            key,
                            loc.path if loc else "",
                            loc.size if loc else None,
                            loc.checksum if loc else None,
                            str(r.id),
                            r.run,
                        )
                    )
        elif item.kind == "catalog" and item.location and is_postgres_location(item.location):
            n_rows, fingerprint = table_fingerprint(item.location)
            # A live table's size is its number of rows.
            rows.append(
                _entry(item.name, item.location.partition("#")[2], item.location, n_rows, fingerprint)
            )
        elif item.kind in ("catalog", "files", "hips") and item.location:
            for key, uri, size in _files(ResourceURI.from_string(item.resolved_location(base))):
                with uri.open_read() as stream:
                    rows.append(_entry(item.name, key, str(uri), size, checksum_stream(stream)))
    rows.sort(key=lambda r: (r["item"], r["key"]))
    schema = pa.schema(
        [
            ("item", pa.string()),
            ("key", pa.string()),
            ("dataset_id", pa.string()),
            ("run", pa.string()),
            ("path", pa.string()),
            ("size", pa.int64()),
            ("checksum", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def content_hash(manifest: pa.Table) -> str:
    """SHA-256 over (item, key, size, checksum) of every row, in order: equal deliveries hash equal."""
    h = hashlib.sha256()
    for item, key, size, checksum in zip(
        *(manifest[c].to_pylist() for c in ("item", "key", "size", "checksum"))
    ):
        h.update(f"{item}\t{key}\t{size}\t{checksum}\n".encode())
    return h.hexdigest()


_AUDIT_HEAD = b"porter.audit_head"


def write_manifest(manifest: pa.Table, path: Path, audit_head: tuple[int, str] | None = None) -> None:
    """Write a manifest as Parquet, atomically; ``audit_head`` (the audit log's last event when it was
    shipped, as seq and hash) goes into the file's metadata, an anchor outside the database."""
    if audit_head is not None:
        metadata = dict(manifest.schema.metadata or {})
        metadata[_AUDIT_HEAD] = json.dumps({"seq": audit_head[0], "hash": audit_head[1]}).encode()
        manifest = manifest.replace_schema_metadata(metadata)
    buffer = pa.BufferOutputStream()
    pq.write_table(manifest, buffer)
    ResourceURI.from_string(str(path)).write(buffer.getvalue().to_pybytes())


_read: dict[str, tuple[tuple[int, int, int], pa.Table]] = {}
_read_lock = threading.Lock()


def read_manifest(path: Path) -> pa.Table:
    """A shipped manifest, read once per change of its file (a manifest is written once, atomically, and
    never changed: a re-ship writes a new file; an altered file has another inode, size or time)."""
    try:
        st = os.stat(path)
    except OSError:
        return pq.read_table(path)  # the reader's own error
    key, stamp = str(path), (st.st_ino, st.st_size, st.st_mtime_ns)
    with _read_lock:
        hit = _read.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    table = pq.read_table(path)
    with _read_lock:
        if len(_read) >= 64:
            _read.clear()
        _read[key] = (stamp, table)
    return table


def manifest_audit_head(path: Path) -> tuple[int, str] | None:
    """The audit head a manifest was shipped on (None for a manifest without one, or unreadable)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(_AUDIT_HEAD)
        if raw is None:
            return None
        head = json.loads(raw)
        return int(head["seq"]), str(head["hash"])
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None


def diff_manifests(old: pa.Table, new: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Entries added, removed and changed (size or checksum) between two manifests, by (item, key)."""

    def index(t: pa.Table) -> dict[tuple[str, str], tuple[Any, Any]]:
        return {
            (i, k): (s, c)
            for i, k, s, c in zip(*(t[x].to_pylist() for x in ("item", "key", "size", "checksum")))
        }

    a, b = index(old), index(new)
    return {
        "added": [{"item": i, "key": k} for i, k in sorted(set(b) - set(a))],
        "removed": [{"item": i, "key": k} for i, k in sorted(set(a) - set(b))],
        "changed": [
            {"item": i, "key": k, "old_size": a[(i, k)][0], "new_size": b[(i, k)][0]}
            for i, k in sorted(set(a) & set(b))
            if a[(i, k)] != b[(i, k)]
        ],
    }
