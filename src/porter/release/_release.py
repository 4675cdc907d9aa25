"""A release in progress: its plan, its audit log, and the gates between hand-overs.

State is folded from the audit log's events (`EventLog`): findings opened
and closed, manual confirmations, check runs, waivers, sign-offs, overrides.
The gates:

- **sign-off** of a checkpoint, by one of its signers, needs its
  dependencies signed, no open blocker finding on it, and its last check run
  clean — every failed or erroring check waived by someone who may waive —
  unless the decider of last resort overrides, with a reason.  A waiver is
  bound to the failing result it waives (status, value) and to the content
  hash of the checkpoint's latest shipment: when either changes it stops
  covering.  A sign-off is bound to the shipment and check run it saw: a
  re-ship with other content, or a later check run that fails, reopens the
  checkpoint (a recorded ``reopen`` event, with who and why);
- **ready** (go public, after which the date may be announced), by a release
  manager or the decider, re-verifies every checkpoint (delivery unchanged
  since its manifest, latest results still passing or validly waived), needs
  no open blocker and the plan's test period run since the last sign-off, on
  the real clock, and records everything it verified.

The audit log's head is anchored outside the database after every event
(``<plans>/<release>/audit-anchors.jsonl``, and in each manifest and report),
so deleting the last events of the log is detected by `verify_audit`.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..butler import DirectButler
from ..errors import PorterError, did_you_mean
from ..schema import (
    ERROR,
    FAIL,
    PASS,
    PENDING,
    WARN,
    CheckResult,
    RuleError,
    check_rules,
    load_schema,
    table_of,
)
from ._checks import run_checks
from ._corpus import corpus_dir, write_corpus_rule
from ._events import GENESIS, Event, EventLog
from ._manifest import (
    build_manifest,
    content_hash,
    diff_manifests,
    manifest_audit_head,
    read_manifest,
    write_manifest,
)
from ._plan import FIRST_DAY, LAST_DAY, LEVELS, Checkpoint, Feature, PlanError, ReleasePlan, load_plan
from ._schedule import ScheduleRow, schedule
from ._smoke import run_smoke_tests

__all__ = ["Blocker", "Finding", "GateError", "Release", "ReleaseState", "waiver_covers"]

SEVERITIES = ("blocker", "major", "minor")


def _today(today: datetime.date | None) -> datetime.date:  # for schedules and status, never for a gate
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
        return {**self.__dict__, "opened_at": _iso(self.opened_at), "open": self.open}


def _iso(at: float) -> str:
    """An event time (seconds since the epoch) as an ISO 8601 UTC time."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Blocker:
    """One thing that stops the release going public (or a checkpoint being signed), with its fix."""

    kind: str
    """unsigned, failing-check, stale-waiver, open-blocker, delivery-changed, test-period."""
    checkpoint: str
    what: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def waiver_covers(waiver: Event, result: dict[str, Any], content_hash: str | None) -> bool:
    """A waiver covers exactly the failing result it was recorded against, on the same delivery."""
    p = waiver.payload
    return (
        "status" in p
        and p["status"] == result["status"]
        and p.get("value") == result.get("value")
        and p.get("content_hash") == content_hash
    )


@dataclass
class ReleaseState:
    """Everything the events say, folded."""

    findings: dict[int, Finding] = field(default_factory=dict)
    signed: dict[str, Event] = field(default_factory=dict)
    """Checkpoint → the sign-off (or override) that stands (a reopen removes it)."""
    checks: dict[str, Event] = field(default_factory=dict)
    """Checkpoint → its latest check-run event."""
    shipments: dict[str, Event] = field(default_factory=dict)
    """Checkpoint → its latest ship event."""
    waivers: dict[str, dict[str, Event]] = field(default_factory=dict)
    """Checkpoint → check name → latest waiver event."""
    confirmations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    reopened: dict[str, Event] = field(default_factory=dict)
    """Checkpoint → the reopen event that ended its last sign-off."""
    smoke: dict[str, Event] = field(default_factory=dict)
    """Environment → its latest smoke-test run."""
    promotions: dict[str, Event] = field(default_factory=dict)
    """Environment → the latest promotion of the release to it."""
    ready: Event | None = None
    warnings_block: bool = False

    @classmethod
    def fold(cls, events: list[Event], warnings_block: bool = False) -> ReleaseState:
        s = cls(warnings_block=warnings_block)
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
            elif e.action == "ship":
                s.shipments[e.checkpoint] = e
            elif e.action == "waive":
                s.waivers.setdefault(e.checkpoint, {})[p["check"]] = e
            elif e.action == "confirm":
                s.confirmations.setdefault(e.checkpoint, {})[p["item"]] = {
                    "by": e.actor,
                    "comment": p.get("comment", ""),
                    "seq": e.seq,
                }
            elif e.action in ("signoff", "override-signoff"):
                s.signed[e.checkpoint] = e
                s.reopened.pop(e.checkpoint, None)
            elif e.action == "reopen":
                s.signed.pop(e.checkpoint, None)
                s.reopened[e.checkpoint] = e
                s.ready = None
            elif e.action == "smoke":
                s.smoke[p["environment"]] = e
            elif e.action == "promote":
                s.promotions[p["environment"]] = e
            elif e.action == "ready":
                s.ready = e
        return s

    def results(self, checkpoint: str) -> list[dict[str, Any]]:
        """The latest check run's results, with the manual items confirmed since that run counted as passed.

        Confirming a manual item records the confirmation; re-running every check of the checkpoint
        (Parquet scans, completeness queries) just to see it would be waste.
        """
        run = self.checks.get(checkpoint)
        if run is None:
            return []
        confirmed = self.confirmations.get(checkpoint, {})
        out = []
        for r in run.payload["results"]:
            c = confirmed.get(r.get("item", ""))
            if r.get("check") == "manual" and r["status"] != PASS and c is not None and c["seq"] > run.seq:
                r = {**r, "status": PASS, "value": f"confirmed by {c['by']}", "message": c["comment"]}
            out.append(r)
        return out

    def content_hashes(self) -> dict[str, str | None]:
        """Every shipped checkpoint's latest content hash."""
        return {name: e.payload["content_hash"] for name, e in self.shipments.items()}

    def latest_result(self, ref: str) -> dict[str, Any] | None:
        """The latest result named by a feature's ``verified_by`` reference (CHECKPOINT/CHECK or smoke/ENV/TEST)."""
        head, _, rest = ref.partition("/")
        if head == "smoke":
            env, _, test = rest.partition("/")
            run = self.smoke.get(env)
            wanted = f"smoke/{env}:{test}"
        else:
            run = self.checks.get(head)
            wanted = rest
        if run is None:
            return None
        return next((r for r in run.payload["results"] if r["name"] == wanted), None)

    def content_hash(self, checkpoint: str) -> str | None:
        """The content hash of the checkpoint's latest shipment (None if never shipped)."""
        ship = self.shipments.get(checkpoint)
        return ship.payload["content_hash"] if ship is not None else None

    def _blocking(self, result: dict[str, Any]) -> bool:
        return result["status"] not in ((PASS,) if self.warnings_block else (PASS, WARN))

    def failing(self, checkpoint: str) -> list[dict[str, Any]]:
        """The latest run's checks that failed or could not run (error) and no standing waiver covers."""
        run = self.checks.get(checkpoint)
        if run is None:
            return []
        waived = self.waivers.get(checkpoint, {})
        shipped = self.content_hash(checkpoint)
        return [
            r
            for r in self.results(checkpoint)
            if self._blocking(r)
            and not (r["name"] in waived and waiver_covers(waived[r["name"]], r, shipped))
        ]

    def stale_waivers(self, checkpoint: str) -> list[tuple[Event, str]]:
        """Waivers of checks that fail now but which no longer cover the result: (waiver, why)."""
        run = self.checks.get(checkpoint)
        if run is None:
            return []
        shipped = self.content_hash(checkpoint)
        out = []
        for r in self.results(checkpoint):
            w = self.waivers.get(checkpoint, {}).get(r["name"])
            if w is None or not self._blocking(r) or waiver_covers(w, r, shipped):
                continue
            p = w.payload
            if "status" not in p:
                why = "it was recorded before waivers were bound to a result"
            elif p.get("content_hash") != shipped:
                why = "the checkpoint was shipped again since"
            else:
                was, now = p.get("value") or p.get("message"), r.get("value") or r.get("message")
                why = f"it waived {p['status']} ({was}), the check is now {r['status']} ({now})"
            out.append((w, why))
        return out

    def warnings(self, checkpoint: str) -> list[dict[str, Any]]:
        """The latest run's warnings: shown and recorded with the sign-off, but not blocking it
        (unless the plan sets ``warnings_block``).

        A warning says something a person should see but need not act on (columns in
        the data that the schema does not declare, a type that fits but is wider than
        declared, a foreign key whose target is not in this shipment; gaps of the schema
        itself, such as columns without a UCD, are information, reported once);
        were it to block like a failure, every release on Rubin's own schemas would
        need the same waivers, and waivers would stop meaning anything.
        """
        run = self.checks.get(checkpoint)
        return [r for r in self.results(checkpoint) if r["status"] == WARN] if run is not None else []


class Release:
    """One release: its plan file, its repository, and its audit log there."""

    def __init__(
        self, plan: ReleasePlan, plan_path: Path, butler: DirectButler, clock: Callable[[], float] = time.time
    ):
        self.plan = plan
        self.plan_path = plan_path
        self.butler = butler
        self.log = EventLog(butler.registry.db)
        self.clock = clock
        """Where event times (and the test period's end) come from; a test may move it, a user cannot."""
        self.as_of: int | None = None
        """An audit-log sequence number: the release read as it stood just after that event (``?as_of=`` of
        the dashboard, "what was known at sign-off"); such a view is read-only.  None: as it stands now."""
        self._pinned = False
        self._read: list[Event] | None = None

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
        return cls(plan, path, DirectButler(repo))

    def close(self) -> None:
        self.butler.close()

    # --- state ------------------------------------------------------------------------------------------

    def events(self) -> list[Event]:
        """The release's audit log, oldest first (up to `as_of` when that is set; once `pin` was called, as
        it was first read)."""
        if not self._pinned:
            events = self.log.events(self.plan.release)
        else:
            if self._read is None:
                self._read = self.log.events(self.plan.release)
            events = self._read
        return events if self.as_of is None else [e for e in events if e.seq <= self.as_of]

    def pin(self) -> Release:
        """Read the audit log once from now on: every later question asked of this object (state, status,
        blockers, schedule …) is answered from the events of the first read, one consistent view in one
        query instead of one query per question (a dashboard page's).  A pinned release is a view: it
        cannot act, as one read `as_of` cannot; `verify_audit` still reads the log afresh.  Returns self."""
        self._pinned = True
        return self

    def state(self) -> ReleaseState:
        return ReleaseState.fold(self.events(), self.plan.warnings_block)

    def _append(self, actor: str, action: str, checkpoint: str = "", **payload: Any) -> Event:
        if self.as_of is not None:
            raise GateError(
                f"This is release {self.plan.release} as of audit entry {self.as_of}: a past state cannot be "
                "changed; act on the release as it stands now."
            )
        if self._pinned:
            raise GateError(
                f"This view of release {self.plan.release} was read once (pinned) and cannot act: open the "
                "release again to act on it as it stands now."
            )
        event = self.log.append(self.plan.release, actor, action, checkpoint, payload, self.clock)
        self._anchor(event)
        return event

    # --- audit anchors ----------------------------------------------------------------------------------

    @property
    def anchors_path(self) -> Path:
        """One JSON line (seq, hash, action) per event, written after it: the log's head, kept outside it."""
        return self.plan_path.parent / self.plan.release / "audit-anchors.jsonl"

    def _anchor(self, event: Event) -> None:
        self.anchors_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"seq": event.seq, "hash": event.hash, "action": event.action}) + "\n"
        with open(self.anchors_path, "a", encoding="utf-8") as f:  # one small O_APPEND write per event
            f.write(line)

    def audit_head(self) -> dict[str, Any]:
        """The log's head (seq and hash), as manifests, reports and the ready event record it."""
        seq, digest = self.log.head(self.plan.release)
        return {"seq": seq, "hash": digest}

    def verify_audit(self) -> list[str]:
        """Problems with the audit log: its hash chain (`EventLog.verify`) and its anchors.

        The chain alone cannot show that its *last* events were deleted; every
        event's (seq, hash) is also written to `anchors_path` and each shipped
        manifest records the head it was shipped on, so a log shorter than its
        anchors, or an event whose hash differs from its anchor, is reported.
        """
        problems = self.log.verify(self.plan.release)
        # read afresh even when pinned: the anchors read next must not be newer than the events they are held to
        events = self.log.events(self.plan.release)
        by_seq = {e.seq: e for e in events if self.as_of is None or e.seq <= self.as_of}
        anchors: list[tuple[str, int, str, str]] = []
        if self.anchors_path.exists():
            for n, line in enumerate(self.anchors_path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    a = json.loads(line)
                    anchors.append(
                        (
                            f"{self.anchors_path.name} line {n}",
                            int(a["seq"]),
                            str(a["hash"]),
                            str(a.get("action", "")),
                        )
                    )
                except (ValueError, KeyError, TypeError):
                    problems.append(f"{self.anchors_path} line {n} is not an anchor: {line[:80]!r}")
        manifests = self.plan_path.parent / self.plan.release / "manifests"
        for path in sorted(manifests.glob("*.parquet")) if manifests.is_dir() else []:
            head = manifest_audit_head(path)
            if head is not None:
                anchors.append((f"manifest {path.name}", head[0], head[1], ""))
        for where, seq, digest, action in anchors:
            if seq == 0 and digest == GENESIS:
                continue
            event = by_seq.get(seq)
            if event is None:
                problems.append(
                    f"event {seq}{' (' + action + ')' if action else ''}, anchored in {where}, is missing from the "
                    "log: its last events were deleted"
                )
            elif event.hash != digest:
                problems.append(f"event {seq} does not match its anchor in {where}: the log was rewritten")
        return problems

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
            corpus_dir(self.plan_path.parent, self.plan.corpus),
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
                table = table_of(
                    load_schema(item.resolved_schema_file(self.plan_path.parent) or ""), item.table
                )
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

        ``by`` is a person of the plan, or ``porter`` (the default: a scheduled or unattended run).  If
        the checkpoint is signed off and the run now fails (the manifest check included) where no
        standing waiver covers it, the sign-off no longer holds: a ``reopen`` event says so.
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
        state = self.state()
        sign = state.signed.get(checkpoint)
        if sign is not None and sign.action == "signoff":
            failing = state.failing(checkpoint)
            if failing:
                self._append(
                    by,
                    "reopen",
                    checkpoint,
                    reason="a check run after the sign-off fails: "
                    + "; ".join(f"{r['name']} is {r['status']}" for r in failing),
                    signoff=sign.seq,
                )
        return results

    def waive(self, checkpoint: str, check: str, by: str, reason: str) -> Event:
        """Waive one failing result of the latest check run, on the checkpoint's current shipment.

        The waiver records the result (status, value) and the shipment's content hash: it covers that
        failure only, and stops covering when the check's result or the delivery changes.
        """
        self.plan.checkpoint(checkpoint)
        person = self.plan.person(by)
        if not (person.can_waive or person.decider):
            may = [p.name for p in self.plan.people if p.can_waive or p.decider]
            raise GateError(
                f"{by} may not waive checks; a person with can_waive or the decider must ({', '.join(may) or 'nobody in this plan'})."
            )
        if not reason.strip():
            raise GateError("A waiver needs a reason.")
        state = self.state()
        run = state.checks.get(checkpoint)
        results = {r["name"]: r for r in state.results(checkpoint)}
        if check not in results:
            raise GateError(
                f"Checkpoint {checkpoint!r}'s last check run has no check {check!r}; its checks: {sorted(results) or 'none (run porter release check first)'}."
            )
        result = results[check]
        if result["status"] == PENDING:
            raise GateError(
                f"Check {check!r} of {checkpoint!r} awaits a person's confirmation, it has not failed: "
                f"{result.get('message')}."
            )
        if not state._blocking(result):
            raise GateError(
                f"Check {check!r} of {checkpoint!r} is {result['status']} in the last run ({result.get('value')!r}): "
                "there is nothing to waive. A waiver covers one failing result; record it when the check fails."
            )
        assert run is not None
        return self._append(
            by,
            "waive",
            checkpoint,
            check=check,
            reason=reason,
            status=result["status"],
            value=result.get("value"),
            message=result.get("message"),
            content_hash=state.content_hash(checkpoint),
            check_run=run.seq,
        )

    def may_sign(self, checkpoint: str, by: str) -> None:
        """Refuse (naming who may) unless ``by`` may sign ``checkpoint`` off."""
        cp = self.plan.checkpoint(checkpoint)
        self.plan.person(by)
        allowed = self.plan.signers_of(cp)
        if by not in allowed:
            raise GateError(
                f"{by} may not sign off {checkpoint!r} ({cp.from_team} → {cp.to_team}); "
                f"its signers: {', '.join(allowed) or 'nobody (name signers: in the plan)'}."
            )

    def signoff_problems(self, checkpoint: str, state: ReleaseState | None = None) -> list[str]:
        """What stands between a checkpoint and its sign-off (empty: it may be signed)."""
        cp = self.plan.checkpoint(checkpoint)
        state = state or self.state()
        problems = [f"dependency {d!r} is not signed off" for d in cp.depends_on if d not in state.signed]
        if cp.items and checkpoint not in state.checks:
            problems.append("its checks have never been run (porter release check)")
        problems += [
            f"check {r['name']} is {r['status']}: {r.get('message') or r.get('value')}"
            for r in state.failing(checkpoint)
        ]
        problems += [
            f"the waiver of {w.payload['check']} by {w.actor} no longer applies: {why}"
            for w, why in state.stale_waivers(checkpoint)
        ]
        problems += [
            f"blocker finding {f.id} is open: {f.text}"
            for f in state.findings.values()
            if f.open and f.severity == "blocker" and f.checkpoint == checkpoint
        ]
        return problems

    def signoff(self, checkpoint: str, by: str, override: str | None = None) -> Event:
        """Sign off a hand-over; refused while a dependency is unsigned, a check fails unwaived or a
        blocker finding on it is open, and to anyone but its signers (and the decider)."""
        self.may_sign(checkpoint, by)
        person = self.plan.person(by)
        state = self.state()
        if checkpoint in state.signed:
            raise GateError(
                f"Checkpoint {checkpoint!r} was already signed off by {state.signed[checkpoint].actor}; "
                f"to sign it again, reopen it first (porter release reopen {self.plan.release} {checkpoint} --by … --reason …)."
            )
        problems = self.signoff_problems(checkpoint, state)
        if problems and override is None:
            raise GateError(
                f"Sign-off of {checkpoint!r} refused: "
                + "; ".join(problems)
                + ". Fix and re-run the checks, have a failed check waived (porter release waive), close the "
                "finding, or ask the decider to override."
            )
        run = state.checks.get(checkpoint)
        bound = {
            "content_hash": state.content_hash(checkpoint),
            "check_run": run.seq if run is not None else None,
            "results": {r["name"]: r["status"] for r in state.results(checkpoint)},
            "waivers": sorted(state.waivers.get(checkpoint, {})),
        }
        if problems:
            if not person.decider:
                raise GateError(f"Only the decider of last resort may override a gate; {by} is not.")
            if not (override or "").strip():
                raise GateError("An override needs a reason.")
            return self._append(
                by, "override-signoff", checkpoint, reason=override, overridden=problems, **bound
            )
        warnings = [f"{r['name']}: {r.get('message') or r.get('value')}" for r in state.warnings(checkpoint)]
        if warnings:  # the sign-off says which warnings it accepted
            return self._append(by, "signoff", checkpoint, warnings=warnings, **bound)
        return self._append(by, "signoff", checkpoint, **bound)

    def reopen(self, checkpoint: str, by: str, reason: str) -> Event:
        """Withdraw a checkpoint's sign-off (anyone in the plan may: reopening only adds work)."""
        self.plan.checkpoint(checkpoint)
        self.plan.person(by)
        if not reason.strip():
            raise GateError("Reopening a checkpoint needs a reason (--reason).")
        sign = self.state().signed.get(checkpoint)
        if sign is None:
            raise GateError(f"Checkpoint {checkpoint!r} is not signed off; there is nothing to reopen.")
        return self._append(by, "reopen", checkpoint, reason=reason, signoff=sign.seq)

    def blockers(self, state: ReleaseState | None = None) -> list[Blocker]:
        """Everything that stops the release going public now, each with the command that would fix it.

        Re-verifies what the sign-offs were given: each shipped checkpoint's delivery against its
        latest manifest (cheap: sizes and checksums), and the latest check results against the
        waivers.  Nothing is written.  ``state``: the folded log, if the caller has it already.
        """
        state = state or self.state()
        rel = self.plan.release
        out: list[Blocker] = []
        level = LEVELS.index(self.plan.validation)
        for cp in self.plan.checkpoints:
            sign = state.signed.get(cp.name)
            if sign is None and not self.plan.required(cp):
                continue
            if sign is None:
                reopened = state.reopened.get(cp.name)
                why = f" (reopened by {reopened.actor}: {reopened.payload.get('reason')})" if reopened else ""
                out.append(
                    Blocker(
                        "unsigned",
                        cp.name,
                        f"checkpoint {cp.name!r} is not signed off{why}",
                        f"porter release signoff {rel} {cp.name} --by {'|'.join(self.plan.signers_of(cp))}",
                    )
                )
            elif sign.action == "signoff":
                for r in state.failing(cp.name):
                    out.append(
                        Blocker(
                            "failing-check",
                            cp.name,
                            f"check {r['name']} of {cp.name!r} is {r['status']}: {r.get('message') or r.get('value')}",
                            f"fix it and run porter release check {rel} {cp.name}, or waive it (porter release waive)",
                        )
                    )
            for w, why in state.stale_waivers(cp.name) if sign is None or sign.action == "signoff" else []:
                out.append(
                    Blocker(
                        "stale-waiver",
                        cp.name,
                        f"the waiver of {w.payload['check']} by {w.actor} no longer applies: {why}",
                        f"porter release waive {rel} {cp.name} {w.payload['check']!r} --by … --reason …",
                    )
                )
            if sign is not None and state.shipments.get(cp.name) is not None:
                result = self.manifest_check(cp.name, state)
                if result is not None and result.status != PASS:
                    out.append(
                        Blocker(
                            "delivery-changed",
                            cp.name,
                            f"the delivery of {cp.name!r} no longer matches its manifest: {result.message or result.value}",
                            f"porter release check {rel} {cp.name} (reopens it), then ship, check and sign again",
                        )
                    )
            if sign is not None:
                for what in self._metrics_drift(cp, state):
                    out.append(
                        Blocker(
                            "metrics-changed",
                            cp.name,
                            what,
                            f"porter release check {rel} {cp.name} (reopens it if it now fails), then sign again",
                        )
                    )
        for f in state.findings.values():
            if f.open and f.severity == "blocker":
                out.append(
                    Blocker(
                        "open-blocker",
                        f.checkpoint,
                        f"blocker finding {f.id} is open: {f.text}",
                        f"porter release finding close {rel} {f.id} --by … --resolution …",
                    )
                )
        out += self._process_blockers(state, level)
        if state.signed and level >= LEVELS.index("standard"):
            last = max(e.at for e in state.signed.values())
            ends = last + self.plan.test_period_days * 86400
            if self.clock() < ends:
                out.append(
                    Blocker(
                        "test-period",
                        "",
                        f"the {self.plan.test_period_days}-day test period runs until "
                        f"{datetime.datetime.fromtimestamp(ends, datetime.UTC):%Y-%m-%d %H:%M} UTC",
                        "wait: the test period runs from the last sign-off",
                    )
                )
        return out

    # --- LDM-564: feature lists, smoke tests, promotion -------------------------------------------------

    def feature_status(
        self, feature: Feature, today: datetime.date, state: ReleaseState | None = None
    ) -> str:
        """done (completed and every verifying check passed), unverified, late or open."""
        state = state or self.state()
        if feature.completed is not None:
            results = [state.latest_result(ref) for ref in feature.verified_by]
            if all(r is not None and r["status"] == PASS for r in results):
                return "done"
            return "unverified"
        return "late" if feature.due < today else "open"

    def features(
        self, today: datetime.date | None = None, state: ReleaseState | None = None
    ) -> list[dict[str, Any]]:
        """Every milestone's feature list with each feature's status on ``today``."""
        day, state = _today(today), state or self.state()
        return [
            {
                "milestone": m.name,
                "id": f.id,
                "description": f.description,
                "due": f.due.isoformat(),
                "completed": f.completed.isoformat() if f.completed else None,
                "verified_by": list(f.verified_by),
                "status": self.feature_status(f, day, state),
            }
            for m in self.plan.milestones
            for f in m.features
        ]

    def _process_blockers(self, state: ReleaseState, level: int) -> list[Blocker]:
        """What the plan's validation level adds: green smoke tests on the current content (standard),
        features due verified and promotion to each promoted-into environment (rigorous)."""
        rel, out = self.plan.release, []
        now = state.content_hashes()
        if level >= LEVELS.index("standard"):
            for env in self.plan.environments:
                if not env.smoke_tests:
                    continue
                run = state.smoke.get(env.name)
                fix = f"porter release smoke {rel} --env {env.name} --by …"
                if run is None:
                    out.append(Blocker("smoke", "", f"the smoke tests of {env.name!r} have not run", fix))
                elif any(r["status"] != PASS for r in run.payload["results"]):
                    bad = [r["name"] for r in run.payload["results"] if r["status"] != PASS]
                    out.append(
                        Blocker("smoke", "", f"smoke tests of {env.name!r} failed: {', '.join(bad)}", fix)
                    )
                elif run.payload["content_hashes"] != now:
                    out.append(
                        Blocker(
                            "smoke", "", f"the smoke tests of {env.name!r} ran on content shipped since", fix
                        )
                    )
        if level >= LEVELS.index("rigorous"):
            today = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).date()
            for m in self.plan.milestones:
                for f in m.features:
                    status = self.feature_status(f, today, state)
                    if status in ("late", "unverified") or (status == "open" and f.due <= today):
                        out.append(
                            Blocker(
                                "feature",
                                "",
                                f"feature {f.id} of {m.name!r} (due {f.due}) is {status}",
                                "complete it (completed: in the plan) and run the checks in its verified_by",
                            )
                        )
            for env in self.plan.environments:
                if env.promote_from is None:
                    continue
                done = state.promotions.get(env.name)
                if done is None or done.payload["content_hashes"] != now:
                    what = "has not been promoted" if done is None else "was promoted with other content"
                    out.append(
                        Blocker(
                            "promotion",
                            "",
                            f"{rel} {what} to {env.name!r}",
                            f"porter release promote {rel} --to {env.name} --by …",
                        )
                    )
        return out

    def smoke(self, environment: str, by: str) -> list[CheckResult]:
        """Run an environment's smoke tests against what is shipped now and record the run."""
        env = self.plan.environment(environment)
        self.plan.person(by)
        if not env.smoke_tests:
            raise PlanError(f"Environment {environment!r} declares no smoke_tests; add them to the plan.")
        results = run_smoke_tests(self.butler, self.plan, env, self.plan_path.parent)
        self._append(
            by,
            "smoke",
            "",
            environment=environment,
            results=[r.to_dict() for r in results],
            content_hashes=self.state().content_hashes(),
        )
        return results

    def promote(self, to: str, by: str) -> Event:
        """Promote the release to an environment (LDM-564: production after smoke tests on test).

        Refused unless ``by`` may promote there, every required checkpoint is signed off, every
        delivery still matches its manifest, and the smoke tests of the environment promoted from
        ran green on exactly the content shipped now (the same content hashes).
        """
        env = self.plan.environment(to)
        person = self.plan.person(by)
        allowed = list(env.promoters) or [p.name for p in self.plan.people if p.release_manager]
        if by not in allowed and not person.decider:
            raise GateError(
                f"{by} may not promote {self.plan.release} to {to!r}; who may: "
                f"{', '.join(allowed + [p.name for p in self.plan.people if p.decider]) or 'nobody (name promoters:)'}."
            )
        if env.promote_from is None:
            raise GateError(
                f"Environment {to!r} is not promoted into (it names no promote_from:); "
                "releases are installed there directly."
            )
        state = self.state()
        problems = [
            f"checkpoint {c.name!r} is not signed off"
            for c in self.plan.checkpoints
            if self.plan.required(c) and c.name not in state.signed
        ]
        run = state.smoke.get(env.promote_from)
        source = self.plan.environment(env.promote_from)
        if source.smoke_tests and run is None:
            problems.append(f"the smoke tests of {env.promote_from!r} have not run (porter release smoke)")
        elif run is not None:
            bad = [r["name"] for r in run.payload["results"] if r["status"] != PASS]
            if bad:
                problems.append(f"smoke tests on {env.promote_from!r} failed: {', '.join(bad)}")
            if run.payload["content_hashes"] != state.content_hashes():
                problems.append(
                    f"the smoke tests on {env.promote_from!r} ran on other content than is shipped now; run them again"
                )
        for name in state.shipments:
            result = self.manifest_check(name)
            if result is not None and result.status != PASS:
                problems.append(f"the delivery of {name!r} no longer matches its manifest ({result.message})")
        if problems:
            raise GateError(
                f"Promotion of {self.plan.release} to {to!r} refused: " + "; ".join(problems) + "."
            )
        return self._append(
            by,
            "promote",
            "",
            environment=to,
            promoted_from=env.promote_from,
            smoke_run=run.seq if run is not None else None,
            content_hashes=state.content_hashes(),
            audit_head=self.audit_head(),
        )

    def mark_ready(self, by: str) -> Event:
        """The go-public gate: a release manager or the decider, on the real clock, nothing blocking.

        The event records everything verified: each checkpoint's sign-off, shipment hash, check run and
        the waivers it relied on, the test period, and the audit head it was granted on.
        """
        person = self.plan.person(by)
        if not (person.release_manager or person.decider):
            may = [p.name for p in self.plan.people if p.release_manager or p.decider]
            raise GateError(
                f"{by} may not mark the release ready; a release manager or the decider must ({', '.join(may) or 'nobody in this plan'})."
            )
        blockers = self.blockers()
        if blockers:
            raise GateError(
                f"Release {self.plan.release} is not ready: "
                + "; ".join(b.what for b in blockers)
                + f". See porter release ready {self.plan.release} --dry-run for the fix of each."
            )
        state = self.state()
        verified = {
            cp.name: {
                "signed_by": state.signed[cp.name].actor,
                "signoff": state.signed[cp.name].seq,
                "override": state.signed[cp.name].action == "override-signoff",
                "content_hash": state.content_hash(cp.name),
                "manifest": "unchanged" if state.shipments.get(cp.name) else "not shipped",
                "check_run": state.checks[cp.name].seq if cp.name in state.checks else None,
                "waivers": sorted(state.waivers.get(cp.name, {})),
            }
            for cp in self.plan.checkpoints
            if cp.name in state.signed
        }
        last = max((e.at for e in state.signed.values()), default=self.clock())
        metric_runs = self._mark_metric_runs()
        return self._append(
            by,
            "ready",
            "",
            checkpoints=verified,
            metric_runs=metric_runs,
            open_blockers=0,
            validation=self.plan.validation,
            smoke_runs={env: e.seq for env, e in state.smoke.items()},
            promotions={env: e.seq for env, e in state.promotions.items()},
            test_period_days=self.plan.test_period_days,
            last_signoff=datetime.datetime.fromtimestamp(last, datetime.UTC).isoformat(),
            audit_head=self.audit_head(),
        )

    def _mark_metric_runs(self) -> list[str]:
        """Mark the runs of every ``metrics`` item as this release's in the metric store (`mark_release`):
        the next release's ``previous_release`` baseline, and that of metrics declared with one.

        Done before the ready event is appended, which records them: marking again is harmless, so a
        failure between the two is repaired by running ``ready`` again.
        """
        items = [i for c in self.plan.checkpoints for i in c.items if i.kind == "metrics"]
        if not items:
            return []
        from ..verify import MetricStore
        from ._metrics import release_runs

        store = MetricStore(self.butler.registry.db)
        runs: list[str] = []
        for item in items:
            runs += [r for r in release_runs(self.butler, self.plan, item, store).runs if r not in runs]
        for run in runs:
            store.mark_release(run, self.plan.release)
        return runs

    def _metrics_drift(self, cp: Checkpoint, state: ReleaseState) -> list[str]:
        """How a signed checkpoint's ``metrics`` results differ now from the check run its sign-off saw.

        Measurements are not shipped in a manifest: a run re-recorded after the sign-off would go
        unnoticed, so the gated metrics are checked again (store reads only) and compared, status
        and value, with the latest recorded results.
        """
        items = [i for i in cp.items if i.kind == "metrics"]
        if not items:
            return []
        from ._metrics import metrics_checks

        seen = {r["name"]: r for r in state.results(cp.name)}
        out = []
        for item in items:
            try:
                now = metrics_checks(self.butler, self.plan, item, self.plan_path.parent)
            except Exception as exc:  # a check that cannot run now is itself a change
                out.append(f"the metrics of {item.name!r} cannot be checked now: {type(exc).__name__}: {exc}")
                continue
            for r in now:
                was = seen.get(r.name)
                if was is None or (was["status"], was.get("value")) != (r.status, r.value):
                    before = f"{was['status']} ({was.get('value')})" if was else "not in it"
                    out.append(
                        f"{r.name} of {cp.name!r} is now {r.status} ({r.value}); the check run signed off "
                        f"had {before}: its measurements or alerts changed since"
                    )
        return out

    def acknowledge(self, checkpoint: str, alert_id: int, by: str, reason: str) -> Event:
        """Acknowledge an open alert on a metric a ``metrics`` item of ``checkpoint`` gates, in the alert
        book and the audit log: by someone who may waive, with a reason.

        The gate accepts an acknowledged firing alert at the checkpoint's next check run, which names
        who acknowledged it and why.
        """
        cp = self.plan.checkpoint(checkpoint)
        person = self.plan.person(by)
        if not (person.can_waive or person.decider):
            may = [p.name for p in self.plan.people if p.can_waive or p.decider]
            raise GateError(
                f"{by} may not acknowledge alerts for the release; a person with can_waive or the decider "
                f"must ({', '.join(may) or 'nobody in this plan'})."
            )
        if not reason.strip():
            raise GateError("An acknowledgement needs a reason.")
        from ..verify import AlertBook
        from ._metrics import gated_metrics

        book = AlertBook(self.butler.registry.db, clock=self.clock)
        alert = book.get(alert_id)
        gated = {
            m.name
            for i in cp.items
            if i.kind == "metrics"
            for m in gated_metrics(i, self.plan_path.parent)[0]
        }
        if alert.metric not in gated:
            raise GateError(
                f"Alert {alert_id} is on {alert.metric}, which no metrics item of {checkpoint!r} gates "
                f"(its metrics: {', '.join(sorted(gated)) or 'none'})."
            )
        acked = book.acknowledge(alert_id, by, reason)
        return self._append(
            by,
            "acknowledge",
            checkpoint,
            alert=alert_id,
            metric=acked.metric,
            data_id=dict(acked.data_id),
            level=acked.level,
            status=acked.status,
            last_value=acked.last_value,
            unit=acked.unit,
            reason=reason,
        )

    # --- shipments --------------------------------------------------------------------------------------------

    def manifest_path(self, checkpoint: str, seq: int) -> Path:
        return self.plan_path.parent / self.plan.release / "manifests" / f"{checkpoint}-{seq}.parquet"

    def ship(self, checkpoint: str, by: str) -> Event:
        """Freeze what a checkpoint delivered as a Parquet manifest with a content hash, and record the shipment.

        A re-ship with other content than the sign-off saw reopens the checkpoint (recorded).
        """
        cp = self.plan.checkpoint(checkpoint)
        self.plan.person(by)
        manifest = self._manifest(cp)
        seq = sum(1 for e in self.events() if e.action == "ship" and e.checkpoint == checkpoint) + 1
        path = self.manifest_path(checkpoint, seq)
        head = self.audit_head()
        write_manifest(manifest, path, (head["seq"], head["hash"]))
        digest = content_hash(manifest)
        event = self._append(
            by,
            "ship",
            checkpoint,
            manifest=str(path.relative_to(self.plan_path.parent)),
            content_hash=digest,
            entries=manifest.num_rows,
            bytes=sum(x or 0 for x in manifest["size"].to_pylist()),
        )
        sign = self.state().signed.get(checkpoint)
        if sign is not None and sign.payload.get("content_hash") != digest:
            self._append(
                by,
                "reopen",
                checkpoint,
                reason=f"re-shipped with other content ({str(sign.payload.get('content_hash'))[:16]} → {digest[:16]})",
                signoff=sign.seq,
            )
        return event

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

    def shipped(self, checkpoint: str, state: ReleaseState | None = None) -> tuple[Event, pa.Table] | None:
        """The latest shipment of a checkpoint and its manifest (``state``: the folded log, if the caller
        has it already)."""
        if state is not None:
            ship = state.shipments.get(checkpoint)
        else:
            ships = [e for e in self.events() if e.action == "ship" and e.checkpoint == checkpoint]
            ship = ships[-1] if ships else None
        if ship is None:
            return None
        return ship, read_manifest(self.plan_path.parent / ship.payload["manifest"])

    def manifest_check(self, checkpoint: str, state: ReleaseState | None = None) -> CheckResult | None:
        """Does the delivery still match its latest manifest?  (None if it was never shipped.)"""
        found = self.shipped(checkpoint, state)
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
        """Checkpoints and milestones on ``today`` (dates ISO, counts numbers), findings, features, blockers."""
        state = self.state()
        day = _today(today)
        features = self.features(day, state)
        rows: list[dict[str, Any]] = []
        for srow in self.schedule(today, state):
            if srow.kind != "checkpoint":
                mine = [f for f in features if f["milestone"] == srow.name]
                done = sum(f["status"] == "done" for f in mine)
                late = sum(f["status"] == "late" for f in mine)
                rows.append(
                    {
                        "name": srow.name,
                        "kind": "milestone",
                        "deadline": str(srow.deadline),
                        "projected": str(srow.projected),
                        "state": srow.state,
                        "features": f"{done}/{len(mine)} done" + (f", {late} late" if late else "")
                        if mine
                        else "",
                        "features_done": done,
                        "features_total": len(mine),
                        "features_late": late,
                    }
                )
                continue
            cp = self.plan.checkpoint(srow.name)
            run = state.checks.get(cp.name)
            results = state.results(cp.name)
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
                    "checks_passed": sum(r["status"] == PASS for r in results) if run else None,
                    "checks_total": len(results) if run else None,
                    "failing": len(state.failing(cp.name)),
                    "signed by": state.signed[cp.name].actor if cp.name in state.signed else "",
                    "signed_at": _iso(state.signed[cp.name].at) if cp.name in state.signed else None,
                    "required": self.plan.required(cp),
                    "open findings": sum(
                        1 for f in state.findings.values() if f.open and f.checkpoint == cp.name
                    ),
                }
            )
        return {
            "release": self.plan.release,
            "today": day.isoformat(),
            "validation": self.plan.validation,
            "rows": rows,
            "findings": [f.to_dict() for f in state.findings.values()],
            "features": features,
            "blockers": [b.to_dict() for b in self.blockers(state)],
            "ready": state.ready is not None,
            "ready_at": _iso(state.ready.at) if state.ready is not None else None,
        }
