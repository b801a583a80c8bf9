"""The kafka receiver's config: what check-config shows, and what a wrong key says."""

from __future__ import annotations

import pytest

from kube_event_watcher.cli import effective_config
from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.notifiers.kafka import KafkaConfig
from kube_event_watcher.notifiers.registry import config_models

PASSWORD = "kafka-sasl-pa55word-value"


def kafka_receiver(**keys: object) -> dict[str, object]:
    return {
        "name": "stream",
        "type": "kafka",
        "bootstrap_servers": ["kafka-0.kafka:9093"],
        "topic": "k8s-alerts",
        **keys,
    }


def test_the_sasl_password_never_shows_in_check_config_or_a_logged_error() -> None:
    loaded = parse_config(
        {
            "receivers": [
                kafka_receiver(
                    security={
                        "protocol": "SASL_SSL",
                        "mechanism": "SCRAM-SHA-512",
                        "username": "kew",
                        "password": "${KAFKA_PASSWORD}",
                    }
                )
            ]
        },
        "t",
        config_models(),
        env={"KAFKA_PASSWORD": PASSWORD},
    )
    config = loaded.receivers["stream"]
    assert isinstance(config, KafkaConfig)
    assert config.security is not None
    assert config.security.password is not None
    assert config.security.password.get_secret_value() == PASSWORD
    assert PASSWORD not in str(effective_config(loaded))
    assert PASSWORD not in repr(config)
    assert PASSWORD not in redact(f"SASL login as kew with {PASSWORD} failed")


def test_sasl_without_a_password_points_at_the_security_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "receivers": [
                    kafka_receiver(security={"protocol": "SASL_PLAINTEXT", "username": "u"})
                ]
            },
            "t",
            config_models(),
        )
    assert any("security" in p and "password" in p for p in info.value.problems)


def test_a_server_without_a_port_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"receivers": [kafka_receiver(bootstrap_servers=["kafka-0"])]}, "t", config_models()
        )
    assert any("'kafka-0'" in p and "host:port" in p for p in info.value.problems)


def test_acks_is_all_and_nothing_else() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"receivers": [kafka_receiver(acks=1)]}, "t", config_models())
    assert any("acks" in p for p in info.value.problems)
