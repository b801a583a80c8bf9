"""The messages the streaming receivers (Kafka, NATS JetStream) publish: one alert record
under a versioned schema name, with the headers a consumer routes and deduplicates on; or,
for a receiver with `records: occurrences` (a fleet's edge), one occurrence record, the
input of a central instance's aggregation (`occurrence_from_message` reads it back).

The body is `alert_record` (the same record the webhook and file receivers write) plus
`"schema": ALERT_SCHEMA`; its JSON Schema ships in the package
(`kube_event_watcher/schemas/alert-v1.schema.json`, `docs/streaming.md`). A change that
removes or retypes a field is a new version (`.../v2`); adding a field is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
import orjson
from pydantic import Field

from kube_event_watcher.notifiers.base import ReceiverConfig
from kube_event_watcher.notifiers.rendering import alert_record
from kube_event_watcher.pipeline.model import Alert, ObjectRef, Occurrence

ALERT_SCHEMA = "kube-event-watcher/alert/v1"
SCHEMA_FILE = "schemas/alert-v1.schema.json"
OCCURRENCE_SCHEMA = "kube-event-watcher/occurrence/v1"
OCCURRENCE_SCHEMA_FILE = "schemas/occurrence-v1.schema.json"

RecordKind = Literal["alerts", "occurrences"]


class StreamReceiverConfig(ReceiverConfig):
    """What the streaming receivers share: which records they publish."""

    records: RecordKind = Field(
        default="alerts",
        description="alerts (notifications, after aggregation and routing) or occurrences "
        "(every occurrence that passes the filters, before aggregation: a fleet's edge "
        "feeding a central instance)",
    )


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


# --- occurrences: what a fleet's edge publishes and its central instance aggregates ----------


class _Regarding(msgspec.Struct, frozen=True, rename="camel"):
    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str = ""
    field_path: str = ""


class _Event(msgspec.Struct, frozen=True, rename="camel"):
    uid: str
    name: str
    resource_version: str
    total: int
    reporting_controller: str = ""
    reporting_instance: str = ""
    action: str = ""


class OccurrenceRecord(msgspec.Struct, frozen=True):
    """`kube-event-watcher/occurrence/v1`. Unknown fields are ignored (a later v1 may add
    some); a missing or mistyped one refuses the record."""

    schema: str
    id: str
    cluster: str
    namespace: str
    type: str
    reason: str
    note: str
    count: int
    first_seen: datetime
    last_seen: datetime
    regarding: _Regarding
    event: _Event
    facts: dict[str, Any] | None = None


_decode_occurrence = msgspec.json.Decoder(OccurrenceRecord).decode


class MalformedRecord(ValueError):
    """A message that is not a usable occurrence record; logged with its reason and skipped."""


def _iso_micro(epoch: float) -> str:
    seconds = int(epoch // 1)
    micros = round((epoch - seconds) * 1_000_000)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def occurrence_record(occ: Occurrence, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The occurrence as a JSON-ready record: every field a central instance aggregates on,
    times in RFC 3339 with microseconds (they round-trip exactly), and what the edge's
    enrichment found out about the object (`facts`, when it enriches)."""
    ref = occ.regarding
    record = {
        "schema": OCCURRENCE_SCHEMA,
        "id": occ.identity,
        "cluster": occ.cluster,
        "namespace": occ.namespace,
        "type": occ.type,
        "reason": occ.reason,
        "note": occ.note,
        "count": occ.count,
        "first_seen": _iso_micro(occ.first_seen),
        "last_seen": _iso_micro(occ.last_seen),
        "regarding": {
            "kind": ref.kind,
            "namespace": ref.namespace,
            "name": ref.name,
            "uid": ref.uid,
            "apiVersion": ref.api_version,
            "fieldPath": ref.field_path,
        },
        "event": {
            "uid": occ.uid,
            "name": occ.name,
            "resourceVersion": occ.resource_version,
            "total": occ.total,
            "reportingController": occ.reporting_controller,
            "reportingInstance": occ.reporting_instance,
            "action": occ.action,
        },
    }
    if facts:
        record["facts"] = dict(facts)
    return record


def occurrence_from_message(body: bytes) -> tuple[Occurrence, dict[str, Any] | None]:
    """An occurrence record read back (the inverse of the occurrence message), with the
    edge's facts about its object (None when the edge did not enrich)."""
    try:
        record = _decode_occurrence(body)
    except msgspec.ValidationError as exc:
        raise MalformedRecord(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise MalformedRecord(f"not JSON: {exc}") from None
    if record.schema != OCCURRENCE_SCHEMA:
        raise MalformedRecord(
            f"schema {record.schema!r}: this instance reads {OCCURRENCE_SCHEMA!r} "
            "(is the edge a newer version, or does the topic carry alerts?)"
        )
    if record.count < 1 or record.event.total < record.count:
        raise MalformedRecord(
            f"count {record.count} of total {record.event.total}: expected 1 <= count <= total"
        )
    if record.first_seen.tzinfo is None or record.last_seen.tzinfo is None:
        raise MalformedRecord("first_seen and last_seen need a time zone (RFC 3339)")
    ref, event = record.regarding, record.event
    occurrence = Occurrence(
        cluster=record.cluster,
        uid=event.uid,
        name=event.name,
        namespace=record.namespace,
        resource_version=event.resource_version,
        type=record.type,
        reason=record.reason,
        note=record.note,
        action=event.action,
        regarding=ObjectRef(
            ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version, ref.field_path
        ),
        reporting_controller=event.reporting_controller,
        reporting_instance=event.reporting_instance,
        count=record.count,
        total=event.total,
        first_seen=record.first_seen.timestamp(),
        last_seen=record.last_seen.timestamp(),
    )
    return occurrence, record.facts


def _the_occurrence(alert: Alert) -> Occurrence:
    # A receiver with `records: occurrences` gets one alert per occurrence, built by
    # Alert.from_occurrence before aggregation (daemon.Pipeline.intake).
    return alert.occurrences[0]


def occurrence_message(alert: Alert) -> bytes:
    return orjson.dumps(occurrence_record(_the_occurrence(alert), alert.facts))


def occurrence_key(alert: Alert) -> str:
    """One object's occurrences stay in order (a Kafka partition): what a window counts."""
    occ = _the_occurrence(alert)
    return f"{occ.cluster}/{occ.regarding.uid or occ.regarding.describe()}"


def occurrence_headers(alert: Alert) -> dict[str, str]:
    return {
        HEADER_SCHEMA: OCCURRENCE_SCHEMA,
        HEADER_NOTIFICATION_ID: alert.notification_id,
        HEADER_CLUSTER: alert.cluster,
    }


@dataclass(frozen=True)
class StreamRecords:
    """How a streaming receiver turns what it is given into messages: alerts or occurrences."""

    kind: RecordKind
    message: Callable[[Alert], bytes]
    key: Callable[[Alert], str]
    headers: Callable[[Alert], dict[str, str]]


RECORDS: dict[RecordKind, StreamRecords] = {
    "alerts": StreamRecords("alerts", stream_message, stream_key, stream_headers),
    "occurrences": StreamRecords(
        "occurrences", occurrence_message, occurrence_key, occurrence_headers
    ),
}
