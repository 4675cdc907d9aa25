"""The ``metrics`` item: the release's quality metrics, gated like every other check.

"Every metric tagged ``kpm`` meets ``minimum`` on the release's collections, none regressed against
the previous release" (issue 16).  The measurements come from the repository's metric store
(`porter.verify.MetricStore`), as they were checked when they arrived: the level a measurement met is
the one its arrival check recorded (a spec scoped by ``metadata_query`` was matched against the run's
metadata then, which the store does not keep).  Regressions are judged here, at check time, against the
runs marked as the previous release, so a release is compared with the release before it whatever
baseline the metric declares for its nightly runs.

One result per gated metric, so a waiver covers one metric: its value names the failures and ends with
a digest of all of them, so the waiver stops covering when the failures change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import did_you_mean
from ..schema import ERROR, FAIL, PASS, CheckResult

if TYPE_CHECKING:
    from ..butler import DirectButler
    from ..verify import Alert, Metric, MetricSet, MetricStore, Outcome, SpecificationSet
    from ._plan import Item, ReleasePlan

__all__ = ["ReleaseRuns", "gated_metrics", "marked_releases", "metrics_checks", "release_runs"]

SAMPLE = 20
DEFAULT_TOLERANCE = 0.05
"""The regression tolerance of a metric that declares no baseline (`porter.verify.Baseline`'s default)."""


@dataclass(frozen=True)
class ReleaseRuns:
    """The stored runs that are the release's, and the previous release's runs to compare with."""

    runs: list[str]
    """The release's runs, oldest first."""
    looked_in: list[str]
    """The collections (or run names) they were looked for under, for messages."""
    previous: str | None
    """The previous release's name (None: no release was marked before this one)."""
    previous_runs: list[str]
    """Its runs, oldest first."""


def marked_releases(store: MetricStore) -> list[tuple[str, float, str]]:
    """Every run marked as a release's (``mark_release``): (run, time, release), oldest first."""
    return store.releases()


def release_runs(butler: DirectButler, plan: ReleasePlan, item: Item, store: MetricStore) -> ReleaseRuns:
    """The stored runs of ``item`` (its ``runs``, or those of its or the plan's collections) and the
    previous release's.

    A collection stands for itself and, when the repository has it as a CHAINED collection, for every
    RUN collection in it (a pipeline run's measurements are stored under its output RUN collection);
    a stored run also belongs when its provenance names one of those collections.  The previous
    release is the latest release other than this one marked on runs older than this release's newest.
    """
    stored = {p.run: p for p in store.runs()}
    if item.runs:
        names = list(item.runs)
        wanted = set(names)
    else:
        names = list(item.collections or plan.collections)
        wanted = set(names)
        manager = butler.registry.collections
        for name in names:
            if manager.find(name) is not None:
                wanted.update(info.name for info in manager.flatten([name]))
    runs = [
        p.run
        for p in sorted(stored.values(), key=lambda p: (p.time, p.run))
        if p.run in wanted or (p.collection and p.collection in wanted)
    ]
    newest = max((stored[r].time for r in runs), default=float("inf"))
    marked = [
        m for m in marked_releases(store) if m[2] != plan.release and m[0] not in runs and m[1] < newest
    ]
    previous = marked[-1][2] if marked else None
    previous_runs = [r for r, _, rel in marked if rel == previous]
    return ReleaseRuns(runs, names, previous, previous_runs)


def gated_metrics(item: Item, base: Path) -> tuple[MetricSet, SpecificationSet]:
    """The package's metrics carrying every tag of the item, and the package's specifications."""
    from ..verify import load_package

    metrics, specs = load_package(item.resolved_package(base))
    return metrics.subset(tags=item.tags), specs


def latest_outcomes(store: MetricStore, metric: str, runs: Sequence[str]) -> dict[str, Outcome]:
    """Per data ID (its key), the metric's measurement in the latest of ``runs`` that measured it."""
    out: dict[str, Outcome] = {}
    for run in runs:  # oldest first: a later run's measurement replaces
        for o in store.outcomes(run=run, metric=metric):
            out[o.key] = o
    return out


def thresholds(specs: SpecificationSet, metric: str, level: str, data_id: Mapping[str, Any]) -> str:
    """The thresholds of ``metric`` at ``level`` that may apply to ``data_id``, as text (``<= 20.0 mas``).

    A spec scoped by ``metadata_query`` is left out when the data ID contradicts it (``band`` is also
    read as lsst/verify's ``filter_name``); a key the data ID lacks cannot be judged and keeps it.
    """
    known = dict(data_id)
    if "band" in known:
        known.setdefault("filter_name", known["band"])
    shown = []
    for spec in specs.for_metric(metric):
        if spec.level != level:
            continue
        if any(k in known and known[k] != v for k, v in spec.metadata_query.items()):
            continue
        t = spec.threshold
        shown.append(f"{t.operator} {t.value:g} {t.unit}".strip())
    return " or ".join(dict.fromkeys(shown)) or f"no {level} spec"


def _regressed(metric: Metric, value: float, baseline: float) -> bool:
    """Worse than ``baseline`` in the metric's direction beyond its tolerance (no direction: never)."""
    tolerance = metric.baseline.tolerance if metric.baseline is not None else DEFAULT_TOLERANCE
    margin = tolerance * abs(baseline)
    if metric.direction == "lower":
        return value > baseline + margin
    if metric.direction == "higher":
        return value < baseline - margin
    return False


def _data_id_text(data_id: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(data_id.items())) or "(whole run)"


def metric_result(
    item: Item,
    metric: Metric,
    specs: SpecificationSet,
    store: MetricStore,
    where: ReleaseRuns,
    alerts: Sequence[Alert],
) -> CheckResult:
    """One gated metric: measured in the release's runs, every data ID meeting the level, none regressed
    against the previous release, no firing alert left unacknowledged."""
    check = f"metric {metric.name}"
    level = item.level
    comparing = item.baseline == "previous_release" and where.previous is not None
    expected = f"every data ID meets {level}" + (
        f", none regressed against {where.previous}" if comparing else ""
    )
    expected += ", no unacknowledged firing alert"
    now = latest_outcomes(store, metric.name, where.runs)
    if not now:
        looked = ", ".join(where.looked_in) or "(none: give the item or the plan collections:)"
        return CheckResult(
            item.name,
            check,
            FAIL,
            value="not measured",
            expected=expected,
            message=f"{metric.name} has no measurements in the release's runs (looked for runs of {looked}; "
            f"found {', '.join(where.runs) or 'none'}) — record them (porter verify ingest-run / import), "
            "or name the runs: of the item",
        )
    before = latest_outcomes(store, metric.name, where.previous_runs) if comparing else {}
    problems: list[dict[str, Any]] = []
    applied = 0
    for key, o in sorted(now.items()):
        row = {"data_id": dict(o.data_id), "run": o.run, "value": o.value, "unit": o.unit}
        if level in o.levels:
            applied += 1
        if o.failed(level):
            problems.append(
                {
                    "problem": f"fails {level}",
                    **row,
                    "threshold": thresholds(specs, metric.name, level, o.data_id),
                }
            )
        old = before.get(key)
        if old is not None and _regressed(metric, o.value, old.value):
            problems.append(
                {
                    "problem": f"regressed against {where.previous}",
                    **row,
                    "baseline": old.value,
                    "baseline_run": old.run,
                    "direction": f"{metric.direction} is better",
                }
            )
    firing = [a for a in alerts if a.metric == metric.name and a.status == "firing"]
    for a in firing:
        if not a.acknowledged:
            problems.append(
                {
                    "problem": f"alert {a.alert_id} firing ({a.severity}, {a.level})",
                    "data_id": dict(a.data_id),
                    "run": a.last_run,
                    "value": a.last_value,
                    "unit": a.unit,
                    "since": a.first_run,
                    "fix": "fix it, or acknowledge it with a reason (porter verify ack / Release.acknowledge)",
                }
            )
    acknowledged = [
        f"alert {a.alert_id} acknowledged by {a.acknowledged_by}: {a.ack_reason}"
        for a in firing
        if a.acknowledged
    ]
    if not applied and not problems:
        return CheckResult(
            item.name,
            check,
            FAIL,
            value=f"no {level} spec applied",
            expected=expected,
            message=f"none of {metric.name}'s {len(now)} measurements was checked against a {level} "
            f"specification — declare one in {item.package}, or record the measurements with the metadata "
            "its specs are scoped by",
        )
    notes = "; ".join(acknowledged)
    if not comparing and item.baseline == "previous_release":
        notes = "; ".join(x for x in ("no earlier release is marked: regressions not judged", notes) if x)
    if not problems:
        worst = max(now.values(), key=lambda o: o.value if metric.direction != "higher" else -o.value)
        return CheckResult(
            item.name,
            check,
            PASS,
            value=f"{len(now)} data IDs meet {level} (worst {worst.value:.4g} {worst.unit})".strip(),
            expected=expected,
            message=notes,
        )
    counts: dict[str, int] = {}
    for p in problems:
        kind = p["problem"].split(" (")[0] if not p["problem"].startswith("alert") else "alert firing"
        counts[kind] = counts.get(kind, 0) + 1
    digest = hashlib.sha256(json.dumps(problems, sort_keys=True, default=str).encode()).hexdigest()[:12]
    first = problems[0]
    shown = f"{_data_id_text(first['data_id'])}: {first['value']:.4g} {first['unit']}".strip()
    if "threshold" in first:
        shown += f", {level} is {first['threshold']}"
    if "baseline" in first:
        shown += f", {where.previous} had {first['baseline']:.4g}"
    return CheckResult(
        item.name,
        check,
        FAIL,
        value=", ".join(f"{n} {k}" for k, n in counts.items()) + f" of {len(now)} data IDs [{digest}]",
        expected=expected,
        message=f"{metric.name} {first['problem']} in {shown}"
        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        + (f"; {notes}" if notes else ""),
        sample=problems[:SAMPLE],
    )


def metrics_checks(butler: DirectButler, plan: ReleasePlan, item: Item, base: Path) -> list[CheckResult]:
    """A ``metrics`` item's results: one per gated metric (an error result when none can be gated)."""
    from ..verify import AlertBook, MetricStore

    metrics, specs = gated_metrics(item, base)
    if not len(metrics):
        from ..verify import load_package

        every, _ = load_package(item.resolved_package(base))
        tags = sorted({t for m in every for t in m.tags})
        return [
            CheckResult(
                item.name,
                "metrics",
                ERROR,
                expected=f"metrics tagged {', '.join(item.tags)}",
                message=f"no metric of {item.package} carries the tags {item.tags}"
                + did_you_mean(item.tags[0], tags, "tags")
                + " — tag the metrics to gate, or correct the item's tags",
            )
        ]
    db = butler.registry.db
    store = MetricStore(db)
    where = release_runs(butler, plan, item, store)
    alerts = AlertBook(db).alerts(status=("firing",))
    return [metric_result(item, m, specs, store, where, alerts) for m in metrics]
