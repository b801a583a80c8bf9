"""Alerts pushed into a Prometheus Alertmanager through its API v2 (`POST /api/v2/alerts`).

Alertmanager treats an alert as firing until its `endsAt`, so a sender must re-send firing
alerts before that time (Prometheus does every minute with endsAt = now + 4 intervals), and
resolves one by sending the same labels with `endsAt` ≤ now. The labels are the alert's
identity; the annotations carry the latest text.

This notifier keeps a small registry of the alerts it sent as firing and re-sends them every
`resend_interval` until a resolve for the same key arrives or no new notification came for
`firing_ttl` (then the last `endsAt` lets Alertmanager resolve it by itself). The registry
lives in memory: after a restart an alert keeps firing until its last `endsAt`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import structlog
from pydantic import Field, SecretStr, model_validator

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.http import (
    DEFAULT_TIMEOUT,
    BasicAuthConfig,
    HttpAnswer,
    HttpNotifier,
    HttpRequest,
    TlsConfig,
)
from kube_event_watcher.notifiers.rendering import iso_time
from kube_event_watcher.pipeline.model import Alert

log = structlog.get_logger(__name__)

_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")
_SEVERITY = {"Warning": "warning", "Normal": "info"}


class AlertmanagerConfig(ReceiverConfig):
    url: str = Field(
        min_length=1,
        description="Alertmanager's base URL, e.g. http://alertmanager:9093 (credentials go "
        "in basic_auth / bearer_token, not in the URL)",
    )
    basic_auth: BasicAuthConfig | None = None
    bearer_token: SecretStr | None = None
    tls: TlsConfig | None = None
    timeout: Duration = Field(default=DEFAULT_TIMEOUT, gt=0)
    resend_interval: Duration = Field(default=60.0, ge=1.0)
    firing_ttl: Duration = Field(
        default=3600.0, description="stop re-sending a firing alert with no news for this long"
    )
    generator_url: str = ""
    labels: dict[str, str] = Field(default_factory=dict, description="added to every alert")
    batch_size: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="alerts posted together when several are ready (the API takes a list)",
    )

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("give either basic_auth or bearer_token, not both")
        return self


def label_name(name: str) -> str:
    """Alertmanager label names match [a-zA-Z_][a-zA-Z0-9_]*."""
    cleaned = _LABEL_NAME.sub("_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


def alert_labels(alert: Alert, extra: dict[str, str]) -> dict[str, str]:
    """The alert's identity as labels: the same for firing and its resolve."""
    labels = {
        "alertname": alert.reason or "KubernetesEvent",
        "cluster": alert.cluster,
        "namespace": alert.namespace,
        "kind": alert.regarding.kind,
        "name": alert.regarding.name,
        "severity": _SEVERITY.get(alert.type, "warning"),
        "alert_key": alert.key,
        **extra,
    }
    for name, value in alert.labels.items():
        labels[label_name(name)] = str(value)
    return {k: v for k, v in labels.items() if v != ""}


def alert_annotations(alert: Alert) -> dict[str, str]:
    note = " ".join(alert.note.split())
    return {
        "summary": f"{alert.reason} on {alert.regarding.describe()}",
        "description": note,
        "count": str(alert.count),
        "first_seen": iso_time(alert.first_seen),
        "last_seen": iso_time(alert.last_seen),
        "event_type": alert.type,
    }


@dataclass(slots=True)
class _Firing:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    updated: float  # wall time of the last notification for it


class AlertmanagerNotifier(HttpNotifier):
    resolved_by_default = True
    config_model = AlertmanagerConfig
    platform = "alertmanager"
    can_digest: ClassVar[bool] = False  # labels are identity: a digest would be a new alert

    def __init__(
        self,
        config: AlertmanagerConfig,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(config, clock=clock)
        self.config: AlertmanagerConfig = config
        self._sleep = sleep
        self.firing: dict[str, _Firing] = {}
        self._resender: asyncio.Task[None] | None = None
        self.endpoint = config.url.rstrip("/") + "/api/v2/alerts"

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.config.bearer_token is not None:
            headers["authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        elif self.config.basic_auth is not None:
            auth = self.config.basic_auth
            pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def _ends_at(self, now: float) -> str:
        return iso_time(now + 4 * self.config.resend_interval)

    def payload(self, alert: Alert, now: float) -> dict[str, Any]:
        # Alertmanager refuses endsAt before startsAt (an event clock ahead of ours).
        now = max(now, alert.first_seen)
        item: dict[str, Any] = {
            "labels": alert_labels(alert, self.config.labels),
            "annotations": alert_annotations(alert),
            "startsAt": iso_time(alert.first_seen),
            "endsAt": iso_time(now) if alert.status == "resolved" else self._ends_at(now),
        }
        if self.config.generator_url:
            item["generatorURL"] = self.config.generator_url
        return item

    def request(self, alert: Alert) -> HttpRequest:
        return self._request([self.payload(alert, self.clock.now())])

    def _request(self, items: list[dict[str, Any]]) -> HttpRequest:
        return HttpRequest(self.endpoint, orjson.dumps(items), self._headers())

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        if 200 <= answer.status < 300:
            return Delivered(f"HTTP {answer.status}")
        reason = f"HTTP {answer.status}: {answer.text[:300]}".strip()
        if answer.status == 429 or answer.status >= 500:
            return RetryAfter(reason)
        hint = self.explain(answer.status, answer.body)
        return PermanentFailure(f"{reason} ({hint})" if hint else reason)

    async def _post(self, items: list[dict[str, Any]]) -> DeliveryResult:
        request = self._request(items)
        answer = await self.post(request.url, request.body, request.headers)
        return answer if isinstance(answer, RetryAfter) else self.judge(answer)

    async def send(self, alert: Alert) -> DeliveryResult:
        return await self.send_many([alert])

    async def send_many(self, alerts: Sequence[Alert]) -> DeliveryResult:
        # Not the base's: a delivered firing alert is remembered for re-sending.
        now = self.clock.now()
        items = [self.payload(alert, now) for alert in alerts]
        result = await self._post(items)
        if isinstance(result, Delivered):
            for alert, item in zip(alerts, items, strict=True):
                if alert.status == "resolved":
                    self.firing.pop(alert.key, None)
                else:
                    self.firing[alert.key] = _Firing(
                        item["labels"], item["annotations"], item["startsAt"], now
                    )
        return result

    async def resend_firing(self) -> DeliveryResult | None:
        """Re-send every alert still firing with a fresh endsAt; None when there is none."""
        now = self.clock.now()
        for key in [k for k, f in self.firing.items() if now - f.updated > self.config.firing_ttl]:
            del self.firing[key]  # no news for long: let its endsAt resolve it
        if not self.firing:
            return None
        ends_at = self._ends_at(now)
        items: list[dict[str, Any]] = [
            {
                "labels": f.labels,
                "annotations": f.annotations,
                "startsAt": f.starts_at,
                "endsAt": ends_at,
                **(
                    {"generatorURL": self.config.generator_url} if self.config.generator_url else {}
                ),
            }
            for f in self.firing.values()
        ]
        return await self._post(items)

    async def _resend_loop(self) -> None:
        while True:
            await self._sleep(self.config.resend_interval)
            try:
                result = await self.resend_firing()
            except Exception as exc:  # keep re-sending on the next round
                result = RetryAfter(f"{type(exc).__name__}: {exc}")
            if result is not None and not isinstance(result, Delivered):
                log.warning(
                    "re-sending firing alerts failed; next try in one interval",
                    receiver=self.name,
                    reason=redact(getattr(result, "reason", "")),
                )

    async def start(self) -> None:
        await super().start()
        if self._resender is None:
            self._resender = asyncio.create_task(self._resend_loop(), name=f"resend:{self.name}")

    async def close(self) -> None:
        if self._resender is not None:
            self._resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resender
            self._resender = None
        await super().close()

    def explain(self, status: int, body: object) -> str | None:
        if status == 400:
            return "Alertmanager rejected the alert (bad labels or times; its reason is above)"
        if status in (401, 403):
            return (
                "Alertmanager (or a proxy before it) wants credentials: "
                "set basic_auth or bearer_token"
            )
        if status == 404:
            return (
                "no Alertmanager API v2 at this url: "
                "give the base URL, e.g. http://alertmanager:9093"
            )
        return None
