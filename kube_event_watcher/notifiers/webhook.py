"""A generic webhook, signed the Standard Webhooks 1.0 way (https://www.standardwebhooks.com/).

Headers: `webhook-id` = the alert's notification_id (the same on every retry and after a
restart, so the receiver can drop repeats), `webhook-timestamp` = unix seconds of this
attempt, `webhook-signature` = `v1,<base64 HMAC-SHA256(key, f"{id}.{ts}.{body}")>` where the
key is the base64 part of a `whsec_…` secret. Body: `{"type", "timestamp", "data"}`.

With `batch_size` above 1, alerts that are ready together share one request (up to that
many): `type` is `kube_event.alerts` and `data` the list of their records, and the
webhook-id is the batch's (`batch_id`). Every body of such a receiver has that shape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

import orjson
from pydantic import Field, SecretStr, field_validator

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.secrets import mask_url
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
    retry_after_seconds,
)
from kube_event_watcher.notifiers.rendering import alert_record
from kube_event_watcher.pipeline.model import Alert, stable_id

SECRET_PREFIX = "whsec_"
BATCH_TYPE = "kube_event.alerts"
# Statuses the spec (and common practice) call transient; other 4xx are the request's fault.
RETRY_STATUSES = frozenset({408, 425, 429, 502, 503, 504})


def signing_key(secret: str) -> bytes:
    """The HMAC key in a `whsec_<base64>` secret (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX).strip()
    encoded += "=" * (-len(encoded) % 4)  # unpadded base64 is common in these secrets
    try:
        key = base64.b64decode(encoded, validate=True)
        if not key:
            raise ValueError("empty key")
        return key
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            "expected a Standard Webhooks secret: 'whsec_' followed by base64 "
            "(generate one with: echo whsec_$(head -c 32 /dev/urandom | base64))"
        ) from exc


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookConfig(ReceiverConfig):
    url: SecretStr = Field(description="the endpoint; may hold a token, so it is masked")
    secret: SecretStr | None = Field(default=None, description="whsec_… signing secret")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = Field(default=DEFAULT_TIMEOUT, gt=0)
    tls: TlsConfig | None = None
    batch_size: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="alerts one request may carry; above 1 every body holds a list "
        "(type kube_event.alerts), sent when several alerts are ready at once",
    )

    @field_validator("secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            signing_key(value.get_secret_value())
        return value


def _timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")


def webhook_body(alert: Alert, now: float) -> bytes:
    return orjson.dumps(
        {
            "type": f"kube_event.alert.{alert.status}",
            "timestamp": _timestamp(now),
            "data": alert_record(alert),
        }
    )


def batch_body(alerts: Sequence[Alert], now: float) -> bytes:
    """Several alerts in one body: `data` is the list of their records, in order."""
    return orjson.dumps(
        {
            "type": BATCH_TYPE,
            "timestamp": _timestamp(now),
            "data": [alert_record(alert) for alert in alerts],
        }
    )


def batch_id(alerts: Sequence[Alert]) -> str:
    """The webhook-id of a batch: the same for the same alerts, so a retry of it is
    recognisable; a re-sent alert may come in another batch, so receivers that drop
    repeats go by each record's `id` (and event totals), not by the batch's."""
    return "batch-" + stable_id(*(alert.notification_id for alert in alerts))


class WebhookNotifier(HttpNotifier):
    resolved_by_default = True
    config_model = WebhookConfig
    platform = "webhook"
    can_digest: ClassVar[bool] = False  # machines read it: one message per alert
    lean_posts: ClassVar[bool] = True  # one plain POST an alert: aiohttp's cost was most of it

    def __init__(self, config: WebhookConfig, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self.config: WebhookConfig = config
        self._key = (
            signing_key(config.secret.get_secret_value()) if config.secret is not None else None
        )

    def request(self, alert: Alert) -> HttpRequest:
        if self.config.batch_size > 1:
            return self.request_many([alert])  # one shape for every body of this receiver
        now = self.clock.now()
        return self._signed(alert.notification_id, int(now), webhook_body(alert, now))

    def request_many(self, alerts: Sequence[Alert]) -> HttpRequest:
        now = self.clock.now()
        return self._signed(batch_id(alerts), int(now), batch_body(alerts, now))

    def _signed(self, message_id: str, timestamp: int, body: bytes) -> HttpRequest:
        headers = {
            **self.config.headers,
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, message_id, timestamp, body)
        return HttpRequest(self.config.url.get_secret_value(), body, headers)

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        status = answer.status
        if 200 <= status < 300:
            return Delivered(f"HTTP {status}")
        reason = f"HTTP {status}: {answer.text[:200]}".strip()
        if status in RETRY_STATUSES or status >= 500:
            seconds = retry_after_seconds(answer.headers.get("retry-after"), self.clock.now())
            return RetryAfter(reason, seconds)
        hint = self.explain(status, answer.body)
        return PermanentFailure(f"{reason} ({hint})" if hint else reason)

    def explain(self, status: int, body: object) -> str | None:
        if 300 <= status < 400:
            return (
                "the endpoint redirects; redirects are not followed (the signature would go "
                f"elsewhere): put the final URL in receivers[{self.name}].url"
            )
        url = mask_url(self.config.url.get_secret_value())
        return {
            400: "the endpoint rejected the payload",
            401: "the endpoint refused the request: check the signing secret and headers",
            403: "the endpoint refused the request: check the signing secret and headers",
            404: f"no such endpoint: check the url ({url})",
            410: "the endpoint is gone (410): remove this receiver or point it elsewhere",
            413: "the payload is too large for the endpoint",
        }.get(status)
