"""``butler.export``: a direct call, or daf_butler's context-manager form."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..datastore import Datastore
from ..dimensions import DataCoordinate, DimensionRecord
from ..registry import DatasetRef, Registry
from ._file_transfers import export_files
from .transfers import ExportWriter, write_export

__all__ = ["ExportContext"]


class ExportContext(Mapping[str, int]):
    """What to export, written to ``filename`` by `write` or at the end of a ``with`` block.

    daf_butler users write::

        with butler.export(filename="out.yaml") as export:
            export.saveDatasets(refs)
            export.saveCollection("calib")

    After writing, the context is a mapping of what was written
    (``"dimension records"``, ``"collections"``, ``"datasets"``).
    """

    def __init__(
        self,
        registry: Registry,
        filename: str | Path,
        datastore: Datastore | None = None,
        directory: str | Path | None = None,
        transfer: str = "copy",
    ):
        self._writer = ExportWriter(registry)
        self._datastore = datastore
        self._directory = directory
        self._transfer = transfer
        filename = Path(filename)
        if directory is not None and not filename.is_absolute():
            filename = Path(directory) / filename
        self._filename = filename
        self._counts: dict[str, int] = {}

    # --- what to export (daf_butler names, then porter's) ------------------------------------------------

    def saveDatasets(self, refs: Iterable[DatasetRef], **kwargs: Any) -> None:
        """Export these datasets, their runs and the dimension records their data IDs need."""
        self._writer.add_datasets(refs)

    def saveDataIds(self, data_ids: Iterable[DataCoordinate], **kwargs: Any) -> None:
        """Export the dimension records of these data IDs."""
        self._writer.add_dimension_data(data_ids)

    def saveCollection(self, name: str) -> None:
        """Export a collection: a run's definition, a TAGGED/CALIBRATION collection's contents, a chain."""
        self._writer.add_collection(name)

    def saveDimensionData(self, element: str, records: Iterable[DimensionRecord]) -> None:
        """Export these dimension records."""
        self._writer.add_records(element, records)

    save_datasets = saveDatasets
    save_data_ids = saveDataIds
    save_collection = saveCollection
    save_dimension_data = saveDimensionData

    # --- writing ---------------------------------------------------------------------------------------

    def write(self) -> None:
        """Copy the datasets' files (when exporting to a directory), then write the file (atomically)."""
        w = self._writer
        files = 0
        if self._directory is not None and self._datastore is not None:
            refs = [r for group in w.datasets.values() for r in group]
            files = export_files(self._datastore, refs, self._directory, self._transfer, w)
        write_export(self._writer, self._filename)
        self._counts = {
            "dimension records": sum(len(v) for v in w.records.values()),
            "collections": len(w.collections),
            "datasets": sum(len(v) for v in w.datasets.values()),
            "files": files,
        }

    def __enter__(self) -> ExportContext:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.write()

    def __getitem__(self, key: str) -> int:
        return self._counts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)
