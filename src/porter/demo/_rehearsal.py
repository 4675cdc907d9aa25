"""A release rehearsal over the synthetic survey's outputs: the rubin plan, a deliberate defect, the gates.

After the mini DRP has run, the catalogs are exported as Parquet (one file
per patch, one per visit), with one defect planted: patch 0's objects are
written twice, as a rerun that appended instead of replacing would.  The
release plan from the ``rubin`` template is then worked through: the checks
catch the duplicated keys, a finding records it and becomes a regression
check, the export is redone, the deliveries are shipped and signed off
(HiPS by the decider's override: the mini DRP makes none), and the
go-public gate is asked — and refuses while the test period runs.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..butler import DirectButler
from ..release import GateError, Item, Release, dump_plan, rubin_template
from ._survey import COLLECTIONS

__all__ = ["FELIS", "rehearse_release"]

FELIS = Path(__file__).resolve().parent / "felis" / "synthcam.yaml"


def export_catalogs(butler: DirectButler, run: str, root: Path, plant_defect: bool) -> dict[str, int]:
    """objectTable per patch → Object/, sourceTable_visit per visit → Source/ (Parquet)."""
    counts = {"Object": 0, "Source": 0}
    for table, dataset_type, key in (
        ("Object", "objectTable", "patch"),
        ("Source", "sourceTable_visit", "visit"),
    ):
        out = root / table
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for ref in butler.query_datasets(dataset_type, run, explain=False):
            t: pa.Table = butler.get(ref)
            if plant_defect and table == "Object" and ref.data_id["patch"] == 0:
                t = pa.concat_tables([t, t.slice(0, 2)])  # a rerun that appended instead of replacing
            pq.write_table(t, out / f"{key}-{ref.data_id[key]}.parquet")
            counts[table] += t.num_rows
    return counts


def rehearse_release(
    butler: DirectButler,
    run: str,
    plans: Path,
    release: str = "DEMO1",
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Work the rubin plan through over ``run``'s outputs; returns what happened, for printing."""
    say = say or (lambda _msg: None)
    today = datetime.date.today()
    catalogs = plans / release / "catalogs"
    export_catalogs(butler, run, catalogs, plant_defect=True)
    plan = rubin_template(
        release, str(butler.root.resolve()), today - datetime.timedelta(days=10), collections=[run]
    )
    truth = butler.get("survey_truth", instrument="SynthCam", collections=COLLECTIONS["truth"])["spec"]
    half = 0.1  # degrees: the survey's few arcminutes and dithers, with room to spare
    footprint = {
        "rule": "footprint",
        "ra_min": truth["ra"] - half,
        "ra_max": truth["ra"] + half,
        "dec_min": truth["dec"] - half,
        "dec_max": truth["dec"] + half,
    }
    for cp in plan.checkpoints:
        if cp.name == "catalogs":
            cp.items = [
                Item(
                    name="object-table",
                    kind="catalog",
                    location=f"{release}/catalogs/Object",
                    schema_file=str(FELIS),
                    table="Object",
                    rules=[
                        {**footprint, "ra": "coord_ra", "dec": "coord_dec"},
                        {"rule": "row_count", "min": 1},
                        {
                            "rule": "band_coverage",
                            "bands": ["g", "r", "i"],
                            "column": "{band}_apFlux",
                            "min_fraction": 0.5,
                        },
                    ],
                ),
                Item(
                    name="source-table",
                    kind="catalog",
                    location=f"{release}/catalogs/Source",
                    schema_file=str(FELIS),
                    table="Source",
                    rules=[
                        {**footprint, "ra": "ra", "dec": "dec"},
                        {"rule": "finite", "columns": ["ra", "dec"]},
                    ],
                ),
                *[i for i in cp.items if i.kind == "manual"],
            ]
        if cp.name == "images":
            cp.items[0].expected["collections"] = [COLLECTIONS["raw"]]
            cp.items[1].expected = {
                "dimensions": ["patch", "band"],
                "datasets": "raw",
                "collections": [COLLECTIONS["raw"]],
            }
            cp.items[1].group_by = "patch"
    dump_plan(plan, plans / f"{release}.yaml")
    rel = Release.open(release, plans)
    log: list[str] = []

    def note(msg: str) -> None:
        log.append(msg)
        say(msg)

    try:
        results = rel.check("catalogs", by="pipelines-lead")
        caught = [r for r in results if r.status == "fail"]
        for r in caught:
            note(f"check caught: {r.name}: {r.message or r.value}")
        finding = rel.add_finding(
            "major", "catalogs", "Object patch 0 was written twice: duplicated objectIds", "release-manager"
        )
        rel.finding_to_check(
            finding.id,
            "release-manager",
            [{"rule": "unique", "columns": ["objectId"]}],
            {"table": "Object"},
            name=f"{release}-unique-objectId",
        )
        export_catalogs(butler, run, catalogs, plant_defect=False)
        rel.confirm(
            "catalogs",
            "ingest-config",
            "pipelines-lead",
            "one director table, Object, partitioned by coord_ra/coord_dec",
        )
        results = rel.check("catalogs", by="pipelines-lead")
        assert all(r.status in ("pass", "warn") for r in results), [
            (r.name, r.status, r.message) for r in results if r.status not in ("pass", "warn")
        ]
        rel.close_finding(
            finding.id, "release-manager", "export redone with replace semantics; corpus check added"
        )
        note(f"finding {finding.id} recorded, turned into a corpus check, fixed and closed")
        for name, signer in (("catalogs", "release-manager"), ("images", "release-manager")):
            rel.ship(name, "pipelines-lead")
            rel.check(name)
            rel.signoff(name, signer)
            note(f"{name}: shipped, checked and signed off by {signer}")
        # The Object files rewritten after the sign-off (same rows, zstd instead of snappy): the sign-off
        # saw other bytes, so the re-ship reopens the checkpoint, and it is checked and signed again.
        for part in sorted((catalogs / "Object").glob("*.parquet")):
            pq.write_table(pq.read_table(part), part, compression="zstd")
        rel.ship("catalogs", "pipelines-lead")
        reopened = rel.events()[-1]
        note(f"catalogs re-shipped after its sign-off: {reopened.action} ({reopened.payload.get('reason')})")
        rel.check("catalogs")
        rel.signoff("catalogs", "release-manager")
        note("catalogs: checked and signed off again, bound to the new shipment")
        rel.check("hips")
        try:
            rel.signoff("hips", "release-manager")
        except GateError as exc:
            note(f"hips gate refused: {str(exc).split(':', 1)[1].split('.')[0].strip()}")
        rel.waive(
            "hips", "hips-color:properties", "release-manager", "the HiPS tree follows in the first update"
        )
        note("hips: its one failure waived by release-manager (bound to that result and shipment)")
        # Half a HiPS tree arrives: the check's result changes, so the waiver no longer covers it.
        tree = plans / release / "hips" / "color"
        tree.mkdir(parents=True, exist_ok=True)
        (tree / "properties").write_text("creator_did = ivo://synthcam/demo/color\n")
        rel.check("hips")
        try:
            rel.signoff("hips", "release-manager")
        except GateError as exc:
            note(f"hips sign-off refused: {str(exc).split('; ')[-1].split('. Fix')[0]}")
        rel.signoff(
            "hips", "decider", override="the mini DRP makes no HiPS; coverage maps come from the coadds"
        )
        note("hips signed off by the decider's override (recorded with its reason)")
        for name, items in (
            ("data-engineering", ["qserv-row-counts"]),
            ("portal", ["tap-schema", "example-queries"]),
            ("community", ["tutorials"]),
        ):
            for item in items:
                rel.confirm(name, item, "data-services-lead")
            rel.check(name)
            rel.signoff(name, "data-services-lead")
        note("data-engineering, portal, community: confirmed, checked and signed off")
        # LDM-564: smoke tests on the test system, against the content shipped now, then production.
        try:
            rel.promote("production", "release-manager")
        except GateError as exc:
            note(f"promotion to production refused: {str(exc).split(': ', 1)[1]}")
        smoke = rel.smoke("test", "release-manager")
        note("smoke tests on test: " + ", ".join(f"{r.check} {r.status} ({r.value})" for r in smoke))
        rel.promote("production", "release-manager")
        note("promoted to production (the smoke tests ran green on the same shipped content)")
        blockers = rel.blockers()
        note("ready --dry-run: " + "; ".join(f"{b.kind}: {b.what}" for b in blockers))
        try:
            rel.mark_ready("decider")
        except GateError as exc:
            note(f"go-public gate: {str(exc).split(': ', 1)[1]}")
        from ..release._report import html_report

        report = plans / f"{release}-report.html"
        report.write_text(html_report(rel))
        return {
            "release": release,
            "plan": str(plans / f"{release}.yaml"),
            "report": str(report),
            "log": log,
            "status": rel.status(),
            "audit_ok": not rel.verify_audit(),
        }
    finally:
        rel.close()
