"""The message the streaming receivers (Kafka, NATS JetStream) publish: one alert record
under a versioned schema name, with the headers a consumer routes and deduplicates on.

The body is `alert_record` (the same record the webhook and file receivers write) plus
`"schema": ALERT_SCHEMA`; its JSON Schema ships in the package
(`kube_event_watcher/schemas/alert-v1.schema.json`, `docs/streaming.md`). A change that
removes or retypes a field is a new version (`.../v2`); adding a field is not.
"""

from __future__ import annotations

from typing import Any

import orjson

from kube_event_watcher.notifiers.rendering import alert_record
from kube_event_watcher.pipeline.model import Alert

ALERT_SCHEMA = "kube-event-watcher/alert/v1"
SCHEMA_FILE = "schemas/alert-v1.schema.json"

# Header names, the same on every engine that has headers (Kafka record headers, NATS
# message headers): a consumer can filter without parsing the body.
HEADER_SCHEMA = "kew-schema"
HEADER_NOTIFICATION_ID = "kew-notification-id"
HEADER_STATUS = "kew-status"
HEADER_CLUSTER = "kew-cluster"


def stream_record(alert: Alert) -> dict[str, Any]:
    """The alert's record under its schema name."""
    return {"schema": ALERT_SCHEMA, **alert_record(alert)}


def stream_message(alert: Alert) -> bytes:
    """The message body: the record as compact JSON (UTF-8)."""
    return orjson.dumps(stream_record(alert))


def stream_key(alert: Alert) -> str:
    """What orders messages: the alert's identity (a group's key for a grouped alert), the
    same for its firing, repeats and resolve, so one incident's messages stay in order on
    an engine that orders by key (a Kafka partition) and a consumer can keep the latest."""
    return alert.key


def stream_headers(alert: Alert) -> dict[str, str]:
    """Headers for a consumer to route and drop repeats on without reading the body;
    `kew-notification-id` is the same when the same notification is re-sent after a crash."""
    return {
        HEADER_SCHEMA: ALERT_SCHEMA,
        HEADER_NOTIFICATION_ID: alert.notification_id,
        HEADER_STATUS: alert.status,
        HEADER_CLUSTER: alert.cluster,
    }
