"""``porter demo``: the main job of the README's quick start.

Creates a repository, imports the real HSC RC2 subset (dimension records of
a Subaru Hyper Suprime-Cam data set Rubin processes regularly), and shows
what is in it: visits per band, detectors, tracts and patches, a spatial
query (the visit-detector images overlapping one patch), and the datastore at
work (a Parquet summary and a YAML record stored per real visit, part of one
read back, every file checked).
"""

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._app import app
from ._output import console, handle_errors, print_rows

if TYPE_CHECKING:  # imported where used, so `porter --help` does not pay for them
    from lsst.sphgeom import UnitVector3d

    from ..butler import DirectButler

DEFAULT_EXPORT = Path("..") / "shared" / "data" / "butler-exports" / "hsc-rc2-subset.yaml"


@app.command()
@handle_errors
def demo(
    repo: Annotated[Path, typer.Option(help="Repository to (re)create.")] = Path("demo-repo"),
    export_file: Annotated[Path, typer.Option(help="Export file to import.")] = DEFAULT_EXPORT,
    registry: Annotated[
        str | None, typer.Option(help="Registry URL (default SQLite in the repository).")
    ] = None,
) -> None:
    """Create a repository, import the HSC RC2 subset, and summarise it with queries.

    Example:

        porter demo --repo /tmp/rc2
    """
    if not export_file.exists():
        raise typer.BadParameter(f"{export_file} not found; pass --export-file PATH/hsc-rc2-subset.yaml.")
    from ..butler import DirectButler

    t0 = time.perf_counter()
    butler = DirectButler.create(repo, registry=registry, overwrite=True)
    counts = butler.import_(export_file)
    t_import = time.perf_counter() - t0
    console.print(
        f"Imported [bold]{export_file.name}[/] into [bold]{repo}[/] in {t_import:.2f} s: "
        f"{counts['dimension records']} dimension records."
    )
    instruments = [r.name for r in butler.query_dimension_records("instrument", explain=False)]
    skymaps = [r.name for r in butler.query_dimension_records("skymap", explain=False)]
    rows = []
    for instrument in instruments:
        visits = butler.query_dimension_records("visit", instrument=instrument, explain=False)
        bands = Counter(
            d["band"] for d in butler.query_data_ids(["visit"], instrument=instrument, explain=False)
        )
        n_detectors = len(butler.query_data_ids(["detector"], instrument=instrument, explain=False))
        for band in sorted(bands):
            rows.append({"instrument": instrument, "band": band, "visits": bands[band]})
        rows.append(
            {"instrument": instrument, "band": "all", "visits": len(visits), "detectors": n_detectors}
        )
    print_rows(rows, title="Visits per band")
    sky_rows = []
    for skymap in skymaps:
        tracts = butler.query_data_ids(["tract"], skymap=skymap, explain=False)
        patches = butler.query_data_ids(["tract", "patch"], skymap=skymap, explain=False)
        sky_rows.append({"skymap": skymap, "tracts": len(tracts), "patches": len(patches)})
    print_rows(sky_rows, title="Sky tiling")
    if instruments and skymaps:
        patch = butler.query_data_ids(
            ["tract", "patch"], skymap=skymaps[0], order_by=["tract", "patch"], limit=1, explain=False
        )[0]
        t1 = time.perf_counter()
        overlaps = butler.query_data_ids(
            ["visit", "detector"],
            instrument=instruments[0],
            skymap=skymaps[0],
            where="tract = :t AND patch = :p",
            bind={"t": patch["tract"], "p": patch["patch"]},
            explain=False,
        )
        t_spatial = time.perf_counter() - t1
        per_band = Counter(d["band"] for d in overlaps)
        console.print(
            f"Spatial query: visit-detector images overlapping tract {patch['tract']} patch {patch['patch']} "
            f"of {skymaps[0]} ({len(overlaps)} found in {t_spatial * 1000:.0f} ms)",
            soft_wrap=True,
        )
        print_rows(
            [
                {
                    "band": b,
                    "visits": len({d["visit"] for d in overlaps if d["band"] == b}),
                    "visit-detectors": n,
                }
                for b, n in sorted(per_band.items())
            ],
            title="Images overlapping the patch",
        )
    if instruments:
        _store_and_read(butler, instruments[0])
    butler.close()


def _store_and_read(butler: "DirectButler", instrument: str) -> None:
    """Store a catalog made from the real visit records and read part of it back, then check every file."""
    import pyarrow as pa

    visits = butler.query_dimension_records("visit", instrument=instrument, explain=False)
    if not visits:
        return
    t0 = time.perf_counter()
    butler.register_dataset_type("visitSummary", ["instrument", "visit"], "ArrowTable")
    butler.register_dataset_type("visitMetadata", ["instrument", "visit"], "StructuredDataDict")
    run = "demo/visit-summaries"
    for v in visits:
        centre = v.region.getBoundingCircle().getCenter() if v.region is not None else None
        table = pa.table(
            {
                "visit": [v.id],
                "physical_filter": [v.physical_filter],
                "exposure_time": [v.exposure_time],
                "ra": [_lon_lat(centre)[0]],
                "dec": [_lon_lat(centre)[1]],
            }
        )
        butler.put(table, "visitSummary", instrument=instrument, visit=v.id, run=run)
        butler.put(
            {"name": v.name, "day_obs": v.day_obs},
            "visitMetadata",
            instrument=instrument,
            visit=v.id,
            run=run,
        )
    t_put = time.perf_counter() - t0
    ref = butler.query_datasets("visitSummary", run, instrument=instrument, limit=1, explain=False)[0]
    part = butler.get(ref, parameters={"columns": ["visit", "ra", "dec"]})
    report = butler.fsck(checksums=True)
    console.print(
        f"Stored {2 * len(visits)} datasets (a Parquet summary and a YAML record per visit) in {t_put:.2f} s "
        f"under {butler.datastore.root}; read back columns {part.column_names} of {butler.get_uri(ref).name}; "
        f"fsck --checksums: {'clean' if report.ok else report.counts()}.",
        soft_wrap=True,
    )


def _lon_lat(centre: "UnitVector3d | None") -> tuple[float | None, float | None]:
    if centre is None:
        return None, None
    from lsst.sphgeom import LonLat

    ll = LonLat(centre)
    return ll.getLon().asDegrees(), ll.getLat().asDegrees()
