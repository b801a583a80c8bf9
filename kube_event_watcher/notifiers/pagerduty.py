"""PagerDuty Events API v2: trigger and resolve incidents, deduplicated by the alert's key.

https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ — `POST /v2/enqueue`,
202 accepted, 400 invalid event (never retried), 429 too many events for this routing key.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import orjson
from pydantic import Field, SecretStr

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.http import (
    DEFAULT_TIMEOUT,
    HttpAnswer,
    HttpNotifier,
    HttpRequest,
    TlsConfig,
    answer_text,
    retry_after_seconds,
)
from kube_event_watcher.notifiers.rendering import alert_record, iso_time
from kube_event_watcher.pipeline.model import Alert

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255
Severity = Literal["critical", "error", "warning", "info"]


def _default_severities() -> dict[str, Severity]:
    return {"Warning": "warning", "Normal": "info"}


class PagerDutyConfig(ReceiverConfig):
    routing_key: SecretStr = Field(description="the integration key of an Events API v2 service")
    url: str = EVENTS_URL
    severity: dict[str, Severity] = Field(
        default_factory=_default_severities,
        description="event type -> PagerDuty severity (a 'severity' label on the alert wins)",
    )
    source: str | None = Field(default=None, description="default: the alert's cluster")
    timeout: Duration = Field(default=DEFAULT_TIMEOUT, gt=0)
    tls: TlsConfig | None = None


def summary_of(alert: Alert) -> str:
    """`reason on kind/ns/name (xN): note`, cut to PagerDuty's 1024 characters."""
    times = f" (x{alert.count})" if alert.count > 1 else ""
    note = " ".join(alert.note.split())
    text = f"{alert.reason} on {alert.regarding.describe()}{times}: {note}"
    if len(text) > SUMMARY_LIMIT:
        text = text[: SUMMARY_LIMIT - 1] + "…"
    return text


class PagerDutyNotifier(HttpNotifier):
    resolved_by_default = True
    config_model = PagerDutyConfig
    platform = "pagerduty"
    # "~120 events per minute per routing key"; a short burst is tolerated.
    default_rate_limit: ClassVar[RateLimitConfig | None] = RateLimitConfig(per_minute=120, burst=10)
    can_digest: ClassVar[bool] = False  # one incident per alert key

    def __init__(self, config: PagerDutyConfig, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self.config: PagerDutyConfig = config

    def event(self, alert: Alert) -> dict[str, object]:
        dedup_key = alert.key[:DEDUP_KEY_LIMIT]
        routing_key = self.config.routing_key.get_secret_value()
        if alert.status == "resolved":
            return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
        severity = alert.labels.get("severity") or self.config.severity.get(alert.type, "warning")
        if severity not in ("critical", "error", "warning", "info"):
            severity = "warning"
        return {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": summary_of(alert),
                "source": self.config.source or alert.cluster,
                "severity": severity,
                "timestamp": iso_time(alert.last_seen),
                "component": alert.regarding.describe(),
                "group": alert.namespace or alert.cluster,
                "class": alert.reason,
                "custom_details": alert_record(alert),
            },
            "client": "kube-event-watcher",
        }

    def request(self, alert: Alert) -> HttpRequest:
        body = orjson.dumps(self.event(alert), default=str)
        return HttpRequest(self.config.url, body, {"content-type": "application/json"})

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        if answer.status in (200, 201, 202):
            return Delivered(answer.text)
        reason = f"HTTP {answer.status}: {answer.text[:300]}"
        if answer.status == 429 or answer.status >= 500:
            seconds = retry_after_seconds(answer.headers.get("retry-after"), self.clock.now())
            return RetryAfter(reason, seconds)
        hint = self.explain(answer.status, answer.body)
        return PermanentFailure(f"{reason} ({hint})" if hint else reason)

    def explain(self, status: int, body: object) -> str | None:
        if status == 400:
            text = answer_text(body).lower()
            if "routing" in text or ("invalid" in text and "key" in text):
                return (
                    "PagerDuty did not accept the routing_key: use an Events API v2 integration key"
                )
            return "PagerDuty rejected the event as invalid (see its errors above)"
        if status == 429:
            return "too many events for this routing key; they are retried later"
        if status in (401, 403, 404):
            return "check the url: it should end in /v2/enqueue"
        return None
