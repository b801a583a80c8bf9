"""Fleet config: an edge's occurrence publishers stay out of routing, a central instance's
`fleet.consume` is checked by its receiver type's model at its own key, needs no cluster,
and shows no secret in check-config."""

from __future__ import annotations

from typing import Any

import pytest

from kube_event_watcher.cli import effective_config
from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import LoadedConfig, parse_config
from kube_event_watcher.config.secrets import MASK
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.pipeline.route import RoutingStage
from tests.factories import make_alert

KAFKA = {"type": "kafka", "bootstrap_servers": ["kafka:9092"], "topic": "kew-occurrences"}
PUBLISHER = {"name": "fleet", "records": "occurrences", **KAFKA}
SLACK = {"name": "team", "type": "webhook", "url": "https://hooks.example/team"}


def load(raw: dict[str, Any]) -> LoadedConfig:
    return parse_config(raw, "test.yaml", config_models(), env={})


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(raw)
    return str(caught.value)


def test_default_routing_sends_alerts_to_every_receiver_but_the_occurrence_publishers() -> None:
    config = load({"receivers": [PUBLISHER, SLACK]}).config
    assert config.alert_receivers == ["team"]
    stage = RoutingStage.from_config(config)
    assert stage.decide(make_alert(), 0.0).deliver_to == ("team",)


def test_a_route_to_an_occurrence_publisher_is_refused_at_its_key() -> None:
    said = problems(
        {
            "receivers": [PUBLISHER, SLACK],
            "routes": {"receiver": "team", "routes": [{"receiver": "fleet"}]},
        }
    )
    assert "routes.routes[0].receiver: 'fleet' publishes occurrences" in said


def test_self_alerts_cannot_go_to_an_occurrence_publisher() -> None:
    said = problems({"receivers": [PUBLISHER], "ops": {"self_alert_receiver": "fleet"}})
    assert "ops.self_alert_receiver: 'fleet' publishes occurrences" in said


def test_records_is_alerts_or_occurrences() -> None:
    said = problems({"receivers": [{**PUBLISHER, "records": "events"}]})
    assert "receivers[0].records" in said and "'alerts' or 'occurrences'" in said


def test_fleet_consume_is_checked_by_its_receiver_types_model_at_its_own_key() -> None:
    said = problems({"fleet": {"consume": {"type": "kafka", "bootstrap_servers": ["k:9092"]}}})
    assert "fleet.consume.topic: is required" in said
    said = problems({"fleet": {"consume": {**KAFKA, "bootstrap_servers": ["kafka"]}}})
    assert "fleet.consume" in said and "expected host:port, got 'kafka'" in said
    said = problems({"fleet": {"consume": {"type": "redis"}}})
    assert "fleet.consume.type" in said and "'kafka' or 'nats'" in said


def test_a_central_without_clusters_needs_a_file_state_and_no_leader_election() -> None:
    consume = {"consume": KAFKA}
    assert load({"fleet": consume}).config.fleet is not None
    said = problems({"fleet": consume, "state": {"backend": "configmap"}})
    assert "state.backend: configmap needs a cluster" in said
    said = problems({"fleet": consume, "ha": {"enabled": True}, "state": {"backend": "file"}})
    assert "ha.enabled: leader election needs a cluster" in said
    with_cluster = {"fleet": consume, "clusters": [{"name": "hub"}], "sources": []}
    assert load({**with_cluster, "state": {"backend": "configmap"}}).config.clusters


def test_check_config_shows_the_consumed_stream_with_defaults_and_no_password() -> None:
    password = "sasl-pass-0b8e4f1d"
    security = {"protocol": "SASL_SSL", "username": "central", "password": password}
    loaded = load({"fleet": {"consume": {**KAFKA, "security": security}}})
    shown = effective_config(loaded)
    consume = shown["fleet"]["consume"]
    assert consume["topic"] == "kew-occurrences" and consume["timeout"] == "10s"
    assert consume["security"]["password"] == MASK
    assert password not in str(shown)
    assert "name" not in consume


def test_a_central_does_not_shard_its_one_stream() -> None:
    said = problems(
        {
            "fleet": {"consume": KAFKA},
            "clusters": [{"name": "hub"}],
            "ha": {"enabled": True, "shards": True},
            "state": {"backend": "configmap"},
        }
    )
    assert "ha.shards: a central instance reads its stream as one consumer" in said
