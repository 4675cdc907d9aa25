"""The repository configuration file, ``porter.yaml`` at the repository root."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import RepositoryError

__all__ = ["CONFIG_NAME", "RepoConfig"]

CONFIG_NAME = "porter.yaml"
_ROOT = "<root>"


@dataclass
class RepoConfig:
    """Where a repository keeps its registry and its files.

    ``<root>`` in a URL stands for the repository directory, so a repository
    using the default SQLite registry can be moved or copied as a whole.
    """

    root: Path
    registry_url: str
    namespace: str | None = None
    datastore_root: str = _ROOT
    templates: dict[str, str] = field(default_factory=dict)
    """File path templates by dataset type name (``"default"`` for the others)."""
    storage_class_files: list[str] = field(default_factory=list)
    """Extra storage-class YAML files (paths relative to the repository root)."""

    @classmethod
    def default(
        cls,
        root: Path,
        registry: str | None = None,
        namespace: str | None = None,
        datastore: str | None = None,
        templates: dict[str, str] | None = None,
    ) -> RepoConfig:
        return cls(
            root=root,
            registry_url=registry or f"sqlite:///{_ROOT}/registry.sqlite3",
            namespace=namespace,
            datastore_root=datastore or _ROOT,
            templates=dict(templates or {}),
        )

    @property
    def resolved_registry_url(self) -> str:
        return self.registry_url.replace(_ROOT, str(self.root.resolve()))

    @property
    def resolved_datastore_root(self) -> str:
        """The datastore root as a path or URI (``<root>`` replaced by the repository directory)."""
        return self.datastore_root.replace(_ROOT, str(self.root.resolve()))

    @property
    def resolved_storage_class_files(self) -> list[Path]:
        return [self.root / f for f in self.storage_class_files]

    @classmethod
    def find_root(cls, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        if p.name == CONFIG_NAME:
            return p.parent
        return p

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RepoConfig:
        root = cls.find_root(path)
        file = root / CONFIG_NAME
        if not file.exists():
            hint = (
                " (it has a butler.yaml: that is a daf_butler repository)"
                if (root / "butler.yaml").exists()
                else ""
            )
            raise RepositoryError(
                f"No porter repository at {root}: {file} does not exist{hint}. "
                "Create one with `porter create` or Butler.create()."
            )
        try:
            data: dict[str, Any] = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            reg = data["registry"]
            datastore = data.get("datastore") or {}
            return cls(
                root=root,
                registry_url=reg["url"],
                namespace=reg.get("namespace"),
                datastore_root=datastore.get("root", _ROOT),
                templates=dict(datastore.get("templates") or {}),
                storage_class_files=list(datastore.get("storage_classes") or []),
            )
        except (KeyError, TypeError, yaml.YAMLError) as exc:
            raise RepositoryError(f"Repository configuration {file} is malformed: {exc}") from None

    def write(self) -> None:
        """Write ``porter.yaml`` atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = {
            "porter_repository": 1,
            "registry": {"url": self.registry_url, "namespace": self.namespace},
            "datastore": {
                "root": self.datastore_root,
                "templates": dict(self.templates),
                "storage_classes": list(self.storage_class_files),
            },
        }
        fd, tmp = tempfile.mkstemp(prefix=".porter.", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        os.replace(tmp, self.root / CONFIG_NAME)
