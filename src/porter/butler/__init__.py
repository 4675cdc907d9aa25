"""The Butler facade: the object users hold, keeping registry and datastore consistent."""

from ._butler import Butler
from ._collections import ButlerCollections
from ._ingest import FileDataset
from ._repo_config import RepoConfig

__all__ = ["Butler", "ButlerCollections", "FileDataset", "RepoConfig"]
