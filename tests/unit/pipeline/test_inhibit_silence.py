"""Inhibition (a Node NotReady alert mutes pod alerts on that node) and silences, incl.
weekly maintenance windows across time zones and DST changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.routing import InhibitRuleConfig, RouteConfig, SilenceConfig
from kube_event_watcher.pipeline.route import Inhibitor, RoutingStage, Silencer
from tests.factories import make_alert

NODE_DOWN: dict[str, Any] = {
    "name": "node-down",
    "source_matchers": ['kind="Node"', 'reason=~"NodeNotReady|NodeNotSchedulable"'],
    "target_matchers": ['kind="Pod"'],
    "equal": ["cluster", {"source": "name", "target": "facts.node"}],
    "source_ttl": "30m",
}


def inhibitor(*rules: dict[str, Any]) -> Inhibitor:
    return Inhibitor([InhibitRuleConfig.model_validate(r) for r in rules])


def at(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


# --- inhibition -------------------------------------------------------------------------------


def test_node_not_ready_mutes_pods_on_that_node_only() -> None:
    clock = FakeClock()
    inhib = inhibitor(NODE_DOWN)
    node = make_alert(kind="Node", name="node-1", reason="NodeNotReady")
    inhib.observe(node, clock.now())
    on_node = make_alert(facts={"node": "node-1"})
    elsewhere = make_alert(name="api-2", facts={"node": "node-2"})
    other_cluster = make_alert(cluster="staging", facts={"node": "node-1"})
    unknown_node = make_alert(name="api-3")

    why = inhib.muted_by(on_node, clock.now())
    assert why is not None
    assert "node-down" in why
    assert "Node/node-1" in why
    assert inhib.muted_by(elsewhere, clock.now()) is None
    assert inhib.muted_by(other_cluster, clock.now()) is None
    assert inhib.muted_by(unknown_node, clock.now()) is None  # '' never equals ''
    assert inhib.muted_by(node, clock.now()) is None  # a source does not mute itself


def test_source_expires_after_its_ttl_and_is_renewed_by_repeats() -> None:
    clock = FakeClock()
    inhib = inhibitor(NODE_DOWN)
    node = make_alert(kind="Node", name="node-1", reason="NodeNotReady")
    pod = make_alert(facts={"node": "node-1"})
    inhib.observe(node, clock.now())
    clock.advance(20 * 60)
    inhib.observe(node, clock.now())  # seen again: 30 m from now
    clock.advance(20 * 60)
    assert inhib.muted_by(pod, clock.now()) is not None
    clock.advance(10 * 60)
    assert inhib.muted_by(pod, clock.now()) is None
    inhib.prune(clock.now())
    assert inhib.active_sources() == 0


def test_resolved_source_stops_muting_at_once() -> None:
    inhib = inhibitor(NODE_DOWN)
    inhib.observe(make_alert(kind="Node", name="node-1", reason="NodeNotReady"), 0.0)
    inhib.observe(
        make_alert(kind="Node", name="node-1", reason="NodeNotReady", status="resolved"), 1.0
    )
    assert inhib.muted_by(make_alert(facts={"node": "node-1"}), 2.0) is None
    assert inhib.active_sources() == 0


def test_rule_without_equal_mutes_every_target() -> None:
    inhib = inhibitor(
        {"source_match": {"reason": "ClusterDegraded"}, "target_matchers": ['type="Warning"']}
    )
    inhib.observe(make_alert(kind="Cluster", name="prod", reason="ClusterDegraded"), 0.0)
    assert inhib.muted_by(make_alert(), 1.0) == (
        "inhibited by rule 'inhibit_rules[0]' (source: ClusterDegraded on Cluster/default/prod)"
    )


def test_inhibit_rule_needs_both_sides() -> None:
    with pytest.raises(ValidationError, match="target_matchers"):
        InhibitRuleConfig.model_validate({"source_matchers": ['kind="Node"']})


# --- silences ---------------------------------------------------------------------------------


def silencer(*silences: dict[str, Any]) -> Silencer:
    return Silencer([SilenceConfig.model_validate(s) for s in silences])


def test_absolute_silence_is_active_between_starts_and_ends() -> None:
    s = silencer(
        {
            "name": "db-migration",
            "matchers": ['namespace="payments"'],
            "starts": "2026-11-24T22:00:00+08:00",
            "ends": "2026-11-25T02:00:00+08:00",
        }
    )
    alert = make_alert(namespace="payments")
    assert s.muted_by(alert, at("2026-11-24T21:59:59", "Asia/Shanghai")) is None
    assert (
        s.muted_by(alert, at("2026-11-24T22:00:00", "Asia/Shanghai"))
        == "silenced by 'db-migration'"
    )
    assert s.muted_by(make_alert(namespace="web"), at("2026-11-24T23:00", "Asia/Shanghai")) is None
    assert s.muted_by(alert, at("2026-11-25T02:00:00", "Asia/Shanghai")) is None
    assert s.expired(at("2026-11-26T00:00")) == ["db-migration"]


def test_naive_times_are_read_in_the_silence_time_zone() -> None:
    s = silencer(
        {
            "matchers": ['cluster="prod"'],
            "starts": "2026-11-24T22:00:00",
            "ends": "2026-11-24T23:00:00",
            "time_zone": "Asia/Shanghai",
        }
    )
    assert s.muted_by(make_alert(), at("2026-11-24T14:30")) is not None  # 22:30 in Shanghai


def test_weekly_window_past_midnight_in_a_time_zone() -> None:
    s = silencer(
        {
            "name": "weekend-maintenance",
            "matchers": ['cluster="prod"'],
            "weekly": [{"days": ["fri", "sat"], "start": "22:00", "end": "02:00"}],
            "time_zone": "Asia/Shanghai",
        }
    )
    alert = make_alert()
    # 2026-11-27 is a Friday
    assert s.muted_by(alert, at("2026-11-27T21:59", "Asia/Shanghai")) is None
    assert s.muted_by(alert, at("2026-11-27T22:00", "Asia/Shanghai")) is not None
    assert s.muted_by(alert, at("2026-11-28T01:59", "Asia/Shanghai")) is not None  # Sat early
    assert s.muted_by(alert, at("2026-11-28T02:00", "Asia/Shanghai")) is None
    assert s.muted_by(alert, at("2026-11-29T01:00", "Asia/Shanghai")) is not None  # Sat night
    assert s.muted_by(alert, at("2026-11-30T01:00", "Asia/Shanghai")) is None  # Sun night: no
    assert s.muted_by(alert, at("2026-11-27T14:30", "UTC")) is not None  # = 22:30 Shanghai


def test_day_ranges_and_whole_days() -> None:
    s = silencer(
        {
            "matchers": ['cluster="prod"'],
            "weekly": [{"days": ["sat-mon"], "start": "00:00", "end": "24:00"}],
        }
    )
    assert s.muted_by(make_alert(), at("2026-11-30T23:59:59")) is not None  # Monday
    assert s.muted_by(make_alert(), at("2026-12-01T00:00:00")) is None  # Tuesday


def test_weekly_window_on_dst_days_follows_the_wall_clock() -> None:
    """Europe/Berlin: 2026-03-29 02:00 → 03:00 (spring), 2026-10-25 03:00 → 02:00 (fall)."""
    s = silencer(
        {
            "matchers": ['cluster="prod"'],
            "weekly": [{"days": ["sun"], "start": "02:00", "end": "03:00"}],
            "time_zone": "Europe/Berlin",
        }
    )
    alert = make_alert()
    # Spring forward: 01:59:59 CET is followed by 03:00:00 CEST; the window does not happen.
    spring = at("2026-03-29T00:59:59")  # 01:59:59 CET
    assert s.muted_by(alert, spring) is None
    assert s.muted_by(alert, spring + 1) is None  # 03:00:00 CEST
    # Fall back: 02:00-03:00 is lived twice (CEST, then CET): muted both times, two hours.
    first_pass = at("2026-10-25T00:00:00")  # 02:00 CEST
    assert s.muted_by(alert, first_pass - 1) is None
    assert s.muted_by(alert, first_pass) is not None
    assert s.muted_by(alert, first_pass + 3600 + 1800) is not None  # 02:30 CET
    assert s.muted_by(alert, first_pass + 7200) is None  # 03:00 CET


def test_next_change_tells_when_a_window_ends() -> None:
    s = silencer(
        {
            "matchers": ['cluster="prod"'],
            "weekly": [{"days": ["mon-fri"], "start": "01:00", "end": "03:00"}],
        }
    ).silences[0]
    now = at("2026-11-24T01:30")
    assert s.next_change_after(now) == at("2026-11-24T03:00")


@pytest.mark.parametrize(
    ("silence", "message"),
    [
        ({"matchers": ['cluster="prod"']}, "give `ends` or a `weekly` window"),
        ({"ends": "2026-11-24T22:00:00Z"}, "a silence without them would mute everything"),
        (
            {"matchers": ["kind=Pod"], "starts": "2026-11-24T22:00Z", "ends": "2026-11-24T21:00Z"},
            "ends is not after starts",
        ),
        (
            {
                "matchers": ["kind=Pod"],
                "weekly": [{"days": ["fry"], "start": "1:00", "end": "2:00"}],
            },
            "expected a weekday",
        ),
        (
            {"matchers": ["kind=Pod"], "weekly": [{"start": "25:00", "end": "02:00"}]},
            "expected a time of day",
        ),
        ({"matchers": ["kind=Pod"], "ends": "2026-11-24T22:00Z", "time_zone": "CET+1"}, "IANA"),
    ],
)
def test_bad_silences_are_explained(silence: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SilenceConfig.model_validate(silence)


def test_yaml_sexagesimal_times_are_read_as_clock_times() -> None:
    window = SilenceConfig.model_validate(
        {"matchers": ["kind=Pod"], "weekly": [{"start": 150, "end": 210}]}
    ).weekly[0]
    assert (window.start.hour, window.start.minute, window.end.hour) == (2, 30, 3)


# --- the stage together -----------------------------------------------------------------------


def test_stage_routes_then_mutes_with_a_reason() -> None:
    clock = FakeClock(at("2026-11-24T12:00"))
    stage = RoutingStage(
        RouteConfig.model_validate(
            {"receiver": "oncall", "routes": [{"matchers": ['kind="Node"'], "receiver": "infra"}]}
        ),
        ["oncall", "infra"],
        [InhibitRuleConfig.model_validate(NODE_DOWN)],
        [
            SilenceConfig.model_validate(
                {"name": "noisy", "matchers": ['reason="Unhealthy"'], "ends": "2026-11-25T00:00Z"}
            )
        ],
    )
    node = stage.decide(make_alert(kind="Node", name="n1", reason="NodeNotReady"), clock.now())
    assert node.deliver_to == ("infra",)
    pod = stage.decide(make_alert(facts={"node": "n1"}), clock.now())
    assert pod.receivers == ("oncall",)
    assert pod.deliver_to == ()
    assert pod.muted_by is not None
    assert pod.muted_by.startswith("inhibited by rule 'node-down'")
    noisy = stage.decide(make_alert(reason="Unhealthy", facts={"node": "n2"}), clock.now())
    assert noisy.muted_by == "silenced by 'noisy'"
    assert (stage.routed, stage.muted) == (1, 2)


def test_reload_keeps_active_sources_when_the_rules_are_unchanged() -> None:
    from kube_event_watcher.config.schema import Config

    config = Config.model_validate(
        {
            "receivers": [{"name": "oncall", "type": "stdout"}],
            "routes": {"receiver": "oncall"},
            "inhibit_rules": [NODE_DOWN],
        }
    )
    running = RoutingStage.from_config(config)
    running.decide(make_alert(kind="Node", name="n1", reason="NodeNotReady"), 0.0)
    pod = make_alert(facts={"node": "n1"})

    same_rules = RoutingStage.from_config(
        config.model_copy(update={"silences": []}), previous=running
    )
    assert same_rules.decide(pod, 1.0).muted_by is not None
    assert same_rules.routed == 1

    new_rules = Config.model_validate(
        {**config.model_dump(by_alias=True, exclude={"ops"}), "inhibit_rules": []}
    )
    assert RoutingStage.from_config(new_rules, previous=running).decide(pod, 2.0).muted_by is None
