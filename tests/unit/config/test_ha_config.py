"""The ha section: timings that keep two leaders apart, and the state it needs."""

from __future__ import annotations

from typing import Any

import pytest

from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.notifiers.registry import config_models

CONFIGMAP = {"backend": "configmap"}


def load(raw: dict[str, Any]) -> Any:
    return parse_config(raw, "test.yaml", config_models(), env={}).config


def test_off_by_default_with_client_go_like_timings() -> None:
    ha = load({}).ha
    assert not ha.enabled
    assert (ha.lease, ha.namespace) == ("kube-event-watcher", None)
    assert (ha.lease_duration, ha.renew_deadline, ha.retry_period) == (15.0, 10.0, 2.0)


def test_durations_are_written_like_everywhere_else() -> None:
    ha = load(
        {
            "ha": {
                "enabled": True,
                "lease_duration": "30s",
                "renew_deadline": "20s",
                "retry_period": "500ms",
            },
            "state": CONFIGMAP,
        }
    ).ha
    assert (ha.lease_duration, ha.renew_deadline, ha.retry_period) == (30.0, 20.0, 0.5)


@pytest.mark.parametrize(
    ("timings", "says"),
    [
        (
            {"lease_duration": "10s", "renew_deadline": "10s"},
            "renew_deadline (10s) must be shorter",
        ),
        ({"renew_deadline": "2s", "retry_period": "2s"}, "retry_period (2s) must be shorter"),
    ],
)
def test_timings_that_could_overlap_two_leaders_are_refused(
    timings: dict[str, str], says: str
) -> None:
    with pytest.raises(
        ConfigError, match=r"(?s)ha.*" + says.replace("(", r"\(").replace(")", r"\)")
    ):
        load({"ha": {"enabled": True, **timings}, "state": CONFIGMAP})


def test_ha_without_shared_state_is_an_error_that_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match=r"ha\.enabled needs state\.backend: configmap"):
        load({"ha": {"enabled": True}})
    load({"ha": {"enabled": False}})  # off: any backend


def test_bad_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="Lease name"):
        load({"ha": {"lease": "Not_A_Name"}})
    with pytest.raises(ConfigError, match="namespace name"):
        load({"ha": {"namespace": "a.b"}})


def test_doctor_checks_the_lease_verbs_for_the_section_as_written() -> None:
    from kube_event_watcher.kube.diagnosis import required_access

    config = load({"ha": {"enabled": True, "namespace": "ops"}, "state": CONFIGMAP})
    needs = required_access(config.model_dump(), [None], "kew")
    leases = {(n.verb, n.namespace) for n in needs if n.resource == "leases"}
    assert leases == {("get", "ops"), ("create", "ops"), ("update", "ops")}
    off = required_access(load({}).model_dump(), [None], "kew")
    assert not [n for n in off if n.resource == "leases"]


def test_shards_need_ha_enabled() -> None:
    with pytest.raises(ConfigError, match=r"ha\.shards needs ha\.enabled: true"):
        parse_config({"ha": {"shards": True}, "state": CONFIGMAP}, "test", config_models())
