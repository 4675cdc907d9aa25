"""A dataset type with no dimensions: one dataset per run (a report, a run-level summary)."""

from __future__ import annotations

from porter import Butler, DatasetType


def test_a_dimensionless_dataset_is_put_found_and_read(repo: Butler) -> None:
    repo.registry.registerRun("u/test/run")
    repo.registry.registerDatasetType(
        DatasetType("runSummary", (), "StructuredDataDict", universe=repo.dimensions)
    )
    ref = repo.put({"n": 3}, "runSummary", run="u/test/run")
    assert dict(ref.data_id) == {}
    assert repo.find_dataset("runSummary", collections="u/test/run") == ref
    assert repo.get("runSummary", collections="u/test/run") == {"n": 3}
    assert repo.query_datasets("runSummary", "u/test/run") == [ref]
