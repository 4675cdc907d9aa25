"""YAML documents that remember the line every key came from.

lsst/verify reads its YAML into plain dicts, so a wrong base or unit can only be reported by
name.  porter composes the node tree first (PyYAML's ``compose``) and keeps, for each document,
a map from key path to line, so every problem can point at ``file:line`` of the offending field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SourceDocument", "load_documents"]

KeyPath = tuple[str | int, ...]


@dataclass
class SourceDocument:
    """One YAML document: its data, the file it came from, and the line of each key path.

    ``index`` is the document's position in a multi-document file (0-based).
    """

    data: Any
    file: Path
    index: int
    line: int
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, *path: str | int) -> int:
        """The line of the deepest existing prefix of ``path`` (the document's own line if none)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return self.line


class _LineLoader(yaml.SafeLoader):
    """The safe loader; porter only needs its node-to-Python construction."""


def _record_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_path = (*path, str(key_node.value))
                lines[key_path] = key_node.start_mark.line + 1
                _record_lines(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            item_path = (*path, i)
            lines[item_path] = item.start_mark.line + 1
            _record_lines(item, item_path, lines)


def _iter_documents(text: str, file: Path) -> Iterator[SourceDocument]:
    loader = _LineLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # an empty document (a trailing ``---``)
                continue
            data = loader.construct_document(node)
            if data is None:  # an empty document, e.g. after a trailing ``---``
                continue
            lines: dict[KeyPath, int] = {}
            _record_lines(node, (), lines)
            yield SourceDocument(data, file, index, node.start_mark.line + 1, lines)
            index += 1
    finally:
        loader.dispose()


def load_documents(file: str | Path) -> list[SourceDocument]:
    """Every non-empty YAML document of ``file``, with line numbers.

    Raises `yaml.YAMLError` (with its own line and column) on malformed YAML; callers turn it
    into a `Problem`.
    """
    path = Path(file)
    return list(_iter_documents(path.read_text(encoding="utf-8"), path))
