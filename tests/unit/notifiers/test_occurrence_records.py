"""The occurrence record a fleet's edge publishes (`records: occurrences`) and its central
instance reads back: valid under the shipped schema, read back to the very same occurrence,
and a damaged or foreign record refused with what is wrong."""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files

import jsonschema
import orjson
import pytest

from kube_event_watcher.notifiers.stream import (
    HEADER_NOTIFICATION_ID,
    HEADER_SCHEMA,
    OCCURRENCE_SCHEMA,
    OCCURRENCE_SCHEMA_FILE,
    RECORDS,
    MalformedRecord,
    occurrence_from_message,
)
from kube_event_watcher.pipeline.model import Alert, ObjectRef, Occurrence
from tests.factories import T0, occurrence


def shipped_schema() -> dict[str, object]:
    raw = files("kube_event_watcher").joinpath(OCCURRENCE_SCHEMA_FILE).read_bytes()
    schema = orjson.loads(raw)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


OCCURRENCES = {
    "pod": occurrence("web-7d4b9c5f8-x2k9p", count=3, total=7, at=T0 + 0.123456),
    "node": occurrence("node-1", kind="Node", namespace="", reason="NodeNotReady"),
    "full reference": occurrence("db-0")._replace(
        regarding=ObjectRef("Pod", "shop", "db-0", "u-1", "v1", "spec.containers{db}"),
        reporting_controller="kubelet",
        reporting_instance="node-3",
        action="Pulling",
        note='Ünïcode \u2014 and "quotes"',
    ),
}
publish = RECORDS["occurrences"]


def message(occ: Occurrence) -> bytes:
    return publish.message(Alert.from_occurrence(occ))


@pytest.mark.parametrize("name", sorted(OCCURRENCES))
def test_a_published_occurrence_is_valid_and_reads_back_to_the_same_occurrence(name: str) -> None:
    occ = OCCURRENCES[name]
    body = message(occ)
    jsonschema.validate(orjson.loads(body), shipped_schema())
    assert occurrence_from_message(body) == (occ, None)


def test_sub_second_times_survive_the_trip_exactly() -> None:
    occ = occurrence("web-0")._replace(first_seen=1_700_000_000.999999, last_seen=1_700_000_001.5)
    back, _ = occurrence_from_message(message(occ))
    assert (back.first_seen, back.last_seen) == (occ.first_seen, occ.last_seen)


def test_the_key_keeps_one_objects_occurrences_together_and_headers_name_the_occurrence() -> None:
    first = Alert.from_occurrence(occurrence("web-0", reason="BackOff"))
    other_reason = Alert.from_occurrence(occurrence("web-0", reason="Unhealthy"))
    other_pod = Alert.from_occurrence(occurrence("web-1"))
    assert publish.key(first) == publish.key(other_reason) != publish.key(other_pod)
    headers = publish.headers(first)
    assert headers[HEADER_SCHEMA] == OCCURRENCE_SCHEMA
    # The same occurrence, published again after an edge's crash, has the same id: the
    # engines drop the repeat on it (Kafka receiver's ledger, NATS Nats-Msg-Id).
    again = Alert.from_occurrence(occurrence("web-0", reason="BackOff"))
    assert headers[HEADER_NOTIFICATION_ID] == publish.headers(again)[HEADER_NOTIFICATION_ID]


def damaged(**changes: object) -> bytes:
    record = orjson.loads(message(OCCURRENCES["pod"]))
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return orjson.dumps(record)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (damaged(reason=None), "missing required field `reason`"),
        (damaged(count="three"), "Expected `int`, got `str` - at `$.count`"),
        (damaged(first_seen="yesterday"), "at `$.first_seen`"),
        (damaged(schema="kube-event-watcher/alert/v1"), "does the topic carry alerts?"),
        (damaged(schema="kube-event-watcher/occurrence/v2"), "is the edge a newer version"),
        (damaged(count=0), "expected 1 <= count <= total"),
        (damaged(first_seen="2026-12-03T10:00:00"), "need a time zone"),
    ],
)
def test_a_damaged_or_foreign_record_is_refused_with_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(MalformedRecord, match=None) as caught:
        occurrence_from_message(body)
    assert says in str(caught.value)


def test_fields_a_later_v1_adds_are_ignored() -> None:
    assert occurrence_from_message(damaged(later_field={"x": 1})) == (OCCURRENCES["pod"], None)


def test_an_alert_receiver_still_publishes_alerts() -> None:
    alert = replace(Alert.from_occurrence(OCCURRENCES["pod"]), status="resolved")
    assert orjson.loads(RECORDS["alerts"].message(alert))["status"] == "resolved"


def test_the_edges_facts_travel_with_the_occurrence() -> None:
    occ = OCCURRENCES["pod"]
    facts = {"workload": "Deployment/web", "exit_code": 137, "enrichment": "complete"}
    body = publish.message(replace(Alert.from_occurrence(occ), facts=facts))
    jsonschema.validate(orjson.loads(body), shipped_schema())
    assert occurrence_from_message(body) == (occ, facts)
