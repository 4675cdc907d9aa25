"""A repository's collections without opening a Butler, for commands that only list them."""

from __future__ import annotations

import os

from ..errors import RepositoryError
from ..registry import CollectionInfo, read_sqlite_collections
from ._repo_config import RepoConfig

__all__ = ["read_collection_infos"]


def read_collection_infos(repo: str | os.PathLike[str]) -> dict[str, CollectionInfo] | None:
    """Every collection of the repository at ``repo`` by name, read without SQLAlchemy; or `None`.

    Answers for a repository with a SQLite registry (see
    `porter.registry.read_sqlite_collections`); `None` for anything else
    (PostgreSQL, a repository-index label, a missing or damaged repository),
    where the caller opens a `Butler`, which also explains what is wrong.
    """
    try:
        config = RepoConfig.read(repo)
    except RepositoryError:
        return None
    return read_sqlite_collections(config.resolved_registry_url)
