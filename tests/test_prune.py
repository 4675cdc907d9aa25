"""prune_datasets: disassociate from TAGGED collections, unstore, purge — files and registry kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import rc2_repo
from porter import Butler, CollectionType
from porter.errors import ArtifactMissingError, MissingCollectionError, RepositoryError
from realistic import source_table

RUN = "u/someone/prune"


@pytest.fixture
def butler(tmp_path: Path, datastore_root: str | None, rc2_template: Path) -> Butler:
    b = rc2_repo(tmp_path / "repo", datastore_root, rc2_template, run=RUN)
    b.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    for d in (10, 11, 12):
        b.put(source_table(n=100, seed=d, detector=d), "src", instrument="HSC", visit=1228, detector=d)
    b.collections.register("best", CollectionType.TAGGED)
    b.registry.associate("best", b.query_datasets("src", RUN))
    return b


def _files(butler: Butler) -> set[str]:
    return {str(u) for u, _ in butler.datastore.root.walk() if str(u).endswith(".parq")}


def test_disassociate_only_touches_the_tag(butler: Butler) -> None:
    refs = butler.query_datasets("src", RUN, where="instrument = 'HSC' AND detector = 10")
    files = _files(butler)
    assert butler.prune_datasets(refs, tags=["best"]) == 1
    assert len(butler.query_datasets("src", "best")) == 2
    assert len(butler.query_datasets("src", RUN)) == 3
    assert _files(butler) == files


def test_unstore_keeps_registry_entries(butler: Butler) -> None:
    ref = butler.query_datasets("src", RUN, where="instrument = 'HSC' AND detector = 11")[0]
    uri = butler.get_uri(ref)
    butler.prune_datasets([ref], disassociate=False, unstore=True)
    assert not uri.exists()
    assert butler.get_dataset(ref.id) is not None
    assert not butler.exists(ref)
    with pytest.raises(ArtifactMissingError, match="no stored file"):
        butler.get(ref)
    assert butler.fsck().counts() == {"datasets without files": 1}  # reported, as it should be


def test_purge_removes_everything(butler: Butler) -> None:
    refs = butler.query_datasets("src", RUN, where="instrument = 'HSC' AND detector IN (10, 11)")
    uris = [butler.get_uri(r) for r in refs]
    butler.prune_datasets(refs, purge=True, unstore=True)
    assert [r.data_id["detector"] for r in butler.query_datasets("src", RUN)] == [12]
    assert len(butler.query_datasets("src", "best")) == 1
    assert not any(u.exists() for u in uris)
    assert len(_files(butler)) == 1
    assert butler.fsck(checksums=True).ok


def test_bad_requests_change_nothing(butler: Butler) -> None:
    refs = butler.query_datasets("src", RUN)
    files = _files(butler)
    with pytest.raises(RepositoryError, match="unstore=True"):
        butler.prune_datasets(refs, purge=True)
    with pytest.raises(RepositoryError, match="nothing to do"):
        butler.prune_datasets(refs)
    with pytest.raises(MissingCollectionError, match="RUN collection"):
        butler.prune_datasets(refs, tags=[RUN])
    assert _files(butler) == files
    assert len(butler.query_datasets("src", "best")) == 3
