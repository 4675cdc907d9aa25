"""The request bodies of the server's API (pydantic), shared by its OpenAPI schema and its validation.

Field names and defaults are the `Butler` methods' own, so a request is the
call a user made, plus the page size and cursor of a paged query.  Values
that JSON cannot carry (UUIDs, regions, times) arrive tagged (`porter.core`'s
wire format) inside ``data_id``, ``bind`` and ``kwargs``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChainChange",
    "DataIdQuery",
    "DatasetQuery",
    "Defaults",
    "ExportRequest",
    "FindDataset",
    "GetRequest",
    "InferDefaults",
    "IngestRequest",
    "InsertRecords",
    "RecordQuery",
    "RegisterCollection",
    "RegisterDatasetType",
    "RemoveRuns",
    "UploadRequest",
]

_TEXT = 100_000
"""Longest ``where`` text accepted (the expression parser has its own limits below this)."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Defaults(_Request):
    """A client's governor defaults, as `InferDefaults` answered them (or explicit only)."""

    values: dict[str, Any] = Field(default_factory=dict)
    ambiguous: dict[str, list[Any]] = Field(default_factory=dict)


class InferDefaults(_Request):
    """What a client was opened with: its default collections and explicit governor values."""

    collections: list[str] = Field(default_factory=list)
    explicit: dict[str, Any] = Field(default_factory=dict)
    infer: bool = True


class _Query(_Request):
    defaults: Defaults = Field(default_factory=Defaults, description="The client's governor defaults.")
    data_id: dict[str, Any] = Field(
        default_factory=dict, description="Data ID constraints (dimension → value)."
    )
    where: str = Field(
        "", max_length=_TEXT, description="A `where` expression, as `Butler.query_datasets` takes."
    )
    bind: dict[str, Any] = Field(
        default_factory=dict, description="Values of `:name` identifiers in `where`."
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword data-ID constraints.")
    order_by: list[str] = Field(default_factory=list, description="Sort keys; '-' in front for descending.")
    limit: int | None = Field(
        None, description="At most this many results over all pages (negative: daf_butler's warn-if-more)."
    )
    explain: bool = Field(True, description="An empty answer raises EmptyQueryResultError with reasons.")
    page_size: int | None = Field(None, ge=1, description="Rows per page (capped by the server).")
    cursor: str | None = Field(None, max_length=10_000, description="The next_cursor of the previous page.")


class DatasetQuery(_Query):
    dataset_type: str
    collections: list[str] = Field(default_factory=list)
    find_first: bool = True
    with_dimension_records: bool = False


class DataIdQuery(_Query):
    dimensions: list[str]
    datasets: list[str] = Field(default_factory=list)
    collections: list[str] = Field(default_factory=list)
    with_dimension_records: bool = False


class RecordQuery(_Query):
    element: str
    datasets: list[str] = Field(default_factory=list)
    collections: list[str] = Field(default_factory=list)


class FindDataset(_Request):
    defaults: Defaults = Field(default_factory=Defaults)
    dataset_type: str
    data_id: dict[str, Any] = Field(default_factory=dict)
    collections: list[str] = Field(default_factory=list)
    timespan: Any = None


class GetRequest(_Request):
    dataset_id: str = Field(pattern=r"^[0-9a-fA-F-]{32,36}$")
    inline: bool = Field(
        False, description="Send a small file's bytes in the answer (one round trip) as well."
    )


class UploadRequest(_Request):
    """A put about to happen: what the client wrote, and where it should go."""

    defaults: Defaults = Field(default_factory=Defaults)
    dataset_id: str = Field(
        pattern=r"^[0-9a-f]{32}$", description="The new dataset's UUID (hex), drawn by the client."
    )
    dataset_type: str
    data_id: dict[str, Any] = Field(default_factory=dict)
    run: str
    formatter: str = Field(
        max_length=300, description="Import path of the porter formatter that wrote the file."
    )
    size: int = Field(ge=0)
    checksum: str = Field(max_length=200)


class RegisterDatasetType(_Request):
    name: str
    dimensions: list[str]
    storage_class: str
    is_calibration: bool = False


class ChainChange(_Request):
    """A change to a CHAINED collection's children (``redefine`` creates the chain if needed)."""

    action: str = Field(pattern=r"^(redefine|extend|prepend|remove)$")
    children: list[str]


class InsertRecords(_Request):
    """Dimension records to add (those already there are skipped)."""

    element: str
    records: list[dict[str, Any]] = Field(max_length=100_000)


class IngestRef(_Request):
    dataset_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    dataset_type: str
    data_id: dict[str, Any]
    run: str


class IngestFile(_Request):
    path: str = Field(
        max_length=4096, description="Relative to the datastore's root (no '..', not absolute)."
    )
    refs: list[IngestRef] = Field(min_length=1)
    formatter: str | None = None


class IngestRequest(_Request):
    """Files already in the datastore's area, to register as datasets."""

    datasets: list[IngestFile] = Field(min_length=1, max_length=100_000)
    transfer: str = Field("direct", pattern=r"^(direct|auto|move|copy)$")


class ExportRequest(_Request):
    collections: list[str] = Field(default_factory=list)
    dataset_ids: list[str] = Field(default_factory=list)
    dataset_types: list[str] = Field(default_factory=list)
    where: str = Field("", max_length=_TEXT)
    include_all_dimensions: bool = False


class RemoveRuns(_Request):
    names: list[str] = Field(min_length=1)


class PruneDatasets(_Request):
    """`Butler.prune_datasets` of datasets named by ID (daf_butler's disassociate/unstore/tags/purge)."""

    dataset_ids: list[str] = Field(min_length=1, max_length=100_000)
    disassociate: bool = True
    unstore: bool = False
    tags: list[str] = Field(default_factory=list)
    purge: bool = False


class Certify(_Request):
    """Certify datasets into a CALIBRATION collection for a validity range (porter's wire form of a Timespan)."""

    collection: str
    dataset_ids: list[str] = Field(min_length=1, max_length=100_000)
    timespan: Any = None


class RegisterCollection(_Request):
    name: str
    type: str = "RUN"
    doc: str | None = None
