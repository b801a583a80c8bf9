"""The streaming receivers' message: every kind of alert validates against the JSON Schema
the package ships, and the headers carry what a consumer drops repeats on."""

from __future__ import annotations

from importlib.resources import files

import jsonschema
import orjson
import pytest

from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.stream import (
    ALERT_SCHEMA,
    HEADER_NOTIFICATION_ID,
    SCHEMA_FILE,
    stream_headers,
    stream_key,
    stream_message,
)
from kube_event_watcher.pipeline.aggregate import Aggregator
from kube_event_watcher.pipeline.model import Alert
from tests.factories import T0, aggregation, make_alert, occurrence


def shipped_schema() -> dict[str, object]:
    schema = orjson.loads(files("kube_event_watcher").joinpath(SCHEMA_FILE).read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def grouped_alerts() -> list[Alert]:
    agg = Aggregator(aggregation(group={"wait": "10s", "resolve_after": "1m"}))
    for i in range(3):
        agg.add(occurrence(f"web-7d4b9c5f8-{i:05d}", at=T0 + i), T0 + i)
    firing = agg.tick(T0 + 20)
    resolved = agg.tick(T0 + 20 + 3600)
    return [*firing, *resolved]


ALERTS = {
    "single": lambda: Alert.from_occurrence(occurrence("web-0", count=3)),
    "node": lambda: make_alert("Node", "node-1", reason="NodeNotReady"),
    "enriched": lambda: sample_alert(1_700_000_000.0),
}


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_each_kind_of_alert_is_valid_under_the_shipped_schema(name: str) -> None:
    body = orjson.loads(stream_message(ALERTS[name]()))
    jsonschema.validate(body, shipped_schema())
    assert body["schema"] == ALERT_SCHEMA


def test_a_group_and_its_resolve_are_valid_and_share_a_key() -> None:
    firing, resolved = grouped_alerts()
    for alert in (firing, resolved):
        body = orjson.loads(stream_message(alert))
        jsonschema.validate(body, shipped_schema())
        assert body["group"]["member_count"] == 3
    assert stream_key(firing) == stream_key(resolved)
    assert [firing.status, resolved.status] == ["firing", "resolved"]


def test_a_record_missing_its_id_is_refused_by_the_schema() -> None:
    body = orjson.loads(stream_message(make_alert()))
    del body["id"]
    with pytest.raises(jsonschema.ValidationError, match="'id' is a required property"):
        jsonschema.validate(body, shipped_schema())


def test_headers_name_the_notification_so_a_re_send_can_be_dropped() -> None:
    alert = make_alert()
    again = make_alert()  # the same notification, rebuilt (as after a restart)
    assert stream_headers(alert)[HEADER_NOTIFICATION_ID] == alert.notification_id
    assert stream_headers(alert) == stream_headers(again)
    assert stream_message(alert) == stream_message(again)
