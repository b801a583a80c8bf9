"""Alerts as OpenTelemetry logs, sent over OTLP/HTTP to a collector (`POST <endpoint>/v1/logs`).

The body is an `ExportLogsServiceRequest` in the OTLP/JSON encoding
(https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding), gzip-compressed by
default: one resource per cluster (`k8s.cluster.name`), one scope (`kube-event-watcher` and
its version), one log record per notification. The record follows the semantic conventions
the collector's own `k8s_events` receiver uses for a Kubernetes event (`k8s.event.*`,
`k8s.object.*`, `k8s.namespace.name`, `k8s.<kind>.name`), so the same dashboards and
queries fit both, and adds what only we know under `kube_event_watcher.*`: the notification
id a consumer deduplicates on, the alert's key, status, counts, group and likely cause, and
the whole alert record of the streaming receivers (`kube-event-watcher/alert/v1`).

Answers (https://opentelemetry.io/docs/specs/otlp/#otlphttp-response): 2xx is accepted,
unless `partialSuccess.rejectedLogRecords` > 0 (then the collector dropped records for good);
429, 502, 503 and 504 are worth retrying (after `Retry-After` when given); any other status
is final, with the `google.rpc.Status` message the collector answered.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from kube_event_watcher import __version__
from kube_event_watcher.clock import Clock
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.secrets import mask_url, registry
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
    short,
    with_hint,
)
from kube_event_watcher.notifiers.rendering import alert_line, iso_time
from kube_event_watcher.notifiers.stream import stream_message
from kube_event_watcher.pipeline.cause import likely_cause
from kube_event_watcher.pipeline.model import Alert

SCOPE_NAME = "kube-event-watcher"
SERVICE_NAME = "kube-event-watcher"
EVENT_NAME = "kube_event_watcher.alert"
LOGS_PATH = "/v1/logs"
# The OTLP/HTTP statuses a client retries; every other failure is final (OTLP spec,
# "Retryable Response Codes").
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# Attribute names: the semantic conventions where they have one, ours under a prefix.
ATTR_NOTIFICATION_ID = "kube_event_watcher.notification.id"
ATTR_RECORD = "kube_event_watcher.record"
_OURS = "kube_event_watcher."

# SeverityNumber (OTLP logs data model): INFO = 9, WARN = 13; a Kubernetes event is either
# Normal or Warning, as the collector's k8s_events receiver maps them.
_SEVERITY: dict[str, tuple[int, str]] = {"Warning": (13, "WARN"), "Normal": (9, "INFO")}

# Kinds the Kubernetes resource conventions name (`k8s.<kind>.name` / `.uid`); any other
# kind is still named by `k8s.object.kind` / `k8s.object.name`.
_SEMCONV_KINDS = frozenset(
    {
        "pod",
        "node",
        "namespace",
        "deployment",
        "replicaset",
        "statefulset",
        "daemonset",
        "job",
        "cronjob",
        "replicationcontroller",
        "horizontalpodautoscaler",
        "resourcequota",
        "persistentvolumeclaim",
    }
)
_KIND_KEY = {"horizontalpodautoscaler": "hpa"}
_CONTAINER_PATH = re.compile(r"spec\.(?:init|ephemeral)?[cC]ontainers\{([^}]+)\}")


class OtlpConfig(ReceiverConfig):
    endpoint: str = Field(
        min_length=1,
        description="the collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318 "
        "(/v1/logs is added unless the URL already ends with it)",
    )
    bearer_token: SecretStr | None = Field(
        default=None, description="sent as Authorization: Bearer …; masked everywhere"
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="extra request headers (API keys, tenant ids); values are masked",
    )
    compression: Literal["gzip", "none"] = "gzip"
    resource_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="added to every resource, e.g. deployment.environment.name: prod",
    )
    include_record: bool = Field(
        default=True,
        description="add the whole alert record (kube-event-watcher/alert/v1 JSON) as the "
        "kube_event_watcher.record attribute",
    )
    timeout: Duration = Field(default=DEFAULT_TIMEOUT, gt=0)
    tls: TlsConfig | None = None
    batch_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="alerts (log records) one export request may carry when several are ready",
    )

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                "expected the collector's OTLP/HTTP URL, e.g. http://otel-collector:4318 "
                "(this receiver speaks OTLP over HTTP, not gRPC on :4317)"
            )
        return value

    @model_validator(mode="after")
    def _one_authorization(self) -> OtlpConfig:
        if self.bearer_token is not None and any(
            name.lower() == "authorization" for name in self.headers
        ):
            raise ValueError("give either bearer_token or an Authorization header, not both")
        for value in self.headers.values():  # header values are secrets: mask them in logs
            registry.register(value.get_secret_value())
        return self


def logs_url(endpoint: str) -> str:
    """`<endpoint>/v1/logs`, as the OTLP exporters derive the logs URL from a base URL."""
    base = endpoint.rstrip("/")
    return base if base.endswith(LOGS_PATH) else base + LOGS_PATH


def any_value(value: object) -> dict[str, Any] | None:
    """An OTLP `AnyValue` in the JSON encoding (64-bit integers as strings); None for None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value.items())}}
    if isinstance(value, list | tuple):
        items = (any_value(v) for v in value)
        return {"arrayValue": {"values": [v for v in items if v is not None]}}
    return {"stringValue": str(value)}


def key_values(pairs: Iterable[tuple[str, object]]) -> list[dict[str, Any]]:
    """`KeyValue`s, leaving out empty values (an unset attribute, not an empty one)."""
    out = []
    for key, value in pairs:
        if value is None or value == "":
            continue
        encoded = any_value(value)
        if encoded is not None:
            out.append({"key": key, "value": encoded})
    return out


def _kind_key(kind: str) -> str | None:
    lowered = kind.lower()
    return _KIND_KEY.get(lowered, lowered) if lowered in _SEMCONV_KINDS else None


def object_attributes(alert: Alert) -> dict[str, object]:
    """The object the alert is about, named as the k8s_events receiver and the k8s.*
    resource conventions name it; owners and node from enrichment when it found them."""
    ref = alert.regarding
    attrs: dict[str, object] = {
        "k8s.namespace.name": alert.namespace or ref.namespace,
        "k8s.object.kind": ref.kind,
        "k8s.object.name": ref.name,
        "k8s.object.uid": ref.uid,
        "k8s.object.fieldpath": ref.field_path,
        "k8s.object.api_version": ref.api_version,
    }
    key = _kind_key(ref.kind)
    if key is not None:
        attrs[f"k8s.{key}.name"] = ref.name
        attrs[f"k8s.{key}.uid"] = ref.uid
    facts = alert.facts
    for link in facts.get("owner_chain") or ():
        kind, _, name = str(link).partition("/")
        owner = _kind_key(kind)
        if owner is not None and name:
            attrs.setdefault(f"k8s.{owner}.name", name)
    if facts.get("node"):
        attrs.setdefault("k8s.node.name", facts["node"])
    container = facts.get("container")
    if not container and ref.field_path:
        found = _CONTAINER_PATH.fullmatch(ref.field_path)
        container = found.group(1) if found else None
    if container:
        attrs["k8s.container.name"] = container
    if isinstance(facts.get("restart_count"), int):
        attrs["k8s.container.restart_count"] = facts["restart_count"]
    return attrs


def event_attributes(alert: Alert) -> dict[str, object]:
    """`k8s.event.*` of the first event the alert carries (what the k8s_events receiver
    puts on each event's record)."""
    attrs: dict[str, object] = {"k8s.event.reason": alert.reason}
    if alert.occurrences:
        first = alert.occurrences[0]
        attrs.update(
            {
                "k8s.event.uid": first.uid,
                "k8s.event.name": first.name,
                "k8s.event.action": first.action,
                "k8s.event.count": first.total,
            }
        )
    return attrs


def alert_attributes(alert: Alert, include_record: bool) -> dict[str, object]:
    """What only kube-event-watcher knows, under `kube_event_watcher.*`."""
    attrs: dict[str, object] = {
        ATTR_NOTIFICATION_ID: alert.notification_id,
        _OURS + "alert.key": alert.key,
        _OURS + "alert.status": alert.status,
        _OURS + "alert.count": alert.count,
        _OURS + "alert.first_seen": iso_time(alert.first_seen),
    }
    if alert.group_key:
        attrs.update(
            {
                _OURS + "group.key": alert.group_key,
                _OURS + "group.sequence": alert.sequence,
                _OURS + "group.member_count": alert.member_count,
                _OURS + "group.new_members": alert.new_members,
                _OURS + "group.reasons": list(alert.reasons),
                _OURS + "group.workloads": list(alert.workloads),
            }
        )
    for name, value in alert.labels.items():
        attrs[f"{_OURS}label.{name}"] = str(value)
    if alert.facts:
        cause = likely_cause(alert.reason, alert.note, alert.facts)
        if cause is not None:
            attrs[_OURS + "likely_cause"] = cause.code
    if include_record:
        attrs[ATTR_RECORD] = stream_message(alert).decode()
    return attrs


def _nanos(seconds: float) -> str:
    return str(round(seconds * 1_000_000_000))


def log_body(alert: Alert) -> str:
    """The event's note; for a group of several objects, one line that names them all."""
    if sum(alert.objects.values()) > 1:
        return alert_line(alert)
    return alert.note


def log_record(alert: Alert, observed: float, include_record: bool = True) -> dict[str, Any]:
    """One `LogRecord` for one notification: when it happened (`last_seen`), when we sent
    it (`observed`), how severe (the event type), what (the note) and about what."""
    number, text = _SEVERITY.get(alert.type, (0, alert.type))
    record: dict[str, Any] = {
        "timeUnixNano": _nanos(alert.last_seen),
        "observedTimeUnixNano": _nanos(observed),
        "severityNumber": number,
        "body": {"stringValue": log_body(alert)},
        "attributes": key_values(
            {
                **event_attributes(alert),
                **object_attributes(alert),
                **alert_attributes(alert, include_record),
            }.items()
        ),
        "eventName": EVENT_NAME,
    }
    if text:
        record["severityText"] = text
    return record


def export_request(
    alerts: Sequence[Alert],
    observed: float,
    resource: Mapping[str, str] | None = None,
    include_record: bool = True,
) -> dict[str, Any]:
    """An `ExportLogsServiceRequest`: the alerts' records under one resource per cluster,
    in the order given."""
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        by_cluster.setdefault(alert.cluster, []).append(log_record(alert, observed, include_record))
    scope = {"name": SCOPE_NAME, "version": __version__}
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": key_values(
                        {
                            "service.name": SERVICE_NAME,
                            "service.version": __version__,
                            "k8s.cluster.name": cluster,
                            **(resource or {}),
                        }.items()
                    )
                },
                "scopeLogs": [{"scope": scope, "logRecords": records}],
            }
            for cluster, records in by_cluster.items()
        ]
    }


def rejected_records(body: object) -> tuple[int, str]:
    """`partialSuccess` of an `ExportLogsServiceResponse`: records rejected, and why."""
    partial = body.get("partialSuccess") if isinstance(body, dict) else None
    if not isinstance(partial, dict):
        return 0, ""
    try:
        rejected = int(partial.get("rejectedLogRecords") or 0)  # int64: a string in JSON
    except (TypeError, ValueError):
        rejected = 0
    return rejected, str(partial.get("errorMessage") or "")


def status_message(answer: HttpAnswer) -> str:
    """The collector's reason: the `google.rpc.Status` message, else the body's text."""
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return short(body["message"])
    return short(answer.text) or "(no body)"


class OtlpNotifier(HttpNotifier):
    resolved_by_default = True
    config_model = OtlpConfig
    platform = "otlp"
    can_digest: ClassVar[bool] = False  # machines read it: one record per notification

    def __init__(self, config: OtlpConfig, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self.config: OtlpConfig = config
        self.url = logs_url(config.endpoint)

    def _headers(self) -> dict[str, str]:
        headers = {name: value.get_secret_value() for name, value in self.config.headers.items()}
        headers["Content-Type"] = "application/json"
        if self.config.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        return headers

    def request(self, alert: Alert) -> HttpRequest:
        return self.request_many([alert])

    def request_many(self, alerts: Sequence[Alert]) -> HttpRequest:
        body = orjson.dumps(
            export_request(
                alerts,
                self.clock.now(),
                self.config.resource_attributes,
                self.config.include_record,
            )
        )
        if self.config.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
        return HttpRequest(self.url, body, self._headers())

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        status = answer.status
        if 200 <= status < 300:
            rejected, message = rejected_records(answer.body)
            if rejected > 0:
                return PermanentFailure(
                    f"the collector rejected {rejected} log record(s): "
                    f"{short(message) or '(no errorMessage)'}"
                )
            return Delivered(
                f"HTTP {status}" + (f" (warning: {short(message)})" if message else "")
            )
        reason = f"HTTP {status}: {status_message(answer)}"
        if status in RETRY_STATUSES:
            return RetryAfter(
                reason, retry_after_seconds(answer.headers.get("retry-after"), self.clock.now())
            )
        return PermanentFailure(with_hint(reason, self.explain(status, answer.body)))

    def explain(self, status: int, body: object) -> str | None:
        if 300 <= status < 400:
            return (
                "the endpoint redirects; redirects are not followed: put the final URL in "
                f"receivers[{self.name}].endpoint"
            )
        return {
            400: "the collector could not decode the request (is this an OTLP/HTTP endpoint?)",
            401: "the collector refused the credentials: check bearer_token / headers",
            403: "the collector refused the credentials: check bearer_token / headers",
            404: (
                f"no OTLP logs endpoint at {mask_url(self.url)}: give the base URL, "
                "e.g. http://otel-collector:4318, and enable the otlp receiver's http protocol"
            ),
            413: "the request is too large for the collector: lower batch_size",
            415: "the collector does not take OTLP/JSON here",
        }.get(status)
