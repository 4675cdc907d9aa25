"""A release in progress: its plan, its audit log, and the gates between hand-overs.

State is folded from the audit log's events (`EventLog`): findings opened
and closed, manual confirmations, check runs, waivers, sign-offs, overrides.
The gates:

- **sign-off** of a checkpoint needs its dependencies signed and its last
  check run clean — every failed or erroring check waived by someone who may
  waive — unless the decider of last resort overrides, with a reason;
- **ready** (go public, after which the date may be announced) needs every
  checkpoint signed, no open blocker, and the plan's test period run since
  the last sign-off.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..butler import Butler
from ..errors import PorterError, did_you_mean
from ..schema import ERROR, FAIL, PASS, WARN, CheckResult, RuleError, check_rules, load_schema, table_of
from ._checks import run_checks
from ._corpus import write_corpus_rule
from ._events import Event, EventLog
from ._manifest import build_manifest, content_hash, diff_manifests, read_manifest, write_manifest
from ._plan import FIRST_DAY, LAST_DAY, Checkpoint, PlanError, ReleasePlan, load_plan
from ._schedule import ScheduleRow, schedule

__all__ = ["Finding", "GateError", "Release", "ReleaseState"]

SEVERITIES = ("blocker", "major", "minor")


def _today(today: datetime.date | None) -> datetime.date:
    """The day the schedule is evaluated for: today, or a given day within the dates a plan may name."""
    if today is None:
        return datetime.date.today()
    if not FIRST_DAY <= today <= LAST_DAY:
        raise PlanError(
            f"Cannot evaluate the release on {today}: give a day between {FIRST_DAY} and {LAST_DAY} (--today)."
        )
    return today


class GateError(PorterError):
    """A sign-off or go-public request refused by a gate (the message says what is missing)."""


@dataclass
class Finding:
    id: int
    severity: str
    checkpoint: str
    text: str
    opened_by: str
    opened_at: float
    closed_by: str | None = None
    resolution: str | None = None

    @property
    def open(self) -> bool:
        return self.closed_by is None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "open": self.open}


@dataclass
class ReleaseState:
    """Everything the events say, folded."""

    findings: dict[int, Finding] = field(default_factory=dict)
    signed: dict[str, Event] = field(default_factory=dict)
    checks: dict[str, Event] = field(default_factory=dict)
    """Checkpoint → its latest check-run event."""
    waivers: dict[str, dict[str, Event]] = field(default_factory=dict)
    """Checkpoint → check name → waiver event."""
    confirmations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ready: Event | None = None

    @classmethod
    def fold(cls, events: list[Event]) -> ReleaseState:
        s = cls()
        for e in events:
            p = e.payload
            if e.action == "finding":
                s.findings[int(p["id"])] = Finding(
                    int(p["id"]), p["severity"], e.checkpoint, p["text"], e.actor, e.at
                )
            elif e.action == "finding-close":
                f = s.findings[int(p["id"])]
                f.closed_by, f.resolution = e.actor, p.get("resolution", "")
            elif e.action == "check":
                s.checks[e.checkpoint] = e
            elif e.action == "waive":
                s.waivers.setdefault(e.checkpoint, {})[p["check"]] = e
            elif e.action == "confirm":
                s.confirmations.setdefault(e.checkpoint, {})[p["item"]] = {
                    "by": e.actor,
                    "comment": p.get("comment", ""),
                }
            elif e.action in ("signoff", "override-signoff"):
                s.signed[e.checkpoint] = e
            elif e.action == "ready":
                s.ready = e
        return s

    def failing(self, checkpoint: str) -> list[dict[str, Any]]:
        """The latest run's checks that failed or could not run (error) and are not waived: they block."""
        run = self.checks.get(checkpoint)
        if run is None:
            return []
        waived = self.waivers.get(checkpoint, {})
        return [
            r for r in run.payload["results"] if r["status"] not in (PASS, WARN) and r["name"] not in waived
        ]

    def warnings(self, checkpoint: str) -> list[dict[str, Any]]:
        """The latest run's warnings: shown and recorded with the sign-off, but not blocking it.

        A warning says something a person should see but need not act on (a Felis
        column without a UCD, a foreign key whose target is not in this shipment);
        were it to block like a failure, every release on Rubin's own schemas would
        need the same waivers, and waivers would stop meaning anything.
        """
        run = self.checks.get(checkpoint)
        return [r for r in run.payload["results"] if r["status"] == WARN] if run is not None else []


class Release:
    """One release: its plan file, its repository, and its audit log there."""

    def __init__(self, plan: ReleasePlan, plan_path: Path, butler: Butler):
        self.plan = plan
        self.plan_path = plan_path
        self.butler = butler
        self.log = EventLog(butler.registry.db)

    @classmethod
    def open(cls, name: str, plans: str | Path = "releases") -> Release:
        path = Path(plans) / f"{name}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in Path(plans).glob("*.yaml")) if Path(plans).is_dir() else []
            raise PlanError(
                f"No release plan {path}; create it with `porter release init {name} --template rubin --repo REPO`"
                + (f" (plans here: {', '.join(known)})." if known else ".")
            )
        plan = load_plan(path)
        if plan.release != name:
            raise PlanError(
                f"{path} is the plan of release {plan.release!r}, not {name!r}; rename the file or fix release:."
            )
        repo = Path(plan.repository)
        if not repo.is_absolute():
            repo = (path.parent / repo).resolve() if (path.parent / repo).exists() else repo
        return cls(plan, path, Butler(repo))

    def close(self) -> None:
        self.butler.close()

    # --- state ------------------------------------------------------------------------------------------

    def events(self) -> list[Event]:
        return self.log.events(self.plan.release)

    def state(self) -> ReleaseState:
        return ReleaseState.fold(self.events())

    def _append(self, actor: str, action: str, checkpoint: str = "", **payload: Any) -> Event:
        return self.log.append(self.plan.release, actor, action, checkpoint, payload)

    # --- findings ---------------------------------------------------------------------------------------------

    def add_finding(self, severity: str, checkpoint: str, text: str, by: str) -> Finding:
        if severity not in SEVERITIES:
            raise PlanError(f"Severity {severity!r}: use one of {', '.join(SEVERITIES)}.")
        if checkpoint:
            self.plan.checkpoint(checkpoint)
        self.plan.person(by)
        if not text.strip():
            raise PlanError("A finding needs a description of what is wrong.")
        next_id = max(self.state().findings, default=0) + 1
        e = self._append(by, "finding", checkpoint, id=next_id, severity=severity, text=text)
        return Finding(next_id, severity, checkpoint, text, by, e.at)

    def close_finding(self, finding_id: int, by: str, resolution: str) -> None:
        self.plan.person(by)
        state = self.state()
        f = state.findings.get(finding_id)
        if f is None:
            raise PlanError(f"Release {self.plan.release} has no finding {finding_id}.")
        if not f.open:
            raise PlanError(f"Finding {finding_id} was already closed by {f.closed_by}.")
        self._append(by, "finding-close", f.checkpoint, id=finding_id, resolution=resolution)

    def finding_to_check(
        self,
        finding_id: int,
        by: str,
        rules: list[dict[str, Any]],
        applies_to: dict[str, Any],
        name: str | None = None,
    ) -> Path:
        """Turn a finding into a regression-corpus check that every later release runs.

        The check is refused, with nothing written, unless every rule can run as written, it applies to a
        catalog item of this release (by table or item name), and the columns its rules name are in the
        Felis tables of those items: a corpus check is run by every later release, so a mistake in it
        would be an error in each of them.
        """
        self.plan.person(by)
        f = self.state().findings.get(finding_id)
        if f is None:
            raise PlanError(f"Release {self.plan.release} has no finding {finding_id}.")
        check_name = name or f"{self.plan.release}-finding-{finding_id}"
        if not applies_to:
            raise PlanError("Say what the check applies to: --table NAME or --item NAME.")
        try:
            check_rules("", None, rules)
        except RuleError as exc:
            raise PlanError(f"Corpus check {check_name!r}: {exc}.") from None
        self._check_rule_targets(rules, applies_to)
        path = write_corpus_rule(
            self.plan_path.parent / self.plan.corpus,
            check_name,
            f"{f.text} (finding {finding_id} of {self.plan.release}, {f.severity})",
            applies_to,
            rules,
        )
        self._append(by, "finding-to-check", f.checkpoint, id=finding_id, corpus_file=path.name)
        return path

    def _check_rule_targets(self, rules: list[dict[str, Any]], applies_to: dict[str, Any]) -> None:
        """The catalog items of this release a corpus check applies to exist, and have the columns it names."""
        catalogs = [i for c in self.plan.checkpoints for i in c.items if i.kind == "catalog"]
        targets = [
            i
            for i in catalogs
            if all(applies_to.get(k) in (None, v) for k, v in (("table", i.table), ("item", i.name)))
        ]
        if not targets:
            what = (
                ", ".join(f"{k} {v!r}" for k, v in applies_to.items() if k in ("table", "item")) or "nothing"
            )
            tables = [i.table for i in catalogs if i.table]
            hint = (
                did_you_mean(str(applies_to.get("table") or ""), tables, "tables")
                if "table" in applies_to
                else ""
            )
            hint = hint or did_you_mean(
                str(applies_to.get("item") or ""), [i.name for i in catalogs], "items"
            )
            raise PlanError(
                f"No catalog item of release {self.plan.release} matches {what}, so the check would never run."
                + hint
                + " Name a table (--table) or item (--item) of the plan's catalogs."
            )
        for item in targets:
            if not (item.schema_file and item.table):
                continue
            try:
                table = table_of(load_schema(item.schema_file), item.table)
            except PorterError:
                continue  # an item whose schema cannot be read: its own check reports that
            columns = {c.name: c.datatype.value for c in table.columns}
            try:
                check_rules(item.name, None, rules, columns)
            except RuleError as exc:
                raise PlanError(
                    f"{exc} (table {item.table} of {item.schema_file}; the corpus check would fail there)"
                ) from None

    # --- checks, waivers, sign-off ------------------------------------------------------------------------------

    def confirm(self, checkpoint: str, item: str, by: str, comment: str = "") -> None:
        """Record that a person did a ``manual`` item's check."""
        cp = self.plan.checkpoint(checkpoint)
        if not any(i.name == item and i.kind == "manual" for i in cp.items):
            manual = [i.name for i in cp.items if i.kind == "manual"]
            raise PlanError(
                f"Checkpoint {checkpoint!r} has no manual item {item!r}; its manual items: {manual or 'none'}."
            )
        self.plan.person(by)
        self._append(by, "confirm", checkpoint, item=item, comment=comment)

    def check(
        self, checkpoint: str, by: str = "porter", progress: Callable[[str], None] | None = None
    ) -> list[CheckResult]:
        """Run a checkpoint's checks and record the run in the audit log (``progress``: see `run_checks`).

        ``by`` is a person of the plan, or ``porter`` (the default: a scheduled or unattended run).
        """
        cp = self.plan.checkpoint(checkpoint)
        if by != "porter":
            self.plan.person(by)
        results = run_checks(
            self.butler,
            self.plan,
            cp,
            self.state().confirmations.get(checkpoint, {}),
            self.plan_path.parent,
            progress,
        )
        shipment = self.manifest_check(checkpoint)
        if shipment is not None:
            results.append(shipment)
        self._append(by, "check", checkpoint, results=[r.to_dict() for r in results])
        return results

    def waive(self, checkpoint: str, check: str, by: str, reason: str) -> None:
        person = self.plan.person(by)
        if not (person.can_waive or person.decider):
            raise GateError(f"{by} may not waive checks; someone with can_waive (or the decider) must.")
        if not reason.strip():
            raise GateError("A waiver needs a reason.")
        run = self.state().checks.get(checkpoint)
        names = {r["name"] for r in run.payload["results"]} if run else set()
        if check not in names:
            raise GateError(
                f"Checkpoint {checkpoint!r}'s last check run has no check {check!r}; its checks: {sorted(names) or 'none (run porter release check first)'}."
            )
        self._append(by, "waive", checkpoint, check=check, reason=reason)

    def signoff(self, checkpoint: str, by: str, override: str | None = None) -> Event:
        """Sign off a hand-over; refused while a dependency is unsigned or a check fails unwaived."""
        cp = self.plan.checkpoint(checkpoint)
        person = self.plan.person(by)
        state = self.state()
        if checkpoint in state.signed:
            raise GateError(
                f"Checkpoint {checkpoint!r} was already signed off by {state.signed[checkpoint].actor}."
            )
        problems = [f"dependency {d!r} is not signed off" for d in cp.depends_on if d not in state.signed]
        if cp.items and checkpoint not in state.checks:
            problems.append("its checks have never been run (porter release check)")
        problems += [
            f"check {r['name']} is {r['status']}: {r.get('message') or r.get('value')}"
            for r in state.failing(checkpoint)
        ]
        if problems and override is None:
            raise GateError(
                f"Sign-off of {checkpoint!r} refused: "
                + "; ".join(problems)
                + ". Fix and re-run the checks, have a failed check waived (porter release waive), or ask the decider to override."
            )
        if problems:
            if not person.decider:
                raise GateError(f"Only the decider of last resort may override a gate; {by} is not.")
            if not (override or "").strip():
                raise GateError("An override needs a reason.")
            return self._append(by, "override-signoff", checkpoint, reason=override, overridden=problems)
        warnings = [f"{r['name']}: {r.get('message') or r.get('value')}" for r in state.warnings(checkpoint)]
        if warnings:  # the sign-off says which warnings it accepted
            return self._append(by, "signoff", checkpoint, warnings=warnings)
        return self._append(by, "signoff", checkpoint)

    def mark_ready(self, by: str, today: datetime.date | None = None) -> Event:
        """The go-public gate."""
        self.plan.person(by)
        today = _today(today)
        state = self.state()
        problems = [
            f"checkpoint {c.name!r} is not signed off"
            for c in self.plan.checkpoints
            if c.name not in state.signed
        ]
        blockers = [f for f in state.findings.values() if f.open and f.severity == "blocker"]
        problems += [f"blocker finding {f.id} is open: {f.text}" for f in blockers]
        if state.signed:
            last = max(datetime.date.fromtimestamp(e.at) for e in state.signed.values())
            ends = last + datetime.timedelta(days=self.plan.test_period_days)
            if today < ends:
                problems.append(f"the {self.plan.test_period_days}-day test period runs until {ends}")
        if problems:
            raise GateError(f"Release {self.plan.release} is not ready: " + "; ".join(problems) + ".")
        return self._append(by, "ready", "")

    # --- shipments --------------------------------------------------------------------------------------------

    def manifest_path(self, checkpoint: str, seq: int) -> Path:
        return self.plan_path.parent / self.plan.release / "manifests" / f"{checkpoint}-{seq}.parquet"

    def ship(self, checkpoint: str, by: str) -> Event:
        """Freeze what a checkpoint delivered as a Parquet manifest with a content hash, and record the shipment."""
        cp = self.plan.checkpoint(checkpoint)
        self.plan.person(by)
        manifest = self._manifest(cp)
        seq = sum(1 for e in self.events() if e.action == "ship" and e.checkpoint == checkpoint) + 1
        path = self.manifest_path(checkpoint, seq)
        write_manifest(manifest, path)
        return self._append(
            by,
            "ship",
            checkpoint,
            manifest=str(path.relative_to(self.plan_path.parent)),
            content_hash=content_hash(manifest),
            entries=manifest.num_rows,
            bytes=sum(x or 0 for x in manifest["size"].to_pylist()),
        )

    def _manifest(self, cp: Checkpoint) -> pa.Table:
        """What a checkpoint delivers now (`build_manifest`); a delivered file that cannot be read is a
        `PorterError` naming it, not an OSError from deep in the checksum."""
        try:
            return build_manifest(self.butler, cp, self.plan_path.parent)
        except OSError as exc:
            what = exc.filename or "a delivered file"
            raise PorterError(
                f"{what}: cannot be read ({exc.strerror or exc}) — make the checkpoint's delivered files "
                "readable by whoever ships and checks them, then run the command again."
            ) from None

    def shipped(self, checkpoint: str) -> tuple[Event, pa.Table] | None:
        """The latest shipment of a checkpoint and its manifest."""
        ships = [e for e in self.events() if e.action == "ship" and e.checkpoint == checkpoint]
        if not ships:
            return None
        return ships[-1], read_manifest(self.plan_path.parent / ships[-1].payload["manifest"])

    def manifest_check(self, checkpoint: str) -> CheckResult | None:
        """Does the delivery still match its latest manifest?  (None if it was never shipped.)"""
        found = self.shipped(checkpoint)
        if found is None:
            return None
        event, manifest = found
        try:
            now = self._manifest(self.plan.checkpoint(checkpoint))
        except PorterError as exc:
            return CheckResult("shipment", "manifest unchanged", ERROR, message=str(exc))
        changes = diff_manifests(manifest, now)
        n = sum(len(v) for v in changes.values())
        sample = [{"change": k, **x} for k, v in changes.items() for x in v][:20]
        return CheckResult(
            "shipment",
            "manifest unchanged",
            PASS if not n else FAIL,
            value=f"{n} entries differ" if n else content_hash(now)[:16],
            expected=event.payload["content_hash"][:16],
            message=", ".join(f"{len(v)} {k}" for k, v in changes.items() if v),
            sample=sample,
        )

    # --- schedule and status ---------------------------------------------------------------------------------

    def schedule(
        self, today: datetime.date | None = None, state: ReleaseState | None = None
    ) -> list[ScheduleRow]:
        signed = {
            name: datetime.date.fromtimestamp(e.at) for name, e in (state or self.state()).signed.items()
        }
        return schedule(self.plan, signed, _today(today))

    def status(self, today: datetime.date | None = None) -> dict[str, Any]:
        state = self.state()
        rows: list[dict[str, Any]] = []
        for srow in self.schedule(today, state):
            if srow.kind != "checkpoint":
                rows.append(
                    {
                        "name": srow.name,
                        "kind": "milestone",
                        "deadline": str(srow.deadline),
                        "projected": str(srow.projected),
                        "state": srow.state,
                    }
                )
                continue
            cp = self.plan.checkpoint(srow.name)
            run = state.checks.get(cp.name)
            results = run.payload["results"] if run else []
            rows.append(
                {
                    "name": cp.name,
                    "kind": "checkpoint",
                    "hand-over": f"{cp.from_team} → {cp.to_team}",
                    "owner": cp.owner,
                    "deadline": str(srow.deadline),
                    "projected": str(srow.projected),
                    "state": srow.state,
                    "checks": f"{sum(r['status'] == PASS for r in results)}/{len(results)} pass"
                    if run
                    else "not run",
                    "failing": len(state.failing(cp.name)),
                    "signed by": state.signed[cp.name].actor if cp.name in state.signed else "",
                    "open findings": sum(
                        1 for f in state.findings.values() if f.open and f.checkpoint == cp.name
                    ),
                }
            )
        return {
            "release": self.plan.release,
            "rows": rows,
            "findings": [f.to_dict() for f in state.findings.values()],
            "ready": state.ready is not None,
        }
