"""`Butler`: the one interface a user holds, whether the repository is a directory or a server.

``Butler("repo/")`` returns a `DirectButler` (it opens the repository's
database and datastore itself); ``Butler("https://host/repo", token=…)``
returns a `RemoteButler` (it speaks HTTP to ``porter serve``).  Both
implement the methods declared here, with the same arguments, defaults,
answers and exception types, so a script written against one runs against
the other.  This module imports neither implementation at import time: a
remote client never loads SQLAlchemy or a database driver.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RepositoryError

if TYPE_CHECKING:
    from ..core import DatasetRef, DatasetType
    from ..datastore import ResourceURI
    from ..dimensions import DataCoordinate, DimensionRecord, DimensionUniverse, Timespan
    from ._collections import ButlerCollections
    from ._repo_config import RepoConfig

__all__ = ["Butler", "is_server_url"]


def is_server_url(location: object) -> bool:
    """Whether a ``Butler(location)`` argument names a server (``http://`` or ``https://``), not a directory."""
    return isinstance(location, str) and location.startswith(("http://", "https://"))


class Butler(ABC):
    """A data repository: dimension records, dataset types, collections and datasets.

    ``Butler(config, …)`` picks the implementation from ``config``: a directory,
    a ``porter.yaml`` or a label of the repository index opens a
    `DirectButler`; an ``http(s)://`` URL connects a `RemoteButler` (``token=``,
    else ``$PORTER_TOKEN``, else the client configuration file).  See each
    implementation for its own options.
    """

    collections: ButlerCollections
    """Collection operations (``butler.collections.query("u/me/*")``, ``redefine_chain`` …), as in daf_butler."""

    def __new__(cls, config: Any = None, *args: Any, **kwargs: Any) -> Butler:
        if cls is not Butler:  # DirectButler(...) / RemoteButler(...) asked for by name
            return super().__new__(cls)
        location = config if config is not None else kwargs.get("root")
        if is_server_url(location):
            from ._remote_butler import RemoteButler

            return super().__new__(RemoteButler)
        if "token" in kwargs:
            raise RepositoryError(
                f"token= is for a server URL (Butler('https://host/repo', token=…)); {location!r} is a local "
                "repository, whose access is the file system's."
            )
        from ._direct_butler import DirectButler

        return super().__new__(DirectButler)

    @classmethod
    def from_config(cls, config: str | Path | None = None, **kwargs: Any) -> Butler:
        """daf_butler's factory: the same as ``Butler(config, …)``.

        Examples
        --------
        >>> butler = Butler.from_config("/repo/main", collections="HSC/runs/RC2")
        >>> butler.get("calexp", visit=1228, detector=50)      # instrument from the collections
        """
        return cls(config, **kwargs)

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
    ) -> Butler:
        """Create a new, empty repository and return a butler for it (see `DirectButler.create`)."""
        from ._direct_butler import DirectButler

        return DirectButler.create(
            root,
            registry=registry,
            datastore=datastore,
            namespace=namespace,
            universe=universe,
            overwrite=overwrite,
            templates=templates,
        )

    @classmethod
    def makeRepo(cls, root: str | Path, **kwargs: Any) -> RepoConfig:
        """Create a repository (as `create`) and return its configuration, as daf_butler does."""
        from ._repo_config import RepoConfig

        butler = cls.create(
            root,
            **{k: v for k, v in kwargs.items() if k in ("registry", "datastore", "namespace", "overwrite")},
        )
        butler.close()
        return RepoConfig.read(root)

    @staticmethod
    def get_known_repos() -> set[str]:
        """The labels of the repository index (``$DAF_BUTLER_REPOSITORY_INDEX``), as daf_butler names them."""
        from ._repo_index import known_repos

        return known_repos()

    @staticmethod
    def get_repo_uri(label: str) -> str:
        """The location the repository index gives for ``label``."""
        from ._repo_index import resolve_label, unknown_repository_message

        found = resolve_label(label)
        if found is None:
            raise RepositoryError(unknown_repository_message(label))
        return found

    # --- state --------------------------------------------------------------------------------------

    @property
    @abstractmethod
    def run(self) -> str | None:
        """The RUN collection written to when a call names none."""

    @property
    @abstractmethod
    def dimensions(self) -> DimensionUniverse:
        """The dimension universe of this repository."""

    @abstractmethod
    def close(self) -> None:
        """Release the database connections (direct) or the HTTP connection pool (remote)."""

    def __enter__(self) -> Butler:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    # --- dataset types -------------------------------------------------------------------------------

    @abstractmethod
    def get_dataset_type(self, name: str) -> DatasetType:
        """The dataset type called ``name``; `MissingDatasetTypeError` (with a suggestion) if there is none."""

    @abstractmethod
    def query_dataset_types(self, expression: Any = "*") -> list[DatasetType]:
        """Dataset types whose names match globs, regexes or exact names."""

    @abstractmethod
    def register_dataset_type(
        self,
        dataset_type: str | DatasetType,
        dimensions: Iterable[str] | None = None,
        storage_class: str | None = None,
        *,
        is_calibration: bool = False,
    ) -> bool:
        """Define a dataset type; `False` if an identical one exists, `ConflictingDefinitionError` if a different one does."""

    # --- queries -------------------------------------------------------------------------------------

    @abstractmethod
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
        """Find datasets of one type (see `DirectButler.query_datasets` for every argument)."""

    @abstractmethod
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
        """Find data IDs of the given dimensions (with implied values filled in)."""

    @abstractmethod
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
        """Find dimension records of one element (a visit's region, a detector's raft …)."""

    @abstractmethod
    def find_dataset(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        timespan: Timespan | None = None,
        **kwargs: Any,
    ) -> DatasetRef | None:
        """The dataset of this type and data ID first found in the collections (or `None`)."""

    @abstractmethod
    def get_dataset(self, dataset_id: uuid.UUID | str) -> DatasetRef | None:
        """The dataset with this UUID, or `None` (also when it is in a collection the caller may not read)."""

    # --- reading and writing datasets ----------------------------------------------------------------

    @abstractmethod
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
        """Read a dataset, whole or in part (``parameters={"columns": […]}`` or ``{"bbox": …}``)."""

    @abstractmethod
    def get_uri(
        self,
        dataset_ref_or_type: DatasetRef | DatasetType | str,
        /,
        data_id: Mapping[str, Any] | DataCoordinate | None = None,
        *,
        collections: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ResourceURI:
        """Where the dataset's file is: a file or S3 URI locally, a signed HTTP URL through a server."""

    @abstractmethod
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
        """Whether the dataset is known (and, with ``full_check``, its file is there)."""

    @abstractmethod
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
        """Write ``obj`` as a new dataset in ``run`` (default: the butler's run)."""

    @abstractmethod
    def remove_runs(self, names: str | Iterable[str]) -> int:
        """Delete RUN collections, every dataset in them and their files; returns the number of datasets removed."""

    @abstractmethod
    def prune_datasets(
        self,
        refs: Iterable[DatasetRef],
        *,
        disassociate: bool = True,
        unstore: bool = False,
        tags: str | Iterable[str] = (),
        purge: bool = False,
    ) -> int:
        """Remove datasets from TAGGED collections (``tags``), delete their files (``unstore``), or delete them
        entirely (``purge``); returns the number of datasets affected."""

    def removeRuns(self, names: Iterable[str], unstore: bool = True) -> None:
        """daf_butler's name for `remove_runs` (``unstore`` is accepted: runs always go with their files)."""
        self.remove_runs(names)

    def pruneDatasets(self, refs: Iterable[DatasetRef], **kwargs: Any) -> None:
        """daf_butler's name for `prune_datasets`."""
        self.prune_datasets(refs, **kwargs)

    def get_many_uris(self, refs: Iterable[DatasetRef]) -> dict[DatasetRef, ResourceURI]:
        """The file of each dataset (a local butler looks them up in one query)."""
        return {ref: self.get_uri(ref) for ref in refs}

    @abstractmethod
    def retrieve_artifacts(
        self,
        refs: Iterable[DatasetRef],
        destination: str | Path,
        transfer: str = "copy",
        preserve_path: bool = True,
        overwrite: bool = False,
    ) -> list[ResourceURI]:
        """Copy the files of ``refs`` into ``destination`` (a directory or S3 prefix); returns the files written."""

    @abstractmethod
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
        """Bring datasets with their files and UUIDs from another butler (local or remote) into this one."""
