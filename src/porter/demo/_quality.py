"""The demo's quality story: metrics checked on arrival, a planted regression caught, alerted and explained.

After the mini DRP has run, its measurements go into the repository's metric store, checked
against the demo's metrics package (`VERIFY_METRICS`).  Then the truth-matching task is
reprocessed "nightly": three nights as configured, then three with a degraded configuration
(a match radius of 0.05 arcsec instead of 1.0: real detections no longer match their truth
objects).  Each night's measurements are checked as they arrive, so the completeness regression
is caught on the first degraded night, the alert is delivered to a webhook receiver on
loopback, and change-point detection over the series names the nights either side of the shift
and what changed between them (the configuration).  A release gate over the latest night (a
``metrics`` plan item on the metrics tagged ``nightly``) refuses it, naming the failing patches and
the firing alert; a seventh night with the configuration fixed resolves the alert and the gate
passes and is signed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..butler import DirectButler

VERIFY_METRICS = Path(__file__).resolve().parent / "verify_metrics"
"""The mini DRP's metrics package (lsst/verify's layout): metrics, specs and alert channels."""

NOMINAL_RADIUS, DEGRADED_RADIUS = 1.0, 0.05
"""The truth-matching radius (arcsec) of the nominal nights and of the degraded ones."""


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """``values`` set in this process's environment for the block (the alert channels read it)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A Slack-compatible webhook endpoint on loopback: yields its URL and the messages it received."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/demo", received
    finally:
        server.shutdown()
        server.server_close()


def _truth_match_pipeline(radius: float) -> Any:
    from ..pipeline import Pipeline

    return Pipeline.from_dict(
        {
            "description": f"Nightly truth matching of the mini DRP's objects (match radius {radius} arcsec).",
            "instrument": "SynthCam",
            "tasks": {
                "truthMatch": {"class": "porter.demo.drp.TruthMatchTask", "config": {"match_radius": radius}}
            },
            # Each night's measurements are recorded and checked as the run ends, alerts delivered.
            "metrics": str(VERIFY_METRICS),
        }
    )


LATEST = "nightly/latest"
"""The CHAINED collection holding the latest night's run: what the nightly release gate checks."""


def _gate_plan(butler: DirectButler, plans: Path, chain: str) -> str:
    """A release plan with one hand-over gating the ``nightly`` metrics of the latest night."""
    import datetime

    import yaml

    name = "NIGHTLY"
    plan = {
        "release": name,
        "repository": str(butler.root.resolve()),
        "collections": [chain],
        "validation": "minimal",
        "people": [
            {"name": "release-manager", "can_waive": True, "release_manager": True},
            {"name": "pipelines-lead", "role": "Pipelines lead"},
        ],
        "checkpoints": [
            {
                "name": "quality",
                "from_team": "Pipelines",
                "to_team": "Release",
                "deadline": (datetime.date.today() + datetime.timedelta(days=7)).isoformat(),
                "items": [
                    {
                        "name": "nightly-metrics",
                        "kind": "metrics",
                        "package": str(VERIFY_METRICS),
                        "tags": ["nightly"],
                        "baseline": "none",
                    }
                ],
            }
        ],
    }
    plans.mkdir(parents=True, exist_ok=True)
    (plans / f"{name}.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return name


def _gate(butler: DirectButler, plans: Path, name: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Check the nightly gate; sign it off when it passes.  What it found, for the output."""
    from ..release import GateError, Release

    rel = Release.open(name, plans)
    try:
        results = rel.check("quality", by="pipelines-lead")
        failing = [r for r in results if r.status == "fail"]
        for r in failing:
            problems = sorted({str(s.get("problem", "")) for s in r.sample if isinstance(s, dict)})
            say(f"gate refuses: {r.name}: {'; '.join(p for p in problems if p) or r.message}")
        signed = False
        try:
            rel.signoff("quality", "release-manager")
            signed = True
            say("gate passes: quality signed off by release-manager")
        except GateError as exc:
            say(f"sign-off refused: {exc}")
        return {"failing": [r.name for r in failing], "signed": signed}
    finally:
        rel.close()


def nightly_quality(
    butler: DirectButler,
    run: str,
    inputs: list[str],
    say: Callable[[str], None] = lambda _: None,
    plans: Path | None = None,
) -> dict[str, Any]:
    """Store the DRP run's metrics, then six nightly truth-matching runs, the last three degraded,
    gate the latest night, fix it on a seventh night, gate again.

    Returns what happened, for the demo's output: per night the stored count, failures and
    regressions, the alerts that fired, the webhook messages received, the change-points and the
    gate's two verdicts.  ``plans``: where the nightly gate's plan is written (default: the
    repository's ``releases/``).
    """
    from .. import CollectionType
    from ..pipeline import InProcessExecutor, RunState, build_quantum_graph, execute_graph
    from ..verify import (
        AlertConfig,
        MetricStore,
        Notifier,
        change_points_many,
        group_series,
        open_store,
        pipeline_run_measurements,
    )

    state = RunState(butler.registry.db)
    nights: list[dict[str, Any]] = []
    with webhook_receiver() as (url, received), _environment(PORTER_DEMO_WEBHOOK=url):
        store, hook = open_store(butler.registry.db, VERIFY_METRICS)
        assert hook is not None
        notifier = Notifier(hook.book, AlertConfig.load(VERIFY_METRICS, environ={"PORTER_DEMO_WEBHOOK": url}))

        def tell(
            name: str, note: str, stored: int, failed: int, regressed: int, fired: list[str], sent: int
        ) -> None:
            nights.append(
                {
                    "run": name,
                    "note": note,
                    "stored": stored,
                    "failed minimum": failed,
                    "regressed": regressed,
                    "alerts": fired,
                    "delivered": sent,
                }
            )
            for line in fired:
                say(line)

        def ingest(name: str, note: str) -> None:
            """The DRP run's measurements, recorded as `porter verify ingest-run` does."""
            records = [r for r in state.records(name) if r.status == "succeeded"]
            measured, provenance = pipeline_run_measurements(name, records)
            fired_before = len(hook.transitions)
            result = store.record([m for m in measured if m.metric in store.metrics], provenance)
            delivered = notifier.deliver()
            fired = [t.summary for t in hook.transitions[fired_before:]]
            tell(
                name,
                note,
                result.stored,
                result.failed["minimum"],
                result.regressed,
                fired,
                len(delivered.delivered),
            )

        def night(number: int, radius: float, note: str) -> None:
            """One nightly run; its pipeline's ``metrics:`` section records and checks it as it ends."""
            name = f"{run}/nightly/{number}"
            graph = build_quantum_graph(
                butler, _truth_match_pipeline(radius), collections=[run, *inputs], run=name
            )
            with InProcessExecutor() as executor:
                recorded = execute_graph(butler, graph, executor).metrics
            assert recorded is not None and recorded.ok, recorded
            tell(
                name,
                note,
                recorded.stored,
                recorded.failed.get("minimum", 0),
                recorded.regressed,
                recorded.alerts,
                recorded.delivered,
            )
            butler.registry.registerCollection(chain, CollectionType.CHAINED)
            butler.registry.setCollectionChain(chain, [name])

        chain = f"{run}/{LATEST}"
        ingest(run, "the DRP run")
        for number in range(1, 7):
            radius = NOMINAL_RADIUS if number <= 3 else DEGRADED_RADIUS
            night(number, radius, f"truthMatch, match radius {radius} arcsec")
        outcomes = list(MetricStore(butler.registry.db).outcomes(metric="truthMatch.completeness"))
        provenance = {p.run: p for p in store.runs()}
        changes = change_points_many(group_series(outcomes).values(), provenance)
        for change in changes:
            say(change.describe())
        where = plans or butler.root / "releases"
        gate_name = _gate_plan(butler, where, chain)
        before = _gate(butler, where, gate_name, say)
        night(7, NOMINAL_RADIUS, f"truthMatch, match radius {NOMINAL_RADIUS} arcsec (fixed)")
        after = _gate(butler, where, gate_name, say)
        messages = list(received)
    return {
        "nights": nights,
        "webhook_messages": [m.get("text", "") for m in messages],
        "change_points": [c.to_dict() for c in changes],
        "gate": {"plan": str(where / f"{gate_name}.yaml"), "before_fix": before, "after_fix": after},
    }
