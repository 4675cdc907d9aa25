"""`RemoteButler`: the `Butler` interface over HTTP, the client of ``porter serve``.

It imports neither SQLAlchemy nor a database driver: everything it knows
comes from the server (the dimension universe, dataset types, collections,
query pages) in `porter.core`'s wire format, and the bytes of a dataset come
from a signed URL, checked against the size and checksum the server recorded
before the file is read with the formatter that wrote it.

The server may live under a path (``http://host:8080/repo``, or a reverse
proxy's ``https://host/repo``): every request is made relative to that base
URL, and the token goes only to URLs below it (same scheme, host, port and
path prefix) — a signed URL pointing elsewhere (S3, another path of the same
host) is fetched without it, and a write URL pointing elsewhere is refused.  Requests are
retried with exponential backoff on 429 and 503 (honouring ``Retry-After``)
and on dropped connections; a paged query resumes from the last cursor it
received, so every row arrives exactly once.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import os
import random
import tempfile
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import orjson

from .. import errors
from ..core import (
    CollectionInfo,
    CollectionType,
    DatasetRef,
    DatasetType,
    dataset_type_from_json,
    encode_value,
    record_from_json,
    ref_from_json,
)
from ..dimensions import DataCoordinate, DimensionGroup, DimensionRecord, DimensionUniverse, Timespan
from ._butler import Butler
from ._collections import ButlerCollections
from ._deferred import DeferredDatasetHandle
from ._file_dataset import FileDataset

if TYPE_CHECKING:
    from ..datastore import ResourceURI
    from ._direct_butler import DirectButler

__all__ = ["RemoteButler", "token_for"]

API = "/api/v1"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
TOKEN_FILE = Path("~/.config/porter/tokens.yaml")
"""Tokens by server URL or origin: ``{"https://host/repo": "porter_…", "https://host:8080": "porter_…"}``, for a
client that names no token."""


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def server_base(url: str) -> str:
    """``url`` as the base every request is resolved against: ``scheme://host[:port][/path]``, no trailing slash.

    Anything that could make a request land elsewhere than meant is refused with a clear error: another
    scheme, no host, a query or fragment, user info, or a ``.``/``..`` path segment.
    """
    parts = urllib.parse.urlsplit(url.strip())
    problem = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "it needs http:// or https:// and a host"
    elif parts.query or parts.fragment:
        problem = "it may not have a query (?…) or fragment (#…)"
    elif parts.username or parts.password:
        problem = "the token goes in token= or $PORTER_TOKEN, not in the URL"
    elif any(seg in (".", "..") for seg in urllib.parse.unquote(parts.path).split("/")):
        problem = "its path may not have '.' or '..' segments"
    if problem:
        raise errors.RepositoryError(
            f"{url!r} is not a server URL ({problem}): use http(s)://host:port or http(s)://host:port/path."
        )
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def within(url: str, base: str) -> bool:
    """Whether ``url`` is below the server base URL ``base`` (same scheme, host, port, path prefix): only such
    URLs are sent the token."""
    parts = urllib.parse.urlsplit(url)
    if f"{parts.scheme}://{parts.netloc.lower()}" != _origin(base):
        return False
    path = urllib.parse.unquote(parts.path)
    if any(seg in (".", "..") for seg in path.split("/")):
        return False
    prefix = urllib.parse.unquote(urllib.parse.urlsplit(base).path)
    return path == prefix or path.startswith(prefix + "/")


def token_for(url: str, explicit: str | None = None) -> str | None:
    """The token for the server at ``url``: ``explicit``, else ``$PORTER_TOKEN``, else the token file's entry for
    the URL (``https://host/repo``) or, failing that, for its origin (``https://host``)."""
    if explicit:
        return explicit
    env = os.environ.get("PORTER_TOKEN")
    if env:
        return env
    path = Path(os.environ.get("PORTER_TOKEN_FILE", str(TOKEN_FILE))).expanduser()
    if not path.exists():
        return None
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        return None
    found = data.get(url.rstrip("/")) or data.get(_origin(url))
    return str(found) if found else None


def _rebuild_error(name: str, message: str, detail: Mapping[str, Any] | None) -> errors.PorterError:
    """The exception the server raised: its porter class, built from its own fields where it has them."""
    found = getattr(errors, name, None)
    cls = found if isinstance(found, type) and issubclass(found, errors.PorterError) else errors.PorterError
    if detail:
        with contextlib.suppress(TypeError):
            return cls(**detail)
    try:
        return cls(message)
    except TypeError:
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        return exc


def _quoted(name: str) -> str:
    """A collection name as one URL path segment ('/' included)."""
    return urllib.parse.quote(name, safe="")


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class RemoteCollections(ButlerCollections):
    """``butler.collections`` of a `RemoteButler`: the same methods, answered by the server."""

    def __init__(self, butler: RemoteButler):
        self._remote = butler

    @property
    def defaults(self) -> list[str]:
        return list(self._remote._default_collections)

    def register(
        self, name: str, type: CollectionType | str = CollectionType.RUN, doc: str | None = None
    ) -> bool:
        kind = CollectionType.from_name(type)
        answer = self._remote._call(
            "POST", "/collections", json={"name": name, "type": kind.name, "doc": doc}
        )
        return bool(answer["created"])

    def query(
        self,
        expression: Any = "*",
        collection_types: Any = None,
        flatten_chains: bool = False,
        include_chains: bool | None = None,
    ) -> list[str]:
        return [i.name for i in self.query_info(expression, collection_types, flatten_chains, include_chains)]

    def query_info(
        self,
        expression: Any = "*",
        collection_types: Any = None,
        flatten_chains: bool = False,
        include_chains: bool | None = None,
    ) -> list[CollectionInfo]:
        kinds = (
            []
            if collection_types is None
            else _names(collection_types)
            if not isinstance(collection_types, CollectionType)
            else [collection_types]
        )
        params: dict[str, Any] = {
            "expression": ",".join(_names(expression)) or "*",
            "types": ",".join(CollectionType.from_name(k).name for k in kinds),
            "flatten_chains": flatten_chains,
        }
        if include_chains is not None:
            params["include_chains"] = include_chains
        return [self._info(i) for i in self._remote._call("GET", "/collections", params=params)]

    @staticmethod
    def _info(data: Mapping[str, Any]) -> CollectionInfo:
        return CollectionInfo(
            name=data["name"],
            type=CollectionType.from_name(data["type"]),
            doc=data["doc"],
            children=tuple(data["children"]),
        )

    def get_info(self, name: str) -> CollectionInfo:
        return self._info(self._remote._call("GET", f"/collections/{_quoted(name)}"))

    def _change(self, action: str, parent: str, children: str | Sequence[str]) -> None:
        self._remote._call(
            "POST",
            f"/collections/{_quoted(parent)}/chain",
            json={"action": action, "children": _names(children)},
        )

    def redefine_chain(self, parent: str, children: str | Sequence[str]) -> None:
        self._change("redefine", parent, children)

    def extend_chain(self, parent: str, children: str | Sequence[str]) -> None:
        self._change("extend", parent, children)

    def prepend_chain(self, parent: str, children: str | Sequence[str]) -> None:
        self._change("prepend", parent, children)

    def remove_from_chain(self, parent: str, children: str | Sequence[str]) -> None:
        self._change("remove", parent, children)

    def x_remove(self, name: str) -> None:
        self._remote._call("DELETE", f"/collections/{_quoted(name)}")

    remove = x_remove


class RemoteButler(Butler):
    """A repository served by ``porter serve``, through the same methods as a local one.

    Parameters
    ----------
    config : `str`
        The server's URL, ``http(s)://host:port`` or ``http(s)://host:port/path`` (a server started with
        ``--path-prefix /path``, or behind a reverse proxy at that path).
    token : `str`, optional
        A token from ``porter admin token issue``; default ``$PORTER_TOKEN``,
        then the token file (``~/.config/porter/tokens.yaml``, by origin).
    collections, run, writeable, inferDefaults, **kwargs
        As for `DirectButler`: default collections, default run, read-only
        switch, governor defaults (``instrument="HSC"``).
    page_size : `int`, optional
        Rows per page of a query (the server caps it).
    retries : `int`
        How many times a request is retried on 429/503 or a dropped connection.
    timeout : `float`
        Seconds to wait for one response.
    """

    def __init__(
        self,
        config: str | None = None,
        *,
        token: str | None = None,
        collections: str | Sequence[str] | None = None,
        run: str | None = None,
        writeable: bool | None = None,
        inferDefaults: bool = True,
        page_size: int | None = None,
        retries: int = 6,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ):
        if config is None or not config.startswith(("http://", "https://")):
            raise errors.RepositoryError(
                f"RemoteButler needs a server URL (http://host:port or http://host:port/path), not {config!r}."
            )
        self.url = server_base(config)
        self._token = token_for(self.url, token)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self._plain = httpx.Client(timeout=timeout)  # for signed URLs on other hosts: never carries the token
        self._retries = retries
        self.writeable = True if writeable is None else writeable
        info = self._call("GET", "/repository")
        text = info["universe"]
        default = DimensionUniverse.default()
        self._universe = default if text == default.config_text else DimensionUniverse.from_yaml(text)
        self._page_size = page_size or int(info["default_page_size"])
        self._run = run
        self._default_collections = tuple(_names(collections)) or ((run,) if run else ())
        self._governors = dict(kwargs)
        self._infer = inferDefaults
        self._defaults_json: dict[str, Any] | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._types: dict[str, DatasetType] = {}
        self._storage_classes: Any = (
            None  # porter's storage classes, read when a file is first read or written
        )
        self.collections = RemoteCollections(self)
        if run is not None and self.writeable:
            self.collections.register(run, CollectionType.RUN)

    # --- HTTP -----------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if path.startswith(("http://", "https://")) and not within(path, self.url):
            raise errors.ServerError(
                f"{self.url} pointed this client at a URL outside it ({path.split('?')[0]}); refused: the "
                "token goes to this server only."
            )
        delay = 0.2
        for attempt in range(self._retries + 1):
            try:
                target = path if path.startswith(("http://", "https://")) else API + path
                response = self._http.request(method, target, **kwargs)
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
                if attempt == self._retries:
                    raise errors.ServerError(f"{self.url} did not answer {method} {path}: {exc}") from None
            else:
                if response.status_code not in RETRY_STATUSES or attempt == self._retries:
                    return response
                after = response.headers.get("retry-after")
                if after and after.isdigit():
                    if int(after) > 60:
                        return response  # a daily quota: waiting here would hang the caller for hours
                    delay = max(delay, float(after))
            time.sleep(delay * (1 + random.random() / 4))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if method != "GET":  # one key for the call and all its retries: the server does a write once
            kwargs["headers"] = {**kwargs.get("headers", {}), "Idempotency-Key": uuid.uuid4().hex}
        response = self._send(method, path, **kwargs)
        if response.status_code < 400:
            return orjson.loads(response.content)
        self._raise(response, method, path)

    def _raise(self, response: httpx.Response, method: str, path: str) -> NoReturn:
        """The exception the server's error answer stands for."""
        try:
            body = response.json()
            name, message, detail = body["error"], body["message"], body.get("detail")
        except (ValueError, KeyError, TypeError):
            raise errors.ServerError(
                f"{self.url} answered {method} {path} with {response.status_code}: {response.text[:300]}"
            ) from None
        if response.status_code == 401:
            raise errors.AuthenticationError(message)
        if response.status_code == 403:
            raise errors.AccessDeniedError(message)
        if response.status_code == 429:
            raise errors.RateLimitedError(message)
        if response.status_code >= 500:
            raise errors.ServerError(f"{self.url}: {message}")
        raise _rebuild_error(name, message, detail)

    # --- state ----------------------------------------------------------------------------------

    @property
    def run(self) -> str | None:
        return self._run

    @property
    def dimensions(self) -> DimensionUniverse:
        return self._universe

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
        self._plain.close()

    def __repr__(self) -> str:
        return f"RemoteButler({self.url!r})"

    @property
    def _storage_class_registry(self) -> Any:
        """porter's storage classes (and formatters), loaded on first use: a client that only queries never reads them."""
        if self._storage_classes is None:
            from ..datastore import StorageClassRegistry

            self._storage_classes = StorageClassRegistry.default()
        return self._storage_classes

    def _collections_or_default(self, collections: str | Sequence[str] | None) -> list[str]:
        names = _names(collections) or list(self._default_collections)
        if not names:
            raise errors.NoDefaultCollectionError(
                "No collections given and this butler has no default collections: pass collections=… or "
                "open it with Butler(url, collections=…)."
            )
        return names

    def _constraints(self, data_id: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        given = data_id.mapping if isinstance(data_id, DataCoordinate) else dict(data_id or {})
        return {k: encode_value(v) for k, v in {**given, **kwargs}.items()}

    def _query(
        self,
        data_id: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
        where: str,
        bind: Mapping[str, Any] | None,
        order_by: str | Sequence[str] | None,
        explain: bool,
    ) -> dict[str, Any]:
        """The fields every query request has: defaults, constraints, where, bind, order and explain."""
        return {
            "defaults": self._defaults,
            "data_id": self._constraints(data_id, kwargs),
            "where": where,
            "bind": {k: encode_value(v) for k, v in (bind or {}).items()},
            "order_by": _names(order_by),
            "explain": explain,
        }

    @property
    def _defaults(self) -> dict[str, Any]:
        """This butler's governor defaults, worked out by the server once (as a local butler does on first use)."""
        if self._defaults_json is None:
            self._defaults_json = self._call(
                "POST",
                "/defaults",
                json={
                    "collections": list(self._default_collections),
                    "explicit": {k: encode_value(v) for k, v in self._governors.items()},
                    "infer": self._infer,
                },
            )
        return self._defaults_json

    # --- dataset types --------------------------------------------------------------------------

    def _type(self, name: str) -> DatasetType:
        found = self._types.get(name)
        if found is None:
            found = dataset_type_from_json(self._call("GET", f"/dataset-types/{name}"), self._universe)
            self._types[name] = found
        return found

    def get_dataset_type(self, name: str) -> DatasetType:
        return self._type(name)

    def query_dataset_types(self, expression: Any = "*") -> list[DatasetType]:
        out: list[DatasetType] = []
        for pattern in _names(expression) or ["*"]:
            for data in self._call("GET", "/dataset-types", params={"expression": pattern}):
                dt = dataset_type_from_json(data, self._universe)
                self._types[dt.name] = dt
                if dt not in out:
                    out.append(dt)
        return out

    def register_dataset_type(
        self,
        dataset_type: str | DatasetType,
        dimensions: Iterable[str] | None = None,
        storage_class: str | None = None,
        *,
        is_calibration: bool = False,
    ) -> bool:
        if isinstance(dataset_type, str):
            if dimensions is None or storage_class is None:
                raise errors.DatasetTypeError(
                    f"register_dataset_type({dataset_type!r}, …) needs dimensions and a storage class."
                )
            dataset_type = DatasetType(
                dataset_type,
                list(dimensions),
                storage_class,
                universe=self._universe,
                is_calibration=is_calibration,
            )
        body = dataset_type.to_dict()
        answer = self._call("POST", "/dataset-types", json=body)
        self._types.pop(dataset_type.name, None)
        return bool(answer["created"])

    # --- queries --------------------------------------------------------------------------------

    def _pages(self, path: str, body: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
        """The pages of a paged query (the last one cut to the limit), in order.

        The next page is asked for as soon as a page arrives, on another thread, so the server runs the next
        query while this one is decoded.  Each request is retried on its own (`_send`), from its cursor: after
        a dropped connection the rows continue where they stopped, none twice.
        """
        wanted = abs(limit) if limit is not None and limit != 0 else None
        body = {**body, "limit": limit if limit == 0 else wanted, "page_size": self._page_size}
        delivered = 0
        pending: Any = self._prefetcher().submit(self._call, "POST", path, json={**body, "cursor": None})
        while pending is not None:
            page = pending.result()
            rows, cursor = page["rows"], page["next_cursor"]
            if wanted is not None and delivered + len(rows) >= wanted:
                take = wanted - delivered
                if limit is not None and limit < 0 and (cursor or len(rows) > take):
                    warnings.warn(
                        f"More than {wanted} results; only the first {wanted} are returned.", stacklevel=4
                    )
                page["rows"] = rows[:take]
                if "records" in page:
                    page["records"] = page["records"][:take]
                yield page
                return
            delivered += len(rows)
            pending = None
            if cursor is not None:
                follow = {**body, "cursor": cursor, "explain": False}
                if wanted is not None:
                    follow["limit"] = wanted - delivered
                pending = self._prefetcher().submit(self._call, "POST", path, json=follow)
            yield page

    def _prefetcher(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="porter-pages"
            )
        return self._pool

    def _records(self, page: Mapping[str, Any], i: int) -> dict[str, DimensionRecord | None] | None:
        """The records attached to row ``i`` of a page, if the query asked for them."""
        records = page.get("records")
        if records is None or records[i] is None:
            return None
        return {
            e: (record_from_json(e, r, self._universe) if r is not None else None)
            for e, r in records[i].items()
        }

    def _data_ids(
        self, page: Mapping[str, Any], skip: int, dimensions: DimensionGroup
    ) -> list[DataCoordinate]:
        """A page's data IDs: its rows' values from column ``skip`` on, in the page's column order."""
        keys = tuple(page["columns"][skip:])
        if keys in (dimensions.data_coordinate_keys, dimensions.required):
            out = [DataCoordinate(dimensions, tuple(row[skip:])) for row in page["rows"]]
        else:  # another order: the slow, general way
            out = [
                DataCoordinate.standardize(dict(zip(keys, row[skip:])), dimensions=dimensions)
                for row in page["rows"]
            ]
        if "records" in page:
            out = [
                d if (r := self._records(page, i)) is None else d.with_records(r) for i, d in enumerate(out)
            ]
        return out

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: str | Sequence[str] | None = None,
        *,
        find_first: bool = True,
        data_id: Mapping[str, Any] | None = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        explain: bool = True,
        with_dimension_records: bool = False,
        **kwargs: Any,
    ) -> list[DatasetRef]:
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        dt = self._type(name)
        body = {
            "dataset_type": name,
            "collections": self._collections_or_default(collections),
            "find_first": find_first,
            **self._query(data_id, kwargs, where, bind, order_by, explain),
            "with_dimension_records": with_dimension_records,
        }
        out: list[DatasetRef] = []
        for page in self._pages("/query/datasets", body, limit):
            data_ids = self._data_ids(page, 2, dt.dimensions)
            out += [DatasetRef(dt, d, row[1], row[0]) for row, d in zip(page["rows"], data_ids)]
        return out

    def query_data_ids(
        self,
        dimensions: str | Iterable[str],
        *,
        data_id: Mapping[str, Any] | None = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        datasets: str | Sequence[str] | None = None,
        collections: str | Sequence[str] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        explain: bool = True,
        with_dimension_records: bool = False,
        **kwargs: Any,
    ) -> list[DataCoordinate]:
        names = _names(dimensions)
        body = {
            "dimensions": names,
            **self._query(data_id, kwargs, where, bind, order_by, explain),
            "datasets": _names(datasets),
            "collections": self._collections_or_default(collections) if datasets else [],
            "with_dimension_records": with_dimension_records,
        }
        group = self._universe.conform(names)
        out: list[DataCoordinate] = []
        for page in self._pages("/query/data-ids", body, limit):
            out += self._data_ids(page, 0, group)
        return out

    def query_dimension_records(
        self,
        element: str,
        *,
        data_id: Mapping[str, Any] | None = None,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        datasets: str | Sequence[str] | None = None,
        collections: str | Sequence[str] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        explain: bool = True,
        **kwargs: Any,
    ) -> list[DimensionRecord]:
        name = element if isinstance(element, str) else element.name
        body = {
            "element": name,
            **self._query(data_id, kwargs, where, bind, order_by, explain),
            "datasets": _names(datasets),
            "collections": self._collections_or_default(collections) if datasets else [],
        }
        return [
            record_from_json(name, row, self._universe)
            for page in self._pages("/query/dimension-records", body, limit)
            for row in page["rows"]
        ]

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        timespan: Timespan | None = None,
        **kwargs: Any,
    ) -> DatasetRef | None:
        kwargs.pop("storage_class", None)
        explicit = kwargs.pop("dataId", None)
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        dt = self._type(name)
        body = {
            "dataset_type": name,
            "data_id": self._constraints(data_id if data_id is not None else explicit, kwargs),
            "collections": self._collections_or_default(collections),
            "timespan": encode_value(timespan),
            "defaults": self._defaults,
        }
        found = self._call("POST", "/find-dataset", json=body)
        return ref_from_json(found, {name: dt}) if found is not None else None

    def dataset_provenance(self, dataset_id: uuid.UUID | str) -> dict[str, Any]:
        """How a dataset was made, back to the raws, as `porter.pipeline.ProvenanceNode.to_dict` gives it (inputs
        in runs this user may not read are left out); `DatasetNotFoundError` for an unknown or unreadable one."""
        text = dataset_id.hex if isinstance(dataset_id, uuid.UUID) else str(dataset_id)
        return dict(self._call("GET", f"/provenance/{_quoted(text)}"))

    def get_dataset(self, dataset_id: uuid.UUID | str) -> DatasetRef | None:
        text = dataset_id.hex if isinstance(dataset_id, uuid.UUID) else str(dataset_id)
        try:
            data = self._call("GET", f"/datasets/{_quoted(text)}")
        except errors.DatasetNotFoundError:
            return None
        return ref_from_json(data, {data["dataset_type"]: self._type(data["dataset_type"])})

    # --- reading --------------------------------------------------------------------------------

    def _resolve(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        data_id: Mapping[str, Any] | DataCoordinate | None,
        collections: str | Sequence[str] | None,
        timespan: Timespan | None,
        kwargs: dict[str, Any],
    ) -> DatasetRef:
        if isinstance(dataset_ref_or_type, DatasetRef):
            return dataset_ref_or_type
        ref = self.find_dataset(
            dataset_ref_or_type, data_id, collections=collections, timespan=timespan, **kwargs
        )
        if ref is None:
            name = dataset_ref_or_type if isinstance(dataset_ref_or_type, str) else dataset_ref_or_type.name
            given = dict(data_id or {}) | dict(kwargs)
            raise errors.MissingDatasetError(
                f"No {name} dataset with data ID {given} in collections {self._collections_or_default(collections)}."
            )
        return ref

    def _download(self, ref: DatasetRef) -> tuple[dict[str, Any], Path]:
        """The server's description of ``ref``'s file, and the file, downloaded and checked.

        A small file comes inside the answer; a larger one from the signed URL the answer gives.
        """
        return self._fetch(ref, self._call("POST", "/get", json={"dataset_id": ref.id_hex, "inline": True}))

    def _fetch(self, ref: DatasetRef, answer: dict[str, Any]) -> tuple[dict[str, Any], Path]:
        """The file the server's ``/get`` answer describes, in a new local file checked against its size and
        checksum (the caller deletes it)."""
        url = answer["url"]
        client = self._http if within(url, self.url) else self._plain
        from ..datastore import checksum_file

        fd, name = tempfile.mkstemp(suffix=answer.get("extension") or "", prefix="porter-get-")
        path = Path(name)
        try:
            if "content" in answer:
                with os.fdopen(fd, "wb") as out:
                    out.write(base64.b64decode(answer["content"]))
            else:
                with os.fdopen(fd, "wb") as out, client.stream("GET", url) as response:
                    if response.status_code >= 400:
                        response.read()
                        self._raise_download(response)
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
            size = path.stat().st_size
            if answer["size"] is not None and size != answer["size"]:
                raise errors.CorruptArtifactError(
                    f"Downloaded {size} bytes of {ref} but the server recorded {answer['size']}: try again."
                )
            if answer["checksum"]:
                got = checksum_file(path)
                if got != answer["checksum"]:
                    raise errors.CorruptArtifactError(
                        f"The download of {ref} does not match its checksum ({got} ≠ {answer['checksum']})."
                    )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return answer, path

    def _raise_download(self, response: httpx.Response) -> None:
        try:
            body = response.json()
            message = body["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        if response.status_code in (401, 403):
            raise errors.AccessDeniedError(f"The download URL was refused: {message}")
        raise errors.ServerError(f"The download failed ({response.status_code}): {message}")

    def get(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        /,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        collections: str | Sequence[str] | None = None,
        storage_class: str | None = None,
        timespan: Timespan | None = None,
        **kwargs: Any,
    ) -> Any:
        ref = self._resolve(dataset_ref_or_type, data_id, collections, timespan, kwargs)
        answer, path = self._download(ref)
        try:
            from ..datastore import LocalURI, read_file

            return read_file(
                LocalURI(path),
                answer["formatter"],
                answer["storage_class"],
                storage_classes=self._storage_class_registry,
                parameters=parameters,
                as_storage_class=storage_class,
                component=ref.dataset_type.component(),
                what=f"{ref.dataset_type.name}@{dict(ref.data_id.required)} in {ref.run!r} ({ref.id})",
            )
        finally:
            path.unlink(missing_ok=True)

    def getDeferred(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        /,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        collections: str | Sequence[str] | None = None,
        storage_class: str | None = None,
        timespan: Timespan | None = None,
        **kwargs: Any,
    ) -> DeferredDatasetHandle:
        """A handle to read the dataset later (in part, with ``parameters``); found now, downloaded at ``get``."""
        ref = self._resolve(dataset_ref_or_type, data_id, collections, timespan, kwargs)
        return DeferredDatasetHandle(self, ref, parameters, storage_class)

    def insert_dimension_records(
        self,
        element: str,
        records: Iterable[Mapping[str, Any] | DimensionRecord],
        *,
        skip_existing: bool = True,
    ) -> int:
        """Add dimension records through the server (new ones need an admin token; existing ones are skipped)."""
        chunk = [
            {
                k: encode_value(v)
                for k, v in (r.to_dict() if isinstance(r, DimensionRecord) else dict(r)).items()
            }
            for r in records
        ]
        return int(
            self._call("POST", "/dimension-records", json={"element": element, "records": chunk})["added"]
        )

    def get_uri(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        /,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ResourceURI:
        """The dataset's file as a signed, expiring, read-only URL (`SignedHttpURI`), as daf_butler's
        RemoteButler hands out."""
        from ..datastore import SignedHttpURI

        ref = self._resolve(dataset_ref_or_type, data_id, collections, None, kwargs)
        answer = self._call("POST", "/get", json={"dataset_id": ref.id_hex})
        url = answer["url"]
        client = self._http if within(url, self.url) else self._plain
        return SignedHttpURI(url, answer["name"], answer["size"], client)

    def exists(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        /,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        full_check: bool = False,
        **kwargs: Any,
    ) -> bool:
        if isinstance(dataset_ref_or_type, DatasetRef):
            return self.get_dataset(dataset_ref_or_type.id) is not None
        return self.find_dataset(dataset_ref_or_type, data_id, collections=collections, **kwargs) is not None

    def ingest(self, *datasets: FileDataset, transfer: str = "direct") -> list[DatasetRef]:
        """Register files already in the server's datastore area as datasets (paths relative to its root).

        ``direct`` (the default here) leaves each file where it is; ``move``,
        ``copy`` and ``auto`` put it where the path template says.  All or none.
        """
        body = {
            "transfer": transfer,
            "datasets": [
                {
                    "path": str(fd.path),
                    "formatter": fd.formatter
                    if isinstance(fd.formatter, str) or fd.formatter is None
                    else f"{fd.formatter.__module__}.{fd.formatter.__qualname__}",
                    "refs": [
                        {
                            "dataset_id": r.id_hex,
                            "dataset_type": r.dataset_type.name,
                            "data_id": {k: encode_value(v) for k, v in r.data_id.mapping.items()},
                            "run": r.run,
                        }
                        for r in fd.refs  # type: ignore[union-attr]
                    ],
                }
                for fd in datasets
            ],
        }
        answer = self._call("POST", "/ingest", json=body)
        return [ref_from_json(r, {r["dataset_type"]: self._type(r["dataset_type"])}) for r in answer["refs"]]

    def import_(
        self,
        filename: str | Path,
        *,
        format: str = "yaml",
        skip_dimensions: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, int]:
        """Import an export file into the server's repository (records and registry entries; an admin token).

        Files do not travel this way: bring datasets with their files by
        `transfer_from` from a local repository.
        """
        if format != "yaml" or kwargs.get("directory") or kwargs.get("transfer"):
            raise errors.RepositoryError(
                "import_ through a server takes an export file only (no directory/transfer): import with files "
                "into a local repository, then transfer_from it (porter transfer-datasets LOCAL URL)."
            )
        answer = self._call(
            "POST",
            "/import",
            content=Path(filename).read_bytes(),
            headers={"Content-Type": "application/x-yaml"},
            params={"skip_dimensions": ",".join(skip_dimensions or ())},
        )
        return {k: int(v) for k, v in answer["counts"].items()}

    def export(
        self,
        filename: str | Path = "export.yaml",
        *,
        collections: str | Sequence[str] | None = None,
        datasets: Iterable[DatasetRef] | None = None,
        dataset_types: str | Sequence[str] | None = None,
        where: str = "",
        include_all_dimensions: bool = False,
    ) -> Path:
        """Write the server repository's export file (an admin token) to ``filename``; returns its path."""
        body = {
            "collections": _names(collections),
            "dataset_ids": [r.id_hex for r in datasets or ()],
            "dataset_types": _names(dataset_types),
            "where": where,
            "include_all_dimensions": include_all_dimensions,
        }
        response = self._send("POST", "/export", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if response.status_code >= 400:
            self._raise(response, "POST", "/export")
        path = Path(filename)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(response.content)
        tmp.replace(path)
        return path

    def remove_runs(self, names: str | Iterable[str]) -> int:
        """Delete RUN collections, their datasets and files, through the server; returns the datasets removed."""
        return int(self._call("POST", "/remove-runs", json={"names": _names(names)})["removed"])

    def prune_datasets(
        self,
        refs: Iterable[DatasetRef],
        *,
        disassociate: bool = True,
        unstore: bool = False,
        tags: str | Iterable[str] = (),
        purge: bool = False,
    ) -> int:
        """`DirectButler.prune_datasets` through the server (write access to the runs and tags concerned);
        returns the number of datasets affected.  All or none."""
        if not self.writeable:
            raise errors.RepositoryError("This butler was opened read-only (writeable=False).")
        ids = [r.id_hex for r in refs]
        if not ids:
            return 0
        body = {
            "dataset_ids": ids,
            "disassociate": disassociate,
            "unstore": unstore,
            "tags": _names(tags),
            "purge": purge,
        }
        return int(self._call("POST", "/prune-datasets", json=body)["pruned"])

    def certify(self, collection: str, refs: Iterable[DatasetRef], timespan: Timespan) -> int:
        """Certify datasets into the CALIBRATION collection ``collection`` for ``timespan`` (write access to it);
        returns how many."""
        ids = [r.id_hex for r in refs]
        if not ids:
            raise errors.PorterError("certify needs at least one dataset.")
        body = {"collection": collection, "dataset_ids": ids, "timespan": encode_value(timespan)}
        return int(self._call("POST", "/certify", json=body)["certified"])

    def retrieve_artifacts(
        self,
        refs: Iterable[DatasetRef],
        destination: str | Path,
        transfer: str = "copy",
        preserve_path: bool = True,
        overwrite: bool = False,
    ) -> list[ResourceURI]:
        """Download the files of ``refs`` into ``destination`` (a directory or S3 prefix), each checked against its
        size and checksum; returns the files written.

        As `DirectButler.retrieve_artifacts`: the server's directory layout is
        kept with ``preserve_path`` (else the files land side by side), and
        existing files are an error (nothing is written) unless ``overwrite``.
        Only ``copy`` crosses a network (``auto`` means it).
        """
        from ..datastore import ResourceURI

        if transfer not in ("copy", "auto"):
            raise errors.DatastoreError(
                f"transfer={transfer!r} needs the files on this machine; through a server they can only be "
                "copied (transfer='copy')."
            )
        dest = ResourceURI.from_string(destination)
        jobs: dict[str, tuple[DatasetRef, dict[str, Any]]] = {}
        for ref in refs:
            try:
                answer = self._call("POST", "/get", json={"dataset_id": ref.id_hex, "inline": True})
            except errors.ArtifactMissingError:
                continue  # registered without a file, as locally
            relative = answer["path"] if preserve_path else answer["name"]
            earlier = jobs.get(relative)
            if earlier is not None and earlier[1]["checksum"] != answer["checksum"]:
                raise errors.DatastoreError(
                    f"Two files would be written to {relative} in {destination}; keep the paths (preserve_path=True)."
                )
            jobs.setdefault(relative, (ref, answer))
        if not overwrite:
            clashes = [str(dest.join(r)) for r in jobs if dest.join(r).exists()]
            if clashes:
                raise errors.DatastoreError(
                    f"{len(clashes)} file(s) already exist in {destination}, e.g. {clashes[0]}; nothing was "
                    "written. Choose an empty directory or allow overwriting (--clobber)."
                )
        written = []
        for relative, (ref, answer) in jobs.items():
            _, path = self._fetch(ref, answer)
            try:
                target = dest.join(relative)
                if overwrite:
                    target.remove()
                target.upload(path, move=True)
            finally:
                path.unlink(missing_ok=True)
            written.append(target)
        return written

    retrieveArtifacts = retrieve_artifacts

    def upload_files(self, *datasets: FileDataset) -> list[DatasetRef]:
        """Store local files (paths or URIs this machine can read) as new datasets on the server.

        Each file goes to a signed upload URL; the server checks its size and
        checksum and stores it atomically, under its own path template.  Each
        file is one write: a rerun after an interruption finds the datasets
        (same UUIDs) already stored and skips them.  What ``porter ingest-files``
        does against a server (`ingest` registers files already in the server's area).
        """
        from ..datastore import ResourceURI, checksum_file

        out = []
        for fd in datasets:
            refs = fd.refs if isinstance(fd.refs, (list, tuple)) else [fd.refs]
            if len(refs) != 1:
                raise errors.DatastoreError(
                    f"{fd.path}: a file of several datasets cannot be uploaded to a server; give one dataset a file."
                )
            (ref,) = refs
            dt = ref.dataset_type
            formatter = fd.formatter
            if formatter is None:
                formatter = type(
                    self._storage_class_registry.get(dt.storage_class_name).formatter
                ).import_path()
            elif not isinstance(formatter, str):
                formatter = f"{formatter.__module__}.{formatter.__qualname__}"
            with ResourceURI.from_string(fd.path).as_local() as local:
                values = {k: encode_value(v) for k, v in ref.data_id.mapping.items()}
                size = local.stat().st_size
                out.append(
                    self._upload(
                        dt, values, ref.run, ref.id_hex, local, formatter, size, checksum_file(local)
                    )
                )
        return out

    def put(
        self,
        obj: Any,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        /,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        run: str | None = None,
        **kwargs: Any,
    ) -> DatasetRef:
        """Write ``obj`` here, upload the file to the server's signed URL; the server checks and stores it.

        The new dataset's UUID is drawn here, so a retried request (a lost
        answer, a dropped connection) finds the dataset it made instead of
        making a second one.
        """
        if not self.writeable:
            raise errors.RepositoryError("This butler was opened read-only (writeable=False).")
        if isinstance(dataset_ref_or_type, DatasetRef):
            if data_id is not None or kwargs:
                raise errors.DataIdError(
                    "put() with a DatasetRef takes no other data ID; the reference has one."
                )
            dt = dataset_ref_or_type.dataset_type
            values = {k: encode_value(v) for k, v in dataset_ref_or_type.data_id.mapping.items()}
            run = run or dataset_ref_or_type.run
            dataset_id = dataset_ref_or_type.id_hex
        else:
            name = dataset_ref_or_type if isinstance(dataset_ref_or_type, str) else dataset_ref_or_type.name
            dt = self._type(name)
            values = self._constraints(data_id, kwargs)
            run = run or self._run
            dataset_id = uuid.uuid4().hex
        if run is None:
            raise errors.MissingCollectionError(
                "put() needs a RUN collection: pass run=… or create the butler with Butler(url, run=…)."
            )
        from ..datastore import write_file

        with tempfile.TemporaryDirectory(prefix="porter-put-") as scratch:
            written = write_file(
                obj,
                dt.storage_class_name,
                Path(scratch),
                storage_classes=self._storage_class_registry,
                what=f"{dt.name} {values}",
            )
            return self._upload(
                dt, values, run, dataset_id, written.path, written.formatter, written.size, written.checksum
            )

    def _upload(
        self,
        dt: DatasetType,
        data_id: Mapping[str, Any],
        run: str,
        dataset_id: str,
        path: Path,
        formatter: str,
        size: int,
        checksum: str,
    ) -> DatasetRef:
        """Announce a file, upload it to the signed URL the server answers, and return the dataset it became."""
        ticket = self._call(
            "POST",
            "/uploads",
            json={
                "defaults": self._defaults,
                "dataset_id": dataset_id,
                "dataset_type": dt.name,
                "data_id": dict(data_id),
                "run": run,
                "formatter": formatter,
                "size": size,
                "checksum": checksum,
            },
        )
        if ticket["ref"] is None:  # not there yet (a retry finds the dataset it made and skips this)
            ticket = self._call("PUT", ticket["upload_url"], content=path.read_bytes())
        return ref_from_json(ticket["ref"], {dt.name: dt})

    def transfer_from(
        self,
        source_butler: Butler,
        source_refs: Iterable[DatasetRef],
        transfer: str = "auto",
        *,
        skip_missing: bool = True,
        register_dataset_types: bool = True,
        transfer_dimensions: bool = True,
    ) -> list[DatasetRef]:
        """Bring datasets, with their files and UUIDs, from a local or remote butler into this server's repository.

        Each file goes up as it is (the formatter that wrote it, checked by
        size and checksum); datasets already here (same UUID) are skipped, so
        an interrupted transfer is finished by running it again.  Dataset
        types are registered and dimension records added as needed (new
        records need an admin token).  Returns the refs transferred.
        """
        if not self.writeable:
            raise errors.RepositoryError("This butler was opened read-only (writeable=False).")
        refs = list(source_refs)
        types = _bring_dataset_types(self, refs, register_dataset_types)
        if transfer_dimensions:
            for element, records in _records_of(source_butler, refs).items():
                for start in range(0, len(records), 10_000):  # the server takes 100,000 records a request
                    self.insert_dimension_records(element, records[start : start + 10_000])
        out = []
        for ref in refs:
            with _source_file(source_butler, ref, skip_missing) as found:
                if found is None:
                    continue
                path, formatter, size, checksum = found
                values = {k: encode_value(v) for k, v in ref.data_id.mapping.items()}
                out.append(
                    self._upload(
                        types[ref.dataset_type.name],
                        values,
                        ref.run,
                        ref.id_hex,
                        path,
                        formatter,
                        size,
                        checksum,
                    )
                )
        return out


def _records_of(source: Butler, refs: Sequence[DatasetRef]) -> dict[str, list[DimensionRecord]]:
    """The dimension records the refs' data IDs need, by element in dependency order, from ``source``."""
    if isinstance(source, RemoteButler):
        found: dict[str, dict[tuple[Any, ...], DimensionRecord]] = {}
        for ref in refs:
            expanded = source.query_data_ids(
                list(ref.dataset_type.dimensions.names),
                data_id=ref.data_id.required,
                with_dimension_records=True,
                explain=False,
            )
            for data_id in expanded:
                for element, record in data_id.records.items():
                    if record is not None:
                        found.setdefault(element, {})[record.key_values] = record
        order = source.dimensions.sorted_names(found)
        return {e: list(found[e].values()) for e in order}
    from ._direct_butler import DirectButler
    from .transfers import ExportWriter

    assert isinstance(source, DirectButler)
    writer = ExportWriter(source.registry)
    writer.add_dimension_data([r.data_id for r in refs])
    return {
        e: list(writer.records[e].values())
        for e in source.dimensions.sorted_names(writer.records)
        if writer.records[e]
    }


@contextlib.contextmanager
def _source_file(
    source: Butler, ref: DatasetRef, skip_missing: bool
) -> Iterator[tuple[Path, str, int, str] | None]:
    """``ref``'s file in ``source`` as a local path, with its formatter, size and checksum (None: no file, skipped)."""
    if isinstance(source, RemoteButler):
        try:
            answer, path = source._download(ref)
        except errors.ArtifactMissingError:
            if not skip_missing:
                raise
            yield None
            return
        try:
            yield path, answer["formatter"], path.stat().st_size, answer["checksum"]
        finally:
            path.unlink(missing_ok=True)
        return
    from ..datastore import checksum_file
    from ._direct_butler import DirectButler

    assert isinstance(source, DirectButler)
    location = source.datastore.locations([ref.id]).get(ref.id)
    if location is None:
        if not skip_missing:
            raise errors.ArtifactMissingError(f"{ref} has no stored file in {source!r}.")
        yield None
        return
    with source.datastore.uri_of(location.path).as_local() as local:
        checksum = location.checksum or checksum_file(local)
        yield local, location.formatter, local.stat().st_size, checksum


def transfer_into_local(
    target: DirectButler,
    source: Butler,
    refs: Sequence[DatasetRef],
    *,
    skip_missing: bool,
    register_dataset_types: bool,
    transfer_dimensions: bool,
) -> list[DatasetRef]:
    """`DirectButler.transfer_from` a server: files downloaded through signed URLs (checked), UUIDs kept."""
    _bring_dataset_types(target, refs, register_dataset_types)
    if transfer_dimensions:
        for element, records in _records_of(source, refs).items():
            target.insert_dimension_records(element, records, skip_existing=True)
    out = []
    for ref in refs:
        if target.get_dataset(ref.id) is not None:
            out.append(ref)
            continue
        with _source_file(source, ref, skip_missing) as found:
            if found is None:
                continue
            path, formatter, _, _ = found
            out += target.ingest(FileDataset(path, ref, formatter=formatter), transfer="copy")
    return out


def _bring_dataset_types(
    target: Butler, refs: Sequence[DatasetRef], register: bool
) -> dict[str, DatasetType]:
    """The refs' dataset types, registered in ``target`` where missing (if ``register``); a type defined
    differently there is refused, never converted."""
    types = {r.dataset_type.name: r.dataset_type for r in refs}
    for dt in types.values():
        try:
            have = target.get_dataset_type(dt.name)
        except errors.MissingDatasetTypeError:
            if not register:
                raise
            target.register_dataset_type(dt)
            continue
        if have != dt:
            raise errors.DatastoreError(
                f"Dataset type {dt.name!r} differs between the repositories ({dt} vs {have}); "
                "transfer_from will not convert it."
            )
    return types
