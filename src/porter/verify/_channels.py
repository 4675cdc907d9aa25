"""Delivering alerts: Slack-compatible webhooks and e-mail, from the outbox, with retries.

Where the channels are configured: ``alerts.yaml`` at the root of the metrics package, beside
``metrics/`` and ``specs/``, so the names a metric's ``alert.channels`` uses (``webhook:dm-alerts``)
are defined in the same versioned package.  Secrets stay out of git: any ``${NAME}`` in a value
is taken from the environment when the file is read, and the SMTP password is only ever named
(``password_env``)::

    webhooks:
      dm-alerts: https://hooks.slack.com/services/${SLACK_DM_ALERTS}
      local-sink: http://127.0.0.1:8099/hook
    smtp:
      host: smtp.example.org
      port: 587
      sender: porter@example.org
      starttls: true
      username: porter
      password_env: PORTER_SMTP_PASSWORD
    retry:
      first: 60       # seconds before the first retry of a failed delivery
      max: 3600       # the longest wait between two attempts

Delivery reads the outbox (`AlertBook.due`) and never writes a transition twice: each row is
claimed before it is sent and marked delivered right after; a failure (receiver down, HTTP 5xx,
SMTP refused, a channel name not configured) is recorded with its error and retried later with
exponential back-off, so nothing is lost.  Receivers can drop the repeat a deliverer killed
between sending and recording would cause by the ``Idempotency-Key`` header / ``Message-ID``.
"""

from __future__ import annotations

import os
import re
import smtplib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._alert_rules import Transition
from ._alerts import AlertBook, Notification
from ._metrics import Metric, MetricSet, metrics_by_name
from ._problems import DeclarationError, Problem, VerifyError, display_path
from ._validation import problems_from_validation
from ._yaml import load_documents

__all__ = [
    "ALERTS_FILE",
    "AlertConfig",
    "DeliveryReport",
    "Notifier",
    "RetryPolicy",
    "SmtpServer",
    "channel_problems",
    "email_message",
    "slack_message",
]

ALERTS_FILE = "alerts.yaml"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SmtpServer(BaseModel):
    """The SMTP server e-mail alerts go through."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "porter@localhost"
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout: float = Field(default=30.0, gt=0)


class RetryPolicy(BaseModel):
    """Back-off of failed deliveries: ``first`` seconds, doubling each attempt, at most ``max``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: float = Field(default=60.0, gt=0)
    max: float = Field(default=3600.0, gt=0)

    def next_attempt(self, now: float, attempts: int) -> float:
        """When to try again after ``attempts`` failed attempts (1 for the first failure)."""
        return now + min(self.first * 2 ** max(attempts - 1, 0), self.max)


class AlertConfig(BaseModel):
    """Named webhooks and the SMTP server: the contents of a metrics package's ``alerts.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhooks: dict[str, str] = Field(default_factory=dict)
    smtp: SmtpServer | None = None
    retry: RetryPolicy = RetryPolicy()
    timeout: float = Field(default=10.0, gt=0)
    source: str | None = Field(default=None, exclude=True)

    @classmethod
    def load(cls, path: str | Path, environ: Mapping[str, str] | None = None) -> AlertConfig:
        """The configuration of a metrics package (its ``alerts.yaml``) or of one YAML file.

        A package without ``alerts.yaml`` has no channels: alerts are recorded and queued, and
        delivered once the file is written.  Raises `DeclarationError` naming file, line and field.
        """
        p = Path(path)
        if p.is_dir():
            p = p / ALERTS_FILE
            if not p.exists():
                return cls()
        shown = display_path(p)
        try:
            docs = load_documents(p)
        except (OSError, UnicodeDecodeError) as exc:
            raise DeclarationError(
                [Problem(shown, None, "alerts", None, f"cannot be read ({exc})")]
            ) from None
        except Exception as exc:  # yaml.YAMLError
            raise DeclarationError(
                [Problem(shown, None, "alerts", None, f"is not valid YAML ({exc})")]
            ) from None
        if not docs or docs[0].data is None:
            return cls(source=shown)
        doc = docs[0]
        if len(docs) != 1 or not isinstance(doc.data, dict):
            raise DeclarationError(
                [Problem(shown, doc.line, "alerts", None, "the alert configuration is one YAML mapping")]
            )
        env = os.environ if environ is None else environ
        try:
            data = _expand(doc.data, env, ())
        except KeyError as exc:
            where, name = exc.args
            raise DeclarationError(
                [
                    Problem(
                        shown,
                        doc.line_of(*where),
                        "alerts",
                        ".".join(map(str, where)),
                        f"uses ${{{name}}} but the environment has no {name}",
                        f"set {name} in the environment of the process delivering alerts",
                    )
                ]
            ) from None
        try:
            return cls(**data, source=shown)
        except ValidationError as exc:
            raise DeclarationError(
                problems_from_validation(
                    exc, file=shown, document="alerts", line_of=lambda k: doc.line_of(*k)
                )
            ) from None

    def webhook_url(self, name: str) -> str:
        """The URL of the webhook ``name``; `VerifyError` if it is not configured."""
        try:
            return self.webhooks[name]
        except KeyError:
            known = ", ".join(sorted(self.webhooks)) or "none"
            where = self.source or ALERTS_FILE
            raise VerifyError(f"no webhook {name!r} in {where} (configured: {known})") from None


def _expand(value: Any, env: Mapping[str, str], where: tuple[str | int, ...]) -> Any:
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise KeyError(where, name)
            return env[name]

        return _VARIABLE.sub(variable, value)
    if isinstance(value, dict):
        return {k: _expand(v, env, (*where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, (*where, i)) for i, v in enumerate(value)]
    return value


def channel_problems(metrics: MetricSet | Mapping[str, Metric], config: AlertConfig) -> list[Problem]:
    """Alert channels the configuration cannot deliver to: an unknown webhook, e-mail without SMTP."""
    problems = []
    for metric in metrics_by_name(metrics).values():
        if metric.alert is None:
            continue
        file = metric.source.file if metric.source else ""
        line = metric.source.line if metric.source else None
        for channel in metric.alert.channels:
            kind, _, target = channel.partition(":")
            if kind == "webhook" and target not in config.webhooks:
                problems.append(
                    Problem(
                        file,
                        line,
                        metric.name,
                        "alert.channels",
                        f"webhook {target!r} is not configured in {config.source or ALERTS_FILE}",
                        f"add `webhooks: {{{target}: URL}}` to {ALERTS_FILE}",
                    )
                )
            if kind == "email" and config.smtp is None:
                problems.append(
                    Problem(
                        file,
                        line,
                        metric.name,
                        "alert.channels",
                        f"{channel} needs an SMTP server, and {config.source or ALERTS_FILE} has none",
                        f"add `smtp: {{host: ..., port: ...}}` to {ALERTS_FILE}",
                    )
                )
    return problems


def notification_key(transition: Transition) -> str:
    """The identity of one transition, the same for every attempt: receivers can drop repeats by it."""
    return f"porter-alert-{transition.alert_id}-{transition.kind}"


def _where(transition: Transition) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(transition.data_id.items())) or "whole run"


def slack_message(transition: Transition) -> dict[str, Any]:
    """The Slack-compatible JSON body (``text`` for notifications, ``blocks`` for the message)."""
    t = transition
    if t.kind == "fired":
        icon = ":rotating_light:" if t.severity == "critical" else ":warning:"
        head = f"{icon} FIRING [{t.severity}] {t.metric}"
    else:
        head = f":white_check_mark: RESOLVED {t.metric}"
    unit = f" {t.unit}" if t.unit else ""
    fields = [
        f"*Data ID*\n{_where(t)}",
        f"*Level*\n{t.level}",
        f"*Value*\n{t.value:g}{unit}",
        f"*Run*\n{t.run}",
    ]
    if t.kind == "fired":
        fields.append(f"*Failing runs*\n{t.runs} since {t.first_run}")
    return {
        "text": t.summary,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": True}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": t.summary},
                "fields": [{"type": "mrkdwn", "text": f} for f in fields],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"porter alert {t.alert_id} · `porter verify alerts ack {t.alert_id}`",
                    }
                ],
            },
        ],
    }


def email_message(transition: Transition, sender: str, to: str) -> EmailMessage:
    """The plain-text e-mail of one transition; its ``Message-ID`` is the transition's key."""
    t = transition
    message = EmailMessage()
    state = "FIRING" if t.kind == "fired" else "RESOLVED"
    message["Subject"] = f"[porter] {state} {t.metric} ({_where(t)}) {t.level}"
    message["From"] = sender
    message["To"] = to
    domain = sender.rpartition("@")[2] or "porter"
    message["Message-ID"] = f"<{notification_key(t)}@{domain}>"
    message["X-Porter-Alert"] = str(t.alert_id)
    unit = f" {t.unit}" if t.unit else ""
    lines = [
        t.summary,
        "",
        f"Metric:    {t.metric}",
        f"Data ID:   {_where(t)}",
        f"Level:     {t.level} ({t.severity})",
        f"Value:     {t.value:g}{unit}",
        f"Run:       {t.run}",
    ]
    if t.kind == "fired":
        lines += [f"Failing:   {t.runs} consecutive runs since {t.first_run}"]
    lines += ["", f"Acknowledge: porter verify alerts ack {t.alert_id} --reason ..."]
    message.set_content("\n".join(lines) + "\n")
    return message


@dataclass
class DeliveryReport:
    """What one `Notifier.deliver` pass did: delivered notifications and (notification, error) failures."""

    delivered: list[Notification] = field(default_factory=list)
    failed: list[tuple[Notification, str]] = field(default_factory=list)


class Notifier:
    """Sends the outbox's due notifications to their channels and records each result.

    ``clock`` gives "now" for claims, delivery times and retries; ``lease`` is how long a claimed
    notification is held by this deliverer before another may take it (a crash mid-send).
    """

    def __init__(
        self,
        book: AlertBook,
        config: AlertConfig,
        clock: Callable[[], float] = time.time,
        lease: float = 300.0,
    ) -> None:
        self.book = book
        self.config = config
        self.clock = clock
        self.lease = lease

    def deliver(self, now: float | None = None, limit: int = 100) -> DeliveryReport:
        """Try every due notification once (at most ``limit``), oldest first."""
        at = self.clock() if now is None else now
        report = DeliveryReport()
        with httpx.Client(timeout=self.config.timeout) as client:
            for note in self.book.due(at, limit):
                if not self.book.claim(note.notification_id, at, self.lease):
                    continue  # another deliverer has it, or delivered it meanwhile
                try:
                    self._send(client, note)
                except Exception as exc:  # any failure keeps it queued: nothing is lost
                    error = f"{type(exc).__name__}: {exc}"
                    retry = self.config.retry.next_attempt(at, note.attempts + 1)
                    self.book.mark_failed(note.notification_id, at, error, retry)
                    report.failed.append((note, error))
                else:
                    self.book.mark_delivered(note.notification_id, at)
                    report.delivered.append(note)
        return report

    def _send(self, client: httpx.Client, note: Notification) -> None:
        kind, _, target = note.channel.partition(":")
        if kind == "webhook":
            response = client.post(
                self.config.webhook_url(target),
                json=slack_message(note.transition),
                headers={"Idempotency-Key": notification_key(note.transition)},
            )
            if response.status_code >= 300:
                raise VerifyError(
                    f"webhook {target!r} answered HTTP {response.status_code}: {response.text[:200]}"
                )
        elif kind == "email":
            self._mail(target, note.transition)
        else:
            raise VerifyError(f"unknown channel {note.channel!r}: use webhook:NAME or email:ADDRESS")

    def _mail(self, to: str, transition: Transition) -> None:
        smtp = self.config.smtp
        if smtp is None:
            raise VerifyError(f"no SMTP server in {self.config.source or ALERTS_FILE} to send to {to}")
        message = email_message(transition, smtp.sender, to)
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as server:
            if smtp.starttls:
                server.starttls()
            if smtp.username:
                password = os.environ.get(smtp.password_env or "", "")
                server.login(smtp.username, password)
            server.send_message(message)
