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
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..datastore import ResourceURI
from ..datastore._checksum import checksum_stream
from ..schema._postgres_source import is_postgres_location, table_fingerprint
from ._plan import Checkpoint

if TYPE_CHECKING:
    from ..butler import Butler

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
    if root.is_local and Path(str(root)).is_file():
        yield root.name, root, root.size()
        return
    for uri, size in root.walk():
        yield uri.relative_to(root) or uri.name, uri, size


def build_manifest(butler: Butler, checkpoint: Checkpoint, base: Path) -> pa.Table:
    """Every delivered dataset and file of a checkpoint, one row each, sorted by (item, key)."""
    rows: list[dict[str, Any]] = []
    for item in checkpoint.items:
        if item.kind == "datasets":
            for name in item.dataset_types:
                refs = butler.query_datasets(name, item.collections)
                where = butler.datastore.locations([r.id for r in refs]) if refs else {}
                for r in refs:
                    loc = where.get(r.id)
                    key = f"{name}/" + "/".join(f"{k}={v}" for k, v in r.data_id.required.items())
                    rows.append(
                        {
                            "item": item.name,
                            "key": key,
                            "dataset_id": str(r.id),
                            "run": r.run,
                            "path": loc.path if loc else "",
                            "size": loc.size if loc else None,
                            "checksum": loc.checksum if loc else None,
                        }
                    )
        elif item.kind == "catalog" and item.location and is_postgres_location(item.location):
            n_rows, fingerprint = table_fingerprint(item.location)
            rows.append(
                {
                    "item": item.name,
                    "key": item.location.partition("#")[2],
                    "dataset_id": None,
                    "run": None,
                    "path": item.location,
                    "size": n_rows,  # a live table's size is its number of rows
                    "checksum": fingerprint,
                }
            )
        elif item.kind in ("catalog", "files", "hips") and item.location:
            location = item.location
            if not location.startswith("s3://") and not Path(location).is_absolute():
                location = str(base / location)
            for key, uri, size in _files(ResourceURI.from_string(location)):
                with uri.open_read() as stream:
                    checksum = checksum_stream(stream)
                rows.append(
                    {
                        "item": item.name,
                        "key": key,
                        "dataset_id": None,
                        "run": None,
                        "path": str(uri),
                        "size": size,
                        "checksum": checksum,
                    }
                )
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


def write_manifest(manifest: pa.Table, path: Path) -> None:
    """Write a manifest as Parquet, atomically."""
    buffer = pa.BufferOutputStream()
    pq.write_table(manifest, buffer)
    ResourceURI.from_string(str(path)).write(buffer.getvalue().to_pybytes())


def read_manifest(path: Path) -> pa.Table:
    return pq.read_table(path)


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
