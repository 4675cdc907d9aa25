"""porter.verify's alerts (issue 16): rules from the declarations, state in the repository, delivery.

Outcomes are built from the real declarations in tests/data/verify/validate_drp: ``AM1`` alerts at
``minimum`` (20 mas) ``for: 2`` runs, critical, to ``webhook:dm-alerts`` and
``email:verify@example.org``; its levels are checked by the package's own specifications.  Every
state test runs on SQLite and on PostgreSQL; deliveries go to a real HTTP receiver and a real SMTP
server (aiosmtpd) on loopback.  Times are explicit numbers, never the wall clock.
"""

from __future__ import annotations

import json
import math
import random
import socket
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import astropy.units as u
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import given, settings
from hypothesis import strategies as st

from porter.verify import (
    AlertBook,
    AlertConfig,
    DeclarationError,
    MetricSet,
    Notifier,
    Outcome,
    SpecificationSet,
    Transition,
    UnknownAlertError,
    VerifyError,
    channel_problems,
    replay,
    slack_message,
)

DATA = Path(__file__).parent / "data" / "verify"
PACKAGE = DATA / "validate_drp"
AM1 = "validate_drp.AM1"
TRACT_R = {"tract": 9813, "band": "r"}
TRACT_I = {"tract": 9813, "band": "i"}
T0 = 1_800_000_000.0
HOUR = 3600.0

METRICS = MetricSet.load(PACKAGE)
SPECS = SpecificationSet.load(PACKAGE, METRICS)


def outcome(
    value: float, run: str, time: float, data_id: dict[str, Any] = TRACT_R, metric: str = AM1
) -> Outcome:
    """A measurement of ``metric`` checked against the package's applicable specs, as the store would."""
    unit = METRICS[metric].unit
    levels = {
        spec.level: spec.check(value * u.Unit(unit))
        for spec in SPECS.applicable(metric, {"instrument": "HSC", "filter_name": data_id.get("band")})
        if spec.level is not None
    }
    return Outcome(metric, dict(data_id), run, time, value, unit, levels)


def history(values: list[float], data_id: dict[str, Any] = TRACT_R, start: int = 1) -> list[Outcome]:
    """One outcome per run (``run1``, ``run2`` …, an hour apart) with these AM1 values in mas."""
    return [outcome(v, f"run{i}", T0 + i * HOUR, data_id) for i, v in enumerate(values, start=start)]


# --- loopback receivers ------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 recording each POST (headers and JSON body); it can be stopped and
    started again on the same port, to play a webhook that is down and comes back."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], Any]] = []
        self.status = 200
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


class Mailbox:
    """aiosmtpd's handler: every message the SMTP server accepted, parsed."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """An aiosmtpd Controller on 127.0.0.1 that can be stopped and started on the same port; with
    ``password``, it requires AUTH LOGIN/PLAIN as ``porter`` (over plain text: loopback only)."""

    def __init__(self, password: str | None = None) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self.password = password
        self.logins: list[str] = []
        self.controller: Controller | None = None
        self.start()

    def start(self) -> None:
        auth: dict[str, Any] = {}
        if self.password is not None:
            auth = {"authenticator": self.authenticate, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **auth)
        self.controller.start()

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"porter",
            (self.password or "").encode(),
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535 itself

    def stop(self) -> None:
        assert self.controller is not None
        self.controller.stop()
        self.controller = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    if r.server is not None:
        r.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    s = SmtpServer()
    yield s
    if s.controller is not None:
        s.stop()


@pytest.fixture
def book(repo: Any) -> AlertBook:
    """An AlertBook in a fresh repository's database (SQLite and PostgreSQL)."""
    return AlertBook(repo.registry.db, clock=lambda: T0)


def config_for(receiver: Receiver, smtp: SmtpServer, tmp_path: Path) -> AlertConfig:
    """The package's alerts.yaml pointing at the loopback receivers (the webhook URL via ${...})."""
    package = tmp_path / "package"
    package.mkdir(exist_ok=True)
    (package / "alerts.yaml").write_text(
        textwrap.dedent(
            f"""\
            webhooks:
              dm-alerts: ${{DM_ALERTS_URL}}
            smtp:
              host: 127.0.0.1
              port: {smtp.port}
              sender: porter@example.org
            retry: {{first: 60, max: 600}}
            """
        )
    )
    return AlertConfig.load(package, environ={"DM_ALERTS_URL": receiver.url})


# --- the rules ---------------------------------------------------------------------------------------


def test_declarations_give_the_policy_under_test() -> None:
    policy = METRICS[AM1].alert
    assert policy is not None
    assert (policy.level, policy.for_runs, policy.severity) == ("minimum", 2, "critical")
    assert outcome(25.0, "r", T0).failed("minimum") and not outcome(15.0, "r", T0).failed("minimum")
    assert outcome(15.0, "r", T0).failed("design")  # 15 mas: past design (10), within minimum (20)


def test_fires_after_for_runs_not_before(book: AlertBook) -> None:
    first, second = history([25.0, 31.0])
    assert book.observe([first], METRICS) == []
    (pending,) = book.alerts()
    assert (pending.status, pending.runs, pending.first_run) == ("pending", 1, "run1")
    assert book.notifications() == []

    (fired,) = book.observe([second], METRICS)
    assert (fired.kind, fired.metric, dict(fired.data_id), fired.level) == ("fired", AM1, TRACT_R, "minimum")
    assert (fired.run, fired.runs, fired.first_run, fired.value, fired.unit) == (
        "run2",
        2,
        "run1",
        31.0,
        "marcsec",
    )
    assert not fired.silenced and fired.alert_id == pending.alert_id
    (alert,) = book.alerts()
    assert (alert.status, alert.fired_run, alert.notified, alert.severity) == (
        "firing",
        "run2",
        True,
        "critical",
    )
    assert {(n.kind, n.channel) for n in book.notifications()} == {
        ("fired", "webhook:dm-alerts"),
        ("fired", "email:verify@example.org"),
    }


def test_a_failure_at_another_level_or_a_regression_within_the_level_does_not_fire(book: AlertBook) -> None:
    regressed = [replace(o, regressed=True, baseline=8.0) for o in history([15.0, 16.0, 17.0])]
    assert all(o.failed("design") and not o.failed("minimum") for o in regressed)
    assert book.observe(regressed, METRICS) == []
    assert book.alerts(status=None) == []
    # a metric without an alert policy (PA1) and one whose level has no spec at that data ID
    assert book.observe([outcome(50.0, "run9", T0, metric="validate_drp.PA1")], METRICS) == []
    blind = Outcome(AM1, TRACT_R, "run10", T0 + 10 * HOUR, 99.0, "marcsec", {"design": False})
    assert book.observe([blind], METRICS) == []
    assert book.alerts(status=None) == []


def test_the_same_run_again_is_not_counted_twice(book: AlertBook) -> None:
    (first,) = history([25.0])
    assert book.observe([first], METRICS) == []
    assert book.observe([replace(first, value=26.0)], METRICS) == []  # re-imported job: replaced
    (alert,) = book.alerts()
    assert (alert.status, alert.runs, alert.last_value) == ("pending", 1, 26.0)
    # a late, older run changes nothing either
    assert book.observe([outcome(40.0, "run0", T0 - HOUR)], METRICS) == []
    assert book.alerts()[0].runs == 1


def test_deduplicated_one_open_alert_and_no_renotification(
    book: AlertBook, receiver: Receiver, smtp: SmtpServer, tmp_path: Path
) -> None:
    notifier = Notifier(book, config_for(receiver, smtp, tmp_path), clock=lambda: T0)
    fired = book.observe(history([25.0, 26.0]), METRICS)
    assert [t.kind for t in fired] == ["fired"]
    assert len(notifier.deliver().delivered) == 2
    for batch in (history([27.0], start=3), history([28.0, 29.0, 30.0], start=4)):
        assert book.observe(batch, METRICS) == []
    assert len(book.alerts()) == 1 and book.alerts()[0].runs == 6
    assert notifier.deliver().delivered == []
    assert len(receiver.posts) == 1 and len(smtp.mailbox.messages) == 1


def test_delivery_webhook_is_slack_json_and_email_reaches_smtp(
    book: AlertBook, receiver: Receiver, smtp: SmtpServer, tmp_path: Path
) -> None:
    (fired,) = book.observe(history([25.0, 26.0]), METRICS)
    report = Notifier(book, config_for(receiver, smtp, tmp_path)).deliver(now=T0)
    assert len(report.delivered) == 2 and report.failed == []
    ((headers, body),) = receiver.posts
    assert body == slack_message(fired)
    assert "FIRING" in body["text"] and AM1 in body["text"] and "band=r, tract=9813" in body["text"]
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]
    assert headers["Idempotency-Key"] == f"porter-alert-{fired.alert_id}-fired"
    assert headers["Content-Type"] == "application/json"
    ((rcpt, mail),) = smtp.mailbox.messages
    assert rcpt == ["verify@example.org"]
    assert mail["Subject"] == f"[porter] FIRING {AM1} (band=r, tract=9813) minimum"
    assert mail["From"] == "porter@example.org"
    assert mail["Message-ID"] == f"<porter-alert-{fired.alert_id}-fired@example.org>"
    text = mail.get_payload()
    assert isinstance(text, str) and "26 marcsec" in text and "2 consecutive runs since run1" in text
    assert all(n.delivered for n in book.notifications())


def test_resolves_itself_when_the_metric_recovers(
    book: AlertBook, receiver: Receiver, smtp: SmtpServer, tmp_path: Path
) -> None:
    notifier = Notifier(book, config_for(receiver, smtp, tmp_path))
    book.observe(history([25.0, 26.0]), METRICS)
    (resolved,) = book.observe(history([12.0], start=3), METRICS)
    assert (resolved.kind, resolved.run, resolved.value, resolved.silenced) == (
        "resolved",
        "run3",
        12.0,
        False,
    )
    assert book.alerts() == []
    (closed,) = book.alerts(status=None)
    assert (closed.status, closed.fired_run, closed.resolved_run) == ("resolved", "run2", "run3")
    notifier.deliver(now=T0)
    assert [p[1]["text"].split()[0] for p in receiver.posts] == ["FIRING", "RESOLVED"]
    assert [m["Subject"].split()[1] for _, m in smtp.mailbox.messages] == ["FIRING", "RESOLVED"]
    # failing again is a new alert, pending again until `for` runs
    assert book.observe(history([30.0], start=4), METRICS) == []
    (again,) = book.alerts()
    assert again.alert_id != closed.alert_id and again.status == "pending"


def test_a_pending_alert_that_recovers_is_cleared_without_notice(book: AlertBook) -> None:
    assert book.observe(history([25.0, 12.0]), METRICS) == []
    (cleared,) = book.alerts(status=None)
    assert cleared.status == "cleared" and cleared.fired_run is None
    assert book.notifications() == []


def test_acknowledge(book: AlertBook) -> None:
    (fired,) = book.observe(history([25.0, 26.0]), METRICS)
    assert fired.alert_id is not None
    acked = book.acknowledge(fired.alert_id, "jdoe", "known: DM-12345, fix in w.2026.50", now=T0 + 5)
    assert (acked.acknowledged_by, acked.ack_reason, acked.ack_time) == (
        "jdoe",
        "known: DM-12345, fix in w.2026.50",
        T0 + 5,
    )
    assert acked.status == "firing" and book.get(fired.alert_id).acknowledged
    with pytest.raises(VerifyError, match="reason"):
        book.acknowledge(fired.alert_id, "jdoe", "")
    book.observe(history([10.0], start=3), METRICS)  # resolved
    with pytest.raises(UnknownAlertError, match="resolved"):
        book.acknowledge(fired.alert_id, "jdoe", "too late")
    with pytest.raises(UnknownAlertError, match="no alert 999"):
        book.acknowledge(999, "jdoe", "x")


def test_as_of_shows_each_alert_as_it_stood_then(book: AlertBook) -> None:
    failing = history([25.0, 26.0, 27.0])  # run1 opens it (pending), run2 fires it, run3 keeps it firing
    book.observe(failing, METRICS)
    (alert,) = book.alerts()
    book.acknowledge(alert.alert_id, "jdoe", "known: DM-12345", now=T0 + 3.5 * HOUR)
    recovered = history([12.0], start=4)  # run4 resolves it
    book.observe(recovered, METRICS)
    recorded = failing + recovered

    def series(metric: str) -> list[Outcome]:
        return [o for o in recorded if o.metric == metric]

    assert book.as_of(T0 + 0.5 * HOUR, outcomes=series) == []  # before it opened
    (opened,) = book.as_of(T0 + 1.5 * HOUR, outcomes=series)
    assert (opened.status, opened.fired_run, opened.last_run, opened.last_value, opened.runs) == (
        "pending",
        None,
        "run1",
        25.0,
        1,
    )
    (fired,) = book.as_of(T0 + 2.5 * HOUR, outcomes=series)
    assert (fired.status, fired.fired_run, fired.last_run, fired.runs) == ("firing", "run2", "run2", 2)
    assert not fired.acknowledged and fired.resolved_run is None
    (acked,) = book.as_of(T0 + 3.75 * HOUR, outcomes=series)
    assert (acked.status, acked.last_run, acked.runs, acked.acknowledged_by) == ("firing", "run3", 3, "jdoe")
    (resolved,) = book.as_of(T0 + 5 * HOUR, outcomes=series)
    assert resolved == book.get(alert.alert_id) and resolved.status == "resolved"
    # Without the series, an alert whose series moved on says where it stood with no value.
    (bare,) = book.as_of(T0 + 2.5 * HOUR)
    assert (bare.status, bare.last_run, bare.runs) == ("firing", "run2", 1) and math.isnan(bare.last_value)


def test_silence_records_without_notifying_then_notifies_when_it_ends(
    book: AlertBook, receiver: Receiver, smtp: SmtpServer, tmp_path: Path
) -> None:
    notifier = Notifier(book, config_for(receiver, smtp, tmp_path))
    until = T0 + 10 * HOUR
    silence = book.silence("validate_drp.AM*", until, "jdoe", "HSC r-band filter swap", {"band": "r"}, now=T0)
    assert book.silences(active_at=T0) == [silence]
    batch = history([25.0, 26.0]) + history([25.0, 26.0], TRACT_I)
    fired = book.observe(batch, METRICS, now=T0 + HOUR)
    assert {(t.data_id["band"], t.silenced) for t in fired} == {("r", True), ("i", False)}
    assert [dict(n.transition.data_id) for n in book.notifications()] == [TRACT_I, TRACT_I]
    r_alert = next(a for a in book.alerts() if a.data_id["band"] == "r")
    assert r_alert.status == "firing" and not r_alert.notified  # recorded, not notified
    assert book.covering(r_alert, now=T0 + HOUR) == [silence] and book.covering(r_alert, now=until) == []
    notifier.deliver(now=T0 + HOUR)
    assert len(receiver.posts) == 1
    # still failing after the silence has ended: notified now, once
    (late,) = book.observe(history([27.0], start=3), METRICS, now=until + 1)
    assert (late.kind, late.late, late.silenced, late.run) == ("fired", True, False, "run3")
    assert book.observe(history([28.0], start=4), METRICS, now=until + 2) == []
    notifier.deliver(now=until + 2)
    assert len(receiver.posts) == 2 and "FIRING" in receiver.posts[1][1]["text"]


def test_a_resolution_is_notified_only_if_the_firing_was(book: AlertBook) -> None:
    book.silence(AM1, T0 + 10 * HOUR, "jdoe", "maintenance", now=T0)
    book.observe(history([25.0, 26.0]), METRICS, now=T0 + 1)
    (resolved,) = book.observe(history([1.0], start=3), METRICS, now=T0 + 2)
    assert resolved.kind == "resolved" and resolved.silenced
    assert book.notifications() == []


def test_an_acknowledged_alert_is_not_notified_when_its_silence_ends(book: AlertBook) -> None:
    silence = book.silence("validate_drp.*", T0 + 10 * HOUR, "jdoe", "maintenance", now=T0)
    (fired,) = book.observe(history([25.0, 26.0]), METRICS, now=T0 + 1)
    assert fired.alert_id is not None and fired.silenced
    book.acknowledge(fired.alert_id, "jdoe", "expected during maintenance")
    ended = book.end_silence(int(silence.silence_id or 0), now=T0 + 2)
    assert ended.until == T0 + 2 and book.silences(active_at=T0 + 3) == []
    with pytest.raises(UnknownAlertError, match="already ended"):
        book.end_silence(int(silence.silence_id or 0), now=T0 + 3)
    assert book.observe(history([27.0], start=3), METRICS, now=T0 + 3) == []
    assert book.notifications() == []


def test_receiver_down_delivered_later_exactly_once(
    book: AlertBook, receiver: Receiver, smtp: SmtpServer, tmp_path: Path
) -> None:
    notifier = Notifier(book, config_for(receiver, smtp, tmp_path))
    receiver.stop()
    smtp.stop()
    book.observe(history([25.0, 26.0]), METRICS)
    report = notifier.deliver(now=T0)
    assert report.delivered == [] and len(report.failed) == 2
    waiting = book.notifications(undelivered=True)
    assert [(n.attempts, n.next_attempt) for n in waiting] == [(1, T0 + 60)] * 2
    assert all(
        "ConnectError" in (n.last_error or "") or "Connection" in (n.last_error or "") for n in waiting
    )
    assert notifier.deliver(now=T0 + 30).failed == []  # not due yet: nothing attempted
    assert len(notifier.deliver(now=T0 + 60).failed) == 2  # still down: backs off
    assert [n.next_attempt for n in book.notifications(undelivered=True)] == [T0 + 60 + 120] * 2

    receiver.start()  # the same port, back up
    smtp.start()
    receiver.status = 503  # the webhook answers, but fails: kept for later; the e-mail goes
    report = notifier.deliver(now=T0 + 180)
    assert [n.channel for n in report.delivered] == ["email:verify@example.org"]
    assert [(n.channel, e) for n, e in report.failed] == [
        ("webhook:dm-alerts", "VerifyError: webhook 'dm-alerts' answered HTTP 503: ok")
    ]
    receiver.status = 200
    assert notifier.deliver(now=T0 + 400).delivered == []  # its back-off: 240 s after the third failure
    assert [n.channel for n in notifier.deliver(now=T0 + 420).delivered] == ["webhook:dm-alerts"]
    assert notifier.deliver(now=T0 + 20_000).delivered == []
    assert [p[1]["text"].split()[0] for p in receiver.posts] == ["FIRING", "FIRING"]  # the 503 and the 200
    assert len(smtp.mailbox.messages) == 1
    assert book.notifications(undelivered=True) == []


def test_an_unconfigured_channel_waits_for_its_configuration(
    book: AlertBook, receiver: Receiver, smtp: SmtpServer, tmp_path: Path
) -> None:
    book.observe(history([25.0, 26.0]), METRICS)
    empty = Notifier(book, AlertConfig.load(tmp_path))  # a package without alerts.yaml
    failed = empty.deliver(now=T0).failed
    assert sorted(error.split(":")[1].strip() for _, error in failed) == [
        "no SMTP server in alerts.yaml to send to verify@example.org",
        "no webhook 'dm-alerts' in alerts.yaml (configured",
    ]
    configured = Notifier(book, config_for(receiver, smtp, tmp_path))
    assert len(configured.deliver(now=T0 + 60).delivered) == 2


def test_a_claimed_notification_is_not_sent_by_a_second_deliverer(book: AlertBook) -> None:
    book.observe(history([25.0, 26.0]), METRICS)
    first, second = book.due(T0)
    assert book.claim(first.notification_id, T0, lease=300)
    assert not book.claim(first.notification_id, T0 + 1, lease=300)  # another deliverer
    assert [n.notification_id for n in book.due(T0 + 1)] == [second.notification_id]
    assert book.claim(first.notification_id, T0 + 301, lease=300)  # the first died: its lease expired
    book.mark_delivered(first.notification_id, T0 + 302)
    assert not book.claim(first.notification_id, T0 + 10_000, lease=300)


def test_observe_joins_the_callers_transaction(book: AlertBook) -> None:
    db = book.db
    with pytest.raises(RuntimeError), db.transaction() as conn:
        assert [t.kind for t in book.observe(history([25.0, 26.0]), METRICS, conn=conn)] == ["fired"]
        raise RuntimeError("the store failed after evaluating")
    assert book.alerts(status=None) == [] and book.notifications() == []
    with db.transaction() as conn:
        book.observe(history([25.0, 26.0]), METRICS, conn=conn)
    assert len(book.alerts()) == 1 and len(book.notifications()) == 2


def test_state_persists_across_books(book: AlertBook) -> None:
    book.observe(history([25.0]), METRICS)
    again = AlertBook(book.db)  # another process opening the same repository
    (fired,) = again.observe(history([26.0], start=2), METRICS)
    assert fired.kind == "fired" and fired.first_run == "run1"


# --- replay: the same rules offline ---------------------------------------------------------------


def random_history(seed: int, runs: int = 30) -> list[Outcome]:
    """AM1 over four data IDs, values around the minimum (20 mas), in arrival order: some runs skip a
    data ID, some measurements are re-imported at once with another value (the store replaces them)."""
    rng = random.Random(seed)
    ids = [{"tract": t, "band": b} for t in (9813, 9697) for b in ("r", "i")]
    out = []
    for i in range(runs):
        for data_id in ids:
            if rng.random() < 0.2:
                continue  # this run did not measure that patch of sky
            value = rng.choice([12.0, 18.0, 21.0, 25.0, 30.0])
            out.append(outcome(value, f"run{i:03d}", T0 + i * HOUR, data_id))
            if rng.random() < 0.15:
                out.append(outcome(rng.choice([15.0, 26.0]), f"run{i:03d}", T0 + i * HOUR, data_id))
    return out


def stored(outcomes: list[Outcome]) -> list[Outcome]:
    """What the store keeps of an arrival sequence: the last value of each (metric, data ID, run)."""
    final = {(o.metric, o.key, o.run): o for o in outcomes}
    return list(final.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_equals_live(book: AlertBook, seed: int) -> None:
    arrivals = random_history(seed)
    live: list[Transition] = []
    for run in sorted({o.run for o in arrivals}):  # run by run, as the store evaluates them
        batch = [o for o in arrivals if o.run == run]
        cut = len(batch) // 2  # in two imports, so re-imported values meet the first ones' state
        live += book.observe(batch[:cut], METRICS)
        live += book.observe(batch[cut:], METRICS)
    assert {t.kind for t in live} == {"fired", "resolved"}
    assert replay(arrivals, METRICS) == live
    still_firing = len([t for t in live if t.kind == "fired"]) - len(
        [t for t in live if t.kind == "resolved"]
    )
    assert len([a for a in book.alerts() if a.status == "firing"]) == still_firing


def test_replay_of_the_stored_history_differs_only_where_a_reimport_changed_a_verdict() -> None:
    """The store keeps a run's last value; a re-import that turns a failure into a pass after the alert
    fired cannot take back the notification, so replaying the stored history does not show it."""
    fired_then_fixed = [*history([25.0, 26.0]), outcome(12.0, "run2", T0 + 2 * HOUR)]
    assert [(t.kind, t.run) for t in replay(fired_then_fixed, METRICS)] == [
        ("fired", "run2"),
        ("resolved", "run2"),
    ]
    assert replay(stored(fired_then_fixed), METRICS) == []


def test_replay_with_silences_matches_live() -> None:
    outcomes = history([25.0, 26.0, 27.0, 10.0])
    from porter.verify import Silence

    silence = Silence(AM1, T0 + 2.5 * HOUR, "jdoe", "swap", created=T0)
    kinds = [(t.kind, t.run, t.silenced, t.late) for t in replay(outcomes, METRICS, [silence])]
    assert kinds == [
        ("fired", "run2", True, False),
        ("fired", "run3", False, True),
        ("resolved", "run4", False, False),
    ]
    assert replay(outcomes, {}) == []


# --- configuration ----------------------------------------------------------------------------------


def test_config_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "alerts.yaml"
    bad.write_text("webhooks:\n  dm-alerts: ${NOPE}\n")
    with pytest.raises(DeclarationError, match=r"alerts.yaml:2: .*webhooks.dm-alerts.*NOPE"):
        AlertConfig.load(bad, environ={})
    bad.write_text("smtp:\n  host: mail\n  port: seventy\n")
    with pytest.raises(DeclarationError, match=r"alerts.yaml:3: .*smtp.port"):
        AlertConfig.load(bad)
    bad.write_text("webhook:\n  x: http://x\n")
    with pytest.raises(DeclarationError, match="webhook"):
        AlertConfig.load(bad)


def test_channel_problems_name_the_metric(tmp_path: Path) -> None:
    problems = channel_problems(METRICS, AlertConfig())
    assert [(p.document, p.field) for p in problems] == [(AM1, "alert.channels")] * 2
    assert "dm-alerts" in problems[0].problem and "SMTP" in problems[1].problem
    assert problems[0].file.endswith("validate_drp.yaml") and problems[0].line is not None
    config = AlertConfig(webhooks={"dm-alerts": "http://127.0.0.1:1/"}, smtp={"host": "127.0.0.1"})
    assert channel_problems(METRICS, config) == []


def test_concurrent_observers_of_one_series_fire_once(book: AlertBook) -> None:
    """Two processes importing the same job at once (each its own AlertBook and transaction): the series
    row is locked (PostgreSQL) or the write lock taken (SQLite), so one fires and the other sees it."""
    outcomes = history([25.0, 26.0]) + history([25.0, 26.0], TRACT_I)
    barrier = threading.Barrier(4)
    results: list[list[Transition]] = []
    errors: list[BaseException] = []

    def observe(mine: AlertBook) -> None:
        barrier.wait()
        try:
            results.append(mine.observe(outcomes, METRICS))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    books = [AlertBook(book.db, clock=lambda: T0) for _ in range(4)]
    threads = [threading.Thread(target=observe, args=(b,)) for b in books]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fired = sorted((t.data_id["band"], t.kind) for r in results for t in r)
    assert fired == [("i", "fired"), ("r", "fired")]
    assert len(book.alerts()) == 2 and len(book.notifications()) == 4


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_through_an_smtp_server_requiring_a_login(
    book: AlertBook, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = SmtpServer(password="s3cret")
    try:
        (tmp_path / "alerts.yaml").write_text(
            f"smtp: {{host: 127.0.0.1, port: {server.port}, username: porter, password_env: PORTER_TEST_SMTP}}\n"
            f"webhooks: {{dm-alerts: {receiver.url}}}\n"
        )
        config = AlertConfig.load(tmp_path / "alerts.yaml")
        book.observe(history([25.0, 26.0]), METRICS)
        monkeypatch.setenv("PORTER_TEST_SMTP", "wrong")
        failed = Notifier(book, config).deliver(now=T0).failed
        assert [(n.channel, e.split(":")[0]) for n, e in failed] == [
            ("email:verify@example.org", "SMTPAuthenticationError")
        ]
        monkeypatch.setenv("PORTER_TEST_SMTP", "s3cret")
        assert len(Notifier(book, config).deliver(now=T0 + 60).delivered) == 1
        assert server.logins == ["porter"] and len(server.mailbox.messages) == 1
    finally:
        server.stop()


@settings(max_examples=200, deadline=None)
@given(verdicts=st.lists(st.booleans(), max_size=40), for_runs=st.integers(min_value=1, max_value=5))
def test_rules_against_a_reference_model(verdicts: list[bool], for_runs: int) -> None:
    """One series, any run of pass/fail verdicts, any ``for:``: fired exactly when a failing streak
    reaches ``for`` runs, resolved exactly at the first pass after a streak that did."""
    metric = METRICS[AM1]
    assert metric.alert is not None
    metrics = {
        AM1: metric.model_copy(update={"alert": metric.alert.model_copy(update={"for_runs": for_runs})})
    }
    outcomes = [
        Outcome(
            AM1, TRACT_R, f"run{i:02d}", T0 + i, 25.0 if failed else 10.0, "marcsec", {"minimum": not failed}
        )
        for i, failed in enumerate(verdicts)
    ]
    expected = []
    streak = 0
    for i, failed in enumerate(verdicts):
        if failed:
            streak += 1
            if streak == for_runs:
                expected.append(("fired", f"run{i:02d}", streak, f"run{i - for_runs + 1:02d}"))
        else:
            if streak >= for_runs:
                expected.append(("resolved", f"run{i:02d}", 0, f"run{i - streak:02d}"))
            streak = 0
    assert [(t.kind, t.run, t.runs, t.first_run) for t in replay(outcomes, metrics)] == expected
