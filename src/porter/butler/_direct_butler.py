"""`DirectButler`: the `Butler` that opens a repository's database and datastore itself.

Export files and file transfers (`porter.butler.transfers`, which reads times
with astropy, and `_file_transfers`) are imported by the methods that use
them, so opening a repository to query it does not pay for them.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._gc import paused_gc
from ..datastore import FsckReport, PathTemplate, ResourceURI, check_datastore_root, fsck
from ..dimensions import DataCoordinate, DimensionElement, DimensionRecord, DimensionUniverse, Timespan
from ..errors import (
    DataIdError,
    DatasetNotFoundError,
    DatasetTypeError,
    MissingCollectionError,
    MissingDatasetError,
    MissingDatasetTypeError,
    RepositoryError,
)
from ..registry import (
    CollectionType,
    DatasetRef,
    DatasetType,
    GovernorDefaults,
    Registry,
    RegistryDefaults,
    explainer,
    merge_data_id,
    pop_data_id,
)
from . import _ingest, _io
from ._butler import Butler, is_server_url
from ._collections import ButlerCollections
from ._data_id_rewrite import RewrittenDataId, rewrite_data_id
from ._deferred import DeferredDatasetHandle
from ._file_dataset import FileDataset
from ._io import DataIdExpander, open_datastore
from ._query import Query
from ._query_answers import answer_query
from ._repo_config import CONFIG_NAME, RepoConfig
from ._repo_index import resolve_label, unknown_repository_message

if TYPE_CHECKING:
    from ._export import ExportContext

__all__ = ["DirectButler"]


def _repository_location(config: str | Path | None) -> str | Path:
    """The repository a ``Butler(config)`` argument means: a path, or a label of the repository index."""
    if config is None:
        raise RepositoryError(
            "Butler() needs a repository: Butler('repo/') (a directory holding porter.yaml) or a label of "
            "the repository index, Butler('dp1')."
        )
    text = str(config)
    if is_server_url(text):
        raise RepositoryError(
            f"{text} is a server URL: open it with Butler({text!r}, token=…), not DirectButler."
        )
    if Path(text).exists():
        return config
    resolved = resolve_label(text)
    if resolved is not None:
        return resolved
    if "/" not in text and os.sep not in text:
        raise RepositoryError(unknown_repository_message(text))
    return config


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class DirectButler(Butler):
    """A data repository: dimension records, dataset types, collections and datasets.

    Parameters
    ----------
    config : `str` or `~pathlib.Path`
        The repository directory (holding ``porter.yaml``), its ``porter.yaml``,
        or a label of the repository index (``Butler("dp1")``, through
        ``$DAF_BUTLER_REPOSITORY_INDEX`` or ``$PORTER_REPOSITORY_INDEX``).
    collections : `str` or sequence of `str`, optional
        Default collections to search when a call does not name any
        (default: ``[run]``).
    run : `str`, optional
        Default RUN collection to write to; it is created if needed.
    writeable : `bool`
        `False` refuses every write through this butler.
    inferDefaults : `bool`
        When the default collections hold data of exactly one instrument
        (one skymap …), use that value wherever a call leaves the governor
        open, as daf_butler does.
    preload : `bool`
        Import the query system and lsst.sphgeom while opening (~0.1-0.15 s),
        so that the first query runs as fast as later ones (a notebook, a
        server).  `False` defers each import to the first call that needs it,
        which suits a command that runs one operation and exits (porter's CLI).
    **kwargs
        Default values for governor dimensions (``instrument="HSC"``,
        ``skymap="hsc_rings_v1"``); they win over inferred ones.
    """

    def __init__(
        self,
        config: str | Path | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        run: str | None = None,
        writeable: bool | None = None,
        inferDefaults: bool = True,
        searchPaths: Sequence[str] | None = None,
        without_datastore: bool = False,
        root: str | Path | None = None,
        preload: bool = True,
        **kwargs: Any,
    ):
        location = _repository_location(config if config is not None else root)
        self._config = RepoConfig.read(location)
        self.registry = Registry.open(self._config.resolved_registry_url, self._config.namespace)
        self.writeable = True if writeable is None else writeable
        self.registry.defaults = RegistryDefaults(collections, run, inferDefaults, **kwargs)
        self.collections = ButlerCollections(self)
        if run is not None and self.writeable:
            self.registry.collections.register(run, CollectionType.RUN)
        self.datastore = open_datastore(self.registry, self._config)
        self._expander = DataIdExpander(self.registry)
        if preload:
            self.registry.prepare_queries()

    @property
    def run(self) -> str | None:
        """The RUN collection written to when a call names none."""
        return self.registry.defaults.run

    _governor_defaults: GovernorDefaults | None = None
    """Set on a `with_defaults` view: the governor defaults of another caller (a server's client)."""

    @property
    def data_id_defaults(self) -> GovernorDefaults:
        """Governor values used when a call leaves them open: explicit, or inferred from the default collections."""
        if self._governor_defaults is not None:
            return self._governor_defaults
        return self.registry.default_data_id()

    def with_defaults(self, defaults: GovernorDefaults) -> DirectButler:
        """A view of this butler (same registry, datastore and connections) with other governor defaults.

        What a server does per request: each client has its own defaults
        (explicit, or inferred from its own default collections), and the one
        open repository must not change under the other requests.
        """
        view = copy.copy(self)
        view._governor_defaults = defaults
        return view

    def infer_defaults(
        self, collections: Sequence[str], explicit: Mapping[str, Any], infer: bool = True
    ) -> GovernorDefaults:
        """The governor defaults a butler opened with these default collections and explicit values would have."""
        defaults = RegistryDefaults(list(collections), None, infer, **explicit)
        defaults.check(self.registry)
        return defaults.data_id(self.registry)

    @property
    def _default_collections(self) -> tuple[str, ...]:
        return self.registry.defaults.collections

    # --- creation --------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        registry: str | None = None,
        datastore: str | None = None,
        namespace: str | None = None,
        universe: DimensionUniverse | None = None,
        overwrite: bool = False,
        templates: Mapping[str, str] | None = None,
    ) -> DirectButler:
        """Create a new, empty repository and return a butler for it.

        Parameters
        ----------
        root : `str` or `~pathlib.Path`
            Directory to create (it may exist but must not hold a repository).
        registry : `str`, optional
            Database URL; default SQLite in ``root``.  For PostgreSQL:
            ``postgresql://user@host:port/database``.
        datastore : `str`, optional
            Where files go (default: ``root``).
        namespace : `str`, optional
            PostgreSQL schema for this repository's tables.
        overwrite : `bool`
            Replace an existing porter repository at ``root`` (SQLite only).
        templates : mapping of `str` to `str`, optional
            File path templates by dataset type name, ``"default"`` for the
            rest (see `porter.datastore.PathTemplate`).
        """
        root_path = Path(root)
        if (root_path / CONFIG_NAME).exists():
            if not overwrite:
                raise RepositoryError(
                    f"A porter repository already exists at {root_path}; open it with Butler({str(root_path)!r})."
                )
            old = RepoConfig.read(root_path)
            if old.registry_url.startswith("sqlite"):
                Path(old.resolved_registry_url.split("///", 1)[1]).unlink(missing_ok=True)
        config = RepoConfig.default(root_path, registry, namespace, datastore, dict(templates or {}))
        for text in config.templates.values():
            PathTemplate(text)  # a malformed template is refused before anything is created
        if datastore is not None:
            check_datastore_root(datastore)
        root_path.mkdir(parents=True, exist_ok=True)
        try:
            reg = Registry.create(config.resolved_registry_url, config.namespace, universe)
        except Exception:
            if not any(root_path.iterdir()):
                shutil.rmtree(root_path, ignore_errors=True)
            raise
        reg.close()
        config.write()
        return cls(root_path)

    # --- basics ------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self._config.root

    @property
    def dimensions(self) -> DimensionUniverse:
        """The dimension universe of this repository."""
        return self.registry.universe

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> DirectButler:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DirectButler({str(self.root)!r}, registry={self._config.registry_url!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside happen together, or not at all."""
        try:
            with self.registry.transaction():
                yield
        except BaseException:
            self.registry.reset_caches()
            raise

    def _collections_or_default(self, collections: str | Sequence[str] | None) -> list[str]:
        return self.registry.collections_or_default(collections)

    # --- dimension records ---------------------------------------------------------------------------

    def insert_dimension_records(
        self,
        element: str | DimensionElement,
        records: Iterable[Mapping[str, Any] | DimensionRecord],
        *,
        skip_existing: bool = False,
        replace: bool = False,
    ) -> int:
        """Insert dimension records (dicts with the element's fields, or `DimensionRecord`).

        Set-based: one statement per table per 50,000 records.
        """
        return self.registry.insert_dimension_records(
            element, records, skip_existing=skip_existing, replace=replace
        )

    # --- dataset types ---------------------------------------------------------------------------------

    def register_dataset_type(
        self,
        dataset_type: str | DatasetType,
        dimensions: Iterable[str] | None = None,
        storage_class: str | None = None,
        *,
        is_calibration: bool = False,
    ) -> bool:
        """Register a dataset type; `False` if an identical one exists already."""
        if isinstance(dataset_type, DatasetType):
            dt = dataset_type
        else:
            if dimensions is None or storage_class is None:
                raise DatasetTypeError(
                    f"register_dataset_type({dataset_type!r}, …) needs dimensions and a storage class, e.g. "
                    "register_dataset_type('calexp', ['instrument', 'visit', 'detector'], 'ExposureF')."
                )
            dt = DatasetType(
                dataset_type,
                list(dimensions),
                storage_class,
                universe=self.dimensions,
                is_calibration=is_calibration,
            )
        return self.registry.register_dataset_type(dt)

    def get_dataset_type(self, name: str) -> DatasetType:
        return self.registry.get_dataset_type(name)

    def query_dataset_types(self, expression: Any = "*") -> list[DatasetType]:
        """Registered dataset types matching glob patterns, regexes or names."""
        return self.registry.query_dataset_types(expression)

    def remove_dataset_type(self, name: str) -> None:
        """Remove a dataset type; refused while it has datasets."""
        self.registry.remove_dataset_type(name)

    # --- queries -----------------------------------------------------------------------------------------

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
        """Find datasets of one type.

        Parameters
        ----------
        dataset_type : `str` or `DatasetType`
            What to find.
        collections : `str` or sequence of `str`, optional
            Collections to search, in order (chains are expanded); default:
            the butler's default collections.
        find_first : `bool`
            Return, for each data ID, only the dataset from the first
            collection that has one.
        data_id, **kwargs
            Data ID constraints (``instrument="HSC", visit=903342``).
        where : `str`
            A ``where`` expression: ``"visit > 100 AND band = 'r'"``.
        bind : `dict`
            Values for ``:name`` identifiers in ``where``.
        order_by : `str` or sequence of `str`
            Dimension keys or record fields; ``-`` in front for descending.
        limit : `int`, optional
            At most this many results; a negative value ``-n`` returns at most
            ``n`` and warns if there were more (daf_butler's convention); ``0``
            checks the query and returns nothing.
        explain : `bool`
            When the answer is empty, raise `EmptyQueryResultError` with the
            possible reasons (daf_butler's default); `False` returns ``[]``.
        with_dimension_records : `bool`
            Attach to each data ID the records of its elements
            (``ref.dataId.records["visit"].exposure_time``), fetched with one
            query per element for all results.
        """
        data_id = pop_data_id(data_id, kwargs)
        names = self._collections_or_default(collections)
        type_name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        return self._answer(
            lambda target, **kw: self.registry.query_datasets(target, names, **kw),
            dataset_type,
            names,
            [type_name],
            f"{type_name} datasets",
            limit=limit,
            explain=explain,
            data_id=data_id,
            where=where,
            bind=bind,
            kwargs=kwargs,
            find_first=find_first,
            order_by=order_by,
            with_dimension_records=with_dimension_records,
        )

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
        """Find data IDs of the given dimensions (with implied values filled in).

        ``datasets`` (with ``collections``) restricts the results to data IDs
        for which those datasets exist.  Spatial dimensions of different
        families (visit/detector and tract/patch) are joined by region overlap.
        ``with_dimension_records=True`` attaches each element's record
        (``data_id.records["visit"]``), fetched in bulk.
        """
        data_id = pop_data_id(data_id, kwargs)
        names = self._collections_or_default(collections) if datasets else None
        return self._answer(
            self.registry.query_data_ids,
            dimensions,
            names,
            _names(datasets),
            "data IDs",
            limit=limit,
            explain=explain,
            data_id=data_id,
            where=where,
            bind=bind,
            kwargs=kwargs,
            datasets=datasets,
            collections=names,
            order_by=order_by,
            with_dimension_records=with_dimension_records,
        )

    def query_dimension_records(
        self,
        element: str | DimensionElement,
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
        """Find dimension records of one element (a visit's region, a detector's raft …)."""
        data_id = pop_data_id(data_id, kwargs)
        names = self._collections_or_default(collections) if datasets else None
        return self._answer(
            self.registry.query_dimension_records,
            element,
            names,
            _names(datasets),
            f"{element if isinstance(element, str) else element.name} records",
            limit=limit,
            explain=explain,
            data_id=data_id,
            where=where,
            bind=bind,
            kwargs=kwargs,
            datasets=datasets,
            collections=names,
            order_by=order_by,
        )

    def query(self) -> Query:
        """daf_butler's query builder: ``with butler.query() as q: q.datasets("calexp").where(…)``.

        See `porter.butler.Query`: string and typed constraints
        (``q.expression_factory``), dataset searches as joins, results
        refined with ``where``, ``order_by``, ``limit`` and
        ``with_dimension_records``, counted with ``count()`` and ``any()``.
        """
        return Query(self)

    def _answer(
        self,
        fetch: Callable[..., list[Any]],
        target: Any,
        searched: Sequence[str] | None,
        dataset_types: Sequence[str],
        what: str,
        *,
        limit: int | None,
        explain: bool,
        data_id: Mapping[str, Any] | None,
        where: str,
        bind: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
        **options: Any,
    ) -> list[Any]:
        """Run one of the registry's query methods under daf_butler's limit and explain rules."""
        defaults = self.data_id_defaults

        def run(n: int | None) -> list[Any]:
            return fetch(
                target,
                data_id=data_id,
                where=where,
                bind=bind,
                limit=n,
                default_data_id=defaults,
                **options,
                **kwargs,
            )

        reasons = explainer(
            self.registry,
            dataset_types=dataset_types,
            collections=searched or (),
            data_id=data_id,
            kwargs=kwargs,
            defaults=defaults,
            where=where,
        )
        return answer_query(run, limit, explain, reasons, what)

    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        timespan: Timespan | None = None,
        **kwargs: Any,
    ) -> DatasetRef | None:
        """The dataset of this type and data ID first found in the collections (or `None`).

        The data ID may be positional, ``data_id=``/``dataId=``, keywords, or
        a mix (keywords win); governors left open come from the butler's
        defaults.
        """
        data_id = pop_data_id(data_id, kwargs)
        kwargs.pop("storage_class", None)
        dt, rewritten = self._standardize(dataset_type, data_id, kwargs)
        ref = self.registry.find_dataset(
            dataset_type,
            rewritten.data_id,
            collections=self._collections_or_default(collections),
            timespan=timespan or rewritten.timespan,
        )
        if ref is None or not dt.dimensions.implied:
            return ref
        return ref.expanded(
            self._expander.expand(ref.data_id)
        )  # band, physical_filter … as daf_butler has them

    def _standardize(
        self, dataset_type: str | DatasetType, data_id: Any, kwargs: Mapping[str, Any]
    ) -> tuple[DatasetType, RewrittenDataId]:
        """The dataset type and the dimension values a call means: defaults merged, record fields resolved."""
        dt = self.registry.dataset_types.get_record(dataset_type).dataset_type
        merged = merge_data_id(self.dimensions, self.data_id_defaults, data_id, kwargs, dt.dimensions)
        return dt, rewrite_data_id(self.registry, dt, merged)

    def resolve_data_id(
        self, dataset_type: str | DatasetType, data_id: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> DataCoordinate:
        """The data ID a put of ``dataset_type`` with these values means: defaults merged, record fields
        (``exposure.day_obs``) resolved, checked against the dataset type's dimensions."""
        dt, rewritten = self._standardize(dataset_type, data_id, kwargs)
        return DataCoordinate.standardize(
            rewritten.data_id, universe=self.dimensions, dimensions=dt.dimensions, allow_extra=True
        )

    def get_dataset(self, dataset_id: uuid.UUID | str) -> DatasetRef | None:
        """The dataset with this UUID, or `None`."""
        return self.registry.get_dataset(dataset_id)

    # --- import / export --------------------------------------------------------------------------------

    def import_(
        self,
        filename: str | Path | IO[str] | None = None,
        *,
        format: str = "yaml",
        skip_dimensions: Iterable[str] | None = None,
        progress: Callable[[str, int], None] | None = None,
        directory: str | None = None,
        transfer: str | None = None,
        without_datastore: bool = True,
        record_validation_info: bool = True,
    ) -> dict[str, int]:
        """Import a butler export file (porter's or daf_butler's, versions 0 and 1.0.x).

        All of it is written in one transaction: a file with any error
        imports nothing.  Dimension records that already exist are kept;
        datasets keep their UUIDs.  ``progress(description, total_steps)``
        is called before each step.  Returns counts of what the file held.
        """
        if format != "yaml":
            raise RepositoryError(f"Unknown export format {format!r}; porter reads 'yaml'.")
        if filename is None:
            filename = "export.yaml"
        if directory is not None and isinstance(filename, (str, Path)) and not Path(filename).is_absolute():
            filename = Path(directory) / filename
        if transfer is not None and directory is None:
            raise RepositoryError(
                "import_(transfer=…) brings files, from the directory the export was written to: pass "
                "directory= as well (or neither, to import the registry content only)."
            )
        from . import _file_transfers
        from .transfers import apply_plan, read_export

        with paused_gc():
            plan = read_export(filename, self.dimensions, self.registry)
        skip = list(skip_dimensions or ())
        total = plan.step_count(skip)
        step = None if progress is None else (lambda description: progress(description, total))
        if directory is not None:
            try:
                return _file_transfers.import_files(
                    self.registry,
                    self.datastore,
                    self._expander,
                    plan,
                    directory,
                    transfer or "auto",
                    skip,
                    step or (lambda _: None),
                )
            except BaseException:
                self.registry.reset_caches()
                raise
        try:
            with paused_gc():
                return self.registry.db.retrying(lambda: apply_plan(plan, self.registry, skip, step))
        except BaseException:
            self.registry.reset_caches()
            raise

    def export(
        self,
        filename: str | Path = "export.yaml",
        *,
        collections: str | Sequence[str] | None = None,
        datasets: Iterable[DatasetRef] | None = None,
        dataset_types: str | Sequence[str] | None = None,
        where: str = "",
        include_all_dimensions: bool = False,
        directory: str | None = None,
        transfer: str | None = None,
        format: str = "yaml",
        progress: Callable[[str, int], None] | None = None,
    ) -> ExportContext:
        """Write an export file readable by porter and by daf_butler.

        Called with ``collections``, ``datasets`` or ``include_all_dimensions``
        it writes at once: the given datasets and/or every dataset (of
        ``dataset_types``, matching ``where``) in ``collections``, with the
        dimension records their data IDs need, their runs, and the named
        collections (TAGGED associations, CALIBRATION validity ranges,
        CHAINED definitions); ``include_all_dimensions`` adds every dimension
        record in the repository.  Called without them it returns a context
        manager to fill, as daf_butler's ``export`` does.  The file is written
        atomically; the result maps what was written to counts.
        ``progress(description, total_steps)`` is called before each step.
        """
        if format != "yaml":
            raise RepositoryError(f"Unknown export format {format!r}; porter writes 'yaml'.")
        if transfer is not None and directory is None:
            raise RepositoryError(
                "export(transfer=…) copies files into a directory: pass directory= as well."
            )
        from ._export import ExportContext
        from .transfers import refs_for_export

        context = ExportContext(self.registry, filename, self.datastore, directory, transfer or "copy")
        writer = context._writer
        names = _names(collections)
        if not (names or datasets is not None or include_all_dimensions):
            return context
        step = (lambda description: progress(description, 4)) if progress is not None else (lambda _: None)
        step("finding datasets")
        refs: list[DatasetRef] = list(datasets) if datasets is not None else []
        if names:
            names = self.registry.collections.query(names)
            refs += refs_for_export(self.registry, names, _names(dataset_types) or None, where)
        step(f"collecting dimension records for {len(refs)} datasets")
        if include_all_dimensions:
            writer.add_all_dimension_records()
        writer.add_datasets(refs)
        step("collections")
        for n in names:
            writer.add_collection(n)
        step(f"writing {filename}")
        context.write()
        return context

    # --- reading and writing datasets -------------------------------------------------------------------

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
        """Store ``obj`` as a new dataset and return its reference.

        ``obj`` must be of the dataset type's storage class (or convertible to
        it: a DataFrame for an ArrowTable dataset type).  The file and the
        registry rows are written together: after an error, or a crash, neither
        exists.  A dataset with the same type and data ID already in the run is
        a `ConflictingDefinitionError`; porter never overwrites.

        Examples
        --------
        >>> ref = butler.put(catalog, "src", instrument="HSC", visit=903342, detector=10, run="u/me/run")
        """
        if not self.writeable:
            raise RepositoryError("This butler was opened read-only (writeable=False).")
        data_id = pop_data_id(data_id, kwargs)
        if not isinstance(dataset_ref_or_type, DatasetRef):
            data_id = self._standardize(dataset_ref_or_type, data_id, kwargs)[1].data_id
            kwargs = {}
        dataset_type, data_id_, run_, dataset_id = _io.resolve_for_put(
            self.registry, dataset_ref_or_type, data_id, run or self.run, kwargs
        )
        return _io.put(
            self.registry, self.datastore, self._expander, obj, dataset_type, data_id_, run_, dataset_id
        )

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
        """Read a dataset: by reference, or by dataset type and data ID (first found in ``collections``).

        ``parameters`` read part of it (``{"bbox": BBox(...)}`` for images,
        ``{"columns": [...]}`` for tables) without reading the rest;
        ``storage_class`` converts (an ArrowTable dataset as a ``"DataFrame"``).
        """
        storage_class = storage_class or kwargs.pop("storageClass", None)
        ref = self._find(dataset_ref_or_type, data_id, collections, timespan, kwargs)
        return _io.read(self.datastore, ref, parameters, storage_class)

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
        """A handle to read the dataset later (``handle.get(parameters={"bbox": …})``), found now.

        The look-up happens here, so a missing dataset fails at this call
        (`DatasetNotFoundError`, a `LookupError`), as in daf_butler; nothing
        is read until ``handle.get()``.
        """
        storage_class = storage_class or kwargs.pop("storageClass", None)
        ref = self._find(dataset_ref_or_type, data_id, collections, timespan, kwargs)
        if not self.datastore.locations([ref.id]):
            raise DatasetNotFoundError(
                f"{ref.dataset_type.name}@{dict(ref.data_id.required)} in {ref.run!r} has no stored file; "
                "nothing to read later."
            )
        return DeferredDatasetHandle(self, ref, dict(parameters or {}), storage_class)

    get_deferred = getDeferred

    def get_uri(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        /,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ResourceURI:
        """Where a dataset's file is (a local path or an s3:// URI)."""
        ref = self._find(dataset_ref_or_type, data_id, collections, None, kwargs)
        return _io.uris(self.datastore, [ref])[ref]

    def get_many_uris(self, refs: Iterable[DatasetRef]) -> dict[DatasetRef, ResourceURI]:
        """The file of each dataset, looked up in one query."""
        return _io.uris(self.datastore, refs)

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
        """True if the dataset is registered and has its file (``full_check`` also looks at the file)."""
        try:
            ref = self._find(dataset_ref_or_type, data_id, collections, None, kwargs)
        except (MissingDatasetError, MissingDatasetTypeError):
            return False
        if isinstance(dataset_ref_or_type, DatasetRef) and self.registry.get_dataset(ref.id) is None:
            return False
        location = self.datastore.locations([ref.id]).get(ref.id)
        if location is None:
            return False
        return not full_check or self.datastore.uri_of(location.path).exists()

    def _find(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        data_id: Mapping[str, Any] | DataCoordinate | None,
        collections: str | Sequence[str] | None,
        timespan: Timespan | None,
        kwargs: dict[str, Any],
    ) -> DatasetRef:
        data_id = pop_data_id(data_id, kwargs)
        if isinstance(dataset_ref_or_type, DatasetRef):
            if data_id is not None or kwargs:
                raise DataIdError(
                    "A DatasetRef identifies its dataset; pass no other data ID "
                    f"(got {dict(data_id or {}) | kwargs})."
                )
            return dataset_ref_or_type
        name = dataset_ref_or_type if isinstance(dataset_ref_or_type, str) else dataset_ref_or_type.name
        parent, _, component = name.partition(".")  # "calexp.wcs": find the calexp, read its WCS
        rewritten = self._standardize(parent, data_id, kwargs)[1]
        ref = _io.find_ref(
            self.registry,
            parent,
            rewritten.data_id,
            self._collections_or_default(collections),
            {},
            timespan or rewritten.timespan,
        )
        return ref.makeComponentRef(component) if component else ref

    def ingest(
        self,
        *datasets: FileDataset,
        transfer: str = "auto",
        progress: _ingest.Progress | None = None,
    ) -> list[DatasetRef]:
        """Register existing files as datasets.

        ``transfer`` is ``copy``, ``move``, ``link`` (hard link, else
        symbolic), ``symlink``, ``relsymlink``, ``hardlink``, ``direct`` (the
        file stays where it is; porter records its absolute URI and never
        deletes it) or ``auto`` (files already in the datastore stay in place;
        others are linked, or copied when S3 is involved).  All the files are
        ingested, or none: a bad data ID, a missing file or a dataset that
        already exists leaves the repository unchanged.

        Examples
        --------
        >>> raw = butler.get_dataset_type("raw")
        >>> butler.ingest(FileDataset("HSC-903342-010.fits",
        ...     DatasetRef(raw, {"instrument": "HSC", "exposure": 903342, "detector": 10}, "HSC/raw/all")),
        ...     transfer="symlink")
        """
        if not self.writeable:
            raise RepositoryError("This butler was opened read-only (writeable=False).")
        return _ingest.ingest_files(
            self.registry, self.datastore, self._expander, list(datasets), transfer, progress=progress
        )

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
        """Bring datasets and their files from another repository, keeping their UUIDs.

        Works between any pair of back ends (files or S3 on either side, SQLite
        or PostgreSQL).  Dataset types, runs and the dimension records the data
        IDs need come along (daf_butler's ``register_dataset_types`` and
        ``transfer_dimensions``, on by default here).  ``auto`` copies the
        files; ``direct`` leaves them where the source repository has them.
        Datasets already in this repository are skipped, as are (with
        ``skip_missing``) datasets without a file.  Returns the refs transferred.

        Examples
        --------
        >>> src = Butler("/repo/main")
        >>> refs = src.query_datasets("calexp", "HSC/runs/RC2", where="visit = 1228")
        >>> Butler("/repo/mine").transfer_from(src, refs)
        """
        if not self.writeable:
            raise RepositoryError("This butler was opened read-only (writeable=False).")
        if not isinstance(source_butler, DirectButler):
            from ._remote_butler import transfer_into_local

            return transfer_into_local(
                self,
                source_butler,
                list(source_refs),
                skip_missing=skip_missing,
                register_dataset_types=register_dataset_types,
                transfer_dimensions=transfer_dimensions,
            )
        from . import _file_transfers

        return _file_transfers.transfer_datasets(
            self,
            source_butler,
            list(source_refs),
            transfer,
            skip_missing=skip_missing,
            register_dataset_types=register_dataset_types,
            transfer_dimensions=transfer_dimensions,
        )

    def retrieve_artifacts(
        self,
        refs: Iterable[DatasetRef],
        destination: str | Path,
        transfer: str = "copy",
        preserve_path: bool = True,
        overwrite: bool = False,
    ) -> list[ResourceURI]:
        """Copy the files of ``refs`` into ``destination`` (a directory or S3 prefix); returns the files written.

        With ``preserve_path`` the datastore's directory layout is kept;
        otherwise the files land side by side.  Existing files are an error
        (nothing is written) unless ``overwrite``.
        """
        from . import _file_transfers

        refs = list(refs)
        placed = _file_transfers.copy_out(
            self.datastore, refs, destination, transfer, preserve_path=preserve_path, overwrite=overwrite
        )
        dest = ResourceURI.from_string(destination)
        return [dest.join(relative) for relative in dict.fromkeys(rel for rel, _ in placed.values())]

    retrieveArtifacts = retrieve_artifacts

    # --- integrity -------------------------------------------------------------------------------------------

    def fsck(
        self,
        *,
        repair: bool = False,
        checksums: bool = False,
        grace: float = 3600.0,
        progress: Callable[[str], None] | None = None,
    ) -> FsckReport:
        """Check every stored file against the registry; with ``repair``, fix what is safe to fix.

        See `porter.datastore.fsck` for the findings.  Journal rows younger
        than ``grace`` seconds are skipped (a write may be in progress).
        """

        def type_name(type_id: int) -> str:
            return self.registry.dataset_types.get_by_id(type_id).dataset_type.name

        return fsck(
            self.datastore,
            repair=repair,
            checksums=checksums,
            grace=grace,
            progress=progress,
            type_name=type_name,
        )

    # --- removal -------------------------------------------------------------------------------------------

    def remove_runs(self, names: str | Iterable[str]) -> int:
        """Delete RUN collections, every dataset in them and their files; returns the number of datasets removed.

        Refused (nothing removed) if a run is still a child of a CHAINED collection.  The
        registry rows go first, in one transaction that also journals the files for deletion;
        a crash after it leaves files that ``porter fsck`` deletes.
        """
        runs = _names(names)
        with self.registry.db.transaction() as conn:
            ids = self.registry.datasets.ids_in_runs(runs)
            doomed = self.datastore.release(conn, ids)
            n = self.registry.datasets.remove_runs(runs)
        self.datastore.delete(doomed)
        return n

    def prune_datasets(
        self,
        refs: Iterable[DatasetRef],
        *,
        disassociate: bool = True,
        unstore: bool = False,
        tags: str | Iterable[str] = (),
        purge: bool = False,
    ) -> int:
        """Remove datasets from TAGGED collections, delete their files, or delete them entirely.

        As in daf_butler: ``tags`` (with ``disassociate``) removes the datasets
        from those TAGGED collections; ``unstore`` deletes their files but keeps
        them registered (``get`` then reports the missing file); ``purge``
        (which needs ``disassociate`` and ``unstore``) deletes them from the
        registry and every collection, and their files.  The registry change
        and the file journal commit together; files are deleted afterwards
        (a crash in between leaves files that ``porter fsck --repair`` deletes).
        Returns the number of datasets affected.

        Examples
        --------
        >>> refs = butler.query_datasets("calexp", "u/me/run", where="visit = 1228")
        >>> butler.prune_datasets(refs, purge=True, unstore=True)
        """
        if not self.writeable:
            raise RepositoryError("This butler was opened read-only (writeable=False).")
        refs = list(refs)
        tag_names = _names(tags)
        if purge and not (disassociate and unstore):
            raise RepositoryError("prune_datasets(purge=True) also needs disassociate=True and unstore=True.")
        if not (purge or unstore or (disassociate and tag_names)):
            raise RepositoryError(
                "prune_datasets has nothing to do: pass tags=[…] to disassociate, unstore=True to delete files, "
                "or purge=True (with unstore=True) to delete the datasets."
            )
        for name in tag_names:
            if self.registry.collection_type(name) is not CollectionType.TAGGED:
                raise MissingCollectionError(
                    f"{name!r} is a {self.registry.collection_type(name).name} collection; tags= takes TAGGED "
                    "collections (datasets leave a RUN only with purge=True)."
                )
        with self.registry.db.transaction() as conn:
            doomed = self.datastore.release(conn, [r.id for r in refs]) if unstore else []
            if purge:
                self.registry.remove_datasets(refs)
            elif disassociate:
                for name in tag_names:
                    self.registry.disassociate(name, refs)
        self.datastore.delete(doomed)
        return len(refs)

    def clear_interrupted_puts(self, refs: Iterable[DatasetRef]) -> int:
        """Clear what killed puts of these (unregistered) datasets left: their journal rows and partial files.

        For a caller that owns these datasets' writes — a pipeline re-running
        a quantum whose earlier attempt was killed — so they can be put again.
        `porter fsck --repair` does the same for a whole repository.
        """
        return _io.clear_interrupted_puts(self.datastore, self._expander, list(refs))
