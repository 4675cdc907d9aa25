"""Helpers to run the same query on porter and on a real lsst-daf-butler repository.

The peer repositories are registry-only daf_butler repositories loaded with
daf_butler's own YAML import backend (its datastore would need formatter
classes from the Rubin stack that are not installable from PyPI).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any


def _find_exports() -> Path:
    """The real export files: $PORTER_SHARED_DATA, or shared/ next to (or above) the clone."""
    candidates = []
    if os.environ.get("PORTER_SHARED_DATA"):
        candidates.append(Path(os.environ["PORTER_SHARED_DATA"]) / "butler-exports")
    root = Path(__file__).resolve().parents[1]
    for parent in [root, *root.parents]:
        candidates.append(parent / "shared" / "data" / "butler-exports")
    for c in candidates:
        if (c / "hsc-rc2-subset.yaml").exists():
            return c
    raise FileNotFoundError(
        "Cannot find shared/data/butler-exports next to the clone; set PORTER_SHARED_DATA to shared/data."
    )


EXPORTS = _find_exports()


def make_daf_repo(root: Path, files: list[str]) -> Any:
    """Create a daf_butler repository at ``root`` holding the given export files."""
    from lsst.daf.butler import Butler
    from lsst.daf.butler.transfers import YamlRepoImportBackend

    Butler.makeRepo(str(root))
    butler = Butler(str(root), writeable=True)
    for name in files:
        with open(EXPORTS / name) as stream:
            backend = YamlRepoImportBackend(stream, butler)
        backend.register()
        backend.load(None)
    return butler


def norm_value(v: Any) -> Any:
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def norm_data_id(d: Any) -> tuple:
    mapping = d.mapping if hasattr(d, "mapping") else d
    return tuple(sorted((k, norm_value(v)) for k, v in dict(mapping).items()))


def norm_ref(r: Any) -> tuple:
    data_id = r.dataId if hasattr(r, "dataId") else r.data_id
    return (
        r.datasetType.name if hasattr(r, "datasetType") else r.dataset_type.name,
        r.run,
        str(r.id),
        norm_data_id(data_id),
    )


def norm_record(r: Any) -> tuple:
    d = r.toDict() if hasattr(r, "toDict") else r.to_dict()
    out = []
    for k, v in sorted(d.items()):
        if k == "region":
            v = None if v is None else v.encode().hex()
        elif k == "timespan":
            if v is None:
                v = None
            else:
                b, e = v.begin, v.end
                v = (
                    None if b is None else round(float(b.tai.mjd) * 86400e3),
                    None if e is None else round(float(e.tai.mjd) * 86400e3),
                )
        out.append((k, norm_value(v)))
    return tuple(out)
