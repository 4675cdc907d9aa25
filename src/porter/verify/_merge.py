"""lsst/verify's inheritance merge of specification documents.

A specification's ``base`` documents are merged first, in order, then the document itself.
The rules are lsst/verify's (``yamlutils.merge_documents``), so a spec resolves to the same
threshold in porter as in lsst/verify:

- a key only in one document is kept;
- where both have a key and both values are mappings, they are merged recursively;
- where both values are lists, the new items are appended to the base's;
- otherwise (a scalar on either side) the new value replaces the base's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["merge_documents"]


def merge_documents(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged onto ``base`` by lsst/verify's rules; neither input is modified."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in new.items():
        if key in merged:
            old = merged[key]
            if isinstance(old, Mapping) and isinstance(value, Mapping):
                merged[key] = merge_documents(old, value)
            elif isinstance(old, list) and isinstance(value, list):
                merged[key] = [*old, *copy.deepcopy(value)]
            else:
                merged[key] = copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
