"""Deferred handles and component reads, on local files and S3: the habits of pipeline and notebook code.

``butler.getDeferred(...)`` finds a dataset now and reads it later, in part;
``butler.get("calexp.wcs", …)`` and ``get("objectTable.columns", …)`` read one
part of a dataset without the rest (a FITS header, a Parquet footer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import rc2_repo
from porter import Butler, DatasetNotFoundError, DeferredDatasetHandle, UnknownComponentError
from porter.images import BBox
from realistic import calexp, source_table

RUN = "u/someone/run1"
CCD = {"visit": 1228, "detector": 50}


@pytest.fixture
def butler(tmp_path: Path, datastore_root: str | None, rc2_template: Path) -> Butler:
    # No instrument anywhere: the run holds HSC data only, so it is the default.
    b = rc2_repo(tmp_path / "repo", datastore_root, rc2_template, run=RUN)
    b.register_dataset_type("calexp", ["instrument", "visit", "detector"], "ExposureF")
    b.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
    b.put(calexp(seed=5), "calexp", instrument="HSC", **CCD)
    b.put(source_table(seed=5), "src", instrument="HSC", **CCD)
    return Butler(b.root, collections=RUN)


def test_deferred_handle_reads_later_with_parameters(butler: Butler) -> None:
    whole = butler.get("calexp", dataId=CCD)
    handle = butler.getDeferred("calexp", dataId=CCD, parameters={"bbox": BBox(100, 300, 64, 48)})
    assert isinstance(handle, DeferredDatasetHandle)
    assert handle.dataId["visit"] == 1228 and handle.ref == butler.find_dataset("calexp", CCD)
    assert handle.get() == whole.cutout(BBox(100, 300, 64, 48))
    assert handle.get(parameters={"bbox": BBox(0, 0, 10, 20)}) == whole.cutout(BBox(0, 0, 10, 20))
    assert np.array_equal(handle.get(component="image"), whole.cutout(BBox(100, 300, 64, 48)).image)
    table = butler.getDeferred("src", **CCD).get(parameters={"columns": ["coord_ra"]})
    assert table.column_names == ["coord_ra"]


def test_deferred_handle_of_a_missing_dataset_fails_at_once(butler: Butler) -> None:
    with pytest.raises(DatasetNotFoundError):
        butler.getDeferred("calexp", visit=1228, detector=51)
    with pytest.raises(LookupError):  # daf_butler's users catch this builtin
        butler.getDeferred("calexp", visit=1228, detector=51)


def test_exposure_components_read_alone(butler: Butler) -> None:
    whole = butler.get("calexp", **CCD)
    wcs = butler.get("calexp.wcs", **CCD)
    assert wcs.to_header(relax=True) == whole.wcs.to_header(relax=True)
    assert butler.get("calexp.metadata", **CCD) == whole.metadata
    assert butler.get("calexp.bbox", **CCD) == whole.bbox
    assert np.array_equal(butler.get("calexp.variance", **CCD), whole.variance)
    box = BBox(10, 20, 30, 40)
    assert np.array_equal(butler.get("calexp.mask", **CCD, parameters={"bbox": box}), whole.cutout(box).mask)
    shifted = butler.get("calexp.wcs", **CCD, parameters={"bbox": box})
    assert shifted.to_header(relax=True) == whole.cutout(box).wcs.to_header(relax=True)
    ref = butler.find_dataset("calexp", **CCD)
    component = ref.makeComponentRef("wcs")
    assert component.datasetType.name == "calexp.wcs" and component.isComponent()
    assert component.id == ref.id and component.makeCompositeRef().datasetType.name == "calexp"
    assert butler.get(component).to_header(relax=True) == whole.wcs.to_header(relax=True)


def test_table_components_from_the_footer(butler: Butler) -> None:
    table = butler.get("src", **CCD)
    assert butler.get("src.columns", **CCD) == table.column_names
    assert butler.get("src.rowcount", **CCD) == table.num_rows
    schema = butler.get("src.schema", **CCD)
    assert isinstance(schema, pa.Schema) and schema.names == table.column_names


def test_unknown_component_names_the_known_ones(butler: Butler) -> None:
    with pytest.raises(UnknownComponentError, match="wcs") as caught:
        butler.get("calexp.psf", **CCD)
    assert isinstance(caught.value, KeyError)
    with pytest.raises(UnknownComponentError, match="rowcount"):
        butler.get("src.wcs", **CCD)
