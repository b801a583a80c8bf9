"""A generic webhook, signed the Standard Webhooks 1.0 way (https://www.standardwebhooks.com/).

Headers: `webhook-id` = the alert's notification_id (the same on every retry and after a
restart, so the receiver can drop repeats), `webhook-timestamp` = unix seconds of this
attempt, `webhook-signature` = `v1,<base64 HMAC-SHA256(key, f"{id}.{ts}.{body}")>` where the
key is the base64 part of a `whsec_…` secret. Body: `{"type", "timestamp", "data"}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from typing import ClassVar

import orjson
from pydantic import Field, SecretStr, field_validator

from watcher.clock import Clock
from watcher.config.durations import Duration
from watcher.config.secrets import mask_url
from watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from watcher.notifiers.http import (
    DEFAULT_TIMEOUT,
    HttpAnswer,
    HttpNotifier,
    HttpRequest,
    TlsConfig,
    retry_after_seconds,
)
from watcher.notifiers.rendering import alert_record
from watcher.pipeline.model import Alert

SECRET_PREFIX = "whsec_"
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

    @field_validator("secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            signing_key(value.get_secret_value())
        return value


def webhook_body(alert: Alert, now: float) -> bytes:
    return orjson.dumps(
        {
            "type": f"kube_event.alert.{alert.status}",
            "timestamp": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
            "data": alert_record(alert),
        }
    )


class WebhookNotifier(HttpNotifier):
    resolved_by_default = True
    config_model = WebhookConfig
    platform = "webhook"
    can_digest: ClassVar[bool] = False  # machines read it: one message per alert

    def __init__(self, config: WebhookConfig, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self.config: WebhookConfig = config
        self._key = (
            signing_key(config.secret.get_secret_value()) if config.secret is not None else None
        )

    def request(self, alert: Alert) -> HttpRequest:
        now = self.clock.now()
        body = webhook_body(alert, now)
        timestamp = int(now)
        headers = {
            **self.config.headers,
            "content-type": "application/json",
            "webhook-id": alert.notification_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, alert.notification_id, timestamp, body)
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
