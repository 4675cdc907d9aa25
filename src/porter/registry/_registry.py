"""The registry: one object giving access to a repository's SQL database.

The query system (`porter.registry.queries`: planner, SQL kits, lsst.sphgeom
for spatial joins, pyarrow for coverage) is imported when the first query
runs (`Registry.engine`), not when a repository is opened: listing its
collections or dataset types, or writing to it, needs none of it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy

from ..core import CollectionType, DatasetRef, DatasetType
from ..dimensions import (
    DataCoordinate,
    DimensionElement,
    DimensionGroup,
    DimensionRecord,
    DimensionUniverse,
    SkyPixDimension,
    Timespan,
)
from ..errors import (
    DataIdError,
    InvalidQueryError,
    MissingCollectionError,
    NoDefaultCollectionError,
    RepositoryError,
)
from ._associations import AssociationManager
from ._collections import CollectionInfo, CollectionManager, is_pattern
from ._compat import RegistryCompatMixin
from ._dataset_types import DatasetTypeManager
from ._datasets import DatasetManager
from ._db import Database
from ._defaults import GovernorDefaults, RegistryDefaults
from ._dimension_records import DimensionRecordStorage
from ._expand import attach_records, has_all_records
from ._schema import SCHEMA_VERSION, RegistrySchema
from .expr import Node

if TYPE_CHECKING:
    from .queries import DatasetSearch, QueryEngine, QuerySpec
    from .queries._coverage import Coverage

__all__ = ["Registry"]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | DatasetType):
        return [value]
    return list(value)


_ROWS_AFTER: contextvars.ContextVar[tuple[tuple[str, ...], tuple[Any, ...]] | None] = contextvars.ContextVar(
    "porter_rows_after", default=None
)
"""The keyset page boundary of the queries run inside `Registry.rows_after` (this thread or task only)."""


class Registry(RegistryCompatMixin):
    """SQL access to dimension records, dataset types, datasets and collections.

    Open one with `Registry.create` (new repository) or `Registry.open`.
    """

    def __init__(self, db: Database, universe: DimensionUniverse):
        self.db = db
        self.universe = universe
        self.schema = RegistrySchema(universe, db.metadata)
        self.collections = CollectionManager(db, self.schema)
        self.dataset_types = DatasetTypeManager(db, self.schema, universe)
        self.datasets = DatasetManager(db, self.schema, universe, self.collections, self.dataset_types)
        self.associations = AssociationManager(db, self.schema, self.collections, self.dataset_types)
        self.records = DimensionRecordStorage(db, self.schema, universe)
        self._defaults = RegistryDefaults()

    @functools.cached_property
    def engine(self) -> QueryEngine:
        """The query engine, made (and the query system imported) when the first query runs."""
        from .queries import QueryEngine

        return QueryEngine(self.db, self.schema, self.universe, self.collections)

    def prepare_queries(self) -> None:
        """Import the query system and lsst.sphgeom (with numpy) now rather than in the first query.

        About 0.1-0.15 s, paid when the repository is opened by a session that
        will query (a notebook, a server) so that its first query, spatial or
        not, runs at the speed of the later ones; a one-shot command that may
        never query (``porter query-collections``) skips it (``Butler(preload=False)``).
        """
        import lsst.sphgeom  # noqa: F401  (regions are decoded by the first spatial query)

        self.engine  # noqa: B018  (made now: imports the query system)

    # --- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, url: str, namespace: str | None = None, universe: DimensionUniverse | None = None
    ) -> Registry:
        """Create the schema of a new, empty repository at ``url``.

        Raises
        ------
        RepositoryError
            If a porter registry already exists there.
        """
        universe = universe or DimensionUniverse.default()
        db = Database(url, namespace)
        with db.transaction() as conn:
            if db.namespace:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{db.namespace}"')
            if sqlalchemy.inspect(conn).has_table("porter_meta", schema=db.namespace):
                raise RepositoryError(
                    f"A porter registry already exists at {url}"
                    + (f" (namespace {namespace!r})" if namespace else "")
                    + "; open it instead of creating it."
                )
            registry = cls(db, universe)
            db.lock_for_schema_change(conn)
            db.metadata.create_all(conn)
            conn.execute(
                sqlalchemy.insert(registry.schema.meta),
                [
                    {"name": "schema_version", "value": SCHEMA_VERSION},
                    {"name": "universe_namespace", "value": universe.namespace},
                    {"name": "universe_version", "value": str(universe.version)},
                    {"name": "universe_config", "value": universe.config_text or ""},
                    {"name": "created", "value": datetime.datetime.now(datetime.UTC).isoformat()},
                ],
            )
        return registry

    @classmethod
    def open(cls, url: str, namespace: str | None = None) -> Registry:
        """Open an existing registry, checking its schema version."""
        db = Database(url, namespace)
        try:
            with db.reading() as conn:
                if not sqlalchemy.inspect(conn).has_table("porter_meta", schema=db.namespace):
                    raise RepositoryError(
                        f"No porter registry at {url}"
                        + (f" (namespace {namespace!r})" if namespace else "")
                        + "; create one with `porter create`."
                    )
                meta_table = sqlalchemy.Table(
                    "porter_meta", sqlalchemy.MetaData(schema=db.namespace), autoload_with=conn
                )
                meta = dict(conn.execute(sqlalchemy.select(meta_table.c.name, meta_table.c.value)).all())
        except sqlalchemy.exc.OperationalError as exc:
            raise RepositoryError(f"Cannot open registry database {url}: {exc.orig}") from None
        version = meta.get("schema_version", "")
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise RepositoryError(
                f"Registry at {url} has schema version {version}; this porter reads {SCHEMA_VERSION}."
            )
        config = meta.get("universe_config") or DimensionUniverse.default_config_text()
        default = DimensionUniverse.default()
        universe = default if config == default.config_text else DimensionUniverse.from_yaml(config)
        registry = cls(db, universe)
        registry.dataset_types.refresh()
        registry.collections.refresh()
        return registry

    def close(self) -> None:
        self.db.dispose()

    def reset_caches(self) -> None:
        """Forget cached dataset tables, dataset types and collections.

        Called after a rolled-back transaction, which may have undone the
        creation of dataset tables or collections these caches remember.
        """
        for tables in self.schema.dataset_tables.values():
            for t in (tables.tags, tables.calibs):
                if t.key in self.db.metadata.tables:
                    self.db.metadata.remove(t)
        self.schema.dataset_tables.clear()
        self.dataset_types.refresh()
        self.collections.refresh()

    @property
    def defaults(self) -> RegistryDefaults:
        """What calls use when they name no collections, run or governor values (daf_butler's ``defaults``).

        Assigning a new `RegistryDefaults` changes them for this registry and
        the butler that holds it, as in daf_butler.
        """
        return self._defaults

    @defaults.setter
    def defaults(self, value: RegistryDefaults) -> None:
        value.check(self)
        value.attach(self)
        self._defaults = value

    def refresh(self) -> None:
        """See what other processes registered since this registry was opened (daf_butler's ``refresh``).

        Dataset types and collections are cached; governor defaults inferred
        from the default collections are worked out again on next use.
        """
        self.reset_caches()
        self.defaults.forget()

    def default_data_id(self) -> GovernorDefaults:
        """The governor values the defaults give (explicit, or inferred from the default collections)."""
        return self.defaults.data_id(self)

    def governor_values(self, collections: Iterable[str]) -> dict[str, set[Any]]:
        """The values of each governor dimension among the datasets in ``collections``, in one query.

        Chains are followed; collections that do not exist are ignored (as by
        daf_butler's defaults, which may name collections made later).
        """
        infos: list[CollectionInfo] = []
        for name in collections:
            if self.collections.find(name) is not None:
                infos += self.collections.flatten([name])
        ids = sorted({info.id for info in infos})
        governors = set(self.universe.governors)
        selects = []
        seen_tables: set[str] = set()
        for rec in self.dataset_types.all_records():
            names = [n for n in rec.dataset_type.dimensions.required if n in governors]
            for table in (rec.tables.tags, rec.tables.calibs):
                if not ids or not names or table.name in seen_tables:
                    continue
                seen_tables.add(table.name)
                for name in names:
                    selects.append(
                        sqlalchemy.select(
                            sqlalchemy.literal(name).label("governor"),
                            table.c[name].label("value"),  # governors' keys are names (strings)
                        )
                        .where(table.c.collection_id.in_(ids))
                        .distinct()
                    )
        out: dict[str, set[Any]] = {}
        if not selects:
            return out
        with self.db.reading() as conn:
            for governor, value in conn.execute(sqlalchemy.union(*selects)).all():
                out.setdefault(governor, set()).add(value)
        return out

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all of them happen, or (on an exception) none."""
        with self.db.transaction():
            yield

    # --- dimension records -----------------------------------------------------------------------

    def insert_dimension_records(
        self,
        element: str | DimensionElement,
        records: Iterable[Mapping[str, Any] | DimensionRecord],
        *,
        skip_existing: bool = False,
        replace: bool = False,
    ) -> int:
        """Insert records of one dimension element (dicts or `DimensionRecord`)."""
        e = self.universe[element] if isinstance(element, str) else element
        recs = list(records)
        return self.records.insert(e, recs, skip_existing=skip_existing, replace=replace)

    # --- dataset types ---------------------------------------------------------------------------

    def register_dataset_type(self, dataset_type: DatasetType) -> bool:
        return self.dataset_types.register(dataset_type)

    def get_dataset_type(self, name: str) -> DatasetType:
        return self.dataset_types.get(name)

    def query_dataset_types(self, expression: Any = "*") -> list[DatasetType]:
        return self.dataset_types.query(expression)

    def remove_dataset_type(self, name: str) -> None:
        self.dataset_types.remove(name)

    # --- datasets ---------------------------------------------------------------------------------

    def insert_datasets(
        self,
        dataset_type: str | DatasetType,
        data_ids: Iterable[Mapping[str, Any] | DataCoordinate],
        run: str,
        ids: Sequence[uuid.UUID] | None = None,
    ) -> list[DatasetRef]:
        return self.datasets.insert(dataset_type, run, data_ids, ids)

    def import_datasets(self, refs: Sequence[DatasetRef]) -> int:
        return self.datasets.import_refs(refs)

    def associate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        self.associations.associate(collection, refs)

    def disassociate(self, collection: str, refs: Iterable[DatasetRef]) -> None:
        self.associations.disassociate(collection, refs)

    def certify(self, collection: str, refs: Iterable[DatasetRef], timespan: Timespan) -> None:
        self.associations.certify(collection, refs, timespan)

    def decertify(
        self,
        collection: str,
        dataset_type: str,
        timespan: Timespan,
        data_ids: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        self.associations.decertify(collection, dataset_type, timespan, data_ids)

    def remove_datasets(self, refs: Iterable[DatasetRef]) -> int:
        return self.datasets.remove(refs)

    def get_dataset(self, dataset_id: uuid.UUID | str) -> DatasetRef | None:
        return self.datasets.get(uuid.UUID(str(dataset_id)))

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any] | None = None,
        *,
        collections: Sequence[str],
        timespan: Timespan | None = None,
        **kwargs: Any,
    ) -> DatasetRef | None:
        dt = self.dataset_types.get_record(dataset_type).dataset_type
        did = DataCoordinate.standardize(
            data_id, universe=self.universe, allow_extra=True, dimensions=dt.dimensions, **kwargs
        )
        return self.datasets.find(dt, did, _as_list(collections), timespan)

    # --- collections ---------------------------------------------------------------------------------

    def _search_path(self, collections: Any) -> list[CollectionInfo]:
        names = _as_list(collections)
        for n in names:
            if not isinstance(n, str):
                raise MissingCollectionError(f"Collection names are strings, not {type(n).__name__} ({n!r}).")
            if is_pattern(n):
                names = self.collections.query(names)
                break
        return self.collections.flatten(names)

    def collections_or_default(self, collections: Any) -> list[str]:
        """``collections`` as a list, or the default collections; `NoDefaultCollectionError` if neither."""
        if collections is ...:
            return ["*"]
        names = _as_list(collections)
        if names:
            return names
        if self.defaults.collections:
            return list(self.defaults.collections)
        raise NoDefaultCollectionError(
            "No collections given and this butler has no default collections; pass collections=[…] "
            "or create the butler with Butler(root, collections=[…])."
        )

    def resolve_collections(self, collections: Any) -> list[CollectionInfo]:
        """The flattened search path of a collection expression (chains expanded)."""
        return self._search_path(collections)

    # --- queries -----------------------------------------------------------------------------------------

    def _searches(self, datasets: Any, collections: Any, find_first: bool) -> list[DatasetSearch]:
        if isinstance(
            datasets, Mapping
        ):  # each dataset type with its own collections (query().join_dataset_search)
            return [s for t, c in datasets.items() for s in self._searches([t], c, find_first)]
        types = _as_list(datasets)
        if not types:
            return []
        if collections is None or (not isinstance(collections, str) and not list(collections)):
            raise MissingCollectionError("A dataset search needs collections; pass collections=[…].")
        from .queries import DatasetSearch

        path = self._search_path(collections)
        return [DatasetSearch(self.dataset_types.get_record(t), path, find_first) for t in types]

    def _spec(
        self,
        kind: Any,
        dimensions: DimensionGroup,
        searches: list[DatasetSearch],
        *,
        where: str | Node,
        bind: Mapping[str, Any] | None,
        data_id: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
        default_data_id: Mapping[str, Any] | None,
        order_by: Sequence[str] | str | None,
        limit: int | None,
        element: DimensionElement | None = None,
    ) -> QuerySpec:
        """A `QuerySpec` from the constraint arguments every query method shares.

        A ``data_id`` that is not a mapping (``data_id='HSC'``) is refused by name here: merging it
        with the keyword constraints was a bare ``TypeError`` ('str' object is not a mapping).
        """
        from .queries import QuerySpec

        if data_id is not None and not isinstance(data_id, Mapping | DataCoordinate):
            raise DataIdError(
                "data_id must be a mapping of dimension names to values, like {'instrument': 'HSC'}, "
                f"not {data_id!r:.80}."
            )
        return QuerySpec(
            kind=kind,
            dimensions=dimensions,
            element=element,
            searches=searches,
            where=where,
            bind=dict(bind or {}),
            data_id={**(data_id or {}), **kwargs},
            default_data_id=default_data_id if default_data_id is not None else {},
            order_by=_as_list(order_by),
            limit=limit,
            after=_ROWS_AFTER.get(),
        )

    @contextlib.contextmanager
    def rows_after(self, keys: Sequence[str], values: Sequence[Any]) -> Iterator[None]:
        """Queries run inside the block return only rows after ``values`` of ``keys`` (keyset pagination).

        ``keys`` are dimension names of the results, in the order of the query's ``order_by`` (all
        ascending), and ``dataset_id`` for dataset queries; the rows returned are those whose row value
        ``(k1, k2, …)`` compares greater than ``values``.  With the keys in the order of the tables' data-ID
        indexes (`dataset_index_order`), each page is an index range scan, however deep into the results.
        """
        token = _ROWS_AFTER.set((tuple(keys), tuple(values)))
        try:
            yield
        finally:
            _ROWS_AFTER.reset(token)

    def query_data_ids(
        self,
        dimensions: Iterable[str] | str,
        *,
        data_id: Mapping[str, Any] | None = None,
        where: str | Node = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Any = None,
        collections: Any = None,
        order_by: Sequence[str] | str | None = None,
        limit: int | None = None,
        default_data_id: Mapping[str, Any] | None = None,
        with_dimension_records: bool = False,
        **kwargs: Any,
    ) -> list[DataCoordinate]:
        """Data IDs of the given dimensions satisfying the constraints (see `Butler.query_data_ids`)."""
        dims = [dimensions] if isinstance(dimensions, str) else list(dimensions)
        if not dims:
            raise InvalidQueryError(
                "query_data_ids needs at least one dimension, e.g. ['visit', 'detector']; to ask whether datasets "
                "exist, use query_datasets."
            )
        spec = self._spec(
            "data_ids",
            self.universe.conform(dims),
            self._searches(datasets, collections, False),
            where=where,
            bind=bind,
            data_id=data_id,
            kwargs=kwargs,
            default_data_id=default_data_id,
            order_by=order_by,
            limit=None if with_dimension_records else limit,
        )
        data_ids = self.engine.run(spec)
        if not with_dimension_records:
            return data_ids
        expanded = [d for d in attach_records(self, data_ids) if has_all_records(d)]
        return expanded[:limit] if limit is not None else expanded

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: Any,
        *,
        find_first: bool = True,
        data_id: Mapping[str, Any] | None = None,
        where: str | Node = "",
        bind: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int | None = None,
        default_data_id: Mapping[str, Any] | None = None,
        with_dimension_records: bool = False,
        datasets: Any = None,
        **kwargs: Any,
    ) -> list[DatasetRef]:
        """Datasets of one type in the collections (see `Butler.query_datasets`).

        ``datasets`` (a mapping of dataset type to collections) only
        constrain: the result's data IDs must have those datasets too.
        """
        searches = self._searches([dataset_type], collections, find_first)
        if datasets:
            searches += self._searches(datasets, collections, False)
        if find_first:
            for c in _as_list(collections):
                if isinstance(c, str) and is_pattern(c):
                    raise MissingCollectionError(
                        f"find_first needs an ordered list of collections, not the pattern {c!r}; "
                        "pass find_first=False to search every matching collection."
                    )
        spec = self._spec(
            "datasets",
            searches[0].record.dataset_type.dimensions,
            searches,
            where=where,
            bind=bind,
            data_id=data_id,
            kwargs=kwargs,
            default_data_id=default_data_id,
            order_by=order_by,
            limit=None if with_dimension_records else limit,
        )
        refs = self.engine.run(spec)
        if not with_dimension_records:
            return refs
        expanded = attach_records(self, [r.data_id for r in refs])
        kept = [r.expanded(d) for r, d in zip(refs, expanded) if has_all_records(d)]
        return kept[:limit] if limit is not None else kept

    def coverage(
        self,
        dataset_type: str | DatasetType,
        collections: Any,
        *,
        dimensions: Iterable[str] = (),
        where: str | Node = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Any = None,
        expected_collections: Any = None,
        group_by: str | None = None,
    ) -> Coverage:
        """Which expected data IDs have a ``dataset_type`` dataset in ``collections``, decided by the database.

        The expected data IDs are ``query_data_ids(dimensions or the type's dimensions, where=…,
        datasets=…, collections=expected_collections or collections)``.
        `Coverage.run` gives their number and the missing ones, without sending the rest to Python.
        """
        from .queries import QuerySpec
        from .queries._coverage import Coverage

        dataset_type = self.dataset_types.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
        dims = list(dimensions) or list(dataset_type.dimensions.names)
        expected_dims = self.universe.conform(dims)
        expected = QuerySpec(
            "data_ids",
            expected_dims,
            searches=self._searches(datasets, expected_collections or collections, False),
            where=where,
            bind=dict(bind or {}),
            # Grouping by an implied dimension (a visit's band) needs its value; otherwise keys suffice.
            with_implied=bool(group_by) and group_by in expected_dims.implied,
        )
        # No `where` here: expected minus delivered is the same whether or not delivered is constrained too.
        delivered = QuerySpec(
            "datasets",
            dataset_type.dimensions,
            searches=self._searches([dataset_type.name], collections, False),
            with_implied=False,
        )
        return Coverage(self.db, self.engine, expected, delivered, group_by)

    def expand_data_id(
        self, data_id: Mapping[str, Any] | None = None, *, dimensions: Any = None, **kwargs: Any
    ) -> DataCoordinate:
        """A data ID with its implied values and the records of all its elements.

        Raises `DataIdError` naming the data ID when no records match it
        (an unknown visit, a detector the instrument does not have …).
        """
        given = DataCoordinate.standardize(
            data_id,
            universe=self.universe,
            dimensions=self.universe.conform(dimensions) if dimensions is not None else None,
            **kwargs,
        )
        found = self.query_data_ids(given.dimensions.names, data_id=given.required)
        if not found:
            raise DataIdError(
                f"No dimension records match the data ID {given.required}; check its values with "
                "query_dimension_records."
            )
        return attach_records(self, found[:1])[0]

    def query_dimension_records(
        self,
        element: str | DimensionElement,
        *,
        data_id: Mapping[str, Any] | None = None,
        where: str | Node = "",
        bind: Mapping[str, Any] | None = None,
        datasets: Any = None,
        collections: Any = None,
        order_by: Sequence[str] | str | None = None,
        limit: int | None = None,
        default_data_id: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[DimensionRecord]:
        """Records of one element satisfying the constraints (see `Butler.query_dimension_records`)."""
        e = self.universe[element] if isinstance(element, str) else element
        if isinstance(e, SkyPixDimension):
            return self._skypix_records(
                e,
                data_id=data_id,
                where=where,
                bind=bind,
                datasets=datasets,
                collections=collections,
                order_by=order_by,
                limit=limit,
                default_data_id=default_data_id,
                kwargs=kwargs,
            )
        if not e.has_own_table:
            raise DataIdError(
                f"Records of {e.name!r} are computed, not stored; query a spatial element instead."
            )
        spec = self._spec(
            "records",
            e.minimal_group,
            self._searches(datasets, collections, False),
            where=where,
            bind=bind,
            data_id=data_id,
            kwargs=kwargs,
            default_data_id=default_data_id,
            order_by=order_by,
            limit=limit,
            element=e,
        )
        return self.engine.run(spec)

    def _skypix_records(
        self,
        skypix: SkyPixDimension,
        *,
        data_id: Mapping[str, Any] | None,
        where: str | Node,
        bind: Mapping[str, Any] | None,
        datasets: Any,
        collections: Any,
        order_by: Sequence[str] | str | None,
        limit: int | None,
        default_data_id: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> list[DimensionRecord]:
        """Sky pixels (id and region) under the constraints, computed rather than stored.

        The common pixelization (htm7) goes through the query engine, which
        joins it to any constrained spatial element through the overlap
        tables, as daf_butler does.  Other levels (healpix, other HTM levels)
        are computed from the constraining element's regions: each region's
        envelope in that pixelization, kept where the pixel really overlaps.
        """
        common = skypix.name == self.universe.common_skypix.name
        given = {**(data_id or {}), **kwargs}
        constraints: dict[str, Any] = dict(
            data_id=data_id,
            where=where,
            bind=bind,
            datasets=datasets,
            collections=collections,
            default_data_id=default_data_id,
        )
        ids: list[Any]
        if common or skypix.name in given:
            found_ids = self.query_data_ids(
                [skypix.name], order_by=order_by, limit=limit, **constraints, **kwargs
            )
            ids = [d[skypix.name] for d in found_ids]
        else:
            element = self._constraining_spatial_element(given, default_data_id)
            if element is None:
                raise InvalidQueryError(
                    f"{skypix.name} pixels cover the sky; constrain them with a spatial data ID "
                    f"(skymap=…, tract=…, patch=… or instrument=…, visit=…, detector=…) or {skypix.name}=…."
                )
            import lsst.sphgeom

            records = self.query_dimension_records(element, **constraints, **kwargs)
            regions = [r.region for r in records if r.region is not None]
            pixelization = skypix.pixelization
            found: set[int] = set()
            for region in regions:
                for begin, end in pixelization.envelope(region):
                    for pixel in range(begin, end):
                        if not pixelization.pixel(pixel).relate(region) & lsst.sphgeom.DISJOINT:
                            found.add(pixel)
            descending = bool(order_by) and str(_as_list(order_by)[0]).startswith("-")
            ids = sorted(found, reverse=descending)[:limit]
        pixelization = skypix.pixelization
        return [DimensionRecord(skypix, {"id": i, "region": pixelization.pixel(i)}) for i in ids]

    def _constraining_spatial_element(
        self, given: Mapping[str, Any], defaults: Mapping[str, Any] | None
    ) -> DimensionElement | None:
        """The finest stored spatial element whose data ID the constraints give (patch, visit_detector_region …)."""
        keys = set(given) | set(defaults or {})
        best: DimensionElement | None = None
        for e in self.universe.database_elements:
            if not e.has_region:
                continue
            names = {d.name for d in e.required}
            if names <= keys and (best is None or len(names) > len({d.name for d in best.required})):
                best = e
        return best

    def count_datasets(self, collection: str) -> int:
        """Number of datasets in a RUN collection."""
        info = self.collections.get(collection)
        d = self.schema.dataset
        with self.db.reading() as conn:
            return conn.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(d).where(d.c.run_id == info.id)
            ).scalar_one()

    def collection_type(self, name: str) -> CollectionType:
        return self.collections.get(name).type
