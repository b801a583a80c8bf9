"""The detectors: config section: off by default, errors name their key, check-config shows it."""

from __future__ import annotations

import pytest

from kube_event_watcher.cli import effective_config
from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.notifiers.registry import config_models


def parse(raw: object):  # type: ignore[no-untyped-def]
    return parse_config(raw, "test.yaml", config_models(), env={})


def test_off_by_default_and_so_are_the_object_watches() -> None:
    config = parse({}).config
    assert not config.detectors.enabled
    assert not config.watches_objects
    assert config.detectors.terminating_after == 300.0
    assert config.detectors.node_conditions == [
        "NotReady",
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
    ]
    assert parse({"enrichment": {"watch_objects": True}}).config.watches_objects
    assert not parse(
        {"enrichment": {"enabled": False, "watch_objects": True}}
    ).config.watches_objects


def test_durations_and_conditions_are_validated_with_their_key_path() -> None:
    config = parse({"detectors": {"enabled": True, "terminating_after": "10m"}}).config
    assert (config.detectors.enabled, config.detectors.terminating_after) == (True, 600.0)
    with pytest.raises(ConfigError) as info:
        parse({"detectors": {"node_conditions": ["NotReady", "Hungry"]}, "detectors_x": 1})
    text = "\n".join(info.value.problems)
    assert "detectors.node_conditions[1]: Input should be 'NotReady'" in text
    assert "detectors_x" in text
    with pytest.raises(ConfigError) as typo:
        parse({"detectors": {"terminating_afterr": "5m"}})
    assert "detectors.terminating_afterr" in "\n".join(typo.value.problems)


def test_check_config_shows_the_section() -> None:
    shown = effective_config(parse({"detectors": {"enabled": True}}))
    assert shown["detectors"]["enabled"] is True
    assert shown["enrichment"]["watch_objects"] is False
