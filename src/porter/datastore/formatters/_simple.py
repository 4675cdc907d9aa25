"""Small data products: dicts as YAML or JSON, numpy arrays as .npy, raw bytes and text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .._uri import ResourceURI
from ._base import Formatter

__all__ = ["BytesFormatter", "JsonFormatter", "NpyFormatter", "TextFormatter", "YamlFormatter"]


class YamlFormatter(Formatter):
    """A dict (any YAML-safe structure) <-> YAML."""

    native = "StructuredDataDict"
    extension = ".yaml"

    def write(self, obj: Any, path: Path) -> None:
        # libyaml's dumper (when present) is ~10x faster than the pure-Python one.
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        path.write_text(yaml.dump(obj, Dumper=dumper, sort_keys=False), encoding="utf-8")

    def read(self, uri: ResourceURI, parameters: Mapping[str, Any]) -> Any:
        return yaml.load(uri.read(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class JsonFormatter(Formatter):
    """A dict (any JSON-able structure) <-> JSON."""

    native = "StructuredDataDict"
    extension = ".json"

    def write(self, obj: Any, path: Path) -> None:
        path.write_bytes(json.dumps(obj, separators=(",", ":")).encode())

    def read(self, uri: ResourceURI, parameters: Mapping[str, Any]) -> Any:
        return json.loads(uri.read())


class NpyFormatter(Formatter):
    """A numpy array <-> .npy (no pickled objects)."""

    native = "NumpyArray"
    extension = ".npy"

    def write(self, obj: np.ndarray, path: Path) -> None:
        with open(path, "wb") as f:
            np.save(f, np.asarray(obj), allow_pickle=False)

    def read(self, uri: ResourceURI, parameters: Mapping[str, Any]) -> np.ndarray:
        with uri.open_read() as f:
            return np.load(f, allow_pickle=False)


class BytesFormatter(Formatter):
    """Bytes, stored as they are."""

    native = "Bytes"
    extension = ".bin"

    def write(self, obj: bytes, path: Path) -> None:
        path.write_bytes(bytes(obj))

    def read(self, uri: ResourceURI, parameters: Mapping[str, Any]) -> bytes:
        return uri.read()


class TextFormatter(Formatter):
    """A string, stored as UTF-8."""

    native = "Text"
    extension = ".txt"

    def write(self, obj: str, path: Path) -> None:
        path.write_text(obj, encoding="utf-8")

    def read(self, uri: ResourceURI, parameters: Mapping[str, Any]) -> str:
        return uri.read().decode("utf-8")
