"""The FastAPI application: one repository's butler behind HTTP, with access control on every read.

Stateless by design: everything a request needs is in the request (the token,
the query, the cursor) or in the repository (accounts, grants, data), so any
number of workers or replicas can serve one PostgreSQL + S3 repository, and a
page of a query can be fetched from any of them.  Errors are answered as
``{"error": <porter exception class>, "message": …}`` with a 4xx status, so the
client raises the same exception type the local butler would.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors
from ..butler import DirectButler, FileDataset
from ..core import (
    CollectionType,
    DatasetRef,
    dataset_type_to_json,
    decode_value,
    encode_value,
    record_from_json,
    record_to_json,
    ref_to_json,
)
from ..datastore import S3URI, SERVER_AREA, LocalURI
from ..dimensions import DataCoordinate, Timespan
from ..registry import GovernorDefaults, dataset_index_order
from ._access import readable_collections, readable_info, require_readable
from ._accounts import Accounts, AuthenticationError, Principal
from ._gate import ByteCache, Gate
from ._idempotency import IdempotencyStore, KeyInUseError
from ._limits import Limits, RetryLater, UserLimits
from ._metrics import ServerMetrics
from ._models import (
    Certify,
    ChainChange,
    DataIdQuery,
    DatasetQuery,
    Defaults,
    ExportRequest,
    FindDataset,
    GetRequest,
    InferDefaults,
    IngestRequest,
    InsertRecords,
    PruneDatasets,
    RecordQuery,
    RegisterCollection,
    RegisterDatasetType,
    RemoveRuns,
    UploadRequest,
)
from ._pagination import (
    CURSOR_BIND_PREFIX,
    by_row_value,
    data_id_rows,
    decode_cursor,
    encode_cursor,
    fingerprint,
    keyset_where,
    order_terms,
)
from ._paths import check_path_prefix
from ._signing import SignedURLError, Signer, load_or_create_key
from ._uploads import UploadTicket, open_ticket, seal_ticket

__all__ = ["API_PREFIX", "ServerConfig", "create_app"]

API_PREFIX = "/api/v1"

_STATUS: list[tuple[type[BaseException], int]] = [
    (errors.AuthenticationError, 401),
    (errors.AccessDeniedError, 403),
    (errors.RateLimitedError, 429),
    (KeyInUseError, 503),
    (SignedURLError, 403),
    (errors.MissingCollectionError, 404),
    (errors.MissingDatasetTypeError, 404),
    (errors.DatasetNotFoundError, 404),
    (errors.EmptyQueryResultError, 404),
    (errors.ConflictingDefinitionError, 409),
    (errors.InUseError, 409),
    (errors.StorageFullError, 507),
    (errors.PorterError, 422),
]


@dataclass
class ServerConfig:
    """How one server process serves one repository."""

    repository: Path
    max_page_size: int = 10_000
    """The most rows one page holds, whatever a client asks for."""
    default_page_size: int = 10_000
    url_lifetime: float = 3600.0
    """Seconds a signed download URL is honoured."""
    trusted_proxies: list[str] = field(default_factory=list)
    """Addresses or networks (CIDR) whose identity headers (``X-Auth-Request-User``, ``X-Auth-Request-Groups``)
    are trusted; empty: such headers are ignored and every request needs a token."""
    max_body_bytes: int = 1 << 20
    """Largest JSON request body (413 above it)."""
    inline_bytes: int = 256 << 10
    """Files up to this size come inside the answer of a get (one round trip instead of two)."""
    max_upload_bytes: int = 10 << 30
    """Largest file a put may upload (413 above it)."""
    concurrent_queries: int | None = 8
    """Queries one user may run at once, over all workers (429 beyond)."""
    requests_per_minute: int | None = None
    """Requests one user may make a minute, per worker (429 beyond); None: no limit."""
    download_bytes_per_day: int | None = None
    """Bytes one user may download a day (UTC), over all workers (429 beyond); None: no limit."""
    query_timeout: float = 300.0
    """Seconds one page of a query may run before the database stops it (QueryTimeoutError); also the longest a
    crashed worker's query slot stays taken."""
    path_prefix: str = ""
    """The URL path the server answers under (``/repo``: clients use ``http://host:port/repo``); requests
    whose prefix a reverse proxy already stripped are answered too.  Signed URLs carry it."""

    def __post_init__(self) -> None:
        self.path_prefix = check_path_prefix(self.path_prefix)


class _State:
    """What every request shares: the repository, its accounts, the signer, the metrics."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.butler = DirectButler(config.repository, writeable=True, preload=True)
        self.accounts = Accounts(self.butler.registry.db)
        self.signer = Signer(
            load_or_create_key(Path(config.repository) / SERVER_AREA / "server.key"), config.url_lifetime
        )
        self.metrics = ServerMetrics()
        self.idempotency = IdempotencyStore(self.butler.registry.db)
        self.small_files = ByteCache(64 << 20)
        _sweep_dead_uploads(Path(config.repository) / SERVER_AREA / "uploads")
        self.limits = Limits(
            self.butler.registry.db,
            UserLimits(
                concurrent_queries=config.concurrent_queries,
                requests_per_minute=config.requests_per_minute,
                download_bytes_per_day=config.download_bytes_per_day,
                query_timeout=config.query_timeout,
            ),
            slot_dir=Path(config.repository) / SERVER_AREA / "slots",
        )
        self.networks = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies]
        self.lock = threading.Lock()

    def count_download(self, who: Principal, size: int) -> None:
        """Count a download of ``size`` bytes handed to ``who`` (a signed URL, or the bytes inline): against
        their bytes of the day (`RetryLater` beyond the limit, nothing counted) and in the metrics.  The API's
        get and the dashboard's download link both count here."""
        self.limits.count_download(who.actor, size)
        self.metrics.downloads.inc()

    def trusted_peer(self, host: str | None) -> bool:
        if not self.networks or host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in n for n in self.networks)


_DETAIL_FIELDS = ("expression", "position", "reason", "reasons")
"""Attributes some exceptions are built from (a syntax error's caret, an empty query's reasons), sent along so
the client rebuilds the same exception."""


def _error_body(exc: BaseException) -> dict[str, Any]:
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    detail = {k: getattr(exc, k) for k in _DETAIL_FIELDS if hasattr(exc, k)}
    return {"error": type(exc).__name__, "message": message, "detail": detail}


def _status_of(exc: BaseException) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def create_app(config: ServerConfig) -> FastAPI:
    """The application serving ``config.repository`` (uvicorn's ``--factory`` target is `app_from_environment`)."""
    state = _State(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.metrics.close()
        state.butler.close()

    app = FastAPI(
        title="porter",
        summary="A porter data repository shared over HTTP: the Butler API with per-collection access.",
        version="1",
        lifespan=lifespan,
    )
    app.state.porter = state

    @app.exception_handler(errors.PorterError)
    async def porter_error(request: Request, exc: errors.PorterError) -> JSONResponse:
        retry = isinstance(exc, (RetryLater, KeyInUseError))
        headers = {"Retry-After": str(getattr(exc, "retry_after", 1))} if retry else None
        return JSONResponse(_error_body(exc), status_code=_status_of(exc), headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """FastAPI's own refusals (no such route, a body that is not JSON …) in porter's error format."""
        names = {400: "InvalidRequest", 404: "NotFound", 405: "MethodNotAllowed", 411: "LengthRequired"}
        return JSONResponse(
            {"error": names.get(exc.status_code, "HTTPError"), "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return JSONResponse(
            {"error": "InvalidRequest", "message": f"Malformed request: {problems}"}, status_code=422
        )

    app.add_middleware(
        Gate,
        metrics=state.metrics,
        body_limit=config.max_body_bytes,
        bulk_limit=config.max_upload_bytes,
        bulk_paths=("/uploads/", f"{API_PREFIX}/import"),
        root_path=config.path_prefix,
    )

    async def principal(request: Request) -> Principal:
        """Who is asking (401 if the credentials are not good), counted against the request rate.

        A coroutine, so that FastAPI does not send it to the thread pool: a decision is cached (at most 2 s),
        so this is a dictionary look-up nearly always, cheaper than the hop to a thread.
        """
        who = _identify(request)
        state.limits.count_request(who.actor)
        return who

    def _identify(request: Request) -> Principal:
        if state.networks:
            user = request.headers.get("x-auth-request-user")
            if user and state.trusted_peer(request.client.host if request.client else None):
                groups = [
                    g.strip()
                    for g in request.headers.get("x-auth-request-groups", "").split(",")
                    if g.strip()
                ]
                return state.accounts.from_proxy(user, groups)
        header = request.headers.get("authorization")
        if header is None:
            anonymous = state.accounts.anonymous()
            if anonymous.read_patterns is None:  # nothing is public here
                raise AuthenticationError(
                    "This server needs a token: Authorization: Bearer <token> (porter admin token issue)."
                )
            return anonymous
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Send the token as 'Authorization: Bearer <token>'.")
        return state.accounts.authenticate(token.strip())

    Caller = Depends(principal)

    def _signed_in(who: Principal, doing: str = "Writing") -> str:
        """The caller's user name; `AuthenticationError` for an anonymous caller (reads of public collections only)."""
        if who.user is None:
            raise AuthenticationError(f"{doing} needs a token: Authorization: Bearer <token>.")
        return who.user

    def _once(request: Request, who: Principal, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``write()``, done once per idempotency key the client sent (its retries get the first answer)."""
        return state.idempotency.once(who.actor, request.headers.get("idempotency-key"), write)

    # --- service --------------------------------------------------------------------------------

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness and readiness: the repository's database answers."""
        state.butler.collections.query("porter_healthz_probe*")
        return {"status": "ok"}

    @app.get("/metrics", tags=["service"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: requests, latencies and errors by endpoint, active queries."""
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    # --- repository -----------------------------------------------------------------------------

    @app.get(f"{API_PREFIX}/repository", tags=["repository"])
    def repository(who: Principal = Caller) -> dict[str, Any]:
        """What a client needs to work with this repository: the dimension universe and the server's limits."""
        universe = state.butler.dimensions
        return {
            "universe": universe.config_text,
            "max_page_size": config.max_page_size,
            "default_page_size": config.default_page_size,
            "user": who.user,
        }

    @app.get(f"{API_PREFIX}/dataset-types", tags=["dataset types"])
    def dataset_types(expression: str = "*", who: Principal = Caller) -> list[dict[str, Any]]:
        """Dataset types whose names match a glob (or an exact name)."""
        return [dataset_type_to_json(t) for t in state.butler.query_dataset_types(expression)]

    @app.get(f"{API_PREFIX}/dataset-types/{{name}}", tags=["dataset types"])
    def dataset_type(name: str, who: Principal = Caller) -> dict[str, Any]:
        """One dataset type; 404 (MissingDatasetTypeError, with a suggestion) if there is none."""
        return dataset_type_to_json(state.butler.get_dataset_type(name))

    @app.post(f"{API_PREFIX}/dataset-types", tags=["dataset types"])
    def register_dataset_type(
        body: RegisterDatasetType, request: Request, who: Principal = Caller
    ) -> dict[str, Any]:
        """Define a dataset type (needs a write-scoped token)."""

        def write() -> dict[str, Any]:
            _signed_in(who)
            if "write" not in who.scopes and not who.is_admin:
                raise errors.AccessDeniedError(
                    "Registering a dataset type needs a token with the write scope."
                )
            created = state.butler.register_dataset_type(
                body.name, body.dimensions, body.storage_class, is_calibration=body.is_calibration
            )
            if created:
                state.accounts.audit(who.user, "register_dataset_type", body.name, body.model_dump())
            return {"created": created}

        return _once(request, who, write)

    # --- collections ----------------------------------------------------------------------------

    @app.get(f"{API_PREFIX}/collections", tags=["collections"])
    def collections(
        expression: str = "*",
        types: str = "",
        flatten_chains: bool = False,
        include_chains: bool | None = None,
        who: Principal = Caller,
    ) -> list[dict[str, Any]]:
        """Collections the caller may read that match the expression, with type, doc and readable children."""
        kinds = [CollectionType.from_name(t) for t in types.split(",") if t] or None
        patterns = [e for e in expression.split(",") if e] or ["*"]
        names: list[str] = []
        for pattern in patterns:
            if "*" in pattern or "?" in pattern or "[" in pattern:
                names += state.butler.collections.query(pattern, kinds, flatten_chains, include_chains)
            else:
                require_readable(state.butler, who, pattern)
                names += state.butler.collections.query(pattern, kinds, flatten_chains, include_chains)
        seen: set[str] = set()
        out = []
        for name in who.readable(names):
            if name not in seen:
                seen.add(name)
                out.append(readable_info(state.butler, who, state.butler.collections.get_info(name)))
        return out

    @app.get(f"{API_PREFIX}/collections/{{name:path}}", tags=["collections"])
    def collection(name: str, who: Principal = Caller) -> dict[str, Any]:
        """One collection; 404 if it does not exist or the caller may not read it (the two look the same)."""
        return readable_info(state.butler, who, require_readable(state.butler, who, name))

    @app.post(f"{API_PREFIX}/collections", tags=["collections"])
    def register_collection(
        body: RegisterCollection, request: Request, who: Principal = Caller
    ) -> dict[str, Any]:
        """Create a collection the caller may write (RUN by default)."""

        def write() -> dict[str, Any]:
            _writer(who, body.name)
            created = state.butler.collections.register(
                body.name, CollectionType.from_name(body.type), body.doc
            )
            if created:
                state.accounts.audit(who.user, "register_collection", body.name, body.model_dump())
            return {"created": created}

        return _once(request, who, write)

    @app.post(f"{API_PREFIX}/collections/{{name:path}}/chain", tags=["collections"])
    def change_chain(
        name: str, body: ChainChange, request: Request, who: Principal = Caller
    ) -> dict[str, Any]:
        """Set, extend, prepend to or remove from a chain's children: write access to the chain, read to each child."""

        def write() -> dict[str, Any]:
            _writer(who, name)
            for child in body.children:
                require_readable(state.butler, who, child)
            collections = state.butler.collections
            if body.action != "redefine":
                require_readable(state.butler, who, name)
            {
                "redefine": collections.redefine_chain,
                "extend": collections.extend_chain,
                "prepend": collections.prepend_chain,
                "remove": collections.remove_from_chain,
            }[body.action](name, body.children)
            state.accounts.audit(who.user, f"chain.{body.action}", name, {"children": body.children})
            return readable_info(state.butler, who, collections.get_info(name))

        return _once(request, who, write)

    @app.delete(f"{API_PREFIX}/collections/{{name:path}}", tags=["collections"])
    def remove_collection(name: str, request: Request, who: Principal = Caller) -> dict[str, Any]:
        """Remove a collection (refused while a chain holds it or a run has datasets: use remove-runs)."""

        def write() -> dict[str, Any]:
            _writer(who, name)
            require_readable(state.butler, who, name)
            state.butler.collections.x_remove(name)
            state.accounts.audit(who.user, "collection.remove", name)
            return {"removed": name}

        return _once(request, who, write)

    @app.post(f"{API_PREFIX}/remove-runs", tags=["collections"])
    def remove_runs(body: RemoveRuns, request: Request, who: Principal = Caller) -> dict[str, Any]:
        """Delete RUN collections with their datasets and files (write access to every one, or nothing happens)."""

        def write() -> dict[str, Any]:
            for name in body.names:
                _writer(who, name)
                require_readable(state.butler, who, name)
            removed = state.butler.remove_runs(body.names)
            state.accounts.audit(who.user, "remove_runs", ",".join(body.names), {"datasets": removed})
            return {"removed": removed}

        return _once(request, who, write)

    @app.post(f"{API_PREFIX}/prune-datasets", tags=["datasets"])
    def prune_datasets(body: PruneDatasets, request: Request, who: Principal = Caller) -> dict[str, Any]:
        """`Butler.prune_datasets`: write access to the runs whose files or datasets go (unstore, purge) and to
        every TAGGED collection they leave; each dataset must be readable.  All or none."""

        def write() -> dict[str, Any]:
            _signed_in(who)
            refs = [_readable_ref(who, i) for i in body.dataset_ids]
            runs = sorted({r.run for r in refs}) if body.unstore or body.purge else []
            for name in runs:
                _writer(who, name)
            for tag in body.tags:
                _writer(who, tag)
                require_readable(state.butler, who, tag)
            pruned = state.butler.prune_datasets(
                refs, disassociate=body.disassociate, unstore=body.unstore, tags=body.tags, purge=body.purge
            )
            state.accounts.audit(
                who.user,
                "prune_datasets",
                ",".join([*runs, *body.tags]),
                {"datasets": pruned, "unstore": body.unstore, "purge": body.purge, "tags": body.tags},
            )
            return {"pruned": pruned}

        return _once(request, who, write)

    @app.post(f"{API_PREFIX}/certify", tags=["collections"])
    def certify(body: Certify, request: Request, who: Principal = Caller) -> dict[str, Any]:
        """Certify readable datasets into a CALIBRATION collection (write access to it) for a validity range."""

        def write() -> dict[str, Any]:
            _writer(who, body.collection)
            require_readable(state.butler, who, body.collection)
            refs = [_readable_ref(who, i) for i in body.dataset_ids]
            timespan = decode_value(body.timespan)
            if not isinstance(timespan, Timespan):
                raise errors.PorterError("certify needs a validity range (a Timespan) in 'timespan'.")
            state.butler.registry.certify(body.collection, refs, timespan)
            state.accounts.audit(
                who.user, "certify", body.collection, {"datasets": len(refs), "timespan": str(timespan)}
            )
            return {"certified": len(refs)}

        return _once(request, who, write)

    # --- queries --------------------------------------------------------------------------------

    def _as_client(defaults: Defaults) -> DirectButler:
        """The repository's butler with the client's governor defaults (a view; nothing is shared across requests)."""
        return state.butler.with_defaults(GovernorDefaults(_decoded(defaults.values), defaults.ambiguous))

    @app.post(f"{API_PREFIX}/defaults", tags=["queries"])
    def infer_defaults(body: InferDefaults, who: Principal = Caller) -> dict[str, Any]:
        """The governor defaults of a client opened with these collections: explicit ones, and the values
        inferred from the datasets of the readable ones (unreadable ones count as missing, which are ignored)."""
        names = who.readable(body.collections)  # the registry ignores those that do not exist
        found = state.butler.infer_defaults(names, _decoded(body.explicit), body.infer)
        return {"values": {k: encode_value(v) for k, v in found.items()}, "ambiguous": found.ambiguous}

    def _search(who: Principal, names: list[str], find_first: bool) -> list[str]:
        if find_first:
            for name in names:
                if "*" in name or "?" in name:
                    raise errors.MissingCollectionError(
                        f"find_first needs an ordered list of collections, not the pattern {name!r}; "
                        "pass find_first=False to search every matching collection."
                    )
        return readable_collections(state.butler, who, names or state.butler.collections.defaults)

    def _decoded(values: dict[str, Any]) -> dict[str, Any]:
        return {k: decode_value(v) for k, v in values.items()}

    def _bind(body: Any) -> dict[str, Any]:
        bind = _decoded(body.bind)
        clash = [k for k in bind if k.startswith(CURSOR_BIND_PREFIX)]
        if clash:
            raise errors.InvalidQueryError(
                f"Bind names starting with {CURSOR_BIND_PREFIX!r} are reserved: rename {clash[0]!r}."
            )
        return bind

    def _page_rows(body: Any) -> int:
        size = min(body.page_size or config.default_page_size, config.max_page_size)
        if body.limit is not None and body.limit > 0:
            size = min(size, body.limit)
        return size

    def _paged(
        who: Principal,
        body: Any,
        run: Callable[[str, dict[str, Any], list[str], int, bool], list[Any]],
        terms: list[Any],
        encode: Callable[[list[Any]], dict[str, Any]],
    ) -> Response:
        """One page of a query: ``run(where, bind, order_by, limit, explain)`` after the cursor's row.

        When the order is ascending dimension keys (and the dataset ID), the page boundary is one row-value
        comparison that the tables' data-ID indexes serve as a range scan (`Registry.rows_after`); any
        other order is bounded by an equivalent ``where`` expression.
        """
        query_id = fingerprint(body.model_dump())
        where, bind = body.where, _bind(body)
        after: Any = contextlib.nullcontext()
        if body.cursor:
            values = decode_cursor(body.cursor, query_id)
            if by_row_value(terms):
                after = state.butler.registry.rows_after([t.identifier for t in terms], values)
            else:
                boundary, boundary_bind = keyset_where(terms, values)
                where = f"({where}) AND {boundary}" if where.strip() else boundary
                bind |= boundary_bind
        order_by = [t.order_by for t in terms]
        if body.limit == 0:
            with after:
                run(where, bind, order_by, 0, False)
            return _json({"columns": [], "rows": [], "next_cursor": None})
        size = _page_rows(body)
        with (
            state.limits.query_slot(who.actor),
            state.metrics.active_query(),
            state.butler.registry.db.time_limit(config.query_timeout),
            after,
        ):
            rows = run(where, bind, order_by, size + 1, body.explain and not body.cursor)
        more = len(rows) > size
        rows = rows[:size]
        cursor = encode_cursor([t.value_of(rows[-1]) for t in terms], query_id) if more and rows else None
        return _json({**encode(rows), "next_cursor": cursor})

    def _records_json(data_id: DataCoordinate) -> dict[str, Any] | None:
        if not data_id.has_records:
            return None
        return {e: (record_to_json(r) if r is not None else None) for e, r in data_id.records.items()}

    @app.post(f"{API_PREFIX}/query/datasets", tags=["queries"])
    def query_datasets(body: DatasetQuery, who: Principal = Caller) -> Response:
        """One page of `Butler.query_datasets`; pass ``next_cursor`` back for the next page."""
        dt = state.butler.get_dataset_type(body.dataset_type)
        names = _search(who, body.collections, body.find_first)
        terms, needs_records = order_terms(
            state.butler.dimensions,
            body.order_by,
            dataset_index_order(dt.dimensions),
            dataset_id=not body.find_first,
        )

        def run(
            where: str, bind: dict[str, Any], order_by: list[str], limit: int, explain: bool
        ) -> list[Any]:
            return _as_client(body.defaults).query_datasets(
                dt.name,
                names,
                find_first=body.find_first,
                data_id=_decoded(body.data_id),
                where=where,
                bind=bind,
                order_by=order_by,
                limit=limit,
                explain=explain,
                with_dimension_records=body.with_dimension_records or needs_records,
                **_decoded(body.kwargs),
            )

        def encode(refs: list[DatasetRef]) -> dict[str, Any]:
            columns, rows = data_id_rows([r.data_id for r in refs], dt.dimensions)
            page: dict[str, Any] = {
                "columns": ["id", "run", *columns],
                "rows": [[r.id_hex, r.run, *row] for r, row in zip(refs, rows)],
            }
            if body.with_dimension_records:
                page["records"] = [_records_json(r.data_id) for r in refs]
            return page

        return _paged(who, body, run, terms, encode)

    @app.post(f"{API_PREFIX}/query/data-ids", tags=["queries"])
    def query_data_ids(body: DataIdQuery, who: Principal = Caller) -> Response:
        """One page of `Butler.query_data_ids`."""
        group = state.butler.dimensions.conform(body.dimensions)
        names = _search(who, body.collections, False) if body.datasets else None
        terms, needs_records = order_terms(state.butler.dimensions, body.order_by, dataset_index_order(group))

        def run(
            where: str, bind: dict[str, Any], order_by: list[str], limit: int, explain: bool
        ) -> list[Any]:
            return _as_client(body.defaults).query_data_ids(
                list(group.names),
                data_id=_decoded(body.data_id),
                where=where,
                bind=bind,
                datasets=body.datasets or None,
                collections=names,
                order_by=order_by,
                limit=limit,
                explain=explain,
                with_dimension_records=body.with_dimension_records or needs_records,
                **_decoded(body.kwargs),
            )

        def encode(data_ids: list[DataCoordinate]) -> dict[str, Any]:
            columns, rows = data_id_rows(data_ids, group)
            page: dict[str, Any] = {"columns": columns, "rows": rows}
            if body.with_dimension_records:
                page["records"] = [_records_json(d) for d in data_ids]
            return page

        return _paged(who, body, run, terms, encode)

    @app.post(f"{API_PREFIX}/query/dimension-records", tags=["queries"])
    def query_dimension_records(body: RecordQuery, who: Principal = Caller) -> Response:
        """One page of `Butler.query_dimension_records`."""
        element = state.butler.dimensions[body.element]
        names = _search(who, body.collections, False) if body.datasets else None
        terms, _ = order_terms(
            state.butler.dimensions,
            body.order_by,
            [
                n
                for n in dataset_index_order(element.minimal_group)
                if n in {d.name for d in element.required}
            ],
            element=element.name,
        )

        def run(
            where: str, bind: dict[str, Any], order_by: list[str], limit: int, explain: bool
        ) -> list[Any]:
            return _as_client(body.defaults).query_dimension_records(
                element.name,
                data_id=_decoded(body.data_id),
                where=where,
                bind=bind,
                datasets=body.datasets or None,
                collections=names,
                order_by=order_by,
                limit=limit,
                explain=explain,
                **_decoded(body.kwargs),
            )

        return _paged(who, body, run, terms, lambda records: {"rows": [record_to_json(r) for r in records]})

    @app.post(f"{API_PREFIX}/find-dataset", tags=["queries"])
    async def find_dataset(body: FindDataset, who: Principal = Caller) -> Response:
        """`Butler.find_dataset`: the first dataset of the type and data ID in the readable collections.

        Run on the event loop, not in the thread pool: one indexed look-up, shorter than the hop to a thread.
        """
        names = _search(who, body.collections, True)
        ref = _as_client(body.defaults).find_dataset(
            body.dataset_type,
            _decoded(body.data_id),
            collections=names,
            timespan=decode_value(body.timespan),
        )
        return _json(ref_to_json(ref) if ref is not None else None)

    def _readable_ref(who: Principal, dataset_id: str) -> DatasetRef:
        try:
            ref = state.butler.get_dataset(dataset_id)
        except (ValueError, errors.PorterError):
            ref = None
        if ref is None or not who.can_read(ref.run):
            raise errors.DatasetNotFoundError(f"No dataset with ID {dataset_id!r}.")
        return ref

    @app.get(f"{API_PREFIX}/datasets/{{dataset_id}}", tags=["datasets"])
    async def get_dataset(dataset_id: str, who: Principal = Caller) -> Response:
        """The dataset with this UUID (404 if there is none, or it is in a run the caller may not read)."""
        return _json(ref_to_json(_readable_ref(who, dataset_id)))

    @app.get(f"{API_PREFIX}/provenance/{{dataset_id}}", tags=["datasets"])
    def provenance(dataset_id: str, who: Principal = Caller) -> Response:
        """How a dataset was made, back to the raws (``porter provenance``): the quanta that made it and their
        inputs.  Inputs in runs the caller may not read are left out, as if they did not exist."""
        from ..pipeline import dataset_provenance

        ref = _readable_ref(who, dataset_id)
        tree = _visible_provenance(who, dataset_provenance(state.butler, str(ref.id)).to_dict())
        return Response(orjson.dumps(tree, default=str), media_type="application/json")

    # --- bytes ----------------------------------------------------------------------------------

    @app.post(f"{API_PREFIX}/get", tags=["datasets"])
    async def get(body: GetRequest, request: Request, who: Principal = Caller) -> Response:
        """Where to download a dataset's file from (a signed URL), with what the client needs to read it.

        With ``inline``, a small file's bytes come in the answer (kept in memory for the next asker: a
        dataset's file never changes, and the key holds its checksum).  A look-up and a local read run on the
        event loop; an S3 read goes to the thread pool.
        """
        ref = _readable_ref(who, body.dataset_id)
        location = state.butler.datastore.locations([ref.id]).get(ref.id)
        if location is None:
            raise errors.ArtifactMissingError(
                f"{ref.dataset_type.name}@{dict(ref.data_id.required)} in {ref.run!r} has no stored file."
            )
        uri = state.butler.datastore.uri_of(location.path)
        if isinstance(uri, S3URI):
            url = uri.signed_url(int(config.url_lifetime))
        else:
            base = str(request.base_url).rstrip("/")
            url = f"{base}/files/{ref.id.hex}?{state.signer.query(ref.id, who.user)}"
        state.count_download(who, location.size or 0)
        answer: dict[str, Any] = {
            "ref": ref_to_json(ref),
            "url": url,
            "size": location.size,
            "checksum": location.checksum,
            "formatter": location.formatter,
            "storage_class": location.storage_class,
            "extension": uri.getExtension(),
            "name": uri.name,
            "path": uri.relative_to(state.butler.datastore.root) or f"direct/{ref.id.hex}/{uri.name}",
        }
        if body.inline and location.size is not None and location.size <= config.inline_bytes:
            key = (location.path, location.checksum or "")
            content = state.small_files.get(key)
            if content is None:
                content = uri.read() if isinstance(uri, LocalURI) else await run_in_threadpool(uri.read)
                state.small_files.put(key, content)
            answer["content"] = base64.b64encode(content).decode()
        return _json(answer)

    @app.get("/files/{dataset_id}", tags=["datasets"], response_class=FileResponse)
    def download(dataset_id: str, user: str, expires: str, signature: str, request: Request) -> Response:
        """The bytes of a file-datastore dataset, behind a signed, expiring URL bound to the dataset and user."""
        presenter: str | None = None
        if request.headers.get("authorization"):
            presenter = _identify(request).user
        checked = state.signer.check(dataset_id, user, expires, signature, presenter)
        location = state.butler.datastore.locations([checked]).get(checked)
        if location is None:
            raise errors.DatasetNotFoundError(f"No stored file for dataset {dataset_id}.")
        uri = state.butler.datastore.uri_of(location.path)
        if not isinstance(uri, LocalURI):
            raise errors.DatastoreError("This dataset is not in a file datastore; ask for a new URL.")
        return FileResponse(uri.ospath, media_type="application/octet-stream")

    # --- writes ---------------------------------------------------------------------------------

    def _writer(who: Principal, run: str) -> str:
        user = _signed_in(who)
        if not who.can_write(run):
            raise errors.AccessDeniedError(f"You may not write to {run!r}: ask for a write grant on it.")
        return user

    @app.post(f"{API_PREFIX}/dimension-records", tags=["datasets"])
    def insert_dimension_records(
        body: InsertRecords, request: Request, who: Principal = Caller
    ) -> dict[str, Any]:
        """Add dimension records, skipping those already there.  Adding new ones needs an admin token (they are
        the whole repository's); a transfer whose records all exist passes with any write token."""

        def write() -> dict[str, Any]:
            _signed_in(who)
            element = state.butler.dimensions[body.element]
            records = [record_from_json(element.name, r, state.butler.dimensions) for r in body.records]
            if not who.is_admin:
                have = {
                    r.key_values for r in state.butler.query_dimension_records(element.name, explain=False)
                }
                new = [r for r in records if r.key_values not in have]
                if new:
                    raise errors.AccessDeniedError(
                        f"{len(new)} new {element.name} record(s), e.g. {new[0]!r}: adding dimension records needs "
                        "an admin token."
                    )
                return {"added": 0}
            added = state.butler.insert_dimension_records(element, records, skip_existing=True)
            state.accounts.audit(who.user, "insert_dimension_records", element.name, {"given": added})
            return {"added": added}

        return _once(request, who, write)

    def _admin(who: Principal, what: str) -> str:
        user = _signed_in(who, what)
        if not who.is_admin:
            raise errors.AccessDeniedError(f"{what} needs a token with the admin scope.")
        return user

    @app.post(f"{API_PREFIX}/ingest", tags=["datasets"])
    def ingest(body: IngestRequest, request: Request, who: Principal = Caller) -> dict[str, Any]:
        """Register files already in the datastore's area as datasets (write access to every run; all or none)."""

        def write() -> dict[str, Any]:
            root = state.butler.datastore.root
            datasets = []
            for item in body.datasets:
                for r in item.refs:
                    _writer(who, r.run)
                try:
                    uri = root.join(item.path)
                except ValueError as exc:
                    raise errors.DatastoreError(f"Refused path {item.path!r}: {exc}") from None
                refs = []
                for r in item.refs:
                    dt = state.butler.get_dataset_type(r.dataset_type)
                    data_id = DataCoordinate.standardize(_decoded(r.data_id), dimensions=dt.dimensions)
                    refs.append(DatasetRef(dt, data_id, r.run, id=r.dataset_id))
                datasets.append(FileDataset(uri, refs, formatter=item.formatter))
            stored = state.butler.ingest(*datasets, transfer=body.transfer)
            state.accounts.audit(
                who.user, "ingest", ",".join(sorted({r.run for r in stored})), {"datasets": len(stored)}
            )
            return {"refs": [ref_to_json(r) for r in stored]}

        return _once(request, who, write)

    @app.post(f"{API_PREFIX}/import", tags=["datasets"])
    async def import_(request: Request, skip_dimensions: str = "") -> JSONResponse:
        """Import an export file (porter's or daf_butler's YAML, records and registry entries, no files); admin only.

        ``skip_dimensions``: comma-separated dimension elements not to import.
        """
        who = await principal(request)
        _admin(who, "Importing an export file")
        skip = [e.strip() for e in skip_dimensions.split(",") if e.strip()]
        path = _scratch_file("import")
        try:
            too_big = f"The export file is larger than this server takes ({config.max_upload_bytes} bytes)."
            await _receive(request, path, config.max_upload_bytes, errors.ExportFormatError(too_big))
            counts = await run_in_threadpool(lambda: state.butler.import_(path, skip_dimensions=skip))
        finally:
            path.unlink(missing_ok=True)
        state.accounts.audit(who.user, "import", "", {"counts": counts})
        return JSONResponse({"counts": counts})

    @app.post(f"{API_PREFIX}/export", tags=["datasets"], response_class=FileResponse)
    def export(body: ExportRequest, who: Principal = Caller) -> Response:
        """An export file (YAML, readable by porter and daf_butler) of collections and/or datasets; admin only."""
        _admin(who, "Exporting")
        if not (body.collections or body.dataset_ids or body.include_all_dimensions):
            raise errors.ExportFormatError(
                "Nothing to export: name collections, dataset_ids, or set include_all_dimensions."
            )
        scratch = Path(config.repository) / SERVER_AREA / "exports"
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f"export.{os.getpid()}.{uuid.uuid4().hex[:8]}.yaml"
        refs = [_readable_ref(who, i) for i in body.dataset_ids]
        state.butler.export(
            path,
            collections=body.collections or None,
            datasets=refs if body.dataset_ids else None,
            dataset_types=body.dataset_types or None,
            where=body.where,
            include_all_dimensions=body.include_all_dimensions,
        )
        text = path.read_bytes()
        path.unlink(missing_ok=True)
        return Response(text, media_type="application/x-yaml")

    def _scratch_file(stem: str) -> Path:
        """A new file name for a request body, ``<stem>.<pid>.<nonce>.part`` (swept when its process is gone)."""
        scratch = Path(config.repository) / SERVER_AREA / "uploads"
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch / f"{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"

    async def _receive(request: Request, path: Path, limit: int, too_big: errors.PorterError) -> int:
        """Stream the request body into ``path``; ``too_big`` once it passes ``limit`` bytes.  Its size."""
        size = 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_big
                out.write(chunk)
        return size

    @app.post(f"{API_PREFIX}/uploads", tags=["datasets"])
    def start_upload(body: UploadRequest, request: Request, who: Principal = Caller) -> dict[str, Any]:
        """Check a put before its bytes move, and answer with the signed URL to PUT the file to."""
        user = _writer(who, body.run)
        existing = state.butler.get_dataset(body.dataset_id)
        if existing is not None:  # a retry after the upload completed: the same dataset, not a second one
            return {"ref": ref_to_json(existing), "upload_url": None}
        butler = _as_client(body.defaults)
        dt = butler.get_dataset_type(body.dataset_type)
        data_id = butler.resolve_data_id(dt, _decoded(body.data_id))
        try:
            info: Any = state.butler.collections.get_info(body.run)
        except errors.MissingCollectionError:
            info = None  # the ingest creates the run
        if info and info.type is not CollectionType.RUN:
            raise errors.CollectionTypeError(
                f"{body.run!r} is a {info.type.name} collection; put() writes to RUN collections."
            )
        if info and state.butler.find_dataset(dt, data_id, collections=[body.run]) is not None:
            raise errors.ConflictingDefinitionError(
                f"{dt.name}@{dict(data_id.required)} in {body.run!r} already exists; porter never overwrites a dataset."
            )
        ticket = UploadTicket(
            dataset_id=body.dataset_id,
            dataset_type=dt.name,
            data_id={k: encode_value(v) for k, v in data_id.mapping.items()},
            run=body.run,
            formatter=body.formatter,
            size=body.size,
            checksum=body.checksum,
            user=user,
            expires=int(time.time() + config.url_lifetime),
        )
        base = str(request.base_url).rstrip("/")
        return {"ref": None, "upload_url": f"{base}/uploads/{seal_ticket(state.signer, ticket)}"}

    @app.put("/uploads/{ticket}", tags=["datasets"])
    async def upload(ticket: str, request: Request) -> JSONResponse:
        """Receive a put's file, verify its size and checksum against the ticket, and store it atomically."""
        who = await principal(request)
        sealed = open_ticket(state.signer, ticket, who.user)
        _writer(who, sealed.run)
        existing = await run_in_threadpool(state.butler.get_dataset, sealed.dataset_id)
        if existing is not None:
            return JSONResponse({"ref": ref_to_json(existing)})
        path = _scratch_file(sealed.dataset_id)
        try:
            too_long = errors.DatastoreError(f"The upload is longer than the {sealed.size} bytes announced.")
            size = await _receive(request, path, sealed.size, too_long)
            ref = await run_in_threadpool(_store_upload, sealed, path, size, who)
        finally:
            path.unlink(missing_ok=True)
        return JSONResponse({"ref": ref_to_json(ref)})

    def _store_upload(sealed: UploadTicket, path: Path, size: int, who: Principal) -> DatasetRef:
        from ..datastore import checksum_file

        if size != sealed.size:
            raise errors.DatastoreError(
                f"The upload has {size} bytes, not the {sealed.size} announced: send it again."
            )
        if checksum_file(path) != sealed.checksum:
            raise errors.DatastoreError(
                "The upload does not match its checksum: it was damaged on the way; send it again."
            )
        dt = state.butler.get_dataset_type(sealed.dataset_type)
        data_id = DataCoordinate.standardize(
            {k: decode_value(v) for k, v in sealed.data_id.items()}, dimensions=dt.dimensions
        )
        ref = DatasetRef(dt, data_id, sealed.run, id=sealed.dataset_id)
        try:
            (stored,) = state.butler.ingest(
                FileDataset(path, ref, formatter=sealed.formatter), transfer="move"
            )
        except errors.ConflictingDefinitionError:
            again = state.butler.get_dataset(sealed.dataset_id)
            if again is None:
                raise
            return again  # a concurrent retry of the same upload stored it first
        state.accounts.audit(
            who.user, "put", sealed.run, {"dataset_id": sealed.dataset_id, "dataset_type": dt.name}
        )
        found = state.butler.find_dataset(dt, stored.data_id, collections=[sealed.run])
        return found if found is not None else stored  # with implied values, as a local put returns it

    return app


def _visible_provenance(who: Principal, node: dict[str, Any]) -> dict[str, Any]:
    """A provenance tree (`ProvenanceNode.to_dict`) without the inputs in runs ``who`` may not read."""
    if "inputs" not in node:
        return node
    inputs = [_visible_provenance(who, i) for i in node["inputs"] if who.can_read(str(i.get("run")))]
    return {**node, "inputs": inputs}


def _sweep_dead_uploads(scratch: Path) -> None:
    """Delete partial uploads whose receiving process is gone (``<dataset>.<pid>.<nonce>.part``), as a worker starts.

    Only this host's processes can be checked; a part of a live process (another worker) is left alone.
    """
    if not scratch.is_dir():
        return
    for part in scratch.glob("*.part"):
        fields = part.name.split(".")
        if len(fields) != 4 or not fields[1].isdigit():
            continue
        try:
            os.kill(int(fields[1]), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def _json(payload: Any) -> Response:
    """A JSON response written by orjson: a 10,000-row page in milliseconds, with no per-item validation pass."""
    return Response(orjson.dumps(payload), media_type="application/json")


def app_from_environment() -> FastAPI:
    """uvicorn's ``--factory`` target: the app for ``$PORTER_SERVER_CONFIG`` (JSON of `ServerConfig`), for workers."""
    import os

    raw = json.loads(os.environ["PORTER_SERVER_CONFIG"])
    raw["repository"] = Path(raw["repository"])
    return create_app(ServerConfig(**raw))
