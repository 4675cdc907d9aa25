"""The repository as a viewer may read it: collections and chains, dataset types with counts, one collection's
datasets, one dataset (data ID, run, URI, provenance, a signed download, a preview of an image or a table).

The rules are the API's (`porter.server`): a collection the viewer may not
read is left out of every listing and chain, and answered exactly like one
that does not exist; a dataset in an unreadable run is answered exactly like
a UUID that is not there.  Counts are made by the database (grouped, one
statement), never by reading datasets into Python.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import uuid
from typing import Annotated, Any

import sqlalchemy
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..butler import DirectButler
from ..core import CollectionType, DatasetRef
from ..datastore import S3URI, LocalURI
from ..errors import MissingCollectionError
from ..server import Principal, Signer
from ._render import base_of, dashboard_of, render
from ._session import Viewer, require_viewer

__all__ = ["router"]

router = APIRouter()

ViewerDep = Annotated[Viewer, Depends(require_viewer)]

PAGE = 100
"""Datasets listed on one page of a collection."""
MAX_PAGES = 200
"""Pages one may go to (a limit, not a keyset: deeper than this, narrow the listing with a dataset type)."""
PREVIEW_PIXELS = 512
"""The longest side of an image preview."""
TABLE_ROWS = 20
TABLE_COLUMNS = 40
TEXT_BYTES = 64 << 10
"""A structured (JSON/YAML) dataset this small is shown on its page."""


def _butler(request: Request) -> DirectButler:
    return dashboard_of(request).state.butler


def _not_found(name: str) -> HTTPException:
    return HTTPException(404, f"Collection {name[:200]!r} not found (or you may not read it).")


def _readable_runs(butler: DirectButler, who: Principal) -> list[str]:
    return [
        i.name
        for i in butler.collections.query_info("*")
        if i.type is CollectionType.RUN and who.can_read(i.name)
    ]


def _search_path(butler: DirectButler, who: Principal, name: str) -> list[str]:
    """The collections a search of ``name`` covers for ``who``: a chain's readable children, recursively."""
    out: list[str] = []
    seen: set[str] = set()

    def add(n: str, depth: int) -> None:
        if n in seen or depth > 100:
            return
        seen.add(n)
        info = butler.collections.get_info(n)
        if info.type is CollectionType.CHAINED:
            for child in info.children:
                if who.can_read(child):
                    add(child, depth + 1)
        else:
            out.append(n)

    add(name, 0)
    return out


def _counts_by_type(butler: DirectButler, runs: list[str]) -> dict[str, int]:
    """Datasets per dataset type in ``runs``: one grouped SQL statement."""
    if not runs:
        return {}
    schema = butler.registry.schema
    d, t, c = schema.dataset, schema.dataset_type, schema.collection
    stmt = (
        sqlalchemy.select(t.c.name, sqlalchemy.func.count())
        .select_from(
            d.join(t, d.c.dataset_type_id == t.c.dataset_type_id).join(c, d.c.run_id == c.c.collection_id)
        )
        .where(c.c.name.in_(runs))
        .group_by(t.c.name)
    )
    with butler.registry.db.reading() as conn:
        return {name: int(n) for name, n in conn.execute(stmt)}


def _count_in(butler: DirectButler, dataset_type: str, collections: list[str]) -> int:
    """Datasets of one type in a search path (any collection type: tagged, calibration…), counted by SQL."""
    from ..registry.queries import DatasetSearch, QuerySpec

    registry = butler.registry
    record = registry.dataset_types.get_record(dataset_type)
    spec = QuerySpec(
        "datasets",
        registry.get_dataset_type(dataset_type).dimensions,
        searches=[DatasetSearch(record, registry.resolve_collections(collections), False)],
        with_implied=False,
    )
    statement = registry.engine.statement(spec)
    if statement is None:
        return len(
            butler.query_datasets(dataset_type, collections=collections, find_first=False, explain=False)
        )
    with registry.db.reading() as conn:
        return int(
            conn.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(statement.subquery())
            ).scalar_one()
        )


@router.get("/repository", response_class=HTMLResponse)
def repository_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """Every collection the viewer may read (chains showing readable children), and the dataset types with counts."""
    butler = _butler(request)
    who = viewer.principal
    collections = [
        {
            "name": i.name,
            "type": i.type.name,
            "doc": i.doc or "",
            "children": [c for c in i.children if who.can_read(c)],
        }
        for i in butler.collections.query_info("*")
        if who.can_read(i.name)
    ]
    counts = _counts_by_type(butler, _readable_runs(butler, who))
    types = [
        {
            "name": t.name,
            "dimensions": list(t.dimensions.names),
            "storage_class": t.storage_class_name,
            "count": counts.get(t.name, 0),
        }
        for t in sorted(butler.registry.query_dataset_types("*"), key=lambda t: t.name)
    ]
    return render(
        request, "repository.html", title="Repository", collections=collections, dataset_types=types
    )


@router.get("/repository/collections/{name:path}", response_class=HTMLResponse)
def collection_page(
    request: Request, name: str, viewer: ViewerDep, type: str | None = None, page: int = 1
) -> HTMLResponse:
    """One collection: its type, chain, datasets by type (counted), and one type's datasets a page at a time."""
    butler = _butler(request)
    who = viewer.principal
    if not who.can_read(name):
        raise _not_found(name)
    try:
        info = butler.collections.get_info(name)
    except MissingCollectionError:
        raise _not_found(name) from None
    if page < 1 or page > MAX_PAGES:
        raise HTTPException(
            400, f"page={page}: give a page from 1 to {MAX_PAGES} (narrow the list by dataset type)."
        )
    path = _search_path(butler, who, name)
    known = {t.name: t for t in butler.registry.query_dataset_types("*")}
    if info.type is CollectionType.RUN:
        counts = _counts_by_type(butler, [name])
    else:
        counts = {}
        for t in sorted(known):
            n = _count_in(butler, t, path) if path else 0
            if n:
                counts[t] = n
    rows: list[DatasetRef] = []
    more = False
    if type:
        if type not in counts:
            raise HTTPException(
                400,
                f"type={type[:80]!r}: {name} holds no datasets of that type; give one of {', '.join(sorted(counts))}.",
            )
        dims = list(known[type].dimensions.required)
        found = butler.query_datasets(
            type, collections=path, find_first=False, limit=page * PAGE + 1, order_by=dims or None
        )
        rows = list(found[(page - 1) * PAGE : page * PAGE])
        more = len(found) > page * PAGE
    return render(
        request,
        "repository_collection.html",
        title=f"Collection {name}",
        info={
            "name": info.name,
            "type": info.type.name,
            "doc": info.doc or "",
            "children": [c for c in info.children if who.can_read(c)],
        },
        counts=sorted(counts.items()),
        chosen=type or "",
        rows=[{"id": str(r.id), "data_id": dict(r.data_id.required), "run": r.run} for r in rows],
        page=page,
        more=more,
        pages=math.ceil(counts.get(type or "", 0) / PAGE) if type else 0,
    )


def _readable_ref(request: Request, viewer: Viewer, raw: str) -> DatasetRef:
    """The dataset ``raw`` names, if the viewer may read its run (else the same 404 as for no such dataset)."""
    try:
        dataset_id = uuid.UUID(raw)
    except ValueError:
        raise HTTPException(
            400,
            f"{raw[:80]!r} is not a dataset ID: give the dataset's UUID, like 1d73e2c5-facc-4ab5-9e24-fc1c4e1582a4.",
        ) from None
    ref = _butler(request).get_dataset(dataset_id)
    if ref is None or not viewer.principal.can_read(ref.run):
        raise HTTPException(404, f"No dataset with ID {dataset_id} (or you may not read it).")
    return ref


def _visible_provenance(who: Principal, node: dict[str, Any]) -> dict[str, Any]:
    """A provenance tree without the inputs in runs ``who`` may not read (as the API's provenance answer)."""
    inputs = [_visible_provenance(who, i) for i in node.get("inputs", []) if who.can_read(str(i.get("run")))]
    return {**node, "inputs": inputs}


def _signed_url(request: Request, viewer: Viewer, ref: DatasetRef, uri: Any) -> str:
    """A signed, expiring URL for the bytes at ``uri``: the server's own ``/files/…`` (file datastore, signed
    with the server's key for this viewer) or S3's presigned URL."""
    state = dashboard_of(request).state
    if isinstance(uri, S3URI):
        return str(uri.signed_url(int(state.config.url_lifetime)))
    signer: Signer = state.signer
    root = request.scope.get("root_path", "")
    return f"{root}/files/{ref.id.hex}?{signer.query(ref.id, viewer.user)}"


def _file_of(butler: DirectButler, ref: DatasetRef) -> Any:
    location = butler.datastore.locations([ref.id]).get(ref.id)
    if location is None:
        return None, None
    return location, butler.datastore.uri_of(location.path)


def _table_head(uri: Any) -> dict[str, Any] | None:
    """The first rows of a Parquet table (a few columns' worth), read without loading the rest."""
    import pyarrow.parquet as pq

    source = uri.ospath if isinstance(uri, LocalURI) else io.BytesIO(uri.read())
    try:
        f = pq.ParquetFile(source)
    except Exception:
        return None
    names = f.schema_arrow.names
    batch = next(f.iter_batches(batch_size=TABLE_ROWS, columns=names[:TABLE_COLUMNS]), None)
    rows = batch.to_pylist() if batch is not None else []
    return {
        "columns": names[:TABLE_COLUMNS],
        "more_columns": max(0, len(names) - TABLE_COLUMNS),
        "rows": rows,
        "total": f.metadata.num_rows,
    }


def _is_fits(uri: Any) -> bool:
    return str(uri.getExtension()).lower() in (".fits", ".fit", ".fz", ".fits.fz", ".fits.gz")


@router.get("/repository/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(request: Request, dataset_id: str, viewer: ViewerDep) -> HTMLResponse:
    """One dataset: data ID, type, run, URI, provenance, a signed download, a preview (image) or first rows (table)."""
    from ..pipeline import dataset_provenance

    ref = _readable_ref(request, viewer, dataset_id)
    butler = _butler(request)
    location, uri = _file_of(butler, ref)
    full = butler.find_dataset(ref.dataset_type.name, ref.data_id, collections=[ref.run])
    data_id = dict((full or ref).data_id.mapping) if full is not None else dict(ref.data_id.required)
    provenance = _visible_provenance(viewer.principal, dataset_provenance(butler, str(ref.id)).to_dict())
    table = None
    text = ""
    if uri is not None:
        extension = str(uri.getExtension()).lower()
        if extension in (".parq", ".parquet"):
            table = _table_head(uri)
        elif extension in (".json", ".yaml", ".yml") and (location.size or 0) <= TEXT_BYTES:
            text = uri.read().decode("utf-8", "replace")
            if extension == ".json":
                with contextlib.suppress(ValueError):
                    text = json.dumps(json.loads(text), indent=2)
    return render(
        request,
        "dataset.html",
        title=f"{ref.dataset_type.name} {ref.id}",
        ref=ref,
        dataset_id=str(ref.id),
        data_id=data_id,
        dimensions=list(ref.dataset_type.dimensions.required),
        storage_class=ref.dataset_type.storage_class_name,
        uri=str(uri) if uri is not None else "",
        size=location.size if location is not None else None,
        checksum=(location.checksum or "") if location is not None else "",
        download=f"{base_of(request)}/repository/datasets/{ref.id}/download"
        if location is not None
        else None,
        preview=uri is not None and _is_fits(uri),
        table=table,
        text=text,
        provenance=provenance,
        base_ui=base_of(request),
    )


@router.get("/repository/datasets/{dataset_id}/download")
def dataset_download(request: Request, dataset_id: str, viewer: ViewerDep) -> Response:
    """The dataset's file, as the API's get hands it out: counted against the viewer's download bytes of the
    day (the server's per-user limit: a page saying so, 429, beyond it), then a redirect to a signed,
    expiring URL for the bytes.  Counted here, when a person asks for the file, not when its page is shown."""
    ref = _readable_ref(request, viewer, dataset_id)
    location, uri = _file_of(_butler(request), ref)
    if location is None:
        raise HTTPException(404, f"Dataset {ref.id} has no stored file to download.")
    dashboard_of(request).state.count_download(viewer.principal, location.size or 0)
    return RedirectResponse(_signed_url(request, viewer, ref, uri), status_code=303)


def _preview_png(uri: Any) -> bytes:
    """A downsampled PNG of a FITS file's first image (asinh stretch within z-scale limits), drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from astropy.io import fits
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
    from matplotlib import pyplot as plt

    source = uri.ospath if isinstance(uri, LocalURI) else io.BytesIO(uri.read())
    with fits.open(source, memmap=isinstance(uri, LocalURI)) as hdus:
        image = next((h.data for h in hdus if h.data is not None and getattr(h.data, "ndim", 0) == 2), None)
        if image is None:
            raise HTTPException(404, "This FITS file holds no 2-d image to preview.")
        step = max(1, math.ceil(max(image.shape) / PREVIEW_PIXELS))
        h, w = (image.shape[0] // step) * step, (image.shape[1] // step) * step
        blocks = np.asarray(image[:h, :w], dtype=np.float64).reshape(h // step, step, w // step, step)
        small: Any = np.nanmean(blocks, axis=(1, 3))  # block means: every pixel counts, no aliasing
    small = np.where(np.isfinite(small), small, np.nanmedian(small) if np.isfinite(small).any() else 0.0)
    norm = ImageNormalize(small, interval=ZScaleInterval(), stretch=AsinhStretch())
    scaled = np.clip(np.nan_to_num(np.ma.filled(norm(small), 0.0)), 0.0, 1.0)
    out = io.BytesIO()
    plt.imsave(out, scaled, cmap="gray", origin="lower", format="png", vmin=0.0, vmax=1.0)
    return out.getvalue()


@router.get("/repository/datasets/{dataset_id}/preview.png")
async def dataset_preview(request: Request, dataset_id: str, viewer: ViewerDep) -> Response:
    """A cut-out preview of a FITS image dataset as PNG (the same access check as its page)."""
    ref = _readable_ref(request, viewer, dataset_id)
    _, uri = _file_of(_butler(request), ref)
    if uri is None or not _is_fits(uri):
        raise HTTPException(404, f"Dataset {ref.id} is not a FITS image: it has no preview.")
    png = await run_in_threadpool(_preview_png, uri)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
